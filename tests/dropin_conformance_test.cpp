// API conformance of the drop-in: every exported malloc-family, glibc and C++ entry point, with its
// edges and errno values, checked against glibc's contract (src/override/README.md).
//
// This binary is linked with hakmem_shim_static, so all of it (gtest included) runs on hakmem's
// malloc and new. Each test proves that hakmem served the call: the counters of
// hak_stats_print_json move by exactly the expected amount (the JSON is rendered into a stack
// buffer, so reading it allocates nothing), or Usable(p) != 0 for a live block.
//
// Misuse: the process allocator aborts on a misuse by default. Death tests (gtest forks; the
// child dies on the report) check the one-line report. Behaviour under other options
// (origin_check=0, on_error=report) is checked in a re-executed child: a static initializer
// of this binary sees HAKMEM_DROPIN_CHILD=<scenario>, runs the scenario before main() and
// _exit()s with its verdict; the parent checks the exit status and the child's stderr.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "front/front.h"
#include "support/self_exec.h"

// glibc does not declare these (or marks mallinfo deprecated); the drop-in exports them all.
extern "C" {
void cfree(void* p);
void free_sized(void* p, size_t size);
void free_aligned_sized(void* p, size_t align, size_t size);
void* __libc_malloc(size_t size);
void __libc_free(void* p);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t align, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);
// mallinfo() is deprecated in <malloc.h>; this declares the same symbol under another name.
struct mallinfo dropin_mallinfo(void) __asm__("mallinfo");
}

#if !defined(__cpp_sized_deallocation)
// Compilers that do not enable sized deallocation by default (clang < 19) leave these four
// replaceable operators undeclared in <new>; the drop-in defines them all.
void operator delete(void* p, std::size_t n) noexcept;
void operator delete[](void* p, std::size_t n) noexcept;
void operator delete(void* p, std::size_t n, std::align_val_t a) noexcept;
void operator delete[](void* p, std::size_t n, std::align_val_t a) noexcept;
#endif

namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kPage = 4096;
constexpr size_t kDefaultThreshold = 256 * kKiB;
constexpr size_t kAbsurd = size_t{1} << 60;  // beyond hakmem's largest request, and any machine

/// Hides a value from the optimizer: no builtin knowledge (malloc/free elision, errno
/// forwarding across free, non-heap or mismatched-free warnings) survives the round trip.
template <class T>
__attribute__((noinline)) T Opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

bool Aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

/// hak_usable_size: nonzero only for a live hakmem block (the pointer is opaque so that the
/// compiler does not take the call for a read of fresh, uninitialized memory). The parameter is
/// not a pointer to const: g++ 12 takes a `const void*` argument of an out-of-line call (at -Os)
/// for a read of the block and warns that fresh malloc memory may be uninitialized.
template <class T>
size_t Usable(T* p) {
  return hak_usable_size(reinterpret_cast<const void*>(Opaque(reinterpret_cast<uintptr_t>(p))));
}

// ---------------------------------------------------------------- counters

/// hak_stats_print_json rendered into a fixed buffer (no allocation while reading).
struct Json {
  char text[8192];
  size_t len = 0;
  static void Sink(void* arg, const char* t, size_t n) {
    auto* j = static_cast<Json*>(arg);
    const size_t room = sizeof(j->text) - 1 - j->len;
    if (n > room) n = room;
    memcpy(j->text + j->len, t, n);
    j->len += n;
    j->text[j->len] = '\0';
  }
};

uint64_t JsonField(const char* json, const char* section, const char* key) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":{", section);
  const char* s = strstr(json, pat);
  if (s == nullptr) return UINT64_MAX;
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char* k = strstr(s, pat);
  if (k == nullptr) return UINT64_MAX;
  return strtoull(k + strlen(pat), nullptr, 10);
}

/// The counters a call must move.
struct Counters {
  int64_t pool_allocs = 0, pool_frees = 0, map_allocs = 0, map_frees = 0, errors = 0;
  Counters operator-(const Counters& o) const {
    return {pool_allocs - o.pool_allocs, pool_frees - o.pool_frees, map_allocs - o.map_allocs, map_frees - o.map_frees,
            errors - o.errors};
  }
};

Counters Read() {
  Json j;
  j.text[0] = '\0';
  hak_stats_print_json(&Json::Sink, &j);
  Counters c;
  c.pool_allocs = static_cast<int64_t>(JsonField(j.text, "pool", "allocs"));
  c.pool_frees = static_cast<int64_t>(JsonField(j.text, "pool", "frees"));
  c.map_allocs = static_cast<int64_t>(JsonField(j.text, "map", "allocs"));
  c.map_frees = static_cast<int64_t>(JsonField(j.text, "map", "frees"));
  c.errors = static_cast<int64_t>(JsonField(j.text, "errors", "total"));
  return c;
}

/// The counter movement of f() alone: nothing else runs between the two readings.
template <class F>
Counters Delta(F&& f) {
  const Counters before = Read();
  f();
  return Read() - before;
}

std::string Str(const Counters& c) {
  char buf[160];
  snprintf(buf, sizeof(buf), "pool +%" PRId64 "/-%" PRId64 " map +%" PRId64 "/-%" PRId64 " errors +%" PRId64,
           c.pool_allocs, c.pool_frees, c.map_allocs, c.map_frees, c.errors);
  return buf;
}

#define EXPECT_MOVED(delta, pa, pf, ma, mf)                                                                            \
  do {                                                                                                                 \
    const Counters d_ = (delta);                                                                                       \
    SCOPED_TRACE(Str(d_));                                                                                             \
    EXPECT_EQ(d_.pool_allocs, (pa)) << "pool allocs";                                                                  \
    EXPECT_EQ(d_.pool_frees, (pf)) << "pool frees";                                                                    \
    EXPECT_EQ(d_.map_allocs, (ma)) << "map allocs";                                                                    \
    EXPECT_EQ(d_.map_frees, (mf)) << "map frees";                                                                      \
    EXPECT_EQ(d_.errors, 0) << "a correct call must not report";                                                       \
  } while (0)

/// Restores the mmap threshold (mallopt changes it for the whole process).
struct ThresholdGuard {
  ~ThresholdGuard() { mallopt(M_MMAP_THRESHOLD, static_cast<int>(kDefaultThreshold)); }
};

/// Captures what is written to fd 2 while it lives.
class StderrCapture {
public:
  StderrCapture() {
    fflush(stderr);
    if (pipe(fds_) != 0) return;
    saved_ = dup(2);
    dup2(fds_[1], 2);
  }
  std::string Finish() {
    fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    close(fds_[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    close(fds_[0]);
    return out;
  }

private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};

// ---------------------------------------------------------------- allocation sites

// Allocation sites for the reports: each is a function of this binary that does not
// tail-call the allocator, so the site (the allocator's return address) lies inside it.
void* volatile g_keep;

__attribute__((noinline)) void* MallocSite(size_t n) {
  void* p = malloc(n);
  g_keep = p;
  return p;
}
__attribute__((noinline)) void* NewSite(size_t n) {
  void* p = ::operator new(n);
  g_keep = p;
  return p;
}
__attribute__((noinline)) void* NewArraySite(size_t n) {
  void* p = ::operator new[](n);
  g_keep = p;
  return p;
}

// ---------------------------------------------------------------- re-executed children

using hakmem_test::ChildResult;

/// Runs this binary again with HAKMEM_DROPIN_CHILD=scenario and HAKMEM_OPTIONS=options.
ChildResult RunChild(const char* scenario, const char* options) {
  return hakmem_test::run_self(
      {std::string("HAKMEM_DROPIN_CHILD=") + scenario, std::string("HAKMEM_OPTIONS=") + options});
}

/// Child verdicts: 0 all good; otherwise the number of the first failed check.
int Fail(int code, const char* what) {
  char buf[256];
  const int n = snprintf(buf, sizeof(buf), "child check %d failed: %s\n", code, what);
  if (write(1, buf, static_cast<size_t>(n)) < 0) return code;
  return code;
}

/// origin_check=0: every mix of free/delete/delete[] over malloc/new/new[] blocks is accepted.
int ScenarioOriginCheckOff() {
  const Counters before = Read();
  free(Opaque(NewSite(24)));                        // free of new
  free(Opaque(NewArraySite(24)));                   // free of new[]
  ::operator delete(Opaque(MallocSite(24)));        // delete of malloc
  ::operator delete[](Opaque(NewSite(24)));         // delete[] of new
  ::operator delete(Opaque(NewArraySite(24)));      // delete of new[]
  ::operator delete[](Opaque(MallocSite(24)), 24);  // sized delete[] of malloc
  ::operator delete(Opaque(NewArraySite(40)), 40);  // sized delete of new[]
  void* a = ::operator new (64, std::align_val_t{64});
  free(Opaque(a));  // free of aligned new
  const Counters d = Read() - before;
  if (d.errors != 0) return Fail(1, "a mismatched release was reported");
  if (d.pool_allocs != 8 || d.pool_frees != 8) return Fail(2, "every mismatched release must free its block");
  return 0;
}

/// origin_check=0 switches off only the origin check: a double free is still reported.
int ScenarioOriginCheckOffDoubleFree() {
  void* p = Opaque(NewSite(24));
  void* again = Opaque(p);
  ::operator delete(p);
  const Counters before = Read();
  free(again);
  const Counters d = Read() - before;
  if (d.errors != 1) return Fail(1, "double free not counted");
  if (d.pool_frees != 0) return Fail(2, "a rejected free must change nothing");
  return 0;
}

/// on_error=report: the misuse is reported, nothing is changed, and the program goes on.
int ScenarioReportContinues() {
  void* p = Opaque(NewSite(48));
  void* same = Opaque(p);
  Counters before = Read();
  free(p);  // mismatched
  Counters d = Read() - before;
  if (d.errors != 1) return Fail(1, "mismatched free not counted");
  if (d.pool_frees != 0) return Fail(2, "a rejected free must leave the block live");
  if (Usable(same) < 48) return Fail(3, "the rejected block must stay live");
  before = Read();
  ::operator delete(same, 48);
  d = Read() - before;
  if (d.errors != 0 || d.pool_frees != 1) return Fail(4, "the right release must still work");
  // errno is still preserved by a rejected free.
  int x = 0;
  errno = 1234;
  free(Opaque(static_cast<void*>(&x)));
  if (errno != 1234) return Fail(5, "a rejected free changed errno");
  return 0;
}

/// on_error=report: a report naming the allocation site, for the parent to decode.
int ScenarioSite() {
  void* p = Opaque(MallocSite(3 << 20));  // a Map block: its header keeps the site (a Pool block's does not)
  void* same = Opaque(p);
  ::operator delete(p);  // mismatched: reported with "allocated at <MallocSite>", and not freed
  free(same);
  return 0;
}

int RunScenario(const char* name) {
  if (strcmp(name, "origin_check_off") == 0) return ScenarioOriginCheckOff();
  if (strcmp(name, "origin_check_off_double_free") == 0) return ScenarioOriginCheckOffDoubleFree();
  if (strcmp(name, "report_continues") == 0) return ScenarioReportContinues();
  if (strcmp(name, "site") == 0) return ScenarioSite();
  return Fail(100, "unknown scenario");
}

// The re-executed child runs its scenario here, before main(), and never reaches gtest.
const bool kIsChild = [] {
  const char* scenario = getenv("HAKMEM_DROPIN_CHILD");
  if (scenario == nullptr) return false;
  _exit(RunScenario(scenario));
}();

// =============================================================== malloc family

TEST(DropinMalloc, MallocAndFreeAreServedByHakmem) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = malloc(100); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, 16));
  EXPECT_GE(Usable(p), 100u);
  memset(p, 0x5a, 100);
  EXPECT_MOVED(Delta([&] { free(p); }), 0, 1, 0, 0);

  void* big = nullptr;
  EXPECT_MOVED(Delta([&] { big = malloc(4 * kMiB); }), 0, 0, 1, 0);
  ASSERT_NE(big, nullptr);
  EXPECT_GE(Usable(big), 4 * kMiB);
  memset(big, 0x5a, 4 * kMiB);
  EXPECT_MOVED(Delta([&] { free(big); }), 0, 0, 0, 1);
}

// The whole binary runs on hakmem: libc's and libstdc++'s own allocations come from it too.
TEST(DropinMalloc, LibrariesAllocateThroughHakmem) {
  char* dup = strdup(Opaque("a string long enough to need a heap block"));
  ASSERT_NE(dup, nullptr);
  EXPECT_NE(Usable(dup), 0u) << "libc's strdup";
  free(dup);
  std::string text(Opaque(size_t{200}), 'x');
  EXPECT_NE(Usable(text.data()), 0u) << "libstdc++'s std::string";
  std::vector<int> numbers(Opaque(size_t{100}));
  EXPECT_NE(Usable(numbers.data()), 0u) << "std::allocator";
  char* line = nullptr;
  EXPECT_GT(asprintf(&line, "%d-%s", 42, "asprintf"), 0);
  EXPECT_NE(Usable(line), 0u) << "libc's asprintf";
  free(line);
}

TEST(DropinMalloc, MallocZeroReturnsDistinctFreeableBlocks) {
  std::vector<void*> blocks(8);
  const Counters d = Delta([&] {
    for (void*& p : blocks) p = malloc(Opaque(size_t{0}));
  });
  EXPECT_MOVED(d, 8, 0, 0, 0);
  std::set<void*> distinct;
  for (void* p : blocks) {
    ASSERT_NE(p, nullptr);
    EXPECT_NE(Usable(p), 0u);
    distinct.insert(p);
  }
  EXPECT_EQ(distinct.size(), blocks.size());
  EXPECT_MOVED(Delta([&] {
                 for (void* p : blocks) free(p);
               }),
               0, 8, 0, 0);
}

TEST(DropinMalloc, MallocSizeMaxIsEnomem) {
  errno = 0;
  void* p = malloc(Opaque(SIZE_MAX));
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(malloc(Opaque(kAbsurd)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(DropinMalloc, FreePreservesErrno) {
  void (*const free_fn)(void*) = Opaque(&free);  // no builtin knowledge of free
  void* small = malloc(64);
  void* big = malloc(2 * kMiB);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(big, nullptr);
  errno = 1234;
  free_fn(small);
  EXPECT_EQ(errno, 1234);
  free_fn(nullptr);
  EXPECT_EQ(errno, 1234);
  free_fn(big);
  EXPECT_EQ(errno, 1234);
  void (*const cfree_fn)(void*) = Opaque(&cfree);
  cfree_fn(malloc(16));
  EXPECT_EQ(errno, 1234);
  void (*const libc_free_fn)(void*) = Opaque(&__libc_free);
  libc_free_fn(malloc(16));
  EXPECT_EQ(errno, 1234);
}

TEST(DropinMalloc, FreeNullIsANoOp) {
  EXPECT_MOVED(Delta([] { free(Opaque<void*>(nullptr)); }), 0, 0, 0, 0);
}

TEST(DropinMalloc, CfreeFrees) {
  void* p = malloc(32);
  ASSERT_NE(Usable(p), 0u);
  EXPECT_MOVED(Delta([&] { cfree(p); }), 0, 1, 0, 0);
}

TEST(DropinMalloc, CallocZeroesAndCounts) {
  // Dirty a block of the same class first so that calloc has to clear a recycled block.
  unsigned char* dirty = static_cast<unsigned char*>(malloc(200));
  ASSERT_NE(dirty, nullptr);
  memset(dirty, 0xab, 200);
  free(dirty);
  unsigned char* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = static_cast<unsigned char*>(calloc(10, 20)); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 200u);
  for (size_t i = 0; i < 200; ++i) ASSERT_EQ(p[i], 0) << "byte " << i;
  free(p);

  // Large: a recycled (BigCache) or fresh mapping is zero too.
  unsigned char* big = static_cast<unsigned char*>(malloc(2 * kMiB));
  ASSERT_NE(big, nullptr);
  memset(big, 0xab, 2 * kMiB);
  free(big);
  for (int round = 0; round < 2; ++round) {
    unsigned char* q = nullptr;
    EXPECT_MOVED(Delta([&] { q = static_cast<unsigned char*>(calloc(2 * kMiB, 1)); }), 0, 0, 1, 0);
    ASSERT_NE(q, nullptr);
    for (size_t i = 0; i < 2 * kMiB; i += 512) ASSERT_EQ(q[i], 0) << "byte " << i;
    memset(q, 0xcd, 2 * kMiB);
    free(q);
  }

  void* zero = calloc(0, 0);
  EXPECT_NE(zero, nullptr);
  free(zero);
}

TEST(DropinMalloc, CallocOverflowIsEnomem) {
  errno = 0;
  EXPECT_EQ(calloc(Opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(Opaque(size_t{1} << 32), size_t{1} << 32), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(Opaque(kAbsurd), 1), nullptr);  // no overflow, but too large
  EXPECT_EQ(errno, ENOMEM);
}

TEST(DropinMalloc, ReallocNullAllocates) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = realloc(nullptr, 80); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 80u);
  free(p);
}

TEST(DropinMalloc, ReallocZeroFreesAndReturnsNull) {
  void* p = malloc(80);
  ASSERT_NE(p, nullptr);
  void* r = reinterpret_cast<void*>(1);
  EXPECT_MOVED(Delta([&] { r = realloc(p, 0); }), 0, 1, 0, 0);
  EXPECT_EQ(r, nullptr);
}

TEST(DropinMalloc, ReallocKeepsContentsAcrossBackings) {
  unsigned char* p = static_cast<unsigned char*>(malloc(1000));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 1000; ++i) p[i] = static_cast<unsigned char>(i * 7);
  // Pool -> Map.
  unsigned char* q = nullptr;
  EXPECT_MOVED(Delta([&] { q = static_cast<unsigned char*>(realloc(p, kMiB)); }), 0, 1, 1, 0);
  ASSERT_NE(q, nullptr);
  EXPECT_GE(Usable(q), kMiB);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(q[i], static_cast<unsigned char>(i * 7)) << i;
  // Map -> Pool.
  unsigned char* r = nullptr;
  EXPECT_MOVED(Delta([&] { r = static_cast<unsigned char*>(realloc(q, 500)); }), 1, 0, 0, 1);
  ASSERT_NE(r, nullptr);
  for (size_t i = 0; i < 500; ++i) ASSERT_EQ(r[i], static_cast<unsigned char>(i * 7)) << i;
  // Growing within Pool.
  unsigned char* s = static_cast<unsigned char*>(realloc(r, 5000));
  ASSERT_NE(s, nullptr);
  EXPECT_GE(Usable(s), 5000u);
  for (size_t i = 0; i < 500; ++i) ASSERT_EQ(s[i], static_cast<unsigned char>(i * 7)) << i;
  free(s);
}

TEST(DropinMalloc, ReallocFailureKeepsTheBlock) {
  char* p = static_cast<char*>(malloc(64));
  ASSERT_NE(p, nullptr);
  memset(p, 'x', 64);
  errno = 0;
  EXPECT_EQ(realloc(p, Opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_GE(Usable(p), 64u);
  for (int i = 0; i < 64; ++i) ASSERT_EQ(p[i], 'x');
  free(p);
}

TEST(DropinMalloc, ReallocarrayMultipliesAndChecksOverflow) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = reallocarray(nullptr, 10, 12); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 120u);
  memset(p, 'r', 120);

  errno = 0;
  EXPECT_EQ(reallocarray(p, Opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  ASSERT_GE(Usable(p), 120u) << "the original block must survive the overflow";
  for (int i = 0; i < 120; ++i) ASSERT_EQ(static_cast<char*>(p)[i], 'r');

  char* q = static_cast<char*>(reallocarray(p, 100, 40));
  ASSERT_NE(q, nullptr);
  EXPECT_GE(Usable(q), 4000u);
  for (int i = 0; i < 120; ++i) ASSERT_EQ(q[i], 'r');
  free(q);
}

TEST(DropinMalloc, MallocUsableSize) {
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
  for (size_t n : {size_t{0}, size_t{1}, size_t{24}, size_t{1000}, 100 * kKiB, 3 * kMiB}) {
    void* p = malloc(n);
    ASSERT_NE(p, nullptr);
    const size_t u = malloc_usable_size(p);
    EXPECT_GE(u, n);
    EXPECT_EQ(u, Usable(p));
    memset(p, 0x11, u);  // every usable byte is writable
    free(p);
  }
}

// =============================================================== aligned allocation

TEST(DropinAligned, PosixMemalignPowersOfTwo) {
  for (size_t a = sizeof(void*); a <= 64 * kKiB; a *= 2) {
    SCOPED_TRACE(a);
    void* p = nullptr;
    int rc = -1;
    const Counters d = Delta([&] { rc = posix_memalign(&p, a, 100); });
    EXPECT_EQ(d.pool_allocs, 1);
    EXPECT_EQ(rc, 0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(Aligned(p, a));
    EXPECT_GE(Usable(p), 100u);
    memset(p, 1, 100);
    free(p);
  }
  void* big = nullptr;
  EXPECT_EQ(posix_memalign(&big, 4096, 2 * kMiB), 0);
  EXPECT_TRUE(Aligned(big, 4096));
  EXPECT_GE(Usable(big), 2 * kMiB);
  free(big);
}

TEST(DropinAligned, PosixMemalignBadAlignmentIsEinvalWithoutTouchingErrnoOrOut) {
  for (size_t a : {size_t{0}, size_t{3}, size_t{24}, size_t{4}, size_t{2}, size_t{1}, size_t{48}, SIZE_MAX}) {
    SCOPED_TRACE(a);
    void* out = reinterpret_cast<void*>(0x1234);
    errno = 777;
    const int rc = posix_memalign(&out, Opaque(a), 64);
    EXPECT_EQ(rc, EINVAL);
    EXPECT_EQ(errno, 777);
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
  }
}

TEST(DropinAligned, PosixMemalignOutOfMemoryIsReturnedNotSetInErrno) {
  void* out = reinterpret_cast<void*>(0x1234);
  errno = 777;
  EXPECT_EQ(posix_memalign(&out, 64, Opaque(kAbsurd)), ENOMEM);
  EXPECT_EQ(errno, 777);
  EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
  EXPECT_EQ(posix_memalign(&out, 8, Opaque(SIZE_MAX)), ENOMEM);
  EXPECT_EQ(errno, 777);
  EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
}

TEST(DropinAligned, AlignedAlloc) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = aligned_alloc(64, 100); }), 1, 0, 0, 0);  // 100 is not a multiple of 64
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, 64));
  EXPECT_GE(Usable(p), 100u);
  free(p);
  for (size_t a = 1; a <= 8192; a *= 2) {
    void* q = aligned_alloc(a, 3 * a + 1);
    ASSERT_NE(q, nullptr) << a;
    EXPECT_TRUE(Aligned(q, a)) << a;
    EXPECT_GE(Usable(q), 3 * a + 1);
    free(q);
  }
}

TEST(DropinAligned, AlignedAllocBadAlignmentIsEinval) {
  for (size_t a : {size_t{3}, size_t{0}, size_t{24}, size_t{100}}) {
    errno = 0;
    EXPECT_EQ(aligned_alloc(Opaque(a), 8), nullptr) << a;
    EXPECT_EQ(errno, EINVAL) << a;
  }
  errno = 0;
  EXPECT_EQ(aligned_alloc(64, Opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(DropinAligned, MemalignRoundsAlignmentUp) {
  std::vector<void*> blocks;
  for (int i = 0; i < 16; ++i) {
    void* p = memalign(Opaque(size_t{24}), 40);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(Aligned(p, 32)) << p;
    EXPECT_GE(Usable(p), 40u);
    blocks.push_back(p);
  }
  for (void* p : blocks) free(p);
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = memalign(Opaque(size_t{3000}), 10); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, 4096));
  free(p);
  // Small alignments are plain malloc.
  for (size_t a : {size_t{0}, size_t{1}, size_t{8}, size_t{16}}) {
    void* q = memalign(Opaque(a), 10);
    ASSERT_NE(q, nullptr) << a;
    EXPECT_TRUE(Aligned(q, 16));
    free(q);
  }
  errno = 0;
  EXPECT_EQ(memalign(Opaque(SIZE_MAX), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

TEST(DropinAligned, VallocIsPageAligned) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = valloc(100); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, kPage));
  EXPECT_GE(Usable(p), 100u);
  free(p);
}

TEST(DropinAligned, Pvalloc) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = pvalloc(Opaque(size_t{0})); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, kPage));
  EXPECT_GE(Usable(p), kPage);
  memset(p, 1, kPage);
  free(p);
  p = pvalloc(5000);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(Aligned(p, kPage));
  EXPECT_GE(malloc_usable_size(p), 8192u);
  memset(p, 1, 8192);
  free(p);
  errno = 0;
  EXPECT_EQ(pvalloc(Opaque(SIZE_MAX - 100)), nullptr);  // rounding up to a page overflows
  EXPECT_EQ(errno, ENOMEM);
}

TEST(DropinAligned, FreeSizedAndFreeAlignedSized) {
  void* p = malloc(77);
  ASSERT_NE(Usable(p), 0u);
  EXPECT_MOVED(Delta([&] { free_sized(p, 77); }), 0, 1, 0, 0);
  void* a = aligned_alloc(256, 300);
  ASSERT_NE(Usable(a), 0u);
  EXPECT_TRUE(Aligned(a, 256));
  EXPECT_MOVED(Delta([&] { free_aligned_sized(a, 256, 300); }), 0, 1, 0, 0);
  void* big = malloc(3 * kMiB);
  EXPECT_MOVED(Delta([&] { free_sized(big, 3 * kMiB); }), 0, 0, 0, 1);
  EXPECT_MOVED(Delta([] {
                 free_sized(nullptr, 10);
                 free_aligned_sized(nullptr, 64, 10);
               }),
               0, 0, 0, 0);
  void (*const fs)(void*, size_t) = Opaque(&free_sized);
  void* q = malloc(10);
  errno = 4321;
  fs(q, 10);
  EXPECT_EQ(errno, 4321);
}

// =============================================================== glibc's __libc_* names

TEST(DropinLibcAliases, EachIsServedByHakmem) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = __libc_malloc(100); }), 1, 0, 0, 0);
  ASSERT_NE(Usable(p), 0u);
  memset(p, 'a', 100);
  void* q = nullptr;
  EXPECT_MOVED(Delta([&] { q = __libc_realloc(p, 3000); }), 1, 1, 0, 0);
  ASSERT_NE(q, nullptr);
  EXPECT_GE(Usable(q), 3000u);
  EXPECT_EQ(static_cast<char*>(q)[99], 'a');
  EXPECT_MOVED(Delta([&] { __libc_free(q); }), 0, 1, 0, 0);

  unsigned char* c = nullptr;
  EXPECT_MOVED(Delta([&] { c = static_cast<unsigned char*>(__libc_calloc(7, 9)); }), 1, 0, 0, 0);
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 63; ++i) EXPECT_EQ(c[i], 0);
  __libc_free(c);
  errno = 0;
  EXPECT_EQ(__libc_calloc(Opaque(SIZE_MAX), 2), nullptr);
  EXPECT_EQ(errno, ENOMEM);

  void* m = nullptr;
  EXPECT_MOVED(Delta([&] { m = __libc_memalign(128, 50); }), 1, 0, 0, 0);
  EXPECT_TRUE(Aligned(m, 128));
  EXPECT_NE(Usable(m), 0u);
  free(m);
  void* v = nullptr;
  EXPECT_MOVED(Delta([&] { v = __libc_valloc(10); }), 1, 0, 0, 0);
  EXPECT_TRUE(Aligned(v, kPage));
  free(v);
  void* pv = nullptr;
  EXPECT_MOVED(Delta([&] { pv = __libc_pvalloc(5000); }), 1, 0, 0, 0);
  EXPECT_TRUE(Aligned(pv, kPage));
  EXPECT_GE(Usable(pv), 8192u);
  free(pv);
  void* r = __libc_realloc(nullptr, 10);
  EXPECT_NE(Usable(r), 0u);
  EXPECT_EQ(__libc_realloc(r, 0), nullptr);
}

// =============================================================== mallopt, mallinfo, trim, stats

TEST(DropinMallopt, MmapThresholdMovesLargeBlocksToPool) {
  ThresholdGuard restore;
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
  EXPECT_EQ(hakmem::g_process.stats().threshold, 1u << 20);
  const struct mallinfo2 before = mallinfo2();
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = malloc(512 * kKiB); }), 1, 0, 0, 0);
  const struct mallinfo2 after = mallinfo2();
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 512 * kKiB);
  EXPECT_EQ(after.hblks, before.hblks);
  EXPECT_EQ(after.hblkhd, before.hblkhd);
  EXPECT_GE(after.uordblks - before.uordblks, 512 * kKiB);
  EXPECT_LE(after.uordblks - before.uordblks, 640 * kKiB);
  free(p);

  // Out of range (64 KiB .. 32 MiB): refused, the threshold in force is unchanged.
  for (int bad : {1, 0, -1, 64 * 1024 - 1, 32 * 1024 * 1024 + 1, INT32_MAX}) {
    EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, bad), 0) << bad;
  }
  EXPECT_EQ(hakmem::g_process.stats().threshold, 1u << 20);

  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, static_cast<int>(kDefaultThreshold)), 1);
  EXPECT_EQ(hakmem::g_process.stats().threshold, kDefaultThreshold);
  const struct mallinfo2 b2 = mallinfo2();
  void* q = nullptr;
  EXPECT_MOVED(Delta([&] { q = malloc(512 * kKiB); }), 0, 0, 1, 0);
  const struct mallinfo2 a2 = mallinfo2();
  EXPECT_GE(Usable(q), 512 * kKiB);
  EXPECT_EQ(a2.hblks, b2.hblks + 1);
  EXPECT_GE(a2.hblkhd, b2.hblkhd + 512 * kKiB);
  free(q);
}

TEST(DropinMallopt, ThresholdBoundsAreAccepted) {
  ThresholdGuard restore;
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 64 * 1024), 1);
  EXPECT_EQ(hakmem::g_process.stats().threshold, 64u * 1024);
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024), 1);
  EXPECT_EQ(hakmem::g_process.stats().threshold, 32u * 1024 * 1024);
}

TEST(DropinMallopt, OtherParametersAreAcceptedAndIgnored) {
  const uint64_t threshold = hakmem::g_process.stats().threshold;
  for (int param :
       {M_MXFAST, M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_CHECK_ACTION, M_PERTURB, M_ARENA_TEST, M_ARENA_MAX}) {
    EXPECT_EQ(mallopt(param, 1), 1) << param;
  }
  EXPECT_EQ(mallopt(12345, 0), 1);
  EXPECT_EQ(hakmem::g_process.stats().threshold, threshold);
  EXPECT_EQ(mallopt(M_PERTURB, 0), 1);
}

// Blocks allocated before a mallopt() keep the strategy recorded in their header, and I3
// ("a block is Map iff size >= the threshold of the strategy in its header") must hold for
// them afterwards: the allocator's own audit checks it.
TEST(DropinMallopt, ThresholdChangeKeepsEarlierBlocksConsistent) {
  ThresholdGuard restore;
  void* big = malloc(300 * kKiB);  // Map under the 256 KiB default
  ASSERT_NE(Usable(big), 0u);
  hakmem::AuditResult r = hakmem::g_process.audit();
  EXPECT_TRUE(r.ok) << "before mallopt: " << r.failure;
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
  r = hakmem::g_process.audit();
  EXPECT_TRUE(r.ok) << "after mallopt(M_MMAP_THRESHOLD, 1 MiB): " << r.failure;
  free(big);
}

TEST(DropinMallinfo, FieldsFollowLargeBlocks) {
  const struct mallinfo2 before = mallinfo2();
  void* p = malloc(4 * kMiB);
  ASSERT_NE(p, nullptr);
  const struct mallinfo2 live = mallinfo2();
  EXPECT_EQ(live.hblks, before.hblks + 1);
  EXPECT_GE(live.hblkhd, before.hblkhd + 4 * kMiB);
  free(p);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_EQ(after.hblks, before.hblks);
  EXPECT_EQ(after.hblkhd, before.hblkhd);
  EXPECT_GE(after.fsmblks, 4 * kMiB) << "the freed block is cached or pending, still mapped";
  EXPECT_GT(after.arena, 0u);
  EXPECT_GT(after.ordblks, 0u);
  EXPECT_GT(after.uordblks, 0u);
  EXPECT_EQ(after.arena, after.uordblks + after.fordblks);
  EXPECT_GT(after.keepcost, 0u);
}

TEST(DropinMallinfo, PoolFieldsFollowSmallBlocks) {
  std::vector<void*> blocks(64);
  const struct mallinfo2 before = mallinfo2();
  for (void*& p : blocks) p = Opaque(malloc(1000));
  const struct mallinfo2 live = mallinfo2();
  for (void* p : blocks) free(p);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_GE(live.uordblks, before.uordblks + 64 * 1000);
  EXPECT_EQ(live.hblks, before.hblks);
  EXPECT_EQ(after.uordblks, before.uordblks);
}

TEST(DropinMallinfo, MallinfoAgreesWithMallinfo2) {
  const struct mallinfo2 m2 = mallinfo2();
  const struct mallinfo m = dropin_mallinfo();
  auto small = [](size_t v) { return v <= static_cast<size_t>(INT32_MAX); };
  ASSERT_TRUE(small(m2.arena) && small(m2.hblkhd) && small(m2.uordblks));
  EXPECT_EQ(static_cast<size_t>(m.arena), m2.arena);
  EXPECT_EQ(static_cast<size_t>(m.ordblks), m2.ordblks);
  EXPECT_EQ(static_cast<size_t>(m.hblks), m2.hblks);
  EXPECT_EQ(static_cast<size_t>(m.hblkhd), m2.hblkhd);
  EXPECT_EQ(static_cast<size_t>(m.uordblks), m2.uordblks);
  EXPECT_EQ(static_cast<size_t>(m.fordblks), m2.fordblks);
  EXPECT_EQ(static_cast<size_t>(m.fsmblks), m2.fsmblks);
  EXPECT_EQ(static_cast<size_t>(m.keepcost), m2.keepcost);
  EXPECT_EQ(m.smblks, 0);
  EXPECT_EQ(m.usmblks, 0);
}

TEST(DropinMallocTrim, ReleasesFreedLargeBlocksOnce) {
  std::vector<void*> blocks;
  for (int i = 0; i < 3; ++i) {
    void* p = malloc((4 + i) * kMiB);
    ASSERT_NE(p, nullptr);
    memset(p, 1, kPage);
    blocks.push_back(p);
  }
  for (void* p : blocks) free(p);
  blocks.clear();
  blocks.shrink_to_fit();
  EXPECT_GT(mallinfo2().fsmblks, 0u);
  EXPECT_EQ(malloc_trim(0), 1);
  EXPECT_EQ(mallinfo2().fsmblks, 0u) << "nothing cached or pending after a trim";
  EXPECT_EQ(malloc_trim(0), 0) << "nothing left to release";
  EXPECT_EQ(malloc_trim(4096), 0);
}

/// This process's resident bytes (/proc/self/statm), read without allocating.
uint64_t ResidentBytes() {
  char buf[128] = {};
  const int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  unsigned long long size = 0, resident = 0;
  if (sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// A program that frees a peak of small objects and calls malloc_trim gets the memory back: the
// pages of the thread's empty Pool spans go to the OS (they stay mapped, and read as zeros when
// carved again: tests/pool_test.cpp, PoolTrim).
TEST(DropinMallocTrim, GivesBackTheSmallObjectsOfAFreedPeak) {
  constexpr size_t kSize = 1000, kCount = 64 * 1024;  // 64 MiB of 1 KiB blocks
  std::vector<void*> blocks;
  blocks.reserve(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    void* p = malloc(kSize);
    ASSERT_NE(p, nullptr);
    memset(p, 0x5a, kSize);
    blocks.push_back(p);
  }
  for (void* p : blocks) free(p);
  const uint64_t peak = ResidentBytes();
  ASSERT_GT(peak, 64 * kMiB);
  EXPECT_EQ(malloc_trim(0), 1);
  const uint64_t after = ResidentBytes();
  EXPECT_LT(after + 56 * kMiB, peak) << "resident " << peak / kMiB << " MiB before the trim, " << after / kMiB
                                     << " MiB after";
}

TEST(DropinMallocStats, PrintsTheTableOnStderr) {
  StderrCapture cap;
  malloc_stats();
  const std::string err = cap.Finish();
  EXPECT_EQ(err.rfind("hakmem stats\n", 0), 0u) << err;
  EXPECT_NE(err.find("pool"), std::string::npos) << err;
  EXPECT_NE(err.find("bigcache"), std::string::npos) << err;
}

TEST(DropinMallocInfo, WritesXml) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* fp = open_memstream(&buf, &len);
  ASSERT_NE(fp, nullptr);
  EXPECT_EQ(malloc_info(0, fp), 0);
  ASSERT_EQ(fclose(fp), 0);
  ASSERT_NE(buf, nullptr);
  const std::string xml(buf, len);
  free(buf);
  EXPECT_EQ(xml.rfind("<malloc version=\"hakmem-1\">", 0), 0u) << xml;
  EXPECT_NE(xml.find("</malloc>\n"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<hakmem pool_live=\""), std::string::npos) << xml;
}

TEST(DropinMallocInfo, NonZeroOptionsIsEinval) {
  FILE* fp = tmpfile();
  ASSERT_NE(fp, nullptr);
  errno = 0;
  EXPECT_EQ(malloc_info(1, fp), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(ftell(fp), 0) << "nothing written";
  fclose(fp);
}

// =============================================================== C++ operators

TEST(DropinNewDelete, PlainForms) {
  void* p = nullptr;
  EXPECT_MOVED(Delta([&] { p = ::operator new(40); }), 1, 0, 0, 0);
  EXPECT_GE(Usable(p), 40u);
  EXPECT_TRUE(Aligned(p, 16));
  EXPECT_MOVED(Delta([&] { ::operator delete(p); }), 0, 1, 0, 0);

  EXPECT_MOVED(Delta([&] { p = ::operator new[](40); }), 1, 0, 0, 0);
  EXPECT_GE(Usable(p), 40u);
  EXPECT_MOVED(Delta([&] { ::operator delete[](p); }), 0, 1, 0, 0);

  EXPECT_MOVED(Delta([&] { p = ::operator new(40, std::nothrow); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 40u);
  EXPECT_MOVED(Delta([&] { ::operator delete(p, std::nothrow); }), 0, 1, 0, 0);

  EXPECT_MOVED(Delta([&] { p = ::operator new[](40, std::nothrow); }), 1, 0, 0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Usable(p), 40u);
  EXPECT_MOVED(Delta([&] { ::operator delete[](p, std::nothrow); }), 0, 1, 0, 0);
}

TEST(DropinNewDelete, SizedForms) {
  void* p = ::operator new(40);
  EXPECT_MOVED(Delta([&] { ::operator delete(p, 40); }), 0, 1, 0, 0);
  p = ::operator new[](40);
  EXPECT_MOVED(Delta([&] { ::operator delete[](p, 40); }), 0, 1, 0, 0);
  p = ::operator new(2 * kMiB);
  EXPECT_MOVED(Delta([&] { ::operator delete(p, 2 * kMiB); }), 0, 0, 0, 1);
  EXPECT_MOVED(Delta([] {
                 ::operator delete(Opaque<void*>(nullptr), 8);
                 ::operator delete[](Opaque<void*>(nullptr), 8);
               }),
               0, 0, 0, 0);
}

TEST(DropinNewDelete, AlignedForms) {
  for (size_t align : {size_t{64}, size_t{4096}}) {
    SCOPED_TRACE(align);
    const std::align_val_t a{align};
    void* p = nullptr;
    EXPECT_MOVED(Delta([&] { p = ::operator new(100, a); }), 1, 0, 0, 0);
    EXPECT_TRUE(Aligned(p, align));
    EXPECT_GE(Usable(p), 100u);
    EXPECT_MOVED(Delta([&] { ::operator delete(p, a); }), 0, 1, 0, 0);

    EXPECT_MOVED(Delta([&] { p = ::operator new[](100, a); }), 1, 0, 0, 0);
    EXPECT_TRUE(Aligned(p, align));
    EXPECT_GE(Usable(p), 100u);
    EXPECT_MOVED(Delta([&] { ::operator delete[](p, a); }), 0, 1, 0, 0);

    EXPECT_MOVED(Delta([&] { p = ::operator new(100, a, std::nothrow); }), 1, 0, 0, 0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(Aligned(p, align));
    EXPECT_MOVED(Delta([&] { ::operator delete(p, a, std::nothrow); }), 0, 1, 0, 0);

    EXPECT_MOVED(Delta([&] { p = ::operator new[](100, a, std::nothrow); }), 1, 0, 0, 0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(Aligned(p, align));
    EXPECT_MOVED(Delta([&] { ::operator delete[](p, a, std::nothrow); }), 0, 1, 0, 0);

    // Sized aligned deletes, with the right size: no report.
    p = ::operator new(100, a);
    EXPECT_MOVED(Delta([&] { ::operator delete(p, 100, a); }), 0, 1, 0, 0);
    p = ::operator new[](100, a);
    EXPECT_MOVED(Delta([&] { ::operator delete[](p, 100, a); }), 0, 1, 0, 0);

    // Large aligned.
    EXPECT_MOVED(Delta([&] { p = ::operator new(3 * kMiB, a); }), 0, 0, 1, 0);
    EXPECT_TRUE(Aligned(p, align));
    EXPECT_GE(Usable(p), 3 * kMiB);
    EXPECT_MOVED(Delta([&] { ::operator delete(p, 3 * kMiB, a); }), 0, 0, 0, 1);
  }
}

TEST(DropinNewDelete, NewExpressionsUseTheOperators) {
  struct alignas(128) Over {
    char c[200];
  };
  Over* o = nullptr;
  EXPECT_MOVED(Delta([&] { o = new Over; }), 1, 0, 0, 0);
  EXPECT_TRUE(Aligned(o, 128));
  EXPECT_NE(Usable(o), 0u);
  EXPECT_MOVED(Delta([&] { delete o; }), 0, 1, 0, 0);
  int* arr = nullptr;
  EXPECT_MOVED(Delta([&] { arr = new int[Opaque(100)]; }), 1, 0, 0, 0);
  EXPECT_GE(Usable(arr), 400u);
  EXPECT_MOVED(Delta([&] { delete[] arr; }), 0, 1, 0, 0);
}

void ExpectBadAlloc(void* (*fn)(size_t)) {
  bool threw = false;
  try {
    g_keep = fn(Opaque(kAbsurd));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  EXPECT_TRUE(threw);
}

TEST(DropinNewDelete, AbsurdSizeThrowsBadAlloc) {
  ASSERT_EQ(std::get_new_handler(), nullptr);
  ExpectBadAlloc([](size_t n) { return ::operator new(n); });
  ExpectBadAlloc([](size_t n) { return ::operator new[](n); });
  ExpectBadAlloc([](size_t n) { return ::operator new (n, std::align_val_t{64}); });
  ExpectBadAlloc([](size_t n) { return ::operator new[](n, std::align_val_t{4096}); });
  ExpectBadAlloc([](size_t) { return ::operator new(Opaque(SIZE_MAX)); });
}

TEST(DropinNewDelete, NothrowAbsurdSizeReturnsNull) {
  const size_t n = Opaque(kAbsurd);
  EXPECT_EQ(::operator new(n, std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](n, std::nothrow), nullptr);
  EXPECT_EQ(::operator new (n, std::align_val_t{64}, std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](n, std::align_val_t{4096}, std::nothrow), nullptr);
  EXPECT_EQ(::operator new(Opaque(SIZE_MAX), std::nothrow), nullptr);
}

// ---------------------------------------------------------------- the new-handler loop

int g_handler_calls = 0;
void* g_reserve = nullptr;
bool g_reserve_freed_by_hakmem = false;

/// Restores "no new-handler" whatever the test does.
struct HandlerGuard {
  HandlerGuard() {
    g_handler_calls = 0;
    g_reserve_freed_by_hakmem = false;
  }
  ~HandlerGuard() { std::set_new_handler(nullptr); }
};

/// 1st call: releases the reserve (as a real handler would); 2nd call: gives up.
void ReleasingHandler() {
  ++g_handler_calls;
  if (g_handler_calls == 1) {
    const Counters before = Read();
    free(g_reserve);
    g_reserve_freed_by_hakmem = (Read() - before).pool_frees == 1;
    g_reserve = nullptr;
  } else {
    std::set_new_handler(nullptr);
  }
}

struct HandlerBadAlloc : std::bad_alloc {};

void ThrowingHandler() {
  ++g_handler_calls;
  throw HandlerBadAlloc();
}

TEST(DropinNewHandler, CalledUntilUninstalledThenBadAlloc) {
  using Form = void* (*)(size_t);
  const Form forms[] = {
      [](size_t n) { return ::operator new(n); },
      [](size_t n) { return ::operator new[](n); },
      [](size_t n) { return ::operator new (n, std::align_val_t{64}); },
      [](size_t n) { return ::operator new[](n, std::align_val_t{4096}); },
  };
  for (Form form : forms) {
    HandlerGuard guard;
    g_reserve = malloc(1000);
    ASSERT_NE(Usable(g_reserve), 0u);
    std::set_new_handler(&ReleasingHandler);
    bool threw = false;
    try {
      g_keep = form(Opaque(kAbsurd));
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(g_handler_calls, 2) << "called once per failed attempt until it uninstalls itself";
    EXPECT_EQ(g_reserve, nullptr);
    EXPECT_TRUE(g_reserve_freed_by_hakmem) << "the handler's free of the reserve went through hakmem";
    EXPECT_EQ(std::get_new_handler(), nullptr);
  }
}

TEST(DropinNewHandler, ThrowingHandlerPropagatesFromThrowingNew) {
  HandlerGuard guard;
  std::set_new_handler(&ThrowingHandler);
  bool caught = false;
  try {
    g_keep = ::operator new(Opaque(kAbsurd));
  } catch (const HandlerBadAlloc&) {
    caught = true;
  }
  EXPECT_TRUE(caught) << "the handler's own exception reaches the caller";
  EXPECT_EQ(g_handler_calls, 1);
}

TEST(DropinNewHandler, ThrowingHandlerMakesNothrowNewReturnNull) {
  HandlerGuard guard;
  std::set_new_handler(&ThrowingHandler);
  const size_t n = Opaque(kAbsurd);
  EXPECT_EQ(::operator new(n, std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 1);
  EXPECT_EQ(::operator new[](n, std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 2);
  EXPECT_EQ(::operator new (n, std::align_val_t{64}, std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 3);
  EXPECT_EQ(::operator new[](n, std::align_val_t{64}, std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 4);
}

TEST(DropinNewHandler, NotCalledWhenMemoryIsAvailable) {
  HandlerGuard guard;
  std::set_new_handler(&ThrowingHandler);
  void* p = ::operator new(64);
  EXPECT_NE(Usable(p), 0u);
  ::operator delete(p, 64);
  EXPECT_EQ(g_handler_calls, 0);
}

// =============================================================== origins and misuse (abort)

// Death tests: the forked child must die on the one-line report. A Map block's report names its
// allocation site; a Pool block's, in the default mode, does not (header/README.md).
constexpr const char* kSite = "allocated at [^ ,)]+";

/// The death tests need the default on_error=abort (HAKMEM_OPTIONS of the caller may differ).
class DropinOriginDeathTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (hakmem::g_process.options().get(hakmem::Opt::kOnError) != hakmem::kOnErrorAbort) {
      GTEST_SKIP() << "HAKMEM_OPTIONS sets on_error=report";
    }
  }
};

TEST_F(DropinOriginDeathTest, FreeOfNewBlock) {
  EXPECT_DEATH(free(Opaque(NewSite(24))),
               "hakmem: mismatched free of 0x[0-9a-f]+ \\(24 bytes, allocated by new, released by malloc");
}

TEST_F(DropinOriginDeathTest, DeleteOfMallocBlock) {
  EXPECT_DEATH(::operator delete(Opaque(MallocSite(24))),
               "hakmem: mismatched free of 0x[0-9a-f]+ \\(24 bytes, allocated by malloc, released by new");
}

TEST_F(DropinOriginDeathTest, DeleteArrayOfNewBlock) {
  EXPECT_DEATH(::operator delete[](Opaque(NewSite(24))),
               "hakmem: mismatched free of 0x[0-9a-f]+ \\(24 bytes, allocated by new, released by new\\[\\]");
}

TEST_F(DropinOriginDeathTest, DeleteOfNewArrayBlock) {
  EXPECT_DEATH(::operator delete(Opaque(NewArraySite(24))),
               "hakmem: mismatched free of 0x[0-9a-f]+ \\(24 bytes, allocated by new\\[\\], released by new");
}

TEST_F(DropinOriginDeathTest, FreeOfAlignedNewBlock) {
  EXPECT_DEATH(free(Opaque(::operator new (100, std::align_val_t{64}))),
               "hakmem: mismatched free of 0x[0-9a-f]+ \\(100 bytes, .*allocated by new, released by malloc");
}

TEST_F(DropinOriginDeathTest, ReallocOfNewBlock) {
  EXPECT_DEATH(g_keep = realloc(Opaque(NewSite(24)), 100), "hakmem: mismatched free of 0x[0-9a-f]+ \\(24 bytes");
}

TEST_F(DropinOriginDeathTest, SizedDeleteWithWrongSize) {
  EXPECT_DEATH(::operator delete(Opaque(NewSite(24)), 25),
               "hakmem: size mismatch of 0x[0-9a-f]+ \\(24 bytes, released as 25 bytes");
  EXPECT_DEATH(::operator delete[](Opaque(NewArraySite(100)), 10),
               "hakmem: size mismatch of 0x[0-9a-f]+ \\(100 bytes, .*released as 10 bytes");
  EXPECT_DEATH(::operator delete (Opaque(::operator new (100, std::align_val_t{64})), 64, std::align_val_t{64}),
               "hakmem: size mismatch of 0x[0-9a-f]+ \\(100 bytes, .*released as 64 bytes");
}

TEST_F(DropinOriginDeathTest, FreeSizedWithWrongSize) {
  EXPECT_DEATH(free_sized(Opaque(MallocSite(24)), 32),
               "hakmem: size mismatch of 0x[0-9a-f]+ \\(24 bytes, released as 32 bytes");
  EXPECT_DEATH(free_aligned_sized(Opaque(aligned_alloc(64, 100)), 64, 128),
               "hakmem: size mismatch of 0x[0-9a-f]+ \\(100 bytes, .*released as 128 bytes");
  EXPECT_DEATH(free_sized(Opaque(malloc(3 * kMiB)), 3 * kMiB - 1),
               std::string("hakmem: size mismatch of 0x[0-9a-f]+ \\(3145728 bytes, ") + kSite);
}

TEST_F(DropinOriginDeathTest, DoubleFree) {
  EXPECT_DEATH(
      {
        void* p = Opaque(MallocSite(24));
        void* again = Opaque(p);
        free(p);
        free(again);
      },
      "hakmem: double free of 0x[0-9a-f]+ \\(24 bytes, freed at ");
  EXPECT_DEATH(
      {
        void* p = Opaque(malloc(3 * kMiB));
        void* again = Opaque(p);
        free(p);
        free(again);
      },
      "hakmem: double free of 0x[0-9a-f]+ ");
  EXPECT_DEATH(
      {
        void* p = Opaque(NewSite(24));
        void* again = Opaque(p);
        ::operator delete(p);
        ::operator delete(again);
      },
      "hakmem: double free of 0x[0-9a-f]+ ");
}

TEST_F(DropinOriginDeathTest, FreeOfStackAddress) {
  EXPECT_DEATH(
      {
        int local = 0;
        free(Opaque(static_cast<void*>(&local)));
      },
      "hakmem: invalid free of 0x[0-9a-f]+ \\(not allocated by hakmem");
  EXPECT_DEATH(
      {
        int local = 0;
        ::operator delete(Opaque(static_cast<void*>(&local)));
      },
      "hakmem: invalid free of 0x[0-9a-f]+ ");
}

TEST_F(DropinOriginDeathTest, FreeOfInteriorPointer) {
  EXPECT_DEATH(free(Opaque(static_cast<char*>(MallocSite(100)) + 16)), "hakmem: misaligned free of 0x[0-9a-f]+ ");
}

TEST_F(DropinOriginDeathTest, ReportNamesTheFreeSite) {
  EXPECT_DEATH(free(Opaque(NewSite(24))), "hakmem: mismatched free of .*, freed at [^ )]+");
}

// =============================================================== children with other options

std::string Describe(const ChildResult& r) {
  return "status " + std::to_string(r.status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool ExitedWith(const ChildResult& r, int code) { return WIFEXITED(r.status) && WEXITSTATUS(r.status) == code; }

TEST(DropinOriginChild, OriginCheckOffAcceptsMixedReleasesSilently) {
  const ChildResult r = RunChild("origin_check_off", "origin_check=0");
  EXPECT_TRUE(ExitedWith(r, 0)) << Describe(r);
  EXPECT_EQ(r.err, "") << Describe(r);
}

TEST(DropinOriginChild, OriginCheckOffStillReportsDoubleFree) {
  const ChildResult r = RunChild("origin_check_off_double_free", "origin_check=0:on_error=report");
  EXPECT_TRUE(ExitedWith(r, 0)) << Describe(r);
  EXPECT_NE(r.err.find("hakmem: double free of 0x"), std::string::npos) << Describe(r);
}

TEST(DropinOriginChild, OriginCheckOffWithAbortStillAbortsOnDoubleFree) {
  const ChildResult r = RunChild("origin_check_off_double_free", "origin_check=0");
  EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT) << Describe(r);
  EXPECT_NE(r.err.find("hakmem: double free of 0x"), std::string::npos) << Describe(r);
}

TEST(DropinOriginChild, ReportModeReportsAndContinues) {
  const ChildResult r = RunChild("report_continues", "on_error=report");
  EXPECT_TRUE(ExitedWith(r, 0)) << Describe(r);
  EXPECT_NE(r.err.find("hakmem: mismatched free of 0x"), std::string::npos) << Describe(r);
  EXPECT_NE(r.err.find("hakmem: invalid free of 0x"), std::string::npos) << Describe(r);
}

TEST(DropinOriginChild, DefaultModeAbortsOnMismatch) {
  const ChildResult r = RunChild("report_continues", "");
  EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT) << Describe(r);
  EXPECT_EQ(r.err.rfind("hakmem: mismatched free of 0x", 0), 0u) << Describe(r);
}

// The site in a report is the return address of the allocating call, inside MallocSite():
// symbolized as "MallocSite...+0x.." when the binary exports it, else as an offset into this
// binary ("0x... in dropin_conformance_test"), which must fall inside MallocSite.
TEST(DropinOriginChild, ReportNamesTheAllocationSite) {
  const ChildResult r = RunChild("site", "on_error=report");
  ASSERT_TRUE(ExitedWith(r, 0)) << Describe(r);
  const std::string& err = r.err;
  ASSERT_EQ(err.rfind("hakmem: mismatched free of 0x", 0), 0u) << Describe(r);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
  const size_t at = err.find("allocated at ");
  ASSERT_NE(at, std::string::npos) << err;
  const std::string site = err.substr(at + 13, err.find_first_of(",)", at) - at - 13);
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&MallocSite), &info), 0);
  if (site.rfind("0x", 0) == 0) {
    const uint64_t offset = strtoull(site.c_str(), nullptr, 16);
    const uint64_t fn = reinterpret_cast<uintptr_t>(&MallocSite) - reinterpret_cast<uintptr_t>(info.dli_fbase);
    EXPECT_GT(offset, fn) << site;
    EXPECT_LT(offset, fn + 256) << "the site lies inside MallocSite: " << site;
    EXPECT_NE(site.find(" in dropin_conformance_test"), std::string::npos) << site;
  } else {
    EXPECT_NE(site.find("MallocSite"), std::string::npos) << site;
  }
}

}  // namespace
