// The Pool arena: address space reserved once, where spans are committed one after another, so that
// the free fast path finds a small block's span with one table load.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/span.h"
#include "core/core.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * A 16 GiB range reserved inaccessible (PROT_NONE, no commit charge) when the Pool starts, from a
 * GiB boundary, cut into 64 KiB slots. A span is committed (made read-write) at the arena's cursor, on a slot boundary,
 * and every slot it covers names it in a table of 2^18 entries (2 MiB, mapped sparse: a table page
 * is touched only once a span in its 32 MiB is made). The free fast path then finds the span of
 * any address with a subtraction, a shift, one compare against the slot count and one load
 * (span_of()), where the Registry takes two dependent loads and a kind check.
 *
 * Only speed depends on the arena: the Registry still knows every span, and a span made while
 * there is no arena (refused by the OS, not asked for, or full) is mapped on its own and found
 * through the Registry. Spans are never given back one by one (Pool::purge_empty() only advises
 * their pages away), so the cursor never moves back except to undo a span that could not be
 * registered. The whole range goes to the releaser at teardown.
 */
template <class Pal>
class PoolArena {
public:
  static constexpr unsigned kSlotShift = 16;
  static constexpr uint64_t kSlotBytes = uint64_t{1} << kSlotShift;
  static constexpr uint64_t kBytes = uint64_t{16} << 30;
  static constexpr uint64_t kSlots = kBytes >> kSlotShift;
  static constexpr uint64_t kTableBytes = kSlots * sizeof(Span*);
  static constexpr uint64_t kAlign = uint64_t{1} << 30;  ///< where the range starts

  /**
   * Reserves the range and maps its table; without them (either refused) the arena stays empty:
   * slots() is 0 and span_of() never answers. Called once, before any other thread can look.
   * Only the table is tallied (as metadata): the range is address space until spans commit it.
   * A second call before release_all() changes nothing.
   */
  void init(Pal* pal, std::atomic<uint64_t>* tally) {
    if (pal_ != nullptr) return;  // an init retried after a later step failed keeps the first
    pal_ = pal;
    tally_ = tally;
    void* table = pal_->map_sparse(kTableBytes, Layer::kMeta);
    if (table == nullptr) return;
    tally_->fetch_add(kTableBytes, std::memory_order_relaxed);
    table_ = static_cast<std::atomic<Span*>*>(table);
    // A GiB more than the range, so that it can start on a GiB: the spans of its first GiB then
    // share one Registry leaf (a leaf covers an aligned GiB).
    const size_t len = kBytes + kAlign;
    void* range = pal_->map_sparse(len, Layer::kPool);
    if (range == nullptr) return;
    if (!pal_->protect(range, len, Access::kNone, Layer::kPool)) {
      lost_ = {reinterpret_cast<uintptr_t>(range), len};  // unused; release_all() gives it back
      return;
    }
    reservation_ = {reinterpret_cast<uintptr_t>(range), len};
    base_ = round_up(reservation_.base, kAlign);
    cursor_ = base_;
    slots_ = kSlots;
  }

  /// The slot count: 0 without an arena, so that every address is outside it.
  uint64_t slots() const { return slots_; }
  /// The first slot's address (meaningful while slots() is not 0).
  uintptr_t base() const { return base_; }
  /// Where the next span goes.
  uintptr_t cursor() const { return cursor_; }

  /**
   * The span whose slots hold u, or nullptr: a free slot, or u outside the arena. An address in a
   * span's slots is not yet in one of its blocks (it may lie in the span's tail, past its last
   * block, or before a block start): PoolPath::free_fast()'s block check decides that.
   */
  HAKMEM_FAST_PATH Span* span_of(uintptr_t u, bool* inside) const {
    const uint64_t slot = (u - base_) >> kSlotShift;
    *inside = slot < slots_;
    return *inside ? table_[slot].load(std::memory_order_acquire) : nullptr;
  }

  /**
   * Commits the slots for a new span of `len` bytes at the cursor: its base, or 0 when the arena
   * is absent, full, or the commit is refused. The caller holds the Pool's growth lock and tallies
   * the span's `len` bytes. Whole slots are made read-write, so that the committed part of the
   * range stays one mapping for the kernel (a span's unused tail is never touched: no page).
   */
  uintptr_t take(size_t len) {
    const uint64_t span = round_up(len, kSlotBytes);
    if (slots_ == 0 || cursor_ + span > base_ + kBytes) return 0;
    if (!pal_->protect(reinterpret_cast<void*>(cursor_), span, Access::kReadWrite, Layer::kPool)) return 0;
    const uintptr_t at = cursor_;
    cursor_ += span;
    return at;
  }

  /// Makes every slot of the span s (taken last, at s->base) name it.
  void publish(Span* s) {
    for (uintptr_t a = s->base; a < s->base + s->length; a += kSlotBytes) {
      table_[(a - base_) >> kSlotShift].store(s, std::memory_order_release);
    }
  }

  /// Undoes the last take() of a span that could not be registered (the caller untallies it): its
  /// pages, never touched, are made inaccessible again and the cursor moves back. Should the
  /// protection not be restored, the slots stay taken, unused, and go back with the range.
  void untake(uintptr_t at, size_t len) {
    const uint64_t span = round_up(len, kSlotBytes);
    if (pal_->protect(reinterpret_cast<void*>(at), span, Access::kNone, Layer::kPool)) cursor_ = at;
  }

  /// Whether the span at `base` was committed in the arena (its pages go back with the range).
  bool holds(uintptr_t base) const { return slots_ != 0 && base - base_ < kBytes; }

  /// Bytes of the table (metadata in the I7 accounting).
  uint64_t meta_bytes() const { return table_ != nullptr ? kTableBytes : 0; }

  /**
   * Teardown: the range and the table go to `fn` (the releaser, which untallies what it is given).
   * `committed` is the bytes of the arena's spans, tallied as Pool spans: the rest of the range
   * (and a range never made inaccessible) is tallied here first, so that the releaser's
   * subtraction of the whole range balances.
   */
  template <class Fn>
  void release_all(uint64_t committed, Fn&& fn) {
    if (reservation_.len != 0) {
      tally_->fetch_add(reservation_.len - committed, std::memory_order_relaxed);
      fn(reservation_.base, reservation_.len);
    }
    if (lost_.len != 0) {
      tally_->fetch_add(lost_.len, std::memory_order_relaxed);
      fn(lost_.base, lost_.len);
    }
    if (table_ != nullptr) fn(reinterpret_cast<uintptr_t>(table_), kTableBytes);
    *this = PoolArena{};
  }

private:
  struct Range {
    uintptr_t base = 0;
    size_t len = 0;
  };

  Pal* pal_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  std::atomic<Span*>* table_ = nullptr;
  uintptr_t base_ = 0;    ///< the first slot
  uint64_t slots_ = 0;    ///< kSlots, or 0 without an arena
  uintptr_t cursor_ = 0;  ///< where the next span goes
  Range reservation_;     ///< the range as mapped (base_ rounds its start up to kAlign)
  Range lost_;            ///< a range mapped but not made inaccessible, kept for teardown
};

}  // namespace hakmem
