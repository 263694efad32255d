// Pool: size-classed spans owned by per-thread heaps, with a lock-free remote-free path (spans and heaps: span.h).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <type_traits>

#include "backing/extent.h"
#include "backing/pool_arena.h"
#include "backing/registry.h"
#include "backing/size_classes.h"
#include "backing/span.h"
#include "core/core.h"
#include "header/header.h"
#include "pal/pal.h"

namespace hakmem {

/// Pages of an empty span whose contents nobody may read any more (Pool::purge_empty()).
struct PageRange {
  uintptr_t base;
  size_t len;
};

/**
 * Told of a free-list link that does not open to a block of its span (a write after free, or a
 * forgery): the span and the user pointer of the block holding the link. The list is cut there,
 * so no block is ever handed out from a corrupted link; the blocks past the cut stay unusable.
 */
struct BadLink {
  void (*fn)(void* ctx, const Span* s, uintptr_t u) = nullptr;
  void* ctx = nullptr;
  void operator()(const Span* s, uintptr_t u) const {
    if (fn != nullptr) fn(ctx, s, u);
  }
};

/// Hands a mapping the backing cannot keep to the releaser (the only unmapper).
struct GiveBack {
  void (*fn)(void* ctx, uintptr_t base, size_t len) = nullptr;
  void* ctx = nullptr;
  void operator()(uintptr_t base, size_t len) const { fn(ctx, base, len); }
};

/**
 * The Pool backing. Blocks are carved lazily from spans (untouched pages cost
 * nothing), freed blocks keep their prefix (its word sealed Free) so a double free is
 * seen, and a free from a thread that does not own the span goes onto the
 * span's remote stack, to be drained by the owner: never dropped.
 *
 * Free lists hold block indices, each link sealed with the secret and its own address
 * (PoolSeal). A link is opened before it is followed, and must name a carved block of the
 * same span: anything else is told to the BadLink sink and the list is cut there.
 */
template <class Pal, class HeapT = Heap>
class Pool {
  static_assert(std::is_base_of_v<Heap, HeapT>, "a Pool's heaps are Heaps (a layer above may add fields)");
  static_assert(kMetaLine + sizeof(HeapT) <= 2 * kMetaPage, "a heap must not reach a third page");

public:
  /// `arena`: reserve the PoolArena (the free fast path's one-load ownership) for the spans.
  void init(Pal* pal, Registry<Pal>* registry, std::atomic<uint64_t>* tally, GiveBack give_back, uint64_t secret = 0,
            BadLink bad_link = {}, bool arena = false) {
    if (secret != 0) seal_.set_secret(secret);
    bad_link_ = bad_link;
    pal_ = pal;
    registry_ = registry;
    tally_ = tally;
    give_back_ = give_back;
    spans_.init(pal, Layer::kMeta, tally);
    heaps_.init(pal, Layer::kMeta, tally);
    if (arena) arena_.init(pal, tally);
  }

  /// Where the spans committed in the arena are found (PoolArena::span_of()).
  const PoolArena<Pal>& arena() const { return arena_; }

  /// A fresh heap for a thread, or nullptr when metadata cannot be mapped.
  HeapT* make_heap(uint64_t allocator_id) {
    {
      // Reuse a retired heap first: threads that come and go by the thousand
      // must not grow metadata. Its counters carry on (they are cumulative).
      LockGuard g(lists_lock_);
      for (Heap* h = all_heaps_; h != nullptr; h = h->next_all) {
        if (h->retired) {
          h->retired = false;
          return static_cast<HeapT*>(h);
        }
      }
    }
    HeapT* h = heaps_.make();
    if (h == nullptr) return nullptr;
    h->allocator_id = allocator_id;
    LockGuard g(lists_lock_);
    h->next_all = all_heaps_;
    all_heaps_ = h;
    return h;
  }

  /**
   * Gives a heap's spans up (thread exit): they are abandoned to the shared
   * lists, where other threads adopt them; their remote frees are kept. The
   * heap stays listed (its counters still count) but owns nothing.
   */
  void retire_heap(Heap* h) {
    LockGuard g(lists_lock_);
    for (size_t c = 0; c < SizeClasses::kCount; ++c) {
      for (SpanListRef l : {h->partial[c], h->full[c]}) {
        while (Span* s = l.pop()) {
          s->set_owner(nullptr);
          abandoned_[c].push(s);
        }
      }
    }
    h->retired = true;
  }

  /// Fork child: every heap but `keep` belonged to a thread that no longer exists.
  void retire_heaps_except(Heap* keep) {
    for (Heap* h = all_heaps_; h != nullptr; h = h->next_all) {
      if (h != keep && !h->retired) retire_heap(h);
    }
  }

  /// A block of class c for heap h (the block start, prefix not yet written); nullptr on OOM.
  uintptr_t alloc(Heap* h, size_t c) {
    Span* s = h->partial[c].head;
    if (s != nullptr) {
      if (s->free != 0) {
        if (const uintptr_t b = take_free(s)) return b;  // (else its list was cut: carve)
      }
      const uint32_t k = s->carved.load(std::memory_order_relaxed);
      if (k < s->capacity) {
        // Freed blocks before fresh ones: the span behind the head has some when a free took it
        // off the full list. The head, with room left to carve, goes to the back. (A head with
        // neither goes to the full list in alloc_slow(), after its remote frees are drained.)
        if (Span* next = s->next; next != nullptr && next->free != 0) {
          h->partial[c].remove(s);
          h->partial[c].push_back(s);
          if (const uintptr_t b = take_free(next)) return b;
        }
        s->carved.store(k + 1, std::memory_order_relaxed);  // single writer: no RMW needed
        return s->base + uintptr_t{k} * s->block_size;
      }
    }
    return alloc_slow(h, c);
  }

  /// The first block of s's free list, taken off it (the block start); the list is not empty. 0
  /// when its link is corrupted: that is reported and the list cut, the block left where it is.
  uintptr_t take_free(Span* s) {
    const uintptr_t u = s->user_of(s->free);
    const uint64_t next = open_link(u);
    if (__builtin_expect(next > s->carved.load(std::memory_order_relaxed), 0)) {
      bad_link_(s, u);
      s->free = 0;
      return 0;
    }
    s->free = static_cast<uint32_t>(next);
    return u - kHeaderSize;
  }

  /// The next index + 1 that the link of free block u (user pointer) of s names, unchecked.
  HAKMEM_FAST_PATH uint64_t open_link(uintptr_t u) const {
    uint64_t link;
    memcpy(&link, reinterpret_cast<const void*>(u), sizeof(link));
    return seal_.open_link(link, seal_.key(u));
  }

  /// Writes the link of block u naming `next` (an index + 1, 0 for the end).
  HAKMEM_FAST_PATH void write_link(uintptr_t u, uint64_t next) const { write_link(u, next, seal_.key(u)); }
  /// write_link() with u's key already at hand (PoolSeal::key(u)).
  HAKMEM_FAST_PATH void write_link(uintptr_t u, uint64_t next, uint64_t key) const {
    const uint64_t link = seal_.seal_link(next, key);
    memcpy(reinterpret_cast<void*>(u), &link, sizeof(link));
  }

  /// The seal of the links and of the blocks' words (its secret set by init()).
  const PoolSeal& seal() const { return seal_; }

  /**
   * The start of the block containing p, or 0 when p is not inside a block
   * that was ever handed out (past the carved blocks or in the span's tail).
   */
  static uintptr_t block_start(const Span* s, uintptr_t p) {
    const uint64_t off = p - s->base;
    const uint64_t idx = div_by_magic(off, s->block_size, s->magic);
    if (idx >= s->carved.load(std::memory_order_relaxed)) return 0;
    return s->base + idx * s->block_size;
  }

  /**
   * Returns a validated, already-marked-free block to its span: locally when
   * `me` owns the span, else onto the remote stack.
   */
  void free(Heap* me, Span* s, uintptr_t block) {
    const uintptr_t u = block + kHeaderSize;
    const uint32_t i = s->index1_of(block);
    if (me != nullptr && s->owner() == me) {
      write_link(u, s->free);
      s->free = i;
      if (s->in_full()) {
        me->full[s->cls].remove(s);
        s->set_in_full(false);
        me->partial[s->cls].push_back(s);
      }
      return;
    }
    uint32_t head = s->remote.load(std::memory_order_relaxed);
    const uint64_t key = seal_.key(u);
    do {
      write_link(u, head, key);
    } while (!s->remote.compare_exchange_weak(head, i, std::memory_order_acq_rel, std::memory_order_relaxed));
    if (me != nullptr) me->counters.remote_frees.add(1);
    if (Heap* owner = s->owner()) {
      // Read before writing: with the bit already set, a read-modify-write would only
      // bounce the owner's cache line between cores. A hint missed in a race costs
      // nothing but time: the block stays on this span's remote stack until drained.
      std::atomic<uint64_t>& hint = owner->remote_hint[s->cls / 64];
      const uint64_t bit = uint64_t{1} << (s->cls % 64);
      if ((hint.load(std::memory_order_seq_cst) & bit) == 0) hint.fetch_or(bit, std::memory_order_seq_cst);
    }
  }

  /**
   * Trim: every span of heap `own` (the calling thread's, or nullptr) and every abandoned span
   * whose carved blocks are all free, once its remote frees are drained, is made fresh again (no
   * free list, nothing carved) and its pages go to
   * `purge(PageRange*, size_t)`, the releaser, in batches, to be given back while they stay
   * mapped and registered. Other threads' heaps are theirs alone and are left as they are. An
   * abandoned span is taken off its list while this runs, so no thread adopts and carves it
   * before its pages are purged. A full span of `own`'s that the drain gave room moves to the
   * partial list, as alloc_slow() would move it.
   */
  template <class Purge>
  void purge_empty(Heap* own, Purge&& purge) {
    PageRange batch[64];
    size_t n = 0;
    const auto take = [&](Span* s) {
      s->free = 0;
      s->carved.store(0, std::memory_order_relaxed);
      batch[n++] = PageRange{s->base, s->length};
      if (n == std::size(batch)) {
        purge(batch, n);
        n = 0;
      }
    };
    if (own != nullptr) {
      for (size_t c = 0; c < SizeClasses::kCount; ++c) {
        for (Span* s = own->partial[c].head; s != nullptr; s = s->next) {
          if (all_free(s)) take(s);
        }
        for (Span* s = own->full[c].head; s != nullptr;) {
          Span* next = s->next;
          const bool empty = all_free(s);
          if (s->has_room()) {  // remote frees drained into it: it belongs on the partial list
            own->full[c].remove(s);
            s->set_in_full(false);
            own->partial[c].push_back(s);
          }
          if (empty) take(s);
          s = next;
        }
      }
    }
    for (size_t c = 0; c < SizeClasses::kCount; ++c) {
      SpanList held;
      {
        LockGuard g(lists_lock_);
        std::swap(held, abandoned_[c]);
      }
      for (Span* s = held.head; s != nullptr; s = s->next) {
        if (all_free(s)) take(s);
      }
      if (n != 0) purge(batch, n);  // before any of them can be adopted again
      n = 0;
      LockGuard g(lists_lock_);
      while (Span* s = held.pop()) abandoned_[c].push(s);
    }
    if (n != 0) purge(batch, n);
  }

  /// Bytes of all spans (the Pool's share of mapped memory).
  uint64_t span_bytes() const { return span_bytes_.load(std::memory_order_relaxed); }
  uint64_t span_count() const { return spans_.live(); }
  uint64_t meta_bytes() const { return spans_.mapped_bytes() + heaps_.mapped_bytes() + arena_.meta_bytes(); }

  /// Sums a counter over every heap (live and retired) and the orphan set.
  template <class Get>
  int64_t sum_heaps(Get&& get) {
    LockGuard g(lists_lock_);
    int64_t total = get(orphan_);
    for (Heap* h = all_heaps_; h != nullptr; h = h->next_all) total += get(h->counters);
    return total;
  }

  /// The counters of operations by a thread that has no heap (its metadata could not be mapped):
  /// shared, so updated with add_shared(); summed with every heap's.
  HeapCounters& orphan_counters() { return orphan_; }

  /**
   * TestOnly: walks every span and returns the bytes not in live blocks (free
   * lists, remote stacks, uncarved blocks, tails). Caller guarantees quiescence.
   */
  uint64_t audit_free_bytes(uint64_t* live_blocks_bytes) {
    uint64_t free_bytes = 0;
    uint64_t live = 0;
    spans_.for_each_live([&](Span* s) {
      uint64_t free_blocks = s->capacity - s->carved.load();
      free_blocks += list_length(s, s->free) + list_length(s, s->remote.load());
      const uint64_t tail = s->length - uint64_t{s->capacity} * s->block_size;
      free_bytes += free_blocks * s->block_size + tail;
      live += (uint64_t{s->capacity} - free_blocks) * s->block_size;
    });
    *live_blocks_bytes = live;
    return free_bytes;
  }

  /// Calls fn(HeapT*) for every heap, live or retired, under the heap-list lock (fn must not make heaps).
  template <class Fn>
  void for_each_heap(Fn&& fn) {
    LockGuard g(lists_lock_);
    for (Heap* h = all_heaps_; h != nullptr; h = h->next_all) fn(static_cast<HeapT*>(h));
  }

  /// TestOnly: calls fn(HeapT*) for every heap, live or retired. Caller guarantees quiescence.
  template <class Fn>
  void for_each_heap_for_testing(Fn&& fn) {
    for (Heap* h = all_heaps_; h != nullptr; h = h->next_all) fn(static_cast<HeapT*>(h));
  }

  /// TestOnly: calls fn(Span*) for every span. Caller guarantees quiescence.
  template <class Fn>
  void for_each_span_for_testing(Fn&& fn) {
    spans_.for_each_live(fn);
  }

  /// Teardown: every span and metadata chunk goes to `fn` (the releaser); the arena's spans go
  /// with its range.
  template <class Fn>
  void release_all(Fn&& fn) {
    uint64_t in_arena = 0;
    spans_.for_each_live([&](Span* s) {
      registry_->clear(s->base, s->length);
      if (arena_.holds(s->base)) {
        in_arena += s->length;
      } else {
        fn(s->base, s->length);
      }
    });
    arena_.release_all(in_arena, fn);
    span_bytes_.store(0);
    spans_.release_chunks(fn);
    heaps_.release_chunks(fn);
    all_heaps_ = nullptr;
    for (SpanList& l : abandoned_) l = SpanList{};
  }

  /// Fork: disable() takes every lock a Pool path may hold, so no span list or descriptor is
  /// mid-update when the address space is copied; enable() releases them (parent and child alike).
  void disable() {
    grow_lock_.lock();
    lists_lock_.lock();
    spans_.lock().lock();
    heaps_.lock().lock();
  }
  void enable() {
    heaps_.lock().unlock();
    spans_.lock().unlock();
    lists_lock_.unlock();
    grow_lock_.unlock();
  }

private:
  /// Moves s's remote frees onto its free list, each link opened and checked on the way; a
  /// corrupted one is reported and ends the walk (the blocks past it stay unusable), and so does
  /// a walk longer than the carved count (a cycle, which only racing double frees can make).
  void drain_remote(Span* s) {
    uint64_t i = s->remote.exchange(0, std::memory_order_acquire);
    const uint32_t carved = s->carved.load(std::memory_order_relaxed);
    for (uint32_t n = 0; i != 0; ++n) {
      const uintptr_t u = s->user_of(i);
      if (__builtin_expect(n == carved, 0)) {
        bad_link_(s, u);
        return;
      }
      const uint64_t key = seal_.key(u);  // the link's, both to open it and to reseal it
      uint64_t link;
      memcpy(&link, reinterpret_cast<const void*>(u), sizeof(link));
      const uint64_t next = seal_.open_link(link, key);
      write_link(u, s->free, key);
      s->free = static_cast<uint32_t>(i);
      if (__builtin_expect(next > carved, 0)) {
        bad_link_(s, u);
        return;
      }
      i = next;
    }
  }

  /// Blocks on the list starting at index + 1 `i` of s, up to its first corrupted link, and at most
  /// the carved count (TestOnly and trim: the caller owns s or guarantees quiescence).
  uint64_t list_length(const Span* s, uint64_t i) const {
    const uint32_t carved = s->carved.load(std::memory_order_relaxed);
    uint64_t n = 0;
    while (i != 0 && i <= carved && n <= carved) {
      ++n;
      i = open_link(s->user_of(i));
    }
    return n;
  }

  /// True when s has carved blocks and every one is free (its remote frees drained first): a
  /// walk of its free list, for a trim only. The caller owns s. A corrupted link is reported (and
  /// the list cut there) like at an allocation, so the span is not empty.
  bool all_free(Span* s) {
    drain_remote(s);
    const uint32_t carved = s->carved.load(std::memory_order_relaxed);
    uint64_t free = 0;
    for (uint64_t i = s->free; i != 0 && free <= carved; ++free) {
      const uintptr_t u = s->user_of(i);
      const uint64_t next = open_link(u);
      if (__builtin_expect(next > carved, 0)) {
        bad_link_(s, u);
        write_link(u, 0);  // the block stays free, the rest is cut off
        return false;
      }
      i = next;
    }
    return carved != 0 && free == carved;
  }

  uintptr_t alloc_slow(Heap* h, size_t c) {
    // 1. Spans at the head of the partial list that are out of room move to full.
    while (Span* s = h->partial[c].head) {
      drain_remote(s);
      if (s->has_room()) return alloc(h, c);
      h->partial[c].remove(s);
      s->set_in_full(true);
      h->full[c].push(s);
    }
    // 2. Remote frees reached some full span of this class: drain them back.
    const uint64_t bit = uint64_t{1} << (c % 64);
    if (h->remote_hint[c / 64].load(std::memory_order_acquire) & bit) {
      h->remote_hint[c / 64].fetch_and(~bit, std::memory_order_seq_cst);
      for (Span* s = h->full[c].head; s != nullptr;) {
        Span* next = s->next;
        drain_remote(s);
        if (s->has_room()) {
          h->full[c].remove(s);
          s->set_in_full(false);
          h->partial[c].push(s);
        }
        s = next;
      }
      if (h->partial[c].head != nullptr) return alloc(h, c);
    }
    // 3. Adopt spans some exited thread abandoned, until one has room; else map a new one.
    for (;;) {
      Span* s = nullptr;
      {
        LockGuard g(lists_lock_);
        s = abandoned_[c].pop();
        if (s != nullptr) s->set_owner(h);
      }
      if (s == nullptr) s = new_span(h, c);
      if (s == nullptr) return 0;
      drain_remote(s);
      if (s->has_room()) {
        h->partial[c].push(s);
        return alloc(h, c);
      }
      s->set_in_full(true);  // adopted but still full: keep it, look further
      h->full[c].push(s);
    }
  }

  Span* new_span(Heap* h, size_t c) {
    // One critical section from map to accounting: a fork (which takes this lock) must not
    // copy a span mapped and tallied but not yet counted. A growth lock, taken once per span,
    // like the Registry's: the map syscall under it is the point, not a hot path.
    LockGuard g(grow_lock_);
    Span* s = spans_.make();
    if (s == nullptr) return nullptr;
    const size_t len = SizeClasses::span_size(c);
    const uintptr_t in_arena = arena_.take(len);
    void* mem = in_arena != 0 ? reinterpret_cast<void*>(in_arena) : pal_->map(len, Layer::kPool);
    if (mem == nullptr) {
      spans_.destroy(s);
      return nullptr;
    }
    tally_->fetch_add(len, std::memory_order_relaxed);
    s->base = reinterpret_cast<uintptr_t>(mem);
    s->length = len;
    s->kind = ExtentKind::kPoolSpan;
    s->cls = static_cast<uint32_t>(c);
    s->block_size = static_cast<uint32_t>(SizeClasses::block_size(c));
    s->magic = div_magic(s->block_size);
    s->shift = static_cast<uint8_t>(__builtin_ctz(s->block_size));
    s->inverse = odd_inverse(s->block_size >> s->shift);
    s->capacity = static_cast<uint32_t>(len / s->block_size);
    s->user0 = s->base + kHeaderSize - s->block_size;
    s->room = static_cast<uint32_t>(PoolPayload::room(s->block_size - kHeaderSize));
    s->set_owner(h);
    if (!registry_->assign(s->base, len, s)) {
      spans_.destroy(s);
      if (in_arena != 0) {
        arena_.untake(in_arena, len);
        tally_->fetch_sub(len, std::memory_order_relaxed);
      } else {
        give_back_(reinterpret_cast<uintptr_t>(mem), len);  // the releaser subtracts it from the tally
      }
      return nullptr;
    }
    if (in_arena != 0) arena_.publish(s);
    span_bytes_.fetch_add(len, std::memory_order_relaxed);
    return s;
  }

  Pal* pal_ = nullptr;
  Registry<Pal>* registry_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  GiveBack give_back_;
  PoolSeal seal_{};
  BadLink bad_link_{};
  PoolArena<Pal> arena_;
  ObjectPool<Span, Pal> spans_;
  ObjectPool<HeapT, Pal> heaps_;
  SpinLock lists_lock_;
  SpinLock grow_lock_;  ///< held across a new span's map, registration and accounting
  Heap* all_heaps_ = nullptr;
  HeapCounters orphan_{};
  SpanList abandoned_[SizeClasses::kCount];
  std::atomic<uint64_t> span_bytes_{0};
};

}  // namespace hakmem
