// Fork: the gate that lets large operations finish before a fork, and the components' lock order.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <tuple>

namespace hakmem {

/**
 * Large (Map) operations span several components' locks (cache, releaser, map): one frozen by a
 * fork between two of them would lose its block in the child. Each runs inside a LargeOp; close()
 * makes new ones wait and waits for those in flight, so the fork handler can then take the
 * components' locks one at a time.
 */
class ForkGate {
public:
  /// Brackets a large operation: waits while a fork is pending.
  class LargeOp {
  public:
    explicit LargeOp(ForkGate& g) : g_(g) {
      for (;;) {
        g_.ops_.fetch_add(1, std::memory_order_seq_cst);
        if (!g_.pending_.load(std::memory_order_seq_cst)) return;
        g_.ops_.fetch_sub(1, std::memory_order_seq_cst);
        while (g_.pending_.load(std::memory_order_relaxed)) sched_yield();
      }
    }
    ~LargeOp() { g_.ops_.fetch_sub(1, std::memory_order_seq_cst); }
    LargeOp(const LargeOp&) = delete;
    LargeOp& operator=(const LargeOp&) = delete;

  private:
    ForkGate& g_;
  };

  /// Before a fork: new large operations wait, and those in flight finish.
  void close() {
    pending_.store(true, std::memory_order_seq_cst);
    while (ops_.load(std::memory_order_seq_cst) != 0) sched_yield();
  }
  /// After a fork, in the parent.
  void open() { pending_.store(false, std::memory_order_seq_cst); }
  /// After a fork, in the child: the operations the parent's other threads had in flight are gone.
  void open_in_child() {
    ops_.store(0, std::memory_order_relaxed);
    pending_.store(false, std::memory_order_seq_cst);
  }

private:
  std::atomic<uint32_t> ops_{0};      ///< large operations in flight
  std::atomic<bool> pending_{false};  ///< set by close(): new large operations wait
};

/// Calls disable() on each component in the order given: the order the locks are taken in.
template <class... C>
void disable_in_order(C&... c) {
  (c.disable(), ...);
}

/// Calls enable() on each component in the reverse of the order given.
template <class C, class... Rest>
void enable_in_reverse(C& c, Rest&... rest) {
  if constexpr (sizeof...(Rest) > 0) enable_in_reverse(rest...);
  c.enable();
}

/**
 * The fork protocol (pthread_atfork) of an allocator A (a friend of A). prepare() lets large
 * operations finish, then disables every component in A::fork_order(), each taking its own
 * locks, so no structure is mid-update when the address space is copied; parent() enables them
 * again; child() enables them and gives up the heaps of the threads that did not survive the
 * fork (their slot blocks to BigCache, their spans to the abandoned lists, to be adopted).
 */
struct AllocatorFork {
  template <class A>
  static void prepare(A& a) {
    a.gate_.close();
    a.init_lock_.lock();
    if (!a.ready()) return;
    std::apply([](auto&... c) { disable_in_order(c...); }, a.fork_order());
  }

  template <class A>
  static void parent(A& a) {
    enable(a);
    a.gate_.open();
  }

  template <class A>
  static void child(A& a) {
    enable(a);
    a.gate_.open_in_child();
    if (!a.ready()) return;
    auto* keep = a.threads_.heap_if_present();
    a.pool_.for_each_heap([&](auto* h) {
      if (h != keep) a.slots_.to_cache(a.cache_, h->slot, h->counters);
    });
    a.pool_.retire_heaps_except(keep);
  }

private:
  template <class A>
  static void enable(A& a) {
    if (a.ready()) std::apply([](auto&... c) { enable_in_reverse(c...); }, a.fork_order());
    a.init_lock_.unlock();
  }
};

}  // namespace hakmem
