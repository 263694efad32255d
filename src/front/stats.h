// A point-in-time copy of every counter, and its table and JSON renderings.
#pragma once

#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "header/header.h"
#include "select/select.h"

namespace hakmem {

/// Every statistic hakmem reports, gathered at one moment.
struct StatsSnapshot {
  // selector
  uint64_t mode = 0;
  uint8_t strategy = 0;
  uint64_t threshold = 0;
  // pool
  uint64_t pool_allocs = 0, pool_frees = 0, pool_live_bytes = 0, pool_span_bytes = 0, pool_spans = 0;
  uint64_t remote_frees = 0;
  // map
  uint64_t map_allocs = 0, map_frees = 0, map_live_bytes = 0;
  // the threads' large slots (each keeps its last freed Map block of at most slot_max bytes)
  uint64_t slot_bytes = 0, slot_hits = 0, slot_max = 0;
  // BigCache
  uint64_t cache_hits = 0, cache_misses = 0, cache_puts = 0, cache_evictions = 0, cache_bypass = 0;
  uint64_t cache_bytes = 0, cache_blocks = 0, cache_cap = 0, cache_limit = 0, cache_max = 0;
  uint64_t cache_grows = 0, cache_shrinks = 0;
  // BatchReleaser
  uint64_t release_blocks = 0, release_bytes = 0, release_flushes = 0, unmap_calls = 0, syscalls_saved = 0;
  uint64_t purge_calls = 0, purged_bytes = 0;  ///< empty Pool spans' pages given back on a trim
  uint64_t pending_bytes = 0, batch_bytes = 0;
  // memory (I7: mapped = pool spans + map live + cached + slots + pending + metadata)
  uint64_t mapped_bytes = 0, metadata_bytes = 0;
  // hardening (paranoid mode: hardening=paranoid)
  bool paranoid = false;
  uint64_t quarantine_bytes = 0, quarantine_blocks = 0, quarantine_cap = 0;
  uint64_t withheld_bytes = 0;  ///< Pool bytes never reused after a write-after-free report
  uint64_t zero_live = 0;       ///< live zero-size blocks (unique inaccessible addresses)
  uint64_t protect_failures = 0;
  // misuse
  uint64_t errors[static_cast<size_t>(Verdict::kCount)] = {};
  uint64_t errors_total = 0;
  // learner (mode=learn)
  bool learning = false;
  Lifecycle lifecycle = Lifecycle::kLearn;
  uint8_t frozen = 0;
  struct BoardRow {
    uint8_t strategy;
    uint64_t threshold;
    double rating;
    uint32_t wins, losses, draws, epochs;
  } board[kLearnableStrategies] = {};  ///< best first
  LearnerCounters learner{};
  static constexpr size_t kTopSites = 5;
  SiteProfileView sites[kTopSites] = {};
  size_t site_count = 0;
  uint64_t site_other_requests = 0;  ///< large requests from sites the bounded table had no slot for
};

/**
 * Fills the fields a snapshot derives from the threads' backing counters (HeapCounters, summed
 * over every heap by pool.sum_heaps()) and from the Pool. The Map's allocations, frees and live
 * bytes are the Map's own here; LargeSlots::fill_stats(), called next, adds what the large slots
 * served (see HeapCounters).
 */
template <class PoolT>
void fill_heap_stats(StatsSnapshot& s, PoolT& pool) {
  auto sum = [&pool](OwnedCounter HeapCounters::*c) {
    return static_cast<uint64_t>(pool.sum_heaps([c](const HeapCounters& hc) { return (hc.*c).get(); }));
  };
  s.pool_allocs = static_cast<uint64_t>(pool.sum_heaps([](const HeapCounters& c) { return c.pool_alloc_count(); }));
  s.pool_frees = static_cast<uint64_t>(pool.sum_heaps([](const HeapCounters& c) { return c.pool_free_count(); }));
  s.pool_live_bytes = static_cast<uint64_t>(pool.sum_heaps([](const HeapCounters& c) { return c.pool_live_bytes(); }));
  s.remote_frees = sum(&HeapCounters::remote_frees);
  s.pool_span_bytes = pool.span_bytes();
  s.pool_spans = pool.span_count();
  s.map_allocs = sum(&HeapCounters::map_allocs);
  s.map_frees = sum(&HeapCounters::map_frees);
  s.map_live_bytes = sum(&HeapCounters::map_held_bytes);
}

/**
 * The allocator's stats (a friend of Allocator): the snapshot's fields, each component filling
 * its own part. The caller checked the allocator is ready.
 */
struct AllocatorStats {
  template <class A>
  static StatsSnapshot collect(A& a) {
    StatsSnapshot s;
    s.mode = a.opts_.get(Opt::kMode);
    const StrategySnapshot snap = a.selector_.snapshot();
    s.strategy = snap.id;
    s.threshold = snap.threshold;
    fill_heap_stats(s, a.pool_);
    a.slots_.fill_stats(s, a.pool_);
    a.cache_.fill_stats(s);
    a.releaser_.fill_stats(s);
    s.mapped_bytes = a.mapped_.load();
    s.metadata_bytes = a.metadata_bytes();
    s.paranoid = a.paranoid_;
    a.quarantine_.fill_stats(s);
    s.zero_live = a.zero_.live();
    s.protect_failures = a.map_path_.protect_failures();
    a.reporter_.fill_stats(s);
    a.driver_.fill_stats(s);
    return s;
  }
};

/// The human-readable table (stats=1, hak_stats_print).
void print_stats_table(const StatsSnapshot& s, WriteFn fn, void* arg);
/// The same numbers as one JSON object (stats=json).
void print_stats_json(const StatsSnapshot& s, WriteFn fn, void* arg);

}  // namespace hakmem
