// Umbrella header of core/: path markers, bits, locks, the options table, allocation-free output, tool tracking.
#pragma once

#include "core/attributes.h"  // IWYU pragma: export
#include "core/bits.h"        // IWYU pragma: export
#include "core/options.h"     // IWYU pragma: export
#include "core/out.h"         // IWYU pragma: export
#include "core/spin_lock.h"   // IWYU pragma: export
#include "core/track.h"       // IWYU pragma: export
