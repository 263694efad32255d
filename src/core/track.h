// Tool tracking: tells ASan or Valgrind memcheck which of hakmem's bytes are blocks, and which are freed or cached.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(HAKMEM_TRACK_ASAN)
#include <sanitizer/asan_interface.h>
#elif defined(HAKMEM_TRACK_VALGRIND)
#include <valgrind/memcheck.h>
#endif

namespace hakmem {

/// The tool the hooks talk to, chosen at configure time (-DHAKMEM_TRACK=asan|valgrind).
enum class TrackTool { kNone, kAsan, kValgrind };

#if defined(HAKMEM_TRACK_ASAN)
inline constexpr TrackTool kTrackTool = TrackTool::kAsan;
#elif defined(HAKMEM_TRACK_VALGRIND)
inline constexpr TrackTool kTrackTool = TrackTool::kValgrind;
#else
inline constexpr TrackTool kTrackTool = TrackTool::kNone;
#endif

// Without a tool every hook is an empty inline function: the calls and their arguments compile
// away, and the hot paths are the same code as before the hooks existed.

/**
 * A block is handed out. [open, user) (the block past its canonical header: an aligned block's
 * gap and real header) becomes the allocator's again, addressable and (memcheck) defined;
 * [user, user + n) becomes the caller's block, addressable, and undefined unless `zeroed`.
 * Called before the headers are written.
 */
inline void track_alloc(uintptr_t open, uintptr_t user, uint64_t n, bool zeroed = false) {
#if defined(HAKMEM_TRACK_ASAN)
  (void)zeroed;
  __asan_unpoison_memory_region(reinterpret_cast<void*>(open), user + n - open);
#elif defined(HAKMEM_TRACK_VALGRIND)
  // The gap is the allocator's, never the caller's: readable, holding whatever it held (a
  // header scan or an audit may read it), as it was before the block was first freed.
  if (user > open) VALGRIND_MAKE_MEM_DEFINED(open, user - open);
  VALGRIND_MALLOCLIKE_BLOCK(user, n, 0, zeroed ? 1 : 0);
#else
  (void)open, (void)user, (void)n, (void)zeroed;
#endif
}

/**
 * A block is freed (Pool) or cached or pending (Map): nothing may touch [user + keep, user + n)
 * until it is handed out again. The first `keep` bytes stay the allocator's: a freed Pool
 * block's free-list link lives there. Called before the block is published to any free list,
 * so no other thread can have taken it yet. Headers are never poisoned: validation must read them.
 */
inline void track_free(uintptr_t user, uint64_t n, uint64_t keep = 0) {
#if defined(HAKMEM_TRACK_ASAN)
  __asan_poison_memory_region(reinterpret_cast<void*>(user + keep), n - keep);
#elif defined(HAKMEM_TRACK_VALGRIND)
  (void)n;  // memcheck knows the block's size from VALGRIND_MALLOCLIKE_BLOCK
  VALGRIND_FREELIKE_BLOCK(user, 0);
  if (keep != 0) VALGRIND_MAKE_MEM_UNDEFINED(user, keep);
#else
  (void)user, (void)n, (void)keep;
#endif
}

/**
 * Paranoid mode reads a freed block's fill back (quarantine exit, reuse): [p, p + n) becomes the
 * allocator's, addressable and defined (its bytes were written by the allocator at the free).
 */
inline void track_own(uintptr_t p, uint64_t n) {
#if defined(HAKMEM_TRACK_ASAN)
  __asan_unpoison_memory_region(reinterpret_cast<void*>(p), n);
#elif defined(HAKMEM_TRACK_VALGRIND)
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
  (void)p, (void)n;
#endif
}

/**
 * The reverse of track_own() for a block going onto a free list: nothing may touch
 * [p + keep, p + n); the first `keep` bytes (the free-list link) stay the allocator's.
 */
inline void track_park(uintptr_t p, uint64_t n, uint64_t keep) {
#if defined(HAKMEM_TRACK_ASAN)
  __asan_poison_memory_region(reinterpret_cast<void*>(p + keep), n - keep);
#elif defined(HAKMEM_TRACK_VALGRIND)
  VALGRIND_MAKE_MEM_NOACCESS(p + keep, n - keep);
  if (keep != 0) VALGRIND_MAKE_MEM_UNDEFINED(p, keep);
#else
  (void)p, (void)n, (void)keep;
#endif
}

/**
 * A range is about to be unmapped. ASan's shadow outlives the mapping, so it is cleared here:
 * otherwise the next mapping at these addresses (a span, metadata) would start poisoned.
 */
inline void track_unmap(uintptr_t base, uint64_t len) {
#if defined(HAKMEM_TRACK_ASAN)
  __asan_unpoison_memory_region(reinterpret_cast<void*>(base), len);
#else
  (void)base, (void)len;  // memcheck forgets an unmapped range by itself
#endif
}

}  // namespace hakmem
