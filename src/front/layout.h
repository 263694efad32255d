// Block layout: where a block's header goes, and the prefixes a block is handed out with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "header/header.h"

namespace hakmem {

/**
 * Where the real header goes for an `align`-aligned user pointer in a block at `block`: the block
 * start when that already aligns the user pointer, else at least 32 bytes in, so that neither the
 * forward record at the block start nor the free-list link a freed Pool block keeps at block + 16
 * can overlap it (the real header of a freed block must survive for double-free reports with
 * size and site). Validator::locate_block() follows the forward record back.
 */
inline uintptr_t header_for(uintptr_t block, size_t align) {
  if ((block + kHeaderSize) % align == 0) return block;
  return round_up(block + 3 * kHeaderSize, align) - kHeaderSize;
}

/// The most header_for() can move the header in: align + 16 (0 for plain 16-byte alignment).
constexpr uint64_t align_slack(size_t align) { return align > kHeaderSize ? align + kHeaderSize : 0; }

/// Bits of PoolSeal::key(u) the paranoid mode keeps below the allocation site at u - 16.
constexpr unsigned kSiteCheckBits = 64 - 47;
constexpr uint64_t kSiteCheckMask = (uint64_t{1} << kSiteCheckBits) - 1;

/// The first word of a Pool prefix (at u - 16; PoolSeal::key(u) is `key`): in the default mode the
/// guard, the key itself; in paranoid mode the allocation site above the key's low 17 bits. Every
/// check compares what it can, so a neighbour's overflow, which reaches the word's low bytes
/// first, is caught in both modes.
constexpr uint64_t pool_first_word(bool paranoid, uint64_t key, uintptr_t site) {
  return paranoid ? (site & kSiteMask) << kSiteCheckBits | (key & kSiteCheckMask) : key;
}

/**
 * The prefix of a live Pool block with user pointer u: at u - 8 its sealed word (PoolSeal), at
 * u - 16 `first` (pool_first_word()).
 */
HAKMEM_FAST_PATH void write_pool_prefix(const PoolSeal& seal, uintptr_t u, uint64_t key, uint64_t first,
                                        const PoolFields& f) {
  PoolSeal::store(u - sizeof(uint64_t), first);
  PoolSeal::store(u, seal.seal(PoolPayload::make(f), key));
}

/// The prefixes of a Pool block handed out at `hdr` (the real prefix), and a forward word at
/// `block` when they differ: its size field is the offset hdr - block.
inline void write_pool_prefixes(const PoolSeal& seal, bool paranoid, uintptr_t block, uintptr_t hdr, Origin origin,
                                uint8_t strategy, uint64_t size, uintptr_t site) {
  if (hdr != block) {
    const uintptr_t u0 = block + kHeaderSize;
    const uint64_t k0 = seal.key(u0);
    write_pool_prefix(seal, u0, k0, pool_first_word(paranoid, k0, 0),
                      PoolFields{PoolTag::kForward, Origin::kMalloc, 0, hdr - block});
  }
  const uintptr_t u = hdr + kHeaderSize;
  const uint64_t k = seal.key(u);
  write_pool_prefix(seal, u, k, pool_first_word(paranoid, k, site), PoolFields{PoolTag::kLive, origin, strategy, size});
}

/// The Live header of a Map block handed out at `hdr`, and a forward record at `block` when they differ.
HAKMEM_FAST_PATH void write_headers(const HeaderCodec& codec, uintptr_t block, uintptr_t hdr, Method method,
                                    Origin origin, uint8_t strategy, uint64_t size, uintptr_t site) {
  if (hdr != block) {
    HeaderFields fwd;
    fwd.method = Method::kForward;
    fwd.size = hdr - block;
    codec.encode(fwd, reinterpret_cast<void*>(block));
  }
  HeaderFields f;
  f.method = method;
  f.state = State::kLive;
  f.origin = origin;
  f.strategy = strategy;
  f.size = size;
  f.site = site;
  codec.encode(f, reinterpret_cast<void*>(hdr));
}

}  // namespace hakmem
