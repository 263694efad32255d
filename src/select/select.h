// Umbrella header of select/: the Selector and the strategy table.
#pragma once

#include "select/learner.h"       // IWYU pragma: export
#include "select/selector.h"      // IWYU pragma: export
#include "select/site_profile.h"  // IWYU pragma: export
