// How a function's place on a path is marked, spelled once for the whole tree.
#pragma once

/// On a fast path: always inlined, so the path it belongs to stays one straight run of code.
#define HAKMEM_FAST_PATH inline __attribute__((always_inline))

/// The first step off a fast path: never inlined, so the fast path keeps no stack frame and
/// reaches it by a tail call.
#define HAKMEM_SLOW_PATH __attribute__((noinline))

/// A frame of its own, for a reason other than speed: an entry point whose return address is
/// its caller's call site (allocation and free sites in reports).
#define HAKMEM_OWN_FRAME __attribute__((noinline))
