// "Any entry point may be the first call" (ARCHITECTURE.md, "Threads, fork, start-up").
//
// For each exported entry point, the parent test re-executes this binary with
// HAKMEM_FIRST_CALL=<entry> and HAKMEM_OPTIONS=threshold=1m. In the child, PreinitChild()
// makes that one call, validates it, prints what it saw on stdout and _exit()s without ever
// reaching main().
//
// What "first" means: the first call INTO HAKMEM in the process. The child runs from the
// executable's .preinit_array, which ld.so calls before any shared library's initializer;
// the obvious alternative, __attribute__((constructor(101))), runs before the C++ static
// initializers of this binary but AFTER libstdc++'s initializer, which mallocs its emergency
// exception pool, so that malloc would have come first. The child records
// g_process.ready() before its call and the parent asserts it was false: the entry point
// under test is the one that found the allocator uninitialized. The child then proves with
// hak_stats_print_json (rendered straight to fd 1, without allocating) that:
//   - right after the call, an entry point that needs the allocator initialized it from the
//     environment (threshold=1m shows up as the selector's threshold) and counted exactly
//     its own call;
//   - a follow-up malloc/free works and is counted, whatever entry point came first.
#include <errno.h>
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <new>
#include <string>

#include "front/front.h"
#include "support/self_exec.h"

#if !defined(__cpp_sized_deallocation)
// Compilers that do not enable sized deallocation by default (clang < 19) leave these four
// replaceable operators undeclared in <new>; the drop-in defines them all.
void operator delete(void* p, std::size_t n) noexcept;
void operator delete[](void* p, std::size_t n) noexcept;
void operator delete(void* p, std::size_t n, std::align_val_t a) noexcept;
void operator delete[](void* p, std::size_t n, std::align_val_t a) noexcept;
#endif

namespace {

// ================================================================ the child (no allocation
// here except the entry point under test and the follow-up)

/// Writes to fd 1 without stdio (whose buffer would come from malloc).
void Emit(const char* text, size_t len) {
  while (len > 0) {
    const ssize_t n = write(1, text, len);
    if (n <= 0) return;
    text += n;
    len -= static_cast<size_t>(n);
  }
}
void Emit(const char* text) { Emit(text, strlen(text)); }
void EmitSink(void*, const char* text, size_t len) { Emit(text, len); }

template <class T>
__attribute__((noinline)) T Opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

bool Aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }
size_t Usable(const void* p) {
  return hak_usable_size(reinterpret_cast<const void*>(Opaque(reinterpret_cast<uintptr_t>(p))));
}

int g_failures = 0;

void Check(bool ok, const char* what) {
  if (ok) return;
  ++g_failures;
  Emit("check failed: ");
  Emit(what);
  Emit("\n");
}

/// Prints "<label> <stats json>" on one line.
void Snapshot(const char* label) {
  Emit(label);
  Emit(" ");
  hak_stats_print_json(&EmitSink, nullptr);  // the JSON ends with '\n'
}

/// A live block of at least n bytes, writable, served by hakmem.
void CheckBlock(void* p, size_t n, size_t align) {
  Check(p != nullptr, "the call returned a block");
  if (p == nullptr) return;
  Check(Usable(p) >= n, "hak_usable_size(block) >= requested");
  Check(Aligned(p, align), "the block is aligned");
  memset(p, 0x5a, n);
}

void AfterCall() {
  Emit(hakmem::g_process.ready() ? "ready_after_call=1\n" : "ready_after_call=0\n");
  Snapshot("after_call");
}

/// Makes the first call through `entry`, checks it, releases what it allocated.
void RunEntry(const char* entry) {
  auto is = [entry](const char* name) { return strcmp(entry, name) == 0; };
  if (is("malloc")) {
    void* p = malloc(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 16);
    free(p);
  } else if (is("calloc")) {
    auto* p = static_cast<unsigned char*>(calloc(Opaque(size_t{10}), 10));
    AfterCall();
    bool zero = p != nullptr;
    for (size_t i = 0; zero && i < 100; ++i) zero = p[i] == 0;
    Check(zero, "calloc's block is zeroed");
    CheckBlock(p, 100, 16);
    free(p);
  } else if (is("realloc")) {
    void* p = realloc(Opaque<void*>(nullptr), 100);
    AfterCall();
    CheckBlock(p, 100, 16);
    free(p);
  } else if (is("posix_memalign")) {
    void* p = nullptr;
    const int rc = posix_memalign(&p, 64, 100);
    AfterCall();
    Check(rc == 0, "posix_memalign returns 0");
    CheckBlock(p, 100, 64);
    free(p);
  } else if (is("aligned_alloc")) {
    void* p = aligned_alloc(64, Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 64);
    free(p);
  } else if (is("memalign")) {
    void* p = memalign(64, Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 64);
    free(p);
  } else if (is("valloc")) {
    void* p = valloc(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 4096);
    free(p);
  } else if (is("pvalloc")) {
    void* p = pvalloc(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 4096, 4096);
    free(p);
  } else if (is("free_null")) {
    errno = 77;
    free(Opaque<void*>(nullptr));
    Check(errno == 77, "free(NULL) keeps errno");
    AfterCall();
  } else if (is("free_foreign")) {
    int local = 0;
    errno = 77;
    free(Opaque(static_cast<void*>(&local)));  // on_error=report: reported, then ignored
    Check(errno == 77, "a rejected free keeps errno");
    AfterCall();
  } else if (is("malloc_usable_size_null")) {
    const size_t n = malloc_usable_size(Opaque<void*>(nullptr));
    Check(n == 0, "malloc_usable_size(NULL) == 0");
    AfterCall();
  } else if (is("mallinfo2")) {
    const struct mallinfo2 m = mallinfo2();
    Check(m.uordblks == 0 && m.hblks == 0 && m.hblkhd == 0, "nothing is live yet");
    AfterCall();
  } else if (is("malloc_trim")) {
    const int rc = malloc_trim(0);
    Check(rc == 0, "malloc_trim(0) has nothing to release");
    AfterCall();
  } else if (is("malloc_stats")) {
    malloc_stats();  // on stderr
    AfterCall();
  } else if (is("operator_new")) {
    void* p = ::operator new(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 16);
    ::operator delete(p, 100);
  } else if (is("operator_new_array")) {
    void* p = ::operator new[](Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 16);
    ::operator delete[](p, 100);
  } else if (is("nothrow_new")) {
    void* p = ::operator new(Opaque(size_t{100}), std::nothrow);
    AfterCall();
    CheckBlock(p, 100, 16);
    ::operator delete(p, std::nothrow);
  } else if (is("aligned_new")) {
    void* p = ::operator new (Opaque(size_t{100}), std::align_val_t{64});
    AfterCall();
    CheckBlock(p, 100, 64);
    ::operator delete (p, 100, std::align_val_t{64});
  } else if (is("hak_alloc")) {
    void* p = hak_alloc(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 16);
    hak_free(p);
  } else if (is("hak_stats_print")) {
    hak_stats_print(&EmitSink, nullptr);  // the table, on stdout
    AfterCall();
  } else if (is("malloc_after_many_tls_keys")) {
    // The program has used up glibc's 32 inline thread-specific slots before its first
    // malloc, so the allocator's own key lands in the second level (which glibc callocs).
    pthread_key_t keys[40];
    for (pthread_key_t& k : keys) Check(pthread_key_create(&k, nullptr) == 0, "pthread_key_create");
    void* p = malloc(Opaque(size_t{100}));
    AfterCall();
    CheckBlock(p, 100, 16);
    free(p);
  } else {
    Check(false, "unknown entry point");
  }
}

/// The whole child: record the state, make the first call, follow up, report, _exit.
[[noreturn]] void RunChild(const char* entry) {
  const bool ready_before = hakmem::g_process.ready();
  Emit(ready_before ? "ready_before=1\n" : "ready_before=0\n");
  RunEntry(entry);
  // Whatever came first, the allocator now works and counts.
  void* q = malloc(Opaque(size_t{40}));
  CheckBlock(q, 40, 16);
  free(q);
  Snapshot("after_followup");
  Emit(g_failures == 0 ? "child ok\n" : "child failed\n");
  _exit(g_failures == 0 ? 0 : 1);
}

/**
 * The child starts here, from the executable's .preinit_array: ld.so runs it before the
 * initializer of any shared library. A constructor, even with priority 101, would be too
 * late: libstdc++'s initializer mallocs its emergency exception pool (an 80 KiB block here) before
 * any constructor of the executable runs, so that malloc, not the entry point under test,
 * would be the first call.
 *
 * libc's initializer has not run yet either, so `environ` is still NULL; with
 * HAKMEM_FIRST_CALL the child sets it from envp (as libc is about to) so that the allocator
 * can read HAKMEM_OPTIONS; with HAKMEM_FIRST_CALL_RAW it leaves it alone.
 */
void PreinitChild(int, char**, char** envp) {
  static const char kHelped[] = "HAKMEM_FIRST_CALL=";
  static const char kRaw[] = "HAKMEM_FIRST_CALL_RAW=";
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    if (strncmp(*e, kHelped, sizeof(kHelped) - 1) == 0) {
      if (environ == nullptr) environ = envp;
      RunChild(*e + sizeof(kHelped) - 1);
    }
    if (strncmp(*e, kRaw, sizeof(kRaw) - 1) == 0) RunChild(*e + sizeof(kRaw) - 1);
  }
}

}  // namespace

__attribute__((section(".preinit_array"), used)) void (*const kDropinPreinitChild)(int, char**, char**) = &PreinitChild;

namespace {

// ================================================================ the parent

using hakmem_test::ChildResult;

ChildResult RunFirstCall(const char* var, const char* entry, const char* options) {
  // A small stack: an entry point that recursed into itself would otherwise take a minute to
  // overflow the default 8 MiB. The child needs only a few KiB.
  return hakmem_test::run_self({std::string(var) + "=" + entry, std::string("HAKMEM_OPTIONS=") + options}, 30000,
                               512 * 1024);
}

/// The JSON printed on the line starting with `label `; empty when missing.
std::string Line(const std::string& out, const std::string& label) {
  const size_t at = out.find(label + " {");
  if (at == std::string::npos) return "";
  const size_t end = out.find('\n', at);
  return out.substr(at + label.size() + 1, end - at - label.size() - 1);
}

int64_t Field(const std::string& json, const std::string& section, const std::string& key) {
  const size_t s = json.find("\"" + section + "\":{");
  if (s == std::string::npos) return -1;
  const size_t k = json.find("\"" + key + "\":", s);
  if (k == std::string::npos) return -1;
  return strtoll(json.c_str() + k + key.size() + 3, nullptr, 10);
}

constexpr int64_t kThreshold = 1 << 20;  // HAKMEM_OPTIONS=threshold=1m

/// What an entry point does when it comes first.
struct Expect {
  const char* entry;
  bool allocates;        // it makes one Pool block (released by the child afterwards)
  bool needs_allocator;  // it must initialize the allocator (else it may stay uninitialized)
  const char* options = "threshold=1m";
  int errors = 0;  // misuse reports the call makes
  const char* stdout_has = nullptr;
  const char* stderr_has = nullptr;
  int libc_allocs = 0;  // blocks libc itself allocates through hakmem during the call, kept live
};

void CheckChild(const Expect& x, const char* var = "HAKMEM_FIRST_CALL") {
  const ChildResult r = RunFirstCall(var, x.entry, x.options);
  const std::string all = "status " + std::to_string(r.status) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
  SCOPED_TRACE(all);
  ASSERT_TRUE(WIFEXITED(r.status)) << "the child crashed";
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_NE(r.out.find("child ok\n"), std::string::npos);
  EXPECT_EQ(r.out.find("check failed"), std::string::npos);
  EXPECT_EQ(r.out.rfind("ready_before=0\n", 0), 0u) << "the entry point under test must be the first call";

  const std::string call = Line(r.out, "after_call");
  ASSERT_FALSE(call.empty());
  if (x.needs_allocator) {
    EXPECT_NE(r.out.find("ready_after_call=1\n"), std::string::npos);
    EXPECT_EQ(Field(call, "selector", "threshold"), kThreshold) << "options read from the environment";
    EXPECT_EQ(Field(call, "pool", "allocs"), (x.allocates ? 1 : 0) + x.libc_allocs)
        << "exactly the call itself (and what libc allocates inside it) is counted";
    EXPECT_EQ(Field(call, "pool", "frees"), 0);
    EXPECT_EQ(Field(call, "map", "allocs"), 0);
    EXPECT_EQ(Field(call, "errors", "total"), x.errors);
  } else {
    // An uninitialized allocator reports zeros; an initialized one has counted nothing.
    EXPECT_EQ(Field(call, "pool", "allocs"), 0);
    EXPECT_EQ(Field(call, "errors", "total"), 0);
  }

  const std::string after = Line(r.out, "after_followup");
  ASSERT_FALSE(after.empty());
  const int64_t allocs = (x.allocates ? 1 : 0) + 1;
  EXPECT_EQ(Field(after, "selector", "threshold"), kThreshold) << "options read from the environment";
  EXPECT_EQ(Field(after, "pool", "allocs"), allocs + x.libc_allocs);
  EXPECT_EQ(Field(after, "pool", "frees"), allocs);
  if (x.libc_allocs == 0) {
    EXPECT_EQ(Field(after, "pool", "live_bytes"), 0);
  }
  EXPECT_EQ(Field(after, "map", "allocs"), 0);
  EXPECT_EQ(Field(after, "errors", "total"), x.errors);

  if (x.stdout_has != nullptr) {
    EXPECT_NE(r.out.find(x.stdout_has), std::string::npos) << x.stdout_has;
  }
  if (x.stderr_has != nullptr) {
    EXPECT_NE(r.err.find(x.stderr_has), std::string::npos) << x.stderr_has;
  } else {
    EXPECT_EQ(r.err, "") << "nothing on stderr";
  }
}

TEST(DropinFirstCall, Malloc) { CheckChild({"malloc", true, true}); }
TEST(DropinFirstCall, Calloc) { CheckChild({"calloc", true, true}); }
TEST(DropinFirstCall, ReallocNull) { CheckChild({"realloc", true, true}); }
TEST(DropinFirstCall, PosixMemalign) { CheckChild({"posix_memalign", true, true}); }
TEST(DropinFirstCall, AlignedAlloc) { CheckChild({"aligned_alloc", true, true}); }
TEST(DropinFirstCall, Memalign) { CheckChild({"memalign", true, true}); }
TEST(DropinFirstCall, Valloc) { CheckChild({"valloc", true, true}); }
TEST(DropinFirstCall, Pvalloc) { CheckChild({"pvalloc", true, true}); }
TEST(DropinFirstCall, FreeNull) { CheckChild({"free_null", false, false}); }
TEST(DropinFirstCall, FreeOfForeignPointerReported) {
  CheckChild({"free_foreign", false, true, "threshold=1m:on_error=report", 1, nullptr, "hakmem: invalid free of 0x"});
}
TEST(DropinFirstCall, MallocUsableSizeNull) { CheckChild({"malloc_usable_size_null", false, false}); }
TEST(DropinFirstCall, Mallinfo2) { CheckChild({"mallinfo2", false, false}); }
TEST(DropinFirstCall, MallocTrim) { CheckChild({"malloc_trim", false, false}); }
TEST(DropinFirstCall, MallocStats) {
  CheckChild({"malloc_stats", false, false, "threshold=1m", 0, nullptr, "hakmem stats\n"});
}
TEST(DropinFirstCall, OperatorNew) { CheckChild({"operator_new", true, true}); }
TEST(DropinFirstCall, OperatorNewArray) { CheckChild({"operator_new_array", true, true}); }
TEST(DropinFirstCall, NothrowNew) { CheckChild({"nothrow_new", true, true}); }
TEST(DropinFirstCall, AlignedNew) { CheckChild({"aligned_new", true, true}); }
TEST(DropinFirstCall, HakAlloc) { CheckChild({"hak_alloc", true, true}); }
TEST(DropinFirstCall, HakStatsPrint) {
  CheckChild({"hak_stats_print", false, false, "threshold=1m", 0, "hakmem stats\n", nullptr});
}

// A program that created more than 32 pthread keys before its first malloc: the allocator's
// key is then a second-level one, and glibc's pthread_setspecific callocs for it.
// glibc callocs its second-level key table inside the first call (pthread_setspecific for
// hakmem's own key): that nested calloc must be served, once, without recursing.
TEST(DropinFirstCall, MallocAfterManyTlsKeys) {
  Expect x{"malloc_after_many_tls_keys", true, true};
  x.libc_allocs = 1;
  CheckChild(x);
}

// The first call before libc's initializer has set `environ` (a .preinit_array function, or
// ld.so after relocation): HAKMEM_OPTIONS must still be honoured.
TEST(DropinFirstCall, BeforeLibcInitStillReadsOptions) { CheckChild({"malloc", true, true}, "HAKMEM_FIRST_CALL_RAW"); }

}  // namespace
