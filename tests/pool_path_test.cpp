// Tests of front/pool_path.h, PoolPath<Pal> by its own interface: pop_head() and hand_out() (the
// fast allocation's two steps), free_fast() (accepts a live block, declines everything else so
// the general path diagnoses it, I8), free_remote(), fits(), acquire() and release() (the general
// path, default and paranoid), and spill() (a thread's quarantine at its exit).
//
// PoolPath runs over real structures wired by hand as Allocator::init_locked() wires them
// (Registry, Pool, Quarantine, Validator, Reporter), on a FailingPal so that the Pool can be
// refused memory. Heaps are made with Pool::make_heap(); free_fast()'s heap is passed in.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "backing/backing.h"
#include "core/core.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/pool_path.h"
#include "front/quarantine.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"
#include "support/report.h"

using namespace hakmem;

namespace {

using Capture = hakmem_test::ReportCapture;

constexpr uint64_t kSecret = 0x0badc0de5eed1234ull;
constexpr uintptr_t kSite = 0x401234;
constexpr uintptr_t kFreeSite = 0x405678;
constexpr uint8_t kStrategy = 6;

/// The structures PoolPath reads and writes, wired as Allocator::init_locked() wires them, and
/// Allocator::teardown()'s teardown; the destructor checks that every mapped byte came back.
struct Rig {
  using Pal = FailingPal<LinuxPal>;

  Rig(bool paranoid, uint64_t quarantine_cap) {
    codec.set_secret(kSecret);
    hard.set_secret(kSecret);
    const GiveBack give_back{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<Rig*>(ctx)->releaser.add_raw(base, len); }, this};
    ok = registry.init(&pal, &mapped);
    pool.init(&pal, &registry, &mapped, give_back, kSecret);
    map.init(&pal, &registry, &mapped, give_back);
    zero.init(&pal, &mapped, give_back);
    releaser.init(&pal, &registry, &map, &codec, &mapped, 8 * kMiB, 0);
    validator.init({&registry, &codec, &pool.seal(), &zero, &hard, paranoid, true});
    reporter.init(/*abort_on_error=*/false);
    reporter.set_sink(&Capture::sink, &cap);
    if (paranoid) quarantine.init({&pal, &mapped, &registry, &validator, &hard}, quarantine_cap);
    path.init({&pool, &quarantine, &reporter, &validator, &hard, paranoid});
    me = ok ? pool.make_heap(1) : nullptr;
    other = ok ? pool.make_heap(1) : nullptr;
    ok = ok && me != nullptr && other != nullptr;
  }

  ~Rig() {
    auto give = [this](uintptr_t base, size_t len) { releaser.add_raw(base, len); };
    releaser.flush();
    pool.release_all(give);
    map.release_all(give);
    zero.release_all(give);
    quarantine.release_all(give);
    releaser.flush();
    registry.release_tables(give);
    releaser.flush();
    EXPECT_EQ(mapped.load(), 0u) << "teardown must give back every byte the components mapped";
  }

  Pal pal{};
  std::atomic<uint64_t> mapped{0};
  HeaderCodec codec{};
  Hardening hard{};
  Registry<Pal> registry{};
  Pool<Pal, ThreadHeap> pool{};
  MapBacking<Pal> map{};
  BatchReleaser<Pal> releaser{};
  ZeroArena<Pal> zero{};
  Validator<Pal> validator{};
  Quarantine<Pal> quarantine{};
  Reporter reporter{};
  PoolPath<Pal> path{};
  Capture cap;
  ThreadHeap* me = nullptr;     ///< the calling thread's heap
  ThreadHeap* other = nullptr;  ///< another thread's heap
  bool ok = false;
};

using Path = PoolPath<Rig::Pal>;

class PoolPathTest : public ::testing::Test {
protected:
  void SetUp() override { Wire(false, 0); }

  void Wire(bool paranoid, uint64_t quarantine_cap) {
    rig_.reset();
    rig_ = std::make_unique<Rig>(paranoid, quarantine_cap);
    ASSERT_TRUE(rig_->ok) << "the structures could not be mapped";
  }

  Rig& r() { return *rig_; }

  void* Acquire(size_t size, size_t align = 16, Origin origin = Origin::kMalloc) {
    return r().path.acquire(r().me, size, align, kSite, origin, kStrategy);
  }
  static uintptr_t U(const void* p) { return reinterpret_cast<uintptr_t>(p); }
  /// The user pointer of the first block on s's free list (0 when empty), and of its remote stack.
  static uintptr_t Head(const Span* s) { return s->free != 0 ? s->user_of(s->free) : 0; }
  static uintptr_t RemoteHead(const Span* s) {
    const uint32_t i = s->remote.load();
    return i != 0 ? s->user_of(i) : 0;
  }
  Span* SpanOf(const void* p) { return static_cast<Span*>(r().registry.lookup(U(p))); }
  /// Validator::locate() of p, as the general path sees it.
  Verdict Locate(const void* p, Located* at, Origin origin = Origin::kMalloc) {
    return r().validator.locate(U(p), origin, at);
  }
  bool FreeFast(void* p, Origin origin = Origin::kMalloc, uint64_t sized = kUnsized, ThreadHeap* as = nullptr) {
    ThreadHeap* h = as != nullptr ? as : r().me;
    return r().path.free_fast(r().pool, SpanOf(p), U(p), origin, sized, h,
                              [this, h](Span* s, uintptr_t user) { r().path.free_remote(h, s, user); });
  }
  /// Frees p through the general path (locate, then release) as heap `as`.
  void Release(void* p, ThreadHeap* as) {
    Located at;
    ASSERT_EQ(Locate(p, &at, Origin::kMalloc), Verdict::kOk);
    r().path.release(at, as, kFreeSite);
  }
  /// What the Pool prefix at `hdr` says (its word, and its guard or, in paranoid mode, its site).
  HeaderFields Fields(uintptr_t hdr) {
    PoolFields f;
    uintptr_t site = 0;
    EXPECT_TRUE(r().validator.open_pool(hdr + kHeaderSize, &f, &site)) << "prefix at " << hdr;
    return HeaderFields{
        Method::kPool, f.tag == PoolTag::kLive ? State::kLive : State::kFree, f.origin, f.strategy, f.size, site};
  }
  const PoolSeal& Seal() { return r().pool.seal(); }
  /// pop_head() as a block start (0 when it declines), its key checked against the block's.
  uintptr_t Pop(ThreadHeap* h, size_t c) {
    uintptr_t u = 0;
    uint64_t key = 0;
    if (!Path::pop_head(r().pool, h, c, &u, &key)) return 0;
    EXPECT_EQ(key, Seal().key(u));
    return u - kHeaderSize;
  }

  std::unique_ptr<Rig> rig_;
};

class ParanoidPoolPathTest : public PoolPathTest {
protected:
  void SetUp() override { Wire(true, 1 * kMiB); }
};

}  // namespace

// ================================================================== pop_head(), hand_out()

// Contract: pop_head() gives a freed block of the class's head span, newest first, and takes it
// off the list; a class with no span, or whose span has only carved (never freed) blocks, has none.
TEST_F(PoolPathTest, PopHeadTakesFreedBlocksNewestFirst) {
  const size_t c = SizeClasses::class_of(48);
  EXPECT_EQ(Pop(r().me, c), 0u) << "no span yet";
  void* a = Acquire(48);
  void* b = Acquire(48);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Pop(r().me, c), 0u) << "carving is Pool::alloc()'s, not pop_head()'s";
  ASSERT_TRUE(FreeFast(a));
  ASSERT_TRUE(FreeFast(b));
  const uintptr_t first = Pop(r().me, c);
  ASSERT_NE(first, 0u);
  EXPECT_EQ(first, U(b) - kHeaderSize) << "the newest free first, as its block start";
  const uintptr_t second = Pop(r().me, c);
  ASSERT_NE(second, 0u);
  EXPECT_EQ(second, U(a) - kHeaderSize);
  EXPECT_EQ(Pop(r().me, c), 0u);
  EXPECT_EQ(SpanOf(a)->free, 0u) << "both taken off the span's list";
  EXPECT_EQ(Pop(r().other, c), 0u) << "another heap's lists are its own";
}

// I2, I3: hand_out() writes one live Pool header with the strategy in force and the masked site,
// counts one allocation of the class, and gives the user pointer the Validator accepts.
TEST_F(PoolPathTest, HandOutWritesALivePoolHeaderAndCountsIt) {
  const size_t c = SizeClasses::class_of(100);
  const uintptr_t block = r().pool.alloc(r().me, c);
  ASSERT_NE(block, 0u);
  void* p = Path::hand_out(Seal(), r().me, c, block, 100, Origin::kNew, kStrategy);
  EXPECT_EQ(U(p), block + kHeaderSize);
  EXPECT_EQ(Fields(block), (HeaderFields{Method::kPool, State::kLive, Origin::kNew, kStrategy, 100, 0}))
      << "the default mode keeps no allocation site";
  EXPECT_EQ(PoolSeal::load(block + 8), Seal().key(U(p))) << "the guard before the word";
  EXPECT_EQ(r().me->counters.pool_allocs[c].get(), 1);
  EXPECT_EQ(r().me->counters.pool_alloc_count(), 1) << "one counter, one class";
  Located at;
  ASSERT_EQ(Locate(p, &at, Origin::kNew), Verdict::kOk);
  EXPECT_EQ(Validator<Rig::Pal>::capacity_of(at), SizeClasses::usable(c)) << "I5";
}

// ================================================================== free_fast()

// Contract: free_fast() of a live block of this thread's span seals it Free in place (every other
// field kept, so a double free is reported with size and site), counts one free, and pushes it on
// the span's free list, where the next allocation of its class finds it.
TEST_F(PoolPathTest, FreeFastFreesALiveBlockOntoItsSpansList) {
  for (const Origin o : {Origin::kMalloc, Origin::kNew, Origin::kNewArray}) {
    void* p = Acquire(200, 16, o);
    ASSERT_NE(p, nullptr);
    const size_t c = SpanOf(p)->cls;
    const HeaderFields live = Fields(U(p) - kHeaderSize);
    const int64_t frees = r().me->counters.pool_frees[c].get();
    ASSERT_TRUE(FreeFast(p, o, o == Origin::kNew ? 200 : kUnsized)) << origin_name(o);
    HeaderFields freed = live;
    freed.state = State::kFree;
    EXPECT_EQ(Fields(U(p) - kHeaderSize), freed);
    EXPECT_EQ(r().me->counters.pool_frees[c].get(), frees + 1);
    EXPECT_EQ(Head(SpanOf(p)), U(p)) << "the link lives at the user pointer";
    Located at;
    EXPECT_EQ(Locate(p, &at, o), Verdict::kDoubleFree) << "freed means not live";
    const uintptr_t b = Pop(r().me, c);
    ASSERT_NE(b, 0u);
    EXPECT_EQ(b, U(p) - kHeaderSize);
  }
}

/// Everything free_fast() could change: the header, the span's lists and both heaps' counters.
struct FastState {
  Header h;
  uint32_t free;
  uint32_t remote;
  int64_t frees, other_frees, remote_frees;
  bool operator==(const FastState& o) const {
    return h.lo == o.h.lo && h.hi == o.h.hi && free == o.free && remote == o.remote && frees == o.frees &&
           other_frees == o.other_frees && remote_frees == o.remote_frees;
  }
};

// I8: whatever free_fast() cannot prove a live plain block of the asked origin and size, it
// declines without changing anything, and Validator::locate() on the general path then names the
// misuse (or, for an aligned block, accepts it: those are the general path's to free).
TEST_F(PoolPathTest, FreeFastDeclinesEverythingButALivePlainBlockAndChangesNothing) {
  PoolSeal forger;
  forger.set_secret(kSecret ^ 0x100);
  struct Case {
    const char* what;
    Verdict general;  // what the general path says
  };
  auto check = [&](void* p, uintptr_t hdr, Origin o, uint64_t sized, const Case& c) {
    Span* s = SpanOf(p);
    ASSERT_NE(s, nullptr) << c.what;
    auto state = [&] {
      return FastState{HeaderCodec::load(reinterpret_cast<void*>(hdr)),
                       s->free,
                       s->remote.load(),
                       r().me->counters.pool_free_count(),
                       r().other->counters.pool_free_count(),
                       r().me->counters.remote_frees.get()};
    };
    const FastState before = state();
    EXPECT_FALSE(FreeFast(p, o, sized)) << c.what;
    EXPECT_TRUE(state() == before) << c.what << ": a declined fast free must change nothing";
    Located at;
    EXPECT_EQ(Locate(p, &at, o), c.general) << c.what;
  };

  void* freed = Acquire(64);
  ASSERT_TRUE(FreeFast(freed));
  check(freed, U(freed) - kHeaderSize, Origin::kMalloc, kUnsized, {"double free", Verdict::kDoubleFree});

  void* forged = Acquire(64);
  forger.encode(PoolFields{PoolTag::kLive, Origin::kMalloc, 0, 64}, U(forged));
  check(forged, U(forged) - kHeaderSize, Origin::kMalloc, kUnsized, {"forged word", Verdict::kCorrupted});

  void* guarded = Acquire(64);
  static_cast<unsigned char*>(guarded)[-16] ^= 1;  // a neighbour's one-byte overflow
  check(guarded, U(guarded) - kHeaderSize, Origin::kMalloc, kUnsized, {"guard overwritten", Verdict::kCorrupted});

  void* big = Acquire(64);
  const uint64_t room = SpanOf(big)->block_size - kHeaderSize;
  Seal().encode(PoolFields{PoolTag::kLive, Origin::kMalloc, 0, room + 1}, U(big));
  check(big, U(big) - kHeaderSize, Origin::kMalloc, kUnsized, {"size past the room", Verdict::kCorrupted});

  void* live = Acquire(64, 16, Origin::kNew);
  check(live, U(live) - kHeaderSize, Origin::kMalloc, kUnsized, {"other origin", Verdict::kMismatchedOrigin});
  check(live, U(live) - kHeaderSize, Origin::kNew, 65, {"other size", Verdict::kOk});
  check(static_cast<char*>(live) + 16, U(live) - kHeaderSize, Origin::kNew, kUnsized,
        {"interior pointer", Verdict::kMisaligned});

  void* aligned = Acquire(64, 64, Origin::kAligned);
  ASSERT_EQ(U(aligned) % 64, 0u);
  Located fwd;
  ASSERT_EQ(Locate(aligned, &fwd, Origin::kAligned), Verdict::kOk);
  ASSERT_NE(fwd.header, fwd.block) << "the first block of a span needs a forward record for 64";
  check(aligned, U(aligned) - kHeaderSize, Origin::kAligned, kUnsized, {"aligned block", Verdict::kOk});

  Span* s = SpanOf(live);
  const uintptr_t uncarved = s->base + uintptr_t{s->carved.load()} * s->block_size + kHeaderSize;
  // A valid live prefix where no block was handed out: only the carved count refuses it.
  PoolSeal::store(uncarved - 8, Seal().key(uncarved));
  Seal().encode(PoolFields{PoolTag::kLive, Origin::kMalloc, 0, 64}, uncarved);
  check(reinterpret_cast<void*>(uncarved), uncarved - kHeaderSize, Origin::kMalloc, kUnsized,
        {"never handed out", Verdict::kInvalidPointer});
  void* first = Acquire(1000);  // the first block of its span, live
  Span* fs = SpanOf(first);
  ASSERT_EQ(U(first), fs->base + kHeaderSize);
  check(reinterpret_cast<void*>(fs->base + 8), fs->base, Origin::kMalloc, kUnsized,
        {"below the first user pointer", Verdict::kMisaligned});
}

// Contract: a block of a span another heap owns is freed through free_remote(): onto the span's
// remote stack (never its owner-only list), counted as the freeing thread's free and remote free,
// with the owner's hint bit set so its next refill drains it.
TEST_F(PoolPathTest, FreeFastOfAnotherHeapsSpanGoesToItsRemoteStack) {
  void* p = Acquire(96);
  ASSERT_NE(p, nullptr);
  Span* s = SpanOf(p);
  const uint32_t owner_list = s->free;
  ASSERT_TRUE(FreeFast(p, Origin::kMalloc, kUnsized, r().other));
  EXPECT_EQ(s->free, owner_list) << "the owner's list is the owner's";
  EXPECT_EQ(RemoteHead(s), U(p));
  EXPECT_EQ(r().other->counters.pool_frees[s->cls].get(), 1);
  EXPECT_EQ(r().other->counters.remote_frees.get(), 1);
  EXPECT_EQ(r().me->counters.pool_free_count(), 0);
  EXPECT_NE(r().me->remote_hint[s->cls / 64].load() & (uint64_t{1} << (s->cls % 64)), 0u);
  Located at;
  EXPECT_EQ(Locate(p, &at), Verdict::kDoubleFree) << "sealed Free before it left";
  // The direct call: free_remote() is Pool::free() of a block already sealed Free, as the given
  // thread: a stranger's goes on the remote stack, the owner's on its local list.
  auto seal_free = [&](void* x) {
    const HeaderFields f = Fields(U(x) - kHeaderSize);
    Seal().encode(PoolFields{PoolTag::kFree, f.origin, f.strategy, f.size}, U(x));
    return U(x);
  };
  void* q = Acquire(96);
  void* w = Acquire(96);
  ASSERT_EQ(SpanOf(q), s);
  ASSERT_EQ(SpanOf(w), s);
  r().path.free_remote(r().other, s, seal_free(q));
  EXPECT_EQ(RemoteHead(s), U(q));
  EXPECT_EQ(s->user_of(r().pool.open_link(RemoteHead(s))), U(p)) << "its link, opened, names p";
  EXPECT_EQ(r().other->counters.remote_frees.get(), 2);
  r().path.free_remote(r().me, s, seal_free(w));
  EXPECT_EQ(Head(s), U(w)) << "as the owner: the local list";
  EXPECT_EQ(RemoteHead(s), U(q)) << "the remote stack is left for the owner's drain";
}

// Contract: a block of this thread's span that sits on the full list is freed through Pool::free(),
// which moves the span back to the partial list: its room is found again.
TEST_F(PoolPathTest, FreeFastOfAFullSpanMovesItBackToThePartialList) {
  const size_t c = SizeClasses::class_of(200 * kKiB);
  const size_t n = SizeClasses::span_size(c) / SizeClasses::block_size(c);
  ASSERT_GE(n, 1u);
  ASSERT_LE(n, 64u) << "keep the test small";
  void* first = Acquire(SizeClasses::usable(c));
  ASSERT_NE(first, nullptr);
  Span* s = SpanOf(first);
  for (size_t i = 1; i < n; ++i) ASSERT_EQ(SpanOf(Acquire(SizeClasses::usable(c))), s);
  void* next = Acquire(SizeClasses::usable(c));  // the full span goes to the full list
  ASSERT_NE(SpanOf(next), s);
  ASSERT_TRUE(s->in_full());
  ASSERT_TRUE(FreeFast(first));
  EXPECT_FALSE(s->in_full());
  EXPECT_EQ(Head(s), U(first));
  bool listed = false;
  for (Span* x = r().me->partial[c].head; x != nullptr; x = x->next) listed |= x == s;
  EXPECT_TRUE(listed) << "the span is on the partial list again";
  EXPECT_EQ(r().me->full[c].head, nullptr);
}

// ================================================================== fits(), acquire()

// Contract: fits() is exactly "the request, its canary and its alignment slack fit the largest
// Pool class"; one byte more does not.
TEST_F(PoolPathTest, FitsIsTheLargestClassExactly) {
  for (const bool paranoid : {false, true}) {
    Wire(paranoid, 0);
    const uint64_t canary = paranoid ? kCanarySize : 0;
    for (const size_t align : {size_t{16}, size_t{64}, size_t{4096}}) {
      const uint64_t most = SizeClasses::kMaxUsable - canary - align_slack(align);
      EXPECT_TRUE(r().path.fits(most, align)) << align << (paranoid ? " paranoid" : "");
      EXPECT_FALSE(r().path.fits(most + 1, align)) << align << (paranoid ? " paranoid" : "");
    }
    EXPECT_TRUE(r().path.fits(0, 16));
  }
}

// I2, I3, I5: acquire() gives an aligned user pointer inside its block (even for size 0), the
// live Pool header (forward record first for an aligned one) with the strategy and masked site,
// room for the request, and counts one allocation.
TEST_F(PoolPathTest, AcquireGivesAnAlignedLiveBlockWithItsHeaders) {
  int64_t count = 0;
  for (const size_t align : {size_t{16}, size_t{32}, size_t{256}, size_t{4096}}) {
    for (const size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}}) {
      void* p = r().path.acquire(r().me, size, align, kSite | uintptr_t{1} << 50, Origin::kAligned, kStrategy);
      ASSERT_NE(p, nullptr) << size << " align " << align;
      ++count;
      EXPECT_EQ(U(p) % align, 0u);
      Located at;
      ASSERT_EQ(Locate(p, &at, Origin::kAligned), Verdict::kOk) << size << " align " << align;
      EXPECT_EQ(at.f, (HeaderFields{Method::kPool, State::kLive, Origin::kAligned, kStrategy, size, 0}));
      EXPECT_EQ(at.header == at.block, align <= 16 || (at.block + kHeaderSize) % align == 0);
      EXPECT_GE(Validator<Rig::Pal>::capacity_of(at), size == 0 ? 1 : size) << "inside its block";
      EXPECT_EQ(Pool<Rig::Pal>::block_start(SpanOf(p), U(p)), at.block);
    }
  }
  EXPECT_EQ(r().me->counters.pool_alloc_count(), count);
}

// I12: when the Pool cannot grow, acquire() gives nullptr with ENOMEM and counts nothing; the next
// request after the platform recovers succeeds.
TEST_F(PoolPathTest, AcquireOutOfMemoryIsNullWithEnomem) {
  r().pal.set_fail_all(true);
  errno = 0;
  EXPECT_EQ(Acquire(1000), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(r().me->counters.pool_alloc_count(), 0);
  EXPECT_GT(r().pal.failed_maps(), 0u);
  r().pal.reset_failures();
  EXPECT_NE(Acquire(1000), nullptr);
  EXPECT_EQ(r().me->counters.pool_alloc_count(), 1);
}

// ================================================================== release()

// Contract: release() of a located block re-seals its real header Free, counts one free, and puts
// the block (by its start, not its user pointer) back on its span; the forward record of an
// aligned block stays, so a second free is still a double free with its size.
TEST_F(PoolPathTest, ReleaseSealsFreeAndReturnsTheBlockStart) {
  void* p = Acquire(300, 128, Origin::kAligned);
  ASSERT_NE(p, nullptr);
  Located at;
  ASSERT_EQ(Locate(p, &at), Verdict::kOk);
  ASSERT_NE(at.header, at.block);
  const size_t c = SpanOf(p)->cls;
  r().path.release(at, r().me, kFreeSite);
  EXPECT_EQ(Fields(at.header), (HeaderFields{Method::kPool, State::kFree, Origin::kAligned, kStrategy, 300, 0}));
  EXPECT_EQ(r().me->counters.pool_frees[c].get(), 1);
  EXPECT_EQ(Head(SpanOf(p)), at.block + kHeaderSize);
  Located again;
  EXPECT_EQ(Locate(p, &again), Verdict::kDoubleFree);
  EXPECT_EQ(again.f.size, 300u) << "the report can name the size";
  const uintptr_t b = Pop(r().me, c);
  ASSERT_NE(b, 0u);
  EXPECT_EQ(b, at.block);
}

// Contract: a thread without a heap (me == nullptr) frees into the shared orphan counters and the
// span's remote stack; no heap's counters move.
TEST_F(PoolPathTest, ReleaseWithoutAHeapCountsInTheOrphanSet) {
  void* p = Acquire(40);
  ASSERT_NE(p, nullptr);
  const size_t c = SpanOf(p)->cls;
  const int64_t orphan = r().pool.orphan_counters().pool_frees[c].get();
  Release(p, nullptr);
  EXPECT_EQ(r().pool.orphan_counters().pool_frees[c].get(), orphan + 1);
  EXPECT_EQ(r().me->counters.pool_free_count(), 0);
  EXPECT_EQ(RemoteHead(SpanOf(p)), U(p));
  EXPECT_EQ(SpanOf(p)->free, 0u);
}

// ================================================================== paranoid mode

// Contract (paranoid): acquire() leaves room for and writes the canary right after the request,
// and fits() counts it.
TEST_F(ParanoidPoolPathTest, AcquireWritesTheCanaryAfterTheRequest) {
  for (const size_t size : {size_t{0}, size_t{8}, size_t{24}, SizeClasses::usable(3)}) {
    void* p = Acquire(size);
    ASSERT_NE(p, nullptr) << size;
    EXPECT_TRUE(r().hard.canary_intact(U(p) + size)) << size;
    Located at;
    ASSERT_EQ(Locate(p, &at), Verdict::kOk) << size;
    EXPECT_GE(Validator<Rig::Pal>::capacity_of(at), size + kCanarySize) << size;
  }
}

// Contract (paranoid): release() fills the block (free-site record, then the pattern) and holds it
// in the thread's quarantine instead of its span's list; spill() moves the thread's ring to the
// shared one at its exit, still held.
TEST_F(ParanoidPoolPathTest, ReleaseQuarantinesAndSpillMovesTheRingToTheSharedOne) {
  void* p = Acquire(64);
  ASSERT_NE(p, nullptr);
  Span* s = SpanOf(p);
  Located at;
  ASSERT_EQ(Locate(p, &at), Verdict::kOk);
  r().path.release(at, r().me, kFreeSite);
  EXPECT_EQ(s->free, 0u) << "held, not reusable";
  EXPECT_EQ(s->remote.load(), 0u);
  EXPECT_EQ(r().quarantine.held_bytes(), s->block_size);
  EXPECT_EQ(r().me->quarantine.fifo.count(), 1u);
  const uint64_t room = Validator<Rig::Pal>::capacity_of(at);
  track_own(U(p), room);  // (HAKMEM_TRACK=asan: the quarantined block is poisoned; the test reads it)
  uintptr_t site = 0;
  ASSERT_TRUE(r().hard.read_record(U(p), &site));
  EXPECT_EQ(site, kFreeSite);
  EXPECT_TRUE(Hardening::fill_intact(U(p) + kFreedRecord, U(p) + room));
  EXPECT_EQ(r().me->counters.pool_frees[s->cls].get(), 1);
  r().path.spill(r().me);
  EXPECT_EQ(r().me->quarantine.fifo.count(), 0u);
  EXPECT_EQ(r().quarantine.held_bytes(), s->block_size) << "moved, not released";
  EXPECT_EQ(s->free, 0u);
  EXPECT_EQ(r().cap.text, "");
}

// Contract (paranoid, no quarantine): a freed block goes straight back to its span, and its reuse
// checks the fill: intact, it is handed out again; written after free, it is reported through the
// Reporter and withheld for good, and the next block is handed out instead.
TEST_F(ParanoidPoolPathTest, ReuseChecksTheFillAndReportsAWriteAfterFree) {
  Wire(true, 0);
  void* p = Acquire(100);
  ASSERT_NE(p, nullptr);
  Span* s = SpanOf(p);
  Release(p, r().me);
  EXPECT_EQ(Head(s), U(p)) << "no quarantine: straight back";
  EXPECT_EQ(Acquire(100), p) << "an intact freed block is reused";
  EXPECT_EQ(r().reporter.count(Verdict::kWriteAfterFree), 0u);
  Release(p, r().me);
  track_own(U(p), kFreedRecord + 21);                     // (HAKMEM_TRACK=asan would catch the stray write first)
  static_cast<unsigned char*>(p)[kFreedRecord + 20] = 0;  // the write after free
  void* q = Acquire(100);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p) << "a block written after free is never handed out again";
  EXPECT_EQ(r().reporter.count(Verdict::kWriteAfterFree), 1u);
  EXPECT_EQ(r().quarantine.withheld_bytes(), s->block_size);
  EXPECT_EQ(r().cap.text.rfind("hakmem: write after free of " + hakmem_test::hex(p), 0), 0u) << r().cap.text;
}
