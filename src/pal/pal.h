// Umbrella header of pal/: the platform concept, the Linux platform and the test platforms.
#pragma once

#include "pal/pal_concept.h"            // IWYU pragma: export
#include "pal/pal_linux.h"              // IWYU pragma: export
#include "pal/testing/failing_pal.h"    // IWYU pragma: export
#include "pal/testing/recording_pal.h"  // IWYU pragma: export

namespace hakmem {
static_assert(Platform<FailingPal<LinuxPal>>);
static_assert(Platform<RecordingPal<LinuxPal>>);
static_assert(Platform<RecordingPal<FailingPal<LinuxPal>>>);
}  // namespace hakmem
