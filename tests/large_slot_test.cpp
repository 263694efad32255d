// Large slot component tests (src/front/large_slot.h), on LargeSlots<Pal> itself: put() keeps a
// freed Map block only when the slot is empty, the block is cacheable and at most max() bytes, the
// pointer is exactly the one handed out and the header passes live_header_ok(), and then seals it
// Cached (I6); every rejection changes nothing, neither state, header bytes nor counters (I8);
// take() gives the block back only to a request it suits; hand_out() makes it Live again with the
// strategy in force (I3); to_cache() hands it to BigCache and books the free (I7); the audit flags
// a slot block that is not marked Cached (I6).
//
// The fixture wires what the slot needs the way Allocator::init_locked() does, with the real
// platform: a Registry, the Map backing, a BatchReleaser, BigCache and the codec. A live block is
// made as MapPath::acquire() makes one (header at the block start, counted in map_held_bytes); the
// teardown gives every mapping back through the releaser and checks the mapped tally returns to zero.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backing/backing.h"
#include "cache/cache.h"
#include "front/large_slot.h"
#include "front/layout.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kSite = 0x402468;
constexpr uint64_t kSecret = 0x0123456789abcdefull;
constexpr uint64_t kSlotMax = 8 * kMiB;

/// An audit sink (the r of audit_for_testing()): collects failures and the bytes walked.
struct AuditLog {
  uint64_t slots = 0;
  uint64_t cached = 0;
  std::vector<std::string> failures;
  void fail(const char* what, uint64_t, uint64_t) { failures.emplace_back(what); }
  bool ok() const { return failures.empty(); }
};

/// Everything put() could change, to prove a rejection changed none of it.
struct Observed {
  Header header;
  State state;
  uint64_t hdr_offset;
  MapBlock* in_slot;
  int64_t slot_puts, slot_bytes, slot_hits, map_held_bytes, map_frees;

  bool operator==(const Observed& o) const {
    return header.lo == o.header.lo && header.hi == o.header.hi && state == o.state && hdr_offset == o.hdr_offset &&
           in_slot == o.in_slot && slot_puts == o.slot_puts && slot_bytes == o.slot_bytes && slot_hits == o.slot_hits &&
           map_held_bytes == o.map_held_bytes && map_frees == o.map_frees;
  }
};

class LargeSlotTest : public ::testing::Test {
protected:
  using Pal = LinuxPal;

  void SetUp() override {
    ASSERT_TRUE(registry_.init(&pal_, &mapped_));
    const GiveBack give{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<BatchReleaser<Pal>*>(ctx)->add_raw(base, len); },
        &rel_};
    map_.init(&pal_, &registry_, &mapped_, give);
    codec_.set_secret(kSecret);
    rel_.init(&pal_, &registry_, &map_, &codec_, &mapped_, uint64_t{1} << 40, 0);
    cache_.init(&pal_, &rel_, 256 * kMiB, 256 * kMiB, 0);
    slots_.init(kSlotMax);
  }

  void TearDown() override {
    // Allocator::teardown()'s order: slots to the cache, the cache to the releaser, then the rest.
    LargeSlots<Pal>::to_cache(cache_, cell_, counters_);
    cache_.drain();
    rel_.flush();
    auto give = [this](uintptr_t base, size_t len) { rel_.add_raw(base, len); };
    map_.release_all(give);
    rel_.flush();
    registry_.release_tables(give);
    rel_.flush();
    EXPECT_EQ(mapped_.load(), 0u) << "a mapping was not given back";
  }

  /// A live Map block of `size` bytes as MapPath::acquire() hands it out (plain alignment).
  MapBlock* Alloc(uint64_t size, Origin origin = Origin::kMalloc, uintptr_t site = kSite, uint8_t strategy = 2) {
    MapBlock* mb = map_.map(size);
    EXPECT_NE(mb, nullptr);
    mb->hdr_offset = 0;
    mb->state = State::kLive;
    write_headers(codec_, mb->base, mb->base, Method::kMap, origin, strategy, size, site);
    counters_.map_allocs.add(1);
    counters_.map_held_bytes.add(static_cast<int64_t>(mb->length));
    return mb;
  }

  static uintptr_t User(const MapBlock* mb) { return mb->base + kHeaderSize; }

  bool Put(MapBlock* mb, uintptr_t u, Origin origin = Origin::kMalloc, uint64_t sized = kUnsized) {
    return slots_.put(codec_, cell_, mb, u, origin, sized);
  }
  bool Put(MapBlock* mb) { return Put(mb, User(mb)); }

  Observed Observe(const MapBlock* mb) const {
    return Observed{HeaderCodec::load(reinterpret_cast<const void*>(mb->base)),
                    mb->state,
                    mb->hdr_offset,
                    cell_.block.load(),
                    cell_.puts.get(),
                    cell_.bytes.get(),
                    cell_.hits.get(),
                    counters_.map_held_bytes.get(),
                    counters_.map_frees.get()};
  }

  /// The fields of the header at `at`; method kNone when it does not decode.
  HeaderFields Fields(uintptr_t at) const {
    HeaderFields f;
    if (!codec_.decode(reinterpret_cast<const void*>(at), &f)) f = HeaderFields{};
    return f;
  }

  /// put() must refuse and leave everything as it was (I8).
  void ExpectRejected(MapBlock* mb, uintptr_t u, Origin origin, uint64_t sized, const char* why) {
    const Observed before = Observe(mb);
    EXPECT_FALSE(Put(mb, u, origin, sized)) << why;
    EXPECT_TRUE(Observe(mb) == before) << why << ": a rejected put changed something";
  }

  /// Writes the header `f` at mb's base with a valid checksum (a forged or stale header).
  void Forge(MapBlock* mb, const HeaderFields& f) { codec_.encode(f, reinterpret_cast<void*>(mb->base)); }

  HeaderFields LiveFields(uint64_t size, Origin origin = Origin::kMalloc) const {
    HeaderFields f;
    f.method = Method::kMap;
    f.state = State::kLive;
    f.origin = origin;
    f.strategy = 2;
    f.size = size;
    f.site = kSite;
    return f;
  }

  AuditLog AuditSlot() const {
    AuditLog log;
    LargeSlots<Pal>::audit_for_testing(log, codec_, cell_);
    return log;
  }

  Pal pal_;
  std::atomic<uint64_t> mapped_{0};
  Registry<Pal> registry_;
  MapBacking<Pal> map_;
  BatchReleaser<Pal> rel_;
  BigCache<Pal> cache_;
  HeaderCodec codec_;
  LargeSlots<Pal> slots_;
  LargeSlotCell cell_;
  HeapCounters counters_;
};

/// 1 MiB: the top of its class (class_floor 896 KiB), a mapping of 1 MiB + 4 KiB.
constexpr uint64_t kMiBBlock = 1 * kMiB;

}  // namespace

// ------------------------------------------------------------ put: acceptance

// Contract: init(max) sets the largest block a slot keeps; 0 means no slot.
TEST_F(LargeSlotTest, MaxIsTheConfiguredLargestBlock) {
  EXPECT_EQ(slots_.max(), kSlotMax);
  LargeSlots<Pal> off;
  off.init(0);
  EXPECT_EQ(off.max(), 0u);
}

// Contract: put() keeps a valid live block in an empty slot, seals it Cached (I6), counts it in slot_bytes
// and leaves map_held_bytes as is (I7).
TEST_F(LargeSlotTest, PutKeepsALiveBlockAndSealsItCached) {
  MapBlock* mb = Alloc(kMiBBlock, Origin::kNew, kSite, 5);
  const int64_t held = counters_.map_held_bytes.get();
  ASSERT_TRUE(Put(mb, User(mb), Origin::kNew, kUnsized));
  EXPECT_EQ(cell_.block.load(), mb);
  // I6: a block in a slot is not live: Cached in its descriptor and in its sealed header, every
  // other field as it was.
  EXPECT_EQ(mb->state, State::kCached);
  HeaderFields want = LiveFields(kMiBBlock, Origin::kNew);
  want.strategy = 5;
  want.state = State::kCached;
  EXPECT_EQ(Fields(mb->base), want);
  // I7: counted in slot_bytes; map_held_bytes keeps counting it.
  EXPECT_EQ(cell_.puts.get(), 1);
  EXPECT_EQ(cell_.bytes.get(), static_cast<int64_t>(mb->length));
  EXPECT_EQ(counters_.map_held_bytes.get(), held);
  EXPECT_EQ(counters_.map_frees.get(), 0);
  const AuditLog log = AuditSlot();
  EXPECT_TRUE(log.ok()) << log.failures[0];
  EXPECT_EQ(log.slots, mb->length);
}

// Contract: A sized free with the recorded size passes put()'s check.
TEST_F(LargeSlotTest, PutAcceptsTheExactSizeOfASizedFree) {
  MapBlock* mb = Alloc(300 * kKiB);
  EXPECT_TRUE(Put(mb, User(mb), Origin::kMalloc, 300 * kKiB));
  EXPECT_EQ(cell_.block.load(), mb);
}

// Contract: max() is inclusive: a block of exactly max() bytes is kept.
TEST_F(LargeSlotTest, PutAcceptsABlockOfExactlyMaxBytes) {
  MapBlock* mb = Alloc(kMiBBlock);
  LargeSlots<Pal> exact;
  exact.init(mb->length);
  EXPECT_TRUE(exact.put(codec_, cell_, mb, User(mb), Origin::kMalloc, kUnsized));
  EXPECT_EQ(cell_.block.load(), mb);
}

// ------------------------------------------------------------ put: every rejection changes nothing (I8)

// Contract: I8: a slot holds one block; a put into an occupied slot changes nothing.
TEST_F(LargeSlotTest, PutRefusesAnOccupiedSlot) {
  MapBlock* first = Alloc(kMiBBlock);
  MapBlock* second = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(first));
  ExpectRejected(second, User(second), Origin::kMalloc, kUnsized, "slot already holds a block");
  EXPECT_EQ(cell_.block.load(), first);
  EXPECT_EQ(Fields(second->base).state, State::kLive) << "the refused block is still live";
}

// Contract: I8: a block over max() (or any block when max() is 0) is refused, changing nothing.
TEST_F(LargeSlotTest, PutRefusesABlockLargerThanMax) {
  MapBlock* mb = Alloc(kMiBBlock);
  LargeSlots<Pal> small;
  small.init(mb->length - 1);
  const Observed before = Observe(mb);
  EXPECT_FALSE(small.put(codec_, cell_, mb, User(mb), Origin::kMalloc, kUnsized));
  EXPECT_TRUE(Observe(mb) == before);
  LargeSlots<Pal> off;
  off.init(0);
  EXPECT_FALSE(off.put(codec_, cell_, mb, User(mb), Origin::kMalloc, kUnsized)) << "max 0: no slot";
  EXPECT_TRUE(Observe(mb) == before);
}

// Contract: I8: a block of an uncached class is refused (a slot block must be able to go to BigCache).
TEST_F(LargeSlotTest, PutRefusesAnUncachedClass) {
  MapBlock* mb = Alloc(kMiBBlock);
  // A mapping past BigCache's classes (over 1 GiB) has class kUncached; a slot would have to
  // cache it. The descriptor is set so for this block alone, well within max().
  const uint32_t cls = mb->cls;
  mb->cls = LargeClasses::kUncached;
  ExpectRejected(mb, User(mb), Origin::kMalloc, kUnsized, "uncached class");
  mb->cls = cls;
  EXPECT_TRUE(Put(mb)) << "the same block, cacheable, is taken";
}

// Contract: I8: put() takes only the exact user pointer handed out; any other pointer changes nothing.
TEST_F(LargeSlotTest, PutRefusesAPointerOtherThanTheOneHandedOut) {
  MapBlock* mb = Alloc(kMiBBlock);
  for (uintptr_t u : {User(mb) + 16, User(mb) + 4096, User(mb) - 16, User(mb) + 1, mb->base + mb->length - 16}) {
    ExpectRejected(mb, u, Origin::kMalloc, kUnsized, "not the user pointer");
  }
}

// Contract: I8: an aligned block (header past a forward record) is refused and its headers left intact.
TEST_F(LargeSlotTest, PutRefusesAnAlignedBlock) {
  // An aligned block's header lies further in (a forward record at the base): its user pointer
  // is not base + 16, and the slot keeps plain blocks only.
  MapBlock* mb = map_.map(kMiBBlock + 4096 + kHeaderSize);
  ASSERT_NE(mb, nullptr);
  const uintptr_t hdr = header_for(mb->base, 4096);
  ASSERT_NE(hdr, mb->base);
  mb->hdr_offset = hdr - mb->base;
  mb->state = State::kLive;
  write_headers(codec_, mb->base, hdr, Method::kMap, Origin::kAligned, 2, kMiBBlock, kSite);
  const Header fwd = HeaderCodec::load(reinterpret_cast<void*>(mb->base));
  const Header real = HeaderCodec::load(reinterpret_cast<void*>(hdr));
  for (Origin o : {Origin::kAligned, Origin::kMalloc}) {
    EXPECT_FALSE(Put(mb, hdr + kHeaderSize, o, kUnsized));
  }
  EXPECT_EQ(cell_.block.load(), nullptr);
  EXPECT_EQ(mb->state, State::kLive);
  EXPECT_EQ(std::memcmp(&fwd, reinterpret_cast<void*>(mb->base), sizeof(Header)), 0);
  EXPECT_EQ(std::memcmp(&real, reinterpret_cast<void*>(hdr), sizeof(Header)), 0);
  EXPECT_EQ(cell_.puts.get(), 0);
}

// Contract: I8: a double free (a header already Cached, or any state but Live) is refused, changing nothing.
TEST_F(LargeSlotTest, PutRefusesABlockAlreadyFreed) {
  // A double free: the first put sealed the header Cached; the second finds no live header.
  MapBlock* mb = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(mb));
  LargeSlotCell other;
  const Observed before = Observe(mb);
  EXPECT_FALSE(slots_.put(codec_, other, mb, User(mb), Origin::kMalloc, kUnsized));
  EXPECT_EQ(other.block.load(), nullptr);
  EXPECT_TRUE(Observe(mb) == before);
  // Every state but Live is refused.
  for (State s : {State::kCached, State::kReleasing, State::kFree}) {
    MapBlock* b = Alloc(kMiBBlock);
    HeaderFields f = LiveFields(kMiBBlock);
    f.state = s;
    Forge(b, f);
    const Observed was = Observe(b);
    EXPECT_FALSE(slots_.put(codec_, other, b, User(b), Origin::kMalloc, kUnsized)) << state_name(s);
    EXPECT_TRUE(Observe(b) == was) << state_name(s);
    EXPECT_EQ(other.block.load(), nullptr);
  }
}

// Contract: I8/I2: a Map block whose header says Pool is refused.
TEST_F(LargeSlotTest, PutRefusesAPoolHeader) {
  MapBlock* mb = Alloc(kMiBBlock);
  HeaderFields f = LiveFields(kMiBBlock);
  f.method = Method::kPool;
  Forge(mb, f);
  ExpectRejected(mb, User(mb), Origin::kMalloc, kUnsized, "method Pool in a Map block");
}

// Contract: I8: a free with any origin but the one allocated with is refused here (the general path decides).
TEST_F(LargeSlotTest, PutRefusesAnyOtherOrigin) {
  // The origin must be exactly the one freed with: anything else goes to the general path,
  // which decides between a compatible family and a mismatch report.
  const Origin origins[] = {Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned};
  for (Origin made : origins) {
    for (Origin freed : origins) {
      if (made == freed) continue;
      MapBlock* mb = Alloc(kMiBBlock, made);
      ExpectRejected(mb, User(mb), freed, kUnsized, "origin mismatch");
    }
  }
}

// Contract: I8: a sized free with another size, or a header size past the block's room, is refused.
TEST_F(LargeSlotTest, PutRefusesASizeMismatchOrASizeBeyondTheRoom) {
  MapBlock* mb = Alloc(kMiBBlock);
  ExpectRejected(mb, User(mb), Origin::kMalloc, kMiBBlock - 1, "sized free with another size");
  ExpectRejected(mb, User(mb), Origin::kMalloc, kMiBBlock + 1, "sized free with another size");
  Forge(mb, LiveFields(mb->capacity_at(0) + 1));
  ExpectRejected(mb, User(mb), Origin::kMalloc, kUnsized, "header size past the block's room");
  Forge(mb, LiveFields(mb->capacity_at(0)));
  EXPECT_TRUE(Put(mb)) << "a size that fills the room exactly is fine";
}

// Contract: I8: a header with any bit flipped fails its checksum and is refused.
TEST_F(LargeSlotTest, PutRefusesABrokenChecksum) {
  MapBlock* mb = Alloc(kMiBBlock);
  auto* bytes = reinterpret_cast<unsigned char*>(mb->base);
  for (size_t i : {size_t{0}, size_t{3}, size_t{9}, size_t{15}}) {
    bytes[i] ^= 0x10;
    ExpectRejected(mb, User(mb), Origin::kMalloc, kUnsized, "one header bit flipped");
    bytes[i] ^= 0x10;
  }
  EXPECT_TRUE(Put(mb)) << "restored, the header passes";
}

// Contract: I8: a header is sealed to its address; a copy from another block is refused.
TEST_F(LargeSlotTest, PutRefusesAHeaderCopiedFromAnotherBlock) {
  MapBlock* a = Alloc(kMiBBlock);
  MapBlock* b = Alloc(kMiBBlock);
  std::memcpy(reinterpret_cast<void*>(b->base), reinterpret_cast<void*>(a->base), sizeof(Header));
  ExpectRejected(b, User(b), Origin::kMalloc, kUnsized, "a header is sealed to its address");
}

// ------------------------------------------------------------ take

// Contract: take() of an empty slot returns nullptr and leaves the slot empty.
TEST_F(LargeSlotTest, TakeOfAnEmptySlotGivesNothing) {
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, kMiBBlock), nullptr);
  EXPECT_EQ(cell_.block.load(), nullptr);
}

// Contract: take() gives the block only to a request above its class floor and within its room, once; any
// other leaves it untouched.
TEST_F(LargeSlotTest, TakeServesOnlyARequestOfTheBlocksClassThatFits) {
  MapBlock* mb = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(mb));
  ASSERT_GT(mb->class_floor, 0u);
  EXPECT_EQ(mb->class_floor, LargeClasses::usable(mb->cls - 1));
  const Observed held = Observe(mb);
  // A class too small for the block, or a request past its room: left in the slot, untouched.
  for (uint64_t size :
       {uint64_t{1}, uint64_t{64 * kKiB}, uint64_t{mb->class_floor}, mb->capacity_at(0) + 1, uint64_t{2 * kMiB}}) {
    EXPECT_EQ(LargeSlots<Pal>::take(cell_, size), nullptr) << size;
    EXPECT_TRUE(Observe(mb) == held) << size;
  }
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, uint64_t{mb->class_floor} + 1), mb) << "the class's smallest request";
  EXPECT_EQ(cell_.block.load(), nullptr) << "taken: the slot is empty";
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, kMiBBlock), nullptr) << "taken once only";
}

// Contract: take() serves a request of exactly the block's room.
TEST_F(LargeSlotTest, TakeServesTheFullRoom) {
  MapBlock* mb = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(mb));
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, mb->capacity_at(0)), mb);
  EXPECT_EQ(cell_.block.load(), nullptr);
}

// Contract: The smallest class has floor 0: any request within the room is served.
TEST_F(LargeSlotTest, TakeOfTheSmallestClassServesAnyRequestThatFits) {
  MapBlock* mb = Alloc(64 * kKiB);
  ASSERT_EQ(mb->cls, 0u);
  ASSERT_EQ(mb->class_floor, 0u);
  ASSERT_TRUE(Put(mb));
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, mb->capacity_at(0) + 1), nullptr);
  EXPECT_EQ(LargeSlots<Pal>::take(cell_, 1), mb);
}

// ------------------------------------------------------------ hand_out

// Contract: I3/I7: hand_out() makes the block Live with the request's size, site, origin and the strategy in
// force, books a slot hit, and the block can be put back.
TEST_F(LargeSlotTest, HandOutMakesTheBlockLiveWithTheStrategyInForce) {
  MapBlock* mb = Alloc(kMiBBlock, Origin::kMalloc, kSite, 2);
  const int64_t held = counters_.map_held_bytes.get();
  ASSERT_TRUE(Put(mb));
  MapBlock* got = LargeSlots<Pal>::take(cell_, 960 * kKiB);
  ASSERT_EQ(got, mb);
  const uintptr_t site = 0x40abcd | (uintptr_t{0x7f} << 50);  // bits above 46 are not a site
  void* p = LargeSlots<Pal>::hand_out(codec_, cell_, got, 960 * kKiB, site, Origin::kNewArray, 7);
  EXPECT_EQ(p, reinterpret_cast<void*>(User(mb)));
  // I3: the header records the strategy the request was served under, not the old one.
  HeaderFields want;
  want.method = Method::kMap;
  want.state = State::kLive;
  want.origin = Origin::kNewArray;
  want.strategy = 7;
  want.size = 960 * kKiB;
  want.site = 0x40abcd;
  EXPECT_EQ(Fields(mb->base), want);
  EXPECT_EQ(mb->state, State::kLive);
  EXPECT_EQ(mb->hdr_offset, 0u);
  // I7: out of the slot, counted as a slot hit; map_held_bytes never moved.
  EXPECT_EQ(cell_.bytes.get(), 0);
  EXPECT_EQ(cell_.hits.get(), 1);
  EXPECT_EQ(counters_.map_held_bytes.get(), held);
  EXPECT_EQ(counters_.map_allocs.get(), 1) << "a slot hit is not a Map allocation";
  // The block is an ordinary live one again: the next free may put it back.
  EXPECT_TRUE(Put(mb, User(mb), Origin::kNewArray, 960 * kKiB));
  EXPECT_EQ(cell_.puts.get(), 2);
}

// Contract: hand_out() writes the header at the block start, whatever offset the descriptor carried.
TEST_F(LargeSlotTest, HandOutResetsALeftoverHeaderOffset) {
  MapBlock* mb = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(mb));
  ASSERT_EQ(LargeSlots<Pal>::take(cell_, kMiBBlock), mb);
  mb->hdr_offset = 4096;  // as a block once aligned would carry it
  void* p = LargeSlots<Pal>::hand_out(codec_, cell_, mb, kMiBBlock, kSite, Origin::kMalloc, 1);
  EXPECT_EQ(p, reinterpret_cast<void*>(User(mb)));
  EXPECT_EQ(mb->hdr_offset, 0u);
  EXPECT_EQ(Fields(mb->base).state, State::kLive);
}

// ------------------------------------------------------------ to_cache

// Contract: I6/I7: to_cache() moves the slot's block to BigCache under its allocation site, out of slot_bytes
// and map_held_bytes.
TEST_F(LargeSlotTest, ToCacheHandsTheBlockToBigCacheAndBooksTheFree) {
  const uintptr_t site = 0x40beef;
  MapBlock* mb = Alloc(kMiBBlock, Origin::kMalloc, site);
  ASSERT_TRUE(Put(mb));
  const int64_t held = counters_.map_held_bytes.get();
  LargeSlots<Pal>::to_cache(cache_, cell_, counters_);
  EXPECT_EQ(cell_.block.load(), nullptr);
  // I7: out of slot_bytes, and now a Map free: off map_held_bytes.
  EXPECT_EQ(cell_.bytes.get(), 0);
  EXPECT_EQ(counters_.map_held_bytes.get(), held - static_cast<int64_t>(mb->length));
  EXPECT_EQ(cache_.blocks(), 1u);
  EXPECT_EQ(cache_.bytes(), mb->length);
  EXPECT_EQ(cache_.counters().puts.load(), 1u);
  EXPECT_EQ(mb->bucket, BigCache<Pal>::bucket_of(site)) << "keyed by the allocation site in its header";
  // I6: cached, never live.
  EXPECT_EQ(mb->state, State::kCached);
  EXPECT_EQ(Fields(mb->base).state, State::kCached);
  AuditLog log;
  cache_.audit_for_testing(log, codec_);
  EXPECT_TRUE(log.ok()) << log.failures[0];
  EXPECT_EQ(log.cached, mb->length);
  EXPECT_EQ(cache_.take(site, mb->cls, kMiBBlock, 0), mb) << "a warm hit for the same site";
}

// Contract: to_cache() of an empty slot changes neither the cache nor the counters.
TEST_F(LargeSlotTest, ToCacheOfAnEmptySlotDoesNothing) {
  LargeSlots<Pal>::to_cache(cache_, cell_, counters_);
  EXPECT_EQ(cache_.blocks(), 0u);
  EXPECT_EQ(cache_.counters().puts.load(), 0u);
  EXPECT_EQ(cell_.bytes.get(), 0);
  EXPECT_EQ(counters_.map_held_bytes.get(), 0);
}

// ------------------------------------------------------------ the audit (I6)

// Contract: The audit of an empty slot passes and counts no bytes.
TEST_F(LargeSlotTest, AuditOfAnEmptySlotPasses) {
  const AuditLog log = AuditSlot();
  EXPECT_TRUE(log.ok());
  EXPECT_EQ(log.slots, 0u);
}

// Contract: I6: the audit flags a slot block whose descriptor or header is not Cached, whose header does not
// decode, or is not at the block start.
TEST_F(LargeSlotTest, AuditFlagsASlotBlockNotMarkedCached) {
  MapBlock* mb = Alloc(kMiBBlock);
  ASSERT_TRUE(Put(mb));
  ASSERT_TRUE(AuditSlot().ok());
  const Header sealed = HeaderCodec::load(reinterpret_cast<void*>(mb->base));
  const char* const kWhat = "I6 large slot block not marked Cached";

  mb->state = State::kLive;  // the descriptor says live
  AuditLog log = AuditSlot();
  ASSERT_EQ(log.failures.size(), 1u);
  EXPECT_EQ(log.failures[0], kWhat);
  EXPECT_EQ(log.slots, mb->length);
  mb->state = State::kCached;

  Forge(mb, LiveFields(kMiBBlock));  // the header says live
  log = AuditSlot();
  ASSERT_EQ(log.failures.size(), 1u);
  EXPECT_EQ(log.failures[0], kWhat);

  HeaderCodec::store(sealed, reinterpret_cast<void*>(mb->base));
  reinterpret_cast<unsigned char*>(mb->base)[10] ^= 1;  // the header does not decode
  log = AuditSlot();
  ASSERT_EQ(log.failures.size(), 1u);
  EXPECT_EQ(log.failures[0], kWhat);
  HeaderCodec::store(sealed, reinterpret_cast<void*>(mb->base));

  mb->hdr_offset = 4096;  // the header is not at the block start
  log = AuditSlot();
  ASSERT_EQ(log.failures.size(), 1u);
  EXPECT_EQ(log.failures[0], kWhat);
  mb->hdr_offset = 0;

  EXPECT_TRUE(AuditSlot().ok()) << "restored";
}
