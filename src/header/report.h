// The misuse reporter: one line per error naming kind, address, size and site; then abort or continue.
#pragma once

#include <cstdint>

#include "core/core.h"
#include "header/block_header.h"

namespace hakmem {

/// Everything known about one detected misuse.
struct ErrorReport {
  Verdict kind = Verdict::kOk;
  const void* ptr = nullptr;
  bool size_known = false;
  uint64_t size = 0;
  uintptr_t alloc_site = 0;  ///< 0 when the header could not be trusted
  uintptr_t free_site = 0;   ///< the caller of the rejected free, when known
  Origin alloc_origin = Origin::kMalloc;
  Origin free_origin = Origin::kMalloc;
  uint64_t claimed_size = 0;  ///< the size a sized release named (kSizeMismatch)
};

/**
 * Formats a report without allocating and hands it to the sink (stderr by
 * default). Sites are symbolized with dladdr where possible:
 *   hakmem: double free of 0x7f.. (48 bytes, allocated at parse+0x1c in libfoo.so)
 * Returns whether the caller must abort (on_error=abort); the caller decides.
 */
void format_report(const ErrorReport& r, WriteFn sink, void* sink_arg);

/// Appends "symbol+0xoff in object" for a code address, or the bare address.
void format_site(Out& o, uintptr_t site);

}  // namespace hakmem
