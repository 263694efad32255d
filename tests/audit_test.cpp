// Audit (src/front/audit.h): AuditResult, and AllocatorAudit's run() and inspect() through
// Allocator<TestConfig> (a->audit(), a->inspect()).
//
// Guards: the audit is the suite's check of I2, I3, I4, I6 and I7 (ARCHITECTURE.md), so it must
// both pass on a consistent allocator and fail on a broken one; fail() keeps the first failure
// with its numbers; inspect() reads back what a free would see (verdict, backing, header fields,
// usable size, the threshold of the strategy in the header) for Pool, Map and foreign pointers.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "front/front.h"
#include "support/audit.h"

namespace hakmem {
namespace {

using TestAllocator = ScopedAllocator<TestConfig>;

constexpr uintptr_t kSite = 0x5a17e000;
constexpr size_t kPoolSize = 100;
constexpr size_t kMapSize = 1 << 20;  // at least the default 256 KiB threshold: Map

/// Options: on_error=report (a test may hand the allocator a bad pointer), no large slot (a freed
/// Map block goes to BigCache, where the audit walks it as cached).
Options AuditOptions() {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kLargeSlot, 0);
  return o;
}

// ------------------------------------------------------------------------------ AuditResult

// A fresh AuditResult is a pass with nothing counted and an empty failure text.
TEST(AuditResult, StartsOkAndEmpty) {
  const AuditResult r;
  EXPECT_TRUE(r.ok);
  EXPECT_STREQ(r.failure, "");
  EXPECT_EQ(r.mapped + r.pool_span_bytes + r.pool_live + r.pool_free + r.map_live + r.cached + r.pending + r.metadata +
                r.slots + r.pool_held + r.live_blocks,
            0u);
}

// fail() records the reason as "what (a vs b)" and turns ok off.
TEST(AuditResult, FailRecordsTheReasonWithBothNumbers) {
  AuditResult r;
  r.fail("I7 mapped != sum", 123, 4567);
  EXPECT_FALSE(r.ok);
  EXPECT_STREQ(r.failure, "I7 mapped != sum (123 vs 4567)");
}

// The first failure is kept: a later fail() changes neither the text nor ok.
TEST(AuditResult, FailKeepsTheFirstFailure) {
  AuditResult r;
  r.fail("first", 1, 2);
  r.fail("second", 3, 4);
  EXPECT_FALSE(r.ok);
  EXPECT_STREQ(r.failure, "first (1 vs 2)");
}

// A reason longer than the buffer is cut, never overrun: the text stays NUL-terminated and is the
// reason's first sizeof(failure) - 1 characters.
TEST(AuditResult, FailTruncatesALongReasonInsideTheBuffer) {
  AuditResult r;
  const std::string what(400, 'x');
  r.fail(what.c_str(), 18446744073709551615ull, 0);
  EXPECT_FALSE(r.ok);
  ASSERT_EQ(strnlen(r.failure, sizeof(r.failure)), sizeof(r.failure) - 1) << "not NUL-terminated inside the buffer";
  EXPECT_EQ(std::string(r.failure), what.substr(0, sizeof(r.failure) - 1));
}

// ----------------------------------------------------------------------------------- run()

// An allocator not yet initialized (or torn down) audits as a pass with nothing counted.
TEST(AllocatorAudit, AnUninitializedAllocatorAuditsCleanAndEmpty) {
  Allocator<TestConfig> a;
  const AuditResult r = a.audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.mapped, 0u);
  EXPECT_EQ(r.live_blocks, 0u);
}

// A clean allocator audits clean: right after init, and after a mix of Pool and Map allocations
// and frees. The walk's counts are what the sequence implies: the live blocks, the live Map bytes
// (the descriptors' lengths), the cached block, and I7's sum equal to what is mapped.
TEST(AllocatorAudit, ACleanAllocatorAuditsCleanAndCountsWhatIsLive) {
  TestAllocator a(AuditOptions());
  {
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.live_blocks, 0u);
    EXPECT_EQ(r.pool_live, 0u);
    EXPECT_EQ(r.map_live, 0u);
    EXPECT_EQ(r.mapped, r.metadata) << "nothing but metadata before the first allocation";
  }
  std::vector<void*> small, large;
  for (int i = 0; i < 10; ++i) small.push_back(a->alloc(kPoolSize, kSite));
  for (int i = 0; i < 3; ++i) large.push_back(a->alloc(kMapSize, kSite));
  for (void* p : small) ASSERT_NE(p, nullptr);
  for (void* p : large) ASSERT_NE(p, nullptr);
  const uint64_t block = SizeClasses::block_size(SizeClasses::class_of(kPoolSize));
  const uint64_t map_len =
      static_cast<MapBlock*>(a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(large[0])))->length;
  {
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.live_blocks, 13u);
    EXPECT_EQ(r.pool_live, 10 * block);
    EXPECT_EQ(r.map_live, 3 * map_len);
    EXPECT_EQ(r.cached, 0u);
    EXPECT_EQ(r.mapped, r.pool_span_bytes + r.map_live + r.cached + r.slots + r.pending + r.metadata);
  }
  for (int i = 0; i < 4; ++i) ASSERT_EQ(a->free(small[i], kSite), Verdict::kOk);
  ASSERT_EQ(a->free(large[0], kSite), Verdict::kOk);
  {
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.live_blocks, 8u);
    EXPECT_EQ(r.pool_live, 6 * block);
    EXPECT_EQ(r.map_live, 2 * map_len);
    EXPECT_EQ(r.cached, map_len) << "the freed Map block went to BigCache (no slot)";
    EXPECT_EQ(r.pool_free + r.pool_live + r.pool_held, r.pool_span_bytes);
  }
  for (size_t i = 4; i < small.size(); ++i) ASSERT_EQ(a->free(small[i], kSite), Verdict::kOk);
  for (size_t i = 1; i < large.size(); ++i) ASSERT_EQ(a->free(large[i], kSite), Verdict::kOk);
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.live_blocks, 0u);
  EXPECT_EQ(r.pool_live, 0u);
  EXPECT_EQ(r.map_live, 0u);
}

// The audit can fail: a live Pool block whose header is overwritten fails its checksum in the
// walk, and the reason names it. Restoring the bytes makes the audit pass again (it changed
// nothing). Same for a live Map block.
TEST(AllocatorAudit, ACorruptedLiveHeaderFailsTheAudit) {
  TestAllocator a(AuditOptions());
  struct Case {
    size_t size;
    const char* reason;
  };
  for (const Case& c : {Case{kPoolSize, "I2 carved Pool block prefix does not open"},
                        Case{kMapSize, "live Map block header fails its checksum"}}) {
    SCOPED_TRACE(c.size);
    void* p = a->alloc(c.size, kSite);
    ASSERT_NE(p, nullptr);
    EXPECT_AUDIT_OK(a);
    auto* h = static_cast<unsigned char*>(p) - kHeaderSize;
    unsigned char saved[kHeaderSize];
    memcpy(saved, h, kHeaderSize);
    h[9] ^= 0x40;  // a bit of the size field
    const AuditResult bad = a->audit();
    EXPECT_FALSE(bad.ok);
    EXPECT_EQ(std::string(bad.failure).rfind(c.reason, 0), 0u) << bad.failure;
    memcpy(h, saved, kHeaderSize);
    EXPECT_AUDIT_OK(a);
    ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
    EXPECT_AUDIT_OK(a);
  }
}

// --------------------------------------------------------------------------------- inspect()

// A live Pool block: verdict Ok, backed by a Pool span, its header as written (method Pool, Live,
// the origin, the size, no site in the default mode, the strategy in force) and the threshold of that
// strategy; usable covers the request.
TEST(AllocatorAudit, InspectReportsALivePoolBlock) {
  TestAllocator a(AuditOptions());
  const uintptr_t site = kSite | (uintptr_t{0xab} << 56);  // the high bits are not part of a site
  void* p = a->alloc(kPoolSize, site, Origin::kNew);
  ASSERT_NE(p, nullptr);
  const BlockInfo info = a->inspect(p);
  EXPECT_EQ(info.verdict, Verdict::kOk);
  EXPECT_EQ(info.kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(info.fields.method, Method::kPool);
  EXPECT_EQ(info.fields.state, State::kLive);
  EXPECT_EQ(info.fields.origin, Origin::kNew);
  EXPECT_EQ(info.fields.size, kPoolSize);
  EXPECT_EQ(info.fields.site, 0u) << "the default mode keeps no allocation site for a Pool block";
  EXPECT_EQ(info.fields.strategy, a->selector().current_id());
  EXPECT_EQ(info.threshold_of_strategy, a->options().get(Opt::kThreshold));
  EXPECT_GE(info.usable, kPoolSize);
  EXPECT_EQ(info.usable, a->usable_size(p));
  EXPECT_EQ(a->free(p, kSite, Origin::kNew), Verdict::kOk);
}

// A live Map block: verdict Ok, backed by a Map block, method Map, and the rest as for Pool.
TEST(AllocatorAudit, InspectReportsALiveMapBlock) {
  TestAllocator a(AuditOptions());
  void* p = a->alloc(kMapSize, kSite);
  ASSERT_NE(p, nullptr);
  const BlockInfo info = a->inspect(p);
  EXPECT_EQ(info.verdict, Verdict::kOk);
  EXPECT_EQ(info.kind, ExtentKind::kMapBlock);
  EXPECT_EQ(info.fields.method, Method::kMap);
  EXPECT_EQ(info.fields.state, State::kLive);
  EXPECT_EQ(info.fields.origin, Origin::kMalloc);
  EXPECT_EQ(info.fields.size, kMapSize);
  EXPECT_EQ(info.fields.site, kSite);
  EXPECT_EQ(info.fields.strategy, a->selector().current_id());
  EXPECT_EQ(info.threshold_of_strategy, a->options().get(Opt::kThreshold));
  EXPECT_LE(info.threshold_of_strategy, kMapSize) << "I3: a Map block's size reaches its strategy's threshold";
  EXPECT_GE(info.usable, kMapSize);
  EXPECT_EQ(info.usable, a->usable_size(p));
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
}

// A pointer hakmem never handed out (a stack variable): invalid, no backing, no header read
// (default fields), nothing usable. inspect() reports nothing and counts no error.
TEST(AllocatorAudit, InspectReportsAForeignPointerAsInvalidWithoutReadingIt) {
  TestAllocator a(AuditOptions());
  void* live = a->alloc(kPoolSize, kSite);  // the allocator has spans: the pointer is still not in one
  ASSERT_NE(live, nullptr);
  int on_stack = 0;
  const BlockInfo info = a->inspect(&on_stack);
  EXPECT_EQ(info.verdict, Verdict::kInvalidPointer);
  EXPECT_EQ(info.kind, ExtentKind::kNone);
  EXPECT_EQ(info.fields, HeaderFields{});
  EXPECT_EQ(info.usable, 0u);
  EXPECT_EQ(info.threshold_of_strategy, 0u);
  EXPECT_EQ(a->stats().errors_total, 0u) << "inspect() is not a free: it reports nothing";
  EXPECT_EQ(a->free(live, kSite), Verdict::kOk);
}

// A freed Pool block: still in a Pool span, its header says Free, and a free would call it a
// double free; nothing usable.
TEST(AllocatorAudit, InspectReportsAFreedPoolBlockAsADoubleFree) {
  TestAllocator a(AuditOptions());
  void* p = a->alloc(kPoolSize, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  const BlockInfo info = a->inspect(p);
  EXPECT_EQ(info.verdict, Verdict::kDoubleFree);
  EXPECT_EQ(info.kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(info.fields.state, State::kFree);
  EXPECT_EQ(info.usable, 0u);
  EXPECT_AUDIT_OK(a);
}

}  // namespace
}  // namespace hakmem
