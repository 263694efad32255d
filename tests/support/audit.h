// Test support: assert that an allocator's walk of its structures finds I2, I3, I4, I6 and I7 intact.
#pragma once

#include <gtest/gtest.h>

/// Runs a->audit() (Allocator::audit) and fails the test with the broken invariant's message.
#define EXPECT_AUDIT_OK(a)                                                                                             \
  do {                                                                                                                 \
    const auto r_ = (a)->audit();                                                                                      \
    EXPECT_TRUE(r_.ok) << r_.failure;                                                                                  \
  } while (0)
