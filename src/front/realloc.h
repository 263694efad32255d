// Realloc: resizing a block in place or by moving it, keeping min(old, new) bytes (I5).
#pragma once

#include <errno.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backing/backing.h"
#include "core/core.h"
#include "front/validation.h"
#include "header/header.h"

namespace hakmem {

/**
 * Allocator::realloc(): a bad pointer is reported like a bad free and gives nullptr; on ENOMEM the
 * old block is untouched; realloc(p, 0) frees p and gives nullptr (glibc). A block stays in place
 * when it fits, its backing still agrees with the strategy in force (I3), and it is not grossly
 * oversized: only its prefix (Pool) or header (Map) is rewritten with the new size and strategy.
 */
struct AllocatorRealloc {
  template <class A>
  static void* run(A& a, void* p, size_t size, uintptr_t site) {
    if (p == nullptr) return a.alloc(size, site);
    if (!a.ensure_ready()) return nullptr;
    Located at;
    const Verdict v = a.validator_.locate(reinterpret_cast<uintptr_t>(p), Origin::kMalloc, &at);
    if (v != Verdict::kOk) {
      a.reporter_.report(v, p, at, site, Origin::kMalloc);
      errno = EINVAL;
      return nullptr;
    }
    if (size == 0) {
      a.free_commit(at, site);
      return nullptr;
    }
    bool fresh;
    if (at.zero) {  // zero-size block: nothing to keep
      void* q = a.alloc_general(size, kHeaderSize, site, Origin::kMalloc, &fresh);
      if (q != nullptr) a.free_commit(at, site);
      return q;
    }
    const uint64_t capacity = Validator<typename A::Pal>::capacity_of(at);
    const uint64_t need = size + a.validator_.canary_bytes();
    const StrategySnapshot snap = a.selector_.snapshot();
    const bool want_map = size >= snap.threshold;
    const bool is_map = at.f.method == Method::kMap;
    // Stay in place when the block fits, its backing still agrees with the strategy in force
    // (I3), and it is not grossly oversized.
    if (need <= capacity && want_map == is_map && (need > capacity / 2 || capacity <= 2 * kHeaderSize)) {
      if (is_map) {
        HeaderFields f = at.f;
        f.size = size;
        f.strategy = snap.id;
        a.codec_.encode(f, reinterpret_cast<void*>(at.header));
      } else {
        a.pool_.seal().encode(PoolFields{PoolTag::kLive, at.f.origin, snap.id, size}, reinterpret_cast<uintptr_t>(p));
      }
      if (a.paranoid_) a.hard_.write_canary(reinterpret_cast<uintptr_t>(p) + size);
      return p;
    }
    const Origin origin = at.f.origin == Origin::kAligned ? Origin::kMalloc : at.f.origin;
    void* q = a.alloc_general(size, kHeaderSize, site, origin, &fresh);
    if (q == nullptr) return nullptr;  // errno is ENOMEM; p is untouched
    const uint64_t old_size = at.f.size;
    memcpy(q, p, size < old_size ? size : old_size);
    a.free_commit(at, site);
    return q;
  }
};

}  // namespace hakmem
