// Umbrella header of cache/: BigCache.
#pragma once

#include "cache/big_cache.h"  // IWYU pragma: export
