// Benchmark support: proof of which allocator serves the process (SEED_NOTES.md 4: the seed benchmarked glibc
// for weeks by accident), hakmem's own counters read through hak_stats_print_json, and small shared helpers.
// Header-only: each benchmark is one g++ command (see ci/bench-small, ci/bench-learn).
#pragma once

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace bench {

[[noreturn]] inline void fail(const char* what, const std::string& detail) {
  fprintf(stderr, "FAIL: %s: %s\n", what, detail.c_str());
  fflush(stdout);
  exit(1);
}

// ------------------------------------------------------------------ which allocator is serving

/// The allocators this benchmark knows, with the file-name tag that identifies each one's library.
struct Known {
  const char* name;
  const char* tag;     // substring of the library path in /proc/self/maps and in dladdr's answer
  const char* marker;  // a symbol only that library defines, checked to resolve into it too
};
inline constexpr Known kKnown[] = {
    {"hakmem", "libhakmem", "hak_stats_print_json"},
    {"mimalloc", "libmimalloc", "mi_version"},
    {"jemalloc", "libjemalloc", "mallctl"},
    {"tcmalloc", "libtcmalloc", "tc_version"},
    // Scudo as LLVM 14 ships it (libclang_rt.scudo_standalone-x86_64.so, or the older libclang_rt.scudo-x86_64.so):
    // both define __scudo_print_stats.
    {"scudo", "libclang_rt.scudo", "__scudo_print_stats"},
};

/// The object file that defines `sym` in the global lookup scope, or "" when none does.
inline std::string resolving_file(const char* sym) {
  void* addr = dlsym(RTLD_DEFAULT, sym);
  if (addr == nullptr) return "";
  Dl_info info{};
  if (dladdr(addr, &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

/// Names the allocator from /proc/self/maps ("glibc" when no known library is mapped) and proves that malloc,
/// free and the library's marker symbol resolve into it. Exits 1 on any disagreement with `expect`.
inline const char* prove_identity(const std::string& expect) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == nullptr) fail("identity", "cannot open /proc/self/maps");
  const Known* found = nullptr;
  std::string mapped_path;
  char line[4096];
  while (fgets(line, sizeof line, maps) != nullptr) {
    for (const Known& k : kKnown) {
      if (strstr(line, k.tag) == nullptr) continue;
      if (found != nullptr && found != &k)
        fail("identity", std::string("both ") + found->name + " and " + k.name + " are mapped");
      found = &k;
      if (const char* p = strchr(line, '/')) mapped_path.assign(p, strcspn(p, "\n"));
    }
  }
  fclose(maps);
  const char* name = found != nullptr ? found->name : "glibc";
  const char* tag = found != nullptr ? found->tag : "libc.so";
  const std::string malloc_file = resolving_file("malloc");
  const std::string free_file = resolving_file("free");
  printf("allocator: %s\n", name);
  printf("proof: /proc/self/maps maps %s\n",
         found != nullptr ? mapped_path.c_str() : "no libhakmem/libmimalloc/libjemalloc/libtcmalloc/libclang_rt.scudo");
  printf("proof: malloc -> %s\n", malloc_file.c_str());
  printf("proof: free -> %s\n", free_file.c_str());
  if (malloc_file.find(tag) == std::string::npos)
    fail("identity", "malloc resolves into " + malloc_file + ", not " + tag);
  if (free_file.find(tag) == std::string::npos) fail("identity", "free resolves into " + free_file + ", not " + tag);
  if (found != nullptr) {
    const std::string marker_file = resolving_file(found->marker);
    printf("proof: %s -> %s\n", found->marker, marker_file.c_str());
    if (marker_file.find(tag) == std::string::npos)
      fail("identity", std::string(found->marker) + " does not resolve into " + tag);
  }
  if (expect != name) fail("identity", "BENCH_EXPECT=" + expect + " but " + name + " is serving");
  return name;
}

// ------------------------------------------------------------------ hakmem's own counters

using WriteFn = void (*)(void*, const char*, size_t);
using StatsPrintFn = void (*)(WriteFn, void*);

struct JsonBuf {
  char text[65536];
  size_t len;
};
inline JsonBuf g_json;  // static: the buffer must not come from the allocator being measured

inline void json_append(void* arg, const char* text, size_t len) {
  auto* b = static_cast<JsonBuf*>(arg);
  const size_t n = std::min(len, sizeof b->text - 1 - b->len);
  memcpy(b->text + b->len, text, n);
  b->len += n;
  b->text[b->len] = '\0';
}

/// hak_stats_print_json's output, found by dlsym (the benchmark never links hakmem).
inline const char* hakmem_json() {
  auto print = reinterpret_cast<StatsPrintFn>(dlsym(RTLD_DEFAULT, "hak_stats_print_json"));
  if (print == nullptr) fail("hakmem stats", "hak_stats_print_json not found by dlsym");
  g_json.len = 0;
  g_json.text[0] = '\0';
  print(json_append, &g_json);
  return g_json.text;
}

/// The object `"name":{...}` (its opening brace on), or fails.
inline const char* json_object(const char* json, const char* name) {
  const std::string key = std::string("\"") + name + "\":{";
  const char* at = strstr(json, key.c_str());
  if (at == nullptr) fail("hakmem stats", "no " + key + " in hak_stats_print_json output");
  return at + key.size() - 1;
}

inline uint64_t json_u64(const char* object, const char* name) {
  const std::string key = std::string("\"") + name + "\":";
  const char* at = strstr(object, key.c_str());
  if (at == nullptr) fail("hakmem stats", "no " + key + " in hak_stats_print_json output");
  return strtoull(at + key.size(), nullptr, 10);
}

inline std::string json_str(const char* object, const char* name) {
  const std::string key = std::string("\"") + name + "\":\"";
  const char* at = strstr(object, key.c_str());
  if (at == nullptr) fail("hakmem stats", "no " + key + " in hak_stats_print_json output");
  at += key.size();
  return std::string(at, strcspn(at, "\""));
}

// ------------------------------------------------------------------ hakmem's hardening mode

/// The hardening mode a hakmem run must be in: BENCH_HARDENING=default|paranoid, required with hakmem (the harness
/// says which one it asked for through HAKMEM_OPTIONS; a dropped or misspelt option must not pass for paranoid).
inline std::string hardening_wanted() {
  const char* want = getenv("BENCH_HARDENING");
  if (want == nullptr || (strcmp(want, "default") != 0 && strcmp(want, "paranoid") != 0))
    fail("hardening", "BENCH_HARDENING=default|paranoid is required with hakmem");
  return want;
}

/// Proves hakmem runs in the hardening mode `want`, from its stats JSON ("hardening":{"mode":...}) read after the
/// workload, and from what that mode leaves behind: paranoid mode sets up the quarantine of freed small blocks
/// (its cap is > 0) and, when `expect_quarantined`, holds some of the workload's freed blocks in it; the default
/// mode has neither. Returns the mode, for the RESULT line.
inline std::string prove_hardening(const std::string& want, bool expect_quarantined) {
  const char* hard = json_object(hakmem_json(), "hardening");
  const std::string mode = json_str(hard, "mode");
  const uint64_t cap = json_u64(hard, "quarantine_cap");
  const uint64_t blocks = json_u64(hard, "quarantine_blocks");
  const uint64_t bytes = json_u64(hard, "quarantine_bytes");
  printf("proof: hakmem hardening mode %s (hak_stats_print_json), quarantine cap %llu bytes, holding %llu blocks "
         "(%llu bytes) after the workload\n",
         mode.c_str(), static_cast<unsigned long long>(cap), static_cast<unsigned long long>(blocks),
         static_cast<unsigned long long>(bytes));
  if (mode != want) fail("hardening", "BENCH_HARDENING=" + want + " but hakmem reports hardening mode " + mode);
  if (want == "paranoid") {
    if (cap == 0) fail("hardening", "paranoid mode without a quarantine (quarantine_cap 0)");
    if (expect_quarantined && blocks == 0)
      fail("hardening", "paranoid mode, yet none of the workload's freed blocks is in the quarantine");
  } else if (cap != 0 || blocks != 0) {
    fail("hardening", "default mode, yet hakmem has a quarantine");
  }
  return mode;
}

// ------------------------------------------------------------------ helpers

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

}  // namespace bench
