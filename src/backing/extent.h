// Extents (what the Registry maps an address to) and the descriptor pool that holds them out of band.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "pal/pal.h"

namespace hakmem {

/// Which backing owns an extent.
enum class ExtentKind : uint8_t { kNone = 0, kPoolSpan = 1, kMapBlock = 2 };

/**
 * A run of pages owned by one backing. Descriptors live in a separate metadata
 * mapping, never next to user data, so an overflow cannot corrupt them.
 */
struct Extent {
  uintptr_t base = 0;
  size_t length = 0;
  ExtentKind kind = ExtentKind::kNone;
};

/// The page and cache line ObjectPool's layout keeps clear of (the first line of every page).
constexpr size_t kMetaPage = 4096;
constexpr size_t kMetaLine = 64;

/**
 * Fixed-size objects (descriptors, heaps) carved from 64 KiB metadata chunks
 * mapped through the PAL. Freed objects are kept for reuse; chunks are only
 * given back at teardown, through the releaser (for_each_chunk).
 */
template <class T, class Pal>
class ObjectPool {
public:
  static constexpr size_t kChunkSize = 64 * 1024;

  void init(Pal* pal, Layer layer, std::atomic<uint64_t>* mapped_tally) {
    pal_ = pal;
    layer_ = layer;
    tally_ = mapped_tally;
  }

  /// A zeroed, default-constructed T; nullptr when the platform refuses memory.
  T* make() {
    LockGuard g(lock_);
    if (free_ == nullptr && !grow()) return nullptr;
    Slot* n = free_;
    free_ = n->node.next;
    n->live = true;
    live_.store(live_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return new (&n->node) T();
  }

  void destroy(T* t) {
    t->~T();
    auto* n = reinterpret_cast<Slot*>(t);  // the node is the slot's first member
    LockGuard g(lock_);
    n->live = false;
    n->node.next = free_;
    free_ = n;
    live_.store(live_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }

  /// Read without the lock (stats): the counters are atomics written under it.
  size_t live() const { return live_.load(std::memory_order_relaxed); }
  size_t mapped_bytes() const { return chunks_.load(std::memory_order_relaxed) * kChunkSize; }

  /// Calls fn(T*) for every live object; caller guarantees quiescence.
  template <class Fn>
  void for_each_live(Fn&& fn) {
    for (Chunk* c = chunk_list_; c != nullptr; c = c->next) {
      for (size_t i = 0; i < kPerChunk; ++i) {
        if (slot_at(c, i)->live) fn(reinterpret_cast<T*>(&slot_at(c, i)->node));
      }
    }
  }

  /// Calls fn(addr, len) for every chunk (teardown) and forgets them.
  template <class Fn>
  void release_chunks(Fn&& fn) {
    Chunk* c = chunk_list_;
    while (c != nullptr) {
      Chunk* next = c->next;
      fn(reinterpret_cast<uintptr_t>(c), kChunkSize);
      c = next;
    }
    chunk_list_ = nullptr;
    free_ = nullptr;
    chunks_.store(0, std::memory_order_relaxed);
    live_.store(0, std::memory_order_relaxed);
  }

  SpinLock& lock() { return lock_; }

private:
  struct Slot;
  union Node {
    Slot* next;
    alignas(T) unsigned char bytes[sizeof(T)];
  };
  struct Slot {
    Node node;
    bool live;  ///< lets audits walk live objects in linear time
  };
  struct Chunk {
    Chunk* next;
  };
  // Where slots sit in a chunk. A program that walks a page-aligned block page by page (the
  // seed's scenarios, first-touch loops) writes the first cache line of every page, and so
  // evicts, from the L1 set those lines share, whatever else lives there, such as a descriptor
  // the next large malloc or free reads. So no slot touches the first line of any page: slots
  // that fit in the rest of a page are packed after it, page by page; a larger one (a Heap) starts one line into a page
  // of its own, and keeps its own hot fields clear of its later pages' first lines (pool.h).
  static constexpr size_t kPage = kMetaPage;
  static constexpr size_t kLine = kMetaLine;
  static_assert(alignof(Slot) <= kLine && kChunkSize % kPage == 0);
  static constexpr bool kPaged = sizeof(Slot) <= kPage - kLine;
  static constexpr size_t kPerPage = kPaged ? (kPage - kLine) / sizeof(Slot) : 0;
  static constexpr size_t kLargeStride = (sizeof(Slot) + kLine + kPage - 1) / kPage * kPage;

public:
  /// Objects one 64 KiB chunk holds.
  static constexpr size_t kPerChunk = kPaged ? kChunkSize / kPage * kPerPage : kChunkSize / kLargeStride;
  static_assert(kPerChunk >= 4, "descriptor too large for a metadata chunk");

private:
  static Slot* slot_at(Chunk* c, size_t i) {
    const auto base = reinterpret_cast<uintptr_t>(c);
    if constexpr (kPaged) {
      return reinterpret_cast<Slot*>(base + i / kPerPage * kPage + kLine + i % kPerPage * sizeof(Slot));
    } else {
      return reinterpret_cast<Slot*>(base + i * kLargeStride + kLine);
    }
  }

  bool grow() {
    void* mem = pal_->map(kChunkSize, layer_);
    if (mem == nullptr) return false;
    tally_->fetch_add(kChunkSize, std::memory_order_relaxed);
    auto* c = static_cast<Chunk*>(mem);
    c->next = chunk_list_;
    chunk_list_ = c;
    chunks_.store(chunks_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    for (size_t i = kPerChunk; i-- > 0;) {
      Slot* slot = slot_at(c, i);
      slot->live = false;
      slot->node.next = free_;
      free_ = slot;
    }
    return true;
  }

  Pal* pal_ = nullptr;
  Layer layer_ = Layer::kMeta;
  std::atomic<uint64_t>* tally_ = nullptr;
  SpinLock lock_;
  Slot* free_ = nullptr;
  Chunk* chunk_list_ = nullptr;
  std::atomic<size_t> chunks_{0};
  std::atomic<size_t> live_{0};
};

}  // namespace hakmem
