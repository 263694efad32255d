// One property per invariant I1-I12 of ARCHITECTURE.md, each named after it (ctest: Invariants.I<n>_...).
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "commands.h"
#include "support/report.h"

using namespace hakmem_props;

namespace {

/// Random commands, each followed by the harness's whole-state checks (and any after_op hook).
void run_commands(Harness& h, const Model& m = Model{}) { rc::state::check(m, h, all_commands()); }

/// The mapping length of a live Map block (its Registry extent), before it is freed.
uint64_t extent_length(Harness& h, uintptr_t p) {
  const Extent* e = h.a().registry_for_testing().lookup(p);
  RC_ASSERT(e != nullptr);
  return e->length;
}

/// Everything a rejected misuse must leave unchanged (I8).
struct Snapshot {
  AuditResult audit;
  uint64_t pool_frees, map_frees, cache_puts, cache_hits, release_blocks, unmap_calls, pal_calls;
  static Snapshot of(Harness& h) {
    const StatsSnapshot s = h.a().stats();
    return Snapshot{h.a().audit(), s.pool_frees,     s.map_frees,   s.cache_puts,
                    s.cache_hits,  s.release_blocks, s.unmap_calls, h.pal().total_calls()};
  }
  bool operator==(const Snapshot& o) const {
    const AuditResult &a = audit, &b = o.audit;
    return a.ok == b.ok && a.mapped == b.mapped && a.pool_span_bytes == b.pool_span_bytes &&
           a.pool_live == b.pool_live && a.pool_free == b.pool_free && a.map_live == b.map_live &&
           a.cached == b.cached && a.pending == b.pending && a.metadata == b.metadata &&
           a.live_blocks == b.live_blocks && pool_frees == o.pool_frees && map_frees == o.map_frees &&
           cache_puts == o.cache_puts && cache_hits == o.cache_hits && release_blocks == o.release_blocks &&
           unmap_calls == o.unmap_calls && pal_calls == o.pal_calls;
  }
};

int g_global_object = 0;

}  // namespace

// I1: only BatchReleaser unmaps or releases pages. Every munmap the platform saw is one the
// releaser counted, happened while the releaser was giving back exactly what it was handed
// (bytes handed over = bytes unmapped + bytes pending), and nothing the platform mapped went
// away behind its back (mincore). Every madvise is a purge of empty Pool spans the releaser
// counted (calls and bytes), of pages still mapped. A layer that called munmap or madvise
// itself, or a releaser that released something it was never given, breaks one of these.
HAKMEM_PROP(Invariants, I1_OnlyBatchUnmaps, ()) {
  Harness h(with_cache_and_batch(*rc::gen::element<uint64_t>(0, 1 << 20, 64 << 20),
                                 *rc::gen::element<uint64_t>(0, 1 << 20, 8 << 20)));
  h.after_op = [](Harness& x) {
    const StatsSnapshot s = x.a().stats();
    RC_ASSERT(x.pal().calls(PalOp::kUnmap) == s.unmap_calls);
    RC_ASSERT(x.pal().bytes(PalOp::kUnmap) + s.pending_bytes == s.release_bytes);
    RC_ASSERT(x.pal().calls(PalOp::kAdvise) == s.purge_calls);
    RC_ASSERT(x.pal().bytes(PalOp::kAdvise) == s.purged_bytes);
  };
  run_commands(h);
  RC_ASSERT(h.pal().verify_mapped());
  // Replay the log: each unmap covers only pages mapped earlier and not yet unmapped.
  std::map<uintptr_t, uintptr_t> mapped;  // page -> 1
  for (uint64_t i = 0; i < h.pal().total_calls(); ++i) {
    PalRecord r{PalOp::kCount, Layer::kCount, 0, 0};
    RC_ASSERT(h.pal().record(i, &r));  // the bounded run stays inside the log
    if (r.op == PalOp::kMap || r.op == PalOp::kMapSparse) {
      for (uintptr_t a = r.addr; a < r.addr + r.len; a += 4096) mapped[a] = 1;
    } else if (r.op == PalOp::kUnmap) {
      for (uintptr_t a = r.addr; a < r.addr + r.len; a += 4096) RC_ASSERT(mapped.erase(a) == 1u);
    } else if (r.op == PalOp::kAdvise) {
      for (uintptr_t a = r.addr; a < r.addr + r.len; a += 4096) RC_ASSERT(mapped.count(a) == 1u);  // still mapped
    }
  }
  h.drain();
  h.teardown_and_check();
}

// I2: for every live block, header.method equals the Registry's kind and the backing that made
// it. A Map block's header records its method: the harness checks each block as it is handed
// out, and here a Map block's method is then forged (validly sealed, so only the Registry
// comparison can see it): free and check must say kMethodMismatch, change nothing, and the audit
// must flag I2. A Pool block's header is its guard and sealed word, whose method is the Registry's
// kind by construction: a Map header forged over it (validly sealed, method Map) does not open as
// one, and free and check say kCorrupted, change nothing, and the audit flags I2.
HAKMEM_PROP(Invariants, I2_MethodMatchesHeader, ()) {
  Harness h(base_options());
  run_commands(h);
  const uintptr_t p = h.pick(*rc::gen::arbitrary<uint32_t>());
  RC_PRE(p != 0);
  for (const auto& [q, b] : h.live()) {
    const BlockInfo info = h.a().inspect(reinterpret_cast<void*>(q));
    RC_ASSERT(info.kind == b.kind);
    RC_ASSERT(info.fields.method == (info.kind == ExtentKind::kMapBlock ? Method::kMap : Method::kPool));
  }
  const BlockInfo info = h.a().inspect(reinterpret_cast<void*>(p));
  HeaderFields forged = info.fields;
  forged.method = forged.method == Method::kPool ? Method::kMap : Method::kPool;
  const Verdict want = info.kind == ExtentKind::kPoolSpan ? Verdict::kCorrupted : Verdict::kMethodMismatch;
  RC_TAG(verdict_name(want));
  const Header saved = HeaderCodec::load(reinterpret_cast<void*>(p - kHeaderSize));
  h.a().codec_for_testing().encode(forged, reinterpret_cast<void*>(p - kHeaderSize));
  RC_ASSERT(h.a().check(reinterpret_cast<void*>(p), free_origin(info.fields.origin)) == want);
  const AuditResult bad = h.a().audit();
  RC_ASSERT(!bad.ok);
  RC_ASSERT(std::string(bad.failure).find("I2") != std::string::npos);
  const uint64_t before = h.a().error_count(want);
  RC_ASSERT(h.a().free(reinterpret_cast<void*>(p), 0, free_origin(info.fields.origin)) == want);
  RC_ASSERT(h.a().error_count(want) == before + 1);
  h.expect_error();
  h.reports().clear();
  HeaderCodec::store(saved, reinterpret_cast<void*>(p - kHeaderSize));
  RC_ASSERT(h.a().check(reinterpret_cast<void*>(p), free_origin(info.fields.origin)) == Verdict::kOk);
  h.check_all();
  h.drain();
  h.teardown_and_check();
}

// I3: strategy before backing. A block is Map iff size >= the threshold of the strategy its
// header records, and that is the strategy in force when the call began. Random sequences
// switch the strategy between operations (the harness checks every block handed out, realloc
// included); then every threshold is probed at its edges under every strategy, and blocks made
// under an old strategy stay consistent (I3 is judged per block) after the strategy changes.
HAKMEM_PROP(Invariants, I3_StrategyBeforeBacking, ()) {
  Harness h(base_options());
  run_commands(h, Model{false, false, true});
  const auto id = static_cast<uint8_t>(*rc::gen::inRange<int>(0, kLearnableStrategies));
  const auto probe = static_cast<uint8_t>(*rc::gen::inRange<int>(0, kLearnableStrategies));
  h.a().selector().set_current(id);
  const uint64_t t = kStrategyThresholds[probe];
  std::vector<uintptr_t> made;
  for (uint64_t size : {t - 1, t, t + 1}) {
    void* p = h.alloc(size, 0, 0x1234, Origin::kMalloc);  // adopt() asserts Map iff size >= threshold(id)
    RC_ASSERT(nonnull(p));
    const BlockInfo info = h.a().inspect(p);
    RC_ASSERT(info.fields.strategy == id);
    RC_ASSERT((info.kind == ExtentKind::kMapBlock) == (size >= kStrategyThresholds[id]));
    made.push_back(reinterpret_cast<uintptr_t>(p));
  }
  h.a().selector().set_current(static_cast<uint8_t>((id + 1 + probe) % kLearnableStrategies));
  h.check_all();  // the audit judges each block by the strategy in its header, not the one in force now
  for (uintptr_t p : made) RC_ASSERT(h.a().inspect(reinterpret_cast<void*>(p)).fields.strategy == id);
  h.drain();
  h.teardown_and_check();
}

// I4: live blocks never overlap, and each lies inside memory mapped and owned by its backing.
// After every operation all live blocks (header included) are sorted and checked pairwise, each
// against the Registry extent that owns it and against the PAL (the extent's pages are mapped),
// and every block's contents are intact (an overlap would have overwritten one of them).
HAKMEM_PROP(Invariants, I4_LiveBlocksDisjointAndOwned, ()) {
  Harness h(base_options());
  h.after_op = [](Harness& x) {
    uintptr_t prev_end = 0;
    for (const auto& [p, b] : x.live()) {  // std::map: by address
      RC_ASSERT(p - kHeaderSize >= prev_end);
      prev_end = p + std::max<uint64_t>(b.usable, 1);
      const Extent* e = x.a().registry_for_testing().lookup(p - kHeaderSize);
      RC_ASSERT(e != nullptr);
      RC_ASSERT(e == x.a().registry_for_testing().lookup(prev_end - 1));
      RC_ASSERT(e->kind == b.kind);
      RC_ASSERT(e->base <= p - kHeaderSize && prev_end <= e->base + e->length);
      unsigned char v;
      RC_ASSERT(mincore(reinterpret_cast<void*>(e->base & ~uintptr_t{4095}), 4096, &v) == 0);
    }
    x.check_contents();
  };
  run_commands(h);
  h.drain();
  h.teardown_and_check();
}

// I5: usable_size >= requested; alignment is honoured; realloc preserves min(old, new) bytes;
// calloc is zero even when it reuses a block (a cached Map block or a freed Pool block that
// was written before).
HAKMEM_PROP(Invariants, I5_UsableAlignmentRealloc, ()) {
  Harness h(base_options());
  const uint64_t size = *gen_size();
  const uint64_t align = uint64_t{1} << *rc::gen::inRange(0, 17);
  void* p = h.alloc(size, align, 0x77, Origin::kAligned);  // adopt(): alignment and usable_size
  RC_ASSERT(nonnull(p));
  auto q = reinterpret_cast<uintptr_t>(p);
  // A chain of reallocs, each checked for the bytes it must keep.
  const auto sizes = *rc::gen::container<std::vector<uint64_t>>(*rc::gen::inRange<size_t>(1, 8), gen_size());
  for (uint64_t s : sizes) {
    h.realloc(q, s, 0x78);
    q = h.pick(0);
    if (q == 0) break;  // realloc(p, 0) freed it
  }
  // calloc over a block just written and freed, of the same size: must still read zero.
  void* r = h.alloc(size, 0, 0x79, Origin::kMalloc);
  RC_ASSERT(nonnull(r));
  h.free(reinterpret_cast<uintptr_t>(r));
  RC_ASSERT(nonnull(h.calloc(1, size, 0x79)));  // calloc() asserts zero
  h.check_all();
  h.drain();
  h.teardown_and_check();
}

// I6: a cached block is never live, a pending block neither live nor cached, and a released
// range is unmapped. Freed Map blocks are followed through the cache (check says double free,
// the header says Cached), the releaser (Releasing, still a double free) and the flush (no
// longer ours, and every page unmapped), under random cache and batch sizes.
HAKMEM_PROP(Invariants, I6_CachedNeverLivePendingNeither, ()) {
  const uint64_t cache = *rc::gen::element<uint64_t>(0, 256 << 10, 2 << 20, 64 << 20);
  Harness h(with_cache_and_batch(cache, uint64_t{1} << 40));
  const auto sizes = *rc::gen::container<std::vector<uint64_t>>(*rc::gen::inRange<size_t>(1, 24),
                                                                rc::gen::inRange<uint64_t>(256 << 10, 3 << 20));
  std::vector<std::pair<uintptr_t, uint64_t>> freed;  // user pointer, mapping base/length via extent
  std::vector<std::pair<uintptr_t, uint64_t>> ranges;
  std::vector<uintptr_t> ptrs;
  for (uint64_t s : sizes) {
    void* p = h.alloc(s, 0, 0x100 + s % 7, Origin::kMalloc);
    RC_ASSERT(nonnull(p));
    ptrs.push_back(reinterpret_cast<uintptr_t>(p));
  }
  for (uintptr_t p : ptrs) {
    const Extent* e = h.a().registry_for_testing().lookup(p);
    ranges.emplace_back(e->base, e->length);
    h.free(p);                                                                   // forget(): check(p) is no longer kOk
    RC_ASSERT(h.a().check(reinterpret_cast<void*>(p)) == Verdict::kDoubleFree);  // still registered: cached or pending
    h.check_all();  // audit: cached blocks say Cached, pending ones Releasing
  }
  const AuditResult r = h.a().audit();
  uint64_t total = 0;
  for (const auto& [b, len] : ranges) total += len;
  RC_ASSERT(r.cached + r.slots + r.pending == total);  // each freed block is in exactly one place
  RC_ASSERT(r.map_live == 0u);
  const uint64_t before_flush = h.pal().total_calls();
  h.flush();
  // Released means unmapped: a successful munmap covered every page (the platform's log; the
  // kernel may already have given the addresses to some other mapping of this process).
  for (const auto& [b, len] : ranges) RC_ASSERT(h.pal().unmapped_since(before_flush, b, len));
  for (uintptr_t p : ptrs) RC_ASSERT(h.a().check(reinterpret_cast<void*>(p)) == Verdict::kInvalidPointer);
  h.teardown_and_check();
}

// I7: accounting holds after every operation: mapped = live + cached + pending + pool free +
// metadata, and after a flush nothing is pending. Checked from the stats (independently of the
// audit's own sum), against what the PAL says is mapped, and against the model's live count.
HAKMEM_PROP(Invariants, I7_AccountingAfterEveryOp, ()) {
  Harness h(with_cache_and_batch(*rc::gen::element<uint64_t>(0, 1 << 20, 64 << 20),
                                 *rc::gen::element<uint64_t>(0, 1 << 20, 8 << 20)));
  h.after_op = [](Harness& x) {
    const StatsSnapshot s = x.a().stats();
    RC_ASSERT(s.mapped_bytes ==
              s.pool_span_bytes + s.map_live_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes + s.metadata_bytes);
    RC_ASSERT(s.mapped_bytes == x.pal().outstanding_bytes());
    const AuditResult r = x.a().audit();
    RC_ASSERT(r.pool_live + r.pool_free == r.pool_span_bytes);
    RC_ASSERT(r.live_blocks == x.live().size());
  };
  run_commands(h);
  h.flush();
  RC_ASSERT(h.a().stats().pending_bytes == 0u);
  h.drain();
  h.teardown_and_check();
}

// I8: every misuse the header or Registry can see is reported and never acted on. One misuse
// per case, against a random population: the verdict is the expected one, exactly one report
// names it, and nothing the allocator owns changed (walk, counters, no platform call, every
// live block's contents, the victim still live).
HAKMEM_PROP(Invariants, I8_MisuseReportedNeverActedOn, ()) {
  Harness h(base_options());
  run_commands(h);
  const int kind = *rc::gen::inRange(0, 10);
  const uintptr_t p = h.pick(*rc::gen::arbitrary<uint32_t>());
  RC_PRE(p != 0 || kind >= 6);
  const Live b = p != 0 ? h.live().at(p) : Live{};
  const Origin own = free_origin(b.origin);
  const Snapshot before = Snapshot::of(h);
  const uint64_t errors = h.a().stats().errors_total;
  auto* vp = reinterpret_cast<void*>(p);
  Verdict expect = Verdict::kOk, got = Verdict::kOk;
  Header saved{};
  switch (kind) {
  case 0: {  // a pointer inside the block, not the one handed out
    RC_PRE(b.usable >= 32);
    const uint64_t off = 16 * *rc::gen::inRange<uint64_t>(1, b.usable / 16);
    expect = Verdict::kMisaligned;
    got = h.a().free(reinterpret_cast<void*>(p + off), 1, own);
    break;
  }
  case 1: {  // freed by the wrong family (free of new[], delete of malloc, ...)
    const Origin wrong = *rc::gen::element(Origin::kMalloc, Origin::kNew, Origin::kNewArray);
    RC_PRE(!origins_compatible(b.origin, wrong));
    expect = Verdict::kMismatchedOrigin;
    got = h.a().free(vp, 1, wrong);
    break;
  }
  case 2: {  // sized delete with the wrong size
    const uint64_t wrong = b.size + *rc::gen::inRange<uint64_t>(1, 100);
    expect = Verdict::kSizeMismatch;
    got = h.a().free_sized(vp, wrong, 1, own);
    break;
  }
  case 3: {  // a flipped bit anywhere in the header
    const int bit = *rc::gen::inRange(0, 128);
    auto* bytes = reinterpret_cast<unsigned char*>(p - kHeaderSize);
    saved = HeaderCodec::load(bytes);
    bytes[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    expect = Verdict::kCorrupted;
    got = h.a().free(vp, 1, own);
    break;
  }
  case 4: {  // realloc of a block through a pointer inside it
    RC_PRE(b.usable >= 32 && (b.origin == Origin::kMalloc || b.origin == Origin::kAligned));
    expect = Verdict::kMisaligned;
    errno = 0;
    RC_ASSERT(!nonnull(h.a().realloc(reinterpret_cast<void*>(p + 16), 10, 1)));
    RC_ASSERT(errno == EINVAL);
    got = Verdict::kMisaligned;
    break;
  }
  case 5: {  // double free: free it properly, then again
    h.free(p);
    const Snapshot after_free = Snapshot::of(h);
    const uint64_t errs = h.a().stats().errors_total;
    got = h.a().free(vp, 1, own);
    // Freed and not reused: a double free; reused as part of another block: misaligned.
    RC_ASSERT(got == Verdict::kDoubleFree || got == Verdict::kMisaligned || got == Verdict::kInvalidPointer);
    RC_ASSERT(h.a().stats().errors_total == errs + 1);
    RC_ASSERT(Snapshot::of(h) == after_free);
    h.expect_error();
    RC_ASSERT(!h.reports().empty());
    h.reports().clear();
    h.check_all();
    h.drain();
    h.teardown_and_check();
    return;
  }
  default: {  // foreign pointers: stack, global, glibc heap, arbitrary values
    int on_stack = 0;
    std::unique_ptr<int> glibc(new int(1));
    const uintptr_t arbitrary = *rc::gen::arbitrary<uintptr_t>();
    const uintptr_t cands[] = {reinterpret_cast<uintptr_t>(&on_stack), reinterpret_cast<uintptr_t>(&g_global_object),
                               reinterpret_cast<uintptr_t>(glibc.get()), arbitrary & ~uintptr_t{15}};
    const uintptr_t f = cands[kind - 6];
    RC_PRE(f != 0 && h.a().registry_for_testing().lookup(f) == nullptr);
    expect = Verdict::kInvalidPointer;
    got = h.a().free(reinterpret_cast<void*>(f), 1, Origin::kMalloc);
    break;
  }
  }
  RC_TAG(verdict_name(expect));
  RC_ASSERT(got == expect);
  RC_ASSERT(h.a().stats().errors_total == errors + 1);
  RC_ASSERT(h.a().error_count(expect) >= 1u);
  RC_ASSERT(h.reports().find(verdict_name(expect)) != std::string::npos);
  h.expect_error();
  h.reports().clear();
  if (kind == 3) HeaderCodec::store(saved, reinterpret_cast<void*>(p - kHeaderSize));
  RC_ASSERT(Snapshot::of(h) == before);  // nothing acted on
  if (p != 0) RC_ASSERT(h.a().check(vp, own) == Verdict::kOk);
  h.check_all();
  h.check_contents();
  h.drain();
  h.teardown_and_check();
}

// I8, freed Pool blocks: a write after free that overwrites a freed block's free-list link
// (random bytes, a live block's address, null, a flipped bit, another freed block's link) is
// reported once, at the allocation that meets it, naming the block; no allocation on the way
// hands out a live block, the forged value, or one block twice.
HAKMEM_PROP(Invariants, I8_CorruptedFreeLinkReportedNeverFollowed, ()) {
  Harness h(base_options());
  run_commands(h);
  const uint64_t size = *rc::gen::inRange<uint64_t>(1, 1025);
  void* other = h.alloc(size, 0, 0x70, Origin::kMalloc);
  void* victim = h.alloc(size, 0, 0x80, Origin::kMalloc);
  RC_PRE(nonnull(other) && nonnull(victim));
  const auto p = reinterpret_cast<uintptr_t>(victim), q = reinterpret_cast<uintptr_t>(other);
  RC_PRE(h.live().at(p).kind == ExtentKind::kPoolSpan);
  const bool same_span = h.a().registry_for_testing().lookup(p) == h.a().registry_for_testing().lookup(q);
  h.free(q);
  h.free(p);
  uint64_t link;
  memcpy(&link, victim, sizeof(link));
  const int kind = static_cast<int>(*rc::gen::arbitrary<uint32_t>() % (same_span ? 5u : 4u));
  const uintptr_t target = h.pick(*rc::gen::arbitrary<uint32_t>());
  uint64_t forged = 0;
  switch (kind) {
  case 0: forged = *rc::gen::arbitrary<uint64_t>(); break;
  case 1: forged = target; break;
  case 2: forged = 0; break;
  case 3: forged = link ^ uint64_t { 1 } << *rc::gen::inRange(0, 64); break;
  default: memcpy(&forged, other, sizeof(forged)); break;  // q's link, sealed for q's address
  }
  RC_PRE(forged != link);
  RC_TAG(kind);
  memcpy(victim, &forged, sizeof(forged));
  const uint64_t before = h.a().error_count(Verdict::kCorruptedLink);
  std::set<uintptr_t> got;
  for (int i = 0; i < 20000 && h.a().error_count(Verdict::kCorruptedLink) == before; ++i) {
    const auto x = reinterpret_cast<uintptr_t>(h.a().alloc(size, 0x90));
    RC_ASSERT(x != 0);
    RC_ASSERT(h.live().count(x) == 0u);  // never a live block
    RC_ASSERT(x != forged);
    RC_ASSERT(got.insert(x).second);  // never twice
  }
  RC_ASSERT(h.a().error_count(Verdict::kCorruptedLink) == before + 1);
  RC_ASSERT(h.reports().find(std::string("corrupted free list of ") + hakmem_test::hex(victim)) != std::string::npos);
  h.expect_error();
  h.reports().clear();
  for (uintptr_t x : got) RC_ASSERT(h.a().free(reinterpret_cast<void*>(x), 0x91) == Verdict::kOk);
  h.teardown_and_check();  // the blocks past the cut are lost, but every byte still goes back
}

// I9: BigCache eviction goes to the releaser, never straight to the OS. With a small cache and
// a batch no eviction can reach, freed Map blocks are either cached or pending, byte for byte,
// no munmap happens until the flush, and the flush unmaps exactly what was freed.
HAKMEM_PROP(Invariants, I9_EvictionGoesToReleaser, ()) {
  const uint64_t cache = *rc::gen::inRange<uint64_t>(0, 8 << 20);
  Options o = base_options();
  o.set(Opt::kCache, cache);
  o.set(Opt::kBatch, uint64_t{1} << 40);
  Harness h(o);
  const auto sizes = *rc::gen::container<std::vector<uint64_t>>(*rc::gen::inRange<size_t>(1, 64),
                                                                rc::gen::inRange<uint64_t>(256 << 10, 4 << 20));
  std::vector<uintptr_t> ptrs;
  for (uint64_t s : sizes) {
    void* p = h.alloc(s, 0, 0x200 + s % 13, Origin::kMalloc);
    RC_ASSERT(nonnull(p));
    ptrs.push_back(reinterpret_cast<uintptr_t>(p));
  }
  const auto order = *rc::gen::arbitrary<std::vector<uint32_t>>();
  for (size_t i = 0; i < order.size() && ptrs.size() > 1; ++i)
    std::swap(ptrs[i % ptrs.size()], ptrs[order[i] % ptrs.size()]);
  const uint64_t unmaps = h.pal().calls(PalOp::kUnmap);
  uint64_t freed = 0;
  for (uintptr_t p : ptrs) {
    freed += extent_length(h, p);
    h.free(p);
    const StatsSnapshot s = h.a().stats();
    RC_ASSERT(h.pal().calls(PalOp::kUnmap) == unmaps);                   // nothing went to the OS
    RC_ASSERT(s.cache_bytes + s.slot_bytes + s.pending_bytes == freed);  // nothing dropped
    RC_ASSERT(s.release_blocks == s.cache_evictions + s.cache_bypass);   // the releaser got every evicted block
    RC_ASSERT(s.cache_bytes <= cache);
  }
  const uint64_t unmapped_before = h.pal().bytes(PalOp::kUnmap);
  h.flush();
  RC_ASSERT(h.pal().bytes(PalOp::kUnmap) - unmapped_before == freed);
  h.teardown_and_check();
}

// I10: nothing pending is lost; flush happens on the threshold, on flush() and at exit. Every
// byte handed to the releaser is unmapped or still pending, pending stays below the batch
// threshold after every operation, flush() empties it, and teardown leaves nothing mapped.
HAKMEM_PROP(Invariants, I10_NothingPendingLost, ()) {
  Options o = base_options();
  o.set(Opt::kCache, *rc::gen::element<uint64_t>(0, 512 << 10, 4 << 20));
  o.set(Opt::kBatch, *rc::gen::inRange<uint64_t>(0, 6 << 20));
  Harness h(o);
  h.after_op = [](Harness& x) {
    const StatsSnapshot s = x.a().stats();
    RC_ASSERT(x.pal().bytes(PalOp::kUnmap) + s.pending_bytes == s.release_bytes);
    RC_ASSERT(s.batch_bytes == 0 || s.pending_bytes < s.batch_bytes);
  };
  run_commands(h);
  h.flush();  // asserts pending == 0
  const StatsSnapshot s = h.a().stats();
  RC_ASSERT(h.pal().bytes(PalOp::kUnmap) == s.release_bytes);
  h.drain();
  h.teardown_and_check();  // at exit: everything back, outstanding == 0
}

// I11: when costs are stationary and one strategy dominates, LEARN converges and freezes on it;
// CANARY rolls back a worse candidate. Random dominant strategy and cost landscape (every other
// strategy worse by more than the canary margin), random epsilon; every frozen epoch tries a
// canary, and each must be rolled back.
HAKMEM_PROP(Invariants, I11_LearnConvergesCanaryRollsBack, ()) {
  Options o = base_options();
  o.set(Opt::kMode, kModeLearn);
  o.set(Opt::kEpsilon, *rc::gen::inRange<uint64_t>(0, 11));
  o.set(Opt::kCanary, 100);
  o.set(Opt::kLearnSample, 1);  // 4 requests an epoch: every one booked, so every epoch is scored alike
  o.set(Opt::kThreshold, kStrategyThresholds[*rc::gen::inRange(0, int{kLearnableStrategies})]);
  Harness h(o);
  const auto best = static_cast<uint8_t>(*rc::gen::inRange<int>(0, kLearnableStrategies));
  for (uint8_t s = 0; s < kLearnableStrategies; ++s) {
    h.cost().per_request[s] = s == best ? 100.0 : 100.0 * (1.10 + *rc::gen::inRange(0, 400) / 100.0);
  }
  const uint64_t size = 80 * 1024;  // one size band: the signature never shifts
  auto epoch = [&] {
    for (int i = 0; i < 4; ++i) h.free(reinterpret_cast<uintptr_t>(h.alloc(size, 0, 0x300, Origin::kMalloc)));
    h.tick();
  };
  const Learner& l = h.a().learner();
  int epochs = 0;
  while (l.state() == Lifecycle::kLearn && epochs < 200) {
    epoch();
    ++epochs;
  }
  RC_ASSERT(l.state() != Lifecycle::kLearn);  // converged within 200 epochs
  RC_ASSERT(l.frozen() == best);
  const uint64_t rollbacks = l.counters().canary_rollbacks;
  for (int i = 0; i < 24; ++i) {
    epoch();
    RC_ASSERT(l.frozen() == best);
    if (l.state() == Lifecycle::kFrozen) {
      RC_ASSERT(h.a().selector().current_id() == best);
      void* p = h.alloc(size, 0, 0x301, Origin::kMalloc);
      RC_ASSERT(h.a().inspect(p).fields.strategy == best);  // the frozen strategy reaches the headers
      h.free(reinterpret_cast<uintptr_t>(p));
    }
  }
  RC_ASSERT(l.counters().canary_rollbacks > rollbacks);  // canaries ran, and lost
  RC_ASSERT(l.counters().canary_adoptions == 0u);
  RC_ASSERT(l.counters().relearns == 0u);
  h.check_all();
  h.teardown_and_check();
}

// I12: when the PAL fails: NULL + ENOMEM, no leak, every invariant above still holds. Random
// failures (the nth map, a byte budget, every map) armed between random operations; the
// harness asserts that a NULL comes only from a refused map, with ENOMEM, that a failed
// realloc leaves its block intact, and after every operation that the tally equals what the
// platform holds (a failed path that kept a mapping would break it); teardown returns all.
HAKMEM_PROP(Invariants, I12_PalFailureNullEnomemNoLeak, ()) {
  Harness h(with_cache_and_batch(*rc::gen::element<uint64_t>(0, 1 << 20, 64 << 20),
                                 *rc::gen::element<uint64_t>(0, 1 << 20, 8 << 20)));
  // The very first call may need the thread heap, a span and Registry leaves: fail one of them.
  h.pal().fail_nth_map(*rc::gen::inRange<uint64_t>(1, 4));
  const uint64_t first = *gen_size();
  h.alloc(first, 0, 0x400, Origin::kMalloc);
  h.check_all();
  run_commands(h, Model{true, false, false});
  RC_CLASSIFY(h.pal().failed_maps() > 0, "a map failed");
  h.drain();
  h.teardown_and_check();
}

int main(int argc, char** argv) { return props_main(argc, argv); }
