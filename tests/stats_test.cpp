// Stats (src/front/stats.h): AllocatorStats::collect through Allocator<Config>::stats(). Each
// test runs a known sequence of allocations and frees on a fresh allocator and checks that every
// counter is exactly what the sequence implies, and that each component's fill_stats() (BigCache,
// BatchReleaser, Quarantine, Reporter, EpochDriver) and fill_heap_stats() (the threads' counters,
// summed over every heap, live or retired, and the orphan set) put their fields in the snapshot.
//
// Guards: the stats contract of front/stats.h (Map's allocations, frees and live bytes include
// what the large slots did; counters of exited threads keep counting), and I7 as the stats see
// it: mapped = pool spans + map live + cached + slots + pending + metadata, every term equal to
// what the audit walks.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/audit.h"

namespace hakmem {
namespace {

using TestAllocator = ScopedAllocator<TestConfig>;
using RecAllocator = ScopedAllocator<RecordingConfig>;

constexpr uintptr_t kSite = 0x5a17c000;
constexpr size_t kLarge = 1 << 20;  // Map under the default 256 KiB threshold

/// The Pool block a request of n bytes takes (default mode: no canary).
uint64_t PoolBlock(size_t n) { return SizeClasses::block_size(SizeClasses::class_of(n)); }

/// The mapping length of the Map block holding p (its descriptor, from the Registry).
template <class A>
uint64_t MapLength(A& a, void* p) {
  Extent* e = a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p));
  EXPECT_NE(e, nullptr);
  if (e == nullptr) return 0;
  EXPECT_EQ(e->kind, ExtentKind::kMapBlock);
  return static_cast<MapBlock*>(e)->length;
}

/// I7 as the stats report it, and each memory term equal to what the audit walks.
template <class A>
void ExpectStatsMatchAudit(A& a) {
  const StatsSnapshot s = a->stats();
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(s.mapped_bytes,
            s.pool_span_bytes + s.map_live_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes + s.metadata_bytes)
      << "I7 over the snapshot";
  EXPECT_EQ(s.mapped_bytes, r.mapped);
  EXPECT_EQ(s.metadata_bytes, r.metadata);
  EXPECT_EQ(s.pool_span_bytes, r.pool_span_bytes);
  EXPECT_EQ(s.pool_live_bytes, r.pool_live);
  EXPECT_EQ(s.map_live_bytes, r.map_live);
  EXPECT_EQ(s.cache_bytes, r.cached);
  EXPECT_EQ(s.slot_bytes, r.slots);
  EXPECT_EQ(s.pending_bytes, r.pending);
}

/// A report sink that keeps nothing (the error tests count, they do not read the text).
void Discard(void*, const char*, size_t) {}

// --------------------------------------------------------------------------- configuration

// A fresh allocator: every counter 0, nothing but metadata mapped, and the configuration fields
// as the options and the Selector have them (fixed mode, the threshold in force, the slot size,
// BigCache's cap and max, no paranoia, no learner).
TEST(AllocatorStats, AFreshAllocatorReportsItsConfigurationAndZeroCounts) {
  Options o;
  o.set(Opt::kLargeSlot, 4 << 20);
  o.set(Opt::kCache, 32 << 20);
  o.set(Opt::kCacheMax, 128 << 20);
  o.set(Opt::kThreshold, 512 << 10);
  TestAllocator a(o);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.mode, kModeFixed);
  EXPECT_EQ(s.strategy, a->selector().current_id());
  EXPECT_EQ(s.threshold, 512u << 10);
  EXPECT_EQ(s.slot_max, 4u << 20);
  EXPECT_EQ(s.cache_cap, 32u << 20);
  EXPECT_EQ(s.cache_limit, 32u << 20);
  EXPECT_EQ(s.cache_max, 128u << 20);
  EXPECT_FALSE(s.paranoid);
  EXPECT_FALSE(s.learning);
  EXPECT_EQ(s.pool_allocs + s.pool_frees + s.pool_live_bytes + s.pool_spans + s.remote_frees, 0u);
  EXPECT_EQ(s.map_allocs + s.map_frees + s.map_live_bytes + s.slot_bytes + s.slot_hits, 0u);
  EXPECT_EQ(s.cache_hits + s.cache_misses + s.cache_puts + s.cache_evictions + s.cache_bypass + s.cache_blocks, 0u);
  EXPECT_EQ(s.release_blocks + s.release_flushes + s.unmap_calls + s.pending_bytes, 0u);
  EXPECT_EQ(s.errors_total, 0u);
  EXPECT_EQ(s.mapped_bytes, s.metadata_bytes);
  ExpectStatsMatchAudit(a);
}

// ----------------------------------------------------------------------------- Pool counters

// Pool: one allocation per request and one free per free, the live bytes the live blocks' class
// sizes, nothing on the Map side.
TEST(AllocatorStats, PoolCountersAreExactlyTheSequence) {
  TestAllocator a;
  const size_t sizes[] = {1, 16, 17, 100, 1000, 3000, 40000, 200000};
  std::vector<void*> v;
  uint64_t live = 0;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes) {
      v.push_back(a->alloc(n, kSite));
      ASSERT_NE(v.back(), nullptr);
      live += PoolBlock(n);
    }
  }
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, 24u);
  EXPECT_EQ(s.pool_frees, 0u);
  EXPECT_EQ(s.pool_live_bytes, live);
  EXPECT_GE(s.pool_spans, 1u);
  EXPECT_GT(s.pool_span_bytes, live);
  EXPECT_EQ(s.map_allocs + s.map_frees + s.map_live_bytes, 0u) << "every size is below the threshold";
  ExpectStatsMatchAudit(a);
  // Free the first round.
  for (size_t i = 0; i < std::size(sizes); ++i) {
    ASSERT_EQ(a->free(v[i], kSite), Verdict::kOk);
    live -= PoolBlock(sizes[i]);
  }
  s = a->stats();
  EXPECT_EQ(s.pool_allocs, 24u);
  EXPECT_EQ(s.pool_frees, 8u);
  EXPECT_EQ(s.pool_live_bytes, live);
  EXPECT_EQ(s.remote_frees, 0u) << "the owner freed its own blocks";
  ExpectStatsMatchAudit(a);
  for (size_t i = std::size(sizes); i < v.size(); ++i) ASSERT_EQ(a->free(v[i], kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.pool_frees, 24u);
  EXPECT_EQ(s.pool_live_bytes, 0u);
  ExpectStatsMatchAudit(a);
}

// A free from a thread that does not own the block's span is a remote free: counted in
// remote_frees and in pool_frees (by the freeing thread's heap), and the live bytes drop.
TEST(AllocatorStats, AFreeFromAnotherThreadIsARemoteFree) {
  TestAllocator a;
  std::vector<void*> v;
  for (int i = 0; i < 5; ++i) v.push_back(a->alloc(64, kSite));
  for (void* p : v) ASSERT_NE(p, nullptr);
  std::thread other([&] {
    for (void* p : v) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  });
  other.join();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, 5u);
  EXPECT_EQ(s.pool_frees, 5u);
  EXPECT_EQ(s.remote_frees, 5u);
  EXPECT_EQ(s.pool_live_bytes, 0u);
  ExpectStatsMatchAudit(a);
}

// ------------------------------------------------------------------- Map, BigCache, slots

// Map with no large slot: each request misses or hits BigCache; a free puts the block there.
// Counts: allocations (hits included), frees, live bytes (the mappings' lengths), BigCache's hits,
// misses, puts, blocks and bytes.
TEST(AllocatorStats, MapAndBigCacheCountersFollowTheSequence) {
  Options o;
  o.set(Opt::kLargeSlot, 0);
  TestAllocator a(o);
  void* x = a->alloc(kLarge, kSite);
  void* y = a->alloc(kLarge, kSite);
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  const uint64_t len = MapLength(a, x);
  ASSERT_EQ(MapLength(a, y), len);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.map_allocs, 2u);
  EXPECT_EQ(s.map_frees, 0u);
  EXPECT_EQ(s.map_live_bytes, 2 * len);
  EXPECT_EQ(s.cache_misses, 2u);
  EXPECT_EQ(s.cache_hits, 0u);
  EXPECT_EQ(s.pool_allocs, 0u);
  ExpectStatsMatchAudit(a);

  ASSERT_EQ(a->free(x, kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.map_frees, 1u);
  EXPECT_EQ(s.map_live_bytes, len);
  EXPECT_EQ(s.cache_puts, 1u);
  EXPECT_EQ(s.cache_blocks, 1u);
  EXPECT_EQ(s.cache_bytes, len);
  EXPECT_EQ(s.cache_bypass, 0u);
  EXPECT_EQ(s.slot_bytes + s.slot_hits, 0u) << "no slot";
  ExpectStatsMatchAudit(a);

  void* z = a->alloc(kLarge, kSite);  // the cached block, no syscall
  ASSERT_EQ(z, x);
  s = a->stats();
  EXPECT_EQ(s.map_allocs, 3u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.cache_misses, 2u);
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.cache_bytes, 0u);
  EXPECT_EQ(s.map_live_bytes, 2 * len);
  ExpectStatsMatchAudit(a);
  ASSERT_EQ(a->free(y, kSite), Verdict::kOk);
  ASSERT_EQ(a->free(z, kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.map_frees, 3u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(s.cache_puts, 3u);
  EXPECT_EQ(s.cache_bytes, 2 * len);
  ExpectStatsMatchAudit(a);
}

// The large slot: a free into the thread's slot counts as a Map free and moves the bytes from
// map live to slot bytes; the next request it serves is a slot hit and a Map allocation, with no
// BigCache lookup. flush() hands the slot's block to BigCache.
TEST(AllocatorStats, LargeSlotTripsCountAsMapAllocationsAndFrees) {
  TestAllocator a;  // large_slot 8 MiB by default
  void* p = a->alloc(kLarge, kSite);
  ASSERT_NE(p, nullptr);
  const uint64_t len = MapLength(a, p);
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.map_allocs, 1u);
  EXPECT_EQ(s.map_frees, 1u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(s.slot_bytes, len);
  EXPECT_EQ(s.slot_hits, 0u);
  EXPECT_EQ(s.cache_puts, 0u) << "the slot kept the block";
  ExpectStatsMatchAudit(a);

  void* q = a->alloc(kLarge, kSite);
  ASSERT_EQ(q, p) << "the slot's block serves the next request";
  s = a->stats();
  EXPECT_EQ(s.map_allocs, 2u);
  EXPECT_EQ(s.slot_hits, 1u);
  EXPECT_EQ(s.slot_bytes, 0u);
  EXPECT_EQ(s.map_live_bytes, len);
  EXPECT_EQ(s.cache_misses, 1u) << "a slot hit asks BigCache nothing";
  EXPECT_EQ(s.cache_hits, 0u);
  ExpectStatsMatchAudit(a);

  ASSERT_EQ(a->free(q, kSite), Verdict::kOk);
  a->flush();  // slot -> BigCache -> releaser -> unmapped
  s = a->stats();
  EXPECT_EQ(s.map_frees, 2u);
  EXPECT_EQ(s.slot_bytes, 0u);
  EXPECT_EQ(s.cache_puts, 1u);
  EXPECT_EQ(s.cache_evictions, 1u);
  EXPECT_EQ(s.cache_bytes, 0u);
  EXPECT_EQ(s.release_blocks, 1u);
  EXPECT_EQ(s.pending_bytes, 0u);
  ExpectStatsMatchAudit(a);
}

// The releaser: with BigCache off, a freed Map block bypasses it and waits in the batch (pending
// bytes); a flush releases it, counted in blocks, bytes, flushes and munmap calls.
TEST(AllocatorStats, ReleaserCountersFollowPendingAndFlush) {
  Options o;
  o.set(Opt::kCache, 0);
  o.set(Opt::kLargeSlot, 0);
  o.set(Opt::kBatch, 1ull << 40);  // never flushed by size
  o.set(Opt::kDecayMs, 0);
  RecAllocator a(o);
  void* x = a->alloc(kLarge, kSite);
  void* y = a->alloc(2 * kLarge, kSite);
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  const uint64_t lx = MapLength(a, x), ly = MapLength(a, y);
  ASSERT_EQ(a->free(x, kSite), Verdict::kOk);
  ASSERT_EQ(a->free(y, kSite), Verdict::kOk);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_puts, 2u);
  EXPECT_EQ(s.cache_bypass, 2u) << "cache 0: every free bypasses BigCache";
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.pending_bytes, lx + ly);
  EXPECT_EQ(s.release_flushes, 0u);
  EXPECT_EQ(s.unmap_calls, 0u);
  EXPECT_EQ(a->pal().calls(PalOp::kUnmap), 0u);
  ExpectStatsMatchAudit(a);

  a->flush_pending_for_testing();
  s = a->stats();
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.release_blocks, 2u);
  EXPECT_EQ(s.release_bytes, lx + ly);
  EXPECT_EQ(s.release_flushes, 1u);
  EXPECT_EQ(s.unmap_calls, a->pal().calls(PalOp::kUnmap)) << "every munmap the PAL saw is counted";
  EXPECT_EQ(s.syscalls_saved, s.release_blocks - s.unmap_calls);
  EXPECT_EQ(s.map_frees, 2u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  ExpectStatsMatchAudit(a);
}

// ------------------------------------------------------------------ the other components

// The Reporter's counts: each rejected free (on_error=report) is one error of its kind.
TEST(AllocatorStats, ErrorCountsAreOnePerRejectedFreeByKind) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  TestAllocator a(o);
  a->set_report_sink(Discard, nullptr);
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(p, kSite), Verdict::kDoubleFree);
  EXPECT_EQ(a->free(p, kSite), Verdict::kDoubleFree);
  int on_stack = 0;
  EXPECT_EQ(a->free(&on_stack, kSite), Verdict::kInvalidPointer);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.errors[static_cast<size_t>(Verdict::kDoubleFree)], 2u);
  EXPECT_EQ(s.errors[static_cast<size_t>(Verdict::kInvalidPointer)], 1u);
  EXPECT_EQ(s.errors[static_cast<size_t>(Verdict::kOk)], 0u);
  EXPECT_EQ(s.errors_total, 3u);
  EXPECT_EQ(s.pool_frees, 1u) << "a rejected free changes no counter";
  ExpectStatsMatchAudit(a);
}

// Paranoid mode's components: the snapshot says paranoid, the quarantine's cap is the option, each
// freed Pool block is held (its blocks and bytes, equal to the audit's held bytes), and a live
// zero-size block is counted in zero_live.
TEST(AllocatorStats, ParanoidModeFillsTheQuarantineAndZeroSizeFields) {
  Options o;
  o.set(Opt::kHardening, kHardeningParanoid);
  o.set(Opt::kQuarantine, 1 << 20);
  TestAllocator a(o);
  StatsSnapshot s = a->stats();
  EXPECT_TRUE(s.paranoid);
  EXPECT_EQ(s.quarantine_cap, 1u << 20);
  EXPECT_EQ(s.quarantine_blocks, 0u);
  EXPECT_EQ(s.zero_live, 0u);

  void* z = a->alloc(0, kSite);
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(a->stats().zero_live, 1u);
  std::vector<void*> v;
  for (int i = 0; i < 4; ++i) v.push_back(a->alloc(100, kSite));
  for (void* p : v) ASSERT_NE(p, nullptr);
  for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.pool_frees, 4u);
  const AuditResult r = a->audit();
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(s.quarantine_bytes + s.withheld_bytes, r.pool_held) << "the quarantine's bytes are what the audit holds";
  EXPECT_EQ(s.withheld_bytes, 0u) << "no write after free: nothing withheld";
  // Each freed block is held whole (its class's block: 100 bytes and the canary), far below the cap.
  EXPECT_EQ(s.quarantine_blocks, 4u);
  EXPECT_EQ(s.quarantine_bytes, 4 * PoolBlock(100 + kCanarySize));
  ASSERT_EQ(a->free(z, kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.zero_live, 0u);
  EXPECT_EQ(s.protect_failures, 0u);
}

/// A cost source where every strategy costs the same.
struct FlatCost final : CostSource {
  uint64_t asked = 0;
  EpochCost epoch_cost(uint8_t) override {
    ++asked;
    return EpochCost{1000.0, 10.0, 65536.0};
  }
};

// The EpochDriver's fields in learn mode: learning, the lifecycle, the learner's counters (one
// epoch after epoch_requests large requests), the board (a permutation of the twelve), and the
// site profile of the requests' site. In fixed mode (every test above) learning stays false.
TEST(AllocatorStats, LearnModeFillsTheLearnerAndSiteFields) {
  Options o;
  o.set(Opt::kMode, kModeLearn);
  o.set(Opt::kEpochRequests, 100);
  o.set(Opt::kLearnSample, 1);
  o.set(Opt::kEpochMs, 3600000);
  o.set(Opt::kLargeSlot, 0);
  TestAllocator a(o);
  FlatCost cost;
  a->epoch_driver_for_testing().set_cost_source_for_testing(&cost);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.mode, kModeLearn);
  EXPECT_TRUE(s.learning);
  EXPECT_EQ(s.lifecycle, Lifecycle::kLearn);
  EXPECT_EQ(s.learner.epochs, 0u);
  EXPECT_EQ(s.site_count, 0u);
  for (int i = 0; i < 100; ++i) {
    void* p = a->alloc(kLarge, kSite);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  s = a->stats();
  EXPECT_EQ(cost.asked, 1u);
  EXPECT_EQ(s.learner.epochs, 1u);
  EXPECT_EQ(s.strategy, a->selector().current_id());
  uint32_t epochs = 0;
  uint32_t seen = 0;
  for (const StatsSnapshot::BoardRow& r : s.board) {
    ASSERT_LT(r.strategy, kLearnableStrategies);
    EXPECT_EQ(r.threshold, kStrategyThresholds[r.strategy]);
    seen |= 1u << r.strategy;
    epochs += r.epochs;
  }
  EXPECT_EQ(seen, (1u << kLearnableStrategies) - 1) << "the board lists each strategy once";
  EXPECT_EQ(epochs, 1u);
  ASSERT_EQ(s.site_count, 1u);
  EXPECT_EQ(s.sites[0].site, kSite);
  EXPECT_EQ(s.sites[0].requests, 100u);
  EXPECT_EQ(s.sites[0].bytes, 100u * kLarge);
  a->epoch_driver_for_testing().set_cost_source_for_testing(nullptr);
}

// ----------------------------------------------------------------- exited threads, orphans

// Counters of exited threads keep counting: a thread's allocations and frees are in the snapshot
// after it exits (its heap is retired, not forgotten), and its blocks still live count as live.
// Freed later by another thread, they are remote frees of that thread.
TEST(AllocatorStats, CountersOfExitedThreadsAreIncluded) {
  Options o;
  o.set(Opt::kLargeSlot, 0);
  TestAllocator a(o);
  std::vector<void*> kept;
  void* big = nullptr;
  std::thread t([&] {
    std::vector<void*> v;
    for (int i = 0; i < 6; ++i) v.push_back(a->alloc(200, kSite));
    for (int i = 0; i < 2; ++i) EXPECT_EQ(a->free(v[i], kSite), Verdict::kOk);
    kept.assign(v.begin() + 2, v.end());
    big = a->alloc(kLarge, kSite);
  });
  t.join();
  for (void* p : kept) ASSERT_NE(p, nullptr);
  ASSERT_NE(big, nullptr);
  const uint64_t len = MapLength(a, big);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, 6u);
  EXPECT_EQ(s.pool_frees, 2u);
  EXPECT_EQ(s.pool_live_bytes, 4 * PoolBlock(200));
  EXPECT_EQ(s.map_allocs, 1u);
  EXPECT_EQ(s.map_live_bytes, len);
  ExpectStatsMatchAudit(a);

  for (void* p : kept) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  ASSERT_EQ(a->free(big, kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.pool_allocs, 6u);
  EXPECT_EQ(s.pool_frees, 6u);
  EXPECT_EQ(s.remote_frees, 4u) << "the exited thread's spans are abandoned: frees by this thread are remote";
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_EQ(s.map_frees, 1u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  ExpectStatsMatchAudit(a);
}

// The orphan set: a thread whose heap cannot be made (its metadata map fails) still frees, and
// its frees are counted in the shared orphan counters, which the snapshot sums with every heap's.
// Threads are started, each freeing one Pool and one Map block first thing, while every map
// fails, and kept alive until all have freed, so the heap pool's chunk runs out and later
// threads get no heap; failed_maps() proves at least one did not.
TEST(AllocatorStats, OrphanCountersOfThreadsWithoutAHeapAreIncluded) {
  Options o;
  o.set(Opt::kLargeSlot, 0);
  RecAllocator a(o);
  constexpr int kThreads = 24;
  std::vector<void*> small, large;
  for (int i = 0; i < kThreads; ++i) {
    small.push_back(a->alloc(48, kSite));
    large.push_back(a->alloc(kLarge, kSite));
    ASSERT_NE(small.back(), nullptr);
    ASSERT_NE(large.back(), nullptr);
  }
  a->pal().set_fail_all(true);
  std::atomic<int> done{0};
  std::atomic<bool> release{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      EXPECT_EQ(a->free(small[i], kSite), Verdict::kOk);
      EXPECT_EQ(a->free(large[i], kSite), Verdict::kOk);
      done.fetch_add(1);
      while (!release.load()) std::this_thread::yield();  // keep this thread's heap, if it got one
    });
    while (done.load() != i + 1) std::this_thread::yield();
  }
  release.store(true);
  for (std::thread& t : threads) t.join();
  a->pal().set_fail_all(false);
  EXPECT_GT(a->pal().failed_maps(), 0u) << "some thread must have been refused a heap";
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_allocs, static_cast<uint64_t>(kThreads));
  EXPECT_EQ(s.pool_frees, static_cast<uint64_t>(kThreads)) << "frees by heapless threads were lost";
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_EQ(s.map_allocs, static_cast<uint64_t>(kThreads));
  EXPECT_EQ(s.map_frees, static_cast<uint64_t>(kThreads)) << "frees by heapless threads were lost";
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(s.cache_puts, static_cast<uint64_t>(kThreads));
  ExpectStatsMatchAudit(a);
}

}  // namespace
}  // namespace hakmem
