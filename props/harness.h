// props/ harness: an Allocator<RecordingConfig> with a shadow model of its live blocks, checked after every operation.
#pragma once

#include <errno.h>
#include <sys/mman.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "front/front.h"
#include "support.h"

namespace hakmem_props {

using namespace hakmem;
using Alloc = Allocator<RecordingConfig>;

/// Options every props allocator starts from: a misuse is reported, never an abort, epochs
/// end only when a property says so (epoch_driver_for_testing().end_epoch()), and no decay tick flushes the
/// releaser on the wall clock (a slow case under a sanitizer could cross the default 1 s and
/// see blocks it expects pending unmapped), so runs are deterministic.
inline Options base_options() {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kDecayMs, 0);
  o.set(Opt::kEpochRequests, 1000000000);
  o.set(Opt::kEpochMs, 3600000);
  o.set(Opt::kMinSamples, 1);
  return o;
}

/// For assertions (rapidcheck cannot show a void*).
inline bool nonnull(const void* p) { return p != nullptr; }

/// base_options() with the BigCache cap and the batch threshold set.
inline Options with_cache_and_batch(uint64_t cache, uint64_t batch) {
  Options o = base_options();
  o.set(Opt::kCache, cache);
  o.set(Opt::kBatch, batch);
  return o;
}

/// A deterministic cost source: each strategy costs `per_request[s]` per large request,
/// whatever the epoch's length (the harness tells it how many requests the epoch had).
struct ScriptedCost final : CostSource {
  double per_request[kLearnableStrategies] = {};
  uint64_t requests = 0;
  uint64_t calls = 0;
  EpochCost epoch_cost(uint8_t strategy) override {
    ++calls;
    const double c = per_request[strategy % kLearnableStrategies] * static_cast<double>(requests);
    return EpochCost{c, c, c};
  }
};

/// A live block as the shadow model knows it.
struct Live {
  uint64_t size = 0;
  uint64_t usable = 0;
  uint64_t align = 16;
  uint64_t key = 0;
  Origin origin = Origin::kMalloc;
  uintptr_t site = 0;
  ExtentKind kind = ExtentKind::kNone;
};

/// The origin a block must be freed with (free() for malloc and aligned blocks).
inline Origin free_origin(Origin o) { return o == Origin::kAligned ? Origin::kMalloc : o; }

/**
 * Owns an allocator and its shadow model. Every mutating call checks what the
 * invariants say about that call (RC_ASSERT, naming the invariant), and
 * check_all() checks the whole state (run after every command).
 */
class Harness {
public:
  explicit Harness(const Options& o) : a_(new Alloc()) {
    ok_ = a_->init(o);
    a_->set_report_sink([](void* arg, const char* t, size_t n) { static_cast<std::string*>(arg)->append(t, n); },
                        &reports_);
    batch_ = o.get(Opt::kBatch);
    if (o.get(Opt::kMode) == kModeLearn) a_->epoch_driver_for_testing().set_cost_source_for_testing(&cost_);
  }
  ~Harness() { a_->teardown(); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  Alloc& a() { return *a_; }
  RecordingPal<FailingPal<LinuxPal>>& pal() { return a_->pal(); }
  bool ok() const { return ok_; }
  const std::map<uintptr_t, Live>& live() const { return live_; }
  std::string& reports() { return reports_; }
  ScriptedCost& cost() { return cost_; }
  uint64_t live_bytes() const { return live_bytes_; }
  /// Misuses a property committed on purpose (each must have been reported exactly once).
  void expect_error() { ++expected_errors_; }
  /// Extra whole-state check a property adds to check_all().
  std::function<void(Harness&)> after_op;
  /// Learn-mode large requests since the last tick (what the learner will count).
  uint64_t large_requests() const { return large_requests_; }

  /// The pointer of the `pick`-th live block (mod count), or 0 when none; `want` filters.
  template <class Want>
  uintptr_t pick(uint32_t pick, Want&& want) const {
    size_t n = 0;
    for (const auto& [p, b] : live_) n += want(b) ? 1 : 0;
    if (n == 0) return 0;
    size_t k = pick % n;
    for (const auto& [p, b] : live_) {
      if (!want(b)) continue;
      if (k-- == 0) return p;
    }
    return 0;
  }
  uintptr_t pick(uint32_t p) const {
    return pick(p, [](const Live&) { return true; });
  }

  // ---------------------------------------------------------------- operations

  /// alloc (align 0) or aligned_alloc; nullptr only if the PAL refused a map (I12).
  void* alloc(uint64_t size, uint64_t align, uintptr_t site, Origin origin) {
    const uint64_t failed_before = pal().failed_maps();
    const StrategySnapshot snap = a_->selector().snapshot();
    errno = 0;
    void* p = align == 0 ? a_->alloc(size, site, origin) : a_->aligned_alloc(align, size, site, origin);
    if (p == nullptr) {
      RC_ASSERT(errno == ENOMEM);                      // I12: NULL + ENOMEM
      RC_ASSERT(pal().failed_maps() > failed_before);  // I12: only a refused map makes alloc fail
      return nullptr;
    }
    if (size >= kMinThreshold) ++large_requests_;
    adopt(p, size, align < 16 ? 16 : align, site, origin, snap, /*zeroed=*/false);
    return p;
  }

  void* calloc(uint64_t n, uint64_t size, uintptr_t site) {
    const uint64_t failed_before = pal().failed_maps();
    const StrategySnapshot snap = a_->selector().snapshot();
    errno = 0;
    void* p = a_->calloc(n, size, site);
    if (p == nullptr) {
      RC_ASSERT(errno == ENOMEM);
      RC_ASSERT(pal().failed_maps() > failed_before);
      return nullptr;
    }
    if (n * size >= kMinThreshold) ++large_requests_;
    adopt(p, n * size, 16, site, Origin::kMalloc, snap, /*zeroed=*/true);
    return p;
  }

  /// Frees a live block after checking its contents (I5: they survived since the last write).
  void free(uintptr_t p) {
    const Live b = take(p);
    const Verdict v = a_->free(reinterpret_cast<void*>(p), b.site ^ 1, free_origin(b.origin));
    RC_ASSERT(v == Verdict::kOk);
    forget(p);
  }

  /// A sized free with the right size (C++ sized delete).
  void free_sized(uintptr_t p) {
    const Live b = take(p);
    const Verdict v = a_->free_sized(reinterpret_cast<void*>(p), b.size, b.site, free_origin(b.origin));
    RC_ASSERT(v == Verdict::kOk);
    forget(p);
  }

  /// realloc of a malloc-family block; keeps min(old, new) bytes (I5).
  void realloc(uintptr_t p, uint64_t size, uintptr_t site) {
    const Live b = live_.at(p);
    RC_ASSERT(mismatch(reinterpret_cast<void*>(p), b.size, b.size, b.key) == -1);
    const uint64_t failed_before = pal().failed_maps();
    const StrategySnapshot snap = a_->selector().snapshot();
    errno = 0;
    void* q = a_->realloc(reinterpret_cast<void*>(p), size, site);
    if (size == 0) {  // frees, as glibc does
      RC_ASSERT(reinterpret_cast<uintptr_t>(q) == uintptr_t{0});
      erase(p);
      forget(p);
      return;
    }
    if (q == nullptr) {
      RC_ASSERT(errno == ENOMEM);
      RC_ASSERT(pal().failed_maps() > failed_before);
      // I12/I5: the old block is untouched and still live.
      RC_ASSERT(a_->check(reinterpret_cast<void*>(p)) == Verdict::kOk);
      RC_ASSERT(mismatch(reinterpret_cast<void*>(p), b.size, b.size, b.key) == -1);
      return;
    }
    const uint64_t keep = size < b.size ? size : b.size;
    RC_ASSERT(mismatch(q, b.size, keep, b.key) == -1);  // I5: min(old, new) bytes preserved
    erase(p);
    if (reinterpret_cast<uintptr_t>(q) != p) {
      forget(p);
      if (size >= kMinThreshold) ++large_requests_;
    }
    const uint64_t align = reinterpret_cast<uintptr_t>(q) == p ? b.align : 16;
    const Origin origin =
        reinterpret_cast<uintptr_t>(q) == p || b.origin != Origin::kAligned ? b.origin : Origin::kMalloc;
    adopt(q, size, align, reinterpret_cast<uintptr_t>(q) == p ? b.site : site, origin, snap, false);
  }

  void flush() {
    a_->flush();
    const AuditResult r = a_->audit();
    RC_ASSERT(r.pending == 0u);  // I7/I10: after flush, nothing pending
    RC_ASSERT(r.cached == 0u);
    RC_ASSERT(a_->stats().pending_bytes == 0u);
    // A flush also purges the pages of empty Pool spans: no live block may lose a byte (I4, I6).
    check_contents();
  }

  void flush_pending() {
    a_->flush_pending_for_testing();
    RC_ASSERT(a_->stats().pending_bytes == 0u);
  }

  /// Ends a learn-mode epoch with the scripted cost; the selector carries the next strategy.
  void tick() {
    if (!a_->learning()) return;
    cost_.requests = large_requests_;
    a_->epoch_driver_for_testing().end_epoch();
    large_requests_ = 0;
    RC_ASSERT(a_->selector().current_id() == a_->learner().current());
  }

  // ---------------------------------------------------------------- whole-state checks

  /// Everything that must hold between operations.
  void check_all() {
    const AuditResult r = a_->audit();
    RC_LOG() << "audit: " << r.failure << "\n";
    RC_ASSERT(r.ok);                                   // I2, I3, I4, I6, I7 as the allocator's own walk sees them
    RC_ASSERT(r.live_blocks == live_.size());          // I7: the walk finds exactly the model's live blocks
    RC_ASSERT(r.mapped == pal().outstanding_bytes());  // I7/I12: the tally is what the platform really holds
    const StatsSnapshot s = a_->stats();
    RC_ASSERT(s.pending_bytes == r.pending);
    RC_ASSERT(batch_ == 0 || s.pending_bytes < batch_);       // I10: the batch threshold flushes
    RC_ASSERT(pal().calls(PalOp::kUnmap) == s.unmap_calls);   // I1: every munmap is one the releaser counted
    RC_ASSERT(pal().calls(PalOp::kAdvise) == s.purge_calls);  // I1: every madvise is a purge the releaser counted
    RC_ASSERT(s.errors_total == expected_errors_);            // no correct use is ever reported (I8 counts its misuses)
    if (expected_errors_ == 0) RC_ASSERT(reports_.empty());
    if (after_op) after_op(*this);
    // I6: a freed pointer never validates again unless the allocator handed it out anew.
    for (uintptr_t p : freed_) {
      if (live_.count(p) == 0) RC_ASSERT(a_->check(reinterpret_cast<void*>(p)) != Verdict::kOk);
    }
  }

  /// Contents of every live block intact (I4: nothing overlapped them; I6: none was reused).
  void check_contents() {
    for (const auto& [p, b] : live_) RC_ASSERT(mismatch(reinterpret_cast<void*>(p), b.size, b.size, b.key) == -1);
  }

  /// Frees everything, flushes, and checks that only the allocator's bookkeeping remains.
  void drain() {
    pal().reset_failures();
    check_contents();
    while (!live_.empty()) free(live_.begin()->first);
    flush();
    const AuditResult r = a_->audit();
    RC_ASSERT(r.ok);
    RC_ASSERT(r.map_live == 0u);
    RC_ASSERT(r.pool_live == 0u);
    RC_ASSERT(pal().verify_mapped());  // I1: nothing the log believes mapped was unmapped behind its back
  }

  /// Tears down and checks that every byte went back (I10 at exit, I12 no leak).
  void teardown_and_check() {
    pal().reset_failures();
    a_->teardown();
    RC_ASSERT(pal().outstanding_bytes() == 0u);
    RC_ASSERT(pal().calls(PalOp::kUnmap) == pal().calls(PalOp::kUnmap, Layer::kRelease));
    live_.clear();
    freed_.clear();
  }

private:
  /// Checks a block the allocator just handed out and adds it to the model.
  void adopt(void* q, uint64_t size, uint64_t align, uintptr_t site, Origin origin, const StrategySnapshot& snap,
             bool zeroed) {
    const auto p = reinterpret_cast<uintptr_t>(q);
    RC_ASSERT(p % align == 0);  // I5: alignment honoured
    RC_ASSERT(p % 16 == 0);
    const BlockInfo info = a_->inspect(q);
    RC_ASSERT(info.verdict == Verdict::kOk);
    const uint64_t usable = a_->usable_size(q);
    RC_ASSERT(usable >= size);  // I5
    RC_ASSERT(info.usable == usable);
    const bool paranoid = a_->options().get(Opt::kHardening) == kHardeningParanoid;
    if (paranoid) RC_ASSERT(usable == size);  // paranoid: exactly the request (the canary follows)
    if (paranoid && info.kind == ExtentKind::kNone) {
      // A paranoid malloc(0): a unique address outside every extent, with no header.
      RC_ASSERT(size == 0 && origin == Origin::kMalloc && align <= 16);
      RC_ASSERT(a_->registry_for_testing().lookup(p) == nullptr);
      RC_ASSERT(live_.count(p) == 0);
      Live b;
      b.align = align;
      b.key = next_key_++;
      b.origin = origin;
      b.site = site & kSiteMask;
      b.kind = info.kind;
      live_[p] = b;
      return;
    }
    RC_ASSERT(info.fields.state == State::kLive);
    RC_ASSERT(info.fields.size == size);
    // The allocation site: kept by Map headers and paranoid Pool blocks; the default mode's Pool
    // blocks keep none (their prefix is a guard and a sealed word, header/README.md).
    const bool keeps_site = paranoid || info.kind == ExtentKind::kMapBlock;
    RC_ASSERT(info.fields.site == (keeps_site ? site & kSiteMask : 0));
    RC_ASSERT(info.fields.origin == origin);
    // I2: header method, Registry kind and backing agree.
    RC_ASSERT(info.fields.method == (info.kind == ExtentKind::kMapBlock ? Method::kMap : Method::kPool));
    // I3: the strategy in force when the call began is the one recorded, and it chose the backing.
    RC_ASSERT(info.fields.strategy == snap.id);
    RC_ASSERT(info.threshold_of_strategy == snap.threshold);
    const bool map = info.kind == ExtentKind::kMapBlock;
    const uint64_t slack = align > 16 ? align + 16 : 0;
    const uint64_t canary = paranoid ? kCanarySize : 0;
    RC_ASSERT(map == (size >= snap.threshold || size + canary + slack > SizeClasses::kMaxUsable));
    // I4: inside memory owned by its backing ...
    const Extent* e = a_->registry_for_testing().lookup(p);
    RC_ASSERT(e != nullptr);
    RC_ASSERT(e == a_->registry_for_testing().lookup(p + (usable == 0 ? 0 : usable - 1)));
    RC_ASSERT(e->base <= p - kHeaderSize);
    RC_ASSERT(p + usable <= e->base + e->length);
    // ... and disjoint from every other live block (header included).
    const uintptr_t lo = p - kHeaderSize, hi = p + (usable == 0 ? 1 : usable);
    auto next = live_.lower_bound(p);
    if (next != live_.end()) RC_ASSERT(hi <= next->first - kHeaderSize);
    if (next != live_.begin()) {
      const auto prev = std::prev(next);
      RC_ASSERT(prev->first + (prev->second.usable == 0 ? 1 : prev->second.usable) <= lo);
    }
    if (zeroed) RC_ASSERT(nonzero(q, size) == -1);
    Live b;
    b.size = size;
    b.usable = usable;
    b.align = align;
    b.key = next_key_++;
    b.origin = origin;
    b.site = site & kSiteMask;
    b.kind = info.kind;
    fill(q, size, b.key);
    live_[p] = b;
    live_bytes_ += size;
  }

  /// Removes a live block from the model after checking its contents.
  Live take(uintptr_t p) {
    const Live b = live_.at(p);
    RC_ASSERT(mismatch(reinterpret_cast<void*>(p), b.size, b.size, b.key) == -1);  // I4/I5
    erase(p);
    return b;
  }
  void erase(uintptr_t p) {
    live_bytes_ -= live_.at(p).size;
    live_.erase(p);
  }
  /// Remembers a freed pointer (the latest 64) and checks it no longer validates (I6).
  void forget(uintptr_t p) {
    RC_ASSERT(a_->check(reinterpret_cast<void*>(p)) != Verdict::kOk);
    freed_.push_back(p);
    if (freed_.size() > 64) freed_.pop_front();
  }

  std::unique_ptr<Alloc> a_;
  bool ok_ = false;
  std::string reports_;
  ScriptedCost cost_;
  uint64_t batch_ = 0;
  uint64_t large_requests_ = 0;
  uint64_t expected_errors_ = 0;
  uint64_t next_key_ = 1;
  uint64_t live_bytes_ = 0;
  std::map<uintptr_t, Live> live_;
  std::deque<uintptr_t> freed_;
};

}  // namespace hakmem_props
