// Umbrella header of release/: the BatchReleaser, sole holder of the release capability.
#pragma once

#include "release/batch_releaser.h"  // IWYU pragma: export
