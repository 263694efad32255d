// Test support: capture an allocator's misuse reports as text, print addresses the way they do, print verdicts by name.
#pragma once

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>

#include "header/block_header.h"

namespace hakmem {
/// Verdicts print by name in GoogleTest assertion failures (found by ADL).
[[maybe_unused]] inline void PrintTo(Verdict v, std::ostream* os) { *os << verdict_name(v); }
}  // namespace hakmem

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
