// Wiring: an allocator's components initialized and connected, in dependency order, once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backing/backing.h"
#include "core/core.h"
#include "front/config.h"
#include "header/header.h"

namespace hakmem {

/**
 * Allocator::init()'s one-time work (under its init lock): the secret, then every component
 * from the Registry up, each given the ones below it, and `ready` published last. False when the
 * Registry's root or the thread-exit key cannot be made; init may then be retried.
 */
struct AllocatorWiring {
  template <class Config, class A>
  static bool run(A& a, const Options& o) {
    a.opts_ = o;
    const uint64_t secret = make_secret();
    a.codec_.set_secret(secret);
    a.hard_.set_secret(secret);
    const GiveBack give_back{
        [](void* ctx, uintptr_t base, size_t len) { static_cast<A*>(ctx)->releaser_.add_raw(base, len); }, &a};
    if (!a.registry_.init(&a.pal_, &a.mapped_)) return false;
    const BadLink bad_link{
        [](void* ctx, const Span* s, uintptr_t u) { static_cast<A*>(ctx)->pool_path_.report_bad_link(s, u); }, &a};
    a.paranoid_ = a.opts_.get(Opt::kHardening) == kHardeningParanoid;
    // The arena is the fast free's (Allocator::free_fast_pool()): paranoid mode, which takes no
    // fast path, finds every span through the Registry and reserves none.
    a.pool_.init(&a.pal_, &a.registry_, &a.mapped_, give_back, secret, bad_link,
                 pool_arena_of<Config>() && !a.paranoid_);
    a.map_.init(&a.pal_, &a.registry_, &a.mapped_, give_back);
    a.zero_.init(&a.pal_, &a.mapped_, give_back);
    const uint64_t decay_ns = a.opts_.get(Opt::kDecayMs) * 1000000ull;
    a.releaser_.init(&a.pal_, &a.registry_, &a.map_, &a.codec_, &a.mapped_, a.opts_.get(Opt::kBatch), decay_ns);
    a.cache_.init(&a.pal_, &a.releaser_, a.opts_.get(Opt::kCache), a.opts_.get(Opt::kCacheMax), decay_ns);
    a.selector_.init_fixed(a.opts_.get(Opt::kThreshold));
    a.driver_.init({&a.pal_, &a.pool_, &a.selector_, &a.mapped_, &a.releaser_.counters().unmapped_bytes}, a.opts_,
                   secret);
    a.validator_.init({&a.registry_, &a.codec_, &a.pool_.seal(), &a.zero_, &a.hard_, a.paranoid_,
                       a.opts_.get(Opt::kOriginCheck) != 0});
    a.reporter_.init(a.opts_.get(Opt::kOnError) == kOnErrorAbort);
    if (a.paranoid_)
      a.quarantine_.init({&a.pal_, &a.mapped_, &a.registry_, &a.validator_, &a.hard_}, a.opts_.get(Opt::kQuarantine));
    a.pool_path_.init({&a.pool_, &a.quarantine_, &a.reporter_, &a.validator_, &a.hard_, a.paranoid_});
    a.map_path_.init({&a.pal_, &a.map_, &a.cache_, &a.gate_, &a.codec_, &a.hard_, a.paranoid_});
    // Paranoid mode takes no fast path (so the default mode pays nothing for paranoia).
    if (!a.threads_.init(&a, &a.pool_, !a.paranoid_)) return false;
    // The large slot feeds the cache (a slot block goes to BigCache when its thread exits or
    // flushes), so no cache means no slot; paranoid mode never takes the fast paths that use it.
    a.slots_.init(a.paranoid_ || a.opts_.get(Opt::kCache) == 0 ? 0 : a.opts_.get(Opt::kLargeSlot));
    a.ready_.store(true, std::memory_order_release);
    return true;
  }
};

}  // namespace hakmem
