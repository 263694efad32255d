// Tests of header/pool_seal.h: a Pool block's keyed word and its free-list links round-trip, and
// every one- and two-bit flip, every one- and two-bit move, and every foreign value is caught.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "header/header.h"

using namespace hakmem;

namespace {

constexpr uint64_t kSecrets[] = {0, 1, 0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0x5555555555555555ULL};
/// More than any span's block count (2048 at most): a link that opens past it is refused.
constexpr uint64_t kBlockBound = 4096;

PoolSeal make_seal(uint64_t secret) {
  PoolSeal s;
  s.set_secret(secret);
  return s;
}

std::vector<PoolFields> sample_fields() {
  std::vector<PoolFields> out;
  for (PoolTag t : {PoolTag::kLive, PoolTag::kFree, PoolTag::kForward}) {
    for (Origin o : {Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned}) {
      for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{16}, uint64_t{1000}, PoolPayload::kMaxSize}) {
        out.push_back(PoolFields{t, o, static_cast<uint8_t>(size % 16), size});
      }
    }
  }
  return out;
}

constexpr uintptr_t kAddresses[] = {0x10, 0x7f0000001010, 0x555555559ab0, 0x7ffffffff000, 0x100000000000};

/// Every value at one- or two-bit Hamming distance from x.
template <class Fn>
void for_each_flip(uint64_t x, Fn&& fn) {
  for (unsigned j = 0; j < 64; ++j) {
    fn(x ^ uint64_t{1} << j);
    for (unsigned i = 0; i < j; ++i) fn(x ^ uint64_t{1} << j ^ uint64_t{1} << i);
  }
}

}  // namespace

TEST(PoolSeal, TheDefaultAndDrawnMultipliersSpreadEveryFlip) {
  const PoolSeal d;
  EXPECT_TRUE(PoolSeal::spreads_flips(d.word_multiplier_inverse()));
  EXPECT_TRUE(PoolSeal::spreads_flips(d.address_multiplier()));
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    EXPECT_TRUE(PoolSeal::spreads_flips(s.word_multiplier_inverse())) << secret;
    EXPECT_TRUE(PoolSeal::spreads_flips(s.address_multiplier())) << secret;
  }
  // The check itself refuses a multiplier that leaves a flip's high bits alone.
  EXPECT_FALSE(PoolSeal::spreads_flips(1));
  EXPECT_FALSE(PoolSeal::spreads_flips(uint64_t{1} << 40 | 1));
}

TEST(PoolSeal, WordsRoundTrip) {
  alignas(16) unsigned char mem[64] = {};
  const uintptr_t u = reinterpret_cast<uintptr_t>(mem) + 32;
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    for (const PoolFields& f : sample_fields()) {
      s.encode(f, u);
      PoolFields back;
      ASSERT_TRUE(s.decode(u, &back));
      EXPECT_EQ(back, f);
      EXPECT_EQ(s.open(PoolSeal::load(u), s.key(u)), PoolPayload::make(f));
    }
  }
}

// Freeing re-seals with one add: a Live word plus free_delta() is the word of the same payload
// with the tag Free, for every origin, size, strategy, address and secret.
TEST(PoolSeal, FreeDeltaReSealsALiveWordAsFree) {
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    for (uintptr_t u : kAddresses) {
      for (const PoolFields& f : sample_fields()) {
        if (f.tag != PoolTag::kLive) continue;
        PoolFields freed = f;
        freed.tag = PoolTag::kFree;
        EXPECT_EQ(s.seal(PoolPayload::make(f), s.key(u)) + s.free_delta(), s.seal(PoolPayload::make(freed), s.key(u)));
      }
    }
  }
  const PoolSeal d;  // the defaults too
  EXPECT_EQ(d.seal(PoolPayload::make(PoolFields{}), d.key(0x1000)) + d.free_delta(),
            d.seal(PoolPayload::make(PoolFields{PoolTag::kFree, Origin::kMalloc, 0, 0}), d.key(0x1000)));
}

TEST(PoolSeal, TheFastCompareChecksTagOriginAndRoom) {
  const PoolSeal s = make_seal(kSecrets[2]);
  const uintptr_t u = kAddresses[1];
  const uint64_t room = 48;
  for (const PoolFields& f : sample_fields()) {
    const uint64_t word = s.seal(PoolPayload::make(f), s.key(u));
    for (Origin o : {Origin::kMalloc, Origin::kNew, Origin::kNewArray, Origin::kAligned}) {
      const bool pass = (s.open(word, s.key(u)) ^ PoolPayload::head(PoolTag::kLive, o)) <= PoolPayload::room(room);
      EXPECT_EQ(pass, f.tag == PoolTag::kLive && f.origin == o && f.size <= room)
          << int(f.tag) << " " << int(f.origin) << " " << f.size << " as " << int(o);
    }
  }
}

TEST(PoolSeal, EveryOneAndTwoBitFlipOfAWordIsCaught) {
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    for (uintptr_t u : kAddresses) {
      for (const PoolFields& f : sample_fields()) {
        const uint64_t word = s.seal(PoolPayload::make(f), s.key(u));
        int missed = 0;
        for_each_flip(word, [&](uint64_t w) { missed += PoolPayload::valid(s.open(w, s.key(u))); });
        ASSERT_EQ(missed, 0) << "secret " << secret << " address " << u;
      }
    }
  }
}

TEST(PoolSeal, AWordReadOneOrTwoAddressBitsAwayIsCaught) {
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    for (uintptr_t u : kAddresses) {
      const uint64_t word = s.seal(PoolPayload::make(PoolFields{PoolTag::kLive, Origin::kNew, 3, 40}), s.key(u));
      int missed = 0;
      for_each_flip(u, [&](uint64_t v) { missed += PoolPayload::valid(s.open(word, s.key(v))); });
      ASSERT_EQ(missed, 0) << "secret " << secret << " address " << u;
      // And a word moved by any whole number of 16-byte slots or pages nearby.
      for (int64_t k = -64; k <= 64; ++k) {
        if (k == 0) continue;
        EXPECT_FALSE(PoolPayload::valid(s.open(word, s.key(u + static_cast<uintptr_t>(k * 16)))));
        EXPECT_FALSE(PoolPayload::valid(s.open(word, s.key(u + static_cast<uintptr_t>(k * 4096)))));
      }
    }
  }
}

TEST(PoolSeal, LinksRoundTripAndEveryFlipOpensPastAnyBlockCount) {
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    for (uintptr_t u : kAddresses) {
      for (uint64_t next : {uint64_t{0}, uint64_t{1}, uint64_t{2047}, uint64_t{2048}}) {
        const uint64_t link = s.seal_link(next, s.key(u));
        ASSERT_EQ(s.open_link(link, s.key(u)), next);
        int missed = 0;
        for_each_flip(link, [&](uint64_t l) { missed += s.open_link(l, s.key(u)) <= kBlockBound; });
        for_each_flip(u, [&](uint64_t v) { missed += s.open_link(link, s.key(v)) <= kBlockBound; });
        ASSERT_EQ(missed, 0) << "secret " << secret << " address " << u << " next " << next;
      }
    }
  }
}

TEST(PoolSeal, ForeignValuesInALinkOpenPastAnyBlockCount) {
  for (uint64_t secret : kSecrets) {
    const PoolSeal s = make_seal(secret);
    const uintptr_t base = 0x7f1234560000;
    for (uint64_t i = 0; i < 2048; ++i) {
      const uintptr_t u = base + 16 + i * 32;
      const uint64_t link = s.seal_link(i + 1, s.key(u));
      // What a use after free writes: a raw pointer (the block's own, a neighbour's, null), text,
      // all ones; and a link copied from another block of the span.
      for (uint64_t forged : {uint64_t{u}, uint64_t{u + 32}, uint64_t{0}, uint64_t{0x4141414141414141}, ~uint64_t{0},
                              uint64_t{i + 2}, s.seal_link(i + 2, s.key(u + 32))}) {
        EXPECT_GT(s.open_link(forged, s.key(u)), kBlockBound) << "secret " << secret << " block " << i;
      }
      EXPECT_GT(s.open_link(link, s.key(u + 32)), kBlockBound);
    }
  }
}

TEST(PoolSeal, TheSecretChangesEveryKey) {
  const PoolSeal a = make_seal(1), b = make_seal(2);
  const uintptr_t u = kAddresses[1];
  const uint64_t payload = PoolPayload::make(PoolFields{PoolTag::kLive, Origin::kMalloc, 0, 24});
  EXPECT_NE(a.key(u), b.key(u));
  EXPECT_NE(a.seal(payload, a.key(u)), b.seal(payload, b.key(u)));
  EXPECT_FALSE(PoolPayload::valid(b.open(a.seal(payload, a.key(u)), b.key(u))));
  EXPECT_GT(b.open_link(a.seal_link(5, a.key(u)), b.key(u)), kBlockBound);
}
