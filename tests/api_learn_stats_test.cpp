// The process allocator in learn mode, seen through its exit statistics (stats=1 and stats=json).
//
// The test re-executes this binary as a child with HAKMEM_OPTIONS=mode=learn:stats=...:
// epoch_requests=200. Before main() the child runs a large-request workload through hak_alloc /
// hak_free from two functions (the busy one makes three times the requests of the quiet one),
// prints where those functions are, and exits through exit(), which runs hakmem's exit hook and
// prints the stats. The parent checks the learner's part of them: the lifecycle state, epochs
// counted, the ELO leaderboard (twelve ranked rows, finite ratings, the strategy in force marked
// once) and the per-site profile (the workload's call site first, with its exact request count).
//
// Guards (ARCHITECTURE.md): "Options, stats, tools" (stats=1 prints the ELO leaderboard and the
// lifecycle state; stats=json the same as JSON) and "Selector" (modes, epochs, per-site use).
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bitset>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "select/selector.h"
#include "support/self_exec.h"

namespace {

constexpr int kBusyRequests = 3000;
constexpr int kQuietRequests = 1000;  // 3:1
constexpr uint64_t kEpochRequests = 200;
constexpr int kStrategies = hakmem::kLearnableStrategies;

/// Large requests in [64 KiB, 1 MiB) through hak_alloc/hak_free: one call site per function.
__attribute__((noinline)) void busy_workload(int n) {
  for (int i = 0; i < n; ++i) {
    auto* p = static_cast<unsigned char*>(hak_alloc(64 * 1024 + static_cast<size_t>(i % 16) * 60 * 1024));
    if (p == nullptr) _exit(3);
    p[0] = static_cast<unsigned char>(i);
    hak_free(p);
  }
}
__attribute__((noinline)) void quiet_workload(int n) {
  for (int i = 0; i < n; ++i) {
    auto* p = static_cast<unsigned char*>(hak_alloc(128 * 1024 + static_cast<size_t>(i % 8) * 100 * 1024));
    if (p == nullptr) _exit(4);
    p[0] = static_cast<unsigned char>(i);
    hak_free(p);
  }
}

/// Re-runs this binary as the child with HAKMEM_OPTIONS set; returns its stderr. `child` is the
/// value of HAKMEM_LEARN_STATS_CHILD: "warm" makes one small request before the workload, "cold"
/// lets the workload's first large request be the call that initializes the allocator.
std::string run_child(const char* options, int* status, const char* child = "warm") {
  const hakmem_test::ChildResult r = hakmem_test::run_self(
      {std::string("HAKMEM_OPTIONS=") + options, std::string("HAKMEM_LEARN_STATS_CHILD=") + child});
  *status = r.status;
  return r.err;
}

/// Where the child's workload functions are (it prints "workloads busy=0x... quiet=0x...").
struct Workloads {
  uintptr_t busy = 0, quiet = 0;
};
Workloads workloads_of(const std::string& err) {
  Workloads w;
  std::smatch m;
  if (std::regex_search(err, m, std::regex("workloads busy=0x([0-9a-f]+) quiet=0x([0-9a-f]+)\n"))) {
    w.busy = std::stoull(m[1].str(), nullptr, 16);
    w.quiet = std::stoull(m[2].str(), nullptr, 16);
  }
  return w;
}
/// A call site inside a function starting at `fn` (these functions are far smaller than 512 bytes).
bool site_in(uintptr_t site, uintptr_t fn) { return fn != 0 && site > fn && site < fn + 512; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// How the table prints a size (Out::size): binary unit, one truncated decimal.
std::string size_text(uint64_t v) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  uint64_t whole = v, rem = 0;
  while (whole >= 1024 && u < 4) {
    rem = whole % 1024;
    whole /= 1024;
    ++u;
  }
  std::string s = std::to_string(whole);
  if (u > 0) {
    // Appended piecewise: g++ 12 at -O3 flags `"." + std::string&&` with a false -Wrestrict.
    s += '.';
    s += std::to_string(rem * 10 / 1024);
  }
  return s + " " + units[u];
}

/// A minimal strict JSON validator (RFC 8259 grammar, no extensions): true when `s` is one value.
class JsonValidator {
public:
  explicit JsonValidator(const std::string& s) : s_(s) {}
  bool valid() {
    ws();
    if (!value()) return false;
    ws();
    return i_ == s_.size();
  }

private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool lit(const char* w) {
    const size_t n = strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  bool string() {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      if (s_[i_] == '\\') {
        ++i_;
      } else if (s_[i_] == '"') {
        ++i_;
        return true;
      } else if (static_cast<unsigned char>(s_[i_]) < 0x20) {
        return false;
      }
    }
    return false;
  }
  bool number() {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) return false;
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) return false;
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) return false;
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    return i_ > start;
  }
  bool value() {
    if (++depth_ > 64) return false;
    ws();
    bool ok = false;
    if (i_ >= s_.size()) {
      ok = false;
    } else if (s_[i_] == '{') {
      ok = members('}', true);
    } else if (s_[i_] == '[') {
      ok = members(']', false);
    } else if (s_[i_] == '"') {
      ok = string();
    } else if (s_[i_] == 't') {
      ok = lit("true");
    } else if (s_[i_] == 'f') {
      ok = lit("false");
    } else if (s_[i_] == 'n') {
      ok = lit("null");
    } else {
      ok = number();
    }
    --depth_;
    return ok;
  }
  bool members(char close, bool object) {
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == close) {
      ++i_;
      return true;
    }
    for (;;) {
      ws();
      if (object) {
        if (!string()) return false;
        ws();
        if (i_ >= s_.size() || s_[i_++] != ':') return false;
      }
      if (!value()) return false;
      ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == close) {
        ++i_;
        return true;
      }
      return false;
    }
  }

  const std::string& s_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

// The re-executed child: the workload runs before main(), then exit() runs hakmem's exit hook,
// which prints the stats to stderr.
const bool kIsChild = [] {
  const char* mode = getenv("HAKMEM_LEARN_STATS_CHILD");
  if (mode == nullptr) return false;
  if (strcmp(mode, "cold") != 0) hak_free(hak_alloc(16));  // initializes the allocator
  quiet_workload(kQuietRequests / 2);                      // the quiet site is seen first: order must come from counts
  busy_workload(kBusyRequests);
  quiet_workload(kQuietRequests - kQuietRequests / 2);
  char line[128];
  const int n = snprintf(line, sizeof(line), "workloads busy=%p quiet=%p\n", reinterpret_cast<void*>(&busy_workload),
                         reinterpret_cast<void*>(&quiet_workload));
  if (n > 0 && write(2, line, static_cast<size_t>(n)) < 0) _exit(5);
  exit(0);
}();

// stats=1 in learn mode: the table has the learner section (state, epochs), a twelve-row
// leaderboard ranked best first with the row in force marked once, and the busy site on top.
TEST(LearnStats, TableShowsLifecycleLeaderboardAndSites) {
  int status = 0;
  const std::string err = run_child("mode=learn:stats=1:epoch_requests=200:learn_sample=1:early_end=0", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  ASSERT_NE(err.find("hakmem stats"), std::string::npos) << err;
  const Workloads w = workloads_of(err);
  ASSERT_NE(w.busy, 0u) << err;

  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex("\n  selector  mode learn, strategy ([0-9]+), threshold "))) << err;
  const int in_force = std::stoi(m[1].str());
  ASSERT_LT(in_force, kStrategies) << "learn mode runs one of the twelve";

  ASSERT_TRUE(std::regex_search(
      err, m,
      std::regex(
          "\n  learner   (LEARN|FROZEN|CANARY)(?: on strategy ([0-9]+) \\([^)]*\\))?; ([0-9]+) epochs \\(([0-9]+) "
          "scored\\), ([0-9]+) matches\n")))
      << "no learner section: " << err;
  const std::string state = m[1].str();
  const uint64_t epochs = std::stoull(m[3].str());
  EXPECT_GT(epochs, 0u) << err;
  EXPECT_LE(epochs, (kBusyRequests + kQuietRequests) / kEpochRequests + 1) << err;
  EXPECT_GE(epochs, (kBusyRequests + kQuietRequests) / kEpochRequests - 1) << err;
  EXPECT_EQ(m[2].matched, state != "LEARN") << "FROZEN and CANARY name the frozen strategy: " << err;

  // The leaderboard: the header line, then twelve rows, rank 1..12.
  const std::vector<std::string> lines = lines_of(err);
  size_t at = 0;
  while (at < lines.size() && lines[at] != "  rank  strategy  threshold     rating      W/L/D  epochs") ++at;
  ASSERT_LT(at + kStrategies, lines.size()) << "no leaderboard: " << err;
  const std::regex row_re("^ +([0-9]+) +([0-9]+)  ([0-9]+\\.[0-9] [KMG]?i?B)  (-?[0-9]+\\.[0-9])  "
                          "([0-9]+)/([0-9]+)/([0-9]+)  ([0-9]+)(  <- "
                          "in force)?$");
  std::bitset<kStrategies> seen;
  int marked = 0, marked_strategy = -1;
  uint64_t board_epochs = 0;
  double previous = INFINITY;
  for (int r = 0; r < kStrategies; ++r) {
    const std::string& line = lines[at + 1 + r];
    ASSERT_TRUE(std::regex_match(line, m, row_re)) << "leaderboard row " << r + 1 << ": '" << line << "'\n" << err;
    EXPECT_EQ(std::stoi(m[1].str()), r + 1) << line;
    const int strategy = std::stoi(m[2].str());
    ASSERT_LT(strategy, kStrategies) << line;
    EXPECT_FALSE(seen.test(strategy)) << "strategy listed twice: " << line;
    seen.set(strategy);
    EXPECT_EQ(m[3].str(), size_text(hakmem::kStrategyThresholds[strategy])) << line;
    const double rating = std::strtod(m[4].str().c_str(), nullptr);
    EXPECT_TRUE(std::isfinite(rating)) << line;
    EXPECT_LE(rating, previous) << "not ranked best first: " << line;
    previous = rating;
    board_epochs += std::stoull(m[8].str());
    if (m[9].matched) {
      ++marked;
      marked_strategy = strategy;
    }
  }
  EXPECT_TRUE(seen.all()) << err;
  EXPECT_EQ(marked, 1) << "exactly one row is in force: " << err;
  EXPECT_EQ(marked_strategy, in_force) << err;
  EXPECT_EQ(board_epochs, epochs) << "each epoch ran one strategy of the board: " << err;

  // Top sites: the busy workload first, with its exact count.
  const size_t sites = err.find("\n  top sites of large requests\n");
  ASSERT_NE(sites, std::string::npos) << err;
  const std::string after = err.substr(sites);
  ASSERT_TRUE(std::regex_search(after, m,
                                std::regex("^\n  top sites of large requests\n    ([0-9]+) requests, [^\n]*\n"
                                           "    ([0-9]+) requests, ")))
      << err;
  EXPECT_EQ(std::stoi(m[1].str()), kBusyRequests) << err;
  EXPECT_EQ(std::stoi(m[2].str()), kQuietRequests) << err;
}

// stats=json in learn mode: well-formed JSON whose "learner" object holds the state, epochs and a
// twelve-object leaderboard (rank, strategy, threshold, rating, W/L/D, epochs, active) with finite
// ratings and exactly one active entry, the strategy in force; "sites" lists the busy call site first.
TEST(LearnStats, JsonHasLearnerLeaderboardAndSites) {
  int status = 0;
  const std::string err = run_child("mode=learn:stats=json:epoch_requests=200:learn_sample=1:early_end=0", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  const Workloads w = workloads_of(err);
  ASSERT_NE(w.busy, 0u) << err;
  const size_t start = err.find("{\"hakmem\":");
  ASSERT_NE(start, std::string::npos) << "no JSON stats at exit: " << err;
  const size_t end = err.find('\n', start);
  const std::string json = err.substr(start, end == std::string::npos ? std::string::npos : end - start);
  EXPECT_TRUE(JsonValidator(json).valid()) << "not valid JSON: " << json;

  std::smatch m;
  ASSERT_TRUE(std::regex_search(json, m, std::regex("\"selector\":\\{\"mode\":\"learn\",\"strategy\":([0-9]+),")))
      << json;
  const int in_force = std::stoi(m[1].str());
  ASSERT_TRUE(std::regex_search(
      json, m,
      std::regex("\"learner\":\\{\"state\":\"(LEARN|FROZEN|CANARY)\",\"frozen\":([0-9]+),\"epochs\":([0-9]+),")))
      << json;
  const uint64_t epochs = std::stoull(m[3].str());
  EXPECT_GT(epochs, 0u) << json;
  if (m[1].str() != "LEARN") {
    EXPECT_LT(std::stoi(m[2].str()), kStrategies) << json;
  }

  const size_t lb = json.find("\"leaderboard\":[");
  ASSERT_NE(lb, std::string::npos) << json;
  const size_t lb_end = json.find(']', lb);
  ASSERT_NE(lb_end, std::string::npos) << json;
  const std::string board = json.substr(lb + 15, lb_end - lb - 15);
  const std::regex object_re("\\{[^{}]*\\}");
  const std::regex entry_re(
      "\\{\"rank\":([0-9]+),\"strategy\":([0-9]+),\"threshold\":([0-9]+),\"rating\":([^,]+),\"wins\":([0-9]+),"
      "\"losses\":([0-9]+),\"draws\":([0-9]+),\"epochs\":([0-9]+),\"active\":(true|false)\\}");
  int objects = 0, active = 0, active_strategy = -1;
  std::bitset<kStrategies> seen;
  uint64_t board_epochs = 0;
  double previous = INFINITY;
  for (auto it = std::sregex_iterator(board.begin(), board.end(), object_re); it != std::sregex_iterator(); ++it) {
    const std::string entry = it->str();
    ++objects;
    std::smatch e;
    ASSERT_TRUE(std::regex_match(entry, e, entry_re)) << "leaderboard entry " << objects << ": " << entry;
    EXPECT_EQ(std::stoi(e[1].str()), objects) << entry;
    const int strategy = std::stoi(e[2].str());
    ASSERT_LT(strategy, kStrategies) << entry;
    EXPECT_FALSE(seen.test(strategy)) << entry;
    seen.set(strategy);
    EXPECT_EQ(std::stoull(e[3].str()), hakmem::kStrategyThresholds[strategy]) << entry;
    const std::string rating_text = e[4].str();  // `rest` points into it: it must outlive the check
    char* rest = nullptr;
    const double rating = std::strtod(rating_text.c_str(), &rest);
    EXPECT_TRUE(rest != nullptr && *rest == '\0' && std::isfinite(rating)) << "rating not a finite number: " << entry;
    EXPECT_LE(rating, previous) << "not ranked best first: " << entry;
    previous = rating;
    board_epochs += std::stoull(e[8].str());
    if (e[9].str() == "true") {
      ++active;
      active_strategy = strategy;
    }
  }
  EXPECT_EQ(objects, kStrategies) << board;
  EXPECT_TRUE(seen.all()) << board;
  EXPECT_EQ(active, 1) << board;
  EXPECT_EQ(active_strategy, in_force) << json;
  EXPECT_EQ(board_epochs, epochs) << json;

  // Sites: the busy workload's call site first, then the quiet one, with exact counts.
  ASSERT_TRUE(std::regex_search(json, m,
                                std::regex("\"sites\":\\[\\{\"site\":\"0x([0-9a-f]+)\",\"requests\":([0-9]+),\"bytes\":"
                                           "([0-9]+)\\},\\{\"site\":\"0x([0-9a-f]+)\",\"requests\":([0-9]+),")))
      << json;
  const uintptr_t first = std::stoull(m[1].str(), nullptr, 16);
  const uintptr_t second = std::stoull(m[4].str(), nullptr, 16);
  EXPECT_TRUE(site_in(first, w.busy)) << std::hex << "first site 0x" << first << " is not in busy_workload at 0x"
                                      << w.busy << "\n"
                                      << err;
  EXPECT_EQ(std::stoi(m[2].str()), kBusyRequests) << json;
  uint64_t bytes = 0;
  for (int i = 0; i < kBusyRequests; ++i) bytes += 64 * 1024 + static_cast<uint64_t>(i % 16) * 60 * 1024;
  EXPECT_EQ(std::stoull(m[3].str()), bytes) << json;
  EXPECT_TRUE(site_in(second, w.quiet)) << std::hex << "second site 0x" << second << " is not in quiet_workload at 0x"
                                        << w.quiet << "\n"
                                        << err;
  EXPECT_EQ(std::stoi(m[5].str()), kQuietRequests) << json;
}

// The first call into the process allocator initializes it. When that call is a large request in
// learn mode, it must be counted like every other: in its site's profile and in the epoch.
TEST(LearnStats, FirstCallLargeRequestIsProfiled) {
  int status = 0;
  // Epochs end by request count only: no early end (judged on measured time, which a sanitizer
  // run or a busy machine skews) and no time limit, so 4000 requests are exactly 20 epochs.
  const std::string err = run_child(
      "mode=learn:stats=json:epoch_requests=200:learn_sample=1:early_end=0:epoch_ms=3600000", &status, "cold");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m,
                                std::regex("\"sites\":\\[\\{\"site\":\"0x[0-9a-f]+\",\"requests\":([0-9]+),\"bytes\":"
                                           "[0-9]+\\},\\{\"site\":\"0x[0-9a-f]+\",\"requests\":([0-9]+),")))
      << err;
  EXPECT_EQ(std::stoi(m[1].str()), kBusyRequests) << err;
  EXPECT_EQ(std::stoi(m[2].str()), kQuietRequests)
      << "the large request that initialized the allocator was not counted: " << err;
  ASSERT_TRUE(std::regex_search(
      err, m, std::regex("\"learner\":\\{\"state\":\"[A-Z]+\",\"frozen\":[0-9]+,\"epochs\":([0-9]+),")))
      << err;
  EXPECT_EQ(std::stoull(m[1].str()), (kBusyRequests + kQuietRequests) / kEpochRequests)
      << "4000 large requests in epochs of 200 are 20 epochs: " << err;
}
