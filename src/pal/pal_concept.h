// The platform concept: what every PAL (real or test) must provide, and the release capability.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

namespace hakmem {

/// Which layer asked the platform for something; recorded by RecordingPal.
enum class Layer : uint8_t { kRegistry, kMeta, kPool, kMap, kCache, kRelease, kTest, kCount };

/// Page protections the allocator uses.
enum class Access : uint8_t { kNone, kReadWrite };

template <class Pal>
class BatchReleaser;

/**
 * The right to give memory back to the OS. Only BatchReleaser can make one, so
 * any other layer that tries to call Pal::unmap or Pal::advise_dontneed fails
 * to compile: "only batch may munmap" is structural (ARCHITECTURE.md, I1).
 */
class ReleaseCapability {
private:
  constexpr ReleaseCapability() = default;
  template <class Pal>
  friend class BatchReleaser;
  friend struct ReleaseCapabilityForTests;
};

/**
 * A platform: maps zeroed read-write memory, changes protection, releases
 * memory (with a ReleaseCapability), and reads a monotonic clock and the
 * process's minor-fault count. Test platforms wrap the real one.
 */
template <class P>
concept Platform = requires(P& p, const P& cp, void* addr, size_t len, Layer layer, ReleaseCapability cap) {
  { cp.page_size() } -> std::same_as<size_t>;
  /// len bytes of zeroed RW memory, page aligned; nullptr when the OS refuses.
  { p.map(len, layer) } -> std::same_as<void*>;
  /// Like map, but address space only (no commit charge); for sparse tables.
  { p.map_sparse(len, layer) } -> std::same_as<void*>;
  { p.protect(addr, len, Access::kNone, layer) } -> std::same_as<bool>;
  { p.advise_dontneed(cap, addr, len) } -> std::same_as<bool>;
  { p.unmap(cap, addr, len) } -> std::same_as<bool>;
  { cp.now_ns() } -> std::same_as<uint64_t>;
  { cp.minor_faults() } -> std::same_as<uint64_t>;
};

}  // namespace hakmem
