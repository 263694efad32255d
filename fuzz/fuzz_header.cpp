// fuzz_header: header validation on arbitrary bytes in owned memory, forged headers and arbitrary
// pointers, with on_error=report: every verdict typed, every rejection reported and never acted on.
#include <errno.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "front/front.h"
#include "fuzz_support.h"
#include "shadow.h"

using namespace hakmem;
using hakmem_fuzz::Input;
using hakmem_fuzz::Shadow;

namespace {

using Alloc = Allocator<TestConfig>;
constexpr size_t kMaxActions = 48;
constexpr size_t kMaxVictims = 12;
constexpr uintptr_t kSite = 0x4242;
int g_static_word = 0;  // a global address: never hakmem's

/// Where a live block's bytes are: the block (Pool block or whole mapping) and its header(s).
struct Layout {
  uintptr_t block = 0, end = 0;  ///< the memory the block owns: [block, end)
  uintptr_t hdr = 0;             ///< the real header (user pointer - 16)
  bool pool = false;
  uint64_t room = 0;  ///< what a forward record may point into (block size or mapping length)
};

Layout layout_of(Alloc& a, const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  Extent* e = a.registry_for_testing().lookup(u);
  FUZZ_CHECK(e != nullptr, "live block %p unknown to the Registry (I4)", p);
  Layout l;
  l.hdr = u - kHeaderSize;
  if (e->kind == ExtentKind::kPoolSpan) {
    auto* s = static_cast<Span*>(e);
    l.block = Pool<LinuxPal>::block_start(s, u);
    l.end = l.block + s->block_size;
    l.room = s->block_size;
    l.pool = true;
  } else {
    l.block = e->base;
    l.end = e->base + e->length;
    l.room = e->length;
  }
  FUZZ_CHECK(l.block != 0 && l.block <= l.hdr && u < l.end, "live block %p outside its extent", p);
  return l;
}

bool is_typed(Verdict v) { return static_cast<uint8_t>(v) < static_cast<uint8_t>(Verdict::kCount); }

class Driver {
public:
  Driver(Input& in, const Options& o) : in_(in), a_(o) {
    a_->set_report_sink(&hakmem_fuzz::ReportCapture::sink, &reports_);
  }

  void run() {
    const size_t victims = 1 + in_.below(6);
    for (size_t i = 0; i < victims; ++i) make_victim();
    for (size_t i = 0; i < kMaxActions && !in_.empty(); ++i) {
      switch (in_.u8() % 7) {
      case 0: scribble(); break;
      case 1: forge(); break;
      case 2: forge_forward(); break;
      case 3: wild_pointer(); break;
      case 4: double_free(); break;
      case 5: wrong_release(); break;
      default:
        if (in_.below(8) == 0) {
          corrupt_link();
        } else {
          make_victim();
        }
        break;
      }
      nothing_changed();
    }
    while (shadow_.count() > 0) free_ok(shadow_.nth(0));
    if (!cut_) hakmem_fuzz::check_audit(*a_, "freeing every block");
  }

private:
  void make_victim() {
    if (shadow_.count() >= kMaxVictims) return;
    static constexpr uint64_t kSizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 300000, 700000, 2000000};
    const uint64_t size = kSizes[in_.below(10)] + in_.below(64);
    const bool aligned = in_.flag();
    const uint64_t align = aligned ? uint64_t{32} << in_.below(12) : 16;  // 32 B .. 64 KiB: forward records
    void* p = aligned ? a_->aligned_alloc(align, size, kSite) : a_->alloc(size, kSite);
    FUZZ_CHECK(p != nullptr, "allocation of %llu failed", (unsigned long long)size);
    shadow_.add(*a_, p, size, align, false);
  }

  void* victim() { return shadow_.nth(in_.below(shadow_.count())); }

  /// One more report line since `before`, and the verdict counted.
  void expect_report(size_t before, const void* p, Verdict v) {
    FUZZ_CHECK(reports_.lines() == before + 1, "rejecting %p (verdict %d) gave %zu report lines, expected 1", p, (int)v,
               reports_.lines() - before);
    const std::string want = std::string("hakmem: ") + verdict_name(v);
    FUZZ_CHECK(reports_.text.rfind(want) != std::string::npos && reports_.text.rfind(want) >= last_text_end_,
               "report does not name '%s': %s", verdict_name(v), reports_.text.c_str() + last_text_end_);
    last_text_end_ = reports_.text.size();
  }

  /// A pointer that check() rejected: free, usable_size and realloc reject it the same way,
  /// each with one report, and act on nothing.
  void reject_everywhere(void* p, Verdict v, Origin origin) {
    size_t before = reports_.lines();
    const Verdict f = a_->free(p, kSite, origin);
    FUZZ_CHECK(f == v, "free(%p) gave verdict %d, check() said %d", p, (int)f, (int)v);
    expect_report(before, p, v);
    if (origin == Origin::kMalloc && v != Verdict::kMismatchedOrigin) {
      before = reports_.lines();
      FUZZ_CHECK(a_->usable_size(p) == 0, "usable_size of rejected %p is not 0", p);
      expect_report(before, p, v);
      before = reports_.lines();
      errno = 0;
      void* q = a_->realloc(p, 1 + in_.below(100000), kSite);
      FUZZ_CHECK(q == nullptr && errno == EINVAL, "realloc of rejected %p gave %p errno %d", p, q, errno);
      expect_report(before, p, v);
    }
  }

  /// Fuzzer bytes over the header and the bytes around the user pointer, inside the block.
  void scribble() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    const Layout l = layout_of(*a_, p);
    const auto u = reinterpret_cast<uintptr_t>(p);
    uintptr_t from = in_.flag() ? l.hdr : u - 48 + in_.below(112);
    if (in_.below(4) == 0) from = l.block + in_.below(48);  // the forward record of an aligned block
    if (from < l.block) from = l.block;
    if (from >= l.end) return;
    uint64_t len = 1 + in_.below(32);
    if (from + len > l.end) len = l.end - from;
    if (len == 0) return;
    std::vector<uint8_t> saved(len), fresh(len);
    memcpy(saved.data(), reinterpret_cast<void*>(from), len);
    memcpy(fresh.data(), saved.data(), len);
    in_.bytes(fresh.data(), len);
    memcpy(reinterpret_cast<void*>(from), fresh.data(), len);
    // Validation reads the canonical header at the block start and the real header.
    const auto touches = [&](uintptr_t at) {
      for (uint64_t i = 0; i < len; ++i) {
        if (from + i >= at && from + i < at + kHeaderSize && fresh[i] != saved[i]) return true;
      }
      return false;
    };
    const bool changed = touches(l.hdr) || touches(l.block);
    const Verdict v = a_->check(p);
    FUZZ_CHECK(is_typed(v), "check of a scribbled header gave untyped verdict %d", (int)v);
    if (!changed) {
      FUZZ_CHECK(v == Verdict::kOk, "bytes outside the headers of %p changed and it no longer validates (%d)", p,
                 (int)v);
    } else {
      // A changed header passes only with a forged checksum, which needs the secret.
      FUZZ_CHECK(v != Verdict::kOk, "a changed header of %p still validates", p);
      reject_everywhere(p, v, Origin::kMalloc);
    }
    memcpy(reinterpret_cast<void*>(from), saved.data(), len);
    FUZZ_CHECK(a_->check(p) == Verdict::kOk, "%p does not validate once its bytes are restored", p);
  }

  /// A header with a valid checksum and fuzzer-chosen fields (what an attacker knowing the
  /// secret could write): the verdict follows from the fields exactly.
  void forge() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    const Layout l = layout_of(*a_, p);
    const auto u = reinterpret_cast<uintptr_t>(p);
    if (l.pool) {
      forge_pool_word(p, l);
      return;
    }
    HeaderFields f = a_->inspect(p).fields;
    const HeaderFields original = f;
    const uint8_t which = in_.u8();
    if (which & 1) f.method = static_cast<Method>(in_.below(4));
    if (which & 2) f.state = static_cast<State>(in_.below(4));
    if (which & 4) f.origin = static_cast<Origin>(in_.below(4));
    if (which & 8) f.strategy = static_cast<uint8_t>(in_.below(16));
    if (which & 16) f.size = in_.flag() ? in_.u64() & kMaxRequest : f.size + in_.below(64) - 32;
    if (which & 32) f.site = in_.u64() & kSiteMask;
    f.size &= kMaxRequest;
    const Origin release = static_cast<Origin>(in_.below(4));
    Header saved = HeaderCodec::load(reinterpret_cast<void*>(l.hdr));
    HeaderCodec::store(a_->codec_for_testing().pack(f, l.hdr), reinterpret_cast<void*>(l.hdr));
    // The model of locate(): checksum, forward record, state, method, origin, size.
    const uint64_t capacity = shadow_.at(p).usable;
    Verdict want = Verdict::kOk;
    bool forward_ambiguous = false;
    if (f.method == Method::kNone) {
      want = Verdict::kCorrupted;
    } else if (f.method == Method::kForward) {
      // At the block start it leads to the bytes at block + size; a real header that says
      // Forward (aligned block) is corrupt.
      want = Verdict::kCorrupted;
      forward_ambiguous = l.hdr == l.block;
    } else if (f.state != State::kLive) {
      want = Verdict::kDoubleFree;
    } else if (f.method != (l.pool ? Method::kPool : Method::kMap)) {
      want = Verdict::kMethodMismatch;
    } else if (!origins_compatible(f.origin, release)) {
      want = Verdict::kMismatchedOrigin;
    } else if (f.size > capacity) {
      want = Verdict::kCorrupted;
    }
    const Verdict v = a_->check(p, release);
    FUZZ_CHECK(is_typed(v), "forged header: untyped verdict %d", (int)v);
    if (forward_ambiguous) {
      FUZZ_CHECK(v == Verdict::kCorrupted || v == Verdict::kMisaligned,
                 "forward record at the header of %p leading to +%llu gave verdict %d", p, (unsigned long long)f.size,
                 (int)v);
    } else {
      FUZZ_CHECK(v == want,
                 "forged header of %p (method %d state %d origin %d size %llu, capacity %llu) "
                 "freed as origin %d: verdict %d, expected %d",
                 p, (int)f.method, (int)f.state, (int)f.origin, (unsigned long long)f.size,
                 (unsigned long long)capacity, (int)release, (int)v, (int)want);
    }
    if (v != Verdict::kOk) {
      reject_everywhere(p, v, release);
      HeaderCodec::store(saved, reinterpret_cast<void*>(l.hdr));
      FUZZ_CHECK(a_->check(p) == Verdict::kOk, "%p does not validate once its header is restored", p);
      return;
    }
    // Accepted: a consistent header (maybe another size, site or strategy) is the allocator's to act on.
    if (in_.flag() || f.strategy != original.strategy) {
      FUZZ_CHECK(a_->free(p, kSite, release) == Verdict::kOk, "forged-but-consistent %p not freed", p);
      shadow_.remove(p);
    } else {
      HeaderCodec::store(saved, reinterpret_cast<void*>(l.hdr));
    }
    (void)u;
  }

  /**
   * forge() of a Pool block: its word sealed (with the right key, its guard kept) for
   * fuzzer-chosen fields, a tag no payload has (3) included. The model of locate(): tag,
   * forward word, origin, size against the block's room.
   */
  void forge_pool_word(void* p, const Layout& l) {
    const auto u = reinterpret_cast<uintptr_t>(p);
    const PoolSeal& seal = a_->pool_seal_for_testing();
    const BlockInfo info = a_->inspect(p);
    PoolFields f{PoolTag::kLive, info.fields.origin, info.fields.strategy, info.fields.size};
    const PoolFields original = f;
    const uint8_t which = in_.u8();
    const unsigned tag = which & 1 ? in_.below(4) : 0;
    if (which & 4) f.origin = static_cast<Origin>(in_.below(4));
    if (which & 8) f.strategy = static_cast<uint8_t>(in_.below(16));
    if (which & 16) f.size = in_.flag() ? in_.u64() & PoolPayload::kMaxSize : f.size + in_.below(64) - 32;
    f.size &= PoolPayload::kMaxSize;
    const Origin release = static_cast<Origin>(in_.below(4));
    const Header saved = HeaderCodec::load(reinterpret_cast<void*>(l.hdr));
    const uint64_t payload =
        (PoolPayload::make(f) & ~(uint64_t{3} << PoolPayload::kTagShift)) | uint64_t{tag} << PoolPayload::kTagShift;
    PoolSeal::store(u, seal.seal(payload, seal.key(u)));
    const uint64_t capacity = shadow_.at(p).usable;
    Verdict want = Verdict::kOk;
    bool forward_ambiguous = false;
    if (tag == 3) {
      want = Verdict::kCorrupted;
    } else if (tag == static_cast<unsigned>(PoolTag::kForward)) {
      want = Verdict::kCorrupted;  // a real word that says Forward; at the block start it leads on
      forward_ambiguous = l.hdr == l.block;
    } else if (tag == static_cast<unsigned>(PoolTag::kFree)) {
      want = Verdict::kDoubleFree;
    } else if (!origins_compatible(f.origin, release)) {
      want = Verdict::kMismatchedOrigin;
    } else if (f.size > capacity) {
      want = Verdict::kCorrupted;
    }
    const Verdict v = a_->check(p, release);
    FUZZ_CHECK(is_typed(v), "forged Pool word: untyped verdict %d", (int)v);
    if (forward_ambiguous) {
      FUZZ_CHECK(v == Verdict::kCorrupted || v == Verdict::kMisaligned,
                 "forward word at the prefix of %p leading to +%llu gave verdict %d", p, (unsigned long long)f.size,
                 (int)v);
    } else {
      FUZZ_CHECK(v == want,
                 "forged Pool word of %p (tag %u origin %d size %llu, capacity %llu) freed as origin %d: verdict %d, "
                 "expected %d",
                 p, tag, (int)f.origin, (unsigned long long)f.size, (unsigned long long)capacity, (int)release, (int)v,
                 (int)want);
    }
    if (v != Verdict::kOk) {
      reject_everywhere(p, v, release);
      HeaderCodec::store(saved, reinterpret_cast<void*>(l.hdr));
      FUZZ_CHECK(a_->check(p) == Verdict::kOk, "%p does not validate once its word is restored", p);
      return;
    }
    if (in_.flag() || f.strategy != original.strategy) {
      FUZZ_CHECK(a_->free(p, kSite, release) == Verdict::kOk, "forged-but-consistent %p not freed", p);
      shadow_.remove(p);
    } else {
      HeaderCodec::store(saved, reinterpret_cast<void*>(l.hdr));
    }
  }

  /// A forged forward record at the start of a block, pointing anywhere (for a Pool block, its
  /// forward word, sealed with the right key, the guard kept).
  void forge_forward() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    const Layout l = layout_of(*a_, p);
    HeaderFields fwd;
    fwd.method = Method::kForward;
    fwd.size = in_.flag() ? in_.u64() & kMaxRequest : in_.below(l.room + 64);
    const Header saved = HeaderCodec::load(reinterpret_cast<void*>(l.block));
    if (l.pool) {
      fwd.size &= PoolPayload::kMaxSize;
      a_->pool_seal_for_testing().encode(PoolFields{PoolTag::kForward, Origin::kMalloc, 0, fwd.size},
                                         l.block + kHeaderSize);
    } else {
      HeaderCodec::store(a_->codec_for_testing().pack(fwd, l.block), reinterpret_cast<void*>(l.block));
    }
    const Verdict v = a_->check(p);
    FUZZ_CHECK(is_typed(v), "forged forward record: untyped verdict %d", (int)v);
    // On a plain block the record replaces the real header itself: it can only mislead.
    if (l.block != l.hdr && l.block + fwd.size == l.hdr) {
      FUZZ_CHECK(v == Verdict::kOk, "a forward record to the real header of %p gives verdict %d", p, (int)v);
    } else {
      FUZZ_CHECK(v == Verdict::kCorrupted || v == Verdict::kMisaligned,
                 "forward record of %p to +%llu (room %llu) gave verdict %d", p, (unsigned long long)fwd.size,
                 (unsigned long long)l.room, (int)v);
      reject_everywhere(p, v, Origin::kMalloc);
    }
    HeaderCodec::store(saved, reinterpret_cast<void*>(l.block));
    FUZZ_CHECK(a_->check(p) == Verdict::kOk, "%p does not validate once its forward record is restored", p);
  }

  /// Pointers inside and outside owned memory: typed verdicts, kOk exactly for live blocks.
  void wild_pointer() {
    uintptr_t base = 0;
    int local = 0;
    switch (in_.below(6)) {
    case 0:
    case 1:
      if (shadow_.count() > 0) base = reinterpret_cast<uintptr_t>(victim());
      break;
    case 2:
      if (shadow_.count() > 0) base = layout_of(*a_, victim()).end;
      break;
    case 3: base = reinterpret_cast<uintptr_t>(&local); break;
    case 4: base = reinterpret_cast<uintptr_t>(&g_static_word); break;
    default: base = in_.u64(); break;
    }
    const auto off = static_cast<int64_t>(static_cast<int32_t>(in_.u32()) >> in_.below(24));
    auto* q = reinterpret_cast<void*>(base + static_cast<uint64_t>(off));
    const Verdict v = a_->check(q);
    FUZZ_CHECK(is_typed(v), "check(%p): untyped verdict %d", q, (int)v);
    if (shadow_.contains(q)) {
      FUZZ_CHECK(v == Verdict::kOk, "live block %p gives verdict %d", q, (int)v);
      return;
    }
    FUZZ_CHECK(v != Verdict::kOk, "%p is no live block but validates", q);
    if (a_->registry_for_testing().lookup(reinterpret_cast<uintptr_t>(q)) == nullptr) {
      FUZZ_CHECK(v == Verdict::kInvalidPointer, "%p outside every extent gives verdict %d", q, (int)v);
    }
    if (q != nullptr) reject_everywhere(q, v, Origin::kMalloc);
  }

  void free_ok(void* p) {
    shadow_.verify(p);
    const Verdict v = a_->free(p, kSite);
    FUZZ_CHECK(v == Verdict::kOk, "free of live %p gave verdict %d", p, (int)v);
    shadow_.remove(p);
  }

  void double_free() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    free_ok(p);
    if (in_.flag()) a_->flush();  // a released Map block is no longer in any extent
    const Verdict v = a_->check(p);
    FUZZ_CHECK(v == Verdict::kDoubleFree || v == Verdict::kInvalidPointer, "freed %p gives verdict %d", p, (int)v);
    reject_everywhere(p, v, Origin::kMalloc);
  }

  /// The wrong family (delete of a malloc block) and the wrong size for a sized release.
  void wrong_release() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    if (in_.flag()) {
      const Origin o = in_.flag() ? Origin::kNew : Origin::kNewArray;
      FUZZ_CHECK(a_->check(p, o) == Verdict::kMismatchedOrigin, "delete of malloc block %p not a mismatch", p);
      reject_everywhere(p, Verdict::kMismatchedOrigin, o);
    } else {
      const uint64_t size = shadow_.at(p).size;
      const uint64_t wrong = size ^ (1 + in_.below(1 << 20));
      const size_t before = reports_.lines();
      const Verdict v = a_->free_sized(p, wrong, kSite, Origin::kMalloc);
      FUZZ_CHECK(v == Verdict::kSizeMismatch, "free_sized(%p, %llu) of a %llu-byte block gave %d", p,
                 (unsigned long long)wrong, (unsigned long long)size, (int)v);
      expect_report(before, p, v);
    }
  }

  /**
   * A write after free into a freed Pool block's free-list link (fuzzer bytes, or one flipped bit,
   * over its first 8 bytes). The model: the allocations of its size that follow never hand out a
   * live block, the forged value or one block twice, and the one that meets the link reports one
   * corrupted free list naming the block. The list is cut there, its blocks past the cut lost by
   * design, so the audit's accounting is no longer checked after this action (everything else is).
   */
  void corrupt_link() {
    if (shadow_.count() == 0) return;
    void* p = victim();
    const Layout l = layout_of(*a_, p);
    // A plain Pool block, allocated unaligned: its link is at its user pointer, and a malloc of its
    // size takes its class.
    if (!l.pool || l.hdr != l.block || shadow_.at(p).align > 16) return;
    const uint64_t size = shadow_.at(p).size;
    free_ok(p);
    uint64_t link;
    memcpy(&link, p, sizeof(link));
    const uint64_t forged = in_.flag() ? link ^ uint64_t { 1 } << in_.below(64) : in_.u64();
    if (forged == link) return;
    memcpy(p, &forged, sizeof(forged));
    cut_ = true;
    const uint64_t before = a_->error_count(Verdict::kCorruptedLink);
    const size_t lines = reports_.lines();
    std::vector<void*> got;
    for (int i = 0; i < 5000 && a_->error_count(Verdict::kCorruptedLink) == before; ++i) {
      void* x = a_->alloc(size, kSite);
      FUZZ_CHECK(x != nullptr, "allocation of %llu after a corrupted link failed", (unsigned long long)size);
      FUZZ_CHECK(!shadow_.contains(x), "a live block %p was handed out again", x);
      FUZZ_CHECK(reinterpret_cast<uintptr_t>(x) != forged, "the forged link %p was followed", x);
      for (void* g : got) FUZZ_CHECK(g != x, "%p was handed out twice", x);
      got.push_back(x);
    }
    FUZZ_CHECK(a_->error_count(Verdict::kCorruptedLink) == before + 1, "a corrupted link of %p was never reported", p);
    expect_report(lines, p, Verdict::kCorruptedLink);
    for (void* g : got) FUZZ_CHECK(a_->free(g, kSite) == Verdict::kOk, "free of %p after a corrupted link failed", g);
  }

  /// After each action (headers restored): every live block intact and valid, the audit clean
  /// (its accounting too, unless a corrupted link cut a free list).
  void nothing_changed() {
    shadow_.verify_all();
    for (const auto& [u, b] : shadow_.blocks()) {
      FUZZ_CHECK(a_->check(reinterpret_cast<void*>(u)) == Verdict::kOk, "live %p no longer validates",
                 reinterpret_cast<void*>(u));
    }
    if (!cut_) hakmem_fuzz::check_audit(*a_, "a rejected misuse");
  }

  Input& in_;
  hakmem_fuzz::ReportCapture reports_;
  size_t last_text_end_ = 0;
  bool cut_ = false;  ///< a corrupted link cut a free list: the blocks past the cut are lost by design
  ScopedAllocator<TestConfig> a_;
  Shadow shadow_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Options o;
  o.set(Opt::kOnError, kOnErrorReport);
  o.set(Opt::kCache, in.flag() ? 0 : 4 << 20);
  Driver(in, o).run();
  return 0;
}
