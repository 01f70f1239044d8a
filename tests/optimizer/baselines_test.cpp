// The baselines behave as their peers do (Band's schedulers, INFaaS's variant choice, Fixed).
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/optimizer/model.hpp"
#include "synthetic_estimator.hpp"

using namespace sparseloom;
using testing::make_state;
using testing::SyntheticConfig;
using testing::SyntheticEstimator;

namespace {

bool whole_on_one_processor(const TaskPlan& tp) {
  const auto& p = tp.placement.processor;
  return !p.empty() && std::all_of(p.begin(), p.end(), [&](int x) { return x == p.front(); });
}

// The fastest plain variant meeting the floor, whole on its best usable processor.
double fastest_plain_ms(const SyntheticEstimator& e, const SystemState& s, TaskIndex t, VariantIndex* which) {
  double best = INFINITY;
  for (int v = 0; v < e.num_variants(t); ++v) {
    StitchedVariant sv{std::vector<int>(e.num_blocks(t), v)};
    if (e.accuracy_pct(t, sv) < s.slos[t].min_accuracy_pct) continue;
    for (int p = 0; p < e.num_processors(); ++p) {
      bool ok = optimizer::usable(s, p);
      for (int b = 0; b < e.num_blocks(t) && ok; ++b) ok = e.can_place(t, b, v, p);
      if (!ok) continue;
      double l = e.latency_ms(t, sv, Placement{std::vector<int>(e.num_blocks(t), p)});
      if (l < best) best = l, *which = v;
    }
  }
  return best;
}

// One task, one block, one processor, variants with the given latencies and accuracy drops.
SyntheticEstimator one_task(std::vector<double> ms, std::vector<double> drop) {
  int V = static_cast<int>(ms.size());
  SyntheticEstimator e(SyntheticConfig{.tasks = 1, .blocks = 1, .variants = V, .processors = 1});
  e.tasks[0].overhead_ms = 0;
  e.tasks[0].base_acc = 90;
  for (int v = 0; v < V; ++v) {
    e.lat_ref(0, 0, v, 0) = ms[v];
    e.tasks[0].drop[v] = drop[v];
  }
  return e;
}

}  // namespace

TEST_CASE("Baselines.OneModelPoliciesUseTheFastestPlainVariantMeetingTheFloor") {
  SyntheticEstimator e(SyntheticConfig{.seed = 3});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 3);
  baselines::Fixed fixed;
  baselines::BandSEL band;
  for (const Plan& plan : {fixed.plan(s, e), band.plan(s, e)}) {
    for (int t = 0; t < e.num_tasks(); ++t) {
      const TaskPlan& tp = plan.tasks[t];
      VariantIndex want = -1;
      fastest_plain_ms(e, s, t, &want);
      CHECK(tp.variant.is_plain());
      CHECK(tp.variant.choice.front() == want);
      CHECK(whole_on_one_processor(tp));
    }
  }
  // Fixed routes every request by its plan; Band chooses per request among every processor
  // that runs the model (the engine takes the earliest predicted finish, SEL's rule).
  for (const auto& tp : fixed.plan(s, e).tasks) {
    CHECK(tp.routing == Routing::planned);
    CHECK(tp.alternatives.empty());
  }
  const Plan bp = band.plan(s, e);
  int offered = 0;
  for (int t = 0; t < e.num_tasks(); ++t) {
    const TaskPlan& tp = bp.tasks[t];
    CHECK(tp.routing == Routing::earliest_finish);
    std::set<int> procs{tp.placement.processor.front()};
    for (const auto& pl : tp.alternatives) {
      CHECK(std::all_of(pl.processor.begin(), pl.processor.end(), [&](int x) { return x == pl.processor.front(); }));
      CHECK(procs.insert(pl.processor.front()).second);
    }
    for (int p = 0; p < e.num_processors(); ++p) {
      bool runs = optimizer::usable(s, p);
      for (int b = 0; b < e.num_blocks(t) && runs; ++b) runs = e.can_place(t, b, tp.variant.choice[b], p);
      CHECK(procs.contains(p) == runs);
    }
    offered += static_cast<int>(tp.alternatives.size());
  }
  CHECK(offered > 0);
}

TEST_CASE("Baselines.Fixed.KeepsItsConfigurationAndOnlyMovesOffADeadProcessor") {
  SyntheticEstimator e(SyntheticConfig{.seed = 5});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 5);
  baselines::Fixed fixed;
  Plan a = fixed.plan(s, e);
  s.slos[0].rate_rps *= 3;  // Fixed does not react to load
  Plan b = fixed.plan(s, e);
  for (int t = 0; t < e.num_tasks(); ++t) {
    CHECK(a.tasks[t].variant == b.tasks[t].variant);
    CHECK(a.tasks[t].placement == b.tasks[t].placement);
  }
  int dead = a.tasks[0].placement.processor.front();
  s.processor_available[dead] = false;
  Plan c = fixed.plan(s, e);
  for (const auto& tp : c.tasks)
    for (int p : tp.placement.processor) CHECK(p != dead);
  s.processor_available[dead] = true;
  Plan d = fixed.plan(s, e);
  CHECK(d.tasks[0].placement == a.tasks[0].placement);  // back to its configured processor
  // A given mapping is used as is.
  baselines::Fixed given(std::vector<ProcessorIndex>(e.num_tasks(), 0));
  for (const auto& tp : given.plan(s, e).tasks) CHECK(tp.placement.processor.front() == 0);
}

TEST_CASE("Baselines.Band.SelPicksTheEarliestExpectedFinishPerRequest") {
  SyntheticEstimator e(SyntheticConfig{.tasks = 1, .blocks = 1, .variants = 1, .processors = 2});
  e.tasks[0].overhead_ms = 0;
  e.lat_ref(0, 0, 0, 0) = 10;  // CPU
  e.lat_ref(0, 0, 0, 1) = 4;   // GPU
  SystemState s;
  s.slos = {testing::slo(50, 0, 10)};
  baselines::BandSEL band;
  band.plan(s, e);
  std::vector<PendingRequest> pending{{1, 0, 0, 50}, {2, 0, 0, 50}, {3, 0, 0, 50}};
  std::vector<ProcessorQueue> q{{0, true, true}, {0, true, true}};
  std::vector<DispatchDecision> out;
  band.dispatch(pending, q, 0, out);
  REQUIRE(out.size() == 3);
  // GPU at 0 -> 4 -> 8; the third finishes at 12 on the GPU, 10 on the CPU: CPU.
  CHECK(out[0].processor == 1);
  CHECK(out[1].processor == 1);
  CHECK(out[2].processor == 0);
  for (const auto& d : out) CHECK(d.action == DispatchDecision::Action::run);
  // An unavailable processor is never chosen.
  out.clear();
  std::vector<ProcessorQueue> gpu_down{{0, true, true}, {0, true, false}};
  band.dispatch(pending, gpu_down, 0, out);
  REQUIRE(out.size() == 3);
  for (const auto& d : out) CHECK(d.processor == 0);
  // Measured latencies move the expectation (EMA, smoothing 0.1).
  band.observe(0, 1, 24);
  CHECK(band.expected_ms(0, 1) == doctest::Approx(0.9 * 4 + 0.1 * 24));
}

TEST_CASE("Baselines.Band.HeftOnlyPlacesOnIdleProcessors") {
  SyntheticEstimator e(SyntheticConfig{.tasks = 1, .blocks = 1, .variants = 1, .processors = 2});
  e.tasks[0].overhead_ms = 0;
  e.lat_ref(0, 0, 0, 0) = 10;
  e.lat_ref(0, 0, 0, 1) = 4;
  SystemState s;
  s.slos = {testing::slo(50, 0, 10)};
  baselines::BandHEFT band;
  band.plan(s, e);
  std::vector<PendingRequest> pending{{1, 0, 0, 50}, {2, 0, 0, 50}};
  std::vector<DispatchDecision> out;
  // GPU busy (3 ms left), CPU idle: the first request's best is the GPU (3 + 4 < 10), so it
  // yields; the second then sees the GPU reserved (3 + 4 + 4 = 11 > 10) and takes the idle CPU.
  std::vector<ProcessorQueue> q{{0, true, true}, {3, false, true}};
  band.dispatch(pending, q, 0, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == 2);
  CHECK(out[0].processor == 0);
  // Nothing idle: nothing placed.
  out.clear();
  std::vector<ProcessorQueue> busy{{5, false, true}, {3, false, true}};
  band.dispatch(pending, busy, 0, out);
  CHECK(out.empty());
}

TEST_CASE("Baselines.Band.LsfOrdersBySlackAndDropsHopelessRequests") {
  SyntheticEstimator e(SyntheticConfig{.tasks = 2, .blocks = 1, .variants = 1, .processors = 1});
  for (int t = 0; t < 2; ++t) {
    e.tasks[t].overhead_ms = 0;
    e.lat_ref(t, 0, 0, 0) = 10;
  }
  SystemState s;
  s.slos.assign(2, testing::slo(50, 0, 10));
  baselines::BandLSF band;
  band.plan(s, e);
  // id 1: deadline 100 (slack 90); id 2: deadline 15 (slack 5); id 3: deadline 5: hopeless.
  std::vector<PendingRequest> pending{{1, 0, 0, 100}, {2, 1, 0, 15}, {3, 0, 0, 5}};
  std::vector<ProcessorQueue> q{{0, true, true}};
  std::vector<DispatchDecision> out;
  band.dispatch(pending, q, 0, out);
  REQUIRE(out.size() == 3);
  CHECK(out[0].id == 3);
  CHECK(out[0].action == DispatchDecision::Action::drop);
  CHECK(out[1].id == 2);  // least slack first
  CHECK(out[1].action == DispatchDecision::Action::run);
  CHECK(out[2].id == 1);
  CHECK(out[2].action == DispatchDecision::Action::run);
  // No idle processor: LSF waits.
  out.clear();
  std::vector<ProcessorQueue> busy{{5, false, true}};
  band.dispatch(pending, busy, 0, out);
  CHECK(out.empty());
}

TEST_CASE("Baselines.Infaas.PicksTheSmallestSlackVariantPreferringLoadedOnes") {
  // Latencies 10, 20, 30, 40 ms; variant 3 is below the floor; deadline 35 ms.
  SyntheticEstimator e = one_task({40, 20, 30, 10}, {0, 1, 1.5, 9});
  SystemState s;
  s.slos = {testing::slo(35, 85, 1)};
  baselines::Infaas infaas;
  Plan p = infaas.plan(s, e);
  CHECK(p.tasks[0].variant.choice.front() == 2);  // 30 ms: slack 5 (variant 0 is too slow)
  CHECK(p.tasks[0].predicted_latency_ms <= 35);
  // A loaded variant that fits wins over a smaller slack.
  baselines::Infaas warm;
  warm.set_loaded(0, 1);
  CHECK(warm.plan(s, e).tasks[0].variant.choice.front() == 1);
  // The previous choice counts as loaded: a looser deadline keeps it.
  s.slos[0].deadline_ms = 45;
  CHECK(infaas.plan(s, e).tasks[0].variant.choice.front() == 2);
  CHECK(baselines::Infaas{}.plan(s, e).tasks[0].variant.choice.front() == 0);
  // Nothing fits: the fastest meeting the floor, flagged.
  s.slos[0].deadline_ms = 15;
  Plan miss = baselines::Infaas{}.plan(s, e);
  CHECK(miss.tasks[0].variant.choice.front() == 1);
  CHECK_FALSE(miss.tasks[0].meets_slo);
}

TEST_CASE("Baselines.Infaas.NoStitchingAndPlacementBlindToSparsity") {
  SyntheticEstimator e(SyntheticConfig{.seed = 6});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 6);
  Plan p = baselines::Infaas{}.plan(s, e);
  for (int t = 0; t < e.num_tasks(); ++t) {
    CHECK(p.tasks[t].variant.is_plain());
    CHECK(whole_on_one_processor(p.tasks[t]));
    // Its processor is the one the blind dense model prefers for this load, not chosen from
    // the variant's own per-processor gain: with the dense cost of the GPU lowest and no
    // contention, INFaaS puts the heaviest task there whatever variant it then runs.
  }
  SystemState light = make_state(e, 0.01, 1.5, 2.0, 6);
  Plan q = baselines::Infaas{}.plan(light, e);
  optimizer::BlockTable bt = optimizer::block_table(e, 0, light);
  auto cost = optimizer::blind_task_cost(bt, light, optimizer::reference_variant(e, 0));
  int by_dense = static_cast<int>(std::min_element(cost.begin(), cost.end()) - cost.begin());
  CHECK(q.tasks[0].placement.processor.front() == by_dense);
}
