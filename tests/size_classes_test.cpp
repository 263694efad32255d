// Tests of the Pool size classes (backing/size_classes.h) and the large-block classes (backing/map.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

#include "backing/backing.h"

using namespace hakmem;

namespace {

using SC = SizeClasses;
using LC = LargeClasses;

/// Sizes to probe past the exhaustive range: every class edge +-2 and a stride.
std::vector<uint64_t> sampled_sizes(uint64_t from, uint64_t to, uint64_t (*usable)(uint64_t), uint64_t count) {
  std::vector<uint64_t> v;
  for (uint64_t c = 0; c < count; ++c) {
    const uint64_t u = usable(c);
    for (uint64_t d = 0; d <= 4; ++d) {
      const uint64_t n = u + d - 2;
      if (n >= from && n <= to) v.push_back(n);
    }
  }
  for (uint64_t n = from; n <= to; n += 4093 * 7) v.push_back(n);  // odd stride: hits every residue class
  v.push_back(to);
  std::sort(v.begin(), v.end());
  return v;
}

uint64_t sc_usable(uint64_t c) { return SC::usable(static_cast<size_t>(c)); }
uint64_t lc_usable(uint64_t c) { return LC::usable(static_cast<uint32_t>(c)); }

/// Checks every Pool class property at size n; prev is class_of(n_prev) for the previous n.
::testing::AssertionResult pool_class_ok(uint64_t n, size_t* prev) {
  const size_t c = SC::class_of(n);
  if (c >= SC::kCount) return ::testing::AssertionFailure() << "class " << c << " out of range for n=" << n;
  if (c < *prev) return ::testing::AssertionFailure() << "class_of not monotone at n=" << n;
  *prev = c;
  if (SC::usable(c) < n)
    return ::testing::AssertionFailure() << "I5: usable(class_of(" << n << ")) = " << SC::usable(c) << " < n";
  if (c > 0 && SC::usable(c - 1) >= n)
    return ::testing::AssertionFailure() << "class_of(" << n << ") = " << c << " is not the smallest fitting class";
  if (n > 128 && static_cast<double>(SC::usable(c)) > static_cast<double>(n) * 1.25 + 16)
    return ::testing::AssertionFailure() << "waste bound broken at n=" << n << ": usable " << SC::usable(c);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult large_class_ok(uint64_t n, uint32_t* prev) {
  const uint32_t c = LC::class_of(n);
  if (c >= LC::kCount) return ::testing::AssertionFailure() << "class " << c << " out of range for n=" << n;
  if (c < *prev) return ::testing::AssertionFailure() << "class_of not monotone at n=" << n;
  *prev = c;
  if (LC::usable(c) < n)
    return ::testing::AssertionFailure() << "usable(class_of(" << n << ")) = " << LC::usable(c) << " < n";
  if (c > 0 && LC::usable(c - 1) >= n)
    return ::testing::AssertionFailure() << "class_of(" << n << ") = " << c << " is not the smallest fitting class";
  if (n > (uint64_t{1} << LC::kFirstLog) && static_cast<double>(LC::usable(c)) > static_cast<double>(n) * 1.25 + 16)
    return ::testing::AssertionFailure() << "waste bound broken at n=" << n << ": usable " << LC::usable(c);
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(SizeClasses, EverySizeUpTo1MiBGetsTheSmallestFittingClass_I5) {
  size_t prev = 0;
  for (uint64_t n = 0; n <= kMiB; ++n) ASSERT_TRUE(pool_class_ok(n, &prev));
}

TEST(SizeClasses, SampledSizesUpToMaxUsableGetTheSmallestFittingClass_I5) {
  size_t prev = 0;
  for (uint64_t n : sampled_sizes(kMiB, SC::kMaxUsable, &sc_usable, SC::kCount)) ASSERT_TRUE(pool_class_ok(n, &prev));
  EXPECT_EQ(SC::class_of(SC::kMaxUsable), SC::kCount - 1);
}

TEST(SizeClasses, SmallClassesStepBy16) {
  EXPECT_EQ(SC::class_of(0), 0u);
  EXPECT_EQ(SC::class_of(1), 0u);
  EXPECT_EQ(SC::class_of(16), 0u);
  EXPECT_EQ(SC::class_of(17), 1u);
  EXPECT_EQ(SC::class_of(128), 7u);
  EXPECT_EQ(SC::class_of(129), 8u);
  const size_t expected[] = {16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640};
  for (size_t c = 0; c < std::size(expected); ++c) EXPECT_EQ(SC::usable(c), expected[c]) << "class " << c;
}

TEST(SizeClasses, UsableIsARoundTripStrictlyIncreasingMultipleOf16) {
  for (size_t c = 0; c < SC::kCount; ++c) {
    EXPECT_EQ(SC::class_of(SC::usable(c)), c) << "class " << c;
    EXPECT_EQ(SC::usable(c) % 16, 0u) << "class " << c << ": user pointers must stay 16-aligned";
    EXPECT_EQ(SC::block_size(c), SC::usable(c) + kHeaderSize);
    EXPECT_EQ(SC::block_size(c) % 16, 0u);
    if (c > 0) {
      EXPECT_LT(SC::usable(c - 1), SC::usable(c)) << "class " << c;
      EXPECT_EQ(SC::class_of(SC::usable(c - 1) + 1), c) << "class " << c;
    }
  }
  EXPECT_EQ(SC::usable(SC::kCount - 1), SC::kMaxUsable);
}

TEST(SizeClasses, CoverEveryThresholdWithAlignmentSlack_I3) {
  // Pool must serve every size below the largest threshold (32 MiB), and the
  // top class is twice that so aligned requests below the threshold fit too.
  EXPECT_GE(SC::kMaxUsable, 2 * 32 * kMiB);
}

TEST(SizeClasses, SpanHoldsAtLeastOneBlockAndIsPageMultiple) {
  for (size_t c = 0; c < SC::kCount; ++c) {
    const size_t span = SC::span_size(c);
    EXPECT_GE(span, SC::block_size(c)) << "class " << c;
    EXPECT_EQ(span % 4096, 0u) << "class " << c;
    EXPECT_GE(span / SC::block_size(c), 1u) << "class " << c;
    if (SC::block_size(c) * 8 <= 64 * kKiB) {
      EXPECT_GE(span / SC::block_size(c), 8u) << "small class " << c << " gets at least 8 blocks";
    }
    // The span holds whole blocks; the tail it wastes is less than one page
    // plus one block.
    const size_t blocks = span / SC::block_size(c);
    EXPECT_LT(span - blocks * SC::block_size(c), SC::block_size(c) + 4096) << "class " << c;
  }
}

TEST(LargeClasses, EverySizeUpTo4MiBGetsTheSmallestFittingClass) {
  uint32_t prev = 0;
  for (uint64_t n = 0; n <= 4 * kMiB; ++n) ASSERT_TRUE(large_class_ok(n, &prev));
}

TEST(LargeClasses, SampledSizesUpTo1GiBGetTheSmallestFittingClass) {
  uint32_t prev = 0;
  for (uint64_t n : sampled_sizes(4 * kMiB, kGiB, &lc_usable, LC::kCount)) ASSERT_TRUE(large_class_ok(n, &prev));
  EXPECT_EQ(LC::class_of(kGiB), LC::kCount - 1);
}

TEST(LargeClasses, AboveOneGiBIsUncached) {
  for (uint64_t n :
       {uint64_t{kGiB} + 1, uint64_t{kGiB} + 4096, 2 * uint64_t{kGiB}, uint64_t{1} << 39, kMaxRequest, ~uint64_t{0}}) {
    EXPECT_EQ(LC::class_of(n), LC::kUncached) << n;
  }
}

TEST(LargeClasses, UsableIsARoundTripStrictlyIncreasingFourPerDoubling) {
  EXPECT_EQ(LC::usable(0), 64 * kKiB);
  EXPECT_EQ(LC::usable(1), 80 * kKiB);
  EXPECT_EQ(LC::usable(4), 128 * kKiB);
  EXPECT_EQ(LC::kCount, 57u);
  for (uint32_t c = 0; c < LC::kCount; ++c) {
    EXPECT_EQ(LC::class_of(LC::usable(c)), c) << "class " << c;
    EXPECT_EQ(LC::usable(c) % 4096, 0u) << "class " << c << ": page multiple";
    if (c > 0) {
      EXPECT_LT(LC::usable(c - 1), LC::usable(c)) << "class " << c;
      EXPECT_EQ(LC::class_of(LC::usable(c - 1) + 1), c) << "class " << c;
    }
  }
  // Four classes per doubling.
  for (uint32_t c = 1; c + 4 < LC::kCount; ++c) EXPECT_EQ(LC::usable(c + 4), 2 * LC::usable(c)) << c;
}

TEST(LargeClasses, ClassesStartAtTheSmallestThreshold) {
  // BigCache classes begin at the smallest selector threshold (64 KiB).
  EXPECT_EQ(uint64_t{1} << LC::kFirstLog, 64 * kKiB);
  EXPECT_EQ(LC::class_of(1), 0u);
  EXPECT_EQ(LC::class_of(64 * kKiB), 0u);
  EXPECT_EQ(LC::class_of(64 * kKiB + 1), 1u);
}
