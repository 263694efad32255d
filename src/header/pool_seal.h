// A Pool block's keyed word (the 8 bytes before its user pointer) and the keyed links of its free list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/core.h"
#include "header/block_header.h"

namespace hakmem {

/// What a Pool block's word says the block is. kForward marks the word at the start of an aligned
/// block, whose size field is the offset to the real word's user pointer.
enum class PoolTag : uint8_t { kLive = 0, kFree = 1, kForward = 2 };

/// The decoded fields of a Pool block's word.
struct PoolFields {
  PoolTag tag = PoolTag::kLive;
  Origin origin = Origin::kMalloc;
  uint8_t strategy = 0;  ///< id of the selector strategy in force at allocation (I3)
  uint64_t size = 0;     ///< requested bytes; for kForward, the offset from the block start to the real word

  bool operator==(const PoolFields&) const = default;
};

/**
 * The payload a word seals (64 bits, the top 28 always zero):
 *
 *   [0..3] strategy  [4..31] size  [32..33] origin  [34..35] tag  [36..63] zero
 *
 * The fast free compares `payload ^ pool_head(kLive, origin)` against `pool_room(room)`: one unsigned
 * compare checks the tag, the origin, the zero bits and that the size fits the block.
 */
struct PoolPayload {
  static constexpr unsigned kSizeShift = 4;
  static constexpr unsigned kOriginShift = 32;
  static constexpr unsigned kTagShift = 34;
  static constexpr unsigned kZeroShift = 36;  ///< bits from here up are zero in every payload
  static constexpr uint64_t kMaxSize = (uint64_t{1} << (kOriginShift - kSizeShift)) - 1;

  static constexpr uint64_t head(PoolTag t, Origin o) {
    return uint64_t{static_cast<uint8_t>(t)} << kTagShift | uint64_t{static_cast<uint8_t>(o)} << kOriginShift;
  }
  static constexpr uint64_t make(const PoolFields& f) {
    return head(f.tag, f.origin) | (f.size & kMaxSize) << kSizeShift | (uint64_t{f.strategy} & 15);
  }
  /// The largest `payload ^ head` of a block whose size fits `room` bytes.
  static constexpr uint64_t room(uint64_t room) { return room << kSizeShift | 15; }
  /// False when p cannot be a payload (bits above 35 set, or tag 3).
  static constexpr bool valid(uint64_t p) { return (p >> kZeroShift) == 0 && (p >> kTagShift) != 3; }
  static constexpr PoolFields fields(uint64_t p) {
    return PoolFields{static_cast<PoolTag>((p >> kTagShift) & 3), static_cast<Origin>((p >> kOriginShift) & 3),
                      static_cast<uint8_t>(p & 15), (p >> kSizeShift) & kMaxSize};
  }
};

/**
 * Seals Pool block words and free-list links with a per-process secret.
 *
 * Both are keyed with the block's user pointer u through key(u) = (u ^ ka) * ma, then
 *   word = (payload + key(u)) * m            open: word * m^-1 - key(u)
 *   link = (next + key(u) + kl) * m          open: link * m^-1 - key(u) - kl
 * where `next` is the index + 1 of the next free block of the span (0 ends the list). Everything
 * is linear over Z/2^64, so freeing re-seals a Live word with one add: the tag moves by a
 * constant, and so does the word (free_delta()).
 *
 * - A change of a word by an additive D moves its opened value by D * m^-1. Its bits 36..63,
 *   zero in every payload, stay as they were only when (D * m^-1) >> 36 is 0 or all ones (the
 *   carry from below adds at most 1). set_secret() draws m until no D of a one- or
 *   two-bit flip (+-2^j, +-2^i +- 2^j) has that property: every one- and two-bit flip of a word
 *   is caught, and of a link it opens far past any block count.
 * - The same holds for ma and the address: a word or link read at an address one or two bits
 *   away from where it was sealed opens with bits 36..63 set.
 * - Any other overwrite (a pointer, text, a word copied from another block) opens to a value
 *   with bits 36..63 zero only by chance, about 1 in 2^28 for words, and a link opens to an
 *   index no higher than the span's carved count (at most 2048) about 1 in 2^52.
 */
class PoolSeal {
public:
  constexpr PoolSeal() = default;

  /// Sets the secret; done once per process (or per test allocator).
  void set_secret(uint64_t secret) {
    uint64_t x = secret ^ 0x706f6f6c7365616cULL;
    m_ = draw_multiplier(&x, true);
    m_inv_ = odd_inverse(m_);
    free_delta_ = kLiveToFree * m_;
    ma_ = draw_multiplier(&x, false);
    x = mix64(x + 0x9e3779b97f4a7c15ULL);
    ka_ = x;
    x = mix64(x + 0x9e3779b97f4a7c15ULL);
    kl_ = x;
  }

  /// The keyed hash of user pointer u: a block's word and its link are both keyed with it.
  HAKMEM_FAST_PATH uint64_t key(uintptr_t u) const { return (u ^ ka_) * ma_; }

  HAKMEM_FAST_PATH uint64_t seal(uint64_t payload, uint64_t key) const { return (payload + key) * m_; }
  HAKMEM_FAST_PATH uint64_t open(uint64_t word, uint64_t key) const { return word * m_inv_ - key; }

  /// The word of a Live block's payload p, re-sealed as the same payload with the tag Free:
  /// seal(p, k) + free_delta() == seal(p - head(kLive) + head(kFree), k), with no multiply.
  HAKMEM_FAST_PATH uint64_t free_delta() const { return free_delta_; }

  HAKMEM_FAST_PATH uint64_t seal_link(uint64_t next, uint64_t key) const { return (next + key + kl_) * m_; }
  HAKMEM_FAST_PATH uint64_t open_link(uint64_t link, uint64_t key) const { return link * m_inv_ - key - kl_; }

  /// The word of user pointer u (the 8 bytes before it), unchecked.
  static HAKMEM_FAST_PATH uint64_t load(uintptr_t u) {
    uint64_t w;
    memcpy(&w, reinterpret_cast<const void*>(u - sizeof(w)), sizeof(w));
    return w;
  }
  static HAKMEM_FAST_PATH void store(uintptr_t u, uint64_t w) {
    memcpy(reinterpret_cast<void*>(u - sizeof(w)), &w, sizeof(w));
  }

  /// Writes the word describing f for user pointer u.
  HAKMEM_FAST_PATH void encode(const PoolFields& f, uintptr_t u) const { store(u, seal(PoolPayload::make(f), key(u))); }

  /// Reads and opens the word of u; false when it does not open to a payload.
  bool decode(uintptr_t u, PoolFields* f) const {
    const uint64_t p = open(load(u), key(u));
    if (!PoolPayload::valid(p)) return false;
    *f = PoolPayload::fields(p);
    return true;
  }

  /// True when every one- and two-bit additive change D (+-2^j, +-2^i +- 2^j) times m leaves bits
  /// 36..63 neither all zero nor all ones: the guarantee set_secret() draws its multipliers for.
  static bool spreads_flips(uint64_t m) {
    constexpr uint64_t kOnes = (uint64_t{1} << (64 - PoolPayload::kZeroShift)) - 1;
    const auto spreads = [m](uint64_t d) {
      const uint64_t high = (d * m) >> PoolPayload::kZeroShift;
      return high != 0 && high != kOnes;
    };
    for (unsigned j = 0; j < 64; ++j) {
      const uint64_t a = uint64_t{1} << j;
      if (!spreads(a) || !spreads(0 - a)) return false;
      for (unsigned i = 0; i < j; ++i) {
        const uint64_t b = uint64_t{1} << i;
        if (!spreads(a + b) || !spreads(a - b) || !spreads(b - a) || !spreads(0 - a - b)) return false;
      }
    }
    return true;
  }

  /// TestOnly: the multipliers, to check them against spreads_flips().
  uint64_t word_multiplier_inverse() const { return m_inv_; }
  uint64_t address_multiplier() const { return ma_; }

private:
  /// An odd multiplier for which spreads_flips() holds (of its inverse when `inverse`). A random odd
  /// multiplier fails with probability about 2^-14, so the loop almost never repeats.
  static uint64_t draw_multiplier(uint64_t* x, bool inverse) {
    for (;;) {
      *x = mix64(*x + 0x9e3779b97f4a7c15ULL);
      const uint64_t m = *x | 1;
      if (spreads_flips(inverse ? odd_inverse(m) : m)) return m;
    }
  }

  /// How a payload moves from tag Live to tag Free (the same for every origin).
  static constexpr uint64_t kLiveToFree =
      PoolPayload::head(PoolTag::kFree, Origin::kMalloc) - PoolPayload::head(PoolTag::kLive, Origin::kMalloc);

  // The defaults (until set_secret()) satisfy spreads_flips() too (tests/pool_seal_test.cpp).
  uint64_t m_ = 0x359bb4bfbd3a31e5ULL;
  uint64_t free_delta_ = kLiveToFree * 0x359bb4bfbd3a31e5ULL;
  uint64_t m_inv_ = 0x355fa969cc3fa3edULL;
  uint64_t ma_ = 0x7db9213ebe22cf9bULL;
  uint64_t ka_ = 0x5bd1e9955bd1e995ULL;
  uint64_t kl_ = 0x1b8735931b873593ULL;
};

}  // namespace hakmem
