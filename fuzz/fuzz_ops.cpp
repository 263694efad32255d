// fuzz_ops: an alloc/calloc/aligned/realloc/free/flush stream against Allocator<Config>, checked
// against a shadow model, over an eviction-heavy configuration and one whose maps fail on demand.
#include <errno.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "front/front.h"
#include "fuzz_support.h"
#include "shadow.h"

using namespace hakmem;
using hakmem_fuzz::Input;
using hakmem_fuzz::Shadow;

namespace {

// Bounds on one run, so an input stays well under a second and a few hundred MiB.
constexpr size_t kMaxOps = 512;
constexpr size_t kMaxLiveBlocks = 256;
constexpr uint64_t kMaxLiveBytes = uint64_t{48} << 20;
constexpr uint64_t kMaxSize = uint64_t{8} << 20;
constexpr uintptr_t kSites[] = {0x1000, 0x2000, 0x3000, 0x4000};

// The configuration knobs the first bytes choose from: thresholds that are and are not one of
// the twelve, a BigCache that evicts on nearly every put, and a releaser that flushes often.
constexpr uint64_t kThresholds[] = {65536, 114688, 256 * 1024, 1 << 20};
constexpr uint64_t kCaches[] = {0, 64 * 1024, 256 * 1024, 1 << 20, 4 << 20};
constexpr uint64_t kBatches[] = {0, 64 * 1024, 256 * 1024, 1 << 20};

template <class T, size_t N>
T pick(Input& in, const T (&table)[N]) {
  return table[in.below(N)];
}

/// A request size: mostly small, often on an edge (class or threshold boundary), sometimes large.
uint64_t pick_size(Input& in, uint64_t threshold) {
  switch (in.u8() % 8) {
  case 0:
  case 1:
  case 2: return in.below(257);
  case 3: return in.below(8192);
  case 4: return in.below(512 * 1024);
  case 5: {
    const uint64_t bases[] = {threshold,
                              kStrategyThresholds[0],
                              kStrategyThresholds[1],
                              kStrategyThresholds[2],
                              256 * 1024,
                              1 << 20,
                              LargeClasses::usable(1) - kHeaderSize,
                              LargeClasses::usable(5) - kHeaderSize,
                              SizeClasses::usable(40),
                              SizeClasses::usable(60)};
    const uint64_t b = pick(in, bases);
    const uint64_t d = in.below(33);
    return d <= 16 ? b - d : b + (d - 16);
  }
  case 6: return in.below(uint64_t{2} << 20);
  default: return (uint64_t{2} << 20) + in.below(kMaxSize - (uint64_t{2} << 20));
  }
}

template <class Config>
class Driver {
public:
  static constexpr bool kFailing = std::is_same_v<Config, RecordingConfig>;

  Driver(Input& in, const Options& o) : in_(in), a_(o) {
    a_->set_report_sink(&hakmem_fuzz::ReportCapture::sink, &reports_);
    const uint64_t cap = o.get(Opt::kCache), max = o.get(Opt::kCacheMax);
    expected_cache_max_ = cap == 0 ? 0 : std::max(cap, max);
    expected_slot_max_ = cap == 0 || o.get(Opt::kHardening) == kHardeningParanoid ? 0 : o.get(Opt::kLargeSlot);
    last_limit_ = cap;
  }

  void run() {
    for (size_t op = 0; op < kMaxOps && !in_.empty(); ++op) {
      step(in_.u8() % 12);
      check_state();
    }
    // Free everything left, then flush: every live block was intact to the end, and flush
    // leaves nothing pending (I10) and nothing cached.
    shadow_.verify_all();
    while (shadow_.count() > 0) release(shadow_.nth(0), false);
    a_->flush();
    const StatsSnapshot s = a_->stats();
    FUZZ_CHECK(s.pending_bytes == 0, "flush left %llu bytes pending (I10)", (unsigned long long)s.pending_bytes);
    FUZZ_CHECK(s.cache_bytes == 0, "flush left %llu bytes cached", (unsigned long long)s.cache_bytes);
    FUZZ_CHECK(s.slot_bytes == 0, "flush left %llu bytes in the large slot", (unsigned long long)s.slot_bytes);
    FUZZ_CHECK(s.map_live_bytes == 0 && s.pool_live_bytes == 0, "live bytes after freeing all: map %llu pool %llu",
               (unsigned long long)s.map_live_bytes, (unsigned long long)s.pool_live_bytes);
    check_state();
    if constexpr (kFailing) {
      // I12, no leak: once torn down, everything the platform mapped went back through it.
      a_->pal().reset_failures();
      a_->teardown();
      FUZZ_CHECK(a_->pal().outstanding_bytes() == 0, "%llu bytes still mapped after teardown (I12: leak)",
                 (unsigned long long)a_->pal().outstanding_bytes());
      FUZZ_CHECK(a_->pal().mapped_bytes() == 0, "failing PAL: %llu bytes still mapped after teardown",
                 (unsigned long long)a_->pal().mapped_bytes());
    }
  }

private:
  uint64_t threshold() { return a_->stats().threshold; }
  uintptr_t site() { return kSites[in_.below(4)]; }
  bool room(uint64_t size) const {
    return shadow_.count() < kMaxLiveBlocks && shadow_.live_bytes() + size <= kMaxLiveBytes;
  }
  uint64_t refused_maps() {
    if constexpr (kFailing) {
      return a_->pal().failed_maps();
    } else {
      return 0;
    }
  }

  /// A NULL result is right only as ENOMEM and only when the platform refused a map.
  void expect_null_ok(uint64_t refused_before, int err, uint64_t size) {
    FUZZ_CHECK(err == ENOMEM, "NULL for %llu bytes with errno %d, not ENOMEM (I12)", (unsigned long long)size, err);
    FUZZ_CHECK(refused_maps() > refused_before, "NULL for %llu bytes but no map was refused", (unsigned long long)size);
  }

  /// What the model knows of a new block, checked against inspect(): its header (I3 via audit).
  void added(void* p, uint64_t size, uint64_t align, Origin origin, bool zeroed) {
    shadow_.add(*a_, p, size, align, zeroed);
    const BlockInfo info = a_->inspect(p);
    FUZZ_CHECK(info.verdict == Verdict::kOk, "new block %p inspects as verdict %d", p, (int)info.verdict);
    FUZZ_CHECK(info.fields.size == size, "header of %p says %llu bytes, requested %llu", p,
               (unsigned long long)info.fields.size, (unsigned long long)size);
    FUZZ_CHECK(info.fields.origin == origin, "header of %p has origin %d, expected %d", p, (int)info.fields.origin,
               (int)origin);
    FUZZ_CHECK(info.fields.state == State::kLive, "new block %p not Live", p);
  }

  void allocate(int kind) {
    const uint64_t size = pick_size(in_, threshold());
    uint64_t align = 16;
    if (kind == 2) align = uint64_t{1} << in_.below(17);  // 1 B .. 64 KiB
    if (!room(size + align)) return;
    const uint64_t refused = refused_maps();
    errno = 0;
    void* p = nullptr;
    Origin origin = Origin::kMalloc;
    switch (kind) {
    case 0: p = a_->alloc(size, site()); break;
    case 1: {
      // calloc as n * m, both chosen so the product is `size`.
      const uint64_t m = size == 0 ? 1 + in_.below(8) : (size % 8 == 0 ? 8 : 1);
      p = a_->calloc(size == 0 ? 0 : size / m, size == 0 ? m : m, site());
      break;
    }
    default:
      p = a_->aligned_alloc(align, size, site());
      origin = Origin::kAligned;
      break;
    }
    const int err = errno;
    if (p == nullptr) return expect_null_ok(refused, err, size);
    added(p, size, align < 16 ? 16 : align, origin, kind == 1);
  }

  void release(void* p, bool sized) {
    shadow_.verify(p);
    const hakmem_fuzz::Block& b = shadow_.at(p);
    FUZZ_CHECK(a_->check(p) == Verdict::kOk, "live block %p does not validate", p);
    const Verdict v = sized ? a_->free_sized(p, b.size, site(), Origin::kMalloc) : a_->free(p, site());
    FUZZ_CHECK(v == Verdict::kOk, "free of live block %p gave verdict %d", p, (int)v);
    shadow_.remove(p);
  }

  void resize() {
    void* p = shadow_.nth(in_.below(shadow_.count()));
    const hakmem_fuzz::Block old = shadow_.at(p);
    const uint64_t size = in_.below(8) == 0 ? 0 : pick_size(in_, threshold());
    if (size > old.size && !room(size - old.size)) return;
    shadow_.verify(p);
    // Moved, a block becomes a malloc block; resized in place it keeps its header's origin.
    const Origin old_origin = a_->inspect(p).fields.origin;
    const uint64_t refused = refused_maps();
    errno = 0;
    void* q = a_->realloc(p, size, site());
    const int err = errno;
    if (size == 0) {
      FUZZ_CHECK(q == nullptr, "realloc(p, 0) returned %p, expected NULL", q);
      shadow_.remove(p);
      return;
    }
    if (q == nullptr) {
      expect_null_ok(refused, err, size);
      shadow_.verify(p);  // on ENOMEM the old block is untouched
      FUZZ_CHECK(a_->check(p) == Verdict::kOk, "realloc failure left %p invalid", p);
      return;
    }
    const uint64_t keep = size < old.size ? size : old.size;
    const int64_t bad = hakmem_fuzz::first_mismatch(q, old.size, keep, old.key);
    FUZZ_CHECK(bad < 0, "realloc %p(%llu) -> %p(%llu) lost byte %lld of min(old, new) (I5)", p,
               (unsigned long long)old.size, q, (unsigned long long)size, (long long)bad);
    shadow_.remove(p);
    added(q, size, q == p ? old.align : 16, q == p ? old_origin : Origin::kMalloc, false);
  }

  void step(uint8_t op) {
    switch (op) {
    case 0:
    case 1:
    case 2: allocate(op); break;
    case 3:
    case 4:
      if (shadow_.count() > 0) release(shadow_.nth(in_.below(shadow_.count())), op == 4);
      break;
    case 5:
      if (shadow_.count() > 0) resize();
      break;
    case 6: {
      const bool all = in_.flag();
      if (all) {
        a_->flush();
      } else {
        a_->flush_pending_for_testing();
      }
      const StatsSnapshot s = a_->stats();
      FUZZ_CHECK(s.pending_bytes == 0, "flush left %llu bytes pending (I10)", (unsigned long long)s.pending_bytes);
      if (all) FUZZ_CHECK(s.cache_bytes == 0, "flush left %llu bytes cached", (unsigned long long)s.cache_bytes);
      if (all) {
        FUZZ_CHECK(s.slot_bytes == 0, "flush left %llu bytes in the large slot", (unsigned long long)s.slot_bytes);
      }
      break;
    }
    case 7: {
      // Every live block validates and still holds its contents.
      shadow_.verify_all();
      for (const auto& [u, b] : shadow_.blocks()) {
        const BlockInfo info = a_->inspect(reinterpret_cast<void*>(u));
        FUZZ_CHECK(info.verdict == Verdict::kOk && info.usable >= b.size, "live block %p: verdict %d usable %llu",
                   reinterpret_cast<void*>(u), (int)info.verdict, (unsigned long long)info.usable);
      }
      break;
    }
    case 8: {
      // mallopt(M_MMAP_THRESHOLD): blocks already live keep their strategy (I3 per block).
      const uint64_t t = in_.flag() ? pick(in_, kThresholds) : kMinThreshold + in_.below(4) * 4096;
      const bool ok = a_->set_threshold(t);
      if (ok)
        FUZZ_CHECK(threshold() == t, "set_threshold(%llu) took but %llu is in force", (unsigned long long)t,
                   (unsigned long long)threshold());
      break;
    }
    case 9:
      if constexpr (kFailing) {
        const uint8_t how = in_.u8();
        if (how % 4 == 3) {
          a_->pal().set_fail_all(!(how & 4) ? true : false);
          if (how & 4) a_->pal().reset_failures();
        } else {
          a_->pal().fail_nth_map(1 + how % 4);
        }
      }
      break;
    case 10: {
      // Requests no header can describe, and calloc overflow: NULL with ENOMEM, never a short block.
      errno = 0;
      void* p = in_.flag() ? a_->alloc(kMaxRequest + 1 + in_.below(1 << 20), site())
                           : a_->calloc(uint64_t{1} << 33, (uint64_t{1} << 31) + in_.below(16), site());
      FUZZ_CHECK(p == nullptr && errno == ENOMEM, "impossible request gave %p errno %d", p, errno);
      break;
    }
    default: hakmem_fuzz::check_audit(*a_, "an explicit audit"); break;
    }
  }

  /// After every operation: the audit (I2, I3, I4, I6, I7) and the counters agree with the model.
  void check_state() {
    hakmem_fuzz::check_audit(*a_, "an operation");
    const StatsSnapshot s = a_->stats();
    FUZZ_CHECK(s.errors_total == 0, "a correct program got a misuse report: %s", reports_.text.c_str());
    const uint64_t live = (s.pool_allocs - s.pool_frees) + (s.map_allocs - s.map_frees) + s.zero_live;
    FUZZ_CHECK(live == shadow_.count(), "stats count %llu live blocks, the model %zu", (unsigned long long)live,
               shadow_.count());
    // BigCache: never over its limit; the limit within [cap, max], max as configured; the limit
    // grows only on a miss (a regret), each growth counted.
    FUZZ_CHECK(s.cache_bytes <= s.cache_limit, "BigCache holds %llu over its limit %llu",
               (unsigned long long)s.cache_bytes, (unsigned long long)s.cache_limit);
    FUZZ_CHECK(s.cache_cap <= s.cache_limit && s.cache_limit <= s.cache_max,
               "BigCache limit %llu outside [cap %llu, max %llu]", (unsigned long long)s.cache_limit,
               (unsigned long long)s.cache_cap, (unsigned long long)s.cache_max);
    FUZZ_CHECK(s.cache_max == expected_cache_max_, "BigCache max %llu, configured %llu",
               (unsigned long long)s.cache_max, (unsigned long long)expected_cache_max_);
    if (s.cache_limit > last_limit_) {
      FUZZ_CHECK(s.cache_misses > last_misses_ && s.cache_grows > last_grows_,
                 "BigCache limit grew %llu -> %llu without a miss that regretted an eviction",
                 (unsigned long long)last_limit_, (unsigned long long)s.cache_limit);
    }
    last_limit_ = s.cache_limit;
    last_misses_ = s.cache_misses;
    last_grows_ = s.cache_grows;
    FUZZ_CHECK(s.cache_hits + s.cache_misses + s.cache_bypass + s.slot_hits >= s.map_allocs,
               "cache lookups and slot hits (%llu) fewer than map allocations (%llu)",
               (unsigned long long)(s.cache_hits + s.cache_misses + s.cache_bypass + s.slot_hits),
               (unsigned long long)s.map_allocs);
    // The large slot (one thread here): at most one block, whose mapping is at most slot_max
    // bytes; no slot in paranoid mode or without a cache.
    FUZZ_CHECK(s.slot_bytes <= s.slot_max, "the large slot holds %llu bytes, more than its %llu",
               (unsigned long long)s.slot_bytes, (unsigned long long)s.slot_max);
    FUZZ_CHECK(s.slot_max == expected_slot_max_, "large slot max %llu, configured %llu", (unsigned long long)s.slot_max,
               (unsigned long long)expected_slot_max_);
  }

  Input& in_;
  uint64_t expected_cache_max_ = 0;
  uint64_t expected_slot_max_ = 0;
  uint64_t last_limit_ = 0, last_misses_ = 0, last_grows_ = 0;
  hakmem_fuzz::ReportCapture reports_;
  ScopedAllocator<Config> a_;
  Shadow shadow_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t config = in.u8();
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kThreshold, pick(in, kThresholds));
  o.set(Opt::kCache, pick(in, kCaches));
  // Bits 2-3 of the configuration byte: how far BigCache may grow past its cap on regret.
  const uint64_t cache = o.get(Opt::kCache);
  const uint64_t cache_max[] = {uint64_t{1} << 30, cache, 4 * cache, uint64_t{16} << 20};
  o.set(Opt::kCacheMax, cache_max[(config >> 2) & 3]);
  o.set(Opt::kBatch, pick(in, kBatches));
  o.set(Opt::kDecayMs, in.flag() ? 0 : 1);
  // Bit 1 of the configuration byte: paranoid mode (canaries, quarantine, protected freed
  // large blocks, zero-size blocks), under the same shadow model.
  if ((config & 2) != 0) o.set(Opt::kHardening, kHardeningParanoid);
  // Bits 4-5: the largest block a thread's large slot keeps (0: no slot; 8m is the default).
  const uint64_t slot[] = {uint64_t{8} << 20, 0, uint64_t{256} << 10, uint64_t{1} << 30};
  o.set(Opt::kLargeSlot, slot[(config >> 4) & 3]);
  if (config % 2 == 0) {
    Driver<TestConfig>(in, o).run();
  } else {
    Driver<RecordingConfig>(in, o).run();
  }
  return 0;
}
