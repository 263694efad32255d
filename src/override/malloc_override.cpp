// The C allocation entry points (malloc family, glibc extensions, __libc_* aliases) over the process allocator.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "front/front.h"

using hakmem::g_process;
using hakmem::Origin;

#define HAKMEM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr size_t kPage = 4096;

/// glibc's memalign: alignments up to 16 are plain malloc; others round up to a power of two.
void* memalign_impl(size_t align, size_t size, uintptr_t site) {
  if (align <= hakmem::kHeaderSize) return g_process.alloc(size, site, Origin::kMalloc);
  if (align > (SIZE_MAX >> 1) + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!hakmem::is_pow2(align)) align = size_t{1} << (hakmem::log2_floor(align) + 1);
  return g_process.aligned_alloc(align, size, site, Origin::kAligned);
}

}  // namespace

/// free never changes errno (POSIX 2024, glibc): Allocator::free guarantees it.
#define HAKMEM_FREE(p) HAKMEM_PROCESS_FREE(p, Origin::kMalloc)

HAKMEM_EXPORT void* malloc(size_t size) { return g_process.alloc(size, HAKMEM_CALLER, Origin::kMalloc); }

HAKMEM_EXPORT void free(void* p) { HAKMEM_FREE(p); }

HAKMEM_EXPORT void cfree(void* p) { HAKMEM_FREE(p); }

HAKMEM_EXPORT void* calloc(size_t n, size_t size) { return g_process.calloc(n, size, HAKMEM_CALLER); }

HAKMEM_EXPORT void* realloc(void* p, size_t size) { return g_process.realloc(p, size, HAKMEM_CALLER); }

HAKMEM_EXPORT void* reallocarray(void* p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return g_process.realloc(p, total, HAKMEM_CALLER);
}

HAKMEM_EXPORT int posix_memalign(void** out, size_t align, size_t size) {
  if (!hakmem::is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  const int saved = errno;  // posix_memalign reports through its result, not errno
  void* p = align <= hakmem::kHeaderSize ? g_process.alloc(size, HAKMEM_CALLER, Origin::kMalloc)
                                         : g_process.aligned_alloc(align, size, HAKMEM_CALLER, Origin::kAligned);
  const int err = errno;
  errno = saved;
  if (p == nullptr) return err == EINVAL ? EINVAL : ENOMEM;
  *out = p;
  return 0;
}

HAKMEM_EXPORT void* aligned_alloc(size_t align, size_t size) {
  if (!hakmem::is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return g_process.aligned_alloc(align, size, HAKMEM_CALLER, Origin::kAligned);
}

HAKMEM_EXPORT void* memalign(size_t align, size_t size) { return memalign_impl(align, size, HAKMEM_CALLER); }

HAKMEM_EXPORT void* valloc(size_t size) { return memalign_impl(kPage, size, HAKMEM_CALLER); }

HAKMEM_EXPORT void* pvalloc(size_t size) {
  const size_t rounded = size == 0 ? kPage : (size + kPage - 1) & ~(kPage - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return memalign_impl(kPage, rounded, HAKMEM_CALLER);
}

HAKMEM_EXPORT size_t malloc_usable_size(void* p) { return g_process.usable_size(p); }

/// C23: the size must be the one allocated; a different size is reported.
HAKMEM_EXPORT void free_sized(void* p, size_t size) { HAKMEM_PROCESS_FREE_SIZED(p, size, Origin::kMalloc); }

/// C23: for aligned_alloc blocks; the size is checked, the alignment is implied by the block.
HAKMEM_EXPORT void free_aligned_sized(void* p, size_t /*align*/, size_t size) {
  HAKMEM_PROCESS_FREE_SIZED(p, size, Origin::kAligned);
}

// ---------------------------------------------------------------- glibc's __libc_* names

HAKMEM_EXPORT void* __libc_malloc(size_t size) { return g_process.alloc(size, HAKMEM_CALLER, Origin::kMalloc); }
HAKMEM_EXPORT void __libc_free(void* p) { HAKMEM_FREE(p); }
HAKMEM_EXPORT void* __libc_calloc(size_t n, size_t size) { return g_process.calloc(n, size, HAKMEM_CALLER); }
HAKMEM_EXPORT void* __libc_realloc(void* p, size_t size) { return g_process.realloc(p, size, HAKMEM_CALLER); }
HAKMEM_EXPORT void* __libc_memalign(size_t align, size_t size) { return memalign_impl(align, size, HAKMEM_CALLER); }
HAKMEM_EXPORT void* __libc_valloc(size_t size) { return memalign_impl(kPage, size, HAKMEM_CALLER); }
HAKMEM_EXPORT void* __libc_pvalloc(size_t size) { return pvalloc(size); }

// ---------------------------------------------------------------- glibc's malloc introspection

/// M_MMAP_THRESHOLD sets the fixed threshold (64 KiB to 32 MiB); other parameters are accepted and ignored.
HAKMEM_EXPORT int mallopt(int param, int value) {
  if (param == M_MMAP_THRESHOLD) return value >= 0 && g_process.set_threshold(static_cast<uint64_t>(value)) ? 1 : 0;
  return 1;
}

namespace {

/// glibc's fields, filled from hakmem's statistics (see override/README.md).
struct mallinfo2 info2() {
  const hakmem::StatsSnapshot s = g_process.stats();
  struct mallinfo2 m = {};
  m.arena = s.pool_span_bytes;                                 // bytes of Pool spans
  m.ordblks = s.pool_spans;                                    // spans
  m.hblks = s.map_allocs - s.map_frees;                        // live Map blocks
  m.hblkhd = s.map_live_bytes;                                 // their mapped bytes
  m.uordblks = s.pool_live_bytes;                              // Pool bytes in live blocks
  m.fordblks = s.pool_span_bytes - s.pool_live_bytes;          // Pool bytes free
  m.fsmblks = s.cache_bytes + s.slot_bytes + s.pending_bytes;  // freed Map blocks still mapped
  m.keepcost = s.metadata_bytes;
  return m;
}

int clamp_int(size_t v) { return v > static_cast<size_t>(INT32_MAX) ? INT32_MAX : static_cast<int>(v); }

}  // namespace

HAKMEM_EXPORT struct mallinfo2 mallinfo2(void) { return info2(); }

HAKMEM_EXPORT struct mallinfo mallinfo(void) {
  const struct mallinfo2 m2 = info2();
  struct mallinfo m = {};
  m.arena = clamp_int(m2.arena);
  m.ordblks = clamp_int(m2.ordblks);
  m.hblks = clamp_int(m2.hblks);
  m.hblkhd = clamp_int(m2.hblkhd);
  m.uordblks = clamp_int(m2.uordblks);
  m.fordblks = clamp_int(m2.fordblks);
  m.fsmblks = clamp_int(m2.fsmblks);
  m.keepcost = clamp_int(m2.keepcost);
  return m;
}

/// Releases BigCache, every pending range and the pages of empty Pool spans (the caller's and
/// exited threads') now; 1 when memory went back to the OS.
HAKMEM_EXPORT int malloc_trim(size_t /*pad*/) {
  const hakmem::StatsSnapshot before = g_process.stats();
  g_process.flush();
  const hakmem::StatsSnapshot after = g_process.stats();
  return after.unmap_calls != before.unmap_calls || after.purge_calls != before.purge_calls ? 1 : 0;
}

/// The stats table, on stderr as glibc's malloc_stats prints.
HAKMEM_EXPORT void malloc_stats(void) { g_process.print_stats(hakmem::write_stderr, nullptr, false); }

/// glibc's XML report, with hakmem's numbers; options must be 0.
HAKMEM_EXPORT int malloc_info(int options, FILE* fp) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  const hakmem::StatsSnapshot s = g_process.stats();
  hakmem::Out o([](void* f, const char* text, size_t len) { fwrite(text, 1, len, static_cast<FILE*>(f)); }, fp);
  o.str("<malloc version=\"hakmem-1\">\n");
  o.str("<heap nr=\"0\">\n<sizes>\n</sizes>\n");
  o.str("<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  o.str("<total type=\"rest\" count=\"").dec(s.cache_blocks).str("\" size=\"").dec(s.cache_bytes).str("\"/>\n");
  o.str("<system type=\"current\" size=\"").dec(s.mapped_bytes).str("\"/>\n");
  o.str("<aspace type=\"total\" size=\"").dec(s.pool_span_bytes).str("\"/>\n");
  o.str("</heap>\n");
  o.str("<total type=\"mmap\" count=\"").dec(s.map_allocs - s.map_frees).str("\" size=\"").dec(s.map_live_bytes);
  o.str("\"/>\n<system type=\"current\" size=\"").dec(s.mapped_bytes).str("\"/>\n");
  o.str("<hakmem pool_live=\"").dec(s.pool_live_bytes).str("\" map_live=\"").dec(s.map_live_bytes);
  o.str("\" cached=\"").dec(s.cache_bytes).str("\" pending=\"").dec(s.pending_bytes).str("\" errors=\"");
  o.dec(s.errors_total).str("\"/>\n</malloc>\n");
  return 0;
}
