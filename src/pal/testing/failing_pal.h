// A test platform that refuses maps on demand: the Nth map, or any map past a byte budget.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "pal/pal_concept.h"

namespace hakmem {

/**
 * Wraps a platform and makes map() fail when told to, for out-of-memory tests
 * (I12). Everything else is forwarded. Counters are atomic so threads may share it.
 */
template <class Base>
class FailingPal : public Base {
public:
  static constexpr uint64_t kNever = ~uint64_t{0};

  /// The nth map call from now on (1-based) fails; kNever disables.
  void fail_nth_map(uint64_t n) { fail_at_.store(n == kNever ? kNever : maps_.load() + n); }
  /// Maps fail once this many bytes are mapped in total (maps minus unmaps).
  void fail_past_bytes(uint64_t bytes) { budget_.store(bytes); }
  /// Every map fails while set.
  void set_fail_all(bool on) { fail_all_.store(on); }
  void reset_failures() {
    fail_at_.store(kNever);
    budget_.store(kNever);
    fail_all_.store(false);
  }
  uint64_t failed_maps() const { return failed_.load(); }
  uint64_t mapped_bytes() const { return mapped_.load(); }

  void* map(size_t len, Layer layer) { return admit(len) ? note(Base::map(len, layer), len) : nullptr; }
  void* map_sparse(size_t len, Layer layer) { return admit(len) ? note(Base::map_sparse(len, layer), len) : nullptr; }
  bool unmap(ReleaseCapability cap, void* addr, size_t len) {
    const bool ok = Base::unmap(cap, addr, len);
    if (ok) mapped_.fetch_sub(len);
    return ok;
  }

private:
  bool admit(size_t len) {
    const uint64_t n = maps_.fetch_add(1) + 1;
    bool fail = fail_all_.load() || n == fail_at_.load();
    const uint64_t budget = budget_.load();
    if (budget != kNever && mapped_.load() + len > budget) fail = true;
    if (fail) failed_.fetch_add(1);
    return !fail;
  }
  void* note(void* p, size_t len) {
    if (p != nullptr) mapped_.fetch_add(len);
    return p;
  }

  std::atomic<uint64_t> maps_{0};
  std::atomic<uint64_t> fail_at_{kNever};
  std::atomic<uint64_t> budget_{kNever};
  std::atomic<bool> fail_all_{false};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> mapped_{0};
};

}  // namespace hakmem
