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

}  // namespace hakmem_test
