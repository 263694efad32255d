// Per-site profiles of large requests: a bounded table of call sites with counts and size signatures.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "select/learner.h"

namespace hakmem {

/// One site's profile as read back (stats).
struct SiteProfileView {
  uintptr_t site = 0;
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t bands[kSizeBands] = {};
};

/**
 * Large requests (at least the smallest threshold) by allocation site. Sites
 * are keyed by the same hash as BigCache's buckets (mix64(site)), slot =
 * hash % kSlots, so a profile slot and a BigCache bucket (hash % 64) name the
 * same sites. A full probe window sends a site to the shared "other" slot:
 * bounded memory, no allocation, lock-free updates.
 */
class SiteProfiles {
public:
  static constexpr size_t kSlots = 256;
  static constexpr size_t kProbe = 8;

  /// Counts `weight` requests of `size` bytes from `site` (a sampled request stands for several).
  void note(uintptr_t site, uint64_t size, uint64_t weight = 1) {
    if (site == 0) {  // 0 marks an empty slot: an unknown site has no slot of its own
      other_.add(size, weight);
      return;
    }
    const uint64_t h = mix64(site);
    for (size_t i = 0; i < kProbe; ++i) {
      Slot& s = slots_[(h + i) % kSlots];
      uintptr_t held = s.site.load(std::memory_order_relaxed);
      if (held == 0 && s.site.compare_exchange_strong(held, site, std::memory_order_relaxed)) held = site;
      if (held == site) {
        s.add(size, weight);
        return;
      }
    }
    other_.add(size, weight);
  }

  /// The `n` busiest sites, busiest first; returns how many were filled.
  size_t top(SiteProfileView* out, size_t n) const {
    size_t filled = 0;
    for (const Slot& s : slots_) {
      const uint64_t req = s.requests.load(std::memory_order_relaxed);
      if (req == 0) continue;
      size_t at = filled < n ? filled++ : n;
      if (at == n) {
        if (req <= out[n - 1].requests) continue;
        at = n - 1;
      }
      while (at > 0 && out[at - 1].requests < req) {
        out[at] = out[at - 1];
        --at;
      }
      out[at] = s.view();
    }
    return filled;
  }

  /// Requests from sites that found no slot, or whose site is unknown (0).
  uint64_t other_requests() const { return other_.requests.load(std::memory_order_relaxed); }

private:
  struct Slot {
    std::atomic<uintptr_t> site{0};
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint32_t> bands[kSizeBands] = {};
    void add(uint64_t size, uint64_t weight) {
      requests.fetch_add(weight, std::memory_order_relaxed);
      bytes.fetch_add(size * weight, std::memory_order_relaxed);
      bands[size_band(size)].fetch_add(static_cast<uint32_t>(weight), std::memory_order_relaxed);
    }
    SiteProfileView view() const {
      SiteProfileView v;
      v.site = site.load(std::memory_order_relaxed);
      v.requests = requests.load(std::memory_order_relaxed);
      v.bytes = bytes.load(std::memory_order_relaxed);
      for (size_t i = 0; i < kSizeBands; ++i) v.bands[i] = bands[i].load(std::memory_order_relaxed);
      return v;
    }
  };
  Slot slots_[kSlots];
  Slot other_;
};

}  // namespace hakmem
