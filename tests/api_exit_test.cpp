// The process allocator at exit: pending ranges are released (I10) and stats=... prints them.
#include <gtest/gtest.h>
#include <hakmem/hakmem.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>

#include "support/self_exec.h"

namespace {

using hakmem_test::json_field;

/// Re-runs this binary as the child with HAKMEM_OPTIONS set; returns its stderr.
std::string run_child(const char* options, int* status) {
  const hakmem_test::ChildResult r =
      hakmem_test::run_self({std::string("HAKMEM_OPTIONS=") + options, "HAKMEM_EXIT_TEST_CHILD=1"});
  *status = r.status;
  return r.err;
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
  EXPECT_EQ(json_field(err, "map", "frees"), 2) << err;
  EXPECT_EQ(json_field(err, "release", "blocks"), 2) << err;
  EXPECT_EQ(json_field(err, "release", "pending_bytes"), 0) << "pending ranges survived exit: " << err;
  EXPECT_GE(json_field(err, "release", "munmap_calls"), 1) << err;
}

// stats=1 prints the human-readable table at exit, once.
TEST(ExitFlush, StatsTablePrintedOnceAtExit) {
  int status = 0;
  const std::string err = run_child("stats=1", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  const size_t first = err.find("hakmem stats");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("hakmem stats", first + 1), std::string::npos) << "table printed twice: " << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("\n  map +2 +2 +0 B\n")))
      << "map row should show 2 allocs, 2 frees: " << err;
}

// A bad option gets one warning line naming it, and the program still runs.
TEST(ExitFlush, BadOptionWarnsOnceAndKeepsDefaults) {
  int status = 0;
  const std::string err = run_child("cache=lots:stats=json", &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  EXPECT_NE(err.find("hakmem: option 'cache' value 'lots'"), std::string::npos) << err;
  EXPECT_EQ(json_field(err, "bigcache", "cap"), int64_t{64} << 20) << err;
}
