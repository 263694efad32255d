// Umbrella header of core/: bits, locks, the options table, allocation-free output.
#pragma once

#include "core/bits.h"     // IWYU pragma: export
#include "core/options.h"  // IWYU pragma: export
#include "core/out.h"      // IWYU pragma: export
#include "core/spin_lock.h"  // IWYU pragma: export
