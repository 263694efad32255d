// Fork: the process allocator (hak_* API) forked from a multithreaded program. The atfork protocol
// must leave the child with consistent structures, no lock held, and the dead threads' heaps retired
// so their spans can be adopted; the parent must carry on untouched.
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/sanitizer.h"

namespace {

using hakmem_test::kTsan;

#define SKIP_UNDER_TSAN()                                                                                              \
  do {                                                                                                                 \
    if (kTsan) {                                                                                                       \
      GTEST_SKIP() << "TSan does not support fork() while other threads run (its runtime may deadlock or "             \
                      "report in the child); the fork protocol is tested in the normal and ASan builds";               \
    }                                                                                                                  \
  } while (0)

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

/// How long the parent waits for one child before killing it and failing.
constexpr int kChildTimeoutMs = 20000;
/// The child's own watchdog (SIGALRM), shorter than the parent's, so a hang shows as signal 14.
constexpr unsigned kChildAlarmSeconds = 15;

/// The byte a block keyed `key` holds at offset i (cheap to write, position-dependent).
inline unsigned char pattern_byte(uint64_t key, size_t i) {
  return static_cast<unsigned char>((key * 131) ^ (i * 7) ^ (i >> 9));
}

/// Writes the pattern to the first and last 256 bytes and one byte per 4 KiB page.
void mark(void* p, size_t n, uint64_t key) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n && i < 256; ++i) b[i] = pattern_byte(key, i);
  for (size_t i = 4096; i < n; i += 4096) b[i] = pattern_byte(key, i);
  for (size_t i = n > 256 ? n - 256 : 0; i < n; ++i) b[i] = pattern_byte(key, i);
}
bool marked(const void* p, size_t n, uint64_t key) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n && i < 256; ++i) {
    if (b[i] != pattern_byte(key, i)) return false;
  }
  for (size_t i = 4096; i < n; i += 4096) {
    if (b[i] != pattern_byte(key, i)) return false;
  }
  for (size_t i = n > 256 ? n - 256 : 0; i < n; ++i) {
    if (b[i] != pattern_byte(key, i)) return false;
  }
  return true;
}

/**
 * Sizes the parent's worker threads use: small 16 B .. 2 KiB, medium 8 .. 128 KiB, large (Map, with the
 * default 256 KiB threshold) 300 KiB .. 1 MiB. The held-block test relies on these never touching the
 * 3000-byte class or the 1.5 MiB large class.
 */
size_t worker_size(std::mt19937_64& rng) {
  const unsigned r = static_cast<unsigned>(rng() % 100);
  if (r < 90) return 16 + rng() % (2 * kKiB - 16);
  if (r < 97) return 8 * kKiB + rng() % (120 * kKiB);
  return 300 * kKiB + rng() % (724 * kKiB);
}

/// Threads that allocate, verify and free through the hak_* API until stopped.
class Workers {
public:
  explicit Workers(size_t n) {
    for (size_t t = 0; t < n; ++t) threads_.emplace_back([this, t] { run(t); });
  }
  ~Workers() { stop(); }

  void stop() {
    stop_.store(true);
    for (std::thread& th : threads_) {
      if (th.joinable()) th.join();
    }
  }
  uint64_t ops() const { return ops_.load(); }
  uint64_t failures() const { return failures_.load(); }
  /// Waits until the workers have done `more` further operations (so forks land mid-run).
  void wait_for_progress(uint64_t more) const {
    const uint64_t target = ops_.load() + more;
    while (ops_.load() < target && failures_.load() == 0) std::this_thread::yield();
  }

private:
  void run(size_t t) {
    std::mt19937_64 rng(0xF0F0 + t);
    struct Live {
      void* p;
      size_t n;
      uint64_t key;
    };
    Live live[16];
    size_t count = 0;
    uint64_t key = uint64_t{t} << 32;
    while (!stop_.load(std::memory_order_relaxed)) {
      if (count < 16 && (count == 0 || rng() % 2 == 0)) {
        const size_t n = worker_size(rng);
        void* p = hak_alloc(n);
        if (p == nullptr || hak_usable_size(p) < n) {
          failures_.fetch_add(1);
          continue;
        }
        mark(p, n, ++key);
        live[count++] = Live{p, n, key};
      } else {
        const size_t j = rng() % count;
        if (!marked(live[j].p, live[j].n, live[j].key)) failures_.fetch_add(1);
        hak_free(live[j].p);
        live[j] = live[--count];
      }
      ops_.fetch_add(1, std::memory_order_relaxed);
    }
    while (count > 0) {
      --count;
      if (!marked(live[count].p, live[count].n, live[count].key)) failures_.fetch_add(1);
      hak_free(live[count].p);
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0};
  std::atomic<uint64_t> failures_{0};
  std::vector<std::thread> threads_;
};

// ------------------------------------------------------------------ the child side (no gtest here)

/// Child exit codes: 0 is success; each failure has its own code so the parent can name it.
enum ChildExit : int {
  kChildOk = 0,
  kChildAllocFailed = 10,
  kChildUsableTooSmall = 11,
  kChildPatternBroken = 12,
  kChildCallocNotZero = 13,
  kChildReallocLost = 14,
  kChildHeldUsable = 20,
  kChildHeldPattern = 21,
  kChildHeldNotReused = 22,
  kChildBigNotUsable = 23,
  kChildStatsWrite = 30,
};

const char* child_exit_name(int code) {
  switch (code) {
  case kChildAllocFailed: return "an allocation failed";
  case kChildUsableTooSmall: return "hak_usable_size < requested";
  case kChildPatternBroken: return "a block's contents changed";
  case kChildCallocNotZero: return "hak_calloc returned non-zero bytes";
  case kChildReallocLost: return "hak_realloc lost contents";
  case kChildHeldUsable: return "held block: hak_usable_size wrong in the child";
  case kChildHeldPattern: return "held block: contents differ in the child";
  case kChildHeldNotReused: return "held block's class: allocation did not reuse the adopted span";
  case kChildBigNotUsable: return "held Map block: not reusable in the child";
  case kChildStatsWrite: return "could not write the stats";
  default: return "unknown exit code";
  }
}

/// Writes all of [t, t+n) to the fd in *arg (a hak_write_fn).
void write_fd(void* arg, const char* t, size_t n) {
  const int fd = *static_cast<int*>(arg);
  while (n > 0) {
    const ssize_t w = write(fd, t, n);
    if (w <= 0) return;
    t += w;
    n -= static_cast<size_t>(w);
  }
}

/**
 * The child's workload: thousands of allocations of small and large blocks (hak_alloc, hak_calloc,
 * hak_realloc), each checked with hak_usable_size and a pattern before it is freed. Uses no other
 * allocator (fixed arrays only).
 */
int child_workload(uint64_t seed, size_t ops) {
  std::mt19937_64 rng(seed);
  struct Live {
    void* p;
    size_t n;
    uint64_t key;
  };
  Live live[32];
  size_t count = 0;
  uint64_t key = seed << 20;
  for (size_t i = 0; i < ops; ++i) {
    const unsigned op = static_cast<unsigned>(rng() % 100);
    if (count < 32 && (count == 0 || op < 50)) {
      const unsigned r = static_cast<unsigned>(rng() % 100);
      const size_t n = r < 85   ? 1 + rng() % (4 * kKiB)
                       : r < 95 ? 4 * kKiB + rng() % (200 * kKiB)
                                : 256 * kKiB + rng() % (2 * kMiB);
      void* p = r % 7 == 0 ? hak_calloc(1, n) : hak_alloc(n);
      if (p == nullptr) return kChildAllocFailed;
      if (hak_usable_size(p) < n) return kChildUsableTooSmall;
      if (r % 7 == 0) {
        const auto* b = static_cast<const unsigned char*>(p);
        if (b[0] != 0 || b[n - 1] != 0 || b[n / 2] != 0) return kChildCallocNotZero;
      }
      mark(p, n, ++key);
      live[count++] = Live{p, n, key};
    } else if (op < 85) {
      const size_t j = rng() % count;
      if (!marked(live[j].p, live[j].n, live[j].key)) return kChildPatternBroken;
      hak_free(live[j].p);
      live[j] = live[--count];
    } else {
      const size_t j = rng() % count;
      const size_t n = op % 2 == 0 ? 1 + rng() % (8 * kKiB) : 128 * kKiB + rng() % kMiB;
      if (!marked(live[j].p, live[j].n, live[j].key)) return kChildPatternBroken;
      void* q = hak_realloc(live[j].p, n);
      if (q == nullptr) return kChildAllocFailed;
      if (hak_usable_size(q) < n) return kChildUsableTooSmall;
      // The first 256 bytes carry the pattern in both the old and new block sizes.
      const size_t keep = n < live[j].n ? n : live[j].n;
      const auto* b = static_cast<const unsigned char*>(q);
      for (size_t k = 0; k < keep && k < 256; ++k) {
        if (b[k] != pattern_byte(live[j].key, k)) return kChildReallocLost;
      }
      mark(q, n, ++key);
      live[j] = Live{q, n, key};
    }
  }
  while (count > 0) {
    --count;
    if (!marked(live[count].p, live[count].n, live[count].key)) return kChildPatternBroken;
    hak_free(live[count].p);
  }
  return kChildOk;
}

/// Ends the child: writes its stats as JSON to `stats_fd` and _exits with `code`.
[[noreturn]] void child_exit(int code, int stats_fd) {
  if (code == kChildOk) {
    int fd = stats_fd;
    hak_stats_print_json(&write_fd, &fd);
  }
  close(stats_fd);
  _exit(code);
}

// ------------------------------------------------------------------ the parent side

/// How a child ended.
struct ChildResult {
  bool timed_out = false;
  int status = 0;
  std::string stats;  ///< what the child wrote to the stats pipe

  bool ok() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string describe() const {
    if (timed_out) return "child hung (killed after " + std::to_string(kChildTimeoutMs / 1000) + " s): deadlock?";
    if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      return "child killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")" +
             (sig == SIGALRM ? ": its watchdog fired, deadlock?" : "");
    }
    if (WIFEXITED(status)) {
      return "child exited " + std::to_string(WEXITSTATUS(status)) + ": " + child_exit_name(WEXITSTATUS(status));
    }
    return "child status " + std::to_string(status);
  }
};

/**
 * Forks; the child runs body() (which must end in child_exit) with the write end of a stats pipe. The
 * parent polls waitpid with WNOHANG for up to kChildTimeoutMs, kills a hung child, and collects what it
 * wrote. A deadlocked child thus fails the test instead of hanging ctest.
 */
template <class Body>
ChildResult fork_child(Body&& body) {
  ChildResult res;
  int fds[2];
  if (pipe(fds) != 0) {
    res.status = -1;
    return res;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    res.status = -1;
    return res;
  }
  if (pid == 0) {
    close(fds[0]);
    alarm(kChildAlarmSeconds);
    body(fds[1]);
    _exit(99);  // body() must not return
  }
  close(fds[1]);
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    const pid_t r = waitpid(pid, &res.status, WNOHANG);
    if (r == pid) break;
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (r < 0 || elapsed_ms > kChildTimeoutMs) {
      kill(pid, SIGKILL);
      waitpid(pid, &res.status, 0);
      res.timed_out = true;
      break;
    }
    usleep(2000);
  }
  // The child has exited and the parent's write end is closed: read to EOF.
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) res.stats.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return res;
}

/// The child's JSON stats must exist and show no error at all.
void expect_clean_stats(const ChildResult& r, int fork_no) {
  EXPECT_NE(r.stats.find("{\"hakmem\":"), std::string::npos) << "fork " << fork_no << ": no JSON stats: " << r.stats;
  EXPECT_NE(r.stats.find("\"errors\":{\"total\":0,"), std::string::npos)
      << "fork " << fork_no << ": the child reported errors: " << r.stats;
}

/// A number from the stats JSON: "section":{... "key":N ...}; ~0 when absent.
uint64_t json_number(const std::string& json, const std::string& section, const std::string& key) {
  const size_t s = json.find("\"" + section + "\":{");
  if (s == std::string::npos) return ~uint64_t{0};
  const size_t k = json.find("\"" + key + "\":", s);
  if (k == std::string::npos) return ~uint64_t{0};
  return std::strtoull(json.c_str() + k + key.size() + 3, nullptr, 10);
}

std::string parent_stats() {
  std::string out;
  hak_stats_print_json([](void* arg, const char* t, size_t n) { static_cast<std::string*>(arg)->append(t, n); }, &out);
  return out;
}

// 4 threads allocate and free small and large blocks in a loop; main forks 20 times while they run.
// Each child, alone in its copy, runs thousands of allocations of small and large blocks, checks
// hak_usable_size and contents, frees everything and reports clean stats. Every child must exit 0:
// a lock held across fork would hang it (caught by the watchdog), a structure copied mid-update
// would crash it or break a block.
TEST(ForkApi, ForkWhileThreadsAllocate) {
  SKIP_UNDER_TSAN();
  constexpr int kForks = 20;
  constexpr size_t kChildOps = 4000;
  Workers workers(4);
  workers.wait_for_progress(2000);
  for (int f = 0; f < kForks; ++f) {
    workers.wait_for_progress(500);  // forks land while the workers are mid-operation
    const ChildResult r = fork_child(
        [f](int stats_fd) { child_exit(child_workload(0xC0DE + static_cast<uint64_t>(f), kChildOps), stats_fd); });
    ASSERT_TRUE(r.ok()) << "fork " << f << ": " << r.describe();
    expect_clean_stats(r, f);
  }
  const uint64_t ops = workers.ops();
  workers.stop();
  EXPECT_EQ(workers.failures(), 0u) << "the parent's threads saw a failure";
  EXPECT_GT(ops, 2000u + kForks * 500u);
  EXPECT_NE(parent_stats().find("\"errors\":{\"total\":0,"), std::string::npos) << parent_stats();
}

// A thread of the parent holds blocks when main forks: in the child that thread does not exist, but
// its blocks do (they are in the child's copy). The child frees them without any error (its heap was
// retired, so these are frees into abandoned spans), and the next allocation of that class adopts the
// span and reuses one of those very blocks. The Map block it held goes to the child's BigCache and is
// handed out again. Meanwhile the parent, and the holder thread, carry on untouched.
TEST(ForkApi, ChildFreesBlocksAParentThreadHeld) {
  SKIP_UNDER_TSAN();
  constexpr size_t kHeldSize = 3000;  // a class no other thread here uses (see worker_size)
  constexpr size_t kHeld = 5;
  constexpr size_t kBigSize = 1536 * kKiB;  // a large class no other thread here uses
  constexpr int kForks = 5;
  Workers workers(4);

  // The holder allocates and fills, then waits (alive) until told to free.
  std::mutex m;
  std::condition_variable cv;
  bool ready = false, release = false;
  void* held[kHeld] = {};
  void* big = nullptr;
  std::atomic<uint64_t> holder_failures{0};
  std::thread holder([&] {
    for (size_t i = 0; i < kHeld; ++i) {
      held[i] = hak_alloc(kHeldSize);
      if (held[i] != nullptr) mark(held[i], kHeldSize, 100 + i);
    }
    big = hak_alloc(kBigSize);
    if (big != nullptr) mark(big, kBigSize, 200);
    std::unique_lock<std::mutex> l(m);
    ready = true;
    cv.notify_all();
    cv.wait(l, [&] { return release; });
    l.unlock();
    // In the parent the blocks are intact and freed normally, by their owner.
    for (size_t i = 0; i < kHeld; ++i) {
      if (!marked(held[i], kHeldSize, 100 + i)) holder_failures.fetch_add(1);
      hak_free(held[i]);
    }
    if (!marked(big, kBigSize, 200)) holder_failures.fetch_add(1);
    hak_free(big);
  });
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return ready; });
  }
  for (size_t i = 0; i < kHeld; ++i) ASSERT_NE(held[i], nullptr);
  ASSERT_NE(big, nullptr);

  for (int f = 0; f < kForks; ++f) {
    workers.wait_for_progress(500);
    const ChildResult r = fork_child([&](int stats_fd) {
      for (size_t i = 0; i < kHeld; ++i) {
        if (hak_usable_size(held[i]) < kHeldSize) child_exit(kChildHeldUsable, stats_fd);
        if (!marked(held[i], kHeldSize, 100 + i)) child_exit(kChildHeldPattern, stats_fd);
      }
      if (hak_usable_size(big) < kBigSize || !marked(big, kBigSize, 200)) child_exit(kChildHeldPattern, stats_fd);
      // Any misuse would abort (on_error=abort is the default): these frees must be accepted.
      for (size_t i = 0; i < kHeld; ++i) hak_free(held[i]);
      hak_free(big);
      // Same class again: the dead holder's span is adopted and one of its blocks comes back.
      void* again[kHeld];
      for (size_t i = 0; i < kHeld; ++i) {
        again[i] = hak_alloc(kHeldSize);
        if (again[i] == nullptr) child_exit(kChildAllocFailed, stats_fd);
        mark(again[i], kHeldSize, 300 + i);
      }
      bool reused = false;
      for (size_t i = 0; i < kHeld; ++i) {
        for (size_t k = 0; k < kHeld; ++k) reused = reused || again[i] == held[k];
      }
      if (!reused) child_exit(kChildHeldNotReused, stats_fd);
      for (size_t i = 0; i < kHeld; ++i) {
        if (!marked(again[i], kHeldSize, 300 + i)) child_exit(kChildPatternBroken, stats_fd);
        hak_free(again[i]);
      }
      // The held Map block went to the child's BigCache: a request of its class gets a usable block.
      void* big2 = hak_alloc(kBigSize);
      if (big2 == nullptr || hak_usable_size(big2) < kBigSize) child_exit(kChildBigNotUsable, stats_fd);
      mark(big2, kBigSize, 400);
      if (!marked(big2, kBigSize, 400)) child_exit(kChildBigNotUsable, stats_fd);
      hak_free(big2);
      // And the rest of the child's life goes on normally.
      child_exit(child_workload(0xAB + static_cast<uint64_t>(f), 2000), stats_fd);
    });
    ASSERT_TRUE(r.ok()) << "fork " << f << ": " << r.describe();
    expect_clean_stats(r, f);
  }

  // The parent is untouched: the holder still owns intact blocks, and frees them without error.
  {
    std::lock_guard<std::mutex> g(m);
    release = true;
    cv.notify_all();
  }
  holder.join();
  workers.stop();
  EXPECT_EQ(holder_failures.load(), 0u);
  EXPECT_EQ(workers.failures(), 0u);
  EXPECT_NE(parent_stats().find("\"errors\":{\"total\":0,"), std::string::npos) << parent_stats();
}

// The child of a program whose only other thread is mid-loop can use the whole API at once after fork,
// including the calls that take the shared locks (flush, stats) — none may still be held.
TEST(ForkApi, ChildCanFlushAndPrintStatsRightAfterFork) {
  SKIP_UNDER_TSAN();
  Workers workers(4);
  for (int f = 0; f < 10; ++f) {
    workers.wait_for_progress(300);
    const ChildResult r = fork_child([](int stats_fd) {
      hak_flush();                      // BigCache and releaser locks
      void* p = hak_alloc(700 * kKiB);  // Map + Registry
      if (p == nullptr) child_exit(kChildAllocFailed, stats_fd);
      hak_free(p);
      hak_flush();
      child_exit(kChildOk, stats_fd);  // stats: every heap's counters (Pool lists lock)
    });
    ASSERT_TRUE(r.ok()) << "fork " << f << ": " << r.describe();
    expect_clean_stats(r, f);
    EXPECT_NE(r.stats.find("\"pending_bytes\":0,"), std::string::npos) << r.stats;
  }
  workers.stop();
  EXPECT_EQ(workers.failures(), 0u);
}

// I7 in the child. A thread inside a Map operation when main forks (a free that has left the live
// counters and waits for the cache lock; an evicted block waiting for the releaser; a mapping
// waiting for the Registry) would vanish with its block: the child would leak it and break I7 by
// one Map mapping. prepare_fork therefore waits for large operations in flight to finish
// (Allocator::LargeOp). Before that guard: 1 child in 10 to 1 in 4 failed with 4 allocating threads.
TEST(ForkApi, ChildAccountingAddsUpAfterForkWithThreads_I7) {
  SKIP_UNDER_TSAN();
  constexpr int kForks = 40;
  Workers workers(4);
  for (int f = 0; f < kForks; ++f) {
    workers.wait_for_progress(300);
    const ChildResult r = fork_child([](int stats_fd) { child_exit(kChildOk, stats_fd); });
    ASSERT_TRUE(r.ok()) << "fork " << f << ": " << r.describe();
    const uint64_t mapped = json_number(r.stats, "memory", "mapped");
    const uint64_t sum = json_number(r.stats, "pool", "span_bytes") + json_number(r.stats, "map", "live_bytes") +
                         json_number(r.stats, "bigcache", "bytes") + json_number(r.stats, "map", "slot_bytes") +
                         json_number(r.stats, "release", "pending_bytes") + json_number(r.stats, "memory", "metadata");
    EXPECT_EQ(mapped, sum) << "fork " << f << ": " << static_cast<int64_t>(mapped - sum)
                           << " mapped bytes in the child are not accounted for (a Map block a vanished thread had "
                           << "in flight is leaked): " << r.stats;
  }
  workers.stop();
}

}  // namespace
