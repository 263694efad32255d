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

/// Frees p through the process allocator from an entry point (Allocator::free_entry()): the
/// entry point's caller is the free site, for reports.
#define HAKMEM_PROCESS_FREE(p, origin) ::hakmem::g_process.free_entry((p), (origin))
/// The same for a sized release (C++ sized delete, C23 free_sized): Allocator::free_entry_sized().
#define HAKMEM_PROCESS_FREE_SIZED(p, size, origin) ::hakmem::g_process.free_entry_sized((p), (size), (origin))
