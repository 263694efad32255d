// The 16-byte checksummed block header: layout, encoding, decoding, and the typed verdicts of validation.
#pragma once

#include <emmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/core.h"

namespace hakmem {

/// Which backing made a block. kForward marks the record at the start of an
/// aligned block that points to the real header further in.
enum class Method : uint8_t { kNone = 0, kPool = 1, kMap = 2, kForward = 3 };

/// Where a block is in its life (ARCHITECTURE.md, "The life of a block").
enum class State : uint8_t { kLive = 0, kCached = 1, kReleasing = 2, kFree = 3 };

/// Which API family made a block; free must come from a compatible family.
enum class Origin : uint8_t { kMalloc = 0, kNew = 1, kNewArray = 2, kAligned = 3 };

/// The result of validating a free (or any other use of a pointer).
enum class Verdict : uint8_t {
  kOk = 0,
  kCorrupted,         ///< checksum mismatch: the header was overwritten, moved or forged
  kDoubleFree,        ///< header intact but the block is not live
  kInvalidPointer,    ///< not inside memory hakmem handed out
  kMisaligned,        ///< inside a block, but not the pointer hakmem returned
  kMismatchedOrigin,  ///< e.g. free() of a new[] block
  kMethodMismatch,    ///< header says Pool/Map but the Registry says otherwise
  kSizeMismatch,      ///< sized delete / free_sized with a size other than the one allocated
  kOverflow,          ///< paranoid: the canary after the requested size was overwritten
  kWriteAfterFree,    ///< paranoid: a quarantined block's fill pattern was overwritten
  kCorruptedLink,     ///< a freed Pool block's free-list link was overwritten (found at an allocation)
  kCount
};

/// A short human name for a verdict, as used in reports ("double free").
const char* verdict_name(Verdict v);
const char* origin_name(Origin o);
const char* method_name(Method m);
const char* state_name(State s);

/// True when a block made by `alloc` may be freed by `release` (malloc/aligned
/// are one family; new and new[] each must match exactly).
constexpr bool origins_compatible(Origin alloc, Origin release) {
  const auto family = [](Origin o) { return o == Origin::kAligned ? Origin::kMalloc : o; };
  return family(alloc) == family(release);
}

/// Decoded header fields.
struct HeaderFields {
  Method method = Method::kNone;
  State state = State::kLive;
  Origin origin = Origin::kMalloc;
  uint8_t strategy = 0;  ///< id of the selector strategy in force at allocation (I3)
  uint64_t size = 0;     ///< requested bytes; for kForward, the offset to the real header
  uintptr_t site = 0;    ///< allocation site (return address), 0 when unknown

  bool operator==(const HeaderFields&) const = default;
};

/**
 * The header as stored: 16 bytes immediately before the user pointer.
 *
 *   lo: [0..31] checksum  [32..33] method  [34..35] state  [36..37] origin
 *       [38..41] strategy [42..63] size >> 17
 *   hi: [0..46] site      [47..63] size & 0x1ffff
 *
 * The size field holds 39 bits, which bounds a request at kMaxRequest.
 */
struct alignas(16) Header {
  uint64_t lo;
  uint64_t hi;

  Method method() const { return static_cast<Method>((lo >> 32) & 3); }
  State state() const { return static_cast<State>((lo >> 34) & 3); }
  Origin origin() const { return static_cast<Origin>((lo >> 36) & 3); }
  uint8_t strategy() const { return static_cast<uint8_t>((lo >> 38) & 15); }
  uint64_t size() const {
    // (lo >> 42) << 17 | hi >> 47, as one double-width shift (shrd).
    return static_cast<uint64_t>((static_cast<unsigned __int128>(lo >> 42) << 64 | hi) >> 47);
  }
  uintptr_t site() const { return hi & ((uintptr_t{1} << 47) - 1); }
  HeaderFields fields() const { return HeaderFields{method(), state(), origin(), strategy(), size(), site()}; }
};
static_assert(sizeof(Header) == 16);

constexpr size_t kHeaderSize = sizeof(Header);
/// Largest request a header can describe (512 GiB - 1); larger ones fail with ENOMEM.
constexpr uint64_t kMaxRequest = (uint64_t{1} << 39) - 1;
constexpr unsigned kStrategyBits = 4;
constexpr uintptr_t kSiteMask = (uintptr_t{1} << 47) - 1;

/**
 * Encodes and checks headers with a per-process secret. The checksum is a keyed
 * sum over Z/2^32: the header with the low 32 bits of its own address (rotated)
 * in place of the checksum field, as eight 16-bit chunks, each multiplied by a
 * secret odd 16-bit multiplier (one SSE2 pmaddwd, signed), plus the address
 * bits above 31; the sum goes through a keyed bijection of 32-bit words.
 *
 * - A flip of bit j of a chunk moves the sum by 2^j * m with |m| < 2^15: never
 *   0, so every single-bit flip is detected.
 * - Two flips move it by 2^ja*ma +- 2^jb*mb, of magnitude < 2^31: 0 mod 2^32
 *   only if it is 0 as an integer, i.e. the same bit of two chunks with
 *   multipliers equal in magnitude. The multipliers are distinct in magnitude,
 *   so every two-bit flip is detected too, whatever the key.
 * - Moving a header, or compensating one field's change in another (reviving a
 *   freed header as live), needs the secret multipliers and the bijection's
 *   keys. A CRC gives none of this: it is linear over GF(2), so compensations
 *   are computable from its public polynomial (tests/header_test.cpp does it).
 */
class HeaderCodec {
public:
  constexpr HeaderCodec() = default;

  /// Sets the secret; done once per process (or per test allocator).
  void set_secret(uint64_t secret) {
    int16_t m[8] = {};
    uint64_t x = secret;
    for (size_t i = 0; i < 8; ++i) {
      // Odd, and distinct in magnitude from every earlier one (the two-flip guarantee).
      for (;;) {
        x = mix64(x + 0x9e3779b97f4a7c15ULL);
        const auto v = static_cast<int16_t>(static_cast<uint16_t>(x) | 1u);
        bool clash = v == INT16_MIN;
        for (size_t k = 0; k < i; ++k) clash = clash || v == m[k] || v == -m[k];
        if (!clash) {
          m[i] = v;
          break;
        }
      }
    }
    memcpy(mul_, m, sizeof(mul_));
    x = mix64(x + 0x9e3779b97f4a7c15ULL);
    k0_ = static_cast<uint32_t>(x);
    k1_ = static_cast<uint32_t>(x >> 32);
    k2_ = static_cast<uint32_t>(mix64(x)) | 1u;
    for (size_t to = 0; to < 4; ++to) live_step_[to] = state_step(State::kLive, static_cast<State>(to));
  }

  /// Writes a header describing `f` at `at`; the checksum is written last. Always inlined: every
  /// hand-out writes one, and inlined, the fields a caller fixes fold into constants.
  HAKMEM_FAST_PATH void encode(const HeaderFields& f, void* at) const {
    store(pack(f, reinterpret_cast<uintptr_t>(at)), at);
  }

  /// The header `f` would have at `at`, without writing it (encode()'s, and for tests and fuzzers).
  HAKMEM_FAST_PATH Header pack(const HeaderFields& f, uintptr_t at) const {
    Header h;
    const uint64_t size = f.size & kMaxRequest;
    h.lo = (uint64_t{static_cast<uint8_t>(f.method)} & 3) << 32 | (uint64_t{static_cast<uint8_t>(f.state)} & 3) << 34 |
           (uint64_t{static_cast<uint8_t>(f.origin)} & 3) << 36 | (uint64_t{f.strategy} & 15) << 38 |
           (size >> 17) << 42;
    h.hi = (f.site & kSiteMask) | (size & 0x1ffff) << 47;
    h.lo |= checksum(h, at);
    return h;
  }

  /// Reads the header at `at`; false when its checksum does not match.
  bool decode(const void* at, HeaderFields* f) const {
    const Header h = load(at);
    if (!valid(h, reinterpret_cast<uintptr_t>(at))) return false;
    *f = h.fields();
    return true;
  }

  /// Checks and unpacks a header value as if it were stored at `at`.
  bool unpack(const Header& h, uintptr_t at, HeaderFields* f) const {
    if (!valid(h, at)) return false;
    *f = h.fields();
    return true;
  }

  /// The 16 bytes at `at`, unchecked.
  static Header load(const void* at) {
    Header h;
    memcpy(&h, at, sizeof(h));
    return h;
  }

  /// True when h's checksum is right for address `at` (and it describes something).
  bool valid(const Header& h, uintptr_t at) const {
    return static_cast<uint32_t>(h.lo) == checksum(h, at) && h.method() != Method::kNone;
  }

  /// valid(), also giving the keyed sum for an incremental re-seal (resealed()).
  bool valid(const Header& h, uintptr_t at, uint32_t* sum) const {
    *sum = keyed_sum(h, at);
    return static_cast<uint32_t>(h.lo) == finish(*sum) && h.method() != Method::kNone;
  }

  /**
   * h (valid, with keyed sum `sum`) in state `s`, without recomputing the sum:
   * the state bits sit at bits 2..3 of the third 16-bit chunk, so the sum moves
   * by (new - old) * 4 times that chunk's multiplier.
   */
  Header resealed(Header h, uint32_t sum, State s) const {
    sum += state_step(h.state(), s);
    h.lo = (h.lo & ~(uint64_t{0xffffffff} | uint64_t{3} << 34)) | uint64_t{static_cast<uint8_t>(s)} << 34;
    h.lo |= finish(sum);
    return h;
  }

  /// The keyed sum of h as if stored at `at` (for matches() and seal_live_in_place()).
  uint32_t sum_of(const Header& h, uintptr_t at) const { return keyed_sum(h, at); }

  /// True when h's checksum field is the one its keyed sum gives (the caller checks the method).
  bool matches(const Header& h, uint32_t sum) const { return static_cast<uint32_t>(h.lo) == finish(sum); }

  /// h with its state changed and its checksum recomputed for `at` from scratch (the reference that
  /// tests hold resealed() and seal_live_in_place() to; the free paths re-seal incrementally).
  Header with_state(Header h, State s, uintptr_t at) const {
    h.lo = (h.lo & ~(uint64_t{0xffffffff} | uint64_t{3} << 34)) | uint64_t{static_cast<uint8_t>(s)} << 34;
    h.lo |= checksum(h, at);
    return h;
  }

  /**
   * resealed(h, sum, to) written in place over h, the Live header stored at `at`, with the sum's
   * step precomputed: the re-seal of the free fast paths (Free for a Pool block, Cached for one
   * kept in a large slot). Only the state bits, which Live holds as 0, and the checksum word
   * change, so it sets the one and overwrites the other, the checksum last (two stores, no field
   * masking).
   */
  void seal_live_in_place(uint32_t sum, State to, void* at) const {
    const uint32_t checksum = finish(sum + live_step_[static_cast<uint8_t>(to) & 3]);
    static_assert(static_cast<uint8_t>(State::kLive) == 0, "a Live header's state bits are 0");
    static_cast<unsigned char*>(at)[4] |= static_cast<unsigned char>((static_cast<uint8_t>(to) & 3) << 2);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy(at, &checksum, sizeof(checksum));
  }

  /// Stores h at `at`, the checksum word last.
  static void store(const Header& h, void* at) {
    auto* out = static_cast<Header*>(at);
    out->hi = h.hi;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    out->lo = h.lo;
  }

private:
  uint32_t checksum(const Header& h, uintptr_t at) const { return finish(keyed_sum(h, at)); }

  /// Sum over Z/2^32 of every 16-bit chunk times its multiplier (the checksum field holding the
  /// low 32 address bits, rotated so the always-zero bits 0..3 sit on top), plus the key and
  /// address bits 32 and up. Every single-bit change of the address changes the sum.
  uint32_t keyed_sum(const Header& h, uintptr_t at) const {
    const uint32_t low_address = static_cast<uint32_t>(at);
    const uint64_t low = (h.lo & ~uint64_t{0xffffffff}) | ((low_address >> 4) | (low_address << 28));
    const __m128i words = _mm_set_epi64x(static_cast<long long>(h.hi), static_cast<long long>(low));
    __m128i sum = _mm_madd_epi16(words, _mm_load_si128(reinterpret_cast<const __m128i*>(mul_)));
    sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4e));
    sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xb1));
    return k0_ + static_cast<uint32_t>(at >> 32) + static_cast<uint32_t>(_mm_cvtsi128_si32(sum));
  }

  /// How the keyed sum moves when the state field goes from `from` to `to`: the state bits sit
  /// at bits 2..3 of the third 16-bit chunk.
  uint32_t state_step(State from, State to) const {
    const int32_t step = (static_cast<int32_t>(to) - static_cast<int32_t>(from)) * 4;
    return static_cast<uint32_t>(step * static_cast<int32_t>(mul_[2]));
  }

  /// Keyed bijection on 32 bits: a key xor, a secret odd multiply and an xor-shift are each
  /// invertible; the multiply makes the map non-linear over GF(2) and over Z/2^32 alike.
  uint32_t finish(uint32_t c) const {
    c = (c ^ k1_) * k2_;
    return c ^ (c >> 15);
  }

  // Lanes 0 and 1 multiply the low address bits; lanes 2..7 the header's fields.
  alignas(16) int16_t mul_[8] = {0x6b, 0x1f3, 0x2d5, 0x3a7, 0x4b9, 0x5cb, 0x6dd, 0x7ef};
  uint32_t k0_ = 0x5bd1e995u;
  uint32_t k1_ = 0x1b873593u;
  uint32_t k2_ = 0xcc9e2d51u;
  /// state_step(kLive, to) for each state `to`, for the default multipliers until set_secret().
  uint32_t live_step_[4] = {0, static_cast<uint32_t>(1 * 4 * 0x2d5), static_cast<uint32_t>(2 * 4 * 0x2d5),
                            static_cast<uint32_t>(3 * 4 * 0x2d5)};
};

/// Reads 8 random bytes from getrandom(2); falls back to clock and ASLR entropy.
uint64_t make_secret();

}  // namespace hakmem
