// Audit (TestOnly): a walk of every structure that checks the invariants a counter cannot.
#pragma once

#include <cstdint>
#include <cstring>

#include "backing/backing.h"
#include "core/core.h"
#include "front/thread_state.h"
#include "front/validation.h"
#include "header/header.h"

namespace hakmem {

/// The result of an audit: the first failure, and what the walk counted.
struct AuditResult {
  bool ok = true;
  char failure[160] = {};
  uint64_t mapped = 0, pool_span_bytes = 0, pool_live = 0, pool_free = 0, map_live = 0, cached = 0, pending = 0,
           metadata = 0;
  uint64_t slots = 0;      ///< bytes in the threads' large slots (cached, but outside BigCache)
  uint64_t pool_held = 0;  ///< paranoid: Pool bytes in the quarantine or withheld after a report
  uint64_t live_blocks = 0;

  /// Records a failure: the first one is kept, as "what (a vs b)".
  void fail(const char* what, uint64_t a, uint64_t b) {
    if (!ok) return;
    ok = false;
    Out o(
        [](void* arg, const char* t, size_t n) {
          char* dst = static_cast<char*>(arg);
          const size_t have = strlen(dst);
          const size_t room = sizeof(AuditResult::failure) - 1 - have;
          memcpy(dst + have, t, n < room ? n : room);
        },
        failure);
    o.str(what).str(" (").dec(a).str(" vs ").dec(b).ch(')');
  }
};

/// What a test can read back about one live block.
struct BlockInfo {
  Verdict verdict = Verdict::kInvalidPointer;
  ExtentKind kind = ExtentKind::kNone;
  HeaderFields fields;
  uint64_t usable = 0;
  uint64_t threshold_of_strategy = 0;
};

/**
 * The allocator's audit: I2, I3, I4, I6 and I7 over every structure (accounting adds up, every
 * live block's header agrees with the Registry and with the strategy recorded in it, cached
 * blocks say Cached, pending ones Releasing). Each component audits its own structures
 * (audit_for_testing()); what is left here is the walk of blocks, which needs validation. A
 * friend of Allocator. The caller guarantees no other thread is using the allocator.
 */
struct AllocatorAudit {
  /// TestOnly: header fields and backing of the block at p, and its verdict as a free would see it.
  template <class A>
  static BlockInfo inspect(A& a, const void* p) {
    BlockInfo info;
    Located at;
    info.verdict = a.validator_.locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at, /*check_origin=*/false);
    if (at.extent != nullptr) info.kind = at.extent->kind;
    if (at.header_ok) {
      info.fields = at.f;
      info.threshold_of_strategy = a.selector_.threshold_of(at.f.strategy);
    }
    if (info.verdict == Verdict::kOk) info.usable = a.validator_.usable_of(at);
    return info;
  }

  template <class A>
  static AuditResult run(A& a) {
    AuditResult r;
    if (!a.ready()) return r;
    // Pool: spans split exactly into live, free and held bytes; every live block checked. The walk
    // sees every carved block off the free lists; paranoid mode holds some of those back
    // (quarantined, or withheld after a write-after-free report), and they are not live.
    uint64_t walked_pool_live = 0;
    r.pool_free = a.pool_.audit_free_bytes(&walked_pool_live);
    r.pool_held = a.quarantine_.held_bytes() + a.quarantine_.withheld_bytes();
    if (r.pool_held > walked_pool_live) r.fail("I7 pool held > carved off-list", r.pool_held, walked_pool_live);
    walked_pool_live -= r.pool_held < walked_pool_live ? r.pool_held : walked_pool_live;
    r.pool_live = walked_pool_live;
    r.pool_span_bytes = a.pool_.span_bytes();
    if (r.pool_free + r.pool_live + r.pool_held != r.pool_span_bytes) {
      r.fail("I7 pool spans != free + live + held", r.pool_free + r.pool_live + r.pool_held, r.pool_span_bytes);
    }
    if (a.paranoid_) {
      a.quarantine_.audit_for_testing(
          r, [&](auto&& fn) { a.pool_.for_each_heap_for_testing([&](ThreadHeap* h) { fn(h->quarantine); }); });
    }
    const uint64_t counted_pool_live =
        static_cast<uint64_t>(a.pool_.sum_heaps([](const HeapCounters& c) { return c.pool_live_bytes(); }));
    if (counted_pool_live != walked_pool_live)
      r.fail("I7 pool live counter != walk", counted_pool_live, walked_pool_live);
    a.pool_.for_each_span_for_testing([&](Span* s) {
      if (a.registry_.lookup(s->base) != s || a.registry_.lookup(s->base + s->length - 1) != s) {
        r.fail("I4 Registry does not answer for a Pool span", s->base, 0);
      }
      const uint32_t carved = s->carved.load();
      for (uint32_t i = 0; i < carved; ++i) {
        const uintptr_t block = s->base + uint64_t{i} * s->block_size;
        Located at;
        if (!a.validator_.locate_block(s, block, &at)) {
          r.fail("I2 carved Pool block prefix does not open", block, 0);
        } else if (at.f.state == State::kLive) {
          check_live_block(a, r, at);
        }
      }
    });
    // Map: each block is live, cached (BigCache or a slot) or pending, and its header says which.
    a.cache_.audit_for_testing(r, a.codec_);
    a.pool_.for_each_heap_for_testing([&](ThreadHeap* h) { a.slots_.audit_for_testing(r, a.codec_, h->slot); });
    const uint64_t counted_slots = a.slots_.sum(a.pool_, &LargeSlotCell::bytes);
    if (counted_slots != r.slots) r.fail("I7 slot bytes counter != walk", counted_slots, r.slots);
    a.releaser_.audit_for_testing(r);
    a.map_.for_each_block([&](MapBlock* mb) {
      if (a.registry_.lookup(mb->base) != mb || a.registry_.lookup(mb->base + mb->length - 1) != mb) {
        r.fail("I4 Registry does not answer for a Map block", mb->base, 0);
      }
      if (mb->state != State::kLive) return;
      r.map_live += mb->length;
      Located at;
      if (!a.validator_.locate_block(mb, mb->base, &at)) {
        r.fail("live Map block header fails its checksum", mb->base, 0);
      } else {
        check_live_block(a, r, at);
      }
    });
    const uint64_t counted_map_live = sum(a, &HeapCounters::map_held_bytes) - counted_slots;
    if (counted_map_live != r.map_live) r.fail("I7 map live counter != walk", counted_map_live, r.map_live);
    r.live_blocks += a.zero_.live();
    r.metadata = a.metadata_bytes();
    r.mapped = a.mapped_.load();
    const uint64_t sum = r.pool_span_bytes + r.map_live + r.cached + r.slots + r.pending + r.metadata;
    if (sum != r.mapped)
      r.fail("I7 mapped != pool spans + map live + cached + slots + pending + metadata", r.mapped, sum);
    return r;
  }

  /// A per-thread counter summed over every heap.
  template <class A>
  static uint64_t sum(A& a, OwnedCounter HeapCounters::*c) {
    return static_cast<uint64_t>(a.pool_.sum_heaps([c](const HeapCounters& hc) { return (hc.*c).get(); }));
  }

  /// I2 and I3 for one live block.
  template <class A>
  static void check_live_block(A& a, AuditResult& r, const Located& at) {
    ++r.live_blocks;
    const Method expected = at.extent->kind == ExtentKind::kPoolSpan ? Method::kPool : Method::kMap;
    if (at.f.method != expected) r.fail("I2 header method != Registry kind", at.block, 0);
    if (a.registry_.lookup(at.header + kHeaderSize) != at.extent) {
      r.fail("I2 Registry does not own the user pointer", at.block, 0);
    }
    const uint64_t thr = a.selector_.threshold_of(at.f.strategy);
    const bool map_expected =
        at.f.size >= thr || at.f.size + a.validator_.canary_bytes() + (at.header - at.block) > SizeClasses::kMaxUsable;
    if (map_expected != (expected == Method::kMap)) {
      r.fail("I3 method disagrees with the strategy in the header", at.f.size, thr);
    }
  }
};

}  // namespace hakmem
