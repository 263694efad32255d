// Tool tracking under ASan (built only with -DHAKMEM_TRACK=asan): a use after free into a freed
// Pool block or into a BigCache-held block dies with ASan's use-after-poison report, and a block
// handed out again, a re-aligned one, or memory mapped again after release is clean.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "front/front.h"
#include "support/audit.h"

using namespace hakmem;

static_assert(kTrackTool == TrackTool::kAsan, "this test is built only with HAKMEM_TRACK=asan");

namespace {

using Alloc = ScopedAllocator<TestConfig>;
constexpr uintptr_t kSite = 0x400200;
constexpr const char* kPoisoned = "AddressSanitizer: use-after-poison";

Options TrackOptions() {
  Options o;
  o.set(Opt::kCache, 64 * kMiB);
  o.set(Opt::kThreshold, 256 * kKiB);
  o.set(Opt::kDecayMs, 0);  // nothing leaves the cache or the releaser behind the test's back
  return o;
}

// volatile: the access must happen, in the child, exactly where the test says.
unsigned char Read(void* p, size_t at) { return static_cast<volatile unsigned char*>(p)[at]; }
void Write(void* p, size_t at) { static_cast<volatile unsigned char*>(p)[at] = 0x5a; }

}  // namespace

// The death tests fork: the child inherits the allocator with the block already freed.

TEST(TrackAsanDeathTest, ReadIntoAFreedPoolBlockIsUseAfterPoison) {
  Alloc a(TrackOptions());
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->inspect(p).kind, ExtentKind::kPoolSpan);
  a->free(p, kSite);
  // The first 8 bytes hold the free-list link and stay the allocator's; past them, poison.
  EXPECT_DEATH(Read(p, 8), kPoisoned);
  EXPECT_DEATH(Read(p, 99), kPoisoned);
}

TEST(TrackAsanDeathTest, WriteIntoAFreedPoolBlockIsUseAfterPoison) {
  Alloc a(TrackOptions());
  void* p = a->alloc(4000, kSite);
  ASSERT_NE(p, nullptr);
  a->free(p, kSite);
  EXPECT_DEATH(Write(p, 64), kPoisoned);
}

TEST(TrackAsanDeathTest, FreedAlignedPoolBlockIsPoisonedFromItsFirstByte) {
  Alloc a(TrackOptions());
  void* p = a->aligned_alloc(256, 100, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->inspect(p).kind, ExtentKind::kPoolSpan);
  a->free(p, kSite, Origin::kAligned);
  // Its free-list link sits in the alignment gap before p, so even p[0] is poisoned.
  EXPECT_DEATH(Read(p, 0), kPoisoned);
}

TEST(TrackAsanDeathTest, ReadIntoABigCacheBlockIsUseAfterPoison) {
  Options o = TrackOptions();
  o.set(Opt::kLargeSlot, 0);  // BigCache, not the thread's large slot, holds the freed block
  Alloc a(o);
  void* p = a->alloc(1 * kMiB, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(a->inspect(p).kind, ExtentKind::kMapBlock);
  a->free(p, kSite);
  ASSERT_EQ(a->stats().cache_blocks, 1u) << "the freed block must be held by BigCache";
  EXPECT_DEATH(Read(p, 0), kPoisoned);
  EXPECT_DEATH(Read(p, 1 * kMiB - 1), kPoisoned);
}

TEST(TrackAsanDeathTest, ReadIntoALargeSlotBlockIsUseAfterPoison) {
  Alloc a(TrackOptions());  // the default large_slot
  void* p = a->alloc(1 * kMiB, kSite);
  ASSERT_NE(p, nullptr);
  a->free(p, kSite);
  ASSERT_GT(a->stats().slot_bytes, 0u) << "the freed block must be held by this thread's large slot";
  EXPECT_DEATH(Read(p, 0), kPoisoned);
  EXPECT_DEATH(Read(p, 1 * kMiB - 1), kPoisoned);
  void* q = a->alloc(1 * kMiB, kSite);  // the slot hit unpoisons it again
  ASSERT_EQ(q, p);
  memset(q, 0x5a, 1 * kMiB);
  a->free(q, kSite);
}

TEST(TrackAsanDeathTest, WriteIntoABigCacheBlockIsUseAfterPoison) {
  Alloc a(TrackOptions());
  void* p = a->aligned_alloc(4096, 512 * kKiB, kSite);
  ASSERT_NE(p, nullptr);
  a->free(p, kSite, Origin::kAligned);
  ASSERT_EQ(a->stats().cache_blocks, 1u);
  EXPECT_DEATH(Write(p, 4096), kPoisoned);
}

TEST(TrackAsanDeathTest, ReadIntoAPendingBlockIsUseAfterPoison) {
  Options o = TrackOptions();
  o.set(Opt::kCache, 0);  // no cache: the freed block goes straight to the releaser, still mapped
  Alloc a(o);
  void* p = a->alloc(1 * kMiB, kSite);
  ASSERT_NE(p, nullptr);
  a->free(p, kSite);
  ASSERT_GT(a->stats().pending_bytes, 0u);
  EXPECT_DEATH(Read(p, 100), kPoisoned);
}

// ---- no false positives: what is handed out again is the caller's, every byte

TEST(TrackAsan, APoolBlockHandedOutAgainIsClean) {
  Alloc a(TrackOptions());
  void* p = a->alloc(100, kSite);
  a->free(p, kSite);
  void* q = a->alloc(100, kSite);
  ASSERT_EQ(q, p) << "the freed block is reused";
  memset(q, 0xab, a->usable_size(q));
  a->free(q, kSite);
  EXPECT_AUDIT_OK(&*a);  // the audit walks freed blocks' headers and links: none poisoned
}

TEST(TrackAsan, APoolBlockChangingAlignmentIsClean) {
  Alloc a(TrackOptions());
  // Plain, then aligned in the same block: the real header lands in bytes that were poisoned.
  void* p = a->alloc(200, kSite);
  a->free(p, kSite);
  void* q = a->aligned_alloc(64, 100, kSite);
  ASSERT_NE(q, nullptr);
  memset(q, 1, a->usable_size(q));
  a->free(q, kSite, Origin::kAligned);
  // And back: a plain block over the old gap and real header.
  void* r = a->alloc(200, kSite);
  memset(r, 2, a->usable_size(r));
  a->free(r, kSite);
  EXPECT_AUDIT_OK(&*a);
}

TEST(TrackAsan, DoubleFreesReadOnlyHeadersNeverPoisonedBytes) {
  Options o = TrackOptions();
  o.set(Opt::kOnError, kOnErrorReport);
  Alloc a(o);
  a->set_report_sink([](void*, const char*, size_t) {}, nullptr);
  // Diagnosing these reads the freed blocks' headers (an aligned block's real header sits past
  // its link, in what was user space): a poisoned header would make ASan fire here.
  void* aligned = a->aligned_alloc(128, 100, kSite);
  a->free(aligned, kSite, Origin::kAligned);
  EXPECT_EQ(a->free(aligned, kSite, Origin::kAligned), Verdict::kDoubleFree);
  void* big = a->aligned_alloc(8192, 1 * kMiB, kSite);
  a->free(big, kSite, Origin::kAligned);
  EXPECT_EQ(a->free(big, kSite, Origin::kAligned), Verdict::kDoubleFree);
  void* small = a->alloc(24, kSite);
  a->free(small, kSite);
  EXPECT_EQ(a->free(small, kSite), Verdict::kDoubleFree);
}

TEST(TrackAsan, ABigCacheHitIsCleanEvenWithAnotherAlignment) {
  Options o = TrackOptions();
  o.set(Opt::kLargeSlot, 0);  // the freed block waits in BigCache (an aligned request never takes the slot)
  Alloc a(o);
  void* p = a->alloc(1 * kMiB, kSite);
  a->free(p, kSite);
  void* q = a->aligned_alloc(8192, 1 * kMiB - 16 * kKiB, kSite);  // the same class: a hit
  ASSERT_EQ(a->stats().cache_hits, 1u);
  memset(q, 0xcd, a->usable_size(q));
  a->free(q, kSite, Origin::kAligned);
  void* r = a->alloc(1 * kMiB, kSite);
  memset(r, 0xef, a->usable_size(r));
  a->free(r, kSite);
  EXPECT_AUDIT_OK(&*a);
}

TEST(TrackAsan, MemoryMappedAgainAfterReleaseIsClean) {
  Alloc a(TrackOptions());
  for (int round = 0; round < 4; ++round) {
    void* p = a->alloc(2 * kMiB, kSite);
    ASSERT_NE(p, nullptr);
    memset(p, round, a->usable_size(p));
    void* small = a->alloc(48, kSite);
    memset(small, round, 48);
    a->free(small, kSite);
    a->free(p, kSite);
    a->flush();  // unmapped; the next round's mmap may return the same addresses
  }
}

TEST(TrackAsan, ReallocAndCallocKeepTheirBytesReachable) {
  Alloc a(TrackOptions());
  auto* p = static_cast<unsigned char*>(a->alloc(10, kSite));
  memset(p, 7, 10);
  p = static_cast<unsigned char*>(a->realloc(p, 300 * kKiB, kSite));  // Pool to Map
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p[9], 7);
  memset(p, 8, 300 * kKiB);
  p = static_cast<unsigned char*>(a->realloc(p, 40, kSite));  // back to Pool
  EXPECT_EQ(p[39], 8);
  a->free(p, kSite);
  auto* z = static_cast<unsigned char*>(a->calloc(1, 1 * kMiB, kSite));
  EXPECT_EQ(z[1 * kMiB - 1], 0);
  a->free(z, kSite);
}
