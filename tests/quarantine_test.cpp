// Quarantine component tests (src/front/quarantine.h), on the component itself: BlockFifo (entry
// packing, FIFO order, full and empty, byte accounting, wrap-around) and Quarantine<Pal>, paranoid
// mode's hold of freed Pool blocks: the fill a free writes, the local and shared rings and their
// caps, blocks leaving oldest first, a write after free reported and withheld (I8), the check at
// reuse (take_checked), spill at thread exit, the held and withheld accounting (I7), the audit,
// disable()/enable() around a fork, and release_all().
//
// The fixture wires what the quarantine needs the way Allocator::init_locked() does, with the real
// platform: a Registry, a Pool with one heap, a paranoid Validator, the codec and the Hardening
// keys; its teardown gives every mapping back through a BatchReleaser and checks the mapped tally
// returns to zero. A freed block is located and sealed Free before Quarantine::free(), in the
// order of PoolPath::release(). The callback object records recycle() and report() calls (and may
// forward recycled blocks to the Pool, so take_checked() sees them come back).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backing/backing.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/quarantine.h"
#include "front/stats.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kAllocSite = 0x401234;
constexpr uintptr_t kFreeSite = 0x405678;
constexpr uint64_t kSecret = 0x5eed5eed0badf00dull;

/// A 40-byte request: with its 8-byte canary, class 2 (48 usable bytes), a 64-byte block.
constexpr size_t kSize = 40;
constexpr size_t kClass = SizeClasses::class_of(kSize + kCanarySize);
constexpr uint64_t kBlock = SizeClasses::block_size(kClass);
static_assert(kBlock == 64, "the byte arithmetic below assumes 64-byte blocks");

// ------------------------------------------------------------ test doubles

/// The quarantine's callback: records every recycle() and report(). With a pool and heap set, a
/// recycled block also goes back to its span (as PoolPath's hooks do), so the Pool hands it out again.
struct Recorder {
  struct Report {
    uintptr_t user;
    bool header_ok;
    Span* span;
    uint64_t size;         // from the header, when header_ok
    uintptr_t alloc_site;  // from the header, when header_ok
    uintptr_t free_site;   // from the fill's record (0: the record was unreadable)
    uint64_t room;
  };

  Pool<LinuxPal, ThreadHeap>* pool = nullptr;
  Heap* heap = nullptr;
  std::mutex m;
  std::vector<uintptr_t> recycled;  ///< blocks, in the order they were recycled
  std::vector<Span*> recycled_spans;
  std::vector<Report> reports;

  void recycle(Span* s, uintptr_t block) {
    {
      std::lock_guard<std::mutex> g(m);
      recycled.push_back(block);
      recycled_spans.push_back(s);
    }
    if (pool != nullptr) pool->free(heap, s, block);
  }
  void report(const FreedBlock& f, uintptr_t free_site) {
    std::lock_guard<std::mutex> g(m);
    reports.push_back(Report{f.user, f.header_ok, f.span, f.header_ok ? f.at.f.size : 0, f.header_ok ? f.at.f.site : 0,
                             free_site, f.room});
  }
};

/// An audit sink (the r of audit_for_testing()): collects failures.
struct AuditLog {
  std::vector<std::string> failures;
  void fail(const char* what, uint64_t, uint64_t) { failures.emplace_back(what); }
  bool ok() const { return failures.empty(); }
};

/// A live Pool block as the general path hands it out in paranoid mode.
struct LiveBlock {
  uintptr_t block;
  uintptr_t user;
  Span* span;
};

/// Changes one byte of a freed block (xor with a non-zero `flip`), as a buggy program's write
/// would. The byte is first made addressable again (HAKMEM_TRACK=asan poisons held blocks; the
/// test writes on purpose).
void Scribble(uintptr_t at, uint8_t flip = 0x41) {
  track_own(at, 1);
  auto* b = reinterpret_cast<volatile uint8_t*>(at);
  *b = static_cast<uint8_t>(*b ^ flip);
}

// ------------------------------------------------------------ the fixture

class QuarantineTest : public ::testing::Test {
protected:
  using Pal = LinuxPal;
  using PoolT = Pool<Pal, ThreadHeap>;

  void SetUp() override {
    ASSERT_TRUE(registry_.init(&pal_, &mapped_));
    const GiveBack give{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<BatchReleaser<Pal>*>(ctx)->add_raw(base, len); },
        &rel_};
    pool_.init(&pal_, &registry_, &mapped_, give, kSecret);
    map_.init(&pal_, &registry_, &mapped_, give);
    zero_.init(&pal_, &mapped_, give);
    codec_.set_secret(kSecret);
    hard_.set_secret(kSecret);
    rel_.init(&pal_, &registry_, &map_, &codec_, &mapped_, uint64_t{1} << 40, 0);
    validator_.init({&registry_, &codec_, &pool_.seal(), &zero_, &hard_, /*paranoid=*/true, /*origin_check=*/true});
    heap_ = pool_.make_heap(1);
    ASSERT_NE(heap_, nullptr);
  }

  void TearDown() override {
    auto give = [this](uintptr_t base, size_t len) { rel_.add_raw(base, len); };
    rel_.flush();
    pool_.release_all(give);
    map_.release_all(give);
    zero_.release_all(give);
    q_.release_all(give);
    rel_.flush();
    registry_.release_tables(give);
    rel_.flush();
    EXPECT_EQ(mapped_.load(), 0u) << "a mapping was not given back";
  }

  Quarantine<Pal>::Parts Parts() { return {&pal_, &mapped_, &registry_, &validator_, &hard_}; }
  void InitQuarantine(uint64_t cap) { q_.init(Parts(), cap); }

  /// A live block of `size` bytes: header (Live, Pool, malloc), canary after the request.
  LiveBlock Alloc(size_t size = kSize, uintptr_t site = kAllocSite) {
    const size_t c = SizeClasses::class_of(size + kCanarySize);
    const uintptr_t block = pool_.alloc(heap_, c);
    EXPECT_NE(block, 0u);
    write_pool_prefixes(pool_.seal(), /*paranoid=*/true, block, block, Origin::kMalloc, 0, size, site);
    hard_.write_canary(block + kHeaderSize + size);
    return LiveBlock{block, block + kHeaderSize, static_cast<Span*>(registry_.lookup(block))};
  }

  /// PoolPath::release()'s paranoid half: locate, seal Free, then the quarantine.
  void Free(const LiveBlock& b, LocalQuarantine* local, uintptr_t site = kFreeSite) {
    Located at;
    ASSERT_EQ(validator_.locate(b.user, Origin::kMalloc, &at), Verdict::kOk);
    pool_.seal().encode(PoolFields{PoolTag::kFree, at.f.origin, at.f.strategy, at.f.size}, at.header + kHeaderSize);
    q_.free(cb_, local, static_cast<Span*>(at.extent), at, site);
  }

  /// Allocates and frees n blocks of `size` bytes; returns them in free order.
  std::vector<LiveBlock> FreeMany(size_t n, LocalQuarantine* local, size_t size = kSize) {
    std::vector<LiveBlock> out;
    for (size_t i = 0; i < n; ++i) {
      out.push_back(Alloc(size));
      Free(out.back(), local);
    }
    return out;
  }

  AuditLog Audit(const std::vector<LocalQuarantine*>& locals = {}) {
    AuditLog log;
    q_.audit_for_testing(log, [&](auto&& fn) {
      for (LocalQuarantine* l : locals) fn(*l);
    });
    return log;
  }

  StatsSnapshot Stats() {
    StatsSnapshot s;
    q_.fill_stats(s);
    return s;
  }

  static std::vector<uintptr_t> Blocks(const std::vector<LiveBlock>& v, size_t from, size_t to) {
    std::vector<uintptr_t> out;
    for (size_t i = from; i < to; ++i) out.push_back(v[i].block);
    return out;
  }

  /// A prefix with state `s` at `block`: is it still a sealed one of that state?
  bool SealedAs(uintptr_t block, State s) {
    PoolFields f;
    uintptr_t site;
    return validator_.open_pool(block + kHeaderSize, &f, &site) &&
           f.tag == (s == State::kLive ? PoolTag::kLive : PoolTag::kFree);
  }

  Pal pal_;
  std::atomic<uint64_t> mapped_{0};
  Registry<Pal> registry_;
  PoolT pool_;
  MapBacking<Pal> map_;
  ZeroArena<Pal> zero_;
  BatchReleaser<Pal> rel_;
  HeaderCodec codec_;
  Hardening hard_;
  Validator<Pal> validator_;
  Quarantine<Pal> q_;
  ThreadHeap* heap_ = nullptr;
  Recorder cb_;
};

}  // namespace

// ------------------------------------------------------------ BlockFifo

// Contract: An entry packs a block address below 2^48 and its size class without loss, and stands for its
// class's block size.
TEST(BlockFifo, PackKeepsTheBlockAndItsClassApart) {
  const uintptr_t blocks[] = {0x10, 0x7f0012345670ull, (uintptr_t{1} << 48) - 16};
  const size_t classes[] = {0, 1, 37, SizeClasses::kCount - 1};
  for (uintptr_t b : blocks) {
    for (size_t c : classes) {
      const uint64_t e = BlockFifo::pack(b, c);
      EXPECT_EQ(BlockFifo::block_of(e), b) << std::hex << b << " class " << c;
      EXPECT_EQ(BlockFifo::class_of(e), c) << std::hex << b << " class " << c;
      EXPECT_EQ(BlockFifo::length_of(e), SizeClasses::block_size(c)) << "an entry stands for its class's block";
    }
  }
}

// Contract: BlockFifo is first in, first out; full()/empty()/count() follow pushes and pops; bytes() is the
// sum of its entries' block sizes.
TEST(BlockFifo, PopsInPushOrderAndCountsBytes) {
  uint64_t slots[4] = {};
  BlockFifo f;
  f.init(slots, 4);
  EXPECT_TRUE(f.empty());
  EXPECT_FALSE(f.full());
  EXPECT_EQ(f.capacity(), 4u);
  const size_t cls[4] = {0, 5, 2, 9};
  uint64_t bytes = 0;
  for (size_t i = 0; i < 4; ++i) {
    f.push(BlockFifo::pack(0x1000 * (i + 1), cls[i]));
    bytes += SizeClasses::block_size(cls[i]);
    EXPECT_EQ(f.count(), i + 1);
    EXPECT_EQ(f.bytes(), bytes);
    EXPECT_FALSE(f.empty());
  }
  EXPECT_TRUE(f.full());
  for (size_t i = 0; i < 4; ++i) {
    const uint64_t e = f.pop();
    EXPECT_EQ(BlockFifo::block_of(e), 0x1000 * (i + 1)) << "oldest first";
    EXPECT_EQ(BlockFifo::class_of(e), cls[i]);
    bytes -= SizeClasses::block_size(cls[i]);
    EXPECT_EQ(f.bytes(), bytes);
    EXPECT_FALSE(f.full());
  }
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(f.bytes(), 0u);
}

// Contract: BlockFifo wraps around its storage without losing or reordering entries; for_each() walks oldest
// to newest.
TEST(BlockFifo, WrapsAroundItsStorageKeepingOrder) {
  uint64_t slots[3] = {};
  BlockFifo f;
  f.init(slots, 3);
  uint64_t next = 1, expect = 1;
  // Many rounds of two pushes and two pops over three slots: the head and tail pass the end of
  // the storage again and again.
  f.push(BlockFifo::pack(next++ * 0x100, 1));
  for (int round = 0; round < 10; ++round) {
    f.push(BlockFifo::pack(next++ * 0x100, 1));
    f.push(BlockFifo::pack(next++ * 0x100, 1));
    EXPECT_TRUE(f.full());
    std::vector<uintptr_t> seen;
    f.for_each([&](uint64_t e) { seen.push_back(BlockFifo::block_of(e)); });
    ASSERT_EQ(seen.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(seen[i], (expect + i) * 0x100) << "for_each: oldest to newest";
    EXPECT_EQ(BlockFifo::block_of(f.pop()), expect++ * 0x100);
    EXPECT_EQ(BlockFifo::block_of(f.pop()), expect++ * 0x100);
    EXPECT_EQ(f.count(), 1u);
    EXPECT_EQ(f.bytes(), SizeClasses::block_size(1));
  }
  EXPECT_EQ(BlockFifo::block_of(f.pop()), expect * 0x100);
  EXPECT_TRUE(f.empty());
}

// Contract: BlockFifo::init() empties the FIFO (entries and bytes), whatever it held.
TEST(BlockFifo, InitForgetsEverything) {
  uint64_t slots[2] = {};
  BlockFifo f;
  f.init(slots, 2);
  f.push(BlockFifo::pack(0x100, 3));
  f.push(BlockFifo::pack(0x200, 3));
  f.init(slots, 2);
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(f.bytes(), 0u);
  int calls = 0;
  f.for_each([&](uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

// ------------------------------------------------------------ set-up and release

// Contract: init(cap) maps one shared ring of one slot per smallest block the cap holds (64 to 2^21 slots,
// whole pages), counts it as mapped metadata (I7), and release_all() gives exactly it back.
TEST_F(QuarantineTest, InitMapsOneRingSizedByTheCap) {
  auto give_log = std::vector<std::pair<uintptr_t, size_t>>{};
  auto give = [&](uintptr_t base, size_t len) {
    give_log.emplace_back(base, len);
    rel_.add_raw(base, len);
  };
  struct Case {
    uint64_t cap, ring_bytes;
  };
  // One 8-byte slot per smallest block (32 bytes) the cap holds, at least 64 and at most 2^21,
  // rounded up to pages.
  const Case cases[] = {{1, 4096}, {4096, 4096}, {1 * kMiB, 256 * kKiB}, {64 * kMiB, 16 * kMiB}, {kGiB, 16 * kMiB}};
  for (const Case& c : cases) {
    Quarantine<Pal> q;
    const uint64_t before = mapped_.load();
    q.init(Parts(), c.cap);
    EXPECT_EQ(q.meta_bytes(), c.ring_bytes) << c.cap;
    EXPECT_EQ(mapped_.load() - before, c.ring_bytes) << "the ring is counted as mapped (metadata, I7)";
    StatsSnapshot s;
    q.fill_stats(s);
    EXPECT_EQ(s.quarantine_cap, c.cap);
    EXPECT_EQ(s.quarantine_bytes, 0u);
    give_log.clear();
    q.release_all(give);
    ASSERT_EQ(give_log.size(), 1u);
    EXPECT_EQ(give_log[0].second, c.ring_bytes);
    EXPECT_EQ(q.meta_bytes(), 0u);
    rel_.flush();
    EXPECT_EQ(mapped_.load(), before) << "release_all() gives the ring back";
  }
}

// Contract: A cap of 0 is no quarantine: nothing is mapped, and release_all() has nothing to give back.
TEST_F(QuarantineTest, NoCapMapsNothing) {
  const uint64_t before = mapped_.load();
  InitQuarantine(0);
  EXPECT_EQ(q_.meta_bytes(), 0u);
  EXPECT_EQ(mapped_.load(), before);
  int gives = 0;
  q_.release_all([&](uintptr_t, size_t) { ++gives; });
  EXPECT_EQ(gives, 0) << "no ring, nothing to give back";
}

// Contract: release_all() (teardown) gives the ring's mapping back once, recycles nothing and zeroes the held
// and withheld counters.
TEST_F(QuarantineTest, ReleaseAllGivesTheRingBackAndForgetsTheHeldBlocks) {
  InitQuarantine(4096);
  FreeMany(10, nullptr);
  ASSERT_EQ(q_.held_bytes(), 10 * kBlock);
  const uint64_t ring = q_.meta_bytes();
  const uint64_t before = mapped_.load();
  std::vector<std::pair<uintptr_t, size_t>> given;
  q_.release_all([&](uintptr_t base, size_t len) {
    given.emplace_back(base, len);
    rel_.add_raw(base, len);
  });
  ASSERT_EQ(given.size(), 1u);
  EXPECT_EQ(given[0].second, ring);
  EXPECT_EQ(given[0].first % 4096, 0u);
  EXPECT_EQ(q_.meta_bytes(), 0u);
  EXPECT_EQ(q_.held_bytes(), 0u);
  EXPECT_EQ(q_.withheld_bytes(), 0u);
  EXPECT_EQ(Stats().quarantine_blocks, 0u);
  EXPECT_TRUE(cb_.recycled.empty()) << "teardown recycles nothing: the spans go back whole";
  rel_.flush();
  EXPECT_EQ(mapped_.load(), before - ring);
  // A second release gives nothing more.
  int again = 0;
  q_.release_all([&](uintptr_t, size_t) { ++again; });
  EXPECT_EQ(again, 0);
}

// ------------------------------------------------------------ the fill and the hold

// Contract: A quarantined free writes the free-site record and kFreedFill to the block's end, keeps the
// header sealed Free, and holds the block (neither free nor live, I7).
TEST_F(QuarantineTest, FreeFillsTheBlockAndHoldsIt) {
  InitQuarantine(4096);
  const LiveBlock b = Alloc();
  const uintptr_t site = kFreeSite | (uintptr_t{0xabc} << 48);  // high bits: not part of a site
  Free(b, nullptr, site);
  EXPECT_TRUE(cb_.recycled.empty()) << "held, not recycled";
  EXPECT_TRUE(cb_.reports.empty());
  const uint64_t room = kBlock - kHeaderSize;
  track_own(b.user, room);  // HAKMEM_TRACK=asan: the held block is poisoned; the test reads it
  uintptr_t recorded = 0;
  ASSERT_TRUE(hard_.read_record(b.user, &recorded)) << "the free-site record and its seal";
  EXPECT_EQ(recorded, kFreeSite) << "the site, masked to 47 bits";
  EXPECT_TRUE(Hardening::fill_intact(b.user + kFreedRecord, b.user + room)) << "kFreedFill to the block's end";
  EXPECT_EQ(*reinterpret_cast<const uint8_t*>(b.user + room - 1), kFreedFill);
  EXPECT_TRUE(SealedAs(b.block, State::kFree)) << "the header stays a sealed Free one";
  // I7: the held block is neither free nor live.
  EXPECT_EQ(q_.held_bytes(), kBlock);
  const StatsSnapshot s = Stats();
  EXPECT_EQ(s.quarantine_bytes, kBlock);
  EXPECT_EQ(s.quarantine_blocks, 1u);
  EXPECT_EQ(s.quarantine_cap, 4096u);
  EXPECT_EQ(s.withheld_bytes, 0u);
  const AuditLog log = Audit();
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: view() describes a freed block from its header: span, user pointer, room, size and allocation
// site.
TEST_F(QuarantineTest, ViewDescribesAHeldBlockFromItsHeader) {
  InitQuarantine(4096);
  const LiveBlock b = Alloc(24);
  Free(b, nullptr);
  const FreedBlock f = q_.view(b.block);
  EXPECT_TRUE(f.header_ok);
  EXPECT_EQ(f.span, b.span);
  EXPECT_EQ(f.user, b.user);
  EXPECT_EQ(f.room, SizeClasses::usable(SizeClasses::class_of(24 + kCanarySize)));
  EXPECT_EQ(f.at.f.size, 24u);
  EXPECT_EQ(f.at.f.site, kAllocSite);
  EXPECT_EQ(f.at.f.state, State::kFree);
}

// Contract: The shared ring holds at most cap bytes; past it, blocks leave oldest first and are recycled to
// their own span.
TEST_F(QuarantineTest, BlocksLeaveOldestFirstOnceTheSharedRingPassesItsCap) {
  InitQuarantine(4096);  // 64 blocks of 64 bytes
  const std::vector<LiveBlock> held = FreeMany(64, nullptr);
  EXPECT_TRUE(cb_.recycled.empty()) << "64 x 64 bytes fit the 4096-byte cap";
  EXPECT_EQ(q_.held_bytes(), 4096u);
  const std::vector<LiveBlock> more = FreeMany(6, nullptr);
  EXPECT_EQ(cb_.recycled, Blocks(held, 0, 6)) << "one block leaves per block that enters, the oldest first";
  for (size_t i = 0; i < cb_.recycled_spans.size(); ++i) EXPECT_EQ(cb_.recycled_spans[i], held[i].span);
  EXPECT_TRUE(cb_.reports.empty());
  EXPECT_EQ(q_.held_bytes(), 4096u) << "the ring stays at its cap";
  EXPECT_EQ(Stats().quarantine_blocks, 64u);
  EXPECT_EQ(q_.withheld_bytes(), 0u);
  const AuditLog log = Audit();
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: Without a quarantine a free is still filled (so the reuse check has something to check) but
// recycled at once, and the thread's ring stays unused.
TEST_F(QuarantineTest, NoCapFillsAndRecyclesAtOnce) {
  InitQuarantine(0);
  const LiveBlock b = Alloc();
  Free(b, &heap_->quarantine);
  ASSERT_EQ(cb_.recycled.size(), 1u) << "no quarantine: straight back";
  EXPECT_EQ(cb_.recycled[0], b.block);
  EXPECT_EQ(cb_.recycled_spans[0], b.span);
  EXPECT_EQ(q_.held_bytes(), 0u);
  EXPECT_EQ(Stats().quarantine_blocks, 0u);
  EXPECT_TRUE(heap_->quarantine.fifo.empty()) << "the thread's ring is not used";
  // Still filled: the reuse check (take_checked) has something to check.
  track_own(b.user, kBlock - kHeaderSize);  // HAKMEM_TRACK=asan: the test reads a freed block
  uintptr_t recorded = 0;
  EXPECT_TRUE(hard_.read_record(b.user, &recorded));
  EXPECT_EQ(recorded, kFreeSite);
  EXPECT_TRUE(Hardening::fill_intact(b.user + kFreedRecord, b.block + kBlock));
}

// ------------------------------------------------------------ the thread's ring

// Contract: A thread's ring keeps its newest LocalQuarantine::kSlots blocks; older ones move to the shared
// ring, still held.
TEST_F(QuarantineTest, LocalRingHoldsTheNewestThirtyTwoBlocks) {
  InitQuarantine(64 * kKiB);  // local cap 4 KiB: 64 blocks by bytes, so the 32 slots bind
  LocalQuarantine& local = heap_->quarantine;
  const std::vector<LiveBlock> b = FreeMany(LocalQuarantine::kSlots, &local);
  EXPECT_EQ(local.fifo.count(), LocalQuarantine::kSlots);
  EXPECT_TRUE(local.fifo.full());
  FreeMany(3, &local);
  EXPECT_EQ(local.fifo.count(), LocalQuarantine::kSlots) << "the oldest moved to the shared ring";
  std::vector<uintptr_t> in_local;
  local.fifo.for_each([&](uint64_t e) { in_local.push_back(BlockFifo::block_of(e)); });
  EXPECT_EQ(in_local.front(), b[3].block) << "the three oldest left the local ring";
  EXPECT_TRUE(cb_.recycled.empty()) << "the shared ring has room: nothing leaves the quarantine";
  EXPECT_EQ(q_.held_bytes(), (LocalQuarantine::kSlots + 3) * kBlock);
  const AuditLog log = Audit({&local});
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: A thread's ring holds at most cap/16 bytes; a block larger than that goes straight to the shared
// ring.
TEST_F(QuarantineTest, LocalRingHoldsAtMostASixteenthOfTheCap) {
  InitQuarantine(64 * kKiB);  // local cap 4096 bytes: three 1040-byte blocks
  LocalQuarantine& local = heap_->quarantine;
  constexpr size_t kKiBlock = 1024 - kCanarySize;  // usable 1024, block 1040
  FreeMany(3, &local, kKiBlock);
  EXPECT_EQ(local.fifo.count(), 3u);
  EXPECT_EQ(local.fifo.bytes(), 3 * 1040u);
  FreeMany(1, &local, kKiBlock);
  EXPECT_EQ(local.fifo.count(), 3u) << "a fourth would pass 4096 bytes: the oldest moves on";
  EXPECT_EQ(q_.held_bytes(), 4 * 1040u);
  // A block larger than the local cap goes straight to the shared ring.
  FreeMany(1, &local, 4096 - kCanarySize);  // usable 4096, block 4112
  EXPECT_EQ(local.fifo.count(), 3u);
  EXPECT_EQ(local.fifo.bytes(), 3 * 1040u);
  EXPECT_EQ(q_.held_bytes(), 4 * 1040u + 4112u);
  EXPECT_TRUE(cb_.recycled.empty());
  const AuditLog log = Audit({&local});
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: spill() (thread exit) empties the thread's ring into the shared one, oldest first, behind what it
// held; the cap still applies.
TEST_F(QuarantineTest, SpillMovesTheLocalRingBehindTheSharedOne) {
  InitQuarantine(4096);  // shared: 64 blocks; local cap 256 bytes: 4 blocks
  LocalQuarantine& local = heap_->quarantine;
  const std::vector<LiveBlock> shared = FreeMany(64, nullptr);
  const std::vector<LiveBlock> mine = FreeMany(4, &local);
  ASSERT_EQ(local.fifo.count(), 4u);
  ASSERT_TRUE(cb_.recycled.empty());
  EXPECT_EQ(q_.held_bytes(), 68 * kBlock) << "I7: both rings count as held";
  q_.spill(cb_, local);
  EXPECT_TRUE(local.fifo.empty());
  EXPECT_EQ(local.fifo.bytes(), 0u);
  EXPECT_EQ(cb_.recycled, Blocks(shared, 0, 4)) << "four of the shared ring's oldest made room";
  EXPECT_EQ(q_.held_bytes(), 4096u);
  // The spilled blocks queue behind what the shared ring held, in their own order.
  const std::vector<LiveBlock> later = FreeMany(64, nullptr);
  std::vector<uintptr_t> want = Blocks(shared, 0, 64);
  for (const LiveBlock& b : mine) want.push_back(b.block);
  EXPECT_EQ(cb_.recycled, want);
  EXPECT_TRUE(cb_.reports.empty());
  const AuditLog log = Audit({&local});
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: spill() of a ring never used moves and recycles nothing.
TEST_F(QuarantineTest, SpillOfAnUntouchedRingDoesNothing) {
  InitQuarantine(4096);
  LocalQuarantine fresh;
  q_.spill(cb_, fresh);
  EXPECT_TRUE(cb_.recycled.empty());
  EXPECT_EQ(q_.held_bytes(), 0u);
}

// ------------------------------------------------------------ writes after free (I8)

namespace {

/// Where a write after free lands in a held block, and what the report can still say.
struct Damage {
  const char* name;
  int64_t offset;        // from the user pointer (negative: the header)
  bool header_readable;  // the report names size and allocation site
  bool record_readable;  // the report names the free site
};

class QuarantineDamage : public QuarantineTest, public ::testing::WithParamInterface<Damage> {};

}  // namespace

// Contract: I8: a write anywhere in a held block (fill, record, header) is found when it leaves, reported
// with what the header and record can still say, and the block is withheld for good (counted apart, I7).
TEST_P(QuarantineDamage, AtExitIsReportedAndTheBlockWithheld) {
  const Damage d = GetParam();
  InitQuarantine(4096);
  const LiveBlock victim = Alloc();
  Free(victim, nullptr);
  Scribble(victim.user + d.offset, d.offset < 0 ? 0x80 : 0x41);
  // 64 more blocks: the victim is the oldest, and leaves on the 64th.
  const std::vector<LiveBlock> rest = FreeMany(64, nullptr);
  ASSERT_EQ(cb_.reports.size(), 1u);
  const Recorder::Report& r = cb_.reports[0];
  EXPECT_EQ(r.user, victim.user);
  EXPECT_EQ(r.span, victim.span);
  EXPECT_EQ(r.header_ok, d.header_readable);
  if (d.header_readable) {
    EXPECT_EQ(r.size, kSize);
    EXPECT_EQ(r.alloc_site, kAllocSite);
  }
  EXPECT_EQ(r.free_site, d.record_readable ? kFreeSite : 0u);
  // Withheld: never recycled, counted apart (I7), and out of the held count.
  EXPECT_TRUE(cb_.recycled.empty()) << "nothing else left yet, and the victim never does";
  EXPECT_EQ(q_.withheld_bytes(), kBlock);
  EXPECT_EQ(q_.held_bytes(), 64 * kBlock);
  const StatsSnapshot s = Stats();
  EXPECT_EQ(s.withheld_bytes, kBlock);
  EXPECT_EQ(s.quarantine_blocks, 64u);
  // The ring moves on: the next block to leave is recycled.
  FreeMany(1, nullptr);
  EXPECT_EQ(cb_.recycled, std::vector<uintptr_t>{rest[0].block});
  EXPECT_EQ(cb_.reports.size(), 1u);
  const AuditLog log = Audit();
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

INSTANTIATE_TEST_SUITE_P(Quarantine, QuarantineDamage,
                         ::testing::Values(Damage{"FirstFillByte", kFreedRecord, true, true},
                                           Damage{"MiddleFillByte", kFreedRecord + 13, true, true},
                                           Damage{"LastByteOfTheBlock", kBlock - kHeaderSize - 1, true, true},
                                           Damage{"WhereTheCanaryWas", kSize, true, true},
                                           Damage{"FreeSiteRecord", 2, true, false},
                                           Damage{"RecordSeal", 12, true, false},
                                           Damage{"HeaderSizeBits", -1, false, true},
                                           Damage{"HeaderChecksum", -16, false, true}),
                         [](const ::testing::TestParamInfo<Damage>& i) { return std::string(i.param.name); });

// Contract: I8: a held block whose header is a valid Live one (not sealed Free) is reported when it leaves
// and never recycled; the audit flags it meanwhile.
TEST_F(QuarantineTest, AHeaderRevivedAsLiveIsReportedAtExit) {
  // A valid header that no longer says Free (a forged or stale Live one) is not a held block's.
  InitQuarantine(4096);
  const LiveBlock victim = Alloc();
  Free(victim, nullptr);
  write_pool_prefixes(pool_.seal(), /*paranoid=*/true, victim.block, victim.block, Origin::kMalloc, 0, kSize,
                      kAllocSite);
  AuditLog log = Audit();
  EXPECT_FALSE(log.ok()) << "the audit sees a held block that is not sealed Free";
  FreeMany(64, nullptr);
  ASSERT_EQ(cb_.reports.size(), 1u);
  EXPECT_FALSE(cb_.reports[0].header_ok);
  EXPECT_EQ(cb_.reports[0].user, victim.user);
  EXPECT_TRUE(cb_.recycled.empty()) << "never recycled";
  EXPECT_EQ(q_.withheld_bytes(), kBlock);
  log = Audit();
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: I8: only damaged blocks are withheld; their intact neighbours are recycled in order.
TEST_F(QuarantineTest, OnlyTheDamagedBlockIsWithheld) {
  InitQuarantine(4096);
  const std::vector<LiveBlock> first = FreeMany(8, nullptr);
  Scribble(first[2].user + 30);
  Scribble(first[5].user + kFreedRecord);
  FreeMany(64, nullptr);  // all eight leave
  std::vector<uintptr_t> want = {first[0].block, first[1].block, first[3].block,
                                 first[4].block, first[6].block, first[7].block};
  EXPECT_EQ(cb_.recycled, want);
  ASSERT_EQ(cb_.reports.size(), 2u);
  EXPECT_EQ(cb_.reports[0].user, first[2].user) << "reported in the order they leave";
  EXPECT_EQ(cb_.reports[1].user, first[5].user);
  EXPECT_EQ(q_.withheld_bytes(), 2 * kBlock);
  EXPECT_EQ(q_.held_bytes(), 64 * kBlock);
}

// Contract: I8: a write into a block in a thread's ring is caught when it leaves the shared ring after
// spill(), with its free site.
TEST_F(QuarantineTest, ADamagedBlockInTheLocalRingIsCaughtWhenItLeavesThroughSpill) {
  InitQuarantine(4096);
  LocalQuarantine& local = heap_->quarantine;
  const std::vector<LiveBlock> mine = FreeMany(2, &local);
  Scribble(mine[0].user + 40);
  q_.spill(cb_, local);
  EXPECT_TRUE(cb_.reports.empty()) << "a spill moves blocks; the check is at the exit";
  FreeMany(64, nullptr);
  ASSERT_EQ(cb_.reports.size(), 1u);
  EXPECT_EQ(cb_.reports[0].user, mine[0].user);
  EXPECT_EQ(cb_.reports[0].free_site, kFreeSite);
  EXPECT_EQ(cb_.recycled, std::vector<uintptr_t>{mine[1].block});
}

// ------------------------------------------------------------ the check at reuse

// Contract: take_checked() hands out a never-freed (all-zero header) block unchecked, and returns 0 when
// take() has nothing.
TEST_F(QuarantineTest, TakeCheckedHandsOutANeverFreedBlockAsIs) {
  InitQuarantine(0);
  const uintptr_t fresh = pool_.alloc(heap_, kClass);
  ASSERT_NE(fresh, 0u);
  int takes = 0;
  EXPECT_EQ(q_.take_checked(cb_, [&] { return takes++ == 0 ? fresh : uintptr_t{0}; }), fresh);
  EXPECT_EQ(takes, 1);
  EXPECT_TRUE(cb_.reports.empty());
  EXPECT_EQ(q_.take_checked(cb_, [] { return uintptr_t{0}; }), 0u) << "nothing to take: 0";
}

// Contract: take_checked() hands out a recycled block whose fill is intact; the free-list link over the
// record is not a write after free.
TEST_F(QuarantineTest, TakeCheckedHandsOutAnIntactRecycledBlock) {
  InitQuarantine(0);
  cb_.pool = &pool_;
  cb_.heap = heap_;
  const LiveBlock b = Alloc();
  Free(b, nullptr);  // recycled at once onto its span's free list: the link overwrites the record
  ASSERT_EQ(cb_.recycled.size(), 1u);
  const uintptr_t got = q_.take_checked(cb_, [&] { return pool_.alloc(heap_, kClass); });
  EXPECT_EQ(got, b.block) << "the freed block comes back first";
  EXPECT_TRUE(cb_.reports.empty()) << "the free-list link in the record's place is not a write after free";
  EXPECT_EQ(q_.withheld_bytes(), 0u);
}

// Contract: I8: a recycled block whose fill changed is reported and withheld at reuse, and the next block is
// taken instead.
TEST_F(QuarantineTest, TakeCheckedSkipsAndReportsAReusedBlockWhoseFillChanged) {
  InitQuarantine(0);
  cb_.pool = &pool_;
  cb_.heap = heap_;
  const LiveBlock good = Alloc();
  const LiveBlock bad = Alloc();
  Free(good, nullptr);
  Free(bad, nullptr);  // the free list: bad, then good
  Scribble(bad.user + kFreedRecord + 7);
  std::vector<uintptr_t> taken;
  const uintptr_t got = q_.take_checked(cb_, [&] {
    taken.push_back(pool_.alloc(heap_, kClass));
    return taken.back();
  });
  EXPECT_EQ(got, good.block) << "the damaged block is skipped for the next one";
  EXPECT_EQ(taken, (std::vector<uintptr_t>{bad.block, good.block}));
  ASSERT_EQ(cb_.reports.size(), 1u);
  const Recorder::Report& r = cb_.reports[0];
  EXPECT_EQ(r.user, bad.user);
  EXPECT_TRUE(r.header_ok);
  EXPECT_EQ(r.size, kSize);
  EXPECT_EQ(r.alloc_site, kAllocSite);
  EXPECT_EQ(r.free_site, 0u) << "the record lies under the free-list link: the free site is unknown";
  EXPECT_EQ(q_.withheld_bytes(), kBlock) << "withheld, counted apart (I7)";
  // Withheld for good: the Pool never sees it again, so it cannot be handed out (I8).
  const uintptr_t next = pool_.alloc(heap_, kClass);
  EXPECT_NE(next, bad.block);
}

// Contract: I8: a recycled block whose header no longer decodes is reported (without size or site) and
// withheld at reuse.
TEST_F(QuarantineTest, TakeCheckedReportsABlockWhoseHeaderChanged) {
  InitQuarantine(0);
  cb_.pool = &pool_;
  cb_.heap = heap_;
  const LiveBlock b = Alloc();
  Free(b, nullptr);
  Scribble(b.block + 11);  // the sealed word
  const uintptr_t got = q_.take_checked(cb_, [&] {
    const uintptr_t x = pool_.alloc(heap_, kClass);
    return x == b.block ? x : uintptr_t{0};  // only the damaged block is offered
  });
  EXPECT_EQ(got, 0u);
  ASSERT_EQ(cb_.reports.size(), 1u);
  EXPECT_FALSE(cb_.reports[0].header_ok);
  EXPECT_EQ(cb_.reports[0].user, b.user);
  EXPECT_EQ(q_.withheld_bytes(), kBlock);
}

// Contract: I8: a write into a block after it left the quarantine is caught at its reuse; the held count is
// unchanged by it.
TEST_F(QuarantineTest, TakeCheckedChecksBlocksThatLeftTheRing) {
  InitQuarantine(4096);
  cb_.pool = &pool_;
  cb_.heap = heap_;
  const std::vector<LiveBlock> b = FreeMany(65, nullptr);  // b[0] leaves, back on its span
  ASSERT_EQ(cb_.recycled, std::vector<uintptr_t>{b[0].block});
  Scribble(b[0].user + kBlock - kHeaderSize - 1);  // a write after it left the quarantine
  const uintptr_t got = q_.take_checked(cb_, [&] { return pool_.alloc(heap_, kClass); });
  EXPECT_NE(got, b[0].block);
  ASSERT_EQ(cb_.reports.size(), 1u);
  EXPECT_EQ(cb_.reports[0].user, b[0].user);
  EXPECT_EQ(q_.withheld_bytes(), kBlock);
  EXPECT_EQ(q_.held_bytes(), 64 * kBlock) << "the held count is the ring's, unchanged by a reuse";
}

// ------------------------------------------------------------ accounting and the audit (I7)

// Contract: I7: every freed block is held, recycled or withheld, exactly once; the stats and the audit agree
// with the rings.
TEST_F(QuarantineTest, CountersAndAuditAgreeWithWhatHappened) {
  InitQuarantine(8192);  // shared: 128 blocks; local cap 512 bytes: 8 blocks
  LocalQuarantine& local = heap_->quarantine;
  FreeMany(100, nullptr);
  FreeMany(20, &local);  // 8 stay local, 12 go on to the shared ring (112)
  EXPECT_EQ(local.fifo.count(), 8u);
  EXPECT_EQ(q_.held_bytes(), 120 * kBlock);
  EXPECT_TRUE(cb_.recycled.empty());
  const std::vector<LiveBlock> b = FreeMany(18, nullptr);  // the shared ring reaches 130: two leave
  EXPECT_EQ(cb_.recycled.size(), 2u);
  EXPECT_EQ(q_.held_bytes(), (8 + 128) * kBlock) << "the local ring's bytes are held too";
  Scribble(b[0].user + 20);
  FreeMany(128, nullptr);  // everything the shared ring held leaves, b[0] among them
  EXPECT_EQ(cb_.reports.size(), 1u);
  EXPECT_EQ(cb_.recycled.size(), 2u + 128u - 1u);
  const StatsSnapshot s = Stats();
  EXPECT_EQ(s.quarantine_bytes, q_.held_bytes());
  EXPECT_EQ(s.quarantine_blocks, 8u + 128u) << "8 still local, the shared ring full";
  EXPECT_EQ(s.quarantine_bytes, (8u + 128u) * kBlock);
  EXPECT_EQ(s.withheld_bytes, kBlock);
  EXPECT_EQ(s.quarantine_cap, 8192u);
  // Every freed block is held, recycled or withheld: none lost, none counted twice.
  EXPECT_EQ(s.quarantine_blocks + cb_.recycled.size() + cb_.reports.size(), 100u + 20u + 18u + 128u);
  std::set<uintptr_t> distinct(cb_.recycled.begin(), cb_.recycled.end());
  EXPECT_EQ(distinct.size(), cb_.recycled.size()) << "no block recycled twice";
  const AuditLog log = Audit({&local});
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: The audit's held total includes the thread rings for_each_local() passes; leaving one out is a
// failure.
TEST_F(QuarantineTest, AuditCountsTheLocalRingsItIsGiven) {
  InitQuarantine(4096);
  LocalQuarantine& local = heap_->quarantine;
  FreeMany(3, &local);
  FreeMany(2, nullptr);
  EXPECT_TRUE(Audit({&local}).ok());
  const AuditLog missing = Audit();
  ASSERT_EQ(missing.failures.size(), 1u) << "the held counters include the local ring";
  EXPECT_EQ(missing.failures[0], "quarantine rings != held counters");
}

// Contract: The audit flags a held block whose header is not a sealed Free Pool one.
TEST_F(QuarantineTest, AuditFlagsAHeldBlockThatIsNotASealedFreeBlock) {
  InitQuarantine(4096);
  const std::vector<LiveBlock> b = FreeMany(3, nullptr);
  Scribble(b[1].block + 12, 0x01);  // byte 4 of the sealed word, bit 0
  const AuditLog log = Audit();
  ASSERT_EQ(log.failures.size(), 1u);
  EXPECT_EQ(log.failures[0], "quarantined block is not a sealed free Pool block");
}

// ------------------------------------------------------------ threads

// Contract (fork): disable() holds the shared ring's lock, so a free that reaches the shared ring
// cannot complete until enable(); then it does, and nothing is lost.
TEST_F(QuarantineTest, DisableHoldsFreesIntoTheSharedRingUntilEnable) {
  InitQuarantine(4096);
  const LiveBlock b = Alloc();
  std::atomic<bool> done{false};
  q_.disable();
  std::thread t([&] {
    Free(b, nullptr);  // no thread ring: straight to the shared one
    done.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load()) << "a free went into the shared ring while the quarantine was disabled";
  q_.enable();
  t.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(q_.held_bytes(), kBlock);
  EXPECT_TRUE(cb_.recycled.empty());
  const AuditLog log = Audit();
  EXPECT_TRUE(log.ok()) << log.failures[0];
}

// Contract: Concurrent frees and spills lose no block and recycle none twice; the rings and counters agree
// after (I7).
TEST_F(QuarantineTest, ThreadsFreeingAndSpillingConcurrentlyLoseNoBlock) {
  InitQuarantine(4096);  // 64 blocks of the shared ring survive
  constexpr size_t kThreads = 4, kPerThread = 200;
  std::vector<std::vector<LiveBlock>> blocks(kThreads);
  for (auto& v : blocks) {
    for (size_t i = 0; i < kPerThread; ++i) v.push_back(Alloc());
  }
  std::vector<LocalQuarantine> locals(kThreads);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (const LiveBlock& b : blocks[t]) Free(b, &locals[t]);
      q_.spill(cb_, locals[t]);  // the thread's exit
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_TRUE(cb_.reports.empty());
  EXPECT_EQ(q_.held_bytes(), 4096u);
  EXPECT_EQ(cb_.recycled.size(), kThreads * kPerThread - 64);
  std::set<uintptr_t> distinct(cb_.recycled.begin(), cb_.recycled.end());
  EXPECT_EQ(distinct.size(), cb_.recycled.size()) << "no block recycled twice";
  std::vector<LocalQuarantine*> lp;
  for (LocalQuarantine& l : locals) {
    EXPECT_TRUE(l.fifo.empty());
    lp.push_back(&l);
  }
  const AuditLog log = Audit(lp);
  EXPECT_TRUE(log.ok()) << log.failures[0];
}
