// Fuzz support: a byte reader over the fuzzer's input, and the model-mismatch check that stops a run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

/// Stops the run when the shadow model and the code under test disagree: libFuzzer
/// saves the input as a crash, the replay runner fails the ctest test.
#define FUZZ_CHECK(cond, ...)                                                                                          \
  do {                                                                                                                 \
    if (__builtin_expect(!(cond), 0)) {                                                                                \
      fprintf(stderr, "%s:%d: model mismatch: %s: ", __FILE__, __LINE__, #cond);                                       \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
      abort();                                                                                                         \
    }                                                                                                                  \
  } while (0)

namespace hakmem_fuzz {

/**
 * Reads the input from the front; once it runs dry every read gives 0, so a
 * short input is a valid (and short) operation stream.
 */
class Input {
public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}

  bool empty() const { return n_ == 0; }
  size_t remaining() const { return n_; }

  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) | static_cast<uint32_t>(u16()) << 16; }
  uint64_t u64() { return static_cast<uint64_t>(u32()) | static_cast<uint64_t>(u32()) << 32; }
  bool flag() { return (u8() & 1) != 0; }

  /// A value in [0, n) (n > 0), from as few bytes as n needs.
  uint64_t below(uint64_t n) {
    if (n <= 1) return 0;
    if (n <= 256) return u8() % n;
    if (n <= 65536) return u16() % n;
    if (n <= (uint64_t{1} << 32)) return u32() % n;
    return u64() % n;
  }

  /// Up to `max` raw bytes (fewer when the input runs out).
  size_t bytes(uint8_t* out, size_t max) {
    const size_t k = max < n_ ? max : n_;
    memcpy(out, p_, k);
    p_ += k;
    n_ -= k;
    return k;
  }

  /// The rest of the input as a string (may hold NULs).
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(p_), n_);
    p_ += n_;
    n_ = 0;
    return s;
  }

private:
  const uint8_t* p_;
  size_t n_;
};

/// Collects report text and counts the lines (each report is one line).
struct ReportCapture {
  std::string text;
  static void sink(void* arg, const char* t, size_t n) { static_cast<ReportCapture*>(arg)->text.append(t, n); }
  size_t lines() const {
    size_t k = 0;
    for (char c : text) k += c == '\n';
    return k;
  }
};

}  // namespace hakmem_fuzz
