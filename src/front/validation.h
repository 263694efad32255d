// Validation: where a pointer leads, the live-block checks of the fast frees, and the report.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "front/hardening.h"
#include "front/layout.h"
#include "header/header.h"

namespace hakmem {

/// Where a pointer leads, as found by validation.
struct Located {
  Verdict verdict = Verdict::kInvalidPointer;
  Extent* extent = nullptr;
  uintptr_t block = 0;     ///< block start (Pool) or mapping base (Map)
  uintptr_t header = 0;    ///< the real prefix, 16 bytes before the user pointer (block, or further in when aligned)
  bool header_ok = false;  ///< the prefix opened: a Map header's checksum, or a Pool block's word and guard
  bool zero = false;       ///< a zero-size block of the ZeroArena (no extent, no header)
  HeaderFields f{};        ///< what the prefix says, when header_ok (a Pool block: method Pool, state Live or Free)
  Header h{};              ///< a Map block's header as stored, when header_ok
  uint32_t sum = 0;        ///< h's keyed sum at `header`, when header_ok (for an incremental re-seal)
};

/// A release's `sized` when the caller claims no size.
inline constexpr uint64_t kUnsized = ~uint64_t{0};

/// h's low word with method `m`, state Live and origin `o`: equal to h.lo exactly when the
/// header says so (one compare checks all three fields).
HAKMEM_FAST_PATH uint64_t live_lo(const Header& h, Method m, Origin o) {
  constexpr uint64_t kFieldMask = uint64_t{0x3f} << 32;
  const uint64_t fields = uint64_t{static_cast<uint8_t>(m)} | uint64_t{static_cast<uint8_t>(State::kLive)} << 2 |
                          uint64_t{static_cast<uint8_t>(o)} << 4;
  return (h.lo & ~kFieldMask) | fields << 32;
}

/**
 * The live-block check of the Pool fast free, for user pointer u whose key is `key`
 * (PoolSeal::key(u)): true when the guard at u - 16 is the key, and the word at u - 8 opens to a
 * payload of tag Live, exactly origin `o`, a size that fits the block (`room`, the span's
 * PoolPayload::room(), one compare for all of that) and equals `sized` (unless kUnsized). Then
 * *word is the word as stored, for the re-seal (PoolSeal::free_delta()). False changes nothing:
 * the caller declines, and Validator::locate() on the general path diagnoses the same block in full.
 */
HAKMEM_FAST_PATH bool pool_live_ok(const PoolSeal& seal, uintptr_t u, uint64_t key, Origin o, uint64_t room,
                                   uint64_t sized, uint64_t* word) {
  if (__builtin_expect(PoolSeal::load(u - sizeof(uint64_t)) != key, 0)) return false;
  const uint64_t w = PoolSeal::load(u);
  const uint64_t t = seal.open(w, key) ^ PoolPayload::head(PoolTag::kLive, o);
  if (__builtin_expect(t > room || (sized != kUnsized && t >> PoolPayload::kSizeShift != sized), 0)) return false;
  *word = w;
  return true;
}

/**
 * The live-header check of the large slot's fast free: true when the Map header stored at `block`
 * says method `m`, state Live and exactly origin `o` (one compare), its
 * size fits `room` and equals `sized` (unless kUnsized), and its keyed checksum is right. Then
 * *sum is its keyed sum, for the in-place re-seal. False changes nothing: the caller declines,
 * and Validator::locate() on the general path diagnoses the same header in full.
 *
 * The size is checked before the sum, so the header's high word is dead sooner; the empty asm
 * at the end (a compiler barrier, no instruction) keeps GCC from holding the checksum's keys in
 * callee-saved registers across the caller's re-seal.
 */
HAKMEM_FAST_PATH bool live_header_ok(const HeaderCodec& codec, uintptr_t block, Method m, Origin o, uint64_t room,
                                     uint64_t sized, uint32_t* sum) {
  const Header h = HeaderCodec::load(reinterpret_cast<void*>(block));
  if (__builtin_expect(h.lo != live_lo(h, m, o), 0)) return false;
  const uint64_t size = h.size();
  if (__builtin_expect(size > room || (sized != kUnsized && size != sized), 0)) return false;
  const uint32_t s = codec.sum_of(h, block);
  if (__builtin_expect(!codec.matches(h, s), 0)) return false;
  asm volatile("" ::: "memory");
  *sum = s;
  return true;
}

/**
 * The general path's validation: finds the block a pointer belongs to and checks it in full, in
 * an order that reads no byte near the pointer before the Registry owns it (front/README.md,
 * "Validating a free"). It reads the structures it is given and changes nothing.
 */
template <class Pal>
class Validator {
public:
  struct Parts {
    Registry<Pal>* registry;
    const HeaderCodec* codec;
    const PoolSeal* seal;
    ZeroArena<Pal>* zero;
    const Hardening* hard;
    bool paranoid;
    bool origin_check;
  };

  void init(const Parts& parts) { p_ = parts; }

  /**
   * Finds the block p belongs to and checks, in order: ownership (Registry, before any byte near
   * p is read), the canonical header at the block start (checksum, forward record), that p is
   * exactly the pointer handed out, the state, the method against the Registry, the origin, the
   * size against the block's room, and in paranoid mode the canary. kOk leaves *at describing a
   * live block; any other verdict leaves what was found, for the report.
   */
  Verdict locate(uintptr_t p, Origin origin, Located* at, bool check_origin = true) const {
    if (__builtin_expect(p_.paranoid, 0)) {
      using Slot = typename ZeroArena<Pal>::Slot;
      switch (p_.zero->classify(p)) {
      case Slot::kOutside: break;
      case Slot::kLive:
        at->zero = true, at->block = at->header = p;
        // Zero-size slots are malloc's: delete and delete[] of one are mismatches.
        if (check_origin && !origins_compatible(Origin::kMalloc, origin) && p_.origin_check) {
          return at->verdict = Verdict::kMismatchedOrigin;
        }
        return at->verdict = Verdict::kOk;
      case Slot::kFree: at->zero = true, at->block = at->header = p; return at->verdict = Verdict::kDoubleFree;
      case Slot::kInside: return at->verdict = Verdict::kMisaligned;
      }
    }
    Extent* e = p_.registry->lookup(p);
    at->extent = e;
    if (e == nullptr) return at->verdict = Verdict::kInvalidPointer;
    uintptr_t block = e->base;
    Method expected = Method::kMap;
    if (e->kind == ExtentKind::kPoolSpan) {
      block = Pool<Pal>::block_start(static_cast<Span*>(e), p);
      if (block == 0) return at->verdict = Verdict::kInvalidPointer;  // never handed out
      expected = Method::kPool;
    }
    if (!locate_block(e, block, at)) return at->verdict;
    if (p != at->header + kHeaderSize) return at->verdict = Verdict::kMisaligned;
    const HeaderFields& f = at->f;
    if (f.state != State::kLive) return at->verdict = Verdict::kDoubleFree;
    if (f.method != expected) return at->verdict = Verdict::kMethodMismatch;
    if (check_origin && !origins_compatible(f.origin, origin) && p_.origin_check) {
      return at->verdict = Verdict::kMismatchedOrigin;
    }
    if (f.size + canary_bytes() > capacity_of(*at)) return at->verdict = Verdict::kCorrupted;
    // Paranoid: the canary right after the requested size (the block is live, so readable).
    if (p_.paranoid && !p_.hard->canary_intact(p + f.size)) return at->verdict = Verdict::kOverflow;
    return at->verdict = Verdict::kOk;
  }

  /// Checks the canonical prefix at `block` of extent e and follows a forward record. False
  /// (verdict kCorrupted) when either does not open or the record points outside the block.
  bool locate_block(Extent* e, uintptr_t block, Located* at) const {
    at->extent = e;
    at->block = block;
    at->header = block;
    if (e->kind == ExtentKind::kPoolSpan) return locate_pool_block(static_cast<Span*>(e), block, at);
    Header h = HeaderCodec::load(reinterpret_cast<void*>(block));
    uint32_t sum;
    if (__builtin_expect(!p_.codec->valid(h, block, &sum), 0)) {
      at->verdict = Verdict::kCorrupted;
      return false;
    }
    if (__builtin_expect(h.method() == Method::kForward, 0)) {
      const uint64_t off = h.size();
      const uint64_t room = e->kind == ExtentKind::kPoolSpan ? static_cast<Span*>(e)->block_size : e->length;
      if (off == 0 || off % kHeaderSize != 0 || off + kHeaderSize > room) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
      at->header = block + off;
      h = HeaderCodec::load(reinterpret_cast<void*>(at->header));
      if (!p_.codec->valid(h, at->header, &sum) || h.method() == Method::kForward) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
    }
    at->h = h;
    at->sum = sum;
    at->f = h.fields();
    at->header_ok = true;
    return true;
  }

  /**
   * The word of Pool user pointer u, opened: false when it does not open to a payload, or when the
   * first word at u - 16 is not what pool_first_word() wrote (all of it in the default mode, the
   * key's bits below the site in paranoid mode). *site is the paranoid mode's allocation site, else 0.
   */
  bool open_pool(uintptr_t u, PoolFields* f, uintptr_t* site) const {
    const uint64_t key = p_.seal->key(u);
    const uint64_t payload = p_.seal->open(PoolSeal::load(u), key);
    const uint64_t first = PoolSeal::load(u - sizeof(uint64_t));
    const uint64_t checked = p_.paranoid ? kSiteCheckMask : ~uint64_t{0};
    if (!PoolPayload::valid(payload) || ((first ^ key) & checked) != 0) return false;
    *f = PoolPayload::fields(payload);
    *site = p_.paranoid ? first >> kSiteCheckBits : 0;
    return true;
  }

  /// locate_block() of a Pool block: its word and guard, then through a forward word to the real ones.
  bool locate_pool_block(const Span* s, uintptr_t block, Located* at) const {
    PoolFields f;
    uintptr_t site;
    if (__builtin_expect(!open_pool(block + kHeaderSize, &f, &site), 0)) {
      at->verdict = Verdict::kCorrupted;
      return false;
    }
    if (__builtin_expect(f.tag == PoolTag::kForward, 0)) {
      const uint64_t off = f.size;
      if (off == 0 || off % kHeaderSize != 0 || off + kHeaderSize > s->block_size) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
      at->header = block + off;
      if (!open_pool(at->header + kHeaderSize, &f, &site) || f.tag == PoolTag::kForward) {
        at->verdict = Verdict::kCorrupted;
        return false;
      }
    }
    at->f = HeaderFields{
        Method::kPool, f.tag == PoolTag::kLive ? State::kLive : State::kFree, f.origin, f.strategy, f.size, site};
    at->header_ok = true;
    return true;
  }

  /// Bytes a block carries after its requested size: the canary in paranoid mode, else none.
  uint64_t canary_bytes() const { return p_.paranoid ? kCanarySize : 0; }

  /// What the caller may use: the requested size in paranoid mode (the canary follows), else the room.
  uint64_t usable_of(const Located& at) const {
    if (at.zero) return 0;
    return p_.paranoid ? at.f.size : capacity_of(at);
  }

  /// Bytes from the located block's user pointer to the end of its block (its room).
  static uint64_t capacity_of(const Located& at) {
    const uint64_t offset = at.header - at.block;
    if (at.extent->kind == ExtentKind::kPoolSpan) {
      return static_cast<Span*>(at.extent)->block_size - offset - kHeaderSize;
    }
    return static_cast<MapBlock*>(at.extent)->capacity_at(offset);
  }

private:
  Parts p_{};
};

/**
 * Reports misuse: counts each verdict, formats the one-line report with what the header knows
 * (size, allocation site and origin), and aborts unless on_error=report.
 */
class Reporter {
public:
  void init(bool abort_on_error) { abort_ = abort_on_error; }

  /// Where reports go (stderr by default); tests capture them.
  void set_sink(WriteFn fn, void* arg) {
    sink_ = fn;
    sink_arg_ = arg;
  }

  void report(Verdict v, const void* p, const Located& at, uintptr_t free_site, Origin free_origin,
              uint64_t claimed_size = 0) {
    errors_[static_cast<size_t>(v)].fetch_add(1, std::memory_order_relaxed);
    ErrorReport r;
    r.kind = v;
    r.claimed_size = claimed_size;
    r.ptr = p;
    r.free_site = free_site;
    r.free_origin = free_origin;
    if (at.header_ok && v != Verdict::kCorrupted) {
      r.size_known = true;
      r.size = at.f.size;
      r.alloc_site = at.f.site;
      r.alloc_origin = at.f.origin;
    }
    if (at.zero) r.size_known = true;  // a zero-size block (no header, no site)
    format_report(r, sink_, sink_arg_);
    if (abort_) abort();
  }

  uint64_t count(Verdict v) const { return errors_[static_cast<size_t>(v)].load(); }

  /// Fills the error counts of a stats snapshot.
  template <class Stats>
  void fill_stats(Stats& s) const {
    for (size_t i = 0; i < static_cast<size_t>(Verdict::kCount); ++i) {
      s.errors[i] = errors_[i].load();
      s.errors_total += s.errors[i];
    }
  }

private:
  std::atomic<uint64_t> errors_[static_cast<size_t>(Verdict::kCount)] = {};
  bool abort_ = true;
  WriteFn sink_ = write_stderr;
  void* sink_arg_ = nullptr;
};

}  // namespace hakmem
