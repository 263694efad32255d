// BigCache module tests: warm reuse with no syscall, requested <= usable, the byte limit and its growth on
// regret up to cache_max and decay back to the cap, bypass, cross-site hits, flush, and the Cached state of
// cached blocks (I6, I9, I10).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/audit.h"

using namespace hakmem;

namespace {

using RecAlloc = ScopedAllocator<RecordingConfig>;
using Cache = BigCache<RecordingConfig::Pal>;

constexpr uintptr_t kSiteA = 0x400100;

/// A 2 MiB request's mapping: its class's usable size, plus the header, to the page.
constexpr uint64_t kBlock2M = 2 * kMiB + 4096;

Options CacheOptions(uint64_t cache = 64 * kMiB, uint64_t threshold = 256 * kKiB, uint64_t cache_max = 0) {
  Options o;
  o.set(Opt::kCache, cache);
  o.set(Opt::kCacheMax, cache_max);  // 0: never past the cap (the growth tests set it)
  o.set(Opt::kThreshold, threshold);
  o.set(Opt::kDecayMs, 0);    // no decay tick: flushes only on the threshold or flush()
  o.set(Opt::kLargeSlot, 0);  // BigCache itself, with no large slot in front (LargeSlot.* tests the slot)
  return o;
}

uint64_t MapCalls(RecAlloc& a) { return a->pal().calls(PalOp::kMap, Layer::kMap); }
uint64_t Unmaps(RecAlloc& a) { return a->pal().calls(PalOp::kUnmap); }

/// A site whose BigCache bucket differs from `other`'s.
uintptr_t SiteInAnotherBucket(uintptr_t other) {
  for (uintptr_t s = other + 0x10;; s += 0x10) {
    if (Cache::bucket_of(s) != Cache::bucket_of(other)) return s;
  }
}

}  // namespace

// ------------------------------------------------------------ classes (direct)

TEST(BigCacheClasses, UsableCoversEveryRequestOfItsClass) {
  for (uint32_t c = 0; c < LargeClasses::kCount; ++c) {
    const uint64_t u = LargeClasses::usable(c);
    EXPECT_EQ(LargeClasses::class_of(u), c) << c;
    if (c > 0) {
      EXPECT_EQ(LargeClasses::class_of(LargeClasses::usable(c - 1) + 1), c) << c;
      EXPECT_GT(u, LargeClasses::usable(c - 1));
    }
  }
  EXPECT_EQ(LargeClasses::class_of(1), 0u);
  EXPECT_EQ(LargeClasses::class_of((uint64_t{1} << 30) + 1), LargeClasses::kUncached);
}

// ------------------------------------------------------------ hits

TEST(BigCache, SecondAllocationAtTheSameSiteIsAWarmHit) {
  RecAlloc a(CacheOptions());
  void* p = a->alloc(2 * kMiB, kSiteA);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->inspect(p).kind, ExtentKind::kMapBlock);
  memset(p, 1, 2 * kMiB);
  const uint64_t maps = MapCalls(a);
  const uint64_t calls = a->pal().total_calls();
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  EXPECT_EQ(a->stats().cache_blocks, 1u);
  EXPECT_EQ(a->pal().total_calls(), calls) << "a cached free makes no syscall";
  void* q = a->alloc(2 * kMiB, kSiteA);
  EXPECT_EQ(q, p);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.cache_puts, 1u);
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.cache_bytes, 0u);
  EXPECT_EQ(MapCalls(a), maps) << "a hit must not map";
  EXPECT_EQ(a->pal().total_calls(), calls) << "a hit makes no syscall at all";
  const BlockInfo info = a->inspect(q);
  EXPECT_EQ(info.verdict, Verdict::kOk);
  EXPECT_EQ(info.fields.state, State::kLive);
  EXPECT_EQ(info.fields.size, 2 * kMiB);
  EXPECT_GE(info.usable, 2 * kMiB);
  memset(q, 2, 2 * kMiB);
  EXPECT_AUDIT_OK(a);
  EXPECT_EQ(a->free(q, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, CallocOfACachedBlockIsZeroed) {
  RecAlloc a(CacheOptions());
  auto* p = static_cast<unsigned char*>(a->alloc(1 * kMiB, kSiteA));
  ASSERT_NE(p, nullptr);
  memset(p, 0xee, 1 * kMiB);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  auto* q = static_cast<unsigned char*>(a->calloc(1, 1 * kMiB, kSiteA));
  ASSERT_EQ(q, p) << "expected a warm hit";
  for (size_t i = 0; i < 1 * kMiB; i += 4096) ASSERT_EQ(q[i], 0) << i;
  EXPECT_EQ(q[1 * kMiB - 1], 0);
  EXPECT_EQ(a->free(q, kSiteA), Verdict::kOk);
}

// The seed's bug: a hit must satisfy requested <= usable.
TEST(BigCache, HitNeverReturnsABlockSmallerThanAsked) {
  RecAlloc a(CacheOptions(64 * kMiB, 64 * kKiB));
  // Class with usable 2 MiB covers (1.75 MiB, 2 MiB].
  const size_t low = 7 * kMiB / 4 + 1;
  void* p = a->alloc(low, kSiteA);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);

  // Larger request in the same class: may hit, but must fit.
  const size_t high = 2 * kMiB;
  void* q = a->alloc(high, kSiteA);
  ASSERT_NE(q, nullptr);
  EXPECT_GE(a->inspect(q).usable, high);
  memset(q, 0x5c, high);
  ASSERT_EQ(a->free(q, kSiteA), Verdict::kOk);

  // A request in the next class up must not be served from the smaller block.
  const uint64_t hits = a->stats().cache_hits;
  const size_t bigger = 2 * kMiB + 1;
  void* r = a->alloc(bigger, kSiteA);
  ASSERT_NE(r, nullptr);
  EXPECT_GE(a->inspect(r).usable, bigger);
  memset(r, 0x5d, bigger);
  EXPECT_EQ(a->stats().cache_hits, hits) << "a smaller cached block was handed out for a bigger class";
  EXPECT_EQ(a->stats().cache_blocks, 1u);
  EXPECT_AUDIT_OK(a);
  EXPECT_EQ(a->free(r, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, EveryClassBoundaryHitFits) {
  RecAlloc a(CacheOptions(256 * kMiB, 64 * kKiB));
  for (uint32_t c = 0; c < 25; ++c) {  // 64 KiB .. 8 MiB
    const uint64_t lo = c == 0 ? 64 * kKiB : LargeClasses::usable(c - 1) + 1;
    const uint64_t hi = LargeClasses::usable(c);
    for (auto [first, second] : {std::pair{lo, hi}, std::pair{hi, lo}}) {
      void* p = a->alloc(first, kSiteA);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
      const uint64_t hits = a->stats().cache_hits;
      void* q = a->alloc(second, kSiteA);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(a->stats().cache_hits, hits + 1) << "class " << c << ": same class should hit";
      EXPECT_GE(a->inspect(q).usable, second) << "class " << c;
      memset(q, 0x77, second);
      ASSERT_EQ(a->free(q, kSiteA), Verdict::kOk);
    }
  }
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, AlignedRequestOnACachedBlockFits) {
  RecAlloc a(CacheOptions(64 * kMiB, 64 * kKiB));
  void* p = a->alloc(3 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  for (size_t align : {4096ul, 64 * kKiB, 1 * kMiB}) {
    const size_t n = 3 * kMiB - align;
    void* q = a->aligned_alloc(align, n, kSiteA);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u);
    EXPECT_GE(a->inspect(q).usable, n);
    memset(q, 0x42, n);
    EXPECT_AUDIT_OK(a);
    ASSERT_EQ(a->free(q, kSiteA), Verdict::kOk);
  }
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, BlocksCachedAtOneSiteServeAnotherSiteOfTheSameClass) {
  RecAlloc a(CacheOptions());
  const uintptr_t site_b = SiteInAnotherBucket(kSiteA);
  void* p = a->alloc(2 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  const uint64_t maps = MapCalls(a);
  void* q = a->alloc(2 * kMiB, site_b);
  EXPECT_EQ(q, p);
  EXPECT_EQ(a->stats().cache_hits, 1u);
  EXPECT_EQ(MapCalls(a), maps);
  EXPECT_EQ(a->inspect(q).fields.site, site_b) << "the header names the new allocation site";
  EXPECT_EQ(a->free(q, site_b), Verdict::kOk);
}

TEST(BigCache, OwnSiteIsPreferredOverAnotherSite) {
  RecAlloc a(CacheOptions());
  const uintptr_t site_b = SiteInAnotherBucket(kSiteA);
  void* pa = a->alloc(2 * kMiB, kSiteA);
  void* pb = a->alloc(2 * kMiB, site_b);
  ASSERT_EQ(a->free(pa, kSiteA), Verdict::kOk);
  ASSERT_EQ(a->free(pb, site_b), Verdict::kOk);
  EXPECT_EQ(a->alloc(2 * kMiB, kSiteA), pa);
  EXPECT_EQ(a->alloc(2 * kMiB, site_b), pb);
  EXPECT_EQ(a->stats().cache_hits, 2u);
  a->free(pa, kSiteA);
  a->free(pb, site_b);
}

TEST(BigCache, MissOnAnotherClassMaps) {
  RecAlloc a(CacheOptions());
  void* p = a->alloc(2 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  const uint64_t maps = MapCalls(a);
  const uint64_t misses = a->stats().cache_misses;
  void* q = a->alloc(512 * kKiB, kSiteA);
  EXPECT_NE(q, p);
  EXPECT_EQ(MapCalls(a), maps + 1);
  EXPECT_EQ(a->stats().cache_misses, misses + 1);
  EXPECT_EQ(a->free(q, kSiteA), Verdict::kOk);
}

// ------------------------------------------------------------ rings, cap, bypass (I9)

TEST(BigCache, ByteCapEvictsTheOldestToTheReleaser) {
  RecAlloc a(CacheOptions(4 * kBlock2M));  // room for four
  std::vector<void*> v;
  for (int i = 0; i < 6; ++i) {
    v.push_back(a->alloc(2 * kMiB, kSiteA));
    ASSERT_NE(v.back(), nullptr);
  }
  const uint64_t flushes0 = a->stats().release_flushes;
  for (void* p : v) ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_blocks, 4u);
  EXPECT_GE(s.cache_evictions, 2u);
  EXPECT_EQ(s.cache_evictions, 2u);
  EXPECT_EQ(s.release_blocks, s.cache_evictions) << "every eviction goes to the releaser (I9)";
  EXPECT_EQ(s.cache_bypass, 0u);
  // The two oldest were evicted: they are pending (Releasing) now, still seen as freed.
  EXPECT_EQ(a->check(v[0]), Verdict::kDoubleFree);
  EXPECT_EQ(a->inspect(v[0]).fields.state, State::kReleasing);
  EXPECT_EQ(a->inspect(v[1]).fields.state, State::kReleasing);
  for (int i = 2; i < 6; ++i) EXPECT_EQ(a->inspect(v[i]).fields.state, State::kCached) << i;
  // 2 x (2 MiB + a page) is below the 8 MiB batch: nothing unmapped yet.
  EXPECT_EQ(s.release_flushes, flushes0);
  EXPECT_EQ(Unmaps(a), 0u) << "BigCache must never unmap by itself (I9)";
  EXPECT_EQ(s.pending_bytes, 2 * kBlock2M);
  EXPECT_AUDIT_OK(a);

  a->flush();
  s = a->stats();
  EXPECT_GT(s.release_flushes, flushes0);
  EXPECT_EQ(Unmaps(a), a->pal().calls(PalOp::kUnmap, Layer::kRelease)) << "I1: every unmap is the releaser's";
  EXPECT_EQ(Unmaps(a), s.unmap_calls);
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), 6 * kBlock2M);
  EXPECT_TRUE(a->pal().verify_mapped());
  for (void* p : v) EXPECT_EQ(a->check(p), Verdict::kInvalidPointer) << "released blocks are no longer ours";
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, OneSiteMayFillTheCap) {
  RecAlloc a(CacheOptions());
  std::vector<void*> v;
  for (int i = 0; i < 20; ++i) v.push_back(a->alloc(2 * kMiB, kSiteA));
  for (void* p : v) ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_blocks, 20u) << "40 MiB from one site and class is under the 64 MiB cap: nothing evicted";
  EXPECT_EQ(s.cache_evictions, 0u);
  const uint64_t maps = MapCalls(a);
  for (int i = 0; i < 20; ++i) v[static_cast<size_t>(i)] = a->alloc(2 * kMiB, kSiteA);
  EXPECT_EQ(MapCalls(a), maps) << "every block came back from the cache";
  for (void* p : v) ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// ------------------------------------------------------------ growth on regret, decay

namespace {

/// One round of the churn scenario: n blocks of 2 MiB allocated, then all freed. Returns the Map calls it made.
uint64_t ChurnRound(RecAlloc& a, int n) {
  const uint64_t maps = MapCalls(a);
  std::vector<void*> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(a->alloc(2 * kMiB, kSiteA));
    if (v.back() == nullptr) ADD_FAILURE() << "alloc " << i;
  }
  for (void* p : v) EXPECT_EQ(a->free(p, kSiteA), Verdict::kOk);
  return MapCalls(a) - maps;
}

}  // namespace

TEST(BigCacheGrowth, AWorkingSetLargerThanTheCapStaysCachedFromTheThirdRound) {
  RecAlloc a(CacheOptions(4 * kBlock2M, 256 * kKiB, 64 * kMiB));
  EXPECT_EQ(a->stats().cache_limit, 4 * kBlock2M);
  EXPECT_EQ(ChurnRound(a, 10), 10u);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_blocks, 4u);
  EXPECT_EQ(s.cache_evictions, 6u);
  EXPECT_EQ(s.cache_grows, 0u) << "an eviction alone grows nothing";
  // Round 2: four hits, then six misses of the class just evicted from: each grows the limit by a block.
  EXPECT_EQ(ChurnRound(a, 10), 6u);
  s = a->stats();
  EXPECT_EQ(s.cache_grows, 6u);
  EXPECT_GE(s.cache_limit, 10 * kBlock2M);
  EXPECT_LE(s.cache_limit, 4 * kBlock2M + 6 * (2 * kMiB + kHeaderSize + 4096));
  EXPECT_EQ(s.cache_blocks, 10u) << "the grown limit keeps the whole working set";
  EXPECT_EQ(s.cache_evictions, 6u);
  EXPECT_AUDIT_OK(a);
  // From now on no round maps anything.
  for (int round = 3; round <= 5; ++round) EXPECT_EQ(ChurnRound(a, 10), 0u) << "round " << round;
  s = a->stats();
  EXPECT_EQ(s.cache_grows, 6u);
  EXPECT_EQ(s.cache_evictions, 6u);
  EXPECT_EQ(s.cache_cap, 4 * kBlock2M) << "the cap is the option; the limit is what grew";
  EXPECT_AUDIT_OK(a);
}

TEST(BigCacheGrowth, TheLimitNeverPassesCacheMax) {
  RecAlloc a(CacheOptions(4 * kBlock2M, 256 * kKiB, 6 * kBlock2M));
  EXPECT_EQ(a->stats().cache_max, 6 * kBlock2M);
  for (int round = 1; round <= 4; ++round) {
    const uint64_t maps = ChurnRound(a, 10);
    const StatsSnapshot s = a->stats();
    EXPECT_LE(s.cache_limit, 6 * kBlock2M) << "round " << round;
    EXPECT_LE(s.cache_bytes, s.cache_limit) << "round " << round;
    if (round >= 3) {
      EXPECT_EQ(maps, 4u) << "six cached blocks serve six of ten, round " << round;
    }
  }
  EXPECT_EQ(a->stats().cache_limit, 6 * kBlock2M);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCacheGrowth, CacheMaxAtOrBelowTheCapMeansNoGrowth) {
  RecAlloc a(CacheOptions(4 * kBlock2M, 256 * kKiB, kMiB));
  EXPECT_EQ(a->stats().cache_max, 4 * kBlock2M) << "max is at least the cap";
  for (int round = 1; round <= 3; ++round) EXPECT_EQ(ChurnRound(a, 10), round == 1 ? 10u : 6u) << round;
  EXPECT_EQ(a->stats().cache_grows, 0u);
  EXPECT_EQ(a->stats().cache_limit, 4 * kBlock2M);
}

TEST(BigCacheGrowth, AMissLongAfterTheEvictionIsNoRegret) {
  Options o = CacheOptions(4 * kBlock2M, 256 * kKiB, 64 * kMiB);
  o.set(Opt::kDecayMs, 1000);
  RecAlloc a(o);
  a->pal().stop_clock();
  EXPECT_EQ(ChurnRound(a, 10), 10u);
  a->pal().advance_clock(1001 * 1000000ull);  // the six evictions are now older than the window
  EXPECT_EQ(ChurnRound(a, 10), 6u);
  EXPECT_EQ(a->stats().cache_grows, 0u);
  EXPECT_EQ(a->stats().cache_limit, 4 * kBlock2M);
  // These six evictions are fresh: the next round grows.
  EXPECT_EQ(ChurnRound(a, 10), 6u);
  EXPECT_EQ(a->stats().cache_grows, 6u);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCacheGrowth, DecayGivesBackWhatStayedCachedAWholeWindow) {
  Options o = CacheOptions(4 * kBlock2M, 256 * kKiB, 64 * kMiB);
  o.set(Opt::kDecayMs, 1000);
  RecAlloc a(o);
  a->pal().stop_clock();
  ChurnRound(a, 10);
  ChurnRound(a, 10);
  ASSERT_EQ(a->stats().cache_blocks, 10u);
  const uint64_t grown = a->stats().cache_limit;
  ASSERT_GT(grown, 4 * kBlock2M);
  // Rounds that take every block keep the low-water mark at zero: windows pass with no decay.
  for (int round = 0; round < 3; ++round) {
    a->pal().advance_clock(1500 * 1000000ull);
    EXPECT_EQ(ChurnRound(a, 10), 0u) << round;
  }
  EXPECT_EQ(a->stats().cache_shrinks, 0u);
  EXPECT_EQ(a->stats().cache_limit, grown);
  // The program stops taking blocks. The window the last round's first free began held that one
  // block throughout, so the next put after it gives back one block's worth; in the window that
  // put begins all ten sit unused, and at the put after it the limit falls back to the cap.
  const uint64_t evictions = a->stats().cache_evictions;
  void* extra = a->alloc(kMiB, kSiteA);  // another class: a miss with no regret
  a->pal().advance_clock(1500 * 1000000ull);
  ASSERT_EQ(a->free(extra, kSiteA), Verdict::kOk);
  EXPECT_EQ(a->stats().cache_shrinks, 1u);
  EXPECT_EQ(a->stats().cache_limit, grown - kBlock2M) << "only the block that began the window sat there throughout";
  extra = a->alloc(512 * kKiB, kSiteA);
  a->pal().advance_clock(1500 * 1000000ull);
  ASSERT_EQ(a->free(extra, kSiteA), Verdict::kOk);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_shrinks, 2u);
  EXPECT_EQ(s.cache_limit, 4 * kBlock2M) << "all the growth sat unused for a window";
  EXPECT_LE(s.cache_bytes, s.cache_limit);
  EXPECT_GE(s.cache_evictions - evictions, 7u)
      << "the excess went to the releaser (I9): of twelve blocks, the 8 MiB limit keeps five";
  EXPECT_EQ(s.release_blocks, s.cache_evictions + s.cache_bypass);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, NewestOfARingIsServedFirst) {
  RecAlloc a(CacheOptions());
  std::vector<void*> v;
  for (int i = 0; i < 4; ++i) v.push_back(a->alloc(2 * kMiB, kSiteA));
  for (void* p : v) ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  for (int i = 3; i >= 0; --i) EXPECT_EQ(a->alloc(2 * kMiB, kSiteA), v[i]) << i;
  for (void* p : v) a->free(p, kSiteA);
}

TEST(BigCache, UnmapsHappenOnlyInReleaserFlushes) {
  RecAlloc a(CacheOptions(8 * kMiB));
  // Drive evictions through ring overflow and the cap, watching every step.
  for (int i = 0; i < 40; ++i) {
    const uint64_t unmaps = Unmaps(a);
    const uint64_t flushes = a->stats().release_flushes;
    void* p = a->alloc(static_cast<size_t>(300 + 100 * (i % 7)) * kKiB, kSiteA + 0x10 * (i % 3));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(Unmaps(a), unmaps) << "alloc unmapped";
    ASSERT_EQ(a->free(p, kSiteA + 0x10 * (i % 5)), Verdict::kOk);
    if (Unmaps(a) != unmaps) {
      EXPECT_GT(a->stats().release_flushes, flushes) << "unmap outside a releaser flush at step " << i;
    }
    const AuditResult r = a->audit();
    ASSERT_TRUE(r.ok) << r.failure;
  }
  EXPECT_EQ(Unmaps(a), a->pal().calls(PalOp::kUnmap, Layer::kRelease));
  EXPECT_EQ(a->stats().unmap_calls, Unmaps(a));
  EXPECT_TRUE(a->pal().verify_mapped());
}

TEST(BigCache, ByteCapIsNeverExceeded) {
  RecAlloc a(CacheOptions(4 * kMiB));
  std::vector<void*> v;
  for (int i = 0; i < 5; ++i) v.push_back(a->alloc(2 * kMiB, kSiteA + 0x100 * i));
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(a->free(v[i], kSiteA + 0x100 * i), Verdict::kOk);
    const StatsSnapshot s = a->stats();
    EXPECT_EQ(s.cache_cap, 4 * kMiB);
    EXPECT_LE(s.cache_bytes, s.cache_cap) << "after free " << i;
    EXPECT_GE(s.cache_blocks, 1u) << "the newest block fits the cap and is kept";
    EXPECT_EQ(s.cache_blocks + s.cache_evictions + s.cache_bypass, static_cast<uint64_t>(i + 1));
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
  }
  EXPECT_EQ(a->stats().release_blocks, a->stats().cache_evictions + a->stats().cache_bypass);
}

// One big put after many small ones must still bring the cache back under its cap.
TEST(BigCache, ByteCapHoldsWhenOnePutMustEvictManySmallBlocks) {
  RecAlloc a(CacheOptions(8 * kMiB, 64 * kKiB));
  // 120 blocks of class 0 (64 KiB + a page each = 8,355,840 bytes <= 8 MiB),
  // spread over sites so no ring overflows.
  std::vector<std::pair<void*, uintptr_t>> small;
  unsigned per_bucket[Cache::kBuckets] = {};
  for (uintptr_t site = 0x10000; small.size() < 120; site += 0x10) {
    if (per_bucket[Cache::bucket_of(site)] >= 2) continue;
    ++per_bucket[Cache::bucket_of(site)];
    small.emplace_back(a->alloc(64 * kKiB, site), site);
    ASSERT_NE(small.back().first, nullptr);
  }
  void* big = a->alloc(7 * kMiB, kSiteA);  // 7 MiB + a page: fits the cap alone
  ASSERT_NE(big, nullptr);
  for (auto [p, site] : small) ASSERT_EQ(a->free(p, site), Verdict::kOk);
  StatsSnapshot s = a->stats();
  ASSERT_EQ(s.cache_blocks, 120u);
  ASSERT_EQ(s.cache_evictions, 0u);
  ASSERT_LE(s.cache_bytes, s.cache_cap);
  ASSERT_EQ(a->free(big, kSiteA), Verdict::kOk);
  s = a->stats();
  EXPECT_LE(s.cache_bytes, s.cache_cap)
      << "the put evicted only " << s.cache_evictions
      << " blocks (BigCache::put's eviction array bound) and left the cache over its cap";
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
}

TEST(BigCache, BlockLargerThanTheCapBypasses) {
  RecAlloc a(CacheOptions(4 * kMiB));
  void* p = a->alloc(6 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_bypass, 1u);
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.release_blocks, 1u);
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, CacheZeroBypassesEveryFree) {
  RecAlloc a(CacheOptions(0));
  constexpr int kN = 5;
  std::vector<void*> v;
  for (int i = 0; i < kN; ++i) v.push_back(a->alloc(1 * kMiB, kSiteA));
  for (void* p : v) {
    ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
    EXPECT_EQ(a->stats().cache_bytes, 0u);
  }
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_bypass, static_cast<uint64_t>(kN));
  EXPECT_EQ(s.cache_puts, static_cast<uint64_t>(kN));
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.release_blocks, static_cast<uint64_t>(kN));
  EXPECT_AUDIT_OK(a);
  // Nothing to hit: the next allocation maps.
  const uint64_t maps = MapCalls(a);
  void* q = a->alloc(1 * kMiB, kSiteA);
  EXPECT_EQ(MapCalls(a), maps + 1);
  EXPECT_EQ(a->stats().cache_hits, 0u);
  a->free(q, kSiteA);
}

TEST(BigCache, HugeBlocksAreNotCached) {
  RecAlloc a(CacheOptions(uint64_t{4} << 30));
  void* p = a->alloc((size_t{1} << 30) + 4096, kSiteA);  // past the top class: kUncached
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  EXPECT_EQ(a->stats().cache_bypass, 1u);
  EXPECT_EQ(a->stats().cache_blocks, 0u);
  a->flush();
  EXPECT_EQ(a->stats().pending_bytes, 0u);
}

// ------------------------------------------------------------ flush and state (I6, I10)

TEST(BigCache, FlushEmptiesTheCacheAndTheReleaser) {
  RecAlloc a(CacheOptions());
  std::vector<void*> v;
  for (int i = 0; i < 8; ++i) v.push_back(a->alloc(static_cast<size_t>(1 + i % 3) * kMiB, kSiteA + 0x40 * i));
  for (int i = 0; i < 8; ++i) ASSERT_EQ(a->free(v[i], kSiteA + 0x40 * i), Verdict::kOk);
  ASSERT_GT(a->stats().cache_bytes, 0u);
  const uint64_t mapped_map = a->pal().bytes(PalOp::kMap, Layer::kMap);
  a->flush();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_bytes, 0u);
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.pending_bytes, 0u) << "I10: after flush nothing is pending";
  EXPECT_EQ(s.cache_evictions, 8u);
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), mapped_map) << "every cached byte was unmapped";
  EXPECT_AUDIT_OK(a);
  // A second flush has nothing to do.
  const uint64_t calls = a->pal().total_calls();
  a->flush();
  EXPECT_EQ(a->pal().total_calls(), calls);
}

TEST(BigCache, CachedBlocksHeadersSayCached) {
  RecAlloc a(CacheOptions());
  void* p = a->alloc(2 * kMiB, kSiteA);
  void* al = a->aligned_alloc(64 * kKiB, 1 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  ASSERT_EQ(a->free(al, kSiteA), Verdict::kOk);
  for (void* x : {p, al}) {
    EXPECT_EQ(a->check(x), Verdict::kDoubleFree);
    const BlockInfo info = a->inspect(x);
    EXPECT_EQ(info.verdict, Verdict::kDoubleFree);
    EXPECT_EQ(info.kind, ExtentKind::kMapBlock);
    EXPECT_EQ(info.fields.state, State::kCached);
    EXPECT_EQ(info.fields.method, Method::kMap);
  }
  EXPECT_AUDIT_OK(a);
}

TEST(BigCache, DoubleFreeOfACachedBlockChangesNothing) {
  Options o = CacheOptions();
  o.set(Opt::kOnError, kOnErrorReport);
  RecAlloc a(o);
  a->set_report_sink([](void*, const char*, size_t) {}, nullptr);
  void* p = a->alloc(2 * kMiB, kSiteA);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  const StatsSnapshot before = a->stats();
  EXPECT_EQ(a->free(p, kSiteA), Verdict::kDoubleFree);
  const StatsSnapshot after = a->stats();
  EXPECT_EQ(after.cache_blocks, before.cache_blocks);
  EXPECT_EQ(after.cache_puts, before.cache_puts);
  EXPECT_EQ(after.errors_total, before.errors_total + 1);
  EXPECT_AUDIT_OK(a);
  // Still one cached block: one hit, then a miss.
  EXPECT_EQ(a->alloc(2 * kMiB, kSiteA), p);
  void* q = a->alloc(2 * kMiB, kSiteA);
  EXPECT_NE(q, p);
  a->free(p, kSiteA);
  a->free(q, kSiteA);
}

TEST(BigCache, AccountingHoldsThroughAMixedSequence) {
  RecAlloc a(CacheOptions(16 * kMiB, 64 * kKiB));
  std::vector<std::pair<void*, uintptr_t>> live;
  uint64_t x = 12345;
  for (int step = 0; step < 300; ++step) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const uintptr_t site = 0x1000 + ((x >> 20) % 5) * 0x10;
    if (live.size() < 12 && ((x >> 40) % 3 != 0 || live.empty())) {
      const size_t n = 64 * kKiB + (x >> 33) % (3 * kMiB);
      void* p = a->alloc(n, site);
      ASSERT_NE(p, nullptr);
      ASSERT_GE(a->inspect(p).usable, n);
      static_cast<char*>(p)[n - 1] = 1;
      live.emplace_back(p, site);
    } else {
      const size_t i = (x >> 45) % live.size();
      ASSERT_EQ(a->free(live[i].first, live[i].second), Verdict::kOk);
      live.erase(live.begin() + static_cast<long>(i));
    }
    const AuditResult r = a->audit();
    ASSERT_TRUE(r.ok) << "step " << step << ": " << r.failure;
    ASSERT_LE(a->stats().cache_bytes, 16 * kMiB);
  }
  for (auto [p, site] : live) a->free(p, site);
  a->flush();
  EXPECT_EQ(a->stats().cache_bytes + a->stats().pending_bytes, 0u);
  EXPECT_AUDIT_OK(a);
}

// ------------------------------------------------------------ the large slot in front of BigCache

namespace {

Options SlotOptions(uint64_t slot = 8 * kMiB) {
  Options o = CacheOptions();
  o.set(Opt::kLargeSlot, slot);
  return o;
}

}  // namespace

TEST(LargeSlot, AFreedBlockServesTheNextRequestOfItsClassWithNoCacheWork) {
  RecAlloc a(SlotOptions());
  void* p = a->alloc(1 * kMiB, kSiteA);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 1 * kMiB);
  const uint64_t length = a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p))->length;
  const uint64_t calls = a->pal().total_calls();
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.slot_bytes, length);
  EXPECT_EQ(s.cache_puts, 0u) << "the slot, not BigCache, took the block";
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(a->check(p), Verdict::kDoubleFree) << "a slot block is not live";
  EXPECT_AUDIT_OK(a);                                      // I6 (Cached), I7 (mapped = ... + slots + ...)
  const uint64_t lookups = s.cache_hits + s.cache_misses;  // the first allocation's miss
  void* q = a->alloc(1 * kMiB - 100, kSiteA);              // the same class
  EXPECT_EQ(q, p);
  s = a->stats();
  EXPECT_EQ(s.slot_hits, 1u);
  EXPECT_EQ(s.slot_bytes, 0u);
  EXPECT_EQ(s.cache_hits + s.cache_misses, lookups) << "a slot hit does not look in BigCache";
  EXPECT_EQ(s.map_allocs, 2u);
  EXPECT_EQ(a->pal().total_calls(), calls) << "free and reuse make no syscall";
  const BlockInfo info = a->inspect(q);
  EXPECT_EQ(info.verdict, Verdict::kOk);
  EXPECT_EQ(info.fields.state, State::kLive);
  EXPECT_EQ(info.fields.size, 1 * kMiB - 100);
  memset(q, 2, 1 * kMiB - 100);
  EXPECT_AUDIT_OK(a);
  EXPECT_EQ(a->free(q, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(LargeSlot, AFullSlotOrAnotherClassLeavesTheWorkToBigCache) {
  RecAlloc a(SlotOptions());
  void* one = a->alloc(1 * kMiB, kSiteA);
  void* two = a->alloc(2 * kMiB, kSiteA);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  ASSERT_EQ(a->free(one, kSiteA), Verdict::kOk);  // the slot
  ASSERT_EQ(a->free(two, kSiteA), Verdict::kOk);  // the slot is taken: BigCache
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_blocks, 1u);
  EXPECT_GT(s.slot_bytes, 0u);
  EXPECT_AUDIT_OK(a);
  EXPECT_EQ(a->alloc(2 * kMiB, kSiteA), two) << "the slot holds another class: a BigCache hit";
  s = a->stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.slot_hits, 0u);
  EXPECT_EQ(a->alloc(1 * kMiB, kSiteA), one);
  EXPECT_EQ(a->stats().slot_hits, 1u);
  EXPECT_EQ(a->free(one, kSiteA), Verdict::kOk);
  EXPECT_EQ(a->free(two, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

// take_slot() serves a request only from a block not a class too big for it: the request must
// exceed the largest one of the class below the block's (MapBlock::class_floor), and fit.
TEST(LargeSlot, ARequestOfASmallerClassDoesNotTakeTheSlotBlock) {
  RecAlloc a(SlotOptions());
  void* two = a->alloc(2 * kMiB, kSiteA);
  ASSERT_NE(two, nullptr);
  auto* mb = static_cast<MapBlock*>(a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(two)));
  ASSERT_EQ(a->free(two, kSiteA), Verdict::kOk);    // the slot
  void* small = a->alloc(mb->class_floor, kSiteA);  // the largest request of the class below
  ASSERT_NE(small, nullptr);
  EXPECT_NE(small, two) << "a block one class too big stays in the slot";
  EXPECT_EQ(a->stats().slot_hits, 0u);
  EXPECT_EQ(a->stats().slot_bytes, mb->length);
  void* fits = a->alloc(mb->class_floor + 1, kSiteA);  // the smallest request of the block's class
  EXPECT_EQ(fits, two);
  EXPECT_EQ(a->stats().slot_hits, 1u);
  EXPECT_AUDIT_OK(a);
  EXPECT_EQ(a->free(small, kSiteA), Verdict::kOk);
  EXPECT_EQ(a->free(fits, kSiteA), Verdict::kOk);
  EXPECT_AUDIT_OK(a);
}

TEST(LargeSlot, BlocksAboveItsSizeAlignedBlocksAndAZeroSlotSkipIt) {
  {
    RecAlloc a(SlotOptions(1 * kMiB));
    void* big = a->alloc(2 * kMiB, kSiteA);  // its mapping exceeds 1 MiB
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(a->free(big, kSiteA), Verdict::kOk);
    EXPECT_EQ(a->stats().slot_bytes, 0u);
    EXPECT_EQ(a->stats().cache_blocks, 1u);
  }
  {
    RecAlloc a(SlotOptions());
    void* aligned = a->aligned_alloc(4096, 512 * kKiB, kSiteA);  // a forward record at the block start
    ASSERT_NE(aligned, nullptr);
    EXPECT_EQ(a->free(aligned, kSiteA, Origin::kAligned), Verdict::kOk);
    EXPECT_EQ(a->stats().slot_bytes, 0u);
    EXPECT_EQ(a->stats().cache_blocks, 1u);
    EXPECT_AUDIT_OK(a);
  }
  {
    RecAlloc a(SlotOptions(0));
    void* p = a->alloc(1 * kMiB, kSiteA);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(a->free(p, kSiteA), Verdict::kOk);
    EXPECT_EQ(a->stats().slot_bytes, 0u);
    EXPECT_EQ(a->stats().slot_max, 0u);
    EXPECT_EQ(a->stats().cache_blocks, 1u);
  }
}

TEST(LargeSlot, FlushReleasesTheCallersSlotBlock) {
  RecAlloc a(SlotOptions());
  void* p = a->alloc(1 * kMiB, kSiteA);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
  ASSERT_GT(a->stats().slot_bytes, 0u);
  const uint64_t unmaps = Unmaps(a);
  a->flush();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.slot_bytes, 0u);
  EXPECT_EQ(s.cache_bytes + s.pending_bytes, 0u);
  EXPECT_GT(Unmaps(a), unmaps) << "through BigCache to the releaser, which unmapped it (I1, I9)";
  EXPECT_EQ(a->check(p), Verdict::kInvalidPointer);
  EXPECT_AUDIT_OK(a);
}

TEST(LargeSlot, AThreadsSlotBlockGoesToBigCacheWhenItExits) {
  RecAlloc a(SlotOptions());
  std::thread t([&] {
    void* p = a->alloc(1 * kMiB, kSiteA);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(a->free(p, kSiteA), Verdict::kOk);
    ASSERT_GT(a->stats().slot_bytes, 0u);
  });
  t.join();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.slot_bytes, 0u);
  EXPECT_EQ(s.cache_blocks, 1u);
  EXPECT_AUDIT_OK(a);
  void* q = a->alloc(1 * kMiB, kSiteA);  // a BigCache hit in another thread
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(a->stats().cache_hits, 1u);
  EXPECT_EQ(a->free(q, kSiteA), Verdict::kOk);
}
