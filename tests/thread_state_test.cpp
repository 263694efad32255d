// Thread state tests (src/front/thread_state.h), on ThreadState<Host, PoolT> itself with a fake
// host and a fake heap source: a thread's heap is made on its first heap() call and never by
// heap_if_present(); each thread has its own heap and keeps it; fast_id() is the allocator's id,
// the one every thread's slot holds once it has a heap (0 in paranoid mode, new after a teardown);
// the exit hook hands each thread's heap to Host::thread_exiting once, on the exiting thread, with
// its slot already cleared; two allocators of one type share the slot but keep their own heaps.
//
// ThreadState's slot is thread_local per <Host, PoolT>, and its ids are never reused, so every
// scenario runs on threads of its own: the main thread's slot, left by earlier tests, holds an id
// that matches no later allocator and is never looked at.
#include <gtest/gtest.h>
#include <pthread.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "front/thread_state.h"

using namespace hakmem;

namespace {

struct FakeHost;

/// The PoolT: makes heaps on request, recording each request; can be told to fail the next ones.
struct FakeHeaps {
  ThreadHeap* make_heap(uint64_t allocator_id) {
    std::lock_guard<std::mutex> g(m);
    ids.push_back(allocator_id);
    if (failures > 0) {
      --failures;
      return nullptr;
    }
    made.push_back(std::make_unique<ThreadHeap>());
    made.back()->allocator_id = allocator_id;
    return made.back().get();
  }
  size_t requests() {
    std::lock_guard<std::mutex> g(m);
    return ids.size();
  }
  size_t count() {
    std::lock_guard<std::mutex> g(m);
    return made.size();
  }

  std::mutex m;
  std::vector<uint64_t> ids;  ///< the allocator id of every make_heap() call, in order
  std::vector<std::unique_ptr<ThreadHeap>> made;
  int failures = 0;  ///< make_heap() calls still to fail
};

using Threads = ThreadState<FakeHost, FakeHeaps>;

/// One call of Host::thread_exiting, and what the exiting thread's slot said then.
struct Exit {
  ThreadHeap* heap;
  std::thread::id thread;
  uint64_t slot_id;
  bool has_heap;
  ThreadHeap* present;  ///< heap_if_present() during the hook
};

/// The Host: records every thread_exiting() call; `during`, if set, runs inside the first one.
struct FakeHost {
  void thread_exiting(ThreadHeap* h) {
    Exit e{h, std::this_thread::get_id(), Threads::tls.id, state->has_heap(), state->heap_if_present()};
    std::function<void()> once;
    {
      std::lock_guard<std::mutex> g(m);
      exits.push_back(e);
      once.swap(during);
    }
    if (once) once();
  }
  std::vector<Exit> Exits() {
    std::lock_guard<std::mutex> g(m);
    return exits;
  }

  Threads* state = nullptr;
  std::mutex m;
  std::vector<Exit> exits;
  std::function<void()> during;
};

/// A one-shot signal between two threads.
class Signal {
public:
  void notify() {
    std::lock_guard<std::mutex> g(m_);
    set_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return set_; });
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  bool set_ = false;
};

/// Runs fn on a new thread and waits until that thread has ended (its key destructors have run).
void OnThread(const std::function<void()>& fn) { std::thread(fn).join(); }

class ThreadStateTest : public ::testing::Test {
protected:
  void SetUp() override {
    host_.state = &state_;
    inited_ = state_.init(&host_, &heaps_, /*fast=*/true);
    ASSERT_TRUE(inited_);
  }
  // (Without a key of its own, a teardown would delete whatever key 0 is.)
  void TearDown() override {
    if (inited_) state_.teardown();
  }

  FakeHost host_;
  FakeHeaps heaps_;
  Threads state_;
  bool inited_ = false;
};

}  // namespace

// ------------------------------------------------------------ the heap, made lazily

// Contract: a thread has no heap until its first heap() call, which makes exactly one (for this
// allocator's id, owned by the host); later calls return the same heap without making another.
TEST_F(ThreadStateTest, HeapIsMadeOnFirstUseAndThenKept) {
  OnThread([&] {
    EXPECT_FALSE(state_.has_heap());
    EXPECT_EQ(state_.heap_if_present(), nullptr) << "no heap before the first use";
    EXPECT_EQ(heaps_.requests(), 0u) << "nothing is made before the first use";
    ThreadHeap* h = state_.heap();
    ASSERT_NE(h, nullptr);
    ASSERT_EQ(heaps_.requests(), 1u);
    EXPECT_EQ(heaps_.ids[0], state_.fast_id()) << "the heap is made for this allocator's id";
    EXPECT_EQ(h->owner, &host_) << "the exit hook finds its host through the heap";
    EXPECT_TRUE(state_.has_heap());
    EXPECT_EQ(Threads::tls.id, state_.fast_id()) << "the slot now holds the allocator's id: the fast paths match";
    EXPECT_EQ(Threads::tls.heap, h);
    EXPECT_EQ(state_.heap_if_present(), h);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(state_.heap(), h) << "the same heap on every later call";
    EXPECT_EQ(heaps_.requests(), 1u) << "and no other is made";
  });
}

// Contract: heap_if_present() never makes a heap; a thread that only asked it has no exit hook.
TEST_F(ThreadStateTest, HeapIfPresentNeverMakesOne) {
  OnThread([&] {
    for (int i = 0; i < 3; ++i) EXPECT_EQ(state_.heap_if_present(), nullptr);
    EXPECT_FALSE(state_.has_heap());
  });
  EXPECT_EQ(heaps_.requests(), 0u);
  EXPECT_TRUE(host_.Exits().empty()) << "a thread without a heap has nothing to hand back";
}

// Contract: when no heap can be made, heap() returns nullptr and the thread stays without one (no
// slot, no key, no exit hook); the next call tries again.
TEST_F(ThreadStateTest, AHeapThatCannotBeMadeIsTriedAgain) {
  heaps_.failures = 1;
  ThreadHeap* got = nullptr;
  OnThread([&] {
    EXPECT_EQ(state_.heap(), nullptr);
    EXPECT_FALSE(state_.has_heap());
    EXPECT_NE(Threads::tls.id, state_.fast_id()) << "a failed make leaves the fast paths unmatched";
    EXPECT_EQ(state_.heap_if_present(), nullptr);
    got = state_.heap();
    ASSERT_NE(got, nullptr) << "the second call makes one";
    EXPECT_TRUE(state_.has_heap());
  });
  EXPECT_EQ(heaps_.requests(), 2u);
  const std::vector<Exit> exits = host_.Exits();
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].heap, got);
  // A thread whose only attempt failed exits without a hook.
  heaps_.failures = 1;
  OnThread([&] { EXPECT_EQ(state_.heap(), nullptr); });
  EXPECT_EQ(host_.Exits().size(), 1u);
}

// ------------------------------------------------------------ threads and ids

// Contract: threads never share a heap; every thread's slot holds the same id, fast_id(), which is
// the allocator's and neither 0 ("not initialized") nor kNoHeap (the empty slot's).
TEST_F(ThreadStateTest, EachThreadHasItsOwnHeapUnderTheAllocatorsId) {
  constexpr size_t kThreads = 6;
  const uint64_t id = state_.fast_id();
  EXPECT_NE(id, 0u);
  EXPECT_NE(id, Threads::kNoHeap);
  std::vector<ThreadHeap*> heaps(kThreads, nullptr);
  std::vector<uint64_t> slot_ids(kThreads, 0);
  std::mutex m;
  std::condition_variable cv;
  size_t arrived = 0;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      heaps[t] = state_.heap();
      slot_ids[t] = Threads::tls.id;
      // All alive at once: no heap could be passed from an exited thread to a later one.
      std::unique_lock<std::mutex> g(m);
      ++arrived;
      cv.notify_all();
      cv.wait(g, [&] { return arrived == kThreads; });
      EXPECT_EQ(state_.heap(), heaps[t]) << "a thread keeps its heap while others make theirs";
    });
  }
  for (std::thread& th : threads) th.join();
  const std::set<ThreadHeap*> distinct(heaps.begin(), heaps.end());
  EXPECT_EQ(distinct.size(), kThreads) << "one heap per thread";
  EXPECT_EQ(distinct.count(nullptr), 0u);
  for (uint64_t s : slot_ids) EXPECT_EQ(s, id) << "the same id on every thread";
  EXPECT_EQ(state_.fast_id(), id) << "stable while the allocator lives";
}

// Contract: ids are per allocator and never reused: two allocators have different ones, and a
// teardown followed by init() gives a new id, so no thread's slot from before still matches.
TEST_F(ThreadStateTest, IdsAreDistinctAndNewAfterATeardown) {
  FakeHost other_host;
  FakeHeaps other_heaps;
  Threads other;
  other_host.state = &other;
  ASSERT_TRUE(other.init(&other_host, &other_heaps, true));
  const uint64_t first = state_.fast_id();
  EXPECT_NE(other.fast_id(), first);
  EXPECT_NE(other.fast_id(), 0u);

  // A thread with a heap of the first incarnation sees it vanish with the teardown.
  Signal have_heap, reinitialized;
  ThreadHeap* before = nullptr;
  ThreadHeap* after = nullptr;
  std::thread t([&] {
    before = state_.heap();
    have_heap.notify();
    reinitialized.wait();
    EXPECT_FALSE(state_.has_heap()) << "the slot holds the old id, which matches nothing now";
    EXPECT_EQ(state_.heap_if_present(), nullptr) << "the old key's value is gone with the key";
    after = state_.heap();
    EXPECT_EQ(Threads::tls.id, state_.fast_id());
  });
  have_heap.wait();
  state_.teardown();
  inited_ = state_.init(&host_, &heaps_, true);
  EXPECT_TRUE(inited_);  // (no ASSERT: the thread waits, and must be let go and joined)
  const uint64_t second = state_.fast_id();
  reinitialized.notify();
  t.join();
  EXPECT_NE(second, first);
  EXPECT_NE(second, other.fast_id());
  ASSERT_NE(before, nullptr);
  ASSERT_NE(after, nullptr);
  EXPECT_NE(after, before) << "a new heap for the new incarnation";
  EXPECT_EQ((std::vector<uint64_t>{first, second}), heaps_.ids);
  // Only the live key's destructor runs: the old heap is not handed back to the new incarnation.
  const std::vector<Exit> exits = host_.Exits();
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].heap, after);
  EXPECT_TRUE(other_host.Exits().empty());
  other.teardown();
}

// Contract: in paranoid mode (fast = false) fast_id() is 0, which no slot holds, so no fast path
// matches; threads still get heaps and their exit hooks.
TEST_F(ThreadStateTest, WithoutFastPathsNoSlotMatchesButHeapsWork) {
  FakeHost host;
  FakeHeaps heaps;
  Threads paranoid;
  host.state = &paranoid;
  ASSERT_TRUE(paranoid.init(&host, &heaps, /*fast=*/false));
  EXPECT_EQ(paranoid.fast_id(), 0u);
  ThreadHeap* h = nullptr;
  OnThread([&] {
    EXPECT_NE(Threads::tls.id, paranoid.fast_id()) << "an empty slot";
    h = paranoid.heap();
    ASSERT_NE(h, nullptr);
    EXPECT_TRUE(paranoid.has_heap());
    EXPECT_EQ(paranoid.heap(), h);
    EXPECT_NE(Threads::tls.id, paranoid.fast_id()) << "a slot with a heap still fails the fast paths' test";
    EXPECT_NE(heaps.ids.at(0), 0u) << "the heap is made for the real id";
  });
  const std::vector<Exit> exits = host.Exits();
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].heap, h);
  paranoid.teardown();
}

// ------------------------------------------------------------ the exit hook

// Contract: a thread's exit hands its heap to Host::thread_exiting exactly once, on that thread,
// after its slot was cleared (a use during the hook cannot be served by the heap being retired).
TEST_F(ThreadStateTest, ExitHandsTheHeapBackOnceOnTheExitingThread) {
  ThreadHeap* h = nullptr;
  std::thread::id tid;
  OnThread([&] {
    tid = std::this_thread::get_id();
    h = state_.heap();
    state_.heap();
    state_.heap();
  });
  ASSERT_NE(h, nullptr);
  const std::vector<Exit> exits = host_.Exits();
  ASSERT_EQ(exits.size(), 1u) << "once, however often the heap was used";
  EXPECT_EQ(exits[0].heap, h);
  EXPECT_EQ(exits[0].thread, tid) << "the hook runs on the exiting thread";
  EXPECT_EQ(exits[0].slot_id, Threads::kNoHeap) << "the slot is emptied before the host hears of the exit";
  EXPECT_FALSE(exits[0].has_heap);
  EXPECT_EQ(exits[0].present, nullptr);
}

// Contract: every thread with a heap gets its own hook call, with its own heap (none lost, none
// handed back twice).
TEST_F(ThreadStateTest, EveryExitingThreadHandsBackItsOwnHeap) {
  constexpr size_t kThreads = 8;
  std::vector<ThreadHeap*> heaps(kThreads, nullptr);
  std::vector<std::thread::id> tids(kThreads);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      tids[t] = std::this_thread::get_id();
      heaps[t] = state_.heap();
    });
  }
  for (std::thread& th : threads) th.join();
  const std::vector<Exit> exits = host_.Exits();
  ASSERT_EQ(exits.size(), kThreads);
  std::set<ThreadHeap*> handed;
  for (const Exit& e : exits) {
    handed.insert(e.heap);
    size_t t = 0;
    while (t < kThreads && heaps[t] != e.heap) ++t;
    ASSERT_LT(t, kThreads) << "a heap no thread had";
    EXPECT_EQ(e.thread, tids[t]) << "handed back by the thread that used it";
  }
  EXPECT_EQ(handed.size(), kThreads) << "each heap once";
  EXPECT_EQ(heaps_.count(), kThreads);
}

// Contract: a heap the thread makes after its hook ran (an allocation from a later destructor, or
// from the hook itself) is handed back as well, by the next round of key destructors.
TEST_F(ThreadStateTest, AHeapMadeDuringTheExitHookIsHandedBackToo) {
  ThreadHeap* late = nullptr;
  host_.during = [&] { late = state_.heap(); };
  ThreadHeap* h = nullptr;
  OnThread([&] { h = state_.heap(); });
  ASSERT_NE(late, nullptr);
  EXPECT_NE(late, h) << "the retiring heap is not handed out again";
  const std::vector<Exit> exits = host_.Exits();
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_EQ(exits[0].heap, h);
  EXPECT_EQ(exits[1].heap, late) << "the late heap is not leaked";
  EXPECT_EQ(exits[0].thread, exits[1].thread);
  EXPECT_EQ(heaps_.count(), 2u);
}

// Contract: teardown() deletes the key: a thread still running then exits without calling the
// torn-down host.
TEST_F(ThreadStateTest, TeardownSilencesTheHookOfThreadsStillRunning) {
  Signal have_heap, torn_down;
  std::thread t([&] {
    EXPECT_NE(state_.heap(), nullptr);
    have_heap.notify();
    torn_down.wait();
  });
  have_heap.wait();
  state_.teardown();
  torn_down.notify();
  t.join();
  EXPECT_TRUE(host_.Exits().empty());
  inited_ = state_.init(&host_, &heaps_, true);  // for TearDown()
  EXPECT_TRUE(inited_);
}

// ------------------------------------------------------------ two allocators of one type

// Contract: allocators of one type share each thread's slot, but each finds its own heap through
// its key when the slot holds the other's (no second heap is made), and each host gets its own
// heap back at the thread's exit.
TEST_F(ThreadStateTest, TwoAllocatorsShareTheSlotButKeepTheirHeaps) {
  FakeHost host_b;
  FakeHeaps heaps_b;
  Threads b;
  host_b.state = &b;
  ASSERT_TRUE(b.init(&host_b, &heaps_b, true));
  ThreadHeap* ha = nullptr;
  ThreadHeap* hb = nullptr;
  OnThread([&] {
    ha = state_.heap();
    hb = b.heap();
    ASSERT_NE(ha, nullptr);
    ASSERT_NE(hb, nullptr);
    EXPECT_NE(ha, hb);
    EXPECT_EQ(Threads::tls.id, b.fast_id()) << "the slot holds the last one used";
    EXPECT_FALSE(state_.has_heap());
    EXPECT_EQ(state_.heap_if_present(), ha) << "found through the key";
    EXPECT_EQ(state_.heap(), ha) << "the same heap, not a new one";
    EXPECT_TRUE(state_.has_heap());
    EXPECT_FALSE(b.has_heap());
    EXPECT_EQ(b.heap(), hb);
  });
  EXPECT_EQ(heaps_.count(), 1u);
  EXPECT_EQ(heaps_b.count(), 1u);
  const std::vector<Exit> ea = host_.Exits();
  const std::vector<Exit> eb = host_b.Exits();
  ASSERT_EQ(ea.size(), 1u);
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(ea[0].heap, ha);
  EXPECT_EQ(eb[0].heap, hb);
  b.teardown();
}
