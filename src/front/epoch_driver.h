// Learn mode's epoch driver: books sampled large requests and runs the epoch boundary.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "pal/pal.h"
#include "select/select.h"

namespace hakmem {

/**
 * A thread's learn-mode counters (each heap of the front's ThreadHeap has one; only its thread
 * writes them): requests of at least the smallest threshold, their large-path cycles and their
 * sizes by threshold band, each booked by the sampled request for its whole sample period, and
 * folded at epoch boundaries only.
 */
struct LearnCounters {
  OwnedCounter requests, cycles;
  OwnedCounter bands[kSizeBands];
};

/**
 * Drives the learner in mode=learn (ARCHITECTURE.md, "Selector"). The large path books one
 * sampled request of every learn_sample per thread (note_large()); an epoch ends by request
 * count, by time, or early when it is clearly losing, and the boundary (one thread, under the
 * epoch lock) folds the threads' counters, asks the cost source for the epoch's cost and puts
 * the learner's next strategy in force in the Selector.
 *
 * Everything here is touched at epoch boundaries only, under the epoch lock, except the request
 * trigger, the deadline and the early-end accumulator, which the large path updates.
 * The boundary sums the threads' LearnCounters over `PoolT`'s heaps (Pool::for_each_heap()).
 */
template <class Pal, class PoolT>
class EpochDriver {
public:
  struct Parts {
    Pal* pal;
    PoolT* pool;
    Selector* selector;
    const std::atomic<uint64_t>* mapped;    ///< bytes mapped now (net tally)
    const std::atomic<uint64_t>* unmapped;  ///< bytes ever given back to the OS
  };

  /// Learn mode from the options (any other mode leaves learning() false and touches nothing).
  void init(const Parts& parts, const Options& o, uint64_t secret) {
    p_ = parts;
    learning_ = o.get(Opt::kMode) == kModeLearn;
    if (!learning_) return;
    LearnerParams lp;
    lp.k = static_cast<double>(o.get(Opt::kEloK));
    lp.min_samples = o.get(Opt::kMinSamples);
    lp.epsilon = static_cast<double>(o.get(Opt::kEpsilon)) / 100;
    lp.weight_cpu = static_cast<double>(o.get(Opt::kWeightCpu)) / 100;
    lp.weight_faults = static_cast<double>(o.get(Opt::kWeightFaults)) / 100;
    lp.weight_bytes = static_cast<double>(o.get(Opt::kWeightBytes)) / 100;
    lp.freeze_tolerance = static_cast<double>(o.get(Opt::kFreezeTol)) / 1000;
    lp.windows = static_cast<unsigned>(o.get(Opt::kWindows));
    lp.canary_rate = static_cast<double>(o.get(Opt::kCanary)) / 100;
    lp.canary_win = static_cast<double>(o.get(Opt::kCanaryWin)) / 100;
    lp.relearn_degrade = static_cast<double>(o.get(Opt::kRelearnCost)) / 100;
    lp.relearn_shift = static_cast<double>(o.get(Opt::kRelearnShift)) / 100;
    learner_.configure(lp, mix64(secret ^ 0x1ea4));
    // Learning starts from the one of the twelve nearest the configured threshold (the default
    // 256 KiB is not one of them), so the first epochs run what fixed mode would; the sweep then
    // visits every strategy before any is trusted.
    const uint64_t want = o.get(Opt::kThreshold);
    auto distance = [want](uint8_t i) {
      return kStrategyThresholds[i] > want ? kStrategyThresholds[i] - want : want - kStrategyThresholds[i];
    };
    uint8_t start = 0;
    for (uint8_t i = 1; i < kLearnableStrategies; ++i) {
      if (distance(i) < distance(start)) start = i;
    }
    learner_.start(start);
    p_.selector->set_current(start);
    epoch_target_ = o.get(Opt::kEpochRequests);
    early_end_ = o.get(Opt::kEarlyEnd);
    // An early end needs a sixteenth of an epoch's requests (and min_samples) as evidence.
    early_after_ = std::max<uint64_t>(lp.min_samples, epoch_target_ / 16);
    sample_ = o.get(Opt::kLearnSample);
    epoch_ns_ = o.get(Opt::kEpochMs) * 1000000ull;
    deadline_ns_.store(p_.pal->now_ns() + epoch_ns_, std::memory_order_relaxed);
    process_cost_.owner = this;
    // Each epoch is charged only its own faults and bytes: what was mapped before learning began
    // (the Registry's tables, the Pool's metadata) is not the first epoch's cost.
    process_cost_.last_faults = p_.pal->minor_faults();
    process_cost_.last_mapped_total = p_.mapped->load() + p_.unmapped->load();
    cost_source_ = &process_cost_;
  }

  bool learning() const { return learning_; }
  /// One large request in this many per thread is timed and booked (learn_sample).
  uint64_t sample() const { return sample_; }
  const Learner& learner() const { return learner_; }

  /**
   * Books a sampled large request of the thread whose counters are `c` and whose clock-check
   * time is `clock_checked`: the request count, its size band, its cycles, its site and the
   * shared epoch trigger, each weighted by learn_sample (so every count is exact to within one
   * sample period per thread, and exact with learn_sample=1). It may end the epoch: by count,
   * early (a clearly losing epoch), or by time, where the clock is read at most once per
   * kClockCheckCycles of this thread's time-stamp counter (`now` is the request's end, in those
   * cycles).
   */
  void note_large(LearnCounters& c, uint64_t& clock_checked, uint64_t size, uintptr_t site, uint64_t spent,
                  uint64_t now) {
    c.requests.add(static_cast<int64_t>(sample_));
    c.bands[size_band(size)].add(static_cast<int64_t>(sample_));
    c.cycles.add(static_cast<int64_t>(spent * sample_));
    sites_.note(site, size, sample_);
    const uint64_t n = requests_.fetch_add(sample_, std::memory_order_relaxed) + sample_;
    if (n >= epoch_target_) {
      end_epoch();
      return;
    }
    // A clearly losing LEARN or CANARY epoch ends early: once it has early_after_ requests, if its
    // time per request is past the bound (early_end x the cheapest other strategy's). Each sample
    // counts at most kEarlyEndClamp times the bound: a heavy tail the strategy really has (a few
    // mmaps and fault storms among cheap requests) still passes it, a request or two preempted
    // for milliseconds cannot.
    if (const uint64_t bound = early_end_cpr_.load(std::memory_order_relaxed); bound != 0) {
      const uint64_t weighted = std::min(spent, kEarlyEndClamp * bound) * sample_;
      const uint64_t acc = cycles_acc_.fetch_add(weighted, std::memory_order_relaxed) + weighted;
      if (n >= early_after_ && acc > bound * n) {
        end_epoch(true);
        return;
      }
    }
    if (now - clock_checked >= kClockCheckCycles) {
      clock_checked = now;
      if (p_.pal->now_ns() >= deadline_ns_.load(std::memory_order_relaxed)) end_epoch();
    }
  }

  /**
   * The epoch boundary: folds the per-thread counters, asks the cost source for the epoch's cost,
   * and puts the learner's next strategy in force. One thread does it (try-lock); the others carry
   * on with the strategy in force.
   */
  void end_epoch(bool early = false) {
    if (!lock_.try_lock()) return;
    // What the trigger counted so far; requests made while this boundary runs stay counted for
    // the next epoch (storing 0 would drop them and stretch the next epoch).
    const uint64_t triggered = requests_.load(std::memory_order_relaxed);
    uint64_t requests = 0, spent = 0;
    SizeSignature now;
    p_.pool->for_each_heap([&](const auto* h) {
      requests += static_cast<uint64_t>(h->learn.requests.get());
      spent += static_cast<uint64_t>(h->learn.cycles.get());
      for (size_t b = 0; b < kSizeBands; ++b) now.count[b] += static_cast<uint64_t>(h->learn.bands[b].get());
    });
    SizeSignature sig;
    for (size_t b = 0; b < kSizeBands; ++b) sig.count[b] = now.count[b] - seen_bands_.count[b];
    const uint64_t n = requests - seen_requests_;
    epoch_cycles_ = spent - seen_cycles_;
    if (n > 0) {
      const uint8_t ran = p_.selector->current_id();
      const EpochCost cost = cost_source_->epoch_cost(ran);
      if (early) learner_.note_early_end();
      const uint8_t next = learner_.end_epoch(n, cost, sig);
      if (ran < kLearnableStrategies && n >= learner_.params().min_samples) measured_cpr_[ran] = epoch_cycles_ / n;
      p_.selector->set_current(next);
      early_end_cpr_.store(early_end_bound(next), std::memory_order_relaxed);
      cycles_acc_.store(0, std::memory_order_relaxed);
      seen_requests_ = requests;
      seen_cycles_ = spent;
      seen_bands_ = now;
    }
    requests_.fetch_sub(triggered, std::memory_order_relaxed);
    deadline_ns_.store(p_.pal->now_ns() + epoch_ns_, std::memory_order_relaxed);
    lock_.unlock();
  }

  /// Fills the learner's fields of a stats snapshot (nothing unless learning).
  template <class Stats>
  void fill_stats(Stats& s) {
    s.site_count = sites_.top(s.sites, Stats::kTopSites);
    s.site_other_requests = sites_.other_requests();
    if (!learning_) return;
    LockGuard g(lock_);  // the learner changes only at epoch boundaries, under this lock
    s.learning = true;
    s.lifecycle = learner_.state();
    s.frozen = learner_.frozen();
    s.learner = learner_.counters();
    uint8_t order[kLearnableStrategies];
    learner_.ranking(order);
    for (size_t i = 0; i < kLearnableStrategies; ++i) {
      const StrategyRecord& r = learner_.record(order[i]);
      s.board[i] = {order[i], kStrategyThresholds[order[i]], r.rating, r.wins, r.losses, r.draws, r.epochs};
    }
  }

  /// Fork: disable() takes the epoch lock, so no boundary is mid-way when the address space is
  /// copied; enable() releases it (parent and child alike).
  void disable() { lock_.lock(); }
  void enable() { lock_.unlock(); }

  /// TestOnly: the learner's costs come from `source` (deterministic tests) instead of the process.
  /// Early ends are off then: they judge measured time, which would not be what is scored.
  void set_cost_source_for_testing(CostSource* source) {
    cost_source_ = source;
    early_end_ = 0;
    early_end_cpr_.store(0, std::memory_order_relaxed);
  }
  /// TestOnly: turns early ends back on (set_cost_source_for_testing turns them off) with `factor`.
  void set_early_end_for_testing(uint64_t factor) { early_end_ = factor; }
  /// TestOnly: the running epoch's early-end bound, in large-path cycles per request (0: none).
  uint64_t early_end_bound_for_testing() const { return early_end_cpr_.load(std::memory_order_relaxed); }

private:
  /// The most one sampled request counts toward an early end, in bounds (see note_large()).
  static constexpr uint64_t kEarlyEndClamp = 32;
  /// Time-stamp counter cycles between a thread's reads of the clock for the epoch deadline
  /// (2^19: 0.1-0.5 ms at 1-5 GHz, far below the shortest epoch_ms of 1 ms).
  static constexpr uint64_t kClockCheckCycles = uint64_t{1} << 19;

  /// The early-end bound (large-path cycles per request) of an epoch about to run `next`: early_end
  /// times the cheapest time per request measured for any other strategy; 0 (no bound) when
  /// FROZEN (a frozen epoch monitors, it does not compete), when early_end is 0, or before another
  /// strategy was measured.
  uint64_t early_end_bound(uint8_t next) const {
    if (early_end_ == 0 || learner_.state() == Lifecycle::kFrozen) return 0;
    uint64_t cheapest = 0;
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      if (i != next && measured_cpr_[i] != 0 && (cheapest == 0 || measured_cpr_[i] < cheapest))
        cheapest = measured_cpr_[i];
    }
    return cheapest * early_end_;
  }

  /// The real cost source: large-path cycles, minor faults and bytes mapped during the epoch.
  struct ProcessCost final : CostSource {
    EpochDriver* owner = nullptr;
    uint64_t last_faults = 0;
    uint64_t last_mapped_total = 0;
    EpochCost epoch_cost(uint8_t /*strategy*/) override {
      EpochCost c;
      c.cpu = static_cast<double>(owner->epoch_cycles_);
      const uint64_t faults = owner->p_.pal->minor_faults();
      c.faults = static_cast<double>(faults - last_faults);
      last_faults = faults;
      // Bytes mapped, ever: the net tally plus everything the releaser gave back.
      const uint64_t total = owner->p_.mapped->load() + owner->p_.unmapped->load();
      c.bytes = static_cast<double>(total - last_mapped_total);
      last_mapped_total = total;
      return c;
    }
  };

  Parts p_{};
  bool learning_ = false;
  Learner learner_{};
  SiteProfiles sites_{};
  SpinLock lock_;
  std::atomic<uint64_t> requests_{0};  ///< the epoch trigger: weighted requests since the last boundary
  std::atomic<uint64_t> deadline_ns_{0};
  uint64_t epoch_target_ = 10000;
  uint64_t sample_ = 16;
  uint64_t epoch_ns_ = 2000000000;
  uint64_t seen_requests_ = 0, seen_cycles_ = 0, epoch_cycles_ = 0;
  SizeSignature seen_bands_{};
  // Early end of a clearly losing epoch: each strategy's latest measured large-path cycles per
  // request (boundaries only), and the running epoch's bound and sampled cycles (large path).
  uint64_t measured_cpr_[kLearnableStrategies] = {};
  uint64_t early_end_ = 8;
  uint64_t early_after_ = 625;
  std::atomic<uint64_t> early_end_cpr_{0};
  std::atomic<uint64_t> cycles_acc_{0};
  ProcessCost process_cost_{};
  CostSource* cost_source_ = nullptr;
};

}  // namespace hakmem
