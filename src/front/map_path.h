// The Map path: large blocks from BigCache or a fresh mapping, and back to BigCache.
#pragma once

#include <errno.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "cache/cache.h"
#include "core/core.h"
#include "front/fork.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * Map blocks on the general path (the thread's large slot, LargeSlots, serves the short path).
 * acquire() takes a block of BigCache's when one fits (same site first) or maps a fresh one;
 * release() seals a block Validator::locate() accepted Cached and hands it to BigCache, keyed by
 * its allocation site. Each runs inside a ForkGate::LargeOp: it spans the cache's, the map's and
 * the releaser's locks.
 *
 * Paranoid mode: the user pointer starts a page, and a released block's user pages are PROT_NONE
 * while it is cached or pending (its header page stays readable, so a double free is reported,
 * not a crash); a failed protect is counted (protect_failures()).
 *
 * Accounting: a hand-out counts a Map allocation and adds the block's length to map_held_bytes;
 * a release counts a Map free and takes it off (I7).
 */
template <class Pal>
class MapPath {
public:
  struct Parts {
    Pal* pal;
    MapBacking<Pal>* map;
    BigCache<Pal>* cache;
    ForkGate* gate;
    const HeaderCodec* codec;
    const Hardening* hard;
    bool paranoid;
  };
  void init(const Parts& parts) { p_ = parts; }

  /**
   * A Map block for `size` bytes, `align`-aligned, its headers written with `strategy` (I3) and,
   * in paranoid mode, its canary; counted in `counters`. nullptr with errno ENOMEM on failure.
   * *fresh: straight from mmap, so already zero. `site` is masked.
   */
  void* acquire(HeapCounters& counters, size_t size, size_t align, uintptr_t site, Origin origin, uint8_t strategy,
                bool* fresh) {
    const ForkGate::LargeOp guard(*p_.gate);
    const size_t map_align = p_.paranoid && align < Pal::kPageSize ? Pal::kPageSize : align;
    const uint64_t payload = size + (p_.paranoid ? kCanarySize : 0) + align_slack(map_align);
    const uint32_t cls = LargeClasses::class_of(payload);
    MapBlock* mb = p_.cache->take(site, cls, payload, 0);
    if (mb != nullptr && p_.paranoid && !unprotect(mb)) {
      // Still Cached and inaccessible: back where it was, under its allocation site (release()).
      p_.cache->put(mb, HeaderCodec::load(reinterpret_cast<void*>(mb->base)).site());
      errno = ENOMEM;
      return nullptr;
    }
    if (mb == nullptr) {
      mb = p_.map->map(payload);
      if (mb == nullptr) {
        errno = ENOMEM;
        return nullptr;
      }
      *fresh = true;
    }
    const uintptr_t hdr = header_for(mb->base, map_align);
    track_alloc(mb->base + kHeaderSize, hdr + kHeaderSize, mb->capacity_at(hdr - mb->base), *fresh);
    mb->hdr_offset = hdr - mb->base;
    mb->state = State::kLive;
    write_headers(*p_.codec, mb->base, hdr, Method::kMap, origin, strategy, size, site);
    if (p_.paranoid) p_.hard->write_canary(hdr + kHeaderSize + size);
    counters.map_allocs.add(1);
    counters.map_held_bytes.add(static_cast<int64_t>(mb->length));
    return reinterpret_cast<void*>(hdr + kHeaderSize);
  }

  /// Frees a Map block Validator::locate() accepted, counted in `mine`, or in the shared `orphan`
  /// set when the freeing thread has no heap.
  void release(const Located& at, HeapCounters* mine, HeapCounters& orphan) {
    const ForkGate::LargeOp guard(*p_.gate);
    auto* mb = static_cast<MapBlock*>(at.extent);
    HeaderCodec::store(p_.codec->resealed(at.h, at.sum, State::kCached), reinterpret_cast<void*>(at.header));
    mb->state = State::kCached;
    if (mine != nullptr) {
      mine->map_frees.add(1);
      mine->map_held_bytes.add(-static_cast<int64_t>(mb->length));
    } else {
      orphan.map_frees.add_shared(1);
      orphan.map_held_bytes.add_shared(-static_cast<int64_t>(mb->length));
    }
    track_free(at.header + kHeaderSize, Validator<Pal>::capacity_of(at));
    if (p_.paranoid) {
      const uintptr_t user = at.header + kHeaderSize;
      if (!p_.pal->protect(reinterpret_cast<void*>(user), mb->base + mb->length - user, Access::kNone, Layer::kCache)) {
        protect_failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    p_.cache->put(mb, at.h.site());  // keyed by the allocation site: "same place, same pattern"
  }

  uint64_t protect_failures() const { return protect_failures_.load(); }

private:
  /// A cached block about to be reused (paranoid): its user pages readable and writable again.
  bool unprotect(MapBlock* mb) {
    return p_.pal->protect(reinterpret_cast<void*>(mb->base + Pal::kPageSize), mb->length - Pal::kPageSize,
                           Access::kReadWrite, Layer::kMap);
  }

  Parts p_{};
  std::atomic<uint64_t> protect_failures_{0};
};

}  // namespace hakmem
