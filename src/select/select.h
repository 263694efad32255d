// Umbrella header of select/: the Selector and the strategy table.
#pragma once

#include "select/selector.h"  // IWYU pragma: export
