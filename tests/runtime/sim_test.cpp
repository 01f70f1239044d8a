// The discrete-event mode: the same Engine (queues, admission, re-planning, preloading,
// metrics) in simulated time, with blocks taking the runner's modelled time.
#include "fixture.hpp"
#include "sparseloom/optimizer/model.hpp"

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

namespace {
// One processor; t0 runs 3 blocks of 4 ms (due 100 ms after arrival), t1 3 blocks of 0.5 ms
// (due 5 ms after). t0 arrives at 0 and again at 0.5 (queued); t1 at 1.
rt::EngineMetrics long_then_urgent(bool preempt) {
  syn::Zoo z;
  z.blocks = 3;
  z.task_block_ms = {4.0, 0.5};
  World w(z);
  std::vector<rt::TaskSpec> ts{{"long", slo(100, 0, 2)}, {"urgent", slo(5, 0, 2)}};
  rt::EngineOptions o;
  o.preempt_between_blocks = preempt;
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), ts, o);
  eng.schedule({{0.0, 0}, {0.5, 0}, {1.0, 1}});
  REQUIRE(eng.drain());
  return eng.metrics();
}
}  // namespace

TEST_CASE("Sim.AnEarlierDeadlineRunsBetweenTheBlocksOfALongerRequest") {
  // EDF between blocks: the urgent request waits for the running block (3 ms), not for both
  // long requests (23 ms), and admission counts only that block: all three on time.
  const auto m = long_then_urgent(true);
  check_accounting(m);
  CHECK(m.tasks[1].count(RequestState::on_time) == 1);
  CHECK(m.tasks[0].count(RequestState::on_time) == 2);
  CHECK(m.first_violations.empty());
  // Without it the urgent request is turned away behind the queued long one.
  const auto f = long_then_urgent(false);
  check_accounting(f);
  CHECK(f.tasks[1].count(RequestState::on_time) == 0);
  REQUIRE(f.first_violations.size() == 1);
  CHECK(f.first_violations[0].task == 1);
  CHECK(f.first_violations[0].reason.find("admission") == 0);
}

TEST_CASE("Sim.AdmissionKeepsThePromisesItMade") {
  // A newcomer due earlier that would itself be in time, but would push a queued request of
  // equal criticality past its deadline, is turned away: admitted requests stay in time.
  syn::Zoo z;
  z.blocks = 2;
  z.task_block_ms = {2.0, 2.0};
  World w(z);
  // "late" requests are due 9 ms after arrival and take 4 ms; "early" ones 6.5 ms after.
  std::vector<rt::TaskSpec> ts{{"late", slo(9, 0, 2)}, {"early", slo(6.5, 0, 2)}};
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), ts);
  // late#1 runs 0-4; late#2 queued (due 9.5, would finish 8); early at 1 (due 7.5) would run
  // 4-8 and push late#2 to 12 > 9.5: refused, although it would itself be in time.
  eng.schedule({{0.0, 0}, {0.5, 0}, {1.0, 1}});
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(m.tasks[0].count(RequestState::on_time) == 2);
  CHECK(m.tasks[1].count(RequestState::rejected) == 1);
  REQUIRE(m.first_violations.size() == 1);
  CHECK(m.first_violations[0].reason.find("equal or higher criticality") != std::string::npos);
}

namespace {
// One 2 ms block, due 10 ms after arrival. The first `cold` requests run 10x slow (a block's
// first runs after its load); the 90 after them (every 10 ms from 100 ms) at profile speed.
rt::EngineMetrics cold_start(int cold, int ignored) {
  syn::Zoo z;
  z.blocks = 1;
  z.task_block_ms = {2.0};
  World w(z);
  rt::EngineOptions o;
  o.cold_runs_ignored = ignored;
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), {{"t", slo(10, 0, 100)}}, o);
  std::vector<rt::Arrival> a;
  for (int i = 0; i < cold; ++i) a.push_back({30.0 * i, 0});
  for (int i = 0; i < 90; ++i) a.push_back({100.0 + 10.0 * i, 0});
  eng.schedule(a);
  w.runner.slow_down(0, 10);
  eng.run_until(30.0 * cold);
  w.runner.slow_down(0, 1);
  REQUIRE(eng.drain());
  return eng.metrics();
}
}  // namespace

TEST_CASE("Sim.ABlocksFirstRunsDoNotShutItsTaskOut") {
  // Counted, three slow first runs read as a 10x slower task: admission turns its requests
  // away until that estimate is 1 s old. Left out (cold_runs_ignored), every later request runs.
  const auto counted = cold_start(3, 0);
  check_accounting(counted);
  CHECK(counted.overall.count(RequestState::rejected) > 50);
  const auto ignored = cold_start(3, 3);
  check_accounting(ignored);
  CHECK(ignored.overall.count(RequestState::rejected) == 0);
  CHECK(ignored.overall.count(RequestState::on_time) == 90);
}

namespace {
// The greedy plan with a routing: the task's stitch whole on every other processor offered as
// an alternative (optimizer::offer_alternatives), routed as `routing` says.
struct RoutedGreedy {
  sparseloom::Routing routing = sparseloom::Routing::planned;
  syn::GreedyOptimizer greedy;
  template <sparseloom::Estimator E>
  sparseloom::Plan plan(const sparseloom::SystemState& s, const E& e) {
    auto p = greedy.plan(s, e);
    if (routing != sparseloom::Routing::planned) sparseloom::optimizer::offer_alternatives(p, s, e, routing);
    return p;
  }
};

// One task of one 2 ms block, due 5 ms after arrival, on two identical processors; the greedy
// plan puts it on p0. `burst` requests arrive at once.
rt::EngineMetrics burst(sparseloom::Routing routing, int burst) {
  syn::Zoo z;
  z.blocks = 1;
  z.task_block_ms = {2.0};
  z.processor_factor = {1.0, 1.0};
  World w(z);
  rt::Engine<syn::Runner, syn::Estimator, RoutedGreedy, rt::LoadAllPreloader, rt::DiscreteEvent> eng(
      w.runner, w.est, RoutedGreedy{routing, {}}, processors(2), {{"t", slo(5, 0, 100)}});
  CHECK(eng.plan().tasks[0].placement.processor == std::vector<int>{0});
  // The memory policy holds what the routing may use: the alternative's block too.
  CHECK(w.runner.is_resident(0, 0, 0, 1) == (routing != sparseloom::Routing::planned));
  eng.schedule(std::vector<rt::Arrival>(static_cast<std::size_t>(burst), rt::Arrival{0.0, 0}));
  REQUIRE(eng.drain());
  return eng.metrics();
}
}  // namespace

TEST_CASE("Sim.RoutingTakesTheAlternativesThePlanOffers") {
  using sparseloom::Routing;
  // Planned: p0 takes the two that finish by 4 ms; the other two would finish at 6 and 8 ms.
  const auto planned = burst(Routing::planned, 4);
  check_accounting(planned);
  CHECK(planned.overall.count(RequestState::on_time) == 2);
  CHECK(planned.overall.count(RequestState::rejected) == 2);
  CHECK(planned.processors[1].blocks == 0);
  // Overflow: what p0 would reject goes to p1; all four in time.
  const auto overflow = burst(Routing::overflow, 4);
  check_accounting(overflow);
  CHECK(overflow.overall.count(RequestState::on_time) == 4);
  CHECK(overflow.processors[0].blocks == 2);
  CHECK(overflow.processors[1].blocks == 2);
  // Overflow leaves p1 alone while p0 admits: two requests both run on p0 (in time, 2 and 4 ms).
  const auto two = burst(Routing::overflow, 2);
  CHECK(two.overall.count(RequestState::on_time) == 2);
  CHECK(two.processors[1].blocks == 0);
  // Earliest finish splits them (the second finishes at 2 ms on p1 rather than 4 on p0).
  const auto split = burst(Routing::earliest_finish, 2);
  CHECK(split.overall.count(RequestState::on_time) == 2);
  CHECK(split.processors[0].blocks == 1);
  CHECK(split.processors[1].blocks == 1);
  // Past what both processors can do in time, the rest is still rejected, none late.
  const auto six = burst(Routing::overflow, 6);
  check_accounting(six);
  CHECK(six.overall.count(RequestState::on_time) == 4);
  CHECK(six.overall.count(RequestState::rejected) == 2);
  CHECK(six.overall.count(RequestState::late) == 0);
}

namespace {
// The optimizer's queueing model (optimizer/model.hpp) for one task alone on processor 0 with
// `blocks` blocks of block_ms each, registered in `load`.
sparseloom::optimizer::Candidate blocks_on_one(int blocks, double block_ms) {
  sparseloom::optimizer::Candidate c;
  c.latency_ms = blocks * block_ms;
  c.accuracy_pct = 100;
  c.busy_ms = {blocks * block_ms};
  c.block_sq_ms = {blocks * block_ms * block_ms};
  return c;
}
}  // namespace

TEST_CASE("Sim.OptimizerWaitModelMatchesTheEngine") {
  // Three tasks share one processor (utilisation 0.7): a tight one of short blocks (4 x 0.5 ms,
  // due in 10 ms, 100 rps), a middle one (4 x 1 ms, due in 50 ms, 50 rps) and a loose one of
  // long blocks (4 x 5 ms, due in 200 ms, 15 rps). The engine runs EDF between blocks; the
  // optimizer's model must predict each task's mean wait from that (the FIFO model it replaced
  // gives all three one wait).
  syn::Zoo z;
  z.blocks = 4;
  z.task_block_ms = {0.5, 1.0, 5.0};
  World w(z);
  rt::EngineOptions o;
  o.admission_control = false;  // every request runs: the waits are the queue's alone
  std::vector<rt::TaskSpec> ts{{"tight", slo(10, 0, 100)}, {"middle", slo(50, 0, 50)}, {"loose", slo(200, 0, 15)}};
  SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), ts, o);
  eng.schedule(rt::poisson_arrivals({ts[0].slo, ts[1].slo, ts[2].slo}, 120000, 21));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  check_accounting(m);
  sparseloom::optimizer::LoadModel load(1);
  std::vector<sparseloom::optimizer::Candidate> c;
  for (int t = 0; t < 3; ++t) {
    c.push_back(blocks_on_one(4, z.task_block_ms[t]));
    load.add(c.back(), ts[t].slo);
  }
  for (int t = 0; t < 3; ++t) {
    const double service = 4 * z.task_block_ms[t];
    const double measured = m.tasks[t].mean_ms - service;
    const double model = load.edf_wait_ms(0, ts[t].slo.deadline_ms, service);
    INFO("task " << t << ": measured wait " << measured << " ms, model " << model << " ms, FIFO model " << load.wait_ms(0)
                 << " ms");
    CHECK(m.tasks[t].count(RequestState::on_time) > 1000);
    CHECK(model == doctest::Approx(measured).epsilon(0.10));
    // The FIFO wait is far off (the tight task waits for a block, the loose one for all else).
    CHECK(std::abs(load.wait_ms(0) - measured) > 2 * std::abs(model - measured));
    CHECK(load.outcome(c[t], ts[t].slo).wait_ms == doctest::Approx(model));
  }
}

TEST_CASE("Sim.OptimizerAttainmentTracksTheEngine") {
  // The share of each task's requests within its deadline, predicted by the optimizer's model
  // and measured in the engine (simulated time, admission on, Poisson arrivals, blocks as
  // profiled), for task mixes shaped like the latency-scale scenario: MobileNetV2-like (5 x
  // 0.8 ms, due in 12.4 ms), ResNet-18-like (5 x 1.83 ms, 43 ms), ResNet-50- and encoder-like
  // (5 x 3.9 / 3.36 ms, 91 ms) on one processor at utilisations 0.23-0.55. Measured in session
  // 16: mean error 1.6 pp, the model pessimistic for long requests (up to 4.7 pp: it draws the
  // delay from work due earlier that arrives while a request runs from the exponential tail
  // too). Moving that delay into the service time cut the error to 0.46 pp here, yet made
  // SparseLoom's and Fixed's plans worse in every simulated latency-scale load tried (docs/
  // optimizer.md), so the model stays; this pins how far it is from the engine.
  struct Mix {
    std::vector<double> block_ms, deadline_ms, rate;
  };
  const std::vector<Mix> mixes{{{0.8, 3.4}, {12.4, 91}, {32, 6}},
                               {{0.8, 3.4}, {12.4, 91}, {48, 9}},
                               {{1.83, 3.9, 3.36}, {43, 91, 91}, {16, 6, 6}},
                               {{1.83, 3.9, 3.36}, {43, 91, 91}, {24, 9, 9}},
                               {{1.83, 3.9, 0.8, 3.36}, {43, 91, 12.4, 91}, {16, 6, 32, 6}}};
  double err = 0;
  int n = 0;
  for (const auto& mix : mixes) {
    syn::Zoo z;
    z.blocks = 5;
    z.task_block_ms = mix.block_ms;
    World w(z);
    std::vector<rt::TaskSpec> ts;
    std::vector<sparseloom::Slo> slos;
    for (std::size_t t = 0; t < mix.rate.size(); ++t) {
      ts.push_back({"t" + std::to_string(t), slo(mix.deadline_ms[t], 0, mix.rate[t])});
      slos.push_back(ts.back().slo);
    }
    SimEngine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), ts);
    eng.schedule(rt::poisson_arrivals(slos, 120000, 23));
    REQUIRE(eng.drain());
    const auto m = eng.metrics();
    check_accounting(m);
    sparseloom::optimizer::LoadModel load(1);
    std::vector<sparseloom::optimizer::Candidate> c;
    for (std::size_t t = 0; t < ts.size(); ++t) {
      c.push_back(blocks_on_one(5, mix.block_ms[t]));
      load.add(c.back(), ts[t].slo);
    }
    for (std::size_t t = 0; t < ts.size(); ++t) {
      const auto o = load.outcome(c[t], ts[t].slo);
      const double measured = static_cast<double>(m.tasks[t].count(RequestState::on_time)) / static_cast<double>(m.tasks[t].issued);
      INFO("mix " << (&mix - mixes.data()) << " task " << t << " (utilisation " << o.utilisation << "): measured "
                  << 100 * measured << " %, model " << 100 * o.attainment << " %");
      CHECK(m.tasks[t].issued > 500);
      CHECK(o.attainment < measured + 0.005);  // never more than 0.5 pp optimistic here ...
      CHECK(o.attainment > measured - 0.05);   // ... nor 5 pp pessimistic
      err += std::abs(o.attainment - measured);
      ++n;
    }
  }
  INFO("mean error " << 100 * err / n << " pp");
  CHECK(err / n < 0.02);
}

// The load channel: demand loads serialise (the real preloader loads under one lock) and pass
// ahead loads between blocks, waiting only for the ahead block in progress.
TEST_CASE("Sim.LoadChannelSerialisesLoads") {
  rt::SimLoadChannel c;
  CHECK(c.demand(0, 40) == 40);   // free: its own time
  CHECK(c.demand(10, 40) == 70);  // behind the first (done at 40): 40 - 10 + 40
  CHECK(c.demand(200, 5) == 5);   // free again
  // Ahead loads: three 10 ms blocks issued at 300 run back to back...
  c.ahead(300, 30, 3);
  CHECK(c.ahead_backlog_ms() == 30);
  // ...a demand load at 305 waits for the block in progress (until 310), not for all three.
  CHECK(c.demand(305, 20) == doctest::Approx(25));
  // The other two resume after it (330..350); a demand load at 335 waits for the one in progress.
  CHECK(c.demand(335, 1) == doctest::Approx(6));
  CHECK(c.ahead_backlog_ms() == doctest::Approx(10));  // the last block, after 341
  CHECK(c.demand(400, 1) == 1);                         // all done by 351
  CHECK(c.ahead_backlog_ms() == 0);
  c.ahead(500, 0, 0);  // nothing loaded: nothing queued
  CHECK(c.demand(500, 2) == 2);
}
