// Spans and heaps: the Pool's span descriptor, its span lists, and a thread's heap with its counters.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/extent.h"
#include "backing/size_classes.h"
#include "core/core.h"

namespace hakmem {

/// Bytes of the link a free Pool block keeps in its first user bytes (its prefix, before it, stays intact):
/// the next block's index + 1, sealed with PoolSeal::seal_link() and the block's own address.
constexpr size_t kLinkSize = sizeof(uint64_t);

struct Heap;
struct MapBlock;

/**
 * A run of pages carved into blocks of one size class; owned by one heap at a time.
 *
 * Three cache lines, by who writes them. The first holds what every free reads and, once the
 * span is carved, nobody writes; the second, what only the owner writes on every allocation and
 * free of its blocks; the third, the stack other threads push their frees onto. A thread freeing
 * another's blocks then shares only lines that stay clean, and takes the third from the owner
 * only when the owner drains it.
 */
struct alignas(64) Span : Extent {
  uint32_t cls = 0;
  uint32_t block_size = 0;
  uint64_t inverse = 0;             ///< odd_inverse(block_size's odd factor): exact_quotient() of a block offset
  uint32_t capacity = 0;            ///< blocks that fit
  std::atomic<uint32_t> carved{0};  ///< blocks handed out at least once (owner writes; freeing threads read)
  uint8_t shift = 0;                ///< block_size's power-of-two factor, for exact_quotient()
  uint32_t room = 0;                ///< PoolPayload::room() of its usable size: the fast free's one compare
  /// The owning heap's address, with bit 0 set while the span is on the owner's full list; 1 while
  /// abandoned (never 0). The fast free tells "mine, and on my partial list" with one compare
  /// (owned_free_by()), and a thread without a heap (nullptr) matches no span.
  std::atomic<uintptr_t> owner_tag{1};
  alignas(64) uint32_t free = 0;  ///< owner-only free list: its first block's index + 1, 0 when empty
  Span* prev = nullptr;
  Span* next = nullptr;
  uint64_t magic = 0;   ///< div_magic(block_size): the block holding an interior pointer (slow path only)
  uintptr_t user0 = 0;  ///< base + 16 - block_size: block index + 1 `i` has user pointer user0 + i * block_size
  alignas(64) std::atomic<uint32_t> remote{0};  ///< frees from other threads (Treiber stack of index + 1)

  bool has_room() const { return free != 0 || carved.load(std::memory_order_relaxed) < capacity; }
  /// The owning heap, nullptr while abandoned.
  Heap* owner() const { return reinterpret_cast<Heap*>(owner_tag.load(std::memory_order_acquire) & ~uintptr_t{1}); }
  /// Gives the span to heap h (nullptr: abandons it), on h's partial list.
  void set_owner(Heap* h) {
    owner_tag.store(h != nullptr ? reinterpret_cast<uintptr_t>(h) : uintptr_t{1}, std::memory_order_release);
  }
  /// Whether the span is on its owner's full list (the owner's to ask).
  bool in_full() const { return (owner_tag.load(std::memory_order_relaxed) & 1) != 0; }
  /// Moves the flag with the span between its owner's lists (the owner's to call).
  void set_in_full(bool full) {
    owner_tag.store((owner_tag.load(std::memory_order_relaxed) & ~uintptr_t{1}) | uintptr_t{full},
                    std::memory_order_relaxed);
  }
  /// True when heap `me` owns the span and it is on me's partial list: a free by `me` may push.
  /// Always false for nullptr (a thread without a heap).
  HAKMEM_FAST_PATH bool owned_free_by(const Heap* me) const {
    return owner_tag.load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(me);
  }
  /// The user pointer of the block with index + 1 `i`.
  uintptr_t user_of(uint64_t i) const { return user0 + i * block_size; }
  /// The index + 1 of the block starting at `block` (a block start of this span).
  uint32_t index1_of(uintptr_t block) const {
    return static_cast<uint32_t>(exact_quotient(block - base, inverse, shift)) + 1;
  }
};
// (Where each field lands is checked by pool_test's PoolMetadata.SpanLinesSeparateWhoWritesThem.)
static_assert(alignof(Span) == 64 && sizeof(Span) == 192, "a span is three cache lines");

/// The operations of an intrusive doubly-linked list of spans, over the head and tail that `L`
/// (SpanList, or SpanListRef into a heap's SpanLists) keeps.
template <class L>
struct SpanListOps {
  void push(Span* s) {
    L& l = static_cast<L&>(*this);
    s->prev = nullptr;
    s->next = l.head;
    if (l.head != nullptr) l.head->prev = s;
    l.head = s;
    if (l.tail == nullptr) l.tail = s;
  }
  void push_back(Span* s) {
    L& l = static_cast<L&>(*this);
    s->next = nullptr;
    s->prev = l.tail;
    if (l.tail != nullptr) l.tail->next = s;
    l.tail = s;
    if (l.head == nullptr) l.head = s;
  }
  void remove(Span* s) {
    L& l = static_cast<L&>(*this);
    if (s->prev != nullptr) s->prev->next = s->next;
    if (s->next != nullptr) s->next->prev = s->prev;
    if (l.head == s) l.head = s->next;
    if (l.tail == s) l.tail = s->prev;
    s->prev = s->next = nullptr;
  }
  Span* pop() {
    Span* s = static_cast<L&>(*this).head;
    if (s != nullptr) remove(s);
    return s;
  }
};

/// A list of spans that keeps its own head and tail.
struct SpanList : SpanListOps<SpanList> {
  Span* head = nullptr;
  Span* tail = nullptr;
};

/// One class's list in a heap's SpanLists: references to its head and its tail.
struct SpanListRef : SpanListOps<SpanListRef> {
  SpanListRef(Span*& h, Span*& t) : head(h), tail(t) {}
  Span*& head;
  Span*& tail;
};

/**
 * A heap's lists of one kind (partial or full), one per class, with every head before every
 * tail: the fast path reaches class c's head with one load scaled by 8 (no multiply by 16).
 */
struct SpanLists {
  Span* heads[SizeClasses::kCount] = {};
  Span* tails[SizeClasses::kCount] = {};
  SpanListRef operator[](size_t c) { return {heads[c], tails[c]}; }
};
static_assert(offsetof(SpanLists, heads) == 0 && sizeof(Span*) == 8, "partial[c].head is heads + 8 * c");

/// A counter written only by its owning thread and read by anyone (stats).
struct OwnedCounter {
  std::atomic<int64_t> v{0};
  HAKMEM_FAST_PATH void add(int64_t d) { v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
  /// For counters that several threads update (the shared fallback set).
  void add_shared(int64_t d) { v.fetch_add(d, std::memory_order_relaxed); }
  int64_t get() const { return v.load(std::memory_order_relaxed); }
};

/**
 * Per-thread counters folded into the stats on demand (never a shared write on
 * the fast path). Pool ops cost one counter each: live Pool bytes are derived
 * from the per-class alloc and free counts.
 */
struct HeapCounters {
  OwnedCounter pool_allocs[SizeClasses::kCount];
  OwnedCounter pool_frees[SizeClasses::kCount];
  // Map blocks. Allocations and frees that a layer above serves without the Map (the front's large
  // slot, which counts them itself) are left out of map_allocs and map_frees, and map_held_bytes
  // counts the bytes of blocks live or held above, which such a round trip leaves unchanged.
  OwnedCounter map_allocs, map_frees, map_held_bytes;
  OwnedCounter remote_frees;

  int64_t pool_live_bytes() const {
    int64_t bytes = 0;
    for (size_t c = 0; c < SizeClasses::kCount; ++c) {
      bytes += (pool_allocs[c].get() - pool_frees[c].get()) * static_cast<int64_t>(SizeClasses::block_size(c));
    }
    return bytes;
  }
  int64_t pool_alloc_count() const {
    int64_t n = 0;
    for (const OwnedCounter& c : pool_allocs) n += c.get();
    return n;
  }
  int64_t pool_free_count() const {
    int64_t n = 0;
    for (const OwnedCounter& c : pool_frees) n += c.get();
    return n;
  }
};

/**
 * A thread's Pool state: for each class, spans with room ("partial") and
 * spans without ("full"). Only the owning thread touches the lists; other
 * threads only push remote frees and set a hint bit for the class.
 */
struct Heap {
  uint64_t allocator_id = 0;
  Heap* next_all = nullptr;
  bool retired = false;
  std::atomic<uint64_t> remote_hint[2] = {};
  HeapCounters counters;
  SpanLists partial;
  SpanLists full;  ///< (placed to cover the first line of the heap's second page)
};
// ObjectPool puts a Heap (larger than a page) one line into a page of its own. The first line of
// its second page shares its L1 set with the first line of every page, which a program walking a
// page-aligned block keeps evicting (extent.h): only the full lists of large classes, touched when
// a span fills or empties, sit there.
static_assert(kMetaLine + offsetof(Heap, full) <= kMetaPage &&
                  kMetaLine + offsetof(Heap, full) + sizeof(Heap::full) >= kMetaPage + kMetaLine,
              "the full lists must cover the first line of the heap's second page");

}  // namespace hakmem
