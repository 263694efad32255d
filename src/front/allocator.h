// Allocator<Config>: composes registry, pool, map, cache, releaser and selector; every free validated.
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backing/backing.h"
#include "cache/cache.h"
#include "core/core.h"
#include "front/hardening.h"
#include "front/stats.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"
#include "select/select.h"

#define HAKMEM_ALWAYS_INLINE inline __attribute__((always_inline))

namespace hakmem {

/// Where a pointer leads, as found by validation.
struct Located {
  Verdict verdict = Verdict::kInvalidPointer;
  Extent* extent = nullptr;
  uintptr_t block = 0;     ///< block start (Pool) or mapping base (Map)
  uintptr_t header = 0;    ///< the real header (block, or block + offset for aligned blocks)
  bool header_ok = false;  ///< h passed its checksum
  bool zero = false;       ///< paranoid: a zero-size block of the ZeroArena (no extent, no header)
  Header h{};              ///< the real header, when header_ok
  uint32_t sum = 0;        ///< h's keyed sum at `header`, when header_ok (for an incremental re-seal)
};

/// The result of an audit of invariants that need a walk of the structures (TestOnly).
struct AuditResult {
  bool ok = true;
  char failure[160] = {};
  uint64_t mapped = 0, pool_span_bytes = 0, pool_live = 0, pool_free = 0, map_live = 0, cached = 0, pending = 0,
           metadata = 0;
  uint64_t slots = 0;  ///< bytes in the threads' large slots (cached, but outside BigCache)
  uint64_t pool_held = 0;  ///< paranoid: Pool bytes in the quarantine or withheld after a report
  uint64_t live_blocks = 0;
};

/// What a test can read back about one live block.
struct BlockInfo {
  Verdict verdict = Verdict::kInvalidPointer;
  ExtentKind kind = ExtentKind::kNone;
  HeaderFields fields;
  uint64_t usable = 0;
  uint64_t threshold_of_strategy = 0;
};

/**
 * The allocator, parameterized by a Config that names its platform:
 *
 *   struct Config { using Pal = LinuxPal; };
 *
 * A constinit instance is the process allocator (initialized by its first
 * call); tests build their own with explicit Options and a test platform, and
 * must call teardown() (ScopedAllocator does), which returns every byte
 * through the releaser.
 */
template <class Config>
class Allocator {
 public:
  using Pal = typename Config::Pal;
  static_assert(Platform<Pal>);

  constexpr Allocator() = default;
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  /// Initializes with explicit options (tests) unless already initialized.
  bool init(const Options& options) {
    LockGuard g(init_lock_);
    if (ready_.load(std::memory_order_acquire)) return true;
    return init_locked(options);
  }

  /// Initializes from hakmem_default_options() and HAKMEM_OPTIONS (the process allocator).
  bool init_from_environment(const char* defaults) {
    LockGuard g(init_lock_);
    if (ready_.load(std::memory_order_acquire)) return true;
    Options o;
    parse_options(defaults, o, write_stderr, nullptr);
    parse_options(find_env("HAKMEM_OPTIONS"), o, write_stderr, nullptr);
    return init_locked(o);
  }

  bool ready() const { return ready_.load(std::memory_order_acquire); }

  /// The platform (tests use it to inject failures or read the call log).
  Pal& pal() { return pal_; }
  const Options& options() const { return opts_; }
  Selector& selector() { return selector_; }

  /// Where reports go (stderr by default); tests capture them.
  void set_report_sink(WriteFn fn, void* arg) {
    sink_ = fn;
    sink_arg_ = arg;
  }

  // ---------------------------------------------------------------- allocation

  /**
   * `size` bytes, 16-aligned; nullptr with errno ENOMEM on failure.
   *
   * The fast path covers the common case: this thread's heap is set up, the
   * size is below the smallest threshold (so Pool is right under every
   * strategy, I3), and the class's current span has a free block. Anything
   * else takes alloc_impl. In paranoid mode fast_id_ matches no heap, so every
   * call takes alloc_impl: the default mode pays nothing for paranoia.
   */
  HAKMEM_ALWAYS_INLINE void* alloc(size_t size, uintptr_t site, Origin origin = Origin::kMalloc) {
    // Sizes below the smallest threshold are Pool under every strategy (I3). Up to
    // 1 KiB the class is one table load; then two loads reach the free block, and
    // the header is encoded. An empty span list or free list is refilled out of line
    // (a tail call, so this path needs no stack frame).
    if (__builtin_expect(size < kMinThreshold && t_heap_.id == fast_id_, 1)) {
      Heap* h = t_heap_.heap;
      const size_t c = SizeClasses::class_of(size);
      FreeBlock* b = pop_head_block(h, c);
      if (__builtin_expect(b == nullptr, 0)) return alloc_refill(h, c, size, site, origin);
      return hand_out_pool_block(h, c, block_of(b), size, site, origin, selector_.current_id());
    }
    return alloc_slow(size, site, origin);
  }

  /// The first free block of class c's head span, taken off its list, or nullptr when there is
  /// none: the two loads both short paths share.
  static HAKMEM_ALWAYS_INLINE FreeBlock* pop_head_block(Heap* h, size_t c) {
    Span* s = h->partial[c].head;
    FreeBlock* b = s != nullptr ? s->free : nullptr;
    if (b != nullptr) s->free = b->next;
    return b;
  }

  /// The start of the block whose free-list link is b (its header).
  static HAKMEM_ALWAYS_INLINE uintptr_t block_of(FreeBlock* b) { return reinterpret_cast<uintptr_t>(b) - kHeaderSize; }

  /// alloc() past its fast path: out of line, so the fast path needs no stack frame.
  [[gnu::noinline]] void* alloc_slow(size_t size, uintptr_t site, Origin origin) {
    // Pool sizes from the smallest threshold up to the one in force (64 KiB up to 256 KiB by
    // default), when the class's head span has a free block: the strategy is read first (I3),
    // then the same two loads as the fast path. In learn mode these are learner requests: an
    // unsampled one costs its countdown step here, as in alloc_impl; the sampled one, whose
    // countdown is 0, is timed and booked there.
    // Every threshold is at most kMaxThreshold, so a size below it has a Pool class.
    static_assert(kMaxThreshold <= SizeClasses::kMaxUsable);
    // The two short paths and the general one each leave through a tail call, and the slot's
    // hand-out is inlined, so a large request the slot serves saves no registers.
    if (__builtin_expect(t_heap_.id == fast_id_ && (!learning_ || t_heap_.sample_countdown != 0), 1)) {
      const StrategySnapshot snap = selector_.snapshot();
      Heap* h = t_heap_.heap;
      if (size < snap.threshold) return alloc_pool_short(h, size, site, origin, snap.id);
      if (MapBlock* mb = take_slot(h, size)) {  // Map under the strategy just read (I3)
        if (learning_) --t_heap_.sample_countdown;
        return hand_out_slot_block(h, mb, size, site, origin, snap.id);
      }
    }
    return alloc_general(size, site, origin);
  }

  /// alloc_slow() for a Pool size at or past the smallest threshold: class c's head span's free
  /// block when it has one, else the general path.
  [[gnu::noinline]] void* alloc_pool_short(Heap* h, size_t size, uintptr_t site, Origin origin, uint8_t strategy) {
    const size_t c = SizeClasses::class_of(size);
    if (FreeBlock* b = pop_head_block(h, c)) {
      if (learning_) --t_heap_.sample_countdown;  // (here size >= kMinThreshold: alloc() took the rest)
      return hand_out_pool_block(h, c, block_of(b), size, site, origin, strategy);
    }
    return alloc_general(size, site, origin);
  }

  /// alloc_impl() for a plain malloc-style request (16-byte alignment).
  [[gnu::noinline]] void* alloc_general(size_t size, uintptr_t site, Origin origin) {
    bool fresh;
    return alloc_impl(size, kHeaderSize, site, origin, &fresh);
  }

  /// alloc() when class c's head span has no free block: carving, draining, adopting or mapping.
  [[gnu::noinline]] void* alloc_refill(Heap* h, size_t c, size_t size, uintptr_t site, Origin origin) {
    const uintptr_t block = pool_.alloc(h, c);
    if (block == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    return hand_out_pool_block(h, c, block, size, site, origin, selector_.current_id());
  }

  /**
   * The thread's large slot block when it suits a Map request of `size` bytes (plain 16-byte
   * alignment): room enough, and not a class too big (the request exceeds the largest one of
   * the class below the block's; it may be of the next class up when it still fits the block's
   * page rounding). It leaves the slot; nullptr leaves the slot as is.
   */
  static HAKMEM_ALWAYS_INLINE MapBlock* take_slot(Heap* h, uint64_t size) {
    MapBlock* mb = h->large_slot.load(std::memory_order_relaxed);
    if (mb == nullptr || size <= mb->class_floor || mb->capacity_at(0) < size) return nullptr;
    h->large_slot.store(nullptr, std::memory_order_relaxed);
    return mb;
  }

  /// Hands out a block take_slot() returned: live again, its header written (the strategy in force, I3).
  HAKMEM_ALWAYS_INLINE void* hand_out_slot_block(Heap* h, MapBlock* mb, uint64_t size, uintptr_t site, Origin origin,
                                                 uint8_t strategy) {
    const int64_t length = static_cast<int64_t>(mb->length);
    h->counters.slot_bytes.add(-length);  // (still counted in map_held_bytes: see HeapCounters)
    h->counters.slot_hits.add(1);
    mb->hdr_offset = 0;
    mb->state = State::kLive;
    track_alloc(mb->base + kHeaderSize, mb->base + kHeaderSize, mb->capacity_at(0));
    write_headers(mb->base, mb->base, Method::kMap, origin, strategy, size, site & kSiteMask);
    return reinterpret_cast<void*>(mb->base + kHeaderSize);
  }

  /// Writes a plain Pool block's header (the strategy in force, I3) and counts it.
  HAKMEM_ALWAYS_INLINE void* hand_out_pool_block(Heap* h, size_t c, uintptr_t block, size_t size, uintptr_t site,
                                                 Origin origin, uint8_t strategy) {
    HeaderFields f;
    f.method = Method::kPool;
    f.origin = origin;
    f.strategy = strategy;
    f.size = size;
    f.site = site & kSiteMask;
    codec_.encode(f, reinterpret_cast<void*>(block));
    h->counters.pool_allocs[c].add(1);
    track_alloc(block + kHeaderSize, block + kHeaderSize, SizeClasses::usable(c));
    return reinterpret_cast<void*>(block + kHeaderSize);
  }

  /// `size` bytes aligned to `align` (a power of two); EINVAL for a bad alignment.
  void* aligned_alloc(size_t align, size_t size, uintptr_t site, Origin origin = Origin::kAligned) {
    if (!is_pow2(align)) {
      errno = EINVAL;
      return nullptr;
    }
    bool fresh;
    return alloc_impl(size, align < kHeaderSize ? kHeaderSize : align, site, origin, &fresh);
  }

  /// n * size zeroed bytes; overflow gives nullptr with ENOMEM, never a short block.
  void* calloc(size_t n, size_t size, uintptr_t site) {
    size_t total;
    if (mul_overflows(n, size, &total) || total > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    bool fresh = false;
    void* p = alloc_impl(total, kHeaderSize, site, Origin::kMalloc, &fresh);
    if (p != nullptr && !fresh) memset(p, 0, total);
    return p;
  }

  /**
   * Resizes, keeping min(old, new) bytes (I5). A bad pointer is reported like a
   * bad free and gives nullptr; on ENOMEM the old block is untouched.
   * realloc(p, 0) frees p and returns nullptr, as glibc does.
   */
  void* realloc(void* p, size_t size, uintptr_t site) {
    if (p == nullptr) return alloc(size, site);
    if (!ensure_ready()) return nullptr;
    Located at;
    const Verdict v = locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at);
    if (v != Verdict::kOk) {
      report(v, p, at, site, Origin::kMalloc);
      errno = EINVAL;
      return nullptr;
    }
    if (size == 0) {
      commit_free(at, site);
      return nullptr;
    }
    if (at.zero) {  // paranoid zero-size block: nothing to keep
      bool fresh;
      void* q = alloc_impl(size, kHeaderSize, site, Origin::kMalloc, &fresh);
      if (q != nullptr) commit_free(at, site);
      return q;
    }
    const uint64_t capacity = capacity_of(at);
    const uint64_t need = size + canary_bytes();
    const StrategySnapshot snap = selector_.snapshot();
    const bool want_map = size >= snap.threshold;
    const bool is_map = at.h.method() == Method::kMap;
    // Stay in place when the block fits, its backing still agrees with the
    // strategy in force (I3), and it is not grossly oversized.
    if (need <= capacity && want_map == is_map && (need > capacity / 2 || capacity <= 2 * kHeaderSize)) {
      HeaderFields f = at.h.fields();
      f.size = size;
      f.strategy = snap.id;
      codec_.encode(f, reinterpret_cast<void*>(at.header));
      if (paranoid_) hard_.write_canary(reinterpret_cast<uintptr_t>(p) + size);
      return p;
    }
    const Origin origin = at.h.origin() == Origin::kAligned ? Origin::kMalloc : at.h.origin();
    bool fresh;
    void* q = alloc_impl(size, kHeaderSize, site, origin, &fresh);
    if (q == nullptr) return nullptr;  // errno is ENOMEM; p is untouched
    const uint64_t old_size = at.h.size();
    memcpy(q, p, size < old_size ? size : old_size);
    commit_free(at, site);
    return q;
  }

  // ---------------------------------------------------------------- release

  /**
   * Frees p after validating it (registry, header checksum, state, origin,
   * method). A misuse is reported and nothing is changed; the verdict is
   * returned (only reachable with on_error=report: the default aborts).
   */
  HAKMEM_ALWAYS_INLINE Verdict free(void* p, uintptr_t site, Origin origin = Origin::kMalloc) {
    if (__builtin_expect(free_fast(p, origin), 1)) return Verdict::kOk;
    return free_checked(p, site, origin);
  }

  /**
   * free()'s fast path: true when p was a plain Pool block, live, of a compatible
   * origin, and is now freed, after the same checks as locate() (ownership, exact
   * block pointer, checksum, method/state/origin in one compare), or a Map block
   * now in the thread's large slot (free_to_slot()). False changes nothing: the
   * caller goes on to free_checked(), which diagnoses every misuse.
   */
  HAKMEM_ALWAYS_INLINE bool free_fast(void* p, Origin origin, uint64_t sized = kUnsized) {
    MapBlock* mb = nullptr;
    if (__builtin_expect(free_fast_pool(p, origin, sized, &mb), 1)) return true;
    return mb != nullptr && free_to_slot(mb, reinterpret_cast<uintptr_t>(p), origin, sized);
  }

  /**
   * free() from a libc or C++ entry point: free_fast(), then free_checked() when it declines. A
   * large free and a misuse leave through tail calls, so only the Pool path needs the registers
   * it saves. free(NULL) returns at once. The free site for reports is the entry point's caller,
   * read only on those two ways out: this function is always inlined into the entry point, whose
   * return address __builtin_return_address(0) then is, and the Pool path keeps no register for it.
   */
  HAKMEM_ALWAYS_INLINE void free_entry(void* p, Origin origin) {
    if (p == nullptr) return;
    MapBlock* mb = nullptr;
    if (__builtin_expect(free_fast_pool(p, origin, kUnsized, &mb), 1)) return;
    const auto site = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    if (mb != nullptr) {
      map_free_or_check(mb, reinterpret_cast<uintptr_t>(p), site, origin);
    } else {
      free_checked(p, site, origin);
    }
  }

  /**
   * free_fast()'s Pool half: true when p was a plain Pool block, live, of a compatible origin,
   * and is now freed. False changes nothing, and sets *mb to p's Map block when p lies in one
   * (and this thread may take the fast path).
   */
  HAKMEM_ALWAYS_INLINE bool free_fast_pool(void* p, Origin origin, uint64_t sized, MapBlock** mb) {
    const auto u = reinterpret_cast<uintptr_t>(p);
    if (__builtin_expect(t_heap_.id != fast_id_, 0)) return false;  // also: not initialized, or paranoid
    Extent* e = registry_.lookup_initialized(u);
    if (__builtin_expect(e == nullptr, 0)) return false;
    if (__builtin_expect(e->kind != ExtentKind::kPoolSpan, 0)) {
      if (e->kind == ExtentKind::kMapBlock) *mb = static_cast<MapBlock*>(e);
      return false;
    }
    auto* s = static_cast<Span*>(e);
    const uintptr_t block = u - kHeaderSize;
    // p - 16 must be the start of a block handed out: its offset a multiple of the block size, and
    // its index below the carved count. exact_quotient() is the index of a multiple and more than
    // any block count otherwise, so one compare checks both. (An offset that wraps, p < base + 16,
    // or that an address above bit 46 makes huge (lookup_initialized()), is past every count too.)
    const uint64_t off = block - s->base;
    if (__builtin_expect(exact_quotient(off, s->inverse, s->shift) >= s->carved.load(std::memory_order_relaxed), 0)) {
      return false;
    }
    // Method, state and origin must be Pool, Live and this origin: the header with those
    // bits set as expected must be the header as stored (one compare), and its checksum right.
    const Header h = HeaderCodec::load(reinterpret_cast<void*>(block));
    if (__builtin_expect(h.lo != live_lo(h, Method::kPool, origin), 0)) return false;
    // The size must fit the block (a second line behind the checksum, as in locate()), and
    // equal the one claimed by a sized free; either failure is diagnosed by the slow path.
    // (Checked before the sum: h.hi is then dead sooner, and the path saves one register less.)
    const uint64_t size = h.size();
    if (__builtin_expect(size > s->block_size - kHeaderSize || (sized != kUnsized && size != sized), 0)) return false;
    const uint32_t sum = codec_.sum_of(h, block);
    if (__builtin_expect(!codec_.matches(h, sum), 0)) return false;
    // A compiler barrier (no instruction): without it GCC keeps the finish keys the check loaded in
    // two callee-saved registers for the re-seal, and the path pays two more pushes and pops than
    // the two loads it saves (pairs: 123 to 118 instructions per free).
    asm volatile("" ::: "memory");
    codec_.seal_live_in_place(sum, State::kFree, reinterpret_cast<void*>(block));
    Heap* me = t_heap_.heap;
    me->counters.pool_frees[s->cls].add(1);
    track_free(u, s->block_size - kHeaderSize, sizeof(FreeBlock));
    if (__builtin_expect(s->owner.load(std::memory_order_relaxed) == me && !s->in_full, 1)) {
      // The address passes through an empty asm (no instruction), so the compiler does not take
      // p's provenance (a test may pass the address of a local) for the block's.
      uintptr_t link = u;
      asm("" : "+r"(link));
      auto* b = reinterpret_cast<FreeBlock*>(link);
      b->next = s->free;
      s->free = b;
    } else {
      pool_free_out_of_line(me, s, block);
    }
    return true;
  }

  /// free_entry()'s Map half: the thread's large slot, else every check with a report.
  [[gnu::noinline]] void map_free_or_check(MapBlock* mb, uintptr_t u, uintptr_t site, Origin origin) {
    if (!slot_free(mb, u, origin, kUnsized)) free_checked(reinterpret_cast<void*>(u), site, origin);
  }

  /**
   * free_fast() of a Map block: into the thread's large slot when the slot is empty, the block
   * fits it (a cacheable class, at most large_slot bytes, not aligned) and passes the same
   * checks as free_fast() (exact pointer, checksum, Map/Live/origin, size). No lock and no
   * locked instruction: the lock's would wait for the program's last stores to drain, which
   * costs a large cycle about 90 ns (bench/README.md, History). False changes nothing.
   *
   * Only this thread touches its slot while it runs. A fork while it is between two of these
   * stores leaves the child a block counted in the slot bytes but in no slot: leaked, as is any
   * block a thread that does not survive a fork was holding, and I7's sum still holds.
   */
  [[gnu::noinline]] bool free_to_slot(MapBlock* mb, uintptr_t u, Origin origin, uint64_t sized) {
    return slot_free(mb, u, origin, sized);
  }

  /// free_to_slot()'s body, shared with map_free_or_check().
  HAKMEM_ALWAYS_INLINE bool slot_free(MapBlock* mb, uintptr_t u, Origin origin, uint64_t sized) {
    Heap* me = t_heap_.heap;  // free_fast() checked the thread's heap id
    const uintptr_t block = u - kHeaderSize;
    if (mb->length > slot_max_ || mb->cls == LargeClasses::kUncached || block != mb->base ||
        me->large_slot.load(std::memory_order_relaxed) != nullptr) {
      return false;
    }
    const Header h = HeaderCodec::load(reinterpret_cast<void*>(block));
    if (h.lo != live_lo(h, Method::kMap, origin)) return false;
    const uint32_t sum = codec_.sum_of(h, block);
    if (!codec_.matches(h, sum)) return false;
    const uint64_t size = h.size();
    if (size > mb->capacity_at(0) || (sized != kUnsized && size != sized)) return false;
    codec_.seal_live_in_place(sum, State::kCached, reinterpret_cast<void*>(block));
    mb->state = State::kCached;
    const int64_t length = static_cast<int64_t>(mb->length);
    me->counters.slot_puts.add(1);  // (map_held_bytes keeps it: see HeapCounters)
    me->counters.slot_bytes.add(length);
    track_free(u, mb->capacity_at(0));
    me->large_slot.store(mb, std::memory_order_relaxed);
    return true;
  }

  /**
   * Moves heap h's slot block, if any, into BigCache: its thread is exiting or flushing, a fork
   * child gives up a heap, or teardown. The caller holds a LargeOp guard (or is alone).
   */
  void slot_to_cache(Heap* h) {
    MapBlock* mb = h->large_slot.load(std::memory_order_relaxed);
    if (mb == nullptr) return;
    h->large_slot.store(nullptr, std::memory_order_relaxed);
    h->counters.slot_bytes.add(-static_cast<int64_t>(mb->length));
    h->counters.map_held_bytes.add(-static_cast<int64_t>(mb->length));  // a free the slot's put counted
    cache_.put(mb, HeaderCodec::load(reinterpret_cast<void*>(mb->base)).site());
  }

  /// h's low word with method `m`, state Live and origin `o`: equal to h.lo exactly when the
  /// header says so (the fast paths' one-compare check of all three fields).
  static HAKMEM_ALWAYS_INLINE uint64_t live_lo(const Header& h, Method m, Origin o) {
    constexpr uint64_t kFieldMask = uint64_t{0x3f} << 32;
    return (h.lo & ~kFieldMask) | (uint64_t{static_cast<uint8_t>(m)} | uint64_t{static_cast<uint8_t>(State::kLive)} << 2 |
                                   uint64_t{static_cast<uint8_t>(o)} << 4)
                                      << 32;
  }

  /// free_fast()'s `sized` when the caller claims no size.
  static constexpr uint64_t kUnsized = ~uint64_t{0};

  /// The Pool free of a span this thread does not own, or one on the full list.
  [[gnu::noinline]] void pool_free_out_of_line(Heap* me, Span* s, uintptr_t block) { pool_.free(me, s, block); }

  /// free() without the fast path: every check in order, with a report on failure.
  /// Never changes errno (the fast path cannot; this one may make syscalls).
  [[gnu::noinline]] Verdict free_checked(void* p, uintptr_t site, Origin origin) {
    if (p == nullptr) return Verdict::kOk;
    const int saved_errno = errno;
    Verdict v = Verdict::kInvalidPointer;
    if (ensure_ready()) {
      Located at;
      v = locate(reinterpret_cast<uintptr_t>(p), origin, &at);
      if (v != Verdict::kOk) {
        report(v, p, at, site, origin);
      } else {
        commit_free(at, site);
      }
    }
    errno = saved_errno;
    return v;
  }

  /**
   * A sized release (C++ sized delete, C23 free_sized): as free(), and the size
   * must be the one the block was allocated with, or it is reported as a
   * size mismatch and nothing is freed.
   */
  Verdict free_sized(void* p, size_t size, uintptr_t site, Origin origin) {
    if (p == nullptr) return Verdict::kOk;
    if (__builtin_expect(size != kUnsized && free_fast(p, origin, size), 1)) return Verdict::kOk;
    if (!ensure_ready()) return Verdict::kInvalidPointer;
    Located at;
    Verdict v = locate(reinterpret_cast<uintptr_t>(p), origin, &at);
    if (v == Verdict::kOk && at.h.size() != size) v = Verdict::kSizeMismatch;
    if (v != Verdict::kOk) {
      report(v, p, at, site, origin, size);
      return v;
    }
    commit_free(at, site);
    return Verdict::kOk;
  }

  /// Bytes usable at p; 0 (and a report) for a pointer that is not a live block. In paranoid
  /// mode exactly the bytes requested: the canary follows them.
  size_t usable_size(const void* p) {
    if (p == nullptr || !ensure_ready()) return 0;
    Located at;
    const Verdict v = locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at, /*check_origin=*/false);
    if (v != Verdict::kOk) {
      report(v, p, at, 0, Origin::kMalloc);
      return 0;
    }
    return static_cast<size_t>(usable_of(at));
  }

  /// Validates p without changing anything (no report): what free would say.
  Verdict check(const void* p, Origin origin = Origin::kMalloc) {
    if (!ensure_ready()) return Verdict::kInvalidPointer;
    Located at;
    return locate(reinterpret_cast<uintptr_t>(p), origin, &at);
  }

  /**
   * Sets the fixed mmap threshold at run time (mallopt M_MMAP_THRESHOLD).
   * False when out of range. Blocks already allocated keep the strategy their
   * header records (I3 is judged per block).
   */
  bool set_threshold(uint64_t threshold) {
    if (!ensure_ready() || threshold < kMinThreshold || threshold > kMaxThreshold) return false;
    return selector_.init_fixed(threshold);
  }

  /**
   * Evicts BigCache, releases everything pending, and gives back the pages of empty Pool spans
   * (hak_flush, malloc_trim). The caller's own slot and spans too; other threads' slots and
   * spans stay theirs (as glibc's trim leaves other threads' tcaches): a thread's slot goes back
   * to BigCache when it exits, and its spans become abandoned ones, which a trim purges.
   * Paranoid mode purges no span: a freed block keeps its fill until its reuse checks it.
   */
  void flush() {
    if (!ready()) return;
    // Drained blocks are in no structure until the releaser has them, and abandoned spans are
    // off their list while purged: a fork waits for both.
    const LargeOp guard(*this);
    Heap* own = t_heap_.id == id_ ? t_heap_.heap : nullptr;
    if (own != nullptr) slot_to_cache(own);
    cache_.drain();
    releaser_.flush();
    if (!paranoid_) pool_.purge_empty(own, [this](PageRange* r, size_t n) { releaser_.purge(r, n); });
  }

  /// TestOnly: releases what is pending without touching the cache.
  void flush_pending_for_testing() {
    if (ready()) releaser_.flush();
  }

  // ---------------------------------------------------------------- stats

  StatsSnapshot stats() {
    StatsSnapshot s;
    if (!ensure_ready()) return s;
    s.mode = opts_.get(Opt::kMode);
    const StrategySnapshot snap = selector_.snapshot();
    s.strategy = snap.id;
    s.threshold = snap.threshold;
    auto sum = [this](OwnedCounter HeapCounters::*c) { return sum_counter(c); };
    s.pool_allocs = sum_heaps([](const HeapCounters& c) { return c.pool_alloc_count(); });
    s.pool_frees = sum_heaps([](const HeapCounters& c) { return c.pool_free_count(); });
    s.pool_live_bytes = sum_heaps([](const HeapCounters& c) { return c.pool_live_bytes(); });
    s.remote_frees = sum(&HeapCounters::remote_frees);
    s.pool_span_bytes = pool_.span_bytes();
    s.pool_spans = pool_.span_count();
    s.slot_bytes = sum(&HeapCounters::slot_bytes);
    s.slot_hits = sum(&HeapCounters::slot_hits);
    s.map_allocs = sum(&HeapCounters::map_allocs) + s.slot_hits;
    s.map_frees = sum(&HeapCounters::map_frees) + sum(&HeapCounters::slot_puts);
    // Read apart while threads run, the two sums may miss each other's last update: never below 0.
    const uint64_t held = sum(&HeapCounters::map_held_bytes);
    s.map_live_bytes = held > s.slot_bytes ? held - s.slot_bytes : 0;
    s.slot_max = slot_max_;
    const CacheCounters& cc = cache_.counters();
    s.cache_hits = cc.hits.load();
    s.cache_misses = cc.misses.load();
    s.cache_puts = cc.puts.load();
    s.cache_evictions = cc.evictions.load();
    s.cache_bypass = cc.bypass.load();
    s.cache_bytes = cache_.bytes();
    s.cache_blocks = cache_.blocks();
    s.cache_cap = cache_.cap();
    s.cache_limit = cache_.limit();
    s.cache_max = cache_.max();
    s.cache_grows = cc.grows.load();
    s.cache_shrinks = cc.shrinks.load();
    const ReleaseCounters& rc = releaser_.counters();
    s.release_blocks = rc.blocks.load();
    s.release_bytes = rc.bytes.load();
    s.release_flushes = rc.flushes.load();
    s.unmap_calls = rc.unmap_calls.load();
    s.purge_calls = rc.purge_calls.load();
    s.purged_bytes = rc.purged_bytes.load();
    s.syscalls_saved = rc.syscalls_saved.load();
    s.pending_bytes = releaser_.pending_bytes();
    s.batch_bytes = releaser_.batch_bytes();
    s.mapped_bytes = mapped_.load();
    s.metadata_bytes = metadata_bytes();
    s.paranoid = paranoid_;
    s.quarantine_bytes = held_bytes_.load();
    s.quarantine_blocks = held_blocks_.load();
    s.quarantine_cap = quarantine_cap_;
    s.withheld_bytes = withheld_bytes_.load();
    s.zero_live = zero_.live();
    s.protect_failures = protect_failures_.load();
    for (size_t i = 0; i < static_cast<size_t>(Verdict::kCount); ++i) {
      s.errors[i] = errors_[i].load();
      s.errors_total += s.errors[i];
    }
    s.site_count = sites_.top(s.sites, StatsSnapshot::kTopSites);
    s.site_other_requests = sites_.other_requests();
    if (learning_) {
      // The learner changes only at epoch boundaries, under epoch_lock_.
      LockGuard g(epoch_lock_);
      s.learning = true;
      s.lifecycle = learner_.state();
      s.frozen = learner_.frozen();
      s.learner = learner_.counters();
      uint8_t order[kLearnableStrategies];
      learner_.ranking(order);
      for (size_t i = 0; i < kLearnableStrategies; ++i) {
        const StrategyRecord& r = learner_.record(order[i]);
        s.board[i] = StatsSnapshot::BoardRow{order[i], kStrategyThresholds[order[i]], r.rating, r.wins, r.losses,
                                             r.draws, r.epochs};
      }
    }
    return s;
  }

  void print_stats(WriteFn fn, void* arg, bool json = false) {
    const StatsSnapshot s = stats();
    if (json) {
      print_stats_json(s, fn, arg);
    } else {
      print_stats_table(s, fn, arg);
    }
  }

  uint64_t error_count(Verdict v) const { return errors_[static_cast<size_t>(v)].load(); }

  // ---------------------------------------------------------------- tests

  /// TestOnly: header fields and backing of a live block.
  BlockInfo inspect(const void* p) {
    BlockInfo info;
    if (!ensure_ready()) return info;
    Located at;
    info.verdict = locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at, /*check_origin=*/false);
    if (at.extent != nullptr) info.kind = at.extent->kind;
    if (at.header_ok) {
      info.fields = at.h.fields();
      info.threshold_of_strategy = selector_.threshold_of(at.h.strategy());
    }
    if (info.verdict == Verdict::kOk) info.usable = usable_of(at);
    return info;
  }

  /// TestOnly: the codec (tests forge and inspect headers with it).
  const HeaderCodec& codec_for_testing() const { return codec_; }
  /// TestOnly: the Registry.
  Registry<Pal>& registry_for_testing() { return registry_; }

  /**
   * TestOnly: walks every structure and checks I2, I3, I6 and I7 (accounting
   * adds up, every live block's header agrees with the Registry and with the
   * strategy recorded in it, cached blocks say Cached, pending ones Releasing).
   * The caller guarantees no other thread is using the allocator.
   */
  AuditResult audit() {
    AuditResult r;
    if (!ready()) return r;
    // Pool: spans split exactly into live and free bytes; every live block checked.
    // The walk sees every carved block off the free lists; paranoid mode holds some of those
    // back (quarantined, or withheld after a write-after-free report), and they are not live.
    uint64_t walked_pool_live = 0;
    r.pool_free = pool_.audit_free_bytes(&walked_pool_live);
    r.pool_held = held_bytes_.load() + withheld_bytes_.load();
    if (r.pool_held > walked_pool_live) audit_fail(r, "I7 pool held > carved off-list", r.pool_held, walked_pool_live);
    walked_pool_live -= r.pool_held < walked_pool_live ? r.pool_held : walked_pool_live;
    r.pool_live = walked_pool_live;
    r.pool_span_bytes = pool_.span_bytes();
    if (r.pool_free + r.pool_live + r.pool_held != r.pool_span_bytes) {
      audit_fail(r, "I7 pool spans != free + live + held", r.pool_free + r.pool_live + r.pool_held, r.pool_span_bytes);
    }
    if (paranoid_) audit_quarantine(r);
    const uint64_t counted_pool_live = sum_heaps([](const HeapCounters& c) { return c.pool_live_bytes(); });
    if (counted_pool_live != walked_pool_live) {
      audit_fail(r, "I7 pool live counter != walk", counted_pool_live, walked_pool_live);
    }
    pool_.for_each_span_for_testing([&](Span* s) {
      if (registry_.lookup(s->base) != s || registry_.lookup(s->base + s->length - 1) != s) {
        audit_fail(r, "I4 Registry does not answer for a Pool span", s->base, 0);
      }
      const uint32_t carved = s->carved.load();
      for (uint32_t i = 0; i < carved; ++i) {
        const uintptr_t block = s->base + uint64_t{i} * s->block_size;
        Located at;
        if (!locate_block(s, block, &at)) {
          audit_fail(r, "carved Pool block header fails its checksum", block, 0);
        } else if (at.h.state() == State::kLive) {
          check_live_block(r, at);
        }
      }
    });
    // Map: each block is live, cached or pending, and its header says which.
    cache_.for_each_cached([&](MapBlock* mb) {
      r.cached += mb->length;
      HeaderFields f;
      if (!codec_.decode(reinterpret_cast<void*>(mb->base + mb->hdr_offset), &f) || f.state != State::kCached ||
          mb->state != State::kCached) {
        audit_fail(r, "I6 cached block not marked Cached", mb->base, 0);
      }
    });
    if (r.cached != cache_.bytes()) audit_fail(r, "I7 cache bytes != walk", cache_.bytes(), r.cached);
    if (r.cached > cache_.limit()) audit_fail(r, "BigCache over its limit", r.cached, cache_.limit());
    if (cache_.limit() < cache_.cap() || cache_.limit() > cache_.max()) {
      audit_fail(r, "BigCache limit outside [cap, max]", cache_.limit(), cache_.max());
    }
    pool_.for_each_heap_for_testing([&](Heap* h) {
      MapBlock* mb = h->large_slot.load();
      if (mb == nullptr) return;
      r.slots += mb->length;
      HeaderFields f;
      if (!codec_.decode(reinterpret_cast<void*>(mb->base), &f) || f.state != State::kCached ||
          mb->state != State::kCached || mb->hdr_offset != 0) {
        audit_fail(r, "I6 large slot block not marked Cached", mb->base, 0);
      }
    });
    const uint64_t counted_slots = sum_counter(&HeapCounters::slot_bytes);
    if (counted_slots != r.slots) audit_fail(r, "I7 slot bytes counter != walk", counted_slots, r.slots);
    releaser_.for_each_pending([&](uintptr_t base, size_t len, MapBlock* mb) {
      r.pending += len;
      if (mb == nullptr) return;
      HeaderFields f;
      if (mb->state != State::kReleasing || !codec_.decode(reinterpret_cast<void*>(base + mb->hdr_offset), &f) ||
          f.state != State::kReleasing) {
        audit_fail(r, "I6 pending block not marked Releasing", base, 0);
      }
    });
    if (r.pending != releaser_.pending_bytes()) {
      audit_fail(r, "I7 pending bytes != walk", releaser_.pending_bytes(), r.pending);
    }
    map_.for_each_block([&](MapBlock* mb) {
      if (registry_.lookup(mb->base) != mb || registry_.lookup(mb->base + mb->length - 1) != mb) {
        audit_fail(r, "I4 Registry does not answer for a Map block", mb->base, 0);
      }
      if (mb->state != State::kLive) return;
      r.map_live += mb->length;
      Located at;
      if (!locate_block(mb, mb->base, &at)) {
        audit_fail(r, "live Map block header fails its checksum", mb->base, 0);
      } else {
        check_live_block(r, at);
      }
    });
    const uint64_t counted_map_live = sum_counter(&HeapCounters::map_held_bytes) - counted_slots;
    if (counted_map_live != r.map_live) audit_fail(r, "I7 map live counter != walk", counted_map_live, r.map_live);
    r.live_blocks += zero_.live();
    r.metadata = metadata_bytes();
    r.mapped = mapped_.load();
    const uint64_t sum = r.pool_span_bytes + r.map_live + r.cached + r.slots + r.pending + r.metadata;
    if (sum != r.mapped) {
      audit_fail(r, "I7 mapped != pool spans + map live + cached + slots + pending + metadata", r.mapped, sum);
    }
    return r;
  }

  /**
   * Returns every byte to the OS through the releaser and forgets all state.
   * Tests only: the process allocator is never torn down.
   */
  void teardown() {
    if (!ready()) return;
    pool_.for_each_heap([this](Heap* h) { slot_to_cache(h); });
    cache_.drain();
    releaser_.flush();
    auto give = [this](uintptr_t base, size_t len) { releaser_.add_raw(base, len); };
    pool_.release_all(give);
    map_.release_all(give);
    zero_.release_all(give);
    if (shared_slots_bytes_ != 0) give(reinterpret_cast<uintptr_t>(shared_slots_), shared_slots_bytes_);
    shared_q_.init(nullptr, 0);
    shared_slots_ = nullptr;
    shared_slots_bytes_ = 0;
    held_bytes_.store(0);
    held_blocks_.store(0);
    withheld_bytes_.store(0);
    releaser_.flush();
    registry_.release_tables(give);
    releaser_.flush();
    pthread_key_delete(key_);
    id_ = 0;  // a later init gets a new id, so no thread's cached heap pointer survives
    fast_id_ = 0;
    ready_.store(false, std::memory_order_release);
  }

  /**
   * Fork protocol (pthread_atfork): prepare takes every allocator lock so no
   * structure is mid-update when the address space is copied; the parent then
   * releases them; the child releases them and gives up the heaps of the
   * threads that did not survive the fork, so their spans can be adopted.
   */
  void prepare_fork() {
    // Let large operations in flight finish: they span several locks (cache,
    // releaser), and one frozen between two of them would lose its block in the child.
    fork_pending_.store(true, std::memory_order_seq_cst);
    while (large_ops_.load(std::memory_order_seq_cst) != 0) sched_yield();
    init_lock_.lock();
    if (!ready()) return;
    epoch_lock_.lock();
    cache_.lock().lock();
    releaser_.lock().lock();
    map_.lock().lock();
    quarantine_lock_.lock();
    zero_.lock().lock();
    pool_.lock_all();
    registry_.lock().lock();
  }
  void parent_after_fork() {
    unlock_all_after_fork();
    fork_pending_.store(false, std::memory_order_seq_cst);
  }
  void child_after_fork() {
    unlock_all_after_fork();
    large_ops_.store(0, std::memory_order_relaxed);
    fork_pending_.store(false, std::memory_order_seq_cst);
    if (ready()) {
      Heap* keep = heap_if_present();
      pool_.for_each_heap([&](Heap* h) {
        if (h != keep) slot_to_cache(h);
      });
      pool_.retire_heaps_except(keep);
    }
  }

 private:
  static constexpr uint64_t kProcessAllocatorId = 1;

  void unlock_all_after_fork() {
    if (ready()) {
      registry_.lock().unlock();
      pool_.unlock_all();
      zero_.lock().unlock();
      quarantine_lock_.unlock();
      map_.lock().unlock();
      releaser_.lock().unlock();
      cache_.lock().unlock();
      epoch_lock_.unlock();
    }
    init_lock_.unlock();
  }

  // ------------------------------------------------------------ learning

  /**
   * Books a sampled large request (one of every learn_sample per thread; the others
   * only moved the countdown, in alloc_impl): the request count, its size band, its
   * cycles, its site and the shared epoch trigger, each weighted by learn_sample (so
   * every count is exact to within one sample period per thread, and exact with
   * learn_sample=1), and may end the epoch: by count, early (a clearly losing epoch),
   * or by time, where the clock is read at most once per kClockCheckCycles of this
   * thread's time-stamp counter (`now` is the request's end, in those cycles).
   */
  void note_large(uint64_t size, uintptr_t site, uint64_t spent, uint64_t now) {
    Heap* h = t_heap_.id == id_ ? t_heap_.heap : nullptr;
    if (h == nullptr) return;  // no heap: the allocation failed before one existed
    t_heap_.sample_countdown = static_cast<uint32_t>(learn_sample_ - 1);
    h->counters.large_requests.add(static_cast<int64_t>(learn_sample_));
    h->counters.large_bands[size_band(size)].add(static_cast<int64_t>(learn_sample_));
    h->counters.large_cycles.add(static_cast<int64_t>(spent * learn_sample_));
    sites_.note(site, size, learn_sample_);
    const uint64_t n = epoch_requests_.fetch_add(learn_sample_, std::memory_order_relaxed) + learn_sample_;
    if (n >= epoch_target_) {
      end_epoch();
      return;
    }
    // A clearly losing LEARN or CANARY epoch ends early: once it has early_after_ requests,
    // if its time per request is past the bound (early_end x the cheapest other strategy's).
    // Each sample counts at most kEarlyEndClamp times the bound: a heavy tail the strategy
    // really has (a few mmaps and fault storms among cheap requests) still passes it, a
    // request or two preempted for milliseconds cannot.
    if (const uint64_t bound = early_end_cpr_.load(std::memory_order_relaxed); bound != 0) {
      const uint64_t weighted = std::min(spent, kEarlyEndClamp * bound) * learn_sample_;
      const uint64_t acc = epoch_cycles_acc_.fetch_add(weighted, std::memory_order_relaxed) + weighted;
      if (n >= early_after_ && acc > bound * n) {
        end_epoch(true);
        return;
      }
    }
    if (now - h->clock_checked >= kClockCheckCycles) {
      h->clock_checked = now;
      if (pal_.now_ns() >= epoch_deadline_ns_.load(std::memory_order_relaxed)) end_epoch();
    }
  }

  /// The most one sampled request counts toward an early end, in bounds (see note_large()).
  static constexpr uint64_t kEarlyEndClamp = 32;

  /// Time-stamp counter cycles between a thread's reads of the clock for the epoch deadline
  /// (2^19: 0.1-0.5 ms at 1-5 GHz, far below the shortest epoch_ms of 1 ms).
  static constexpr uint64_t kClockCheckCycles = uint64_t{1} << 19;

  /**
   * The epoch boundary: folds the per-thread counters, asks the cost source
   * for the epoch's cost, and puts the learner's next strategy in force. One
   * thread does it (try-lock); the others carry on with the strategy in force.
   */
  void end_epoch(bool early = false) {
    if (!epoch_lock_.try_lock()) return;
    // What the trigger counted so far; requests made while this boundary runs stay counted
    // for the next epoch (storing 0 would drop them and stretch the next epoch).
    const uint64_t triggered = epoch_requests_.load(std::memory_order_relaxed);
    const uint64_t requests = sum_counter(&HeapCounters::large_requests);
    const uint64_t spent = sum_counter(&HeapCounters::large_cycles);
    SizeSignature now;
    for (size_t b = 0; b < kSizeBands; ++b) {
      now.count[b] = sum_heaps([b](const HeapCounters& c) { return c.large_bands[b].get(); });
    }
    SizeSignature sig;
    for (size_t b = 0; b < kSizeBands; ++b) sig.count[b] = now.count[b] - epoch_bands_.count[b];
    const uint64_t n = requests - epoch_seen_requests_;
    epoch_cycles_ = spent - epoch_seen_cycles_;
    if (n > 0) {
      const uint8_t ran = selector_.current_id();
      const EpochCost cost = cost_source_->epoch_cost(ran);
      if (early) learner_.note_early_end();
      const uint8_t next = learner_.end_epoch(n, cost, sig);
      if (ran < kLearnableStrategies && n >= learner_.params().min_samples) measured_cpr_[ran] = epoch_cycles_ / n;
      selector_.set_current(next);
      early_end_cpr_.store(early_end_bound(next), std::memory_order_relaxed);
      epoch_cycles_acc_.store(0, std::memory_order_relaxed);
      epoch_seen_requests_ = requests;
      epoch_seen_cycles_ = spent;
      epoch_bands_ = now;
    }
    epoch_requests_.fetch_sub(triggered, std::memory_order_relaxed);
    epoch_deadline_ns_.store(pal_.now_ns() + epoch_ns_, std::memory_order_relaxed);
    epoch_lock_.unlock();
  }

  /// The early-end bound (large-path cycles per request) of an epoch about to run `next`:
  /// early_end times the cheapest time per request measured for any other strategy; 0 (no
  /// bound) when FROZEN (a frozen epoch monitors, it does not compete), when early_end is 0,
  /// or before another strategy was measured.
  uint64_t early_end_bound(uint8_t next) const {
    if (early_end_ == 0 || learner_.state() == Lifecycle::kFrozen) return 0;
    uint64_t cheapest = 0;
    for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
      if (i != next && measured_cpr_[i] != 0 && (cheapest == 0 || measured_cpr_[i] < cheapest)) cheapest = measured_cpr_[i];
    }
    return cheapest * early_end_;
  }

  /// The real cost source: large-path cycles, minor faults and bytes mapped during the epoch.
  struct ProcessCost final : CostSource {
    Allocator* owner = nullptr;
    uint64_t last_faults = 0;
    uint64_t last_mapped_total = 0;
    EpochCost epoch_cost(uint8_t /*strategy*/) override {
      EpochCost c;
      c.cpu = static_cast<double>(owner->epoch_cycles_);
      const uint64_t faults = owner->pal_.minor_faults();
      c.faults = static_cast<double>(faults - last_faults);
      last_faults = faults;
      // Bytes mapped, ever: the net tally plus everything the releaser gave back.
      const uint64_t total = owner->mapped_.load() + owner->releaser_.counters().unmapped_bytes.load();
      c.bytes = static_cast<double>(total - last_mapped_total);
      last_mapped_total = total;
      return c;
    }
  };

 public:
  /// TestOnly: the learner's costs come from `source` (deterministic tests) instead of the process.
  /// Early ends are off then: they judge measured time, which would not be what is scored.
  void set_cost_source_for_testing(CostSource* source) {
    cost_source_ = source;
    early_end_ = 0;
    early_end_cpr_.store(0, std::memory_order_relaxed);
  }
  /// TestOnly: turns early ends back on (set_cost_source_for_testing turns them off) with `factor`.
  void set_early_end_for_testing(uint64_t factor) { early_end_ = factor; }
  /// TestOnly: the running epoch's early-end bound, in large-path cycles per request (0: none).
  uint64_t early_end_bound_for_testing() const { return early_end_cpr_.load(std::memory_order_relaxed); }
  /// TestOnly: ends the epoch now (tests drive epochs without 10,000 requests).
  void end_epoch_for_testing() { end_epoch(); }
  /// The learner (leaderboard, lifecycle), for stats and tests.
  const Learner& learner() const { return learner_; }
  bool learning() const { return learning_; }

 private:
  /// Brackets a large (Map) operation so prepare_fork() can wait for it (see there).
  class LargeOp {
   public:
    explicit LargeOp(Allocator& a) : a_(a) {
      for (;;) {
        a_.large_ops_.fetch_add(1, std::memory_order_seq_cst);
        if (!a_.fork_pending_.load(std::memory_order_seq_cst)) return;
        a_.large_ops_.fetch_sub(1, std::memory_order_seq_cst);
        while (a_.fork_pending_.load(std::memory_order_relaxed)) sched_yield();
      }
    }
    ~LargeOp() { a_.large_ops_.fetch_sub(1, std::memory_order_seq_cst); }
    LargeOp(const LargeOp&) = delete;
    LargeOp& operator=(const LargeOp&) = delete;

   private:
    Allocator& a_;
  };

  /// The calling thread's heap if it has one (never creates one).
  Heap* heap_if_present() {
    if (t_heap_.id == id_) return t_heap_.heap;
    return static_cast<Heap*>(pthread_getspecific(key_));
  }

  bool ensure_ready() {
    if (__builtin_expect(ready_.load(std::memory_order_acquire), 1)) return true;
    if constexpr (requires { Config::default_options(); }) {
      return init_from_environment(Config::default_options());
    } else {
      return init_from_environment(nullptr);
    }
  }

  bool init_locked(const Options& o) {
    opts_ = o;
    const uint64_t secret = make_secret();
    codec_.set_secret(secret);
    hard_.set_secret(secret);
    if (id_ == 0) id_ = next_id();
    const GiveBack give_back{[](void* ctx, uintptr_t base, size_t len) {
                               static_cast<Allocator*>(ctx)->releaser_.add_raw(base, len);
                             },
                             this};
    if (!registry_.init(&pal_, &mapped_)) return false;
    pool_.init(&pal_, &registry_, &mapped_, give_back);
    map_.init(&pal_, &registry_, &mapped_, give_back);
    zero_.init(&pal_, &mapped_, give_back);
    releaser_.init(&pal_, &registry_, &map_, &codec_, &mapped_, opts_.get(Opt::kBatch),
                   opts_.get(Opt::kDecayMs) * 1000000ull);
    cache_.init(&pal_, &releaser_, opts_.get(Opt::kCache), opts_.get(Opt::kCacheMax),
                opts_.get(Opt::kDecayMs) * 1000000ull);
    selector_.init_fixed(opts_.get(Opt::kThreshold));
    learning_ = opts_.get(Opt::kMode) == kModeLearn;
    if (learning_) {
      LearnerParams lp;
      lp.k = static_cast<double>(opts_.get(Opt::kEloK));
      lp.min_samples = opts_.get(Opt::kMinSamples);
      lp.epsilon = static_cast<double>(opts_.get(Opt::kEpsilon)) / 100;
      lp.weight_cpu = static_cast<double>(opts_.get(Opt::kWeightCpu)) / 100;
      lp.weight_faults = static_cast<double>(opts_.get(Opt::kWeightFaults)) / 100;
      lp.weight_bytes = static_cast<double>(opts_.get(Opt::kWeightBytes)) / 100;
      lp.freeze_tolerance = static_cast<double>(opts_.get(Opt::kFreezeTol)) / 1000;
      lp.windows = static_cast<unsigned>(opts_.get(Opt::kWindows));
      lp.canary_rate = static_cast<double>(opts_.get(Opt::kCanary)) / 100;
      lp.canary_win = static_cast<double>(opts_.get(Opt::kCanaryWin)) / 100;
      lp.relearn_degrade = static_cast<double>(opts_.get(Opt::kRelearnCost)) / 100;
      lp.relearn_shift = static_cast<double>(opts_.get(Opt::kRelearnShift)) / 100;
      learner_.configure(lp, mix64(secret ^ 0x1ea4));
      // Learning starts from the one of the twelve nearest the configured threshold (the
      // default 256 KiB is not one of them), so the first epochs run what fixed mode would;
      // the sweep then visits every strategy before any is trusted.
      uint8_t start = 0;
      const uint64_t want = opts_.get(Opt::kThreshold);
      for (uint8_t i = 1; i < kLearnableStrategies; ++i) {
        const uint64_t d = kStrategyThresholds[i] > want ? kStrategyThresholds[i] - want : want - kStrategyThresholds[i];
        const uint64_t best = kStrategyThresholds[start] > want ? kStrategyThresholds[start] - want
                                                                 : want - kStrategyThresholds[start];
        if (d < best) start = i;
      }
      learner_.start(start);
      selector_.set_current(start);
      epoch_target_ = opts_.get(Opt::kEpochRequests);
      early_end_ = opts_.get(Opt::kEarlyEnd);
      // An early end needs a sixteenth of an epoch's requests (and min_samples) as evidence.
      early_after_ = std::max<uint64_t>(lp.min_samples, epoch_target_ / 16);
      learn_sample_ = opts_.get(Opt::kLearnSample);
      epoch_ns_ = opts_.get(Opt::kEpochMs) * 1000000ull;
      epoch_deadline_ns_.store(pal_.now_ns() + epoch_ns_, std::memory_order_relaxed);
      cost_source_ = &process_cost_;
      process_cost_.owner = this;
      process_cost_.last_faults = pal_.minor_faults();
    }
    paranoid_ = opts_.get(Opt::kHardening) == kHardeningParanoid;
    if (paranoid_) init_quarantine(opts_.get(Opt::kQuarantine));
    if (pthread_key_create(&key_, &on_thread_exit) != 0) return false;
    fast_id_ = paranoid_ ? 0 : id_;  // paranoid: no heap id is 0, so the fast paths never run
    // The large slot feeds the cache (a slot block goes to BigCache when its thread exits or
    // flushes), so no cache means no slot; paranoid mode never takes the fast paths that use it.
    slot_max_ = paranoid_ || opts_.get(Opt::kCache) == 0 ? 0 : opts_.get(Opt::kLargeSlot);
    ready_.store(true, std::memory_order_release);
    return true;
  }

  static uint64_t next_id() {
    static std::atomic<uint64_t> counter{kProcessAllocatorId};
    return counter.fetch_add(1) + 1;
  }

  // ------------------------------------------------------------ thread heaps

  struct TlsHeap {
    uint64_t id;
    Heap* heap;
    uint32_t sample_countdown = 0;  ///< learn mode: large requests until this thread's next sampled one
  };
  /// An id no allocator has (ids start at 2; 0 means "not initialized"): an empty
  /// slot never matches, so the fast paths need no separate readiness check.
  static constexpr uint64_t kNoHeap = ~uint64_t{0};
  static inline thread_local TlsHeap t_heap_ = {kNoHeap, nullptr};

  Heap* heap() {
    if (__builtin_expect(t_heap_.id == id_, 1)) return t_heap_.heap;
    return heap_slow();
  }

  Heap* heap_slow() {
    auto* h = static_cast<Heap*>(pthread_getspecific(key_));
    if (h == nullptr) {
      h = pool_.make_heap(id_);
      if (h == nullptr) return nullptr;
      h->owner = this;
      // The slot first: with 32 or more keys in use, pthread_setspecific callocs its
      // second-level table, and that calloc must find this heap, not make another.
      t_heap_ = TlsHeap{id_, h};
      // If it fails the heap still serves this thread; only the exit hook is lost
      // (its spans then stay with this heap, reachable, never leaked).
      pthread_setspecific(key_, h);
    }
    t_heap_ = TlsHeap{id_, h};
    return h;
  }

  static void on_thread_exit(void* arg) {
    auto* h = static_cast<Heap*>(arg);
    auto* self = static_cast<Allocator*>(h->owner);
    if (t_heap_.heap == h) t_heap_ = TlsHeap{kNoHeap, nullptr};
    if (self->paranoid_) self->spill_local_quarantine(h);  // a retired heap keeps no freed blocks
    {
      const LargeOp guard(*self);
      self->slot_to_cache(h);  // nor a large slot block
    }
    self->pool_.retire_heap(h);
  }

  // ------------------------------------------------------------ alloc path

  /// alloc_backed(), and in learn mode the large requests are counted (and one in
  /// learn_sample per thread timed and profiled).
  HAKMEM_ALWAYS_INLINE void* alloc_impl(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    // ensure_ready() first: learning_ is set by initialization, which the very first
    // call of the process may be about to run.
    if (__builtin_expect(size >= kMinThreshold && ensure_ready() && learning_, 0)) {
      // An unsampled request costs one decrement of a countdown in the thread's TLS slot
      // (a line the fast paths keep hot, unlike a Heap field, which bench B's page touches
      // evict). The sampled one goes out of line, so alloc_backed() has one inlined copy
      // here, which fixed mode and learn mode share.
      if (t_heap_.id != id_ || t_heap_.sample_countdown == 0) return alloc_sampled(size, align, site, origin, fresh);
      --t_heap_.sample_countdown;
    }
    return alloc_backed(size, align, site, origin, fresh);
  }

  /// A sampled large request in learn mode: timed, then booked by note_large().
  [[gnu::noinline]] void* alloc_sampled(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    const uint64_t t0 = cycles();
    void* p = alloc_backed(size, align, site, origin, fresh);
    if (p != nullptr) {
      const uint64_t t1 = cycles();
      note_large(size, site & kSiteMask, t1 - t0, t1);
    }
    return p;
  }

  HAKMEM_ALWAYS_INLINE void* alloc_backed(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    *fresh = false;
    if (!ensure_ready()) {
      errno = ENOMEM;
      return nullptr;
    }
    if (size > kMaxRequest || align > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    Heap* h = heap();
    if (h == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    if (__builtin_expect(paranoid_ && size == 0 && align <= kHeaderSize && origin == Origin::kMalloc, 0)) {
      // A unique address no byte can be read or written through; a full or unmappable
      // arena falls back to an ordinary (canaried) block. Only malloc's: the arena keeps no
      // origin, so new(0) gets an ordinary block and its delete is checked as usual.
      if (const uintptr_t z = zero_.alloc()) return reinterpret_cast<void*>(z);
    }
    // Strategy first: the threshold is read before any backing is touched (I3).
    const StrategySnapshot snap = selector_.snapshot();
    const uint64_t slack = align_slack(align);
    const uint64_t canary = canary_bytes();
    site &= kSiteMask;
    if (size < snap.threshold && size + canary + slack <= SizeClasses::kMaxUsable) {
      // At least one usable byte, so the user pointer lies inside its block even for
      // an aligned zero-size request (else it would be the next block's address).
      const size_t c = SizeClasses::class_of((size == 0 ? 1 : size) + canary + slack);
      const uintptr_t block = paranoid_ ? take_checked_pool_block(h, c) : pool_.alloc(h, c);
      if (block == 0) {
        errno = ENOMEM;
        return nullptr;
      }
      const uintptr_t hdr = header_for(block, align);
      track_alloc(block + kHeaderSize, hdr + kHeaderSize, SizeClasses::block_size(c) - (hdr - block) - kHeaderSize);
      write_headers(block, hdr, Method::kPool, origin, snap.id, size, site);
      if (paranoid_) hard_.write_canary(hdr + kHeaderSize + size);
      h->counters.pool_allocs[c].add(1);
      return reinterpret_cast<void*>(hdr + kHeaderSize);
    }
    if (align <= kHeaderSize && !paranoid_) {
      if (MapBlock* mb = take_slot(h, size)) return hand_out_slot_block(h, mb, size, site, origin, snap.id);
    }
    const LargeOp guard(*this);
    // Paranoid: the user pointer starts a page, so a freed block's user pages can be made
    // inaccessible while its header page stays readable for validation.
    const size_t map_align = paranoid_ && align < Pal::kPageSize ? Pal::kPageSize : align;
    const uint64_t payload = size + canary + align_slack(map_align);
    const uint32_t cls = LargeClasses::class_of(payload);
    MapBlock* mb = cache_.take(site, cls, payload, 0);
    if (mb != nullptr && paranoid_ && !unprotect_cached(mb)) {
      cache_.put(mb, site);  // still Cached and inaccessible: back where it was
      errno = ENOMEM;
      return nullptr;
    }
    if (mb == nullptr) {
      mb = map_.map(payload);
      if (mb == nullptr) {
        errno = ENOMEM;
        return nullptr;
      }
      *fresh = true;  // straight from mmap: already zero
    }
    const uintptr_t hdr = header_for(mb->base, map_align);
    track_alloc(mb->base + kHeaderSize, hdr + kHeaderSize, mb->capacity_at(hdr - mb->base), *fresh);
    mb->hdr_offset = hdr - mb->base;
    mb->state = State::kLive;
    write_headers(mb->base, hdr, Method::kMap, origin, snap.id, size, site);
    if (paranoid_) hard_.write_canary(hdr + kHeaderSize + size);
    h->counters.map_allocs.add(1);
    h->counters.map_held_bytes.add(static_cast<int64_t>(mb->length));
    return reinterpret_cast<void*>(hdr + kHeaderSize);
  }

  /**
   * Where the real header goes for an `align`-aligned user pointer in a block
   * at `block`: the block start when that already aligns the user pointer,
   * else at least 32 bytes in, so that neither the forward record at the block
   * start nor the free-list link a freed Pool block keeps at block + 16 can
   * overlap it (the real header of a freed block must survive for double-free
   * reports with size and site).
   */
  static uintptr_t header_for(uintptr_t block, size_t align) {
    if ((block + kHeaderSize) % align == 0) return block;
    return round_up(block + 3 * kHeaderSize, align) - kHeaderSize;
  }
  /// The most header_for() can move the header in: align + 16 (0 for plain 16-byte alignment).
  static constexpr uint64_t align_slack(size_t align) { return align > kHeaderSize ? align + kHeaderSize : 0; }

  HAKMEM_ALWAYS_INLINE void write_headers(uintptr_t block, uintptr_t hdr, Method method, Origin origin, uint8_t strategy, uint64_t size,
                     uintptr_t site) {
    if (hdr != block) {
      HeaderFields fwd;
      fwd.method = Method::kForward;
      fwd.size = hdr - block;
      codec_.encode(fwd, reinterpret_cast<void*>(block));
    }
    HeaderFields f;
    f.method = method;
    f.state = State::kLive;
    f.origin = origin;
    f.strategy = strategy;
    f.size = size;
    f.site = site;
    codec_.encode(f, reinterpret_cast<void*>(hdr));
  }

  // ------------------------------------------------------------ validation

  /**
   * Finds the block p belongs to and checks, in order: ownership (Registry,
   * before any byte near p is read), the canonical header at the block start
   * (checksum), that p is exactly the pointer handed out, the method against
   * the Registry, the state, and the origin.
   */
  HAKMEM_ALWAYS_INLINE Verdict locate(uintptr_t p, Origin origin, Located* at, bool check_origin = true) {
    if (__builtin_expect(paranoid_, 0)) {
      using Slot = typename ZeroArena<Pal>::Slot;
      switch (zero_.classify(p)) {
        case Slot::kOutside: break;
        case Slot::kLive:
          at->zero = true, at->block = at->header = p;
          // Zero-size slots are malloc's (alloc_backed): delete and delete[] of one are mismatches.
          if (check_origin && !origins_compatible(Origin::kMalloc, origin) && opts_.get(Opt::kOriginCheck) != 0) {
            return at->verdict = Verdict::kMismatchedOrigin;
          }
          return at->verdict = Verdict::kOk;
        case Slot::kFree: at->zero = true, at->block = at->header = p; return at->verdict = Verdict::kDoubleFree;
        case Slot::kInside: return at->verdict = Verdict::kMisaligned;
      }
    }
    Extent* e = registry_.lookup(p);
    at->extent = e;
    if (e == nullptr) return at->verdict = Verdict::kInvalidPointer;
    uintptr_t block = e->base;
    Method expected = Method::kMap;
    if (e->kind == ExtentKind::kPoolSpan) {
      block = Pool<Pal>::block_start(static_cast<Span*>(e), p);
      if (block == 0) return at->verdict = Verdict::kInvalidPointer;  // never handed out
      expected = Method::kPool;
    }
    if (!locate_block(e, block, at)) return at->verdict;
    if (p != at->header + kHeaderSize) return at->verdict = Verdict::kMisaligned;
    const Header& h = at->h;
    if (h.state() != State::kLive) return at->verdict = Verdict::kDoubleFree;
    if (h.method() != expected) return at->verdict = Verdict::kMethodMismatch;
    if (check_origin && !origins_compatible(h.origin(), origin) && opts_.get(Opt::kOriginCheck) != 0) {
      return at->verdict = Verdict::kMismatchedOrigin;
    }
    if (h.size() + canary_bytes() > capacity_of(*at)) return at->verdict = Verdict::kCorrupted;
    // Paranoid: the canary right after the requested size (the block is live, so readable).
    if (paranoid_ && !hard_.canary_intact(p + h.size())) return at->verdict = Verdict::kOverflow;
    return at->verdict = Verdict::kOk;
  }

  /// Checks the canonical header at `block` and follows a forward record. False (verdict set) when corrupt.
  HAKMEM_ALWAYS_INLINE bool locate_block(Extent* e, uintptr_t block, Located* at) {
    at->extent = e;
    at->block = block;
    at->header = block;
    Header h = HeaderCodec::load(reinterpret_cast<void*>(block));
    uint32_t sum;
    if (__builtin_expect(!codec_.valid(h, block, &sum), 0)) {
      at->verdict = Verdict::kCorrupted;
      return false;
    }
    if (__builtin_expect(h.method() == Method::kForward, 0)) {
      const uint64_t off = h.size();
      const uint64_t room = e->kind == ExtentKind::kPoolSpan ? static_cast<Span*>(e)->block_size : e->length;
      if (off == 0 || off % kHeaderSize != 0 || off + kHeaderSize > room) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
      at->header = block + off;
      h = HeaderCodec::load(reinterpret_cast<void*>(at->header));
      if (!codec_.valid(h, at->header, &sum) || h.method() == Method::kForward) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
    }
    at->h = h;
    at->sum = sum;
    at->header_ok = true;
    return true;
  }

  /// Bytes a paranoid block carries after its requested size (0 in the default mode).
  uint64_t canary_bytes() const { return paranoid_ ? kCanarySize : 0; }

  /// What the caller may use: the requested size in paranoid mode (the canary follows), else the room.
  uint64_t usable_of(const Located& at) const {
    if (at.zero) return 0;
    return paranoid_ ? at.h.size() : capacity_of(at);
  }

  /// Bytes from the located block's user pointer to the end of its block (its room).
  uint64_t capacity_of(const Located& at) const {
    const uint64_t offset = at.header - at.block;
    if (at.extent->kind == ExtentKind::kPoolSpan) {
      return static_cast<Span*>(at.extent)->block_size - offset - kHeaderSize;
    }
    return static_cast<MapBlock*>(at.extent)->capacity_at(offset);
  }

  /// Frees a block that locate() accepted: one re-seal of the header, one counter. `site` is the
  /// caller of the release (paranoid mode records it in the quarantined block).
  HAKMEM_ALWAYS_INLINE void commit_free(const Located& at, uintptr_t site) {
    if (__builtin_expect(at.zero, 0)) {
      zero_.free(at.block);
      return;
    }
    Heap* me = heap();  // a thread that only frees gets a heap too: its counters stay exact
    auto count = [this, me](OwnedCounter HeapCounters::*k, int64_t d) {
      if (me != nullptr) {
        (me->counters.*k).add(d);
      } else {
        (orphan_.*k).add_shared(d);  // no heap (metadata OOM): the shared fallback set
      }
    };
    if (at.extent->kind == ExtentKind::kPoolSpan) {
      auto* s = static_cast<Span*>(at.extent);
      HeaderCodec::store(codec_.resealed(at.h, at.sum, State::kFree), reinterpret_cast<void*>(at.header));

      OwnedCounter& frees = (me != nullptr ? me->counters : orphan_).pool_frees[s->cls];
      if (me != nullptr) {
        frees.add(1);
      } else {
        frees.add_shared(1);
      }
      if (paranoid_) {
        quarantine(me, s, at, site);
        return;
      }
      track_free(at.header + kHeaderSize, capacity_of(at), at.header == at.block ? sizeof(FreeBlock) : 0);
      pool_.free(me, s, at.block);
      return;
    }
    const LargeOp guard(*this);
    auto* mb = static_cast<MapBlock*>(at.extent);
    HeaderCodec::store(codec_.resealed(at.h, at.sum, State::kCached), reinterpret_cast<void*>(at.header));
    mb->state = State::kCached;
    count(&HeapCounters::map_frees, 1);
    count(&HeapCounters::map_held_bytes, -static_cast<int64_t>(mb->length));
    track_free(at.header + kHeaderSize, capacity_of(at));
    if (paranoid_) {
      // The user pages (from the page-aligned user pointer) fault until the block is reused;
      // the header page stays readable, so a double free is still reported, not a crash.
      const uintptr_t user = at.header + kHeaderSize;
      if (!pal_.protect(reinterpret_cast<void*>(user), mb->base + mb->length - user, Access::kNone, Layer::kCache)) {
        protect_failures_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    cache_.put(mb, at.h.site());  // keyed by the allocation site: "same place, same pattern"
  }

  // ------------------------------------------------------------ paranoid mode

  /**
   * The quarantine: freed Pool blocks wait, filled with a pattern, before they can be reused.
   * Each thread keeps its newest few (LocalQuarantine, at most quarantine/16 bytes); older
   * ones move to the shared FIFO (quarantine bytes), whose oldest leave it: their pattern is
   * checked, then they go back to the Pool. Its slots come from one lazily touched mapping.
   */
  void init_quarantine(uint64_t cap) {
    if (cap == 0) return;
    const uint64_t smallest = SizeClasses::block_size(0);
    uint64_t slots = cap / smallest;
    if (slots < 64) slots = 64;
    if (slots > (uint64_t{1} << 21)) slots = uint64_t{1} << 21;
    const uint64_t bytes = round_up(slots * sizeof(uint64_t), Pal::kPageSize);
    void* mem = pal_.map_sparse(bytes, Layer::kMeta);
    if (mem == nullptr) return;  // no quarantine: blocks are still filled and checked at reuse
    mapped_.fetch_add(bytes, std::memory_order_relaxed);
    shared_slots_ = static_cast<uint64_t*>(mem);
    shared_slots_bytes_ = bytes;
    shared_q_.init(shared_slots_, bytes / sizeof(uint64_t));
    quarantine_cap_ = cap;
    local_cap_ = cap / 16;
  }

  /// A validated Pool block's paranoid free: marked free, filled, and quarantined.
  void quarantine(Heap* me, Span* s, const Located& at, uintptr_t site) {
    const uintptr_t user = at.header + kHeaderSize;
    // The room holds the free-site record: usable sizes and header offsets are multiples of
    // 16, and the room exceeds the request by at least the canary, so it is 16 or more.
    static_assert(SizeClasses::usable(0) >= kFreedRecord && kCanarySize > 0);
    const uint64_t room = capacity_of(at);
    hard_.fill_freed(user, room, site & kSiteMask);
    if (quarantine_cap_ == 0) {  // no quarantine: straight back, checked when reused
      track_free(user, room, at.header == at.block ? sizeof(FreeBlock) : 0);
      pool_.free(me, s, at.block);
      return;
    }
    track_free(user, room, 0);  // the whole block is the allocator's until it leaves
    const uint64_t entry = BlockFifo::pack(at.block, s->cls);
    held_bytes_.fetch_add(s->block_size, std::memory_order_relaxed);
    held_blocks_.fetch_add(1, std::memory_order_relaxed);
    if (me == nullptr || s->block_size > local_cap_) {
      to_shared(me, entry);
      return;
    }
    BlockFifo& q = local_fifo(me);
    while (!q.empty() && (q.full() || q.bytes() + s->block_size > local_cap_)) to_shared(me, q.pop());
    q.push(entry);
  }

  BlockFifo& local_fifo(Heap* h) {
    LocalQuarantine& lq = h->quarantine;
    if (lq.fifo.capacity() == 0) lq.fifo.init(lq.slots, LocalQuarantine::kSlots);
    return lq.fifo;
  }

  /// Moves an entry into the shared FIFO; the oldest entries over the cap leave (outside the lock).
  void to_shared(Heap* me, uint64_t entry) {
    uint64_t out[8];
    size_t n = 0;
    {
      LockGuard g(quarantine_lock_);
      const uint64_t len = BlockFifo::length_of(entry);
      while (!shared_q_.empty() && n < 7 && (shared_q_.full() || shared_q_.bytes() + len > quarantine_cap_)) {
        out[n++] = shared_q_.pop();
      }
      if (shared_q_.full()) {
        out[n++] = entry;
      } else {
        shared_q_.push(entry);
      }
    }
    for (size_t i = 0; i < n; ++i) leave_quarantine(me, out[i]);
  }

  /// A thread's ring at its exit: everything moves to the shared FIFO.
  void spill_local_quarantine(Heap* h) {
    if (quarantine_cap_ == 0) return;
    BlockFifo& q = local_fifo(h);
    while (!q.empty()) to_shared(h, q.pop());
  }

  /**
   * A block leaves the quarantine: its header must still be a sealed free one, and its fill
   * intact (the free-site record and every pattern byte). Then it goes back to the Pool. A
   * write after free is reported with the allocation site (header) and the free site (record),
   * and the block is withheld: never reused.
   */
  void leave_quarantine(Heap* me, uint64_t entry) {
    const uintptr_t block = BlockFifo::block_of(entry);
    const uint64_t len = BlockFifo::length_of(entry);
    held_bytes_.fetch_sub(len, std::memory_order_relaxed);
    held_blocks_.fetch_sub(1, std::memory_order_relaxed);
    const FreedBlock f = view_freed(block);
    track_own(f.user, f.room);
    uintptr_t free_site = 0;
    const bool record_ok = hard_.read_record(f.user, &free_site);
    if (f.header_ok && record_ok && Hardening::fill_intact(f.user + kFreedRecord, f.user + f.room)) {
      track_park(f.user, f.room, f.at.header == f.at.block ? sizeof(FreeBlock) : 0);
      pool_.free(me, f.span, block);
      return;
    }
    withhold(f, free_site, len);
  }

  /**
   * pool_.alloc() for paranoid mode: a block that was freed before must still hold its fill
   * past the free-list link (a write after it left the quarantine); one that fails is
   * reported and withheld, and the next one is taken.
   */
  uintptr_t take_checked_pool_block(Heap* h, size_t c) {
    for (;;) {
      const uintptr_t block = pool_.alloc(h, c);
      if (block == 0) return 0;
      const Header raw = HeaderCodec::load(reinterpret_cast<void*>(block));
      if (raw.lo == 0 && raw.hi == 0) return block;  // carved for the first time: never freed
      const FreedBlock f = view_freed(block);
      track_own(f.user + kFreedRecord, f.room - kFreedRecord);
      if (f.header_ok && Hardening::fill_intact(f.user + kFreedRecord, f.user + f.room)) return block;
      withhold(f, 0, f.span->block_size);
    }
  }

  /// A block that was freed (quarantined, or on a free list), as its header describes it.
  struct FreedBlock {
    Span* span;
    Located at;
    bool header_ok;  ///< the header is intact and sealed Free (else size, site and offset are unknown)
    uintptr_t user;  ///< the user pointer (block + 16 when the header cannot say)
    uint64_t room;   ///< bytes from `user` to the block's end
  };
  FreedBlock view_freed(uintptr_t block) {
    FreedBlock f{static_cast<Span*>(registry_.lookup(block)), {}, false, 0, 0};  // spans outlive their blocks
    f.header_ok = locate_block(f.span, block, &f.at) && f.at.h.state() == State::kFree;
    f.at.header_ok = f.header_ok;  // a header overwritten after the free: the report names no size or site
    f.user = f.header_ok ? f.at.header + kHeaderSize : block + kHeaderSize;
    f.room = f.header_ok ? capacity_of(f.at) : f.span->block_size - kHeaderSize;
    return f;
  }

  /// Reports a write after free in a held block and keeps it out of use for good.
  void withhold(const FreedBlock& f, uintptr_t free_site, uint64_t len) {
    withheld_bytes_.fetch_add(len, std::memory_order_relaxed);
    report(Verdict::kWriteAfterFree, reinterpret_cast<void*>(f.user), f.at, free_site, Origin::kMalloc);
  }

  /// A cached Map block about to be reused: its user pages readable and writable again.
  bool unprotect_cached(MapBlock* mb) {
    return pal_.protect(reinterpret_cast<void*>(mb->base + Pal::kPageSize), mb->length - Pal::kPageSize,
                        Access::kReadWrite, Layer::kMap);
  }

  /// TestOnly audit of the quarantine: the rings hold exactly held_bytes_, every entry a sealed free block.
  void audit_quarantine(AuditResult& r) {
    uint64_t bytes = 0, blocks = 0;
    auto check = [&](uint64_t e) {
      bytes += BlockFifo::length_of(e);
      ++blocks;
      const uintptr_t block = BlockFifo::block_of(e);
      const Extent* x = registry_.lookup(block);
      if (x == nullptr || x->kind != ExtentKind::kPoolSpan || !view_freed(block).header_ok) {
        audit_fail(r, "quarantined block is not a sealed free Pool block", block, 0);
      }
    };
    shared_q_.for_each(check);
    pool_.for_each_heap_for_testing([&](Heap* h) { h->quarantine.fifo.for_each(check); });
    if (bytes != held_bytes_.load() || blocks != held_blocks_.load()) {
      audit_fail(r, "quarantine rings != held counters", bytes, held_bytes_.load());
    }
  }

  void report(Verdict v, const void* p, const Located& at, uintptr_t free_site, Origin free_origin,
              uint64_t claimed_size = 0) {
    errors_[static_cast<size_t>(v)].fetch_add(1, std::memory_order_relaxed);
    ErrorReport r;
    r.kind = v;
    r.claimed_size = claimed_size;
    r.ptr = p;
    r.free_site = free_site;
    r.free_origin = free_origin;
    if (at.header_ok && v != Verdict::kCorrupted) {
      r.size_known = true;
      r.size = at.h.size();
      r.alloc_site = at.h.site();
      r.alloc_origin = at.h.origin();
    }
    if (at.zero) r.size_known = true;  // a zero-size block (no header, no site)
    format_report(r, sink_, sink_arg_);
    if (opts_.get(Opt::kOnError) == kOnErrorAbort) abort();
  }

  uint64_t metadata_bytes() const {
    return registry_.mapped_bytes() + pool_.meta_bytes() + map_.meta_bytes() + zero_.meta_bytes() + shared_slots_bytes_;
  }

  static void audit_fail(AuditResult& r, const char* what, uint64_t a, uint64_t b) {
    if (!r.ok) return;
    r.ok = false;
    Out o(
        [](void* arg, const char* t, size_t n) {
          char* dst = static_cast<char*>(arg);
          const size_t have = strlen(dst);
          const size_t room = sizeof(AuditResult::failure) - 1 - have;
          memcpy(dst + have, t, n < room ? n : room);
        },
        r.failure);
    o.str(what).str(" (").dec(a).str(" vs ").dec(b).ch(')');
  }

  /// I2 and I3 for one live block.
  void check_live_block(AuditResult& r, const Located& at) {
    ++r.live_blocks;
    const Method expected = at.extent->kind == ExtentKind::kPoolSpan ? Method::kPool : Method::kMap;
    if (at.h.method() != expected) audit_fail(r, "I2 header method != Registry kind", at.block, 0);
    if (registry_.lookup(at.header + kHeaderSize) != at.extent) {
      audit_fail(r, "I2 Registry does not own the user pointer", at.block, 0);
    }
    const uint64_t thr = selector_.threshold_of(at.h.strategy());
    const bool map_expected =
        at.h.size() >= thr || at.h.size() + canary_bytes() + (at.header - at.block) > SizeClasses::kMaxUsable;
    if (map_expected != (expected == Method::kMap)) {
      audit_fail(r, "I3 method disagrees with the strategy in the header", at.h.size(), thr);
    }
  }

  template <class Get>
  uint64_t sum_heaps(Get&& get) {
    return static_cast<uint64_t>(pool_.sum_heaps(get) + get(orphan_));
  }
  uint64_t sum_counter(OwnedCounter HeapCounters::*c) {
    return sum_heaps([c](const HeapCounters& hc) { return (hc.*c).get(); });
  }

 private:
  Pal pal_{};
  Options opts_{};
  HeaderCodec codec_{};
  Registry<Pal> registry_{};
  Pool<Pal> pool_{};
  MapBacking<Pal> map_{};
  BatchReleaser<Pal> releaser_{};
  BigCache<Pal> cache_{};
  Selector selector_{};
  std::atomic<uint64_t> mapped_{0};
  std::atomic<uint64_t> errors_[static_cast<size_t>(Verdict::kCount)] = {};
  std::atomic<bool> ready_{false};
  SpinLock init_lock_;
  HeapCounters orphan_{};
  // Learn mode (ARCHITECTURE.md "Selector"): all touched at epoch boundaries, under epoch_lock_,
  // except the request count and deadline, which the large path reads.
  bool learning_ = false;
  Learner learner_{};
  SiteProfiles sites_{};
  SpinLock epoch_lock_;
  std::atomic<uint64_t> epoch_requests_{0};
  std::atomic<uint64_t> epoch_deadline_ns_{0};
  uint64_t epoch_target_ = 10000;
  uint64_t learn_sample_ = 16;
  uint64_t epoch_ns_ = 2000000000;
  uint64_t epoch_seen_requests_ = 0, epoch_seen_cycles_ = 0, epoch_cycles_ = 0;
  // Early end of a clearly losing epoch: each strategy's latest measured large-path cycles per
  // request (boundaries only), and the running epoch's bound and sampled cycles (large path).
  uint64_t measured_cpr_[kLearnableStrategies] = {};
  uint64_t early_end_ = 8;
  uint64_t early_after_ = 625;
  std::atomic<uint64_t> early_end_cpr_{0};
  std::atomic<uint64_t> epoch_cycles_acc_{0};
  SizeSignature epoch_bands_{};
  ProcessCost process_cost_{};
  CostSource* cost_source_ = nullptr;
  std::atomic<uint32_t> large_ops_{0};     ///< large operations in flight (fork waits for 0)
  std::atomic<bool> fork_pending_{false};  ///< set by prepare_fork: new large operations wait
  uint64_t id_ = 0;
  uint64_t slot_max_ = 0;  ///< largest block a thread's large slot keeps (0: no slot)
  uint64_t fast_id_ = 0;  ///< what the fast paths compare a thread's heap id with: id_, or 0 (paranoid)
  pthread_key_t key_ = 0;
  // Paranoid mode (hardening=paranoid).
  bool paranoid_ = false;
  Hardening hard_{};
  ZeroArena<Pal> zero_{};
  SpinLock quarantine_lock_;
  BlockFifo shared_q_{};
  uint64_t* shared_slots_ = nullptr;
  uint64_t shared_slots_bytes_ = 0;
  uint64_t quarantine_cap_ = 0;
  uint64_t local_cap_ = 0;
  std::atomic<uint64_t> held_bytes_{0};      ///< Pool bytes quarantined (rings)
  std::atomic<uint64_t> held_blocks_{0};
  std::atomic<uint64_t> withheld_bytes_{0};  ///< Pool bytes never reused after a write-after-free report
  std::atomic<uint64_t> protect_failures_{0};
  WriteFn sink_ = write_stderr;
  void* sink_arg_ = nullptr;
};

}  // namespace hakmem
