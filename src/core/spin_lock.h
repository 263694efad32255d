// A short test-and-test-and-set lock for the allocator's shared structures; never allocates.
#pragma once

#include <sched.h>

#include <atomic>

namespace hakmem {

/**
 * A lock for critical sections of a few dozen instructions. No syscall is made
 * while one is held (ARCHITECTURE.md), so spinning briefly and then yielding is
 * enough. Constant-initializable, so the global allocator needs no constructor.
 */
class SpinLock {
public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < 64) {
          __builtin_ia32_pause();
        } else {
          sched_yield();  // the holder may be descheduled on a 2-core box
          spins = 0;
        }
      }
    }
  }
  bool try_lock() { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() { locked_.store(false, std::memory_order_release); }
  /// Fork child only: the single surviving thread owns every lock, so clearing is safe.
  void reset_after_fork() { locked_.store(false, std::memory_order_relaxed); }

private:
  std::atomic<bool> locked_{false};
};

/// RAII guard for SpinLock.
class LockGuard {
public:
  explicit LockGuard(SpinLock& l) : lock_(l) { lock_.lock(); }
  ~LockGuard() { lock_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

private:
  SpinLock& lock_;
};

}  // namespace hakmem
