// props/ commands: the rc::state commands that drive a Harness, and the generators they draw from.
#pragma once

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <cstdint>
#include <ostream>
#include <vector>

#include "harness.h"

namespace hakmem_props {

/// What the commands may do under a configuration (the rc::state model; the shadow of the
/// allocator's blocks lives in the Harness, since which allocations succeed is the allocator's call).
struct Model {
  bool failing = false;    ///< PAL failure commands enabled
  bool learning = false;   ///< epoch ticks end learn-mode epochs
  bool switching = false;  ///< the strategy in force may be switched between operations (I3)
};

using Command = rc::state::Command<Model, Harness>;

// Live bytes are bounded so a sequence stays within a few hundred MiB (and sanitizer builds cope).
constexpr uint64_t kMaxLiveBytes = uint64_t{96} << 20;
constexpr size_t kMaxLiveBlocks = 96;

/// Sizes that matter: tiny, Pool classes and their edges, every threshold's edge, large, and huge.
inline rc::Gen<uint64_t> gen_size() {
  std::vector<uint64_t> edges;
  for (uint64_t t : kStrategyThresholds) {
    edges.push_back(t - 1);
    edges.push_back(t);
    edges.push_back(t + 1);
  }
  edges.push_back(256 * 1024 - 1);  // the default threshold
  edges.push_back(256 * 1024);
  for (size_t c = 0; c < SizeClasses::kCount; c += 5) {
    if (SizeClasses::usable(c) > (uint64_t{8} << 20)) break;
    edges.push_back(SizeClasses::usable(c));
    edges.push_back(SizeClasses::usable(c) + 1);
  }
  return rc::gen::weightedOneOf<uint64_t>({
      {6, rc::gen::inRange<uint64_t>(0, 257)},
      {4, rc::gen::inRange<uint64_t>(257, 64 * 1024)},
      {4, rc::gen::elementOf(edges)},
      {3, rc::gen::inRange<uint64_t>(64 * 1024, uint64_t{2} << 20)},
      {1, rc::gen::inRange<uint64_t>(uint64_t{2} << 20, uint64_t{36} << 20)},
  });
}

inline rc::Gen<uint64_t> gen_align() {
  return rc::gen::weightedOneOf<uint64_t>({
      {6, rc::gen::just<uint64_t>(0)},                                                     // plain alloc
      {3, rc::gen::map(rc::gen::inRange(0, 8), [](int k) { return uint64_t{1} << k; })},   // 1..128
      {1, rc::gen::map(rc::gen::inRange(8, 17), [](int k) { return uint64_t{1} << k; })},  // 256..64 KiB
  });
}

inline rc::Gen<uintptr_t> gen_site() {
  return rc::gen::map(rc::gen::inRange(0, 16), [](int s) { return uintptr_t(0x400000 + 0x40 * s); });
}

struct AllocCmd : Command {
  uint64_t size = *gen_size();
  uint64_t align = *gen_align();
  uintptr_t site = *gen_site();
  Origin origin = *rc::gen::element(Origin::kMalloc, Origin::kNew, Origin::kNewArray);
  void run(const Model&, Harness& h) const override {
    if (h.live().size() >= kMaxLiveBlocks || h.live_bytes() + size > kMaxLiveBytes) return;
    h.alloc(size, align, site, align == 0 ? origin : Origin::kAligned);
  }
  void show(std::ostream& os) const override {
    os << "alloc(" << size << ", align " << align << ", site " << site << ", origin " << int(origin) << ")";
  }
};

struct CallocCmd : Command {
  uint64_t n = *rc::gen::inRange<uint64_t>(0, 64);
  uint64_t size = *gen_size();
  uintptr_t site = *gen_site();
  void run(const Model&, Harness& h) const override {
    if (h.live().size() >= kMaxLiveBlocks || n * size > (uint64_t{32} << 20) ||
        h.live_bytes() + n * size > kMaxLiveBytes)
      return;
    h.calloc(n, size, site);
  }
  void show(std::ostream& os) const override { os << "calloc(" << n << ", " << size << ")"; }
};

struct FreeCmd : Command {
  uint32_t which = *rc::gen::arbitrary<uint32_t>();
  bool sized = *rc::gen::weightedElement<bool>({{4, false}, {1, true}});
  void run(const Model&, Harness& h) const override {
    const uintptr_t p = h.pick(which);
    if (p == 0) return;
    sized ? h.free_sized(p) : h.free(p);
  }
  void show(std::ostream& os) const override { os << (sized ? "free_sized(#" : "free(#") << which << ")"; }
};

struct ReallocCmd : Command {
  uint32_t which = *rc::gen::arbitrary<uint32_t>();
  uint64_t size = *rc::gen::weightedOneOf<uint64_t>({{8, gen_size()}, {1, rc::gen::just<uint64_t>(0)}});
  uintptr_t site = *gen_site();
  void run(const Model&, Harness& h) const override {
    // realloc is a malloc-family call: new/new[] blocks are not its to resize.
    const uintptr_t p =
        h.pick(which, [](const Live& b) { return b.origin == Origin::kMalloc || b.origin == Origin::kAligned; });
    if (p == 0 || h.live_bytes() + size > kMaxLiveBytes) return;
    h.realloc(p, size, site);
  }
  void show(std::ostream& os) const override { os << "realloc(#" << which << ", " << size << ")"; }
};

struct FlushCmd : Command {
  bool pending_only = *rc::gen::arbitrary<bool>();
  void run(const Model&, Harness& h) const override { pending_only ? h.flush_pending() : h.flush(); }
  void show(std::ostream& os) const override { os << (pending_only ? "flush_pending" : "flush"); }
};

struct TickCmd : Command {
  explicit TickCmd(const Model& m) { RC_PRE(m.learning); }
  void run(const Model&, Harness& h) const override { h.tick(); }
  void show(std::ostream& os) const override { os << "epoch tick"; }
};

/// Switches the strategy in force between operations (what the learner does at an epoch).
struct SwitchCmd : Command {
  uint8_t id = 0;
  explicit SwitchCmd(const Model& m) {
    RC_PRE(m.switching);
    id = static_cast<uint8_t>(*rc::gen::inRange<int>(0, kLearnableStrategies));
  }
  void run(const Model&, Harness& h) const override { h.a().selector().set_current(id); }
  void show(std::ostream& os) const override { os << "strategy " << int(id); }
};

/// Arms a PAL failure: the nth map from now, a byte budget near what is mapped, all maps, or none.
struct PalFailCmd : Command {
  int mode = 0;
  uint64_t n = 0;
  explicit PalFailCmd(const Model& m) {
    RC_PRE(m.failing);
    mode = *rc::gen::inRange(0, 4);
    n = *rc::gen::inRange<uint64_t>(1, 8);
  }
  void run(const Model&, Harness& h) const override {
    auto& pal = h.pal();
    pal.reset_failures();
    if (mode == 0) pal.fail_nth_map(n);
    if (mode == 1) pal.fail_past_bytes(pal.mapped_bytes() + n * (uint64_t{512} << 10));
    if (mode == 2) pal.set_fail_all(true);
  }
  void show(std::ostream& os) const override { os << "pal failure mode " << mode << " n " << n; }
};

/// Cache pressure: a burst of large blocks allocated and freed, pushing older ones out of BigCache.
struct PressureCmd : Command {
  uint64_t count = *rc::gen::inRange<uint64_t>(1, 12);
  uint64_t size = *rc::gen::inRange<uint64_t>(64 * 1024, uint64_t{3} << 20);
  uintptr_t site = *gen_site();
  void run(const Model&, Harness& h) const override {
    std::vector<uintptr_t> burst;
    for (uint64_t i = 0; i < count && h.live_bytes() + size <= kMaxLiveBytes && h.live().size() < kMaxLiveBlocks; ++i) {
      if (void* p = h.alloc(size + i * 4096, 0, site + i, Origin::kMalloc))
        burst.push_back(reinterpret_cast<uintptr_t>(p));
    }
    for (uintptr_t p : burst) h.free(p);
  }
  void show(std::ostream& os) const override { os << "pressure " << count << " x " << size; }
};

/// Runs after every command: the whole-state checks.
template <class Cmd>
struct Checked : Cmd {
  using Cmd::Cmd;
  void run(const Model& m, Harness& h) const override {
    Cmd::run(m, h);
    h.check_all();
  }
};

/// The command mix of the stateful model test.
inline auto all_commands() {
  return rc::state::gen::execOneOfWithArgs<Checked<AllocCmd>, Checked<AllocCmd>, Checked<AllocCmd>, Checked<CallocCmd>,
                                           Checked<FreeCmd>, Checked<FreeCmd>, Checked<ReallocCmd>, Checked<FlushCmd>,
                                           Checked<TickCmd>, Checked<SwitchCmd>, Checked<PalFailCmd>,
                                           Checked<PressureCmd>>();
}

}  // namespace hakmem_props
