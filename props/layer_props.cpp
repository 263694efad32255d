// Layer properties: header codec, size classes, BigCache, BatchReleaser and Registry, each on its own (ctest:
// Layers.*).
#include <errno.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <set>
#include <vector>

#include "harness.h"

using namespace hakmem_props;

namespace {

/// Random but valid header fields (every method a header can hold, every field at any value).
rc::Gen<HeaderFields> gen_fields() {
  return rc::gen::exec([] {
    HeaderFields f;
    f.method = *rc::gen::element(Method::kPool, Method::kMap, Method::kForward);
    f.state = *rc::gen::element(State::kLive, State::kCached, State::kReleasing, State::kFree);
    f.origin = *rc::gen::element(Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned);
    f.strategy = static_cast<uint8_t>(*rc::gen::inRange(0, 16));
    f.size = *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 1 << 20), rc::gen::inRange<uint64_t>(0, kMaxRequest + 1));
    f.site = *rc::gen::arbitrary<uintptr_t>() & kSiteMask;
    return f;
  });
}

/// A 16-aligned user-space address.
rc::Gen<uintptr_t> gen_address() {
  return rc::gen::map(rc::gen::arbitrary<uint64_t>(),
                      [](uint64_t x) { return uintptr_t(x & ((uint64_t{1} << 47) - 16)); });
}

/// Gives raw ranges back to the OS the one sanctioned way: through a BatchReleaser.
template <class Pal>
void release_raw(Pal* pal, const std::vector<std::pair<uintptr_t, size_t>>& ranges) {
  std::atomic<uint64_t> tally{0};
  auto r = std::make_unique<BatchReleaser<Pal>>();
  r->init(pal, nullptr, nullptr, nullptr, &tally, uint64_t{1} << 40, 0);
  for (const auto& [b, len] : ranges) {
    if (len != 0) r->add_raw(b, len);
    if (r->pending_bytes() > (uint64_t{1} << 39)) r->flush();
  }
  r->flush();
}

bool page_mapped(uintptr_t a) {
  unsigned char v;
  return mincore(reinterpret_cast<void*>(a), 4096, &v) == 0;
}

}  // namespace

// Header: any single bit flip, in any of the 128 bits, is detected (exhaustive over the bit
// positions, for random secrets, fields and addresses); and the header still decodes exactly.
HAKMEM_PROP(Layers, HeaderEveryBitFlipDetected, ()) {
  HeaderCodec c;
  c.set_secret(*rc::gen::arbitrary<uint64_t>());
  const HeaderFields f = *gen_fields();
  const uintptr_t at = *gen_address();
  const Header h = c.pack(f, at);
  HeaderFields back;
  RC_ASSERT(c.unpack(h, at, &back));
  RC_ASSERT(back == f);
  for (int bit = 0; bit < 128; ++bit) {
    Header x = h;
    if (bit < 64) {
      x.lo ^= uint64_t{1} << bit;
    } else {
      x.hi ^= uint64_t{1} << (bit - 64);
    }
    RC_ASSERT(!c.valid(x, at));
  }
}

// Header: a header moved to another address is rejected, by the codec for random moves (and
// every small move of a few 16-byte slots or pages), and by the allocator when a live block's
// header is copied over another's (check and free say corrupted; nothing is freed).
HAKMEM_PROP(Layers, HeaderMovedRejected, ()) {
  HeaderCodec c;
  c.set_secret(*rc::gen::arbitrary<uint64_t>());
  const HeaderFields f = *gen_fields();
  const uintptr_t at = *gen_address();
  const Header h = c.pack(f, at);
  const uintptr_t elsewhere = *gen_address();
  RC_PRE(elsewhere != at);
  RC_ASSERT(!c.valid(h, elsewhere));
  for (int64_t k = -8; k <= 8; ++k) {
    if (k == 0) continue;
    RC_ASSERT(!c.valid(h, at + static_cast<uintptr_t>(k * 16)));
    RC_ASSERT(!c.valid(h, at + static_cast<uintptr_t>(k * 4096)));
  }
  // In the allocator: block B wearing block A's header.
  Harness hs(base_options());
  const uint64_t sa = *rc::gen::inRange<uint64_t>(0, 512 << 10), sb = *rc::gen::inRange<uint64_t>(0, 512 << 10);
  void* a = hs.alloc(sa, 0, 0x10, Origin::kMalloc);
  void* b = hs.alloc(sb, 0, 0x20, Origin::kMalloc);
  RC_ASSERT(nonnull(a) && nonnull(b));
  auto* hb = reinterpret_cast<unsigned char*>(b) - kHeaderSize;
  const Header saved = HeaderCodec::load(hb);
  memcpy(hb, reinterpret_cast<unsigned char*>(a) - kHeaderSize, kHeaderSize);
  RC_ASSERT(hs.a().check(b) == Verdict::kCorrupted);
  RC_ASSERT(hs.a().free(b, 0) == Verdict::kCorrupted);
  hs.expect_error();
  hs.reports().clear();
  HeaderCodec::store(saved, hb);
  RC_ASSERT(hs.a().check(b) == Verdict::kOk);
  hs.check_all();
  hs.drain();
  hs.teardown_and_check();
}

// Pool word (header/pool_seal.h): a word sealed for random fields at a random address opens to
// exactly those fields there, and not after any one- or two-bit flip, nor at an address one or
// two bits away (exhaustive over the bit positions, for random secrets).
HAKMEM_PROP(Layers, PoolWordEveryFlipAndMoveDetected, ()) {
  PoolSeal seal;
  seal.set_secret(*rc::gen::arbitrary<uint64_t>());
  PoolFields f;
  f.tag = *rc::gen::element(PoolTag::kLive, PoolTag::kFree, PoolTag::kForward);
  f.origin = *rc::gen::element(Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned);
  f.strategy = static_cast<uint8_t>(*rc::gen::inRange(0, 16));
  f.size = *rc::gen::inRange<uint64_t>(0, PoolPayload::kMaxSize + 1);
  const uintptr_t u = *gen_address();
  const uint64_t word = seal.seal(PoolPayload::make(f), seal.key(u));
  const uint64_t opened = seal.open(word, seal.key(u));
  RC_ASSERT(PoolPayload::valid(opened));
  RC_ASSERT(PoolPayload::fields(opened) == f);
  for (unsigned j = 0; j < 64; ++j) {
    for (unsigned i = 0; i <= j; ++i) {
      const uint64_t flip = uint64_t{1} << j | uint64_t{1} << i;  // one bit when i == j
      RC_ASSERT(!PoolPayload::valid(seal.open(word ^ flip, seal.key(u))));
      RC_ASSERT(!PoolPayload::valid(seal.open(word, seal.key(u ^ flip))));
    }
  }
}

// Free-list links (header/pool_seal.h): a link sealed for a random next index at a random
// address opens to it there; a random value, a raw pointer near it, a flipped link, or the link
// of another block opens past any span's block count (2048), so the pop that meets it reports.
HAKMEM_PROP(Layers, FreeLinkForgedRejected, ()) {
  PoolSeal seal;
  seal.set_secret(*rc::gen::arbitrary<uint64_t>());
  const uintptr_t u = *gen_address();
  const uint64_t next = *rc::gen::inRange<uint64_t>(0, 2049);
  const uint64_t link = seal.seal_link(next, seal.key(u));
  RC_ASSERT(seal.open_link(link, seal.key(u)) == next);
  const uintptr_t elsewhere = *gen_address();
  RC_PRE(elsewhere != u);
  const uint64_t forged[] = {*rc::gen::arbitrary<uint64_t>(), u + 16 * *rc::gen::inRange<uint64_t>(0, 4096),
                             link ^ uint64_t{1} << *rc::gen::inRange(0, 64), seal.seal_link(next, seal.key(elsewhere))};
  for (const uint64_t f : forged) RC_ASSERT(seal.open_link(f, seal.key(u)) > 2048u);
}

// Size classes: monotone, and every size has exactly the smallest class that holds it (Pool
// classes up to kMaxUsable; large classes up to 1 GiB, uncached above).
HAKMEM_PROP(Layers, SizeClassesMonotoneAndCover, ()) {
  for (size_t c = 1; c < SizeClasses::kCount; ++c) {
    RC_ASSERT(SizeClasses::usable(c) > SizeClasses::usable(c - 1));
    RC_ASSERT(SizeClasses::block_size(c) % 16 == 0u);
    RC_ASSERT(SizeClasses::span_size(c) >= SizeClasses::block_size(c));
  }
  for (uint32_t c = 1; c < LargeClasses::kCount; ++c) RC_ASSERT(LargeClasses::usable(c) > LargeClasses::usable(c - 1));
  const uint64_t n =
      *rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 4096), rc::gen::inRange<uint64_t>(0, SizeClasses::kMaxUsable + 1));
  const size_t c = SizeClasses::class_of(n);
  RC_ASSERT(c < SizeClasses::kCount);
  RC_ASSERT(SizeClasses::usable(c) >= n);
  // (RC_ASSERT's captured || evaluates both sides: keep the guard outside it.)
  const bool smallest = c == 0 || SizeClasses::usable(c - 1) < n;
  RC_ASSERT(smallest);
  const uint64_t m = *rc::gen::inRange<uint64_t>(0, (uint64_t{1} << 31));
  const uint32_t lc = LargeClasses::class_of(m);
  if (m > (uint64_t{1} << LargeClasses::kTopLog)) {
    RC_ASSERT(lc == LargeClasses::kUncached);
  } else {
    RC_ASSERT(lc < LargeClasses::kCount);
    RC_ASSERT(LargeClasses::usable(lc) >= m);
    const bool smallest_large = lc == 0 || LargeClasses::usable(lc - 1) < m;
    RC_ASSERT(smallest_large);
  }
}

// BigCache: a hit is never smaller than asked (requested <= capacity at the offset, the seed's
// size-check bug), comes from the asked class, and is a block that is really cached (put, not
// taken, not evicted); a miss happens only when no cached block of the class fits. Evictions
// go to the releaser (I9). The byte limit holds and stays within [cap, max]; it grows only on a
// miss of a class the limit evicted from within the decay window, by at most one block of that
// class, never more often than that class was evicted; it shrinks only at a put once a decay
// window has passed, never below the cap.
HAKMEM_PROP(Layers, BigCacheNeverSmallerThanAsked, ()) {
  using Pal = RecordingPal<LinuxPal>;
  const auto pal_owner = std::make_unique<Pal>();  // its log is 512 KiB: not on the stack
  Pal& pal = *pal_owner;
  pal.stop_clock();  // only the test moves time: the window checks below are exact
  HeaderCodec codec;
  codec.set_secret(*rc::gen::arbitrary<uint64_t>());
  std::atomic<uint64_t> tally{0};
  auto releaser = std::make_unique<BatchReleaser<Pal>>();
  releaser->init(&pal, nullptr, nullptr, &codec, &tally, uint64_t{1} << 40, 0);  // never flushes here
  auto cache = std::make_unique<BigCache<Pal>>();
  const uint64_t cap = *rc::gen::element<uint64_t>(uint64_t{1} << 40, 16 << 20, 4 << 20, 1 << 20, 0);
  const uint64_t max = *rc::gen::element<uint64_t>(0, cap, 2 * cap, 8 * cap);
  const uint64_t decay_ns = *rc::gen::element<uint64_t>(0, 1000000, 1000000000);
  cache->init(&pal, releaser.get(), cap, max, decay_ns);
  const uint64_t max_in_force = cap == 0 ? 0 : std::max(cap, max);
  RC_ASSERT(cache->limit() == cap);
  RC_ASSERT(cache->max() == max_in_force);
  uint64_t evicted[LargeClasses::kCount] = {};     // per class: evictions by the limit so far
  uint64_t evicted_at[LargeClasses::kCount] = {};  // ... and the clock at the latest
  uint64_t grown[LargeClasses::kCount] = {};
  uint64_t last_shrink_or_growth_from_cap = pal.now_ns();

  struct Desc {
    MapBlock mb;
    alignas(16) unsigned char header[16];
  };
  std::vector<std::unique_ptr<Desc>> descs;
  std::set<MapBlock*> cached;
  const uint32_t lo_cls = 1, hi_cls = 12;  // 80 KiB .. 512 KiB: a few classes, many collisions
  const int ops = *rc::gen::inRange(1, 150);
  for (int i = 0; i < ops; ++i) {
    const uint32_t cls = static_cast<uint32_t>(*rc::gen::inRange<int>(lo_cls, hi_cls + 1));
    const uintptr_t site = 0x1000 * *rc::gen::inRange<uintptr_t>(0, 6);
    const uint64_t offset = 16 * *rc::gen::inRange<uint64_t>(0, 64);
    const uint64_t lo = LargeClasses::usable(cls - 1) + 1, hi = LargeClasses::usable(cls);
    if (*rc::gen::inRange(0, 8) == 0) pal.advance_clock(*rc::gen::element<uint64_t>(1000, 2000000, 2000000000));
    const uint64_t limit_before = cache->limit();
    const uint64_t now = pal.now_ns();
    const bool put = *rc::gen::arbitrary<bool>() && descs.size() < 200;
    MapBlock* put_block = nullptr;
    bool missed = false;
    if (put) {
      auto d = std::make_unique<Desc>();
      d->mb.base = reinterpret_cast<uintptr_t>(d->header);
      // Lengths around the class: some blocks of a class are too small for some requests.
      d->mb.length = *rc::gen::inRange<uint64_t>(lo + kHeaderSize, hi + kHeaderSize + 4096);
      d->mb.kind = ExtentKind::kMapBlock;
      d->mb.cls = cls;
      d->mb.hdr_offset = 0;
      HeaderFields f;
      f.method = Method::kMap;
      f.state = State::kCached;
      f.size = d->mb.length - kHeaderSize;
      codec.encode(f, d->header);
      d->mb.state = State::kCached;
      put_block = &d->mb;
      cache->put(&d->mb, site);
      cached.insert(&d->mb);
      descs.push_back(std::move(d));
    } else {
      const uint64_t need = *rc::gen::inRange<uint64_t>(lo, hi + 1);
      MapBlock* mb = cache->take(site, cls, need, offset);
      if (mb != nullptr) {
        RC_ASSERT(cached.count(mb) == 1u);  // really cached
        RC_ASSERT(mb->cls == cls);
        RC_ASSERT(mb->capacity_at(offset) >= need);  // never smaller than asked
        cached.erase(mb);
      } else {
        missed = true;
        for (MapBlock* c : cached) RC_ASSERT(!(c->cls == cls && c->capacity_at(offset) >= need));
      }
    }
    // Whatever left the cache without a take went to the releaser, marked Releasing: evicted by
    // the limit, unless it is the block just put and bypassed (larger than the limit, or cache off).
    std::set<MapBlock*> pending;
    releaser->for_each_pending([&](uintptr_t, size_t, MapBlock* mb) { pending.insert(mb); });
    uint64_t bytes = 0;
    for (auto it = cached.begin(); it != cached.end();) {
      if (pending.count(*it) != 0) {
        RC_ASSERT((*it)->state == State::kReleasing);
        const bool bypassed = *it == put_block && (cap == 0 || put_block->length > limit_before);
        if (!bypassed) {
          ++evicted[(*it)->cls];
          evicted_at[(*it)->cls] = now;
        }
        it = cached.erase(it);
      } else {
        bytes += (*it)->length;
        ++it;
      }
    }
    RC_ASSERT(cache->bytes() == bytes);
    RC_ASSERT(cache->blocks() == cached.size());
    const uint64_t limit = cache->limit();
    RC_ASSERT(bytes <= limit);
    RC_ASSERT(cap <= limit && limit <= max_in_force);
    if (limit > limit_before) {
      // Growth: a miss of a class evicted from lately, by one block of it at most.
      RC_ASSERT(missed);
      RC_ASSERT(limit - limit_before <= LargeClasses::usable(cls) + kHeaderSize + 4096);
      RC_ASSERT(decay_ns == 0 || now - evicted_at[cls] <= decay_ns);
      ++grown[cls];
      RC_ASSERT(grown[cls] <= evicted[cls]);
      if (limit_before == cap) last_shrink_or_growth_from_cap = now;
    } else if (limit < limit_before) {
      // Decay: at a put, a whole window after the last one (or the growth from the cap).
      RC_ASSERT(put);
      RC_ASSERT(decay_ns != 0 && now - last_shrink_or_growth_from_cap >= decay_ns);
      last_shrink_or_growth_from_cap = now;
    }
  }
}

// BatchReleaser: a flush unmaps exactly the pending ranges, each maximal run of adjacent ranges
// with one munmap (checked against RecordingPal's log), the pages between them stay mapped,
// and the counters say how many syscalls coalescing saved.
HAKMEM_PROP(Layers, ReleaserCoalescesExactlyPending, ()) {
  const auto pal_owner = std::make_unique<RecordingPal<LinuxPal>>();  // its log is 512 KiB: not on the stack
  RecordingPal<LinuxPal>& pal = *pal_owner;
  const size_t pages = static_cast<size_t>(*rc::gen::inRange(2, 96));
  const auto base = reinterpret_cast<uintptr_t>(pal.map(pages * 4096, Layer::kTest));
  RC_ASSERT(base != 0u);
  // Cut the region into ranges; hand a random subset to the releaser, in random order.
  std::vector<std::pair<uintptr_t, size_t>> all;
  for (size_t p = 0; p < pages;) {
    const size_t n = std::min(pages - p, static_cast<size_t>(*rc::gen::inRange(1, 6)));
    all.emplace_back(base + p * 4096, n * 4096);
    p += n;
  }
  std::vector<std::pair<uintptr_t, size_t>> chosen, kept;
  for (const auto& r : all) (*rc::gen::arbitrary<bool>() ? chosen : kept).push_back(r);
  std::vector<std::pair<uintptr_t, size_t>> order = chosen;
  const auto shuffle = *rc::gen::container<std::vector<uint32_t>>(order.size(), rc::gen::arbitrary<uint32_t>());
  for (size_t i = 0; i < order.size(); ++i) std::swap(order[i], order[shuffle[i] % order.size()]);

  std::atomic<uint64_t> tally{pages * 4096};
  auto rel = std::make_unique<BatchReleaser<RecordingPal<LinuxPal>>>();
  rel->init(&pal, nullptr, nullptr, nullptr, &tally, uint64_t{1} << 40, 0);
  for (const auto& [b, len] : order) rel->add_raw(b, len);
  // Expected: the chosen ranges merged where one ends exactly where the next begins.
  std::vector<std::pair<uintptr_t, size_t>> runs;
  for (const auto& [b, len] : chosen) {
    if (!runs.empty() && runs.back().first + runs.back().second == b) {
      runs.back().second += len;
    } else {
      runs.emplace_back(b, len);
    }
  }
  // Flush, then look at the pages before anything else allocates: a sanitizer's allocator may
  // map fresh memory into the hole the flush just left.
  std::vector<uint8_t> chosen_mapped, kept_mapped;
  chosen_mapped.reserve(pages);
  kept_mapped.reserve(pages);
  const uint64_t mark = pal.total_calls();
  const size_t released = rel->flush();
  for (const auto& [b, len] : chosen) {
    for (uintptr_t a = b; a < b + len; a += 4096) chosen_mapped.push_back(page_mapped(a));
  }
  for (const auto& [b, len] : kept) {
    for (uintptr_t a = b; a < b + len; a += 4096) kept_mapped.push_back(page_mapped(a));
  }
  RC_ASSERT(released == chosen.size());
  RC_ASSERT(std::count(chosen_mapped.begin(), chosen_mapped.end(), 1) == 0);  // released pages are gone
  RC_ASSERT(std::count(kept_mapped.begin(), kept_mapped.end(), 0) == 0);      // the others untouched
  std::vector<std::pair<uintptr_t, size_t>> seen;
  for (uint64_t i = mark; i < pal.total_calls(); ++i) {
    PalRecord r{PalOp::kCount, Layer::kCount, 0, 0};
    RC_ASSERT(pal.record(i, &r));
    RC_ASSERT(r.op == PalOp::kUnmap);
    seen.emplace_back(r.addr, r.len);
  }
  std::sort(seen.begin(), seen.end());
  RC_ASSERT(seen == runs);
  RC_ASSERT(rel->counters().unmap_calls.load() == runs.size());
  RC_ASSERT(rel->counters().syscalls_saved.load() == chosen.size() - runs.size());
  RC_ASSERT(rel->pending_bytes() == 0u);
  release_raw(&pal, kept);
}

// Registry: answers exactly for every address inside, at the edges of, and outside owned
// memory, across leaf (GiB) boundaries, after assign and after clear; never for an address
// beyond 47 bits. Its table mappings are all it counts as metadata.
HAKMEM_PROP(Layers, RegistryAnswersExactly, ()) {
  LinuxPal pal;
  std::atomic<uint64_t> tally{0};
  auto reg = std::make_unique<Registry<LinuxPal>>();
  RC_ASSERT(reg->init(&pal, &tally));
  // A window of two GiB straddling a leaf boundary, cut into ranges of pages.
  const uintptr_t gib = uintptr_t{1} << 30;
  const uintptr_t window = gib * *rc::gen::inRange<uintptr_t>(1, (uintptr_t{1} << 17) - 16) +
                           4096 * *rc::gen::inRange<uintptr_t>(0, 1 << 18);
  struct Range {
    uintptr_t base;
    size_t len;
    std::unique_ptr<Extent> e;
    bool live;
  };
  std::vector<Range> ranges;
  uintptr_t cursor = window;
  const int n = *rc::gen::inRange(1, 24);
  for (int i = 0; i < n; ++i) {
    cursor += 4096 * *rc::gen::oneOf(rc::gen::just<uintptr_t>(0), rc::gen::inRange<uintptr_t>(1, 64));
    const size_t len = 4096 * *rc::gen::oneOf(rc::gen::inRange<size_t>(1, 8), rc::gen::inRange<size_t>(1, 1 << 17));
    auto e = std::make_unique<Extent>();
    e->base = cursor;
    e->length = len;
    e->kind = ExtentKind::kMapBlock;
    RC_ASSERT(reg->assign(cursor, len, e.get()));
    ranges.push_back(Range{cursor, len, std::move(e), true});
    cursor += len;
  }
  for (Range& r : ranges) {
    if (*rc::gen::weightedElement<bool>({{3, false}, {1, true}})) {
      reg->clear(r.base, r.len);
      r.live = false;
    }
  }
  auto expect = [&](uintptr_t a) -> const Extent* {
    for (const Range& r : ranges) {
      if (r.live && a >= r.base && a < r.base + r.len) return r.e.get();
    }
    return nullptr;
  };
  std::vector<uintptr_t> probes = {0, 1, window - 1, cursor, cursor + gib, uintptr_t{1} << 47, ~uintptr_t{0}};
  for (const Range& r : ranges) {
    for (uintptr_t a : {r.base, r.base + 1, r.base + r.len - 1, r.base - 1, r.base + r.len, r.base + r.len / 2})
      probes.push_back(a);
  }
  const auto randoms =
      *rc::gen::container<std::vector<uintptr_t>>(64, rc::gen::inRange<uintptr_t>(window - 4096, cursor + 4096));
  probes.insert(probes.end(), randoms.begin(), randoms.end());
  probes.push_back(*rc::gen::arbitrary<uintptr_t>() | (uintptr_t{1} << 47));  // beyond user space
  for (uintptr_t a : probes)
    RC_ASSERT(reinterpret_cast<uintptr_t>(reg->lookup(a)) == reinterpret_cast<uintptr_t>(expect(a)));
  RC_ASSERT(reg->mapped_bytes() == tally.load());
  std::vector<std::pair<uintptr_t, size_t>> tables;
  reg->release_tables([&](uintptr_t b, size_t len) { tables.emplace_back(b, len); });
  uint64_t table_bytes = 0;
  for (const auto& t : tables) table_bytes += t.second;
  RC_ASSERT(table_bytes == tally.load());
  RC_ASSERT(!nonnull(reg->lookup(ranges.front().base)));
  release_raw(&pal, tables);
}

int main(int argc, char** argv) { return props_main(argc, argv); }
