// One misuse per case, run under LD_PRELOAD=libhakmem.so with hardening=paranoid by
// tests/dropin/paranoid_misuse.sh, which checks the exact report (or the fault) each must give.
// The case functions are extern "C", never inlined, and the binary exports its symbols, so a
// report's "allocated at case_overflow1+0x.." names the function that made the block.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <new>

#define CASE extern "C" __attribute__((noinline)) void

namespace {
// Keeps the compiler from proving a use dead or a pointer stale (it may know free's semantics).
unsigned char* volatile g_keep;
volatile unsigned char g_sink;
void* launder(void* p) {
  g_keep = static_cast<unsigned char*>(p);
  return g_keep;
}
/// Many small malloc/free pairs of other sizes and sites.
__attribute__((noinline)) void churn(int n, size_t size) {
  for (int i = 0; i < n; ++i) {
    void* q = malloc(size);
    memset(q, 0x5a, size);
    free(q);
  }
}
}  // namespace

CASE case_overflow1() {
  auto* p = static_cast<unsigned char*>(launder(malloc(24)));
  memset(p, 1, 24);
  p[24] = 0;  // one byte past the request
  free(p);
}
CASE case_overflow8() {
  auto* p = static_cast<unsigned char*>(launder(malloc(24)));
  memset(p, 1, 32);  // eight bytes past it
  free(p);
}
CASE case_underflow() {
  auto* p = static_cast<unsigned char*>(launder(malloc(24)));
  p[-1] ^= 0x40;  // into the header
  free(p);
}
CASE case_write_after_free() {
  auto* p = static_cast<unsigned char*>(launder(malloc(32)));
  memset(p, 1, 32);
  free(p);
  static_cast<unsigned char*>(launder(p))[20] = 'x';
  for (int i = 0; i < 100000; ++i) {  // the block leaves the quarantine somewhere in here
    void* q = malloc(32);
    free(q);
  }
}
CASE case_write_after_free_large() {
  auto* p = static_cast<unsigned char*>(launder(malloc(4 << 20)));
  memset(p, 1, 4 << 20);
  free(p);
  static_cast<unsigned char*>(launder(p))[1 << 20] = 1;  // faults here
}
CASE case_read_after_free_large() {
  auto* p = static_cast<unsigned char*>(launder(malloc(1 << 20)));
  memset(p, 1, 1 << 20);
  free(p);
  g_sink = static_cast<unsigned char*>(launder(p))[4096];  // faults here
}
CASE case_zero_size_read() {
  auto* p = static_cast<unsigned char*>(launder(malloc(0)));
  g_sink = p[0];  // faults here
}
CASE case_double_free_immediate() {
  void* p = launder(malloc(40));
  free(p);
  free(launder(p));
}
CASE case_double_free_interleaved() {
  void* a = launder(malloc(40));
  void* b = launder(malloc(40));
  free(a);
  free(b);
  free(launder(a));
}
CASE case_double_free_delayed() {
  void* a = launder(malloc(40));
  free(a);
  churn(200000, 200);  // far more than the quarantine holds, in another size class
  free(launder(a));
}
CASE case_free_of_new() { free(launder(new int(7))); }
CASE case_delete_of_malloc() { delete static_cast<int*>(launder(malloc(sizeof(int)))); }
CASE case_delete_of_new_array() { delete static_cast<int*>(launder(new int[4])); }
CASE case_delete_array_of_new() { delete[] static_cast<int*>(launder(new int(1))); }
CASE case_silent() {
  // Correct use: fill exactly the usable size, realloc, fill again, free; zero-size blocks; new/delete.
  for (size_t n : {size_t{1}, size_t{24}, size_t{100}, size_t{5000}, size_t{300000}, size_t{3} << 20}) {
    auto* p = static_cast<unsigned char*>(malloc(n));
    const size_t u = malloc_usable_size(p);
    if (u != n) {
      fprintf(stderr, "malloc_usable_size(%zu-byte block) = %zu\n", n, u);
      exit(3);
    }
    memset(p, 0x11, u);
    p = static_cast<unsigned char*>(realloc(p, n * 2 + 7));
    memset(p, 0x22, malloc_usable_size(p));
    free(p);
  }
  for (int i = 0; i < 1000; ++i) free(malloc(0));
  churn(50000, 64);
  delete new int(1);
  delete[] new int[10];
  puts("silent: ok");
}

int main(int argc, char** argv) {
  struct Case {
    const char* name;
    void (*fn)();
  };
  static const Case kCases[] = {
      {"overflow1", case_overflow1},
      {"overflow8", case_overflow8},
      {"underflow", case_underflow},
      {"write_after_free", case_write_after_free},
      {"write_after_free_large", case_write_after_free_large},
      {"read_after_free_large", case_read_after_free_large},
      {"zero_size_read", case_zero_size_read},
      {"double_free_immediate", case_double_free_immediate},
      {"double_free_interleaved", case_double_free_interleaved},
      {"double_free_delayed", case_double_free_delayed},
      {"free_of_new", case_free_of_new},
      {"delete_of_malloc", case_delete_of_malloc},
      {"delete_of_new_array", case_delete_of_new_array},
      {"delete_array_of_new", case_delete_array_of_new},
      {"silent", case_silent},
  };
  if (argc == 2) {
    for (const Case& c : kCases) {
      if (strcmp(c.name, argv[1]) == 0) {
        c.fn();
        return 0;
      }
    }
  }
  fprintf(stderr, "usage: %s <case>\n", argv[0]);
  return 2;
}
