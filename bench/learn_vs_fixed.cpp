// Learning selector benchmark: hakmem with mode=learn against hakmem with the fixed default threshold (256 KiB), on
// large-block workloads. One binary, the allocator chosen by LD_PRELOAD and its mode by HAKMEM_OPTIONS; every run
// proves which allocator served it, in which mode (SEED_NOTES.md 4: the seed benchmarked glibc for weeks, and once
// compared hakmem with hakmem).
//
// Build: g++ -O2 -std=c++20 bench/learn_vs_fixed.cpp -ldl -o learn_vs_fixed
// Run:   BENCH_EXPECT=hakmem BENCH_MODE=learn LD_PRELOAD=build/bench-learn/libhakmem.so
//        HAKMEM_OPTIONS=mode=learn ./learn_vs_fixed A
//
// Usage: learn_vs_fixed WORKLOAD [--cycles N] [--scale F]
//   WORKLOAD  A  "non-default-best": five sites (five distinct functions, so five call sites) allocating 512 KiB -
//                4 MiB blocks with different lifetimes (freed at once, kept 1, 3, 8 cycles, or 0-16 at random)
//             B  "default-best": 64-200 KiB blocks from four sites, most kept for 32-64 cycles; the default
//                threshold already puts all of them in the Pool, which is (tied) best: see kWorkloadB below
//             overhead  the selector's cost per allocation once FROZEN: small (16 B - 1 KiB) and large (72-190 KiB,
//                Pool-served) malloc/free loops after a warm-up that, in learn mode, runs until the learner is
//                FROZEN (ci/bench-learn times it and counts its instructions under callgrind)
//   --cycles N  cycles exactly;  --scale F  multiplies the default cycle count (ci/bench-learn --quick)
//   BENCH_EXPECT=hakmem|glibc is required: the run exits 1 unless that allocator is the one serving.
//   BENCH_MODE=fixed|learn (hakmem only) is required too: the run exits 1 unless hakmem reports that mode.
//
// A cycle is one round of every site's allocations (each touching one byte per 4 KiB page, as a program filling
// its buffer would) and the frees that fall due. Reported, over the whole run (learning included, so whatever
// exploration costs is paid inside the numbers):
//   ns/cycle     median of the per-cycle wall times (and the mean: total / cycles, which includes every outlier)
//   faults/cycle minor page faults of the process during the cycles (getrusage) / cycles
//   peak RSS     getrusage ru_maxrss at the end
//   for hakmem: the strategy and threshold in force at the end, the learner's state, epochs and leaderboard,
//   and the proof: Pool + Map allocations grew by at least the number of mallocs the workload made.
// The last line is machine-readable:
//   RESULT allocator=A mode=M workload=W cycles=N ns_median=X ns_mean=X faults_per_cycle=X peak_rss_kb=K
//          strategy=S threshold=T state=L epochs=E scored=E freezes=F ...
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "proof.h"

namespace {

using bench::fail;
using bench::json_object;
using bench::json_str;
using bench::json_u64;
using bench::splitmix64;

/// What the benchmark reads from hakmem.
struct HakmemState {
  uint64_t pool_allocs = 0, map_allocs = 0, cache_hits = 0, cache_misses = 0, release_bytes = 0, mapped = 0;
  std::string mode, state = "off";
  uint64_t strategy = 0, threshold = 0, epochs = 0, scored = 0, matches = 0, freezes = 0, relearns = 0,
           relearns_by_cost = 0, relearns_by_shift = 0, canaries = 0, canary_adoptions = 0;
  std::string leaderboard;  // "strategy:threshold:rating:W/L/D:epochs" of the top rows
  size_t sites = 0;         // sites in the per-site profile (learn mode records them)
};

HakmemState hakmem_state() {
  const char* j = bench::hakmem_json();
  HakmemState s;
  const char* sel = json_object(j, "selector");
  s.mode = json_str(sel, "mode");
  s.strategy = json_u64(sel, "strategy");
  s.threshold = json_u64(sel, "threshold");
  s.pool_allocs = json_u64(json_object(j, "pool"), "allocs");
  s.map_allocs = json_u64(json_object(j, "map"), "allocs");
  const char* cache = json_object(j, "bigcache");
  s.cache_hits = json_u64(cache, "hits");
  s.cache_misses = json_u64(cache, "misses");
  s.release_bytes = json_u64(json_object(j, "release"), "bytes");
  s.mapped = json_u64(json_object(j, "memory"), "mapped");
  const char* learner = json_object(j, "learner");
  s.state = json_str(learner, "state");
  if (s.state != "off") {
    s.epochs = json_u64(learner, "epochs");
    s.scored = json_u64(learner, "scored_epochs");
    s.matches = json_u64(learner, "matches");
    s.freezes = json_u64(learner, "freezes");
    s.relearns = json_u64(learner, "relearns");
    s.relearns_by_cost = json_u64(learner, "relearns_by_cost");
    s.relearns_by_shift = json_u64(learner, "relearns_by_shift");
    s.canaries = json_u64(learner, "canaries");
    s.canary_adoptions = json_u64(learner, "canary_adoptions");
    const char* row = strstr(learner, "\"leaderboard\":[");
    for (int i = 0; i < 12 && row != nullptr; ++i) {
      row = strstr(row, "{\"rank\":");
      if (row == nullptr) break;
      char buf[128];
      const std::string rating = [&] {
        const char* r = strstr(row, "\"rating\":") + 9;
        return std::string(r, strcspn(r, ","));
      }();
      snprintf(buf, sizeof buf, "%s%llu:%lluk:%s:%llu/%llu/%llu:%llu", i == 0 ? "" : " ",
               static_cast<unsigned long long>(json_u64(row, "strategy")),
               static_cast<unsigned long long>(json_u64(row, "threshold") / 1024), rating.c_str(),
               static_cast<unsigned long long>(json_u64(row, "wins")),
               static_cast<unsigned long long>(json_u64(row, "losses")),
               static_cast<unsigned long long>(json_u64(row, "draws")),
               static_cast<unsigned long long>(json_u64(row, "epochs")));
      s.leaderboard += buf;
      ++row;
    }
  }
  for (const char* p = strstr(j, "\"sites\":["); p != nullptr && (p = strstr(p + 1, "{\"site\":")) != nullptr;)
    ++s.sites;
  return s;
}

// ------------------------------------------------------------------ workloads

/// One allocation site: sizes uniform in [min, max], `per_cycle` blocks each cycle, each kept for a lifetime
/// uniform in [life_min, life_max] cycles (0: freed in the cycle that allocated it, right after it is filled).
struct SiteSpec {
  const char* name;
  size_t min, max;
  unsigned per_cycle;
  unsigned life_min, life_max;
};

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

/// (A) Non-default-best when BigCache is held at its cap (cache_max=64m, as ci/bench-learn runs A in both modes).
/// Every block is at least 512 KiB, so the default threshold (256 KiB) maps each one (Map + BigCache). The live
/// set is ~60 MiB over 12 large classes; a 64 MiB cache misses a few percent of requests, and each miss maps, faults
/// in and later releases a 0.5-4 MiB block. (The table below was measured when BigCache also kept at most 4 blocks
/// per site bucket and class; with the cache free to grow, the default serves A about 5x faster.)
/// Thresholds above the sizes serve them from Pool spans, whose freed blocks keep their pages. Measured with
/// `ci/bench-learn --sweep` (fixed thresholds, 3,000 cycles, medians of 2 runs, 2 shared cores):
///   threshold          ns/cycle median   mean     faults/cycle  peak RSS  Map share
///   64-352 KiB (0-3)   89-98 k           496-549 k   208-209     138 MiB   100%
///   256 KiB (default)  98 k              527 k       208         137 MiB   100%
///   620 KiB (4)        103 k             573 k       204         139 MiB    93%
///   1 MiB (5)          68 k              387 k       132         152 MiB    56%
///   1.9 MiB (6)        34 k              159 k        54         175 MiB    25%
///   3.3 MiB (7)        21 k               79 k        27         199 MiB     8%
///   5.8-32 MiB (8-11)  18-19 k           52-57 k      16         191 MiB     0%
/// So strategies 8-11 are 5x faster on the median, 10x on the mean, with 13x fewer faults than the default, for
/// 1.4x the peak RSS: a learner should find them.
constexpr SiteSpec kWorkloadA[] = {
    {"decode_frame", 512 * KiB, 1 * MiB, 2, 0, 0},  // temporary buffers: freed at once
    {"build_index", 1 * MiB, 2 * MiB, 1, 3, 3},     // kept 3 cycles
    {"snapshot", 2 * MiB, 4 * MiB, 1, 8, 8},        // kept 8 cycles
    {"scratch", 512 * KiB, 4 * MiB, 1, 0, 16},      // anything from at once to 16 cycles
    {"tile", 768 * KiB, 1536 * KiB, 2, 1, 1},       // kept 1 cycle
};

/// (B) Default-best. 64-200 KiB blocks, mostly long-lived (kept 32-64 cycles), some freed at once. Every threshold
/// above 200 KiB, the default 256 KiB included, puts all of them in the Pool, where a freed block keeps its pages
/// and is reused at once; 64 and 112 KiB map all or half of them, and BigCache cannot hold a long-lived working set
/// of that many blocks, so they keep mapping and faulting. Measured with `ci/bench-learn --sweep` (50,000 cycles,
/// medians of 2 runs):
///   threshold            ns/cycle median  mean   faults/cycle  peak RSS  Map share
///   64 KiB (0)           53.8 k           90.9 k   27.9         61 MiB   100%
///   112 KiB (1)          10.9 k           51.2 k   16.2         70 MiB    55%
///   200 KiB - 32 MiB     1.79-1.89 k      2.56-2.76 k  0.35     71 MiB     0%   (one outlier run at 2.2 k)
///   256 KiB (default)    2.00 k           2.78 k    0.35        71 MiB     0%
/// The default is the best there is (tied, within run-to-run noise, with strategies 2-11, which are the same
/// allocator here): learning cannot win anything, so this measures what learning costs when there is nothing to
/// learn. (The seed's guess, "Pool retention hurts", does not hold here: Pool retention is what makes it fast.)
constexpr SiteSpec kWorkloadB[] = {
    {"parse_doc", 64 * KiB, 128 * KiB, 4, 32, 64},
    {"node_arena", 96 * KiB, 200 * KiB, 2, 32, 64},
    {"string_table", 128 * KiB, 200 * KiB, 1, 48, 64},
    {"tmp_row", 64 * KiB, 200 * KiB, 2, 0, 0},
};

/// A distinct function per site, so each is its own call site (hakmem's site is malloc's return address). The
/// asm names the site so identical-code folding cannot merge the instantiations.
template <int I>
__attribute__((noinline)) void* site_malloc(size_t n) {
  asm volatile("# site %0" : : "i"(I));
  void* p = malloc(n);
  asm volatile("" : : "r"(p) : "memory");
  return p;
}
using SiteFn = void* (*)(size_t);
constexpr SiteFn kSiteFns[] = {site_malloc<0>, site_malloc<1>, site_malloc<2>, site_malloc<3>,
                               site_malloc<4>, site_malloc<5>, site_malloc<6>, site_malloc<7>};

/// Fills the block as a program would start to: one byte per 4 KiB page, and the last byte.
inline void touch(void* p, size_t size, uint64_t v) {
  auto* c = static_cast<volatile unsigned char*>(p);
  for (size_t off = 0; off < size; off += 4096) c[off] = static_cast<unsigned char>(v + off);
  c[size - 1] = static_cast<unsigned char>(v);
}

double now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

struct RunResult {
  std::vector<double> cycle_ns;
  uint64_t mallocs = 0;
  long faults = 0;
  double total_ns = 0;
};

RunResult run(const SiteSpec* sites, size_t nsites, uint64_t cycles) {
  if (nsites > sizeof kSiteFns / sizeof kSiteFns[0]) fail("workload", "too many sites");
  unsigned max_life = 0;
  size_t per_cycle = 0;
  for (size_t s = 0; s < nsites; ++s) {
    max_life = std::max(max_life, sites[s].life_max);
    per_cycle += sites[s].per_cycle;
  }
  // Blocks due for free, by cycle modulo the longest lifetime + 1; capacity reserved up front so the benchmark's
  // own bookkeeping never allocates inside the timed loop.
  const size_t ring = max_life + 1;
  std::vector<std::vector<void*>> due(ring);
  for (auto& d : due) d.reserve(per_cycle * 2 + 16);
  RunResult r;
  r.cycle_ns.reserve(cycles);
  uint64_t rng = 0x1ea4'5eedull;
  std::vector<void*> now_free;
  now_free.reserve(per_cycle);
  const long f0 = minor_faults();
  const double t_start = now_ns();
  for (uint64_t c = 0; c < cycles; ++c) {
    const double t0 = now_ns();
    for (size_t s = 0; s < nsites; ++s) {
      const SiteSpec& spec = sites[s];
      for (unsigned k = 0; k < spec.per_cycle; ++k) {
        const size_t size = spec.min + splitmix64(rng) % (spec.max - spec.min + 1);
        const unsigned life =
            spec.life_min + static_cast<unsigned>(splitmix64(rng) % (spec.life_max - spec.life_min + 1));
        void* p = kSiteFns[s](size);
        if (p == nullptr) fail("workload", "malloc returned NULL");
        touch(p, size, c);
        ++r.mallocs;
        if (life == 0) {
          now_free.push_back(p);
        } else {
          due[(c + life) % ring].push_back(p);
        }
      }
    }
    for (void* p : now_free) free(p);
    now_free.clear();
    auto& d = due[c % ring];
    for (void* p : d) free(p);
    d.clear();
    r.cycle_ns.push_back(now_ns() - t0);
  }
  r.total_ns = now_ns() - t_start;
  r.faults = minor_faults() - f0;
  for (auto& d : due) {
    for (void* p : d) free(p);
    d.clear();
  }
  return r;
}

// ------------------------------------------------------------------ the selector's overhead per allocation

/// Sizes of the overhead loops, from a fixed seed (identical in every run): small ones log-uniform in 16 B - 1 KiB
/// (never a learner request: below the smallest threshold, 64 KiB), large ones uniform in 72-190 KiB (learner
/// requests that every strategy from 2 (200 KiB) up, and the default 256 KiB, serve from the Pool).
constexpr size_t kSeq = 4096;
uint32_t g_small[kSeq], g_large[kSeq];
void make_overhead_sizes() {
  uint64_t seed = 0x0be7'4eadull;
  for (size_t i = 0; i < kSeq; ++i) {
    const double u = static_cast<double>(splitmix64(seed) >> 11) / static_cast<double>(1ull << 53);
    g_small[i] = static_cast<uint32_t>(16.0 * __builtin_exp2(6.0 * u));
    g_large[i] = static_cast<uint32_t>(72 * KiB + splitmix64(seed) % (118 * KiB));
  }
}

/// malloc + free of the same block, `iters` times; one byte written. Named so callgrind's --toggle-collect can
/// count exactly these loops (and everything they call: malloc, free, and in learn mode note_large and every
/// epoch boundary that falls inside).
__attribute__((noinline)) double measured_small(uint64_t iters) {
  const double t0 = now_ns();
  for (uint64_t i = 0; i < iters; ++i) {
    auto* p = static_cast<volatile char*>(site_malloc<6>(g_small[i % kSeq]));
    p[0] = 1;
    free(const_cast<char*>(p));
  }
  return (now_ns() - t0) / static_cast<double>(iters);
}
template <int Tag>
__attribute__((noinline)) double large_pairs(uint64_t iters) {
  asm volatile("# loop %0" : : "i"(Tag));
  const double t0 = now_ns();
  for (uint64_t i = 0; i < iters; ++i) {
    auto* p = static_cast<volatile char*>(site_malloc<7>(g_large[i % kSeq]));
    p[0] = 1;
    free(const_cast<char*>(p));
  }
  return (now_ns() - t0) / static_cast<double>(iters);
}
/// The measured large loop and the warm-up: the same loop and call site, told apart by name for callgrind.
__attribute__((noinline)) double measured_large(uint64_t iters) { return large_pairs<0>(iters); }
__attribute__((noinline)) double warm_large(uint64_t iters) { return large_pairs<1>(iters); }

/// The overhead run: warms up on the large loop (in learn mode until the learner is FROZEN), then times both
/// loops, checking that the learner stayed FROZEN and that every large request was served by the Pool.
int run_overhead(bool hakmem, uint64_t iters, uint64_t max_warm_chunks) {
  make_overhead_sizes();
  const HakmemState start = hakmem ? hakmem_state() : HakmemState{};
  const bool learn = start.mode == "learn";
  uint64_t chunks = 0;
  HakmemState s = start;
  for (; chunks < max_warm_chunks; ++chunks) {
    warm_large(10000);
    if (!hakmem) continue;
    s = hakmem_state();
    if (!learn ? chunks + 1 >= 3 : s.state == "FROZEN") break;
  }
  if (!hakmem || !learn) ++chunks;
  printf("warm-up: %llu x 10000 large malloc/free pairs; learner %s (epochs %llu, strategy %llu)\n",
         static_cast<unsigned long long>(chunks), s.state.c_str(), static_cast<unsigned long long>(s.epochs),
         static_cast<unsigned long long>(s.strategy));
  if (learn && s.state != "FROZEN") fail("overhead", "the learner did not freeze during the warm-up");
  // Three reps each, interleaved; the median is reported.
  std::vector<double> small, large;
  const HakmemState before = hakmem ? hakmem_state() : HakmemState{};
  for (int r = 0; r < 3; ++r) {
    small.push_back(measured_small(iters));
    large.push_back(measured_large(iters));
  }
  if (hakmem) {
    const HakmemState after = hakmem_state();
    printf("measured: learner %s -> %s, epochs +%llu, relearns +%llu, canaries +%llu, strategy %llu; map allocs "
           "+%llu, pool allocs +%llu for %llu mallocs\n",
           before.state.c_str(), after.state.c_str(), static_cast<unsigned long long>(after.epochs - before.epochs),
           static_cast<unsigned long long>(after.relearns - before.relearns),
           static_cast<unsigned long long>(after.canaries - before.canaries),
           static_cast<unsigned long long>(after.strategy),
           static_cast<unsigned long long>(after.map_allocs - before.map_allocs),
           static_cast<unsigned long long>(after.pool_allocs - before.pool_allocs),
           static_cast<unsigned long long>(6 * iters));
    if (learn && (after.state != "FROZEN" || after.canaries != before.canaries || after.relearns != before.relearns))
      fail("overhead", "the learner left FROZEN (relearned, or ran a canary) during the measured loops");
    if (after.pool_allocs - before.pool_allocs < 6 * iters)
      fail("hakmem stats", "the Pool did not serve every allocation of the measured loops");
  }
  std::sort(small.begin(), small.end());
  std::sort(large.begin(), large.end());
  printf("RESULT allocator=%s mode=%s workload=overhead iters=%llu small_ns=%.2f large_ns=%.2f state=%s\n",
         hakmem ? "hakmem" : "glibc", hakmem ? start.mode.c_str() : "-", static_cast<unsigned long long>(iters),
         small[1], large[1], s.state.c_str());
  return 0;
}

[[noreturn]] void usage(const char* msg) {
  fprintf(stderr,
          "learn_vs_fixed: %s\nusage: BENCH_EXPECT=hakmem|glibc [BENCH_MODE=fixed|learn] learn_vs_fixed A|B "
          "[--cycles N | --scale F]\n",
          msg);
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no workload");
  const std::string workload = argv[1];
  double scale = 1.0;
  uint64_t exact_cycles = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--scale" && i + 1 < argc) {
      scale = atof(argv[++i]);
    } else if (a == "--cycles" && i + 1 < argc) {
      exact_cycles = strtoull(argv[++i], nullptr, 10);
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (!(scale > 0)) usage("--scale must be > 0");
  const char* expect = getenv("BENCH_EXPECT");
  if (expect == nullptr || *expect == '\0') usage("BENCH_EXPECT is required (which allocator must be serving)");

  const char* name = nullptr;
  if (workload == "overhead") {
    name = bench::prove_identity(expect);
    const bool hakmem = strcmp(name, "hakmem") == 0;
    if (hakmem) {
      const char* want = getenv("BENCH_MODE");
      const HakmemState st = hakmem_state();
      printf("proof: hakmem reports selector mode %s\n", st.mode.c_str());
      if (want == nullptr || st.mode != want) fail("mode", "BENCH_MODE does not match hakmem's mode " + st.mode);
    }
    return run_overhead(hakmem, exact_cycles != 0 ? exact_cycles : 200000, 400);
  }
  const SiteSpec* sites = nullptr;
  size_t nsites = 0;
  uint64_t cycles = 0;
  if (workload == "A") {
    sites = kWorkloadA;
    nsites = sizeof kWorkloadA / sizeof kWorkloadA[0];
    cycles = 24000;
  } else if (workload == "B") {
    sites = kWorkloadB;
    nsites = sizeof kWorkloadB / sizeof kWorkloadB[0];
    cycles = 200000;
  } else {
    usage(("unknown workload " + workload).c_str());
  }
  if (exact_cycles != 0) {
    cycles = exact_cycles;
  } else {
    cycles = std::max<uint64_t>(100, static_cast<uint64_t>(static_cast<double>(cycles) * scale));
  }

  name = bench::prove_identity(expect);
  const bool hakmem = strcmp(name, "hakmem") == 0;
  std::string mode = "-";
  HakmemState before;
  if (hakmem) {
    const char* want = getenv("BENCH_MODE");
    if (want == nullptr || *want == '\0') usage("BENCH_MODE=fixed|learn is required with hakmem");
    before = hakmem_state();
    mode = before.mode;
    printf("proof: hakmem reports selector mode %s (strategy %llu, threshold %llu), learner %s\n", mode.c_str(),
           static_cast<unsigned long long>(before.strategy), static_cast<unsigned long long>(before.threshold),
           before.state.c_str());
    if (mode != want) fail("mode", std::string("BENCH_MODE=") + want + " but hakmem runs mode=" + mode);
  }

  const RunResult r = run(sites, nsites, cycles);

  HakmemState after;
  if (hakmem) {
    after = hakmem_state();
    const uint64_t grew = (after.pool_allocs - before.pool_allocs) + (after.map_allocs - before.map_allocs);
    printf("proof: hakmem pool allocs +%llu, map allocs +%llu (together +%llu); the workload made %llu mallocs\n",
           static_cast<unsigned long long>(after.pool_allocs - before.pool_allocs),
           static_cast<unsigned long long>(after.map_allocs - before.map_allocs), static_cast<unsigned long long>(grew),
           static_cast<unsigned long long>(r.mallocs));
    if (grew < r.mallocs) fail("hakmem stats", "hakmem did not serve every allocation of the workload");
    printf("hakmem: bigcache hits +%llu misses +%llu, released %llu MiB, mapped now %llu MiB, sites profiled %zu\n",
           static_cast<unsigned long long>(after.cache_hits - before.cache_hits),
           static_cast<unsigned long long>(after.cache_misses - before.cache_misses),
           static_cast<unsigned long long>(after.release_bytes >> 20),
           static_cast<unsigned long long>(after.mapped >> 20), after.sites);
    if (after.state != "off") {
      printf("learner: state %s, epochs %llu (scored %llu), matches %llu, freezes %llu, relearns %llu (by cost "
             "%llu, by shift %llu), canaries %llu (adopted %llu)\n",
             after.state.c_str(), static_cast<unsigned long long>(after.epochs),
             static_cast<unsigned long long>(after.scored), static_cast<unsigned long long>(after.matches),
             static_cast<unsigned long long>(after.freezes), static_cast<unsigned long long>(after.relearns),
             static_cast<unsigned long long>(after.relearns_by_cost),
             static_cast<unsigned long long>(after.relearns_by_shift), static_cast<unsigned long long>(after.canaries),
             static_cast<unsigned long long>(after.canary_adoptions));
      printf("leaderboard (strategy:threshold:rating:W/L/D:epochs): %s\n", after.leaderboard.c_str());
    }
  }

  std::vector<double> sorted = r.cycle_ns;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double mean = r.total_ns / static_cast<double>(cycles);
  // The last quarter's median: where the run ended up, once learning had its chance.
  std::vector<double> tail(r.cycle_ns.end() - static_cast<long>(cycles / 4), r.cycle_ns.end());
  std::sort(tail.begin(), tail.end());
  const double tail_median = tail.empty() ? median : tail[tail.size() / 2];
  printf("RESULT allocator=%s mode=%s workload=%s cycles=%llu mallocs=%llu ns_median=%.0f ns_mean=%.0f "
         "ns_tail_median=%.0f faults_per_cycle=%.2f peak_rss_kb=%ld strategy=%llu threshold=%llu state=%s epochs=%llu "
         "scored=%llu freezes=%llu relearns=%llu relearns_by_cost=%llu canaries=%llu pool_allocs=%llu map_allocs=%llu "
         "cache_hits=%llu "
         "released_mib=%llu\n",
         name, mode.c_str(), workload.c_str(), static_cast<unsigned long long>(cycles),
         static_cast<unsigned long long>(r.mallocs), median, mean, tail_median,
         static_cast<double>(r.faults) / static_cast<double>(cycles), bench::peak_rss_kb(),
         static_cast<unsigned long long>(after.strategy), static_cast<unsigned long long>(after.threshold),
         after.state.c_str(), static_cast<unsigned long long>(after.epochs),
         static_cast<unsigned long long>(after.scored), static_cast<unsigned long long>(after.freezes),
         static_cast<unsigned long long>(after.relearns), static_cast<unsigned long long>(after.relearns_by_cost),
         static_cast<unsigned long long>(after.canaries),
         static_cast<unsigned long long>(after.pool_allocs - before.pool_allocs),
         static_cast<unsigned long long>(after.map_allocs - before.map_allocs),
         static_cast<unsigned long long>(after.cache_hits - before.cache_hits),
         static_cast<unsigned long long>((after.release_bytes - before.release_bytes) >> 20));
  return 0;
}
