// Tests of backing/registry.h: lookup is safe for any value, assign/clear per page, table accounting.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "backing/backing.h"
#include "pal/pal.h"

using namespace hakmem;

namespace {

using Reg = Registry<LinuxPal>;
constexpr uintptr_t kPage = 4096;

int g_global = 42;

/// A registry over the real platform. Table mappings are leaked on purpose:
/// tests may not unmap (only pal/ and release/ do), and they are sparse.
struct Fixture {
  LinuxPal pal;
  std::atomic<uint64_t> tally{0};
  std::unique_ptr<Reg> reg = std::make_unique<Reg>();
  bool init() { return reg->init(&pal, &tally); }
};

}  // namespace

TEST(Registry, LookupBeforeInitIsNull) {
  Reg reg;
  EXPECT_EQ(reg.lookup(0), nullptr);
  EXPECT_EQ(reg.lookup(reinterpret_cast<uintptr_t>(&g_global)), nullptr);
  EXPECT_EQ(reg.lookup(0x7f0000000000), nullptr);
  EXPECT_EQ(reg.mapped_bytes(), 0u);
  Extent e;
  EXPECT_FALSE(reg.assign(0x7f0000000000, kPage, &e)) << "assign before init must refuse, not crash";
}

TEST(Registry, ForeignAndWildPointersAreNotOurs_I8) {
  Fixture f;
  ASSERT_TRUE(f.init());
  int on_stack = 0;
  void* from_libc = malloc(100);
  ASSERT_NE(from_libc, nullptr);
  const uintptr_t wild[] = {
      0,
      1,
      8,
      4095,
      4096,
      reinterpret_cast<uintptr_t>(&on_stack),
      reinterpret_cast<uintptr_t>(&g_global),
      reinterpret_cast<uintptr_t>(from_libc),
      reinterpret_cast<uintptr_t>(&malloc),
      (uintptr_t{1} << 47) - 1,
      uintptr_t{1} << 47,
      0xffff800000000000,
      0xffffffffff600000,  // vsyscall page
      0x8000000000000000,
      ~uintptr_t{0},
  };
  for (uintptr_t a : wild) EXPECT_EQ(f.reg->lookup(a), nullptr) << std::hex << a;
  free(from_libc);
}

TEST(Registry, InitMapsOnlyTheRoot) {
  Fixture f;
  ASSERT_TRUE(f.init());
  EXPECT_EQ(f.reg->mapped_bytes(), Reg::kRootBytes);
  EXPECT_EQ(f.tally.load(), Reg::kRootBytes);
  EXPECT_EQ(Reg::kRootBytes, (size_t{1} << 17) * sizeof(void*));
  EXPECT_EQ(Reg::kLeafBytes, (size_t{1} << 18) * sizeof(void*));
  EXPECT_EQ(Reg::kRootBits + Reg::kLeafBits + Reg::kPageShift, Reg::kAddressBits);
}

TEST(Registry, AssignedMappedRangeAnswersEveryPageAndNothingOutside_I2) {
  Fixture f;
  ASSERT_TRUE(f.init());
  // A fresh registry: whatever the kernel put next to this mapping is not assigned.
  constexpr size_t kLen = 16 * kPage;
  LinuxPal pal;
  void* mem = pal.map(kLen, Layer::kTest);
  ASSERT_NE(mem, nullptr);
  const uintptr_t base = reinterpret_cast<uintptr_t>(mem);
  Extent e{base, kLen, ExtentKind::kMapBlock};
  ASSERT_TRUE(f.reg->assign(base, kLen, &e));
  EXPECT_EQ(f.reg->lookup(base), &e);
  EXPECT_EQ(f.reg->lookup(base + 1), &e);
  EXPECT_EQ(f.reg->lookup(base + kLen - 1), &e);
  for (uintptr_t p = base; p < base + kLen; p += kPage) {
    EXPECT_EQ(f.reg->lookup(p), &e) << "page " << (p - base) / kPage;
    EXPECT_EQ(f.reg->lookup(p + kPage - 1), &e) << "end of page " << (p - base) / kPage;
  }
  EXPECT_EQ(f.reg->lookup(base - 1), nullptr);
  EXPECT_EQ(f.reg->lookup(base - kPage), nullptr);
  EXPECT_EQ(f.reg->lookup(base + kLen), nullptr);
  EXPECT_EQ(f.reg->lookup(base + kLen + kPage), nullptr);

  f.reg->clear(base, kLen);
  for (uintptr_t p = base; p < base + kLen; p += kPage) EXPECT_EQ(f.reg->lookup(p), nullptr);
  EXPECT_EQ(f.reg->lookup(base + kLen - 1), nullptr);
}

TEST(Registry, ReassignReplacesOwnerAndClearIsPartial) {
  Fixture f;
  ASSERT_TRUE(f.init());
  const uintptr_t base = 0x600000000000;
  Extent a{base, 8 * kPage, ExtentKind::kPoolSpan};
  Extent b{base + 4 * kPage, 4 * kPage, ExtentKind::kMapBlock};
  ASSERT_TRUE(f.reg->assign(base, 8 * kPage, &a));
  ASSERT_TRUE(f.reg->assign(base + 4 * kPage, 4 * kPage, &b));
  for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(f.reg->lookup(base + i * kPage), &a) << i;
  for (unsigned i = 4; i < 8; ++i) EXPECT_EQ(f.reg->lookup(base + i * kPage), &b) << i;
  f.reg->clear(base + 2 * kPage, 4 * kPage);
  EXPECT_EQ(f.reg->lookup(base + 1 * kPage), &a);
  EXPECT_EQ(f.reg->lookup(base + 2 * kPage), nullptr);
  EXPECT_EQ(f.reg->lookup(base + 5 * kPage), nullptr);
  EXPECT_EQ(f.reg->lookup(base + 6 * kPage), &b);
}

TEST(Registry, RangeAcrossGiBBoundaryAnswersOnBothSides) {
  Fixture f;
  ASSERT_TRUE(f.init());
  // The registry never touches the memory it maps, so an unmapped range will do.
  const uintptr_t boundary = 0x7e0000000000;
  ASSERT_EQ(boundary % kGiB, 0u);
  const uintptr_t base = boundary - 2 * kPage;
  const size_t len = 4 * kPage;
  Extent e{base, len, ExtentKind::kMapBlock};
  const size_t before = f.reg->mapped_bytes();
  ASSERT_TRUE(f.reg->assign(base, len, &e));
  EXPECT_EQ(f.reg->mapped_bytes(), before + 2 * Reg::kLeafBytes) << "two GiBs touched, two leaves";
  EXPECT_EQ(f.tally.load(), before + 2 * Reg::kLeafBytes);
  EXPECT_EQ(f.reg->lookup(base), &e);
  EXPECT_EQ(f.reg->lookup(boundary - 1), &e);
  EXPECT_EQ(f.reg->lookup(boundary), &e);
  EXPECT_EQ(f.reg->lookup(base + len - 1), &e);
  EXPECT_EQ(f.reg->lookup(base - 1), nullptr);
  EXPECT_EQ(f.reg->lookup(base + len), nullptr);
  f.reg->clear(base, len);
  EXPECT_EQ(f.reg->lookup(boundary - 1), nullptr);
  EXPECT_EQ(f.reg->lookup(boundary), nullptr);
  EXPECT_EQ(f.reg->mapped_bytes(), before + 2 * Reg::kLeafBytes) << "clear keeps leaves (they are reusable)";
}

TEST(Registry, MappedBytesGrowsOneLeafPerNewGiB_I7) {
  Fixture f;
  ASSERT_TRUE(f.init());
  const uintptr_t start = 0x500000000000;
  Extent e;
  size_t leaves = 0;
  for (unsigned g = 0; g < 5; ++g) {
    const uintptr_t gib = start + g * kGiB;
    ASSERT_TRUE(f.reg->assign(gib + 7 * kPage, kPage, &e));
    ++leaves;
    EXPECT_EQ(f.reg->mapped_bytes(), Reg::kRootBytes + leaves * Reg::kLeafBytes) << "GiB " << g;
    // More ranges inside an already-touched GiB cost nothing.
    ASSERT_TRUE(f.reg->assign(gib + kGiB - kPage, kPage, &e));
    ASSERT_TRUE(f.reg->assign(gib, 3 * kPage, &e));
    EXPECT_EQ(f.reg->mapped_bytes(), Reg::kRootBytes + leaves * Reg::kLeafBytes) << "GiB " << g;
    EXPECT_EQ(f.tally.load(), Reg::kRootBytes + leaves * Reg::kLeafBytes);
  }
  // A range ending exactly at a GiB boundary does not touch the next GiB.
  ASSERT_TRUE(f.reg->assign(start + 5 * kGiB + kGiB - 2 * kPage, 2 * kPage, &e));
  ++leaves;
  EXPECT_EQ(f.reg->mapped_bytes(), Reg::kRootBytes + leaves * Reg::kLeafBytes);
  EXPECT_EQ(f.reg->lookup(start + 6 * kGiB), nullptr);
}

TEST(Registry, AssignRejectsEmptyAndBeyond47Bits) {
  Fixture f;
  ASSERT_TRUE(f.init());
  Extent e;
  const size_t before = f.reg->mapped_bytes();
  EXPECT_FALSE(f.reg->assign(0x500000000000, 0, &e));
  EXPECT_FALSE(f.reg->assign((uintptr_t{1} << 47) - kPage, 2 * kPage, &e)) << "range crosses 2^47";
  EXPECT_FALSE(f.reg->assign(0xffff800000000000, kPage, &e));
  EXPECT_EQ(f.reg->mapped_bytes(), before);
  // The last page below 2^47 is fine.
  ASSERT_TRUE(f.reg->assign((uintptr_t{1} << 47) - kPage, kPage, &e));
  EXPECT_EQ(f.reg->lookup((uintptr_t{1} << 47) - 1), &e);
  EXPECT_EQ(f.reg->lookup(uintptr_t{1} << 47), nullptr);
}

TEST(Registry, ReleaseTablesHandsBackEveryMapping) {
  Fixture f;
  ASSERT_TRUE(f.init());
  Extent e;
  const uintptr_t start = 0x400000000000;
  for (unsigned g = 0; g < 3; ++g) ASSERT_TRUE(f.reg->assign(start + g * 7 * kGiB, kPage, &e));
  const size_t expected_bytes = f.reg->mapped_bytes();
  ASSERT_EQ(expected_bytes, Reg::kRootBytes + 3 * Reg::kLeafBytes);
  std::vector<std::pair<uintptr_t, size_t>> got;
  f.reg->release_tables([&](uintptr_t addr, size_t len) { got.emplace_back(addr, len); });
  ASSERT_EQ(got.size(), 4u) << "three leaves and the root";
  size_t total = 0;
  size_t leaves = 0;
  size_t roots = 0;
  for (auto& [addr, len] : got) {
    EXPECT_NE(addr, 0u);
    EXPECT_EQ(addr % kPage, 0u);
    total += len;
    leaves += len == Reg::kLeafBytes;
    roots += len == Reg::kRootBytes;
  }
  EXPECT_EQ(leaves, 3u);
  EXPECT_EQ(roots, 1u);
  EXPECT_EQ(got.back().second, Reg::kRootBytes) << "root goes last, after the leaves it points to";
  EXPECT_EQ(total, expected_bytes);
  EXPECT_EQ(f.reg->mapped_bytes(), 0u);
  for (unsigned g = 0; g < 3; ++g) EXPECT_EQ(f.reg->lookup(start + g * 7 * kGiB), nullptr);
  // A second release has nothing to hand back.
  size_t again = 0;
  f.reg->release_tables([&](uintptr_t, size_t) { ++again; });
  EXPECT_EQ(again, 0u);
}

TEST(Registry, TablesAreMappedSparseAndAttributedToRegistry_I1) {
  auto pal = std::make_unique<RecordingPal<LinuxPal>>();
  std::atomic<uint64_t> tally{0};
  auto reg = std::make_unique<Registry<RecordingPal<LinuxPal>>>();
  ASSERT_TRUE(reg->init(pal.get(), &tally));
  Extent e;
  ASSERT_TRUE(reg->assign(0x300000000000, kPage, &e));
  ASSERT_TRUE(reg->assign(0x300000000000 + kGiB, kPage, &e));
  EXPECT_EQ(pal->calls(PalOp::kMapSparse, Layer::kRegistry), 3u);
  EXPECT_EQ(pal->bytes(PalOp::kMapSparse, Layer::kRegistry), Reg::kRootBytes + 2 * Reg::kLeafBytes);
  EXPECT_EQ(pal->calls(PalOp::kMap), 0u) << "tables must be sparse (no commit charge)";
  EXPECT_EQ(pal->calls(PalOp::kUnmap), 0u);
  EXPECT_EQ(pal->bytes(PalOp::kMapSparse), reg->mapped_bytes());
}

TEST(Registry, InitFailsCleanlyWhenThePlatformRefuses_I12) {
  FailingPal<LinuxPal> pal;
  pal.set_fail_all(true);
  std::atomic<uint64_t> tally{0};
  Registry<FailingPal<LinuxPal>> reg;
  EXPECT_FALSE(reg.init(&pal, &tally));
  EXPECT_EQ(tally.load(), 0u);
  EXPECT_EQ(reg.mapped_bytes(), 0u);
  EXPECT_EQ(reg.lookup(0x500000000000), nullptr);
  Extent e;
  EXPECT_FALSE(reg.assign(0x500000000000, kPage, &e));
}

TEST(Registry, AssignFailsWithNothingChangedWhenALeafCannotBeMapped_I12) {
  FailingPal<LinuxPal> pal;
  std::atomic<uint64_t> tally{0};
  auto reg = std::make_unique<Registry<FailingPal<LinuxPal>>>();
  ASSERT_TRUE(reg->init(&pal, &tally));
  const uintptr_t boundary = 0x510000000000;
  const uintptr_t base = boundary - kPage;
  Extent e{base, 2 * kPage, ExtentKind::kMapBlock};
  pal.fail_nth_map(2);  // the first leaf maps, the second does not
  EXPECT_FALSE(reg->assign(base, 2 * kPage, &e));
  EXPECT_EQ(reg->lookup(base), nullptr) << "a failed assign changes no answer";
  EXPECT_EQ(reg->lookup(boundary), nullptr);
  EXPECT_EQ(tally.load(), reg->mapped_bytes()) << "the leaf that was made is still accounted";
  pal.reset_failures();
  EXPECT_TRUE(reg->assign(base, 2 * kPage, &e));
  EXPECT_EQ(reg->lookup(base), &e);
  EXPECT_EQ(reg->lookup(boundary), &e);
  EXPECT_EQ(reg->mapped_bytes(), Reg::kRootBytes + 2 * Reg::kLeafBytes);
}

TEST(Registry, UnalignedRangeCoversEveryPageItTouches) {
  // assign() documents "every page of [base, base+len)": a range that starts
  // mid-page and runs into the next page touches two pages. (Today's callers
  // pass page-aligned mappings; this guards the documented contract.)
  Fixture f;
  ASSERT_TRUE(f.init());
  const uintptr_t page = 0x520000000000;
  Extent e{page + kPage / 2, kPage, ExtentKind::kMapBlock};
  ASSERT_TRUE(f.reg->assign(page + kPage / 2, kPage, &e));
  EXPECT_EQ(f.reg->lookup(page + kPage / 2), &e);
  EXPECT_EQ(f.reg->lookup(page + kPage + kPage / 2 - 1), &e) << "last byte of the range, on the second page";
  f.reg->clear(page + kPage / 2, kPage);
  EXPECT_EQ(f.reg->lookup(page + kPage / 2), nullptr);
  EXPECT_EQ(f.reg->lookup(page + kPage + kPage / 2 - 1), nullptr);
}
