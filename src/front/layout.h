// Block layout: where a block's header goes, and the headers a block is handed out with.
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

/// The Live header of a block handed out at `hdr`, and a forward record at `block` when they differ.
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
