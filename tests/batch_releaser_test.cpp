// BatchReleaser module tests: batching to the threshold, coalescing of adjacent ranges, flush on
// demand, on the threshold and on a decay tick, pending accounting (I7, I10), and teardown (I1).
//
// The releaser stands alone over a RecordingPal (direct tests, where adjacency
// can be forced by carving one mapping into ranges) and is also driven through
// Allocator<RecordingConfig> (how it is wired: cache evictions and bypasses).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "front/front.h"
#include "support/audit.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kSite = 0x500500;
constexpr uint64_t kHuge = uint64_t{1} << 40;  // a batch threshold never reached

struct Range {
  uintptr_t base;
  size_t len;
  bool operator<(const Range& o) const { return base < o.base; }
  bool operator==(const Range& o) const = default;
};

/// Maximal runs of adjacent ranges (what one flush should unmap, one call each).
std::vector<Range> Runs(std::vector<Range> rs) {
  std::sort(rs.begin(), rs.end());
  std::vector<Range> runs;
  for (const Range& r : rs) {
    if (!runs.empty() && runs.back().base + runs.back().len == r.base) {
      runs.back().len += r.len;
    } else {
      runs.push_back(r);
    }
  }
  return runs;
}

template <class Pal>
std::vector<Range> UnmapsSince(const Pal& pal, uint64_t from) {
  std::vector<Range> out;
  for (uint64_t i = from; i < pal.total_calls(); ++i) {
    PalRecord rec;
    EXPECT_TRUE(pal.record(i, &rec)) << "log wrapped";
    if (rec.op == PalOp::kUnmap) {
      EXPECT_EQ(rec.layer, Layer::kRelease);
      out.push_back(Range{rec.addr, rec.len});
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ------------------------------------------------------------ the releaser on its own

class Releaser : public ::testing::Test {
protected:
  using Pal = RecordingPal<LinuxPal>;

  void Init(uint64_t batch, uint64_t decay_ns) {
    ASSERT_TRUE(registry_.init(&pal_, &tally_));
    const GiveBack give{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<BatchReleaser<Pal>*>(ctx)->add_raw(base, len); },
        &rel_};
    map_.init(&pal_, &registry_, &tally_, give);
    codec_.set_secret(0x0123456789abcdefull);
    rel_.init(&pal_, &registry_, &map_, &codec_, &tally_, batch, decay_ns);
    inited_ = true;
  }

  void TearDown() override {
    if (!inited_) return;
    rel_.flush();
    auto give = [this](uintptr_t base, size_t len) { rel_.add_raw(base, len); };
    map_.release_all(give);
    rel_.flush();
    registry_.release_tables(give);
    rel_.flush();
    EXPECT_EQ(pal_.outstanding_bytes(), 0u) << "the fixture leaked a mapping";
  }

  /// A mapping of `pieces` x `piece` bytes made outside the releaser, to be handed over in pieces.
  uintptr_t MapRegion(size_t pieces, size_t piece) {
    void* p = pal_.map(pieces * piece, Layer::kTest);
    EXPECT_NE(p, nullptr);
    tally_ += pieces * piece;
    return reinterpret_cast<uintptr_t>(p);
  }

  uint64_t Unmaps() const { return pal_.calls(PalOp::kUnmap); }

  Pal pal_;
  std::atomic<uint64_t> tally_{0};
  Registry<Pal> registry_;
  MapBacking<Pal> map_;
  HeaderCodec codec_;
  BatchReleaser<Pal> rel_;
  bool inited_ = false;
};

TEST_F(Releaser, AdjacentRangesCoalesceIntoOneUnmap) {
  Init(kHuge, 0);
  constexpr size_t kPieces = 16, kPiece = 64 * kKiB;
  const uintptr_t region = MapRegion(kPieces, kPiece);
  const uint64_t tally0 = tally_.load();
  // Hand the pieces over out of order: the flush sorts them.
  const size_t order[kPieces] = {7, 3, 15, 0, 9, 12, 1, 4, 14, 2, 8, 10, 6, 13, 5, 11};
  for (size_t i : order) rel_.add_raw(region + i * kPiece, kPiece);
  EXPECT_EQ(rel_.pending_bytes(), kPieces * kPiece);
  EXPECT_EQ(Unmaps(), 0u) << "nothing is unmapped before the flush";
  const uint64_t from = pal_.total_calls();
  EXPECT_EQ(rel_.flush(), kPieces);
  const std::vector<Range> unmaps = UnmapsSince(pal_, from);
  ASSERT_EQ(unmaps.size(), 1u);
  EXPECT_EQ(unmaps[0], (Range{region, kPieces * kPiece}));
  const ReleaseCounters& c = rel_.counters();
  EXPECT_EQ(c.blocks.load(), kPieces);
  EXPECT_EQ(c.bytes.load(), kPieces * kPiece);
  EXPECT_EQ(c.flushes.load(), 1u);
  EXPECT_EQ(c.unmap_calls.load(), 1u);
  EXPECT_EQ(c.syscalls_saved.load(), kPieces - 1);
  EXPECT_EQ(c.unmap_failures.load(), 0u);
  EXPECT_EQ(rel_.pending_bytes(), 0u);
  EXPECT_EQ(tally0 - tally_.load(), kPieces * kPiece);
}

TEST_F(Releaser, AGapSplitsTheRun) {
  Init(kHuge, 0);
  constexpr size_t kPieces = 16, kPiece = 4096;
  const uintptr_t region = MapRegion(kPieces, kPiece);
  for (size_t i = 0; i < kPieces; ++i) {
    if (i != 8) rel_.add_raw(region + i * kPiece, kPiece);
  }
  uint64_t from = pal_.total_calls();
  EXPECT_EQ(rel_.flush(), kPieces - 1);
  std::vector<Range> unmaps = UnmapsSince(pal_, from);
  ASSERT_EQ(unmaps.size(), 2u);
  EXPECT_EQ(unmaps[0], (Range{region, 8 * kPiece}));
  EXPECT_EQ(unmaps[1], (Range{region + 9 * kPiece, 7 * kPiece}));
  EXPECT_EQ(rel_.counters().syscalls_saved.load(), kPieces - 1 - 2);
  // The piece in the gap is still mapped (and writable) until it is handed over.
  memset(reinterpret_cast<void*>(region + 8 * kPiece), 1, kPiece);
  rel_.add_raw(region + 8 * kPiece, kPiece);
  from = pal_.total_calls();
  EXPECT_EQ(rel_.flush(), 1u);
  unmaps = UnmapsSince(pal_, from);
  ASSERT_EQ(unmaps.size(), 1u);
  EXPECT_EQ(unmaps[0], (Range{region + 8 * kPiece, kPiece}));
}

TEST_F(Releaser, FlushWithNothingPendingMakesNoSyscall) {
  Init(kHuge, 0);
  const uint64_t calls = pal_.total_calls();
  EXPECT_EQ(rel_.flush(), 0u);
  EXPECT_EQ(rel_.flush(), 0u);
  EXPECT_EQ(pal_.total_calls(), calls);
  EXPECT_EQ(rel_.counters().flushes.load(), 0u);
  EXPECT_EQ(rel_.counters().unmap_calls.load(), 0u);
}

TEST_F(Releaser, FlushesWhenPendingReachesTheBatch) {
  Init(1 * kMiB, 0);
  const uintptr_t region = MapRegion(4, 512 * kKiB);
  rel_.add_raw(region, 256 * kKiB);
  rel_.add_raw(region + 256 * kKiB, 256 * kKiB);
  rel_.add_raw(region + 512 * kKiB, 256 * kKiB);
  EXPECT_EQ(rel_.pending_bytes(), 768 * kKiB);
  EXPECT_EQ(Unmaps(), 0u);
  rel_.add_raw(region + 768 * kKiB, 256 * kKiB);  // reaches 1 MiB: flush
  EXPECT_EQ(rel_.pending_bytes(), 0u);
  EXPECT_EQ(rel_.counters().flushes.load(), 1u);
  EXPECT_EQ(Unmaps(), 1u) << "four adjacent quarters: one munmap";
  rel_.add_raw(region + 1 * kMiB, 1 * kMiB);  // one range at the batch size flushes by itself
  EXPECT_EQ(rel_.pending_bytes(), 0u);
  EXPECT_EQ(rel_.counters().flushes.load(), 2u);
}

TEST_F(Releaser, BatchZeroReleasesEveryRangeAtOnce) {
  Init(0, 0);
  const uintptr_t region = MapRegion(3, 4096);
  for (size_t i = 0; i < 3; ++i) {
    rel_.add_raw(region + i * 4096, 4096);
    EXPECT_EQ(rel_.pending_bytes(), 0u);
    EXPECT_EQ(rel_.counters().flushes.load(), i + 1);
  }
  EXPECT_EQ(Unmaps(), 3u);
  EXPECT_EQ(rel_.counters().syscalls_saved.load(), 0u);
}

TEST_F(Releaser, AFullPendingArrayFlushes) {
  Init(kHuge, 0);
  constexpr size_t kN = BatchReleaser<Pal>::kMaxPending + 44;
  const uintptr_t region = MapRegion(kN, 4096);
  for (size_t i = 0; i < BatchReleaser<Pal>::kMaxPending - 1; ++i) rel_.add_raw(region + i * 4096, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 0u);
  rel_.add_raw(region + (BatchReleaser<Pal>::kMaxPending - 1) * 4096, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 1u) << "the pending array is full: flush";
  EXPECT_EQ(rel_.pending_bytes(), 0u);
  for (size_t i = BatchReleaser<Pal>::kMaxPending; i < kN; ++i) rel_.add_raw(region + i * 4096, 4096);
  EXPECT_EQ(rel_.pending_bytes(), 44u * 4096);
  rel_.flush();
  EXPECT_EQ(pal_.bytes(PalOp::kUnmap), kN * 4096);
  EXPECT_EQ(rel_.counters().blocks.load(), kN);
  EXPECT_EQ(rel_.counters().unmap_calls.load(), 2u);
}

TEST_F(Releaser, DecayTickFlushesOnTheNextAdd) {
  Init(kHuge, 1000000);  // 1 ms
  const uintptr_t region = MapRegion(3, 4096);
  rel_.add_raw(region, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 0u);
  EXPECT_EQ(rel_.pending_bytes(), 4096u);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  rel_.add_raw(region + 8192, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 1u) << "the oldest range is older than decay_ms";
  EXPECT_EQ(rel_.pending_bytes(), 0u);
  // The clock restarts with the next range.
  rel_.add_raw(region + 4096, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 1u);
  EXPECT_EQ(rel_.pending_bytes(), 4096u);
}

TEST_F(Releaser, NoDecayWhenDecayIsZero) {
  Init(kHuge, 0);
  const uintptr_t region = MapRegion(2, 4096);
  rel_.add_raw(region, 4096);
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  rel_.add_raw(region + 4096, 4096);
  EXPECT_EQ(rel_.counters().flushes.load(), 0u);
  EXPECT_EQ(rel_.pending_bytes(), 8192u);
}

TEST_F(Releaser, MapBlocksStayRegisteredUntilTheFlushThenAreRetired) {
  Init(kHuge, 0);
  std::vector<MapBlock*> blocks;
  for (int i = 0; i < 3; ++i) {
    MapBlock* mb = map_.map(256 * kKiB);
    ASSERT_NE(mb, nullptr);
    blocks.push_back(mb);
  }
  std::vector<Range> ranges;
  for (MapBlock* mb : blocks) {
    ranges.push_back(Range{mb->base, mb->length});
    rel_.add(mb);
    HeaderFields f;
    ASSERT_TRUE(codec_.decode(reinterpret_cast<void*>(mb->base + mb->hdr_offset), &f));
    EXPECT_EQ(f.state, State::kReleasing);
    EXPECT_EQ(mb->state, State::kReleasing);
    EXPECT_EQ(registry_.lookup(mb->base), mb) << "a pending block is still ours (double frees are seen)";
  }
  size_t pending = 0;
  rel_.for_each_pending([&](uintptr_t, size_t len, MapBlock* d) {
    pending += len;
    EXPECT_NE(d, nullptr);
  });
  EXPECT_EQ(pending, rel_.pending_bytes());
  const uint64_t from = pal_.total_calls();
  rel_.flush();
  EXPECT_EQ(UnmapsSince(pal_, from), Runs(ranges));
  for (const Range& r : ranges) {
    EXPECT_EQ(registry_.lookup(r.base), nullptr);
    EXPECT_EQ(registry_.lookup(r.base + r.len - 1), nullptr);
  }
  size_t live = 0;
  map_.for_each_block([&](MapBlock*) { ++live; });
  EXPECT_EQ(live, 0u) << "descriptors of released blocks are retired";
}

// ------------------------------------------------------------ through the allocator

using RecAlloc = ScopedAllocator<RecordingConfig>;

Options ReleaseOptions(uint64_t batch, uint64_t decay_ms = 0, uint64_t cache = 0) {
  Options o;
  o.set(Opt::kCache, cache);
  o.set(Opt::kBatch, batch);
  o.set(Opt::kDecayMs, decay_ms);
  o.set(Opt::kLargeSlot, 0);  // every freed Map block goes to BigCache or the releaser, as these tests count
  return o;
}

uint64_t Unmaps(RecAlloc& a) { return a->pal().calls(PalOp::kUnmap); }

TEST(BatchReleaser, PendingGrowsUntilTheBatchThenOneFlush) {
  RecAlloc a(ReleaseOptions(8 * kMiB));
  constexpr size_t kLen = 2 * kMiB + 4096;  // mapping of a 2 MiB block
  std::vector<void*> v;
  for (int i = 0; i < 5; ++i) v.push_back(a->alloc(2 * kMiB, kSite));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(a->free(v[i], kSite), Verdict::kOk);
    const StatsSnapshot s = a->stats();
    EXPECT_EQ(s.pending_bytes, (i + 1) * kLen);
    EXPECT_EQ(s.release_flushes, 0u);
    EXPECT_EQ(Unmaps(a), 0u) << "no unmap before pending reaches the batch";
    EXPECT_EQ(a->inspect(v[i]).fields.state, State::kReleasing);
    EXPECT_AUDIT_OK(a);
  }
  ASSERT_EQ(a->free(v[3], kSite), Verdict::kOk);  // 4 x (2 MiB + 4 KiB) >= 8 MiB
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.release_flushes, 1u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.release_blocks, 4u);
  EXPECT_GE(Unmaps(a), 1u);
  EXPECT_LE(Unmaps(a), 4u);
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), 4 * kLen);
  EXPECT_EQ(s.syscalls_saved, s.release_blocks - s.unmap_calls);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a->check(v[i]), Verdict::kInvalidPointer);
  EXPECT_AUDIT_OK(a);
  ASSERT_EQ(a->free(v[4], kSite), Verdict::kOk);
  s = a->stats();
  EXPECT_EQ(s.pending_bytes, kLen);
  EXPECT_EQ(s.release_flushes, 1u);
  EXPECT_AUDIT_OK(a);
}

// The releaser's coalescing unmaps exactly the pending ranges.
TEST(BatchReleaser, CoalescingUnmapsExactlyThePendingRanges) {
  RecAlloc a(ReleaseOptions(kHuge));
  constexpr size_t kN = 16;
  std::vector<void*> v;
  std::vector<Range> ranges;
  for (size_t i = 0; i < kN; ++i) {
    void* p = a->alloc(256 * kKiB, kSite);  // back to back: mmap usually places them adjacently
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(a->inspect(p).kind, ExtentKind::kMapBlock);
    Extent* e = a->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(p));
    ASSERT_NE(e, nullptr);
    ranges.push_back(Range{e->base, e->length});
    v.push_back(p);
  }
  uint64_t total = 0;
  for (const Range& r : ranges) total += r.len;
  for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pending_bytes, total);
  EXPECT_EQ(s.release_blocks, kN);
  EXPECT_EQ(Unmaps(a), 0u);
  EXPECT_AUDIT_OK(a);

  const uint64_t from = a->pal().total_calls();
  a->flush();
  const std::vector<Range> unmaps = UnmapsSince(a->pal(), from);
  const std::vector<Range> runs = Runs(ranges);
  // One munmap per maximal run of adjacent pending ranges, covering exactly it.
  EXPECT_EQ(unmaps, runs);
  uint64_t unmapped = 0;
  for (const Range& u : unmaps) unmapped += u.len;
  EXPECT_EQ(unmapped, total) << "unmapped bytes == pending bytes";
  // Each pending range lies in exactly one unmap (none unmapped twice, none missed).
  for (const Range& r : ranges) {
    int covering = 0;
    for (const Range& u : unmaps) covering += r.base >= u.base && r.base + r.len <= u.base + u.len;
    EXPECT_EQ(covering, 1) << std::hex << r.base;
  }
  s = a->stats();
  EXPECT_EQ(s.unmap_calls, unmaps.size());
  EXPECT_EQ(s.syscalls_saved, s.release_blocks - s.unmap_calls);
  EXPECT_EQ(s.syscalls_saved, kN - runs.size());
  if (runs.size() < kN) {
    EXPECT_LT(s.unmap_calls, kN) << "adjacent mappings must share an munmap";
  }
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_TRUE(a->pal().verify_mapped());
  EXPECT_AUDIT_OK(a);
  RecordProperty("adjacent_runs", static_cast<int>(runs.size()));
}

TEST(BatchReleaser, FlushWithNothingPendingMakesNoSyscall) {
  RecAlloc a(ReleaseOptions(8 * kMiB));
  void* p = a->alloc(100, kSite);
  void* q = a->alloc(1 * kMiB, kSite);  // live: not pending
  const uint64_t calls = a->pal().total_calls();
  a->flush();
  a->flush_pending_for_testing();
  EXPECT_EQ(a->pal().total_calls(), calls);
  EXPECT_EQ(a->stats().release_flushes, 0u);
  a->free(p, kSite);
  a->free(q, kSite);
}

TEST(BatchReleaser, EachFreeFlushesWhenABlockExceedsTheBatch) {
  RecAlloc a(ReleaseOptions(1 * kMiB));
  std::vector<void*> v;
  for (int i = 0; i < 4; ++i) v.push_back(a->alloc(2 * kMiB, kSite));
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(a->free(v[i], kSite), Verdict::kOk);
    const StatsSnapshot s = a->stats();
    EXPECT_EQ(s.release_flushes, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(s.pending_bytes, 0u);
    EXPECT_EQ(Unmaps(a), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(a->check(v[i]), Verdict::kInvalidPointer);
  }
  EXPECT_AUDIT_OK(a);
}

TEST(BatchReleaser, CacheEvictionsFlushAtTheBatchToo) {
  RecAlloc a(ReleaseOptions(1 * kMiB, 0, 4 * (2 * kMiB + 4096)));
  std::vector<void*> v;
  for (int i = 0; i < 5; ++i) v.push_back(a->alloc(2 * kMiB, kSite));
  for (void* p : v) ASSERT_EQ(a->free(p, kSite), Verdict::kOk);  // the cap holds four: the 5th free evicts
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_evictions, 1u);
  EXPECT_EQ(s.release_flushes, 1u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(Unmaps(a), 1u);
  EXPECT_EQ(a->check(v[0]), Verdict::kInvalidPointer);
  EXPECT_AUDIT_OK(a);
}

TEST(BatchReleaser, DecayTickFlushesOnTheNextRelease) {
  RecAlloc a(ReleaseOptions(kHuge, /*decay_ms=*/1));
  void* p = a->alloc(1 * kMiB, kSite);
  void* q = a->alloc(1 * kMiB, kSite);
  ASSERT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->stats().release_flushes, 0u);
  EXPECT_GT(a->stats().pending_bytes, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(a->free(q, kSite), Verdict::kOk);
  const StatsSnapshot s = a->stats();
  EXPECT_GE(s.release_flushes, 1u);
  EXPECT_EQ(s.pending_bytes, 0u) << "I10: after a flush nothing is pending";
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), a->pal().bytes(PalOp::kMap, Layer::kMap));
  EXPECT_AUDIT_OK(a);
}

TEST(BatchReleaser, ConcurrentReleasesLoseNothing) {
  RecAlloc a(ReleaseOptions(4 * kMiB));
  constexpr int kThreads = 4, kPer = 40;
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        void* p = a->alloc(static_cast<size_t>(256 + 64 * ((i + t) % 5)) * kKiB, kSite + t);
        if (p == nullptr) {
          ++bad;
          continue;
        }
        memset(p, i, 4096);
        bad += a->free(p, kSite + t) != Verdict::kOk;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  StatsSnapshot s = a->stats();
  EXPECT_EQ(s.release_blocks, static_cast<uint64_t>(kThreads * kPer));
  EXPECT_AUDIT_OK(a);
  a->flush();
  s = a->stats();
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), s.release_bytes) << "every byte handed to the releaser was unmapped";
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap), a->pal().bytes(PalOp::kMap, Layer::kMap));
  EXPECT_EQ(s.unmap_calls, Unmaps(a));
  EXPECT_EQ(s.syscalls_saved, s.release_blocks - s.unmap_calls);
  EXPECT_AUDIT_OK(a);
}

TEST(BatchReleaser, TeardownReturnsEverythingThroughTheReleaser) {
  RecAlloc a(ReleaseOptions(8 * kMiB, 0, 4 * kMiB));
  std::vector<void*> keep;
  // Pool blocks, from this thread and from a thread that exits.
  for (size_t n : {16ul, 100ul, 4000ul, 100000ul}) keep.push_back(a->alloc(n, kSite));
  std::thread t([&] {
    for (int i = 0; i < 100; ++i) keep.push_back(a->alloc(static_cast<size_t>(32 * (i + 1)), kSite));
  });
  t.join();
  // Map blocks: live, cached and pending.
  keep.push_back(a->alloc(3 * kMiB, kSite));
  keep.push_back(a->aligned_alloc(64 * kKiB, 1 * kMiB, kSite));
  void* cached = a->alloc(2 * kMiB, kSite);
  ASSERT_EQ(a->free(cached, kSite), Verdict::kOk);
  std::vector<void*> evicted;
  for (int i = 0; i < 6; ++i) evicted.push_back(a->alloc(1 * kMiB, kSite + 1));
  for (void* p : evicted) ASSERT_EQ(a->free(p, kSite + 1), Verdict::kOk);
  StatsSnapshot s = a->stats();
  ASSERT_GT(s.cache_bytes, 0u);
  ASSERT_GT(s.pending_bytes, 0u);
  EXPECT_AUDIT_OK(a);
  ASSERT_GT(a->pal().outstanding_bytes(), 0u);

  a->teardown();
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u) << "teardown must return every mapped byte";
  EXPECT_EQ(a->pal().mapped_bytes(), 0u);
  EXPECT_EQ(a->pal().calls(PalOp::kUnmap), a->pal().calls(PalOp::kUnmap, Layer::kRelease));
  EXPECT_EQ(a->pal().calls(PalOp::kAdvise), a->pal().calls(PalOp::kAdvise, Layer::kRelease));
  EXPECT_FALSE(a->ready());
  // Idempotent: a second teardown does nothing (the ScopedAllocator runs a third).
  const uint64_t calls = a->pal().total_calls();
  a->teardown();
  EXPECT_EQ(a->pal().total_calls(), calls);
}

}  // namespace
