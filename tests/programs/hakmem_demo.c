/* A small workload through the hak_* API: a word-count table, growing buffers and large
 * scratch blocks reused through BigCache; prints hakmem's statistics at the end. */
#include <hakmem/hakmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  char* word;
  unsigned count;
  struct entry* next;
};

static void to_stdout(void* arg, const char* text, size_t len) {
  (void)arg;
  fwrite(text, 1, len, stdout);
}

static unsigned hash(const char* s) {
  unsigned h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

int main(int argc, char** argv) {
  unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 20;
  enum { kBuckets = 4096 };
  struct entry** table = hak_calloc(kBuckets, sizeof(*table));
  if (table == NULL) return 1;
  unsigned seed = 12345;
  size_t distinct = 0;
  for (unsigned r = 0; r < rounds; ++r) {
    /* Small objects: words of 3-24 letters counted in a chained hash table. */
    for (unsigned i = 0; i < 5000; ++i) {
      char word[32];
      seed = seed * 1103515245u + 12345u;
      size_t n = 3 + (seed >> 16) % 22;
      for (size_t k = 0; k < n; ++k) word[k] = (char)('a' + ((seed >> (k % 16)) + k) % 6);
      word[n] = '\0';
      unsigned b = hash(word) % kBuckets;
      struct entry* e = table[b];
      while (e != NULL && strcmp(e->word, word) != 0) e = e->next;
      if (e == NULL) {
        e = hak_alloc(sizeof(*e));
        e->word = hak_alloc(n + 1);
        memcpy(e->word, word, n + 1);
        e->count = 0;
        e->next = table[b];
        table[b] = e;
        ++distinct;
      }
      e->count++;
    }
    /* A growing buffer: realloc keeps the contents. */
    char* log = NULL;
    size_t len = 0;
    for (unsigned i = 0; i < 200; ++i) {
      log = hak_realloc(log, len + 64);
      len += (size_t)snprintf(log + len, 64, "round %u line %u\n", r, i);
    }
    hak_free(log);
    /* Large scratch blocks (Map path): 2 MiB and 512 KiB, reused warm from BigCache. */
    for (unsigned i = 0; i < 4; ++i) {
      unsigned char* big = hak_alloc(2u << 20);
      unsigned char* mid = hak_aligned_alloc(4096, 512u << 10);
      for (size_t off = 0; off < (2u << 20); off += 4096) big[off] = (unsigned char)off;
      memset(mid, 0x5a, 512u << 10);
      hak_free(mid);
      hak_free(big);
    }
  }
  size_t total = 0;
  for (unsigned b = 0; b < kBuckets; ++b) {
    struct entry* e = table[b];
    while (e != NULL) {
      struct entry* next = e->next;
      total += e->count;
      hak_free(e->word);
      hak_free(e);
      e = next;
    }
  }
  hak_free(table);
  printf("hakmem_demo: %u rounds, %zu words counted, %zu distinct\n", rounds, total, distinct);
  hak_flush();
  hak_stats_print(to_stdout, NULL);
  return total == (size_t)rounds * 5000 ? 0 : 1;
}
