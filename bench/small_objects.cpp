// Small-object benchmark (8 B - 1 KiB): one binary, the allocator chosen only by LD_PRELOAD, every run proving
// which allocator served it (SEED_NOTES.md 4: the seed benchmarked glibc for weeks by accident).
//
// Build: g++ -O2 -std=c++20 -pthread bench/small_objects.cpp -ldl -o small_objects
// Run:   BENCH_EXPECT=hakmem BENCH_HARDENING=default LD_PRELOAD=build/libhakmem.so ./small_objects pairs
//
// Usage: small_objects WORKLOAD [--scale F] [--reps N]
//   WORKLOAD  pairs   single thread, malloc + free of the same block, sizes from a fixed pseudo-random sequence
//             churn   single thread, 10k live slots, each op frees a random slot and refills it
//             sized   churn through operator new and sized operator delete (C++'s sized release, as a
//                     larson-style server's delete of a typed object makes it)
//             mt2     2 threads in a ring: each block is allocated by one thread and freed by the next
//             mt8     (cross-thread frees), interleaved with local churn over a 1k-slot working set per thread
//   --scale F multiplies the iteration counts (ci/bench-small --quick passes 0.3)
//   --iters N sets the iteration count exactly (per thread for mt*; ci/bench-small --callgrind uses it)
//   --reps N  repetitions inside the process; the median is reported (default 3)
//   BENCH_EXPECT=hakmem|mimalloc|jemalloc|tcmalloc|glibc is required: the run exits 1 unless that allocator is
//   the one serving. With hakmem, BENCH_HARDENING=default|paranoid is required too: the run exits 1 unless hakmem's
//   stats report that hardening mode (and, paranoid, a quarantine holding freed blocks after the workload; default,
//   no quarantine) and no misuse errors. Exit status: 0 ok, 1 proof failed, 2 usage.
//
// An op is one malloc plus the free of that block, wherever it happens; ns/op is wall time / ops (for mt*, the
// inverse of the aggregate throughput of all threads). The last line is machine-readable:
//   RESULT allocator=A hardening=H workload=W ns_per_op=X peak_rss_kb=K reps=N ops_per_rep=M
//   (H: hakmem's hardening mode, default or paranoid; "-" for the other allocators)
#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "proof.h"

namespace {

using bench::fail;
using bench::splitmix64;

/// hakmem's Pool counters, read through hak_stats_print_json found by dlsym (the benchmark never links it).
struct PoolCounters {
  uint64_t allocs = 0, frees = 0, errors = 0;
};

PoolCounters hakmem_pool_counters() {
  const char* json = bench::hakmem_json();
  const char* pool = bench::json_object(json, "pool");
  return {bench::json_u64(pool, "allocs"), bench::json_u64(pool, "frees"),
          bench::json_u64(bench::json_object(json, "errors"), "total")};
}

// ------------------------------------------------------------------ workloads

constexpr size_t kSizeCount = 1 << 14;  // long enough that branch predictors cannot learn the sequence
constexpr size_t kSizeMask = kSizeCount - 1;
uint16_t g_sizes[kSizeCount];

/// Sizes 8..1024, log-uniform (as many 8-16 B requests as 512 B-1 KiB ones), from a fixed seed: identical for
/// every allocator and every run.
void make_sizes() {
  uint64_t seed = 0x5eed'0000'00c0'ffeeull;
  for (size_t i = 0; i < kSizeCount; ++i) {
    const double u = static_cast<double>(splitmix64(seed) >> 11) / static_cast<double>(1ull << 53);
    g_sizes[i] = static_cast<uint16_t>(std::min(1024.0, std::floor(8.0 * std::exp2(7.0 * u + 1e-9))));
    if (g_sizes[i] < 8) g_sizes[i] = 8;
  }
}

/// Writes the first and last byte (the program uses its memory) and hides the block from the optimizer, which
/// would otherwise be free to delete a malloc/free pair whose result is unused.
inline void touch(void* p, size_t size, uint64_t v) {
  auto* c = static_cast<unsigned char*>(p);
  c[0] = static_cast<unsigned char>(v);
  c[size - 1] = static_cast<unsigned char>(v >> 8);
  asm volatile("" : : "r"(p) : "memory");
}

void* must_malloc(size_t size) {
  void* p = malloc(size);
  if (p == nullptr) fail("workload", "malloc returned NULL");
  return p;
}

double now_ns() {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

/// One repetition's outcome: elapsed wall time for `ops` ops, and the mallocs it made (for hakmem's proof).
struct RepResult {
  double ns = 0;
  uint64_t ops = 0, mallocs = 0;
};

RepResult run_pairs(uint64_t iters) {
  const double t0 = now_ns();
  for (uint64_t i = 0; i < iters; ++i) {
    const size_t size = g_sizes[i & kSizeMask];
    void* p = must_malloc(size);
    touch(p, size, i);
    free(p);
  }
  return {now_ns() - t0, iters, iters};
}

/// One block of `size` bytes: malloc, or with Sized operator new (whose sized delete is the release).
template <bool Sized>
inline void* take(size_t size) {
  if constexpr (Sized) {
    return ::operator new(size);
  } else {
    return must_malloc(size);
  }
}

/// Releases a block take<Sized>() made: free, or sized operator delete with its size.
template <bool Sized>
inline void give_back(void* p, size_t size) {
  if constexpr (Sized) {
    ::operator delete(p, size);
  } else {
    (void)size;
    free(p);
  }
}

template <bool Sized>
RepResult run_churn(uint64_t iters) {
  constexpr size_t kSlots = 10000;
  static void* slots[kSlots];
  static size_t sizes[kSlots];
  for (size_t s = 0; s < kSlots; ++s) {
    sizes[s] = g_sizes[s & kSizeMask];
    slots[s] = take<Sized>(sizes[s]);
    touch(slots[s], sizes[s], s);
  }
  uint64_t rng = 42;
  const double t0 = now_ns();
  for (uint64_t i = 0; i < iters; ++i) {
    const size_t s = static_cast<size_t>(splitmix64(rng) % kSlots);
    give_back<Sized>(slots[s], sizes[s]);
    sizes[s] = g_sizes[(i * 7 + 3) & kSizeMask];
    slots[s] = take<Sized>(sizes[s]);
    touch(slots[s], sizes[s], i);
  }
  const double ns = now_ns() - t0;
  for (size_t s = 0; s < kSlots; ++s) give_back<Sized>(slots[s], sizes[s]);
  return {ns, iters, iters + kSlots};
}

/// A single-producer single-consumer ring of blocks travelling to the thread that frees them.
struct alignas(64) Ring {
  static constexpr uint32_t kCap = 1024;
  alignas(64) std::atomic<uint32_t> head{0};  // consumer
  alignas(64) std::atomic<uint32_t> tail{0};  // producer
  alignas(64) void* slot[kCap];

  bool push(void* p) {
    const uint32_t t = tail.load(std::memory_order_relaxed);
    if (t - head.load(std::memory_order_acquire) == kCap) return false;
    slot[t % kCap] = p;
    tail.store(t + 1, std::memory_order_release);
    return true;
  }
  void* pop() {
    const uint32_t h = head.load(std::memory_order_relaxed);
    if (h == tail.load(std::memory_order_acquire)) return nullptr;
    void* p = slot[h % kCap];
    head.store(h + 1, std::memory_order_release);
    return p;
  }
};

/// T threads in a ring: thread i allocates `iters` blocks for thread i+1 to free (cross-thread frees) and frees
/// the `iters` blocks thread i-1 sends it, interleaved with `iters` local replace ops over its own 1k slots.
RepResult run_mt(unsigned threads, uint64_t iters) {
  constexpr size_t kLocal = 1000;
  std::vector<Ring> rings(threads);
  std::barrier start(threads + 1), done(threads + 1);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Ring& in = rings[t];
      Ring& out = rings[(t + 1) % threads];
      static thread_local void* local[kLocal];
      const size_t base = t * 997;  // each thread walks the size sequence from its own offset
      for (size_t s = 0; s < kLocal; ++s) {
        local[s] = must_malloc(g_sizes[(base + s) & kSizeMask]);
        touch(local[s], g_sizes[(base + s) & kSizeMask], s);
      }
      uint64_t received = 0;
      auto drain = [&](uint64_t max) {
        uint64_t n = 0;
        while (n < max) {
          void* p = in.pop();
          if (p == nullptr) break;
          free(p);
          ++n;
        }
        received += n;
        return n;
      };
      uint64_t rng = 1000 + t;
      start.arrive_and_wait();
      for (uint64_t i = 0; i < iters; ++i) {
        const size_t size = g_sizes[(base + i) & kSizeMask];
        void* p = must_malloc(size);
        touch(p, size, i);
        while (!out.push(p)) {
          if (drain(Ring::kCap) == 0) sched_yield();
        }
        drain(64);
        const size_t s = static_cast<size_t>(splitmix64(rng) % kLocal);
        free(local[s]);
        const size_t local_size = g_sizes[(base + i * 5 + 1) & kSizeMask];
        local[s] = must_malloc(local_size);
        touch(local[s], local_size, i);
      }
      while (received < iters) {
        if (drain(Ring::kCap) == 0) sched_yield();
      }
      done.arrive_and_wait();
      for (size_t s = 0; s < kLocal; ++s) free(local[s]);
    });
  }
  start.arrive_and_wait();
  const double t0 = now_ns();
  done.arrive_and_wait();
  const double ns = now_ns() - t0;
  for (std::thread& th : pool) th.join();
  return {ns, 2 * iters * threads, (2 * iters + kLocal) * threads};
}

[[noreturn]] void usage(const char* msg) {
  fprintf(
      stderr,
      "small_objects: %s\nusage: BENCH_EXPECT=hakmem|mimalloc|jemalloc|tcmalloc|glibc "
      "[BENCH_HARDENING=default|paranoid] small_objects pairs|churn|sized|mt2|mt8 [--scale F | --iters N] [--reps N]\n",
      msg);
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no workload");
  const std::string workload = argv[1];
  double scale = 1.0;
  uint64_t exact_iters = 0;
  int reps = 3;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--scale" && i + 1 < argc) {
      scale = atof(argv[++i]);
    } else if (a == "--iters" && i + 1 < argc) {
      exact_iters = strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (!(scale > 0) || reps < 1) usage("--scale must be > 0 and --reps >= 1");
  const char* expect = getenv("BENCH_EXPECT");
  if (expect == nullptr || *expect == '\0') usage("BENCH_EXPECT is required (which allocator must be serving)");

  // Base iteration counts: about 0.3 s per repetition for the fast allocators on a 2-core machine.
  auto scaled = [scale, exact_iters](double n) {
    return exact_iters != 0 ? exact_iters : static_cast<uint64_t>(std::max(1000.0, n * scale));
  };
  RepResult (*run)(uint64_t) = nullptr;
  uint64_t iters = 0;
  if (workload == "pairs") {
    run = run_pairs;
    iters = scaled(15e6);
  } else if (workload == "churn") {
    run = run_churn<false>;
    iters = scaled(6e6);
  } else if (workload == "sized") {
    run = run_churn<true>;
    iters = scaled(6e6);
  } else if (workload == "mt2") {
    run = [](uint64_t n) { return run_mt(2, n); };
    iters = scaled(1e6);
  } else if (workload == "mt8") {
    run = [](uint64_t n) { return run_mt(8, n); };
    iters = scaled(0.25e6);
  } else {
    usage(("unknown workload " + workload).c_str());
  }

  const char* name = bench::prove_identity(expect);
  const bool hakmem = strcmp(name, "hakmem") == 0;
  // Read before the workload (proved after it), so a run started without the mode to prove fails at once.
  const std::string hardening_want = hakmem ? bench::hardening_wanted() : "-";
  make_sizes();
  const PoolCounters before = hakmem ? hakmem_pool_counters() : PoolCounters{};
  std::string hardening = "-";

  std::vector<double> ns_per_op;
  uint64_t mallocs = 0, ops = 0;
  for (int r = 0; r < reps; ++r) {
    const RepResult res = run(iters);
    ns_per_op.push_back(res.ns / static_cast<double>(res.ops));
    mallocs += res.mallocs;
    ops = res.ops;
  }

  if (hakmem) {
    const PoolCounters after = hakmem_pool_counters();
    const uint64_t da = after.allocs - before.allocs, df = after.frees - before.frees;
    printf("proof: hakmem pool allocs %llu -> %llu (+%llu), frees +%llu; the workload made %llu mallocs and as many "
           "frees\n",
           static_cast<unsigned long long>(before.allocs), static_cast<unsigned long long>(after.allocs),
           static_cast<unsigned long long>(da), static_cast<unsigned long long>(df),
           static_cast<unsigned long long>(mallocs));
    if (da < mallocs || df < mallocs)
      fail("hakmem stats", "hakmem's Pool did not serve every allocation of the workload");
    // Paranoid mode reports misuse it finds (a canary or a quarantined block's fill changed); the workload makes
    // none, so any report is the allocator's own error and the run must not pass as a measurement.
    if (after.errors != 0) fail("hakmem stats", "hakmem reported " + std::to_string(after.errors) + " misuse errors");
    hardening = bench::prove_hardening(hardening_want, true);
  }

  std::vector<double> sorted = ns_per_op;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  printf("reps:");
  for (double v : ns_per_op) printf(" %.2f", v);
  printf(" ns/op\n");
  printf("RESULT allocator=%s hardening=%s workload=%s ns_per_op=%.3f peak_rss_kb=%ld reps=%d ops_per_rep=%llu\n", name,
         hardening.c_str(), workload.c_str(), median, bench::peak_rss_kb(), reps, static_cast<unsigned long long>(ops));
  return 0;
}
