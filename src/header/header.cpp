// Header names, the per-process secret, and the report formatter.
#include <dlfcn.h>
#include <sys/random.h>
#include <time.h>

#include "header/block_header.h"
#include "header/report.h"

namespace hakmem {

const char* verdict_name(Verdict v) {
  switch (v) {
  case Verdict::kOk: return "ok";
  case Verdict::kCorrupted: return "corrupted header";
  case Verdict::kDoubleFree: return "double free";
  case Verdict::kInvalidPointer: return "invalid free";
  case Verdict::kMisaligned: return "misaligned free";
  case Verdict::kMismatchedOrigin: return "mismatched free";
  case Verdict::kMethodMismatch: return "method mismatch";
  case Verdict::kSizeMismatch: return "size mismatch";
  case Verdict::kOverflow: return "heap overflow";
  case Verdict::kWriteAfterFree: return "write after free";
  case Verdict::kCorruptedLink: return "corrupted free list";
  case Verdict::kCount: break;
  }
  return "unknown error";
}

const char* origin_name(Origin o) {
  switch (o) {
  case Origin::kMalloc: return "malloc";
  case Origin::kNew: return "new";
  case Origin::kNewArray: return "new[]";
  case Origin::kAligned: return "aligned";
  }
  return "?";
}

const char* method_name(Method m) {
  switch (m) {
  case Method::kNone: return "none";
  case Method::kPool: return "pool";
  case Method::kMap: return "map";
  case Method::kForward: return "forward";
  }
  return "?";
}

const char* state_name(State s) {
  switch (s) {
  case State::kLive: return "live";
  case State::kCached: return "cached";
  case State::kReleasing: return "releasing";
  case State::kFree: return "free";
  }
  return "?";
}

uint64_t make_secret() {
  uint64_t s = 0;
  if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == static_cast<ssize_t>(sizeof(s)) && s != 0) return s;
  // No entropy source yet (very early boot): mix the clock with ASLR'd addresses.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  s = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 32);
  s ^= reinterpret_cast<uintptr_t>(&s) ^ (reinterpret_cast<uintptr_t>(&make_secret) << 17);
  return mix64(s) | 1;
}

void format_site(Out& o, uintptr_t site) {
  Dl_info info{};
  if (site != 0 && dladdr(reinterpret_cast<void*>(site), &info) != 0) {
    const char* obj = info.dli_fname;
    if (obj != nullptr) {
      const char* slash = strrchr(obj, '/');
      if (slash != nullptr) obj = slash + 1;
    }
    if (info.dli_sname != nullptr) {
      o.str(info.dli_sname).ch('+').hex(site - reinterpret_cast<uintptr_t>(info.dli_saddr));
    } else {
      o.hex(site - reinterpret_cast<uintptr_t>(info.dli_fbase));
    }
    if (obj != nullptr && *obj != '\0') o.str(" in ").str(obj);
    return;
  }
  o.hex(site);
}

void format_report(const ErrorReport& r, WriteFn sink, void* sink_arg) {
  Out o(sink, sink_arg);
  o.str("hakmem: ").str(verdict_name(r.kind)).str(" of ").hex(reinterpret_cast<uintptr_t>(r.ptr));
  if (r.kind == Verdict::kInvalidPointer) {
    o.str(" (not allocated by hakmem");
  } else {
    o.str(" (");
    if (r.size_known) {
      o.dec(r.size).str(" bytes");
    } else {
      o.str("size unknown");
    }
    if (r.alloc_site != 0) {
      o.str(", allocated at ");
      format_site(o, r.alloc_site);
    }
    if (r.kind == Verdict::kMismatchedOrigin) {
      o.str(", allocated by ").str(origin_name(r.alloc_origin)).str(", released by ").str(origin_name(r.free_origin));
    }
    if (r.kind == Verdict::kSizeMismatch) o.str(", released as ").dec(r.claimed_size).str(" bytes");
  }
  if (r.free_site != 0) {
    o.str(", freed at ");
    format_site(o, r.free_site);
  }
  o.str(")\n");
}

}  // namespace hakmem
