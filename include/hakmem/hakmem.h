/* hakmem public C API: allocation with call sites, validated frees, flush and statistics. */
#ifndef HAKMEM_HAKMEM_H
#define HAKMEM_HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define HAKMEM_API __attribute__((visibility("default")))
#else
#define HAKMEM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Receives text from hak_stats_print; may be called several times per print. */
typedef void (*hak_write_fn)(void* arg, const char* text, size_t len);

/**
 * The allocation site to pass to hak_alloc_at/hak_free_at: the return address
 * of the function using the macro, i.e. "who called the code that allocates".
 * Sites key BigCache and name the culprit in error reports.
 */
#define HAK_SITE ((uintptr_t)__builtin_return_address(0))

/** size bytes, 16-byte aligned, attributed to site. NULL with errno ENOMEM on failure. */
HAKMEM_API void* hak_alloc_at(size_t size, uintptr_t site);
/** Frees a block after validating it; a misuse is reported (and aborts unless on_error=report). */
HAKMEM_API void hak_free_at(void* ptr, uintptr_t site);
/** hak_alloc_at with the caller as site. */
HAKMEM_API void* hak_alloc(size_t size);
/** hak_free_at with the caller as site. */
HAKMEM_API void hak_free(void* ptr);
/** n * size zeroed bytes; NULL with ENOMEM when the product overflows. */
HAKMEM_API void* hak_calloc(size_t n, size_t size);
/** Resizes, keeping min(old, new) bytes; NULL with ENOMEM leaves ptr untouched; size 0 frees. */
HAKMEM_API void* hak_realloc(void* ptr, size_t size);
/** size bytes aligned to align (a power of two); NULL with EINVAL for a bad alignment. */
HAKMEM_API void* hak_aligned_alloc(size_t align, size_t size);
/** Bytes usable at ptr (at least what was asked for); 0 for NULL. */
HAKMEM_API size_t hak_usable_size(const void* ptr);
/**
 * Empties BigCache, releases every pending range to the OS now, and gives back the pages of
 * empty Pool spans (the calling thread's and those of threads that exited; not in paranoid mode).
 */
HAKMEM_API void hak_flush(void);
/** Writes the statistics table (the stats=1 output) through fn. */
HAKMEM_API void hak_stats_print(hak_write_fn fn, void* arg);
/** Writes the statistics as one JSON object (the stats=json output) through fn. */
HAKMEM_API void hak_stats_print_json(hak_write_fn fn, void* arg);
/** Writes the documentation of every HAKMEM_OPTIONS key through fn. */
HAKMEM_API void hak_options_print(hak_write_fn fn, void* arg);

/**
 * Define this (non-weak) in a program to set its default options, in the
 * HAKMEM_OPTIONS syntax; the environment still overrides them.
 */
const char* hakmem_default_options(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_HAKMEM_H */
