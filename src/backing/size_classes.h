// Pool size classes: 16-byte steps to 128 B, then four per doubling up to 64 MiB of usable space.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "header/header.h"

namespace hakmem {

/**
 * Usable sizes 16, 32, ..., 128, then 160, 192, 224, 256, 320, ... (four per
 * doubling), to 64 MiB. A block is its usable size plus the 16-byte header, so
 * every user pointer is 16-aligned. The top is twice the largest threshold so
 * that an aligned request below the threshold still fits the Pool (I3).
 */
struct SizeClasses {
  static constexpr size_t kSmallStep = 16;
  static constexpr size_t kSmallMax = 128;
  static constexpr size_t kSmallCount = kSmallMax / kSmallStep;  // classes 0..7
  static constexpr unsigned kFirstLog = 7;                        // 2^7 = 128
  static constexpr unsigned kTopLog = 26;                         // 2^26 = 64 MiB
  static constexpr size_t kCount = kSmallCount + (kTopLog - kFirstLog) * 4;
  static constexpr size_t kMaxUsable = size_t{1} << kTopLog;

  /// Smallest class whose usable size is >= n (n <= kMaxUsable).
  static constexpr size_t class_of(size_t n) {
    if (n <= kSmallMax) return n == 0 ? 0 : (n + kSmallStep - 1) / kSmallStep - 1;
    const unsigned lg = log2_floor(n - 1);  // n in (2^lg, 2^(lg+1)]
    const size_t sub = ((n - 1) - (size_t{1} << lg)) >> (lg - 2);
    return kSmallCount + (lg - kFirstLog) * 4 + sub;
  }

  /// Usable bytes of class c.
  static constexpr size_t usable(size_t c) {
    if (c < kSmallCount) return (c + 1) * kSmallStep;
    const size_t k = c - kSmallCount;
    const unsigned lg = kFirstLog + static_cast<unsigned>(k / 4);
    return (size_t{1} << lg) + (k % 4 + 1) * (size_t{1} << (lg - 2));
  }

  /// Bytes of a block of class c, header included.
  static constexpr size_t block_size(size_t c) { return usable(c) + kHeaderSize; }

  /// Bytes of a span (the run of pages carved into blocks of class c).
  static constexpr size_t span_size(size_t c) {
    const size_t bs = block_size(c);
    constexpr size_t kSmallSpan = 64 * 1024;
    constexpr size_t kLargeTarget = 4 * 1024 * 1024;
    if (bs * 8 <= kSmallSpan) return kSmallSpan;
    size_t n = kLargeTarget / bs;
    if (n > 8) n = 8;
    if (n < 1) n = 1;
    return static_cast<size_t>(round_up(bs * n, 4096));
  }
};

static_assert(SizeClasses::kCount == 84);
static_assert(SizeClasses::usable(SizeClasses::kCount - 1) == SizeClasses::kMaxUsable);
static_assert(SizeClasses::class_of(SizeClasses::kMaxUsable) == SizeClasses::kCount - 1);
static_assert(SizeClasses::class_of(129) == 8 && SizeClasses::usable(8) == 160);

}  // namespace hakmem
