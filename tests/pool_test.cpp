// Pool module tests: size classes, reuse, alignment, span growth, remote frees, thread exit and heap reuse.
//
// Most tests go through Allocator<Config> (how Pool is wired: headers, Registry,
// thread heaps); the size-class arithmetic is tested directly.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "front/front.h"
#include "support/audit.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kSite = 0x1234;

/// Options with the threshold high enough that everything up to 1 MiB (and more) is Pool.
Options PoolOptions() {
  Options o;
  o.set(Opt::kThreshold, 32 * kMiB);
  o.set(Opt::kDecayMs, 0);
  return o;
}

/// The largest Pool class tested one by one.
constexpr size_t kTestedTop = 1 * kMiB;

void Fill(void* p, size_t n, unsigned char v) { memset(p, v, n); }

bool AllBytes(const void* p, size_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != v) return false;
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------ size classes (direct)

TEST(PoolSizeClasses, ClassOfIsTheSmallestClassThatFits) {
  for (size_t c = 0; c < SizeClasses::kCount; ++c) {
    const size_t u = SizeClasses::usable(c);
    EXPECT_EQ(SizeClasses::class_of(u), c) << "usable(" << c << ") = " << u;
    if (c > 0) {
      EXPECT_GT(u, SizeClasses::usable(c - 1));
      EXPECT_EQ(SizeClasses::class_of(SizeClasses::usable(c - 1) + 1), c);
    }
    EXPECT_EQ(u % 16, 0u) << "every block keeps user pointers 16-aligned";
    EXPECT_EQ(SizeClasses::block_size(c), u + kHeaderSize);
    const size_t span = SizeClasses::span_size(c);
    EXPECT_EQ(span % 4096, 0u);
    EXPECT_GE(span, SizeClasses::block_size(c)) << "a span holds at least one block of class " << c;
  }
  EXPECT_EQ(SizeClasses::class_of(0), 0u);
  EXPECT_EQ(SizeClasses::class_of(1), 0u);
  EXPECT_EQ(SizeClasses::class_of(17), 1u);
}

TEST(PoolSizeClasses, WasteIsBoundedAboveTheSmallClasses) {
  // Four classes per doubling: a request never gets more than 25% (+ one step) extra.
  for (size_t n = 129; n <= 4 * kMiB; n = n * 9 / 8 + 1) {
    const size_t u = SizeClasses::usable(SizeClasses::class_of(n));
    EXPECT_GE(u, n);
    EXPECT_LE(u, n + n / 4 + 16) << n;
  }
}

// ------------------------------------------------------------ every class through the allocator

TEST(Pool, EveryClassUpTo1MiBServesItsUsableSize) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  std::vector<std::pair<void*, size_t>> live;
  for (size_t c = 0; SizeClasses::usable(c) <= kTestedTop; ++c) {
    const size_t n = SizeClasses::usable(c);
    void* p = a->alloc(n, kSite + c);
    ASSERT_NE(p, nullptr) << "class " << c;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << "class " << c;
    Fill(p, n, static_cast<unsigned char>(c));
    const BlockInfo info = a->inspect(p);
    EXPECT_EQ(info.verdict, Verdict::kOk) << "class " << c;
    EXPECT_EQ(info.kind, ExtentKind::kPoolSpan) << "class " << c;
    EXPECT_EQ(info.fields.method, Method::kPool);
    EXPECT_EQ(info.fields.state, State::kLive);
    EXPECT_EQ(info.fields.size, n);
    EXPECT_EQ(info.fields.site, 0u) << "the default mode keeps no allocation site for a Pool block";
    EXPECT_GE(info.usable, n) << "class " << c;
    EXPECT_EQ(info.usable, n) << "an exact class request gets exactly that class";
    EXPECT_EQ(a->usable_size(p), info.usable);
    live.emplace_back(p, n);
  }
  ASSERT_GT(live.size(), 50u);
  EXPECT_AUDIT_OK(a);
  // Nothing written to one block leaked into another.
  for (size_t c = 0; c < live.size(); ++c) {
    EXPECT_TRUE(AllBytes(live[c].first, live[c].second, static_cast<unsigned char>(c))) << "class " << c;
  }
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, live.size());
  EXPECT_EQ(s.map_allocs, 0u);
  for (auto& [p, n] : live) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

TEST(Pool, InBetweenSizesGetTheNextClass) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  for (size_t n : {1ul, 15ul, 17ul, 100ul, 129ul, 1000ul, 4097ul, 65537ul, 300000ul, 1000001ul}) {
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    Fill(p, n, 0x5a);
    const BlockInfo info = a->inspect(p);
    EXPECT_EQ(info.kind, ExtentKind::kPoolSpan) << n;
    EXPECT_EQ(info.usable, SizeClasses::usable(SizeClasses::class_of(n))) << n;
    EXPECT_GE(info.usable, n);
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  EXPECT_AUDIT_OK(a);
}

TEST(Pool, ZeroSizeGetsAUniqueFreeableBlock) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  void* p = a->alloc(0, kSite);
  void* q = a->alloc(0, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(p, q);
  EXPECT_EQ(a->inspect(p).kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(q, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// ------------------------------------------------------------ reuse

TEST(Pool, FreedBlockIsReusedLifoOnTheSameThread) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  for (size_t n : {16ul, 48ul, 128ul, 200ul, 1024ul, 5000ul, 70000ul, 1 * kMiB}) {
    void* keep = a->alloc(n, kSite);  // so the span is not empty
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    void* q = a->alloc(n, kSite);
    EXPECT_EQ(q, p) << "size " << n;
    // LIFO over several blocks: exact within one span (free lists are per
    // span); across spans both blocks still come back before anything new.
    void* b1 = a->alloc(n, kSite);
    void* b2 = a->alloc(n, kSite);
    ASSERT_EQ(a->free(b1, kSite), Verdict::kOk);
    ASSERT_EQ(a->free(b2, kSite), Verdict::kOk);
    const bool same_span = a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(b1)) ==
                           a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(b2));
    void* r1 = a->alloc(n, kSite);
    void* r2 = a->alloc(n, kSite);
    if (same_span) {
      EXPECT_EQ(r1, b2) << "size " << n;
      EXPECT_EQ(r2, b1) << "size " << n;
    } else {
      EXPECT_EQ(std::set<void*>({r1, r2}), std::set<void*>({b1, b2})) << "size " << n;
    }
    for (void* x : {keep, q, b1, b2}) EXPECT_EQ(a->free(x, kSite), Verdict::kOk);
  }
  EXPECT_AUDIT_OK(a);
}

// A full span that gets a block back goes behind the head span, whose free blocks are used first;
// the blocks it holds are then used before the head carves new ones. (It used to go to the head,
// serve its one block and go back to the full list on the next allocation: two list moves and a
// refill per block in a program churning through many spans, 12% of ci/bench-small's churn.)
TEST(Pool, ASpanAFreeTakesOffTheFullListGoesBehindTheHead) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr size_t kSize = 1000;  // class 1024: 63 blocks per 64 KiB span
  const size_t cls = SizeClasses::class_of(kSize);
  const size_t per_span = SizeClasses::span_size(cls) / SizeClasses::block_size(cls);
  auto& reg = a->registry_for_testing();
  const auto span_of = [&](void* p) { return reg.lookup(reinterpret_cast<uintptr_t>(p)); };
  // Span A filled (and on the full list), then two blocks of span B, the head, carved.
  std::vector<void*> blocks;
  for (size_t i = 0; i < per_span + 2; ++i) blocks.push_back(a->alloc(kSize, kSite));
  Extent* const span_a = span_of(blocks[0]);
  Extent* const span_b = span_of(blocks[per_span]);
  ASSERT_NE(span_a, span_b);
  ASSERT_EQ(span_of(blocks[per_span - 1]), span_a);
  ASSERT_EQ(span_of(blocks[per_span + 1]), span_b);

  void* const in_head = blocks[per_span + 1];
  void* const in_full = blocks[3];
  ASSERT_EQ(a->free(in_head, kSite), Verdict::kOk);
  ASSERT_EQ(a->free(in_full, kSite), Verdict::kOk);  // A leaves the full list
  void* const first = a->alloc(kSize, kSite);
  void* const second = a->alloc(kSize, kSite);
  void* const third = a->alloc(kSize, kSite);
  EXPECT_EQ(first, in_head) << "the head span's free block comes first";
  EXPECT_EQ(second, in_full) << "then the block of the span behind it, before the head carves";
  EXPECT_EQ(span_of(third), span_b) << "then the head carves";
  EXPECT_EQ(std::find(blocks.begin(), blocks.end(), third), blocks.end()) << "a block never handed out";
  EXPECT_AUDIT_OK(a);
  for (void* p : blocks) {
    if (p != in_head && p != in_full) {
      ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    }
  }
  for (void* p : {first, second, third}) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(Pool, FreedBlockIsADoubleFreeUntilReused) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  void* p = a->alloc(100, kSite);
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->check(p), Verdict::kDoubleFree);
  void* q = a->alloc(100, kSite);
  ASSERT_EQ(q, p);
  EXPECT_EQ(a->check(q), Verdict::kOk);
  EXPECT_EQ(a->free(q, kSite), Verdict::kOk);
}

// ------------------------------------------------------------ alignment

TEST(Pool, AlignedAllocHonoursEveryAlignmentFrom32To64KiB) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  std::vector<std::pair<void*, size_t>> live;
  for (size_t align = 32; align <= 64 * kKiB; align *= 2) {
    for (size_t n : {1ul, 16ul, 24ul, 100ul, 1000ul, 5000ul, 100000ul}) {
      void* p = a->aligned_alloc(align, n, kSite);
      ASSERT_NE(p, nullptr) << "align " << align << " size " << n;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << "align " << align << " size " << n;
      Fill(p, n, 0xa5);
      const BlockInfo info = a->inspect(p);
      EXPECT_EQ(info.verdict, Verdict::kOk);
      EXPECT_EQ(info.kind, ExtentKind::kPoolSpan);
      EXPECT_EQ(info.fields.origin, Origin::kAligned);
      EXPECT_GE(info.usable, n) << "align " << align << " size " << n;
      EXPECT_EQ(a->usable_size(p), info.usable);
      live.emplace_back(p, n);
    }
  }
  EXPECT_AUDIT_OK(a);
  for (auto& [p, n] : live) {
    EXPECT_TRUE(AllBytes(p, n, 0xa5));
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
}

TEST(Pool, AlignedAllocRejectsANonPowerOfTwo) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  errno = 0;
  EXPECT_EQ(a->aligned_alloc(48, 100, kSite), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

// A freed aligned block must stay auditable and be seen as a double free: the
// free-list link must not land on the real header. With align=32 and a class
// whose blocks are 64-aligned, the real header sits at block+16, exactly where
// Pool::free writes its free-list link.
TEST(Pool, FreedAlignedBlockKeepsItsHeader) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  std::vector<void*> freed;
  for (size_t align = 32; align <= 4096; align *= 2) {
    for (size_t n : {1ul, 16ul, 48ul, 100ul, 1000ul}) {
      void* keep = a->aligned_alloc(align, n, kSite);  // keeps each span non-empty
      void* p = a->aligned_alloc(align, n, kSite);
      ASSERT_NE(p, nullptr);
      ASSERT_NE(keep, nullptr);
      ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
      EXPECT_EQ(a->check(p), Verdict::kDoubleFree) << "align " << align << " size " << n << ": a freed aligned block"
                                                   << " must read as a double free";
      freed.push_back(keep);
    }
  }
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  for (void* p : freed) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
}

// ------------------------------------------------------------ span growth and I4

TEST(Pool, ManyBlocksFillSeveralSpansAndNeverOverlap) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  const uint64_t spans0 = a->stats().pool_spans;
  constexpr size_t kN = 5000;
  constexpr size_t kSize = 1000;  // class 1024: 63 blocks per 64 KiB span
  std::vector<uintptr_t> ptrs;
  for (size_t i = 0; i < kN; ++i) {
    void* p = a->alloc(kSize, kSite);
    ASSERT_NE(p, nullptr);
    memset(p, static_cast<int>(i & 0xff), kSize);
    ptrs.push_back(reinterpret_cast<uintptr_t>(p));
  }
  const StatsSnapshot s = a->stats();
  const size_t cls = SizeClasses::class_of(kSize);
  const uint64_t per_span = SizeClasses::span_size(cls) / SizeClasses::block_size(cls);
  EXPECT_GE(s.pool_spans - spans0, (kN + per_span - 1) / per_span);
  EXPECT_GT(s.pool_spans - spans0, 1u);
  EXPECT_GE(s.pool_span_bytes, ((kN + per_span - 1) / per_span) * SizeClasses::span_size(cls));
  EXPECT_EQ(s.pool_live_bytes, kN * SizeClasses::block_size(cls));

  // I4: sorted, [p, p + usable) are disjoint, and each block lies in one Pool span.
  std::sort(ptrs.begin(), ptrs.end());
  auto& reg = a->registry_for_testing();
  for (size_t i = 0; i < ptrs.size(); ++i) {
    const uint64_t usable = a->inspect(reinterpret_cast<void*>(ptrs[i])).usable;
    ASSERT_GE(usable, kSize);
    if (i + 1 < ptrs.size()) {
      ASSERT_LE(ptrs[i] + usable + kHeaderSize, ptrs[i + 1]) << "blocks " << i << " and " << i + 1 << " overlap";
    }
    Extent* e = reg.lookup(ptrs[i]);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->kind, ExtentKind::kPoolSpan);
    EXPECT_EQ(reg.lookup(ptrs[i] + usable - 1), e);
    EXPECT_EQ(reg.lookup(ptrs[i] - kHeaderSize), e);
    EXPECT_GE(ptrs[i] - kHeaderSize, e->base);
    EXPECT_LE(ptrs[i] + usable, e->base + e->length);
  }
  EXPECT_AUDIT_OK(a);
  for (uintptr_t p : ptrs) ASSERT_EQ(a->free(reinterpret_cast<void*>(p), kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
  // All freed: reallocating kN blocks needs no new span.
  const uint64_t span_bytes = a->stats().pool_span_bytes;
  for (size_t i = 0; i < kN; ++i) ptrs[i] = reinterpret_cast<uintptr_t>(a->alloc(kSize, kSite));
  EXPECT_EQ(a->stats().pool_span_bytes, span_bytes);
  for (uintptr_t p : ptrs) ASSERT_EQ(a->free(reinterpret_cast<void*>(p), kSite), Verdict::kOk);
}

// ------------------------------------------------------------ threads

TEST(PoolThreads, CrossThreadFreesAreRemoteAndReused) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr size_t kN = 10000;
  constexpr size_t kSize = 64;
  std::vector<void*> ptrs(kN);
  for (size_t i = 0; i < kN; ++i) {
    ptrs[i] = a->alloc(kSize, kSite);  // thread A = this thread
    ASSERT_NE(ptrs[i], nullptr);
    memset(ptrs[i], 0x11, kSize);
  }
  const uint64_t remote0 = a->stats().remote_frees;
  const uint64_t span_bytes = a->stats().pool_span_bytes;
  const uint64_t spans = a->stats().pool_spans;
  size_t bad = 0;
  std::thread b([&] {
    for (void* p : ptrs) bad += a->free(p, kSite) != Verdict::kOk;
  });
  b.join();
  EXPECT_EQ(bad, 0u);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.remote_frees - remote0, kN);
  EXPECT_EQ(s.pool_frees, kN);
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
  for (void* p : ptrs) EXPECT_EQ(a->check(p), Verdict::kDoubleFree);

  // Back on A: the remote frees are drained and reused, no new span.
  const std::set<void*> old(ptrs.begin(), ptrs.end());
  size_t reused = 0;
  std::vector<void*> again(kN);
  for (size_t i = 0; i < kN; ++i) {
    again[i] = a->alloc(kSize, kSite);
    ASSERT_NE(again[i], nullptr);
    reused += old.count(again[i]);
  }
  s = a->stats();
  EXPECT_EQ(s.pool_span_bytes, span_bytes) << "remote frees must be drained back, not replaced by new spans";
  EXPECT_EQ(s.pool_spans, spans);
  // Every block comes from the drained remote frees, except the never-carved
  // tail of the span that was still partial (it is carved first).
  const size_t cls = SizeClasses::class_of(kSize);
  const size_t per_span = SizeClasses::span_size(cls) / SizeClasses::block_size(cls);
  const size_t uncarved = (per_span - kN % per_span) % per_span;
  EXPECT_EQ(reused + uncarved, kN);
  EXPECT_AUDIT_OK(a);
  for (void* p : again) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(PoolThreads, ConcurrentRemoteFreesAreNeverDropped) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr size_t kPerThread = 4000;
  constexpr int kThreads = 4;
  std::vector<std::vector<void*>> blocks(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 0; i < kPerThread; ++i) blocks[t].push_back(a->alloc(32 + (i % 3) * 48, kSite));
  }
  const uint64_t remote0 = a->stats().remote_frees;
  std::vector<std::thread> ts;
  std::atomic<size_t> bad{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (void* p : blocks[t]) bad += a->free(p, kSite) != Verdict::kOk;
    });
  }
  // Meanwhile the owner keeps allocating and freeing the same classes (drains race with pushes).
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> mine;
    for (int i = 0; i < 200; ++i) mine.push_back(a->alloc(32 + (i % 3) * 48, kSite));
    for (void* p : mine) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(a->stats().remote_frees - remote0, kThreads * kPerThread);
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

TEST(PoolThreads, ExitedThreadsBlocksAreFreeableAndItsSpansAdopted) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr size_t kSize = 3000;  // a class this thread never touches itself
  constexpr size_t kN = 100;
  std::vector<void*> ptrs;
  std::thread t([&] {
    for (size_t i = 0; i < kN; ++i) {
      void* p = a->alloc(kSize, kSite);
      memset(p, 0x33, kSize);
      ptrs.push_back(p);
    }
  });
  t.join();  // its heap is retired, its spans abandoned with the blocks still live
  ASSERT_EQ(ptrs.size(), kN);
  for (void* p : ptrs) ASSERT_NE(p, nullptr);
  EXPECT_AUDIT_OK(a);
  const uint64_t spans = a->stats().pool_spans;
  const uint64_t remote0 = a->stats().remote_frees;
  for (void* p : ptrs) {
    EXPECT_TRUE(AllBytes(p, kSize, 0x33));
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);  // remote free into an abandoned span
  }
  EXPECT_EQ(a->stats().remote_frees - remote0, kN);
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);

  // A new thread adopts the abandoned span(s) instead of mapping new ones.
  const std::set<void*> old(ptrs.begin(), ptrs.end());
  size_t reused = 0;
  std::vector<void*> again;
  std::thread u([&] {
    for (size_t i = 0; i < kN; ++i) {
      void* p = a->alloc(kSize, kSite);
      reused += old.count(p);
      again.push_back(p);
    }
  });
  u.join();
  EXPECT_EQ(a->stats().pool_spans, spans) << "the abandoned span was not adopted";
  EXPECT_EQ(reused, kN);
  EXPECT_AUDIT_OK(a);
  for (void* p : again) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(PoolThreads, ThreadsComingAndGoingReuseHeaps) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr int kRounds = 1000;
  constexpr int kWarmup = 5;
  uint64_t meta_after_warmup = 0, spans_after_warmup = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::thread t([&] {
      void* blocks[24];
      for (int i = 0; i < 24; ++i) {
        blocks[i] = a->alloc(static_cast<size_t>(16) << (i % 12), kSite);
        if (blocks[i] != nullptr) memset(blocks[i], i, 16);
      }
      for (void* p : blocks) a->free(p, kSite);
    });
    t.join();
    const StatsSnapshot s = a->stats();
    if (round == kWarmup) {
      meta_after_warmup = s.metadata_bytes;
      spans_after_warmup = s.pool_spans;
    } else if (round > kWarmup) {
      ASSERT_EQ(s.metadata_bytes, meta_after_warmup) << "metadata grew at round " << round;
      ASSERT_EQ(s.pool_spans, spans_after_warmup) << "spans grew at round " << round;
    }
  }
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, uint64_t{kRounds} * 24);
  EXPECT_EQ(s.pool_frees, uint64_t{kRounds} * 24);
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

TEST(PoolThreads, ConcurrentThreadsComingAndGoingStayBounded) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  constexpr int kRounds = 150;
  constexpr int kThreads = 4;
  uint64_t meta_warm = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        std::vector<void*> v;
        for (int i = 0; i < 64; ++i) v.push_back(a->alloc(static_cast<size_t>(32 + 16 * ((i + t) % 8)), kSite));
        for (void* p : v) a->free(p, kSite);
      });
    }
    for (auto& t : ts) t.join();
    if (round == 10) meta_warm = a->stats().metadata_bytes;
  }
  // Without heap reuse, 600 heaps would add megabytes of metadata; with it, at
  // most a descriptor chunk or two beyond the warm-up.
  EXPECT_LE(a->stats().metadata_bytes, meta_warm + 2 * 64 * kKiB);
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

TEST(PoolThreads, BlocksLeftLiveByManyExitedThreadsAreAllFreeable) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  std::vector<void*> leftovers;
  for (int round = 0; round < 50; ++round) {
    std::vector<void*> mine;
    std::thread t([&] {
      for (int i = 0; i < 20; ++i) mine.push_back(a->alloc(static_cast<size_t>(100 + 50 * i), kSite));
    });
    t.join();
    leftovers.insert(leftovers.end(), mine.begin(), mine.end());
  }
  EXPECT_AUDIT_OK(a);
  for (void* p : leftovers) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->stats().pool_live_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

// ------------------------------------------------------------ I3 at the threshold

// ------------------------------------------------------------ trim: empty spans' pages go back

namespace {

constexpr size_t kTrimSize = 1000;  // class 1024: 63 blocks per 64 KiB span

size_t TrimSpanBlocks() {
  const size_t c = SizeClasses::class_of(kTrimSize);
  return SizeClasses::span_size(c) / SizeClasses::block_size(c);
}

uint64_t TrimSpanBytes() { return SizeClasses::span_size(SizeClasses::class_of(kTrimSize)); }

/// Pages of extent e resident in memory (mincore): how a test sees that a purge gave them back
/// without reading them (a block handed out again is undefined to memcheck until written).
size_t ResidentPages(const Extent* e) {
  std::vector<unsigned char> v((e->length + 4095) / 4096);
  if (mincore(reinterpret_cast<void*>(e->base), e->length, v.data()) != 0) return SIZE_MAX;
  size_t n = 0;
  for (unsigned char b : v) n += b & 1;
  return n;
}

/// n blocks of kTrimSize, each filled with 0x5a.
std::vector<void*> AllocFilled(Allocator<RecordingConfig>* a, size_t n) {
  std::vector<void*> v;
  for (size_t i = 0; i < n; ++i) {
    void* p = a->alloc(kTrimSize, kSite);
    if (p == nullptr) break;
    Fill(p, kTrimSize, 0x5a);
    v.push_back(p);
  }
  return v;
}

}  // namespace

// A trim (flush: hak_flush, malloc_trim) gives back the pages of every span of the caller's whose
// carved blocks are all free, through the releaser (I1): the spans stay mapped and registered,
// none of their pages is resident, and they start carving afresh. A span with one live block
// keeps its pages and the block its bytes.
TEST(PoolTrim, AFlushPurgesTheCallersEmptySpansAndKeepsTheOthers) {
  ScopedAllocator<RecordingConfig> a(PoolOptions());
  const size_t per_span = TrimSpanBlocks();
  auto& reg = a->registry_for_testing();
  const auto span_of = [&](void* p) { return reg.lookup(reinterpret_cast<uintptr_t>(p)); };
  // Spans A and B filled, span C (the head) partly carved.
  std::vector<void*> blocks = AllocFilled(&*a, 2 * per_span + 5);
  ASSERT_EQ(blocks.size(), 2 * per_span + 5);
  Extent* const span_a = span_of(blocks[0]);
  Extent* const span_b = span_of(blocks[per_span]);
  Extent* const span_c = span_of(blocks.back());
  ASSERT_NE(span_a, span_c);
  void* const keep = blocks[per_span + 7];  // the one live block of span B
  for (void* p : blocks) {
    if (p != keep) {
      ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    }
  }
  const uint64_t spans = a->stats().pool_spans;
  const uint64_t advises = a->pal().calls(PalOp::kAdvise);
  a->flush();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.purged_bytes, 2 * TrimSpanBytes()) << "spans A and C, not B";
  EXPECT_GE(s.purge_calls, 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kAdvise) - advises, s.purge_calls);
  EXPECT_EQ(a->pal().calls(PalOp::kAdvise), a->pal().calls(PalOp::kAdvise, Layer::kRelease)) << "I1";
  EXPECT_EQ(s.pool_spans, spans) << "purged spans stay mapped and registered";
  EXPECT_TRUE(AllBytes(keep, kTrimSize, 0x5a)) << "a live block keeps its bytes";
  EXPECT_EQ(a->check(keep), Verdict::kOk);
  EXPECT_EQ(ResidentPages(span_a), 0u);
  EXPECT_EQ(ResidentPages(span_c), 0u);
  EXPECT_GT(ResidentPages(span_b), 0u);
  EXPECT_AUDIT_OK(a);

  // A stale pointer into a purged span is still turned away (its span carved nothing now).
  const Verdict stale = a->check(blocks[0]);
  EXPECT_TRUE(stale == Verdict::kInvalidPointer || stale == Verdict::kDoubleFree) << verdict_name(stale);

  // The purged spans carve afresh from their first block: every block of the three spans but
  // the live one is handed out again, and no new span is mapped.
  std::vector<void*> again;
  for (size_t i = 0; i < 3 * per_span - 1; ++i) {
    void* p = a->alloc(kTrimSize, kSite);
    ASSERT_NE(p, nullptr);
    Fill(p, kTrimSize, 0x6b);
    again.push_back(p);
  }
  EXPECT_EQ(a->stats().pool_spans, spans);
  for (void* first : {blocks[0], blocks[2 * per_span]}) {
    EXPECT_NE(std::find(again.begin(), again.end(), first), again.end()) << "a purged span's first block";
  }
  EXPECT_AUDIT_OK(a);
  for (void* p : again) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  ASSERT_EQ(a->free(keep, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// Blocks another thread freed sit on the span's remote stack: the trim drains them first, so a
// span emptied by remote frees (even one on the full list) is purged too.
TEST(PoolTrim, ASpanEmptiedByRemoteFreesIsPurged) {
  ScopedAllocator<RecordingConfig> a(PoolOptions());
  std::vector<void*> blocks = AllocFilled(&*a, TrimSpanBlocks());  // one full span
  ASSERT_EQ(blocks.size(), TrimSpanBlocks());
  std::thread t([&] {
    for (void* p : blocks) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  t.join();
  EXPECT_EQ(a->stats().remote_frees, blocks.size());
  a->flush();
  EXPECT_EQ(a->stats().purged_bytes, TrimSpanBytes());
  EXPECT_EQ(ResidentPages(a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(blocks[0]))), 0u);
  EXPECT_AUDIT_OK(a);
  void* p = a->alloc(kTrimSize, kSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, blocks[0]) << "the purged span carves from its start again";
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// A full span with some blocks freed by another thread is not empty, but the trim drained its
// remote frees: it goes back to the partial list, behind the head, so its blocks are used before
// the head carves new ones (as after a drain on the allocation path).
TEST(PoolTrim, AFullSpanTheTrimDrainsGoesBackToThePartialList) {
  ScopedAllocator<RecordingConfig> a(PoolOptions());
  const size_t per_span = TrimSpanBlocks();
  std::vector<void*> blocks = AllocFilled(&*a, per_span + 1);  // span A full, span B the head
  ASSERT_EQ(blocks.size(), per_span + 1);
  const std::set<void*> remote(blocks.begin() + 10, blocks.begin() + 13);
  std::thread t([&] {
    for (void* p : remote) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  t.join();
  a->flush();
  EXPECT_EQ(a->stats().purged_bytes, 0u) << "neither span is empty";
  EXPECT_AUDIT_OK(a);
  std::set<void*> got;
  for (size_t i = 0; i < remote.size(); ++i) got.insert(a->alloc(kTrimSize, kSite));
  EXPECT_EQ(got, remote) << "the drained blocks come before new ones";
  for (void* p : got) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  for (void* p : blocks) {
    if (remote.count(p) == 0) {
      ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    }
  }
  EXPECT_AUDIT_OK(a);
}

// An exited thread's spans are abandoned: a trim from any thread purges the empty ones, which a
// thread adopts later instead of mapping new ones. A live thread's spans are its own: the trim
// leaves them, their pages and their free lists as they are. (The live thread uses another
// class, so it adopts none of the exited thread's spans.)
TEST(PoolTrim, ExitedThreadsEmptySpansArePurgedALiveThreadsAreNot) {
  ScopedAllocator<RecordingConfig> a(PoolOptions());
  auto& reg = a->registry_for_testing();
  std::set<Extent*> gone_spans;
  std::thread gone([&] {
    std::vector<void*> v = AllocFilled(&*a, 3 * TrimSpanBlocks());
    for (void* p : v) gone_spans.insert(reg.lookup(reinterpret_cast<uintptr_t>(p)));
    for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  gone.join();
  ASSERT_EQ(gone_spans.size(), 3u);
  constexpr size_t kOther = 500;
  std::atomic<int> stage{0};
  Extent* alive_span = nullptr;
  std::thread alive([&] {
    std::vector<void*> v;
    for (int i = 0; i < 10; ++i) {
      v.push_back(a->alloc(kOther, kSite));
      ASSERT_NE(v.back(), nullptr);
      Fill(v.back(), kOther, 0x5a);
    }
    alive_span = reg.lookup(reinterpret_cast<uintptr_t>(v.back()));
    for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    stage = 1;
    while (stage.load() != 2) std::this_thread::yield();
    void* p = a->alloc(kOther, kSite);  // its free list is intact: LIFO gives the last block back
    EXPECT_EQ(p, v.back());
    ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  while (stage.load() != 1) std::this_thread::yield();
  a->flush();
  EXPECT_EQ(a->stats().purged_bytes, 3 * TrimSpanBytes()) << "the exited thread's three spans only";
  for (Extent* e : gone_spans) EXPECT_EQ(ResidentPages(e), 0u);
  EXPECT_GT(ResidentPages(alive_span), 0u) << "a live thread's span was purged";
  stage = 2;
  alive.join();
  EXPECT_AUDIT_OK(a);
  const uint64_t spans = a->stats().pool_spans;
  std::thread adopter([&] {
    void* p = a->alloc(kTrimSize, kSite);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(gone_spans.count(reg.lookup(reinterpret_cast<uintptr_t>(p))), 1u) << "a purged span is adopted";
    ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  adopter.join();
  EXPECT_EQ(a->stats().pool_spans, spans);
  EXPECT_AUDIT_OK(a);
}

// Paranoid mode checks a freed block's fill when it is reused: a trim must not wipe that
// evidence, so it purges no span.
TEST(PoolTrim, ParanoidModePurgesNothing) {
  Options o = PoolOptions();
  o.set(Opt::kHardening, kHardeningParanoid);
  ScopedAllocator<RecordingConfig> a(o);
  std::vector<void*> v = AllocFilled(&*a, 2 * TrimSpanBlocks());
  for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  a->flush();
  EXPECT_EQ(a->stats().purge_calls, 0u);
  EXPECT_EQ(a->pal().calls(PalOp::kAdvise), 0u);
  EXPECT_AUDIT_OK(a);
}

TEST(Pool, RequestsBelowTheThresholdArePoolAndAtItMap) {
  Options o;
  o.set(Opt::kThreshold, 256 * kKiB);
  ScopedAllocator<TestConfig> a(o);
  void* below = a->alloc(256 * kKiB - 1, kSite);
  void* at = a->alloc(256 * kKiB, kSite);
  EXPECT_EQ(a->inspect(below).kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(a->inspect(at).kind, ExtentKind::kMapBlock);
  // An aligned request below the threshold stays in the Pool even with its slack.
  void* al = a->aligned_alloc(64 * kKiB, 256 * kKiB - 1, kSite);
  ASSERT_NE(al, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(al) % (64 * kKiB), 0u);
  EXPECT_EQ(a->inspect(al).kind, ExtentKind::kPoolSpan);
  EXPECT_AUDIT_OK(a);
  for (void* p : {below, at, al}) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// ------------------------------------------------------------ metadata placement

// A thread freeing another thread's blocks reads a span's first line and pushes onto its third; the
// owner writes its second on every allocation and free. Each group on a line of its own keeps the
// freeing thread from taking the owner's line at every free (and the owner from taking it back).
TEST(PoolMetadata, SpanLinesSeparateWhoWritesThem) {
  ScopedAllocator<TestConfig> a(PoolOptions());
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  auto* s = static_cast<Span*>(a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p)));
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->kind, ExtentKind::kPoolSpan);
  const auto start = reinterpret_cast<uintptr_t>(s);
  const auto line = [&](const void* field) { return (reinterpret_cast<uintptr_t>(field) - start) / kMetaLine; };
  EXPECT_EQ(start % kMetaLine, 0u) << "a span starts a cache line";
  // Read by every free, written only while carving, on a list move or an adoption.
  for (const void* f : {static_cast<const void*>(&s->base), static_cast<const void*>(&s->cls),
                        static_cast<const void*>(&s->block_size), static_cast<const void*>(&s->inverse),
                        static_cast<const void*>(&s->shift), static_cast<const void*>(&s->capacity),
                        static_cast<const void*>(&s->carved), static_cast<const void*>(&s->owner_tag)}) {
    EXPECT_EQ(line(f), 0u);
  }
  // Written by the owner on every allocation and free of its blocks (and user0, which only its pops read).
  for (const void* f : {static_cast<const void*>(&s->free), static_cast<const void*>(&s->prev),
                        static_cast<const void*>(&s->next), static_cast<const void*>(&s->user0)}) {
    EXPECT_EQ(line(f), 1u);
  }
  EXPECT_EQ(line(&s->remote), 2u) << "other threads' frees";
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
}

// A program walking a page-aligned block page by page writes the first cache line of every page,
// and so keeps evicting the L1 set those lines share. Descriptors placed there cost every large
// free and malloc a miss (src/backing/README.md): no Span or MapBlock descriptor may overlap the
// first 64 bytes of any page.
TEST(PoolMetadata, DescriptorsKeepClearOfTheFirstLineOfEveryPage) {
  ScopedAllocator<TestConfig> a;
  std::vector<void*> blocks;
  for (size_t i = 0; i < 120; ++i) blocks.push_back(a->alloc(300 * kKiB + i * 4096, kSite));  // Map
  size_t classes = 0;
  for (size_t c = 0; SizeClasses::usable(c) < kMinThreshold; c += 2, ++classes) {  // Pool under every strategy
    blocks.push_back(a->alloc(SizeClasses::usable(c), kSite));
  }
  size_t spans = 0, maps = 0;
  for (void* p : blocks) {
    ASSERT_NE(p, nullptr);
    Extent* e = a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p));
    ASSERT_NE(e, nullptr);
    const size_t size = e->kind == ExtentKind::kPoolSpan ? sizeof(Span) : sizeof(MapBlock);
    (e->kind == ExtentKind::kPoolSpan ? spans : maps) += 1;
    const uintptr_t offset = reinterpret_cast<uintptr_t>(e) % kMetaPage;
    EXPECT_GE(offset, kMetaLine) << "descriptor of " << p << " starts in the first line of a page";
    EXPECT_LE(offset + size, kMetaPage) << "descriptor of " << p << " runs into the next page's first line";
  }
  EXPECT_EQ(maps, 120u);
  EXPECT_EQ(spans, classes);
  for (void* p : blocks) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
}
