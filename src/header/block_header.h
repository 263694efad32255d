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
};
static_assert(sizeof(Header) == 16);

constexpr size_t kHeaderSize = sizeof(Header);
/// Largest request a header can describe (512 GiB - 1); larger ones fail with ENOMEM.
constexpr uint64_t kMaxRequest = (uint64_t{1} << 39) - 1;
constexpr unsigned kStrategyBits = 4;
constexpr uintptr_t kSiteMask = (uintptr_t{1} << 47) - 1;

/**
 * Encodes and checks headers with a per-process secret. The checksum is CRC32C
 * (SSE4.2) over both words and the header's own address, passed through a
 * keyed bijection of 32-bit words: CRC guarantees every single-bit change is
 * detected, the address ties a header to its place (a copied header fails),
 * and the keyed finalizer hides CRC's linearity so a header cannot be forged
 * without the secret.
 */
class HeaderCodec {
 public:
  constexpr HeaderCodec() = default;

  /// Sets the secret; done once per process (or per test allocator).
  void set_secret(uint64_t secret) {
    k0_ = static_cast<uint32_t>(secret);
    k1_ = static_cast<uint32_t>(secret >> 32);
    k2_ = static_cast<uint32_t>(mix64(secret)) | 1u;
  }

  /// Writes a header describing `f` at `at`; the checksum is written last.
  void encode(const HeaderFields& f, void* at) const {
    const Header h = pack(f, reinterpret_cast<uintptr_t>(at));
    auto* out = static_cast<Header*>(at);
    out->hi = h.hi;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);  // keep the checksum word last, as documented
    out->lo = h.lo;
  }

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
    Header h;
    memcpy(&h, at, sizeof(h));
    return unpack(h, reinterpret_cast<uintptr_t>(at), f);
  }

  /// Checks and unpacks a header value as if it were stored at `at`.
  bool unpack(const Header& h, uintptr_t at, HeaderFields* f) const {
    if (static_cast<uint32_t>(h.lo) != checksum(h, at)) return false;
    f->method = static_cast<Method>((h.lo >> 32) & 3);
    f->state = static_cast<State>((h.lo >> 34) & 3);
    f->origin = static_cast<Origin>((h.lo >> 36) & 3);
    f->strategy = static_cast<uint8_t>((h.lo >> 38) & 15);
    f->size = (h.lo >> 42) << 17 | (h.hi >> 47);
    f->site = h.hi & kSiteMask;
    return f->method != Method::kNone;
  }

 private:
  uint32_t checksum(const Header& h, uintptr_t at) const {
    uint32_t c = k0_;
    c = static_cast<uint32_t>(__builtin_ia32_crc32di(c, h.lo & ~uint64_t{0xffffffff}));
    c = static_cast<uint32_t>(__builtin_ia32_crc32di(c, h.hi));
    c = static_cast<uint32_t>(__builtin_ia32_crc32di(c, at));
    // Keyed bijection on 32 bits: xor, odd multiplies and xor-shifts are all invertible.
    c ^= k1_;
    c *= 0x9e3779b1u;
    c ^= c >> 15;
    c *= k2_;
    c ^= c >> 13;
    return c;
  }

  uint32_t k0_ = 0x5bd1e995u;
  uint32_t k1_ = 0x1b873593u;
  uint32_t k2_ = 0xcc9e2d51u;
};

/// Reads 8 random bytes from getrandom(2); falls back to clock and ASLR entropy.
uint64_t make_secret();

}  // namespace hakmem
