// Tests of pal/: the Linux platform, and the failing and recording test platforms built on it.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <type_traits>
#include <vector>

#include "pal/pal.h"

namespace hakmem {
/// The one way a test gets the release capability (pal_concept.h befriends this name).
struct ReleaseCapabilityForTests {
  static ReleaseCapability make() { return ReleaseCapability{}; }
};
}  // namespace hakmem

using namespace hakmem;

namespace {

constexpr size_t kPage = 4096;
const ReleaseCapability kCap = ReleaseCapabilityForTests::make();

/// Whether the process may read [p, p+1): write(2) from unreadable memory fails with EFAULT instead of faulting.
class Probe {
public:
  Probe() { EXPECT_EQ(pipe(fds_), 0); }
  ~Probe() {
    close(fds_[0]);
    close(fds_[1]);
  }
  bool readable(const void* p) {
    const ssize_t n = write(fds_[1], p, 1);
    if (n == 1) {
      char c;
      EXPECT_EQ(read(fds_[0], &c, 1), 1);
      return true;
    }
    EXPECT_EQ(errno, EFAULT);
    return false;
  }

private:
  int fds_[2] = {-1, -1};
};

/// Whether [p, p+len) is mapped at all (mincore fails with ENOMEM on a hole).
bool is_mapped(const void* p, size_t len) {
  std::vector<unsigned char> v((len + kPage - 1) / kPage);
  return mincore(const_cast<void*>(p), len, v.data()) == 0;
}

bool all_zero(const void* p, size_t len) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < len; ++i)
    if (b[i] != 0) return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------- LinuxPal

TEST(LinuxPal, PageSizeMatchesTheKernel) {
  LinuxPal pal;
  EXPECT_EQ(pal.page_size(), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(pal.page_size(), LinuxPal::kPageSize);
}

TEST(LinuxPal, MapGivesZeroedPageAlignedWritableMemory) {
  LinuxPal pal;
  for (size_t len : {kPage, 3 * kPage, 64 * kPage, size_t{1} << 21}) {
    for (bool sparse : {false, true}) {
      void* p = sparse ? pal.map_sparse(len, Layer::kTest) : pal.map(len, Layer::kTest);
      ASSERT_NE(p, nullptr) << len;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kPage, 0u) << len;
      EXPECT_TRUE(all_zero(p, len)) << len;
      auto* b = static_cast<unsigned char*>(p);
      for (size_t i = 0; i < len - 1; i += 511) b[i] = static_cast<unsigned char>(i * 7 + 1);
      b[len - 1] = 0x5a;
      for (size_t i = 0; i < len - 1; i += 511) ASSERT_EQ(b[i], static_cast<unsigned char>(i * 7 + 1)) << i;
      EXPECT_EQ(b[len - 1], 0x5a);
      EXPECT_TRUE(pal.unmap(kCap, p, len));
    }
  }
}

TEST(LinuxPal, RefusedMapIsNullNotMapFailed_I12) {
  LinuxPal pal;
  const size_t absurd = size_t{1} << 60;
  EXPECT_EQ(pal.map(absurd, Layer::kTest), nullptr);
  EXPECT_EQ(pal.map_sparse(absurd, Layer::kTest), nullptr);
  EXPECT_EQ(pal.map(~size_t{0} - kPage + 1, Layer::kTest), nullptr);
  EXPECT_EQ(pal.map(0, Layer::kTest), nullptr) << "an empty mapping is refused, not MAP_FAILED";
}

TEST(LinuxPal, ProtectNoneThenReadWrite) {
  LinuxPal pal;
  Probe probe;
  const size_t len = 4 * kPage;
  auto* p = static_cast<unsigned char*>(pal.map(len, Layer::kTest));
  ASSERT_NE(p, nullptr);
  p[0] = 1;
  p[kPage] = 2;
  EXPECT_TRUE(probe.readable(p + kPage));

  // Guard the second page only.
  ASSERT_TRUE(pal.protect(p + kPage, kPage, Access::kNone, Layer::kTest));
  EXPECT_TRUE(probe.readable(p));
  EXPECT_FALSE(probe.readable(p + kPage));
  EXPECT_FALSE(probe.readable(p + 2 * kPage - 1));
  EXPECT_TRUE(probe.readable(p + 2 * kPage));

  ASSERT_TRUE(pal.protect(p + kPage, kPage, Access::kReadWrite, Layer::kTest));
  EXPECT_TRUE(probe.readable(p + kPage));
  EXPECT_EQ(p[kPage], 2) << "protection changes keep the contents";
  p[kPage + 1] = 3;
  EXPECT_EQ(p[kPage + 1], 3);
  EXPECT_TRUE(pal.unmap(kCap, p, len));
}

TEST(LinuxPal, ProtectRejectsMisalignedAndUnmappedRanges) {
  LinuxPal pal;
  auto* p = static_cast<unsigned char*>(pal.map(2 * kPage, Layer::kTest));
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(pal.protect(p + 1, kPage, Access::kNone, Layer::kTest));
  ASSERT_TRUE(pal.unmap(kCap, p, 2 * kPage));
  EXPECT_FALSE(pal.protect(p, kPage, Access::kReadWrite, Layer::kTest)) << "hole";
}

TEST(LinuxPal, UnmapMakesAHoleAndRejectsMisalignment) {
  LinuxPal pal;
  auto* p = static_cast<unsigned char*>(pal.map(4 * kPage, Layer::kTest));
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(pal.unmap(kCap, p + 1, kPage));
  EXPECT_TRUE(is_mapped(p, 4 * kPage));
  ASSERT_TRUE(pal.unmap(kCap, p + kPage, kPage));
  EXPECT_TRUE(is_mapped(p, kPage));
  EXPECT_FALSE(is_mapped(p + kPage, kPage));
  EXPECT_TRUE(is_mapped(p + 2 * kPage, 2 * kPage));
  EXPECT_TRUE(pal.unmap(kCap, p, 4 * kPage)) << "munmap over a hole is fine";
  EXPECT_FALSE(is_mapped(p, kPage));
}

TEST(LinuxPal, AdviseDontneedDropsContentsButKeepsTheMapping) {
  LinuxPal pal;
  const size_t len = 8 * kPage;
  auto* p = static_cast<unsigned char*>(pal.map(len, Layer::kTest));
  ASSERT_NE(p, nullptr);
  memset(p, 0xee, len);
  ASSERT_TRUE(pal.advise_dontneed(kCap, p, len));
  EXPECT_TRUE(is_mapped(p, len));
  EXPECT_TRUE(all_zero(p, len)) << "private anonymous pages read back as zero after MADV_DONTNEED";
  p[5] = 1;  // still writable
  EXPECT_EQ(p[5], 1);
  EXPECT_FALSE(pal.advise_dontneed(kCap, p + 1, kPage));
  EXPECT_TRUE(pal.unmap(kCap, p, len));
}

TEST(LinuxPal, ClockIsMonotonicAndAdvances) {
  const LinuxPal pal;
  uint64_t prev = pal.now_ns();
  EXPECT_GT(prev, 0u);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t t = pal.now_ns();
    ASSERT_GE(t, prev) << "iteration " << i;
    prev = t;
  }
  const uint64_t before = pal.now_ns();
  timespec ts{0, 2 * 1000 * 1000};
  nanosleep(&ts, nullptr);
  EXPECT_GE(pal.now_ns() - before, 2u * 1000 * 1000);
}

TEST(LinuxPal, MinorFaultsCountTouchedFreshPages) {
  LinuxPal pal;
  const size_t len = 256 * kPage;
  auto* p = static_cast<volatile unsigned char*>(pal.map(len, Layer::kTest));
  ASSERT_NE(p, nullptr);
  const uint64_t before = pal.minor_faults();
  for (size_t i = 0; i < len; i += kPage) p[i] = 1;
  const uint64_t after = pal.minor_faults();
  // Transparent huge pages may fold many touches into one fault; at least one must show.
  EXPECT_GT(after, before);
  EXPECT_TRUE(pal.unmap(kCap, const_cast<unsigned char*>(p), len));
}

// ---------------------------------------------------------------- FailingPal

TEST(FailingPal, FailNthMapFailsExactlyThatMap_I12) {
  FailingPal<LinuxPal> pal;
  pal.fail_nth_map(3);
  std::vector<void*> got;
  for (int i = 1; i <= 6; ++i) {
    // Sparse maps count as maps too.
    void* p = (i % 2 == 0) ? pal.map_sparse(kPage, Layer::kTest) : pal.map(kPage, Layer::kTest);
    if (i == 3) {
      EXPECT_EQ(p, nullptr) << "map " << i;
    } else {
      EXPECT_NE(p, nullptr) << "map " << i;
    }
    got.push_back(p);
  }
  EXPECT_EQ(pal.failed_maps(), 1u);
  EXPECT_EQ(pal.mapped_bytes(), 5 * kPage);

  // Counted from now, not from the start.
  pal.fail_nth_map(1);
  EXPECT_EQ(pal.map(kPage, Layer::kTest), nullptr);
  EXPECT_EQ(pal.failed_maps(), 2u);
  void* p = pal.map(kPage, Layer::kTest);
  EXPECT_NE(p, nullptr);
  got.push_back(p);

  pal.fail_nth_map(2);
  pal.fail_nth_map(FailingPal<LinuxPal>::kNever);
  for (int i = 0; i < 3; ++i) {
    void* q = pal.map(kPage, Layer::kTest);
    EXPECT_NE(q, nullptr) << "kNever disables";
    got.push_back(q);
  }
  EXPECT_EQ(pal.failed_maps(), 2u);
  for (void* q : got) {
    if (q != nullptr) {
      EXPECT_TRUE(pal.unmap(kCap, q, kPage));
    }
  }
  EXPECT_EQ(pal.mapped_bytes(), 0u);
}

TEST(FailingPal, FailPastBytesHoldsABudget_I12) {
  FailingPal<LinuxPal> pal;
  pal.fail_past_bytes(3 * kPage);
  void* a = pal.map(kPage, Layer::kTest);
  void* b = pal.map(2 * kPage, Layer::kTest);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(pal.mapped_bytes(), 3 * kPage);
  EXPECT_EQ(pal.map(kPage, Layer::kTest), nullptr) << "budget exhausted";
  EXPECT_EQ(pal.map_sparse(kPage, Layer::kTest), nullptr);
  EXPECT_EQ(pal.failed_maps(), 2u);
  // Unmapping frees budget.
  ASSERT_TRUE(pal.unmap(kCap, a, kPage));
  EXPECT_EQ(pal.mapped_bytes(), 2 * kPage);
  EXPECT_EQ(pal.map(2 * kPage, Layer::kTest), nullptr) << "2 pages would exceed the budget";
  void* c = pal.map(kPage, Layer::kTest);
  EXPECT_NE(c, nullptr) << "exactly at the budget is allowed";
  EXPECT_EQ(pal.failed_maps(), 3u);
  pal.reset_failures();
  void* d = pal.map(4 * kPage, Layer::kTest);
  EXPECT_NE(d, nullptr);
  EXPECT_TRUE(pal.unmap(kCap, b, 2 * kPage));
  EXPECT_TRUE(pal.unmap(kCap, c, kPage));
  EXPECT_TRUE(pal.unmap(kCap, d, 4 * kPage));
  EXPECT_EQ(pal.mapped_bytes(), 0u);
}

TEST(FailingPal, FailAllRefusesEveryMapUntilCleared_I12) {
  FailingPal<LinuxPal> pal;
  pal.set_fail_all(true);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(pal.map(kPage, Layer::kTest), nullptr);
    EXPECT_EQ(pal.map_sparse(kPage, Layer::kTest), nullptr);
  }
  EXPECT_EQ(pal.failed_maps(), 8u);
  EXPECT_EQ(pal.mapped_bytes(), 0u);
  pal.set_fail_all(false);
  void* p = pal.map(kPage, Layer::kTest);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(pal.failed_maps(), 8u);
  // Everything else is forwarded untouched.
  EXPECT_TRUE(pal.protect(p, kPage, Access::kNone, Layer::kTest));
  EXPECT_TRUE(pal.protect(p, kPage, Access::kReadWrite, Layer::kTest));
  EXPECT_GT(pal.now_ns(), 0u);
  EXPECT_TRUE(pal.unmap(kCap, p, kPage));
}

TEST(FailingPal, ResetFailuresClearsEveryTrigger) {
  FailingPal<LinuxPal> pal;
  pal.fail_nth_map(1);
  pal.fail_past_bytes(0);
  pal.set_fail_all(true);
  pal.reset_failures();
  void* p = pal.map(kPage, Layer::kTest);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(pal.failed_maps(), 0u);
  EXPECT_TRUE(pal.unmap(kCap, p, kPage));
}

TEST(FailingPal, OsRefusalIsNullAndNotCountedAsMapped) {
  FailingPal<LinuxPal> pal;
  EXPECT_EQ(pal.map(size_t{1} << 60, Layer::kTest), nullptr);
  EXPECT_EQ(pal.mapped_bytes(), 0u);
}

// ---------------------------------------------------------------- RecordingPal

TEST(RecordingPal, CountsCallsAndBytesPerOpAndLayer) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  void* a = pal->map(2 * kPage, Layer::kPool);
  void* b = pal->map(3 * kPage, Layer::kMap);
  void* c = pal->map(kPage, Layer::kPool);
  void* s = pal->map_sparse(16 * kPage, Layer::kRegistry);
  ASSERT_TRUE(a && b && c && s);
  ASSERT_TRUE(pal->protect(b, kPage, Access::kNone, Layer::kMap));
  EXPECT_EQ(pal->calls(PalOp::kMap, Layer::kPool), 2u);
  EXPECT_EQ(pal->bytes(PalOp::kMap, Layer::kPool), 3 * kPage);
  EXPECT_EQ(pal->calls(PalOp::kMap, Layer::kMap), 1u);
  EXPECT_EQ(pal->bytes(PalOp::kMap, Layer::kMap), 3 * kPage);
  EXPECT_EQ(pal->calls(PalOp::kMap, Layer::kRegistry), 0u);
  EXPECT_EQ(pal->calls(PalOp::kMapSparse, Layer::kRegistry), 1u);
  EXPECT_EQ(pal->bytes(PalOp::kMapSparse, Layer::kRegistry), 16 * kPage);
  EXPECT_EQ(pal->calls(PalOp::kProtect, Layer::kMap), 1u);
  EXPECT_EQ(pal->bytes(PalOp::kProtect, Layer::kMap), kPage);
  EXPECT_EQ(pal->calls(PalOp::kMap), 3u);
  EXPECT_EQ(pal->bytes(PalOp::kMap), 6 * kPage);
  EXPECT_EQ(pal->total_calls(), 5u);
  EXPECT_EQ(pal->outstanding_bytes(), 22 * kPage);

  ASSERT_TRUE(pal->protect(b, kPage, Access::kReadWrite, Layer::kMap));
  ASSERT_TRUE(pal->unmap(kCap, a, 2 * kPage));
  ASSERT_TRUE(pal->unmap(kCap, b, 3 * kPage));
  ASSERT_TRUE(pal->unmap(kCap, c, kPage));
  ASSERT_TRUE(pal->unmap(kCap, s, 16 * kPage));
  EXPECT_EQ(pal->outstanding_bytes(), 0u);
  EXPECT_EQ(pal->calls(PalOp::kUnmap), 4u);
  EXPECT_EQ(pal->bytes(PalOp::kUnmap), 22 * kPage);
}

TEST(RecordingPal, ReleaseOperationsAreAttributedToTheReleaser_I1) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  void* p = pal->map(4 * kPage, Layer::kMap);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(pal->advise_dontneed(kCap, p, 2 * kPage));
  ASSERT_TRUE(pal->unmap(kCap, p, 4 * kPage));
  EXPECT_EQ(pal->calls(PalOp::kAdvise, Layer::kRelease), 1u);
  EXPECT_EQ(pal->bytes(PalOp::kAdvise, Layer::kRelease), 2 * kPage);
  EXPECT_EQ(pal->calls(PalOp::kUnmap, Layer::kRelease), 1u);
  EXPECT_EQ(pal->calls(PalOp::kUnmap), 1u) << "no other layer may be charged with an unmap";
  EXPECT_EQ(pal->calls(PalOp::kAdvise), 1u);
}

TEST(RecordingPal, LogKeepsEveryCallInOrder) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  void* a = pal->map(kPage, Layer::kPool);
  void* s = pal->map_sparse(8 * kPage, Layer::kRegistry);
  ASSERT_TRUE(a && s);
  ASSERT_TRUE(pal->protect(a, kPage, Access::kNone, Layer::kCache));
  ASSERT_TRUE(pal->advise_dontneed(kCap, s, kPage));
  ASSERT_TRUE(pal->unmap(kCap, a, kPage));
  const PalRecord expected[] = {
      {PalOp::kMap, Layer::kPool, reinterpret_cast<uintptr_t>(a), kPage},
      {PalOp::kMapSparse, Layer::kRegistry, reinterpret_cast<uintptr_t>(s), 8 * kPage},
      {PalOp::kProtect, Layer::kCache, reinterpret_cast<uintptr_t>(a), kPage},
      {PalOp::kAdvise, Layer::kRelease, reinterpret_cast<uintptr_t>(s), kPage},
      {PalOp::kUnmap, Layer::kRelease, reinterpret_cast<uintptr_t>(a), kPage},
  };
  ASSERT_EQ(pal->total_calls(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    PalRecord r{};
    ASSERT_TRUE(pal->record(i, &r)) << i;
    EXPECT_EQ(r.op, expected[i].op) << i;
    EXPECT_EQ(r.layer, expected[i].layer) << i;
    EXPECT_EQ(r.addr, expected[i].addr) << i;
    EXPECT_EQ(r.len, expected[i].len) << i;
  }
  PalRecord r{};
  EXPECT_FALSE(pal->record(std::size(expected), &r)) << "no record past the last call";
  EXPECT_TRUE(pal->unmap(kCap, s, 8 * kPage));
}

TEST(RecordingPal, FailedCallsAreNotRecorded) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  EXPECT_EQ(pal->map(size_t{1} << 60, Layer::kMap), nullptr);
  EXPECT_EQ(pal->map_sparse(size_t{1} << 60, Layer::kRegistry), nullptr);
  void* p = pal->map(kPage, Layer::kMap);
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(pal->protect(static_cast<char*>(p) + 1, kPage, Access::kNone, Layer::kMap));
  EXPECT_FALSE(pal->unmap(kCap, static_cast<char*>(p) + 1, kPage));
  EXPECT_EQ(pal->total_calls(), 1u);
  EXPECT_EQ(pal->calls(PalOp::kMap), 1u);
  EXPECT_EQ(pal->calls(PalOp::kProtect), 0u);
  EXPECT_EQ(pal->calls(PalOp::kUnmap), 0u);
  EXPECT_EQ(pal->outstanding_bytes(), kPage);
  EXPECT_TRUE(pal->unmap(kCap, p, kPage));
}

TEST(RecordingPal, OverFailingPalRecordsOnlyGrantedMaps_I12) {
  auto pal = std::make_unique<RecordingPal<FailingPal<LinuxPal>>>();
  pal->fail_nth_map(2);
  void* a = pal->map(kPage, Layer::kPool);
  void* b = pal->map(kPage, Layer::kPool);
  void* c = pal->map(kPage, Layer::kPool);
  EXPECT_NE(a, nullptr);
  EXPECT_EQ(b, nullptr);
  EXPECT_NE(c, nullptr);
  EXPECT_EQ(pal->calls(PalOp::kMap, Layer::kPool), 2u);
  EXPECT_EQ(pal->failed_maps(), 1u);
  EXPECT_EQ(pal->outstanding_bytes(), pal->mapped_bytes());
  EXPECT_TRUE(pal->unmap(kCap, a, kPage));
  EXPECT_TRUE(pal->unmap(kCap, c, kPage));
  EXPECT_EQ(pal->outstanding_bytes(), 0u);
  EXPECT_EQ(pal->mapped_bytes(), 0u);
}

TEST(RecordingPal, VerifyMappedHoldsThroughProperReleases_I1) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  void* a = pal->map(4 * kPage, Layer::kMap);
  void* s = pal->map_sparse(64 * kPage, Layer::kRegistry);
  ASSERT_TRUE(a && s);
  EXPECT_TRUE(pal->verify_mapped());
  ASSERT_TRUE(pal->unmap(kCap, static_cast<char*>(a) + kPage, 2 * kPage));  // a releaser's partial unmap
  EXPECT_TRUE(pal->verify_mapped());
  ASSERT_TRUE(pal->unmap(kCap, a, kPage));
  ASSERT_TRUE(pal->unmap(kCap, static_cast<char*>(a) + 3 * kPage, kPage));
  EXPECT_TRUE(pal->verify_mapped());
  ASSERT_TRUE(pal->unmap(kCap, s, 64 * kPage));
  EXPECT_TRUE(pal->verify_mapped());
}

TEST(RecordingPal, VerifyMappedCatchesAnUnmapBehindItsBack_I1) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  auto* p = static_cast<char*>(pal->map(4 * kPage, Layer::kMap));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(pal->verify_mapped());
  // This is the one direct munmap in the tests: it plays a layer that bypasses
  // the releaser (an I1 violation), which is what verify_mapped must detect.
  ASSERT_EQ(::munmap(p + 2 * kPage, kPage), 0);
  EXPECT_FALSE(pal->verify_mapped());
  EXPECT_EQ(pal->calls(PalOp::kUnmap), 0u);
  ASSERT_TRUE(pal->unmap(kCap, p, 4 * kPage));  // clean up the rest (munmap over the hole is fine)
  EXPECT_TRUE(pal->verify_mapped()) << "once the releaser has released the whole range, nothing is missing";
}

TEST(RecordingPal, LogWrapKeepsCountersExact) {
  using Rec = RecordingPal<LinuxPal>;
  auto pal = std::make_unique<Rec>();
  void* p = pal->map(kPage, Layer::kPool);
  ASSERT_NE(p, nullptr);
  const uint64_t n = Rec::kLogSize + 10;
  for (uint64_t i = 1; i < n; ++i) {
    ASSERT_TRUE(pal->protect(p, kPage, (i % 2) ? Access::kNone : Access::kReadWrite, Layer::kPool)) << i;
  }
  ASSERT_EQ(pal->total_calls(), n);
  EXPECT_EQ(pal->calls(PalOp::kProtect, Layer::kPool), n - 1);
  EXPECT_EQ(pal->bytes(PalOp::kProtect, Layer::kPool), (n - 1) * kPage);
  PalRecord r{};
  EXPECT_FALSE(pal->record(0, &r)) << "the first call has left the log";
  EXPECT_FALSE(pal->record(n - Rec::kLogSize - 1, &r));
  ASSERT_TRUE(pal->record(n - Rec::kLogSize, &r)) << "the oldest call still in the log";
  EXPECT_EQ(r.op, PalOp::kProtect);
  ASSERT_TRUE(pal->record(n - 1, &r));
  EXPECT_EQ(r.op, PalOp::kProtect);
  EXPECT_EQ(r.addr, reinterpret_cast<uintptr_t>(p));
  EXPECT_EQ(pal->outstanding_bytes(), kPage);
  EXPECT_TRUE(pal->verify_mapped());
  EXPECT_TRUE(pal->unmap(kCap, p, kPage));
}

TEST(PlatformConcept, RealAndTestPlatformsSatisfyIt) {
  static_assert(Platform<LinuxPal>);
  static_assert(Platform<FailingPal<LinuxPal>>);
  static_assert(Platform<RecordingPal<LinuxPal>>);
  static_assert(Platform<RecordingPal<FailingPal<LinuxPal>>>);
  static_assert(!std::is_default_constructible_v<ReleaseCapability>,
                "only BatchReleaser (and this test's friend) may make the release capability (I1)");
  SUCCEED();
}
