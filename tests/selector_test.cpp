// Selector: the twelve strategies, fixed mode, snapshots, and I3 (strategy before backing) through the allocator.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "front/front.h"

using namespace hakmem;

namespace {

TEST(Selector, TwelveGeometricThresholdsFrom64KiBTo32MiB) {
  static_assert(sizeof(kStrategyThresholds) / sizeof(kStrategyThresholds[0]) == 12);
  EXPECT_EQ(kLearnableStrategies, 12);
  EXPECT_EQ(kStrategyThresholds[0], 64u * 1024);
  EXPECT_EQ(kStrategyThresholds[11], 32u * 1024 * 1024);
  EXPECT_EQ(kMinThreshold, kStrategyThresholds[0]);
  EXPECT_EQ(kMaxThreshold, kStrategyThresholds[11]);
  const double ratio = std::pow(512.0, 1.0 / 11.0);
  for (size_t i = 0; i < 12; ++i) {
    const auto t = static_cast<double>(kStrategyThresholds[i]);
    EXPECT_EQ(kStrategyThresholds[i] % 4096, 0u) << "threshold " << i << " is not a 4 KiB multiple";
    // Each is the geometric value 64 KiB * ratio^i rounded to the nearest 4 KiB page.
    const double ideal = 65536.0 * std::pow(ratio, static_cast<double>(i));
    EXPECT_LE(std::fabs(t - ideal), 2048.0) << "threshold " << i << " is not the geometric " << ideal << " rounded";
    if (i == 0) continue;
    const auto prev = static_cast<double>(kStrategyThresholds[i - 1]);
    EXPECT_LT(kStrategyThresholds[i - 1], kStrategyThresholds[i]) << i;
    // Successive ratios within 1% of 512^(1/11), plus what rounding both ends to a page can add: half a page
    // on each is 1.8% + 1.0% at 114688 -> 204800 (1.28% off), and negligible from 1 MiB up.
    const double rounding = 2048.0 / prev + 2048.0 / t;
    EXPECT_NEAR(t / prev / ratio, 1.0, 0.01 + rounding) << "ratio of threshold " << i << " to " << i - 1;
    if (prev >= 1024.0 * 1024) {
      EXPECT_NEAR(t / prev / ratio, 1.0, 0.01) << "ratio of threshold " << i;
    }
  }
}

TEST(Selector, PoolServesEverySizeBelowTheLargestThreshold) {
  // ARCHITECTURE.md: Pool must serve every size below the largest threshold, even with alignment slack.
  EXPECT_GE(SizeClasses::kMaxUsable, kMaxThreshold);
}

TEST(Selector, DefaultIsTheFixed256KiBStrategy) {
  Selector s;
  const StrategySnapshot snap = s.snapshot();
  EXPECT_EQ(snap.id, kFixedStrategy);
  EXPECT_EQ(snap.threshold, 256u * 1024);
}

TEST(Selector, InitFixedWithANonTableThresholdUsesTheFixedId) {
  Selector s;
  s.init_fixed(256 * 1024);
  EXPECT_EQ(s.snapshot().id, kFixedStrategy);
  EXPECT_EQ(s.snapshot().threshold, 256u * 1024);
  EXPECT_EQ(s.threshold_of(kFixedStrategy), 256u * 1024);

  // Another value takes another fixed slot: id 12 keeps meaning 256 KiB for the
  // blocks that recorded it (I3), and the same value maps to the same slot again.
  ASSERT_TRUE(s.init_fixed(100000));
  const uint8_t id = s.snapshot().id;
  EXPECT_GT(id, kFixedStrategy);
  EXPECT_LT(id, kFixedStrategy + kFixedSlots);
  EXPECT_EQ(s.snapshot().threshold, 100000u);
  EXPECT_EQ(s.threshold_of(kFixedStrategy), 256u * 1024);
  ASSERT_TRUE(s.init_fixed(256 * 1024));
  EXPECT_EQ(s.snapshot().id, kFixedStrategy);
  ASSERT_TRUE(s.init_fixed(100000));
  EXPECT_EQ(s.snapshot().id, id);
  // Four slots in all: a fifth distinct value is refused and nothing changes.
  ASSERT_TRUE(s.init_fixed(100001 + 4096));
  ASSERT_TRUE(s.init_fixed(100001 + 8192));
  const uint8_t before = s.snapshot().id;
  EXPECT_FALSE(s.init_fixed(100001 + 12288));
  EXPECT_EQ(s.snapshot().id, before);
  // The twelve keep their thresholds whatever the fixed one is.
  for (uint8_t i = 0; i < kLearnableStrategies; ++i) EXPECT_EQ(s.threshold_of(i), kStrategyThresholds[i]);
}

TEST(Selector, InitFixedWithATableThresholdUsesItsId) {
  for (uint8_t i = 0; i < kLearnableStrategies; ++i) {
    Selector s;
    s.init_fixed(kStrategyThresholds[i]);
    const StrategySnapshot snap = s.snapshot();
    EXPECT_EQ(snap.id, i);
    EXPECT_EQ(snap.threshold, kStrategyThresholds[i]);
  }
}

TEST(Selector, SnapshotAgreesWithThresholdOf) {
  Selector s;
  ASSERT_TRUE(s.init_fixed(300 * 1024));
  const uint8_t fixed = s.snapshot().id;
  for (uint8_t id = 0; id < kFixedStrategy + kFixedSlots; ++id) {
    s.set_current(id);
    const StrategySnapshot snap = s.snapshot();
    EXPECT_EQ(snap.id, id);
    EXPECT_EQ(snap.threshold, s.threshold_of(id)) << int{id};
  }
  EXPECT_EQ(s.threshold_of(fixed), 300u * 1024);
}

TEST(Selector, OptionThresholdReachesTheAllocatorsSelector) {
  Options o;
  ASSERT_EQ(parse_options("threshold=1118208", o, nullptr, nullptr), 0u);
  ScopedAllocator<TestConfig> a(o);
  EXPECT_EQ(a->selector().snapshot().id, 5);
  EXPECT_EQ(a->selector().snapshot().threshold, 1118208u);
  EXPECT_EQ(a->stats().strategy, 5);
  EXPECT_EQ(a->stats().threshold, 1118208u);
}

/// I3 for each forced strategy: below the threshold is Pool, at or above it is Map, and the header records the id.
TEST(Selector, I3StrategyBeforeBackingForEveryStrategy) {
  ScopedAllocator<TestConfig> a;
  for (uint8_t id = 0; id <= kFixedStrategy; ++id) {
    a->selector().set_current(id);
    const uint64_t t = a->selector().threshold_of(id);
    struct Want {
      uint64_t size;
      ExtentKind kind;
    };
    const Want wants[] = {{t - 1, ExtentKind::kPoolSpan}, {t, ExtentKind::kMapBlock}, {t + 1, ExtentKind::kMapBlock}};
    std::vector<void*> blocks;
    for (const Want& w : wants) {
      SCOPED_TRACE("strategy " + std::to_string(id) + ", size " + std::to_string(w.size));
      void* p = a->alloc(w.size, 0x1000 + id);
      ASSERT_NE(p, nullptr);
      const BlockInfo info = a->inspect(p);
      EXPECT_EQ(info.verdict, Verdict::kOk);
      EXPECT_EQ(info.kind, w.kind) << "I3";
      EXPECT_EQ(info.fields.method, w.kind == ExtentKind::kMapBlock ? Method::kMap : Method::kPool) << "I2";
      EXPECT_EQ(info.fields.strategy, id) << "I3: header must record the strategy in force";
      EXPECT_EQ(info.threshold_of_strategy, t);
      EXPECT_GE(info.usable, w.size);
      blocks.push_back(p);
    }
    // Also through aligned_alloc: alignment slack must not push a below-threshold block to Map.
    for (size_t align : {size_t{64}, size_t{4096}, size_t{1} << 20}) {
      SCOPED_TRACE("strategy " + std::to_string(id) + ", aligned " + std::to_string(align));
      void* p = a->aligned_alloc(align, t - 1, 0x2000 + id);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
      const BlockInfo info = a->inspect(p);
      EXPECT_EQ(info.kind, ExtentKind::kPoolSpan) << "I3";
      EXPECT_EQ(info.fields.strategy, id);
      blocks.push_back(p);
      void* q = a->aligned_alloc(align, t, 0x2000 + id);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u);
      EXPECT_EQ(a->inspect(q).kind, ExtentKind::kMapBlock) << "I3";
      blocks.push_back(q);
    }
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    for (void* p : blocks) EXPECT_EQ(a->free(p, 0), Verdict::kOk);
    a->flush();
  }
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
}

/// A block keeps the strategy it was made under when the strategy changes later; the audit judges it by that one.
TEST(Selector, I3BlocksKeepTheirOwnStrategyAcrossASwitch) {
  ScopedAllocator<TestConfig> a;
  a->selector().set_current(11);  // 32 MiB: 1 MiB is Pool
  void* pool = a->alloc(1 << 20, 1);
  a->selector().set_current(0);  // 64 KiB: 1 MiB is Map
  void* map = a->alloc(1 << 20, 1);
  ASSERT_NE(pool, nullptr);
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(a->inspect(pool).kind, ExtentKind::kPoolSpan);
  EXPECT_EQ(a->inspect(pool).fields.strategy, 11);
  EXPECT_EQ(a->inspect(map).kind, ExtentKind::kMapBlock);
  EXPECT_EQ(a->inspect(map).fields.strategy, 0);
  AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;

  // realloc under the new strategy must land where that strategy says (I3), keeping the bytes (I5).
  memset(pool, 0x5a, 1 << 20);
  void* moved = a->realloc(pool, (1 << 20) + 16, 1);
  ASSERT_NE(moved, nullptr);
  const BlockInfo info = a->inspect(moved);
  EXPECT_EQ(info.kind, ExtentKind::kMapBlock) << "I3 after realloc under strategy 0";
  EXPECT_EQ(info.fields.strategy, 0);
  const auto* b = static_cast<const unsigned char*>(moved);
  for (size_t i = 0; i < (1 << 20); i += 4093) ASSERT_EQ(b[i], 0x5a) << i;

  // A shrink in place under a different strategy records the new one.
  a->selector().set_current(3);  // 360448: 1 MiB - 1 KiB is still Map
  void* same = a->realloc(moved, (1 << 20) - 1024, 1);
  ASSERT_NE(same, nullptr);
  EXPECT_EQ(a->inspect(same).kind, ExtentKind::kMapBlock);
  EXPECT_EQ(a->inspect(same).fields.strategy, 3);
  r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(a->free(same, 0), Verdict::kOk);
  EXPECT_EQ(a->free(map, 0), Verdict::kOk);
  r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
}

}  // namespace
