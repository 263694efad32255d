// The Pool path: small blocks handed out and taken back, fast and general, paranoid or not.
#pragma once

#include <errno.h>

#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/quarantine.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "header/header.h"

namespace hakmem {

/**
 * Pool blocks on both paths. The fast paths use the static helpers (two loads reach a free block;
 * one encode hands it out); the general path acquire()s a block of any alignment, with a canary
 * in paranoid mode, and release()s a block Validator::locate() accepted: back to its span, or into
 * the quarantine in paranoid mode. Accounting: each hand-out and each release counts one Pool
 * allocation or free of its class, in the thread's counters (or the shared orphan set).
 */
template <class Pal>
class PoolPath {
public:
  using PoolT = Pool<Pal, ThreadHeap>;
  struct Parts {
    PoolT* pool;
    Quarantine<Pal>* quarantine;
    Reporter* reporter;
    const Validator<Pal>* validator;
    const Hardening* hard;
    bool paranoid;
  };
  void init(const Parts& parts) { p_ = parts; }

  /**
   * The first free block of class c's head span, taken off its list: true with *u its user
   * pointer and *key PoolSeal::key(*u) (the link's, and the prefix's hand_out_at() writes).
   * False when there is none, or when its link does not open to a carved block of the span: the
   * list is then left as it is, for Pool::alloc() on the slow path to report and cut.
   */
  static HAKMEM_FAST_PATH bool pop_head(const PoolT& pool, Heap* h, size_t c, uintptr_t* u, uint64_t* key) {
    Span* s = h->partial[c].head;
    if (s == nullptr || s->free == 0) return false;
    const uintptr_t at = s->user_of(s->free);
    const uint64_t k = pool.seal().key(at);
    uint64_t link;
    memcpy(&link, reinterpret_cast<const void*>(at), sizeof(link));
    const uint64_t next = pool.seal().open_link(link, k);
    if (__builtin_expect(next > s->carved.load(std::memory_order_relaxed), 0)) return false;
    s->free = static_cast<uint32_t>(next);
    *u = at;
    *key = k;
    return true;
  }

  /// hand_out_at() of the block starting at `block`.
  static HAKMEM_FAST_PATH void* hand_out(const PoolSeal& seal, Heap* h, size_t c, uintptr_t block, size_t size,
                                         Origin origin, uint8_t strategy) {
    const uintptr_t u = block + kHeaderSize;
    return hand_out_at(seal, h, c, u, seal.key(u), size, origin, strategy);
  }

  /// Writes a plain Pool block's prefix in the default mode (its guard, and its word with the
  /// strategy in force, I3) for user pointer u, whose key is `key`, and counts it.
  static HAKMEM_FAST_PATH void* hand_out_at(const PoolSeal& seal, Heap* h, size_t c, uintptr_t u, uint64_t key,
                                            size_t size, Origin origin, uint8_t strategy) {
    write_pool_prefix(seal, u, key, key, PoolFields{PoolTag::kLive, origin, strategy, size});
    h->counters.pool_allocs[c].add(1);
    track_alloc(u, u, SizeClasses::usable(c));
    return reinterpret_cast<void*>(u);
  }

  /**
   * The fast free of p = u, in span s (the Pool arena's answer, or the Registry's): true when
   * p - 16 starts a block handed out and pool_live_ok() passes for origin `origin` (and size
   * `sized`); the block's word is then sealed Free and, when heap `me` (the calling thread's, or
   * nullptr, or another allocator's: it is only compared) owns the span on its partial list,
   * counted and pushed on the span's free list; else `remote(s, u)` (a slow path) counts it and
   * hands it to Pool::free(). False changes nothing. (Only u goes to `remote`: the block start it
   * recomputes would otherwise hold a register across the checks, which costs a saved one.)
   */
  template <class Remote>
  HAKMEM_FAST_PATH bool free_fast(const PoolT& pool, Span* s, uintptr_t u, Origin origin, uint64_t sized,
                                  ThreadHeap* me, Remote&& remote) {
    const uintptr_t block = u - kHeaderSize;
    // p - 16 must start a block handed out: its offset a multiple of the block size, and its
    // index below the carved count. exact_quotient() is the index of a multiple and more than any
    // block count otherwise, so one compare checks both. (An offset that wraps, p < base + 16, or
    // that an address above bit 46 makes huge (Registry::lookup_initialized()), is past every
    // count too.)
    const uint64_t index = exact_quotient(block - s->base, s->inverse, s->shift);
    if (__builtin_expect(index >= s->carved.load(std::memory_order_relaxed), 0)) return false;
    const PoolSeal& seal = pool.seal();
    const uint64_t key = seal.key(u);
    uint64_t word;
    if (__builtin_expect(!pool_live_ok(seal, u, key, origin, s->room, sized, &word), 0)) return false;
    PoolSeal::store(u, word + seal.free_delta());
    track_free(u, s->block_size - kHeaderSize, kLinkSize);
    if (__builtin_expect(s->owned_free_by(me), 1)) {
      me->counters.pool_frees[s->cls].add(1);
      // The address passes through an empty asm (no instruction), so the compiler does not take
      // p's provenance (a test may pass the address of a local) for the block's.
      uintptr_t link = u;
      asm("" : "+r"(link));
      pool.write_link(link, s->free, key);
      s->free = static_cast<uint32_t>(index + 1);
    } else {
      remote(s, u);
    }
    return true;
  }

  /**
   * free_fast()'s other way: the block at user pointer u, sealed Free, whose span heap `me`
   * (nullptr: a thread without one) does not own, or keeps on its full list. Counted, as
   * release() counts, then Pool::free().
   */
  HAKMEM_SLOW_PATH void free_remote(ThreadHeap* me, Span* s, uintptr_t u) noexcept {
    count_free(me, s->cls);
    p_.pool->free(me, s, u - kHeaderSize);
  }

  /// True when a request of `size` bytes, `align`-aligned, fits a Pool class (with its canary).
  bool fits(uint64_t size, size_t align) const {
    return size + canary_bytes() + align_slack(align) <= SizeClasses::kMaxUsable;
  }

  /**
   * The general path's Pool block for a request that fits(): `align`-aligned, its headers written
   * with `strategy` (I3) and, in paranoid mode, its canary after the requested size. nullptr with
   * errno ENOMEM when the Pool cannot grow. `site` is masked.
   */
  void* acquire(ThreadHeap* h, size_t size, size_t align, uintptr_t site, Origin origin, uint8_t strategy) {
    // At least one usable byte, so the user pointer lies inside its block even for an aligned
    // zero-size request (else it would be the next block's address).
    const size_t c = SizeClasses::class_of((size == 0 ? 1 : size) + canary_bytes() + align_slack(align));
    const uintptr_t block = p_.paranoid ? take_checked(h, c) : p_.pool->alloc(h, c);
    if (block == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    const uintptr_t hdr = header_for(block, align);
    track_alloc(block + kHeaderSize, hdr + kHeaderSize, SizeClasses::block_size(c) - (hdr - block) - kHeaderSize);
    write_pool_prefixes(p_.pool->seal(), p_.paranoid, block, hdr, origin, strategy, size, site);
    if (p_.paranoid) p_.hard->write_canary(hdr + kHeaderSize + size);
    h->counters.pool_allocs[c].add(1);
    return reinterpret_cast<void*>(hdr + kHeaderSize);
  }

  /**
   * Frees a Pool block Validator::locate() accepted, as thread `me` (nullptr: a thread without a
   * heap): its word sealed Free, one counter, then its span's free list, or in paranoid mode
   * the quarantine, which records `site` as the free site.
   */
  void release(const Located& at, ThreadHeap* me, uintptr_t site) {
    auto* s = static_cast<Span*>(at.extent);
    p_.pool->seal().encode(PoolFields{PoolTag::kFree, at.f.origin, at.f.strategy, at.f.size}, at.header + kHeaderSize);
    count_free(me, s->cls);
    if (p_.paranoid) {
      Hooks hooks{this, me};
      p_.quarantine->free(hooks, me != nullptr ? &me->quarantine : nullptr, s, at, site);
      return;
    }
    track_free(at.header + kHeaderSize, Validator<Pal>::capacity_of(at), at.header == at.block ? kLinkSize : 0);
    p_.pool->free(me, s, at.block);
  }

  /**
   * Pool's BadLink sink: the link of free block u of span s did not open to a carved block of s.
   * The report names the block, with its size (and in paranoid mode its allocation site) when its
   * prefix still opens: a freed block keeps it, saying what the block was before.
   */
  void report_bad_link(const Span* s, uintptr_t u) {
    Located at;
    at.extent = const_cast<Span*>(s);
    p_.validator->locate_block(at.extent, u - kHeaderSize, &at);
    p_.reporter->report(Verdict::kCorruptedLink, reinterpret_cast<void*>(u), at, 0, Origin::kMalloc);
  }

  /// Paranoid mode, a thread exiting: its quarantine ring moves to the shared one.
  void spill(ThreadHeap* h) {
    Hooks hooks{this, h};
    p_.quarantine->spill(hooks, h->quarantine);
  }

private:
  /// The quarantine's callbacks: a block that passed its checks goes back to its span (as the
  /// thread `me`, which may be none); a write after free is reported.
  struct Hooks {
    PoolPath* path;
    ThreadHeap* me;
    void recycle(Span* s, uintptr_t block) { path->p_.pool->free(me, s, block); }
    void report(const FreedBlock& f, uintptr_t free_site) {
      path->p_.reporter->report(Verdict::kWriteAfterFree, reinterpret_cast<void*>(f.user), f.at, free_site,
                                Origin::kMalloc);
    }
  };

  uint64_t canary_bytes() const { return p_.paranoid ? kCanarySize : 0; }

  /// One Pool free of class c, by `me`'s counters (nullptr: the shared orphan set).
  void count_free(ThreadHeap* me, uint32_t c) {
    if (me != nullptr) {
      me->counters.pool_frees[c].add(1);
    } else {
      p_.pool->orphan_counters().pool_frees[c].add_shared(1);
    }
  }

  /// pool->alloc() for paranoid mode: a block freed before is checked for a write after free.
  uintptr_t take_checked(ThreadHeap* h, size_t c) {
    Hooks hooks{this, h};
    return p_.quarantine->take_checked(hooks, [&] { return p_.pool->alloc(h, c); });
  }

  Parts p_{};
};

}  // namespace hakmem
