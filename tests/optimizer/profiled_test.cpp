// The policies on the project's own estimator (estimator::Profiled), built from a synthetic
// profile: the optimizer must work on what the engine will give it, not only on the test
// estimator it was developed against.
#include <doctest/doctest.h>

#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "synthetic_estimator.hpp"

using namespace sparseloom;
using estimator::Profiled;
using testing::make_state;
using testing::SyntheticConfig;
using testing::SyntheticEstimator;

static_assert(Optimizer<optimizer::SparsityAware, Profiled>);
static_assert(Optimizer<optimizer::SparsityAwareNoStitching, Profiled>);
static_assert(Optimizer<optimizer::SparsityAwareBlind, Profiled>);
static_assert(Optimizer<optimizer::Exact, Profiled>);
static_assert(Optimizer<baselines::Fixed, Profiled>);
static_assert(Optimizer<baselines::BandSEL, Profiled>);
static_assert(Optimizer<baselines::Infaas, Profiled>);

namespace {

// The synthetic tables as a profile, and an accuracy model measured on its plain variants and
// single-block swaps (the zero-shot part of the project's model).
Profiled as_profiled(const SyntheticEstimator& s) {
  std::vector<Profiled::Task> tasks;
  for (int t = 0; t < s.num_tasks(); ++t) {
    const int B = s.num_blocks(t), V = s.num_variants(t), P = s.num_processors();
    estimator::TaskProfile tp;
    tp.task = "t" + std::to_string(t);
    tp.block.assign(B, std::vector<std::vector<estimator::LatencyStats>>(V, std::vector<estimator::LatencyStats>(P)));
    tp.bytes.assign(B, std::vector<double>(V));
    for (int b = 0; b < B; ++b)
      for (int v = 0; v < V; ++v) {
        tp.bytes[b][v] = s.block_bytes(t, b, v);
        for (int p = 0; p < P; ++p)
          if (s.can_place(t, b, v, p)) {
            double l = s.block_latency_ms(t, b, v, p);
            tp.block[b][v][p] = {l, l, l, 5};
          }
      }
    tp.transfer_ms.assign(s.tasks[t].transfer.begin(), s.tasks[t].transfer.end() - 1);
    tp.repair_ms.assign(B, s.tasks[t].repair_ms);
    tp.repair_bytes.assign(B, s.tasks[t].repair_bytes);
    estimator::AccuracyModel am(B, V, 0);
    std::vector<double> plain(V);
    std::vector<std::vector<double>> single(B, std::vector<double>(V));
    for (int v = 0; v < V; ++v) {
      plain[v] = s.accuracy_pct(t, StitchedVariant{std::vector<int>(B, v)});
      for (int b = 0; b < B; ++b) {
        StitchedVariant one{std::vector<int>(B, 0)};
        one.choice[b] = v;
        single[b][v] = s.accuracy_pct(t, one);
      }
    }
    am.set_measurements(plain, single);
    tasks.push_back({tp.task, am, tp});
  }
  std::vector<estimator::ProcessorProfile> procs;
  for (int p = 0; p < s.num_processors(); ++p) procs.push_back({"p" + std::to_string(p), "x", "synthetic", "", 1});
  return Profiled(std::move(tasks), std::move(procs));
}

}  // namespace

TEST_CASE("Optimizer.OnProfiledEstimator.PlansAreValidAndMeetFloors") {
  SyntheticEstimator syn(SyntheticConfig{.seed = 11});
  Profiled e = as_profiled(syn);
  SystemState s = make_state(syn, 0.1, 2.0, 2.0, 11);
  Plan plan = optimizer::SparsityAware{}.plan(s, e);
  for (int t = 0; t < e.num_tasks(); ++t) {
    const TaskPlan& tp = plan.tasks[t];
    INFO("task " << t << ": " << tp.reason);
    REQUIRE(static_cast<int>(tp.placement.processor.size()) == e.num_blocks(t));
    for (int b = 0; b < e.num_blocks(t); ++b) CHECK(e.can_place(t, b, tp.variant.choice[b], tp.placement.processor[b]));
    CHECK(e.accuracy_pct(t, tp.variant) >= s.slos[t].min_accuracy_pct);
    CHECK(e.latency_ms(t, tp.variant, tp.placement) <= s.slos[t].deadline_ms);
    CHECK(tp.meets_slo);
  }
  for (const Plan& p : {baselines::Fixed{}.plan(s, e), baselines::BandLSF{}.plan(s, e), baselines::Infaas{}.plan(s, e),
                        optimizer::SparsityAwareBlind{}.plan(s, e)})
    CHECK(p.tasks.size() == plan.tasks.size());
}

TEST_CASE("Optimizer.OnProfiledEstimator.FastSolverMatchesExact") {
  double worst = 0;
  for (std::uint64_t seed = 21; seed <= 26; ++seed) {
    SyntheticEstimator syn(SyntheticConfig{.tasks = 3, .blocks = 3, .variants = 3, .processors = 2, .seed = seed});
    Profiled e = as_profiled(syn);
    SystemState s = make_state(syn, 0.3 + 0.1 * static_cast<double>(seed % 5), 1.0, 1.5, seed);
    double ex = optimizer::evaluate_plan(s, e, optimizer::Exact{}.plan(s, e)).score;
    double fa = optimizer::evaluate_plan(s, e, optimizer::SparsityAware{}.plan(s, e)).score;
    CHECK(fa <= ex + 1e-9);
    worst = std::max(worst, ex - fa);
  }
  MESSAGE("fast vs exact on estimator::Profiled: worst gap " << worst);
  CHECK(worst <= 0.05);
}
