// Allocator<Config>: connects the layers and the front's components; every free validated.
#pragma once

#include <errno.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>

#include "backing/backing.h"
#include "cache/cache.h"
#include "core/core.h"
#include "front/audit.h"
#include "front/config.h"
#include "front/epoch_driver.h"
#include "front/fork.h"
#include "front/hardening.h"
#include "front/large_slot.h"
#include "front/map_path.h"
#include "front/pool_path.h"
#include "front/quarantine.h"
#include "front/realloc.h"
#include "front/stats.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "front/wiring.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"
#include "select/select.h"

namespace hakmem {

/**
 * The allocator, parameterized by a Config that names its platform (config.h). A constinit
 * instance is the process allocator (initialized by its first call); tests build their own and
 * must call teardown() (ScopedAllocator does), which returns every byte through the releaser.
 *
 * It owns the layers and the front's components and connects them; each component keeps its own
 * state, locks, stats and audit. Each path's name says which tier calls it (front/README.md,
 * "Paths"): alloc -> alloc_slow -> alloc_slow_general -> alloc_general -> alloc_backed, and free
 * -> free_fast_pool | free_fast_slot -> free_general -> free_commit.
 */
template <class Config>
class Allocator {
public:
  using Pal = typename Config::Pal;
  static_assert(Platform<Pal>);
  using PoolT = Pool<Pal, ThreadHeap>;
  using Threads = ThreadState<Allocator, PoolT>;

  constexpr Allocator() = default;
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  /// Initializes with explicit options (tests) unless already initialized.
  bool init(const Options& options) {
    LockGuard g(init_lock_);
    return ready() || AllocatorWiring::run<Config>(*this, options);
  }

  /// Initializes from `defaults` (hakmem_default_options()) and HAKMEM_OPTIONS, unless already initialized.
  bool init_from_environment(const char* defaults) {
    LockGuard g(init_lock_);
    return ready() || AllocatorWiring::run<Config>(*this, options_from_environment(defaults));
  }

  bool ready() const { return ready_.load(std::memory_order_acquire); }

  /// The platform (tests use it to inject failures or read the call log).
  Pal& pal() { return pal_; }
  const Options& options() const { return opts_; }
  Selector& selector() { return selector_; }
  /// Where reports go (stderr by default); tests capture them.
  void set_report_sink(WriteFn fn, void* arg) { reporter_.set_sink(fn, arg); }

  // ---------------------------------------------------------------- allocation

  /**
   * `size` bytes, 16-aligned; nullptr with errno ENOMEM on failure. The fast path: the thread
   * has its heap, the size is below the smallest threshold (Pool under every strategy, I3), and
   * the class's head span has a free block. An empty list is refilled by alloc_refill(), any
   * other request goes to alloc_slow(), both by tail calls (no stack frame here).
   */
  HAKMEM_FAST_PATH void* alloc(size_t size, uintptr_t site, Origin origin = Origin::kMalloc) {
    if (__builtin_expect(fast_gate(size), 1)) {
      ThreadHeap* h = Threads::tls.heap;
      const size_t c = SizeClasses::class_of(size);
      if (void* p = take_head(h, c, size, origin); __builtin_expect(p != nullptr, 1)) return p;
      return alloc_refill(h, c, size, origin);
    }
    return alloc_slow(size, site, origin);
  }

  /**
   * alloc()'s fast path alone: the block, or nullptr (nothing changed, errno untouched) where
   * alloc() would take a slow path. For entry points whose slow path is not alloc()'s (operator
   * new's new-handler loop): they tail-call it, and keep no stack frame on the fast path.
   */
  HAKMEM_FAST_PATH void* alloc_fast(size_t size, Origin origin) {
    if (__builtin_expect(fast_gate(size), 1))
      return take_head(Threads::tls.heap, SizeClasses::class_of(size), size, origin);
    return nullptr;
  }

  /// `size` bytes aligned to `align` (a power of two); EINVAL for a bad alignment.
  void* aligned_alloc(size_t align, size_t size, uintptr_t site, Origin origin = Origin::kAligned) {
    if (!is_pow2(align)) {
      errno = EINVAL;
      return nullptr;
    }
    bool fresh;
    return alloc_general(size, align < kHeaderSize ? kHeaderSize : align, site, origin, &fresh);
  }

  /// n * size zeroed bytes; overflow gives nullptr with ENOMEM, never a short block.
  void* calloc(size_t n, size_t size, uintptr_t site) {
    size_t total;
    if (mul_overflows(n, size, &total) || total > kMaxRequest) {
      errno = ENOMEM;
      return nullptr;
    }
    bool fresh = false;
    void* p = alloc_general(total, kHeaderSize, site, Origin::kMalloc, &fresh);
    if (p != nullptr && !fresh) memset(p, 0, total);
    return p;
  }

  /// Resizes, keeping min(old, new) bytes (I5): AllocatorRealloc (realloc.h). A bad pointer is
  /// reported like a bad free and gives nullptr; on ENOMEM the old block is untouched.
  void* realloc(void* p, size_t size, uintptr_t site) { return AllocatorRealloc::run(*this, p, size, site); }

  // ---------------------------------------------------------------- release

  /// Frees p after validating it. A misuse is reported and nothing is changed; the verdict is
  /// returned (only reachable with on_error=report: the default aborts).
  HAKMEM_FAST_PATH Verdict free(void* p, uintptr_t site, Origin origin = Origin::kMalloc) {
    if (__builtin_expect(free_fast(p, origin), 1)) return Verdict::kOk;
    return free_general(p, site, origin);
  }

  /// free()'s fast paths, free_fast_pool() and free_fast_slot(): true when p is now freed. False
  /// changes nothing: the caller goes on to free_general(), which diagnoses every misuse.
  HAKMEM_FAST_PATH bool free_fast(void* p, Origin origin, uint64_t sized = kUnsized) {
    MapBlock* mb = nullptr;
    if (__builtin_expect(free_fast_pool(p, origin, sized, &mb), 1)) return true;
    return mb != nullptr && free_fast_slot(mb, reinterpret_cast<uintptr_t>(p), origin, sized);
  }

  /**
   * free() from a libc or C++ entry point: free_fast_pool(), then free_entry_large() or
   * free_general() by tail calls, so only the Pool path needs the registers it saves. free(NULL)
   * returns at once. The free site for reports is the entry point's caller, read only on those
   * two ways out: this function is always inlined into the entry point, whose return address
   * __builtin_return_address(0) then is, and the Pool path keeps no register for it.
   */
  HAKMEM_FAST_PATH void free_entry(void* p, Origin origin) {
    if (p == nullptr) return;
    MapBlock* mb = nullptr;
    if (__builtin_expect(free_fast_pool(p, origin, kUnsized, &mb), 1)) return;
    const auto site = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    if (mb != nullptr) {
      free_entry_large(mb, reinterpret_cast<uintptr_t>(p), site, origin);
    } else {
      free_general(p, site, origin);
    }
  }

  /// A sized release (C++ sized delete, C23 free_sized): as free(), and the size must be the one
  /// the block was allocated with, or it is reported as a size mismatch and nothing is freed.
  Verdict free_sized(void* p, size_t size, uintptr_t site, Origin origin) {
    if (p == nullptr) return Verdict::kOk;
    if (__builtin_expect(size != kUnsized && free_fast(p, origin, size), 1)) return Verdict::kOk;
    return free_sized_general(p, size, site, origin);
  }

  /**
   * free_sized() from a libc or C++ entry point, shaped as free_entry(): the Pool fast path with
   * the size checked (as fast as an unsized free), else free_entry_sized_large() or
   * free_sized_general() by tail calls, the caller's address read only there.
   */
  HAKMEM_FAST_PATH void free_entry_sized(void* p, size_t size, Origin origin) {
    if (p == nullptr) return;
    MapBlock* mb = nullptr;
    if (__builtin_expect(size != kUnsized && free_fast_pool(p, origin, size, &mb), 1)) return;
    const auto site = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
    if (mb != nullptr) {
      free_entry_sized_large(mb, p, size, site, origin);
    } else {
      free_sized_general(p, size, site, origin);
    }
  }

  /// Bytes usable at p; 0 (and a report) for a pointer that is not a live block. In paranoid
  /// mode exactly the bytes requested: the canary follows them.
  size_t usable_size(const void* p) {
    if (p == nullptr || !ensure_ready()) return 0;
    Located at;
    const Verdict v = validator_.locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at, /*check_origin=*/false);
    if (v != Verdict::kOk) {
      reporter_.report(v, p, at, 0, Origin::kMalloc);
      return 0;
    }
    return static_cast<size_t>(validator_.usable_of(at));
  }

  /// Validates p without changing anything (no report): what free would say.
  Verdict check(const void* p, Origin origin = Origin::kMalloc) {
    if (!ensure_ready()) return Verdict::kInvalidPointer;
    Located at;
    return validator_.locate(reinterpret_cast<uintptr_t>(p), origin, &at);
  }

  /// Sets the fixed mmap threshold (mallopt M_MMAP_THRESHOLD); false when out of range. Blocks
  /// already allocated keep the strategy their header records (I3 is per block).
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
    const ForkGate::LargeOp guard(gate_);
    ThreadHeap* own = threads_.has_heap() ? Threads::tls.heap : nullptr;
    if (own != nullptr) slots_.to_cache(cache_, own->slot, own->counters);
    cache_.drain();
    releaser_.flush();
    if (!paranoid_) pool_.purge_empty(own, [this](PageRange* r, size_t n) { releaser_.purge(r, n); });
  }

  /// TestOnly: releases what is pending without touching the cache.
  void flush_pending_for_testing() {
    if (ready()) releaser_.flush();
  }

  // ---------------------------------------------------------------- stats

  /// Every counter at one moment; each component fills its own part (AllocatorStats).
  StatsSnapshot stats() {
    if (!ensure_ready()) return StatsSnapshot{};
    return AllocatorStats::collect(*this);
  }

  void print_stats(WriteFn fn, void* arg, bool json = false) {
    (json ? print_stats_json : print_stats_table)(stats(), fn, arg);
  }

  uint64_t error_count(Verdict v) const { return reporter_.count(v); }

  // ---------------------------------------------------------------- learn mode

  /// The learner (leaderboard, lifecycle), for stats and tests.
  const Learner& learner() const { return driver_.learner(); }
  bool learning() const { return driver_.learning(); }
  /// TestOnly: the epoch driver (tests set its cost source and end epochs at will).
  EpochDriver<Pal, PoolT>& epoch_driver_for_testing() { return driver_; }

  // ---------------------------------------------------------------- tests

  /// TestOnly: header fields and backing of a live block (AllocatorAudit).
  BlockInfo inspect(const void* p) {
    if (!ensure_ready()) return BlockInfo{};
    return AllocatorAudit::inspect(*this, p);
  }

  /// TestOnly: the codec (tests forge and inspect Map headers with it).
  const HeaderCodec& codec_for_testing() const { return codec_; }
  /// TestOnly: the Pool seal (tests forge and inspect Pool words and links with it).
  const PoolSeal& pool_seal_for_testing() const { return pool_.seal(); }
  /// TestOnly: the Registry.
  Registry<Pal>& registry_for_testing() { return registry_; }
  const PoolArena<Pal>& pool_arena_for_testing() const { return pool_.arena(); }

  /// TestOnly: walks every structure and checks I2, I3, I4, I6 and I7 (AllocatorAudit). The
  /// caller guarantees no other thread is using the allocator.
  AuditResult audit() { return AllocatorAudit::run(*this); }

  /// Tests only (the process allocator is never torn down): every byte goes back to the OS through
  /// the releaser, and all state is forgotten.
  void teardown() {
    if (!ready()) return;
    pool_.for_each_heap([this](ThreadHeap* h) { slots_.to_cache(cache_, h->slot, h->counters); });
    cache_.drain();
    releaser_.flush();
    auto give = [this](uintptr_t base, size_t len) { releaser_.add_raw(base, len); };
    pool_.release_all(give);
    map_.release_all(give);
    zero_.release_all(give);
    quarantine_.release_all(give);
    releaser_.flush();
    registry_.release_tables(give);
    releaser_.flush();
    threads_.teardown();
    ready_.store(false, std::memory_order_release);
  }

  /// The fork protocol (pthread_atfork; AllocatorFork in fork.h).
  void prepare_fork() { AllocatorFork::prepare(*this); }
  void parent_after_fork() { AllocatorFork::parent(*this); }
  void child_after_fork() { AllocatorFork::child(*this); }

private:
  friend Threads;
  friend struct AllocatorAudit;
  friend struct AllocatorFork;
  friend struct AllocatorRealloc;
  friend struct AllocatorStats;
  friend struct AllocatorWiring;

  /// The components in the order a fork disables them (enabled in reverse): a path that holds
  /// one component's lock may take only those after it.
  auto fork_order() { return std::tie(driver_, cache_, releaser_, map_, quarantine_, zero_, pool_, registry_); }

  bool ensure_ready() {
    if (__builtin_expect(ready_.load(std::memory_order_acquire), 1)) return true;
    return init_from_environment(default_options_of<Config>());
  }

  /// A thread with a heap is exiting (ThreadState's key destructor): its quarantined blocks,
  /// its slot block and its spans go where other threads find them.
  void thread_exiting(ThreadHeap* h) {
    if (paranoid_) pool_path_.spill(h);
    {
      const ForkGate::LargeOp guard(gate_);
      slots_.to_cache(cache_, h->slot, h->counters);
    }
    pool_.retire_heap(h);
  }

  // ------------------------------------------------------------ alloc tiers

  /// Whether alloc() may take its fast path: the thread has its heap (and the mode allows fast paths), and the
  /// size is below the smallest threshold (Pool under every strategy, I3), so its class is one table load.
  HAKMEM_FAST_PATH bool fast_gate(size_t size) const {
    static_assert(kMinThreshold - 1 <= SizeClasses::kLookupMax && kMaxThreshold <= SizeClasses::kMaxUsable);
    return size < kMinThreshold && Threads::tls.id == threads_.fast_id();
  }

  /// The fast paths' block: the first free block of class c's head span in heap h, handed out
  /// with its prefix written; nullptr (nothing changed) when there is none.
  HAKMEM_FAST_PATH void* take_head(ThreadHeap* h, size_t c, size_t size, Origin origin) {
    uintptr_t u;
    uint64_t key;
    if (__builtin_expect(!PoolPath<Pal>::pop_head(pool_, h, c, &u, &key), 0)) return nullptr;
    return PoolPath<Pal>::hand_out_at(pool_.seal(), h, c, u, key, size, origin, selector_.current_id());
  }

  /// alloc() when class c's head span has no free block: carving, draining, adopting or mapping.
  /// (A Pool block in the default mode keeps no allocation site: none is passed.)
  HAKMEM_SLOW_PATH void* alloc_refill(ThreadHeap* h, size_t c, size_t size, Origin origin) {
    const uintptr_t block = pool_.alloc(h, c);
    if (block == 0) {
      errno = ENOMEM;
      return nullptr;
    }
    return PoolPath<Pal>::hand_out(pool_.seal(), h, c, block, size, origin, selector_.current_id());
  }

  /**
   * alloc() past its fast path. Two short paths read the strategy first (I3): a Pool size below
   * the threshold in force whose class has a free block (alloc_slow_pool()), and a large request
   * the thread's slot serves. In learn mode each costs its countdown step; the sampled request
   * (countdown 0) and everything else go to the general path, by tail calls.
   */
  HAKMEM_SLOW_PATH void* alloc_slow(size_t size, uintptr_t site, Origin origin) {
    if (__builtin_expect(
            Threads::tls.id == threads_.fast_id() && (!driver_.learning() || Threads::tls.sample_countdown != 0), 1)) {
      const StrategySnapshot snap = selector_.snapshot();
      ThreadHeap* h = Threads::tls.heap;
      if (size < snap.threshold) return alloc_slow_pool(h, size, site, origin, snap.id);
      if (MapBlock* mb = LargeSlots<Pal>::take(h->slot, size)) {  // Map under the strategy just read (I3)
        if (driver_.learning()) --Threads::tls.sample_countdown;
        return LargeSlots<Pal>::hand_out(codec_, h->slot, mb, size, site, origin, snap.id);
      }
    }
    return alloc_slow_general(size, site, origin);
  }

  /// alloc_slow() for a Pool size at or past the smallest threshold: class c's head span's free
  /// block when it has one, else the general path.
  HAKMEM_SLOW_PATH void* alloc_slow_pool(ThreadHeap* h, size_t size, uintptr_t site, Origin origin, uint8_t strategy) {
    const size_t c = SizeClasses::class_of(size);
    uintptr_t u;
    uint64_t key;
    if (PoolPath<Pal>::pop_head(pool_, h, c, &u, &key)) {
      if (driver_.learning()) --Threads::tls.sample_countdown;  // (size >= kMinThreshold here)
      return PoolPath<Pal>::hand_out_at(pool_.seal(), h, c, u, key, size, origin, strategy);
    }
    return alloc_slow_general(size, site, origin);
  }

  /// alloc_general() for a plain malloc-style request (16-byte alignment).
  HAKMEM_SLOW_PATH void* alloc_slow_general(size_t size, uintptr_t site, Origin origin) {
    bool fresh;
    return alloc_general(size, kHeaderSize, site, origin, &fresh);
  }

  /**
   * Every request's full path: alloc_backed(), and in learn mode the large requests counted, one
   * in learn_sample per thread timed and profiled (alloc_general_sampled()). *fresh: the block
   * came straight from mmap (already zero).
   */
  HAKMEM_FAST_PATH void* alloc_general(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    // ensure_ready() first: the very first call of the process may be about to set learn mode.
    // The sampled request goes out of line, so fixed and learn mode share one alloc_backed().
    if (__builtin_expect(size >= kMinThreshold && ensure_ready() && driver_.learning(), 0)) {
      if (!threads_.has_heap() || Threads::tls.sample_countdown == 0) {
        return alloc_general_sampled(size, align, site, origin, fresh);
      }
      --Threads::tls.sample_countdown;
    }
    return alloc_backed(size, align, site, origin, fresh);
  }

  /// A sampled large request in learn mode: timed, then booked by the epoch driver.
  HAKMEM_SLOW_PATH void* alloc_general_sampled(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    const uint64_t t0 = cycles();
    void* p = alloc_backed(size, align, site, origin, fresh);
    if (p != nullptr && threads_.has_heap()) {  // (no heap: the allocation failed before one existed)
      const uint64_t t1 = cycles();
      Threads::tls.sample_countdown = static_cast<uint32_t>(driver_.sample() - 1);
      driver_.note_large(Threads::tls.heap->learn, Threads::tls.clock_checked, size, site & kSiteMask, t1 - t0, t1);
    }
    return p;
  }

  /// A request on its backing: the zero-size arena, a Pool class (PoolPath), the thread's slot
  /// (LargeSlots), or a Map block (MapPath), chosen by the strategy in force, read first (I3).
  HAKMEM_FAST_PATH void* alloc_backed(size_t size, size_t align, uintptr_t site, Origin origin, bool* fresh) {
    *fresh = false;
    ThreadHeap* h = nullptr;
    if (!ensure_ready() || size > kMaxRequest || align > kMaxRequest || (h = threads_.heap()) == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    if (__builtin_expect(paranoid_ && size == 0 && align <= kHeaderSize && origin == Origin::kMalloc, 0)) {
      // A unique address no byte can be read or written through; a full or unmappable arena
      // falls back to an ordinary (canaried) block. Only malloc's: the arena keeps no origin, so
      // new(0) gets an ordinary block and its delete is checked as usual.
      if (const uintptr_t z = zero_.alloc()) return reinterpret_cast<void*>(z);
    }
    const StrategySnapshot snap = selector_.snapshot();
    site &= kSiteMask;
    if (size < snap.threshold && pool_path_.fits(size, align))
      return pool_path_.acquire(h, size, align, site, origin, snap.id);
    if (align <= kHeaderSize && !paranoid_) {
      if (MapBlock* mb = LargeSlots<Pal>::take(h->slot, size))
        return LargeSlots<Pal>::hand_out(codec_, h->slot, mb, size, site, origin, snap.id);
    }
    return map_path_.acquire(h->counters, size, align, site, origin, snap.id, fresh);
  }

  // ------------------------------------------------------------ free tiers

  /// The Pool fast free: true when p was a plain Pool block, live, of origin `origin` (and size `sized`), and is
  /// now freed, after Validator::locate()'s checks: ownership (the Pool arena's table, else the Registry), then
  /// PoolPath::free_fast(). False changes nothing, and sets *mb to p's Map block when p lies in one (and this
  /// thread may take the fast path). The arena needs no heap-id gate: it is empty until init and in paranoid mode,
  /// and the thread's heap is only compared with the span's owner.
  HAKMEM_FAST_PATH bool free_fast_pool(void* p, Origin origin, uint64_t sized, MapBlock** mb) {
    const auto u = reinterpret_cast<uintptr_t>(p);
    const auto remote = [this](Span* s, uintptr_t user) { free_fast_remote(s, user); };
    bool in_arena;
    Span* s = pool_.arena().span_of(u, &in_arena);
    if (__builtin_expect(in_arena, 1)) {
      if (__builtin_expect(s == nullptr, 0)) return false;
      return pool_path_.free_fast(pool_, s, u, origin, sized, Threads::tls.heap, remote);
    }
    if (__builtin_expect(Threads::tls.id != threads_.fast_id(), 0)) return false;  // also: not ready, or paranoid
    Extent* e = registry_.lookup_initialized(u);
    if (__builtin_expect(e == nullptr, 0)) return false;
    if (__builtin_expect(e->kind != ExtentKind::kPoolSpan, 0)) {
      if (e->kind == ExtentKind::kMapBlock) *mb = static_cast<MapBlock*>(e);
      return false;
    }
    return pool_path_.free_fast(pool_, static_cast<Span*>(e), u, origin, sized, Threads::tls.heap, remote);
  }

  /// free_fast_pool()'s block not on the thread's own partial list: a thread that only frees gets a heap.
  HAKMEM_SLOW_PATH void free_fast_remote(Span* s, uintptr_t u) noexcept {
    pool_path_.free_remote(threads_.heap(), s, u);
  }

  /// free_fast()'s Map half: the block into the thread's large slot (free_fast_pool() checked the heap id).
  HAKMEM_SLOW_PATH bool free_fast_slot(MapBlock* mb, uintptr_t u, Origin origin, uint64_t sized) noexcept {
    return slots_.put(codec_, Threads::tls.heap->slot, mb, u, origin, sized);
  }

  /// free_entry()'s Map half: the thread's large slot, else every check with a report.
  HAKMEM_SLOW_PATH void free_entry_large(MapBlock* mb, uintptr_t u, uintptr_t site, Origin origin) noexcept {
    if (!slots_.put(codec_, Threads::tls.heap->slot, mb, u, origin, kUnsized))
      free_general(reinterpret_cast<void*>(u), site, origin);
  }

  /// free_entry_sized()'s Map half: the thread's large slot, else every check with a report.
  HAKMEM_SLOW_PATH void free_entry_sized_large(MapBlock* mb, void* p, size_t size, uintptr_t site,
                                               Origin origin) noexcept {
    if (size != kUnsized && free_fast_slot(mb, reinterpret_cast<uintptr_t>(p), origin, size)) return;
    free_sized_general(p, size, site, origin);
  }

  /// free_sized() without the fast paths: every check, the size included, with a report on
  /// failure. Never changes errno.
  HAKMEM_SLOW_PATH Verdict free_sized_general(void* p, size_t size, uintptr_t site, Origin origin) noexcept {
    const int saved_errno = errno;
    Verdict v = Verdict::kInvalidPointer;
    if (ensure_ready()) {
      Located at;
      v = validator_.locate(reinterpret_cast<uintptr_t>(p), origin, &at);
      if (v == Verdict::kOk && at.f.size != size) v = Verdict::kSizeMismatch;
      if (v != Verdict::kOk) {
        reporter_.report(v, p, at, site, origin, size);
      } else {
        free_commit(at, site);
      }
    }
    errno = saved_errno;
    return v;
  }

  /// free() without the fast paths: every check in order, with a report on failure. Never
  /// changes errno (the fast paths cannot; this one may make syscalls).
  HAKMEM_SLOW_PATH Verdict free_general(void* p, uintptr_t site, Origin origin) noexcept {
    if (p == nullptr) return Verdict::kOk;
    const int saved_errno = errno;
    Verdict v = Verdict::kInvalidPointer;
    if (ensure_ready()) {
      Located at;
      v = validator_.locate(reinterpret_cast<uintptr_t>(p), origin, &at);
      if (v != Verdict::kOk) {
        reporter_.report(v, p, at, site, origin);
      } else {
        free_commit(at, site);
      }
    }
    errno = saved_errno;
    return v;
  }

  /// Frees a block Validator::locate() accepted: one re-seal of the header, one counter. `site`
  /// is the caller of the release (paranoid mode records it in the quarantined block).
  HAKMEM_FAST_PATH void free_commit(const Located& at, uintptr_t site) {
    if (__builtin_expect(at.zero, 0)) {
      zero_.free(at.block);
      return;
    }
    ThreadHeap* me = threads_.heap();  // a thread that only frees gets a heap too: its counters stay exact
    if (at.extent->kind == ExtentKind::kPoolSpan) {
      pool_path_.release(at, me, site);
    } else {
      map_path_.release(at, me != nullptr ? &me->counters : nullptr, pool_.orphan_counters());
    }
  }

  /// Bytes of every component's metadata (I7's last term).
  uint64_t metadata_bytes() const {
    return registry_.mapped_bytes() + pool_.meta_bytes() + map_.meta_bytes() + zero_.meta_bytes() +
           quarantine_.meta_bytes();
  }

  Pal pal_{};
  Options opts_{};
  HeaderCodec codec_{};
  Registry<Pal> registry_{};
  PoolT pool_{};
  MapBacking<Pal> map_{};
  BatchReleaser<Pal> releaser_{};
  BigCache<Pal> cache_{};
  Selector selector_{};
  Validator<Pal> validator_{};
  PoolPath<Pal> pool_path_{};
  MapPath<Pal> map_path_{};
  Reporter reporter_{};
  LargeSlots<Pal> slots_{};
  EpochDriver<Pal, PoolT> driver_{};
  Threads threads_{};
  ForkGate gate_{};
  std::atomic<uint64_t> mapped_{0};
  std::atomic<bool> ready_{false};
  SpinLock init_lock_;
  // Paranoid mode (hardening=paranoid).
  bool paranoid_ = false;
  Hardening hard_{};
  ZeroArena<Pal> zero_{};
  Quarantine<Pal> quarantine_{};
};

}  // namespace hakmem
