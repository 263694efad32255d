// The stateful model test of Allocator<Config>: random command sequences over several configurations.
#include "commands.h"

using namespace hakmem_props;

namespace {

/// Shows in the verdict what the sequences exercised (a property that never reaches the
/// large path, the cache or a PAL failure would say so here).
void classify(Harness& h) {
  const StatsSnapshot s = h.a().stats();
  RC_CLASSIFY(s.map_allocs > 0, "map");
  RC_CLASSIFY(s.cache_hits > 0, "cache hit");
  RC_CLASSIFY(s.cache_evictions > 0, "eviction");
  RC_CLASSIFY(s.unmap_calls > 0, "unmap");
  RC_CLASSIFY(h.pal().failed_maps() > 0, "pal failed");
}

/// One stateful run: a fresh allocator, a random command sequence checked after every
/// command, then everything freed, flushed and torn down with nothing left mapped.
void model_run(const Options& o, const Model& m) {
  Harness h(o);
  RC_ASSERT(h.ok());
  rc::state::check(m, h, all_commands());
  classify(h);
  h.drain();
  h.teardown_and_check();
}

Options with(std::initializer_list<std::pair<Opt, uint64_t>> kv) {
  Options o = base_options();
  for (const auto& [k, v] : kv) o.set(k, v);
  return o;
}

}  // namespace

// The configurations of the model test: each is its own ctest test.
HAKMEM_PROP(Props, Model_Default, ()) { model_run(base_options(), Model{}); }
HAKMEM_PROP(Props, Model_SwitchingStrategies, ()) { model_run(base_options(), Model{false, false, true}); }
HAKMEM_PROP(Props, Model_TinyCache, ()) { model_run(with({{Opt::kCache, 512 * 1024}}), Model{}); }
HAKMEM_PROP(Props, Model_NoCache, ()) { model_run(with({{Opt::kCache, 0}}), Model{}); }
HAKMEM_PROP(Props, Model_TinyBatch, ()) { model_run(with({{Opt::kBatch, 256 * 1024}}), Model{}); }
HAKMEM_PROP(Props, Model_ZeroBatch, ()) { model_run(with({{Opt::kBatch, 0}}), Model{}); }
HAKMEM_PROP(Props, Model_FailingPal, ()) { model_run(base_options(), Model{true, false, false}); }
HAKMEM_PROP(Props, Model_FailingPalTinyCache, ()) {
  model_run(with({{Opt::kCache, 512 * 1024}, {Opt::kBatch, 256 * 1024}}), Model{true, false, false});
}
// Paranoid mode (issue 7): canaries, the quarantine (default, tiny, none), protected freed large
// blocks and zero-size blocks, under the same model; audit() counts quarantined bytes as held.
HAKMEM_PROP(Props, Model_Paranoid, ()) { model_run(with({{Opt::kHardening, kHardeningParanoid}}), Model{}); }
HAKMEM_PROP(Props, Model_ParanoidTinyQuarantine, ()) {
  model_run(with({{Opt::kHardening, kHardeningParanoid}, {Opt::kQuarantine, 4096}, {Opt::kCache, 512 * 1024}}),
            Model{});
}
HAKMEM_PROP(Props, Model_ParanoidNoQuarantineFailingPal, ()) {
  model_run(with({{Opt::kHardening, kHardeningParanoid}, {Opt::kQuarantine, 0}}), Model{true, false, false});
}
HAKMEM_PROP(Props, Model_Learn, ()) {
  Options o = with({{Opt::kMode, kModeLearn}, {Opt::kEpsilon, 20}, {Opt::kCanary, 30}});
  Harness h(o);
  RC_ASSERT(h.ok());
  // A deterministic cost landscape drawn per case.
  for (double& c : h.cost().per_request) c = static_cast<double>(*rc::gen::inRange(1, 1000));
  rc::state::check(Model{false, true, false}, h, all_commands());
  classify(h);
  RC_CLASSIFY(h.a().learner().counters().epochs > 0, "epochs ended");
  h.drain();
  h.teardown_and_check();
}

/// Each fixed strategy the selector offers (mode=fixed with one of the twelve thresholds).
class FixedStrategy : public ::testing::TestWithParam<int> {};
TEST_P(FixedStrategy, Model) {
  const uint64_t threshold = kStrategyThresholds[GetParam()];
  check_prop([threshold] {
    Options o = with({{Opt::kThreshold, threshold}});
    Harness h(o);
    RC_ASSERT(h.ok());
    RC_ASSERT(h.a().selector().snapshot().threshold == threshold);
    RC_ASSERT(h.a().selector().current_id() == GetParam());
    rc::state::check(Model{}, h, all_commands());
    classify(h);
    RC_ASSERT(h.a().selector().snapshot().threshold == threshold);  // fixed means fixed
    h.drain();
    h.teardown_and_check();
  });
}
INSTANTIATE_TEST_SUITE_P(Props, FixedStrategy, ::testing::Range(0, int{kLearnableStrategies}),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return "T" + std::to_string(kStrategyThresholds[i.param] / 1024) + "K";
                         });

int main(int argc, char** argv) { return props_main(argc, argv); }
