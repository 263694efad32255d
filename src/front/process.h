// The process allocator: the one instance behind the hak_* API and the libc/C++ overrides.
#pragma once

#include "front/allocator.h"
#include "front/config.h"

namespace hakmem {

/// Constant-initialized (so any entry point can be the first call); never destroyed.
extern Allocator<ProcessConfig> g_process;

}  // namespace hakmem

/// The caller of the current function: the allocation site of an API or libc entry point.
#define HAKMEM_CALLER (reinterpret_cast<uintptr_t>(__builtin_return_address(0)))

/// Frees p through the process allocator from an entry point: Allocator::free() in two halves,
/// so that the entry point's caller (the free site, for reports) is read on the slow path only.
/// free(NULL), common in real code, returns at once instead of failing a Registry lookup and
/// calling the slow path.
#define HAKMEM_PROCESS_FREE(p, origin)                                                                 \
  do {                                                                                                 \
    void* const hakmem_p_ = (p);                                                                       \
    if (hakmem_p_ != nullptr && !::hakmem::g_process.free_fast(hakmem_p_, (origin))) {               \
      ::hakmem::g_process.free_checked(hakmem_p_, HAKMEM_CALLER, (origin));                            \
    }                                                                                                  \
  } while (0)
