// fuzz_options: the options parser on arbitrary strings, against an independent reference parser:
// the same values and warnings, every accepted value within its option's range, no read past the NUL.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/options.h"
#include "fuzz_support.h"

using namespace hakmem;

namespace {

constexpr size_t kCount = static_cast<size_t>(Opt::kCount);

/// "digits", with no overflow of 64 bits.
bool ref_uint(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  unsigned __int128 v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > UINT64_MAX) return false;
  }
  *out = static_cast<uint64_t>(v);
  return true;
}

/// digits [unit [i] [b|B]], unit one of kKmMgG (binary), or plain digits.
bool ref_size(const std::string& s, uint64_t* out) {
  size_t d = 0;
  while (d < s.size() && s[d] >= '0' && s[d] <= '9') ++d;
  const std::string digits = s.substr(0, d), suffix = s.substr(d);
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
    case 'k':
    case 'K': shift = 10; break;
    case 'm':
    case 'M': shift = 20; break;
    case 'g':
    case 'G': shift = 30; break;
    default: return false;
    }
    static const char* kTails[] = {"", "i", "b", "B", "ib", "iB"};
    bool ok = false;
    for (const char* t : kTails) ok = ok || suffix.substr(1) == t;
    if (!ok) return false;
  }
  uint64_t v;
  if (!ref_uint(digits, &v)) return false;
  if (shift != 0 && v > (UINT64_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

bool ref_enum(const char* words, const std::string& s, uint64_t* out) {
  std::string all = words;
  uint64_t index = 0;
  size_t from = 0;
  for (;;) {
    const size_t bar = all.find('|', from);
    if (all.substr(from, bar == std::string::npos ? std::string::npos : bar - from) == s) {
      *out = index;
      return true;
    }
    if (bar == std::string::npos) return false;
    from = bar + 1;
    ++index;
  }
}

/// The reference: items split on ':' and ',', empty ones skipped, "key=value" each.
size_t ref_parse(const std::string& text, Options& out, std::vector<std::string>* warned_keys) {
  size_t warnings = 0;
  size_t from = 0;
  while (from <= text.size()) {
    size_t end = text.find_first_of(":,", from);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(from, end - from);
    from = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    size_t index = kCount;
    for (size_t i = 0; i < kCount; ++i) {
      if (key == kOptionSpecs[i].key) index = i;
    }
    bool ok = false;
    uint64_t v = 0;
    if (index < kCount && eq != std::string::npos) {
      const OptionSpec& spec = kOptionSpecs[index];
      const std::string val = item.substr(eq + 1);
      switch (spec.kind) {
      case OptionKind::kSize: ok = ref_size(val, &v); break;
      case OptionKind::kUint: ok = ref_uint(val, &v); break;
      case OptionKind::kEnum: ok = ref_enum(spec.words, val, &v); break;
      }
      ok = ok && v >= spec.min && v <= spec.max;
    }
    if (ok) {
      out.v[index] = v;
    } else {
      ++warnings;
      warned_keys->push_back(key);
    }
  }
  return warnings;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The parser sees exactly the input and a NUL: a read past it is an ASan error.
  std::vector<char> text(data, data + size);
  text.push_back('\0');
  const std::string upto_nul(text.data());

  Options real;
  hakmem_fuzz::ReportCapture warn;
  const size_t n = parse_options(text.data(), real, &hakmem_fuzz::ReportCapture::sink, &warn);

  Options ref;
  std::vector<std::string> keys;
  const size_t want = ref_parse(upto_nul, ref, &keys);

  FUZZ_CHECK(n == want, "%zu warnings, the reference gives %zu, for '%s'", n, want, upto_nul.c_str());
  for (size_t i = 0; i < kCount; ++i) {
    const OptionSpec& spec = kOptionSpecs[i];
    FUZZ_CHECK(real.v[i] == ref.v[i], "%s = %llu, the reference says %llu, for '%s'", spec.key,
               (unsigned long long)real.v[i], (unsigned long long)ref.v[i], upto_nul.c_str());
    FUZZ_CHECK(real.v[i] >= spec.min && real.v[i] <= spec.max, "%s = %llu outside [%llu, %llu]", spec.key,
               (unsigned long long)real.v[i], (unsigned long long)spec.min, (unsigned long long)spec.max);
  }
  // Every rejection is reported, naming its key, in order; nothing is reported when all is accepted.
  FUZZ_CHECK((n == 0) == warn.text.empty(), "warning text '%s' for %zu warnings", warn.text.c_str(), n);
  size_t at = 0;
  for (const std::string& k : keys) {
    const size_t line = warn.text.find("hakmem: ", at);
    FUZZ_CHECK(line != std::string::npos, "no warning line for key '%s'", k.c_str());
    const size_t named = warn.text.find("'" + k + "'", line);
    FUZZ_CHECK(named != std::string::npos, "the warning does not name key '%s'", k.c_str());
    at = named + k.size() + 2;
  }
  // Without a sink the parser still counts, and a second pass over accepted text changes nothing.
  Options quiet;
  FUZZ_CHECK(parse_options(text.data(), quiet, nullptr, nullptr) == n, "warning count depends on the sink");
  Options again = real;
  parse_options(text.data(), again, nullptr, nullptr);
  for (size_t i = 0; i < kCount; ++i)
    FUZZ_CHECK(again.v[i] == real.v[i], "parsing twice changed %s", kOptionSpecs[i].key);
  return 0;
}
