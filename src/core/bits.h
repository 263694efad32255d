// Bit and integer helpers shared by every layer; no allocation, no syscalls.
#pragma once

#include <x86intrin.h>

#include <cstddef>
#include <cstdint>

namespace hakmem {

/// True when x is a power of two (0 is not).
constexpr bool is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/// Rounds x up to a multiple of the power of two a; saturates instead of wrapping.
constexpr uint64_t round_up(uint64_t x, uint64_t a) {
  const uint64_t r = x + (a - 1);
  if (r < x) return ~uint64_t{0} & ~(a - 1);
  return r & ~(a - 1);
}

/// Rounds x down to a multiple of the power of two a.
constexpr uint64_t round_down(uint64_t x, uint64_t a) { return x & ~(a - 1); }

/// floor(log2(x)) for x > 0.
constexpr unsigned log2_floor(uint64_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }

/// ceil(log2(x)) for x > 0.
constexpr unsigned log2_ceil(uint64_t x) { return x <= 1 ? 0u : log2_floor(x - 1) + 1u; }

/// High 64 bits of a 64x64-bit product: the exact-division trick used for block indices.
inline uint64_t mul_high(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

/// Multiplier m such that mul_high(n, m) == n / d for every n < 2^32 (d >= 1).
constexpr uint64_t div_magic(uint64_t d) { return d == 1 ? ~uint64_t{0} : (~uint64_t{0} / d) + 1; }

/// Division by d through its magic; exact for n < 2^32 and d >= 2 (d == 1 is handled).
inline uint64_t div_by_magic(uint64_t n, uint64_t d, uint64_t magic) { return d == 1 ? n : mul_high(n, magic); }

/// The inverse of odd m modulo 2^64 (Newton's iteration: each step doubles the correct low bits).
constexpr uint64_t odd_inverse(uint64_t m) {
  uint64_t x = m;  // right to 3 bits for any odd m
  for (int i = 0; i < 5; ++i) x *= 2 - m * x;
  return x;
}

/**
 * n / d when d divides n, and a value above (2^64 - 1) / d when it does not, for d = odd * 2^shift and
 * inverse = odd_inverse(odd): the product by the inverse undoes the odd factor exactly on multiples
 * of it, and the rotation moves any remainder bits of the power of two to the top. One compare of
 * the result against a count of blocks thus checks divisibility and range at once.
 */
inline uint64_t exact_quotient(uint64_t n, uint64_t inverse, unsigned shift) {
  const uint64_t x = n * inverse;
  return (x >> shift) | (x << ((64 - shift) & 63));
}

/// a * b, or false when it overflows.
inline bool mul_overflows(size_t a, size_t b, size_t* out) { return __builtin_mul_overflow(a, b, out); }

/// A mixer with good avalanche (splitmix64 finalizer); used for site buckets and keyed checks.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/// The CPU's timestamp counter: a cheap clock for costing the large path (learn mode only).
inline uint64_t cycles() { return __rdtsc(); }

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

}  // namespace hakmem
