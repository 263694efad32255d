// The process allocator and the hak_* C API over it.
#include <hakmem/hakmem.h>

#include "front/front.h"

namespace hakmem {

constinit Allocator<ProcessConfig> g_process;

}  // namespace hakmem

namespace {
hakmem::Allocator<hakmem::ProcessConfig>& g_allocator = hakmem::g_process;
}  // namespace

extern "C" {

__attribute__((weak)) const char* hakmem_default_options(void) { return nullptr; }

__attribute__((noinline)) void* hak_alloc_at(size_t size, uintptr_t site) { return g_allocator.alloc(size, site); }

__attribute__((noinline)) void hak_free_at(void* ptr, uintptr_t site) { g_allocator.free(ptr, site); }

__attribute__((noinline)) void* hak_alloc(size_t size) { return g_allocator.alloc(size, HAKMEM_CALLER); }

__attribute__((noinline)) void hak_free(void* ptr) { g_allocator.free(ptr, HAKMEM_CALLER); }

__attribute__((noinline)) void* hak_calloc(size_t n, size_t size) { return g_allocator.calloc(n, size, HAKMEM_CALLER); }

__attribute__((noinline)) void* hak_realloc(void* ptr, size_t size) {
  return g_allocator.realloc(ptr, size, HAKMEM_CALLER);
}

__attribute__((noinline)) void* hak_aligned_alloc(size_t align, size_t size) {
  return g_allocator.aligned_alloc(align, size, HAKMEM_CALLER);
}

size_t hak_usable_size(const void* ptr) { return g_allocator.usable_size(ptr); }

void hak_flush(void) { g_allocator.flush(); }

void hak_stats_print(hak_write_fn fn, void* arg) { g_allocator.print_stats(fn, arg, false); }

void hak_stats_print_json(hak_write_fn fn, void* arg) { g_allocator.print_stats(fn, arg, true); }

void hak_options_print(hak_write_fn fn, void* arg) { hakmem::print_options_doc(fn, arg); }

}  // extern "C"

namespace {

/// Registers the fork protocol early (pthread_atfork may allocate, so never from inside malloc).
__attribute__((constructor)) void hakmem_register_fork_handlers() {
  pthread_atfork([] { g_allocator.prepare_fork(); }, [] { g_allocator.parent_after_fork(); },
                 [] { g_allocator.child_after_fork(); });
}

/// At exit: release what is cached and pending (I10), then print the stats if asked,
/// so they show the final flush (pending 0) as well as everything before it.
__attribute__((destructor)) void hakmem_at_exit() {
  if (!g_allocator.ready()) return;
  g_allocator.flush();
  const uint64_t mode = g_allocator.options().get(hakmem::Opt::kStats);
  if (mode != hakmem::kStatsOff) g_allocator.print_stats(hakmem::write_stderr, nullptr, mode == hakmem::kStatsJson);
}

}  // namespace
