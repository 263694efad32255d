// Temporary smoke test while the core comes up.
#include <gtest/gtest.h>

#include "front/front.h"

using namespace hakmem;

TEST(Smoke, AllocFreeAudit) {
  ScopedAllocator<TestConfig> a;
  std::vector<void*> v;
  for (size_t s : {1ul, 16ul, 100ul, 4000ul, 70000ul, 300000ul, 3000000ul}) {
    void* p = a->alloc(s, 0x1234);
    ASSERT_NE(p, nullptr);
    memset(p, 0xab, s);
    v.push_back(p);
  }
  AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  for (void* p : v) EXPECT_EQ(a->free(p, 0), Verdict::kOk);
  r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
}
