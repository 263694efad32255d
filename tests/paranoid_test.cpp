// Paranoid mode (hardening=paranoid): every misuse of issue 7 is caught with its exact report
// (or a fault where a protected page is the mechanism), and correct programs stay silent.
//
// Each test builds its own allocator with on_error=report and a capturing sink, so a report is
// checked as text and the allocator keeps running; audit() must pass afterwards (the quarantine
// and withheld blocks are accounted for, I7).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/report.h"
#include "support/sanitizer.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kAllocSite = 0x1234;
constexpr uintptr_t kFreeSite = 0x5678;
constexpr uintptr_t kOtherSite = 0x9abc;

constexpr bool kSanitized = hakmem_test::kAsan || hakmem_test::kTsan;

/// A child that touched a protected page: killed by SIGSEGV, or (under a sanitizer, which
/// catches the signal to print its own report) exited with a failure status.
bool Faulted(int status) {
  if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGSEGV;
  return kSanitized && WIFEXITED(status) && WEXITSTATUS(status) != 0;
}
// With HAKMEM_TRACK=asan a freed large block is also poisoned: ASan reports the access first.
const char* const kFaultText = kTrackTool == TrackTool::kAsan ? "use-after-poison|SEGV" : kSanitized ? "SEGV" : "";

/// A deliberate write into a freed block. Under HAKMEM_TRACK=asan, ASan itself stops it (the
/// block is poisoned; tests/track_asan_test.cpp): that is checked in a child, and the rest of
/// the test, which needs the write to have happened, is skipped.
#define WRITE_AFTER_FREE(stmt)                                                                                         \
  if (kTrackTool == TrackTool::kAsan) {                                                                                \
    EXPECT_DEATH(stmt, "use-after-poison");                                                                            \
    GTEST_SKIP() << "HAKMEM_TRACK=asan: ASan reports the write itself (checked above)";                                \
  } else {                                                                                                             \
    stmt;                                                                                                              \
  }

using Capture = hakmem_test::ReportCapture;
using hakmem_test::hex;

/// Paranoid options; the quarantine cap is the option's default unless given.
Options paranoid(uint64_t quarantine = Options{}.get(Opt::kQuarantine)) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kHardening, kHardeningParanoid);
  o.set(Opt::kQuarantine, quarantine);
  o.set(Opt::kDecayMs, 0);  // nothing leaves the cache or the releaser on the wall clock
  return o;
}

class ParanoidTest : public ::testing::Test {
protected:
  explicit ParanoidTest(Options o = paranoid()) : a_(o) { a_->set_report_sink(&Capture::sink, &cap_); }

  Allocator<RecordingConfig>* a() { return &*a_; }

  void ExpectAuditOk() {
    const AuditResult r = a_->audit();
    EXPECT_TRUE(r.ok) << r.failure;
  }

  /// `text` is exactly one report line: kind, pointer, size, allocation site, free site (0: none named).
  static void ExpectReport(const std::string& text, Verdict kind, const void* p, int64_t size, uintptr_t alloc_site,
                           uintptr_t free_site) {
    SCOPED_TRACE("report: " + text);
    const std::string head = std::string("hakmem: ") + verdict_name(kind) + " of " + hex(p) + " (";
    EXPECT_EQ(text.rfind(head, 0), 0u) << "expected to start with: " << head;
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line per report";
    if (size >= 0) {
      // A named string, not `"(" + std::to_string(...)`: g++ 12 at -O3 flags that with a false -Wrestrict.
      const std::string bytes = std::to_string(size) + " bytes";
      EXPECT_NE(text.find("(" + bytes), std::string::npos) << "names the size";
    } else {
      EXPECT_EQ(text.find(" bytes"), std::string::npos) << "an untrusted size must not be reported";
    }
    if (alloc_site != 0) {
      EXPECT_NE(text.find("allocated at " + hex(alloc_site)), std::string::npos) << "names the allocation site";
    } else {
      EXPECT_EQ(text.find("allocated at"), std::string::npos);
    }
    if (free_site != 0) {
      EXPECT_NE(text.find("freed at " + hex(free_site)), std::string::npos) << "names the free site";
    } else {
      EXPECT_EQ(text.find("freed at"), std::string::npos);
    }
  }

  /// Allocates and frees up to `n` blocks of random small sizes (churn that pushes the
  /// quarantine), stopping early once something was reported.
  void Churn(int n, size_t max = 200) {
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < n && cap_.text.empty(); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      void* q = a()->alloc(1 + x % max, kOtherSite);
      ASSERT_NE(q, nullptr);
      memset(q, 0x5a, a()->usable_size(q));
      ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
    }
  }

  ScopedAllocator<RecordingConfig> a_;
  Capture cap_;
};

// ---------------------------------------------------------------- canary (overflow)

TEST_F(ParanoidTest, OneByteOverflowOf24ByteBlockIsReportedAsOverflow) {
  auto* p = static_cast<unsigned char*>(a()->alloc(24, kAllocSite));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->usable_size(p), 24u) << "paranoid: usable size is exactly what was asked";
  memset(p, 1, 24);
  p[24] = 0;  // one byte past the request: inside the size class, so only the canary sees it
  EXPECT_EQ(a()->check(p), Verdict::kOverflow);
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOverflow);
  ExpectReport(cap_.text, Verdict::kOverflow, p, 24, kAllocSite, kFreeSite);
  EXPECT_EQ(a()->error_count(Verdict::kOverflow), 1u);
  EXPECT_EQ(a()->check(p), Verdict::kOverflow) << "never acted on: the block is still live, still overflowed";
  ExpectAuditOk();
}

TEST_F(ParanoidTest, EightByteOverflowOf24ByteBlockIsReportedAsOverflow) {
  auto* p = static_cast<unsigned char*>(a()->alloc(24, kAllocSite));
  ASSERT_NE(p, nullptr);
  memset(p, 1, 32);  // 8 bytes too many
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOverflow);
  ExpectReport(cap_.text, Verdict::kOverflow, p, 24, kAllocSite, kFreeSite);
}

TEST_F(ParanoidTest, OverflowIsCaughtByReallocToo) {
  auto* p = static_cast<unsigned char*>(a()->alloc(40, kAllocSite));
  ASSERT_NE(p, nullptr);
  p[40] ^= 0xff;
  cap_.text.clear();
  EXPECT_EQ(a()->realloc(p, 100, kFreeSite), nullptr) << "an overflowed block is not resized";
  ExpectReport(cap_.text, Verdict::kOverflow, p, 40, kAllocSite, kFreeSite);
}

TEST_F(ParanoidTest, OverflowOfLargeAndAlignedBlocksIsCaught) {
  for (size_t align : {size_t{16}, size_t{64}, size_t{4096}}) {
    for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, size_t{300000}, size_t{3} << 20}) {
      SCOPED_TRACE("align " + std::to_string(align) + " size " + std::to_string(n));
      auto* p = static_cast<unsigned char*>(a()->aligned_alloc(align, n, kAllocSite));
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
      EXPECT_EQ(a()->usable_size(p), n);
      memset(p, 0x77, n);
      EXPECT_EQ(a()->check(p, Origin::kAligned), Verdict::kOk) << "filling exactly the usable size is silent";
      p[n] ^= 1;
      EXPECT_EQ(a()->check(p, Origin::kAligned), Verdict::kOverflow);
      p[n] ^= 1;
      EXPECT_EQ(a()->free(p, kFreeSite, Origin::kAligned), Verdict::kOk);
    }
  }
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  ExpectAuditOk();
}

TEST_F(ParanoidTest, WriteToPMinusOneIsACorruptedHeader) {
  auto* p = static_cast<unsigned char*>(a()->alloc(24, kAllocSite));
  ASSERT_NE(p, nullptr);
  p[-1] ^= 0x40;
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kCorrupted);
  ExpectReport(cap_.text, Verdict::kCorrupted, p, -1, 0, kFreeSite);
}

// Silent: a program that fills its usable size, reallocs and frees never trips anything.
TEST_F(ParanoidTest, FillingUsableSizeThenReallocAndFreeIsSilent) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int i = 0; i < 3000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const size_t n = x % 7 == 0 ? x % (600 << 10) : x % 2000;
    auto* p = static_cast<unsigned char*>(a()->alloc(n, kAllocSite));
    ASSERT_NE(p, nullptr);
    const size_t u = a()->usable_size(p);
    ASSERT_EQ(u, n == 0 ? 0 : n);
    if (u != 0) memset(p, static_cast<int>(i), u);
    const size_t m = (x >> 20) % 3000;
    auto* q = static_cast<unsigned char*>(a()->realloc(p, m, kAllocSite));
    if (m == 0) {
      EXPECT_EQ(q, nullptr);  // realloc(p, 0) frees
      continue;
    }
    ASSERT_NE(q, nullptr);
    const size_t kept = n < m ? n : m;
    for (size_t k = 0; k < kept; k += 97) ASSERT_EQ(q[k], static_cast<unsigned char>(i)) << "realloc kept the bytes";
    ASSERT_EQ(a()->usable_size(q), m);
    memset(q, 0x33, m);
    live.emplace_back(q, m);
    if (live.size() > 50) {
      ASSERT_EQ(a()->free(live.front().first, kFreeSite), Verdict::kOk);
      live.erase(live.begin());
    }
  }
  for (auto& [p, n] : live) ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  EXPECT_EQ(a()->stats().errors_total, 0u);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- write after free (Pool)

TEST_F(ParanoidTest, WriteAfterFreeOf32ByteBlockIsReportedWhenItLeavesTheQuarantine) {
  auto* p = static_cast<unsigned char*>(a()->alloc(32, kAllocSite));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  WRITE_AFTER_FREE(p[20] = 'x');  // the program still holds p
  cap_.text.clear();
  // 100k malloc/free: the block leaves the quarantine and its fill is checked.
  for (int i = 0; i < 100000 && cap_.text.empty(); ++i) {
    void* q = a()->alloc(32, kOtherSite);
    ASSERT_NE(q, nullptr);
    ASSERT_NE(q, p) << "a block is never reused while quarantined";
    ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
  }
  ExpectReport(cap_.text, Verdict::kWriteAfterFree, p, 32, kAllocSite, kFreeSite);
  EXPECT_EQ(a()->error_count(Verdict::kWriteAfterFree), 1u);
  // Withheld for good: the block is never handed out again.
  std::set<void*> seen;
  for (int i = 0; i < 20000; ++i) {
    void* q = a()->alloc(32, kOtherSite);
    ASSERT_NE(q, p);
    seen.insert(q);
    ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
  }
  EXPECT_EQ(a()->stats().withheld_bytes, SizeClasses::block_size(SizeClasses::class_of(32 + kCanarySize)));
  ExpectAuditOk();
}

TEST_F(ParanoidTest, WriteOverTheFreeSiteRecordIsReportedWithoutAFreeSite) {
  auto* p = static_cast<unsigned char*>(a()->alloc(64, kAllocSite));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  WRITE_AFTER_FREE(p[0] ^= 1);  // the first word, where the free site is recorded
  cap_.text.clear();
  Churn(200000, 120);
  ExpectReport(cap_.text, Verdict::kWriteAfterFree, p, 64, kAllocSite, 0);
}

/// ParanoidTest with no quarantine: freed blocks go straight back, still filled.
class ParanoidNoQuarantineTest : public ParanoidTest {
protected:
  ParanoidNoQuarantineTest() : ParanoidTest(paranoid(0)) {}
};

/// ParanoidTest with a 4 KiB quarantine, which a few hundred 48-byte frees push a block out of.
class ParanoidTinyQuarantineTest : public ParanoidTest {
protected:
  ParanoidTinyQuarantineTest() : ParanoidTest(paranoid(4096)) {}
};

// The fill is checked when the block is about to be handed out again; the check at reuse knows no
// free site (the record is only read at quarantine exit).
TEST_F(ParanoidNoQuarantineTest, WriteAfterFreeIsCaughtWhenTheBlockIsReused) {
  auto* p = static_cast<unsigned char*>(a()->alloc(48, kAllocSite));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  WRITE_AFTER_FREE(p[40] = 1);
  void* q = a()->alloc(48, kOtherSite);  // LIFO reuse would hand p back: it is withheld instead
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  ExpectReport(cap_.text, Verdict::kWriteAfterFree, p, 48, kAllocSite, 0);
  EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
  ExpectAuditOk();
}

// The block leaves the quarantine intact, is written while on the free list, and the write is
// caught when the block is about to be handed out again.
TEST_F(ParanoidTinyQuarantineTest, WriteAfterTheQuarantineIsCaughtAtReuse) {
  auto* p = static_cast<unsigned char*>(a()->alloc(48, kAllocSite));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  // 200 blocks of this class through a 4 KiB quarantine push p out onto the free list. All are
  // allocated first, so none of them can be p once it is out.
  std::vector<void*> others;
  for (int i = 0; i < 200; ++i) others.push_back(a()->alloc(48, kOtherSite));
  for (void* q : others) ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  WRITE_AFTER_FREE(p[47] = 9);  // past the free-list link and the record: in the fill
  std::vector<void*> held;      // take every free block of the class until p's turn comes
  for (int i = 0; i < 5000 && cap_.text.empty(); ++i) {
    void* q = a()->alloc(48, kOtherSite);
    ASSERT_NE(q, nullptr);
    ASSERT_NE(q, p) << "a block written after its free is never handed out";
    held.push_back(q);
  }
  ExpectReport(cap_.text, Verdict::kWriteAfterFree, p, 48, kAllocSite, 0);
  for (void* q : held) ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
  ExpectAuditOk();
}

TEST(ParanoidQuarantine, StaysWithinItsByteCap) {
  ScopedAllocator<RecordingConfig> a(paranoid(64 << 10));
  for (int i = 0; i < 20000; ++i) {
    void* q = a->alloc(1 + i % 3000, kOtherSite);
    ASSERT_NE(q, nullptr);
    ASSERT_EQ(a->free(q, kOtherSite), Verdict::kOk);
    if (i % 997 == 0) {
      const StatsSnapshot s = a->stats();
      // The shared FIFO holds at most the cap (it may overshoot by one block until the next
      // free evicts more), the freeing thread's ring at most cap/16.
      EXPECT_LE(s.quarantine_bytes, (64u << 10) + (64u << 10) / 16 + 4096) << "at " << i;
      EXPECT_GT(s.quarantine_blocks, 0u);
    }
  }
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.pool_live, 0u);
  EXPECT_EQ(r.pool_held, a->stats().quarantine_bytes);
}

// ---------------------------------------------------------------- double frees

TEST_F(ParanoidTest, DoubleFreesImmediateInterleavedAndDelayedPastAFullQuarantine) {
  void* a1 = a()->alloc(40, kAllocSite);
  void* b1 = a()->alloc(40, kAllocSite);
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(b1, nullptr);
  ASSERT_EQ(a()->free(a1, kFreeSite), Verdict::kOk);
  cap_.text.clear();
  EXPECT_EQ(a()->free(a1, kFreeSite), Verdict::kDoubleFree);  // immediate
  ExpectReport(cap_.text, Verdict::kDoubleFree, a1, 40, kAllocSite, kFreeSite);
  ASSERT_EQ(a()->free(b1, kFreeSite), Verdict::kOk);
  cap_.text.clear();
  EXPECT_EQ(a()->free(a1, kFreeSite), Verdict::kDoubleFree);  // interleaved: a, b, a
  ExpectReport(cap_.text, Verdict::kDoubleFree, a1, 40, kAllocSite, kFreeSite);
  // Delayed: enough frees to cycle the whole 16 MiB quarantine, without allocating the size of a1
  // again (a reuse would make the third free legal).
  cap_.text.clear();
  std::vector<void*> blocks;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 9000; ++i) blocks.push_back(a()->alloc(2000, kOtherSite));
    for (void* q : blocks) ASSERT_EQ(a()->free(q, kOtherSite), Verdict::kOk);
    blocks.clear();
  }
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  EXPECT_EQ(a()->free(a1, kFreeSite), Verdict::kDoubleFree);
  ExpectReport(cap_.text, Verdict::kDoubleFree, a1, 40, kAllocSite, kFreeSite);
  cap_.text.clear();
  EXPECT_EQ(a()->free(b1, kFreeSite), Verdict::kDoubleFree);
  ExpectAuditOk();
}

TEST_F(ParanoidTest, EveryNewDeleteMismatchIsReported) {
  const Origin kOrigins[] = {Origin::kMalloc, Origin::kNew, Origin::kNewArray};
  for (Origin made : kOrigins) {
    for (Origin released : kOrigins) {
      if (made == released) continue;
      void* p = a()->alloc(56, kAllocSite, made);
      ASSERT_NE(p, nullptr);
      cap_.text.clear();
      EXPECT_EQ(a()->free(p, kFreeSite, released), Verdict::kMismatchedOrigin);
      ExpectReport(cap_.text, Verdict::kMismatchedOrigin, p, 56, kAllocSite, kFreeSite);
      EXPECT_NE(
          cap_.text.find(std::string("allocated by ") + origin_name(made) + ", released by " + origin_name(released)),
          std::string::npos)
          << cap_.text;
      EXPECT_EQ(a()->free(p, kFreeSite, made), Verdict::kOk);
    }
  }
}

// ---------------------------------------------------------------- large blocks (PROT_NONE)

TEST_F(ParanoidTest, FreedLargeBlockIsInaccessibleUntilReused) {
  constexpr size_t n = 4 << 20;
  auto* p = static_cast<unsigned char*>(a()->alloc(n, kAllocSite));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u) << "paranoid Map blocks start a page";
  memset(p, 0x42, n);
  const uint64_t protects = a()->pal().calls(PalOp::kProtect);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  EXPECT_EQ(a()->pal().calls(PalOp::kProtect), protects + 1) << "the freed block's user pages were protected";
  EXPECT_EXIT(p[1 << 20] = 1, Faulted, kFaultText) << "a write into a freed 4 MiB block faults";
  EXPECT_EXIT(
      {
        volatile unsigned char c = p[100];
        (void)c;
        _exit(0);
      },
      Faulted, kFaultText)
      << "a read after free faults";
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kDoubleFree) << "the header page stays readable: a report, no fault";
  ExpectReport(cap_.text, Verdict::kDoubleFree, p, static_cast<int64_t>(n), kAllocSite, kFreeSite);
  // Reuse from BigCache makes it accessible again.
  auto* q = static_cast<unsigned char*>(a()->alloc(n, kAllocSite));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(a()->stats().cache_hits, 1u);
  memset(q, 0x17, n);
  EXPECT_EQ(q[n - 1], 0x17);
  EXPECT_EQ(a()->free(q, kFreeSite), Verdict::kOk);
  a()->flush();  // protected blocks are unmapped by the releaser like any other
  ExpectAuditOk();
  EXPECT_EQ(a()->stats().protect_failures, 0u);
}

TEST_F(ParanoidTest, CallocOfAReusedLargeBlockIsZero) {
  constexpr size_t n = 1 << 20;
  auto* p = static_cast<unsigned char*>(a()->alloc(n, kAllocSite));
  ASSERT_NE(p, nullptr);
  memset(p, 0xee, n);
  ASSERT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  auto* q = static_cast<unsigned char*>(a()->calloc(1, n, kAllocSite));
  ASSERT_NE(q, nullptr);
  for (size_t i = 0; i < n; i += 4093) ASSERT_EQ(q[i], 0);
  EXPECT_EQ(q[n - 1], 0);
  EXPECT_EQ(a()->free(q, kFreeSite), Verdict::kOk);
}

// ---------------------------------------------------------------- zero-size blocks

TEST_F(ParanoidTest, ZeroSizeBlocksAreUniqueAndInaccessible) {
  std::set<void*> seen;
  std::vector<void*> zs;
  for (int i = 0; i < 1000; ++i) {
    void* z = a()->alloc(0, kAllocSite);
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(seen.insert(z).second) << "each live zero-size block has its own address";
    EXPECT_EQ(a()->usable_size(z), 0u);
    EXPECT_EQ(a()->check(z), Verdict::kOk);
    zs.push_back(z);
  }
  EXPECT_EQ(a()->stats().zero_live, 1000u);
  auto* z = static_cast<volatile unsigned char*>(zs[0]);
  EXPECT_EXIT(
      {
        (void)z[0];
        _exit(0);
      },
      Faulted, kFaultText)
      << "reading a zero-size block faults";
  EXPECT_EXIT(z[0] = 1, Faulted, kFaultText) << "writing one faults";
  for (void* q : zs) ASSERT_EQ(a()->free(q, kFreeSite), Verdict::kOk);
  cap_.text.clear();
  EXPECT_EQ(a()->free(zs[5], kFreeSite), Verdict::kDoubleFree);
  ExpectReport(cap_.text, Verdict::kDoubleFree, zs[5], 0, 0, kFreeSite);
  cap_.text.clear();
  EXPECT_EQ(a()->free(static_cast<char*>(zs[5]) + 4, kFreeSite), Verdict::kMisaligned);
  // A freed address comes back only after the cursor went round the whole arena.
  void* again = a()->alloc(0, kAllocSite);
  EXPECT_EQ(seen.count(again), 0u) << "a freed zero-size address is not handed out again at once";
  EXPECT_EQ(a()->free(again, kFreeSite), Verdict::kOk);
  // realloc from and to zero
  void* r = a()->alloc(0, kAllocSite);
  void* r2 = a()->realloc(r, 100, kAllocSite);
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(a()->check(r), Verdict::kDoubleFree) << "realloc released the zero-size block";
  memset(r2, 1, 100);
  EXPECT_EQ(a()->free(r2, kFreeSite), Verdict::kOk);
  EXPECT_EQ(a()->stats().zero_live, 0u);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- accounting, threads, default

TEST_F(ParanoidTest, EveryByteGoesBackAtTeardown) {
  Churn(20000, 5000);
  std::vector<void*> big;
  for (int i = 0; i < 6; ++i) big.push_back(a()->alloc((1 + i) << 19, kAllocSite));
  for (void* q : big) ASSERT_EQ(a()->free(q, kFreeSite), Verdict::kOk);
  void* z = a()->alloc(0, kAllocSite);
  ASSERT_NE(z, nullptr);
  ExpectAuditOk();
  const StatsSnapshot s = a()->stats();
  EXPECT_EQ(s.mapped_bytes, a()->pal().outstanding_bytes());
  EXPECT_EQ(s.mapped_bytes,
            s.pool_span_bytes + s.map_live_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes + s.metadata_bytes);
  a()->teardown();
  EXPECT_EQ(a()->pal().outstanding_bytes(), 0u) << "quarantine slots, zero arena and protected blocks all returned";
}

TEST_F(ParanoidTest, ThreadsFreeingEachOthersBlocksStayConsistent) {
  constexpr int kThreads = 4;
  constexpr int kPer = 20000;
  std::vector<std::vector<void*>> made(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        void* q = a()->alloc(16 + (i * 7 + t) % 900, kAllocSite);
        if (q == nullptr) return;
        made[t].push_back(q);
      }
    });
  }
  for (auto& th : ts) th.join();
  ts.clear();
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {  // each thread frees the next one's blocks (remote frees)
      for (void* q : made[(t + 1) % kThreads]) {
        if (a()->free(q, kFreeSite) != Verdict::kOk) return;
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  EXPECT_EQ(a()->stats().errors_total, 0u);
  ExpectAuditOk();
}

TEST(ParanoidDefault, DefaultModeHasNoCanaryAndNoQuarantine) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  ScopedAllocator<RecordingConfig> a(o);
  void* p = a->alloc(24, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_GT(a->usable_size(p), 24u) << "default mode: the whole size class is usable";
  ASSERT_EQ(a->free(p, kFreeSite), Verdict::kOk);
  void* q = a->alloc(24, kAllocSite);
  EXPECT_EQ(q, p) << "default mode reuses at once (LIFO free list): no quarantine";
  ASSERT_EQ(a->free(q, kFreeSite), Verdict::kOk);
  const StatsSnapshot s = a->stats();
  EXPECT_FALSE(s.paranoid);
  EXPECT_EQ(s.quarantine_bytes, 0u);
  EXPECT_EQ(a->pal().calls(PalOp::kProtect), 0u);
}

}  // namespace
