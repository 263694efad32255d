// Threads: Allocator<TestConfig> (and <RecordingConfig>) driven by many threads at once: random
// alloc/free/realloc with verified contents, producer/consumer cross-thread frees, thread churn, a
// concurrent double free, BigCache/BatchReleaser contention, and stats read while threads run. Loop
// counts shrink under TSan, which must report nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/pattern.h"
#include "support/sanitizer.h"

using namespace hakmem;

namespace {

using hakmem_test::kTsan;

/// HAKMEM_TEST_VERBOSE=1 prints the measured quantities the bounds below are checked against.
bool verbose() { return getenv("HAKMEM_TEST_VERBOSE") != nullptr; }

/// Loop counts: the TSan build runs each test on a fraction of the work (it is 5-15x slower).
constexpr size_t scaled(size_t normal, size_t tsan) { return kTsan ? tsan : normal; }

// ------------------------------------------------------------------ block contents

/// The pattern word at 8-byte index i of a block keyed `key`.

/**
 * The ranges of an n-byte block that carry the pattern: all of it up to 4 KiB; above, the first and
 * last 2 KiB plus one word per page (up to 256 KiB) or per 64 KiB (beyond), so that multi-MiB blocks
 * do not spend the time budget on page faults. Range offsets are 8-aligned.
 */
template <class Fn>
void for_each_range(uint64_t n, Fn&& fn) {
  if (n <= 4 * kKiB) {
    fn(uint64_t{0}, n);
    return;
  }
  fn(uint64_t{0}, 2 * kKiB);
  const uint64_t stride = n <= 256 * kKiB ? 4 * kKiB : 64 * kKiB;
  const uint64_t tail = (n - 2 * kKiB) & ~uint64_t{7};
  for (uint64_t off = stride; off + 8 <= tail; off += stride) fn(off, uint64_t{8});
  fn(tail, n - tail);
}

void fill(void* p, uint64_t n, uint64_t key) {
  for_each_range(
      n, [&](uint64_t off, uint64_t len) { hakmem_test::fill_pattern(static_cast<unsigned char*>(p), off, len, key); });
}

/// True when the bytes below `limit` of a block filled as `written` bytes with `key` are intact.
bool intact(const void* p, uint64_t written, uint64_t limit, uint64_t key) {
  const auto* b = static_cast<const unsigned char*>(p);
  bool ok = true;
  for_each_range(written, [&](uint64_t off, uint64_t len) {
    const uint64_t end = std::min(off + len, limit);
    if (ok && end > off) ok = hakmem_test::pattern_mismatch(b, off, end - off, key) < 0;
  });
  return ok;
}

/// True when the pattern-carrying ranges of an n-byte block are all zero (calloc).
bool zeroed(const void* p, uint64_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  bool ok = true;
  for_each_range(n, [&](uint64_t off, uint64_t len) {
    for (uint64_t i = off; ok && i < off + len; ++i) ok = b[i] == 0;
  });
  return ok;
}

/// First failure seen by any worker thread (gtest assertions belong to the main thread).
struct Failures {
  std::atomic<uint64_t> count{0};
  std::mutex m;
  std::string first;

  void add(const std::string& what) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> g(m);
      first = what;
    }
  }
  std::string text() {
    std::lock_guard<std::mutex> g(m);
    return first;
  }
};

std::string describe(const char* what, const void* p, uint64_t size) {
  char buf[160];
  snprintf(buf, sizeof(buf), "%s: block %p of %llu bytes", what, p, static_cast<unsigned long long>(size));
  return buf;
}

/// A size out of [lo, hi], log-uniform.
uint64_t log_uniform(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {
  const double a = std::log2(static_cast<double>(lo));
  const double b = std::log2(static_cast<double>(hi));
  const double x = a + (b - a) * std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  uint64_t n = static_cast<uint64_t>(std::exp2(x));
  return std::clamp(n, lo, hi);
}

/// 8 B .. 4 MiB, mostly small: 70% <= 1 KiB, 18% <= 32 KiB, 8% <= 256 KiB (large Pool classes),
/// 4% 256 KiB .. 4 MiB (Map, with the default 256 KiB threshold).
uint64_t random_size(std::mt19937_64& rng) {
  const unsigned r = static_cast<unsigned>(rng() % 100);
  if (r < 70) return log_uniform(rng, 8, kKiB);
  if (r < 88) return log_uniform(rng, kKiB, 32 * kKiB);
  if (r < 96) return log_uniform(rng, 32 * kKiB, 256 * kKiB - 1);
  return log_uniform(rng, 256 * kKiB, 4 * kMiB);
}

struct Block {
  void* p = nullptr;
  uint64_t size = 0;
  uint64_t key = 0;
};

/// I7 with every block freed: no live bytes, and mapped memory is exactly spans + metadata + cache + pending.
template <class A>
void expect_nothing_live(A& a, const char* when) {
  SCOPED_TRACE(when);
  const AuditResult r = a.audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.live_blocks, 0u);
  EXPECT_EQ(r.pool_live, 0u);
  EXPECT_EQ(r.map_live, 0u);
  const StatsSnapshot s = a.stats();
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(s.pool_allocs, s.pool_frees);
  EXPECT_EQ(s.map_allocs, s.map_frees);
  EXPECT_EQ(s.mapped_bytes, s.pool_span_bytes + s.metadata_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes);
  EXPECT_EQ(s.errors_total, 0u);
}

/// A one-shot start line, so every thread begins its racing part together.
class Gate {
public:
  void open() {
    std::lock_guard<std::mutex> g(m_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return open_; });
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

// ------------------------------------------------------------------ 1. random mixed ops

// 8 threads on random sizes 8 B .. 4 MiB: alloc / calloc / aligned_alloc / realloc / free, every block's
// pattern verified before it is freed or resized. Each thread leaves its last blocks live; after join
// the audit must see exactly those, and once main frees them (all cross-thread frees into the spans of
// exited threads) nothing is live and the accounting adds up exactly.
TEST(ThreadsRandom, EightThreadsMixedSizesVerifiedAndAccounted) {
  ScopedAllocator<TestConfig> a;
  constexpr size_t kThreads = 8;
  const size_t kOps = scaled(60000, 30000);
  constexpr size_t kMaxLive = 48;
  Failures fail;
  std::mutex left_m;
  std::vector<Block> left;
  Gate gate;

  auto worker = [&](size_t t) {
    std::mt19937_64 rng(0xC0FFEE + t);
    const uintptr_t site = 0x4000 + t * 64;
    std::vector<Block> live;
    uint64_t next_key = (uint64_t{t} << 40) + 1;
    auto check = [&](const Block& b, uint64_t limit, const char* what) {
      if (!intact(b.p, b.size, limit, b.key)) fail.add(describe(what, b.p, b.size));
    };
    gate.wait();
    for (size_t i = 0; i < kOps; ++i) {
      const unsigned op = static_cast<unsigned>(rng() % 100);
      if (live.size() < kMaxLive && (op < 45 || live.empty())) {
        Block b;
        b.size = random_size(rng);
        b.key = next_key++;
        const unsigned how = static_cast<unsigned>(rng() % 10);
        if (how == 0) {
          b.p = a->calloc(1, b.size, site);
          if (b.p != nullptr && !zeroed(b.p, b.size)) fail.add(describe("calloc block not zero", b.p, b.size));
        } else if (how == 1) {
          const size_t align = size_t{32} << (rng() % 8);  // 32 .. 4096
          b.p = a->aligned_alloc(align, b.size, site);
          if (b.p != nullptr && reinterpret_cast<uintptr_t>(b.p) % align != 0) {
            fail.add(describe("misaligned aligned_alloc", b.p, b.size));
          }
        } else {
          b.p = a->alloc(b.size, site);
        }
        if (b.p == nullptr) {
          fail.add(describe("alloc returned null", nullptr, b.size));
          continue;
        }
        if (a->usable_size(b.p) < b.size) fail.add(describe("usable_size < requested", b.p, b.size));
        fill(b.p, b.size, b.key);
        live.push_back(b);
      } else if (op < 80) {
        const size_t k = rng() % live.size();
        check(live[k], live[k].size, "pattern broken before free");
        const Verdict v = a->free(live[k].p, site);
        if (v != Verdict::kOk) fail.add(describe("free rejected a live block", live[k].p, live[k].size));
        live[k] = live.back();
        live.pop_back();
      } else {
        const size_t k = rng() % live.size();
        Block& b = live[k];
        check(b, b.size, "pattern broken before realloc");
        const uint64_t n = random_size(rng);
        void* q = a->realloc(b.p, n, site);
        if (q == nullptr) {
          fail.add(describe("realloc returned null", b.p, n));
          continue;
        }
        Block moved{q, n, b.key};
        // I5: realloc keeps min(old, new) bytes.
        if (!intact(q, b.size, std::min(b.size, n), b.key)) fail.add(describe("realloc lost contents", q, n));
        if (a->usable_size(q) < n) fail.add(describe("usable_size < requested after realloc", q, n));
        moved.key = next_key++;
        fill(q, n, moved.key);
        b = moved;
      }
    }
    for (const Block& b : live) check(b, b.size, "pattern broken at thread exit");
    std::lock_guard<std::mutex> g(left_m);
    left.insert(left.end(), live.begin(), live.end());
  };

  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  gate.open();
  for (std::thread& th : threads) th.join();
  ASSERT_EQ(fail.count.load(), 0u) << fail.text();

  // The threads are gone; their blocks are still live and accounted for.
  {
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.live_blocks, left.size());
    const StatsSnapshot s = a->stats();
    EXPECT_EQ(s.pool_live_bytes, r.pool_live);
    EXPECT_EQ(s.map_live_bytes, r.map_live);
    EXPECT_EQ(s.mapped_bytes,
              s.pool_span_bytes + s.map_live_bytes + s.metadata_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes);
    EXPECT_EQ(s.pool_allocs - s.pool_frees + s.map_allocs - s.map_frees, left.size());
  }
  // Main frees what the exited threads left: remote frees into abandoned spans.
  for (const Block& b : left) {
    ASSERT_TRUE(intact(b.p, b.size, b.size, b.key)) << describe("pattern broken after join", b.p, b.size);
    ASSERT_EQ(a->free(b.p, 0x99), Verdict::kOk);
  }
  expect_nothing_live(*a, "after main freed the leftovers");
  a->flush();
  expect_nothing_live(*a, "after flush");
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.cache_bytes, 0u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.mapped_bytes, s.pool_span_bytes + s.metadata_bytes);
  EXPECT_GT(s.map_allocs, 0u) << "no Map-path blocks were exercised";
  EXPECT_GT(s.remote_frees, 0u);
}

// ------------------------------------------------------------------ 2. producer / consumer

/// A bounded queue of blocks, guarded by a mutex.
class BlockQueue {
public:
  explicit BlockQueue(size_t cap) : cap_(cap) {}
  void push(const Block& b) {
    std::unique_lock<std::mutex> l(m_);
    not_full_.wait(l, [&] { return q_.size() < cap_; });
    q_.push_back(b);
    not_empty_.notify_one();
  }
  /// False once the queue is closed and empty.
  bool pop(Block* out) {
    std::unique_lock<std::mutex> l(m_);
    not_empty_.wait(l, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> g(m_);
    closed_ = true;
    not_empty_.notify_all();
  }

private:
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Block> q_;
  size_t cap_;
  bool closed_ = false;
};

/// Rounds of work that threads wait for, and a count of consumed items that main waits on.
class Rounds {
public:
  void wait_for_round(size_t r) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return round_ >= r; });
  }
  void start_round(size_t r) {
    std::lock_guard<std::mutex> g(m_);
    round_ = r;
    cv_.notify_all();
  }
  void consumed() {
    std::lock_guard<std::mutex> g(m_);
    ++consumed_;
    cv_.notify_all();
  }
  void wait_consumed(uint64_t n) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return consumed_ >= n; });
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  size_t round_ = 0;
  uint64_t consumed_ = 0;
};

// Producers allocate and fill blocks and hand them through a mutex-protected queue to consumers, which
// verify and free them: every Pool free is a remote free. Producers then run the same rounds again; the
// blocks the consumers gave back (on the producers' remote stacks) must be reused, so the span count
// stays bounded instead of growing with every round.
TEST(ThreadsProducerConsumer, CrossThreadFreesAreReusedByTheOwner) {
  ScopedAllocator<TestConfig> a;
  constexpr size_t kProducers = 4, kConsumers = 4, kRounds = 4;
  const size_t kPerRound = scaled(30000, 15000);  // per producer
  BlockQueue queue(256);
  Rounds rounds;
  Failures fail;

  auto producer = [&](size_t t) {
    const uintptr_t site = 0x8000 + t * 64;
    for (size_t r = 1; r <= kRounds; ++r) {
      rounds.wait_for_round(r);
      std::mt19937_64 rng(0xBEEF + t);  // every round the same sizes: the same blocks per class
      for (size_t i = 0; i < kPerRound; ++i) {
        Block b;
        const unsigned k = static_cast<unsigned>(rng() % 100);
        b.size = k < 2 ? log_uniform(rng, 300 * kKiB, 1536 * kKiB) : log_uniform(rng, 16, 2 * kKiB);
        b.key = (uint64_t{t} << 48) | (uint64_t{r} << 32) | i;
        b.p = a->alloc(b.size, site);
        if (b.p == nullptr) {
          fail.add(describe("producer alloc returned null", nullptr, b.size));
          b.size = 0;
        } else {
          fill(b.p, b.size, b.key);
        }
        queue.push(b);
      }
    }
  };
  auto consumer = [&](size_t t) {
    Block b;
    while (queue.pop(&b)) {
      if (b.p != nullptr) {
        if (!intact(b.p, b.size, b.size, b.key)) fail.add(describe("consumer saw a broken pattern", b.p, b.size));
        if (a->free(b.p, 0x9000 + t) != Verdict::kOk) fail.add(describe("consumer free rejected", b.p, b.size));
      }
      rounds.consumed();
    }
  };

  std::vector<std::thread> threads;
  for (size_t t = 0; t < kProducers; ++t) threads.emplace_back(producer, t);
  for (size_t t = 0; t < kConsumers; ++t) threads.emplace_back(consumer, t);
  std::vector<uint64_t> spans, span_bytes;
  for (size_t r = 1; r <= kRounds; ++r) {
    rounds.start_round(r);
    rounds.wait_consumed(r * kProducers * kPerRound);
    // Quiescent: producers wait for the next round, consumers on the empty queue.
    const AuditResult audit = a->audit();
    EXPECT_TRUE(audit.ok) << "round " << r << ": " << audit.failure;
    EXPECT_EQ(audit.live_blocks, 0u) << "round " << r;
    const StatsSnapshot s = a->stats();
    EXPECT_EQ(s.pool_live_bytes, 0u) << "round " << r;
    EXPECT_EQ(s.map_live_bytes, 0u) << "round " << r;
    EXPECT_EQ(s.pool_allocs + s.map_allocs, r * kProducers * kPerRound) << "round " << r;
    EXPECT_GT(s.remote_frees, 0u) << "consumers' frees of producers' blocks must be remote frees";
    spans.push_back(s.pool_spans);
    span_bytes.push_back(s.pool_span_bytes);
  }
  queue.close();
  for (std::thread& th : threads) th.join();
  ASSERT_EQ(fail.count.load(), 0u) << fail.text();

  if (verbose()) {
    for (size_t r = 0; r < kRounds; ++r)
      printf("round %zu: %llu spans, %llu span bytes\n", r + 1, static_cast<unsigned long long>(spans[r]),
             static_cast<unsigned long long>(span_bytes[r]));
  }
  // Rounds 2.. reuse what round 1 mapped: producers drain their remote stacks instead of mapping more.
  // A little slack per producer and class, because how many blocks are in flight at once depends on
  // how far the consumers lag behind.
  for (size_t r = 1; r < kRounds; ++r) {
    EXPECT_LE(spans[r], spans[0] + kProducers)
        << "round " << r + 1 << " spans vs round 1: " << spans[r] << " vs " << spans[0];
    EXPECT_LE(span_bytes[r], span_bytes[0] + 4 * kMiB) << "round " << r + 1;
  }
  EXPECT_LE(spans.back(), spans[1] + kProducers) << "span count still growing after round 2";
  expect_nothing_live(*a, "after all rounds");
  a->flush();
  expect_nothing_live(*a, "after flush");
}

// ------------------------------------------------------------------ 3. thread churn

// 2048 short-lived threads (1024 under TSan), 8 at a time. Each allocates and frees, and leaves a few blocks live that
// main frees after the next batch (frees into spans that exited threads abandoned, or that later
// threads adopted). Retired heaps and abandoned spans must be reused: metadata and Pool span bytes
// stay under explicit bounds, and when everything is freed nothing is live or leaked.
TEST(ThreadsChurn, ThousandsOfShortThreadsStayBounded) {
  ScopedAllocator<TestConfig> a;
  constexpr size_t kConcurrent = 8;
  const size_t kThreadsTotal = scaled(2048, 1024);
  const size_t kOpsPerThread = scaled(400, 250);
  constexpr size_t kLeftPerThread = 3;
  Failures fail;
  std::mutex left_m;
  std::vector<Block> left_prev, left_now;

  auto worker = [&](size_t id) {
    std::mt19937_64 rng(0x5EED0000 + id);
    const uintptr_t site = 0xA000 + (id % 16) * 64;
    std::vector<Block> live;
    for (size_t i = 0; i < kOpsPerThread; ++i) {
      if (live.size() < 16 && (rng() % 3 != 0 || live.empty())) {
        Block b;
        const unsigned k = static_cast<unsigned>(rng() % 100);
        b.size = k == 0  ? log_uniform(rng, 256 * kKiB, kMiB)
                 : k < 5 ? log_uniform(rng, 2 * kKiB, 64 * kKiB)
                         : log_uniform(rng, 8, 2 * kKiB);
        b.key = (uint64_t{id} << 32) | i;
        b.p = a->alloc(b.size, site);
        if (b.p == nullptr) {
          fail.add(describe("alloc returned null", nullptr, b.size));
          continue;
        }
        fill(b.p, b.size, b.key);
        live.push_back(b);
      } else {
        const size_t j = rng() % live.size();
        if (!intact(live[j].p, live[j].size, live[j].size, live[j].key)) {
          fail.add(describe("pattern broken", live[j].p, live[j].size));
        }
        if (a->free(live[j].p, site) != Verdict::kOk) fail.add(describe("free rejected", live[j].p, live[j].size));
        live[j] = live.back();
        live.pop_back();
      }
    }
    // Keep a few live for main; free the rest here.
    while (live.size() > kLeftPerThread) {
      if (a->free(live.back().p, site) != Verdict::kOk) fail.add("free rejected at thread end");
      live.pop_back();
    }
    std::lock_guard<std::mutex> g(left_m);
    left_now.insert(left_now.end(), live.begin(), live.end());
  };

  uint64_t max_meta = 0, max_span_bytes = 0, meta_after_warmup = 0, spans_after_warmup = 0;
  const size_t kBatches = kThreadsTotal / kConcurrent;
  const size_t kWarmup = 8;
  for (size_t batch = 0; batch < kBatches; ++batch) {
    std::thread threads[kConcurrent];
    for (size_t t = 0; t < kConcurrent; ++t) threads[t] = std::thread(worker, batch * kConcurrent + t);
    // Main frees the previous batch's leftovers while this batch runs.
    for (const Block& b : left_prev) {
      if (!intact(b.p, b.size, b.size, b.key)) fail.add(describe("leftover pattern broken", b.p, b.size));
      if (a->free(b.p, 0xB000) != Verdict::kOk) fail.add(describe("leftover free rejected", b.p, b.size));
    }
    left_prev.clear();
    for (std::thread& th : threads) th.join();
    std::swap(left_prev, left_now);
    const StatsSnapshot s = a->stats();
    max_meta = std::max(max_meta, s.metadata_bytes);
    max_span_bytes = std::max(max_span_bytes, s.pool_span_bytes);
    if (batch + 1 == kWarmup) {
      meta_after_warmup = s.metadata_bytes;
      spans_after_warmup = s.pool_span_bytes;
    }
    if (verbose() && batch % 16 == 0) {
      printf("batch %zu: metadata %llu, span bytes %llu, spans %llu\n", batch,
             static_cast<unsigned long long>(s.metadata_bytes), static_cast<unsigned long long>(s.pool_span_bytes),
             static_cast<unsigned long long>(s.pool_spans));
    }
    if (batch % 32 == 0) {
      const AuditResult r = a->audit();
      ASSERT_TRUE(r.ok) << "batch " << batch << ": " << r.failure;
      EXPECT_EQ(r.live_blocks, left_prev.size()) << "batch " << batch;
    }
  }
  ASSERT_EQ(fail.count.load(), 0u) << fail.text();
  for (const Block& b : left_prev) {
    ASSERT_TRUE(intact(b.p, b.size, b.size, b.key));
    ASSERT_EQ(a->free(b.p, 0xB000), Verdict::kOk);
  }

  if (verbose()) {
    printf("churn: max metadata %llu (after warm-up %llu), max span bytes %llu (after warm-up %llu)\n",
           static_cast<unsigned long long>(max_meta), static_cast<unsigned long long>(meta_after_warmup),
           static_cast<unsigned long long>(max_span_bytes), static_cast<unsigned long long>(spans_after_warmup));
  }
  // Explicit bounds. Metadata: the Registry root (1 MiB) and one to three 2 MiB leaves (the Pool
  // arena's first GiB, and where Map blocks lie: they may straddle a GiB), the arena's table (2 MiB), plus a few 64 KiB
  // chunks of span/heap/Map descriptors (measured: 5.4 to 9.6 MiB); at most 9 heaps ever exist (8 threads + main),
  // since retired heaps are reused, where 2048 fresh ~4 KiB heaps would add 8 MiB. Pool spans: what 8 concurrent
  // threads with <= 16 live blocks each (plus leftovers) need across ~50 classes; measured 14 MiB, levelling off
  // at 16.5 MiB over 16384 threads; without span adoption it would grow with the number of threads.
  EXPECT_LE(max_meta, 12 * kMiB) << "metadata grew with the number of threads";
  EXPECT_LE(max_span_bytes, 32 * kMiB) << "Pool spans grew with the number of threads";
  // And no growth after the first batches: the rest of the run reuses heaps and spans.
  // A span that lands in a new GiB of address space adds one 2 MiB Registry leaf; that
  // depends on where the kernel maps, not on the number of threads, so one is allowed.
  EXPECT_LE(max_meta, meta_after_warmup + Registry<LinuxPal>::kLeafBytes + 4 * 64 * kKiB)
      << "metadata kept growing after warm-up";
  EXPECT_LE(max_span_bytes, spans_after_warmup + 16 * kMiB) << "spans kept growing after warm-up";
  const StatsSnapshot s = a->stats();
  EXPECT_GT(s.remote_frees, 0u);
  expect_nothing_live(*a, "after churn");
  a->flush();
  expect_nothing_live(*a, "after flush");
  EXPECT_EQ(a->stats().mapped_bytes, a->stats().pool_span_bytes + a->stats().metadata_bytes);
}

// ------------------------------------------------------------------ 4. concurrent double free

/// A report sink shared by threads: appends under a mutex.
struct LockedCapture {
  std::mutex m;
  std::string text;
  static void sink(void* arg, const char* t, size_t n) {
    auto* c = static_cast<LockedCapture*>(arg);
    std::lock_guard<std::mutex> g(c->m);
    c->text.append(t, n);
  }
};

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// Two threads race to free distinct blocks (remote frees into main's spans) while a third frees its
// own share once and then again: with on_error=report, exactly its second frees are reported, as
// double frees, and nothing else is; the racing frees all succeed.
TEST(ThreadsDoubleFree, ConcurrentDoubleFreesCountedExactly) {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  ScopedAllocator<TestConfig> a(o);
  LockedCapture cap;
  a->set_report_sink(&LockedCapture::sink, &cap);

  const size_t kRounds = scaled(10, 5);
  const size_t kRacing = scaled(4000, 2000);  // per racing thread and round
  const size_t kDoubled = scaled(400, 200);   // per round (plus one Map block)
  std::mt19937_64 rng(7);
  std::atomic<uint64_t> racing_rejected{0}, first_rejected{0}, second_not_double{0};
  uint64_t expected = 0;
  for (size_t round = 0; round < kRounds; ++round) {
    // Main allocates everything; later rounds reuse the blocks the threads remote-freed last round.
    std::vector<void*> for_a, for_b, for_c;
    for (size_t i = 0; i < kRacing; ++i) {
      for_a.push_back(a->alloc(16 + rng() % 1024, 0x100));
      for_b.push_back(a->alloc(16 + rng() % 1024, 0x200));
    }
    for (size_t i = 0; i < kDoubled; ++i) for_c.push_back(a->alloc(16 + rng() % 1024, 0x300));
    for_c.push_back(a->alloc(512 * kKiB, 0x300));  // and a Map block: once freed it is Cached
    for (void* p : for_a) ASSERT_NE(p, nullptr);
    for (void* p : for_b) ASSERT_NE(p, nullptr);
    for (void* p : for_c) ASSERT_NE(p, nullptr);

    Gate gate;
    auto racer = [&](std::vector<void*>* blocks, uintptr_t site) {
      gate.wait();
      for (void* p : *blocks) {
        if (a->free(p, site) != Verdict::kOk) racing_rejected.fetch_add(1);
      }
    };
    auto doubler = [&] {
      gate.wait();
      for (void* p : for_c) {
        if (a->free(p, 0x333) != Verdict::kOk) first_rejected.fetch_add(1);
        if (a->free(p, 0x334) != Verdict::kDoubleFree) second_not_double.fetch_add(1);
      }
    };
    std::thread ta(racer, &for_a, 0x111), tb(racer, &for_b, 0x222), tc(doubler);
    gate.open();
    ta.join();
    tb.join();
    tc.join();
    expected += for_c.size();
    ASSERT_EQ(a->error_count(Verdict::kDoubleFree), expected) << "round " << round;
  }

  EXPECT_EQ(racing_rejected.load(), 0u);
  EXPECT_EQ(first_rejected.load(), 0u);
  EXPECT_EQ(second_not_double.load(), 0u);
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.errors_total, expected) << "only the double frees may be reported";
  {
    std::lock_guard<std::mutex> g(cap.m);
    EXPECT_EQ(count_of(cap.text, "hakmem: double free"), expected) << cap.text.substr(0, 2000);
    EXPECT_EQ(count_of(cap.text, "hakmem: "), expected) << cap.text.substr(0, 2000);
  }
  EXPECT_GT(s.remote_frees, 0u);
  const AuditResult r = a->audit();
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.live_blocks, 0u);
  EXPECT_EQ(s.pool_live_bytes, 0u);
  EXPECT_EQ(s.map_live_bytes, 0u);
  EXPECT_EQ(s.pool_allocs, s.pool_frees);
  EXPECT_EQ(s.mapped_bytes, s.pool_span_bytes + s.metadata_bytes + s.cache_bytes + s.slot_bytes + s.pending_bytes);
}

// ------------------------------------------------------------------ 5. BigCache / releaser contention

// Threads allocate and free 1-2 MiB blocks under a 4 MiB cache cap and a 2 MiB batch: puts, hits,
// evictions and flushes all happen concurrently from several threads. After join the audit holds,
// and after teardown every byte mapped through the platform has been unmapped again.
TEST(ThreadsBigCache, ConcurrentCacheAndReleaserUseLeaksNothing) {
  Options o;
  ASSERT_EQ(parse_options("cache=4m:cache_max=16m:batch=2m", o, write_stderr, nullptr), 0u);
  ScopedAllocator<RecordingConfig> a(o);
  constexpr size_t kThreads = 6;
  const size_t kIters = scaled(6000, 4000);
  Failures fail;
  Gate gate;
  std::mutex left_m;
  std::vector<Block> left;

  auto worker = [&](size_t t) {
    std::mt19937_64 rng(0xB16 + t);
    // Two threads share each site, so they contend for the same (bucket, class) rings.
    const uintptr_t site = 0xC000 + (t / 2) * 64;
    std::vector<Block> live;
    gate.wait();
    for (size_t i = 0; i < kIters; ++i) {
      if (live.size() < 3 && (live.empty() || rng() % 2 == 0)) {
        Block b;
        b.size = kMiB + rng() % (kMiB + 1);
        b.key = (uint64_t{t} << 40) | i;
        b.p = a->alloc(b.size, site);
        if (b.p == nullptr) {
          fail.add(describe("alloc returned null", nullptr, b.size));
          continue;
        }
        if (a->usable_size(b.p) < b.size) fail.add(describe("usable_size < requested", b.p, b.size));
        fill(b.p, b.size, b.key);
        live.push_back(b);
      } else {
        const size_t j = rng() % live.size();
        if (!intact(live[j].p, live[j].size, live[j].size, live[j].key)) {
          fail.add(describe("pattern broken", live[j].p, live[j].size));
        }
        if (a->free(live[j].p, site) != Verdict::kOk) fail.add(describe("free rejected", live[j].p, live[j].size));
        live[j] = live.back();
        live.pop_back();
      }
      if (i % 256 == 255 && t == 0) a->flush();  // hak_flush from one thread while the others run
    }
    std::lock_guard<std::mutex> g(left_m);
    left.insert(left.end(), live.begin(), live.end());
  };

  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  gate.open();
  for (std::thread& th : threads) th.join();
  ASSERT_EQ(fail.count.load(), 0u) << fail.text();

  {
    const AuditResult r = a->audit();
    EXPECT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.live_blocks, left.size());
    EXPECT_LE(r.cached, 16 * kMiB) << "the limit may grow from cache=4m up to cache_max=16m, no further";
  }
  for (const Block& b : left) {
    ASSERT_TRUE(intact(b.p, b.size, b.size, b.key));
    ASSERT_EQ(a->free(b.p, 0xD000), Verdict::kOk);
  }
  expect_nothing_live(*a, "after the leftovers were freed");
  const StatsSnapshot s = a->stats();
  EXPECT_GT(s.cache_hits, 0u);
  EXPECT_GT(s.cache_evictions, 0u);
  EXPECT_GT(s.release_flushes, 0u);
  EXPECT_LE(s.cache_bytes, s.cache_limit);
  EXPECT_LE(s.cache_limit, 16 * kMiB);
  // I1 under contention: every unmap went through the releaser's capability.
  EXPECT_EQ(a->pal().calls(PalOp::kUnmap), a->pal().calls(PalOp::kUnmap, Layer::kRelease));
  a->flush();
  expect_nothing_live(*a, "after flush");
  EXPECT_EQ(a->stats().pending_bytes, 0u);
  EXPECT_EQ(a->stats().cache_bytes, 0u);
  a->teardown();
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u) << "bytes mapped and never released";
}

// ------------------------------------------------------------------ 6. stats while threads run

// stats() (hak_stats_print) may be called from any thread at any time: per-thread counters are
// "written only by its owning thread and read by anyone". One thread reads the stats in a loop while
// four others allocate and free; every snapshot must be sane, and TSan must see no race.
// (This test found stats() reading ObjectPool's counters without the pool's lock; they are atomics now.)
TEST(ThreadsStats, StatsReadWhileThreadsAllocate) {
  ScopedAllocator<TestConfig> a;
  constexpr size_t kThreads = 4;
  const size_t kOps = scaled(40000, 10000);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> snapshots{0}, insane{0};
  Failures fail;
  Gate gate;

  auto worker = [&](size_t t) {
    std::mt19937_64 rng(0x57A7 + t);
    std::vector<Block> live;
    gate.wait();
    for (size_t i = 0; i < kOps; ++i) {
      if (live.size() < 32 && (live.empty() || rng() % 2 == 0)) {
        Block b;
        b.size = random_size(rng);
        b.key = (uint64_t{t} << 40) | i;
        b.p = a->alloc(b.size, 0xE000 + t);
        if (b.p == nullptr) {
          fail.add(describe("alloc returned null", nullptr, b.size));
          continue;
        }
        fill(b.p, b.size, b.key);
        live.push_back(b);
      } else {
        const size_t j = rng() % live.size();
        if (!intact(live[j].p, live[j].size, live[j].size, live[j].key)) fail.add("pattern broken");
        if (a->free(live[j].p, 0xE000 + t) != Verdict::kOk) fail.add("free rejected");
        live[j] = live.back();
        live.pop_back();
      }
    }
    for (const Block& b : live) a->free(b.p, 0xE000 + t);
  };
  auto reader = [&] {
    gate.wait();
    while (!stop.load()) {
      const StatsSnapshot s = a->stats();
      snapshots.fetch_add(1);
      if (s.errors_total != 0 || s.mapped_bytes == 0 || s.metadata_bytes == 0) insane.fetch_add(1);
      std::string json;
      a->print_stats([](void* arg, const char* text, size_t n) { static_cast<std::string*>(arg)->append(text, n); },
                     &json, /*json=*/true);
      if (json.find("\"errors\":{\"total\":0") == std::string::npos) insane.fetch_add(1);
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  std::thread r(reader);
  gate.open();
  for (std::thread& th : threads) th.join();
  stop.store(true);
  r.join();
  ASSERT_EQ(fail.count.load(), 0u) << fail.text();
  EXPECT_GT(snapshots.load(), 0u);
  EXPECT_EQ(insane.load(), 0u);
  expect_nothing_live(*a, "after the workers freed everything");
}

}  // namespace
