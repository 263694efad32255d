// Umbrella header of front/: Allocator<Config>, its configurations and the stats renderers.
#pragma once

#include "front/allocator.h"  // IWYU pragma: export
#include "front/config.h"     // IWYU pragma: export
#include "front/process.h"    // IWYU pragma: export
#include "front/stats.h"      // IWYU pragma: export

namespace hakmem {

/// Owns a test allocator and tears it down (every byte back through the releaser) on scope exit.
template <class Config>
class ScopedAllocator {
public:
  explicit ScopedAllocator(const Options& o = Options{}) : a_(new Allocator<Config>()) { a_->init(o); }
  ~ScopedAllocator() {
    a_->teardown();
    delete a_;
  }
  ScopedAllocator(const ScopedAllocator&) = delete;
  ScopedAllocator& operator=(const ScopedAllocator&) = delete;
  Allocator<Config>* operator->() { return a_; }
  Allocator<Config>& operator*() { return *a_; }

private:
  Allocator<Config>* a_;
};

}  // namespace hakmem
