// The learning selector's brain: ELO over the 12 strategies, epsilon-greedy, LEARN/FROZEN/CANARY.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "select/selector.h"

namespace hakmem {

/// What one epoch cost, raw (each component is normalized by the Learner).
struct EpochCost {
  double cpu = 0;     ///< time spent on the large path (any unit, consistently)
  double faults = 0;  ///< minor page faults
  double bytes = 0;   ///< bytes mapped (net growth of the mapped tally, floored at 0, plus what was mapped)
};

/// Large-request sizes of an epoch, by which threshold band they fall in (the signature).
constexpr size_t kSizeBands = kLearnableStrategies + 1;

/// How many of the twelve thresholds `size` reaches (0..12): its band. A binary search.
inline size_t size_band(uint64_t size) {
  size_t lo = 0, hi = kLearnableStrategies;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (size >= kStrategyThresholds[mid]) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

struct SizeSignature {
  uint64_t count[kSizeBands] = {};
  void add(uint64_t size) { ++count[size_band(size)]; }
  uint64_t total() const {
    uint64_t n = 0;
    for (uint64_t c : count) n += c;
    return n;
  }
  /// Total-variation distance between two signatures' distributions, in [0, 1].
  double distance(const SizeSignature& o) const {
    const double a = static_cast<double>(total()), b = static_cast<double>(o.total());
    if (a == 0 || b == 0) return 0;
    double d = 0;
    for (size_t i = 0; i < kSizeBands; ++i) d += std::fabs(count[i] / a - o.count[i] / b);
    return d / 2;
  }
};

/**
 * Supplies the epoch's cost. The real one reads the PAL's clock-derived large-path
 * time, minor-fault count and the mapped tally; tests inject fixed or scripted
 * costs so every decision is deterministic.
 */
class CostSource {
public:
  virtual ~CostSource() = default;
  /// The raw cost of the epoch that just ended, which ran `strategy`.
  virtual EpochCost epoch_cost(uint8_t strategy) = 0;
};

/// The lifecycle states (ARCHITECTURE.md, "Selector").
enum class Lifecycle : uint8_t { kLearn, kFrozen, kCanary };
inline const char* lifecycle_name(Lifecycle l) {
  return l == Lifecycle::kLearn ? "LEARN" : l == Lifecycle::kFrozen ? "FROZEN" : "CANARY";
}

/// Every constant of the learner; defaults are the seed's (the options table sets them).
struct LearnerParams {
  double k = 32;  ///< ELO K
  double initial_rating = 1500;
  uint64_t min_samples = 50;  ///< an epoch with fewer large requests is not scored
  double epsilon = 0.10;      ///< LEARN: chance of exploring a random strategy
  double weight_cpu = 0.4, weight_faults = 0.3, weight_bytes = 0.3;
  double draw_margin = 0.01;       ///< costs within 1% are a draw
  double freeze_tolerance = 0.01;  ///< FROZEN when the best's cost is stable within 1% ...
  unsigned windows = 3;            ///< ... over 3 windows; also the relearn window
  double canary_rate = 0.05;       ///< FROZEN: chance an epoch runs the runner-up
  double canary_win = 0.05;        ///< the runner-up is adopted only if 5% cheaper
  double relearn_degrade = 0.20;   ///< LEARN again when cost degrades by 20% over 3 windows ...
  double relearn_shift = 0.25;     ///< ... or the size signature moves by 0.25
};

/// One strategy's line on the leaderboard.
struct StrategyRecord {
  double rating = 1500;
  uint32_t wins = 0, losses = 0, draws = 0;
  uint32_t epochs = 0;   ///< epochs run (scored or not)
  double last_cost = 0;  ///< normalized cost of its latest scored epoch
  uint32_t scored = 0;   ///< epochs scored
};

/// Lifecycle transitions, counted (stats).
struct LearnerCounters {
  uint64_t epochs = 0, scored_epochs = 0, matches = 0;
  uint64_t freezes = 0, relearns = 0, relearns_by_cost = 0, relearns_by_shift = 0;
  uint64_t canaries = 0, canary_adoptions = 0, canary_rollbacks = 0;
  uint64_t learning_work = 0;  ///< ELO updates and exploration draws: zero while FROZEN
  uint64_t early_ends = 0;     ///< epochs the front ended early as clearly losing (note_early_end)
};

/**
 * Decides, at each epoch boundary, which strategy the next epoch runs. Pure
 * logic: no clock, no allocation, a seeded PRNG, so tests drive it exactly.
 *
 * - Each scored epoch is a match against the previous epoch's strategy (when
 *   it differed): the cheaper wins, within draw_margin a draw; both ratings
 *   move by K(S - E), E = 1 / (1 + 10^((Rb - Ra) / 400)).
 * - Costs are normalized per large request and per component by the running
 *   mean of that component, then weighted 40/30/30.
 * - LEARN first sweeps every strategy once, then picks the best-rated, or
 *   with chance epsilon a random one. When every strategy has a cost and the
 *   best ran the last `windows` epochs with costs within freeze_tolerance,
 *   FROZEN on it. Relearning starts a new sweep from fresh ratings.
 * - FROZEN does no learning work. Each epoch it compares the cost with the
 *   frozen reference (relearn when worse by relearn_degrade for `windows`
 *   epochs in a row) and the size signature with the reference (relearn when
 *   it moved by relearn_shift); with chance canary_rate the next epoch is a
 *   CANARY of the runner-up, adopted only if cheaper by canary_win, else
 *   rolled back.
 */
class Learner {
public:
  constexpr Learner() = default;
  explicit Learner(const LearnerParams& p, uint64_t seed = 0x5eed) { configure(p, seed); }

  /// Sets the constants and the PRNG seed, and resets ratings (before the first epoch).
  void configure(const LearnerParams& p, uint64_t seed) {
    p_ = p;
    rng_ = mix64(seed + 0x9e3779b97f4a7c15ULL) | 1;  // mixed: nearby seeds give unrelated streams
    for (StrategyRecord& r : board_) r = StrategyRecord{p_.initial_rating};
  }

  /// The strategy the first epoch runs.
  void start(uint8_t strategy) { current_ = strategy; }
  uint8_t current() const { return current_; }
  Lifecycle state() const { return state_; }
  const StrategyRecord& record(uint8_t id) const { return board_[id]; }
  const LearnerCounters& counters() const { return counters_; }
  const LearnerParams& params() const { return p_; }
  /// The frozen strategy (meaningful in FROZEN and CANARY).
  uint8_t frozen() const { return frozen_; }
  /// Counts an epoch its driver ended early because it was clearly losing (before end_epoch()).
  void note_early_end() { ++counters_.early_ends; }

  /**
   * Ends the epoch that ran current(): `requests` large requests, raw `cost`,
   * size `signature`. Returns the strategy of the next epoch.
   */
  uint8_t end_epoch(uint64_t requests, const EpochCost& cost, const SizeSignature& signature) {
    ++counters_.epochs;
    StrategyRecord& rec = board_[current_];
    ++rec.epochs;
    const bool scored = requests >= p_.min_samples && requests > 0;
    double c = 0;
    if (scored) {
      c = normalize(cost, requests);
      ++counters_.scored_epochs;
    }
    switch (state_) {
    case Lifecycle::kLearn: return learn_step(scored, c, signature);
    case Lifecycle::kFrozen: return frozen_step(scored, c, signature);
    case Lifecycle::kCanary: return canary_step(scored, c, signature);
    }
    return current_;
  }

  /// Strategy ids by rating, best first (ties by id).
  void ranking(uint8_t out[kLearnableStrategies]) const {
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) out[i] = i;
    for (uint8_t i = 1; i < kLearnableStrategies; ++i) {
      for (uint8_t j = i; j > 0 && better(out[j], out[j - 1]); --j) {
        const uint8_t t = out[j];
        out[j] = out[j - 1];
        out[j - 1] = t;
      }
    }
  }

private:
  bool better(uint8_t a, uint8_t b) const {
    return board_[a].rating > board_[b].rating || (board_[a].rating == board_[b].rating && a < b);
  }
  uint8_t best() const {
    uint8_t r[kLearnableStrategies];
    ranking(r);
    return r[0];
  }
  uint8_t runner_up(uint8_t besides) const {
    uint8_t r[kLearnableStrategies];
    ranking(r);
    return r[0] == besides ? r[1] : r[0];
  }

  double uniform() {  // xorshift64*: deterministic for a seed
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return static_cast<double>((rng_ * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
  }

  /**
   * Per request, each component over a fixed scale, weighted. The scale of a
   * component is its first non-zero per-request value and never moves after,
   * so equal costs always score equal, whenever they were measured.
   */
  double normalize(const EpochCost& raw, uint64_t requests) {
    const double n = static_cast<double>(requests);
    const double v[3] = {raw.cpu / n, raw.faults / n, raw.bytes / n};
    const double w[3] = {p_.weight_cpu, p_.weight_faults, p_.weight_bytes};
    double cost = 0;
    for (int i = 0; i < 3; ++i) {
      if (scale_[i] <= 0) scale_[i] = v[i];
      cost += w[i] * (scale_[i] > 0 ? v[i] / scale_[i] : 0);
    }
    return cost;
  }

  void match(uint8_t a, double cost_a, uint8_t b, double cost_b) {
    ++counters_.matches;
    ++counters_.learning_work;
    double s = 0.5;
    if (cost_a < cost_b * (1 - p_.draw_margin)) s = 1;
    if (cost_a > cost_b * (1 + p_.draw_margin)) s = 0;
    StrategyRecord& ra = board_[a];
    StrategyRecord& rb = board_[b];
    const double ea = 1 / (1 + std::pow(10.0, (rb.rating - ra.rating) / 400));
    ra.rating += p_.k * (s - ea);
    rb.rating += p_.k * ((1 - s) - (1 - ea));
    if (s == 1) {
      ++ra.wins;
      ++rb.losses;
    } else if (s == 0) {
      ++ra.losses;
      ++rb.wins;
    } else {
      ++ra.draws;
      ++rb.draws;
    }
  }

  uint8_t learn_step(bool scored, double c, const SizeSignature& sig) {
    if (scored) {
      StrategyRecord& rec = board_[current_];
      rec.last_cost = c;
      ++rec.scored;
      swept_ |= uint16_t(1u << current_);
      if (prev_valid_ && prev_ != current_) match(current_, c, prev_, board_[prev_].last_cost);
      prev_ = current_;
      prev_valid_ = true;
      // Freeze once the best has run the last `windows` epochs at a stable cost, and no
      // strategy measured cheaper than it is waiting for a match to settle it.
      window_[window_len_++ % kMaxWindows] = c;
      const uint8_t b = best();
      if (current_ == b && swept_ == kAllSwept && cheaper_than(b) == kNone && window_len_ >= p_.windows) {
        double lo = c, hi = c;
        for (unsigned i = 0; i < p_.windows; ++i) {
          const double x = window_[(window_len_ - 1 - i) % kMaxWindows];
          lo = std::fmin(lo, x);
          hi = std::fmax(hi, x);
        }
        if (hi <= lo * (1 + p_.freeze_tolerance)) {
          freeze(b, (lo + hi) / 2, sig);
          return current_;
        }
      }
    }
    // First a sweep, so every strategy has a cost before any is trusted. Then: a strategy
    // measured cheaper than the top-rated runs next, so a real match settles the order
    // (after one sweep, ratings only know each strategy's neighbours); else epsilon-greedy.
    ++counters_.learning_work;
    uint8_t next = best();
    if (swept_ != kAllSwept) {
      next = current_;
      do {
        next = static_cast<uint8_t>((next + 1) % kLearnableStrategies);
      } while (swept_ & (1u << next));
    } else if (const uint8_t cheaper = cheaper_than(next); cheaper != kNone && current_ == next) {
      next = cheaper;
    } else if (uniform() < p_.epsilon) {
      next = static_cast<uint8_t>(uniform() * kLearnableStrategies) % kLearnableStrategies;
    }
    if (next != current_) window_len_ = 0;  // a new run: its stability is judged afresh
    current_ = next;
    return current_;
  }

  /// The cheapest strategy whose latest cost beats b's by more than the draw margin, or kNone.
  uint8_t cheaper_than(uint8_t b) const {
    uint8_t found = kNone;
    double cost = board_[b].last_cost * (1 - p_.draw_margin);
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      if (i != b && board_[i].scored > 0 && board_[i].last_cost < cost) {
        cost = board_[i].last_cost;
        found = i;
      }
    }
    return found;
  }

  void freeze(uint8_t s, double reference, const SizeSignature& sig) {
    state_ = Lifecycle::kFrozen;
    frozen_ = s;
    current_ = s;
    reference_cost_ = reference;
    reference_sig_ = sig;
    degraded_ = 0;
    ++counters_.freezes;
  }

  void relearn(bool by_cost) {
    state_ = Lifecycle::kLearn;
    ++counters_.relearns;
    if (by_cost) {
      ++counters_.relearns_by_cost;
    } else {
      ++counters_.relearns_by_shift;
    }
    window_len_ = 0;
    prev_valid_ = false;
    // The costs changed under the old ranking: sweep again from fresh ratings
    // (wins, losses and draws stay, as history).
    swept_ = 0;
    for (StrategyRecord& r : board_) r.rating = p_.initial_rating;
  }

  uint8_t frozen_step(bool scored, double c, const SizeSignature& sig) {
    // Monitoring only: no ratings move and nothing is explored while FROZEN.
    if (sig.total() >= p_.min_samples && reference_sig_.distance(sig) > p_.relearn_shift) {
      relearn(false);
      return current_;
    }
    if (scored) {
      degraded_ = c > reference_cost_ * (1 + p_.relearn_degrade) ? degraded_ + 1 : 0;
      if (degraded_ >= p_.windows) {
        relearn(true);
        return current_;
      }
    }
    if (uniform() < p_.canary_rate) {
      state_ = Lifecycle::kCanary;
      ++counters_.canaries;
      current_ = runner_up(frozen_);
    }
    return current_;
  }

  uint8_t canary_step(bool scored, double c, const SizeSignature& sig) {
    const uint8_t candidate = current_;
    if (scored && c < reference_cost_ * (1 - p_.canary_win)) {
      ++counters_.canary_adoptions;
      frozen_ = candidate;
      reference_cost_ = c;
      degraded_ = 0;  // a new reference; a rollback says nothing about the frozen strategy
    } else {
      ++counters_.canary_rollbacks;
    }
    state_ = Lifecycle::kFrozen;
    current_ = frozen_;
    if (sig.total() >= p_.min_samples && reference_sig_.distance(sig) > p_.relearn_shift) relearn(false);
    return current_;
  }

  static constexpr uint8_t kNone = 0xff;
  static constexpr uint16_t kAllSwept = (1u << kLearnableStrategies) - 1;

  LearnerParams p_{};
  uint64_t rng_ = 0x5eed;
  StrategyRecord board_[kLearnableStrategies] = {};
  LearnerCounters counters_;
  Lifecycle state_ = Lifecycle::kLearn;
  uint8_t current_ = 0;
  uint8_t prev_ = 0;
  bool prev_valid_ = false;
  static constexpr unsigned kMaxWindows = 100;  ///< the windows option's upper bound
  double window_[kMaxWindows] = {};             ///< costs of the current run, newest at window_len_ - 1
  unsigned window_len_ = 0;
  uint8_t frozen_ = 0;
  double reference_cost_ = 0;
  SizeSignature reference_sig_;
  unsigned degraded_ = 0;
  uint16_t swept_ = 0;           ///< strategies scored since (re)learning began
  double scale_[3] = {0, 0, 0};  ///< per-component normalization, fixed at first sight
};

}  // namespace hakmem
