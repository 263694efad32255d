// Tests of front/validation.h and front/layout.h, each component by its own interface:
// live_lo() and live_header_ok() (the fast frees' one live-header check), Validator<Pal> (where a
// pointer leads and every verdict it can give, changing nothing, I8), Reporter (counts and report
// lines), and the block layout (header_for(), align_slack(), write_headers(), I5).
//
// The Validator runs over real structures wired by hand (Registry, Pool, MapBacking, ZeroArena,
// BatchReleaser for the teardown), the way Allocator::init_locked() wires them; blocks are made
// with Pool::alloc()/MapBacking::map() and write_headers(), as PoolPath and MapPath make them.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "backing/backing.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "header/header.h"
#include "pal/pal.h"
#include "release/release.h"
#include "support/report.h"

using namespace hakmem;

namespace {

using Capture = hakmem_test::ReportCapture;
using hakmem_test::hex;

constexpr uint64_t kSecret = 0x5eed5eed12345679ull;
constexpr uintptr_t kAllocSite = 0x1234;
constexpr uintptr_t kFreeSite = 0x5678;
constexpr uint8_t kStrategy = 5;

const Method kMethods[] = {Method::kNone, Method::kPool, Method::kMap, Method::kForward};
const State kStates[] = {State::kLive, State::kCached, State::kReleasing, State::kFree};
const Origin kOrigins[] = {Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned};

HeaderCodec MakeCodec() {
  HeaderCodec c;
  c.set_secret(kSecret);
  return c;
}

/// A page-aligned scratch area for headers that belong to no allocator. Page-aligned, so that
/// header_for(at(0), align) moves the header in for every align from 32 to 4096 (a merely
/// 16-aligned area made that depend on where the stack happened to be).
struct alignas(4096) Scratch {
  unsigned char bytes[8192];
  uintptr_t at(size_t off) { return reinterpret_cast<uintptr_t>(bytes) + off; }
};

Header Load(uintptr_t at) { return HeaderCodec::load(reinterpret_cast<void*>(at)); }
void Store(const Header& h, uintptr_t at) { HeaderCodec::store(h, reinterpret_cast<void*>(at)); }

/// Flips bit `bit` (0..127) of the 16 bytes at `at`.
void FlipBit(uintptr_t at, unsigned bit) {
  reinterpret_cast<unsigned char*>(at)[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
}

bool SameHeader(const Header& a, const Header& b) { return a.lo == b.lo && a.hi == b.hi; }

// ------------------------------------------------------------------ the wiring

struct RigOptions {
  bool paranoid = false;
  bool origin_check = true;
};

/**
 * The structures Validator<LinuxPal> reads, wired as Allocator::init_locked() wires them, and the
 * teardown of Allocator::teardown(): every byte back through the releaser. The destructor checks
 * that the mapped tally returns to zero (nothing the components mapped was lost).
 */
struct Rig {
  using Pal = LinuxPal;

  explicit Rig(const RigOptions& o) : paranoid(o.paranoid) {
    codec.set_secret(kSecret);
    hard.set_secret(kSecret);
    const GiveBack give_back{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<Rig*>(ctx)->releaser.add_raw(base, len); }, this};
    ok = registry.init(&pal, &mapped);
    pool.init(&pal, &registry, &mapped, give_back, kSecret);
    map.init(&pal, &registry, &mapped, give_back);
    zero.init(&pal, &mapped, give_back);
    releaser.init(&pal, &registry, &map, &codec, &mapped, 8 * kMiB, 0);
    validator.init({&registry, &codec, &pool.seal(), &zero, &hard, o.paranoid, o.origin_check});
    heap = ok ? pool.make_heap(1) : nullptr;
    ok = ok && heap != nullptr;
  }

  ~Rig() {
    releaser.flush();
    auto give = [this](uintptr_t base, size_t len) { releaser.add_raw(base, len); };
    pool.release_all(give);
    map.release_all(give);
    zero.release_all(give);
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
  ThreadHeap* heap = nullptr;
  bool paranoid;
  bool ok = false;
};

/// A block made as PoolPath::acquire() or MapPath::acquire() makes one.
struct Made {
  Extent* extent = nullptr;
  uintptr_t block = 0;  ///< block start (Pool) or mapping base (Map)
  uintptr_t hdr = 0;    ///< the real header
  uintptr_t user = 0;
  uint64_t size = 0;
  uint64_t room = 0;  ///< the block's bytes from its header to its end
  void* p() const { return reinterpret_cast<void*>(user); }
};

class ValidatorTest : public ::testing::Test {
protected:
  void SetUp() override { Wire(RigOptions{}); }

  void Wire(const RigOptions& o) {
    rig_.reset();
    rig_ = std::make_unique<Rig>(o);
    ASSERT_TRUE(rig_->ok) << "the structures could not be mapped";
  }

  Rig& r() { return *rig_; }
  Validator<LinuxPal>& v() { return rig_->validator; }

  /// A live Pool block of `size` bytes, `align`-aligned (PoolPath::acquire()'s layout).
  Made MakePool(uint64_t size, size_t align = 16, Origin origin = Origin::kMalloc, uintptr_t site = kAllocSite) {
    Made m;
    const size_t c = SizeClasses::class_of((size == 0 ? 1 : size) + v().canary_bytes() + align_slack(align));
    m.block = r().pool.alloc(r().heap, c);
    EXPECT_NE(m.block, 0u);
    if (m.block == 0) return m;
    m.extent = r().registry.lookup(m.block);
    m.hdr = header_for(m.block, align);
    write_pool_prefixes(r().pool.seal(), r().paranoid, m.block, m.hdr, origin, kStrategy, size, site);
    m.user = m.hdr + kHeaderSize;
    m.size = size;
    m.room = SizeClasses::block_size(c) - (m.hdr - m.block);
    if (r().paranoid) r().hard.write_canary(m.user + size);
    return m;
  }

  /// A live Map block of `size` bytes, `align`-aligned (MapPath::acquire()'s layout).
  Made MakeMap(uint64_t size, size_t align = 16, Origin origin = Origin::kMalloc, uintptr_t site = kAllocSite) {
    Made m;
    MapBlock* mb = r().map.map(size + v().canary_bytes() + align_slack(align));
    EXPECT_NE(mb, nullptr);
    if (mb == nullptr) return m;
    m.extent = mb;
    m.block = mb->base;
    m.hdr = header_for(mb->base, align);
    mb->hdr_offset = m.hdr - mb->base;
    mb->state = State::kLive;
    write_headers(r().codec, m.block, m.hdr, Method::kMap, origin, kStrategy, size, site);
    m.user = m.hdr + kHeaderSize;
    m.size = size;
    m.room = mb->length - mb->hdr_offset;
    if (r().paranoid) r().hard.write_canary(m.user + size);
    return m;
  }

  /// Everything locate() could change: the block's first bytes (headers, forward record,
  /// user bytes) and its extent's descriptor.
  struct Snapshot {
    std::vector<unsigned char> bytes;
    std::vector<unsigned char> extent;
  };
  static Snapshot Take(const Made& m) {
    Snapshot s;
    const size_t n = static_cast<size_t>(m.hdr - m.block + kHeaderSize + (m.size < 256 ? m.size : 256));
    s.bytes.assign(reinterpret_cast<const unsigned char*>(m.block),
                   reinterpret_cast<const unsigned char*>(m.block) + n);
    const size_t en = m.extent->kind == ExtentKind::kPoolSpan ? sizeof(Span) : sizeof(MapBlock);
    s.extent.assign(reinterpret_cast<const unsigned char*>(m.extent),
                    reinterpret_cast<const unsigned char*>(m.extent) + en);
    return s;
  }

  /**
   * Writes, at `hdr`, a validly sealed prefix saying `f` in the format of m's backing: a Map
   * header, or a Pool guard (paranoid mode: site) and word, the word's tag Forward for method
   * kForward, Free for any state but Live. (Unaligned `hdr` is fine: both are copied bytewise.)
   */
  void Forge(const Made& m, uintptr_t hdr, const HeaderFields& f) {
    if (m.extent->kind != ExtentKind::kPoolSpan) {
      const Header h = r().codec.pack(f, hdr);
      memcpy(reinterpret_cast<void*>(hdr), &h, sizeof(h));
      return;
    }
    const PoolSeal& seal = r().pool.seal();
    const uintptr_t u = hdr + kHeaderSize;
    const PoolTag tag = f.method == Method::kForward ? PoolTag::kForward
                        : f.state == State::kLive    ? PoolTag::kLive
                                                     : PoolTag::kFree;
    write_pool_prefix(seal, u, seal.key(u), pool_first_word(r().paranoid, seal.key(u), f.site),
                      PoolFields{tag, f.origin, f.strategy, f.size});
  }
  /// The allocation site a block keeps: a Map header's, a paranoid Pool block's; none in a default-mode Pool block.
  uintptr_t SiteKept(const Made& m, uintptr_t site = kAllocSite) {
    return m.extent->kind == ExtentKind::kMapBlock || r().paranoid ? site : 0;
  }

  /// locate(p) gives `want`, and changes nothing about block m (I8: a failed check is only reported).
  void ExpectLocate(const Made& m, uintptr_t p, Origin origin, Verdict want, bool check_origin = true) {
    const Snapshot before = Take(m);
    Located at;
    EXPECT_EQ(v().locate(p, origin, &at, check_origin), want) << "pointer " << hex(p);
    EXPECT_EQ(at.verdict, want);
    const Snapshot after = Take(m);
    EXPECT_TRUE(before.bytes == after.bytes) << "locate() changed the block's bytes";
    EXPECT_TRUE(before.extent == after.extent) << "locate() changed the block's descriptor";
  }

  std::unique_ptr<Rig> rig_;
};

class ParanoidValidatorTest : public ValidatorTest {
protected:
  void SetUp() override {
    RigOptions o;
    o.paranoid = true;
    Wire(o);
  }
};

}  // namespace

// ================================================================== live_lo()

// Contract: live_lo(h, m, o) equals h.lo exactly when h says method m, state Live and origin o, and
// differs from it in those six bits only (the fast frees' one compare).
TEST(LiveLo, EqualsTheLowWordExactlyWhenMethodStateAndOriginAreTheOnesAsked) {
  const HeaderCodec codec = MakeCodec();
  size_t checked = 0;
  for (Method hm : kMethods)
    for (State hs : kStates)
      for (Origin ho : kOrigins) {
        const Header h = codec.pack(HeaderFields{hm, hs, ho, 9, 12345, 0x401234}, 0x7000);
        for (Method m : kMethods)
          for (Origin o : kOrigins) {
            const uint64_t lo = live_lo(h, m, o);
            const bool want = hm == m && hs == State::kLive && ho == o;
            EXPECT_EQ(lo == h.lo, want) << method_name(hm) << "/" << state_name(hs) << "/" << origin_name(ho)
                                        << " asked " << method_name(m) << "/" << origin_name(o);
            // Only the method, state and origin bits (32..37) may differ.
            EXPECT_EQ((lo ^ h.lo) & ~(uint64_t{0x3f} << 32), 0u);
            ++checked;
          }
      }
  EXPECT_EQ(checked, 4u * 4 * 4 * 4 * 4);
}

// ================================================================== live_header_ok()

// Contract: live_header_ok() accepts a live header of the method, origin and size asked (room
// exactly the size included) and gives the keyed sum with which seal_live_in_place() re-seals it
// exactly as a full re-encode would.
TEST(LiveHeaderOk, AcceptsTheLiveHeaderAndGivesTheSumSealLiveInPlaceExpects) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(1024);
  for (Method m : {Method::kPool, Method::kMap}) {
    for (Origin o : kOrigins) {
      for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{48}, (uint64_t{1} << 17) + 3, uint64_t{1} << 30}) {
        for (State to : {State::kFree, State::kCached}) {
          const HeaderFields f{m, State::kLive, o, kStrategy, size, 0x7f0012345670};
          codec.encode(f, reinterpret_cast<void*>(at));
          const Header h = Load(at);
          uint32_t sum = 0;
          // Room exactly the size (the boundary), unsized and sized with the right size.
          ASSERT_TRUE(live_header_ok(codec, at, m, o, size, kUnsized, &sum)) << method_name(m) << " " << size;
          EXPECT_EQ(sum, codec.sum_of(h, at));
          uint32_t sized_sum = 0;
          EXPECT_TRUE(live_header_ok(codec, at, m, o, size + 4096, size, &sized_sum));
          EXPECT_EQ(sized_sum, sum);
          // The sum re-seals in place to exactly the reference re-seal.
          codec.seal_live_in_place(sum, to, reinterpret_cast<void*>(at));
          EXPECT_TRUE(SameHeader(Load(at), codec.with_state(h, to, at))) << state_name(to);
          HeaderFields out;
          ASSERT_TRUE(codec.decode(reinterpret_cast<void*>(at), &out));
          HeaderFields want = f;
          want.state = to;
          EXPECT_EQ(out, want);
        }
      }
    }
  }
}

/// live_header_ok() on the header at `at` declines, without writing *sum or the header.
void ExpectDeclined(const HeaderCodec& codec, uintptr_t at, Method m, Origin o, uint64_t room, uint64_t sized,
                    const char* why) {
  const Header before = Load(at);
  uint32_t sum = 0xdeadbeef;
  EXPECT_FALSE(live_header_ok(codec, at, m, o, room, sized, &sum)) << why;
  EXPECT_EQ(sum, 0xdeadbeefu) << why << ": a declined check must not give a sum";
  EXPECT_TRUE(SameHeader(Load(at), before)) << why << ": a declined check must not write";
}

// I2 (fast path): a header of another method is never freed as this one's.
TEST(LiveHeaderOk, DeclinesAnotherMethod) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(256);
  for (Method hm : {Method::kPool, Method::kMap, Method::kForward}) {
    codec.encode(HeaderFields{hm, State::kLive, Origin::kMalloc, 0, 64, kAllocSite}, reinterpret_cast<void*>(at));
    for (Method m : {Method::kPool, Method::kMap}) {
      if (m == hm) continue;
      ExpectDeclined(codec, at, m, Origin::kMalloc, 1 << 20, kUnsized, method_name(hm));
    }
  }
}

// I8 (fast path): a freed, cached or releasing header is declined (the general path reports the
// double free).
TEST(LiveHeaderOk, DeclinesEveryStateButLive) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(256);
  for (State s : {State::kCached, State::kReleasing, State::kFree}) {
    codec.encode(HeaderFields{Method::kPool, s, Origin::kMalloc, 0, 64, kAllocSite}, reinterpret_cast<void*>(at));
    ExpectDeclined(codec, at, Method::kPool, Origin::kMalloc, 1 << 20, kUnsized, state_name(s));
    ExpectDeclined(codec, at, Method::kPool, Origin::kMalloc, 1 << 20, 64, state_name(s));
  }
}

// I8 (fast path): the origin must be exactly the one asked.
TEST(LiveHeaderOk, DeclinesEveryOtherOriginEvenACompatibleOne) {
  // An aligned block freed by free() is compatible, but it is the general path's to accept.
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(256);
  for (Origin ho : kOrigins) {
    codec.encode(HeaderFields{Method::kPool, State::kLive, ho, 0, 64, kAllocSite}, reinterpret_cast<void*>(at));
    for (Origin o : kOrigins) {
      if (o == ho) continue;
      ExpectDeclined(codec, at, Method::kPool, o, 1 << 20, kUnsized, origin_name(o));
    }
  }
}

// I5/I8 (fast path): a size past the block's room is declined; a size filling it exactly is not.
TEST(LiveHeaderOk, DeclinesASizeOverTheRoom) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(256);
  for (uint64_t size : {uint64_t{1}, uint64_t{100}, (uint64_t{1} << 17) + 1, kMaxRequest}) {
    codec.encode(HeaderFields{Method::kMap, State::kLive, Origin::kNew, 0, size, kAllocSite},
                 reinterpret_cast<void*>(at));
    ExpectDeclined(codec, at, Method::kMap, Origin::kNew, size - 1, kUnsized, "room one byte short");
    ExpectDeclined(codec, at, Method::kMap, Origin::kNew, 0, kUnsized, "no room");
    uint32_t sum;
    EXPECT_TRUE(live_header_ok(codec, at, Method::kMap, Origin::kNew, size, kUnsized, &sum)) << size;
  }
}

// I8 (fast path): a sized release (sized delete, free_sized) must name the allocated size.
TEST(LiveHeaderOk, DeclinesASizedReleaseOfAnotherSize) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(256);
  for (uint64_t size : {uint64_t{0}, uint64_t{24}, uint64_t{1} << 17}) {
    codec.encode(HeaderFields{Method::kPool, State::kLive, Origin::kNew, 0, size, kAllocSite},
                 reinterpret_cast<void*>(at));
    ExpectDeclined(codec, at, Method::kPool, Origin::kNew, 1 << 20, size + 1, "one more");
    if (size > 0) ExpectDeclined(codec, at, Method::kPool, Origin::kNew, 1 << 20, size - 1, "one less");
    ExpectDeclined(codec, at, Method::kPool, Origin::kNew, 1 << 20, size ^ (uint64_t{1} << 17), "high bit");
    uint32_t sum;
    EXPECT_TRUE(live_header_ok(codec, at, Method::kPool, Origin::kNew, 1 << 20, size, &sum)) << size;
  }
}

// I8 (fast path): every single-bit corruption of the header is declined.
TEST(LiveHeaderOk, DeclinesEverySingleFlippedBitOfTheHeader) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  const uintptr_t at = buf.at(512);
  const HeaderFields f{Method::kPool, State::kLive, Origin::kMalloc, kStrategy, 4000, 0x401234};
  codec.encode(f, reinterpret_cast<void*>(at));
  const Header good = Load(at);
  for (unsigned bit = 0; bit < 128; ++bit) {
    FlipBit(at, bit);
    ExpectDeclined(codec, at, Method::kPool, Origin::kMalloc, 1 << 20, kUnsized,
                   ("bit " + std::to_string(bit)).c_str());
    Store(good, at);
  }
  uint32_t sum;
  EXPECT_TRUE(live_header_ok(codec, at, Method::kPool, Origin::kMalloc, 1 << 20, kUnsized, &sum));
}

// I8 (fast path): the checksum covers the header's address, so a copied header is declined.
TEST(LiveHeaderOk, DeclinesAHeaderCopiedToAnotherAddress) {
  // The checksum covers the header's own address: a live header copied elsewhere is no header.
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  codec.encode(HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, 64, kAllocSite}, buf.bytes + 256);
  for (size_t to : {size_t{272}, size_t{512}, size_t{4096 + 256}}) {
    memcpy(buf.bytes + to, buf.bytes + 256, kHeaderSize);
    ExpectDeclined(codec, buf.at(to), Method::kPool, Origin::kMalloc, 1 << 20, kUnsized, "moved");
  }
}

// I8 (fast path): forging a header needs the secret.
TEST(LiveHeaderOk, DeclinesAHeaderUnderAnotherSecret) {
  const HeaderCodec codec = MakeCodec();
  HeaderCodec other;
  other.set_secret(kSecret ^ 1);
  Scratch buf;
  const uintptr_t at = buf.at(256);
  other.encode(HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, 64, kAllocSite},
               reinterpret_cast<void*>(at));
  ExpectDeclined(codec, at, Method::kPool, Origin::kMalloc, 1 << 20, kUnsized, "forged without the secret");
}

// ================================================================== layout.h

// Contract: for alignments up to 16 the header stays at the block start, with no slack.
TEST(Layout, PlainAlignmentKeepsTheHeaderAtTheBlockStart) {
  for (uintptr_t block = 0x10000; block < 0x10000 + 4096; block += 16) {
    for (size_t align : {size_t{1}, size_t{2}, size_t{8}, size_t{16}}) {
      EXPECT_EQ(header_for(block, align), block) << hex(block) << " align " << align;
    }
  }
  for (size_t align : {size_t{1}, size_t{8}, size_t{16}}) EXPECT_EQ(align_slack(align), 0u) << align;
}

// I5: header_for() aligns the user pointer within align_slack() bytes, never overlapping the
// forward record or a freed block's link, and the slack is tight.
TEST(Layout, AlignedUserPointerWithTheHeaderAtTheStartOrAtLeast32BytesInWithinTheSlack) {
  // I5 (alignment honoured), and the header never overlaps the forward record (block + 0..15) or a
  // freed Pool block's free-list link (block + 16..23).
  for (size_t align = 32; align <= 1 * kMiB; align *= 2) {
    EXPECT_EQ(align_slack(align), align + kHeaderSize) << align;
    uint64_t most = 0;
    const uintptr_t base = uintptr_t{1} << 32;
    const size_t step = align <= 4096 ? 16 : align / 64;  // 16-aligned block starts, sampled above a page
    for (uintptr_t block = base; block < base + 2 * align; block += step) {
      const uintptr_t hdr = header_for(block, align);
      EXPECT_EQ((hdr + kHeaderSize) % align, 0u) << hex(block) << " align " << align;
      EXPECT_EQ(hdr % kHeaderSize, 0u);
      if (hdr != block) {
        EXPECT_GE(hdr - block, 2 * kHeaderSize) << hex(block) << " align " << align;
      } else {
        EXPECT_EQ((block + kHeaderSize) % align, 0u) << "the start is kept only when it aligns the user pointer";
      }
      EXPECT_LE(hdr - block, align_slack(align)) << hex(block) << " align " << align;
      if (hdr - block > most) most = hdr - block;
    }
    if (step == 16) {
      EXPECT_EQ(most, align_slack(align)) << "the slack is tight for align " << align;
    }
  }
}

// Contract: write_headers() of a plain block writes its 16-byte live header and no other byte.
TEST(Layout, WriteHeadersOfAPlainBlockWritesOneLiveHeaderAndNothingElse) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  memset(buf.bytes, 0xa5, sizeof(buf.bytes));
  const uintptr_t block = buf.at(1024);
  write_headers(codec, block, block, Method::kPool, Origin::kNewArray, kStrategy, 777, 0x401000);
  HeaderFields f;
  ASSERT_TRUE(codec.decode(reinterpret_cast<void*>(block), &f));
  EXPECT_EQ(f, (HeaderFields{Method::kPool, State::kLive, Origin::kNewArray, kStrategy, 777, 0x401000}));
  for (size_t i = 0; i < sizeof(buf.bytes); ++i) {
    if (i >= 1024 && i < 1024 + kHeaderSize) continue;
    ASSERT_EQ(buf.bytes[i], 0xa5) << "byte " << i;
  }
}

// Contract: write_headers() of an aligned block writes a forward record holding the offset, and
// the live header there; the gap and the user bytes are untouched.
TEST(Layout, WriteHeadersOfAnAlignedBlockWritesAForwardRecordToTheLiveHeader) {
  const HeaderCodec codec = MakeCodec();
  Scratch buf;
  memset(buf.bytes, 0xa5, sizeof(buf.bytes));
  const uintptr_t block = buf.at(0);
  for (size_t align : {size_t{32}, size_t{64}, size_t{256}, size_t{4096}}) {
    memset(buf.bytes, 0xa5, sizeof(buf.bytes));
    const uintptr_t hdr = header_for(block, align);
    ASSERT_NE(hdr, block) << align;
    write_headers(codec, block, hdr, Method::kMap, Origin::kAligned, 3, 1000, kAllocSite);
    HeaderFields fwd;
    ASSERT_TRUE(codec.decode(reinterpret_cast<void*>(block), &fwd));
    EXPECT_EQ(fwd.method, Method::kForward);
    EXPECT_EQ(fwd.size, hdr - block) << "the forward record holds the offset to the real header";
    HeaderFields f;
    ASSERT_TRUE(codec.decode(reinterpret_cast<void*>(hdr), &f));
    EXPECT_EQ(f, (HeaderFields{Method::kMap, State::kLive, Origin::kAligned, 3, 1000, kAllocSite}));
    for (size_t i = kHeaderSize; i < hdr - block; ++i) ASSERT_EQ(buf.bytes[i], 0xa5) << "gap byte " << i;
    for (size_t i = hdr - block + kHeaderSize; i < sizeof(buf.bytes); ++i)
      ASSERT_EQ(buf.bytes[i], 0xa5) << "byte " << i;
  }
}

// ================================================================== Validator::locate(): kOk

// I2, I5: a live Pool block is kOk and Located describes it in full (extent, header, sum, room).
TEST_F(ValidatorTest, LivePoolBlockIsOkAndFullyDescribed) {
  for (uint64_t size : {uint64_t{0}, uint64_t{24}, uint64_t{1000}, uint64_t{70000}}) {
    const Made m = MakePool(size, 16, Origin::kNew);
    Located at;
    ASSERT_EQ(v().locate(m.user, Origin::kNew, &at), Verdict::kOk) << size;
    EXPECT_EQ(at.extent, m.extent);
    EXPECT_EQ(at.extent->kind, ExtentKind::kPoolSpan);
    EXPECT_EQ(at.f.method, Method::kPool) << "I2: the header's method is the Registry's kind";
    EXPECT_EQ(at.block, m.block);
    EXPECT_EQ(at.header, m.block);
    EXPECT_TRUE(at.header_ok);
    EXPECT_FALSE(at.zero);
    EXPECT_EQ(at.f, (HeaderFields{Method::kPool, State::kLive, Origin::kNew, kStrategy, size, 0}))
        << "the default mode keeps no allocation site in a Pool block";
    const uint64_t cap = static_cast<Span*>(m.extent)->block_size - kHeaderSize;
    EXPECT_EQ(Validator<LinuxPal>::capacity_of(at), cap);
    EXPECT_EQ(v().usable_of(at), cap) << "default mode: the whole room is usable";
    EXPECT_GE(v().usable_of(at), size) << "I5";
  }
  EXPECT_EQ(v().canary_bytes(), 0u);
}

// I2, I5: a live Map block is kOk and Located describes it in full.
TEST_F(ValidatorTest, LiveMapBlockIsOkAndFullyDescribed) {
  const Made m = MakeMap(300 * kKiB, 16, Origin::kNewArray, 0x7f0000001000);
  Located at;
  ASSERT_EQ(v().locate(m.user, Origin::kNewArray, &at), Verdict::kOk);
  EXPECT_EQ(at.extent, m.extent);
  EXPECT_EQ(at.extent->kind, ExtentKind::kMapBlock);
  EXPECT_EQ(at.f.method, Method::kMap) << "I2";
  EXPECT_EQ(at.block, m.block);
  EXPECT_EQ(at.header, m.block);
  EXPECT_EQ(at.f.size, 300 * kKiB);
  EXPECT_EQ(at.f.site, 0x7f0000001000u);
  EXPECT_EQ(at.sum, r().codec.sum_of(at.h, at.header));
  const auto* mb = static_cast<MapBlock*>(m.extent);
  EXPECT_EQ(Validator<LinuxPal>::capacity_of(at), mb->length - kHeaderSize);
  EXPECT_EQ(v().usable_of(at), mb->length - kHeaderSize);
  EXPECT_GE(v().usable_of(at), 300 * kKiB) << "I5";
}

// I5: an aligned block is found through its forward record, Pool or Map, with its room from the
// real header.
TEST_F(ValidatorTest, AlignedBlocksAreFoundThroughTheirForwardRecord) {
  for (size_t align : {size_t{32}, size_t{64}, size_t{512}, size_t{4096}}) {
    for (bool map : {false, true}) {
      const Made m = map ? MakeMap(200 * kKiB, align, Origin::kAligned) : MakePool(100, align, Origin::kAligned);
      ASSERT_NE(m.hdr, m.block) << "align " << align;
      EXPECT_EQ(m.user % align, 0u);
      Located at;
      ASSERT_EQ(v().locate(m.user, Origin::kMalloc, &at), Verdict::kOk)
          << "align " << align << (map ? " map" : " pool");
      EXPECT_EQ(at.block, m.block);
      EXPECT_EQ(at.header, m.hdr) << "the real header, past the forward record";
      EXPECT_EQ(at.f.origin, Origin::kAligned);
      if (map) {
        EXPECT_EQ(at.sum, r().codec.sum_of(at.h, m.hdr));
      }
      EXPECT_EQ(Validator<LinuxPal>::capacity_of(at), m.room - kHeaderSize);
      EXPECT_GE(Validator<LinuxPal>::capacity_of(at), at.f.size) << "I5: the aligned request fits";
    }
  }
}

// ================================================================== Validator::locate(): misuse, I8

// I8 and ARCHITECTURE.md "never read the bytes before a foreign pointer": pointers the Registry
// does not own (unmapped ones included, which would fault if read) are invalid.
TEST_F(ValidatorTest, ForeignPointersAreInvalidWithoutBeingRead) {
  static char global[64];
  char local[64] = {};
  const Made live = MakePool(48);  // something in the Registry, so the tables exist
  for (uintptr_t p :
       {uintptr_t{0}, uintptr_t{16}, reinterpret_cast<uintptr_t>(global) + 16, reinterpret_cast<uintptr_t>(local) + 16,
        uintptr_t{1} << 47, live.user | uintptr_t{1} << 47, uintptr_t{0xffff800000001000}, ~uintptr_t{15}}) {
    Located at;
    EXPECT_EQ(v().locate(p, Origin::kMalloc, &at), Verdict::kInvalidPointer) << hex(p);
    EXPECT_EQ(at.extent, nullptr) << hex(p);
    EXPECT_FALSE(at.header_ok);
  }
}

// I8: a pointer into a span where no block was ever handed out is invalid, and is not read.
TEST_F(ValidatorTest, PointerPastTheCarvedBlocksOfASpanIsInvalid) {
  const Made m = MakePool(48);
  auto* s = static_cast<Span*>(m.extent);
  const uint32_t carved = s->carved.load();
  ASSERT_LT(carved, s->capacity);
  const uintptr_t next = s->base + uintptr_t{carved} * s->block_size;  // never handed out
  for (uintptr_t p : {next + kHeaderSize, next, s->base + s->length - 16}) {
    Located at;
    EXPECT_EQ(v().locate(p, Origin::kMalloc, &at), Verdict::kInvalidPointer) << hex(p);
    EXPECT_EQ(at.extent, s) << "the Registry owns it, but no block was handed out there";
    EXPECT_FALSE(at.header_ok);
  }
  EXPECT_EQ(s->carved.load(), carved);
}

// I8: any pointer but the one handed out is a misaligned free; the intact header is kept for the
// report.
TEST_F(ValidatorTest, InteriorPointersAreMisaligned) {
  const Made pool = MakePool(200);
  const Made map = MakeMap(200 * kKiB);
  const Made aligned = MakePool(64, 256);
  for (const Made* m : {&pool, &map, &aligned}) {
    for (uintptr_t p : {m->user + 1, m->user + 8, m->user + 16, m->user + 48, m->hdr, m->block}) {
      ExpectLocate(*m, p, Origin::kMalloc, Verdict::kMisaligned);
    }
  }
  // The forward record's own "user pointer" is inside the aligned block too.
  ExpectLocate(aligned, aligned.block + kHeaderSize, Origin::kMalloc, Verdict::kMisaligned);
  Located at;
  EXPECT_EQ(v().locate(pool.user + 8, Origin::kMalloc, &at), Verdict::kMisaligned);
  EXPECT_TRUE(at.header_ok) << "the header was read and is intact: the report can name size and site";
  EXPECT_EQ(at.f.size, 200u);
}

// I6, I8: a block whose header is Free, Cached or Releasing is a double free; size and site are
// kept for the report.
TEST_F(ValidatorTest, BlocksNotLiveAreDoubleFrees) {
  const Made pool = MakePool(100);
  const Made map = MakeMap(500 * kKiB);
  const struct {
    const Made* m;
    State s;
  } cases[] = {{&pool, State::kFree}, {&map, State::kCached}, {&map, State::kReleasing}, {&map, State::kFree}};
  for (const auto& c : cases) {
    const Header live = Load(c.m->hdr);
    Located was;
    ASSERT_EQ(v().locate(c.m->user, Origin::kMalloc, &was), Verdict::kOk);
    HeaderFields f = was.f;
    f.state = c.s;
    Forge(*c.m, c.m->hdr, f);
    ExpectLocate(*c.m, c.m->user, Origin::kMalloc, Verdict::kDoubleFree);
    Located at;
    v().locate(c.m->user, Origin::kMalloc, &at);
    EXPECT_TRUE(at.header_ok);
    EXPECT_EQ(at.f.size, c.m->size) << "the report can name the size";
    EXPECT_EQ(at.f.site, SiteKept(*c.m)) << "and the allocation site, where the block keeps it";
    Store(live, c.m->hdr);
    EXPECT_EQ(v().locate(c.m->user, Origin::kMalloc, &at), Verdict::kOk);
  }
}

// I2: a correctly sealed Map header that claims the Pool is a method mismatch. A Pool block's
// prefix has no method (the Registry's kind is its method): a Map header sealed over it, method
// Map, does not open as a Pool prefix and is corrupted.
TEST_F(ValidatorTest, AHeaderWhoseMethodIsNotTheRegistrysIsAMethodMismatch) {
  const Made pool = MakePool(64);
  const Made map = MakeMap(100 * kKiB);
  r().codec.encode(HeaderFields{Method::kMap, State::kLive, Origin::kMalloc, 0, 64, kAllocSite},
                   reinterpret_cast<void*>(pool.hdr));
  r().codec.encode(HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, 64, kAllocSite},
                   reinterpret_cast<void*>(map.hdr));
  ExpectLocate(pool, pool.user, Origin::kMalloc, Verdict::kCorrupted);
  ExpectLocate(map, map.user, Origin::kMalloc, Verdict::kMethodMismatch);
}

// I8: malloc/aligned, new and new[] are three families; crossing them is a mismatched free,
// unless the origin is not checked (malloc_usable_size).
TEST_F(ValidatorTest, AReleaseOfAnotherFamilyIsAMismatchedOrigin) {
  const Made arr = MakePool(64, 16, Origin::kNewArray);
  const Made obj = MakeMap(100 * kKiB, 16, Origin::kNew);
  const Made mal = MakePool(64, 16, Origin::kMalloc);
  const Made ali = MakePool(64, 64, Origin::kAligned);
  ExpectLocate(arr, arr.user, Origin::kMalloc, Verdict::kMismatchedOrigin);
  ExpectLocate(arr, arr.user, Origin::kNew, Verdict::kMismatchedOrigin);
  ExpectLocate(arr, arr.user, Origin::kNewArray, Verdict::kOk);
  ExpectLocate(obj, obj.user, Origin::kNewArray, Verdict::kMismatchedOrigin);
  ExpectLocate(obj, obj.user, Origin::kNew, Verdict::kOk);
  ExpectLocate(mal, mal.user, Origin::kNew, Verdict::kMismatchedOrigin);
  ExpectLocate(mal, mal.user, Origin::kAligned, Verdict::kOk);  // malloc and aligned: one family
  ExpectLocate(ali, ali.user, Origin::kMalloc, Verdict::kOk);
  ExpectLocate(ali, ali.user, Origin::kNewArray, Verdict::kMismatchedOrigin);
  // check_origin = false (malloc_usable_size): the origin is not looked at.
  ExpectLocate(arr, arr.user, Origin::kMalloc, Verdict::kOk, /*check_origin=*/false);
  ExpectLocate(obj, obj.user, Origin::kNewArray, Verdict::kOk, /*check_origin=*/false);
}

// Contract (origin_check=0): every family is accepted; every other check stays on.
TEST_F(ValidatorTest, OriginCheckOffAcceptsEveryFamily) {
  RigOptions o;
  o.origin_check = false;
  Wire(o);
  const Made arr = MakePool(64, 16, Origin::kNewArray);
  const Made obj = MakeMap(100 * kKiB, 16, Origin::kNew);
  for (Origin rel : kOrigins) {
    ExpectLocate(arr, arr.user, rel, Verdict::kOk);
    ExpectLocate(obj, obj.user, rel, Verdict::kOk);
  }
  // The other checks stay on.
  ExpectLocate(arr, arr.user + 16, Origin::kMalloc, Verdict::kMisaligned);
}

// I8: every single-bit flip of a Pool or Map header is a corrupted header, and nothing in it is
// trusted.
TEST_F(ValidatorTest, EveryFlippedHeaderBitIsCorrupted) {
  const Made pool = MakePool(100);
  const Made map = MakeMap(100 * kKiB);
  for (const Made* m : {&pool, &map}) {
    const Header good = Load(m->hdr);
    for (unsigned bit = 0; bit < 128; ++bit) {
      FlipBit(m->hdr, bit);
      ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kCorrupted);
      Located at;
      v().locate(m->user, Origin::kMalloc, &at);
      EXPECT_FALSE(at.header_ok) << "bit " << bit << ": a header that fails its checksum is not trusted";
      Store(good, m->hdr);
    }
    ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kOk);
  }
}

// I8: locate_block() follows a forward record only to a valid, non-forward header at a header step
// inside the block: any other record is corrupted, even when a valid header sits where it leads.
TEST_F(ValidatorTest, BrokenForwardRecordsAreCorrupted) {
  for (bool map : {false, true}) {
    const Made m = map ? MakeMap(100 * kKiB, 128) : MakePool(100, 128);
    ASSERT_EQ(m.hdr - m.block, 112u) << "a page-aligned block start: the real header 112 bytes in";
    const Header fwd = Load(m.block);
    const uint64_t room = map ? static_cast<MapBlock*>(m.extent)->length : static_cast<Span*>(m.extent)->block_size;
    auto forward_to = [&](uint64_t off) {
      Forge(m, m.block, HeaderFields{Method::kForward, State::kLive, Origin::kMalloc, 0, off, 0});
    };
    // A valid live header where a bad record leads, so that only the record's own check refuses it.
    auto plant = [&](uintptr_t at) {
      Forge(m, at, HeaderFields{map ? Method::kMap : Method::kPool, State::kLive, Origin::kMalloc, 0, 16, kAllocSite});
    };
    auto expect_refused = [&](uint64_t off) {
      forward_to(off);
      ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kCorrupted);
      Located at;
      EXPECT_FALSE(v().locate_block(m.extent, m.block, &at)) << "offset " << off;
      EXPECT_EQ(at.verdict, Verdict::kCorrupted) << "offset " << off;
      EXPECT_FALSE(at.header_ok) << "offset " << off;
    };
    expect_refused(0);                                   // to itself
    for (uint64_t off : {uint64_t{40}, uint64_t{72}}) {  // not a header step (in the gap before the header)
      plant(m.block + off);
      expect_refused(off);
    }
    expect_refused(room - 8);  // would cross the block's end
    if (!map) {
      // Exactly the block's end: the next block of the span, with a live header at its start.
      const Made next = MakePool(244);
      ASSERT_EQ(next.block, m.block + room) << "the same class, carved next";
      ASSERT_EQ(next.hdr, next.block);
      expect_refused(room);
    }
    expect_refused(room + 4096);
    // The last header step inside the block is followed (p is then not its user pointer).
    plant(m.block + room - kHeaderSize);
    forward_to(room - kHeaderSize);
    Located last;
    EXPECT_TRUE(v().locate_block(m.extent, m.block, &last));
    EXPECT_EQ(last.header, m.block + room - kHeaderSize);
    ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kMisaligned);
    // An in-range record to no valid header (the user bytes), and one to another forward record.
    const uint64_t to_user = m.user - m.block;
    forward_to(to_user);
    memset(reinterpret_cast<void*>(m.user), 0x5a, kHeaderSize);
    ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kCorrupted);
    Forge(m, m.user, HeaderFields{Method::kForward, State::kLive, Origin::kMalloc, 0, kHeaderSize, 0});
    ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kCorrupted);
    // An intact record to a real header that fails its checksum.
    Store(fwd, m.block);
    const Header real = Load(m.hdr);
    FlipBit(m.hdr, 70);
    ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kCorrupted);
    Store(real, m.hdr);
    ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kOk);
  }
}

// I5, I8: a sealed header whose size exceeds the block's room is corrupted; filling it exactly is not.
TEST_F(ValidatorTest, ASizeBeyondTheBlocksRoomIsCorrupted) {
  const Made pool = MakePool(100);
  const Made map = MakeMap(100 * kKiB);
  for (const Made* m : {&pool, &map}) {
    const uint64_t cap = m->room - kHeaderSize;
    const Header good = Load(m->hdr);
    Forge(
        *m, m->hdr,
        HeaderFields{m == &pool ? Method::kPool : Method::kMap, State::kLive, Origin::kMalloc, 0, cap + 1, kAllocSite});
    ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kCorrupted);
    Forge(*m, m->hdr,
          HeaderFields{m == &pool ? Method::kPool : Method::kMap, State::kLive, Origin::kMalloc, 0, cap, kAllocSite});
    ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kOk);  // a size filling the room exactly is fine
    Store(good, m->hdr);
  }
}

// Contract: locate_block() starts from the block start (following the forward record) and refuses
// a block start that was never written.
TEST_F(ValidatorTest, LocateBlockFollowsTheForwardRecordAndRefusesAnUnwrittenBlock) {
  const Made m = MakePool(100, 64);
  Located at;
  ASSERT_TRUE(v().locate_block(m.extent, m.block, &at));
  EXPECT_EQ(at.header, m.hdr);
  EXPECT_TRUE(at.header_ok);
  EXPECT_EQ(at.f.size, 100u);
  // A block start with no header at all (zeroed, never written).
  auto* s = static_cast<Span*>(m.extent);
  const uintptr_t fresh = r().pool.alloc(r().heap, s->cls);
  ASSERT_NE(fresh, 0u);
  Located none;
  EXPECT_FALSE(v().locate_block(s, fresh, &none));
  EXPECT_EQ(none.verdict, Verdict::kCorrupted);
  EXPECT_FALSE(none.header_ok);
}

// ================================================================== paranoid mode

// I8 (paranoid): any byte of the canary changed is an overflow; usable_of() is the request (I5).
TEST_F(ParanoidValidatorTest, ABrokenCanaryIsAnOverflowAndTheUsableSizeIsTheRequest) {
  EXPECT_EQ(v().canary_bytes(), kCanarySize);
  const Made pool = MakePool(24);
  const Made map = MakeMap(100 * kKiB + 3);
  for (const Made* m : {&pool, &map}) {
    Located at;
    ASSERT_EQ(v().locate(m->user, Origin::kMalloc, &at), Verdict::kOk);
    EXPECT_EQ(v().usable_of(at), m->size) << "paranoid: exactly the request, the canary follows";
    EXPECT_TRUE(r().hard.canary_intact(m->user + m->size));
    for (uint64_t i = 0; i < kCanarySize; ++i) {
      auto* byte = reinterpret_cast<unsigned char*>(m->user + m->size + i);
      *byte ^= 0x40;
      ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kOverflow);
      *byte ^= 0x40;
    }
    ExpectLocate(*m, m->user, Origin::kMalloc, Verdict::kOk);
  }
}

// I8 (paranoid): the size plus the canary must fit the room.
TEST_F(ParanoidValidatorTest, ASizeWhoseCanaryWouldNotFitIsCorrupted) {
  const Made m = MakePool(24);
  const uint64_t cap = m.room - kHeaderSize;
  Forge(m, m.hdr, HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, cap - kCanarySize + 1, kAllocSite});
  ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kCorrupted);
  Forge(m, m.hdr, HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, cap - kCanarySize, kAllocSite});
  r().hard.write_canary(m.user + cap - kCanarySize);
  ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kOk);
}

// I8 (paranoid): a zero-size slot is live, freed (double free) or pointed inside (misaligned), and
// is malloc's family; locate() frees nothing.
TEST_F(ParanoidValidatorTest, ZeroSizeSlotsAreLiveFreedOrInside) {
  const uintptr_t z = r().zero.alloc();
  ASSERT_NE(z, 0u);
  Located at;
  ASSERT_EQ(v().locate(z, Origin::kMalloc, &at), Verdict::kOk);
  EXPECT_TRUE(at.zero);
  EXPECT_EQ(at.block, z);
  EXPECT_EQ(at.extent, nullptr) << "a zero-size slot has no extent";
  EXPECT_EQ(v().usable_of(at), 0u);
  Located aligned;
  EXPECT_EQ(v().locate(z, Origin::kAligned, &aligned), Verdict::kOk) << "malloc's family";
  Located mism;
  EXPECT_EQ(v().locate(z, Origin::kNew, &mism), Verdict::kMismatchedOrigin) << "zero-size slots are malloc's";
  EXPECT_TRUE(mism.zero);
  Located unchecked;
  EXPECT_EQ(v().locate(z, Origin::kNew, &unchecked, /*check_origin=*/false), Verdict::kOk);
  Located inside;
  EXPECT_EQ(v().locate(z + 8, Origin::kMalloc, &inside), Verdict::kMisaligned);
  EXPECT_EQ(r().zero.live(), 1u) << "locate() frees nothing";
  ASSERT_TRUE(r().zero.free(z));
  Located twice;
  EXPECT_EQ(v().locate(z, Origin::kMalloc, &twice), Verdict::kDoubleFree);
  EXPECT_TRUE(twice.zero);
  EXPECT_EQ(r().zero.live(), 0u);
}

// Contract (paranoid, origin_check=0): a zero-size slot is accepted from every family.
TEST_F(ParanoidValidatorTest, ZeroSizeSlotOfAnotherFamilyIsFineWithOriginCheckOff) {
  RigOptions o;
  o.paranoid = true;
  o.origin_check = false;
  Wire(o);
  const uintptr_t z = r().zero.alloc();
  ASSERT_NE(z, 0u);
  Located at;
  EXPECT_EQ(v().locate(z, Origin::kNewArray, &at), Verdict::kOk);
}

// Contract (paranoid): outside the zero-size arena, locate() validates as in default mode.
TEST_F(ParanoidValidatorTest, PointersOutsideTheArenaAreValidatedAsUsual) {
  const uintptr_t z = r().zero.alloc();
  ASSERT_NE(z, 0u);
  const Made m = MakePool(40);
  ExpectLocate(m, m.user, Origin::kMalloc, Verdict::kOk);
  ExpectLocate(m, m.user + 16, Origin::kMalloc, Verdict::kMisaligned);
  Located at;
  EXPECT_EQ(v().locate(reinterpret_cast<uintptr_t>(&at), Origin::kMalloc, &at), Verdict::kInvalidPointer);
  EXPECT_FALSE(at.zero);
}

// ================================================================== Reporter

// Contract: Reporter counts each verdict on its own, writes one line per report, and fill_stats()
// gives the same counts and their total.
TEST(Reporter, CountsEachVerdictOnItsOwnAndWritesOneLineEach) {
  Reporter rep;
  rep.init(/*abort_on_error=*/false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  const Verdict kinds[] = {Verdict::kCorrupted,    Verdict::kDoubleFree,       Verdict::kInvalidPointer,
                           Verdict::kMisaligned,   Verdict::kMismatchedOrigin, Verdict::kMethodMismatch,
                           Verdict::kSizeMismatch, Verdict::kOverflow,         Verdict::kWriteAfterFree,
                           Verdict::kCorruptedLink};
  Located at;
  size_t lines = 0;
  for (size_t i = 0; i < std::size(kinds); ++i) {
    for (size_t n = 0; n <= i; ++n) {
      cap.text.clear();
      rep.report(kinds[i], reinterpret_cast<void*>(0x10000 + 16 * n), at, kFreeSite, Origin::kMalloc);
      EXPECT_EQ(cap.text.rfind(std::string("hakmem: ") + verdict_name(kinds[i]) + " of ", 0), 0u) << cap.text;
      EXPECT_EQ(cap.text.find('\n'), cap.text.size() - 1) << "one line: " << cap.text;
      ++lines;
    }
  }
  for (size_t i = 0; i < std::size(kinds); ++i) EXPECT_EQ(rep.count(kinds[i]), i + 1) << verdict_name(kinds[i]);
  EXPECT_EQ(rep.count(Verdict::kOk), 0u);
  struct {
    uint64_t errors[static_cast<size_t>(Verdict::kCount)] = {};
    uint64_t errors_total = 0;
  } stats;
  rep.fill_stats(stats);
  EXPECT_EQ(stats.errors_total, lines);
  for (size_t i = 0; i < std::size(kinds); ++i) EXPECT_EQ(stats.errors[static_cast<size_t>(kinds[i])], i + 1);
}

// I8: a report on an intact header names the size, and the allocation site where the block keeps
// one (a Map block; a default-mode Pool block keeps none).
TEST_F(ValidatorTest, ReportNamesWhatAnIntactHeaderKnows) {
  Reporter rep;
  rep.init(false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  for (bool map : {false, true}) {
    const Made m = map ? MakeMap(100 * kKiB, 16, Origin::kNewArray) : MakePool(48, 16, Origin::kNewArray);
    // A double free: size (and allocation site) from the header.
    Forge(m, m.hdr,
          HeaderFields{map ? Method::kMap : Method::kPool, State::kFree, Origin::kNewArray, kStrategy, m.size,
                       kAllocSite});
    Located at;
    ASSERT_EQ(v().locate(m.user, Origin::kNewArray, &at), Verdict::kDoubleFree);
    cap.text.clear();
    rep.report(at.verdict, m.p(), at, kFreeSite, Origin::kNewArray);
    const std::string site = map ? ", allocated at " + hex(kAllocSite) : "";
    EXPECT_EQ(cap.text, "hakmem: double free of " + hex(m.user) + " (" + std::to_string(m.size) + " bytes" + site +
                            ", freed at " + hex(kFreeSite) + ")\n");
  }
  EXPECT_EQ(rep.count(Verdict::kDoubleFree), 2u);
}

// I8: a mismatched free's report names the allocating and the releasing family.
TEST_F(ValidatorTest, ReportOfAMismatchNamesBothFamilies) {
  Reporter rep;
  rep.init(false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  const Made m = MakeMap(100 * kKiB, 16, Origin::kNew);
  Located at;
  ASSERT_EQ(v().locate(m.user, Origin::kMalloc, &at), Verdict::kMismatchedOrigin);
  rep.report(at.verdict, m.p(), at, kFreeSite, Origin::kMalloc);
  EXPECT_EQ(cap.text, "hakmem: mismatched free of " + hex(m.user) + " (" + std::to_string(100 * kKiB) +
                          " bytes, allocated at " + hex(kAllocSite) +
                          ", allocated by new, released by malloc, freed at " + hex(kFreeSite) + ")\n");
}

// I8: a corrupted header's report names no size or site, even when the header decodes.
TEST_F(ValidatorTest, ReportOfACorruptedHeaderTrustsNothingInIt) {
  Reporter rep;
  rep.init(false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  const Made m = MakePool(48);
  FlipBit(m.hdr, 100);
  Located at;
  ASSERT_EQ(v().locate(m.user, Origin::kMalloc, &at), Verdict::kCorrupted);
  rep.report(at.verdict, m.p(), at, kFreeSite, Origin::kMalloc);
  EXPECT_EQ(cap.text,
            "hakmem: corrupted header of " + hex(m.user) + " (size unknown, freed at " + hex(kFreeSite) + ")\n");
  EXPECT_EQ(rep.count(Verdict::kCorrupted), 1u);
  // A header that decodes but whose size overflows the block: also untrusted in the report.
  FlipBit(m.hdr, 100);
  Forge(m, m.hdr, HeaderFields{Method::kPool, State::kLive, Origin::kMalloc, 0, 1 << 20, kAllocSite});
  cap.text.clear();
  Located big;
  ASSERT_EQ(v().locate(m.user, Origin::kMalloc, &big), Verdict::kCorrupted);
  rep.report(big.verdict, m.p(), big, kFreeSite, Origin::kMalloc);
  EXPECT_EQ(cap.text.find("bytes"), std::string::npos) << cap.text;
  EXPECT_EQ(cap.text.find("allocated at"), std::string::npos) << cap.text;
}

// I8: an invalid free says "not allocated by hakmem"; a size mismatch names the claimed size.
TEST_F(ValidatorTest, ReportOfAForeignPointerAndOfASizeMismatch) {
  Reporter rep;
  rep.init(false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  char local[32];
  Located none;
  ASSERT_EQ(v().locate(reinterpret_cast<uintptr_t>(local), Origin::kMalloc, &none), Verdict::kInvalidPointer);
  rep.report(none.verdict, local, none, kFreeSite, Origin::kMalloc);
  EXPECT_EQ(cap.text,
            "hakmem: invalid free of " + hex(local) + " (not allocated by hakmem, freed at " + hex(kFreeSite) + ")\n");
  cap.text.clear();
  const Made m = MakePool(64, 16, Origin::kNew);
  Located at;
  ASSERT_EQ(v().locate(m.user, Origin::kNew, &at), Verdict::kOk);
  rep.report(Verdict::kSizeMismatch, m.p(), at, 0, Origin::kNew, 65);
  EXPECT_EQ(cap.text, "hakmem: size mismatch of " + hex(m.user) + " (64 bytes, released as 65 bytes)\n");
  EXPECT_EQ(rep.count(Verdict::kInvalidPointer), 1u);
  EXPECT_EQ(rep.count(Verdict::kSizeMismatch), 1u);
}

// I8 (paranoid): a zero-size slot's report names 0 bytes.
TEST_F(ParanoidValidatorTest, ReportOfAZeroSizeSlotNamesZeroBytes) {
  Reporter rep;
  rep.init(false);
  Capture cap;
  rep.set_sink(&Capture::sink, &cap);
  const uintptr_t z = r().zero.alloc();
  ASSERT_NE(z, 0u);
  ASSERT_TRUE(r().zero.free(z));
  Located at;
  ASSERT_EQ(v().locate(z, Origin::kMalloc, &at), Verdict::kDoubleFree);
  rep.report(at.verdict, reinterpret_cast<void*>(z), at, kFreeSite, Origin::kMalloc);
  EXPECT_EQ(cap.text, "hakmem: double free of " + hex(z) + " (0 bytes, freed at " + hex(kFreeSite) + ")\n");
}

// Contract (on_error=abort, the default): the report is written, then the process aborts.
TEST(ReporterDeathTest, AbortsAfterTheReportUnlessToldToContinue) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Reporter rep;  // abort_on_error is the default
        Located at;
        rep.report(Verdict::kDoubleFree, reinterpret_cast<void*>(0x10000), at, kFreeSite, Origin::kMalloc);
      },
      "hakmem: double free of 0x10000");
  EXPECT_DEATH(
      {
        Reporter rep;
        rep.init(true);
        Located at;
        rep.report(Verdict::kInvalidPointer, reinterpret_cast<void*>(0x20000), at, 0, Origin::kMalloc);
      },
      "hakmem: invalid free of 0x20000");
}
