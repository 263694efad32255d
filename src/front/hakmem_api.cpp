// The process allocator and the hak_* C API over it.
#include <hakmem/hakmem.h>

#include "front/front.h"

namespace hakmem {

// Page-aligned, so that where its fields fall in their pages does not depend on the link: the
// fields every malloc and free reads (codec, Registry root, selector, fast-path ids) then sit
// away from the first cache line of a page, which programs walking large blocks page by page
// keep evicting (src/backing/README.md).
alignas(kMetaPage) constinit Allocator<ProcessConfig> g_process;

}  // namespace hakmem

using hakmem::g_process;

extern "C" {

__attribute__((weak)) const char* hakmem_default_options(void) { return nullptr; }

HAKMEM_OWN_FRAME void* hak_alloc_at(size_t size, uintptr_t site) { return g_process.alloc(size, site); }

HAKMEM_OWN_FRAME void hak_free_at(void* ptr, uintptr_t site) { g_process.free(ptr, site); }

HAKMEM_OWN_FRAME void* hak_alloc(size_t size) { return g_process.alloc(size, HAKMEM_CALLER); }

HAKMEM_OWN_FRAME void hak_free(void* ptr) { g_process.free(ptr, HAKMEM_CALLER); }

HAKMEM_OWN_FRAME void* hak_calloc(size_t n, size_t size) { return g_process.calloc(n, size, HAKMEM_CALLER); }

HAKMEM_OWN_FRAME void* hak_realloc(void* ptr, size_t size) { return g_process.realloc(ptr, size, HAKMEM_CALLER); }

HAKMEM_OWN_FRAME void* hak_aligned_alloc(size_t align, size_t size) {
  return g_process.aligned_alloc(align, size, HAKMEM_CALLER);
}

size_t hak_usable_size(const void* ptr) { return g_process.usable_size(ptr); }

void hak_flush(void) { g_process.flush(); }

void hak_stats_print(hak_write_fn fn, void* arg) { g_process.print_stats(fn, arg, false); }

void hak_stats_print_json(hak_write_fn fn, void* arg) { g_process.print_stats(fn, arg, true); }

void hak_options_print(hak_write_fn fn, void* arg) { hakmem::print_options_doc(fn, arg); }

}  // extern "C"

namespace {

/// Registers the fork protocol early (pthread_atfork may allocate, so never from inside malloc).
__attribute__((constructor)) void hakmem_register_fork_handlers() {
  pthread_atfork([] { g_process.prepare_fork(); }, [] { g_process.parent_after_fork(); },
                 [] { g_process.child_after_fork(); });
}

/// At exit: release what is cached and pending (I10), then print the stats if asked,
/// so they show the final flush (pending 0) as well as everything before it.
__attribute__((destructor)) void hakmem_at_exit() {
  if (!g_process.ready()) return;
  g_process.flush();
  const uint64_t mode = g_process.options().get(hakmem::Opt::kStats);
  if (mode != hakmem::kStatsOff) g_process.print_stats(hakmem::write_stderr, nullptr, mode == hakmem::kStatsJson);
}

}  // namespace
