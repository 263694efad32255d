// The docs match the code: README's option table against the options table, layer READMEs present.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "core/core.h"

using namespace hakmem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The README's spelling of a size default: 256k, 64m, 8m.
std::string size_word(uint64_t v) {
  if (v != 0 && v % (1024 * 1024) == 0) return std::to_string(v / (1024 * 1024)) + "m";
  if (v != 0 && v % 1024 == 0) return std::to_string(v / 1024) + "k";
  return std::to_string(v);
}

std::string enum_word(const OptionSpec& s, uint64_t index) {
  std::string words = s.words;
  size_t start = 0;
  for (uint64_t i = 0; i < index; ++i) start = words.find('|', start) + 1;
  const size_t end = words.find('|', start);
  return words.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string row_of(const std::string& readme, const std::string& key) {
  const std::string head = "| `" + key + "` |";
  const size_t at = readme.find(head);
  if (at == std::string::npos) return "";
  return readme.substr(at, readme.find('\n', at) - at);
}

}  // namespace

TEST(Docs, ReadmeListsEveryOptionWithItsDefault) {
  const std::string readme = read_file(std::string(HAKMEM_SOURCE_DIR) + "/README.md");
  ASSERT_FALSE(readme.empty());
  for (const OptionSpec& s : kOptionSpecs) {
    const std::string row = row_of(readme, s.key);
    ASSERT_FALSE(row.empty()) << "README has no row for option '" << s.key << "'";
    std::string def;
    switch (s.kind) {
    case OptionKind::kSize: def = size_word(s.def); break;
    case OptionKind::kUint: def = std::to_string(s.def); break;
    case OptionKind::kEnum: def = enum_word(s, s.def); break;
    }
    EXPECT_NE(row.find("| `" + def + "` |"), std::string::npos)
        << "README row for '" << s.key << "' does not show the default `" << def << "`: " << row;
    if (s.kind == OptionKind::kEnum) {
      for (uint64_t i = 0; i <= s.max; ++i) {
        // A named string, not `"`" + enum_word(...)`: g++ 12 at -O3 flags that with a false -Wrestrict.
        const std::string word = enum_word(s, i);
        EXPECT_NE(row.find("`" + word + "`"), std::string::npos)
            << "README row for '" << s.key << "' misses the value " << word;
      }
    }
  }
}

TEST(Docs, ReadmeHasNoOptionTheCodeLacks) {
  const std::string readme = read_file(std::string(HAKMEM_SOURCE_DIR) + "/README.md");
  const size_t table = readme.find("| key | values | default | meaning |");
  ASSERT_NE(table, std::string::npos);
  std::istringstream lines(readme.substr(table));
  std::string line;
  std::getline(lines, line);  // header
  std::getline(lines, line);  // separator
  size_t rows = 0;
  while (std::getline(lines, line) && line.rfind("| `", 0) == 0) {
    const std::string key = line.substr(3, line.find('`', 3) - 3);
    bool known = false;
    for (const OptionSpec& s : kOptionSpecs) known = known || key == s.key;
    EXPECT_TRUE(known) << "README documents option '" << key << "' which the options table does not declare";
    ++rows;
  }
  EXPECT_EQ(rows, static_cast<size_t>(Opt::kCount));
}

TEST(Docs, EveryLayerHasAReadmeSayingWhatItMayInclude) {
  for (const char* layer : {"core", "pal", "header", "backing", "release", "cache", "select", "front"}) {
    const std::string text = read_file(std::string(HAKMEM_SOURCE_DIR) + "/src/" + layer + "/README.md");
    EXPECT_NE(text.find("Owns"), std::string::npos) << layer << "/README.md must say what the layer owns";
    EXPECT_NE(text.find("May include"), std::string::npos) << layer << "/README.md must say what it may include";
  }
}
