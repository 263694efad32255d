// Map: one page-rounded mapping per large block, described out of band by a MapBlock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/extent.h"
#include "backing/pool.h"
#include "backing/registry.h"
#include "core/core.h"
#include "header/header.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * Large-block classes shared by Map and BigCache: 64 KiB, then four per
 * doubling up to 1 GiB. Map rounds a block's usable space up to its class, so
 * any cached block of a class serves any request of that class; larger blocks
 * are not cached (kUncached) and are mapped to the page.
 */
struct LargeClasses {
  static constexpr unsigned kFirstLog = 16;  // 64 KiB
  static constexpr unsigned kTopLog = 30;    // 1 GiB
  static constexpr uint32_t kCount = 1 + (kTopLog - kFirstLog) * 4;
  static constexpr uint32_t kUncached = ~uint32_t{0};

  static constexpr uint32_t class_of(uint64_t n) {
    if (n <= (uint64_t{1} << kFirstLog)) return 0;
    if (n > (uint64_t{1} << kTopLog)) return kUncached;
    const unsigned lg = log2_floor(n - 1);
    const uint64_t sub = ((n - 1) - (uint64_t{1} << lg)) >> (lg - 2);
    return static_cast<uint32_t>(1 + (lg - kFirstLog) * 4 + sub);
  }
  static constexpr uint64_t usable(uint32_t c) {
    if (c == 0) return uint64_t{1} << kFirstLog;
    const uint32_t k = c - 1;
    const unsigned lg = kFirstLog + k / 4;
    return (uint64_t{1} << lg) + (k % 4 + 1) * (uint64_t{1} << (lg - 2));
  }
};
static_assert(LargeClasses::usable(LargeClasses::kCount - 1) == (uint64_t{1} << 30));
static_assert(LargeClasses::class_of(uint64_t{1} << 30) == LargeClasses::kCount - 1);

/// A Map block's out-of-band descriptor; also the node BigCache and the releaser link.
struct MapBlock : Extent {
  uint32_t cls = LargeClasses::kUncached;  ///< LargeClasses class, or kUncached
  uint32_t bucket = 0;                     ///< BigCache site bucket while cached
  uint64_t hdr_offset = 0;                 ///< where the real header is (non-zero for aligned blocks)
  State state = State::kLive;              ///< mirrors the header, for audits
  uint32_t class_floor = 0;      ///< the largest request of the class below cls (a class's requests exceed it)
  MapBlock* lru_prev = nullptr;  ///< BigCache global recency list
  MapBlock* lru_next = nullptr;
  MapBlock* ring_prev = nullptr;  ///< BigCache per-(bucket, class) ring
  MapBlock* ring_next = nullptr;

  /// Bytes a request may use in this mapping when its header sits at `offset`.
  uint64_t capacity_at(uint64_t offset) const { return length - offset - kHeaderSize; }
};

/**
 * The Map backing: maps, registers and describes large blocks. It never
 * unmaps: freed blocks go to BigCache, evicted ones to the releaser, which
 * calls retire() once the pages are gone.
 */
template <class Pal>
class MapBacking {
public:
  void init(Pal* pal, Registry<Pal>* registry, std::atomic<uint64_t>* tally, GiveBack give_back) {
    pal_ = pal;
    registry_ = registry;
    tally_ = tally;
    give_back_ = give_back;
    descs_.init(pal, Layer::kMeta, tally);
  }

  /// Length of the mapping for `bytes` of header-plus-payload (class-rounded when cacheable).
  size_t mapping_length(uint64_t payload) const {
    const uint32_t c = LargeClasses::class_of(payload);
    const uint64_t usable = c == LargeClasses::kUncached ? payload : LargeClasses::usable(c);
    return static_cast<size_t>(round_up(usable + kHeaderSize, pal_->page_size()));
  }

  /// Maps and registers a block whose payload (alignment slack included) is `payload` bytes.
  MapBlock* map(uint64_t payload) {
    MapBlock* mb = descs_.make();
    if (mb == nullptr) return nullptr;
    const size_t len = mapping_length(payload);
    void* mem = pal_->map(len, Layer::kMap);
    if (mem == nullptr) {
      descs_.destroy(mb);
      return nullptr;
    }
    tally_->fetch_add(len, std::memory_order_relaxed);
    mb->base = reinterpret_cast<uintptr_t>(mem);
    mb->length = len;
    mb->kind = ExtentKind::kMapBlock;
    const uint32_t c = LargeClasses::class_of(payload);
    mb->cls = c;
    mb->class_floor = c == 0 || c == LargeClasses::kUncached ? 0 : static_cast<uint32_t>(LargeClasses::usable(c - 1));
    if (!registry_->assign(mb->base, len, mb)) {
      const uintptr_t base = mb->base;  // read before destroy(): the pool reuses the descriptor's bytes
      descs_.destroy(mb);
      give_back_(base, len);
      return nullptr;
    }
    return mb;
  }

  /// Forgets a descriptor whose pages the releaser has unmapped.
  void retire(MapBlock* mb) { descs_.destroy(mb); }

  size_t meta_bytes() const { return descs_.mapped_bytes(); }

  /// TestOnly: calls fn(MapBlock*) for every block that is still mapped.
  template <class Fn>
  void for_each_block(Fn&& fn) {
    descs_.for_each_live(fn);
  }

  /// Teardown: every block's mapping and the descriptor chunks go to `fn`.
  template <class Fn>
  void release_all(Fn&& fn) {
    descs_.for_each_live([&](MapBlock* mb) {
      registry_->clear(mb->base, mb->length);
      fn(mb->base, mb->length);
    });
    descs_.release_chunks(fn);
  }

  /// Fork: disable() takes the descriptor pool's lock, so no descriptor is mid-update when the
  /// address space is copied; enable() releases it (parent and child alike).
  void disable() { descs_.lock().lock(); }
  void enable() { descs_.lock().unlock(); }

private:
  Pal* pal_ = nullptr;
  Registry<Pal>* registry_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  GiveBack give_back_;
  ObjectPool<MapBlock, Pal> descs_;
};

}  // namespace hakmem
