// Paranoid mode's quarantine: freed Pool blocks wait, filled, in FIFO rings before their reuse.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "front/hardening.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * A FIFO of freed Pool blocks, over storage it does not own. An entry packs the
 * block address (below 2^48) with its size class in the top 16 bits, so the
 * byte count is kept without a Registry lookup. Not synchronized: a thread's own
 * ring is touched by that thread only, the shared one under the quarantine's lock.
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

/// A thread's own quarantine ring: a few blocks, stored in its heap (ThreadHeap).
struct LocalQuarantine {
  static constexpr uint64_t kSlots = 32;
  uint64_t slots[kSlots] = {};
  BlockFifo fifo;
};

/// A block that was freed (quarantined, or on a free list), as its header describes it.
struct FreedBlock {
  Span* span;
  Located at;
  bool header_ok;  ///< the header is intact and sealed Free (else size, site and offset are unknown)
  uintptr_t user;  ///< the user pointer (block + 16 when the header cannot say)
  uint64_t room;   ///< bytes from `user` to the block's end
};

/**
 * The quarantine of paranoid mode, policy and storage. A validated Pool free is filled (the free
 * site, its seal, then kFreedFill to the block's end) and held: each thread keeps its newest few
 * in its LocalQuarantine (at most cap/16 bytes), older ones move to the shared FIFO (at most cap
 * bytes), whose oldest leave. A block leaving, or reused from a free list, must still be a sealed
 * free block with its fill intact; then it is recycled, else it is reported as a write after free
 * and withheld for good.
 *
 * The owner connects it through a callback object `cb` passed to each call:
 *   cb.recycle(Span* s, uintptr_t block)   return the block to its span (Pool free);
 *   cb.report(const FreedBlock&, uintptr_t free_site)   report a write after free.
 *
 * Accounting: held_bytes() and withheld_bytes() are Pool bytes neither free nor live (I7: spans =
 * free + live + held). The shared ring's slots are one lazily touched mapping (meta_bytes()).
 */
template <class Pal>
class Quarantine {
public:
  struct Parts {
    Pal* pal;
    std::atomic<uint64_t>* mapped;  ///< the allocator's mapped-bytes tally
    Registry<Pal>* registry;
    const Validator<Pal>* validator;
    const Hardening* hard;
  };

  /// `cap`: bytes the shared ring holds (0: no quarantine; freed blocks are still filled and checked at reuse).
  void init(const Parts& parts, uint64_t cap) {
    p_ = parts;
    if (cap == 0) return;
    const uint64_t smallest = SizeClasses::block_size(0);
    uint64_t slots = cap / smallest;
    if (slots < 64) slots = 64;
    if (slots > (uint64_t{1} << 21)) slots = uint64_t{1} << 21;
    const uint64_t bytes = round_up(slots * sizeof(uint64_t), Pal::kPageSize);
    void* mem = p_.pal->map_sparse(bytes, Layer::kMeta);
    if (mem == nullptr) return;  // no quarantine: blocks are still filled and checked at reuse
    p_.mapped->fetch_add(bytes, std::memory_order_relaxed);
    shared_slots_ = static_cast<uint64_t*>(mem);
    shared_slots_bytes_ = bytes;
    shared_.init(shared_slots_, bytes / sizeof(uint64_t));
    cap_ = cap;
    local_cap_ = cap / 16;
  }

  /**
   * The paranoid free of a validated Pool block, already sealed Free: filled, then held (in
   * `local`, the freeing thread's ring, when it has a heap), or recycled at once when there is no
   * quarantine. `site` is the free site the fill records.
   */
  template <class Cb>
  void free(Cb& cb, LocalQuarantine* local, Span* s, const Located& at, uintptr_t site) {
    const uintptr_t user = at.header + kHeaderSize;
    // The room holds the free-site record: usable sizes and header offsets are multiples of
    // 16, and the room exceeds the request by at least the canary, so it is 16 or more.
    static_assert(SizeClasses::usable(0) >= kFreedRecord && kCanarySize > 0);
    const uint64_t room = Validator<Pal>::capacity_of(at);
    p_.hard->fill_freed(user, room, site & kSiteMask);
    if (cap_ == 0) {  // no quarantine: straight back, checked when reused
      track_free(user, room, at.header == at.block ? kLinkSize : 0);
      cb.recycle(s, at.block);
      return;
    }
    track_free(user, room, 0);  // the whole block is the allocator's until it leaves
    const uint64_t entry = BlockFifo::pack(at.block, s->cls);
    held_bytes_.fetch_add(s->block_size, std::memory_order_relaxed);
    held_blocks_.fetch_add(1, std::memory_order_relaxed);
    if (local == nullptr || s->block_size > local_cap_) {
      to_shared(cb, entry);
      return;
    }
    BlockFifo& q = fifo_of(*local);
    while (!q.empty() && (q.full() || q.bytes() + s->block_size > local_cap_)) to_shared(cb, q.pop());
    q.push(entry);
  }

  /// A thread's ring at its exit: everything moves to the shared FIFO.
  template <class Cb>
  void spill(Cb& cb, LocalQuarantine& local) {
    if (cap_ == 0) return;
    BlockFifo& q = fifo_of(local);
    while (!q.empty()) to_shared(cb, q.pop());
  }

  /**
   * A Pool block about to be handed out: take() gives the next block of its class (0: none). A
   * block freed before must still hold its fill past the free-list link (a write after it left
   * the quarantine); one that fails is reported and withheld, and the next one is taken.
   */
  template <class Cb, class Take>
  uintptr_t take_checked(Cb& cb, Take&& take) {
    for (;;) {
      const uintptr_t block = take();
      if (block == 0) return 0;
      const Header raw = HeaderCodec::load(reinterpret_cast<void*>(block));
      if (raw.lo == 0 && raw.hi == 0) return block;  // carved for the first time: never freed
      const FreedBlock f = view(block);
      track_own(f.user + kFreedRecord, f.room - kFreedRecord);
      if (f.header_ok && Hardening::fill_intact(f.user + kFreedRecord, f.user + f.room)) return block;
      withhold(cb, f, 0, f.span->block_size);
    }
  }

  /// A block that was freed, as its header describes it (spans outlive their blocks).
  FreedBlock view(uintptr_t block) const {
    FreedBlock f{static_cast<Span*>(p_.registry->lookup(block)), {}, false, 0, 0};
    f.header_ok = p_.validator->locate_block(f.span, block, &f.at) && f.at.f.state == State::kFree;
    f.at.header_ok = f.header_ok;  // a header overwritten after the free: the report names no size or site
    f.user = f.header_ok ? f.at.header + kHeaderSize : block + kHeaderSize;
    f.room = f.header_ok ? Validator<Pal>::capacity_of(f.at) : f.span->block_size - kHeaderSize;
    return f;
  }

  uint64_t held_bytes() const { return held_bytes_.load(); }
  uint64_t withheld_bytes() const { return withheld_bytes_.load(); }
  uint64_t meta_bytes() const { return shared_slots_bytes_; }

  /// Fills the quarantine's fields of a stats snapshot.
  template <class Stats>
  void fill_stats(Stats& s) const {
    s.quarantine_bytes = held_bytes_.load();
    s.quarantine_blocks = held_blocks_.load();
    s.quarantine_cap = cap_;
    s.withheld_bytes = withheld_bytes_.load();
  }

  /**
   * TestOnly audit: the rings (the shared one and each LocalQuarantine that for_each_local(fn)
   * passes to fn) hold exactly held_bytes() in held-block count, every entry a sealed free Pool
   * block. A failure goes to r.fail(what, a, b). Caller guarantees quiescence.
   */
  template <class Audit, class ForEachLocal>
  void audit_for_testing(Audit& r, ForEachLocal&& for_each_local) const {
    uint64_t bytes = 0, blocks = 0;
    auto check = [&](uint64_t e) {
      bytes += BlockFifo::length_of(e);
      ++blocks;
      const uintptr_t block = BlockFifo::block_of(e);
      const Extent* x = p_.registry->lookup(block);
      if (x == nullptr || x->kind != ExtentKind::kPoolSpan || !view(block).header_ok) {
        r.fail("quarantined block is not a sealed free Pool block", block, 0);
      }
    };
    shared_.for_each(check);
    for_each_local([&](const LocalQuarantine& lq) { lq.fifo.for_each(check); });
    if (bytes != held_bytes_.load() || blocks != held_blocks_.load()) {
      r.fail("quarantine rings != held counters", bytes, held_bytes_.load());
    }
  }

  /// Fork: disable() takes the shared ring's lock; enable() releases it (parent and child alike).
  void disable() { lock_.lock(); }
  void enable() { lock_.unlock(); }

  /// Teardown: the ring's mapping goes to `give` (the releaser), and everything is forgotten.
  template <class Give>
  void release_all(Give&& give) {
    if (shared_slots_bytes_ != 0) give(reinterpret_cast<uintptr_t>(shared_slots_), shared_slots_bytes_);
    shared_.init(nullptr, 0);
    shared_slots_ = nullptr;
    shared_slots_bytes_ = 0;
    held_bytes_.store(0);
    held_blocks_.store(0);
    withheld_bytes_.store(0);
  }

private:
  static BlockFifo& fifo_of(LocalQuarantine& lq) {
    if (lq.fifo.capacity() == 0) lq.fifo.init(lq.slots, LocalQuarantine::kSlots);
    return lq.fifo;
  }

  /// Moves an entry into the shared FIFO; the oldest entries over the cap leave (outside the lock).
  template <class Cb>
  void to_shared(Cb& cb, uint64_t entry) {
    uint64_t out[8];
    size_t n = 0;
    {
      LockGuard g(lock_);
      const uint64_t len = BlockFifo::length_of(entry);
      while (!shared_.empty() && n < 7 && (shared_.full() || shared_.bytes() + len > cap_)) out[n++] = shared_.pop();
      if (shared_.full()) {
        out[n++] = entry;
      } else {
        shared_.push(entry);
      }
    }
    for (size_t i = 0; i < n; ++i) leave(cb, out[i]);
  }

  /**
   * A block leaves the quarantine: its header must still be a sealed free one, and its fill
   * intact (the free-site record and every pattern byte). Then it is recycled. A write after free
   * is reported with the allocation site (header) and the free site (record), and the block is
   * withheld: never reused.
   */
  template <class Cb>
  void leave(Cb& cb, uint64_t entry) {
    const uintptr_t block = BlockFifo::block_of(entry);
    const uint64_t len = BlockFifo::length_of(entry);
    held_bytes_.fetch_sub(len, std::memory_order_relaxed);
    held_blocks_.fetch_sub(1, std::memory_order_relaxed);
    const FreedBlock f = view(block);
    track_own(f.user, f.room);
    uintptr_t free_site = 0;
    const bool record_ok = p_.hard->read_record(f.user, &free_site);
    if (f.header_ok && record_ok && Hardening::fill_intact(f.user + kFreedRecord, f.user + f.room)) {
      track_park(f.user, f.room, f.at.header == f.at.block ? kLinkSize : 0);
      cb.recycle(f.span, block);
      return;
    }
    withhold(cb, f, free_site, len);
  }

  /// Reports a write after free in a held block and keeps it out of use for good.
  template <class Cb>
  void withhold(Cb& cb, const FreedBlock& f, uintptr_t free_site, uint64_t len) {
    withheld_bytes_.fetch_add(len, std::memory_order_relaxed);
    cb.report(f, free_site);
  }

  Parts p_{};
  SpinLock lock_;
  BlockFifo shared_{};
  uint64_t* shared_slots_ = nullptr;
  uint64_t shared_slots_bytes_ = 0;
  uint64_t cap_ = 0;
  uint64_t local_cap_ = 0;
  std::atomic<uint64_t> held_bytes_{0};  ///< Pool bytes in the rings
  std::atomic<uint64_t> held_blocks_{0};
  std::atomic<uint64_t> withheld_bytes_{0};  ///< Pool bytes never reused after a write-after-free report
};

}  // namespace hakmem
