// Misuse detection (I8): every misuse the header or the Registry can see is
// reported with its kind, address, size and sites, and never acted on.
//
// Each test runs with on_error=report and a capturing sink, and checks four
// things: the Verdict returned, the error counter, the report line, and that
// nothing the allocator owns changed (audit() passes, the stats other than the
// error counters are unchanged, a live block is still usable and freeable).
#include <errno.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/report.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kAllocSite = 0x1234;
constexpr uintptr_t kFreeSite = 0x5678;

using Capture = hakmem_test::ReportCapture;
using hakmem_test::hex;

Options report_options() {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  return o;
}

/// What a report line must say. size < 0: the size is not trusted (not named).
struct Expected {
  Verdict kind;
  const void* ptr;
  int64_t size = -1;
  uintptr_t alloc_site = 0;
  uintptr_t free_site = kFreeSite;
};

/// Checks that `text` is exactly one report line for `e`.
void ExpectReport(const std::string& text, const Expected& e) {
  SCOPED_TRACE("report: " + text);
  const std::string head = std::string("hakmem: ") + verdict_name(e.kind) + " of " + hex(e.ptr) + " (";
  EXPECT_EQ(text.rfind(head, 0), 0u) << "expected to start with: " << head;
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line per report";
  if (e.kind == Verdict::kInvalidPointer) {
    EXPECT_NE(text.find("not allocated by hakmem"), std::string::npos);
  }
  if (e.size >= 0) {
    EXPECT_NE(text.find("(" + std::to_string(e.size) + " bytes"), std::string::npos) << "names the size";
  } else {
    EXPECT_EQ(text.find(" bytes"), std::string::npos) << "an untrusted size must not be reported";
  }
  if (e.alloc_site != 0) {
    EXPECT_NE(text.find("allocated at " + hex(e.alloc_site)), std::string::npos) << "names the allocation site";
  } else {
    EXPECT_EQ(text.find("allocated at"), std::string::npos);
  }
  if (e.free_site != 0) {
    EXPECT_NE(text.find("freed at " + hex(e.free_site)), std::string::npos);
  } else {
    EXPECT_EQ(text.find("freed at"), std::string::npos);
  }
}

/// Every statistic except the error counters must be equal.
void ExpectSameStats(const StatsSnapshot& a, const StatsSnapshot& b) {
#define HAKMEM_SAME(f) EXPECT_EQ(a.f, b.f) << "stat " #f " changed"
  HAKMEM_SAME(mode);
  HAKMEM_SAME(strategy);
  HAKMEM_SAME(threshold);
  HAKMEM_SAME(pool_allocs);
  HAKMEM_SAME(pool_frees);
  HAKMEM_SAME(pool_live_bytes);
  HAKMEM_SAME(pool_span_bytes);
  HAKMEM_SAME(pool_spans);
  HAKMEM_SAME(remote_frees);
  HAKMEM_SAME(map_allocs);
  HAKMEM_SAME(map_frees);
  HAKMEM_SAME(map_live_bytes);
  HAKMEM_SAME(cache_hits);
  HAKMEM_SAME(cache_misses);
  HAKMEM_SAME(cache_puts);
  HAKMEM_SAME(cache_evictions);
  HAKMEM_SAME(cache_bypass);
  HAKMEM_SAME(cache_bytes);
  HAKMEM_SAME(cache_blocks);
  HAKMEM_SAME(cache_cap);
  HAKMEM_SAME(release_blocks);
  HAKMEM_SAME(release_bytes);
  HAKMEM_SAME(release_flushes);
  HAKMEM_SAME(unmap_calls);
  HAKMEM_SAME(syscalls_saved);
  HAKMEM_SAME(pending_bytes);
  HAKMEM_SAME(batch_bytes);
  HAKMEM_SAME(mapped_bytes);
  HAKMEM_SAME(metadata_bytes);
#undef HAKMEM_SAME
}

/// The error counters of `after` are those of `before` plus `n` of kind `v`.
void ExpectErrorsAdded(const StatsSnapshot& before, const StatsSnapshot& after, Verdict v, uint64_t n) {
  for (size_t i = 0; i < static_cast<size_t>(Verdict::kCount); ++i) {
    const uint64_t want = before.errors[i] + (static_cast<Verdict>(i) == v ? n : 0);
    EXPECT_EQ(after.errors[i], want) << "error counter of " << verdict_name(static_cast<Verdict>(i));
  }
  EXPECT_EQ(after.errors_total, before.errors_total + n);
}

void FillAndCheck(void* p, size_t n, unsigned char byte) {
  memset(p, byte, n);
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i += 61) ASSERT_EQ(b[i], byte);
  ASSERT_EQ(b[n - 1], byte);
}

/// A report-mode allocator with a capturing sink.
class MisuseTest : public ::testing::Test {
protected:
  explicit MisuseTest(Options o = report_options()) : a_(o) { a_->set_report_sink(&Capture::sink, &cap_); }

  Allocator<TestConfig>* a() { return &*a_; }

  /// The allocation site a report about p names: a Map block's header keeps it, a Pool block's
  /// prefix in the default mode does not (its guard and sealed word, header/README.md).
  uintptr_t AllocSite(const void* p) {
    const Extent* e = a_->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p));
    return e != nullptr && e->kind == ExtentKind::kMapBlock ? kAllocSite : 0;
  }

  void ExpectAuditOk() {
    const AuditResult r = a_->audit();
    EXPECT_TRUE(r.ok) << r.failure;
  }

  /**
   * Frees `p` (expecting `v`) and checks the counter, the report and that no
   * statistic other than the error counters moved; clears the capture.
   */
  void ExpectRejected(void* p, Verdict v, const Expected& e, Origin origin = Origin::kMalloc) {
    const StatsSnapshot before = a_->stats();
    const uint64_t count = a_->error_count(v);
    cap_.text.clear();
    EXPECT_EQ(a_->free(p, e.free_site, origin), v);
    EXPECT_EQ(a_->error_count(v), count + 1);
    ExpectReport(cap_.text, e);
    const StatsSnapshot after = a_->stats();
    ExpectSameStats(before, after);
    ExpectErrorsAdded(before, after, v, 1);
    cap_.text.clear();
  }

  ScopedAllocator<TestConfig> a_;
  Capture cap_;
};

// ---------------------------------------------------------------- double free

TEST_F(MisuseTest, DoubleFreeOfPoolBlock) {
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->inspect(p).kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  EXPECT_TRUE(cap_.text.empty());
  EXPECT_EQ(a()->check(p), Verdict::kDoubleFree);
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, 100, AllocSite(p)});
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, 100, AllocSite(p)});  // and again
  ExpectAuditOk();
  // The rejected frees did not put the block on a free list twice: two allocations differ.
  void* q1 = a()->alloc(100, kAllocSite);
  void* q2 = a()->alloc(100, kAllocSite);
  ASSERT_NE(q1, nullptr);
  ASSERT_NE(q2, nullptr);
  EXPECT_NE(q1, q2);
  EXPECT_EQ(a()->free(q1, 0), Verdict::kOk);
  EXPECT_EQ(a()->free(q2, 0), Verdict::kOk);
  ExpectAuditOk();
  EXPECT_EQ(a()->error_count(Verdict::kDoubleFree), 2u);
}

TEST_F(MisuseTest, DoubleFreeOfMapBlockInBigCache) {
  const size_t n = 1 << 20;
  void* other = a()->alloc(4 * n, kAllocSite);  // another class, freed first: it takes the thread's large slot
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(a()->free(other, kFreeSite), Verdict::kOk);
  ASSERT_GT(a()->stats().slot_bytes, 0u);
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->inspect(p).kind, ExtentKind::kMapBlock);
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  ASSERT_EQ(a()->stats().cache_blocks, 1u) << "the block should be sitting in BigCache";
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, static_cast<int64_t>(n), AllocSite(p)});
  ExpectAuditOk();
  EXPECT_EQ(a()->stats().cache_blocks, 1u);
  // The cached block is intact and serves the next request of its class.
  void* q = a()->alloc(n, kAllocSite);
  ASSERT_EQ(q, p);
  EXPECT_EQ(a()->stats().cache_hits, 1u);
  FillAndCheck(q, n, 0x5a);
  EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, DoubleFreeOfMapBlockInTheLargeSlot) {
  const size_t n = 1 << 20;
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  ASSERT_GT(a()->stats().slot_bytes, 0u) << "the block should be sitting in this thread's large slot";
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, static_cast<int64_t>(n), AllocSite(p)});
  ExpectAuditOk();
  EXPECT_EQ(a()->stats().cache_blocks, 0u) << "the rejected free changed nothing";
  // The slot block is intact and serves the next request of its class, once.
  void* q = a()->alloc(n, kAllocSite);
  ASSERT_EQ(q, p);
  EXPECT_EQ(a()->stats().slot_hits, 1u);
  void* r = a()->alloc(n, kAllocSite);
  ASSERT_NE(r, nullptr);
  EXPECT_NE(r, q);
  FillAndCheck(q, n, 0x5a);
  EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
  EXPECT_EQ(a()->free(r, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, DoubleFreeWithTheLargeSlotEmptyIsCheckedOnTheSlotPath) {
  // The slot path's own checks (header Live, checksum) are what stops this one: the slot is
  // empty, so a free that passed them would put the BigCache block in it a second time.
  const size_t n = 1 << 20;
  void* one = a()->alloc(n, kAllocSite);
  void* two = a()->alloc(2 * n, kAllocSite);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  EXPECT_EQ(a()->free(one, kFreeSite), Verdict::kOk);  // into the slot
  EXPECT_EQ(a()->free(two, kFreeSite), Verdict::kOk);  // the slot is taken: BigCache
  ASSERT_EQ(a()->alloc(n, kAllocSite), one);           // the slot is empty again
  ExpectRejected(two, Verdict::kDoubleFree, {Verdict::kDoubleFree, two, static_cast<int64_t>(2 * n), AllocSite(two)});
  EXPECT_EQ(a()->stats().slot_bytes, 0u) << "the rejected free did not fill the slot";
  EXPECT_EQ(a()->stats().cache_blocks, 1u);
  ExpectAuditOk();
  EXPECT_EQ(a()->free(one, 0), Verdict::kOk);
  ExpectAuditOk();
}

class MisusePendingTest : public MisuseTest {
protected:
  static Options options() {
    Options o = report_options();
    o.set(Opt::kCache, 0);                  // straight to the releaser
    o.set(Opt::kBatch, uint64_t{1} << 30);  // and it stays pending
    o.set(Opt::kDecayMs, 0);
    return o;
  }
  MisusePendingTest() : MisuseTest(options()) {}
};

TEST_F(MisusePendingTest, DoubleFreeOfPendingMapBlockThenInvalidAfterFlush) {
  const size_t n = 1 << 20;
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  StatsSnapshot s = a()->stats();
  ASSERT_EQ(s.cache_blocks, 0u);
  ASSERT_GT(s.pending_bytes, n) << "the block should be pending in the releaser";
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, static_cast<int64_t>(n), AllocSite(p)});
  ExpectAuditOk();
  EXPECT_EQ(a()->stats().pending_bytes, s.pending_bytes);

  a()->flush();
  s = a()->stats();
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.release_flushes, 1u);
  ExpectAuditOk();
  // The pages are gone: the pointer is no longer hakmem's.
  EXPECT_EQ(a()->check(p), Verdict::kInvalidPointer);
  ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
  ExpectAuditOk();
  EXPECT_EQ(a()->error_count(Verdict::kDoubleFree), 1u);
}

// ---------------------------------------------------------------- foreign pointers

char g_global[256];

TEST_F(MisuseTest, FreeOfStackAddress) {
  char local[64];
  memset(local, 1, sizeof(local));
  void* p = local + 16;
  ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
  EXPECT_EQ(local[16], 1);
  ExpectAuditOk();
}

TEST_F(MisuseTest, FreeOfGlobal) {
  void* p = g_global + 32;
  ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
  ExpectAuditOk();
}

TEST_F(MisuseTest, FreeOfGlibcMallocPointer) {
  for (size_t n : {size_t{32}, size_t{4000}, size_t{1} << 20 /* glibc mmaps this one */}) {
    void* p = ::malloc(n);
    ASSERT_NE(p, nullptr);
    memset(p, 0x11, n);
    ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
    EXPECT_EQ(static_cast<unsigned char*>(p)[0], 0x11) << "the foreign block was not touched";
    ::free(p);  // still glibc's to free
  }
  ExpectAuditOk();
}

TEST_F(MisuseTest, FreeOfWildValues) {
  // Never read before a foreign pointer: none of these may fault.
  for (uintptr_t v :
       {uintptr_t{1}, uintptr_t{0x10}, uintptr_t{0x1000}, uintptr_t{0xdead0000}, uintptr_t{0x00007ffffffff000},
        uintptr_t{0x0000800000000000}, uintptr_t{0xdead000000000000}, ~uintptr_t{0}, ~uintptr_t{0} - 15}) {
    void* p = reinterpret_cast<void*>(v);
    ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
  }
  ExpectAuditOk();
}

// The Pool arena's table answers for every address of its 16 GiB: a slot no span took (its pages
// inaccessible), and a span's own slots past its last block, must be turned away without a read
// of the address, like any foreign pointer.
TEST_F(MisuseTest, FreeInsideThePoolArenaButInNoBlockIsInvalid) {
  const auto& arena = a()->pool_arena_for_testing();
  ASSERT_NE(arena.slots(), 0u);
  void* live = a()->alloc(20000, kAllocSite);  // its span is not a whole number of slots
  ASSERT_NE(live, nullptr);
  bool inside = false;
  const Span* s = arena.span_of(reinterpret_cast<uintptr_t>(live), &inside);
  ASSERT_NE(s, nullptr);
  const uintptr_t last_block_end = s->base + uint64_t{s->capacity} * s->block_size;
  std::vector<uintptr_t> wild = {arena.cursor() + 16, arena.base() + PoolArena<LinuxPal>::kBytes - 16,
                                 s->base + s->length + 16};  // the span's last slot, past its length
  ASSERT_LT(last_block_end + 32, s->base + s->length);
  ASSERT_NE(s->length % PoolArena<LinuxPal>::kSlotBytes, 0u);
  wild.push_back(last_block_end + 16);  // the span's tail, past its last block
  for (uintptr_t v : wild) {
    SCOPED_TRACE(hex(reinterpret_cast<void*>(v)));
    void* p = reinterpret_cast<void*>(v);
    ExpectRejected(p, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, p});
  }
  EXPECT_EQ(a()->free(live, 0), Verdict::kOk);
  ExpectAuditOk();
}

// The free fast path looks a pointer up by its low 47 bits only (Registry::lookup_initialized()),
// so a live block's address with a higher bit set finds the block's own extent there. The
// block check must still turn it away (its offset is at least 2^47), and the checked path must
// call it what it is: not hakmem's. The block stays live.
TEST_F(MisuseTest, LiveBlockAddressWithABitAbove46IsInvalidAndTheBlockStaysLive) {
  for (size_t n : {size_t{48}, size_t{1000}, size_t{64 * 1024}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->alloc(n, kAllocSite);
    ASSERT_NE(p, nullptr);
    for (unsigned bit : {47u, 52u, 63u}) {
      void* q = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | uintptr_t{1} << bit);
      ExpectRejected(q, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, q});
    }
    EXPECT_EQ(a()->check(p), Verdict::kOk);
    FillAndCheck(p, n, 0x5a);
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  }
  ExpectAuditOk();
}

TEST_F(MisuseTest, FreeOfNullIsOkAndSilent) {
  const StatsSnapshot before = a()->stats();
  EXPECT_EQ(a()->free(nullptr, kFreeSite), Verdict::kOk);
  EXPECT_EQ(a()->free(nullptr, kFreeSite, Origin::kNew), Verdict::kOk);
  EXPECT_EQ(a()->free(nullptr, kFreeSite, Origin::kNewArray), Verdict::kOk);
  EXPECT_TRUE(cap_.text.empty());
  const StatsSnapshot after = a()->stats();
  ExpectSameStats(before, after);
  EXPECT_EQ(after.errors_total, 0u);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- interior pointers

TEST_F(MisuseTest, InteriorPointersOfPoolBlockAreMisaligned) {
  const size_t n = 64 * 1024;
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->inspect(p).kind, ExtentKind::kPoolSpan);
  FillAndCheck(p, n, 0x33);
  auto* c = static_cast<char*>(p);
  for (size_t off : {size_t{8}, size_t{16}, size_t{4096}, n - 1}) {
    SCOPED_TRACE(off);
    void* q = c + off;
    ExpectRejected(q, Verdict::kMisaligned, {Verdict::kMisaligned, q, static_cast<int64_t>(n), AllocSite(q)});
  }
  // p - 16 points at the header itself.
  ExpectRejected(c - 16, Verdict::kMisaligned,
                 {Verdict::kMisaligned, c - 16, static_cast<int64_t>(n), AllocSite(c - 16)});
  ExpectAuditOk();
  EXPECT_EQ(a()->check(p), Verdict::kOk);
  FillAndCheck(p, n, 0x44);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, InteriorPointersOfMapBlockAreMisaligned) {
  const size_t n = 1 << 20;
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a()->inspect(p).kind, ExtentKind::kMapBlock);
  FillAndCheck(p, n, 0x33);
  auto* c = static_cast<char*>(p);
  for (size_t off : {size_t{8}, size_t{16}, size_t{4096}, n / 2, n - 1}) {
    SCOPED_TRACE(off);
    void* q = c + off;
    ExpectRejected(q, Verdict::kMisaligned, {Verdict::kMisaligned, q, static_cast<int64_t>(n), AllocSite(q)});
  }
  ExpectAuditOk();
  FillAndCheck(p, n, 0x44);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, PointerPastCarvedBlocksOfPoolSpanIsInvalid) {
  // A fresh allocator: this is the first block of its class, so its span has one carved block.
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  const BlockInfo info = a()->inspect(p);
  ASSERT_EQ(info.kind, ExtentKind::kPoolSpan);
  const size_t block_size = SizeClasses::block_size(SizeClasses::class_of(100));
  for (size_t k : {size_t{1}, size_t{4}, size_t{100}}) {
    SCOPED_TRACE(k);
    void* q = static_cast<char*>(p) + k * block_size;  // where block k's user pointer would be
    EXPECT_EQ(a()->check(q), Verdict::kInvalidPointer);
    ExpectRejected(q, Verdict::kInvalidPointer, {Verdict::kInvalidPointer, q});
  }
  ExpectAuditOk();
  // The span is still usable: the next allocations are carved normally.
  void* q = a()->alloc(100, kAllocSite);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, static_cast<char*>(p) + block_size);
  EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- corrupted headers

TEST_F(MisuseTest, UnderflowOverwritingHeaderIsCorrupted) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->alloc(n, kAllocSite);
    ASSERT_NE(p, nullptr);
    char* h = static_cast<char*>(p) - 16;
    char saved[16];
    memcpy(saved, h, 16);
    memset(h, 0x41, 16);
    EXPECT_EQ(a()->check(p), Verdict::kCorrupted);
    ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
    EXPECT_EQ(memcmp(h, "AAAAAAAAAAAAAAAA", 16), 0) << "a rejected free does not rewrite the header";
    // The allocator changed nothing: restoring the bytes makes the block whole again.
    memcpy(h, saved, 16);
    ExpectAuditOk();
    EXPECT_EQ(a()->check(p), Verdict::kOk);
    FillAndCheck(p, n, 0x77);
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
    ExpectAuditOk();
  }
}

// Detection of a block's own underflow: every write of 1 to 16 bytes just before a Pool block
// (any byte values but the ones already there) is caught at its free, sized free, realloc and
// malloc_usable_size, and nothing is changed; the block is whole again once the bytes are back.
TEST_F(MisuseTest, OwnUnderflowOf1To16BytesIsCorruptedAtFree) {
  for (size_t size : {size_t{16}, size_t{48}, size_t{128}, size_t{1024}}) {
    void* p = a()->alloc(size, kAllocSite);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(a()->inspect(p).kind, ExtentKind::kPoolSpan);
    auto* u = static_cast<unsigned char*>(p);
    unsigned char saved[16];
    memcpy(saved, u - 16, 16);
    for (size_t n = 1; n <= 16; ++n) {
      for (const unsigned char byte : {0x00, 0x41, 0xff}) {
        SCOPED_TRACE(testing::Message() << size << " bytes, underflow of " << n << " bytes of " << int(byte));
        memset(u - n, byte, n);
        if (memcmp(u - 16, saved, 16) == 0) continue;  // wrote what was there: no change to see
        ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
        EXPECT_EQ(a()->free_sized(p, size, kFreeSite, Origin::kMalloc), Verdict::kCorrupted);
        errno = 0;
        EXPECT_EQ(a()->realloc(p, 2 * size, kFreeSite), nullptr);
        EXPECT_EQ(errno, EINVAL);
        EXPECT_EQ(a()->usable_size(p), 0u);
        cap_.text.clear();
        memcpy(u - 16, saved, 16);
        ASSERT_EQ(a()->check(p), Verdict::kOk);
      }
    }
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  }
  ExpectAuditOk();
}

// Detection of a neighbour's overflow: every write of 1 to 16 bytes past the end of a Pool block
// reaches the prefix of the next block of its span, which is caught at that block's free (plain,
// sized, realloc, usable size), with nothing changed; the overflowing block itself still frees.
TEST_F(MisuseTest, NeighbourOverflowOf1To16BytesIsCorruptedAtItsFree) {
  for (size_t size : {size_t{16}, size_t{48}, size_t{128}, size_t{1024}}) {
    void* p = a()->alloc(size, kAllocSite);
    void* next = a()->alloc(size, kAllocSite);
    ASSERT_TRUE(p != nullptr && next != nullptr);
    auto* end = static_cast<unsigned char*>(p) + size;  // an exact class: the block's last byte is end - 1
    ASSERT_EQ(end + 16, static_cast<unsigned char*>(next)) << "carved one after the other";
    unsigned char saved[16];
    memcpy(saved, end, 16);
    for (size_t n = 1; n <= 16; ++n) {
      for (const unsigned char byte : {0x00, 0x41, 0xff}) {
        SCOPED_TRACE(testing::Message() << size << " bytes, overflow of " << n << " bytes of " << int(byte));
        memset(end, byte, n);
        if (memcmp(end, saved, 16) == 0) continue;
        ExpectRejected(next, Verdict::kCorrupted, {Verdict::kCorrupted, next, -1, 0});
        EXPECT_EQ(a()->free_sized(next, size, kFreeSite, Origin::kMalloc), Verdict::kCorrupted);
        errno = 0;
        EXPECT_EQ(a()->realloc(next, 2 * size, kFreeSite), nullptr);
        EXPECT_EQ(errno, EINVAL);
        EXPECT_EQ(a()->usable_size(next), 0u);
        EXPECT_EQ(a()->check(p), Verdict::kOk) << "the overflowing block is intact";
        cap_.text.clear();
        memcpy(end, saved, 16);
        ASSERT_EQ(a()->check(next), Verdict::kOk);
      }
    }
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
    EXPECT_EQ(a()->free(next, 0), Verdict::kOk);
  }
  ExpectAuditOk();
}

TEST_F(MisuseTest, SingleFlippedHeaderBitIsCorrupted) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    void* p = a()->alloc(n, kAllocSite);
    ASSERT_NE(p, nullptr);
    auto* h = static_cast<unsigned char*>(p) - 16;
    for (unsigned bit : {0u, 1u, 17u, 31u, 32u, 33u, 34u, 36u, 38u, 42u, 50u, 63u, 64u, 70u, 110u, 111u, 120u, 127u}) {
      SCOPED_TRACE(testing::Message() << "size " << n << " bit " << bit);
      h[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
      ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
      h[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
      EXPECT_EQ(a()->check(p), Verdict::kOk);
    }
    ExpectAuditOk();
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  }
  ExpectAuditOk();
}

TEST_F(MisuseTest, HeaderCopiedFromAnotherLiveBlockIsCorrupted) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->alloc(n, kAllocSite);
    void* q = a()->alloc(n, kAllocSite + 16);
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    char* hp = static_cast<char*>(p) - 16;
    char saved[16];
    memcpy(saved, hp, 16);
    memcpy(hp, static_cast<char*>(q) - 16, 16);
    ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
    memcpy(hp, saved, 16);
    ExpectAuditOk();
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
    EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
    ExpectAuditOk();
  }
}

// A Pool block's prefix has no method field: the Registry's kind is its method. A Map header
// forged over it (valid checksum, method Map) does not open as a Pool prefix: corrupted (I2).
TEST_F(MisuseTest, ForgedMapHeaderInPoolBlockIsCorrupted) {
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  char* h = static_cast<char*>(p) - 16;
  char saved[16];
  memcpy(saved, h, 16);
  const BlockInfo info = a()->inspect(p);
  ASSERT_EQ(info.verdict, Verdict::kOk);
  HeaderFields f = info.fields;
  f.method = Method::kMap;
  a()->codec_for_testing().encode(f, h);
  ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
  memcpy(h, saved, 16);
  ExpectAuditOk();
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, ForgedHeaderWithMethodPoolInMapBlockIsMethodMismatch) {
  const size_t n = 1 << 20;
  void* p = a()->alloc(n, kAllocSite);
  ASSERT_NE(p, nullptr);
  char* h = static_cast<char*>(p) - 16;
  char saved[16];
  memcpy(saved, h, 16);
  HeaderFields f = a()->inspect(p).fields;
  f.method = Method::kPool;
  a()->codec_for_testing().encode(f, h);
  ExpectRejected(p, Verdict::kMethodMismatch, {Verdict::kMethodMismatch, p, static_cast<int64_t>(n), AllocSite(p)});
  memcpy(h, saved, 16);
  ExpectAuditOk();
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, ForgedHeaderWithSizeBeyondTheBlockIsCorrupted) {
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  char* h = static_cast<char*>(p) - 16;
  char saved[16];
  memcpy(saved, h, 16);
  const HeaderFields f = a()->inspect(p).fields;
  // A validly sealed word (only the size check can tell) saying far more than the 112-byte block holds.
  a()->pool_seal_for_testing().encode(PoolFields{PoolTag::kLive, f.origin, f.strategy, 1 << 20},
                                      reinterpret_cast<uintptr_t>(p));
  ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0});
  memcpy(h, saved, 16);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- origins

TEST_F(MisuseTest, FreeOfNewBlockIsMismatched) {
  void* p = a()->alloc(100, kAllocSite, Origin::kNew);
  ASSERT_NE(p, nullptr);
  ExpectRejected(p, Verdict::kMismatchedOrigin, {Verdict::kMismatchedOrigin, p, 100, AllocSite(p)});
  ExpectRejected(p, Verdict::kMismatchedOrigin, {Verdict::kMismatchedOrigin, p, 100, AllocSite(p)});
  // The line names both families.
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite, Origin::kMalloc), Verdict::kMismatchedOrigin);
  EXPECT_NE(cap_.text.find("allocated by new, released by malloc"), std::string::npos) << cap_.text;
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, kFreeSite, Origin::kNewArray), Verdict::kMismatchedOrigin);
  EXPECT_NE(cap_.text.find("allocated by new, released by new[]"), std::string::npos) << cap_.text;
  ExpectAuditOk();
  // Released the right way, it goes.
  EXPECT_EQ(a()->free(p, 0, Origin::kNew), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, NewArrayFreedAsNewIsMismatched) {
  for (size_t n : {size_t{48}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->alloc(n, kAllocSite, Origin::kNewArray);
    ASSERT_NE(p, nullptr);
    cap_.text.clear();
    const uint64_t before = a()->error_count(Verdict::kMismatchedOrigin);
    ExpectRejected(p, Verdict::kMismatchedOrigin,
                   {Verdict::kMismatchedOrigin, p, static_cast<int64_t>(n), AllocSite(p)}, Origin::kNew);
    EXPECT_EQ(a()->free(p, kFreeSite, Origin::kNew), Verdict::kMismatchedOrigin);
    EXPECT_NE(cap_.text.find("allocated by new[], released by new"), std::string::npos) << cap_.text;
    EXPECT_EQ(a()->free(p, kFreeSite, Origin::kAligned), Verdict::kMismatchedOrigin);
    EXPECT_EQ(a()->error_count(Verdict::kMismatchedOrigin), before + 3);
    ExpectAuditOk();
    FillAndCheck(p, n, 0x12);
    EXPECT_EQ(a()->free(p, 0, Origin::kNewArray), Verdict::kOk);
    ExpectAuditOk();
  }
}

TEST_F(MisuseTest, MallocAndAlignedAreOneFamily) {
  void* p = a()->alloc(100, kAllocSite, Origin::kMalloc);
  void* q = a()->aligned_alloc(64, 100, kAllocSite);
  void* r = a()->alloc(1 << 20, kAllocSite, Origin::kMalloc);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(a()->free(p, kFreeSite, Origin::kAligned), Verdict::kOk);
  EXPECT_EQ(a()->free(q, kFreeSite, Origin::kMalloc), Verdict::kOk);
  EXPECT_EQ(a()->free(r, kFreeSite, Origin::kAligned), Verdict::kOk);
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  EXPECT_EQ(a()->stats().errors_total, 0u);
  ExpectAuditOk();
}

class MisuseNoOriginCheckTest : public MisuseTest {
protected:
  static Options options() {
    Options o = report_options();
    o.set(Opt::kOriginCheck, 0);
    return o;
  }
  MisuseNoOriginCheckTest() : MisuseTest(options()) {}
};

TEST_F(MisuseNoOriginCheckTest, MixingIsAccepted) {
  const Origin kinds[] = {Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned};
  for (Origin made : kinds) {
    for (Origin released : kinds) {
      void* p = a()->alloc(100, kAllocSite, made);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(a()->free(p, kFreeSite, released), Verdict::kOk)
          << origin_name(made) << " released by " << origin_name(released);
    }
  }
  EXPECT_TRUE(cap_.text.empty()) << cap_.text;
  EXPECT_EQ(a()->stats().errors_total, 0u);
  // Other misuse is still reported.
  void* p = a()->alloc(100, kAllocSite, Origin::kNew);
  EXPECT_EQ(a()->free(p, kFreeSite, Origin::kMalloc), Verdict::kOk);
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, 100, AllocSite(p)}, Origin::kNew);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- realloc, usable_size

TEST_F(MisuseTest, ReallocOfFreedBlockIsReportedAndReturnsNull) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->alloc(n, kAllocSite);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
    const StatsSnapshot before = a()->stats();
    cap_.text.clear();
    errno = 0;
    EXPECT_EQ(a()->realloc(p, 2 * n, kFreeSite), nullptr);
    EXPECT_EQ(errno, EINVAL);
    ExpectReport(cap_.text, {Verdict::kDoubleFree, p, static_cast<int64_t>(n), AllocSite(p)});
    const StatsSnapshot after = a()->stats();
    ExpectSameStats(before, after);
    ExpectErrorsAdded(before, after, Verdict::kDoubleFree, 1);
    ExpectAuditOk();
  }
}

TEST_F(MisuseTest, ReallocOfForeignOrInteriorPointerIsReported) {
  char local[32];
  cap_.text.clear();
  errno = 0;
  EXPECT_EQ(a()->realloc(local, 64, kFreeSite), nullptr);
  EXPECT_EQ(errno, EINVAL);
  ExpectReport(cap_.text, {Verdict::kInvalidPointer, local});
  EXPECT_EQ(a()->error_count(Verdict::kInvalidPointer), 1u);

  void* p = a()->alloc(200, kAllocSite);
  ASSERT_NE(p, nullptr);
  memset(p, 0x5c, 200);
  void* q = static_cast<char*>(p) + 16;
  cap_.text.clear();
  errno = 0;
  EXPECT_EQ(a()->realloc(q, 64, kFreeSite), nullptr);
  EXPECT_EQ(errno, EINVAL);
  ExpectReport(cap_.text, {Verdict::kMisaligned, q, 200, AllocSite(q)});
  EXPECT_EQ(static_cast<unsigned char*>(p)[199], 0x5c);
  // realloc of a new'd block is a mismatched use too.
  void* r = a()->alloc(100, kAllocSite, Origin::kNew);
  cap_.text.clear();
  errno = 0;
  EXPECT_EQ(a()->realloc(r, 300, kFreeSite), nullptr);
  EXPECT_EQ(errno, EINVAL);
  ExpectReport(cap_.text, {Verdict::kMismatchedOrigin, r, 100, AllocSite(r)});
  ExpectAuditOk();
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  EXPECT_EQ(a()->free(r, 0, Origin::kNew), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, UsableSizeOfForeignPointerIsZeroAndReported) {
  char local[32];
  void* m = ::malloc(64);
  const StatsSnapshot before = a()->stats();
  cap_.text.clear();
  EXPECT_EQ(a()->usable_size(local), 0u);
  ExpectReport(cap_.text, {Verdict::kInvalidPointer, local, -1, 0, 0});
  cap_.text.clear();
  EXPECT_EQ(a()->usable_size(m), 0u);
  ExpectReport(cap_.text, {Verdict::kInvalidPointer, m, -1, 0, 0});
  ::free(m);
  const StatsSnapshot after = a()->stats();
  ExpectSameStats(before, after);
  ExpectErrorsAdded(before, after, Verdict::kInvalidPointer, 2);
  // And of a freed block.
  void* p = a()->alloc(100, kAllocSite);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  cap_.text.clear();
  EXPECT_EQ(a()->usable_size(p), 0u);
  ExpectReport(cap_.text, {Verdict::kDoubleFree, p, 100, AllocSite(p), 0});
  EXPECT_EQ(a()->usable_size(nullptr), 0u);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- aligned blocks

TEST_F(MisuseTest, AlignedBlockDoubleFree) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->aligned_alloc(4096, n, kAllocSite);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
    FillAndCheck(p, n, 0x21);
    EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
    ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, static_cast<int64_t>(n), AllocSite(p)},
                   Origin::kAligned);
    ExpectAuditOk();
  }
}

TEST_F(MisuseTest, AlignedBlockInteriorPointersAreMisaligned) {
  for (size_t n : {size_t{100}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a()->aligned_alloc(4096, n, kAllocSite);
    ASSERT_NE(p, nullptr);
    auto* c = static_cast<char*>(p);
    for (ptrdiff_t off : {ptrdiff_t{8}, ptrdiff_t{16}, ptrdiff_t{64}, static_cast<ptrdiff_t>(n) - 1, ptrdiff_t{-16}}) {
      SCOPED_TRACE(off);
      void* q = c + off;
      ExpectRejected(q, Verdict::kMisaligned, {Verdict::kMisaligned, q, static_cast<int64_t>(n), AllocSite(q)},
                     Origin::kAligned);
    }
    ExpectAuditOk();
    FillAndCheck(p, n, 0x22);
    EXPECT_EQ(a()->free(p, 0, Origin::kAligned), Verdict::kOk);
    ExpectAuditOk();
  }
}

TEST_F(MisuseTest, AlignedPoolBlockStartIsMisaligned) {
  // The pointer an unaligned allocation of that block would have had: the block's
  // forward record is not a header a user pointer may follow.
  void* p = a()->aligned_alloc(4096, 100, kAllocSite);
  ASSERT_NE(p, nullptr);
  const BlockInfo info = a()->inspect(p);
  ASSERT_EQ(info.kind, ExtentKind::kPoolSpan);
  // Find the block start: the first 16-byte step below p whose header is a forward record.
  const HeaderCodec& codec = a()->codec_for_testing();
  char* start = nullptr;
  for (char* h = static_cast<char*>(p) - 32; h >= static_cast<char*>(p) - 4096; h -= 16) {
    HeaderFields f;
    if (codec.decode(h, &f) && f.method == Method::kForward) {
      start = h;
      break;
    }
  }
  if (start == nullptr) GTEST_SKIP() << "block happened to be 4096-aligned: no forward record";
  void* q = start + 16;
  ExpectRejected(q, Verdict::kMisaligned, {Verdict::kMisaligned, q, 100, AllocSite(q)}, Origin::kAligned);
  ExpectAuditOk();
  EXPECT_EQ(a()->free(p, 0, Origin::kAligned), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, FreedSmallAlignedPoolBlocksStayCoherent) {
  // Small alignments put the real header a little way into the block, right
  // where a freed Pool block keeps its free-list link (block + 16) unless the
  // layout keeps them apart. A legal free must leave every header readable:
  // audit passes, and a double free is a double free naming size and site.
  for (size_t align : {size_t{32}, size_t{64}, size_t{128}}) {
    SCOPED_TRACE(testing::Message() << "align " << align);
    std::vector<void*> blocks;
    for (int i = 0; i < 8; ++i) {
      void* q = a()->aligned_alloc(align, 100, kAllocSite);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u);
      FillAndCheck(q, 100, 0x31);
      blocks.push_back(q);
    }
    for (void* q : blocks) EXPECT_EQ(a()->free(q, kFreeSite, Origin::kAligned), Verdict::kOk);
    {
      const AuditResult r = a()->audit();
      EXPECT_TRUE(r.ok) << "after legal frees of aligned blocks: " << r.failure;
    }
    for (void* q : blocks) {
      EXPECT_EQ(a()->check(q, Origin::kAligned), Verdict::kDoubleFree);
      ExpectRejected(q, Verdict::kDoubleFree, {Verdict::kDoubleFree, q, 100, AllocSite(q)}, Origin::kAligned);
    }
    ExpectAuditOk();
  }
}

TEST_F(MisuseTest, AlignedBlockCorruptedHeaderIsCorrupted) {
  void* p = a()->aligned_alloc(4096, 100, kAllocSite);
  ASSERT_NE(p, nullptr);
  char* h = static_cast<char*>(p) - 16;
  char saved[16];
  memcpy(saved, h, 16);
  memset(h, 0x41, 16);
  ExpectRejected(p, Verdict::kCorrupted, {Verdict::kCorrupted, p, -1, 0}, Origin::kAligned);
  memcpy(h, saved, 16);
  ExpectAuditOk();
  EXPECT_EQ(a()->free(p, 0, Origin::kAligned), Verdict::kOk);
  ExpectAuditOk();
}

// ---------------------------------------------------------------- sites

TEST_F(MisuseTest, ReportSymbolizesACodeAddressSite) {
  const auto site = reinterpret_cast<uintptr_t>(&::strlen);
  void* p = a()->alloc(1 << 20, site);  // a Map block: its header keeps the site
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  cap_.text.clear();
  EXPECT_EQ(a()->free(p, 0), Verdict::kDoubleFree);
  EXPECT_EQ(cap_.text.rfind("hakmem: double free of " + hex(p) + " (1048576 bytes, allocated at ", 0), 0u) << cap_.text;
  EXPECT_NE(cap_.text.find(" in "), std::string::npos) << "names the object: " << cap_.text;
  EXPECT_EQ(cap_.text.find("freed at"), std::string::npos) << cap_.text;
}

// ---------------------------------------------------------------- threads

TEST_F(MisuseTest, DoubleFreeAfterRemoteFreeByAnotherThread) {
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  Verdict v = Verdict::kCount;
  std::thread t([&] { v = a()->free(p, kFreeSite); });  // the remote-free path
  t.join();
  EXPECT_EQ(v, Verdict::kOk);
  EXPECT_EQ(a()->stats().remote_frees, 1u);
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, 100, AllocSite(p)});
  ExpectAuditOk();
  // Once drained, the block is reused exactly once.
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) {
    void* q = a()->alloc(100, kAllocSite);
    ASSERT_NE(q, nullptr);
    for (void* b : blocks) ASSERT_NE(b, q);
    blocks.push_back(q);
    if (q == p) break;
  }
  for (void* b : blocks) EXPECT_EQ(a()->free(b, 0), Verdict::kOk);
  ExpectAuditOk();
}

TEST_F(MisuseTest, DoubleFreeFromAnotherThreadAfterLocalFree) {
  void* p = a()->alloc(100, kAllocSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);  // the local path
  const StatsSnapshot before = a()->stats();
  Verdict v = Verdict::kCount;
  std::thread t([&] { v = a()->free(p, kFreeSite); });
  t.join();
  EXPECT_EQ(v, Verdict::kDoubleFree);
  ExpectReport(cap_.text, {Verdict::kDoubleFree, p, 100, AllocSite(p)});
  const StatsSnapshot after = a()->stats();
  ExpectSameStats(before, after);
  ExpectErrorsAdded(before, after, Verdict::kDoubleFree, 1);
  ExpectAuditOk();
}

TEST_F(MisuseTest, DoubleFreeByTheSameRemoteThread) {
  void* p = a()->alloc(100, kAllocSite);
  void* big = a()->alloc(1 << 20, kAllocSite);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(big, nullptr);
  Verdict v[4] = {Verdict::kCount, Verdict::kCount, Verdict::kCount, Verdict::kCount};
  std::thread t([&] {
    v[0] = a()->free(p, kFreeSite);
    v[1] = a()->free(p, kFreeSite);
    v[2] = a()->free(big, kFreeSite);
    v[3] = a()->free(big, kFreeSite);
  });
  t.join();
  EXPECT_EQ(v[0], Verdict::kOk);
  EXPECT_EQ(v[1], Verdict::kDoubleFree);
  EXPECT_EQ(v[2], Verdict::kOk);
  EXPECT_EQ(v[3], Verdict::kDoubleFree);
  EXPECT_EQ(a()->error_count(Verdict::kDoubleFree), 2u);
  const size_t nl = cap_.text.find('\n');
  ASSERT_NE(nl, std::string::npos);
  ExpectReport(cap_.text.substr(0, nl + 1), {Verdict::kDoubleFree, p, 100, AllocSite(p)});
  ExpectReport(cap_.text.substr(nl + 1), {Verdict::kDoubleFree, big, 1 << 20, AllocSite(big)});
  const StatsSnapshot s = a()->stats();
  EXPECT_EQ(s.pool_frees, 1u);
  EXPECT_EQ(s.remote_frees, 1u);
  EXPECT_EQ(s.map_frees, 1u);
  EXPECT_EQ(s.cache_blocks, 1u);
  ExpectAuditOk();
}

TEST_F(MisuseTest, DoubleFreeAfterFreeingThreadExited) {
  // The freeing thread's heap is retired at exit; the block's header still says Free.
  void* p = a()->alloc(100, kAllocSite);
  void* q = nullptr;
  std::thread t([&] {
    q = a()->alloc(200, kAllocSite);  // a block owned by the thread's heap
    EXPECT_EQ(a()->free(p, kFreeSite), Verdict::kOk);
  });
  t.join();
  ASSERT_NE(q, nullptr);
  ExpectRejected(p, Verdict::kDoubleFree, {Verdict::kDoubleFree, p, 100, AllocSite(p)});
  EXPECT_EQ(a()->free(q, kFreeSite), Verdict::kOk);  // remote free into an abandoned span
  ExpectRejected(q, Verdict::kDoubleFree, {Verdict::kDoubleFree, q, 200, AllocSite(q)});
  ExpectAuditOk();
}

// ---------------------------------------------------------------- default mode aborts

// ---------------------------------------------------------------- a write after free into a free-list link

/// The first 8 bytes of a freed Pool block: its free-list link.
uint64_t LinkOf(const void* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}
void SetLink(void* p, uint64_t v) { memcpy(p, &v, sizeof(v)); }

// A freed Pool block's link overwritten by a write after free (text, a raw pointer to a live
// block, a null pointer, the address of a local, the link of another freed block of the span)
// is reported at the next allocation of its class, naming the block, its size and who allocated
// it; no allocation hands out a block that is live, the forged target, or the same block twice.
TEST_F(MisuseTest, CorruptedFreeLinkIsReportedAtTheNextAllocationNeverFollowed) {
  int local = 0;
  for (int kind = 0; kind < 5; ++kind) {
    SCOPED_TRACE(kind);
    void* keep = a()->alloc(48, kAllocSite);  // live neighbours, one of them the forgery's target
    void* p = a()->alloc(48, kAllocSite);
    void* q = a()->alloc(48, kAllocSite);
    void* r = a()->alloc(48, kAllocSite);
    ASSERT_TRUE(keep != nullptr && p != nullptr && q != nullptr && r != nullptr);
    ASSERT_EQ(a()->free(r, 0), Verdict::kOk);
    ASSERT_EQ(a()->free(p, 0), Verdict::kOk);  // p heads its span's free list, its link names r
    const uint64_t forged[] = {0x4141414141414141ull, reinterpret_cast<uintptr_t>(q), 0,
                               reinterpret_cast<uintptr_t>(&local), LinkOf(r)};
    SetLink(p, forged[kind]);
    const uint64_t before = a()->error_count(Verdict::kCorruptedLink);
    cap_.text.clear();
    std::vector<void*> got;
    for (int i = 0; i < 64; ++i) {
      void* x = a()->alloc(48, 0x99);
      ASSERT_NE(x, nullptr);
      for (void* live : {keep, q}) ASSERT_NE(x, live) << "a live block handed out";
      ASSERT_NE(reinterpret_cast<uintptr_t>(x), forged[kind]);
      for (void* g : got) ASSERT_NE(x, g) << "handed out twice";
      got.push_back(x);
    }
    EXPECT_EQ(a()->error_count(Verdict::kCorruptedLink), before + 1);
    ExpectReport(cap_.text, {Verdict::kCorruptedLink, p, 48, AllocSite(p), 0});
    for (void* g : got) EXPECT_EQ(a()->free(g, 0), Verdict::kOk);
    EXPECT_EQ(a()->free(keep, 0), Verdict::kOk);
    EXPECT_EQ(a()->free(q, 0), Verdict::kOk);
    cap_.text.clear();
  }
}

// The link of a block freed by another thread, on its span's remote stack: overwritten
// after a remote free, it is reported when the owner drains the stack (here at its trim), and
// the block past it is never followed.
TEST_F(MisuseTest, CorruptedRemoteLinkIsReportedAtTheOwnersDrain) {
  void* keep = a()->alloc(100, kAllocSite);
  void* p = a()->alloc(100, kAllocSite);
  void* q = a()->alloc(100, kAllocSite);
  ASSERT_TRUE(keep != nullptr && p != nullptr && q != nullptr);
  std::thread t([&] {
    EXPECT_EQ(a()->free(q, 0), Verdict::kOk);  // the remote stack: q, then p on top
    EXPECT_EQ(a()->free(p, 0), Verdict::kOk);
  });
  t.join();
  SetLink(p, LinkOf(p) ^ 0x10);  // one flipped bit
  cap_.text.clear();
  a()->flush();  // drains this thread's spans' remote stacks
  EXPECT_EQ(a()->error_count(Verdict::kCorruptedLink), 1u);
  ExpectReport(cap_.text, {Verdict::kCorruptedLink, p, 100, AllocSite(p), 0});
  std::vector<void*> got;
  for (int i = 0; i < 64; ++i) {
    void* x = a()->alloc(100, 0x99);
    ASSERT_NE(x, nullptr);
    ASSERT_NE(x, keep);
    for (void* g : got) ASSERT_NE(x, g) << "handed out twice";
    got.push_back(x);
  }
  for (void* g : got) EXPECT_EQ(a()->free(g, 0), Verdict::kOk);
  EXPECT_EQ(a()->free(keep, 0), Verdict::kOk);
}

TEST(MisuseDeathTest, CorruptedFreeLinkAbortsByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ScopedAllocator<TestConfig> a;
        void* keep = a->alloc(100, kAllocSite);
        void* p = a->alloc(100, kAllocSite);
        a->free(p, kFreeSite);
        memset(p, 'A', 8);
        a->alloc(100, kAllocSite);
        a->free(keep, kFreeSite);
      },
      "hakmem: corrupted free list of 0x[0-9a-f]+ \\(100 bytes\\)");
}

TEST(MisuseDeathTest, DoubleFreeAbortsByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ScopedAllocator<TestConfig> a;  // on_error=abort, stderr sink
        void* p = a->alloc(100, kAllocSite);
        a->free(p, kFreeSite);
        a->free(p, kFreeSite);
      },
      "hakmem: double free of 0x[0-9a-f]+ \\(100 bytes, freed at 0x5678\\)");
}

TEST(MisuseDeathTest, DoubleFreeOfMapBlockAbortsByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ScopedAllocator<TestConfig> a;
        void* p = a->alloc(1 << 20, kAllocSite);
        a->free(p, kFreeSite);
        a->free(p, kFreeSite);
      },
      "hakmem: double free of 0x[0-9a-f]+");
}

TEST(MisuseDeathTest, InvalidFreeAbortsByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ScopedAllocator<TestConfig> a;
        int x = 0;
        a->free(&x, kFreeSite);
      },
      "hakmem: invalid free of 0x[0-9a-f]+ \\(not allocated by hakmem");
}

TEST(MisuseDeathTest, RemoteDoubleFreeAbortsByDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ScopedAllocator<TestConfig> a;
        void* p = a->alloc(100, kAllocSite);
        std::thread t([&] { a->free(p, kFreeSite); });
        t.join();
        a->free(p, kFreeSite);
      },
      "hakmem: double free of 0x[0-9a-f]+");
}

}  // namespace
