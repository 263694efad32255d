// Thread state: each thread's heap, found through one TLS slot, and its exit hook.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "front/epoch_driver.h"
#include "front/large_slot.h"
#include "front/quarantine.h"

namespace hakmem {

/// A thread's heap as the front keeps it: backing's Heap (span lists, counters) plus the
/// front's per-thread state, which backing knows nothing about.
struct ThreadHeap : Heap {
  LargeSlotCell slot;          ///< the thread's large slot and its counters (LargeSlots)
  LearnCounters learn;         ///< learn mode: the thread's sampled large requests (EpochDriver)
  void* owner = nullptr;       ///< the allocator the heap belongs to (for the thread-exit hook)
  LocalQuarantine quarantine;  ///< paranoid mode: this thread's newest freed blocks (owner only)
};

/**
 * Which heap serves the calling thread. The fast paths read one thread-local slot, `tls`: its
 * id equals the allocator's id once the thread has a heap of this allocator, so a fast path
 * needs no readiness check of its own. `Host` (the allocator) gets its threads' exits through
 * Host::thread_exiting(ThreadHeap*), run by the thread's pthread key destructor.
 *
 * Ids are per Host type and never reused (a torn-down test allocator's id matches no thread's
 * slot); 0 means "not initialized", and kNoHeap, the empty slot's id, matches no allocator.
 */
template <class Host, class PoolT>
class ThreadState {
public:
  struct Tls {
    uint64_t id;
    ThreadHeap* heap;
    uint32_t sample_countdown = 0;  ///< learn mode: large requests until this thread's next sampled one
    uint64_t clock_checked = 0;     ///< learn mode: cycles() when this thread last read the clock
  };
  static constexpr uint64_t kNoHeap = ~uint64_t{0};
  static inline thread_local Tls tls = {kNoHeap, nullptr};

  /**
   * Gives the allocator an id (a new one after a teardown) and the key whose destructor runs the
   * exit hook. `fast`: whether the fast paths may run; when false (paranoid mode) fast_id() is
   * 0, which no thread's slot holds, so every call takes the general path.
   */
  bool init(Host* host, PoolT* pool, bool fast) {
    host_ = host;
    pool_ = pool;
    if (id_ == 0) id_ = next_id();
    if (pthread_key_create(&key_, &on_exit) != 0) return false;
    fast_id_ = fast ? id_ : 0;
    return true;
  }

  /// Teardown: the key goes, and a later init() gets a new id, so no thread's slot survives. The
  /// calling thread's slot is emptied (a free compares its heap with span owners before the id:
  /// Allocator::free_fast_pool()); every other thread that used the allocator has exited.
  void teardown() {
    if (tls.id == id_) tls = Tls{kNoHeap, nullptr};
    pthread_key_delete(key_);
    id_ = 0;
    fast_id_ = 0;
  }

  /// What the fast paths compare tls.id with.
  HAKMEM_FAST_PATH uint64_t fast_id() const { return fast_id_; }
  /// True when the calling thread's slot holds its heap of this allocator.
  HAKMEM_FAST_PATH bool has_heap() const { return tls.id == id_; }

  /// The calling thread's heap, made on its first call; nullptr when metadata cannot be mapped.
  HAKMEM_FAST_PATH ThreadHeap* heap() {
    if (__builtin_expect(tls.id == id_, 1)) return tls.heap;
    return heap_slow();
  }

  /// The calling thread's heap if it has one (never makes one).
  ThreadHeap* heap_if_present() {
    if (tls.id == id_) return tls.heap;
    return static_cast<ThreadHeap*>(pthread_getspecific(key_));
  }

private:
  HAKMEM_SLOW_PATH ThreadHeap* heap_slow() {
    auto* h = static_cast<ThreadHeap*>(pthread_getspecific(key_));
    if (h == nullptr) {
      h = pool_->make_heap(id_);
      if (h == nullptr) return nullptr;
      h->owner = host_;
      // The slot first: with 32 or more keys in use, pthread_setspecific callocs its second-level
      // table, and that calloc must find this heap, not make another.
      tls = Tls{id_, h};
      // If it fails the heap still serves this thread; only the exit hook is lost (its spans then
      // stay with this heap, reachable, never leaked).
      pthread_setspecific(key_, h);
    }
    tls = Tls{id_, h};
    return h;
  }

  static void on_exit(void* arg) {
    auto* h = static_cast<ThreadHeap*>(arg);
    if (tls.heap == h) tls = Tls{kNoHeap, nullptr};
    static_cast<Host*>(h->owner)->thread_exiting(h);
  }

  /// Ids start at 2: 1 was the process allocator's fixed id, and 0 means "not initialized".
  static uint64_t next_id() {
    static std::atomic<uint64_t> counter{1};
    return counter.fetch_add(1) + 1;
  }

  Host* host_ = nullptr;
  PoolT* pool_ = nullptr;
  uint64_t id_ = 0;
  uint64_t fast_id_ = 0;  ///< id_, or 0 in paranoid mode
  pthread_key_t key_ = 0;
};

}  // namespace hakmem
