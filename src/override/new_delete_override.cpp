// The 20 replaceable C++ allocation operators over the process allocator, with new/delete origins checked.
#include <cstddef>
#include <new>

#include "front/front.h"

using hakmem::g_process;
using hakmem::Origin;

#define HAKMEM_EXPORT __attribute__((visibility("default")))

namespace {

/// The standard's loop once an attempt gave nothing: call the new-handler until memory comes or
/// there is no handler (then std::bad_alloc).
[[gnu::noinline]] void* new_retry(size_t size, size_t align, Origin origin, uintptr_t site) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
    void* p = align <= hakmem::kHeaderSize ? g_process.alloc(size, site, origin)
                                           : g_process.aligned_alloc(align, size, site, origin);
    if (p != nullptr) return p;
  }
}

[[gnu::noinline]] void* new_or_throw(size_t size, size_t align, Origin origin, uintptr_t site) {
  void* p = align <= hakmem::kHeaderSize ? g_process.alloc(size, site, origin)
                                         : g_process.aligned_alloc(align, size, site, origin);
  return p != nullptr ? p : new_retry(size, align, origin, site);
}

void* new_nothrow(size_t size, size_t align, Origin origin, uintptr_t site) noexcept {
  try {
    return new_or_throw(size, align, origin, site);
  } catch (...) {
    return nullptr;  // a handler that throws ends the nothrow form with nullptr
  }
}

size_t align_of(std::align_val_t a) { return static_cast<size_t>(a); }

}  // namespace

// operator new and new[]: the allocator's fast path inline, as malloc's; past it, a tail call to
// the whole allocation with the new-handler loop (no stack frame on the fast path, and the
// caller's address read only there).
HAKMEM_EXPORT void* operator new(size_t n) {
  if (void* p = g_process.alloc_fast(n, Origin::kNew); __builtin_expect(p != nullptr, 1)) return p;
  return new_or_throw(n, 0, Origin::kNew, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new[](size_t n) {
  if (void* p = g_process.alloc_fast(n, Origin::kNewArray); __builtin_expect(p != nullptr, 1)) return p;
  return new_or_throw(n, 0, Origin::kNewArray, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, 0, Origin::kNew, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, 0, Origin::kNewArray, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new(size_t n, std::align_val_t a) {
  return new_or_throw(n, align_of(a), Origin::kNew, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new[](size_t n, std::align_val_t a) {
  return new_or_throw(n, align_of(a), Origin::kNewArray, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, align_of(a), Origin::kNew, HAKMEM_CALLER);
}
HAKMEM_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, align_of(a), Origin::kNewArray, HAKMEM_CALLER);
}

HAKMEM_EXPORT void operator delete(void* p) noexcept { HAKMEM_PROCESS_FREE(p, Origin::kNew); }
HAKMEM_EXPORT void operator delete[](void* p) noexcept { HAKMEM_PROCESS_FREE(p, Origin::kNewArray); }
HAKMEM_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { HAKMEM_PROCESS_FREE(p, Origin::kNew); }
HAKMEM_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  HAKMEM_PROCESS_FREE(p, Origin::kNewArray);
}
HAKMEM_EXPORT void operator delete(void* p, size_t n) noexcept { HAKMEM_PROCESS_FREE_SIZED(p, n, Origin::kNew); }
HAKMEM_EXPORT void operator delete[](void* p, size_t n) noexcept { HAKMEM_PROCESS_FREE_SIZED(p, n, Origin::kNewArray); }
HAKMEM_EXPORT void operator delete(void* p, std::align_val_t) noexcept { HAKMEM_PROCESS_FREE(p, Origin::kNew); }
HAKMEM_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { HAKMEM_PROCESS_FREE(p, Origin::kNewArray); }
HAKMEM_EXPORT void operator delete(void* p, size_t n, std::align_val_t) noexcept {
  HAKMEM_PROCESS_FREE_SIZED(p, n, Origin::kNew);
}
HAKMEM_EXPORT void operator delete[](void* p, size_t n, std::align_val_t) noexcept {
  HAKMEM_PROCESS_FREE_SIZED(p, n, Origin::kNewArray);
}
HAKMEM_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  HAKMEM_PROCESS_FREE(p, Origin::kNew);
}
HAKMEM_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  HAKMEM_PROCESS_FREE(p, Origin::kNewArray);
}
