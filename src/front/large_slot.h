// The large slot: each thread keeps its last freed Map block for its next large request, with no lock.
#pragma once

#include <atomic>
#include <cstdint>

#include "backing/backing.h"
#include "cache/cache.h"
#include "core/core.h"
#include "front/validation.h"
#include "header/header.h"

namespace hakmem {

/**
 * A thread's slot, stored in its heap (ThreadHeap): one Map block, state Cached, or empty. Only
 * the owning thread reads or writes it while it runs; another thread only when the owner cannot
 * (its exit, a fork child, teardown, an audit).
 */
struct LargeSlotCell {
  std::atomic<MapBlock*> block{nullptr};
  /// Written by the owning thread only: bytes of the block in the slot, blocks freed into it, and
  /// allocations it served (stats and audit sum them over every heap with sum()).
  OwnedCounter bytes, puts, hits;
};

/**
 * The policy of the threads' large slots. A Map free puts the block in the freeing thread's slot
 * when the slot is empty and the block is small enough and passes the same live-header check as
 * a Pool free; the thread's next large request it suits takes it back. No lock and no locked
 * instruction on either side.
 *
 * Accounting (I7): a block in a slot is counted in its cell's `bytes`, and the heap's map_held_bytes
 * keeps counting it (the slot's put and take leave it unchanged, so a round trip costs two
 * counter updates); to_cache() moves it to BigCache and books it as a Map free then.
 *
 * A fork while a thread is between the stores of put() or take() leaves the child a block
 * counted in the cell's bytes but in no slot: leaked, as is any block a thread that does not survive a
 * fork was holding, and I7's sum still holds.
 */
template <class Pal>
class LargeSlots {
public:
  /// `max`: the largest block a slot keeps (0: no slot).
  void init(uint64_t max) { max_ = max; }
  uint64_t max() const { return max_; }

  /**
   * The slot's block when it suits a Map request of `size` bytes (plain 16-byte alignment): room
   * enough, and not a class too big (the request exceeds the largest one of the class below the
   * block's). It leaves the slot; nullptr leaves the slot as is.
   */
  static HAKMEM_FAST_PATH MapBlock* take(LargeSlotCell& cell, uint64_t size) {
    MapBlock* mb = cell.block.load(std::memory_order_relaxed);
    if (mb == nullptr || size <= mb->class_floor || mb->capacity_at(0) < size) return nullptr;
    cell.block.store(nullptr, std::memory_order_relaxed);
    return mb;
  }

  /// Hands out a block take() returned: live again, its header written with the strategy in force (I3).
  static HAKMEM_FAST_PATH void* hand_out(const HeaderCodec& codec, LargeSlotCell& cell, MapBlock* mb, uint64_t size,
                                         uintptr_t site, Origin origin, uint8_t strategy) {
    cell.bytes.add(-static_cast<int64_t>(mb->length));
    cell.hits.add(1);
    mb->hdr_offset = 0;
    mb->state = State::kLive;
    track_alloc(mb->base + kHeaderSize, mb->base + kHeaderSize, mb->capacity_at(0));
    HeaderFields f;
    f.method = Method::kMap;
    f.state = State::kLive;
    f.origin = origin;
    f.strategy = strategy;
    f.size = size;
    f.site = site & kSiteMask;
    codec.encode(f, reinterpret_cast<void*>(mb->base));
    return reinterpret_cast<void*>(mb->base + kHeaderSize);
  }

  /**
   * Frees the Map block mb, whose user pointer u is claimed, into the empty slot `cell`: true when
   * the block suits a slot (a cacheable class, at most max() bytes, not aligned) and passes
   * live_header_ok() (exact pointer, Map/Live/origin, size, checksum). Then it is sealed Cached.
   * False changes nothing.
   */
  HAKMEM_FAST_PATH bool put(const HeaderCodec& codec, LargeSlotCell& cell, MapBlock* mb, uintptr_t u, Origin origin,
                            uint64_t sized) const {
    const uintptr_t block = u - kHeaderSize;
    if (mb->length > max_ || mb->cls == LargeClasses::kUncached || block != mb->base ||
        cell.block.load(std::memory_order_relaxed) != nullptr) {
      return false;
    }
    uint32_t sum;
    if (!live_header_ok(codec, block, Method::kMap, origin, mb->capacity_at(0), sized, &sum)) return false;
    codec.seal_live_in_place(sum, State::kCached, reinterpret_cast<void*>(block));
    mb->state = State::kCached;
    cell.puts.add(1);
    cell.bytes.add(static_cast<int64_t>(mb->length));
    track_free(u, mb->capacity_at(0));
    cell.block.store(mb, std::memory_order_relaxed);
    return true;
  }

  /**
   * Moves the slot's block, if any, into BigCache: its thread is exiting or flushing, a fork
   * child gives up a heap, or teardown. The caller holds a LargeOp guard (or is alone).
   */
  static void to_cache(BigCache<Pal>& cache, LargeSlotCell& cell, HeapCounters& counters) {
    MapBlock* mb = cell.block.load(std::memory_order_relaxed);
    if (mb == nullptr) return;
    cell.block.store(nullptr, std::memory_order_relaxed);
    cell.bytes.add(-static_cast<int64_t>(mb->length));
    counters.map_held_bytes.add(-static_cast<int64_t>(mb->length));  // the free the put did not count
    cache.put(mb, HeaderCodec::load(reinterpret_cast<void*>(mb->base)).site());
  }

  /**
   * The slots' part of a stats snapshot, after fill_heap_stats(): slot bytes, hits and the limit,
   * and the Map's allocations, frees and live bytes made whole (a slot hit is a Map allocation, a
   * put a Map free, and the Map's held bytes count the blocks in slots, which are not live).
   */
  template <class Stats, class PoolT>
  void fill_stats(Stats& s, PoolT& pool) const {
    s.slot_max = max_;
    s.slot_bytes = sum(pool, &LargeSlotCell::bytes);
    s.slot_hits = sum(pool, &LargeSlotCell::hits);
    s.map_allocs += s.slot_hits;
    s.map_frees += sum(pool, &LargeSlotCell::puts);
    // Read apart while threads run, the two sums may miss each other's last update: never below 0.
    s.map_live_bytes = s.map_live_bytes > s.slot_bytes ? s.map_live_bytes - s.slot_bytes : 0;
  }

  /// One of the slots' counters summed over every heap of `pool` (each heap has its slot cell).
  template <class PoolT>
  static uint64_t sum(PoolT& pool, OwnedCounter LargeSlotCell::*c) {
    int64_t total = 0;
    pool.for_each_heap([&](const auto* h) { total += (h->slot.*c).get(); });
    return static_cast<uint64_t>(total);
  }

  /**
   * TestOnly audit of one slot (I6): its block says Cached in its descriptor and sealed header,
   * with the header at the block start. Adds its bytes to r.slots.
   */
  template <class Audit>
  static void audit_for_testing(Audit& r, const HeaderCodec& codec, const LargeSlotCell& cell) {
    MapBlock* mb = cell.block.load();
    if (mb == nullptr) return;
    r.slots += mb->length;
    HeaderFields f;
    if (!codec.decode(reinterpret_cast<void*>(mb->base), &f) || f.state != State::kCached ||
        mb->state != State::kCached || mb->hdr_offset != 0) {
      r.fail("I6 large slot block not marked Cached", mb->base, 0);
    }
  }

private:
  uint64_t max_ = 0;
};

}  // namespace hakmem
