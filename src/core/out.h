// A fixed-buffer text writer for reports and stats: formats without allocating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hakmem {

/// Callback receiving finished text; the same shape as the public hak_write_fn.
using WriteFn = void (*)(void* arg, const char* text, size_t len);

/// Writes to file descriptor 2 with write(2); never allocates.
void write_stderr(void* arg, const char* text, size_t len);

/**
 * Accumulates text in a fixed buffer and hands it to a WriteFn when full or on
 * flush(). Numbers are formatted by hand: stdio may allocate, and this runs
 * inside malloc.
 */
class Out {
public:
  Out(WriteFn fn, void* arg) : fn_(fn), arg_(arg) {}
  ~Out() { flush(); }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;

  Out& str(const char* s) { return bytes(s, strlen(s)); }
  Out& bytes(const char* s, size_t n) {
    while (n > 0) {
      if (len_ == sizeof(buf_)) flush();
      size_t take = sizeof(buf_) - len_;
      if (take > n) take = n;
      memcpy(buf_ + len_, s, take);
      len_ += take;
      s += take;
      n -= take;
    }
    return *this;
  }
  Out& ch(char c) { return bytes(&c, 1); }
  Out& dec(uint64_t v) {
    char tmp[24];
    int i = 0;
    do {
      tmp[i++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (i > 0) ch(tmp[--i]);
    return *this;
  }
  Out& sdec(int64_t v) {
    if (v < 0) {
      ch('-');
      return dec(static_cast<uint64_t>(0) - static_cast<uint64_t>(v));
    }
    return dec(static_cast<uint64_t>(v));
  }
  Out& hex(uint64_t v) {
    str("0x");
    char tmp[16];
    int i = 0;
    do {
      tmp[i++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v != 0);
    while (i > 0) ch(tmp[--i]);
    return *this;
  }
  /// Fixed-point with `digits` decimals; enough for ratings and percentages.
  Out& fixed(double v, int digits) {
    if (!(v == v)) return str("nan");
    if (v < 0) {
      ch('-');
      v = -v;
    }
    uint64_t scale = 1;
    for (int i = 0; i < digits; ++i) scale *= 10;
    const auto scaled = static_cast<uint64_t>(v * static_cast<double>(scale) + 0.5);
    dec(scaled / scale);
    if (digits > 0) {
      ch('.');
      uint64_t frac = scaled % scale;
      for (uint64_t s = scale / 10; s > 0; s /= 10) {
        ch(static_cast<char>('0' + (frac / s) % 10));
      }
    }
    return *this;
  }
  /// Right-aligns the next value in `width` columns: call pad(width, digits_of(v)).
  Out& pad(size_t width, size_t used) {
    for (size_t i = used; i < width; ++i) ch(' ');
    return *this;
  }
  /// A size with a binary unit suffix (B, KiB, MiB, GiB), one decimal.
  Out& size(uint64_t v) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    uint64_t whole = v;
    uint64_t rem = 0;
    while (whole >= 1024 && u < 4) {
      rem = whole % 1024;
      whole /= 1024;
      ++u;
    }
    dec(whole);
    if (u > 0) ch('.').dec(rem * 10 / 1024);
    return ch(' ').str(units[u]);
  }
  void flush() {
    if (len_ > 0 && fn_ != nullptr) fn_(arg_, buf_, len_);
    len_ = 0;
  }

private:
  WriteFn fn_;
  void* arg_;
  char buf_[512];
  size_t len_ = 0;
};

/// Number of decimal digits of v (for column alignment).
constexpr size_t digits_of(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

}  // namespace hakmem
