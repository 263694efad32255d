// BigCache: warm large blocks kept per (site bucket, size class) under a byte limit that grows on regret.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "header/header.h"
#include "release/release.h"

namespace hakmem {

/// BigCache counters. Written under the cache lock (one writer at a time: a load and a store,
/// no locked read-modify-write on the large path), read by stats at any time.
struct CacheCounters {
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> puts{0};
  std::atomic<uint64_t> evictions{0};  ///< blocks handed to the releaser (over the limit, or a flush)
  std::atomic<uint64_t> bypass{0};     ///< frees not cached (cache off, uncached class, over the limit)
  std::atomic<uint64_t> grows{0};      ///< misses that raised the limit (a block of their class was evicted lately)
  std::atomic<uint64_t> shrinks{0};    ///< decay windows that lowered the limit (bytes cached and unused throughout)
};

/**
 * Keeps freed Map blocks for warm reuse with no syscall. Each (site bucket,
 * class) has a ring (newest first); all cached blocks are also on a global
 * recency list, so the byte limit evicts the coldest first. A hit takes the
 * newest block of the caller's bucket, or of any bucket for that class, and is
 * checked requested <= usable (the seed had a size-check bug here). Evicted
 * blocks go to the releaser, never to the OS (I9).
 *
 * The limit starts at the `cache` cap and grows on regret: a miss of a class
 * whose blocks the limit evicted within the last decay window raises it by one
 * block of that class, up to `cache_max`. A program that frees and reallocates
 * a working set larger than the cap (seed_scenarios churn: 100 x 2 MiB) thus
 * stops mapping and faulting it anew each round after the second. The growth is
 * given back by decay: at the first put after each decay window, the limit
 * drops by the fewest bytes the cache held during that window (blocks nobody
 * took the whole time), never below the cap. Clock reads happen only on that
 * check, on evictions by the limit and on misses of a class with regrets, never
 * on a hit.
 */
template <class Pal>
class BigCache {
public:
  static constexpr size_t kBuckets = 64;

  /**
   * `cap_bytes`: the limit at start and its floor (0 disables the cache);
   * `max_bytes`: the most regret may raise it to (at least the cap);
   * `decay_ns`: the window for regrets and for the decay (0: regrets never
   * expire and the limit never decays).
   */
  void init(Pal* pal, BatchReleaser<Pal>* releaser, uint64_t cap_bytes, uint64_t max_bytes, uint64_t decay_ns) {
    pal_ = pal;
    releaser_ = releaser;
    cap_ = cap_bytes;
    max_ = cap_bytes == 0 ? 0 : (max_bytes > cap_bytes ? max_bytes : cap_bytes);
    decay_ns_ = decay_ns;
    limit_ = cap_;
    publish_limit();
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
    if (class_count_[cls] != 0) {
      const uint32_t home = bucket_of(site);
      for (size_t i = 0; i < kBuckets; ++i) {
        Ring& r = rings_[(home + i) % kBuckets][cls];
        for (MapBlock* mb = r.head; mb != nullptr; mb = mb->ring_next) {
          if (mb->capacity_at(offset) >= need) {
            unlink(mb);
            bump(counters_.hits);
            return mb;
          }
        }
      }
    }
    bump(counters_.misses);
    if (regrets_[cls].count != 0) regret(cls);
    return nullptr;
  }

  /**
   * Keeps a freed block (its header already says Cached), evicting the coldest
   * blocks of any ring to the releaser while the cache is over its limit.
   */
  void put(MapBlock* mb, uintptr_t site) {
    MapBlock* evicted[kEvictBatch];
    size_t n = 0;
    {
      LockGuard g(lock_);
      bump(counters_.puts);
      if (mb->cls != LargeClasses::kUncached && mb->length <= limit_) {
        mb->bucket = bucket_of(site);
        mb->state = State::kCached;
        link(mb);
        if (limit_ > cap_ && decay_ns_ != 0) decay();
        n = evict_over_limit(evicted, kEvictBatch);
        mb = nullptr;
      } else {
        bump(counters_.bypass);
      }
    }
    if (mb != nullptr) {  // cache off, an uncached class, or larger than the whole limit
      releaser_->add(mb);
      return;
    }
    // Hand over outside the cache lock: the releaser may flush (syscalls).
    for (;;) {
      for (size_t i = 0; i < n; ++i) releaser_->add(evicted[i]);
      if (n < kEvictBatch) return;
      LockGuard g(lock_);  // one put of a big block may push out many small ones
      n = evict_over_limit(evicted, kEvictBatch);
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
        bump(counters_.evictions, n);
      }
      if (n == 0) return;
      for (size_t i = 0; i < n; ++i) releaser_->add(batch[i]);
    }
  }

  uint64_t bytes() const { return bytes_atomic_.load(std::memory_order_relaxed); }
  uint64_t blocks() const { return blocks_atomic_.load(std::memory_order_relaxed); }
  uint64_t cap() const { return cap_; }
  uint64_t max() const { return max_; }
  /// The byte limit in force: the cap, plus what regret added and decay has not yet taken back.
  uint64_t limit() const { return limit_atomic_.load(std::memory_order_relaxed); }
  const CacheCounters& counters() const { return counters_; }

  /// TestOnly: calls fn(MapBlock*) for every cached block. Caller guarantees quiescence.
  template <class Fn>
  void for_each_cached(Fn&& fn) {
    LockGuard g(lock_);
    for (MapBlock* mb = lru_head_; mb != nullptr; mb = mb->lru_next) fn(mb);
  }

  /// Fork: disable() takes the cache lock, so no ring or list is mid-update when the address space
  /// is copied; enable() releases it (parent and child alike).
  void disable() { lock_.lock(); }
  void enable() { lock_.unlock(); }

  /// Fills the cache's fields of a stats snapshot (any struct with them: the front's StatsSnapshot).
  template <class Stats>
  void fill_stats(Stats& s) const {
    s.cache_hits = counters_.hits.load();
    s.cache_misses = counters_.misses.load();
    s.cache_puts = counters_.puts.load();
    s.cache_evictions = counters_.evictions.load();
    s.cache_bypass = counters_.bypass.load();
    s.cache_grows = counters_.grows.load();
    s.cache_shrinks = counters_.shrinks.load();
    s.cache_bytes = bytes();
    s.cache_blocks = blocks();
    s.cache_cap = cap();
    s.cache_limit = limit();
    s.cache_max = max();
  }

  /**
   * TestOnly audit (I6, I7): every cached block says Cached, in its descriptor and in its sealed
   * header; the walk adds up to bytes(); the limit stays within [cap, max] and covers the bytes.
   * Adds the walked bytes to r.cached; a failure goes to r.fail(what, a, b). Caller guarantees
   * quiescence.
   */
  template <class Audit>
  void audit_for_testing(Audit& r, const HeaderCodec& codec) {
    uint64_t walked = 0;
    for_each_cached([&](MapBlock* mb) {
      walked += mb->length;
      HeaderFields f;
      if (!codec.decode(reinterpret_cast<void*>(mb->base + mb->hdr_offset), &f) || f.state != State::kCached ||
          mb->state != State::kCached) {
        r.fail("I6 cached block not marked Cached", mb->base, 0);
      }
    });
    r.cached += walked;
    if (walked != bytes()) r.fail("I7 cache bytes != walk", bytes(), walked);
    if (walked > limit()) r.fail("BigCache over its limit", walked, limit());
    if (limit() < cap() || limit() > max()) r.fail("BigCache limit outside [cap, max]", limit(), max());
  }

private:
  static constexpr size_t kEvictBatch = 64;

  /// A class's evictions by the limit: how many, and when the latest happened.
  struct Regrets {
    uint32_t count = 0;
    uint64_t at_ns = 0;
  };

  /// Unlinks the coldest blocks while over the limit, at most `room`, noting each as a regret of
  /// its class; caller holds the lock.
  size_t evict_over_limit(MapBlock** out, size_t room) {
    size_t n = 0;
    uint64_t now = 0;
    while (bytes_ > limit_ && lru_tail_ != nullptr && n < room) {
      MapBlock* victim = lru_tail_;
      unlink(victim);
      out[n++] = victim;
      bump(counters_.evictions);
      if (limit_ < max_) {
        if (now == 0) now = pal_->now_ns();
        Regrets& r = regrets_[victim->cls];
        if (decay_ns_ != 0 && now - r.at_ns > decay_ns_) r.count = 0;  // the older ones have expired
        if (r.count < kMaxRegrets) ++r.count;
        r.at_ns = now;
      }
    }
    return n;
  }

  /// A miss of class `cls` with regrets: within the window, the limit grows by one block of the class.
  void regret(uint32_t cls) {
    Regrets& r = regrets_[cls];
    const uint64_t now = pal_->now_ns();
    if (decay_ns_ != 0 && now - r.at_ns > decay_ns_) {
      r.count = 0;
      return;
    }
    --r.count;
    if (limit_ >= max_) return;
    const uint64_t block = LargeClasses::usable(cls) + kHeaderSize + Pal::kPageSize;
    if (limit_ == cap_) {  // growing from the cap: the decay window starts now
      window_ns_ = now;
      low_water_ = bytes_;
    }
    limit_ = max_ - limit_ < block ? max_ : limit_ + block;
    publish_limit();
    bump(counters_.grows);
  }

  /// At the end of each decay window, the limit gives back what stayed cached throughout.
  void decay() {
    const uint64_t now = pal_->now_ns();
    if (now - window_ns_ < decay_ns_) return;
    const uint64_t unused = low_water_ < limit_ - cap_ ? low_water_ : limit_ - cap_;
    if (unused != 0) {
      limit_ -= unused;
      publish_limit();
      bump(counters_.shrinks);
    }
    window_ns_ = now;
    low_water_ = bytes_;
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
    if (bytes_ < low_water_) low_water_ = bytes_;
    publish();
  }

  // Mirrors for lock-free readers (stats).
  void publish() {
    bytes_atomic_.store(bytes_, std::memory_order_relaxed);
    blocks_atomic_.store(blocks_, std::memory_order_relaxed);
  }
  void publish_limit() { limit_atomic_.store(limit_, std::memory_order_relaxed); }
  /// A counter bump under the lock, which orders every writer: no read-modify-write needed.
  static void bump(std::atomic<uint64_t>& c, uint64_t d = 1) {
    c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }

  static constexpr uint32_t kMaxRegrets = 1u << 20;

  Pal* pal_ = nullptr;
  BatchReleaser<Pal>* releaser_ = nullptr;
  uint64_t cap_ = 0;
  uint64_t max_ = 0;
  uint64_t decay_ns_ = 0;
  uint64_t limit_ = 0;      ///< cap_ <= limit_ <= max_
  uint64_t window_ns_ = 0;  ///< when the current decay window began
  uint64_t low_water_ = 0;  ///< fewest bytes cached since then (unlink() keeps it)
  Regrets regrets_[LargeClasses::kCount] = {};
  SpinLock lock_;
  Ring rings_[kBuckets][LargeClasses::kCount] = {};
  uint32_t class_count_[LargeClasses::kCount] = {};
  MapBlock* lru_head_ = nullptr;
  MapBlock* lru_tail_ = nullptr;
  uint64_t bytes_ = 0;
  uint64_t blocks_ = 0;
  std::atomic<uint64_t> bytes_atomic_{0};
  std::atomic<uint64_t> blocks_atomic_{0};
  std::atomic<uint64_t> limit_atomic_{0};
  CacheCounters counters_;
};

}  // namespace hakmem
