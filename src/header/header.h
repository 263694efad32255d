// Umbrella header of header/: the block header codec, verdicts and the misuse reporter.
#pragma once

#include "header/block_header.h"  // IWYU pragma: export
#include "header/report.h"        // IWYU pragma: export
