// Valgrind track program (built with -DHAKMEM_TRACK=valgrind): one use after free per case, which
// memcheck must report; "clean" reuses, re-aligns, reallocs and callocs, and must report nothing.
// Usage: track_uaf pool-read|pool-write|aligned-read|cache-read|cache-write|slot-read|pending-read|clean
#include <cstdio>
#include <cstring>

#include "front/front.h"

using namespace hakmem;

namespace {

constexpr uintptr_t kSite = 0x400300;

/// cache: BigCache's cap (0: none); slot: the thread's large slot's largest block (0: none).
Options TrackOptions(uint64_t cache, uint64_t slot) {
  Options o;
  o.set(Opt::kCache, cache);
  o.set(Opt::kLargeSlot, slot);
  o.set(Opt::kThreshold, 256 * kKiB);
  o.set(Opt::kDecayMs, 0);
  return o;
}

// volatile: the access must happen exactly here.
int Read(void* p, size_t at) { return static_cast<volatile unsigned char*>(p)[at]; }
void Write(void* p, size_t at) { static_cast<volatile unsigned char*>(p)[at] = 0x5a; }

/// A freed block of `size` (Pool below 256 KiB, else Map: cached, or pending with no cache).
void* Freed(Allocator<TestConfig>& a, size_t size, size_t align = 0) {
  void* p = align != 0 ? a.aligned_alloc(align, size, kSite) : a.alloc(size, kSite);
  a.free(p, kSite, align != 0 ? Origin::kAligned : Origin::kMalloc);
  return p;
}

/// Every operation whose bytes must stay the caller's; memcheck must stay silent.
int Clean(Allocator<TestConfig>& a) {
  int sum = 0;
  for (int round = 0; round < 3; ++round) {
    void* p = a.alloc(100, kSite);  // the same Pool block each round
    memset(p, round, a.usable_size(p));
    sum += Read(p, 99);
    a.free(p, kSite);
    void* q = a.aligned_alloc(64, 100, kSite);  // re-aligned in a freed block
    memset(q, round, a.usable_size(q));
    a.free(q, kSite, Origin::kAligned);
    void* big = a.alloc(1 * kMiB, kSite);  // a BigCache hit from round 1 on
    memset(big, round, a.usable_size(big));
    a.free(big, kSite);
    auto* z = static_cast<unsigned char*>(a.calloc(1, 2 * kMiB, kSite));  // fresh mmap: defined zeros
    if (z[2 * kMiB - 1] != 0) return 1;
    a.free(z, kSite);
    auto* r = static_cast<unsigned char*>(a.alloc(10, kSite));
    memset(r, 7, 10);
    r = static_cast<unsigned char*>(a.realloc(r, 300 * kKiB, kSite));
    if (r[9] != 7) return 1;
    memset(r, 8, 300 * kKiB);
    r = static_cast<unsigned char*>(a.realloc(r, 40, kSite));
    if (r[39] != 8) return 1;
    a.free(r, kSite);
    a.flush();  // unmapped: later rounds map the same addresses again
  }
  return sum == 0 + 1 + 2 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s pool-read|pool-write|aligned-read|cache-read|cache-write|slot-read|pending-read|clean\n",
            argv[0]);
    return 2;
  }
  const char* c = argv[1];
  // A freed large block goes to the thread's large slot first: only slot-read keeps the slot, so
  // that the cache cases are about a block BigCache holds.
  const bool slot = strcmp(c, "slot-read") == 0 || strcmp(c, "clean") == 0;
  ScopedAllocator<TestConfig> a(TrackOptions(strcmp(c, "pending-read") == 0 ? 0 : 64 * kMiB, slot ? 8 * kMiB : 0));
  int v = 0;
  if (strcmp(c, "pool-read") == 0) {
    v = Read(Freed(*a, 100), 32);
  } else if (strcmp(c, "pool-write") == 0) {
    Write(Freed(*a, 4000), 64);
  } else if (strcmp(c, "aligned-read") == 0) {
    v = Read(Freed(*a, 100, 256), 0);
  } else if (strcmp(c, "cache-read") == 0) {
    void* p = Freed(*a, 1 * kMiB);
    if (a->stats().cache_blocks != 1) return 3;  // the case is about a block BigCache holds
    v = Read(p, 4096);
  } else if (strcmp(c, "cache-write") == 0) {
    void* p = Freed(*a, 512 * kKiB, 4096);
    if (a->stats().cache_blocks != 1) return 3;
    Write(p, 100);
  } else if (strcmp(c, "slot-read") == 0) {
    void* p = Freed(*a, 1 * kMiB);
    if (a->stats().slot_bytes == 0) return 3;  // the case is about the block a thread's slot holds
    v = Read(p, 4096);
  } else if (strcmp(c, "pending-read") == 0) {
    void* p = Freed(*a, 1 * kMiB);
    if (a->stats().pending_bytes == 0) return 3;
    v = Read(p, 100);
  } else if (strcmp(c, "clean") == 0) {
    return Clean(*a);
  } else {
    fprintf(stderr, "track_uaf: unknown case %s\n", c);
    return 2;
  }
  printf("read %d\n", v);
  return 0;
}
