// The Engine in real-thread mode: request accounting, every end state, deadlines,
// cancellation, drain, destruction with work queued, re-planning on change, a custom policy.
#include "fixture.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>
#include <thread>

#include "sparseloom/runtime/metrics_json.hpp"

using rt::RequestState;

namespace {

struct NotARunner {
  int num_tasks() const { return 1; }
};
static_assert(rt::BlockRunner<syn::Runner>);
static_assert(!rt::BlockRunner<NotARunner>);
static_assert(rt::ModelledBlockRunner<syn::Runner>);
static_assert(rt::Preloader<rt::LoadAllPreloader, syn::Runner>);
static_assert(rt::Clock<rt::SteadyClock> && rt::Clock<rt::SimClock>);

// A custom optimizer written as a user would: blocks alternate between processors 0 and 1.
struct AlternatingOptimizer {
  template <sparseloom::Estimator E>
  sparseloom::Plan plan(const sparseloom::SystemState&, const E& e) {
    sparseloom::Plan p;
    for (int t = 0; t < e.num_tasks(); ++t) {
      sparseloom::TaskPlan tp;
      for (int b = 0; b < e.num_blocks(t); ++b) {
        tp.variant.choice.push_back(0);
        tp.placement.processor.push_back(b % 2);
      }
      tp.predicted_latency_ms = e.latency_ms(t, tp.variant, tp.placement);
      p.tasks.push_back(tp);
    }
    return p;
  }
};
static_assert(sparseloom::Optimizer<AlternatingOptimizer, syn::Estimator>);

syn::Zoo one_task(double block_ms = 1.0, int blocks = 2) {
  syn::Zoo z;
  z.blocks = blocks;
  z.task_block_ms = {block_ms};
  return z;
}

}  // namespace

TEST_CASE("Engine.Serve.OnTimeWithOutputs") {
  World w(one_task());
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(2000)));
  for (int i = 0; i < 10; ++i) {
    auto h = eng.submit(0, {input(float(i))});
    REQUIRE(h.wait_for(5s));
    CHECK(h.state() == RequestState::on_time);
    auto out = h.outputs();
    REQUIRE(out.size() == 1);
    CHECK(out[0].span<float>()[0] == float(i));
    const auto r = h.record();
    CHECK(r.start_ms >= r.arrival_ms);
    CHECK(r.finish_ms >= r.start_ms);
  }
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(m.overall.count(RequestState::on_time) == 10);
  CHECK(m.overall.slo_violation_rate == 0);
  CHECK(m.overall.p50_ms > 0);
  CHECK(m.overall.p99_ms >= m.overall.p50_ms);
  CHECK(m.processors[0].blocks == 20);
  CHECK(m.processors[0].utilisation > 0);
  CHECK(m.peak_resident_bytes == 2 * w.zoo.block_bytes);
  CHECK(!m.memory.empty());
  CHECK(m.decisions.size() >= 1);
  CHECK(w.runner.max_overlap() == 1);  // one worker: never two blocks at once on a processor
  const auto j = rt::to_json(m);
  CHECK(j["overall"]["requests_accounted"] == 10);
  CHECK(j["overall"]["on_time"] == 10);
  CHECK(j["overall"].contains("band_satisfactory_rate"));
  CHECK(j["schema_version"] == 1);
}

TEST_CASE("Engine.States.EveryEndStateIsReachable") {
  SUBCASE("late (admission control off)") {
    World w(one_task(2.0));
    rt::EngineOptions o;
    o.admission_control = false;
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(1)), o);
    auto h = eng.submit(0, {input(1)});
    REQUIRE(h.wait_for(5s));
    CHECK(h.state() == RequestState::late);
    check_accounting(eng.metrics());
  }
  SUBCASE("rejected (cannot make its deadline)") {
    World w(one_task(2.0));
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(1)));
    auto h = eng.submit(0, {input(1)});
    CHECK(h.done());  // decided at submit, synchronously
    CHECK(h.state() == RequestState::rejected);
    CHECK(h.record().reason.find("admission") != std::string::npos);
    check_accounting(eng.metrics());
  }
  SUBCASE("below_accuracy (no variant meets the floor)") {
    World w(one_task());
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(5000, 95)));
    auto h = eng.submit(0, {input(1)});
    REQUIRE(h.wait_for(5s));
    CHECK(h.state() == RequestState::below_accuracy);
    check_accounting(eng.metrics());
  }
  SUBCASE("failed (the only processor fails)") {
    World w(one_task());
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(5000)));
    w.runner.disappear(0);
    auto h = eng.submit(0, {input(1)});
    REQUIRE(h.wait_for(5s));
    CHECK(h.state() == RequestState::failed);
    // Afterwards nothing can run the task: new requests are rejected at once.
    auto h2 = eng.submit(0, {input(2)});
    REQUIRE(h2.wait_for(5s));
    CHECK(h2.state() == RequestState::rejected);
    check_accounting(eng.metrics());
  }
  SUBCASE("cancelled (while queued)") {
    World w(one_task(20.0));  // the first request holds the processor for 40 ms
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(5000)));
    auto first = eng.submit(0, {input(1)});
    auto second = eng.submit(0, {input(2)});
    CHECK(second.cancel());
    REQUIRE(second.wait_for(5s));
    CHECK(second.state() == RequestState::cancelled);
    CHECK(!second.cancel());  // already finished
    REQUIRE(first.wait_for(5s));
    REQUIRE(eng.drain(5s));
    const auto m = eng.metrics();
    check_accounting(m);
    CHECK(m.overall.count(RequestState::cancelled) == 1);
    CHECK(m.overall.slo_violation_rate == 0);  // cancelled leaves the denominator
  }
}

TEST_CASE("Engine.Deadline.AdmissionUnderBacklog") {
  World w(one_task(1.0));
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(60)));
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 40; ++i) hs.push_back(eng.submit(0, {input(float(i))}));
  REQUIRE(eng.drain(10s));
  CHECK(all_done(hs));
  const auto m = eng.metrics();
  check_accounting(m);
  // 40 x 2 ms of predicted work cannot fit 60 ms: admission rejects the tail at submit. That
  // needs the 40 submits to outpace the processor, a wall-clock outcome: under ThreadSanitizer
  // the submitting thread can stall long enough for the queue to drain (CI, session 18: the last
  // request admitted and on time; session 14: admitted, then rejected at dispatch), so it is
  // checked where timings hold (kTimingChecks); the discrete-event test
  // Sim.AdmissionKeepsThePromisesItMade checks admission deterministically.
  const auto at_submit = std::count_if(hs.begin(), hs.end(), [](const rt::RequestHandle& h) {
    return h.state() == RequestState::rejected && h.record().reason.find("predicted finish") != std::string::npos;
  });
  if (kTimingChecks) {
    CHECK(hs.back().state() == RequestState::rejected);
    CHECK(at_submit > 0);
  }
  CHECK(m.overall.count(RequestState::on_time) + m.overall.count(RequestState::late) > 0);
}

TEST_CASE("Engine.Cancel.HalfOfTheRequests") {
  World w(one_task(1.0));
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(5000)));
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 40; ++i) hs.push_back(eng.submit(0, {input(float(i))}));
  int asked = 0;
  for (std::size_t i = 0; i < hs.size(); i += 2) asked += hs[i].cancel();
  REQUIRE(eng.drain(10s));
  CHECK(all_done(hs));
  const auto m = eng.metrics();
  check_accounting(m);
  const auto cancelled = m.overall.count(RequestState::cancelled);
  CHECK(cancelled >= 1);
  CHECK(cancelled <= static_cast<std::uint64_t>(asked));
  for (std::size_t i = 1; i < hs.size(); i += 2) CHECK(hs[i].state() != RequestState::cancelled);
}

TEST_CASE("Engine.Drain.StopsIntakeAndFinishesQueued") {
  World w(one_task(0.5));
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(5000)));
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 30; ++i) hs.push_back(eng.submit(0, {input(float(i))}));
  REQUIRE(eng.drain(10s));
  CHECK(all_done(hs));
  CHECK(count_state(hs, RequestState::on_time) == 30);
  auto late = eng.submit(0, {input(0)});
  CHECK(late.state() == RequestState::rejected);
  CHECK(late.record().reason.find("draining") != std::string::npos);
  check_accounting(eng.metrics());
}

TEST_CASE("Engine.Destroy.WithWorkQueuedLosesNothing") {
  World w(one_task(2.0));
  std::vector<rt::RequestHandle> hs;
  {
    Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(10000)));
    for (int i = 0; i < 50; ++i) hs.push_back(eng.submit(0, {input(float(i))}));
  }
  CHECK(all_done(hs));
  const int rejected = count_state(hs, RequestState::rejected);
  const int served = count_state(hs, RequestState::on_time) + count_state(hs, RequestState::late);
  CHECK(rejected + served == 50);
  CHECK(rejected > 0);
  for (const auto& h : hs)
    if (h.state() == RequestState::rejected) CHECK(h.record().reason.find("shut down") != std::string::npos);
}

TEST_CASE("Engine.Replan.OnSloChange") {
  syn::Zoo z = one_task(1.0);
  z.variant_speed = {1.0, 0.5};        // variant 1: twice as fast ...
  z.variant_accuracy = {95.0, 80.0};   // ... and less accurate
  World w(z);
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(2000, 0)));
  CHECK(eng.plan().tasks[0].variant.choice[0] == 1);
  const auto v0 = eng.plan_version();
  auto before = eng.submit(0, {input(1)});
  REQUIRE(before.wait_for(5s));
  CHECK(before.state() == RequestState::on_time);
  CHECK(before.record().accuracy_pct == doctest::Approx(80));
  eng.set_slo(0, slo(2000, 90));
  CHECK(eng.plan_version() > v0);
  CHECK(eng.plan().tasks[0].variant.choice[0] == 0);
  auto after = eng.submit(0, {input(2)});
  REQUIRE(after.wait_for(5s));
  CHECK(after.state() == RequestState::on_time);
  CHECK(after.record().accuracy_pct == doctest::Approx(95));
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(has_decision(m, "SLO of task 0 changed"));
}

TEST_CASE("Engine.Replan.OnMeasuredRateChange") {
  World w(one_task(0.2, 1));
  rt::EngineOptions o;
  o.monitor_period_ms = 5;
  o.rate_window_ms = 100;
  o.rate_min_arrivals = 10;
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(1000, 0, 10)), o);
  std::vector<rt::RequestHandle> hs;
  const bool replanned = eventually(
      [&] {
        for (int i = 0; i < 4; ++i) hs.push_back(eng.submit(0, {input(0)}));  // ~ 1000 rps
        return has_decision(eng.metrics(), "arrival rate changed");
      },
      5s);
  CHECK(replanned);
  REQUIRE(eng.drain(10s));
  CHECK(all_done(hs));
  check_accounting(eng.metrics());
}

TEST_CASE("Engine.Placement.BlocksHopBetweenProcessors") {
  World w(one_task(0.5, 4));
  w.zoo.processor_factor = {1.0, 1.0};
  World w2(w.zoo);
  rt::Engine<syn::Runner, syn::Estimator, AlternatingOptimizer> eng(w2.runner, w2.est, AlternatingOptimizer{},
                                                                     processors(2), tasks(1, slo(1000)));
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 10; ++i) hs.push_back(eng.submit(0, {input(float(i))}));
  REQUIRE(eng.drain(10s));
  for (std::size_t i = 0; i < hs.size(); ++i) {
    CHECK(hs[i].state() == RequestState::on_time);
    CHECK(hs[i].outputs().at(0).span<float>()[0] == float(i));
  }
  CHECK(w2.runner.runs(0) == 20);
  CHECK(w2.runner.runs(1) == 20);
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(m.handoff_samples >= 40);  // every block crossed a queue
}

TEST_CASE("Engine.Submit.BadTaskIsAnError") {
  World w(one_task());
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1));
  CHECK_THROWS_AS(eng.submit(3, {}), sparseloom::Error);
  CHECK_THROWS_AS(Engine(w.runner, w.est, syn::GreedyOptimizer{}, processors(2), tasks(1)), sparseloom::Error);
}

// A request submitted late (a sensor's timestamp, a load generator that waited for a core)
// counts its latency and deadline from when it arrived, not from the call.
TEST_CASE("Engine.Submit.WaitedCountsFromArrival") {
  World w(one_task());
  Engine eng(w.runner, w.est, syn::GreedyOptimizer{}, processors(1), tasks(1, slo(2000)));
  auto h = eng.submit(0, {input(1)}, std::nullopt, 50.0);
  REQUIRE(h.wait_for(5s));
  CHECK(h.state() == RequestState::on_time);
  const auto r = h.record();
  CHECK(r.deadline_ms - r.arrival_ms == doctest::Approx(2000));
  CHECK(r.start_ms - r.arrival_ms >= 50);
  CHECK(r.latency_ms() >= 50);
  // Arrived longer ago than its deadline: it cannot be on time.
  auto old = eng.submit(0, {input(2)}, std::nullopt, 2500.0);
  REQUIRE(old.wait_for(5s));
  CHECK(old.state() != RequestState::on_time);
  CHECK_THROWS_AS(eng.submit(0, {input(3)}, std::nullopt, -1.0), sparseloom::Error);
  CHECK_THROWS_AS(eng.submit(0, {input(3)}, std::nullopt, std::nan("")), sparseloom::Error);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(m.overall.count(RequestState::on_time) == 1);
}

TEST_CASE("Metrics.SloTimelineBucketsEndStatesByFinishTime") {
  rt::MetricsCollector mc({"a"});
  auto rec = [&](double finish_ms, rt::RequestState s) {
    rt::RequestRecord r;
    r.state = s;
    r.finish_ms = finish_ms;
    mc.record(r);
  };
  rec(10, rt::RequestState::on_time);
  rec(100, rt::RequestState::late);
  rec(260, rt::RequestState::cancelled);  // not in the violation rate, not in the timeline
  rec(600, rt::RequestState::rejected);
  rec(610, rt::RequestState::on_time);
  const auto m = mc.summarize(1000, {}, 0);
  REQUIRE(m.slo_timeline.accounted.size() == 3);
  CHECK(m.slo_timeline.accounted == std::vector<std::uint64_t>{2, 0, 2});
  CHECK(m.slo_timeline.violations == std::vector<std::uint64_t>{1, 0, 1});
  const auto j = rt::to_json(m);
  CHECK(j["slo_timeline"]["bucket_ms"].get<double>() == rt::SloTimeline::kBucketMs);
  CHECK(j["slo_timeline"]["violations"].size() == 3);
}

namespace {
// A runner whose stitches need seconds of stitch-time work (a repair) before they run, as
// BlockLibrary's do: prepare() is slow for a stitch, free for a plain variant.
struct SlowRepairRunner : syn::Runner {
  using syn::Runner::Runner;
  void prepare(sparseloom::TaskIndex, const sparseloom::StitchedVariant& s) {
    if (s.is_plain()) return;
    std::this_thread::sleep_for(300ms);
    std::lock_guard lk(mu);
    done.insert(s.choice);
  }
  bool prepared(sparseloom::TaskIndex, const sparseloom::StitchedVariant& s) const {
    std::lock_guard lk(mu);
    return s.is_plain() || done.contains(s.choice);
  }
  mutable std::mutex mu;
  std::set<std::vector<int>> done;
};

// Above a 50 % floor it wants the stitch {1, 0}, falling back to plain variant 1 when the
// stitch is unusable (reported below every floor); else plain variant 0.
struct StitchAboveFloor {
  template <sparseloom::Estimator E>
  sparseloom::Plan plan(const sparseloom::SystemState& s, const E& e) {
    sparseloom::Plan p;
    sparseloom::TaskPlan tp;
    tp.placement.processor = {0, 0};
    const sparseloom::StitchedVariant stitch{{1, 0}};
    if (s.slos[0].min_accuracy_pct <= 50)
      tp.variant.choice = {0, 0};
    else
      tp.variant = e.accuracy_pct(0, stitch) > 0 ? stitch : sparseloom::StitchedVariant{{1, 1}};
    tp.predicted_latency_ms = e.latency_ms(0, tp.variant, tp.placement);
    p.tasks.push_back(tp);
    return p;
  }
};
}  // namespace

TEST_CASE("Engine.Replan.InterimPlanWhileAStitchIsRepaired") {
  syn::Zoo z = one_task(0.5);
  z.variant_speed = {1.0, 0.8};
  z.variant_accuracy = {95.0, 90.0};
  SlowRepairRunner runner(z);
  syn::Estimator est(z);
  rt::Engine<SlowRepairRunner, syn::Estimator, StitchAboveFloor> eng(runner, est, StitchAboveFloor{}, processors(1),
                                                                     tasks(1, slo(2000, 0)));
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{0, 0});
  const auto v0 = eng.plan_version();
  std::thread changer([&] { eng.set_slo(0, slo(2000, 60)); });  // returns once the stitch is repaired
  // The interim plan is adopted at once: the plain variant usable now.
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (eng.plan_version() == v0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  REQUIRE(eng.plan_version() == v0 + 1);
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{1, 1});
  CHECK_FALSE(runner.prepared(0, sparseloom::StitchedVariant{{1, 0}}));
  // Requests meanwhile run on it (they do not wait for the repair).
  auto during = eng.submit(0, {input(1)});
  REQUIRE(during.wait_for(5s));
  CHECK(during.state() == RequestState::on_time);
  if (kTimingChecks) CHECK(eng.plan_version() == v0 + 1);  // served before the 300 ms repair ended
  changer.join();
  CHECK(eng.plan_version() == v0 + 2);
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{1, 0});
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  check_accounting(m);
  CHECK(has_decision(m, "interim plan while new stitches are repaired"));
}
