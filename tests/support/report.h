// Test support: capture an allocator's misuse reports as text, and print addresses the way they do.
#pragma once

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace hakmem_test {

/// A report sink (Allocator::set_report_sink(&ReportCapture::sink, &capture)) that keeps the text.
struct ReportCapture {
  std::string text;
  static void sink(void* arg, const char* t, size_t n) { static_cast<ReportCapture*>(arg)->text.append(t, n); }
};

/// "0x7f..", as a report prints an address.
inline std::string hex(uintptr_t v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "0x%" PRIxPTR, v);
  return buf;
}
inline std::string hex(const void* p) { return hex(reinterpret_cast<uintptr_t>(p)); }

}  // namespace hakmem_test
