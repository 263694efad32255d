// The hak_* C API over the process allocator: round trips, calloc/realloc/aligned semantics, errno, flush, stats,
// options, call sites and the default abort on misuse.
#include <errno.h>
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "front/front.h"

// The program's default options (strong; the library's is weak). The tests below check the cap took effect.
extern "C" const char* hakmem_default_options(void) { return "cache=1m"; }

namespace {

void append(void* arg, const char* text, size_t len) { static_cast<std::string*>(arg)->append(text, len); }

std::string stats_table() {
  std::string s;
  hak_stats_print(append, &s);
  return s;
}

std::string stats_json() {
  std::string s;
  hak_stats_print_json(append, &s);
  return s;
}

/**
 * A small strict JSON reader: accepts exactly one value (objects, arrays, strings, numbers, literals) and
 * flattens every number to "a.b.c" -> value. Fails on anything unbalanced or trailing.
 */
class Json {
public:
  explicit Json(const std::string& text) : t_(text) {
    ok_ = value("");
    skip_ws();
    if (i_ != t_.size()) ok_ = false;
  }
  bool ok() const { return ok_; }
  bool has(const std::string& path) const { return paths_.count(path) != 0; }
  uint64_t num(const std::string& path) const {
    auto it = numbers_.find(path);
    return it == numbers_.end() ? ~uint64_t{0} : it->second;
  }

private:
  void skip_ws() {
    while (i_ < t_.size() && isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
  }
  bool string(std::string* out) {
    if (i_ >= t_.size() || t_[i_] != '"') return false;
    ++i_;
    while (i_ < t_.size() && t_[i_] != '"') {
      if (static_cast<unsigned char>(t_[i_]) < 0x20) return false;
      if (t_[i_] == '\\') ++i_;
      if (i_ < t_.size()) out->push_back(t_[i_++]);
    }
    if (i_ >= t_.size()) return false;
    ++i_;
    return true;
  }
  bool value(const std::string& path) {
    skip_ws();
    if (i_ >= t_.size()) return false;
    paths_[path] = true;
    const char c = t_[i_];
    if (c == '{') {
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == '}') return ++i_, true;
      for (;;) {
        skip_ws();
        std::string key;
        if (!string(&key)) return false;
        skip_ws();
        if (i_ >= t_.size() || t_[i_++] != ':') return false;
        if (!value(path.empty() ? key : path + "." + key)) return false;
        skip_ws();
        if (i_ >= t_.size()) return false;
        if (t_[i_] == ',') {
          ++i_;
          continue;
        }
        if (t_[i_] == '}') return ++i_, true;
        return false;
      }
    }
    if (c == '[') {
      ++i_;
      skip_ws();
      if (i_ < t_.size() && t_[i_] == ']') return ++i_, true;
      for (int n = 0;; ++n) {
        if (!value(path + "[" + std::to_string(n) + "]")) return false;
        skip_ws();
        if (i_ >= t_.size()) return false;
        if (t_[i_] == ',') {
          ++i_;
          continue;
        }
        if (t_[i_] == ']') return ++i_, true;
        return false;
      }
    }
    if (c == '"') {
      std::string s;
      return string(&s);
    }
    if (c == '-' || isdigit(static_cast<unsigned char>(c))) {
      const size_t start = i_;
      if (t_[i_] == '-') ++i_;
      while (i_ < t_.size() && (isdigit(static_cast<unsigned char>(t_[i_])) || strchr(".eE+-", t_[i_]))) ++i_;
      numbers_[path] = strtoull(t_.c_str() + start, nullptr, 10);
      return i_ > start;
    }
    for (const char* lit : {"true", "false", "null"}) {
      if (t_.compare(i_, strlen(lit), lit) == 0) {
        i_ += strlen(lit);
        return true;
      }
    }
    return false;
  }

  const std::string& t_;
  size_t i_ = 0;
  bool ok_ = false;
  std::map<std::string, bool> paths_;
  std::map<std::string, uint64_t> numbers_;
};

uint64_t json_stat(const char* path) {
  const std::string text = stats_json();
  const Json j(text);
  EXPECT_TRUE(j.ok()) << text;
  EXPECT_TRUE(j.has(path)) << path << " missing in " << text;
  return j.num(path);
}

/// The allocs figure of the "pool" row of the table.
uint64_t table_pool_allocs(const std::string& table) {
  const size_t at = table.find("\n  pool ");
  if (at == std::string::npos) return ~uint64_t{0};
  return strtoull(table.c_str() + at + strlen("\n  pool "), nullptr, 10);
}

void fill(void* p, size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(i * 131 + seed);
}

::testing::AssertionResult has_pattern(const void* p, size_t n, unsigned seed) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != static_cast<unsigned char>(i * 131 + seed)) {
      return ::testing::AssertionFailure() << "byte " << i << " of " << n << " changed";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return ::testing::AssertionFailure() << "byte " << i << " of " << n << " is " << int{b[i]};
  }
  return ::testing::AssertionSuccess();
}

const size_t kSizes[] = {0,          1,
                         15,         16,
                         17,         100,
                         128,        129,
                         1000,       4096,
                         65535,      65536,
                         65537,      256 * 1024 - 1,
                         256 * 1024, 256 * 1024 + 1,
                         1 << 20,    3 << 20,
                         8 << 20};

TEST(ApiHakmem, AllocFreeRoundTrips) {
  for (size_t n : kSizes) {
    SCOPED_TRACE(n);
    void* p = hak_alloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    EXPECT_GE(hak_usable_size(p), n);
    fill(p, n, 7);
    EXPECT_TRUE(has_pattern(p, n, 7));
    hak_free(p);
  }
  // Many live at once, with sites, freed in another order.
  std::vector<std::pair<void*, size_t>> live;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : kSizes) {
      void* p = hak_alloc_at(n + round, HAK_SITE);
      ASSERT_NE(p, nullptr);
      fill(p, n + round, static_cast<unsigned>(n + round));
      live.emplace_back(p, n + round);
    }
  }
  for (size_t i = live.size(); i-- > 0;) {
    EXPECT_TRUE(has_pattern(live[i].first, live[i].second, static_cast<unsigned>(live[i].second)));
    hak_free_at(live[i].first, HAK_SITE);
  }
  hak_free(nullptr);  // a no-op
}

TEST(ApiHakmem, CallocZeroes) {
  for (size_t n : kSizes) {
    SCOPED_TRACE(n);
    void* p = hak_calloc(1, n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, n));
    hak_free(p);
    void* q = hak_calloc(n, 1);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(all_zero(q, n));
    hak_free(q);
  }
  void* r = hak_calloc(1000, 24);
  ASSERT_NE(r, nullptr);
  EXPECT_GE(hak_usable_size(r), 24000u);
  EXPECT_TRUE(all_zero(r, 24000));
  hak_free(r);
}

TEST(ApiHakmem, CallocZeroesReusedBlocks) {
  // 300 KiB is a Map block under the default 256 KiB threshold and fits the large slot: its reuse is a warm hit.
  for (size_t n : {size_t{24}, size_t{200}, size_t{5000}, size_t{70000}, size_t{300 * 1024}}) {
    SCOPED_TRACE(n);
    // A reuse is a hit of this thread's large slot or of BigCache.
    const uint64_t hits_before = json_stat("hakmem.bigcache.hits") + json_stat("hakmem.map.slot_hits");
    void* p = hak_alloc(n);
    ASSERT_NE(p, nullptr);
    memset(p, 0xff, n);
    hak_free(p);
    void* q = hak_calloc(1, n);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(all_zero(q, n));
    if (n >= 256 * 1024) {
      EXPECT_GT(json_stat("hakmem.bigcache.hits") + json_stat("hakmem.map.slot_hits"), hits_before)
          << "expected a warm reuse";
    }
    hak_free(q);
  }
}

TEST(ApiHakmem, CallocOverflowIsEnomem) {
  errno = 0;
  EXPECT_EQ(hak_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_calloc(SIZE_MAX, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_calloc(size_t{1} << 32, size_t{1} << 32), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(ApiHakmem, HugeAllocIsEnomem) {
  errno = 0;
  EXPECT_EQ(hak_alloc(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_alloc(SIZE_MAX - 4096), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_realloc(nullptr, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(hak_aligned_alloc(64, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(ApiHakmem, ReallocNullAllocates) {
  void* p = hak_realloc(nullptr, 200);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(hak_usable_size(p), 200u);
  fill(p, 200, 3);
  EXPECT_TRUE(has_pattern(p, 200, 3));
  hak_free(p);
}

TEST(ApiHakmem, ReallocGrowsAndShrinksKeepingContent) {
  // Through Pool, across the threshold into Map, within Map, and back down into Pool.
  const size_t steps[] = {10, 100, 5000, 70000, 300 * 1024, 3 << 20, 8 << 20, 1 << 20, 200 * 1024, 1000, 16, 1};
  size_t have = 10;
  void* p = hak_alloc(have);
  ASSERT_NE(p, nullptr);
  fill(p, have, 11);
  for (size_t n : steps) {
    SCOPED_TRACE(std::to_string(have) + " -> " + std::to_string(n));
    void* q = hak_realloc(p, n);
    ASSERT_NE(q, nullptr);
    EXPECT_GE(hak_usable_size(q), n);
    EXPECT_TRUE(has_pattern(q, have < n ? have : n, 11)) << "I5: realloc keeps min(old, new) bytes";
    fill(q, n, 11);
    p = q;
    have = n;
  }
  hak_free(p);
}

TEST(ApiHakmem, ReallocToZeroFreesAndReturnsNull) {
  for (size_t n : {size_t{64}, size_t{1} << 20}) {
    SCOPED_TRACE(n);
    const bool map = n >= 256 * 1024;
    const char* frees = map ? "hakmem.map.frees" : "hakmem.pool.frees";
    void* p = hak_alloc(n);
    ASSERT_NE(p, nullptr);
    const uint64_t before = json_stat(frees);
    EXPECT_EQ(hak_realloc(p, 0), nullptr);
    EXPECT_EQ(json_stat(frees), before + 1) << "realloc(p, 0) must free p";
  }
}

TEST(ApiHakmem, AlignedAlloc) {
  void* p = hak_aligned_alloc(64, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_GE(hak_usable_size(p), 100u);
  fill(p, 100, 1);
  EXPECT_TRUE(has_pattern(p, 100, 1));
  hak_free(p);
  for (size_t align = 1; align <= (size_t{1} << 21); align <<= 1) {
    for (size_t n : {size_t{1}, size_t{100}, size_t{5000}, size_t{300 * 1024}}) {
      SCOPED_TRACE(std::to_string(align) + " / " + std::to_string(n));
      void* q = hak_aligned_alloc(align, n);
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u);
      EXPECT_GE(hak_usable_size(q), n);
      fill(q, n, 2);
      EXPECT_TRUE(has_pattern(q, n, 2));
      // An aligned block may be resized by realloc like any malloc block.
      void* r = hak_realloc(q, n + 1000);
      ASSERT_NE(r, nullptr);
      EXPECT_TRUE(has_pattern(r, n, 2));
      hak_free(r);
    }
  }
}

TEST(ApiHakmem, BadAlignmentIsEinval) {
  for (size_t align : {size_t{0}, size_t{3}, size_t{24}, size_t{100}, (size_t{1} << 20) + 1}) {
    SCOPED_TRACE(align);
    errno = 0;
    EXPECT_EQ(hak_aligned_alloc(align, 100), nullptr);
    EXPECT_EQ(errno, EINVAL);
  }
}

TEST(ApiHakmem, UsableSize) {
  EXPECT_EQ(hak_usable_size(nullptr), 0u);
  for (size_t n : kSizes) {
    void* p = hak_alloc(n);
    ASSERT_NE(p, nullptr);
    const size_t u = hak_usable_size(p);
    EXPECT_GE(u, n) << "I5";
    memset(p, 0x3c, u);  // all of it is the caller's
    hak_free(p);
  }
}

TEST(ApiHakmem, FlushEmptiesCacheAndPendingAndAllocationGoesOn) {
  std::vector<void*> v;
  for (int i = 0; i < 8; ++i) v.push_back(hak_alloc(300 * 1024 + i * 4096));
  for (void* p : v) {
    ASSERT_NE(p, nullptr);
    hak_free(p);
  }
  hak_flush();
  EXPECT_EQ(json_stat("hakmem.bigcache.bytes"), 0u) << "I10";
  EXPECT_EQ(json_stat("hakmem.bigcache.blocks"), 0u) << "I10";
  EXPECT_EQ(json_stat("hakmem.release.pending_bytes"), 0u) << "I10";
  hak_flush();  // twice is fine
  for (size_t n : kSizes) {
    void* p = hak_alloc(n);
    ASSERT_NE(p, nullptr);
    fill(p, n, 9);
    EXPECT_TRUE(has_pattern(p, n, 9));
    hak_free(p);
  }
}

TEST(ApiHakmem, StatsTableHasEverySectionAndCounts) {
  const std::string before = stats_table();
  for (const char* word : {"hakmem stats", "pool", "map", "bigcache", "release", "memory", "errors"}) {
    EXPECT_NE(before.find(word), std::string::npos) << word << " missing in:\n" << before;
  }
  const uint64_t pool_before = table_pool_allocs(before);
  ASSERT_NE(pool_before, ~uint64_t{0}) << before;
  const uint64_t json_before = json_stat("hakmem.pool.allocs");
  const uint64_t map_before = json_stat("hakmem.map.allocs");
  std::vector<void*> v;
  for (int i = 0; i < 10; ++i) v.push_back(hak_alloc(100));
  v.push_back(hak_alloc(1 << 20));
  for (void* p : v) hak_free(p);
  const std::string after = stats_table();
  EXPECT_GE(table_pool_allocs(after), pool_before + 10) << after;
  EXPECT_GE(json_stat("hakmem.pool.allocs"), json_before + 10);
  EXPECT_GE(json_stat("hakmem.map.allocs"), map_before + 1);
  EXPECT_EQ(json_stat("hakmem.pool.allocs"), table_pool_allocs(stats_table())) << "table and JSON disagree";
}

TEST(ApiHakmem, StatsJsonIsBalancedWithEverySection) {
  void* p = hak_alloc(1000);
  const std::string text = stats_json();
  hak_free(p);
  const Json j(text);
  ASSERT_TRUE(j.ok()) << "not valid JSON:\n" << text;
  for (const char* key : {"pool", "map", "bigcache", "release", "memory", "errors", "selector"}) {
    EXPECT_TRUE(j.has(std::string("hakmem.") + key)) << key << " missing in " << text;
  }
  EXPECT_GE(j.num("hakmem.pool.allocs"), 1u);
  EXPECT_EQ(j.num("hakmem.selector.threshold"), 256u * 1024);
  EXPECT_EQ(j.num("hakmem.errors.total"), 0u);
}

TEST(ApiHakmem, DefaultOptionsOfTheProgramAreHonoured) {
  // hakmem_default_options() above says cache=1m (unless HAKMEM_OPTIONS overrides it).
  if (getenv("HAKMEM_OPTIONS") != nullptr) GTEST_SKIP() << "HAKMEM_OPTIONS is set";
  void* p = hak_alloc(8);  // any entry point initializes
  hak_free(p);
  EXPECT_EQ(json_stat("hakmem.bigcache.cap"), 1048576u);
  EXPECT_NE(stats_table().find(": cap 1.0 MiB, max 1.0 GiB"), std::string::npos) << stats_table();
}

TEST(ApiHakmem, OptionsPrintListsEveryKey) {
  std::string doc;
  hak_options_print(append, &doc);
  ASSERT_FALSE(doc.empty());
  for (const hakmem::OptionSpec& s : hakmem::kOptionSpecs) {
    EXPECT_TRUE(doc.find(std::string(s.key) + " ") == 0 ||
                doc.find(std::string("\n") + s.key + " ") != std::string::npos)
        << s.key << " missing in:\n"
        << doc;
    EXPECT_NE(doc.find(s.doc), std::string::npos) << s.key;
  }
  for (const char* key : {"mode", "threshold", "cache", "batch", "decay_ms", "stats", "on_error", "origin_check"}) {
    EXPECT_NE(doc.find(key), std::string::npos) << key;
  }
}

__attribute__((noinline)) uintptr_t site_here() { return HAK_SITE; }

TEST(ApiHakmem, SiteIsNonZeroInsideAFunction) {
  EXPECT_NE(HAK_SITE, 0u);
  EXPECT_NE(site_here(), 0u);
  void* p = hak_alloc_at(64, site_here());
  ASSERT_NE(p, nullptr);
  hak_free_at(p, site_here());
}

using ApiHakmemDeathTest = ::testing::Test;

TEST(ApiHakmemDeathTest, DoubleFreeOfPoolBlockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = hak_alloc_at(48, HAK_SITE);
        hak_free_at(p, HAK_SITE);
        hak_free_at(p, HAK_SITE);
      },
      "hakmem: double free of 0x");
}

TEST(ApiHakmemDeathTest, DoubleFreeOfMapBlockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = hak_alloc_at(512 * 1024, HAK_SITE);
        hak_free_at(p, HAK_SITE);
        hak_free_at(p, HAK_SITE);
      },
      "hakmem: double free of 0x");
}

TEST(ApiHakmemDeathTest, InvalidFreeAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  static char not_ours[64];
  EXPECT_DEATH(hak_free(not_ours + 16), "hakmem: invalid");
}

}  // namespace
