// Fuzz support: the shadow model of live blocks (contents, extent, alignment) shared by the allocator targets.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

#include "front/front.h"
#include "fuzz_support.h"
#include "support/pattern.h"

namespace hakmem_fuzz {

/// Blocks up to 64 KiB carry the pattern in every byte; above, the first and last 4 KiB and a
/// stripe every 64 KiB (a full pattern on multi-MiB blocks would spend the fuzzer's time on page faults).
constexpr hakmem_test::Striping kStriping{64 * 1024, 4096, 64 * 1024};

inline void fill(void* p, uint64_t n, uint64_t key) { hakmem_test::fill_striped(p, n, key, kStriping); }

/// The first byte of [0, min(n, keep)) that breaks the pattern, or -1.
inline int64_t first_mismatch(const void* p, uint64_t n, uint64_t keep, uint64_t key) {
  return hakmem_test::striped_mismatch(p, n, keep, key, kStriping);
}

/// The first non-zero byte among the checked ranges of an n-byte block, or -1 (calloc).
inline int64_t first_nonzero(const void* p, uint64_t n) {
  int64_t bad = -1;
  const auto* b = static_cast<const unsigned char*>(p);
  hakmem_test::for_each_striped_range(n, kStriping, [&](uint64_t off, uint64_t len) {
    for (uint64_t i = off; bad < 0 && i < off + len; ++i) {
      if (b[i] != 0) bad = static_cast<int64_t>(i);
    }
  });
  return bad;
}

/// One live block as the model sees it.
struct Block {
  uint64_t size;    ///< requested bytes
  uint64_t usable;  ///< usable_size() when it was made
  uint64_t align;   ///< requested alignment (16 for plain allocations)
  uint64_t key;     ///< pattern key
};

/**
 * The live blocks, by address. add() checks what the allocator promised for a
 * new block (I4: no overlap with any other live block; I5: usable >= requested,
 * alignment); verify() checks that a block's contents are what was written.
 */
class Shadow {
public:
  size_t count() const { return blocks_.size(); }
  uint64_t live_bytes() const { return live_bytes_; }
  bool contains(const void* p) const { return blocks_.count(addr(p)) != 0; }
  const Block& at(const void* p) const { return blocks_.at(addr(p)); }
  std::map<uintptr_t, Block>& blocks() { return blocks_; }

  /// The i-th live block (i < count()), for the fuzzer to pick one.
  void* nth(size_t i) const {
    auto it = blocks_.begin();
    std::advance(it, static_cast<long>(i));
    return reinterpret_cast<void*>(it->first);
  }

  /// Records p as a new live block of `size` bytes and fills it with its pattern.
  template <class A>
  void add(A& a, void* p, uint64_t size, uint64_t align, bool zeroed) {
    const uintptr_t u = addr(p);
    FUZZ_CHECK(u % align == 0, "%p is not %llu-aligned (I5)", p, (unsigned long long)align);
    FUZZ_CHECK(u % 16 == 0, "%p is not 16-aligned (I5)", p);
    FUZZ_CHECK(!contains(p), "%p handed out while live (I4)", p);
    const uint64_t usable = a.usable_size(p);
    FUZZ_CHECK(usable >= size, "usable %llu < requested %llu (I5)", (unsigned long long)usable,
               (unsigned long long)size);
    if (a.options().get(hakmem::Opt::kHardening) == hakmem::kHardeningParanoid) {
      FUZZ_CHECK(usable == size, "paranoid: usable %llu != requested %llu (the canary follows the request)",
                 (unsigned long long)usable, (unsigned long long)size);
    }
    const uint64_t end = u + (usable == 0 ? 1 : usable);
    auto next = blocks_.lower_bound(u);
    if (next != blocks_.end()) {
      FUZZ_CHECK(next->first >= end, "%p+%llu overlaps live block %p (I4)", p, (unsigned long long)usable,
                 reinterpret_cast<void*>(next->first));
    }
    if (next != blocks_.begin()) {
      auto prev = std::prev(next);
      FUZZ_CHECK(prev->first + (prev->second.usable == 0 ? 1 : prev->second.usable) <= u,
                 "%p overlaps live block %p+%llu (I4)", p, reinterpret_cast<void*>(prev->first),
                 (unsigned long long)prev->second.usable);
    }
    if (zeroed) {
      const int64_t nz = first_nonzero(p, size);
      FUZZ_CHECK(nz < 0, "calloc block %p not zero at byte %lld", p, (long long)nz);
    }
    const uint64_t key = next_key_++ * 0x9E3779B97F4A7C15ull + 1;
    fill(p, size, key);
    blocks_[u] = Block{size, usable, align, key};
    live_bytes_ += size;
  }

  /// Checks p's first `keep` bytes (all by default) against its pattern.
  void verify(const void* p, uint64_t keep = ~uint64_t{0}) const {
    const Block& b = at(p);
    const int64_t bad = first_mismatch(p, b.size, keep, b.key);
    FUZZ_CHECK(bad < 0, "block %p (%llu bytes) changed at byte %lld while live", p, (unsigned long long)b.size,
               (long long)bad);
  }

  void verify_all() const {
    for (const auto& [u, b] : blocks_) verify(reinterpret_cast<const void*>(u));
  }

  void remove(const void* p) {
    live_bytes_ -= at(p).size;
    blocks_.erase(addr(p));
  }

private:
  static uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }
  std::map<uintptr_t, Block> blocks_;
  uint64_t live_bytes_ = 0;
  uint64_t next_key_ = 1;
};

/// Fails the run when the allocator's own walk finds a broken invariant.
template <class A>
void check_audit(A& a, const char* when) {
  const auto r = a.audit();
  FUZZ_CHECK(r.ok, "audit after %s: %s", when, r.failure);
}

}  // namespace hakmem_fuzz
