// The 16-byte checksummed block header: layout, encoding, decoding, and the typed verdicts of validation.
#pragma once

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
  uint64_t size() const { return (lo >> 42) << 17 | (hi >> 47); }
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
 * sum over Z/2^32: each 16-bit chunk of the header (checksum field excluded)
 * and of the header's own address is multiplied by a secret odd multiplier, the
 * products are summed, and the sum goes through a keyed bijection of 32-bit
 * words.
 *
 * - A single-bit change moves one chunk by +-2^j (j < 16); times an odd
 *   multiplier that is never 0 mod 2^32, so the sum, and the checksum, always
 *   change: every single-bit flip is detected, guaranteed.
 * - Two or more flips cancel only for a fraction of keys (at most 2^-16 for
 *   any given pair), never for all keys: an attacker cannot precompute them.
 * - Moving a header to another address, or compensating one field's change in
 *   another (e.g. reviving a Free header as Live), needs the secret
 *   multipliers. A CRC cannot give this: it is linear over GF(2), so such
 *   compensations are computable from the public polynomial alone.
 */
class HeaderCodec {
 public:
  constexpr HeaderCodec() = default;

  /// Sets the secret; done once per process (or per test allocator).
  void set_secret(uint64_t secret) {
    uint64_t x = secret;
    for (uint32_t& m : mul_) {
      x = mix64(x + 0x9e3779b97f4a7c15ULL);
      m = static_cast<uint32_t>(x) | 1u;  // odd: multiplication by it is a bijection mod 2^32
    }
    x = mix64(x + 0x9e3779b97f4a7c15ULL);
    k0_ = static_cast<uint32_t>(x);
    k1_ = static_cast<uint32_t>(x >> 32);
    k2_ = static_cast<uint32_t>(mix64(x)) | 1u;
  }

  /// Writes a header describing `f` at `at`; the checksum is written last.
  void encode(const HeaderFields& f, void* at) const { store(pack(f, reinterpret_cast<uintptr_t>(at)), at); }

  /// The header `f` would have at `at`, without writing it (for tests and fuzzers).
  Header pack(const HeaderFields& f, uintptr_t at) const {
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

  /// h with its state changed and its checksum recomputed for `at`; the free path's one re-seal.
  Header with_state(Header h, State s, uintptr_t at) const {
    h.lo = (h.lo & ~(uint64_t{0xffffffff} | uint64_t{3} << 34)) | uint64_t{static_cast<uint8_t>(s)} << 34;
    h.lo |= checksum(h, at);
    return h;
  }

  /// Stores h at `at`, the checksum word last.
  static void store(const Header& h, void* at) {
    auto* out = static_cast<Header*>(at);
    out->hi = h.hi;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    out->lo = h.lo;
  }

 private:
  uint32_t checksum(const Header& h, uintptr_t at) const {
    // 16-bit chunks: a flip at bit j < 16 of a chunk moves the sum by 2^j * m, so
    // at least 17 secret bits decide whether two flips cancel; 32-bit chunks would
    // let bit-31 flips of any two chunks cancel for every key (2^31 * odd = 2^31).
    const uint64_t f = h.lo >> 32;
    const uint64_t x = h.hi;
    const uint64_t a = at ^ (at >> 16 & 0xffff00000000ULL);  // bits 48..63 folded into 32..47
    uint32_t c = k0_;
    c += static_cast<uint32_t>(f & 0xffff) * mul_[0];
    c += static_cast<uint32_t>(f >> 16) * mul_[1];
    c += static_cast<uint32_t>(x & 0xffff) * mul_[2];
    c += static_cast<uint32_t>(x >> 16 & 0xffff) * mul_[3];
    c += static_cast<uint32_t>(x >> 32 & 0xffff) * mul_[4];
    c += static_cast<uint32_t>(x >> 48) * mul_[5];
    c += static_cast<uint32_t>(a & 0xffff) * mul_[6];
    c += static_cast<uint32_t>(a >> 16 & 0xffff) * mul_[7];
    c += static_cast<uint32_t>(a >> 32 & 0xffff) * mul_[8];
    // Keyed bijection on 32 bits: xor, odd multiplies and xor-shifts are all invertible.
    c ^= k1_;
    c *= 0x9e3779b1u;
    c ^= c >> 15;
    c *= k2_;
    c ^= c >> 13;
    return c;
  }

  uint32_t mul_[9] = {0x85ebca6bu, 0xc2b2ae35u, 0x27d4eb2fu, 0x165667b1u, 0xd3a2646du,
                      0xfd7046c5u, 0xb55a4f09u, 0x9e3779b1u, 0x7feb352du};
  uint32_t k0_ = 0x5bd1e995u;
  uint32_t k1_ = 0x1b873593u;
  uint32_t k2_ = 0xcc9e2d51u;
};

/// Reads 8 random bytes from getrandom(2); falls back to clock and ASLR entropy.
uint64_t make_secret();

}  // namespace hakmem
