// The Selector: which strategy (mmap threshold) is in force, read once per allocation.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "header/header.h"

namespace hakmem {

/// The learnable strategies: 12 mmap thresholds, geometric from 64 KiB to 32 MiB
/// (ratio 512^(1/11), rounded to 4 KiB pages).
inline constexpr uint64_t kStrategyThresholds[12] = {
    65536, 114688, 204800, 360448, 634880, 1118208, 1970176, 3473408, 6123520, 10792960, 19030016, 33554432,
};
constexpr uint8_t kLearnableStrategies = 12;
/// Strategy id of a fixed threshold that is not one of the twelve (e.g. the 256 KiB default).
constexpr uint8_t kFixedStrategy = 12;
constexpr uint64_t kMinThreshold = kStrategyThresholds[0];
constexpr uint64_t kMaxThreshold = kStrategyThresholds[kLearnableStrategies - 1];
static_assert(kFixedStrategy < (1u << kStrategyBits), "strategy ids must fit the header");

/// What one allocation reads from the selector: the strategy id and its threshold.
struct StrategySnapshot {
  uint8_t id;
  uint64_t threshold;
};

/**
 * The strategy in force. An allocation reads it once, before choosing a
 * backing (I3; the seed chose after allocating). In mode=fixed it never
 * changes; the learning selector (ELO, LEARN/FROZEN/CANARY) will change it only
 * at epoch boundaries, never per call.
 */
class Selector {
 public:
  constexpr Selector() = default;

  /// Fixed mode with `threshold`: one of the twelve ids when it matches one, else kFixedStrategy.
  void init_fixed(uint64_t threshold) {
    fixed_threshold_ = threshold;
    uint8_t id = kFixedStrategy;
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      if (kStrategyThresholds[i] == threshold) id = i;
    }
    current_.store(id, std::memory_order_relaxed);
  }

  /// The id alone: enough where the size cannot reach any threshold (the Pool fast path).
  uint8_t current_id() const { return current_.load(std::memory_order_relaxed); }

  StrategySnapshot snapshot() const {
    const uint8_t id = current_.load(std::memory_order_relaxed);
    return StrategySnapshot{id, threshold_of(id)};
  }

  /// The threshold of a strategy id (as recorded in a header).
  uint64_t threshold_of(uint8_t id) const {
    return id < kLearnableStrategies ? kStrategyThresholds[id] : fixed_threshold_;
  }

  /// TestOnly: switches strategy, as the learning selector will at an epoch boundary.
  void force_strategy_for_testing(uint8_t id) { current_.store(id, std::memory_order_relaxed); }

 private:
  std::atomic<uint8_t> current_{kFixedStrategy};
  uint64_t fixed_threshold_ = 256 * 1024;
};

}  // namespace hakmem
