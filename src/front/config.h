// The configurations Allocator<Config> is built with: the process allocator and the test ones.
#pragma once

#include "pal/pal.h"

extern "C" const char* hakmem_default_options(void);

namespace hakmem {

/// The drop-in allocator: the real platform, defaults from hakmem_default_options().
struct ProcessConfig {
  using Pal = LinuxPal;
  static const char* default_options() { return hakmem_default_options(); }
};

/// Tests: the real platform.
struct TestConfig {
  using Pal = LinuxPal;
};

/// Tests of I1/I12: every platform call recorded, and maps fail on demand.
struct RecordingConfig {
  using Pal = RecordingPal<FailingPal<LinuxPal>>;
};

/// The defaults a Config names (Config::default_options()), or none.
template <class Config>
const char* default_options_of() {
  if constexpr (requires { Config::default_options(); }) {
    return Config::default_options();
  } else {
    return nullptr;
  }
}

}  // namespace hakmem
