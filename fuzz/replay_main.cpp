// Replays fuzz inputs without libFuzzer: every file named, and every file of every directory named,
// through LLVMFuzzerTestOneInput. gcc builds (and sanitizer builds) run the corpora as ctest tests.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The files of a directory, sorted (a stable order makes a failure reproducible by name).
std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = dir + "/" + name;
      if (!is_dir(path)) out.push_back(path);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;  // libFuzzer flags, as in "-runs=0": ignored
    if (is_dir(arg)) {
      const std::vector<std::string> files = list_dir(arg);
      if (files.empty()) {
        fprintf(stderr, "replay: %s holds no inputs\n", arg.c_str());
        return 1;
      }
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else {
      inputs.push_back(arg);
    }
  }
  if (inputs.empty()) {
    fprintf(stderr, "usage: %s <input file or corpus directory>...\n", argv[0]);
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& path : inputs) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      fprintf(stderr, "replay: cannot read %s\n", path.c_str());
      return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // A copy of exactly the input's size, so a read past the end is a sanitizer error here too.
    std::vector<uint8_t> data(bytes.begin(), bytes.end());
    fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), data.size());
    LLVMFuzzerTestOneInput(data.data(), data.size());
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fprintf(stderr, "replay: %zu inputs passed in %.0f ms\n", inputs.size(), ms);
  return 0;
}
