// Out of memory (I12): when the platform refuses memory, allocation returns
// nullptr with errno ENOMEM, nothing leaks, and the accounting stays exact
// (audit passes; the allocator's mapped tally equals what the platform says is
// mapped). Every byte goes back through the releaser at teardown (I1).
//
// The platform is RecordingPal<FailingPal<LinuxPal>>: maps fail on demand
// (the nth one, past a byte budget, or all), and every call is counted by
// operation and layer.
#include <errno.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <thread>
#include <vector>

#include "front/front.h"
#include "support/report.h"

using namespace hakmem;

namespace {

using RecAllocator = Allocator<RecordingConfig>;
constexpr uintptr_t kSite = 0x1234;

Options test_options() {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kDecayMs, 0);  // no time-dependent flushes
  return o;
}

uint64_t maps_made(RecAllocator& a) { return a.pal().calls(PalOp::kMap) + a.pal().calls(PalOp::kMapSparse); }

/// I7 by walking, and the allocator's tally equal to the platform's truth.
void ExpectConsistent(RecAllocator& a, const char* where) {
  const AuditResult r = a.audit();
  EXPECT_TRUE(r.ok) << where << ": " << r.failure;
  EXPECT_EQ(a.stats().mapped_bytes, a.pal().outstanding_bytes()) << where;
  EXPECT_EQ(a.stats().mapped_bytes, a.pal().mapped_bytes()) << where;
}

/// After teardown: nothing is left mapped, and every release went through the releaser.
void ExpectAllReturned(RecAllocator& a) {
  auto& pal = a.pal();
  EXPECT_EQ(pal.outstanding_bytes(), 0u) << "bytes leaked past teardown";
  EXPECT_EQ(pal.mapped_bytes(), 0u);
  EXPECT_EQ(pal.calls(PalOp::kUnmap), pal.calls(PalOp::kUnmap, Layer::kRelease));
  EXPECT_EQ(pal.calls(PalOp::kAdvise), pal.calls(PalOp::kAdvise, Layer::kRelease));
  EXPECT_TRUE(pal.verify_mapped());
}

/// Hides a value from the optimizer: absurd sizes stay runtime values, so the
/// compiler does not warn about (never-taken) memset paths inside calloc.
size_t opaque(size_t v) {
  asm volatile("" : "+r"(v));
  return v;
}

void Fill(void* p, size_t n, unsigned char byte) { memset(p, byte, n); }
bool Holds(const void* p, size_t n, unsigned char byte) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != byte) return false;
  }
  return true;
}

/// Expects nullptr with errno `err`, and that the request made no platform call.
#define EXPECT_REFUSED(a, expr, err)                                                                                   \
  do {                                                                                                                 \
    const uint64_t maps_before_ = maps_made(a) + (a).pal().failed_maps();                                              \
    errno = 0;                                                                                                         \
    EXPECT_EQ((expr), nullptr) << #expr;                                                                               \
    EXPECT_EQ(errno, (err)) << #expr;                                                                                  \
    EXPECT_EQ(maps_made(a) + (a).pal().failed_maps(), maps_before_)                                                    \
        << #expr " must be refused before any mapping is tried";                                                       \
  } while (0)

// ---------------------------------------------------------------- each layer's first map

TEST(OomTest, FirstMapEverRegistryRoot) {
  auto* a = new RecAllocator();
  a->pal().set_fail_all(true);
  EXPECT_FALSE(a->init(test_options()));
  EXPECT_FALSE(a->ready());
  errno = 0;
  EXPECT_EQ(a->alloc(100, kSite), nullptr);  // lazy init fails the same way
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u);
  EXPECT_EQ(a->pal().total_calls(), 0u);
  EXPECT_GE(a->pal().failed_maps(), 2u);

  a->pal().reset_failures();
  ASSERT_TRUE(a->init(test_options()));
  EXPECT_EQ(a->pal().calls(PalOp::kMapSparse, Layer::kRegistry), 1u);
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  ExpectConsistent(*a, "after a late init");
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
  delete a;
}

TEST(OomTest, FirstMapOfAnAllocationHeapChunk) {
  ScopedAllocator<RecordingConfig> a(test_options());
  a->pal().fail_nth_map(1);  // the thread heap's metadata chunk
  errno = 0;
  EXPECT_EQ(a->alloc(100, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMeta), 0u);
  ExpectConsistent(*a, "heap chunk refused");
  void* p = a->alloc(100, kSite);  // the next call makes the heap
  ASSERT_NE(p, nullptr);
  ExpectConsistent(*a, "heap made on retry");
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, PoolSpanMetadataChunk) {
  ScopedAllocator<RecordingConfig> a(test_options());
  a->pal().fail_nth_map(2);  // heap chunk, then the span descriptors' chunk
  errno = 0;
  EXPECT_EQ(a->alloc(100, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMeta), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kPool), 0u);
  ExpectConsistent(*a, "span chunk refused");
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectConsistent(*a, "after retry");
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, PoolSpanMap) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* warm = a->alloc(100, kSite);  // heap, span chunk, a span and its leaf exist
  ASSERT_NE(warm, nullptr);
  const uint64_t pool_maps = a->pal().calls(PalOp::kMap, Layer::kPool);
  const StatsSnapshot before = a->stats();
  a->pal().fail_nth_map(1);
  errno = 0;
  EXPECT_EQ(a->alloc(5000, kSite), nullptr);  // a new class: its first span is refused
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kPool), pool_maps);
  const StatsSnapshot after = a->stats();
  EXPECT_EQ(after.pool_spans, before.pool_spans);
  EXPECT_EQ(after.pool_allocs, before.pool_allocs);
  ExpectConsistent(*a, "span refused");
  // A class with a span keeps working; the refused class works once memory is back.
  void* q = a->alloc(100, kSite);
  ASSERT_NE(q, nullptr);
  void* r = a->alloc(5000, kSite);
  ASSERT_NE(r, nullptr);
  Fill(r, 5000, 1);
  for (void* p : {warm, q, r}) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectConsistent(*a, "after retry");
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, PoolSpanRegistryLeaf) {
  ScopedAllocator<RecordingConfig> a(test_options());
  a->pal().fail_nth_map(4);  // heap chunk, span chunk, span, then the span's Registry leaf
  errno = 0;
  EXPECT_EQ(a->alloc(100, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ASSERT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kPool), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMapSparse, Layer::kRegistry), 1u) << "only the root";
  EXPECT_EQ(a->stats().pool_spans, 0u);
  EXPECT_EQ(a->stats().pending_bytes, SizeClasses::span_size(SizeClasses::class_of(100)))
      << "the orphaned span goes to the releaser";
  ExpectConsistent(*a, "leaf refused");
  a->flush();
  ExpectConsistent(*a, "orphaned span released");
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, MapDescriptorChunk) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* warm = a->alloc(100, kSite);
  ASSERT_NE(warm, nullptr);
  a->pal().fail_nth_map(1);  // the first Map block needs a descriptor chunk
  errno = 0;
  EXPECT_EQ(a->alloc(1 << 20, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMap), 0u);
  ExpectConsistent(*a, "descriptor chunk refused");
  void* p = a->alloc(1 << 20, kSite);
  ASSERT_NE(p, nullptr);
  Fill(p, 1 << 20, 2);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(warm, kSite), Verdict::kOk);
  ExpectConsistent(*a, "after retry");
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, MapBlockMap) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* warm = a->alloc(1 << 20, kSite);  // descriptors and a leaf exist
  ASSERT_NE(warm, nullptr);
  const uint64_t map_maps = a->pal().calls(PalOp::kMap, Layer::kMap);
  const StatsSnapshot before = a->stats();
  a->pal().fail_nth_map(1);
  errno = 0;
  EXPECT_EQ(a->alloc(3 << 20, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMap), map_maps);
  const StatsSnapshot after = a->stats();
  EXPECT_EQ(after.map_allocs, before.map_allocs);
  EXPECT_EQ(after.map_live_bytes, before.map_live_bytes);
  ExpectConsistent(*a, "Map block refused");
  void* p = a->alloc(3 << 20, kSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(warm, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, MapBlockRegistryLeaf) {
  // A Map block first: heap chunk, descriptor chunk, the block, then its leaf.
  ScopedAllocator<RecordingConfig> a(test_options());
  a->pal().fail_nth_map(4);
  errno = 0;
  EXPECT_EQ(a->alloc(1 << 20, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ASSERT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMap), 1u);
  EXPECT_EQ(a->pal().calls(PalOp::kMapSparse, Layer::kRegistry), 1u) << "only the root";
  const uint64_t block_bytes = a->pal().bytes(PalOp::kMap, Layer::kMap);
  EXPECT_EQ(a->stats().map_live_bytes, 0u);
  EXPECT_EQ(a->stats().pending_bytes, block_bytes) << "the orphaned mapping goes to the releaser";
  ExpectConsistent(*a, "leaf refused");
  // The releaser must unmap exactly the mapping that was made.
  const uint64_t unmapped_before = a->pal().bytes(PalOp::kUnmap);
  a->flush();
  EXPECT_EQ(a->pal().bytes(PalOp::kUnmap) - unmapped_before, block_bytes) << "the orphaned Map block was not unmapped";
  ExpectConsistent(*a, "orphaned block released");
  void* p = a->alloc(1 << 20, kSite);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
}

// ---------------------------------------------------------------- the sweep

/// A fixed sequence touching every layer; each call either works or fails with ENOMEM.
struct Sweep {
  explicit Sweep(RecAllocator& alloc) : a(alloc) {}
  RecAllocator& a;
  std::vector<std::pair<void*, size_t>> live;
  unsigned refused = 0;

  void step(void* p, size_t n, const char* what, bool zeroed = false) {
    SCOPED_TRACE(what);
    if (p == nullptr) {
      EXPECT_EQ(errno, ENOMEM);
      ++refused;
    } else {
      EXPECT_GE(a.usable_size(p), n);
      if (zeroed) {
        EXPECT_TRUE(Holds(p, n, 0));
      }
      Fill(p, n, 0xab);
      live.emplace_back(p, n);
    }
    ExpectConsistent(a, what);
  }

  void run() {
    errno = 0;
    step(a.alloc(1 << 20, 0x100), 1 << 20, "map 1 MiB");
    errno = 0;
    step(a.alloc(100, 0x200), 100, "pool 100");
    errno = 0;
    step(a.alloc(70000, 0x300), 70000, "pool 70000");
    errno = 0;
    step(a.alloc(300 * 1024, 0x400), 300 * 1024, "map 300 KiB");
    errno = 0;
    step(a.calloc(10, 1000, 0x500), 10000, "calloc 10 x 1000", true);
    errno = 0;
    step(a.calloc(1, 2 << 20, 0x510), 2 << 20, "calloc 2 MiB", true);
    errno = 0;
    step(a.aligned_alloc(4096, 5000, 0x600), 5000, "aligned 4096 pool");
    errno = 0;
    step(a.aligned_alloc(64 * 1024, 1 << 20, 0x700), 1 << 20, "aligned 64 KiB map");
    // realloc: grow a pool block into a Map block; on failure the old one is intact.
    {
      void* old = a.alloc(1000, 0x800);
      if (old == nullptr) {
        EXPECT_EQ(errno, ENOMEM);
        ++refused;
      } else {
        Fill(old, 1000, 0xcd);
        errno = 0;
        void* grown = a.realloc(old, 600 * 1024, 0x800);
        if (grown == nullptr) {
          EXPECT_EQ(errno, ENOMEM);
          ++refused;
          EXPECT_TRUE(Holds(old, 1000, 0xcd));
          EXPECT_EQ(a.check(old), Verdict::kOk);
          live.emplace_back(old, 1000);
        } else {
          EXPECT_TRUE(Holds(grown, 1000, 0xcd));
          live.emplace_back(grown, 1000);
        }
      }
      ExpectConsistent(a, "realloc grow");
    }
    // Another thread: its own heap and spans.
    {
      void* from_thread = nullptr;
      int thread_errno = 0;
      std::thread t([&] {
        errno = 0;
        from_thread = a.alloc(100, 0x900);
        thread_errno = errno;
        if (from_thread != nullptr) Fill(from_thread, 100, 0xab);
      });
      t.join();
      if (from_thread == nullptr) {
        EXPECT_EQ(thread_errno, ENOMEM);
        ++refused;
      } else {
        live.emplace_back(from_thread, 100);
      }
      ExpectConsistent(a, "thread alloc");
    }
    // Free half, then allocate again (cache hits, free-list reuse).
    for (size_t i = 0; i < live.size(); i += 2) EXPECT_EQ(a.free(live[i].first, 0), Verdict::kOk);
    std::vector<std::pair<void*, size_t>> kept;
    for (size_t i = 1; i < live.size(); i += 2) kept.push_back(live[i]);
    live.swap(kept);
    ExpectConsistent(a, "half freed");
    errno = 0;
    step(a.alloc(1 << 20, 0x100), 1 << 20, "map 1 MiB again");
    errno = 0;
    step(a.alloc(100, 0x200), 100, "pool 100 again");
    errno = 0;
    step(a.alloc(8 << 20, 0xa00), 8 << 20, "map 8 MiB");
    for (auto& [p, n] : live) {
      EXPECT_TRUE(Holds(p, n, 0xab) || Holds(p, n > 1000 ? 1000 : n, 0xcd));
      EXPECT_EQ(a.free(p, 0), Verdict::kOk);
    }
    live.clear();
    ExpectConsistent(a, "all freed");
    a.flush();
    ExpectConsistent(a, "flushed");
    EXPECT_EQ(a.stats().pending_bytes, 0u);
  }
};

TEST(OomTest, FailNthMapSweep) {
  // How many maps the sequence makes when nothing fails.
  uint64_t nominal = 0;
  {
    ScopedAllocator<RecordingConfig> a(test_options());
    const uint64_t at_init = maps_made(*a);
    Sweep s(*a);
    s.run();
    EXPECT_EQ(s.refused, 0u);
    nominal = maps_made(*a) - at_init;
    a->teardown();
    ExpectAllReturned(*a);
  }
  ASSERT_GE(nominal, 8u);
  for (uint64_t n = 1; n <= nominal + 2 && n <= 40; ++n) {
    SCOPED_TRACE(testing::Message() << "map #" << n << " fails (of " << nominal << ")");
    ScopedAllocator<RecordingConfig> a(test_options());
    const uint64_t at_init = maps_made(*a);
    a->pal().fail_nth_map(n);
    Sweep s(*a);
    s.run();
    const uint64_t attempted = maps_made(*a) + a->pal().failed_maps() - at_init;
    EXPECT_EQ(a->pal().failed_maps(), n <= attempted ? 1u : 0u);
    if (a->pal().failed_maps() == 0) {
      EXPECT_EQ(s.refused, 0u);
    }
    // After the failure, everything works.
    a->pal().reset_failures();
    void* p = a->alloc(1 << 20, 0x100);
    void* q = a->alloc(100, 0x200);
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(a->free(p, 0), Verdict::kOk);
    EXPECT_EQ(a->free(q, 0), Verdict::kOk);
    ExpectConsistent(*a, "after reset");
    a->teardown();
    ExpectAllReturned(*a);
  }
}

// ---------------------------------------------------------------- budgets and fail-all

TEST(OomTest, ByteBudget) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* warm = a->alloc(1 << 20, kSite);
  ASSERT_NE(warm, nullptr);
  a->pal().fail_past_bytes(a->pal().outstanding_bytes() + (8 << 20));
  std::vector<void*> blocks;
  bool refused = false;
  for (int i = 0; i < 20 && !refused; ++i) {
    errno = 0;
    void* p = a->alloc(1 << 20, kSite + static_cast<uintptr_t>(i) * 64);
    if (p == nullptr) {
      EXPECT_EQ(errno, ENOMEM);
      refused = true;
    } else {
      Fill(p, 1 << 20, 3);
      blocks.push_back(p);
    }
    ExpectConsistent(*a, "under budget");
  }
  EXPECT_TRUE(refused);
  EXPECT_GE(blocks.size(), 5u);
  EXPECT_LE(blocks.size(), 8u);
  // Huge but representable requests fail at the platform, cleanly.
  errno = 0;
  EXPECT_EQ(a->alloc(kMaxRequest, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(a->aligned_alloc(uint64_t{1} << 38, 100, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(a->calloc(opaque(size_t{1} << 20), opaque(size_t{1} << 18), kSite), nullptr);  // 256 GiB
  EXPECT_EQ(errno, ENOMEM);
  ExpectConsistent(*a, "huge refused");
  // Freed blocks are cached (the first in this thread's large slot, the others in BigCache):
  // allocating them again needs no new memory.
  for (size_t i = 0; i < blocks.size(); ++i) EXPECT_EQ(a->free(blocks[i], kSite + i * 64), Verdict::kOk);
  EXPECT_GT(a->stats().slot_bytes, 0u);
  EXPECT_EQ(a->stats().cache_blocks + 1, blocks.size());
  const uint64_t maps = maps_made(*a);
  for (void*& p : blocks) {
    p = a->alloc(1 << 20, kSite);
    ASSERT_NE(p, nullptr) << a->stats().cache_blocks << " cached, " << a->stats().cache_hits << " hits, "
                          << a->stats().cache_evictions << " evictions, " << a->stats().cache_misses << " misses";
  }
  EXPECT_EQ(maps_made(*a), maps);
  for (void* p : blocks) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(warm, kSite), Verdict::kOk);
  a->flush();
  ExpectConsistent(*a, "flushed");
  a->pal().reset_failures();
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, FailAllThenRecover) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* small = a->alloc(100, kSite);
  void* big = a->alloc(1 << 20, kSite);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(big, nullptr);
  a->pal().set_fail_all(true);
  for (size_t n : {size_t{5000}, size_t{70000}, size_t{3} << 20}) {
    SCOPED_TRACE(n);
    errno = 0;
    EXPECT_EQ(a->alloc(n, kSite), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(a->calloc(1, n, kSite), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(a->aligned_alloc(4096, n, kSite), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    ExpectConsistent(*a, "fail all");
  }
  // A new thread cannot get a span either.
  void* from_thread = reinterpret_cast<void*>(1);
  int thread_errno = 0;
  std::thread t([&] {
    errno = 0;
    from_thread = a->alloc(100, kSite);
    thread_errno = errno;
  });
  t.join();
  EXPECT_EQ(from_thread, nullptr);
  EXPECT_EQ(thread_errno, ENOMEM);
  // What needs no new memory still works: a span with room, a cached block.
  void* small2 = a->alloc(100, kSite);
  EXPECT_NE(small2, nullptr);
  EXPECT_EQ(a->free(big, kSite), Verdict::kOk);
  void* big2 = a->alloc(1 << 20, kSite);
  EXPECT_EQ(big2, big);
  ExpectConsistent(*a, "no new memory needed");

  a->pal().reset_failures();
  for (size_t n : {size_t{5000}, size_t{70000}, size_t{3} << 20}) {
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    Fill(p, n, 4);
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  for (void* p : {small, small2, big2}) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectConsistent(*a, "recovered");
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, ThreadWhoseHeapCannotBeMadeStillFrees) {
  // Fill the heap metadata chunk with live threads' heaps, then refuse every
  // map: a new thread gets no heap. Its allocations fail with ENOMEM and its
  // frees still go through (remote path, shared fallback counters).
  ScopedAllocator<RecordingConfig> a(test_options());
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(a->alloc(100, kSite));
    ASSERT_NE(blocks.back(), nullptr);
  }
  const size_t heaps_per_chunk = ObjectPool<Heap, LinuxPal>::kPerChunk;
  ASSERT_GE(heaps_per_chunk, 4u);
  std::atomic<bool> release{false};
  std::atomic<size_t> ready{0};
  std::vector<std::thread> holders;
  // The main thread has a heap; each holder takes one more by freeing a block.
  for (size_t i = 1; i < heaps_per_chunk; ++i) {
    void* b = blocks.back();
    blocks.pop_back();
    holders.emplace_back([&, b] {
      EXPECT_EQ(a->free(b, kSite), Verdict::kOk);
      ready.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
    });
  }
  while (ready.load() != holders.size()) std::this_thread::yield();
  EXPECT_EQ(a->pal().calls(PalOp::kMap, Layer::kMeta), 2u) << "one heap chunk and one span chunk";
  a->pal().set_fail_all(true);
  void* orphan_block = blocks.back();
  blocks.pop_back();
  Verdict v = Verdict::kCount;
  void* got = reinterpret_cast<void*>(1);
  int got_errno = 0;
  std::thread t([&] {
    v = a->free(orphan_block, kSite);
    errno = 0;
    got = a->alloc(100, kSite);
    got_errno = errno;
  });
  t.join();
  EXPECT_GE(a->pal().failed_maps(), 1u) << "the new thread should have been refused a heap chunk";
  EXPECT_EQ(v, Verdict::kOk);
  EXPECT_EQ(got, nullptr);
  EXPECT_EQ(got_errno, ENOMEM);
  release.store(true);
  for (std::thread& h : holders) h.join();
  const StatsSnapshot s = a->stats();
  EXPECT_EQ(s.pool_frees, heaps_per_chunk);
  EXPECT_EQ(s.pool_allocs, 64u);
  ExpectConsistent(*a, "frees without a heap");
  EXPECT_EQ(a->check(orphan_block), Verdict::kDoubleFree);
  a->pal().reset_failures();
  for (void* b : blocks) EXPECT_EQ(a->free(b, kSite), Verdict::kOk);
  ExpectConsistent(*a, "all freed");
  a->teardown();
  ExpectAllReturned(*a);
}

// ---------------------------------------------------------------- impossible requests

TEST(OomTest, CallocOverflowIsEnomem) {
  ScopedAllocator<RecordingConfig> a(test_options());
  EXPECT_REFUSED(*a, a->calloc(opaque(SIZE_MAX / 2 + 1), opaque(2), kSite), ENOMEM);
  EXPECT_REFUSED(*a, a->calloc(opaque(2), opaque(SIZE_MAX / 2 + 1), kSite), ENOMEM);
  EXPECT_REFUSED(*a, a->calloc(opaque(SIZE_MAX), opaque(SIZE_MAX), kSite), ENOMEM);
  EXPECT_REFUSED(*a, a->calloc(opaque(size_t{1} << 32), opaque(size_t{1} << 32), kSite), ENOMEM);
  EXPECT_REFUSED(*a, a->calloc(opaque(1), opaque(SIZE_MAX), kSite), ENOMEM);
  EXPECT_REFUSED(*a, a->calloc(opaque((kMaxRequest + 1) / 2), opaque(2), kSite), ENOMEM);
  ExpectConsistent(*a, "calloc overflow");
  void* p = a->calloc(0, 100, kSite);  // zero bytes is a valid, freeable block
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, AbsurdSizesAreEnomem) {
  ScopedAllocator<RecordingConfig> a(test_options());
  for (uint64_t n : {uint64_t{SIZE_MAX}, uint64_t{SIZE_MAX - 15}, uint64_t{SIZE_MAX - 4095}, kMaxRequest + 1,
                     uint64_t{1} << 45, uint64_t{1} << 63}) {
    SCOPED_TRACE(n);
    EXPECT_REFUSED(*a, a->alloc(n, kSite), ENOMEM);
    EXPECT_REFUSED(*a, a->alloc(n, kSite, Origin::kNew), ENOMEM);
    EXPECT_REFUSED(*a, a->aligned_alloc(64, n, kSite), ENOMEM);
    EXPECT_REFUSED(*a, a->aligned_alloc(4096, n, kSite), ENOMEM);
  }
  ExpectConsistent(*a, "absurd sizes");
  EXPECT_EQ(a->stats().errors_total, 0u);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, BadAlignmentsAreEinval) {
  ScopedAllocator<RecordingConfig> a(test_options());
  for (size_t align : {size_t{0}, size_t{3}, size_t{24}, size_t{48}, size_t{4097}, SIZE_MAX}) {
    SCOPED_TRACE(align);
    EXPECT_REFUSED(*a, a->aligned_alloc(align, 100, kSite), EINVAL);
  }
  // A power of two too large to honour.
  for (size_t align : {SIZE_MAX / 2 + 1, size_t{1} << 40}) {
    SCOPED_TRACE(align);
    const uint64_t maps_before = maps_made(*a);
    errno = 0;
    EXPECT_EQ(a->aligned_alloc(align, 100, kSite), nullptr);
    EXPECT_TRUE(errno == ENOMEM || errno == EINVAL) << errno;
    EXPECT_EQ(maps_made(*a), maps_before);
  }
  ExpectConsistent(*a, "bad alignments");
  // Small powers of two are fine.
  for (size_t align : {size_t{1}, size_t{2}, size_t{8}, size_t{16}, size_t{32}, size_t{4096}}) {
    void* p = a->aligned_alloc(align, 100, kSite);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, ReallocToAbsurdSizeKeepsTheOldBlock) {
  ScopedAllocator<RecordingConfig> a(test_options());
  for (size_t n : {size_t{1000}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    Fill(p, n, 0x6d);
    for (uint64_t huge : {uint64_t{SIZE_MAX}, uint64_t{SIZE_MAX - 15}, kMaxRequest + 1, uint64_t{1} << 45}) {
      EXPECT_REFUSED(*a, a->realloc(p, huge, kSite), ENOMEM);
      EXPECT_TRUE(Holds(p, n, 0x6d));
      EXPECT_EQ(a->check(p), Verdict::kOk);
    }
    ExpectConsistent(*a, "absurd realloc");
    EXPECT_GE(a->usable_size(p), n);
    EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  }
  EXPECT_EQ(a->stats().errors_total, 0u);
  a->teardown();
  ExpectAllReturned(*a);
}

TEST(OomTest, ReallocGrowthWhenThePlatformFailsKeepsTheOldBlock) {
  ScopedAllocator<RecordingConfig> a(test_options());
  void* p = a->alloc(1000, kSite);
  void* m = a->alloc(1 << 20, kSite);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(m, nullptr);
  Fill(p, 1000, 0x71);
  Fill(m, 1 << 20, 0x72);
  a->pal().set_fail_all(true);
  for (size_t n : {size_t{50000}, size_t{1} << 20, size_t{16} << 20}) {
    SCOPED_TRACE(n);
    errno = 0;
    EXPECT_EQ(a->realloc(p, n, kSite), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_TRUE(Holds(p, 1000, 0x71));
    EXPECT_EQ(a->check(p), Verdict::kOk);
  }
  errno = 0;
  EXPECT_EQ(a->realloc(m, 8 << 20, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Holds(m, 1 << 20, 0x72));
  EXPECT_EQ(a->check(m), Verdict::kOk);
  ExpectConsistent(*a, "realloc refused");
  // Shrinking in place needs no memory.
  void* m2 = a->realloc(m, 700 * 1024, kSite);
  EXPECT_EQ(m2, m);
  EXPECT_TRUE(Holds(m2, 700 * 1024, 0x72));
  ExpectConsistent(*a, "shrunk in place");

  a->pal().reset_failures();
  void* p2 = a->realloc(p, 1 << 20, kSite);
  ASSERT_NE(p2, nullptr);
  EXPECT_TRUE(Holds(p2, 1000, 0x71));
  void* m3 = a->realloc(m2, 8 << 20, kSite);
  ASSERT_NE(m3, nullptr);
  EXPECT_TRUE(Holds(m3, 700 * 1024, 0x72));
  EXPECT_EQ(a->free(p2, kSite), Verdict::kOk);
  EXPECT_EQ(a->free(m3, kSite), Verdict::kOk);
  ExpectConsistent(*a, "after recovery");
  a->teardown();
  ExpectAllReturned(*a);
}

}  // namespace
