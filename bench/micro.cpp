// Micro-benchmarks of hakmem's hot paths (Google Benchmark), built straight against the internal sources: no
// LD_PRELOAD, so the allocator measured is the Allocator<TestConfig> each benchmark constructs (the real Linux PAL),
// and the process's own malloc stays glibc's. Each benchmark checks that it measured what it claims (the header
// validates, the lookup finds the extent, the cache hit is a hit) and fails its run otherwise.
//
// Build (ci/bench does this):
//   g++ -O2 -std=c++20 -Isrc -Iinclude bench/micro.cpp src/core/options.cpp src/header/header.cpp
//       src/front/stats.cpp -lbenchmark -lpthread -ldl -o micro
// Run:   ./micro --benchmark_min_time=0.2
//
//   BM_HeaderValid          HeaderCodec::valid on a sealed 16-byte header (checksum + method check)
//   BM_HeaderSumMatches     HeaderCodec::sum_of + matches (the free path's form: the sum is reused to re-seal)
//   BM_HeaderEncode         HeaderCodec::encode (what every allocation pays)
//   BM_RegistryLookup       Registry::lookup of a live Pool pointer and a live Map pointer (alternating)
//   BM_PoolPair             Allocator<TestConfig>::alloc + free of a 64-byte block (the small-object fast path)
//   BM_PoolPairMixed        the same over sizes 16 B - 1 KiB
//   BM_BigCacheHit          alloc + free of a 1 MiB block (Map; after the first pair every alloc is a BigCache hit)
//   BM_SelectorSnapshot     Selector::snapshot (id + threshold) as an allocation above the Pool fast path reads it
//   BM_SelectorCurrentId    Selector::current_id (the Pool fast path's read)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "front/front.h"

using namespace hakmem;

namespace {

using Alloc = ScopedAllocator<TestConfig>;

HeaderCodec make_codec() {
  HeaderCodec c;
  c.set_secret(0x5eed'1234'abcd'0001ull);
  return c;
}

HeaderFields pool_fields() {
  HeaderFields f;
  f.method = Method::kPool;
  f.state = State::kLive;
  f.origin = Origin::kMalloc;
  f.strategy = 12;
  f.size = 200;
  f.site = 0x401234;
  return f;
}

void BM_HeaderValid(benchmark::State& state) {
  const HeaderCodec codec = make_codec();
  alignas(16) unsigned char buf[64];
  codec.encode(pool_fields(), buf + 16);
  const uintptr_t at = reinterpret_cast<uintptr_t>(buf + 16);
  if (!codec.valid(HeaderCodec::load(buf + 16), at)) state.SkipWithError("sealed header does not validate");
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf);
    const Header h = HeaderCodec::load(buf + 16);
    bool ok = codec.valid(h, at);
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_HeaderValid);

void BM_HeaderSumMatches(benchmark::State& state) {
  const HeaderCodec codec = make_codec();
  alignas(16) unsigned char buf[64];
  codec.encode(pool_fields(), buf + 16);
  const uintptr_t at = reinterpret_cast<uintptr_t>(buf + 16);
  {
    const Header h = HeaderCodec::load(buf + 16);
    if (!codec.matches(h, codec.sum_of(h, at))) state.SkipWithError("sum_of + matches rejects a sealed header");
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf);
    const Header h = HeaderCodec::load(buf + 16);
    const uint32_t sum = codec.sum_of(h, at);
    bool ok = codec.matches(h, sum);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(sum);
  }
}
BENCHMARK(BM_HeaderSumMatches);

void BM_HeaderEncode(benchmark::State& state) {
  const HeaderCodec codec = make_codec();
  alignas(16) unsigned char buf[64];
  HeaderFields f = pool_fields();
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.size);
    codec.encode(f, buf + 16);
    benchmark::ClobberMemory();
    ++f.size;
  }
}
BENCHMARK(BM_HeaderEncode);

void BM_RegistryLookup(benchmark::State& state) {
  Alloc a;
  void* small = a->alloc(64, 0x1000);
  void* large = a->alloc(4 << 20, 0x2000);  // above the default 256 KiB threshold: a Map block
  if (small == nullptr || large == nullptr) {
    state.SkipWithError("allocation failed");
    return;
  }
  const uintptr_t ptrs[2] = {reinterpret_cast<uintptr_t>(small), reinterpret_cast<uintptr_t>(large)};
  Registry<LinuxPal>& reg = a->registry_for_testing();
  if (reg.lookup(ptrs[0]) == nullptr || reg.lookup(ptrs[0])->kind != ExtentKind::kPoolSpan ||
      reg.lookup(ptrs[1]) == nullptr || reg.lookup(ptrs[1])->kind != ExtentKind::kMapBlock) {
    state.SkipWithError("lookup does not find the live blocks' extents");
  }
  size_t i = 0;
  for (auto _ : state) {
    uintptr_t p = ptrs[i++ & 1];
    benchmark::DoNotOptimize(p);
    Extent* e = reg.lookup(p);
    benchmark::DoNotOptimize(e);
  }
  a->free(small, 0x1000);
  a->free(large, 0x2000);
}
BENCHMARK(BM_RegistryLookup);

void BM_PoolPair(benchmark::State& state) {
  Alloc a;
  const uint64_t before = a->stats().pool_allocs;
  for (auto _ : state) {
    void* p = a->alloc(64, 0x1000);
    benchmark::DoNotOptimize(p);
    a->free(p, 0x1000);
  }
  const StatsSnapshot s = a->stats();
  if (s.pool_allocs - before != static_cast<uint64_t>(state.iterations()) || s.map_allocs != 0) {
    state.SkipWithError("not every allocation came from the Pool");
  }
}
BENCHMARK(BM_PoolPair);

void BM_PoolPairMixed(benchmark::State& state) {
  Alloc a;
  size_t sizes[256];
  uint64_t x = 1;
  for (size_t& s : sizes) s = 16 + (x = x * 6364136223846793005ull + 1442695040888963407ull) % 1009;
  size_t i = 0;
  for (auto _ : state) {
    const size_t n = sizes[i++ & 255];
    void* p = a->alloc(n, 0x1000);
    benchmark::DoNotOptimize(p);
    a->free(p, 0x1000);
  }
  if (a->stats().map_allocs != 0) state.SkipWithError("a small allocation was mapped");
}
BENCHMARK(BM_PoolPairMixed);

Options no_slot() {
  Options o;
  o.set(Opt::kLargeSlot, 0);  // every large free goes to BigCache
  return o;
}

/// A 1 MiB alloc + free loop (above the default 256 KiB threshold: Map), after one warming pair;
/// every allocation must be a hit of what `hits` counts, or the run reports an error.
void large_pair(benchmark::State& state, const Options& o, uint64_t StatsSnapshot::*hits, const char* missed) {
  Alloc a(o);
  constexpr size_t kSize = 1 << 20;
  a->free(a->alloc(kSize, 0x3000), 0x3000);  // warms the (site, class) ring, or fills the large slot
  const StatsSnapshot s0 = a->stats();
  for (auto _ : state) {
    void* p = a->alloc(kSize, 0x3000);
    benchmark::DoNotOptimize(p);
    a->free(p, 0x3000);
  }
  const uint64_t n = a->stats().*hits - s0.*hits;
  state.counters["hit_rate"] = static_cast<double>(n) / static_cast<double>(state.iterations());
  if (n != static_cast<uint64_t>(state.iterations())) state.SkipWithError(missed);
}

void BM_BigCacheHit(benchmark::State& state) {
  large_pair(state, no_slot(), &StatsSnapshot::cache_hits, "not every allocation hit BigCache");
}
BENCHMARK(BM_BigCacheHit);

void BM_LargeSlotHit(benchmark::State& state) {  // the default large_slot (8 MiB)
  large_pair(state, Options{}, &StatsSnapshot::slot_hits, "not every allocation hit the large slot");
}
BENCHMARK(BM_LargeSlotHit);

void BM_SelectorSnapshot(benchmark::State& state) {
  Alloc a;
  Selector& sel = a->selector();
  for (auto _ : state) {
    StrategySnapshot s = sel.snapshot();
    benchmark::DoNotOptimize(s);
  }
  if (sel.snapshot().threshold != 256 * 1024) state.SkipWithError("default threshold is not 256 KiB");
}
BENCHMARK(BM_SelectorSnapshot);

void BM_SelectorCurrentId(benchmark::State& state) {
  Alloc a;
  Selector& sel = a->selector();
  for (auto _ : state) {
    uint8_t id = sel.current_id();
    benchmark::DoNotOptimize(id);
  }
}
BENCHMARK(BM_SelectorCurrentId);

}  // namespace

BENCHMARK_MAIN();
