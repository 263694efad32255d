// Pool size classes: 16-byte steps to 128 B, then four per doubling up to 64 MiB of usable space.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/core.h"
#include "header/header.h"

namespace hakmem {

namespace size_class_detail {
constexpr size_t kSmallStep = 16;
constexpr size_t kSmallMax = 128;
constexpr unsigned kFirstLog = 7;  // 2^7 = 128
/// Requests up to this size find their class in a table of 4 KiB: the fast path's sizes, all
/// below the smallest threshold (64 KiB), take one load and no compare.
constexpr size_t kLookupMax = 64 * 1024;

/// Smallest class whose usable size is >= n, by arithmetic.
constexpr size_t class_of_computed(size_t n) {
  if (n <= kSmallMax) return n == 0 ? 0 : (n + kSmallStep - 1) / kSmallStep - 1;
  const unsigned lg = log2_floor(n - 1);  // n in (2^lg, 2^(lg+1)]
  const size_t sub = ((n - 1) - (size_t{1} << lg)) >> (lg - 2);
  return kSmallMax / kSmallStep + (lg - kFirstLog) * 4 + sub;
}

/// Class of every request up to kLookupMax, indexed by (n + 15) / 16: every class
/// boundary up to 64 KiB is a multiple of 16, so one load replaces the arithmetic.
struct Lookup {
  uint8_t cls[kLookupMax / kSmallStep + 1];
};
inline constexpr Lookup kLookup = [] {
  Lookup t{};
  for (size_t i = 0; i <= kLookupMax / kSmallStep; ++i) {
    t.cls[i] = static_cast<uint8_t>(class_of_computed(i * kSmallStep));
  }
  return t;
}();
}  // namespace size_class_detail

/**
 * Usable sizes 16, 32, ..., 128, then 160, 192, 224, 256, 320, ... (four per
 * doubling), to 64 MiB. A block is its usable size plus the 16-byte header, so
 * every user pointer is 16-aligned. The top is twice the largest threshold so
 * that an aligned request below the threshold still fits the Pool (I3).
 */
struct SizeClasses {
  static constexpr size_t kSmallStep = size_class_detail::kSmallStep;
  static constexpr size_t kSmallMax = size_class_detail::kSmallMax;
  static constexpr size_t kSmallCount = kSmallMax / kSmallStep;  // classes 0..7
  static constexpr unsigned kFirstLog = size_class_detail::kFirstLog;
  static constexpr size_t kLookupMax = size_class_detail::kLookupMax;
  static constexpr unsigned kTopLog = 26;  // 2^26 = 64 MiB
  static constexpr size_t kCount = kSmallCount + (kTopLog - kFirstLog) * 4;
  static constexpr size_t kMaxUsable = size_t{1} << kTopLog;

  /// Smallest class whose usable size is >= n (n <= kMaxUsable).
  static constexpr size_t class_of(size_t n) {
    return n <= kLookupMax ? small_class_of(n) : size_class_detail::class_of_computed(n);
  }

  /// class_of() for n <= kLookupMax: one table load.
  static constexpr size_t small_class_of(size_t n) {
    return size_class_detail::kLookup.cls[(n + kSmallStep - 1) / kSmallStep];
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
static_assert(SizeClasses::class_of(0) == 0 && SizeClasses::class_of(16) == 0 && SizeClasses::class_of(17) == 1);
static_assert(SizeClasses::class_of(1024) == size_class_detail::class_of_computed(1024) &&
              SizeClasses::class_of(1025) == SizeClasses::class_of(1024) + 1);
static_assert(SizeClasses::usable(SizeClasses::kCount - 1) == SizeClasses::kMaxUsable);
static_assert(SizeClasses::class_of(SizeClasses::kMaxUsable) == SizeClasses::kCount - 1);
static_assert(SizeClasses::class_of(129) == 8 && SizeClasses::usable(8) == 160);

}  // namespace hakmem
