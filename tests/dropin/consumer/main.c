/* A C program that links hakmem::shim_static from the installed package: its plain malloc,
 * calloc, realloc and free must be hakmem's. It reads hakmem's statistics before and after
 * its own allocations through hak_stats_print_json and exits non-zero unless hakmem served
 * them (Pool and Map both) without reporting an error. */
#include <hakmem/hakmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char text[8192];
  size_t len;
} Buffer;

static void to_buffer(void* arg, const char* text, size_t len) {
  Buffer* b = (Buffer*)arg;
  if (len > sizeof b->text - 1 - b->len) len = sizeof b->text - 1 - b->len;
  memcpy(b->text + b->len, text, len);
  b->len += len;
  b->text[b->len] = '\0';
}

/* The number after "\"<section>\":{...\"<field>\":" in the JSON, or -1. */
static long long field(const char* json, const char* section, const char* name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":{", section);
  const char* s = strstr(json, key);
  if (!s) return -1;
  const char* end = strchr(s, '}');
  snprintf(key, sizeof key, "\"%s\":", name);
  const char* f = strstr(s, key);
  if (!f || (end && f > end)) return -1;
  return strtoll(f + strlen(key), NULL, 10);
}

/* Every block escapes through here: a compiler may otherwise elide a malloc whose block it can
 * see through (clang drops the calloc below, whose zeros it knows, and its free). */
static void* volatile sink;
static void* keep(void* p) {
  sink = p;
  return p;
}

static void snapshot(Buffer* b) {
  b->len = 0;
  b->text[0] = '\0';
  hak_stats_print_json(to_buffer, b);
}

int main(void) {
  static Buffer before, after;
  snapshot(&before);

  enum { kSmall = 1000 };
  void* blocks[kSmall];
  for (int i = 0; i < kSmall; ++i) {
    blocks[i] = keep(malloc((size_t)(i % 500) + 1));
    if (!blocks[i]) return 3;
    memset(blocks[i], i & 0xff, (size_t)(i % 500) + 1);
  }
  char* zeroed = keep(calloc(1000, 8));
  char* grown = keep(realloc(NULL, 16));
  grown = keep(realloc(grown, 100000));
  char* big = keep(malloc((size_t)4 << 20)); /* above the default 256 KiB threshold: Map */
  if (!zeroed || !grown || !big) return 3;
  for (size_t i = 0; i < 8000; ++i) {
    if (zeroed[i] != 0) return 4;
  }
  memset(big, 1, (size_t)4 << 20);
  if (hak_usable_size(big) < ((size_t)4 << 20)) return 5;
  for (int i = 0; i < kSmall; ++i) free(blocks[i]);
  free(zeroed);
  free(grown);
  free(big);

  snapshot(&after);
  fputs(after.text, stdout);
  if (after.len == 0 || after.text[after.len - 1] != '\n') fputc('\n', stdout);

  long long pool = field(after.text, "pool", "allocs") - field(before.text, "pool", "allocs");
  long long map = field(after.text, "map", "allocs") - field(before.text, "map", "allocs");
  long long frees = field(after.text, "pool", "frees") + field(after.text, "map", "frees") -
                    field(before.text, "pool", "frees") - field(before.text, "map", "frees");
  long long errors = field(after.text, "errors", "total");
  printf("consumer: pool allocs +%lld, map allocs +%lld, frees +%lld, errors %lld\n", pool, map, frees, errors);
  if (pool < kSmall + 2 || map < 1 || frees < kSmall + 3 || errors != 0) {
    printf("consumer: FAIL: malloc was not served by hakmem::shim_static\n");
    return 1;
  }
  printf("consumer: OK\n");
  return 0;
}
