// The process allocator at exit: pending ranges are released (I10) and stats=... prints them.
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>

namespace {

/// Re-runs this binary's Child test with HAKMEM_OPTIONS set; returns its stderr.
std::string run_child(const char* options, int* status) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    std::string opt = std::string("HAKMEM_OPTIONS=") + options;
    char* env[] = {opt.data(), const_cast<char*>("HAKMEM_EXIT_TEST_CHILD=1"), nullptr};
    char* argv[] = {const_cast<char*>("/proc/self/exe"), nullptr};
    execve("/proc/self/exe", argv, env);
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}

uint64_t json_number(const std::string& json, const std::string& section, const std::string& key) {
  const size_t s = json.find("\"" + section + "\":{");
  if (s == std::string::npos) return ~uint64_t{0};
  const size_t k = json.find("\"" + key + "\":", s);
  if (k == std::string::npos) return ~uint64_t{0};
  return std::strtoull(json.c_str() + k + key.size() + 3, nullptr, 10);
}

}  // namespace

// The re-executed child: leaves two large blocks pending in the releaser and
// exits through exit(), which runs hakmem's exit hook. Runs before main().
const bool kIsChild = [] {
  if (getenv("HAKMEM_EXIT_TEST_CHILD") == nullptr) return false;
  for (int i = 0; i < 2; ++i) {
    void* p = hak_alloc(2 << 20);
    if (p == nullptr) _exit(3);
    memset(p, 1, 2 << 20);
    hak_free(p);
  }
  exit(0);
}();

// I10: nothing pending is lost at exit. With the cache off and a batch threshold
// no free reaches, the blocks are still pending when main returns; the exit hook
// must release them, and the exit stats show it.
TEST(ExitFlush, PendingRangesAreReleasedAtExit_I10) {
  int status = 0;
  const std::string err = run_child("cache=0:batch=1g:decay_ms=0:stats=json", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  ASSERT_NE(err.find("{\"hakmem\":"), std::string::npos) << "no JSON stats at exit: " << err;
  EXPECT_EQ(json_number(err, "map", "frees"), 2u) << err;
  EXPECT_EQ(json_number(err, "release", "blocks"), 2u) << err;
  EXPECT_EQ(json_number(err, "release", "pending_bytes"), 0u) << "pending ranges survived exit: " << err;
  EXPECT_GE(json_number(err, "release", "munmap_calls"), 1u) << err;
}

// stats=1 prints the human-readable table at exit, once.
TEST(ExitFlush, StatsTablePrintedOnceAtExit) {
  int status = 0;
  const std::string err = run_child("stats=1", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  const size_t first = err.find("hakmem stats");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("hakmem stats", first + 1), std::string::npos) << "table printed twice: " << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("\n  map +2 +2 +0 B\n"))) << "map row should show 2 allocs, 2 frees: " << err;
}

// A bad option gets one warning line naming it, and the program still runs.
TEST(ExitFlush, BadOptionWarnsOnceAndKeepsDefaults) {
  int status = 0;
  const std::string err = run_child("cache=lots:stats=json", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  EXPECT_NE(err.find("hakmem: option 'cache' value 'lots'"), std::string::npos) << err;
  EXPECT_EQ(json_number(err, "bigcache", "cap"), 64u << 20) << err;
}
