// fuzz_selector: the ELO Learner fed fuzzer-chosen parameters, costs and size signatures, alone and
// inside a learn-mode Allocator: ratings finite and zero-sum, only legal lifecycle transitions,
// no learning work while FROZEN, and the strategy in force always a valid id.
#include <cmath>
#include <cstdint>
#include <deque>

#include "front/front.h"
#include "fuzz_support.h"
#include "shadow.h"

using namespace hakmem;
using hakmem_fuzz::Input;

namespace {

constexpr size_t kMaxEpochs = 600;

/// What one epoch boundary may do, judged from the learner before and after it.
class LearnerModel {
public:
  explicit LearnerModel(const Learner& l) : l_(l) { snap(); }

  /// Checks the boundary just taken against ARCHITECTURE.md's lifecycle.
  void after_epoch(uint8_t returned) {
    const Lifecycle from = state_;
    const Lifecycle to = l_.state();
    const LearnerCounters& c = l_.counters();
    const uint8_t cur = l_.current();
    FUZZ_CHECK(cur < kLearnableStrategies, "strategy %d is not one of the twelve", cur);
    FUZZ_CHECK(returned == cur, "end_epoch returned %d but current() is %d", returned, cur);
    FUZZ_CHECK(c.epochs == counters_.epochs + 1, "epochs counter moved by %llu",
               (unsigned long long)(c.epochs - counters_.epochs));
    // The lifecycle: LEARN -> FROZEN; FROZEN -> CANARY or LEARN; CANARY -> FROZEN (adopt or
    // roll back), or LEARN when the size signature moved. Never LEARN -> CANARY or CANARY -> CANARY.
    const bool relearned = c.relearns != counters_.relearns;
    switch (from) {
    case Lifecycle::kLearn:
      FUZZ_CHECK(to != Lifecycle::kCanary, "LEARN -> CANARY");
      FUZZ_CHECK((to == Lifecycle::kFrozen) == (c.freezes == counters_.freezes + 1), "freeze not counted once");
      FUZZ_CHECK(!relearned, "a relearn counted while LEARN");
      break;
    case Lifecycle::kFrozen:
      FUZZ_CHECK(c.freezes == counters_.freezes, "FROZEN froze again");
      FUZZ_CHECK((to == Lifecycle::kLearn) == relearned, "FROZEN -> %s with relearns %llu -> %llu", lifecycle_name(to),
                 (unsigned long long)counters_.relearns, (unsigned long long)c.relearns);
      FUZZ_CHECK((to == Lifecycle::kCanary) == (c.canaries == counters_.canaries + 1), "canary not counted once");
      break;
    case Lifecycle::kCanary:
      FUZZ_CHECK(to != Lifecycle::kCanary, "CANARY -> CANARY");
      FUZZ_CHECK(c.canary_adoptions + c.canary_rollbacks == counters_.canary_adoptions + counters_.canary_rollbacks + 1,
                 "a canary ended without exactly one adoption or rollback");
      if (to == Lifecycle::kLearn) {
        FUZZ_CHECK(c.relearns_by_shift == counters_.relearns_by_shift + 1, "CANARY -> LEARN not by a size shift");
      }
      break;
    }
    FUZZ_CHECK(c.relearns == c.relearns_by_cost + c.relearns_by_shift, "relearns by cause do not add up");
    if (from != Lifecycle::kLearn) {
      // FROZEN and CANARY do no learning work: no ELO update, no exploration draw.
      FUZZ_CHECK(c.learning_work == counters_.learning_work && c.matches == counters_.matches,
                 "learning work done in %s", lifecycle_name(from));
      for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
        const double want = relearned ? l_.params().initial_rating : ratings_[i];
        FUZZ_CHECK(l_.record(i).rating == want, "rating of %d moved in %s", i, lifecycle_name(from));
      }
    }
    if (to == Lifecycle::kFrozen) FUZZ_CHECK(cur == l_.frozen(), "FROZEN runs %d, frozen is %d", cur, l_.frozen());
    if (to == Lifecycle::kCanary) {
      uint8_t r[kLearnableStrategies];
      l_.ranking(r);
      const uint8_t runner_up = r[0] == l_.frozen() ? r[1] : r[0];
      FUZZ_CHECK(cur == runner_up && cur != l_.frozen(), "CANARY runs %d, not the runner-up %d", cur, runner_up);
    }
    // ELO is zero-sum: every match moves two ratings by opposite amounts.
    double sum = 0;
    uint64_t wins = 0, losses = 0, draws = 0, epochs = 0;
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      const StrategyRecord& r = l_.record(i);
      FUZZ_CHECK(std::isfinite(r.rating), "rating of %d is not finite", i);
      FUZZ_CHECK(std::isfinite(r.last_cost), "last cost of %d is not finite", i);
      sum += r.rating;
      wins += r.wins;
      losses += r.losses;
      draws += r.draws;
      epochs += r.epochs;
    }
    const double expect = kLearnableStrategies * l_.params().initial_rating;
    FUZZ_CHECK(std::fabs(sum - expect) <= 1e-6 * static_cast<double>(c.matches + 1),
               "ratings sum to %.9f, not %.1f: ELO lost zero-sum", sum, expect);
    FUZZ_CHECK(wins == losses, "wins %llu != losses %llu", (unsigned long long)wins, (unsigned long long)losses);
    FUZZ_CHECK(draws % 2 == 0 && (wins + losses + draws) / 2 == c.matches, "match tallies do not add up");
    FUZZ_CHECK(epochs == c.epochs, "per-strategy epochs %llu != %llu", (unsigned long long)epochs,
               (unsigned long long)c.epochs);
    snap();
  }

private:
  void snap() {
    state_ = l_.state();
    counters_ = l_.counters();
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) ratings_[i] = l_.record(i).rating;
  }

  const Learner& l_;
  Lifecycle state_;
  LearnerCounters counters_;
  double ratings_[kLearnableStrategies];
};

/// Costs for the epochs: a per-strategy table (stationary, so the learner can freeze) with
/// noise, or raw fuzzer values. Integer-valued, as the process cost source's counts are.
class ScriptedCosts {
public:
  explicit ScriptedCosts(Input& in) : in_(in) {
    stationary_ = in.below(4) != 0;
    for (auto& row : table_) {
      for (double& v : row) v = static_cast<double>(in.u16());
    }
  }
  EpochCost next(uint8_t strategy, uint64_t requests) {
    EpochCost c;
    const double n = static_cast<double>(requests);
    if (stationary_ && in_.below(8) != 0) {
      const double noise = 1 + static_cast<double>(in_.below(5)) / 1000;
      c.cpu = std::floor(table_[strategy][0] * n * noise);
      c.faults = std::floor(table_[strategy][1] * n);
      c.bytes = std::floor(table_[strategy][2] * n);
    } else {
      c.cpu = static_cast<double>(in_.u32());
      c.faults = static_cast<double>(in_.u16());
      c.bytes = static_cast<double>(in_.u64() >> in_.below(64));
    }
    return c;
  }

private:
  Input& in_;
  bool stationary_;
  double table_[kLearnableStrategies][3];
};

SizeSignature pick_signature(Input& in, const SizeSignature& last) {
  if (in.below(4) != 0) return last;  // mostly stable, so FROZEN is reachable
  SizeSignature s;
  for (uint64_t& c : s.count) c = in.below(4) == 0 ? in.u16() : 0;
  return s;
}

LearnerParams pick_params(Input& in) {
  LearnerParams p;
  p.k = 1 + static_cast<double>(in.below(400));
  p.min_samples = 1 + in.below(100);
  p.epsilon = static_cast<double>(in.below(101)) / 100;
  p.weight_cpu = static_cast<double>(in.below(101)) / 100;
  p.weight_faults = static_cast<double>(in.below(101)) / 100;
  p.weight_bytes = static_cast<double>(in.below(101)) / 100;
  p.freeze_tolerance = static_cast<double>(in.below(1001)) / 1000;
  p.windows = static_cast<unsigned>(1 + (in.flag() ? in.below(4) : in.below(100)));
  p.canary_rate = static_cast<double>(in.below(101)) / 100;
  p.canary_win = static_cast<double>(in.below(101)) / 100;
  p.relearn_degrade = static_cast<double>(1 + in.below(1000)) / 100;
  p.relearn_shift = static_cast<double>(1 + in.below(100)) / 100;
  return p;
}

uint64_t pick_requests(Input& in, uint64_t min_samples) {
  switch (in.below(4)) {
  case 0: return in.below(min_samples + 1);  // often not scored
  case 1: return in.u32();
  default: return min_samples + in.below(1000);
  }
}

/// The Learner alone: hundreds of epochs per input.
void fuzz_learner(Input& in) {
  Learner l(pick_params(in), in.u64());
  l.start(static_cast<uint8_t>(in.below(kLearnableStrategies)));
  LearnerModel model(l);
  ScriptedCosts costs(in);
  SizeSignature sig;
  for (size_t e = 0; e < kMaxEpochs && !in.empty(); ++e) {
    const uint64_t requests = pick_requests(in, l.params().min_samples);
    sig = pick_signature(in, sig);
    const EpochCost c = costs.next(l.current(), requests);
    model.after_epoch(l.end_epoch(requests, c, sig));
  }
}

/// A cost source that hands out what the script says.
struct FuzzCost final : CostSource {
  ScriptedCosts* script = nullptr;
  uint64_t requests = 1;
  EpochCost epoch_cost(uint8_t strategy) override {
    FUZZ_CHECK(strategy < kLearnableStrategies, "epoch cost asked for strategy %d", strategy);
    return script->next(strategy, requests);
  }
};

/// The learner inside a learn-mode allocator: the strategy in force follows it, and blocks made
/// under every strategy keep their backing consistent with their header (I3, via the audit).
void fuzz_allocator(Input& in) {
  Options o;
  o.set(Opt::kMode, kModeLearn);
  o.set(Opt::kLearnSample, 1);
  o.set(Opt::kEpochRequests, 1000000000);
  o.set(Opt::kEpochMs, 3600000);
  o.set(Opt::kMinSamples, 1 + in.below(4));
  o.set(Opt::kWindows, 1 + in.below(3));
  o.set(Opt::kCanary, in.below(101));
  o.set(Opt::kEpsilon, in.below(101));
  o.set(Opt::kCache, in.flag() ? 0 : 8 << 20);
  ScopedAllocator<TestConfig> a(o);
  ScriptedCosts script(in);
  FuzzCost cost;
  cost.script = &script;
  a->epoch_driver_for_testing().set_cost_source_for_testing(&cost);
  FUZZ_CHECK(a->learning(), "mode=learn did not start the learner");
  LearnerModel model(a->learner());
  hakmem_fuzz::Shadow shadow;
  std::deque<void*> live;
  for (size_t e = 0; e < 48 && !in.empty(); ++e) {
    const uint64_t n = in.below(6);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t size = kMinThreshold + in.below(uint64_t{3} << 20);
      void* p = a->alloc(size, 0x100 + in.below(4) * 0x100);
      FUZZ_CHECK(p != nullptr, "large allocation of %llu failed", (unsigned long long)size);
      shadow.add(*a, p, size, 16, false);
      live.push_back(p);
      if (live.size() > 6) {
        shadow.verify(live.front());
        FUZZ_CHECK(a->free(live.front(), 0) == Verdict::kOk, "free of live %p rejected", live.front());
        shadow.remove(live.front());
        live.pop_front();
      }
    }
    cost.requests = n == 0 ? 1 : n;
    const Lifecycle before = a->learner().state();
    const uint64_t epochs = a->learner().counters().epochs;
    a->epoch_driver_for_testing().end_epoch();
    if (a->learner().counters().epochs != epochs) {
      model.after_epoch(a->learner().current());
    } else {
      FUZZ_CHECK(n == 0 && a->learner().state() == before, "an epoch with %llu requests was not ended",
                 (unsigned long long)n);
    }
    const uint8_t id = a->selector().current_id();
    FUZZ_CHECK(id == a->learner().current(), "selector runs %d, learner says %d", id, a->learner().current());
    const StatsSnapshot s = a->stats();
    FUZZ_CHECK(s.strategy == id && s.threshold == kStrategyThresholds[id], "stats strategy %d/%llu, selector %d",
               s.strategy, (unsigned long long)s.threshold, id);
    FUZZ_CHECK(s.lifecycle == a->learner().state(), "stats lifecycle disagrees with the learner");
    hakmem_fuzz::check_audit(*a, "an epoch boundary");
  }
  shadow.verify_all();
  for (void* p : live) FUZZ_CHECK(a->free(p, 0) == Verdict::kOk, "free of live %p rejected", p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  if (in.u8() % 4 == 3) {
    fuzz_allocator(in);
  } else {
    fuzz_learner(in);
  }
  return 0;
}
