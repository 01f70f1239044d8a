// The discrete-event mode: the same Engine (queues, admission, re-planning, preloading,
// metrics) in simulated time, with blocks taking the runner's modelled time.
#include "fixture.hpp"

using rt::RequestState;

namespace {

syn::Zoo zoo2() {
  syn::Zoo z;
  z.blocks = 3;
  z.task_block_ms = {2.0, 1.0};
  z.variant_speed = {1.0, 0.5};
  z.variant_accuracy = {92.0, 85.0};
  z.processor_factor = {1.0, 1.5};
  return z;
}

rt::EngineMetrics simulate(double rate_scale, std::uint64_t seed) {
  World w(zoo2());
  auto ts = tasks(2, slo(30, 80, 100));
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), ts);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 2000, seed, rate_scale));
  REQUIRE(eng.drain());
  return eng.metrics();
}

}  // namespace

TEST_CASE("Sim.DeterministicAndAccounted") {
  const auto a = simulate(1.0, 11);
  const auto b = simulate(1.0, 11);
  check_accounting(a);
  CHECK(a.overall.issued > 300);
  CHECK(a.overall.issued == b.overall.issued);
  for (auto s : rt::kEndStates) CHECK(a.overall.count(s) == b.overall.count(s));
  CHECK(a.overall.p99_ms == b.overall.p99_ms);
  CHECK(a.wall_ms == b.wall_ms);
  CHECK(a.overall.slo_violation_rate < 0.05);  // 200 rps on capacity for ~1000: light load
  CHECK(a.processors[0].utilisation > 0);
}

TEST_CASE("Sim.OverloadIsRejectedNotLate") {
  const auto m = simulate(20.0, 3);  // far beyond capacity
  check_accounting(m);
  CHECK(m.overall.count(RequestState::rejected) > 0);
  CHECK(m.overall.count(RequestState::on_time) > 0);
  // Admission with an exact cost model: what it admits finishes in time.
  CHECK(m.overall.count(RequestState::late) == 0);
}

TEST_CASE("Sim.DeviceFailureReplans") {
  World w(zoo2());
  auto ts = tasks(2, slo(30, 80, 100));
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), ts);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 1000, 5));
  eng.run_until(300);
  const auto before = eng.plan();
  w.runner.disappear(0);
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(!m.processors[0].available);
  for (const auto& tp : eng.plan().tasks)
    for (auto p : tp.placement.processor) CHECK(p == 1);
  CHECK(has_decision(m, "failed"));
  CHECK(m.overall.count(RequestState::on_time) > 0);
  (void)before;
}

TEST_CASE("Sim.SlowdownDetected") {
  World w(zoo2());
  auto ts = tasks(2, slo(60, 80, 50));
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), ts);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo}, 1000, 9));
  eng.run_until(200);
  w.runner.slow_down(0, 10);
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(has_decision(m, "slowed down"));
  CHECK(m.processors[0].observed_slowdown > 3);
}
