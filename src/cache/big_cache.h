// BigCache: warm large blocks kept per (site bucket, size class) under a global byte cap.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "header/header.h"
#include "release/release.h"

namespace hakmem {

/// BigCache counters.
struct CacheCounters {
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> puts{0};
  std::atomic<uint64_t> evictions{0};  ///< blocks handed to the releaser (ring full or cap)
  std::atomic<uint64_t> bypass{0};     ///< frees not cached (cache off, uncached class, over the cap)
};

/**
 * Keeps freed Map blocks for warm reuse with no syscall. Each (site bucket,
 * class) has a ring of at most kRingSlots blocks; all cached blocks are also on
 * a global recency list so the byte cap evicts the coldest first. A hit takes
 * the newest block of the caller's bucket, or of any bucket for that class, and
 * is checked requested <= usable (the seed had a size-check bug here). Evicted
 * blocks go to the releaser, never to the OS (I9).
 */
template <class Pal>
class BigCache {
 public:
  static constexpr size_t kBuckets = 64;
  static constexpr size_t kRingSlots = 4;

  void init(BatchReleaser<Pal>* releaser, uint64_t cap_bytes) {
    releaser_ = releaser;
    cap_ = cap_bytes;
  }

  static uint32_t bucket_of(uintptr_t site) { return static_cast<uint32_t>(mix64(site) % kBuckets); }

  /**
   * A cached block of class `cls` whose capacity at `offset` is at least
   * `need` bytes, or nullptr. The block leaves the cache (state Live is the
   * caller's to write).
   */
  MapBlock* take(uintptr_t site, uint32_t cls, uint64_t need, uint64_t offset) {
    if (cls == LargeClasses::kUncached) return nullptr;
    LockGuard g(lock_);
    if (class_count_[cls] == 0) {
      counters_.misses.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    const uint32_t home = bucket_of(site);
    for (size_t i = 0; i < kBuckets; ++i) {
      Ring& r = rings_[(home + i) % kBuckets][cls];
      for (MapBlock* mb = r.head; mb != nullptr; mb = mb->ring_next) {
        if (mb->capacity_at(offset) >= need) {
          unlink(mb);
          counters_.hits.fetch_add(1, std::memory_order_relaxed);
          return mb;
        }
      }
    }
    counters_.misses.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }

  /**
   * Keeps a freed block (its header already says Cached), evicting the oldest
   * of its ring, and the coldest overall past the cap, to the releaser.
   */
  void put(MapBlock* mb, uintptr_t site) {
    counters_.puts.fetch_add(1, std::memory_order_relaxed);
    if (cap_ == 0 || mb->cls == LargeClasses::kUncached || mb->length > cap_) {
      counters_.bypass.fetch_add(1, std::memory_order_relaxed);
      releaser_->add(mb);
      return;
    }
    MapBlock* evicted[kEvictBatch];
    size_t n = 0;
    {
      LockGuard g(lock_);
      mb->bucket = bucket_of(site);
      mb->state = State::kCached;
      link(mb);
      Ring& r = rings_[mb->bucket][mb->cls];
      if (r.count > kRingSlots) {
        MapBlock* victim = r.tail;
        unlink(victim);
        evicted[n++] = victim;
      }
      n += evict_over_cap(evicted + n, kEvictBatch - n);
    }
    // Hand over outside the cache lock: the releaser may flush (syscalls).
    for (;;) {
      counters_.evictions.fetch_add(n, std::memory_order_relaxed);
      for (size_t i = 0; i < n; ++i) releaser_->add(evicted[i]);
      LockGuard g(lock_);  // one put of a big block may push out many small ones
      n = evict_over_cap(evicted, kEvictBatch);
      if (n == 0) return;
    }
  }

  /// Evicts everything to the releaser (hak_flush, teardown).
  void drain() {
    for (;;) {
      MapBlock* batch[64];
      size_t n = 0;
      {
        LockGuard g(lock_);
        while (lru_tail_ != nullptr && n < 64) {
          MapBlock* victim = lru_tail_;
          unlink(victim);
          batch[n++] = victim;
        }
      }
      if (n == 0) return;
      counters_.evictions.fetch_add(n, std::memory_order_relaxed);
      for (size_t i = 0; i < n; ++i) releaser_->add(batch[i]);
    }
  }

  uint64_t bytes() const { return bytes_atomic_.load(std::memory_order_relaxed); }
  uint64_t blocks() const { return blocks_atomic_.load(std::memory_order_relaxed); }
  uint64_t cap() const { return cap_; }
  const CacheCounters& counters() const { return counters_; }

  /// TestOnly: calls fn(MapBlock*) for every cached block. Caller guarantees quiescence.
  template <class Fn>
  void for_each_cached(Fn&& fn) {
    LockGuard g(lock_);
    for (MapBlock* mb = lru_head_; mb != nullptr; mb = mb->lru_next) fn(mb);
  }

  SpinLock& lock() { return lock_; }

 private:
  static constexpr size_t kEvictBatch = 64;

  /// Unlinks the coldest blocks while over the cap, at most `room`; caller holds the lock.
  size_t evict_over_cap(MapBlock** out, size_t room) {
    size_t n = 0;
    while (bytes_ > cap_ && lru_tail_ != nullptr && n < room) {
      MapBlock* victim = lru_tail_;
      unlink(victim);
      out[n++] = victim;
    }
    return n;
  }

  struct Ring {
    MapBlock* head = nullptr;
    MapBlock* tail = nullptr;
    uint32_t count = 0;
  };

  void link(MapBlock* mb) {
    Ring& r = rings_[mb->bucket][mb->cls];
    mb->ring_prev = nullptr;
    mb->ring_next = r.head;
    if (r.head != nullptr) r.head->ring_prev = mb;
    r.head = mb;
    if (r.tail == nullptr) r.tail = mb;
    ++r.count;
    mb->lru_prev = nullptr;
    mb->lru_next = lru_head_;
    if (lru_head_ != nullptr) lru_head_->lru_prev = mb;
    lru_head_ = mb;
    if (lru_tail_ == nullptr) lru_tail_ = mb;
    ++class_count_[mb->cls];
    ++blocks_;
    bytes_ += mb->length;
    publish();
  }

  void unlink(MapBlock* mb) {
    Ring& r = rings_[mb->bucket][mb->cls];
    if (mb->ring_prev != nullptr) mb->ring_prev->ring_next = mb->ring_next;
    if (mb->ring_next != nullptr) mb->ring_next->ring_prev = mb->ring_prev;
    if (r.head == mb) r.head = mb->ring_next;
    if (r.tail == mb) r.tail = mb->ring_prev;
    --r.count;
    if (mb->lru_prev != nullptr) mb->lru_prev->lru_next = mb->lru_next;
    if (mb->lru_next != nullptr) mb->lru_next->lru_prev = mb->lru_prev;
    if (lru_head_ == mb) lru_head_ = mb->lru_next;
    if (lru_tail_ == mb) lru_tail_ = mb->lru_prev;
    mb->ring_prev = mb->ring_next = mb->lru_prev = mb->lru_next = nullptr;
    --class_count_[mb->cls];
    --blocks_;
    bytes_ -= mb->length;
    publish();
  }

  // Mirrors for lock-free readers (stats).
  void publish() {
    bytes_atomic_.store(bytes_, std::memory_order_relaxed);
    blocks_atomic_.store(blocks_, std::memory_order_relaxed);
  }

  BatchReleaser<Pal>* releaser_ = nullptr;
  uint64_t cap_ = 0;
  SpinLock lock_;
  Ring rings_[kBuckets][LargeClasses::kCount] = {};
  uint32_t class_count_[LargeClasses::kCount] = {};
  MapBlock* lru_head_ = nullptr;
  MapBlock* lru_tail_ = nullptr;
  uint64_t bytes_ = 0;
  uint64_t blocks_ = 0;
  std::atomic<uint64_t> bytes_atomic_{0};
  std::atomic<uint64_t> blocks_atomic_{0};
  CacheCounters counters_;
};

}  // namespace hakmem
