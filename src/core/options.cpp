// The options table's data and its allocation-free parser.
#include "core/options.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

extern char** environ;

namespace hakmem {

const OptionSpec kOptionSpecs[static_cast<size_t>(Opt::kCount)] = {
#define HAKMEM_X(id, key, kind, def, lo, hi, words, doc) {key, OptionKind::kind, def, lo, hi, words, doc},
    HAKMEM_OPTION_TABLE(HAKMEM_X)
#undef HAKMEM_X
};

void write_stderr(void* /*arg*/, const char* text, size_t len) {
  while (len > 0) {
    const ssize_t n = ::write(2, text, len);
    if (n <= 0) return;  // nowhere else to report to
    text += n;
    len -= static_cast<size_t>(n);
  }
}

namespace {

bool parse_uint(const char* s, size_t n, uint64_t* out) {
  if (n == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, uint64_t(s[i] - '0'), &v)) return false;
  }
  *out = v;
  return true;
}

bool parse_size(const char* s, size_t n, uint64_t* out) {
  if (n == 0) return false;
  unsigned shift = 0;
  size_t digits = n;
  // Accept 64k, 64K, 64kb, 64KiB: strip an optional b/B and i, then one unit letter.
  if (digits > 0 && (s[digits - 1] == 'b' || s[digits - 1] == 'B')) --digits;
  if (digits > 0 && s[digits - 1] == 'i') --digits;
  if (digits > 0) {
    switch (s[digits - 1]) {
    case 'k':
    case 'K':
      shift = 10;
      --digits;
      break;
    case 'm':
    case 'M':
      shift = 20;
      --digits;
      break;
    case 'g':
    case 'G':
      shift = 30;
      --digits;
      break;
    default:
      if (digits != n) return false;  // a lone 'b' or 'i' with no unit
    }
  }
  uint64_t v = 0;
  if (!parse_uint(s, digits, &v)) return false;
  if (shift != 0 && v > (~uint64_t{0} >> shift)) return false;
  *out = v << shift;
  return true;
}

bool parse_enum(const char* words, const char* s, size_t n, uint64_t* out) {
  uint64_t index = 0;
  const char* w = words;
  while (*w != '\0') {
    const char* end = strchr(w, '|');
    const size_t len = end ? static_cast<size_t>(end - w) : strlen(w);
    if (len == n && memcmp(w, s, n) == 0) {
      *out = index;
      return true;
    }
    ++index;
    if (end == nullptr) break;
    w = end + 1;
  }
  return false;
}

void warn_line(WriteFn warn, void* arg, const char* what, const char* key, size_t key_len, const char* val,
               size_t val_len, const OptionSpec* spec) {
  if (warn == nullptr) return;
  Out o(warn, arg);
  o.str("hakmem: ").str(what).str(" '").bytes(key, key_len).ch('\'');
  if (val != nullptr) o.str(" value '").bytes(val, val_len).ch('\'');
  if (spec != nullptr) {
    o.str(" (expected ");
    switch (spec->kind) {
    case OptionKind::kSize: o.str("a size from ").dec(spec->min).str(" to ").dec(spec->max).str(", e.g. 64m"); break;
    case OptionKind::kUint: o.str("a number from ").dec(spec->min).str(" to ").dec(spec->max); break;
    case OptionKind::kEnum: o.str("one of ").str(spec->words); break;
    }
    o.str("); keeping the current value");
  } else {
    o.str(" in HAKMEM_OPTIONS is not an option; ignored");
  }
  o.ch('\n');
}

}  // namespace

size_t parse_options(const char* text, Options& out, WriteFn warn, void* warn_arg) {
  if (text == nullptr) return 0;
  size_t warnings = 0;
  const char* p = text;
  while (*p != '\0') {
    const char* end = p;
    while (*end != '\0' && *end != ':' && *end != ',') ++end;
    const size_t item_len = static_cast<size_t>(end - p);
    if (item_len > 0) {
      const char* eq = static_cast<const char*>(memchr(p, '=', item_len));
      const size_t key_len = eq ? static_cast<size_t>(eq - p) : item_len;
      const char* val = eq ? eq + 1 : end;
      const size_t val_len = static_cast<size_t>(end - val);
      const OptionSpec* spec = nullptr;
      size_t index = 0;
      for (size_t i = 0; i < static_cast<size_t>(Opt::kCount); ++i) {
        if (strlen(kOptionSpecs[i].key) == key_len && memcmp(kOptionSpecs[i].key, p, key_len) == 0) {
          spec = &kOptionSpecs[i];
          index = i;
          break;
        }
      }
      if (spec == nullptr) {
        warn_line(warn, warn_arg, "unknown option", p, key_len, nullptr, 0, nullptr);
        ++warnings;
      } else {
        uint64_t v = 0;
        bool ok = false;
        if (eq != nullptr) {
          switch (spec->kind) {
          case OptionKind::kSize: ok = parse_size(val, val_len, &v); break;
          case OptionKind::kUint: ok = parse_uint(val, val_len, &v); break;
          case OptionKind::kEnum: ok = parse_enum(spec->words, val, val_len, &v); break;
          }
          ok = ok && v >= spec->min && v <= spec->max;
        }
        if (ok) {
          out.v[index] = v;
        } else {
          warn_line(warn, warn_arg, "option", p, key_len, eq ? val : "", eq ? val_len : 0, spec);
          ++warnings;
        }
      }
    }
    p = (*end == '\0') ? end : end + 1;
  }
  return warnings;
}

namespace {

/// The initial environment as the kernel gave it (NUL-separated), for calls made
/// before libc has set `environ` (a .preinit_array function, ld.so itself). Read
/// once with raw syscalls into static storage: nothing here may allocate.
const char* initial_environment(size_t* len) {
  static char buf[64 * 1024];
  static size_t used = 0;
  static std::atomic<int> state{0};  // 0 unread, 1 reading, 2 read
  int expected = 0;
  if (state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    const int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n;
      while (used < sizeof(buf) - 1 && (n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0) {
        used += static_cast<size_t>(n);
      }
      close(fd);
    }
    buf[used] = '\0';
    state.store(2, std::memory_order_release);
  }
  while (state.load(std::memory_order_acquire) != 2) {
  }
  *len = used;
  return buf;
}

}  // namespace

Options options_from_environment(const char* defaults) {
  Options o;
  parse_options(defaults, o, write_stderr, nullptr);
  parse_options(find_env("HAKMEM_OPTIONS"), o, write_stderr, nullptr);
  return o;
}

const char* find_env(const char* name) {
  const size_t n = strlen(name);
  if (environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    }
    return nullptr;
  }
  size_t len = 0;
  const char* env = initial_environment(&len);
  for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
    if (strncmp(env + i, name, n) == 0 && env[i + n] == '=') return env + i + n + 1;
  }
  return nullptr;
}

void print_options_doc(WriteFn fn, void* arg) {
  Out o(fn, arg);
  for (const OptionSpec& s : kOptionSpecs) {
    o.str(s.key).str("  (");
    switch (s.kind) {
    case OptionKind::kSize: o.str("size, default ").dec(s.def); break;
    case OptionKind::kUint: o.str("number, default ").dec(s.def); break;
    case OptionKind::kEnum: {
      o.str(s.words).str(", default ");
      // The default's word is the def-th entry of the list.
      const char* w = s.words;
      for (uint64_t i = 0; i < s.def && w != nullptr; ++i) {
        w = strchr(w, '|');
        if (w != nullptr) ++w;
      }
      const char* end = w ? strchr(w, '|') : nullptr;
      if (w != nullptr) o.bytes(w, end ? static_cast<size_t>(end - w) : strlen(w));
      break;
    }
    }
    o.str(")  ").str(s.doc).ch('\n');
  }
}

}  // namespace hakmem
