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
/// Ids 12..15 name fixed thresholds that are not one of the twelve (e.g. the 256 KiB
/// default, or a mallopt value). Each keeps its threshold for the life of the process,
/// so a block's recorded strategy never changes meaning (I3).
constexpr uint8_t kFixedStrategy = 12;
constexpr uint8_t kFixedSlots = 4;
constexpr uint64_t kMinThreshold = kStrategyThresholds[0];
constexpr uint64_t kMaxThreshold = kStrategyThresholds[kLearnableStrategies - 1];
static_assert(kFixedStrategy + kFixedSlots <= (1u << kStrategyBits), "strategy ids must fit the header");

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

  /**
   * Fixed mode with `threshold`: the id of one of the twelve when it matches,
   * else a fixed slot holding it (reused when the same value comes again).
   * False, and nothing changed, when all four slots hold other values.
   */
  bool init_fixed(uint64_t threshold) {
    uint8_t id = kLearnableStrategies + kFixedSlots;
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      if (kStrategyThresholds[i] == threshold) id = i;
    }
    for (uint8_t k = 0; k < kFixedSlots && id == kLearnableStrategies + kFixedSlots; ++k) {
      uint64_t held = fixed_[k].load(std::memory_order_acquire);
      if (held == 0 && fixed_[k].compare_exchange_strong(held, threshold, std::memory_order_acq_rel)) held = threshold;
      if (held == threshold) id = static_cast<uint8_t>(kFixedStrategy + k);
    }
    if (id == kLearnableStrategies + kFixedSlots) return false;
    current_.store(id, std::memory_order_release);
    return true;
  }

  /// The id alone: enough where the size cannot reach any threshold (the Pool fast path).
  uint8_t current_id() const {
    const uint8_t id = current_.load(std::memory_order_relaxed);
    // Every id stored is below 2^kStrategyBits (static_assert above): saying so lets the header
    // encoder drop its field mask.
    if (id >= (1u << kStrategyBits)) __builtin_unreachable();
    return id;
  }

  StrategySnapshot snapshot() const {
    const uint8_t id = current_.load(std::memory_order_acquire);
    return StrategySnapshot{id, threshold_of(id)};
  }

  /// The threshold of a strategy id (as recorded in a header).
  uint64_t threshold_of(uint8_t id) const {
    if (id < kLearnableStrategies) return kStrategyThresholds[id];
    return fixed_[(id - kFixedStrategy) % kFixedSlots].load(std::memory_order_acquire);
  }

  /// Puts strategy `id` in force: the learner at an epoch boundary, tests, mallopt via init_fixed.
  void set_current(uint8_t id) { current_.store(id, std::memory_order_release); }

private:
  std::atomic<uint8_t> current_{kFixedStrategy};
  std::atomic<uint64_t> fixed_[kFixedSlots] = {256 * 1024, 0, 0, 0};  // slot 12: the default threshold
};

}  // namespace hakmem
