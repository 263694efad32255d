// Tests of front/map_path.h, MapPath<Pal> by its own interface: acquire() from BigCache (same site
// first, no syscall) or from a fresh mapping, release() to BigCache (keyed by the allocation site)
// or, past the cache, to the releaser, their accounting (I7), and paranoid mode's protection of
// cached blocks, whose failures are counted (protect_failures()) or refused with ENOMEM.
//
// MapPath runs over real structures wired by hand as Allocator::init_locked() wires them (Registry,
// MapBacking, BatchReleaser, BigCache, ForkGate, Validator), on a RecordingPal over FailingPal whose
// protect() can also be made to fail: every map and protect is counted by layer.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "backing/backing.h"
#include "cache/cache.h"
#include "front/fork.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/map_path.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"
#include "support/report.h"

using namespace hakmem;

namespace {

constexpr uint64_t kSecret = 0x7e57ab1e00c0ffeeull;
constexpr uintptr_t kSiteA = 0x401000;
constexpr uintptr_t kSiteB = 0x402220;
constexpr uint8_t kStrategy = 9;
constexpr size_t kSize = 100 * kKiB;

/// The recording platform whose protect() fails while fail_protect is set (paranoid mode's
/// mprotect refused: no memory for the split mapping, in real life).
class ProtectFailingPal : public RecordingPal<FailingPal<LinuxPal>> {
public:
  bool protect(void* addr, size_t len, Access access, Layer layer) {
    if (fail_protect.load()) return false;
    return RecordingPal<FailingPal<LinuxPal>>::protect(addr, len, access, layer);
  }
  std::atomic<bool> fail_protect{false};
};
static_assert(Platform<ProtectFailingPal>);

/// The structures MapPath reads and writes, wired as Allocator::init_locked() wires them, and
/// Allocator::teardown()'s teardown; the destructor checks that every mapped byte came back.
struct Rig {
  using Pal = ProtectFailingPal;

  Rig(bool paranoid, uint64_t cache_bytes) {
    codec.set_secret(kSecret);
    hard.set_secret(kSecret);
    const GiveBack give_back{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<Rig*>(ctx)->releaser.add_raw(base, len); }, this};
    ok = registry.init(&pal, &mapped);
    map.init(&pal, &registry, &mapped, give_back);
    zero.init(&pal, &mapped, give_back);
    releaser.init(&pal, &registry, &map, &codec, &mapped, 64 * kMiB, 0);
    cache.init(&pal, &releaser, cache_bytes, cache_bytes, 0);
    seal.set_secret(kSecret);
    validator.init({&registry, &codec, &seal, &zero, &hard, paranoid, true});
    path.init({&pal, &map, &cache, &gate, &codec, &hard, paranoid});
  }

  ~Rig() {
    pal.fail_protect.store(false);
    auto give = [this](uintptr_t base, size_t len) { releaser.add_raw(base, len); };
    cache.drain();
    releaser.flush();
    map.release_all(give);
    zero.release_all(give);
    releaser.flush();
    registry.release_tables(give);
    releaser.flush();
    EXPECT_EQ(mapped.load(), 0u) << "teardown must give back every byte the components mapped";
  }

  Pal pal{};
  std::atomic<uint64_t> mapped{0};
  HeaderCodec codec{};
  PoolSeal seal{};  // the Validator's, for Pool blocks (none here)
  Hardening hard{};
  Registry<Pal> registry{};
  MapBacking<Pal> map{};
  BatchReleaser<Pal> releaser{};
  BigCache<Pal> cache{};
  ZeroArena<Pal> zero{};
  ForkGate gate{};
  Validator<Pal> validator{};
  MapPath<Pal> path{};
  HeapCounters mine{};    ///< the calling thread's counters
  HeapCounters orphan{};  ///< the shared set of threads without a heap
  bool ok = false;
};

class MapPathTest : public ::testing::Test {
protected:
  void SetUp() override { Wire(false, 64 * kMiB); }

  void Wire(bool paranoid, uint64_t cache_bytes) {
    rig_.reset();
    rig_ = std::make_unique<Rig>(paranoid, cache_bytes);
    ASSERT_TRUE(rig_->ok) << "the Registry could not be mapped";
  }

  Rig& r() { return *rig_; }
  static uintptr_t U(const void* p) { return reinterpret_cast<uintptr_t>(p); }

  void* Acquire(size_t size, uintptr_t site = kSiteA, size_t align = 16, bool* fresh = nullptr,
                Origin origin = Origin::kMalloc) {
    bool f = false;
    void* p = r().path.acquire(r().mine, size, align, site, origin, kStrategy, &f);
    if (fresh != nullptr) *fresh = f;
    return p;
  }
  MapBlock* BlockOf(const void* p) { return static_cast<MapBlock*>(r().registry.lookup(U(p))); }
  /// Frees p as the general path does: locate, then release (counted in `mine`, or the orphan set).
  void Release(void* p, bool with_heap = true) {
    Located at;
    ASSERT_EQ(r().validator.locate(U(p), Origin::kMalloc, &at), Verdict::kOk);
    r().path.release(at, with_heap ? &r().mine : nullptr, r().orphan);
  }
  Verdict Check(const void* p) {
    Located at;
    return r().validator.locate(U(p), Origin::kMalloc, &at);
  }
  uint64_t Maps() const { return rig_->pal.calls(PalOp::kMap, Layer::kMap); }

  std::unique_ptr<Rig> rig_;
};

class ParanoidMapPathTest : public MapPathTest {
protected:
  void SetUp() override { Wire(true, 64 * kMiB); }
};

}  // namespace

// ================================================================== acquire()

// Contract, I2, I5, I7: a cache miss maps one fresh block (*fresh: already zero), writes its live
// Map header with the strategy and the site, marks its descriptor Live, and counts one Map
// allocation holding the whole mapping.
TEST_F(MapPathTest, AMissMapsAFreshCountedBlock) {
  bool fresh = false;
  void* p = Acquire(kSize, kSiteA, 16, &fresh, Origin::kNew);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(fresh);
  EXPECT_EQ(Maps(), 1u);
  EXPECT_EQ(r().cache.counters().misses.load(), 1u);
  MapBlock* mb = BlockOf(p);
  ASSERT_NE(mb, nullptr);
  EXPECT_EQ(mb->kind, ExtentKind::kMapBlock);
  EXPECT_EQ(U(p), mb->base + kHeaderSize);
  EXPECT_EQ(mb->hdr_offset, 0u);
  EXPECT_EQ(mb->state, State::kLive);
  Located at;
  ASSERT_EQ(r().validator.locate(U(p), Origin::kNew, &at), Verdict::kOk);
  EXPECT_EQ(at.h.fields(), (HeaderFields{Method::kMap, State::kLive, Origin::kNew, kStrategy, kSize, kSiteA}));
  EXPECT_GE(Validator<Rig::Pal>::capacity_of(at), kSize);
  EXPECT_EQ(r().mine.map_allocs.get(), 1);
  EXPECT_EQ(r().mine.map_held_bytes.get(), static_cast<int64_t>(mb->length));
  EXPECT_EQ(r().mine.map_frees.get(), 0);
}

// Contract: an aligned request gets an aligned user pointer, a forward record at the mapping's
// base and its real header where hdr_offset says (the cache checks capacity there, I5).
TEST_F(MapPathTest, AnAlignedRequestIsFoundThroughItsForwardRecord) {
  for (const size_t align : {size_t{64}, size_t{4096}, size_t{64} * kKiB}) {
    void* p = Acquire(kSize, kSiteA, align);
    ASSERT_NE(p, nullptr) << align;
    EXPECT_EQ(U(p) % align, 0u);
    MapBlock* mb = BlockOf(p);
    EXPECT_EQ(mb->hdr_offset, U(p) - kHeaderSize - mb->base) << align;
    EXPECT_NE(mb->hdr_offset, 0u);
    EXPECT_GE(mb->capacity_at(mb->hdr_offset), kSize) << align;
    Located at;
    ASSERT_EQ(r().validator.locate(U(p), Origin::kMalloc, &at), Verdict::kOk) << align;
    EXPECT_EQ(at.block, mb->base);
    EXPECT_EQ(at.header, U(p) - kHeaderSize);
  }
}

// I12: when neither the cache nor the platform has a block, acquire() gives nullptr with ENOMEM
// and counts nothing.
TEST_F(MapPathTest, AFailedMapIsNullWithEnomemAndCountsNothing) {
  r().pal.set_fail_all(true);
  errno = 0;
  bool fresh = false;
  EXPECT_EQ(Acquire(kSize, kSiteA, 16, &fresh), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_FALSE(fresh);
  EXPECT_EQ(r().mine.map_allocs.get(), 0);
  EXPECT_EQ(r().mine.map_held_bytes.get(), 0);
  EXPECT_EQ(r().pal.failed_maps(), 1u);
  r().pal.reset_failures();
  EXPECT_NE(Acquire(kSize), nullptr);
}

// ================================================================== release(), reuse

// I6, I7, I9: release() seals the header Cached (never live: a second free is a double free), marks
// the descriptor, counts one Map free and takes the bytes off, and puts the block in BigCache:
// nothing is unmapped.
TEST_F(MapPathTest, ReleaseSealsCachedAndPutsTheBlockInBigCache) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  MapBlock* mb = BlockOf(p);
  Release(p);
  HeaderFields f;
  ASSERT_TRUE(r().codec.decode(reinterpret_cast<void*>(mb->base), &f));
  EXPECT_EQ(f, (HeaderFields{Method::kMap, State::kCached, Origin::kMalloc, kStrategy, kSize, kSiteA}));
  EXPECT_EQ(mb->state, State::kCached);
  EXPECT_EQ(Check(p), Verdict::kDoubleFree);
  EXPECT_EQ(r().cache.blocks(), 1u);
  EXPECT_EQ(r().cache.bytes(), mb->length);
  EXPECT_EQ(r().mine.map_frees.get(), 1);
  EXPECT_EQ(r().mine.map_held_bytes.get(), 0);
  EXPECT_EQ(r().releaser.pending_bytes(), 0u);
  EXPECT_EQ(r().pal.calls(PalOp::kUnmap), 0u);
  EXPECT_EQ(r().pal.calls(PalOp::kProtect), 0u) << "default mode protects nothing";
}

// Contract: a cached block of the class serves the next request with no syscall (*fresh stays
// false: the caller must zero it), live again under the new request's fields and counted again.
TEST_F(MapPathTest, AHitReusesTheCachedBlockWithNoSyscall) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  Release(p);
  const uint64_t maps = Maps();
  bool fresh = true;
  void* q = Acquire(kSize - 1000, kSiteB, 16, &fresh, Origin::kNewArray);
  EXPECT_EQ(q, p);
  EXPECT_FALSE(fresh) << "a cached block is not known to be zero";
  EXPECT_EQ(Maps(), maps);
  EXPECT_EQ(r().cache.counters().hits.load(), 1u);
  EXPECT_EQ(r().cache.blocks(), 0u);
  EXPECT_EQ(BlockOf(q)->state, State::kLive);
  Located at;
  ASSERT_EQ(r().validator.locate(U(q), Origin::kNewArray, &at), Verdict::kOk);
  EXPECT_EQ(at.h.fields(),
            (HeaderFields{Method::kMap, State::kLive, Origin::kNewArray, kStrategy, kSize - 1000, kSiteB}));
  EXPECT_EQ(r().mine.map_allocs.get(), 2);
  EXPECT_EQ(r().mine.map_held_bytes.get(), static_cast<int64_t>(BlockOf(q)->length));
}

// Contract ("same place, same pattern"): release() keys a cached block by its allocation site, and
// acquire() looks in its own site's bucket first.
TEST_F(MapPathTest, TheCacheIsKeyedByTheAllocationSite) {
  ASSERT_NE(BigCache<Rig::Pal>::bucket_of(kSiteA), BigCache<Rig::Pal>::bucket_of(kSiteB));
  void* a = Acquire(kSize, kSiteA);
  void* b = Acquire(kSize, kSiteB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Release(a);  // a is cached first, so b is the newest of the class
  Release(b);
  EXPECT_EQ(Acquire(kSize, kSiteA), a) << "site A's own block, not the newer one of site B";
  EXPECT_EQ(Acquire(kSize, kSiteB), b);
  EXPECT_EQ(r().cache.counters().hits.load(), 2u);
}

// I7: a thread without a heap frees into the shared orphan counters.
TEST_F(MapPathTest, ReleaseWithoutAHeapCountsInTheOrphanSet) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  const int64_t length = static_cast<int64_t>(BlockOf(p)->length);
  Release(p, /*with_heap=*/false);
  EXPECT_EQ(r().orphan.map_frees.get(), 1);
  EXPECT_EQ(r().orphan.map_held_bytes.get(), -length);
  EXPECT_EQ(r().mine.map_frees.get(), 0);
  EXPECT_EQ(r().mine.map_held_bytes.get(), length) << "the allocating thread's count is its own";
  EXPECT_EQ(r().cache.blocks(), 1u);
}

// I6, I9, I10: a block the cache does not keep (cache off) goes to the releaser, Releasing and
// pending, never straight to the OS; the releaser's flush unmaps it and the Registry forgets it.
TEST_F(MapPathTest, ABlockTheCacheRefusesGoesToTheReleaser) {
  Wire(false, 0);
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  MapBlock* mb = BlockOf(p);
  const uintptr_t base = mb->base;
  const uint64_t length = mb->length;
  Release(p);
  EXPECT_EQ(r().cache.blocks(), 0u);
  EXPECT_EQ(r().cache.counters().bypass.load(), 1u);
  EXPECT_EQ(r().releaser.pending_bytes(), length);
  EXPECT_EQ(mb->state, State::kReleasing);
  HeaderFields f;
  ASSERT_TRUE(r().codec.decode(reinterpret_cast<void*>(base), &f));
  EXPECT_EQ(f.state, State::kReleasing);
  EXPECT_EQ(Check(p), Verdict::kDoubleFree) << "pending is not live";
  EXPECT_EQ(r().pal.calls(PalOp::kUnmap), 0u) << "only the releaser's flush unmaps";
  const uint64_t from = r().pal.total_calls();
  r().releaser.flush();
  EXPECT_TRUE(r().pal.unmapped_since(from, base, length));
  EXPECT_EQ(r().releaser.pending_bytes(), 0u);
  EXPECT_EQ(Check(p), Verdict::kInvalidPointer) << "a released range is no block";
}

// ================================================================== paranoid mode

// Contract (paranoid): the user pointer starts a page whatever the alignment asked, and the canary
// follows the request.
TEST_F(ParanoidMapPathTest, TheUserPointerStartsAPageAndTheCanaryFollowsTheRequest) {
  for (const size_t size : {kSize, kSize + 3, size_t{1} * kMiB}) {
    void* p = Acquire(size);
    ASSERT_NE(p, nullptr) << size;
    EXPECT_EQ(U(p) % 4096, 0u) << size;
    EXPECT_TRUE(r().hard.canary_intact(U(p) + size)) << size;
    EXPECT_EQ(Check(p), Verdict::kOk);
    EXPECT_GE(BlockOf(p)->capacity_at(BlockOf(p)->hdr_offset), size + kCanarySize);
  }
}

// Contract (paranoid): release() makes the user pages, to the mapping's end, inaccessible while
// cached (the header page stays readable, so a double free is reported, not a crash); the hit
// makes them readable and writable again.
TEST_F(ParanoidMapPathTest, ReleaseProtectsTheUserPagesAndTheHitUnprotectsThem) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  MapBlock* mb = BlockOf(p);
  Release(p);
  EXPECT_EQ(r().pal.calls(PalOp::kProtect, Layer::kCache), 1u);
  EXPECT_EQ(r().pal.bytes(PalOp::kProtect, Layer::kCache), mb->base + mb->length - U(p));
  EXPECT_EQ(Check(p), Verdict::kDoubleFree) << "the header stays readable";
  EXPECT_EQ(r().path.protect_failures(), 0u);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(*static_cast<volatile char*>(p) = 1, "") << "a write into a cached block faults";
  void* q = Acquire(kSize);
  ASSERT_EQ(q, p);
  EXPECT_EQ(r().pal.calls(PalOp::kProtect, Layer::kMap), 1u);
  memset(q, 0x5a, kSize);  // readable and writable again
  EXPECT_EQ(static_cast<unsigned char*>(q)[kSize - 1], 0x5a);
  EXPECT_TRUE(r().hard.canary_intact(U(q) + kSize)) << "the canary is written after the request";
}

// Contract (paranoid): a protect that fails at release is counted in protect_failures(); the free
// itself goes on (sealed Cached, cached, counted), since the block is no less freed.
TEST_F(ParanoidMapPathTest, AFailedProtectAtReleaseIsCounted) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  r().pal.fail_protect.store(true);
  Release(p);
  EXPECT_EQ(r().path.protect_failures(), 1u);
  EXPECT_EQ(r().pal.calls(PalOp::kProtect), 0u);
  EXPECT_EQ(r().cache.blocks(), 1u);
  EXPECT_EQ(BlockOf(p)->state, State::kCached);
  EXPECT_EQ(Check(p), Verdict::kDoubleFree);
  EXPECT_EQ(r().mine.map_frees.get(), 1);
  void* q = Acquire(kSize);  // (the unprotect fails too: the hit is refused)
  EXPECT_EQ(q, nullptr);
  r().pal.fail_protect.store(false);
  EXPECT_EQ(Acquire(kSize), p);
  EXPECT_EQ(r().path.protect_failures(), 1u);
}

// Contract ("same place, same pattern", paranoid): a hit refused because the block's pages cannot
// be made accessible again puts the block back under its own allocation site, not the requester's:
// site A's request still finds A's block ahead of a newer block of site B.
TEST_F(ParanoidMapPathTest, ARefusedHitKeepsTheBlockUnderItsOwnSite) {
  ASSERT_NE(BigCache<Rig::Pal>::bucket_of(kSiteA), BigCache<Rig::Pal>::bucket_of(kSiteB));
  void* a = Acquire(kSize, kSiteA);
  void* d = Acquire(kSize, kSiteB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(d, nullptr);
  Release(a);  // the only cached block, under A
  r().pal.fail_protect.store(true);
  EXPECT_EQ(Acquire(kSize, kSiteB), nullptr) << "site B's request takes A's block and is refused";
  r().pal.fail_protect.store(false);
  Release(d);  // newer, under B
  EXPECT_EQ(Acquire(kSize, kSiteA), a) << "A's block went back under A, not under the requester B";
  EXPECT_EQ(Acquire(kSize, kSiteB), d);
}

// I12 (paranoid): a cached block whose pages cannot be made accessible again is not handed out:
// nullptr with ENOMEM, no fresh map in its place, and the block stays cached and inaccessible.
TEST_F(ParanoidMapPathTest, AFailedUnprotectRefusesTheHitWithEnomem) {
  void* p = Acquire(kSize);
  ASSERT_NE(p, nullptr);
  Release(p);
  const uint64_t maps = Maps();
  r().pal.fail_protect.store(true);
  errno = 0;
  bool fresh = false;
  EXPECT_EQ(Acquire(kSize, kSiteA, 16, &fresh), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(Maps(), maps);
  EXPECT_EQ(r().cache.blocks(), 1u) << "back where it was";
  EXPECT_EQ(BlockOf(p)->state, State::kCached);
  EXPECT_EQ(Check(p), Verdict::kDoubleFree);
  EXPECT_EQ(r().mine.map_allocs.get(), 1);
  r().pal.fail_protect.store(false);
  EXPECT_EQ(Acquire(kSize), p);
  EXPECT_EQ(r().mine.map_allocs.get(), 2);
}
