// EpochDriver (src/front/epoch_driver.h) on its own: learn mode's bookkeeping of sampled large
// requests and its epoch boundary, driven directly through its narrow interface (init,
// note_large, end_epoch, fill_stats, the fork hooks and the TestOnly cost source and early-end
// knobs), not through Allocator<Config>.
//
// The driver runs over a real Pool<LinuxPal, ThreadHeap> (its heaps' HeapCounters are what
// note_large() books and what the boundary folds) and a real Selector (where the boundary puts
// the learner's choice). Its own platform is LinuxPal with a scripted clock and fault count
// (ScriptedClockPal), so that nothing depends on real time: the deadline passes only when a test
// moves the clock, and every call note_large() makes is with `now` chosen by the test.
//
// Guards (ARCHITECTURE.md, "Selector"): epochs of N large requests or T ms, one strategy per
// epoch, modes fixed/learn, FROZEN does no learning work (no early end judged while FROZEN),
// per-site profiles; I11 through a scripted CostSource (stationary costs with one dominant
// strategy: the driver's boundaries converge and freeze on it).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <thread>
#include <vector>

#include "backing/backing.h"
#include "front/epoch_driver.h"
#include "front/stats.h"
#include "front/thread_state.h"
#include "pal/pal.h"
#include "release/release.h"
#include "select/select.h"

namespace hakmem {

// GoogleTest prints a Lifecycle by name (found by ADL).
[[maybe_unused]] static void PrintTo(Lifecycle l, std::ostream* os) { *os << lifecycle_name(l); }

namespace {

constexpr int kN = kLearnableStrategies;
constexpr uintptr_t kSiteA = 0x5a17a000;
constexpr uintptr_t kSiteB = 0x5a17b000;
constexpr uint64_t kSize = 100000;  // band 1: at least 64 KiB, below 112 KiB
/// note_large()'s clock check happens once `now - clock_checked` reaches 2^19 cycles.
constexpr uint64_t kClockCheckCycles = uint64_t{1} << 19;

/// LinuxPal (maps for real) whose clock and minor-fault count are the test's, and which counts
/// how often the driver reads them.
class ScriptedClockPal : public LinuxPal {
public:
  uint64_t now_ns() const {
    clock_reads_.fetch_add(1, std::memory_order_relaxed);
    return now_.load(std::memory_order_relaxed);
  }
  uint64_t minor_faults() const {
    fault_reads_.fetch_add(1, std::memory_order_relaxed);
    return faults_.load(std::memory_order_relaxed);
  }
  void advance_ms(uint64_t ms) { now_.fetch_add(ms * 1000000, std::memory_order_relaxed); }
  void add_faults(uint64_t n) { faults_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t clock_reads() const { return clock_reads_.load(); }
  uint64_t fault_reads() const { return fault_reads_.load(); }

private:
  std::atomic<uint64_t> now_{1000000000};
  std::atomic<uint64_t> faults_{0};
  mutable std::atomic<uint64_t> clock_reads_{0};
  mutable std::atomic<uint64_t> fault_reads_{0};
};

/**
 * Costs scripted per strategy: `unit[s]` per request, split into the three raw components at
 * different scales, so the learner's weighted cost orders strategies as `unit` does. Records
 * the strategy of every epoch it is asked about. `during` (when set) runs inside the boundary,
 * on the first ask only.
 */
class ScriptedCost final : public CostSource {
public:
  std::array<double, kN> unit{};
  uint64_t requests = 100;  // the epoch's request count (cost per request stays unit[s])
  std::vector<uint8_t> asked;
  std::function<void()> during;

  ScriptedCost() { unit.fill(1.0); }

  EpochCost epoch_cost(uint8_t strategy) override {
    asked.push_back(strategy);
    if (during && asked.size() == 1) during();
    const double u = (strategy < kN ? unit[strategy] : 1e6) * static_cast<double>(requests);
    return EpochCost{u * 1000.0, u * 0.25, u * 65536.0};
  }
};

/// Learn-mode options: epochs of `requests` weighted large requests, `sample` per booking, never
/// ended by time (the scripted clock does not move unless a test moves it).
Options LearnOptions(uint64_t requests, uint64_t sample) {
  Options o;
  o.set(Opt::kMode, kModeLearn);
  o.set(Opt::kEpochRequests, requests);
  o.set(Opt::kLearnSample, sample);
  o.set(Opt::kEpochMs, 3600000);
  return o;
}

using PoolT = Pool<LinuxPal, ThreadHeap>;
using Driver = EpochDriver<ScriptedClockPal, PoolT>;

/// A Pool with one heap, a Selector and an EpochDriver wired as Allocator wires them. Every mapping
/// goes back through a BatchReleaser at the end (I1).
class Rig {
public:
  void Start() {
    ASSERT_TRUE(registry_.init(&pal_, &mapped_));
    // batch 0: every range handed over is released at once (no Map blocks: no codec needed).
    releaser_.init(&pal_, &registry_, nullptr, nullptr, &mapped_, 0, 0);
    const GiveBack give{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<BatchReleaser<LinuxPal>*>(ctx)->add_raw(base, len); },
        &releaser_};
    pool_.init(&pal_, &registry_, &mapped_, give);
    heap_ = pool_.make_heap(1);
    ASSERT_NE(heap_, nullptr);
    driver_ = std::make_unique<Driver>();
  }

  void Stop() {
    auto give = [this](uintptr_t base, size_t len) { releaser_.add_raw(base, len); };
    pool_.release_all(give);
    registry_.release_tables(give);
    releaser_.flush();
    EXPECT_EQ(mapped_.load(), 0u) << "the fixture's mappings were not all given back";
  }

  Driver::Parts Parts() { return Driver::Parts{&clock_, &pool_, &selector_, &mapped_, &unmapped_}; }

  void Init(const Options& o, uint64_t secret = 0x5ec7e7) { driver_->init(Parts(), o, secret); }

  /// `calls` sampled requests on `h` (this fixture's heap by default): `now` stays within one
  /// clock-check period of clock_checked_, so no call reads the clock.
  void Book(uint64_t calls, uint64_t spent = 1000, uintptr_t site = kSiteA, uint64_t size = kSize,
            ThreadHeap* h = nullptr) {
    for (uint64_t i = 0; i < calls; ++i) {
      driver_->note_large((h != nullptr ? h : heap_)->learn, clock_checked_, size, site, spent, clock_checked_);
    }
  }

  uint64_t Epochs() const { return driver_->learner().counters().epochs; }

  uint64_t SumRequests() {
    int64_t n = 0;
    pool_.for_each_heap([&](const ThreadHeap* h) { n += h->learn.requests.get(); });
    return static_cast<uint64_t>(n);
  }

  LinuxPal pal_;
  ScriptedClockPal clock_;
  std::atomic<uint64_t> mapped_{0};
  std::atomic<uint64_t> unmapped_{0};
  Registry<LinuxPal> registry_;
  BatchReleaser<LinuxPal> releaser_;
  PoolT pool_;
  Selector selector_;
  std::unique_ptr<Driver> driver_;
  ThreadHeap* heap_ = nullptr;
  uint64_t clock_checked_ = 0;
};

class EpochDriverTest : public ::testing::Test, protected Rig {
protected:
  void SetUp() override { Start(); }
  void TearDown() override { Stop(); }
};

/// The leaderboard of a snapshot: a permutation of the twelve, best first, thresholds and epoch
/// counts as the learner has them.
void ExpectBoardMatchesLearner(const StatsSnapshot& s, const Learner& l) {
  std::bitset<kN> seen;
  uint64_t epochs = 0;
  for (int r = 0; r < kN; ++r) {
    const StatsSnapshot::BoardRow& row = s.board[r];
    ASSERT_LT(row.strategy, kN) << "rank " << r;
    EXPECT_FALSE(seen.test(row.strategy)) << "strategy " << int{row.strategy} << " twice on the board";
    seen.set(row.strategy);
    const StrategyRecord& rec = l.record(row.strategy);
    EXPECT_EQ(row.threshold, kStrategyThresholds[row.strategy]) << "rank " << r;
    EXPECT_EQ(row.rating, rec.rating) << "rank " << r;
    EXPECT_EQ(row.wins, rec.wins) << "rank " << r;
    EXPECT_EQ(row.losses, rec.losses) << "rank " << r;
    EXPECT_EQ(row.draws, rec.draws) << "rank " << r;
    EXPECT_EQ(row.epochs, rec.epochs) << "rank " << r;
    if (r > 0) {
      EXPECT_GE(s.board[r - 1].rating, row.rating) << "the board is not best first at rank " << r;
      if (s.board[r - 1].rating == row.rating) {
        EXPECT_LT(s.board[r - 1].strategy, row.strategy) << "equal ratings rank by id at rank " << r;
      }
    }
    epochs += row.epochs;
  }
  EXPECT_TRUE(seen.all());
  EXPECT_EQ(epochs, s.learner.epochs) << "every epoch ran exactly one strategy of the board";
}

}  // namespace

// ------------------------------------------------------------------------------------ init

// "modes fixed/learn": a driver in fixed mode is inert. It does not put a strategy in the
// Selector, reads neither clock nor fault count, and fill_stats() reports no learner.
TEST_F(EpochDriverTest, FixedModeInitLeavesLearningOffAndTouchesNothing) {
  selector_.set_current(7);
  Options o;
  o.set(Opt::kMode, kModeFixed);
  o.set(Opt::kThreshold, 1 * kMiB);  // would start learning at strategy 5 in learn mode
  Init(o);
  EXPECT_FALSE(driver_->learning());
  EXPECT_EQ(selector_.current_id(), 7) << "fixed mode must leave the Selector alone";
  EXPECT_EQ(clock_.clock_reads(), 0u) << "fixed mode must not read the clock";
  EXPECT_EQ(clock_.fault_reads(), 0u) << "fixed mode must not read the fault count";
  EXPECT_EQ(Epochs(), 0u);
  EXPECT_EQ(mapped_.load(), pool_.meta_bytes() + registry_.mapped_bytes()) << "nothing mapped by the driver";

  StatsSnapshot s;
  s.lifecycle = Lifecycle::kCanary;  // sentinels: a driver that is not learning writes none of these
  s.frozen = 99;
  s.board[0].epochs = 12345;
  driver_->fill_stats(s);
  EXPECT_FALSE(s.learning);
  EXPECT_EQ(s.lifecycle, Lifecycle::kCanary);
  EXPECT_EQ(s.frozen, 99);
  EXPECT_EQ(s.board[0].epochs, 12345u);
  EXPECT_EQ(s.site_count, 0u);
  EXPECT_EQ(s.site_other_requests, 0u);
}

// Learn mode starts from the learnable strategy nearest the configured threshold and puts it in
// the Selector, so the first epoch runs what fixed mode would have.
TEST_F(EpochDriverTest, LearnModeStartsFromTheLearnableStrategyNearestTheThreshold) {
  struct Case {
    uint64_t threshold;
    uint8_t start;
  };
  // 256 KiB (the default) is between 200 KiB (id 2) and 352 KiB (id 3), nearer 200 KiB.
  const Case cases[] = {{64 * kKiB, 0}, {256 * kKiB, 2}, {300000, 3},     {1 * kMiB, 5},
                        {5 * kMiB, 8},  {6123520, 8},    {20 * kMiB, 10}, {32 * kMiB, 11}};
  for (const Case& c : cases) {
    selector_.set_current(kFixedStrategy);
    Options o = LearnOptions(100, 3);
    o.set(Opt::kThreshold, c.threshold);
    auto d = std::make_unique<Driver>();
    d->init(Parts(), o, 0x1234);
    EXPECT_TRUE(d->learning()) << c.threshold;
    EXPECT_EQ(d->sample(), 3u) << "sample() is learn_sample";
    EXPECT_EQ(d->learner().current(), c.start) << "threshold " << c.threshold;
    EXPECT_EQ(selector_.current_id(), c.start) << "threshold " << c.threshold << ": the Selector must run the start";
    EXPECT_EQ(d->learner().state(), Lifecycle::kLearn);
    EXPECT_EQ(d->early_end_bound_for_testing(), 0u) << "no strategy measured yet: no early-end bound";
  }
}

// The learner gets the options' constants (percent and per-mille options scaled).
TEST_F(EpochDriverTest, LearnModeConfiguresTheLearnerFromTheOptions) {
  Options o = LearnOptions(100, 1);
  o.set(Opt::kEloK, 16);
  o.set(Opt::kMinSamples, 7);
  o.set(Opt::kEpsilon, 25);
  o.set(Opt::kWeightCpu, 50);
  o.set(Opt::kWeightFaults, 20);
  o.set(Opt::kWeightBytes, 30);
  o.set(Opt::kFreezeTol, 15);
  o.set(Opt::kWindows, 4);
  o.set(Opt::kCanary, 3);
  o.set(Opt::kCanaryWin, 6);
  o.set(Opt::kRelearnCost, 40);
  o.set(Opt::kRelearnShift, 30);
  Init(o);
  const LearnerParams& p = driver_->learner().params();
  EXPECT_EQ(p.k, 16.0);
  EXPECT_EQ(p.min_samples, 7u);
  EXPECT_DOUBLE_EQ(p.epsilon, 0.25);
  EXPECT_DOUBLE_EQ(p.weight_cpu, 0.50);
  EXPECT_DOUBLE_EQ(p.weight_faults, 0.20);
  EXPECT_DOUBLE_EQ(p.weight_bytes, 0.30);
  EXPECT_DOUBLE_EQ(p.freeze_tolerance, 0.015);
  EXPECT_EQ(p.windows, 4u);
  EXPECT_DOUBLE_EQ(p.canary_rate, 0.03);
  EXPECT_DOUBLE_EQ(p.canary_win, 0.06);
  EXPECT_DOUBLE_EQ(p.relearn_degrade, 0.40);
  EXPECT_DOUBLE_EQ(p.relearn_shift, 0.30);
}

// ------------------------------------------------------------------------------ note_large

// Each booking stands for learn_sample requests: the request count, the size band, the cycles
// and the site profile are all weighted by sample().
TEST_F(EpochDriverTest, NoteLargeWeightsEveryCountBySample) {
  for (const uint64_t sample : {uint64_t{1}, uint64_t{4}, uint64_t{16}}) {
    SCOPED_TRACE(sample);
    driver_ = std::make_unique<Driver>();
    ThreadHeap* h = pool_.make_heap(1);  // a new heap (none is retired): fresh counters for each sample
    ASSERT_NE(h, nullptr);
    Init(LearnOptions(100000, sample));
    ASSERT_EQ(driver_->sample(), sample);
    Book(10, 250, kSiteA, kSize, h);
    EXPECT_EQ(h->learn.requests.get(), static_cast<int64_t>(10 * sample));
    EXPECT_EQ(h->learn.cycles.get(), static_cast<int64_t>(10 * 250 * sample));
    for (size_t b = 0; b < kSizeBands; ++b) {
      EXPECT_EQ(h->learn.bands[b].get(), b == size_band(kSize) ? static_cast<int64_t>(10 * sample) : 0) << "band " << b;
    }
    StatsSnapshot s;
    driver_->fill_stats(s);
    ASSERT_EQ(s.site_count, 1u);
    EXPECT_EQ(s.sites[0].site, kSiteA);
    EXPECT_EQ(s.sites[0].requests, 10 * sample);
    EXPECT_EQ(s.sites[0].bytes, 10 * sample * kSize);
    EXPECT_EQ(s.sites[0].bands[size_band(kSize)], 10 * sample);
    EXPECT_EQ(Epochs(), 0u) << "far below epoch_requests: no boundary";
  }
}

// ------------------------------------------------------------------------- epoch boundaries

// "epochs of N large requests": the epoch ends on the booking that brings the weighted count to
// epoch_requests, not one before; the cost source is asked about the strategy that ran; the
// Selector then runs the learner's next strategy (the sweep's next one); the trigger starts
// from zero again, so the next epoch takes as many bookings.
TEST_F(EpochDriverTest, TheEpochEndsWhenTheWeightedCountReachesEpochRequests) {
  Init(LearnOptions(100, 3));  // 34 bookings of 3 reach 100 (33 make 99)
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  const uint8_t start = selector_.current_id();
  Book(33);
  EXPECT_EQ(Epochs(), 0u) << "99 weighted requests must not end an epoch of 100";
  EXPECT_TRUE(cost.asked.empty());
  EXPECT_EQ(selector_.current_id(), start);
  Book(1);
  ASSERT_EQ(Epochs(), 1u) << "102 weighted requests end an epoch of 100";
  ASSERT_EQ(cost.asked.size(), 1u);
  EXPECT_EQ(cost.asked[0], start) << "the cost source is asked about the strategy the epoch ran";
  EXPECT_EQ(driver_->learner().counters().scored_epochs, 1u) << "the boundary counted 102 >= min_samples requests";
  EXPECT_EQ(driver_->learner().record(start).epochs, 1u);
  EXPECT_EQ(selector_.current_id(), driver_->learner().current()) << "the Selector runs what the learner chose";
  EXPECT_EQ(selector_.current_id(), (start + 1) % kN) << "LEARN sweeps: the next strategy runs next";
  // The trigger was reset by what it had counted (102): the next epoch again needs 34 bookings.
  Book(33);
  EXPECT_EQ(Epochs(), 1u);
  Book(1);
  EXPECT_EQ(Epochs(), 2u);
  ASSERT_EQ(cost.asked.size(), 2u);
  EXPECT_EQ(cost.asked[1], (start + 1) % kN);
}

// The boundary counts from the heaps' counters, over every heap: bookings on two threads' heaps
// make one epoch between them.
TEST_F(EpochDriverTest, TheBoundaryFoldsEveryHeapsCounters) {
  Options o = LearnOptions(100, 4);
  o.set(Opt::kMinSamples, 100);  // scored only if the boundary saw both heaps' 100 requests
  Init(o);
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  ThreadHeap* other = pool_.make_heap(1);
  ASSERT_NE(other, nullptr);
  Book(10);
  Book(14, 1000, kSiteA, kSize, other);
  EXPECT_EQ(Epochs(), 0u);
  Book(1, 1000, kSiteA, kSize, other);
  ASSERT_EQ(Epochs(), 1u);
  EXPECT_EQ(driver_->learner().counters().scored_epochs, 1u)
      << "40 + 60 requests on two heaps make one scored epoch of 100";
  EXPECT_EQ(heap_->learn.requests.get(), 40);
  EXPECT_EQ(other->learn.requests.get(), 60);
}

// "requests made while this boundary runs stay counted for the next epoch": a test cost source
// books requests from inside the boundary; the next epoch needs only what the epoch lacks.
TEST_F(EpochDriverTest, RequestsBookedDuringTheBoundaryCarryOverToTheNextEpoch) {
  Init(LearnOptions(100, 4));
  ScriptedCost cost;
  cost.during = [this] { Book(5); };  // 20 weighted requests while the first boundary runs
  driver_->set_cost_source_for_testing(&cost);
  Book(25);
  ASSERT_EQ(Epochs(), 1u) << "the in-boundary bookings must not run a second boundary (try-lock)";
  ASSERT_EQ(cost.asked.size(), 1u);
  EXPECT_EQ(SumRequests(), 120u);
  Book(19);
  EXPECT_EQ(Epochs(), 1u) << "20 carried + 76 = 96 < 100";
  Book(1);
  EXPECT_EQ(Epochs(), 2u) << "20 carried + 80 = 100: the carried requests count toward the second epoch";
}

// One thread runs the boundary (try-lock): while the epoch lock is held (the fork hook disable()),
// a booking that reaches the target skips the boundary and keeps its count; after enable() the
// next booking ends the epoch.
TEST_F(EpochDriverTest, ABoundaryIsSkippedWhileTheEpochLockIsHeldAndRunsAfter) {
  Init(LearnOptions(100, 4));
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  driver_->disable();
  Book(30);  // 120 weighted: every booking from the 25th on finds the lock taken
  EXPECT_EQ(Epochs(), 0u);
  EXPECT_TRUE(cost.asked.empty());
  driver_->enable();
  Book(1);
  EXPECT_EQ(Epochs(), 1u) << "the trigger kept its count across the skipped boundaries";
  // The boundary took everything counted (124): a full epoch follows.
  Book(24);
  EXPECT_EQ(Epochs(), 1u);
  Book(1);
  EXPECT_EQ(Epochs(), 2u);
}

// "or T ms": the deadline is read at most once per clock-check period of the caller's cycles
// (`now - clock_checked`), and an epoch past its deadline ends then, whatever its count.
TEST_F(EpochDriverTest, AnEpochEndsByTimeOnTheFirstClockCheckPastTheDeadline) {
  Options o = LearnOptions(1000000, 1);
  o.set(Opt::kEpochMs, 5);
  Init(o);
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  uint64_t checked = 0;
  const uint64_t reads0 = clock_.clock_reads();
  // Within one period: no clock read at all.
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, kClockCheckCycles - 1);
  EXPECT_EQ(clock_.clock_reads(), reads0) << "the clock is read at most once per period";
  EXPECT_EQ(checked, 0u);
  // A full period later: one read, before the deadline: the epoch goes on.
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, kClockCheckCycles);
  EXPECT_EQ(clock_.clock_reads(), reads0 + 1);
  EXPECT_EQ(checked, kClockCheckCycles) << "the check time moves to `now`";
  EXPECT_EQ(Epochs(), 0u);
  // Past the deadline, but within the period since the last check: not noticed yet.
  clock_.advance_ms(6);
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, 2 * kClockCheckCycles - 1);
  EXPECT_EQ(Epochs(), 0u);
  // The next period's check sees the deadline passed: the epoch ends with its 4 requests.
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, 2 * kClockCheckCycles);
  EXPECT_EQ(Epochs(), 1u);
  ASSERT_EQ(cost.asked.size(), 1u);
  EXPECT_EQ(driver_->learner().counters().scored_epochs, 0u) << "4 requests < min_samples: not scored";
  // The boundary set a new deadline 5 ms on: a check right after does not end another epoch.
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, 3 * kClockCheckCycles);
  EXPECT_EQ(Epochs(), 1u);
  clock_.advance_ms(5);
  driver_->note_large(heap_->learn, checked, kSize, kSiteA, 100, 4 * kClockCheckCycles);
  EXPECT_EQ(Epochs(), 2u);
}

// A boundary with no request since the last one changes nothing (no epoch, no strategy change).
TEST_F(EpochDriverTest, ABoundaryWithNoRequestsIsNotAnEpoch) {
  Init(LearnOptions(100, 1));
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  const uint8_t start = selector_.current_id();
  driver_->end_epoch();
  driver_->end_epoch(/*early=*/true);
  EXPECT_EQ(Epochs(), 0u);
  EXPECT_TRUE(cost.asked.empty());
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u);
  EXPECT_EQ(selector_.current_id(), start);
}

// ------------------------------------------------------------------- scripted costs (I11)

namespace {

struct FreezeTrace {
  std::vector<uint8_t> asked;
  std::vector<uint8_t> ran;  ///< the Selector's strategy during each epoch
  bool frozen = false;
};

}  // namespace

// I11 through the driver: with a CostSource where strategy 7 is 30% cheaper and epsilon 0, the
// boundaries converge and freeze on 7 and the Selector runs it; every epoch's cost was asked
// about the strategy the Selector ran; the same secret gives the same sequence (deterministic);
// fill_stats() then reports FROZEN on 7, the board best first with 7 on top.
TEST_F(EpochDriverTest, ScriptedCostsDriveTheBoundariesToFreezeOnTheCheapest_I11) {
  constexpr uint8_t kBest = 7;
  constexpr uint64_t kMaxEpochs = 40;
  // Each run over a rig of its own: a driver starts from the counters of a fresh Pool.
  auto run = [](Rig& r, FreezeTrace& t) {
    Options o = LearnOptions(100, 4);
    o.set(Opt::kEpsilon, 0);
    o.set(Opt::kCanary, 0);
    r.Init(o, 0xfeed);
    ScriptedCost cost;
    cost.unit[kBest] = 0.7;
    r.driver_->set_cost_source_for_testing(&cost);
    for (uint64_t e = 0; e < kMaxEpochs && r.driver_->learner().state() != Lifecycle::kFrozen; ++e) {
      t.ran.push_back(r.selector_.current_id());
      const uint64_t before = r.Epochs();
      r.Book(25);
      ASSERT_EQ(r.Epochs(), before + 1) << "25 bookings of 4 make one epoch of 100";
    }
    t.asked = cost.asked;
    t.frozen = r.driver_->learner().state() == Lifecycle::kFrozen;
    r.driver_->set_cost_source_for_testing(nullptr);  // `cost` goes out of scope
  };
  FreezeTrace first;
  run(*this, first);
  ASSERT_TRUE(first.frozen) << "no freeze within " << kMaxEpochs << " epochs";
  EXPECT_EQ(first.asked, first.ran) << "each epoch's cost must be asked about the strategy the Selector ran";
  EXPECT_EQ(driver_->learner().frozen(), kBest);
  EXPECT_EQ(selector_.current_id(), kBest) << "FROZEN puts the frozen strategy in the Selector";
  std::bitset<kN> ran;
  for (uint8_t s : first.ran) ran.set(s);
  EXPECT_TRUE(ran.all()) << "LEARN sweeps every strategy before freezing";

  StatsSnapshot s;
  driver_->fill_stats(s);
  EXPECT_TRUE(s.learning);
  EXPECT_EQ(s.lifecycle, Lifecycle::kFrozen);
  EXPECT_EQ(s.frozen, kBest);
  EXPECT_EQ(s.learner.freezes, 1u);
  EXPECT_EQ(s.learner.epochs, first.asked.size());
  EXPECT_EQ(s.board[0].strategy, kBest) << "the cheapest is rated best";
  EXPECT_GT(s.board[0].wins, 0u);
  ExpectBoardMatchesLearner(s, driver_->learner());

  // A FROZEN epoch is monitoring: no learning work, the Selector stays on 7.
  ScriptedCost cost;
  cost.unit[kBest] = 0.7;
  driver_->set_cost_source_for_testing(&cost);
  const uint64_t work = driver_->learner().counters().learning_work;
  Book(25 * 3);
  EXPECT_EQ(Epochs(), first.asked.size() + 3);
  EXPECT_EQ(driver_->learner().counters().learning_work, work) << "FROZEN does no learning work";
  EXPECT_EQ(selector_.current_id(), kBest);
  driver_->set_cost_source_for_testing(nullptr);

  FreezeTrace second;
  auto other = std::make_unique<Rig>();
  other->Start();
  run(*other, second);
  other->Stop();
  EXPECT_EQ(second.asked, first.asked) << "same secret, same costs: the same decisions";
}

// fill_stats() before any epoch: learning, LEARN, every strategy at the initial rating, so the
// board is in id order (ties by id) with each strategy's own threshold.
TEST_F(EpochDriverTest, FillStatsBeforeAnyEpochListsTheTwelveInIdOrder) {
  Init(LearnOptions(100, 1));
  StatsSnapshot s;
  s.lifecycle = Lifecycle::kCanary;
  driver_->fill_stats(s);
  EXPECT_TRUE(s.learning);
  EXPECT_EQ(s.lifecycle, Lifecycle::kLearn);
  EXPECT_EQ(s.learner.epochs, 0u);
  for (int r = 0; r < kN; ++r) {
    EXPECT_EQ(s.board[r].strategy, r);
    EXPECT_EQ(s.board[r].threshold, kStrategyThresholds[r]);
    EXPECT_EQ(s.board[r].rating, 1500.0);
    EXPECT_EQ(s.board[r].epochs, 0u);
  }
  ExpectBoardMatchesLearner(s, driver_->learner());
}

// fill_stats()'s site profiles: the busiest sites first, each with its weighted requests, bytes
// and bands; requests of an unknown site (0) are counted apart.
TEST_F(EpochDriverTest, FillStatsReportsSiteProfilesBusiestFirst) {
  Init(LearnOptions(1000000, 2));
  Book(3, 1000, kSiteA, 70000);     // band 1
  Book(5, 1000, kSiteB, 400000);    // band 4
  Book(1, 1000, kSiteB, 2 * kMiB);  // band 7
  Book(2, 1000, /*site=*/0, 70000);
  StatsSnapshot s;
  driver_->fill_stats(s);
  ASSERT_EQ(s.site_count, 2u);
  EXPECT_EQ(s.sites[0].site, kSiteB);
  EXPECT_EQ(s.sites[0].requests, 12u);
  EXPECT_EQ(s.sites[0].bytes, 10u * 400000 + 2u * 2 * kMiB);
  EXPECT_EQ(s.sites[0].bands[size_band(400000)], 10u);
  EXPECT_EQ(s.sites[0].bands[size_band(2 * kMiB)], 2u);
  EXPECT_EQ(s.sites[1].site, kSiteA);
  EXPECT_EQ(s.sites[1].requests, 6u);
  EXPECT_EQ(s.sites[1].bytes, 6u * 70000);
  EXPECT_EQ(s.site_other_requests, 4u) << "site 0 has no slot: its requests are 'other'";
}

// --------------------------------------------------------------- the process cost source

namespace {

enum class Component { kCpu, kFaults, kBytes };

/// Runs three scored epochs of 100 requests on the driver's own cost source (no test source), with
/// only `which` weighted, and `q[e]` of that component during epoch e: cycles per request, minor
/// faults (the scripted count), or bytes given back (the unmapped tally). Returns each epoch's
/// normalized cost, as the learner recorded it for the strategy that ran it.
std::array<double, 3> ProcessCosts(Rig& r, Component which, const std::array<uint64_t, 3>& q) {
  Options o = LearnOptions(100, 4);
  o.set(Opt::kEarlyEnd, 0);
  o.set(Opt::kWeightCpu, which == Component::kCpu ? 100 : 0);
  o.set(Opt::kWeightFaults, which == Component::kFaults ? 100 : 0);
  o.set(Opt::kWeightBytes, which == Component::kBytes ? 100 : 0);
  r.Init(o);
  std::array<double, 3> out{};
  for (size_t e = 0; e < 3; ++e) {
    const uint8_t ran = r.selector_.current_id();
    if (which == Component::kFaults) r.clock_.add_faults(q[e]);
    if (which == Component::kBytes) r.unmapped_.fetch_add(q[e]);
    r.Book(25, which == Component::kCpu ? q[e] : 1000);
    EXPECT_EQ(r.Epochs(), e + 1);
    EXPECT_EQ(r.driver_->learner().record(ran).scored, 1u) << "epoch " << e;
    out[e] = r.driver_->learner().record(ran).last_cost;
  }
  return out;
}

}  // namespace

// The driver's own cost source (init's ProcessCost): an epoch's CPU cost is the large-path cycles
// booked in that epoch. The learner fixes each component's scale at its first epoch, so with only
// CPU weighted the three epochs cost 1, 3 and 0.5 for 1000, 3000 and 500 cycles per request.
TEST_F(EpochDriverTest, ProcessCostChargesTheEpochsBookedCycles) {
  const auto c = ProcessCosts(*this, Component::kCpu, {1000, 3000, 500});
  EXPECT_DOUBLE_EQ(c[0], 1.0);
  EXPECT_DOUBLE_EQ(c[1], 3.0);
  EXPECT_DOUBLE_EQ(c[2], 0.5);
}

// The fault cost is the minor faults since the previous boundary (the count at init for the first
// epoch): 10, 30 and 5 faults cost 1, 3 and 0.5.
TEST_F(EpochDriverTest, ProcessCostChargesTheFaultsOfTheEpoch) {
  clock_.add_faults(1000);  // faults before learning began are no epoch's
  const auto c = ProcessCosts(*this, Component::kFaults, {10, 30, 5});
  EXPECT_DOUBLE_EQ(c[0], 1.0);
  EXPECT_DOUBLE_EQ(c[1], 3.0);
  EXPECT_DOUBLE_EQ(c[2], 0.5);
}

// The byte cost is the bytes mapped during the epoch (net tally plus bytes given back): after the
// first boundary, 2 MiB then 1 MiB given back cost twice and once what the first epoch's 1 MiB
// did, relative to the first epoch's bytes.
TEST_F(EpochDriverTest, ProcessCostChargesTheBytesOfTheEpochAfterTheFirst) {
  const auto c = ProcessCosts(*this, Component::kBytes, {1 << 20, 2 << 20, 1 << 20});
  EXPECT_DOUBLE_EQ(c[0], 1.0);
  EXPECT_NEAR(c[2] / c[1], 0.5, 1e-12) << "epochs 2 and 3 are charged their own bytes";
}

// The first epoch's byte cost must be the bytes of that epoch only, as its fault cost is: init()
// takes both tallies. Were the bytes mapped before learning began (the Registry's tables, the
// Pool's metadata) charged to the first epoch, the learner, which fixes the byte scale at the first
// epoch, would understate every later epoch's byte cost by that much.
TEST_F(EpochDriverTest, ProcessCostChargesTheFirstEpochOnlyItsOwnBytes) {
  ASSERT_GT(mapped_.load(), 0u) << "the rig has metadata mapped before init";
  const auto c = ProcessCosts(*this, Component::kBytes, {1 << 20, 2 << 20, 1 << 20});
  EXPECT_DOUBLE_EQ(c[0], 1.0);
  EXPECT_DOUBLE_EQ(c[1], 2.0) << "the first epoch was charged bytes mapped before init";
  EXPECT_DOUBLE_EQ(c[2], 1.0);
}

// ------------------------------------------------------------------------------ early end

// set_cost_source_for_testing() turns early ends off: with early_end 0 there is no bound, however
// many strategies were measured.
TEST_F(EpochDriverTest, EarlyEndBoundIsZeroWhenEarlyEndIsZero) {
  Init(LearnOptions(100, 4));  // early_end keeps its default (8) in the options...
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);  // ...and the test cost source turns it off
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 0u);
  Book(25, 1000);
  Book(25, 500);
  ASSERT_EQ(Epochs(), 2u);
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 0u) << "early_end 0: no bound";
  // Turned back on, then off again through the knob: the next boundary's bound follows it.
  driver_->set_early_end_for_testing(8);
  Book(25, 1000);
  EXPECT_NE(driver_->early_end_bound_for_testing(), 0u);
  driver_->set_early_end_for_testing(0);
  Book(25, 1000);
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 0u);
}

// The bound of the next epoch is early_end times the cheapest time per request measured for
// another strategy: after one epoch of 1000 cycles per request, 8000; after a second strategy at
// 500, 4000.
TEST_F(EpochDriverTest, EarlyEndBoundIsEarlyEndTimesTheCheapestOtherStrategy) {
  Init(LearnOptions(100, 4));
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  driver_->set_early_end_for_testing(8);
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 0u) << "nothing measured yet";
  Book(25, 1000);  // each booking books 4 x 1000 cycles for 4 requests: 1000 per request
  ASSERT_EQ(Epochs(), 1u);
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 8u * 1000);
  Book(25, 500);
  ASSERT_EQ(Epochs(), 2u);
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 8u * 500);
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u) << "neither epoch was over its bound";
}

// "the cheapest time per request measured for any OTHER strategy": when the strategy about to run
// was measured and is itself the cheapest, its own time does not set its bound. Strategy 5 runs at
// 200 cycles per request, every other at 1000 (under the others' bound of 8 x 200, so no epoch
// ends early), and is also the cheapest by the scripted cost, so after the sweep the learner runs
// it again (still LEARN): its bound is 8 x 1000, not 8 x 200.
TEST_F(EpochDriverTest, EarlyEndBoundExcludesTheStrategyAboutToRun) {
  constexpr uint8_t kFast = 5;
  Options o = LearnOptions(100, 4);
  o.set(Opt::kEpsilon, 0);
  o.set(Opt::kCanary, 0);
  Init(o);
  ScriptedCost cost;
  cost.unit[kFast] = 0.5;
  driver_->set_cost_source_for_testing(&cost);
  driver_->set_early_end_for_testing(8);
  int checked = 0;
  for (int e = 0; e < 30 && checked == 0; ++e) {
    const bool fast = selector_.current_id() == kFast;
    Book(25, fast ? 200 : 1000);
    ASSERT_EQ(Epochs(), static_cast<uint64_t>(e + 1));
    if (selector_.current_id() == kFast && driver_->learner().record(kFast).epochs > 0 &&
        driver_->learner().state() == Lifecycle::kLearn) {
      EXPECT_EQ(driver_->early_end_bound_for_testing(), 8u * 1000) << "the bound must not use the runner's own time";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1) << "strategy " << int{kFast} << " never ran a second time while learning";
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u);
}

// A clearly losing epoch ends early: once it has early_after (here min_samples = 50) requests and
// its time per request is past the bound. 12 bookings of 4 (48 requests) are not enough
// evidence; the 13th (52) ends it, booked as an early end.
TEST_F(EpochDriverTest, AClearlyLosingEpochEndsEarlyOnceItHasEnoughRequests) {
  Init(LearnOptions(100, 4));
  ScriptedCost cost;
  driver_->set_cost_source_for_testing(&cost);
  driver_->set_early_end_for_testing(8);
  Book(25, 1000);
  ASSERT_EQ(Epochs(), 1u);
  ASSERT_EQ(driver_->early_end_bound_for_testing(), 8000u);
  const uint8_t losing = selector_.current_id();
  Book(12, 100000);
  EXPECT_EQ(Epochs(), 1u) << "48 requests < early_after (50): no early end yet";
  Book(1, 100000);
  ASSERT_EQ(Epochs(), 2u) << "52 requests at 100x the cheapest: the epoch ends early";
  EXPECT_EQ(driver_->learner().counters().early_ends, 1u);
  ASSERT_EQ(cost.asked.size(), 2u);
  EXPECT_EQ(cost.asked[1], losing);
  // The early end reset the trigger: the next epoch again takes 100 requests.
  Book(24, 1000);
  EXPECT_EQ(Epochs(), 2u);
  Book(1, 1000);
  EXPECT_EQ(Epochs(), 3u);
}

// Each sampled request counts toward an early end at most 32 times the bound: one request
// preempted for a very long time among cheap ones cannot end an epoch on its own.
TEST_F(EpochDriverTest, AnOutlierCountsAtMostThirtyTwoBoundsTowardAnEarlyEnd) {
  Options o = LearnOptions(1000, 4);
  o.set(Opt::kMinSamples, 200);  // early_after = 200 requests
  Init(o);
  ScriptedCost cost;
  cost.requests = 1000;
  driver_->set_cost_source_for_testing(&cost);
  driver_->set_early_end_for_testing(8);
  Book(250, 1000);
  ASSERT_EQ(Epochs(), 1u);
  ASSERT_EQ(driver_->early_end_bound_for_testing(), 8000u);
  // One huge sample (clamped to 32 x 8000 cycles, x4) and 49 cheap ones: 1,024,000 + 196,000
  // cycles for 200 requests, under the bound's 1,600,000. Unclamped it would be 4e12.
  Book(1, uint64_t{1} << 40);
  Book(49, 1000);
  EXPECT_EQ(Epochs(), 1u) << "a single outlier must not end the epoch early";
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u);
}

// "FROZEN does no learning work": a FROZEN epoch monitors, it does not compete, so it has no
// early-end bound even with early ends on and every strategy measured.
TEST_F(EpochDriverTest, EarlyEndBoundIsZeroWhenFrozen) {
  Options o = LearnOptions(100, 4);
  o.set(Opt::kEpsilon, 0);
  o.set(Opt::kCanary, 0);
  Init(o);
  ScriptedCost cost;
  cost.unit[3] = 0.7;
  driver_->set_cost_source_for_testing(&cost);
  driver_->set_early_end_for_testing(8);
  uint64_t bound_while_learning = 0;
  for (int e = 0; e < 40 && driver_->learner().state() != Lifecycle::kFrozen; ++e) {
    Book(25, 1000);  // the same time per request for every strategy: never over 8x
    if (driver_->learner().state() == Lifecycle::kLearn) bound_while_learning = driver_->early_end_bound_for_testing();
  }
  ASSERT_EQ(driver_->learner().state(), Lifecycle::kFrozen);
  EXPECT_EQ(bound_while_learning, 8000u) << "LEARN epochs had a bound";
  EXPECT_EQ(driver_->early_end_bound_for_testing(), 0u) << "a FROZEN epoch must have no early-end bound";
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u);
  // FROZEN epochs that run 100x slower still run to their full count.
  const uint64_t epochs = Epochs();
  Book(24, 100000);
  EXPECT_EQ(Epochs(), epochs) << "a FROZEN epoch was cut early";
  EXPECT_EQ(driver_->learner().counters().early_ends, 0u);
}

// --------------------------------------------------------------------------- concurrency

// Two threads book on their own heaps at once (TSan: the trigger, the accumulators and the
// boundary's try-lock). Every request is counted exactly once in the heaps; no boundary is lost
// for good: once the threads are done, one boundary takes what the trigger holds and the next
// epoch needs exactly epoch_requests again.
TEST_F(EpochDriverTest, ConcurrentBookingsAreCountedExactly) {
  Init(LearnOptions(100, 1));
  ScriptedCost cost;
  cost.unit[5] = 0.5;
  driver_->set_cost_source_for_testing(&cost);
  constexpr uint64_t kPerThread = 5000;
  std::atomic<bool> go{false};
  auto worker = [&](ThreadHeap* h) {
    uint64_t checked = 0;
    while (!go.load()) std::this_thread::yield();
    for (uint64_t i = 0; i < kPerThread; ++i) driver_->note_large(h->learn, checked, kSize, kSiteA, 1000, 0);
  };
  ThreadHeap* h1 = pool_.make_heap(1);
  ThreadHeap* h2 = pool_.make_heap(1);
  ASSERT_NE(h1, nullptr);
  ASSERT_NE(h2, nullptr);
  std::thread t1(worker, h1), t2(worker, h2);
  go.store(true);
  t1.join();
  t2.join();
  EXPECT_EQ(h1->learn.requests.get(), static_cast<int64_t>(kPerThread));
  EXPECT_EQ(h2->learn.requests.get(), static_cast<int64_t>(kPerThread));
  EXPECT_GE(Epochs(), 1u);
  EXPECT_EQ(Epochs(), cost.asked.size()) << "one cost per epoch";
  StatsSnapshot s;
  driver_->fill_stats(s);
  ASSERT_EQ(s.site_count, 1u);
  EXPECT_EQ(s.sites[0].requests, 2 * kPerThread) << "the site profile lost requests";
  ExpectBoardMatchesLearner(s, driver_->learner());
  driver_->end_epoch();
  const uint64_t epochs = Epochs();
  Book(99);
  EXPECT_EQ(Epochs(), epochs);
  Book(1);
  EXPECT_EQ(Epochs(), epochs + 1);
}

}  // namespace hakmem
