// The Linux x86-64 platform: mmap, mprotect, madvise, munmap, clock_gettime, getrusage.
#pragma once

#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "pal/pal_concept.h"

namespace hakmem {

/// The real platform. Stateless; constant-initializable.
class LinuxPal {
public:
  static constexpr size_t kPageSize = 4096;
  constexpr LinuxPal() = default;

  size_t page_size() const { return kPageSize; }

  void* map(size_t len, Layer /*layer*/) { return do_map(len, 0); }
  void* map_sparse(size_t len, Layer /*layer*/) { return do_map(len, MAP_NORESERVE); }

  bool protect(void* addr, size_t len, Access access, Layer /*layer*/) {
    const int prot = access == Access::kNone ? PROT_NONE : (PROT_READ | PROT_WRITE);
    return mprotect(addr, len, prot) == 0;
  }

  bool advise_dontneed(ReleaseCapability /*cap*/, void* addr, size_t len) {
    return madvise(addr, len, MADV_DONTNEED) == 0;
  }

  bool unmap(ReleaseCapability /*cap*/, void* addr, size_t len) { return munmap(addr, len) == 0; }

  uint64_t now_ns() const {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  }

  uint64_t minor_faults() const {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<uint64_t>(ru.ru_minflt);
  }

private:
  static void* do_map(size_t len, int extra) {
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
};

static_assert(Platform<LinuxPal>);

}  // namespace hakmem
