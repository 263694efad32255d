// A test platform that logs every call with the layer that made it, without allocating.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "pal/pal_concept.h"

namespace hakmem {

/// What a RecordingPal call did.
enum class PalOp : uint8_t { kMap, kMapSparse, kProtect, kAdvise, kUnmap, kCount };

/// One logged platform call.
struct PalRecord {
  PalOp op;
  Layer layer;
  uintptr_t addr;
  size_t len;
};

/**
 * Wraps a platform and records every call: a bounded log of the latest calls
 * plus exact per-(op, layer) counters and byte totals. Release operations are
 * attributed to Layer::kRelease because only the releaser can hold the
 * capability they take; verify_mapped() checks with mincore that nothing the
 * log believes mapped was unmapped behind the platform's back (I1).
 */
template <class Base>
class RecordingPal : public Base {
public:
  static constexpr size_t kLogSize = 1 << 14;

  void* map(size_t len, Layer layer) { return log(PalOp::kMap, layer, Base::map(len, layer), len); }
  void* map_sparse(size_t len, Layer layer) { return log(PalOp::kMapSparse, layer, Base::map_sparse(len, layer), len); }
  bool protect(void* addr, size_t len, Access access, Layer layer) {
    const bool ok = Base::protect(addr, len, access, layer);
    if (ok) log(PalOp::kProtect, layer, addr, len);
    return ok;
  }
  bool advise_dontneed(ReleaseCapability cap, void* addr, size_t len) {
    const bool ok = Base::advise_dontneed(cap, addr, len);
    if (ok) log(PalOp::kAdvise, Layer::kRelease, addr, len);
    return ok;
  }
  bool unmap(ReleaseCapability cap, void* addr, size_t len) {
    const bool ok = Base::unmap(cap, addr, len);
    if (ok) log(PalOp::kUnmap, Layer::kRelease, addr, len);
    return ok;
  }

  /// The platform's clock (or, once stop_clock() is called, a clock that stands still) plus every
  /// advance_clock() so far: decay tests move time without sleeping.
  uint64_t now_ns() const {
    const uint64_t base = stopped_ ? 0 : Base::now_ns();
    return base + skew_ns_.load(std::memory_order_relaxed);
  }
  void advance_clock(uint64_t ns) { skew_ns_.fetch_add(ns, std::memory_order_relaxed); }
  /// From now on only advance_clock() moves the clock (set before any thread uses the platform).
  void stop_clock() {
    skew_ns_.store(now_ns());
    stopped_ = true;
  }

  uint64_t calls(PalOp op, Layer layer) const { return count_[idx(op, layer)].load(); }
  uint64_t bytes(PalOp op, Layer layer) const { return bytes_[idx(op, layer)].load(); }
  uint64_t calls(PalOp op) const {
    uint64_t n = 0;
    for (size_t l = 0; l < static_cast<size_t>(Layer::kCount); ++l) n += calls(op, static_cast<Layer>(l));
    return n;
  }
  uint64_t bytes(PalOp op) const {
    uint64_t n = 0;
    for (size_t l = 0; l < static_cast<size_t>(Layer::kCount); ++l) n += bytes(op, static_cast<Layer>(l));
    return n;
  }
  /// Bytes mapped through this platform and not yet unmapped through it.
  uint64_t outstanding_bytes() const { return bytes(PalOp::kMap) + bytes(PalOp::kMapSparse) - bytes(PalOp::kUnmap); }
  /// Total calls recorded so far (the log keeps the last kLogSize).
  uint64_t total_calls() const { return next_.load(); }
  /// The i-th call ever made, if still in the log.
  bool record(uint64_t i, PalRecord* out) const {
    if (i >= next_.load() || next_.load() - i > kLogSize) return false;
    *out = log_[i % kLogSize];
    return true;
  }

  /**
   * True when every page of [base, base + len) was unmapped through this platform by a call
   * made at or after call number `from` (a munmap that succeeded: the kernel dropped the
   * pages). The log, not mincore: the process may map something else at a freed address
   * (ASan's internal allocator did, in CI), which says nothing about hakmem's release.
   */
  bool unmapped_since(uint64_t from, uintptr_t base, uint64_t len) const {
    const uint64_t n = next_.load();
    if (n - from > kLogSize) return false;  // the calls since `from` are no longer all in the log
    for (uintptr_t page = base; page < base + len; page += 4096) {
      bool hit = false;
      for (uint64_t j = from; j < n && !hit; ++j) {
        const PalRecord& r = log_[j % kLogSize];
        hit = r.op == PalOp::kUnmap && page >= r.addr && page < r.addr + r.len;
      }
      if (!hit) return false;
    }
    return true;
  }

  /**
   * True when every map still outstanding in the log is really mapped. A layer
   * that called munmap itself, bypassing the releaser, makes this false.
   * Only meaningful while the log has not wrapped.
   */
  bool verify_mapped() const {
    const uint64_t n = next_.load();
    if (n > kLogSize) return true;  // log wrapped; the byte counters still hold
    for (uint64_t i = 0; i < n; ++i) {
      const PalRecord& r = log_[i];
      if (r.op != PalOp::kMap && r.op != PalOp::kMapSparse) continue;
      for (uintptr_t page = r.addr; page < r.addr + r.len; page += 4096) {
        if (released_later(i, page)) continue;
        unsigned char v = 0;
        if (mincore(reinterpret_cast<void*>(page), 4096, &v) != 0) return false;
      }
    }
    return true;
  }

private:
  static size_t idx(PalOp op, Layer layer) {
    return static_cast<size_t>(op) * static_cast<size_t>(Layer::kCount) + static_cast<size_t>(layer);
  }
  bool released_later(uint64_t from, uintptr_t page) const {
    const uint64_t n = next_.load();
    for (uint64_t j = from + 1; j < n; ++j) {
      const PalRecord& r = log_[j];
      if (r.op == PalOp::kUnmap && page >= r.addr && page < r.addr + r.len) return true;
    }
    return false;
  }
  template <class T>
  T log(PalOp op, Layer layer, T result, size_t len) {
    if (result == nullptr) return result;
    const uintptr_t addr = reinterpret_cast<uintptr_t>(result);
    {
      LockGuard g(lock_);
      const uint64_t i = next_.load(std::memory_order_relaxed);
      log_[i % kLogSize] = PalRecord{op, layer, addr, len};
      next_.store(i + 1);
    }
    count_[idx(op, layer)].fetch_add(1);
    bytes_[idx(op, layer)].fetch_add(len);
    return result;
  }

  static constexpr size_t kSlots = static_cast<size_t>(PalOp::kCount) * static_cast<size_t>(Layer::kCount);
  std::atomic<uint64_t> count_[kSlots]{};
  std::atomic<uint64_t> bytes_[kSlots]{};
  SpinLock lock_;
  std::atomic<uint64_t> skew_ns_{0};
  bool stopped_ = false;
  std::atomic<uint64_t> next_{0};
  PalRecord log_[kLogSize]{};
};

}  // namespace hakmem
