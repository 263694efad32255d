// Paranoid mode's zero-size blocks: unique addresses in a reserved, inaccessible range, with a live bit each.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/pool.h"
#include "core/core.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * malloc(0) in paranoid mode: a 16-byte slot of a 16 MiB range mapped
 * PROT_NONE, so any read or write through the pointer faults, and every live
 * zero-size block has its own address. One bit per slot says live; a free of
 * a slot whose bit is clear is a double free. Slots are handed out round-robin
 * from a cursor, so a freed address is reused only after all 2^20 slots were
 * handed out once more (a late double free still finds its bit clear). Mapped on
 * first use (both the range and the bitmap count as metadata); never touches
 * the range itself. Given back at teardown through the releaser.
 */
template <class Pal>
class ZeroArena {
public:
  static constexpr uint64_t kSlotSize = 16;
  static constexpr uint64_t kSlots = uint64_t{1} << 20;
  static constexpr uint64_t kRangeBytes = kSlots * kSlotSize;
  static constexpr uint64_t kBitmapBytes = kSlots / 8;

  /// What a pointer is to the arena.
  enum class Slot : uint8_t { kOutside, kLive, kFree, kInside };  // kInside: in range, not a slot start

  void init(Pal* pal, std::atomic<uint64_t>* tally, GiveBack give_back) {
    pal_ = pal;
    tally_ = tally;
    give_back_ = give_back;
  }

  /// A fresh zero-size block's address; 0 when the arena cannot be mapped or is full.
  uintptr_t alloc() {
    LockGuard g(lock_);
    if (base_.load(std::memory_order_relaxed) == 0 && !map_locked()) return 0;
    if (live_ == kSlots) return 0;
    // The first free slot at or after the cursor, wrapping once round (n == kWords revisits the
    // cursor's word below the cursor).
    constexpr uint64_t kWords = kSlots / 64;
    for (uint64_t n = 0; n <= kWords; ++n) {
      const uint64_t w = (cursor_ / 64 + n) % kWords;
      uint64_t free_bits = ~bits_[w];
      if (n == 0) free_bits &= ~uint64_t{0} << (cursor_ % 64);
      if (free_bits == 0) continue;
      const unsigned b = static_cast<unsigned>(__builtin_ctzll(free_bits));
      bits_[w] |= uint64_t{1} << b;
      cursor_ = (w * 64 + b + 1) % kSlots;
      ++live_;
      return base_.load(std::memory_order_relaxed) + (w * 64 + b) * kSlotSize;
    }
    return 0;
  }

  /// Where p stands; lock-free for the common "outside" answer.
  Slot classify(uintptr_t p) {
    const uintptr_t base = base_.load(std::memory_order_acquire);
    if (base == 0 || p - base >= kRangeBytes) return Slot::kOutside;
    if ((p - base) % kSlotSize != 0) return Slot::kInside;
    const uint64_t i = (p - base) / kSlotSize;
    LockGuard g(lock_);
    return (bits_[i / 64] >> (i % 64) & 1) != 0 ? Slot::kLive : Slot::kFree;
  }

  /// Frees a slot classify() called live. False when it was not (a racing double free).
  bool free(uintptr_t p) {
    const uint64_t i = (p - base_.load(std::memory_order_relaxed)) / kSlotSize;
    LockGuard g(lock_);
    const uint64_t bit = uint64_t{1} << (i % 64);
    if ((bits_[i / 64] & bit) == 0) return false;
    bits_[i / 64] &= ~bit;
    --live_;
    return true;
  }

  uint64_t live() {
    LockGuard g(lock_);
    return live_;
  }
  uint64_t meta_bytes() const { return base_.load(std::memory_order_relaxed) != 0 ? kRangeBytes + kBitmapBytes : 0; }
  /// Fork: disable() takes the arena's lock, so no slot is mid-update when the address space is
  /// copied; enable() releases it (parent and child alike).
  void disable() { lock_.lock(); }
  void enable() { lock_.unlock(); }

  /// Teardown: both mappings go to `fn` (the releaser).
  template <class Fn>
  void release_all(Fn&& fn) {
    const uintptr_t base = base_.load(std::memory_order_relaxed);
    if (base == 0) return;
    fn(base, kRangeBytes);
    fn(reinterpret_cast<uintptr_t>(bits_), kBitmapBytes);
    base_.store(0, std::memory_order_relaxed);
    bits_ = nullptr;
    live_ = cursor_ = 0;
  }

private:
  bool map_locked() {
    void* bits = pal_->map(kBitmapBytes, Layer::kMeta);
    if (bits == nullptr) return false;
    void* range = pal_->map_sparse(kRangeBytes, Layer::kMeta);
    if (range == nullptr || !pal_->protect(range, kRangeBytes, Access::kNone, Layer::kMeta)) {
      tally_->fetch_add(kBitmapBytes + (range != nullptr ? kRangeBytes : 0), std::memory_order_relaxed);
      give_back_(reinterpret_cast<uintptr_t>(bits), kBitmapBytes);  // the releaser untallies it
      if (range != nullptr) give_back_(reinterpret_cast<uintptr_t>(range), kRangeBytes);
      return false;
    }
    tally_->fetch_add(kBitmapBytes + kRangeBytes, std::memory_order_relaxed);
    bits_ = static_cast<uint64_t*>(bits);
    base_.store(reinterpret_cast<uintptr_t>(range), std::memory_order_release);
    return true;
  }

  Pal* pal_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  GiveBack give_back_;
  SpinLock lock_;
  std::atomic<uintptr_t> base_{0};
  uint64_t* bits_ = nullptr;
  uint64_t cursor_ = 0;  ///< the slot after the last one handed out
  uint64_t live_ = 0;
};

}  // namespace hakmem
