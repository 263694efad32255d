// The 20 replaceable C++ allocation operators over the process allocator, with new/delete origins checked.
#include <cstddef>
#include <new>

#include "front/front.h"

using hakmem::g_process;
using hakmem::Origin;

#define HAKMEM_EXPORT __attribute__((visibility("default")))

namespace {

/// The standard's loop: call the new-handler until memory comes or there is no handler.
void* new_or_throw(size_t size, size_t align, Origin origin, uintptr_t site) {
  for (;;) {
    void* p = align <= hakmem::kHeaderSize ? g_process.alloc(size, site, origin)
                                           : g_process.aligned_alloc(align, size, site, origin);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
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

HAKMEM_EXPORT void* operator new(size_t n) { return new_or_throw(n, 0, Origin::kNew, HAKMEM_CALLER); }
HAKMEM_EXPORT void* operator new[](size_t n) { return new_or_throw(n, 0, Origin::kNewArray, HAKMEM_CALLER); }
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
