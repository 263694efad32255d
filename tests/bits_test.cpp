// core/bits.h: the integer helpers the free fast path relies on to place a pointer in its span.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backing/size_classes.h"
#include "core/bits.h"

using namespace hakmem;

namespace {

/// Every Pool block size (usable size plus the 16-byte header).
std::vector<uint64_t> pool_block_sizes() {
  std::vector<uint64_t> sizes;
  for (size_t c = 0; c < SizeClasses::kCount; ++c) sizes.push_back(SizeClasses::block_size(c));
  return sizes;
}

/// The most blocks of size d a span holds.
uint64_t span_capacity(uint64_t d) { return SizeClasses::span_size(SizeClasses::class_of(d - 16)) / d; }

/// exact_quotient()'s inputs for block size d: d = odd << shift.
struct Divisor {
  uint64_t inverse;
  unsigned shift;
  explicit Divisor(uint64_t d)
      : inverse(odd_inverse(d >> __builtin_ctzll(d))), shift(static_cast<unsigned>(__builtin_ctzll(d))) {}
};

}  // namespace

TEST(Bits, OddInverseIsTheInverseModulo2To64) {
  for (uint64_t m : {uint64_t{1}, uint64_t{3}, uint64_t{5}, uint64_t{0x2d5}, uint64_t{0xffffffffffffffff},
                     uint64_t{0x9e3779b97f4a7c15}, uint64_t{12345678901}}) {
    EXPECT_EQ(m * odd_inverse(m), 1u) << m;
  }
  for (uint64_t d : pool_block_sizes()) {
    const uint64_t odd = d >> __builtin_ctzll(d);
    EXPECT_EQ(odd * odd_inverse(odd), 1u) << "odd factor of block size " << d;
  }
}

// The free fast path's block check: exact_quotient(off) < carved must hold exactly when off is
// the offset of a carved block (a multiple of the block size, below carved of them). Checked
// for every Pool block size over the offsets of a span's first blocks and their neighbours, and
// for the offsets a bad pointer makes: below the span (the subtraction wraps) and with address
// bits above 46 set (lookup_initialized() ignores them, so the offset is at least 2^47 - 16).
TEST(Bits, ExactQuotientIsTheIndexOfABlockStartAndHugeOtherwise) {
  for (uint64_t d : pool_block_sizes()) {
    SCOPED_TRACE(d);
    const Divisor v(d);
    const uint64_t capacity = span_capacity(d);
    ASSERT_GE(capacity, 1u);
    // Any count of blocks a span can hold is far below the bound every non-multiple exceeds.
    const uint64_t bound = ~uint64_t{0} / d;
    for (uint64_t k = 0; k < 64; ++k) {
      EXPECT_EQ(exact_quotient(k * d, v.inverse, v.shift), k);
      for (uint64_t delta : {uint64_t{1}, uint64_t{8}, uint64_t{15}, uint64_t{16}, d / 2, d - 16, d - 1}) {
        if (delta == 0 || delta >= d) continue;
        EXPECT_GT(exact_quotient(k * d + delta, v.inverse, v.shift), bound) << "offset " << k * d + delta;
      }
    }
    for (uint64_t below : {uint64_t{1}, uint64_t{15}, uint64_t{16}, uint64_t{17}, d, uint64_t{4096}}) {
      EXPECT_GT(exact_quotient(0 - below, v.inverse, v.shift), capacity) << "offset -" << below;
    }
    for (unsigned bit : {47u, 48u, 52u, 56u, 63u}) {
      for (uint64_t k : {uint64_t{0}, uint64_t{1}, uint64_t{7}}) {
        const uint64_t off = (uint64_t{1} << bit) + k * d - 16;
        EXPECT_GT(exact_quotient(off, v.inverse, v.shift), capacity) << "bit " << bit << " block " << k;
      }
    }
  }
}
