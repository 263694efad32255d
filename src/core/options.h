// The options table: every knob declared once, with its documentation, and an allocation-free parser.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/out.h"

namespace hakmem {

/// How an option's value is spelled.
enum class OptionKind : uint8_t {
  kSize,  ///< bytes, with an optional k/m/g suffix (binary units)
  kUint,  ///< a plain decimal number
  kEnum,  ///< one word out of a '|'-separated list; stored as its index
};

/**
 * The one table of options. Columns: id, key, kind, default, min, max, enum
 * words, documentation. Docs (README, `hakmem_options_doc`) are checked against
 * this table by tests/options_test.cpp, so they cannot drift apart.
 */
#define HAKMEM_OPTION_TABLE(X)                                                                                         \
  X(kMode, "mode", kEnum, 0, 0, 1, "fixed|learn",                                                                      \
    "selector mode: 'fixed' keeps the threshold below; 'learn' lets ELO choose among the twelve")                      \
  X(kThreshold, "threshold", kSize, 256 * 1024, 64 * 1024, 32 * 1024 * 1024, "",                                       \
    "mmap threshold in fixed mode: requests of at least this size get their own mapping")                              \
  X(kCache, "cache", kSize, 64 * 1024 * 1024, 0, uint64_t{1} << 40, "",                                                \
    "BigCache byte cap for warm large blocks; 0 disables the cache")                                                   \
  X(kCacheMax, "cache_max", kSize, uint64_t{1} << 30, 0, uint64_t{1} << 40, "",                                        \
    "BigCache may grow past 'cache' to this when it evicts blocks the program then asks for again")                    \
  X(kLargeSlot, "large_slot", kSize, 8 * 1024 * 1024, 0, uint64_t{1} << 40, "",                                        \
    "each thread keeps its last freed large block up to this size for its next request, lock-free; 0 = off")           \
  X(kBatch, "batch", kSize, 8 * 1024 * 1024, 0, uint64_t{1} << 40, "",                                                 \
    "BatchReleaser flushes when this many bytes are pending; 0 releases every block at once")                          \
  X(kDecayMs, "decay_ms", kUint, 1000, 0, 3600 * 1000, "",                                                             \
    "pending ranges older than this are flushed on the next release, and BigCache's growth past "                      \
    "'cache' decays per window of this length (0 = neither)")                                                          \
  X(kStats, "stats", kEnum, 0, 0, 2, "0|1|json", "print statistics at exit: 0 none, 1 table, json")                    \
  X(kOnError, "on_error", kEnum, 0, 0, 1, "abort|report",                                                              \
    "after reporting a misuse: abort, or report and continue (the block is leaked, never reused)")                     \
  X(kOriginCheck, "origin_check", kEnum, 1, 0, 1, "0|1",                                                               \
    "report free/delete/delete[] mismatches (0 for programs that knowingly mix them)")                                 \
  X(kHardening, "hardening", kEnum, 0, 0, 1, "default|paranoid",                                                       \
    "paranoid adds canaries, the freed-block quarantine and protected freed large blocks")                             \
  X(kQuarantine, "quarantine", kSize, 4 * 1024 * 1024, 0, uint64_t{1} << 40, "",                                       \
    "paranoid: byte cap of the quarantine of freed small blocks (0: none)")                                            \
  X(kEpochRequests, "epoch_requests", kUint, 10000, 100, 1000000000, "",                                               \
    "learn: an epoch ends after this many requests of at least 64 KiB ...")                                            \
  X(kEpochMs, "epoch_ms", kUint, 2000, 1, 3600000, "", "learn: ... or after this many milliseconds")                   \
  X(kLearnSample, "learn_sample", kUint, 16, 1, 1024, "",                                                              \
    "learn: time and profile one large request in this many per thread (1: every one)")                                \
  X(kEloK, "elo_k", kUint, 32, 1, 400, "", "learn: ELO K factor")                                                      \
  X(kMinSamples, "min_samples", kUint, 50, 1, 1000000000, "",                                                          \
    "learn: an epoch with fewer large requests is not scored")                                                         \
  X(kEpsilon, "epsilon", kUint, 10, 0, 100, "", "learn: percent of LEARN epochs that explore")                         \
  X(kWeightCpu, "weight_cpu", kUint, 40, 0, 100, "", "learn: cost weight of large-path time, percent")                 \
  X(kWeightFaults, "weight_faults", kUint, 30, 0, 100, "", "learn: cost weight of page faults, percent")               \
  X(kWeightBytes, "weight_bytes", kUint, 30, 0, 100, "", "learn: cost weight of bytes mapped, percent")                \
  X(kFreezeTol, "freeze_tol", kUint, 10, 0, 1000, "",                                                                  \
    "learn: FROZEN when the best's cost is stable within this many per mille ...")                                     \
  X(kWindows, "windows", kUint, 3, 1, 100, "", "learn: ... over this many epochs (also the relearn window)")           \
  X(kCanary, "canary", kUint, 5, 0, 100, "", "learn: percent of FROZEN epochs that try the runner-up")                 \
  X(kCanaryWin, "canary_win", kUint, 5, 0, 100, "", "learn: percent cheaper the runner-up must be to be adopted")      \
  X(kRelearnCost, "relearn_cost", kUint, 20, 1, 1000, "",                                                              \
    "learn: back to LEARN when cost is this many percent worse for a whole window")                                    \
  X(kRelearnShift, "relearn_shift", kUint, 25, 1, 100, "",                                                             \
    "learn: ... or when the size distribution moves by this many percent")                                             \
  X(kEarlyEnd, "early_end", kUint, 8, 0, 1000, "",                                                                     \
    "learn: a LEARN or CANARY epoch ends early once its large-path time per request is this many "                     \
    "times the cheapest other strategy's (0: never)")

/// Option identifiers, in table order.
enum class Opt : uint8_t {
#define HAKMEM_X(id, key, kind, def, lo, hi, words, doc) id,
  HAKMEM_OPTION_TABLE(HAKMEM_X)
#undef HAKMEM_X
      kCount
};

/// Static description of one option (a row of the table).
struct OptionSpec {
  const char* key;
  OptionKind kind;
  uint64_t def;
  uint64_t min;
  uint64_t max;
  const char* words;
  const char* doc;
};

/// The table as data, indexed by Opt.
extern const OptionSpec kOptionSpecs[static_cast<size_t>(Opt::kCount)];

/// Values of the selector mode option.
enum : uint64_t { kModeFixed = 0, kModeLearn = 1 };
/// Values of the stats option.
enum : uint64_t { kStatsOff = 0, kStatsText = 1, kStatsJson = 2 };
/// Values of the on_error option.
enum : uint64_t { kOnErrorAbort = 0, kOnErrorReport = 1 };
/// Values of the hardening option.
enum : uint64_t { kHardeningDefault = 0, kHardeningParanoid = 1 };

/// A full set of option values; starts at the table's defaults.
struct Options {
  uint64_t v[static_cast<size_t>(Opt::kCount)];

  constexpr Options() : v{} {
    size_t i = 0;
#define HAKMEM_X(id, key, kind, def, lo, hi, words, doc) v[i++] = (def);
    HAKMEM_OPTION_TABLE(HAKMEM_X)
#undef HAKMEM_X
  }
  constexpr uint64_t get(Opt o) const { return v[static_cast<size_t>(o)]; }
  constexpr void set(Opt o, uint64_t x) { v[static_cast<size_t>(o)] = x; }
};

/**
 * Parses "key=value:key=value" (',' also separates) into `out`. A bad key or
 * value gets one warning line through `warn` naming it, and the previous value
 * stays. Never allocates; safe inside malloc. Returns the number of warnings.
 */
size_t parse_options(const char* text, Options& out, WriteFn warn, void* warn_arg);

/// Finds NAME=... in the process environment without getenv (which may not be ready);
/// before libc has set `environ`, in the initial environment from /proc/self/environ.
const char* find_env(const char* name);

/// `defaults` (may be null), then HAKMEM_OPTIONS over them; a bad entry is warned about on stderr.
Options options_from_environment(const char* defaults);

/// Writes the option table as documentation, one line per option.
void print_options_doc(WriteFn fn, void* arg);

}  // namespace hakmem
