// The storage of the paranoid quarantine: FIFO rings of freed Pool blocks (the policy is the front's).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backing/size_classes.h"

namespace hakmem {

/**
 * A FIFO of freed Pool blocks, over storage it does not own. An entry packs the
 * block address (below 2^48) with its size class in the top 16 bits, so the
 * byte count is kept without a Registry lookup. Not synchronized: a thread's own
 * ring is touched by that thread only, the shared one under the front's lock.
 */
class BlockFifo {
 public:
  static constexpr unsigned kClassShift = 48;

  constexpr BlockFifo() = default;
  void init(uint64_t* slots, uint64_t capacity) {
    slot_ = slots;
    cap_ = capacity;
    head_ = count_ = bytes_ = 0;
  }

  static uint64_t pack(uintptr_t block, size_t cls) { return uint64_t{block} | uint64_t{cls} << kClassShift; }
  static uintptr_t block_of(uint64_t entry) { return entry & ((uint64_t{1} << kClassShift) - 1); }
  static size_t class_of(uint64_t entry) { return static_cast<size_t>(entry >> kClassShift); }

  bool full() const { return count_ == cap_; }
  bool empty() const { return count_ == 0; }
  uint64_t count() const { return count_; }
  uint64_t bytes() const { return bytes_; }
  uint64_t capacity() const { return cap_; }

  /// Bytes an entry stands for: its class's block size.
  static uint64_t length_of(uint64_t entry) { return SizeClasses::block_size(class_of(entry)); }

  /// Appends an entry; the caller checked full().
  void push(uint64_t entry) {
    slot_[(head_ + count_) % cap_] = entry;
    ++count_;
    bytes_ += length_of(entry);
  }
  /// Removes and returns the oldest entry; the caller checked empty().
  uint64_t pop() {
    const uint64_t e = slot_[head_];
    head_ = (head_ + 1) % cap_;
    --count_;
    bytes_ -= length_of(e);
    return e;
  }
  /// Calls fn(entry) from the oldest to the newest (audits).
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (uint64_t i = 0; i < count_; ++i) fn(slot_[(head_ + i) % cap_]);
  }

 private:
  uint64_t* slot_ = nullptr;
  uint64_t cap_ = 0;
  uint64_t head_ = 0;
  uint64_t count_ = 0;
  uint64_t bytes_ = 0;
};

/// A thread's own quarantine ring: a few blocks, stored in its heap.
struct LocalQuarantine {
  static constexpr uint64_t kSlots = 32;
  uint64_t slots[kSlots] = {};
  BlockFifo fifo;
};

}  // namespace hakmem
