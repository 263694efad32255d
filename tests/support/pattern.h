// Test support: a keyed byte pattern written into blocks and checked later (contents survive, I5).
#pragma once

#include <cstdint>
#include <cstring>

namespace hakmem_test {

/// The i-th 8-byte word of the pattern for `key`.
inline uint64_t pattern_word(uint64_t key, uint64_t i) { return (key ^ (i * 0x9E3779B97F4A7C15ull)) + i; }

/// Writes the pattern into bytes [off, off + len) of a block starting at b (off 8-aligned).
inline void fill_pattern(unsigned char* b, uint64_t off, uint64_t len, uint64_t key) {
  const uint64_t end = off + len;
  for (; off + 8 <= end; off += 8) {
    const uint64_t w = pattern_word(key, off / 8);
    memcpy(b + off, &w, 8);
  }
  if (off < end) {
    const uint64_t w = pattern_word(key, off / 8);
    memcpy(b + off, &w, end - off);
  }
}

/// The offset of the first byte in [off, off + len) that breaks the pattern, or -1.
inline int64_t pattern_mismatch(const unsigned char* b, uint64_t off, uint64_t len, uint64_t key) {
  const uint64_t end = off + len;
  for (; off + 8 <= end; off += 8) {
    uint64_t have;
    memcpy(&have, b + off, 8);
    if (have != pattern_word(key, off / 8)) break;
  }
  for (; off < end; ++off) {
    const uint64_t w = pattern_word(key, off / 8);
    if (b[off] != reinterpret_cast<const unsigned char*>(&w)[off % 8]) return static_cast<int64_t>(off);
  }
  return -1;
}

/// Which bytes of a block carry the pattern: all of them up to `full_max`; above, the first and
/// last `edge` bytes and a 64-byte stripe every `stride` (a full pattern on multi-MiB blocks would
/// spend a bounded run's time on page faults, and the stripes still see a block that moved,
/// shrank or overlaps another).
struct Striping {
  uint64_t full_max;
  uint64_t edge;
  uint64_t stride;
};

/// Calls fn(off, len) for the pattern-carrying ranges of an n-byte block, in order (offsets
/// 8-aligned except the very end; nothing for n == 0).
template <class Fn>
void for_each_striped_range(uint64_t n, Striping s, Fn&& fn) {
  constexpr uint64_t kStripe = 64;
  if (n <= s.full_max) {
    if (n > 0) fn(uint64_t{0}, n);
    return;
  }
  fn(uint64_t{0}, s.edge);
  for (uint64_t off = s.edge; off + kStripe <= n - s.edge; off += s.stride) fn(off, kStripe);
  const uint64_t tail = (n - s.edge) & ~uint64_t{7};
  fn(tail, n - tail);
}

/// Writes the pattern keyed `key` over the striped ranges of an n-byte block.
inline void fill_striped(void* p, uint64_t n, uint64_t key, Striping s) {
  for_each_striped_range(
      n, s, [&](uint64_t off, uint64_t len) { fill_pattern(static_cast<unsigned char*>(p), off, len, key); });
}

/// The first byte of the striped ranges below min(n, keep) that breaks the pattern, or -1.
inline int64_t striped_mismatch(const void* p, uint64_t n, uint64_t keep, uint64_t key, Striping s) {
  int64_t bad = -1;
  for_each_striped_range(n, s, [&](uint64_t off, uint64_t len) {
    if (bad >= 0 || off >= keep) return;
    if (off + len > keep) len = keep - off;
    bad = pattern_mismatch(static_cast<const unsigned char*>(p), off, len, key);
  });
  return bad;
}

}  // namespace hakmem_test
