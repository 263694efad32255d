// Learner: the learning selector's brain (src/select/learner.h), driven deterministically.
//
// Every test feeds Learner::end_epoch() with costs scripted per strategy (ScriptedCosts, a
// CostSource) and fixed PRNG seeds, so each decision is reproducible. Scenarios that depend on
// the PRNG run over kSeeds (ten seeds) to show the outcome is not one lucky stream.
//
// Guards: I11 (ARCHITECTURE.md, "Invariants") and the "Selector" section: ELO update, sweep then
// epsilon-greedy LEARN, FROZEN does no learning work, CANARY rolls back or adopts, back to LEARN
// on cost degradation or size-distribution shift, min_samples.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "select/learner.h"

namespace hakmem {

// GoogleTest prints a Lifecycle by name (found by ADL).
[[maybe_unused]] static void PrintTo(Lifecycle l, std::ostream* os) { *os << lifecycle_name(l); }

namespace {

constexpr int kN = kLearnableStrategies;

// Odd seeds only: Learner::configure() uses `seed | 1`, so seeds 2k and 2k+1 give the same
// stream; ten odd seeds are ten distinct streams.
constexpr uint64_t kSeeds[] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19};

// Stated bound for LEARN -> FROZEN from a fresh start (or from a relearn): the sweep (12
// epochs), `windows` (3) epochs of the best, plus room for epsilon exploration interrupting
// the best's run. Measured values are printed by the tests ("[ MEASURED ]").
constexpr int kFreezeBound = 80;

constexpr uint64_t kRequests = 1000;  // large requests per epoch (>= min_samples)
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t k64KiB = 64 * 1024;

/// Costs scripted per strategy. `unit[s]` is strategy s's cost per large request; the three raw
/// components are proportional to it (with different scales), so the Learner's normalized,
/// weighted cost orders strategies exactly as `unit` does.
class ScriptedCosts : public CostSource {
public:
  std::array<double, kN> unit{};
  uint64_t requests = kRequests;
  EpochCost epoch_cost(uint8_t strategy) override {
    const double u = unit[strategy] * static_cast<double>(requests);
    return EpochCost{u * 2000.0, u * 0.5, u * 1.5 * 65536.0};
  }
};

SizeSignature signature_of(std::initializer_list<std::pair<uint64_t, uint64_t>> size_count) {
  SizeSignature s;
  for (const auto& [size, count] : size_count) {
    for (uint64_t i = 0; i < count; ++i) s.add(size);
  }
  return s;
}

/// All strategies cost 1, except D which is `1 - cheaper`.
std::array<double, kN> needle(int d, double cheaper = 0.30) {
  std::array<double, kN> u;
  u.fill(1.0);
  u[d] = 1.0 - cheaper;
  return u;
}

/// Unimodal around D: cost 1 + slope * |s - D|.
std::array<double, kN> unimodal(int d, double slope = 0.10) {
  std::array<double, kN> u;
  for (int s = 0; s < kN; ++s) u[s] = 1.0 + slope * std::abs(s - d);
  return u;
}

/// A Learner, its scripted costs and the signature each epoch reports.
struct Harness {
  Learner learner;
  ScriptedCosts costs;
  SizeSignature sig = signature_of({{kMiB, kRequests}});
  uint64_t requests = kRequests;

  Harness(const LearnerParams& p, uint64_t seed, uint8_t start, const std::array<double, kN>& unit) : learner(p, seed) {
    learner.start(start);
    costs.unit = unit;
  }

  /// One epoch: the strategy in force runs and is charged its scripted cost.
  uint8_t epoch() {
    costs.requests = requests;
    return learner.end_epoch(requests, costs.epoch_cost(learner.current()), sig);
  }

  /// Epochs until the learner is FROZEN (the epoch that freezes counts), or -1 after `max`.
  int run_until_frozen(int max = kFreezeBound) {
    for (int e = 1; e <= max; ++e) {
      epoch();
      if (learner.state() == Lifecycle::kFrozen) return e;
    }
    return -1;
  }

  uint8_t runner_up() const {
    uint8_t r[kN];
    learner.ranking(r);
    return r[0] == learner.frozen() ? r[1] : r[0];
  }

  double rating_sum() const {
    double s = 0;
    for (uint8_t i = 0; i < kN; ++i) s += learner.record(i).rating;
    return s;
  }
};

std::string fmt_range(const std::vector<int>& v) {
  if (v.empty()) return "n/a";
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return std::to_string(*lo) + ".." + std::to_string(*hi);
}

// ---------------------------------------------------------------------------------------------
// I11: convergence and staying frozen.

struct ConvergenceCase {
  const char* shape;  // "needle" (all equal, D 30% cheaper) or "unimodal" (1 + 0.1 |s - D|)
  int d;              // the dominant strategy
  int start;          // the strategy of the first epoch (the sweep goes round from it)
};

void PrintTo(const ConvergenceCase& c, std::ostream* os) { *os << c.shape << " D=" << c.d << " start=" << c.start; }

std::string convergence_name(const testing::TestParamInfo<ConvergenceCase>& info) {
  return std::string(info.param.shape) + "_D" + std::to_string(info.param.d) + "_start" +
         std::to_string(info.param.start);
}

class LearnerConvergence : public testing::TestWithParam<ConvergenceCase> {};

// I11: when costs are stationary and one strategy dominates, LEARN converges and freezes on it
// within kFreezeBound epochs, and stays frozen on it for the next 200 epochs (every canary is
// rolled back; no relearn).
TEST_P(LearnerConvergence, I11_FreezesOnDominantStrategyAndStaysFrozen) {
  const ConvergenceCase c = GetParam();
  const auto unit = std::string(c.shape) == "needle" ? needle(c.d) : unimodal(c.d);
  std::vector<int> freeze_epochs;
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h(LearnerParams{}, seed, static_cast<uint8_t>(c.start), unit);
    const int e = h.run_until_frozen();
    ASSERT_NE(e, -1) << "not FROZEN within " << kFreezeBound << " epochs";
    freeze_epochs.push_back(e);
    ASSERT_EQ(int(h.learner.frozen()), c.d) << "froze on the wrong strategy after " << e << " epochs";
    EXPECT_EQ(int(h.learner.current()), c.d);

    const LearnerCounters before = h.learner.counters();
    for (int i = 0; i < 200; ++i) {
      const bool canary_epoch = h.learner.state() == Lifecycle::kCanary;
      const uint8_t ran = h.learner.current();
      h.epoch();
      ASSERT_NE(h.learner.state(), Lifecycle::kLearn)
          << "relearned " << i + 1 << " epochs after freezing, with stationary costs";
      ASSERT_EQ(int(h.learner.frozen()), c.d);
      if (!canary_epoch) {
        ASSERT_EQ(int(ran), c.d);
      }
    }
    const LearnerCounters& after = h.learner.counters();
    EXPECT_EQ(after.relearns, before.relearns);
    EXPECT_EQ(after.freezes, before.freezes);
    EXPECT_EQ(after.canary_adoptions, before.canary_adoptions);
    const uint64_t in_flight = h.learner.state() == Lifecycle::kCanary ? 1 : 0;
    EXPECT_EQ(after.canary_rollbacks - before.canary_rollbacks, after.canaries - before.canaries - in_flight);
  }
  std::printf("[ MEASURED ] %s D=%d start=%d: frozen after %s epochs over %zu seeds (bound %d)\n", c.shape, c.d,
              c.start, fmt_range(freeze_epochs).c_str(), freeze_epochs.size(), kFreezeBound);
}

std::vector<ConvergenceCase> convergence_cases() {
  std::vector<ConvergenceCase> v;
  for (const char* shape : {"needle", "unimodal"}) {
    for (int d : {0, 1, 5, 6, 11}) {
      for (int start : {0, 6, 11}) v.push_back(ConvergenceCase{shape, d, start});
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LearnerConvergence, testing::ValuesIn(convergence_cases()), convergence_name);

// I11 over a long horizon with a cost spread typical of thresholds (the best is well below the
// others): stationary costs must never trigger a relearn by cost.
TEST(Learner, I11_StationaryCostsNeverRelearn) {
  std::vector<int> freeze_epochs;
  for (int d : {0, 11}) {
    for (uint64_t seed : kSeeds) {
      SCOPED_TRACE("D " + std::to_string(d) + " seed " + std::to_string(seed));
      Harness h(LearnerParams{}, seed, 0, unimodal(d, 0.30));
      const int e = h.run_until_frozen();
      ASSERT_NE(e, -1);
      freeze_epochs.push_back(e);
      ASSERT_EQ(int(h.learner.frozen()), d);
      for (int i = 0; i < 2000; ++i) h.epoch();
      EXPECT_EQ(h.learner.counters().relearns, 0u) << "relearned with stationary costs";
      EXPECT_EQ(int(h.learner.frozen()), d);
    }
  }
  std::printf("[ MEASURED ] unimodal slope 0.3, D in {0,11}: frozen after %s epochs\n",
              fmt_range(freeze_epochs).c_str());
}

// ---------------------------------------------------------------------------------------------
// FROZEN does no learning work.

// counters().learning_work counts ELO matches and LEARN selection steps (learner.h: match() and
// learn_step()); frozen_step() and canary_step() never touch it. So across FROZEN epochs, canary
// epochs included, it must not move at all, nor may any rating or the match count.
TEST(Learner, FrozenDoesNoLearningWork) {
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h(LearnerParams{}, seed, 0, needle(7));
    ASSERT_NE(h.run_until_frozen(), -1);
    const LearnerCounters before = h.learner.counters();
    std::array<double, kN> ratings;
    for (uint8_t i = 0; i < kN; ++i) ratings[i] = h.learner.record(i).rating;

    for (int i = 0; i < 500; ++i) {
      h.requests = (i % 10 == 9) ? 10 : kRequests;  // some unscored epochs too
      h.epoch();
      ASSERT_NE(h.learner.state(), Lifecycle::kLearn) << "precondition: no relearn (epoch " << i + 1 << ")";
      ASSERT_EQ(h.learner.counters().learning_work, before.learning_work) << "epoch " << i + 1;
    }
    const LearnerCounters& after = h.learner.counters();
    EXPECT_EQ(after.matches, before.matches);
    EXPECT_GT(after.canaries, before.canaries) << "the window should include canary epochs";
    EXPECT_EQ(after.scored_epochs - before.scored_epochs, 450u);  // FROZEN epochs are still measured
    for (uint8_t i = 0; i < kN; ++i) EXPECT_EQ(h.learner.record(i).rating, ratings[i]) << "strategy " << int(i);
  }
}

// ---------------------------------------------------------------------------------------------
// CANARY.

// I11 (second half): a canary of a worse candidate is rolled back: the frozen strategy stays,
// canaries > 0 and every finished canary is a rollback. Each canary runs the runner-up.
TEST(Learner, I11_CanaryRollsBackWorseCandidate) {
  uint64_t total_canaries = 0, total_epochs = 0;
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h(LearnerParams{}, seed, 0, needle(4));
    ASSERT_NE(h.run_until_frozen(), -1);
    ASSERT_EQ(int(h.learner.frozen()), 4);
    const uint8_t runner_up = h.runner_up();
    const LearnerCounters before = h.learner.counters();
    for (int i = 0; i < 500; ++i) {
      if (h.learner.state() == Lifecycle::kCanary) {
        ASSERT_EQ(int(h.learner.current()), int(runner_up));
      }
      h.epoch();
      ASSERT_EQ(int(h.learner.frozen()), 4);
    }
    while (h.learner.state() == Lifecycle::kCanary) h.epoch();  // let the last canary finish
    const LearnerCounters& after = h.learner.counters();
    const uint64_t canaries = after.canaries - before.canaries;
    EXPECT_GT(canaries, 0u);
    EXPECT_EQ(after.canary_rollbacks - before.canary_rollbacks, canaries);
    EXPECT_EQ(after.canary_adoptions, before.canary_adoptions);
    EXPECT_EQ(after.relearns, before.relearns);
    EXPECT_EQ(h.learner.state(), Lifecycle::kFrozen);
    total_canaries += canaries;
    total_epochs += after.epochs - before.epochs;
  }
  // canary_rate 0.05: a loose sanity check on the PRNG-driven rate.
  const double rate = static_cast<double>(total_canaries) / static_cast<double>(total_epochs);
  std::printf("[ MEASURED ] canary rate %.4f over %llu FROZEN/CANARY epochs (param 0.05)\n", rate,
              static_cast<unsigned long long>(total_epochs));
  EXPECT_GT(rate, 0.03);
  EXPECT_LT(rate, 0.07);
}

// A better runner-up is adopted by a canary: after freezing on D, the runner-up (by ranking())
// becomes 20% cheaper than D, D's cost unchanged (so no relearn).
TEST(Learner, CanaryAdoptsBetterRunnerUp) {
  constexpr int kAdoptBound = 300;  // P(no canary in 300 epochs at 5%) ~ 2e-7
  std::vector<int> adopt_epochs;
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const int d = 9;
    Harness h(LearnerParams{}, seed, 0, needle(d));
    ASSERT_NE(h.run_until_frozen(), -1);
    ASSERT_EQ(int(h.learner.frozen()), d);
    while (h.learner.state() != Lifecycle::kFrozen) h.epoch();
    const uint8_t r = h.runner_up();
    ASSERT_NE(int(r), d);
    h.costs.unit[r] = h.costs.unit[d] * 0.80;

    int adopted_after = -1;
    for (int i = 1; i <= kAdoptBound; ++i) {
      h.epoch();
      ASSERT_NE(h.learner.state(), Lifecycle::kLearn) << "relearned before any adoption, epoch " << i;
      if (h.learner.counters().canary_adoptions > 0) {
        adopted_after = i;
        break;
      }
      ASSERT_EQ(int(h.learner.frozen()), d);  // before the adoption nothing moves
    }
    ASSERT_NE(adopted_after, -1) << "no canary adoption within " << kAdoptBound << " epochs";
    adopt_epochs.push_back(adopted_after);
    EXPECT_EQ(h.learner.counters().canary_adoptions, 1u);
    EXPECT_EQ(int(h.learner.frozen()), int(r));
    EXPECT_EQ(h.learner.state(), Lifecycle::kFrozen);
    EXPECT_EQ(int(h.learner.current()), int(r));
    // Stays on the adopted strategy; canaries of the old one are rolled back; no relearn.
    for (int i = 0; i < 200; ++i) {
      h.epoch();
      ASSERT_NE(h.learner.state(), Lifecycle::kLearn)
          << "relearned (by cost: " << h.learner.counters().relearns_by_cost << ") " << i + 1
          << " epochs after adopting, with stationary costs";
      ASSERT_EQ(int(h.learner.frozen()), int(r));
    }
    EXPECT_EQ(h.learner.counters().canary_adoptions, 1u);
    EXPECT_EQ(h.learner.counters().relearns, 0u);
  }
  std::printf("[ MEASURED ] canary adopted the 20%%-cheaper runner-up after %s epochs (bound %d)\n",
              fmt_range(adopt_epochs).c_str(), kAdoptBound);
}

// ---------------------------------------------------------------------------------------------
// Back to LEARN on cost degradation.

// After freezing on D, D's cost rises 1.5x (> relearn_degrade 20%) and another strategy N, not
// the runner-up (so no canary can adopt it), becomes the best. Degradation is counted over scored
// FROZEN epochs; a canary epoch runs the runner-up, so it neither counts nor says anything about
// D. Bound asserted: LEARN again at the end of the `windows`-th (3rd) degraded FROZEN epoch after
// the change, whatever canaries interleave (so within 3 + canary epochs). Then LEARN re-converges
// and freezes on N.
TEST(Learner, StepChangeRelearnsWithinWindowsAndReconverges) {
  std::vector<int> relearn_epochs, reconverge_epochs;
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const int d = 2;
    Harness h(LearnerParams{}, seed, 0, needle(d));
    ASSERT_NE(h.run_until_frozen(), -1);
    ASSERT_EQ(int(h.learner.frozen()), d);
    const uint8_t r = h.runner_up();
    int n = (d + 6) % kN;
    while (n == d || n == r) n = (n + 1) % kN;

    h.costs.unit[d] *= 1.5;
    h.costs.unit[n] = 0.5;
    const unsigned windows = h.learner.params().windows;
    unsigned frozen_epochs = 0;
    int epochs = 0;
    while (h.learner.state() != Lifecycle::kLearn) {
      const bool frozen_epoch = h.learner.state() == Lifecycle::kFrozen;
      h.epoch();
      ++epochs;
      if (frozen_epoch) ++frozen_epochs;
      ASSERT_LE(frozen_epochs, windows) << "still not LEARN after " << frozen_epochs << " degraded FROZEN epochs ("
                                        << epochs << " epochs, " << epochs - frozen_epochs << " of them canaries)";
    }
    EXPECT_EQ(frozen_epochs, windows);
    relearn_epochs.push_back(epochs);
    EXPECT_EQ(h.learner.counters().relearns, 1u);
    EXPECT_EQ(h.learner.counters().relearns_by_cost, 1u);
    EXPECT_EQ(h.learner.counters().relearns_by_shift, 0u);
    EXPECT_EQ(h.learner.counters().canary_adoptions, 0u);

    const int e = h.run_until_frozen();
    ASSERT_NE(e, -1) << "no re-convergence within " << kFreezeBound << " epochs";
    reconverge_epochs.push_back(e);
    EXPECT_EQ(int(h.learner.frozen()), n);
    EXPECT_EQ(h.learner.counters().freezes, 2u);
  }
  std::printf("[ MEASURED ] step change: LEARN after %s epochs (incl. canaries); re-frozen after %s more\n",
              fmt_range(relearn_epochs).c_str(), fmt_range(reconverge_epochs).c_str());
}

// The same guarantee with every FROZEN epoch followed by a canary (canary_rate = 1): the
// degraded FROZEN epochs are F C F C F, so LEARN again after exactly 5 epochs. A rolled-back
// canary says nothing about the frozen strategy's cost and must not restart the count.
TEST(Learner, CanaryRollbackDoesNotMaskDegradation) {
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LearnerParams p;
    p.canary_rate = 1.0;
    const int d = 3;
    Harness h(p, seed, 0, needle(d));
    ASSERT_NE(h.run_until_frozen(), -1);
    ASSERT_EQ(int(h.learner.frozen()), d);
    ASSERT_EQ(h.learner.state(), Lifecycle::kFrozen);
    h.costs.unit[d] *= 1.5;
    int epochs = 0;
    while (h.learner.state() != Lifecycle::kLearn && epochs < 50) {
      h.epoch();
      ++epochs;
    }
    EXPECT_EQ(epochs, 5) << "degraded FROZEN epochs interleaved with rolled-back canaries never relearn";
    EXPECT_EQ(h.learner.counters().relearns_by_cost, 1u);
  }
}

// Unscored FROZEN epochs (fewer than min_samples requests) are not evidence of degradation.
TEST(Learner, UnscoredFrozenEpochsDoNotRelearn) {
  LearnerParams p;
  p.canary_rate = 0;
  Harness h(p, 1, 0, needle(5));
  ASSERT_NE(h.run_until_frozen(), -1);
  h.costs.unit[5] *= 3;
  h.requests = p.min_samples - 1;
  for (int i = 0; i < 20; ++i) h.epoch();
  EXPECT_EQ(h.learner.state(), Lifecycle::kFrozen);
  EXPECT_EQ(h.learner.counters().relearns, 0u);
  h.requests = kRequests;
  for (int i = 0; i < 3; ++i) h.epoch();
  EXPECT_EQ(h.learner.state(), Lifecycle::kLearn);
  EXPECT_EQ(h.learner.counters().relearns_by_cost, 1u);
}

// ---------------------------------------------------------------------------------------------
// Back to LEARN on a size-distribution shift.

TEST(Learner, SizeShiftRelearnsImmediately) {
  const SizeSignature big = signature_of({{kMiB, kRequests}});
  const SizeSignature shifted = signature_of({{k64KiB, 800}, {kMiB, 200}});
  ASSERT_NEAR(big.distance(shifted), 0.80, 1e-12);
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h(LearnerParams{}, seed, 0, needle(6));
    h.sig = big;
    ASSERT_NE(h.run_until_frozen(), -1);
    for (int i = 0; i < 40; ++i) h.epoch();
    while (h.learner.state() != Lifecycle::kFrozen) h.epoch();  // the shift epoch is a FROZEN one
    ASSERT_EQ(h.learner.counters().relearns, 0u);
    h.sig = shifted;
    h.epoch();
    EXPECT_EQ(h.learner.state(), Lifecycle::kLearn);
    EXPECT_EQ(h.learner.counters().relearns, 1u);
    EXPECT_EQ(h.learner.counters().relearns_by_shift, 1u);
    EXPECT_EQ(h.learner.counters().relearns_by_cost, 0u);
    // Relearning starts from fresh ratings.
    for (uint8_t i = 0; i < kN; ++i) EXPECT_EQ(h.learner.record(i).rating, h.learner.params().initial_rating);
  }
}

TEST(Learner, SmallSizeShiftDoesNotRelearn) {
  const SizeSignature big = signature_of({{kMiB, kRequests}});
  const SizeSignature small = signature_of({{kMiB, 900}, {k64KiB, 100}});  // distance 0.10
  const SizeSignature edge = signature_of({{kMiB, 750}, {k64KiB, 250}});   // distance 0.25 exactly
  const SizeSignature tiny = signature_of({{k64KiB, 49}});                 // below min_samples
  ASSERT_NEAR(big.distance(small), 0.10, 1e-12);
  ASSERT_EQ(big.distance(edge), 0.25);
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Harness h(LearnerParams{}, seed, 0, needle(6));
    h.sig = big;
    ASSERT_NE(h.run_until_frozen(), -1);
    for (const SizeSignature* s : {&small, &edge}) {
      h.sig = *s;
      for (int i = 0; i < 100; ++i) h.epoch();
    }
    h.sig = tiny;  // a whole different distribution, but too few samples to judge
    for (int i = 0; i < 10; ++i) h.epoch();
    EXPECT_NE(h.learner.state(), Lifecycle::kLearn);
    EXPECT_EQ(h.learner.counters().relearns_by_shift, 0u);
    EXPECT_EQ(h.learner.counters().relearns, 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// ELO math.

double expected_score(double ra, double rb) { return 1 / (1 + std::pow(10.0, (rb - ra) / 400)); }

// From 1500/1500 the winner gains K/2 = 16 and the loser loses 16. Then a match between unequal
// ratings follows R += K(S - E), E = 1 / (1 + 10^((Rb - Ra) / 400)), zero-sum.
TEST(Learner, EloSingleMatchAndExpectedScore) {
  std::array<double, kN> u;
  u.fill(1.0);
  u[0] = 2.0;  // sweep from 0: 0, 1, 2, 3 ...
  u[1] = 1.0;  // 1 beats 0
  u[2] = 0.5;  // 2 beats 1 (unequal ratings: 1500 vs 1516)
  u[3] = 4.0;  // 3 loses to 2
  Harness h(LearnerParams{}, 1, 0, u);

  h.epoch();  // 0 runs: no previous strategy, no match
  EXPECT_EQ(h.learner.counters().matches, 0u);
  EXPECT_EQ(h.learner.record(0).rating, 1500);
  EXPECT_EQ(int(h.learner.current()), 1);

  h.epoch();  // 1 vs 0
  EXPECT_EQ(h.learner.counters().matches, 1u);
  EXPECT_EQ(h.learner.record(1).rating, 1516);
  EXPECT_EQ(h.learner.record(0).rating, 1484);
  EXPECT_EQ(h.learner.record(1).wins, 1u);
  EXPECT_EQ(h.learner.record(0).losses, 1u);

  const double e2 = expected_score(1500, 1516);
  EXPECT_NEAR(e2, 0.47699, 1e-5);
  h.epoch();  // 2 (1500) beats 1 (1516)
  EXPECT_NEAR(h.learner.record(2).rating, 1500 + 32 * (1 - e2), 1e-9);
  EXPECT_NEAR(h.learner.record(1).rating, 1516 - 32 * (1 - e2), 1e-9);
  EXPECT_GT(32 * (1 - e2), 16);  // beating a stronger opponent is worth more than 16

  const double r2 = h.learner.record(2).rating;
  const double e3 = expected_score(1500, r2);
  h.epoch();  // 3 (1500) loses to 2
  EXPECT_NEAR(h.learner.record(3).rating, 1500 - 32 * e3, 1e-9);
  EXPECT_NEAR(h.learner.record(2).rating, r2 + 32 * e3, 1e-9);
  EXPECT_EQ(h.learner.record(3).losses, 1u);
  EXPECT_EQ(h.learner.record(2).wins, 2u);
  EXPECT_EQ(h.learner.record(2).losses, 0u);
  EXPECT_EQ(h.learner.record(1).wins, 1u);
  EXPECT_EQ(h.learner.record(1).losses, 1u);
  EXPECT_NEAR(h.rating_sum(), kN * 1500.0, 1e-9);
}

// Costs within draw_margin (1%) are a draw: equal ratings stay put; unequal ones move toward
// each other by K(0.5 - E).
TEST(Learner, EloDrawWithinMargin) {
  std::array<double, kN> u;
  u.fill(1.0);
  u[1] = 1.005;  // within 1% of strategy 0
  Harness h(LearnerParams{}, 1, 0, u);
  h.epoch();
  h.epoch();  // 1 vs 0: draw
  EXPECT_EQ(h.learner.counters().matches, 1u);
  EXPECT_EQ(h.learner.record(0).rating, 1500);
  EXPECT_EQ(h.learner.record(1).rating, 1500);
  EXPECT_EQ(h.learner.record(0).draws, 1u);
  EXPECT_EQ(h.learner.record(1).draws, 1u);
  EXPECT_EQ(h.learner.record(0).wins + h.learner.record(0).losses, 0u);

  // Unequal ratings: relearn (ratings back to 1500, cost history kept), then the sweep from the
  // frozen D: D+1 (1.0) loses to D (0.7), then D+2 (1.0) draws with D+1 at 1484 vs 1500.
  const int d = 3;
  Harness g(LearnerParams{}, 1, 0, needle(d));
  ASSERT_NE(g.run_until_frozen(), -1);
  for (int i = 0; i < 100; ++i) g.epoch();
  while (g.learner.state() != Lifecycle::kFrozen) g.epoch();
  g.sig = signature_of({{k64KiB, kRequests}});
  g.epoch();
  ASSERT_EQ(g.learner.state(), Lifecycle::kLearn);
  ASSERT_EQ(int(g.learner.current()), d);
  g.epoch();  // D: the first epoch after a relearn plays no match
  g.epoch();  // D+1 loses to D
  ASSERT_EQ(g.learner.record(d + 1).rating, 1484);
  const uint32_t draws = g.learner.record(d + 2).draws;
  g.epoch();  // D+2 vs D+1: equal costs, a draw between unequal ratings
  const double e = expected_score(1500, 1484);
  EXPECT_EQ(g.learner.record(d + 2).draws, draws + 1);
  EXPECT_NEAR(g.learner.record(d + 2).rating, 1500 + 32 * (0.5 - e), 1e-9);
  EXPECT_NEAR(g.learner.record(d + 1).rating, 1484 - 32 * (0.5 - e), 1e-9);
  EXPECT_LT(g.learner.record(d + 2).rating, 1500);  // the favourite loses rating on a draw
}

// A match compares the two epochs' costs on one scale: equal per-request costs are a draw and the
// cheaper strategy wins, whatever ran before. (Normalizing each epoch by a running mean that moves
// between the two epochs breaks this early in a sweep.)
TEST(Learner, MatchesCompareCostsOnOneScale) {
  {
    std::array<double, kN> u;
    u.fill(1.0);
    u[2] = 0.8;
    u[3] = 0.8;
    Harness h(LearnerParams{}, 1, 1, u);
    h.epoch();  // 1
    h.epoch();  // 2 (0.8) beats 1 (1.0)
    h.epoch();  // 3 (0.8) vs 2 (0.8): equal costs
    EXPECT_EQ(h.learner.record(3).draws, 1u) << "equal costs judged a " << (h.learner.record(3).wins ? "win" : "loss");
    EXPECT_EQ(h.learner.record(2).wins, 1u);
    EXPECT_EQ(h.learner.record(2).losses, 0u);
  }
  {
    std::array<double, kN> u = unimodal(1, 0.05);  // 11: 1.50, 0: 1.05, 1: 1.00 (the best)
    Harness h(LearnerParams{}, 1, 11, u);
    h.epoch();  // 11
    h.epoch();  // 0 beats 11
    h.epoch();  // 1 (1.00) vs 0 (1.05): 1 must win
    EXPECT_EQ(h.learner.record(1).wins, 1u) << "the cheaper strategy lost its match";
    EXPECT_EQ(h.learner.record(0).losses, 1u);
  }
}

// Over a long run with random costs and constant exploration: each match is zero-sum (the sum of
// ratings stays 12 * 1500), ratings stay finite, and W/L/D counters agree with the match count.
TEST(Learner, EloZeroSumFiniteAndCountersConsistent) {
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LearnerParams p;
    p.epsilon = 1.0;
    Harness h(p, seed, 0, needle(0));
    uint64_t lcg = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < 3000; ++i) {
      for (double& c : h.costs.unit) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        c = 0.2 + static_cast<double>(lcg >> 40) / static_cast<double>(1ULL << 24) * 5.0;
      }
      const uint64_t matches = h.learner.counters().matches;
      h.epoch();
      ASSERT_LE(h.learner.counters().matches - matches, 1u);
      ASSERT_NEAR(h.rating_sum(), kN * 1500.0, 1e-6) << "epoch " << i + 1;
      for (uint8_t s = 0; s < kN; ++s) ASSERT_TRUE(std::isfinite(h.learner.record(s).rating));
    }
    uint64_t wins = 0, losses = 0, draws = 0;
    for (uint8_t s = 0; s < kN; ++s) {
      wins += h.learner.record(s).wins;
      losses += h.learner.record(s).losses;
      draws += h.learner.record(s).draws;
    }
    EXPECT_EQ(wins, losses);
    EXPECT_EQ(draws % 2, 0u);
    EXPECT_EQ(wins + draws / 2, h.learner.counters().matches);
    EXPECT_GT(h.learner.counters().matches, 100u);  // the run exercised many matches
  }
}

// ---------------------------------------------------------------------------------------------
// min_samples.

// An epoch with fewer than min_samples (50) large requests is counted (epochs, the strategy's
// epochs) but not scored: no match, no rating moves, no cost recorded.
TEST(Learner, EpochsBelowMinSamplesAreNotScored) {
  std::array<double, kN> u;
  for (int s = 0; s < kN; ++s) u[s] = 1.0 + 0.2 * s;
  u[2] = 0.3;
  Harness h(LearnerParams{}, 1, 0, u);
  for (int i = 0; i < 3; ++i) h.epoch();  // 0, 1, 2 scored: ratings no longer all equal
  ASSERT_EQ(h.learner.counters().matches, 2u);

  for (uint64_t requests : {uint64_t{0}, uint64_t{1}, uint64_t{49}}) {
    SCOPED_TRACE("requests " + std::to_string(requests));
    const LearnerCounters before = h.learner.counters();
    const uint8_t cur = h.learner.current();
    const StrategyRecord rec = h.learner.record(cur);
    std::array<double, kN> ratings;
    for (uint8_t i = 0; i < kN; ++i) ratings[i] = h.learner.record(i).rating;
    h.requests = requests;
    h.epoch();
    const LearnerCounters& after = h.learner.counters();
    EXPECT_EQ(after.epochs, before.epochs + 1);
    EXPECT_EQ(after.scored_epochs, before.scored_epochs);
    EXPECT_EQ(after.matches, before.matches);
    EXPECT_EQ(h.learner.record(cur).epochs, rec.epochs + 1);
    EXPECT_EQ(h.learner.record(cur).scored, rec.scored);
    EXPECT_EQ(h.learner.record(cur).last_cost, rec.last_cost);
    for (uint8_t i = 0; i < kN; ++i) EXPECT_EQ(h.learner.record(i).rating, ratings[i]);
  }
  // Exactly min_samples is scored.
  const LearnerCounters before = h.learner.counters();
  h.requests = h.learner.params().min_samples;
  h.epoch();
  EXPECT_EQ(h.learner.counters().scored_epochs, before.scored_epochs + 1);
  EXPECT_EQ(h.learner.counters().matches, before.matches + 1);
}

// ---------------------------------------------------------------------------------------------
// ranking() and SizeSignature.

TEST(Learner, RankingIsSortedByRatingTiesById) {
  Learner fresh(LearnerParams{}, 1);
  uint8_t r[kN];
  fresh.ranking(r);
  for (uint8_t i = 0; i < kN; ++i) EXPECT_EQ(int(r[i]), int(i)) << "equal ratings rank by id";

  for (uint64_t seed : kSeeds) {
    LearnerParams p;
    p.epsilon = 0.5;
    Harness h(p, seed, static_cast<uint8_t>(seed % kN), unimodal(static_cast<int>(seed % kN), 0.15));
    for (int i = 0; i < 40; ++i) {
      h.epoch();
      h.learner.ranking(r);
      std::array<bool, kN> seen{};
      for (uint8_t k = 0; k < kN; ++k) {
        ASSERT_LT(r[k], kN);
        ASSERT_FALSE(seen[r[k]]);
        seen[r[k]] = true;
      }
      for (uint8_t k = 1; k < kN; ++k) {
        const double a = h.learner.record(r[k - 1]).rating, b = h.learner.record(r[k]).rating;
        ASSERT_TRUE(a > b || (a == b && r[k - 1] < r[k])) << "ranking not sorted at " << int(k);
      }
    }
  }
}

TEST(Learner, SizeSignatureBands) {
  // Band b holds sizes in [threshold[b-1], threshold[b]); band 0 is below 64 KiB; a size equal to
  // a threshold belongs to the band above it; band 12 is at or above 32 MiB.
  {
    SizeSignature s;
    s.add(1);
    s.add(k64KiB - 1);
    EXPECT_EQ(s.count[0], 2u);
  }
  for (size_t b = 0; b < kLearnableStrategies; ++b) {
    SizeSignature s;
    s.add(kStrategyThresholds[b]);
    EXPECT_EQ(s.count[b + 1], 1u) << "threshold " << b;
    s.add(kStrategyThresholds[b] - 1);
    EXPECT_EQ(s.count[b], 1u) << "threshold " << b << " - 1";
    EXPECT_EQ(s.total(), 2u);
  }
  SizeSignature s;
  s.add(kMiB);  // 634880 <= 1 MiB < 1118208
  EXPECT_EQ(s.count[5], 1u);
  s.add(uint64_t{1} << 40);
  EXPECT_EQ(s.count[kSizeBands - 1], 1u);
}

TEST(Learner, SizeSignatureDistance) {
  const SizeSignature a = signature_of({{kMiB, 100}, {k64KiB, 50}});
  const SizeSignature a_scaled = signature_of({{kMiB, 1000}, {k64KiB, 500}});  // same distribution
  const SizeSignature b = signature_of({{4 * kMiB, 30}, {1000, 70}});          // disjoint bands
  const SizeSignature c = signature_of({{kMiB, 60}, {4 * kMiB, 40}});
  EXPECT_EQ(a.distance(a), 0.0);
  EXPECT_NEAR(a.distance(a_scaled), 0.0, 1e-15);
  EXPECT_NEAR(a.distance(b), 1.0, 1e-15);
  EXPECT_NEAR(b.distance(a), 1.0, 1e-15);
  EXPECT_EQ(a.distance(c), c.distance(a));
  EXPECT_EQ(b.distance(c), c.distance(b));
  // a = {1M: 2/3, 64K: 1/3}, c = {1M: 0.6, 4M: 0.4}: (|2/3-0.6| + 1/3 + 0.4) / 2 = 0.4
  EXPECT_NEAR(a.distance(c), 0.4, 1e-12);
  for (const SizeSignature* x : {&a, &b, &c}) {
    for (const SizeSignature* y : {&a, &b, &c}) {
      EXPECT_GE(x->distance(*y), 0.0);
      EXPECT_LE(x->distance(*y), 1.0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Epsilon.

// epsilon = 0: after the sweep no exploration happens, so the sequence of strategies is
// constant (the best-rated, here the needle D) until the learner freezes, which must happen.
TEST(Learner, EpsilonZeroNeverExploresAfterSweep) {
  std::vector<int> freeze_epochs;
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LearnerParams p;
    p.epsilon = 0;
    const int d = 5;
    Harness h(p, seed, 0, needle(d));
    for (int i = 0; i < kN; ++i) {
      EXPECT_EQ(int(h.learner.current()), i) << "the sweep goes round from the start";
      h.epoch();
    }
    int e = kN;
    while (h.learner.state() == Lifecycle::kLearn && e < kFreezeBound) {
      ASSERT_EQ(int(h.learner.current()), d) << "explored at epoch " << e + 1;
      h.epoch();
      ++e;
    }
    ASSERT_EQ(h.learner.state(), Lifecycle::kFrozen) << "epsilon = 0 did not freeze within " << kFreezeBound;
    EXPECT_EQ(int(h.learner.frozen()), d);
    freeze_epochs.push_back(e);
  }
  std::printf("[ MEASURED ] epsilon=0 needle D=5: frozen after %s epochs\n", fmt_range(freeze_epochs).c_str());
}

// The freeze looks at the best's last `windows` epochs: one noisy epoch at the start of its run
// must not keep it from freezing once the next three agree within freeze_tolerance.
TEST(Learner, FreezeJudgesOnlyTheLastWindows) {
  for (uint64_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    LearnerParams p;
    p.epsilon = 0;
    const int d = 5;
    Harness h(p, seed, 0, needle(d));
    for (int i = 0; i < kN; ++i) h.epoch();  // the sweep
    ASSERT_EQ(int(h.learner.current()), d);
    h.costs.unit[d] = 0.70 * 1.05;  // the first epoch of D's run is 5% off
    h.epoch();
    h.costs.unit[d] = 0.70;
    int e = 0;
    while (h.learner.state() == Lifecycle::kLearn && e < 20) {
      h.epoch();
      ++e;
    }
    EXPECT_EQ(h.learner.state(), Lifecycle::kFrozen);
    EXPECT_EQ(e, static_cast<int>(p.windows)) << "three equal costs after the noisy one should freeze";
  }
}

// epsilon = 1: every post-sweep LEARN epoch is an exploration draw, uniform over the twelve, so
// about 11/12 of them leave the best-rated strategy, and every strategy gets explored.
TEST(Learner, EpsilonOneExploresEveryEpoch) {
  uint64_t off_best = 0, decisions = 0;
  std::array<uint64_t, kN> picked{};
  for (uint64_t seed : kSeeds) {
    LearnerParams p;
    p.epsilon = 1;
    Harness h(p, seed, 0, needle(8));
    for (int i = 0; i < kN; ++i) h.epoch();  // the sweep
    for (int i = 0; i < 300 && h.learner.state() == Lifecycle::kLearn; ++i) {
      uint8_t r[kN];
      h.epoch();
      if (h.learner.state() != Lifecycle::kLearn) break;
      h.learner.ranking(r);  // ratings after this epoch's match: what greedy would pick
      ++decisions;
      ++picked[h.learner.current()];
      if (h.learner.current() != r[0]) ++off_best;
    }
  }
  const double frac = static_cast<double>(off_best) / static_cast<double>(decisions);
  std::printf("[ MEASURED ] epsilon=1: %.3f of %llu post-sweep choices left the best (expect ~11/12)\n", frac,
              static_cast<unsigned long long>(decisions));
  EXPECT_GT(decisions, 1000u);
  EXPECT_GT(frac, 0.85);
  for (int s = 0; s < kN; ++s) EXPECT_GT(picked[s], decisions / 24) << "strategy " << s;
}

}  // namespace
}  // namespace hakmem
