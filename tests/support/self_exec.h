// Test support: re-run this test binary as a child process with a chosen environment, capturing
// its stdout and stderr, and read numbers out of hakmem's JSON statistics. Tests of the process
// allocator need a fresh process to change HAKMEM_OPTIONS or to watch start-up and exit.
#pragma once

#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace hakmem_test {

/// How a child ended and what it printed.
struct ChildResult {
  int status = -1;  ///< as from waitpid
  std::string out;  ///< its stdout
  std::string err;  ///< its stderr
};

/**
 * Runs /proc/self/exe with exactly `env` (each "NAME=value") and no arguments, so the
 * binary's static initializers can act on the environment and exit before gtest runs.
 * A child still writing after `timeout_ms` is killed (status then says SIGKILL). A non-zero
 * `stack_bytes` caps the child's stack, so a recursion bug crashes in milliseconds.
 */
inline ChildResult run_self(const std::vector<std::string>& env, int timeout_ms = 30000, size_t stack_bytes = 0) {
  ChildResult r;
  int out[2], err[2];
  if (pipe(out) != 0) return r;
  if (pipe(err) != 0) {
    close(out[0]);
    close(out[1]);
    return r;
  }
  // argv[0] is the binary's real path: dladdr names the main program after it, and reports
  // that symbolize a site in the test binary must say so.
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof(self) - 1) <= 0) strcpy(self, "/proc/self/exe");
  std::vector<std::string> vars = env;  // execve wants mutable strings
  std::vector<char*> envp;
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (stack_bytes != 0) {
      const rlimit stack = {stack_bytes, stack_bytes};
      setrlimit(RLIMIT_STACK, &stack);
    }
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    char* argv[] = {self, nullptr};
    execve("/proc/self/exe", argv, envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* dst[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0 && poll(p, 2, timeout_ms) > 0) {
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || p[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(p[i].fd, buf, sizeof(buf));
      if (n > 0) {
        dst[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(p[i].fd);
        p[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& f : p) {
    if (f.fd >= 0) close(f.fd);
  }
  if (open_fds > 0) kill(pid, SIGKILL);
  waitpid(pid, &r.status, 0);
  return r;
}

/// True when the child exited normally with status 0.
inline bool exited_ok(const ChildResult& r) { return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0; }

/**
 * The number at "key": inside "section":{...} of hakmem's JSON statistics, or -1 when the
 * section or key is missing.
 */
inline int64_t json_field(const std::string& json, const std::string& section, const std::string& key) {
  const size_t s = json.find("\"" + section + "\":{");
  if (s == std::string::npos) return -1;
  const size_t k = json.find("\"" + key + "\":", s);
  if (k == std::string::npos) return -1;
  return std::strtoll(json.c_str() + k + key.size() + 3, nullptr, 10);
}

}  // namespace hakmem_test
