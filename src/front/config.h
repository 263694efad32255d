// The configurations Allocator<Config> is built with: the process allocator and the test ones.
#pragma once

#include "pal/pal.h"

extern "C" const char* hakmem_default_options(void);

namespace hakmem {

/// The drop-in allocator: the real platform, defaults from hakmem_default_options().
struct ProcessConfig {
  using Pal = LinuxPal;
  static constexpr bool kPoolArena = true;
  static const char* default_options() { return hakmem_default_options(); }
};

/// Tests: the real platform.
struct TestConfig {
  using Pal = LinuxPal;
  static constexpr bool kPoolArena = true;
};

/// Tests of I1/I12: every platform call recorded, and maps fail on demand.
struct RecordingConfig {
  using Pal = RecordingPal<FailingPal<LinuxPal>>;
};

/**
 * Whether the Pool reserves its arena (Config::kPoolArena; PoolArena, backing/pool_arena.h). The
 * configurations that count or refuse platform calls leave it out: their tests of maps, budgets
 * and refusals are about spans mapped one by one, the way the Pool works without an arena.
 */
template <class Config>
constexpr bool pool_arena_of() {
  if constexpr (requires { Config::kPoolArena; }) {
    return Config::kPoolArena;
  } else {
    return false;
  }
}

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
