// The Registry: an O(1) answer to "which extent owns this address", safe for any pointer value.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/extent.h"
#include "core/core.h"
#include "pal/pal.h"

namespace hakmem {

/**
 * A two-level radix table over the 47-bit user address space at 4 KiB page
 * granularity: root (2^17 slots, one per GiB) -> leaf (2^18 slots, one per
 * page) -> Extent*. Lookup is two dependent loads and never touches the memory
 * being asked about, so NULL, stack, globals, other heaps and unmapped
 * addresses are all answered "not ours" without a fault (the seed crashed
 * reading the header of a foreign pointer). Tables are sparse mappings: only
 * pages actually written cost memory.
 */
template <class Pal>
class Registry {
public:
  static constexpr unsigned kPageShift = 12;
  static constexpr unsigned kAddressBits = 47;
  static constexpr unsigned kLeafBits = 18;
  static constexpr unsigned kRootBits = kAddressBits - kPageShift - kLeafBits;
  static constexpr size_t kRootBytes = (size_t{1} << kRootBits) * sizeof(void*);
  static constexpr size_t kLeafBytes = (size_t{1} << kLeafBits) * sizeof(void*);

  using Slot = std::atomic<Extent*>;

  bool init(Pal* pal, std::atomic<uint64_t>* mapped_tally) {
    pal_ = pal;
    tally_ = mapped_tally;
    void* r = pal_->map_sparse(kRootBytes, Layer::kRegistry);
    if (r == nullptr) return false;
    tally_->fetch_add(kRootBytes, std::memory_order_relaxed);
    root_.store(static_cast<std::atomic<Slot*>*>(r), std::memory_order_release);
    return true;
  }

  /// The extent owning `addr`, or nullptr. Any value is safe.
  Extent* lookup(uintptr_t addr) const {
    if ((addr >> kAddressBits) != 0) return nullptr;
    std::atomic<Slot*>* root = root_.load(std::memory_order_acquire);
    if (root == nullptr) return nullptr;
    return lookup_in(root, addr);
  }

  /**
   * lookup() once init() has succeeded (the root table exists): the free fast path's form. The
   * bits of `addr` above bit 46 are not looked at: an address with any of them set answers the
   * extent of the address without them. The caller must reject such an address by its offset
   * from that extent, which is then at least 2^47 - 16: the free fast path's block check does.
   */
  Extent* lookup_initialized(uintptr_t addr) const {
    return lookup_in(root_.load(std::memory_order_acquire), addr & ((uintptr_t{1} << kAddressBits) - 1));
  }

private:
  Extent* lookup_in(std::atomic<Slot*>* root, uintptr_t addr) const {
    Slot* leaf = root[addr >> (kPageShift + kLeafBits)].load(std::memory_order_acquire);
    if (leaf == nullptr) return nullptr;
    return leaf[(addr >> kPageShift) & ((size_t{1} << kLeafBits) - 1)].load(std::memory_order_acquire);
  }

public:
  /// Makes every page of [base, base+len) answer `e`. False (and nothing
  /// changed) when a table page could not be mapped.
  bool assign(uintptr_t base, size_t len, Extent* e) {
    if (!ensure_leaves(base, len)) return false;
    fill(base, len, e);
    return true;
  }

  /// Makes every page of [base, base+len) answer nullptr.
  void clear(uintptr_t base, size_t len) { fill(base, len, nullptr); }

  /// Bytes of table mappings (metadata in the I7 accounting).
  size_t mapped_bytes() const { return root_.load() ? kRootBytes + leaves_.load() * kLeafBytes : 0; }

  /// Calls fn(addr, len) for every table mapping (teardown) and forgets them.
  template <class Fn>
  void release_tables(Fn&& fn) {
    std::atomic<Slot*>* root = root_.load();
    if (root == nullptr) return;
    for (size_t i = 0; i < (size_t{1} << kRootBits); ++i) {
      Slot* leaf = root[i].load();
      if (leaf != nullptr) fn(reinterpret_cast<uintptr_t>(leaf), kLeafBytes);
    }
    fn(reinterpret_cast<uintptr_t>(root), kRootBytes);
    root_.store(nullptr);
    leaves_.store(0);
  }

  /// Fork: disable() takes the lock a table growth holds, so none is mid-update when the address
  /// space is copied; enable() releases it (parent and child alike). Lookups take no lock.
  void disable() { grow_lock_.lock(); }
  void enable() { grow_lock_.unlock(); }

private:
  bool ensure_leaves(uintptr_t base, size_t len) {
    std::atomic<Slot*>* root = root_.load(std::memory_order_acquire);
    if (root == nullptr || len == 0 || ((base + len - 1) >> kAddressBits) != 0) return false;
    const size_t first = base >> (kPageShift + kLeafBits);
    const size_t last = (base + len - 1) >> (kPageShift + kLeafBits);
    for (size_t i = first; i <= last; ++i) {
      if (root[i].load(std::memory_order_acquire) != nullptr) continue;
      LockGuard g(grow_lock_);
      if (root[i].load(std::memory_order_relaxed) != nullptr) continue;
      void* leaf = pal_->map_sparse(kLeafBytes, Layer::kRegistry);
      if (leaf == nullptr) return false;  // leaves made so far stay: they are empty and reusable
      tally_->fetch_add(kLeafBytes, std::memory_order_relaxed);
      leaves_.fetch_add(1, std::memory_order_relaxed);
      root[i].store(static_cast<Slot*>(leaf), std::memory_order_release);
    }
    return true;
  }

  void fill(uintptr_t base, size_t len, Extent* e) {
    std::atomic<Slot*>* root = root_.load(std::memory_order_acquire);
    // Every page the range touches, including a partial first and last page.
    for (uintptr_t a = base & ~((uintptr_t{1} << kPageShift) - 1); a < base + len; a += (uintptr_t{1} << kPageShift)) {
      Slot* leaf = root[a >> (kPageShift + kLeafBits)].load(std::memory_order_acquire);
      leaf[(a >> kPageShift) & ((size_t{1} << kLeafBits) - 1)].store(e, std::memory_order_release);
    }
  }

  Pal* pal_ = nullptr;
  std::atomic<uint64_t>* tally_ = nullptr;
  std::atomic<std::atomic<Slot*>*> root_{nullptr};
  std::atomic<size_t> leaves_{0};
  SpinLock grow_lock_;
};

}  // namespace hakmem
