// Tests of core/options.h: the option table, the allocation-free parser, find_env and the generated docs.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/core.h"

using namespace hakmem;

namespace {

/// Collects warnings; splits them into lines.
struct Warnings {
  std::string text;
  static void write(void* arg, const char* s, size_t n) { static_cast<Warnings*>(arg)->text.append(s, n); }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
      const size_t nl = text.find('\n', start);
      if (nl == std::string::npos) {
        out.push_back(text.substr(start));  // unterminated: the format check below fails on it
        break;
      }
      out.push_back(text.substr(start, nl - start + 1));
      start = nl + 1;
    }
    return out;
  }
};

struct Parsed {
  Options opts;
  size_t ret = 0;
  Warnings w;
};

Parsed parse(const char* text, Options start = Options{}) {
  Parsed p;
  p.opts = start;
  p.ret = parse_options(text, p.opts, &Warnings::write, &p.w);
  return p;
}

/// Every warning is one line, "hakmem: ...\n", and the parser counted it.
::testing::AssertionResult well_formed(const Parsed& p) {
  const auto lines = p.w.lines();
  if (lines.size() != p.ret)
    return ::testing::AssertionFailure() << "returned " << p.ret << " but wrote " << lines.size()
                                         << " lines: " << p.w.text;
  for (const std::string& l : lines) {
    if (l.rfind("hakmem: ", 0) != 0) return ::testing::AssertionFailure() << "no 'hakmem: ' prefix: " << l;
    if (l.back() != '\n') return ::testing::AssertionFailure() << "not newline-terminated: " << l;
    if (std::count(l.begin(), l.end(), '\n') != 1) return ::testing::AssertionFailure() << "multi-line: " << l;
  }
  return ::testing::AssertionSuccess();
}

bool same(const Options& a, const Options& b) { return memcmp(a.v, b.v, sizeof(a.v)) == 0; }

constexpr uint64_t kK = 1024;

}  // namespace

TEST(Options, DefaultsEqualTheTable) {
  const Options o;
  for (size_t i = 0; i < static_cast<size_t>(Opt::kCount); ++i) {
    const OptionSpec& s = kOptionSpecs[i];
    EXPECT_EQ(o.get(static_cast<Opt>(i)), s.def) << s.key;
    EXPECT_LE(s.min, s.def) << s.key;
    EXPECT_LE(s.def, s.max) << s.key;
    EXPECT_NE(s.key, nullptr);
    EXPECT_GT(strlen(s.doc), 0u) << s.key << " has no documentation";
    if (s.kind == OptionKind::kEnum) {
      const size_t words = 1 + static_cast<size_t>(std::count(s.words, s.words + strlen(s.words), '|'));
      EXPECT_EQ(s.max + 1, words) << s.key << ": every enum word must be a valid value";
    }
  }
  EXPECT_EQ(o.get(Opt::kMode), kModeFixed);
  EXPECT_EQ(o.get(Opt::kThreshold), 256 * kK);
  EXPECT_EQ(o.get(Opt::kStats), kStatsOff);
  EXPECT_EQ(o.get(Opt::kOnError), kOnErrorAbort);
}

TEST(Options, KeysAreUnique) {
  for (size_t i = 0; i < static_cast<size_t>(Opt::kCount); ++i)
    for (size_t j = i + 1; j < static_cast<size_t>(Opt::kCount); ++j)
      EXPECT_STRNE(kOptionSpecs[i].key, kOptionSpecs[j].key);
}

TEST(Options, ParsesSizesWithSuffixes) {
  const Parsed p = parse("threshold=1m:cache=64k:batch=2g");
  EXPECT_EQ(p.ret, 0u) << p.w.text;
  EXPECT_TRUE(p.w.text.empty()) << p.w.text;
  EXPECT_EQ(p.opts.get(Opt::kThreshold), 1024 * kK);
  EXPECT_EQ(p.opts.get(Opt::kCache), 64 * kK);
  EXPECT_EQ(p.opts.get(Opt::kBatch), 2 * kK * kK * kK);

  struct Case {
    const char* text;
    uint64_t cache;
  } cases[] = {
      {"cache=100", 100},
      {"cache=0", 0},
      {"cache=64k", 64 * kK},
      {"cache=64K", 64 * kK},
      {"cache=3m", 3 * kK * kK},
      {"cache=3M", 3 * kK * kK},
      {"cache=5g", 5 * kK * kK * kK},
      {"cache=5G", 5 * kK * kK * kK},
      {"cache=64KiB", 64 * kK},
      {"cache=64kb", 64 * kK},
      {"cache=64KB", 64 * kK},
      {"cache=7MiB", 7 * kK * kK},
      {"cache=1024g", uint64_t{1} << 40},
  };
  for (const Case& c : cases) {
    const Parsed q = parse(c.text);
    EXPECT_EQ(q.ret, 0u) << c.text << ": " << q.w.text;
    EXPECT_EQ(q.opts.get(Opt::kCache), c.cache) << c.text;
  }
}

TEST(Options, ParsesEnumsAndNumbers) {
  EXPECT_EQ(parse("stats=json").opts.get(Opt::kStats), kStatsJson);
  EXPECT_EQ(parse("stats=1").opts.get(Opt::kStats), kStatsText);
  EXPECT_EQ(parse("stats=0").opts.get(Opt::kStats), kStatsOff);
  EXPECT_EQ(parse("on_error=report").opts.get(Opt::kOnError), kOnErrorReport);
  EXPECT_EQ(parse("on_error=abort").opts.get(Opt::kOnError), kOnErrorAbort);
  EXPECT_EQ(parse("mode=learn").opts.get(Opt::kMode), kModeLearn);
  EXPECT_EQ(parse("origin_check=0").opts.get(Opt::kOriginCheck), 0u);
  EXPECT_EQ(parse("decay_ms=250").opts.get(Opt::kDecayMs), 250u);
  const Parsed p = parse("stats=json");
  EXPECT_EQ(p.ret, 0u);
  EXPECT_TRUE(p.w.text.empty());
}

TEST(Options, ColonAndCommaBothSeparate) {
  const Parsed p = parse("mode=learn,stats=json:on_error=report,threshold=512k");
  EXPECT_EQ(p.ret, 0u) << p.w.text;
  EXPECT_EQ(p.opts.get(Opt::kMode), kModeLearn);
  EXPECT_EQ(p.opts.get(Opt::kStats), kStatsJson);
  EXPECT_EQ(p.opts.get(Opt::kOnError), kOnErrorReport);
  EXPECT_EQ(p.opts.get(Opt::kThreshold), 512 * kK);
}

TEST(Options, LaterValueWins) {
  const Parsed p = parse("cache=1m:cache=2m");
  EXPECT_EQ(p.ret, 0u);
  EXPECT_EQ(p.opts.get(Opt::kCache), 2 * kK * kK);
}

TEST(Options, EmptyItemsAreNoOps) {
  Options start;
  start.set(Opt::kCache, 12345);
  for (const char* text : {"", ":", "::", ",", ",,:", ":::::::"}) {
    const Parsed p = parse(text, start);
    EXPECT_EQ(p.ret, 0u) << "'" << text << "'";
    EXPECT_TRUE(p.w.text.empty()) << "'" << text << "'";
    EXPECT_TRUE(same(p.opts, start)) << "'" << text << "'";
  }
  const Parsed p = parse("::cache=1k::", start);
  EXPECT_EQ(p.ret, 0u);
  EXPECT_EQ(p.opts.get(Opt::kCache), kK);
  Options o = start;
  EXPECT_EQ(parse_options(nullptr, o, &Warnings::write, nullptr), 0u);
  EXPECT_TRUE(same(o, start));
}

TEST(Options, UnknownKeyWarnsOnceAndOthersStillApply) {
  const Parsed p = parse("cache=1m:foo=1:stats=json");
  EXPECT_EQ(p.ret, 1u);
  EXPECT_TRUE(well_formed(p));
  ASSERT_EQ(p.w.lines().size(), 1u) << p.w.text;
  EXPECT_NE(p.w.text.find("'foo'"), std::string::npos) << p.w.text;
  EXPECT_EQ(p.opts.get(Opt::kCache), kK * kK);
  EXPECT_EQ(p.opts.get(Opt::kStats), kStatsJson);
}

TEST(Options, BadValueWarnsNamingKeyAndValueAndKeepsPrevious) {
  struct Case {
    const char* text;
    Opt opt;
    const char* key;
    const char* value;
  } cases[] = {
      {"cache=12q", Opt::kCache, "cache", "12q"},
      {"threshold=1k", Opt::kThreshold, "threshold", "1k"},    // below the 64k minimum
      {"threshold=64m", Opt::kThreshold, "threshold", "64m"},  // above the 32m maximum
      {"mode=fast", Opt::kMode, "mode", "fast"},
      {"stats=2", Opt::kStats, "stats", "2"},
      {"stats=JSON", Opt::kStats, "stats", "JSON"},
      {"on_error=", Opt::kOnError, "on_error", ""},
      {"cache=", Opt::kCache, "cache", ""},
      {"cache=k", Opt::kCache, "cache", "k"},
      {"cache=-1", Opt::kCache, "cache", "-1"},
      {"cache=1.5m", Opt::kCache, "cache", "1.5m"},
      {"cache=64b", Opt::kCache, "cache", "64b"},
      {"cache=64i", Opt::kCache, "cache", "64i"},
      {"cache=64x", Opt::kCache, "cache", "64x"},
      {"cache= 64k", Opt::kCache, "cache", " 64k"},
      {"cache=2048g", Opt::kCache, "cache", "2048g"},    // above the 1 TiB maximum
      {"decay_ms=1k", Opt::kDecayMs, "decay_ms", "1k"},  // a plain number takes no suffix
      {"decay_ms=3600001", Opt::kDecayMs, "decay_ms", "3600001"},
      {"cache=99999999999999999999", Opt::kCache, "cache", "99999999999999999999"},  // overflows 64 bits
      {"cache=18446744073709551616", Opt::kCache, "cache", "18446744073709551616"},  // 2^64
      {"cache=17179869184g", Opt::kCache, "cache", "17179869184g"},                  // 2^34 GiB = 2^64 bytes
      {"cache=18014398509481984k", Opt::kCache, "cache", "18014398509481984k"},      // 2^54 KiB
  };
  for (const Case& c : cases) {
    // Start from a valid non-default value, so "kept" is told apart from "reset to default".
    const OptionSpec& spec = kOptionSpecs[static_cast<size_t>(c.opt)];
    Options start;
    start.set(c.opt, spec.def != spec.max ? spec.max : spec.min);
    const Parsed p = parse(c.text, start);
    EXPECT_EQ(p.ret, 1u) << c.text << ": " << p.w.text;
    EXPECT_TRUE(well_formed(p)) << c.text;
    EXPECT_NE(p.w.text.find(std::string("'") + c.key + "'"), std::string::npos) << c.text << ": " << p.w.text;
    EXPECT_NE(p.w.text.find(std::string("value '") + c.value + "'"), std::string::npos) << c.text << ": " << p.w.text;
    EXPECT_TRUE(same(p.opts, start)) << c.text << ": previous value must be kept";
  }
}

TEST(Options, BadValueKeepsTheValueSetEarlierInTheSameString) {
  const Parsed p = parse("cache=2m:cache=12q");
  EXPECT_EQ(p.ret, 1u);
  EXPECT_EQ(p.opts.get(Opt::kCache), 2 * kK * kK);
}

TEST(Options, KeyWithoutEqualsIsRejected) {
  for (const char* text : {"cache", "stats", "mode"}) {
    const Parsed p = parse(text);
    EXPECT_EQ(p.ret, 1u) << text;
    EXPECT_TRUE(well_formed(p)) << text;
    EXPECT_NE(p.w.text.find(std::string("'") + text + "'"), std::string::npos) << p.w.text;
    EXPECT_TRUE(same(p.opts, Options{})) << text;
  }
}

TEST(Options, ReturnValueCountsEveryWarning) {
  const Parsed p = parse("foo=1:cache=12q:bar:threshold=1k:stats=json:,:mode=fast");
  EXPECT_EQ(p.ret, 5u) << p.w.text;
  EXPECT_TRUE(well_formed(p));
  EXPECT_EQ(p.opts.get(Opt::kStats), kStatsJson) << "the good key among bad ones applies";
  EXPECT_EQ(p.opts.get(Opt::kCache), Options{}.get(Opt::kCache));
}

TEST(Options, NullWarnSinkStillCountsWarnings) {
  Options o;
  EXPECT_EQ(parse_options("foo=1:cache=12q", o, nullptr, nullptr), 2u);
  EXPECT_TRUE(same(o, Options{}));
}

TEST(Options, FindEnvExactNameOnly) {
  ASSERT_EQ(setenv("HAKMEM_TEST_FIND_ENV", "cache=1m", 1), 0);
  ASSERT_EQ(setenv("HAKMEM_TEST_FIND_ENVX", "wrong", 1), 0);
  ASSERT_EQ(unsetenv("HAKMEM_TEST_FIND_EN"), 0);
  const char* v = find_env("HAKMEM_TEST_FIND_ENV");
  ASSERT_NE(v, nullptr);
  EXPECT_STREQ(v, "cache=1m");
  EXPECT_STREQ(find_env("HAKMEM_TEST_FIND_ENVX"), "wrong");
  EXPECT_EQ(find_env("HAKMEM_TEST_FIND_EN"), nullptr) << "a prefix of a set name must not match";
  EXPECT_EQ(find_env("HAKMEM_TEST_NOT_SET_ANYWHERE"), nullptr);

  // HAKMEM_OPTIONSX must not be taken for HAKMEM_OPTIONS.
  const char* saved = getenv("HAKMEM_OPTIONS");
  const std::string saved_copy = saved ? saved : "";
  ASSERT_EQ(unsetenv("HAKMEM_OPTIONS"), 0);
  ASSERT_EQ(setenv("HAKMEM_OPTIONSX", "stats=1", 1), 0);
  EXPECT_EQ(find_env("HAKMEM_OPTIONS"), nullptr);
  ASSERT_EQ(setenv("HAKMEM_OPTIONS", "", 1), 0);
  const char* empty = find_env("HAKMEM_OPTIONS");
  ASSERT_NE(empty, nullptr) << "set but empty is found";
  EXPECT_STREQ(empty, "");
  unsetenv("HAKMEM_OPTIONSX");
  unsetenv("HAKMEM_TEST_FIND_ENV");
  unsetenv("HAKMEM_TEST_FIND_ENVX");
  if (saved) {
    setenv("HAKMEM_OPTIONS", saved_copy.c_str(), 1);
  } else {
    unsetenv("HAKMEM_OPTIONS");
  }
}

TEST(Options, FindEnvValueContainingEquals) {
  ASSERT_EQ(setenv("HAKMEM_TEST_EQ", "a=b=c", 1), 0);
  EXPECT_STREQ(find_env("HAKMEM_TEST_EQ"), "a=b=c");
  unsetenv("HAKMEM_TEST_EQ");
}

TEST(Options, DocMentionsEveryKeyWithItsDefault) {
  std::string doc;
  print_options_doc([](void* arg, const char* s, size_t n) { static_cast<std::string*>(arg)->append(s, n); }, &doc);
  ASSERT_FALSE(doc.empty());
  EXPECT_EQ(static_cast<size_t>(std::count(doc.begin(), doc.end(), '\n')), static_cast<size_t>(Opt::kCount))
      << "one line per option";
  for (const OptionSpec& s : kOptionSpecs) {
    const std::string line_start = std::string(s.key) + "  (";
    const size_t at = doc.find(line_start);
    ASSERT_NE(at, std::string::npos) << "doc does not mention '" << s.key << "'";
    EXPECT_TRUE(at == 0 || doc[at - 1] == '\n') << s.key << " must start its line";
    const std::string line = doc.substr(at, doc.find('\n', at) - at);
    EXPECT_NE(line.find(s.doc), std::string::npos) << line;
    if (s.kind == OptionKind::kEnum) {
      // The default is printed as its word.
      std::string words = s.words;
      std::vector<std::string> list;
      for (size_t b = 0, e; b <= words.size(); b = e + 1) {
        e = words.find('|', b);
        if (e == std::string::npos) e = words.size();
        list.push_back(words.substr(b, e - b));
      }
      ASSERT_LT(s.def, list.size());
      EXPECT_NE(line.find("default " + list[s.def] + ")"), std::string::npos) << line;
    } else {
      EXPECT_NE(line.find("default " + std::to_string(s.def) + ")"), std::string::npos) << line;
    }
  }
}
