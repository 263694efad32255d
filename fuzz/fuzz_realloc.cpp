// fuzz_realloc: realloc and aligned allocation across the Pool/Map threshold, in place and moving:
// min(old, new) bytes preserved, alignment honoured, the backing agrees with the strategy (I3, I5).
#include <errno.h>

#include <cstdint>

#include "front/front.h"
#include "fuzz_support.h"
#include "shadow.h"

using namespace hakmem;
using hakmem_fuzz::Input;
using hakmem_fuzz::Shadow;

namespace {

constexpr size_t kMaxOps = 160;
constexpr size_t kMaxLiveBlocks = 64;
constexpr uint64_t kMaxLiveBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxSize = uint64_t{12} << 20;
constexpr uintptr_t kSite = 0x5150;
// One of the twelve, the default fixed slot, and two more fixed values.
constexpr uint64_t kThresholds[] = {65536, 256 * 1024, 1 << 20, 4 << 20};

class Driver {
public:
  Driver(Input& in, const Options& o) : in_(in), a_(o) {}

  void run() {
    threshold_ = a_->stats().threshold;
    for (size_t op = 0; op < kMaxOps && !in_.empty(); ++op) {
      step(in_.u8() % 8);
      hakmem_fuzz::check_audit(*a_, "an operation");
    }
    shadow_.verify_all();
    while (shadow_.count() > 0) {
      void* p = shadow_.nth(0);
      FUZZ_CHECK(a_->free(p, kSite) == Verdict::kOk, "free of live %p rejected", p);
      shadow_.remove(p);
    }
    hakmem_fuzz::check_audit(*a_, "freeing every block");
  }

private:
  /// A size near the interesting places: tiny, class edges, the threshold, far above it.
  uint64_t pick_size() {
    switch (in_.u8() % 6) {
    case 0: return in_.below(300);
    case 1: return in_.below(70000);
    case 2: {
      const uint64_t d = in_.below(65);
      return d <= 32 ? threshold_ - d : threshold_ + (d - 32);
    }
    case 3: return threshold_ / 2 + in_.below(threshold_);
    case 4: return in_.below(kMaxSize);
    default: {
      const uint64_t u = SizeClasses::usable(in_.below(SizeClasses::kCount));
      return (u < kMaxSize ? u : kMaxSize) + in_.below(3) - 1;  // usable - 1, usable, usable + 1
    }
    }
  }

  /// A new size relative to the old one: shrink a little or a lot, grow a little or a lot.
  uint64_t pick_resize(uint64_t old) {
    switch (in_.u8() % 6) {
    case 0: return old > 0 ? old - 1 - in_.below(old < 64 ? old : 64) + 1 : 1;
    case 1: return old / (2 + in_.below(8)) + 1;
    case 2: return old + 1 + in_.below(64);
    case 3: return old * (2 + in_.below(3)) + 1 > kMaxSize ? kMaxSize : old * (2 + in_.below(3)) + 1;
    default: return pick_size();
    }
  }

  bool room(uint64_t bytes) const {
    return shadow_.count() < kMaxLiveBlocks && shadow_.live_bytes() + bytes <= kMaxLiveBytes;
  }

  /// Backing against the strategy recorded in the header: Map iff size >= its threshold (I3).
  void check_backing(void* p, uint64_t size) {
    const BlockInfo info = a_->inspect(p);
    FUZZ_CHECK(info.verdict == Verdict::kOk, "%p inspects as %d", p, (int)info.verdict);
    FUZZ_CHECK(info.fields.size == size, "%p: header says %llu bytes, requested %llu", p,
               (unsigned long long)info.fields.size, (unsigned long long)size);
    if (info.fields.origin != Origin::kAligned) {
      const bool map = info.kind == ExtentKind::kMapBlock;
      FUZZ_CHECK(map == (size >= info.threshold_of_strategy), "%p: %llu bytes, threshold %llu, but %s (I3)", p,
                 (unsigned long long)size, (unsigned long long)info.threshold_of_strategy, map ? "Map" : "Pool");
    }
  }

  void aligned() {
    const unsigned shift = static_cast<unsigned>(in_.below(25));  // 1 B .. 16 MiB
    const uint64_t align = uint64_t{1} << shift;
    uint64_t size = pick_size();
    if (align >= (uint64_t{1} << 20) && size > threshold_) size = in_.below(threshold_ + 1);
    if (!room(size + align)) return;
    void* p = a_->aligned_alloc(align, size, kSite);
    FUZZ_CHECK(p != nullptr, "aligned_alloc(%llu, %llu) failed", (unsigned long long)align, (unsigned long long)size);
    shadow_.add(*a_, p, size, align < 16 ? 16 : align, false);
    check_backing(p, size);
    FUZZ_CHECK(a_->inspect(p).fields.origin == Origin::kAligned, "aligned block %p not marked aligned", p);
  }

  void plain(bool via_realloc) {
    const uint64_t size = pick_size();
    if (!room(size)) return;
    void* p = via_realloc ? a_->realloc(nullptr, size, kSite) : a_->alloc(size, kSite);
    FUZZ_CHECK(p != nullptr, "allocation of %llu failed", (unsigned long long)size);
    shadow_.add(*a_, p, size, 16, false);
    check_backing(p, size);
  }

  void resize() {
    void* p = shadow_.nth(in_.below(shadow_.count()));
    const hakmem_fuzz::Block old = shadow_.at(p);
    uint64_t size = pick_resize(old.size);
    if (size == 0) size = 1;  // realloc(p, 0) frees: op 6 covers it
    if (size > old.size && !room(size - old.size)) return;
    shadow_.verify(p);
    void* q = a_->realloc(p, size, kSite);
    FUZZ_CHECK(q != nullptr, "realloc(%p, %llu) failed", p, (unsigned long long)size);
    const uint64_t keep = size < old.size ? size : old.size;
    const int64_t bad = hakmem_fuzz::first_mismatch(q, old.size, keep, old.key);
    FUZZ_CHECK(bad < 0, "realloc %p (%llu, align %llu) -> %p (%llu): byte %lld of min(old, new) lost (I5)", p,
               (unsigned long long)old.size, (unsigned long long)old.align, q, (unsigned long long)size,
               (long long)bad);
    // Moved, the block is a malloc block; in place, it keeps its alignment.
    const uint64_t align = q == p ? old.align : 16;
    shadow_.remove(p);
    shadow_.add(*a_, q, size, align, false);
    check_backing(q, size);
  }

  void step(uint8_t op) {
    switch (op) {
    case 0: aligned(); break;
    case 1: plain(false); break;
    case 2: plain(true); break;
    case 3:
    case 4:
      if (shadow_.count() > 0) resize();
      break;
    case 5: {
      // Not a power of two: EINVAL, nothing allocated.
      static constexpr uint64_t kBad[] = {0, 3, 24, 48, 96, 4097, 65535, (uint64_t{1} << 20) + 16};
      const uint64_t align = kBad[in_.below(8)];
      errno = 0;
      void* p = a_->aligned_alloc(align, pick_size(), kSite);
      FUZZ_CHECK(p == nullptr && errno == EINVAL, "aligned_alloc(%llu) gave %p errno %d", (unsigned long long)align, p,
                 errno);
      break;
    }
    case 6:
      if (shadow_.count() > 0) {
        void* p = shadow_.nth(in_.below(shadow_.count()));
        shadow_.verify(p);
        if (in_.flag()) {
          FUZZ_CHECK(a_->realloc(p, 0, kSite) == nullptr, "realloc(%p, 0) did not return NULL", p);
        } else {
          FUZZ_CHECK(a_->free(p, kSite) == Verdict::kOk, "free of live %p rejected", p);
        }
        shadow_.remove(p);
      }
      break;
    default:
      shadow_.verify_all();
      if (in_.flag()) a_->flush();
      break;
    }
  }

  Input& in_;
  ScopedAllocator<TestConfig> a_;
  Shadow shadow_;
  uint64_t threshold_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Options o;
  o.set(Opt::kThreshold, kThresholds[in.below(4)]);
  o.set(Opt::kCache, in.flag() ? 0 : 16 << 20);
  Driver(in, o).run();
  return 0;
}
