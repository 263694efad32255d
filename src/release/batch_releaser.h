// BatchReleaser: the only code that returns memory to the OS; sorts, coalesces and unmaps in batches.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "header/header.h"
#include "pal/pal.h"

namespace hakmem {

/// Releaser counters (stats and tests).
struct ReleaseCounters {
  std::atomic<uint64_t> blocks{0};          ///< ranges added
  std::atomic<uint64_t> bytes{0};           ///< bytes added
  std::atomic<uint64_t> flushes{0};         ///< flushes that released something
  std::atomic<uint64_t> unmap_calls{0};     ///< munmap syscalls made
  std::atomic<uint64_t> syscalls_saved{0};  ///< ranges released minus munmap calls (coalescing)
  std::atomic<uint64_t> unmap_failures{0};
  std::atomic<uint64_t> unmapped_bytes{0};  ///< bytes given back to the OS, ever
  std::atomic<uint64_t> purge_calls{0};     ///< madvise(MADV_DONTNEED) syscalls made (purge())
  std::atomic<uint64_t> purged_bytes{0};    ///< bytes whose pages purge() gave back (still mapped)
};

/**
 * Holds ranges waiting to be unmapped and releases them together: when the
 * pending bytes reach the batch threshold, when the pending array is full, on
 * flush() (hak_flush), on a decay tick (the oldest range is older than
 * decay_ns) and at exit. A flush sorts the ranges by address and unmaps each
 * run of adjacent ranges with one munmap. A block's pages stay mapped, and
 * registered, until its flush: a double free of a pending block is still seen
 * as one. It also purges ranges that stay mapped (purge()). It is the only holder of a
 * ReleaseCapability (I1).
 */
template <class Pal>
class BatchReleaser {
public:
  static constexpr size_t kMaxPending = 256;

  void init(Pal* pal, Registry<Pal>* registry, MapBacking<Pal>* map, const HeaderCodec* codec,
            std::atomic<uint64_t>* tally, uint64_t batch_bytes, uint64_t decay_ns) {
    pal_ = pal;
    registry_ = registry;
    map_ = map;
    codec_ = codec;
    tally_ = tally;
    batch_bytes_ = batch_bytes;
    decay_ns_ = decay_ns;
  }

  /**
   * Takes an evicted Map block: its header becomes Releasing and it waits for
   * the next flush. Must be called with no hot lock held (it may flush).
   */
  void add(MapBlock* mb) {
    mark_releasing(mb);
    push(Pending{mb->base, mb->length, mb});
  }

  /// Takes a raw range that was never registered (a failed set-up, or teardown).
  void add_raw(uintptr_t base, size_t len) { push(Pending{base, len, nullptr}); }

  /// Releases everything pending now. Returns the number of ranges released.
  size_t flush() {
    Pending batch[kMaxPending];
    size_t n = 0;
    {
      LockGuard g(lock_);
      n = count_;
      std::copy(pending_, pending_ + n, batch);
      count_ = 0;
      pending_bytes_.store(0, std::memory_order_relaxed);
    }
    if (n == 0) return 0;
    release(batch, n);
    return n;
  }

  /**
   * Gives the pages of ranges that stay mapped back to the OS now (madvise MADV_DONTNEED: they
   * read as zeros when next touched): empty Pool spans on a trim. Sorted and coalesced, so a run
   * of adjacent ranges costs one call. Must be called with no hot lock held.
   */
  void purge(PageRange* ranges, size_t n) {
    const size_t calls = for_each_run(ranges, n, [this](uintptr_t base, size_t len) {
      if (pal_->advise_dontneed(ReleaseCapability{}, reinterpret_cast<void*>(base), len)) {
        counters_.purged_bytes.fetch_add(len, std::memory_order_relaxed);
      }
    });
    counters_.purge_calls.fetch_add(calls, std::memory_order_relaxed);
  }

  uint64_t pending_bytes() const { return pending_bytes_.load(std::memory_order_relaxed); }
  uint64_t batch_bytes() const { return batch_bytes_; }
  const ReleaseCounters& counters() const { return counters_; }

  /// TestOnly: calls fn(base, len, desc) for every pending range. Caller guarantees quiescence.
  template <class Fn>
  void for_each_pending(Fn&& fn) {
    LockGuard g(lock_);
    for (size_t i = 0; i < count_; ++i) fn(pending_[i].base, pending_[i].len, pending_[i].desc);
  }

  /// Fork: disable() takes the releaser's lock, so no batch is mid-update when the address space is
  /// copied; enable() releases it (parent and child alike).
  void disable() { lock_.lock(); }
  void enable() { lock_.unlock(); }

  /// Fills the releaser's fields of a stats snapshot (any struct with them: the front's StatsSnapshot).
  template <class Stats>
  void fill_stats(Stats& s) const {
    s.release_blocks = counters_.blocks.load();
    s.release_bytes = counters_.bytes.load();
    s.release_flushes = counters_.flushes.load();
    s.unmap_calls = counters_.unmap_calls.load();
    s.purge_calls = counters_.purge_calls.load();
    s.purged_bytes = counters_.purged_bytes.load();
    s.syscalls_saved = counters_.syscalls_saved.load();
    s.pending_bytes = pending_bytes();
    s.batch_bytes = batch_bytes();
  }

  /**
   * TestOnly audit (I6, I7): a pending Map block says Releasing, in its descriptor and in its
   * sealed header, and the walk adds up to pending_bytes(). Adds the walked bytes to r.pending; a
   * failure goes to r.fail(what, a, b). Caller guarantees quiescence.
   */
  template <class Audit>
  void audit_for_testing(Audit& r) {
    uint64_t walked = 0;
    for_each_pending([&](uintptr_t base, size_t len, MapBlock* mb) {
      walked += len;
      if (mb == nullptr) return;
      HeaderFields f;
      if (mb->state != State::kReleasing || !codec_->decode(reinterpret_cast<void*>(base + mb->hdr_offset), &f) ||
          f.state != State::kReleasing) {
        r.fail("I6 pending block not marked Releasing", base, 0);
      }
    });
    r.pending += walked;
    if (walked != pending_bytes()) r.fail("I7 pending bytes != walk", pending_bytes(), walked);
  }

private:
  struct Pending {
    uintptr_t base;
    size_t len;
    MapBlock* desc;
  };

  void mark_releasing(MapBlock* mb) {
    void* at = reinterpret_cast<void*>(mb->base + mb->hdr_offset);
    HeaderFields f;
    if (!codec_->decode(at, &f)) {
      // The cached block's header was overwritten after it was freed; the
      // block is on its way out anyway, so describe it afresh.
      f = HeaderFields{};
      f.method = Method::kMap;
      f.size = mb->capacity_at(mb->hdr_offset);
    }
    f.state = State::kReleasing;
    codec_->encode(f, at);
    mb->state = State::kReleasing;
  }

  void push(const Pending& p) {
    bool must_flush = false;
    for (;;) {
      {
        LockGuard g(lock_);
        if (count_ < kMaxPending) {
          if (count_ == 0) oldest_ns_ = pal_->now_ns();
          pending_[count_++] = p;
          const uint64_t bytes = pending_bytes_.load(std::memory_order_relaxed) + p.len;
          pending_bytes_.store(bytes, std::memory_order_relaxed);
          must_flush = bytes >= batch_bytes_ || count_ == kMaxPending ||
                       (decay_ns_ != 0 && pal_->now_ns() - oldest_ns_ >= decay_ns_);
          break;
        }
      }
      flush();  // full: make room, then try again
    }
    counters_.blocks.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes.fetch_add(p.len, std::memory_order_relaxed);
    if (must_flush) flush();
  }

  /// Sorts ranges (anything with base and len) by address and calls fn(base, len) once per run
  /// of adjacent ones; returns the number of runs.
  template <class Range, class Fn>
  static size_t for_each_run(Range* ranges, size_t n, Fn&& fn) {
    std::sort(ranges, ranges + n, [](const Range& a, const Range& b) { return a.base < b.base; });
    size_t runs = 0;
    for (size_t i = 0; i < n; ++runs) {
      const uintptr_t base = ranges[i].base;
      size_t len = ranges[i].len;
      size_t j = i + 1;
      while (j < n && ranges[j].base == base + len) len += ranges[j++].len;
      fn(base, len);
      i = j;
    }
    return runs;
  }

  void release(Pending* batch, size_t n) {
    // Unregister first: from here on a stale pointer into these pages is "not ours".
    for (size_t i = 0; i < n; ++i) {
      if (batch[i].desc != nullptr) registry_->clear(batch[i].base, batch[i].len);
    }
    const size_t calls = for_each_run(batch, n, [this](uintptr_t base, size_t len) {
      track_unmap(base, len);
      if (pal_->unmap(ReleaseCapability{}, reinterpret_cast<void*>(base), len)) {
        tally_->fetch_sub(len, std::memory_order_relaxed);
        counters_.unmapped_bytes.fetch_add(len, std::memory_order_relaxed);
      } else {
        counters_.unmap_failures.fetch_add(1, std::memory_order_relaxed);
      }
    });
    for (size_t i = 0; i < n; ++i) {
      if (batch[i].desc != nullptr) map_->retire(batch[i].desc);
    }
    counters_.flushes.fetch_add(1, std::memory_order_relaxed);
    counters_.unmap_calls.fetch_add(calls, std::memory_order_relaxed);
    counters_.syscalls_saved.fetch_add(n - calls, std::memory_order_relaxed);
  }

  Pal* pal_ = nullptr;
  Registry<Pal>* registry_ = nullptr;
  MapBacking<Pal>* map_ = nullptr;
  const HeaderCodec* codec_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  uint64_t batch_bytes_ = 8 * kMiB;
  uint64_t decay_ns_ = 0;
  SpinLock lock_;
  Pending pending_[kMaxPending] = {};
  size_t count_ = 0;
  uint64_t oldest_ns_ = 0;
  std::atomic<uint64_t> pending_bytes_{0};
  ReleaseCounters counters_;
};

}  // namespace hakmem
