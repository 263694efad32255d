// props/ support: the property macro (always prints rapidcheck's verdict), byte patterns, the props main().
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>

#include "support/pattern.h"

namespace hakmem_props {

/**
 * Runs a rapidcheck property as the body of the current GoogleTest test. Unlike
 * rapidcheck's own RC_GTEST_PROP it prints the verdict on success too ("OK,
 * passed N tests"), which ci/props-long tabulates.
 */
template <class Testable>
void check_prop(Testable&& testable) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  rc::detail::TestMetadata md;
  md.id = std::string(info->test_suite_name()) + "/" + info->name();
  md.description = info->name();
  const auto result = rc::detail::checkTestable(std::forward<Testable>(testable), md);
  std::ostringstream msg;
  rc::detail::printResultMessage(result, msg);
  std::cout << "[ rapidcheck ] " << md.id << ": " << msg.str() << std::endl;
  if (!result.template is<rc::detail::SuccessResult>()) FAIL() << msg.str();
}

/// Runs the GoogleTest tests. RC_PARAMS from the caller's environment wins; otherwise the
/// bounded default that ctest passes as HAKMEM_PROPS_RC_PARAMS (rapidcheck reads its
/// configuration on first use, after this).
inline int props_main(int argc, char** argv) {
  const char* fallback = getenv("HAKMEM_PROPS_RC_PARAMS");
  if (getenv("RC_PARAMS") == nullptr && fallback != nullptr) setenv("RC_PARAMS", fallback, 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// ---------------------------------------------------------------- patterns

/// The i-th 8-byte word of the pattern keyed `key` (never all-zero in practice, so zero-fill shows).
inline uint64_t word(uint64_t key, uint64_t i) {
  return (key + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xC2B2AE3D27D4EB4Full + 0x165667B19E3779F9ull);
}

// Blocks above 256 KiB carry the pattern in their first and last 64 KiB and in a 64-byte
// stripe every 64 KiB (tests/support/pattern.h says why). The words are props' own (word()).
constexpr hakmem_test::Striping kStriping{256 * 1024, 64 * 1024, 64 * 1024};

/// Calls fn(off, len) for each range of an n-byte block that carries the pattern (off 8-aligned).
template <class Fn>
void for_each_range(uint64_t n, Fn&& fn) {
  hakmem_test::for_each_striped_range(n, kStriping, fn);
}

inline unsigned char byte_at(uint64_t key, uint64_t off) {
  const uint64_t w = word(key, off / 8);
  return static_cast<unsigned char>(w >> (8 * (off % 8)));
}

/// Writes the pattern of an n-byte block keyed `key`.
inline void fill(void* p, uint64_t n, uint64_t key) {
  auto* b = static_cast<unsigned char*>(p);
  for_each_range(n, [&](uint64_t off, uint64_t len) {
    uint64_t i = off;
    for (; i + 8 <= off + len; i += 8) {
      const uint64_t w = word(key, i / 8);
      memcpy(b + i, &w, 8);
    }
    for (; i < off + len; ++i) b[i] = byte_at(key, i);
  });
}

/// The first offset below `keep` where an n-byte block keyed `key` lost its pattern, or -1.
inline int64_t mismatch(const void* p, uint64_t n, uint64_t keep, uint64_t key) {
  const auto* b = static_cast<const unsigned char*>(p);
  int64_t bad = -1;
  for_each_range(n, [&](uint64_t off, uint64_t len) {
    if (bad >= 0 || off >= keep) return;
    const uint64_t end = off + len < keep ? off + len : keep;
    uint64_t i = off;
    for (; i + 8 <= end; i += 8) {
      uint64_t w;
      memcpy(&w, b + i, 8);
      if (w != word(key, i / 8)) break;
    }
    for (; i < end; ++i) {
      if (b[i] != byte_at(key, i)) {
        bad = static_cast<int64_t>(i);
        return;
      }
    }
  });
  return bad;
}

/// The first non-zero byte in the pattern-carrying ranges of an n-byte block, or -1.
inline int64_t nonzero(const void* p, uint64_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  int64_t bad = -1;
  for_each_range(n, [&](uint64_t off, uint64_t len) {
    for (uint64_t i = off; bad < 0 && i < off + len; ++i) {
      if (b[i] != 0) bad = static_cast<int64_t>(i);
    }
  });
  return bad;
}

}  // namespace hakmem_props

/// A rapidcheck property as a GoogleTest test Suite.Name (one ctest test each).
#define HAKMEM_PROP(Suite, Name, ArgList)                                                                              \
  void hakmem_prop_##Suite##_##Name ArgList;                                                                           \
  TEST(Suite, Name) { ::hakmem_props::check_prop(&hakmem_prop_##Suite##_##Name); }                                     \
  void hakmem_prop_##Suite##_##Name ArgList
