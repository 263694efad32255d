// Paranoid mode's byte patterns: the canary after a block's requested size and the fill of freed blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/core.h"

namespace hakmem {

/// Bytes of the canary written right after the requested size (paranoid mode).
constexpr uint64_t kCanarySize = 8;
/// The byte a quarantined block is filled with, past its two bookkeeping words.
constexpr uint8_t kFreedFill = 0xdf;
/// Bytes at the start of a quarantined block's user area: the free site and its seal.
constexpr uint64_t kFreedRecord = 16;

/**
 * The keyed patterns of paranoid mode. The canary depends on the per-process
 * secret and on its own address, so a program cannot learn one canary and
 * write it back elsewhere, and a block copied over another does not carry a
 * valid canary with it. Unaligned: it starts right at the requested size.
 */
class Hardening {
public:
  void set_secret(uint64_t secret) {
    canary_key_ = mix64(secret ^ 0xca7a12e5ca7a12e5ull);
    record_key_ = mix64(secret ^ 0xf2eedf2eedf2eedfull);
  }

  uint64_t canary_at(uintptr_t at) const { return mix64(canary_key_ ^ at) | 1; }
  void write_canary(uintptr_t at) const {
    const uint64_t v = canary_at(at);
    memcpy(reinterpret_cast<void*>(at), &v, sizeof(v));
  }
  bool canary_intact(uintptr_t at) const {
    uint64_t v;
    memcpy(&v, reinterpret_cast<const void*>(at), sizeof(v));
    return v == canary_at(at);
  }

  /**
   * Fills a freed block's user area [user, user + n) (n >= 16): the free site,
   * a seal over it and the address, then kFreedFill to the end.
   */
  void fill_freed(uintptr_t user, uint64_t n, uintptr_t free_site) const {
    const uint64_t record[2] = {free_site, seal(user, free_site)};
    memcpy(reinterpret_cast<void*>(user), record, sizeof(record));
    memset(reinterpret_cast<void*>(user + kFreedRecord), kFreedFill, n - kFreedRecord);
  }

  /// True when fill_freed()'s record is intact; then *free_site is the site it recorded.
  bool read_record(uintptr_t user, uintptr_t* free_site) const {
    uint64_t record[2];
    memcpy(record, reinterpret_cast<const void*>(user), sizeof(record));
    if (record[1] != seal(user, record[0])) return false;
    *free_site = record[0];
    return true;
  }

  /// True when every byte of [from, to) is kFreedFill.
  static bool fill_intact(uintptr_t from, uintptr_t to) {
    constexpr uint64_t kWord = 0x0101010101010101ull * kFreedFill;
    uintptr_t a = from;
    for (; a < to && a % 8 != 0; ++a) {
      if (*reinterpret_cast<const uint8_t*>(a) != kFreedFill) return false;
    }
    for (; a + 8 <= to; a += 8) {
      uint64_t w;
      memcpy(&w, reinterpret_cast<const void*>(a), sizeof(w));
      if (w != kWord) return false;
    }
    for (; a < to; ++a) {
      if (*reinterpret_cast<const uint8_t*>(a) != kFreedFill) return false;
    }
    return true;
  }

private:
  uint64_t seal(uintptr_t user, uintptr_t site) const { return mix64(record_key_ ^ user ^ mix64(site)); }

  uint64_t canary_key_ = 0;
  uint64_t record_key_ = 0;
};

}  // namespace hakmem
