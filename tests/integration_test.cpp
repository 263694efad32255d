// Integration: seeded random alloc/aligned/calloc/realloc/free/flush sequences against Allocator<RecordingConfig>.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "front/front.h"
#include "support/pattern.h"

using namespace hakmem;

namespace {

using Alloc = Allocator<RecordingConfig>;

constexpr uint64_t kMaxSize = uint64_t{8} << 20;
// Bounds on what is live at once, so one run stays within a few hundred MiB and well under a second.
constexpr size_t kMaxLiveBlocks = 64;
constexpr uint64_t kMaxLiveBytes = uint64_t{32} << 20;

/// The byte pattern of a block keyed `key`: the 8-byte word at offset 8*i is key + (i + 1) * golden.

/// All of a block up to 1 MiB; above, the first and last 64 KiB and a stripe every 32 KiB.
constexpr hakmem_test::Striping kStriping{uint64_t{1} << 20, 64 * 1024, 32 * 1024};

/// Writes the pattern of an n-byte block.
void fill(void* p, uint64_t n, uint64_t key) { hakmem_test::fill_striped(p, n, key, kStriping); }

/// Checks the pattern an n-byte block was filled with, over its first `keep` bytes; the first bad offset or -1.
int64_t first_mismatch(const void* p, uint64_t n, uint64_t keep, uint64_t key) {
  return hakmem_test::striped_mismatch(p, n, keep, key, kStriping);
}

int64_t first_nonzero(const void* p, uint64_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w != 0) break;
  }
  for (; i < n; ++i) {
    if (b[i] != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

/// One live block as the test's model sees it.
struct Block {
  uint64_t size;   ///< requested bytes
  uint64_t end;    ///< p + max(usable, 1): the range no other live block may touch (I4)
  uint64_t key;    ///< pattern key
  uint64_t align;  ///< requested alignment (16 for plain allocations)
};

/// One configuration the random sequence runs under.
struct RunConfig {
  const char* name;
  const char* options;   ///< HAKMEM_OPTIONS syntax
  bool switch_strategy;  ///< force a random strategy every 100 ops
  uint64_t seeds[3];     ///< fixed seeds (0 ends the list early)
};

std::ostream& operator<<(std::ostream& os, const RunConfig& c) { return os << c.name; }

class Driver {
public:
  Driver(Alloc& a, uint64_t seed, bool switching) : a_(a), rng_(seed), seed_(seed), switching_(switching) {
    // Sizes that sit on an edge: Pool class boundaries, large class boundaries, and thresholds.
    const uint64_t base[] = {
        0,       1, 15, 16, 17, 127, 128, 129, 4096, 65535, 65536, 65537, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1,
        kMaxSize};
    for (uint64_t s : base) edges_.push_back(s);
    for (size_t c = 0; c < SizeClasses::kCount; c += 3) {
      const uint64_t u = SizeClasses::usable(c);
      if (u > kMaxSize) break;
      edges_.push_back(u);
      edges_.push_back(u + 1);
    }
    for (uint32_t c = 0; c < LargeClasses::kCount; c += 2) {
      const uint64_t u = LargeClasses::usable(c);
      if (u > kMaxSize) break;
      edges_.push_back(u - kHeaderSize);
      edges_.push_back(u - kHeaderSize + 1);
    }
    for (uint64_t t : kStrategyThresholds) {
      if (t > kMaxSize) break;
      edges_.push_back(t - 1);
      edges_.push_back(t);
    }
  }

  std::string where() const {
    return "seed " + std::to_string(seed_) + ", op " + std::to_string(op_) + " (" + last_op_ + ")";
  }

  void run(int ops) {
    for (op_ = 0; op_ < ops; ++op_) {
      if (switching_ && op_ % 100 == 0) {
        const auto id = static_cast<uint8_t>(rng_() % (kLearnableStrategies + 1));
        a_.selector().set_current(id);
      }
      step();
      if (::testing::Test::HasFatalFailure()) return;
      if (op_ % 10 == 9) {
        check_audit();
        if (::testing::Test::HasFatalFailure()) return;
      }
      if (op_ % 250 == 249) {
        check_all_blocks();
        if (::testing::Test::HasFatalFailure()) return;
      }
      if (op_ == ops / 2) {
        // I1 mid-stream, with blocks live, cached and pending: nothing the log has mapped vanished behind it.
        auto& pal = a_.pal();
        if (pal.total_calls() <= RecordingConfig::Pal::kLogSize) {
          ASSERT_TRUE(pal.verify_mapped()) << "I1: a mapping vanished without a releaser unmap, " << where();
        }
      }
    }
    check_audit();
    check_all_blocks();
  }

  void free_everything() {
    while (!live_.empty()) {
      free_block(live_.begin()->first);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  void check_audit() {
    const AuditResult r = a_.audit();
    ASSERT_TRUE(r.ok) << r.failure << " at " << where();
    ASSERT_EQ(r.live_blocks, live_.size()) << "audit walked a different number of live blocks, at " << where();
    const StatsSnapshot s = a_.stats();
    auto& pal = a_.pal();
    // I1: every unmap (and every page release) came from the releaser.
    ASSERT_EQ(pal.calls(PalOp::kUnmap), pal.calls(PalOp::kUnmap, Layer::kRelease)) << "I1 at " << where();
    ASSERT_EQ(pal.calls(PalOp::kAdvise), pal.calls(PalOp::kAdvise, Layer::kRelease)) << "I1 at " << where();
    // I9: everything evicted from or bypassing BigCache was handed to the releaser.
    ASSERT_LE(s.cache_evictions + s.cache_bypass, s.release_blocks) << "I9 at " << where();
    // I7 seen from outside: what the allocator thinks is mapped is what the platform mapped.
    ASSERT_EQ(s.mapped_bytes, pal.outstanding_bytes()) << "I7 mapped counter vs platform at " << where();
  }

private:
  uint64_t rand_size() {
    const unsigned pick = rng_() % 8;
    if (pick == 0) return edges_[rng_() % edges_.size()];
    if (pick == 1) {
      // The threshold in force right now, and its neighbours.
      const uint64_t t = a_.selector().snapshot().threshold;
      const uint64_t s = t - 1 + rng_() % 3;
      return s > kMaxSize ? kMaxSize : s;
    }
    // Log-uniform over [0, 8 MiB].
    std::uniform_real_distribution<double> d(0.0, std::log(static_cast<double>(kMaxSize) + 1.0));
    uint64_t s = static_cast<uint64_t>(std::exp(d(rng_))) - 1;
    return s > kMaxSize ? kMaxSize : s;
  }

  uintptr_t random_live() {
    auto it = live_.begin();
    std::advance(it, static_cast<long>(rng_() % live_.size()));
    return it->first;
  }

  void step() {
    const bool full = live_.size() >= kMaxLiveBlocks || live_bytes_ >= kMaxLiveBytes;
    const unsigned r = rng_() % 100;
    if (live_.empty() || (!full && r < 40)) {
      last_op_ = "alloc";
      do_alloc();
    } else if (!full && r < 50) {
      last_op_ = "aligned_alloc";
      do_aligned();
    } else if (!full && r < 58) {
      last_op_ = "calloc";
      do_calloc();
    } else if (r < 75) {
      last_op_ = "realloc";
      do_realloc();
    } else if (r < 98) {
      last_op_ = "free";
      free_block(random_live());
    } else {
      last_op_ = "flush";
      a_.flush();
      const StatsSnapshot s = a_.stats();
      ASSERT_EQ(s.pending_bytes, 0u) << "I10 pending after flush at " << where();
      ASSERT_EQ(s.cache_bytes, 0u) << "I10 cache after flush at " << where();
      ASSERT_EQ(s.cache_blocks, 0u) << "I10 cache after flush at " << where();
    }
  }

  uint64_t site() { return 0x400000 + (rng_() % 8) * 0x40; }

  void do_alloc() {
    const uint64_t size = rand_size();
    last_op_ = "alloc " + std::to_string(size);
    void* p = a_.alloc(size, site());
    ASSERT_NE(p, nullptr) << where();
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << "I5 alignment at " << where();
    adopt(p, size, 16);
  }

  void do_aligned() {
    const uint64_t align = uint64_t{16} << (rng_() % 17);  // 16 .. 1 MiB
    const uint64_t size = rand_size();
    last_op_ = "aligned_alloc " + std::to_string(align) + " " + std::to_string(size);
    void* p = a_.aligned_alloc(align, size, site());
    ASSERT_NE(p, nullptr) << where();
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << "I5 alignment at " << where();
    adopt(p, size, align);
  }

  void do_calloc() {
    uint64_t size = rand_size();
    uint64_t n = 1;
    if (size % 4 == 0 && size > 0 && rng_() % 2 == 0) {
      n = 4;
      size /= 4;
    }
    last_op_ = "calloc " + std::to_string(n) + " x " + std::to_string(size);
    void* p = a_.calloc(n, size, site());
    ASSERT_NE(p, nullptr) << where();
    const int64_t nz = first_nonzero(p, n * size);
    ASSERT_EQ(nz, -1) << "calloc block not zeroed at byte " << nz << " of " << n * size << ", " << where();
    adopt(p, n * size, 16);
  }

  void do_realloc() {
    const uintptr_t old = random_live();
    const Block ob = live_.at(old);
    uint64_t size;
    const unsigned kind = rng_() % 10;
    if (kind == 0) {
      size = 0;
    } else if (kind < 4) {
      size = ob.size / (1 + rng_() % 4);  // shrink
    } else if (kind < 7) {
      size = ob.size + 1 + rng_() % (ob.size + 64);  // grow
      if (size > kMaxSize) size = kMaxSize;
    } else {
      size = rand_size();
    }
    last_op_ = "realloc " + std::to_string(ob.size) + " -> " + std::to_string(size);
    verify(old, ob);
    if (::testing::Test::HasFatalFailure()) return;
    forget(old);
    void* q = a_.realloc(reinterpret_cast<void*>(old), size, site());
    if (size == 0) {
      ASSERT_EQ(q, nullptr) << "realloc(p, 0) must free and return NULL, " << where();
      return;
    }
    ASSERT_NE(q, nullptr) << where();
    ASSERT_EQ(reinterpret_cast<uintptr_t>(q) % 16, 0u) << where();
    const uint64_t keep = size < ob.size ? size : ob.size;
    const int64_t bad = first_mismatch(q, ob.size, keep, ob.key);
    ASSERT_EQ(bad, -1) << "I5 realloc lost byte " << bad << " of " << keep << " kept, " << where();
    adopt(q, size, 16);
  }

  /// Records a new live block: checks it (I3, I4, I5) and fills it with a fresh pattern.
  void adopt(void* p, uint64_t size, uint64_t align) {
    const auto u = reinterpret_cast<uintptr_t>(p);
    const BlockInfo info = a_.inspect(p);
    ASSERT_EQ(info.verdict, Verdict::kOk) << where();
    ASSERT_EQ(info.fields.state, State::kLive) << where();
    ASSERT_EQ(info.fields.size, size) << where();
    ASSERT_EQ(info.fields.strategy, a_.selector().snapshot().id)
        << "I3 header strategy is not the one in force, " << where();
    check_i3(p, info);
    if (::testing::Test::HasFatalFailure()) return;
    const size_t usable = a_.usable_size(p);
    ASSERT_GE(usable, size) << "I5 usable_size, " << where();
    ASSERT_EQ(usable, info.usable) << where();
    const uint64_t end = u + (usable > 0 ? usable : 1);
    // I4: no overlap with the neighbours on either side.
    auto next = live_.lower_bound(u);
    if (next != live_.end()) {
      ASSERT_GE(next->first, end) << "I4 new block [" << std::hex << u << ", " << end << ") overlaps live block at "
                                  << next->first << std::dec << ", " << where();
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->second.end, u) << "I4 new block at " << std::hex << u << " overlaps live block at " << prev->first
                                     << std::dec << ", " << where();
    }
    const uint64_t key = rng_();
    fill(p, size, key);
    live_.emplace(u, Block{size, end, key, align});
    live_bytes_ += size;
  }

  void check_i3(const void* p, const BlockInfo& info) {
    const bool is_map = info.kind == ExtentKind::kMapBlock;
    ASSERT_TRUE(is_map || info.kind == ExtentKind::kPoolSpan) << where();
    ASSERT_EQ(info.fields.method, is_map ? Method::kMap : Method::kPool) << "I2 at " << where();
    ASSERT_EQ(is_map, info.fields.size >= info.threshold_of_strategy)
        << "I3: block " << p << " of " << info.fields.size << " bytes is " << (is_map ? "Map" : "Pool")
        << " but its strategy " << int{info.fields.strategy} << " has threshold " << info.threshold_of_strategy << ", "
        << where();
  }

  void verify(uintptr_t p, const Block& b) {
    const int64_t bad = first_mismatch(reinterpret_cast<void*>(p), b.size, b.size, b.key);
    ASSERT_EQ(bad, -1) << "block " << std::hex << p << std::dec << " of " << b.size << " bytes changed at byte " << bad
                       << ", " << where();
  }

  void forget(uintptr_t p) {
    live_bytes_ -= live_.at(p).size;
    live_.erase(p);
  }

  void free_block(uintptr_t p) {
    const Block b = live_.at(p);
    verify(p, b);
    if (::testing::Test::HasFatalFailure()) return;
    forget(p);
    ASSERT_EQ(a_.free(reinterpret_cast<void*>(p), site()), Verdict::kOk) << where();
  }

  /// Every live block: header agrees with the model, and I3 holds by its own recorded strategy.
  void check_all_blocks() {
    for (const auto& [p, b] : live_) {
      const BlockInfo info = a_.inspect(reinterpret_cast<void*>(p));
      ASSERT_EQ(info.verdict, Verdict::kOk) << where();
      ASSERT_EQ(info.fields.size, b.size) << where();
      check_i3(reinterpret_cast<void*>(p), info);
      if (::testing::Test::HasFatalFailure()) return;
      ASSERT_EQ(p % b.align, 0u) << where();
    }
  }

  Alloc& a_;
  std::mt19937_64 rng_;
  uint64_t seed_;
  bool switching_;
  int op_ = 0;
  std::string last_op_;
  std::vector<uint64_t> edges_;
  std::map<uintptr_t, Block> live_;
  uint64_t live_bytes_ = 0;
};

/// aligned_alloc(align, 0) must give a pointer that is a live block of its own, which free accepts.
TEST(Integration, AlignedZeroSizeBlockIsALiveBlock) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);  // a rejected free must fail this test, not abort the binary
  ScopedAllocator<RecordingConfig> a(o);
  std::string reports;
  a->set_report_sink([](void* arg, const char* t, size_t n) { static_cast<std::string*>(arg)->append(t, n); },
                     &reports);
  for (size_t align : {size_t{32}, size_t{64}, size_t{128}, size_t{4096}, size_t{1} << 20}) {
    SCOPED_TRACE("aligned_alloc(" + std::to_string(align) + ", 0)");
    void* p = a->aligned_alloc(align, 0, 0x1234);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    const BlockInfo info = a->inspect(p);
    EXPECT_EQ(info.verdict, Verdict::kOk) << "the pointer handed out is not recognized as a live block";
    EXPECT_EQ(a->free(p, 0), Verdict::kOk) << "free of a block aligned_alloc just returned is rejected";
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
  }
  EXPECT_EQ(reports, "");
}

/// A freed aligned Pool block keeps a valid header (the free-list link must not clobber it): the audit walks it,
/// and a second free is reported as a double free, not as a corrupted header (I8).
TEST(Integration, FreedAlignedPoolBlockIsSeenAsFreed) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  ScopedAllocator<RecordingConfig> a(o);
  std::string reports;
  a->set_report_sink([](void* arg, const char* t, size_t n) { static_cast<std::string*>(arg)->append(t, n); },
                     &reports);
  // Successive small 32-aligned Pool blocks have their real header at block + 0 and block + 16 in turn.
  for (size_t align : {size_t{32}, size_t{64}, size_t{4096}}) {
    for (size_t size : {size_t{1}, size_t{16}, size_t{100}}) {
      SCOPED_TRACE("aligned_alloc(" + std::to_string(align) + ", " + std::to_string(size) + ")");
      std::vector<void*> v;
      for (int i = 0; i < 8; ++i) {
        v.push_back(a->aligned_alloc(align, size, 0x99));
        ASSERT_NE(v.back(), nullptr);
      }
      for (void* p : v) {
        EXPECT_EQ(a->free(p, 0), Verdict::kOk);
        const AuditResult r = a->audit();
        EXPECT_TRUE(r.ok) << r.failure;
        EXPECT_EQ(a->free(p, 0), Verdict::kDoubleFree) << "second free of " << p;
      }
      // Reuse: the freed blocks come back as sound live blocks.
      for (void*& p : v) {
        p = a->aligned_alloc(align, size, 0x99);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(a->inspect(p).verdict, Verdict::kOk);
      }
      for (void* p : v) EXPECT_EQ(a->free(p, 0), Verdict::kOk);
    }
  }
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(a->error_count(Verdict::kCorrupted), 0u) << reports;
}

class RandomSequence : public ::testing::TestWithParam<RunConfig> {};

constexpr int kOps = 3000;

TEST_P(RandomSequence, InvariantsHoldAndNothingLeaks) {
  const RunConfig& cfg = GetParam();
  for (uint64_t seed : cfg.seeds) {
    if (seed == 0) break;
    SCOPED_TRACE("config " + std::string(cfg.name) + ", seed " + std::to_string(seed));
    Options o;
    ASSERT_EQ(parse_options(cfg.options, o, nullptr, nullptr), 0u) << cfg.options;
    auto* a = new Alloc();
    ASSERT_TRUE(a->init(o));
    {
      Driver d(*a, seed, cfg.switch_strategy);
      d.run(kOps);
      if (!HasFatalFailure()) d.free_everything();
      if (!HasFatalFailure()) {
        a->flush();
        const StatsSnapshot s = a->stats();
        EXPECT_EQ(s.pending_bytes, 0u) << "I10";
        EXPECT_EQ(s.cache_bytes, 0u) << "I10";
        EXPECT_EQ(s.map_live_bytes, 0u);
        EXPECT_EQ(s.pool_live_bytes, 0u);
        d.check_audit();
      }
      auto& pal = a->pal();
      EXPECT_EQ(pal.calls(PalOp::kUnmap), pal.calls(PalOp::kUnmap, Layer::kRelease)) << "I1";
      if (pal.total_calls() <= RecordingConfig::Pal::kLogSize) {
        EXPECT_TRUE(pal.verify_mapped()) << "I1: something unmapped behind the releaser's back";
      }
      const StatsSnapshot s = a->stats();
      printf("  %s seed %llu: pool allocs %llu, map allocs %llu, cache hits %llu, evictions %llu, bypass %llu, "
             "flushes %llu, munmaps %llu, platform calls %llu\n",
             cfg.name, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(s.pool_allocs),
             static_cast<unsigned long long>(s.map_allocs), static_cast<unsigned long long>(s.cache_hits),
             static_cast<unsigned long long>(s.cache_evictions), static_cast<unsigned long long>(s.cache_bypass),
             static_cast<unsigned long long>(s.release_flushes), static_cast<unsigned long long>(s.unmap_calls),
             static_cast<unsigned long long>(pal.total_calls()));
    }
    a->teardown();
    EXPECT_EQ(a->pal().outstanding_bytes(), 0u) << "teardown leaked mappings";
    EXPECT_EQ(a->pal().calls(PalOp::kUnmap), a->pal().calls(PalOp::kUnmap, Layer::kRelease)) << "I1 in teardown";
    delete a;
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Integration, RandomSequence,
                         ::testing::Values(RunConfig{"default", "", false, {1}},
                                           RunConfig{"tiny_cache", "cache=1m", false, {2}},
                                           RunConfig{"tiny_batch", "batch=64k", false, {3}},
                                           RunConfig{"no_cache", "cache=0", false, {4}},
                                           RunConfig{"threshold_64k", "threshold=64k", false, {5}},
                                           RunConfig{"threshold_1118208", "threshold=1118208", false, {6}},
                                           RunConfig{"threshold_32m", "threshold=32m", false, {7}},
                                           RunConfig{"switching", "", true, {8, 0xdeadbeefcafe}},
                                           RunConfig{"switching_small_cache_no_batch", "cache=2m:batch=0", true, {9}}),
                         [](const ::testing::TestParamInfo<RunConfig>& i) { return std::string(i.param.name); });

}  // namespace
