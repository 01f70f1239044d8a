// The engine's re-planning detectors (arrival rate, processor slow-down) on a shared machine:
// a steady load at the planned rate, started a while after the engine, on processors that all
// run slower than their profile (contention), triggers no re-plan; a real 10x rate step or a
// 10x slow-down of one processor does. Real threads and the discrete-event mode.
#include "fixture.hpp"

#include <thread>

namespace {

// Blocks really take `contention` x their profiled time on every processor: what two
// processors sharing two cores with other work measure (the estimator has the profile).
struct SharedWorld {
  explicit SharedWorld(double contention, double block_ms = 0.4, syn::Wait wait = syn::Wait::sleep)
      : runner(zoo(contention, block_ms), wait), est(zoo(1.0, block_ms)) {}
  static syn::Zoo zoo(double factor, double block_ms = 0.4) {
    syn::Zoo z;
    z.blocks = 2;
    z.task_block_ms = {block_ms, block_ms};
    z.processor_factor = {factor, factor};
    return z;
  }
  syn::Runner runner;
  syn::Estimator est;
};

// Task t whole on processor t % P: both processors carry load (and calibrate).
struct SplitOptimizer {
  template <sparseloom::Estimator E>
  sparseloom::Plan plan(const sparseloom::SystemState&, const E& e) {
    sparseloom::Plan p;
    for (int t = 0; t < e.num_tasks(); ++t) {
      sparseloom::TaskPlan tp;
      for (int b = 0; b < e.num_blocks(t); ++b) {
        tp.variant.choice.push_back(0);
        tp.placement.processor.push_back(t % e.num_processors());
      }
      tp.predicted_latency_ms = e.latency_ms(t, tp.variant, tp.placement);
      tp.predicted_accuracy_pct = e.accuracy_pct(t, tp.variant);
      tp.meets_slo = true;
      p.tasks.push_back(tp);
    }
    return p;
  }
};

rt::EngineOptions detector_options() {
  rt::EngineOptions o;
  o.monitor_period_ms = 5;
  o.rate_window_ms = 300;
  o.rate_min_arrivals = 10;
  // The synthetic runner has no cold first runs; the 10x step comes ~16 requests in, so the
  // calibration must not wait for blocks' first runs to pass.
  o.cold_runs_ignored = 0;
  return o;
}

std::string decision_log(const rt::EngineMetrics& m) {
  std::string s;
  for (const auto& p : m.processors) s += p.name + " speed " + std::to_string(p.observed_slowdown) + "x the profile\n";
  for (const auto& d : m.decisions) s += std::to_string(d.t_ms) + " ms: " + d.reason + "\n";
  return s;
}

int decisions_with(const rt::EngineMetrics& m, const std::string& needle, double after_ms = -1) {
  int n = 0;
  for (const auto& d : m.decisions) n += d.t_ms > after_ms && d.reason.find(needle) != std::string::npos;
  return n;
}

// Submits Poisson arrivals of both tasks at `rate` each for duration_ms, in real time.
template <class Eng>
std::vector<rt::RequestHandle> load(Eng& eng, double rate, double duration_ms, std::uint64_t seed) {
  const auto arr = rt::poisson_arrivals({slo(50, 0, rate), slo(50, 0, rate)}, duration_ms, seed);
  return rt::replay(arr, [&](sparseloom::TaskIndex t) { return eng.submit(t, {input(0)}); });
}

}  // namespace

TEST_CASE("Detectors.SteadyLoadOnSharedCoresDoesNotReplan") {
  SharedWorld w(4.0, 1.0);  // 4x the profile everywhere: the old absolute 3x threshold fired here
  rt::Engine<syn::Runner, syn::Estimator, SplitOptimizer> eng(w.runner, w.est, SplitOptimizer{}, processors(2),
                                                              tasks(2, slo(100, 0, 30)), detector_options());
  std::this_thread::sleep_for(400ms);  // the engine runs before load starts (e.g. stitch repairs)
  auto hs = load(eng, 30, 2000, 11);
  REQUIRE(eng.drain(10s));
  CHECK(all_done(hs));
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  CHECK(m.processors[0].observed_slowdown > 3);  // the contention is measured ...
  CHECK(decisions_with(m, "slowed down") == 0);  // ... and not taken for a slow-down
  CHECK(decisions_with(m, "arrival rate changed") == 0);
  CHECK(m.decisions.size() == 1);  // only the start plan
}

TEST_CASE("Detectors.RateStep10xReplans") {
  SharedWorld w(2.0);
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), tasks(2, slo(50, 0, 15)), detector_options());
  std::this_thread::sleep_for(200ms);
  auto hs = load(eng, 15, 700, 12);
  const double step = eng.now_ms();
  CHECK(decisions_with(eng.metrics(), "arrival rate changed") == 0);
  auto more = load(eng, 150, 900, 13);
  REQUIRE(eng.drain(10s));
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  REQUIRE(decisions_with(m, "arrival rate changed", step) >= 1);
  CHECK(decisions_with(m, "arrival rate changed") == decisions_with(m, "arrival rate changed", step));
}

TEST_CASE("Detectors.OneProcessorSlowed10xReplans") {
  // Blocks that spin for 2 ms: a loaded machine stretches them by its share, as real compute
  // (sleeps would overshoot by a constant that blurs a 10x step).
  SharedWorld w(1.0, 2.0, syn::Wait::spin);
  rt::Engine<syn::Runner, syn::Estimator, SplitOptimizer> eng(w.runner, w.est, SplitOptimizer{}, processors(2),
                                                              tasks(2, slo(300, 0, 10)), detector_options());
  auto hs = load(eng, 10, 800, 14);
  const double step = eng.now_ms();
  CHECK(decisions_with(eng.metrics(), "slowed down") == 0);
  const int slowed = eng.plan().tasks[0].placement.processor[0];
  w.runner.slow_down(slowed, 10);
  auto more = load(eng, 10, 2000, 15);
  REQUIRE(eng.drain(10s));
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  if (!kTimingChecks) return;
  CHECK(decisions_with(m, "processor p" + std::to_string(slowed) + " slowed down", step) == 1);
  CHECK(decisions_with(m, "slowed down") == 1);
}

TEST_CASE("Detectors.Sim.ContentionIsNotASlowdownButAStepIs") {
  // Deterministic: every block 2.5x its profile (under the baseline cap) on both processors.
  SharedWorld w(2.5);
  auto ts = tasks(2, slo(50, 0, 40));
  rt::Engine<syn::Runner, syn::Estimator, SplitOptimizer, rt::LoadAllPreloader, rt::DiscreteEvent> eng(
      w.runner, w.est, SplitOptimizer{}, processors(2), ts, detector_options());
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 2000, 31));
  eng.run_until(2000);
  CHECK(eng.metrics().decisions.size() == 1);
  w.runner.slow_down(1, 10);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 2000, 32));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  CHECK(decisions_with(m, "processor p1 slowed down", 2000) == 1);
  CHECK(decisions_with(m, "slowed down") == 1);
}

TEST_CASE("Detectors.Sim.IdleStartSteadyThenStep") {
  // Deterministic: 1 s idle, 2 s at the planned rate, then 10x.
  syn::Zoo z = SharedWorld::zoo(1.0);
  World w(z);
  auto ts = tasks(2, slo(50, 0, 20));
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), ts, detector_options());
  eng.run_until(1000);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 2000, 21));
  eng.run_until(3000);
  CHECK(eng.metrics().decisions.size() == 1);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 1000, 22, 10.0));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  CHECK(decisions_with(m, "arrival rate changed", 3000) >= 1);
  CHECK(decisions_with(m, "arrival rate changed") == decisions_with(m, "arrival rate changed", 3000));
}

namespace {
// Every block carries a fixed in-engine cost its profile does not have (the first block's
// input copy, a worker's wake-up): small blocks run several times their prediction, large
// ones barely slower.
struct FixedCostRunner : syn::Runner {
  using syn::Runner::Runner;
  double fixed_ms = 0.05;
  double simulate(sparseloom::TaskIndex t, const sparseloom::StitchedVariant& s, sparseloom::BlockIndex b, sparseloom::ProcessorIndex p) {
    return syn::Runner::simulate(t, s, b, p) + fixed_ms;
  }
};
}  // namespace

TEST_CASE("Detectors.Sim.SmallBlocksDoNotSetTheSpeedOfLargeOnes") {
  // One processor: task 0 has two 1 ms blocks (requests take 1.05x their prediction), task 1
  // two 0.01 ms blocks at 10x the rate (6x their prediction). A median of per-block ratios
  // made the processor "6x slow" and admission rejected every task-0 request against its 5 ms
  // deadline; admission now uses each task's own speed on the processor (task 0: 1.05x) and
  // serves it, while the processor's figure for slow-down detection still sees 6x.
  syn::Zoo z;
  z.blocks = 2;
  z.task_block_ms = {1.0, 0.01};
  FixedCostRunner runner(z);
  syn::Estimator est(z);
  auto ts = tasks(2);
  ts[0].slo = slo(5, 0, 20);
  ts[1].slo = slo(5, 0, 200);
  rt::Engine<FixedCostRunner, syn::Estimator, syn::GreedyOptimizer, rt::LoadAllPreloader, rt::DiscreteEvent> eng(
      runner, est, syn::GreedyOptimizer{}, processors(1), ts, detector_options());
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 3000, 41));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  CHECK(m.processors[0].observed_slowdown == doctest::Approx(6.0).epsilon(0.05));
  REQUIRE(m.tasks[0].issued > 40);
  CHECK(m.tasks[0].count(rt::RequestState::on_time) >= m.tasks[0].issued * 95 / 100);
  CHECK(m.tasks[1].count(rt::RequestState::on_time) >= m.tasks[1].issued * 95 / 100);
}

TEST_CASE("Detectors.Sim.AShutOutProcessorIsTriedAgain") {
  // A 4x slow-down makes admission reject every request (predicted 8 ms > 5 ms); no block
  // runs then, so nothing would ever correct the estimate after the processor recovers. An
  // estimate no block renewed for a second falls back to the calibrated baseline.
  syn::Zoo z;
  z.blocks = 2;
  z.task_block_ms = {1.0};
  World w(z);
  auto ts = tasks(1, slo(5, 0, 50));
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), ts, detector_options());
  eng.schedule(rt::poisson_arrivals({ts[0].slo}, 1000, 51));
  eng.run_until(1000);
  const auto on_time_before = eng.metrics().overall.count(rt::RequestState::on_time);
  w.runner.slow_down(0, 4);
  eng.schedule(rt::poisson_arrivals({ts[0].slo}, 500, 52));
  eng.run_until(1500);
  w.runner.slow_down(0, 1);  // recovered, but admission cannot see it yet
  eng.schedule(rt::poisson_arrivals({ts[0].slo}, 1500, 53));
  eng.run_until(3000);
  const auto mid = eng.metrics();
  CHECK(mid.overall.count(rt::RequestState::rejected) > 20);  // shut out while slow
  const auto on_time_mid = mid.overall.count(rt::RequestState::on_time);
  eng.schedule(rt::poisson_arrivals({ts[0].slo}, 1000, 54));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  INFO(decision_log(m));
  check_accounting(m);
  CHECK(on_time_before > 40);
  // The last second (50 requests expected) is served on time again.
  CHECK(m.overall.count(rt::RequestState::on_time) - on_time_mid >= 35);
}
