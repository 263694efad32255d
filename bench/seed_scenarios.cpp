// The seed's benchmark scenarios (SEED_NOTES.md "Its benchmark"), plus the cold-churn case the seed lacked: one
// binary, the allocator chosen only by LD_PRELOAD, every run proving which allocator served it (SEED_NOTES.md 4:
// the seed benchmarked glibc for weeks by accident, and once compared hakmem with hakmem).
//
// Build: g++ -O2 -std=c++20 bench/seed_scenarios.cpp -ldl -o seed_scenarios
// Run:   BENCH_EXPECT=hakmem BENCH_MODE=fixed BENCH_HARDENING=default LD_PRELOAD=build/bench/libhakmem.so
//           ./seed_scenarios vm1000   (one command line)
//
// Usage: seed_scenarios SCENARIO [--scale F] [--cycles N]
//   SCENARIO  json    64 KiB x 1000 cycles
//             mir     256 KiB x 100
//             vm10    2 MiB x 10
//             vm1000  2 MiB x 1000
//             mixed   1000 cycles of 64 KiB; every 10th cycle also 256 KiB, every 100th also 2 MiB
//             churn   10 rounds of: allocate 100 blocks of 2 MiB, touch them all, free them all (cold churn: the
//                     case that makes a cache evict and the releaser work); a "cycle" is one block: its malloc
//                     and touch, plus its free, timed separately and summed (1000 samples)
//   A cycle allocates its block(s), writes one byte in every 4 KiB page of each, and frees them. No warm-up: the
//   first cycles (cold mmaps, page faults) are part of each scenario, as in the seed.
//   --scale F   multiplies the cycle (churn: round) count, at least 1 (ci/bench --quick)
//   --cycles N  sets it exactly (0: the start-up baseline ci/bench subtracts from strace counts)
//   BENCH_EXPECT=hakmem|glibc|mimalloc|jemalloc|tcmalloc|scudo is required: the run exits 1 unless that allocator is
//   the one serving (bench/proof.h). With hakmem, BENCH_MODE=fixed|learn is required too, the run exits 1 unless
//   hakmem reports that mode, and hakmem's Pool + Map counters must have grown by every malloc the scenario made.
//   With hakmem, BENCH_HARDENING=default|paranoid is required as well: the run exits 1 unless hakmem's stats report
//   that hardening mode (paranoid: with its quarantine set up; default: without one).
//
// Reported (the last line is machine-readable):
//   RESULT allocator=A mode=M hardening=H scenario=S cycles=N ns_median=X ns_p99=X ns_mean=X faults_per_cycle=X
//          faults_late_per_cycle=X peak_rss_kb=K rss_start_kb=K rss_end_kb=K rss_trim_kb=K mallocs=N timer_ns=X [hakmem
//          counters]
//   ns_*          per-cycle wall times (CLOCK_MONOTONIC): median, 99th percentile (nearest rank), mean
//   timer_ns      median of 1001 empty timed intervals: what every cycle's time includes for the clock itself
//   faults        minor page faults (getrusage) during the cycles / cycles
//   faults_late   the same over the second half of the cycles (churn: of its rounds), past the cold first ones:
//                 the faults of the warm cycles a median is made of
//   peak_rss_kb   getrusage ru_maxrss at the end (the whole process, its start-up included)
//   rss_start_kb  current RSS (/proc/self/statm) just before the first cycle
//   rss_end_kb    current RSS right after the last free
//   rss_trim_kb   current RSS after the allocator was asked to give free memory back: malloc_trim(0) (hakmem:
//                 flushes BigCache and the releaser, like hak_flush; glibc: trims), plus mi_collect(true)
//                 (mimalloc), mallctl("arena.4096.purge") (jemalloc), MallocExtension_ReleaseFreeMemory()
//                 (tcmalloc), mallopt(M_PURGE) (Scudo) where the library defines them
//   hakmem only:  pool_allocs map_allocs cache_hits (BigCache and large-slot hits) cache_misses cache_evictions
//                 release_blocks release_flushes munmap_calls (read after the trim, so everything pending has been
//                 flushed) and learner state
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "proof.h"

namespace {

using bench::fail;

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

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

/// Current resident set, KiB, from /proc/self/statm (read with a stack buffer: no allocation).
long current_rss_kb() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;
  const int n = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return n == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/// One byte in every 4 KiB page, as the seed's scenarios do.
inline void touch(void* p, size_t size, uint64_t v) {
  auto* c = static_cast<volatile unsigned char*>(p);
  for (size_t off = 0; off < size; off += 4096) c[off] = static_cast<unsigned char>(v + off);
}

inline void* checked_malloc(size_t n) {
  void* p = malloc(n);
  if (p == nullptr) fail("scenario", "malloc returned NULL");
  asm volatile("" : : "r"(p) : "memory");
  return p;
}

struct Run {
  std::vector<double> cycle_ns;
  uint64_t mallocs = 0;
  long late_faults0 = -1;  ///< minor faults when the second half of the cycles began (see mark_late())
  size_t late_first = 0;   ///< index in cycle_ns of the second half's first cycle

  /// Marks the start of the second half (churn: of its rounds): the cycles whose faults faults_late_per_cycle counts.
  void mark_late() {
    late_faults0 = minor_faults();
    late_first = cycle_ns.size();
  }
};

/// json, mir, vm*: one block of `size` per cycle.
[[gnu::noinline]] Run run_fixed(size_t size, uint64_t cycles) {  // noinline: ci/bench counts its instructions by name
  Run r;
  r.cycle_ns.reserve(cycles);
  for (uint64_t c = 0; c < cycles; ++c) {
    if (c == cycles / 2) r.mark_late();
    const double t0 = now_ns();
    void* p = checked_malloc(size);
    touch(p, size, c);
    free(p);
    r.cycle_ns.push_back(now_ns() - t0);
  }
  r.mallocs = cycles;
  return r;
}

/// mixed: 64 KiB every cycle, 256 KiB every 10th, 2 MiB every 100th (the cycle count 0, 10, ... includes them).
[[gnu::noinline]] Run run_mixed(uint64_t cycles) {
  Run r;
  r.cycle_ns.reserve(cycles);
  for (uint64_t c = 0; c < cycles; ++c) {
    if (c == cycles / 2) r.mark_late();
    const double t0 = now_ns();
    void* a = checked_malloc(64 * KiB);
    touch(a, 64 * KiB, c);
    void* b = nullptr;
    void* v = nullptr;
    if (c % 10 == 0) {
      b = checked_malloc(256 * KiB);
      touch(b, 256 * KiB, c);
      ++r.mallocs;
    }
    if (c % 100 == 0) {
      v = checked_malloc(2 * MiB);
      touch(v, 2 * MiB, c);
      ++r.mallocs;
    }
    free(a);
    free(b);  // free(NULL) is a no-op in every allocator
    free(v);
    ++r.mallocs;
    r.cycle_ns.push_back(now_ns() - t0);
  }
  return r;
}

/// churn: `rounds` of 100 x 2 MiB allocated and touched, then all freed. A cycle is one block: malloc + touch,
/// plus that block's free (timed apart, since the frees come after the whole round's allocations).
[[gnu::noinline]] Run run_churn(uint64_t rounds) {
  constexpr size_t kBlocks = 100, kSize = 2 * MiB;
  Run r;
  r.cycle_ns.reserve(rounds * kBlocks);
  void* blocks[kBlocks];
  double alloc_ns[kBlocks];
  for (uint64_t round = 0; round < rounds; ++round) {
    if (round == rounds / 2) r.mark_late();
    for (size_t i = 0; i < kBlocks; ++i) {
      const double t0 = now_ns();
      blocks[i] = checked_malloc(kSize);
      touch(blocks[i], kSize, round + i);
      alloc_ns[i] = now_ns() - t0;
    }
    for (size_t i = 0; i < kBlocks; ++i) {
      const double t0 = now_ns();
      free(blocks[i]);
      r.cycle_ns.push_back(alloc_ns[i] + (now_ns() - t0));
    }
    r.mallocs += kBlocks;
  }
  return r;
}

/// Asks the serving allocator to give its free memory back, with whatever it defines for that (see the header).
std::string trim_all() {
  std::string how = "malloc_trim(0)";
  malloc_trim(0);
  if (auto mi_collect = reinterpret_cast<void (*)(bool)>(dlsym(RTLD_DEFAULT, "mi_collect"))) {
    mi_collect(true);
    how += "+mi_collect(true)";
  }
  if (auto mallctl =
          reinterpret_cast<int (*)(const char*, void*, size_t*, void*, size_t)>(dlsym(RTLD_DEFAULT, "mallctl"))) {
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096 = MALLCTL_ARENAS_ALL
    how += "+mallctl(arena.all.purge)";
  }
  if (auto release = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"))) {
    release();
    how += "+MallocExtension_ReleaseFreeMemory()";
  }
  if (dlsym(RTLD_DEFAULT, "__scudo_print_stats") != nullptr) {
    mallopt(-101, 0);  // M_PURGE in Scudo's malloc.h: release free memory to the OS now
    how += "+mallopt(M_PURGE)";
  }
  return how;
}

struct HakmemCounters {
  std::string mode, state;
  uint64_t threshold = 0, pool_allocs = 0, map_allocs = 0, cache_hits = 0, cache_misses = 0, evictions = 0,
           release_blocks = 0, flushes = 0, munmap_calls = 0, pending = 0, errors = 0;
};

HakmemCounters hakmem_counters() {
  const char* j = bench::hakmem_json();
  HakmemCounters h;
  const char* sel = bench::json_object(j, "selector");
  h.mode = bench::json_str(sel, "mode");
  h.threshold = bench::json_u64(sel, "threshold");
  h.pool_allocs = bench::json_u64(bench::json_object(j, "pool"), "allocs");
  h.map_allocs = bench::json_u64(bench::json_object(j, "map"), "allocs");
  const char* cache = bench::json_object(j, "bigcache");
  // Warm reuses: BigCache hits plus hits of the thread's large slot in front of it.
  h.cache_hits = bench::json_u64(cache, "hits") + bench::json_u64(bench::json_object(j, "map"), "slot_hits");
  h.cache_misses = bench::json_u64(cache, "misses");
  h.evictions = bench::json_u64(cache, "evictions");
  const char* rel = bench::json_object(j, "release");
  h.release_blocks = bench::json_u64(rel, "blocks");
  h.flushes = bench::json_u64(rel, "flushes");
  h.munmap_calls = bench::json_u64(rel, "munmap_calls");
  h.pending = bench::json_u64(rel, "pending_bytes");
  h.state = bench::json_str(bench::json_object(j, "learner"), "state");
  h.errors = bench::json_u64(bench::json_object(j, "errors"), "total");
  return h;
}

double percentile(std::vector<double> v, double q) {  // nearest rank
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

[[noreturn]] void usage(const char* why) {
  fprintf(
      stderr,
      "seed_scenarios: %s\nusage: BENCH_EXPECT=hakmem|glibc|mimalloc|jemalloc|tcmalloc|scudo [BENCH_MODE=fixed|learn] "
      "[BENCH_HARDENING=default|paranoid] "
      "seed_scenarios json|mir|vm10|vm1000|mixed|churn [--scale F] [--cycles N]\n",
      why);
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no scenario");
  const std::string scenario = argv[1];
  double scale = 1;
  long long exact = -1;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
      scale = atof(argv[++i]);
    } else if (strcmp(argv[i], "--cycles") == 0 && i + 1 < argc) {
      exact = atoll(argv[++i]);
    } else {
      usage("bad argument");
    }
  }
  uint64_t base = 0;
  if (scenario == "json" || scenario == "vm1000" || scenario == "mixed")
    base = 1000;
  else if (scenario == "mir")
    base = 100;
  else if (scenario == "vm10" || scenario == "churn")
    base = 10;
  else
    usage("unknown scenario");
  const uint64_t cycles = exact >= 0 ? static_cast<uint64_t>(exact)
                                     : std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(base * scale)));

  const char* expect = getenv("BENCH_EXPECT");
  if (expect == nullptr || *expect == '\0') usage("BENCH_EXPECT is required (which allocator must be serving)");
  const char* name = bench::prove_identity(expect);
  const bool hakmem = strcmp(name, "hakmem") == 0;
  std::string mode = "-", hardening_want = "-", hardening = "-";
  HakmemCounters h0;
  if (hakmem) {
    const char* want = getenv("BENCH_MODE");
    if (want == nullptr || (strcmp(want, "fixed") != 0 && strcmp(want, "learn") != 0))
      usage("BENCH_MODE=fixed|learn is required with hakmem");
    h0 = hakmem_counters();
    if (h0.mode != want) fail("mode", std::string("BENCH_MODE=") + want + " but hakmem reports mode " + h0.mode);
    mode = h0.mode;
    hardening_want = bench::hardening_wanted();
    printf("proof: hakmem selector mode %s, threshold %llu\n", h0.mode.c_str(),
           static_cast<unsigned long long>(h0.threshold));
  }

  // What an empty timed interval reads (two clock_gettime calls and the clock's granularity), for scale: every
  // cycle's time includes it once, whatever the allocator. Reported, never subtracted.
  std::vector<double> empty(1001);
  for (double& e : empty) {
    const double t0 = now_ns();
    e = now_ns() - t0;
  }
  const double timer_ns = percentile(empty, 0.5);

  const long rss_start = current_rss_kb();
  const long f0 = minor_faults();
  Run r;
  if (scenario == "json")
    r = run_fixed(64 * KiB, cycles);
  else if (scenario == "mir")
    r = run_fixed(256 * KiB, cycles);
  else if (scenario == "vm10" || scenario == "vm1000")
    r = run_fixed(2 * MiB, cycles);
  else if (scenario == "mixed")
    r = run_mixed(cycles);
  else
    r = run_churn(cycles);
  const long f1 = minor_faults();
  const long faults = f1 - f0;
  const long rss_end = current_rss_kb();
  const std::string how = trim_all();
  const long rss_trim = current_rss_kb();
  const long peak = bench::peak_rss_kb();
  printf("trim: %s\n", how.c_str());

  const size_t n = r.cycle_ns.size();
  const size_t late_n = r.late_faults0 < 0 ? 0 : n - r.late_first;
  const double late_faults = late_n == 0 ? 0.0 : static_cast<double>(f1 - r.late_faults0) / static_cast<double>(late_n);
  double sum = 0;
  for (double v : r.cycle_ns) sum += v;
  char extra[1024] = "";
  if (hakmem) {
    const HakmemCounters h1 = hakmem_counters();
    const uint64_t served = (h1.pool_allocs - h0.pool_allocs) + (h1.map_allocs - h0.map_allocs);
    printf("proof: hakmem served %llu allocations during the scenario (pool %llu, map %llu; cache hits %llu) for "
           "%llu mallocs\n",
           static_cast<unsigned long long>(served), static_cast<unsigned long long>(h1.pool_allocs - h0.pool_allocs),
           static_cast<unsigned long long>(h1.map_allocs - h0.map_allocs),
           static_cast<unsigned long long>(h1.cache_hits - h0.cache_hits), static_cast<unsigned long long>(r.mallocs));
    if (served < r.mallocs) fail("proof", "hakmem's counters grew by fewer allocations than the scenario made");
    if (h1.errors != 0) fail("proof", "hakmem reported misuse errors");
    // Not required to hold freed blocks here: vm*, churn free only Map blocks, which paranoid mode protects
    // instead of quarantining.
    hardening = bench::prove_hardening(hardening_want, false);
    snprintf(extra, sizeof extra,
             " threshold=%llu state=%s pool_allocs=%llu map_allocs=%llu cache_hits=%llu cache_misses=%llu "
             "cache_evictions=%llu release_blocks=%llu release_flushes=%llu munmap_calls=%llu pending_after_trim=%llu",
             static_cast<unsigned long long>(h1.threshold), h1.state.c_str(),
             static_cast<unsigned long long>(h1.pool_allocs - h0.pool_allocs),
             static_cast<unsigned long long>(h1.map_allocs - h0.map_allocs),
             static_cast<unsigned long long>(h1.cache_hits - h0.cache_hits),
             static_cast<unsigned long long>(h1.cache_misses - h0.cache_misses),
             static_cast<unsigned long long>(h1.evictions - h0.evictions),
             static_cast<unsigned long long>(h1.release_blocks - h0.release_blocks),
             static_cast<unsigned long long>(h1.flushes - h0.flushes),
             static_cast<unsigned long long>(h1.munmap_calls - h0.munmap_calls),
             static_cast<unsigned long long>(h1.pending));
  }
  printf("RESULT allocator=%s mode=%s hardening=%s scenario=%s cycles=%zu ns_median=%.1f ns_p99=%.1f ns_mean=%.1f "
         "faults_per_cycle=%.2f faults_late_per_cycle=%.2f peak_rss_kb=%ld rss_start_kb=%ld rss_end_kb=%ld "
         "rss_trim_kb=%ld mallocs=%llu timer_ns=%.1f%s\n",
         name, mode.c_str(), hardening.c_str(), scenario.c_str(), n, percentile(r.cycle_ns, 0.5),
         percentile(r.cycle_ns, 0.99), n == 0 ? 0.0 : sum / static_cast<double>(n),
         n == 0 ? 0.0 : static_cast<double>(faults) / static_cast<double>(n), late_faults, peak, rss_start, rss_end,
         rss_trim, static_cast<unsigned long long>(r.mallocs), timer_ns, extra);
  return 0;
}
