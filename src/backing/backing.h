// Umbrella header of backing/: extents, the Registry, Pool (size classes, heaps, spans) and Map.
#pragma once

#include "backing/extent.h"        // IWYU pragma: export
#include "backing/map.h"           // IWYU pragma: export
#include "backing/pool.h"          // IWYU pragma: export
#include "backing/registry.h"      // IWYU pragma: export
#include "backing/size_classes.h"  // IWYU pragma: export
#include "backing/zero_arena.h"    // IWYU pragma: export
