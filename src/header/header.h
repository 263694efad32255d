// Umbrella header of header/: the block header codec, the Pool word and link seal, verdicts and the misuse reporter.
#pragma once

#include "header/block_header.h"  // IWYU pragma: export
#include "header/pool_seal.h"     // IWYU pragma: export
#include "header/report.h"        // IWYU pragma: export
