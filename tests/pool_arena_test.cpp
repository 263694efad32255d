// The Pool arena (backing/pool_arena.h): where spans are committed, what its table answers, what a
// refused reservation or a refused registration leaves, and that teardown returns every byte.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "front/front.h"
#include "support/report.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kSite = 0x1234;
using Arena = PoolArena<LinuxPal>;

/// Every platform call recorded and refusable, with the arena (RecordingConfig has none).
struct ArenaRecordingConfig {
  using Pal = RecordingPal<FailingPal<LinuxPal>>;
  static constexpr bool kPoolArena = true;
};

/// The real platform without the arena: spans mapped one by one, found through the Registry.
struct NoArenaConfig {
  using Pal = LinuxPal;
};

Options quiet_options() {
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kDecayMs, 0);
  return o;
}

/// The sizes of a few Pool classes, small to large (a large class's span is not a whole number
/// of arena slots).
const std::vector<size_t>& sizes() {
  static const std::vector<size_t> v{16, 48, 100, 1000, 5000, 20000, 60000};
  return v;
}

template <class Config>
void ExpectAuditOk(Allocator<Config>& a) {
  const AuditResult r = a.audit();
  EXPECT_TRUE(r.ok) << r.failure;
}

}  // namespace

TEST(PoolArena, EverySpanOfATestAllocatorLiesInItsArenaAndItsTableNamesIt) {
  ScopedAllocator<TestConfig> a(quiet_options());
  const auto& arena = a->pool_arena_for_testing();
  ASSERT_EQ(arena.slots(), Arena::kSlots) << "the reservation is granted here";
  EXPECT_EQ(arena.base() % Arena::kAlign, 0u) << "the arena starts on a GiB (one Registry leaf)";
  std::vector<void*> blocks;
  for (size_t n : sizes()) {
    SCOPED_TRACE(n);
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    memset(p, 0x5a, n);
    blocks.push_back(p);
    const auto u = reinterpret_cast<uintptr_t>(p);
    bool inside = false;
    Span* s = arena.span_of(u, &inside);
    EXPECT_TRUE(inside);
    EXPECT_EQ(static_cast<Extent*>(s), a->registry_for_testing().lookup(u)) << "the table agrees with the Registry";
    ASSERT_NE(s, nullptr);
    EXPECT_EQ((s->base - arena.base()) % Arena::kSlotBytes, 0u) << "a span starts a slot";
    EXPECT_LE(s->base + s->length, arena.cursor());
    // Every slot the span covers names it, its last byte's included.
    for (uintptr_t a = s->base; a < s->base + s->length; a += Arena::kSlotBytes) {
      bool in = false;
      EXPECT_EQ(arena.span_of(a, &in), s);
      EXPECT_TRUE(in);
    }
    bool last_inside = false;
    EXPECT_EQ(arena.span_of(s->base + s->length - 1, &last_inside), s);
    EXPECT_TRUE(last_inside);
  }
  for (void* p : blocks) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectAuditOk(*a);
}

TEST(PoolArena, AddressesOutsideItAreOutsideAndItsFreeSlotsNameNoSpan) {
  ScopedAllocator<TestConfig> a(quiet_options());
  void* p = a->alloc(64, kSite);  // the first span
  ASSERT_NE(p, nullptr);
  const auto& arena = a->pool_arena_for_testing();
  bool inside = true;
  EXPECT_EQ(arena.span_of(arena.base() - 1, &inside), nullptr);
  EXPECT_FALSE(inside);
  EXPECT_EQ(arena.span_of(arena.base() + Arena::kBytes, &inside), nullptr);
  EXPECT_FALSE(inside);
  for (uintptr_t v : {uintptr_t{0}, uintptr_t{0x1000}, ~uintptr_t{0}, uintptr_t{1} << 63}) {
    EXPECT_EQ(arena.span_of(v, &inside), nullptr) << v;
    EXPECT_FALSE(inside) << v;
  }
  for (uintptr_t v : {arena.cursor(), arena.cursor() + 17, arena.base() + Arena::kBytes - 16}) {
    EXPECT_EQ(arena.span_of(v, &inside), nullptr) << "a slot no span took";
    EXPECT_TRUE(inside);
  }
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
}

TEST(PoolArena, WithoutItSpansAreMappedOneByOneAndFreedThroughTheRegistry) {
  ScopedAllocator<NoArenaConfig> a(quiet_options());
  const auto& arena = a->pool_arena_for_testing();
  EXPECT_EQ(arena.slots(), 0u);
  EXPECT_EQ(arena.meta_bytes(), 0u);
  std::vector<void*> blocks;
  for (size_t n : sizes()) {
    void* p = a->alloc(n, kSite);
    ASSERT_NE(p, nullptr);
    bool inside = true;
    EXPECT_EQ(arena.span_of(reinterpret_cast<uintptr_t>(p), &inside), nullptr);
    EXPECT_FALSE(inside);
    blocks.push_back(p);
  }
  for (void* p : blocks) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  hakmem_test::ReportCapture cap;
  a->set_report_sink(&hakmem_test::ReportCapture::sink, &cap);
  EXPECT_EQ(a->free(blocks[0], kSite), Verdict::kDoubleFree) << "the Registry path checks as well";
  EXPECT_EQ(cap.text.rfind("hakmem: double free of ", 0), 0u) << cap.text;
  ExpectAuditOk(*a);
}

// The reservation is 16 GiB of address space: a process under an address-space limit is refused
// it, and the Pool then maps its spans one by one. Only speed changes.
TEST(PoolArena, ARefusedReservationLeavesNoArenaAndEveryByteStillComesBack) {
  auto* a = new Allocator<ArenaRecordingConfig>();
  a->pal().fail_past_bytes(uint64_t{1} << 30);  // the table (2 MiB) passes, the range does not
  ASSERT_TRUE(a->init(quiet_options()));
  const auto& arena = a->pool_arena_for_testing();
  EXPECT_EQ(arena.slots(), 0u);
  EXPECT_EQ(arena.meta_bytes(), Arena::kTableBytes) << "the table was mapped and is tallied";
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  bool inside = true;
  EXPECT_EQ(arena.span_of(reinterpret_cast<uintptr_t>(p), &inside), nullptr);
  EXPECT_FALSE(inside);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectAuditOk(*a);
  EXPECT_EQ(a->stats().mapped_bytes, a->pal().outstanding_bytes()) << "nothing reserved: all mapped is tallied";
  a->teardown();
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u);
  EXPECT_EQ(a->pal().mapped_bytes(), 0u);
  delete a;
}

// A span whose Registry leaf cannot be mapped is undone: its slots are made inaccessible again and
// the next span takes them. The tally never counts it.
TEST(PoolArena, ASpanTheRegistryRefusesGivesItsSlotsBack) {
  auto* a = new Allocator<ArenaRecordingConfig>();
  ASSERT_TRUE(a->init(quiet_options()));
  const auto& arena = a->pool_arena_for_testing();
  ASSERT_EQ(arena.slots(), Arena::kSlots);
  const uintptr_t first = arena.cursor();
  // The first allocation maps the heap's chunk, the span descriptors' chunk, then (the span being
  // committed in the arena, not mapped) the span's Registry leaf: that third map is refused.
  a->pal().fail_nth_map(3);
  errno = 0;
  EXPECT_EQ(a->alloc(100, kSite), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(a->pal().failed_maps(), 1u);
  EXPECT_EQ(arena.cursor(), first) << "the refused span's slots are free again";
  EXPECT_EQ(a->stats().pool_spans, 0u);
  ExpectAuditOk(*a);
  void* p = a->alloc(100, kSite);
  ASSERT_NE(p, nullptr);
  bool inside = false;
  Span* s = arena.span_of(reinterpret_cast<uintptr_t>(p), &inside);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->base, first) << "the next span takes the same slots";
  memset(p, 1, 100);
  EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  ExpectAuditOk(*a);
  a->teardown();
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u);
  EXPECT_EQ(a->pal().mapped_bytes(), 0u);
  delete a;
}

// I7 holds with the arena: the tally counts the spans committed in it (and its table), never the
// reserved range; teardown gives the range back whole, through the releaser, and the tally and the
// platform's own count both end at zero.
TEST(PoolArena, TheTallyCountsCommittedSpansNotTheRangeAndTeardownReturnsAll) {
  auto* a = new Allocator<ArenaRecordingConfig>();
  ASSERT_TRUE(a->init(quiet_options()));
  const uint64_t reserved = Arena::kBytes + Arena::kAlign;
  std::vector<void*> blocks;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes()) {
      void* p = a->alloc(n, kSite);
      ASSERT_NE(p, nullptr);
      memset(p, 0x33, n);
      blocks.push_back(p);
    }
  }
  ExpectAuditOk(*a);
  const StatsSnapshot s = a->stats();
  EXPECT_GT(s.pool_span_bytes, 0u);
  // The platform counts the reserved range where the tally counts the spans committed in it.
  EXPECT_EQ(s.mapped_bytes - s.pool_span_bytes + reserved, a->pal().outstanding_bytes());
  for (void* p : blocks) EXPECT_EQ(a->free(p, kSite), Verdict::kOk);
  a->teardown();
  EXPECT_EQ(a->pal().outstanding_bytes(), 0u);
  EXPECT_EQ(a->pal().mapped_bytes(), 0u);
  EXPECT_EQ(a->pal().calls(PalOp::kUnmap), a->pal().calls(PalOp::kUnmap, Layer::kRelease));
  delete a;
}
