// The memory policies of issue 10: each holds the budget under concurrent requests, holds a
// block shared by stitched variants once, and fails clearly; Hotness keeps the hot blocks;
// ClockworkLike evicts and loads in Clockwork's order. Every wait is bounded.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "fixture.hpp"
#include "sparseloom/preloader/preloader.hpp"
#include "sparseloom/runtime/runtime.hpp"
#include "sparseloom/runtime/synthetic.hpp"

namespace pl = sparseloom::preloader;
namespace rt = sparseloom::runtime;
namespace syn = sparseloom::runtime::synthetic;
using pretest::Key;
using pretest::plan_of;
using pretest::Runner;
using namespace std::chrono_literals;

static_assert(rt::Preloader<pl::Hotness, Runner> && rt::Preloader<pl::Hotness, syn::Runner>);
static_assert(rt::Preloader<pl::OnDemandLru, Runner> && rt::Preloader<pl::OnDemandLru, syn::Runner>);
static_assert(rt::Preloader<pl::ClockworkLike, Runner> && rt::Preloader<pl::ClockworkLike, syn::Runner>);
static_assert(rt::Preloader<pl::OneModelPerTask, Runner> && rt::Preloader<pl::OneModelPerTask, syn::Runner>);

namespace {

// Threads acquire random blocks, hold them briefly, release; loads are slow enough to overlap.
// Infeasible answers (everything pinned) are allowed; anything else is not.
template <class P>
void hammer(P& pre, Runner& r, int threads, int iters) {
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      std::mt19937 rng(static_cast<unsigned>(i + 1));
      for (int n = 0; n < iters; ++n) {
        const int t = static_cast<int>(rng() % 2), b = static_cast<int>(rng() % 2), v = static_cast<int>(rng() % 3),
                  p = static_cast<int>(rng() % 2);
        try {
          pre.acquire(r, t, b, v, p);
          CHECK(r.is_resident(t, b, v, p));  // pinned: nobody evicts it while we "run"
          std::this_thread::sleep_for(50us);
          pre.release(r, t, b, v, p);
        } catch (const sparseloom::Error& e) {
          if (e.code() != sparseloom::ErrorCode::infeasible) ++errors;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
}

// Two tasks of two blocks, two variants (the second faster and less accurate), two equal processors.
syn::Zoo two_tasks_two_blocks() {
  syn::Zoo z;
  z.blocks = 2;
  z.task_block_ms = {0.3, 0.3};
  z.variant_speed = {1.0, 0.8};
  z.variant_accuracy = {90, 85};
  z.processor_factor = {1.0, 1.0};
  return z;
}

// One client thread per task, each submitting n requests one after another; returns how many
// finished on time.
template <class Eng>
int serve_two_clients(Eng& eng, int n) {
  std::vector<std::thread> clients;
  std::atomic<int> done{0};
  for (int c = 0; c < 2; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; i < n; ++i) {
        auto h = eng.submit(c, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})});
        if (h.wait_for(5s) && h.state() == rt::RequestState::on_time) ++done;
      }
    });
  for (auto& c : clients) c.join();
  return done.load();
}

template <class P>
void budget_holds_under_concurrent_load() {
  Runner r(2, 2, 3, 2, 100);
  r.set_size({0, 0, 0, 0}, 250);  // sizes differ: the budget check must use each block's own
  r.set_size({1, 1, 2, 1}, 30);
  r.set_delay_ms(0.2);
  const std::size_t budget = 520;
  P pre(budget);
  pre.set_pin_wait_ms(200);
  pre.on_plan(r, plan_of({{0, 1}, {2, 2}}));
  hammer(pre, r, 4, 150);
  CHECK(r.max_bytes() <= budget);
  CHECK(r.max_concurrent_loads() == 1);  // runner loads are serialised by the policy
  const auto st = pre.stats();
  CHECK_FALSE(st.budget_exceeded);
  CHECK(st.max_resident_bytes <= budget);
  CHECK(st.evictions > 0);  // the budget forced evictions: the test exercised it
}

}  // namespace

TEST_CASE("Preloader.BudgetHoldsUnderConcurrentLoad") {
  SUBCASE("Hotness") { budget_holds_under_concurrent_load<pl::Hotness>(); }
  SUBCASE("OnDemandLru") { budget_holds_under_concurrent_load<pl::OnDemandLru>(); }
  SUBCASE("ClockworkLike") { budget_holds_under_concurrent_load<pl::ClockworkLike>(); }
  SUBCASE("OneModelPerTask") { budget_holds_under_concurrent_load<pl::OneModelPerTask>(); }
}

TEST_CASE("Preloader.SharedBlockHeldOnce") {
  // Two stitches of one task share block 0 of variant 0: it is loaded once and counted once.
  Runner r(1, 3, 3, 1, 100);
  pl::Hotness pre(pl::HotnessOptions{.background = false, .use_measured_load_cost = false});
  pre.on_plan(r, plan_of({{0, 1, 1}}));
  pre.on_plan(r, plan_of({{0, 2, 2}}));
  CHECK(r.loads({0, 0, 0, 0}) == 1);
  // Without a budget only the current plan stays: {0,2,2}, with block 0 kept, not reloaded.
  CHECK(r.resident_bytes() == 3 * 100);
  CHECK(r.resident() == std::set<Key>{{0, 0, 0, 0}, {0, 1, 2, 0}, {0, 2, 2, 0}});
  // Sharing raises its score above a block of the same plan weight that only one stitch uses.
  CHECK(pre.score({0, 0, 0, 0}) > pre.score({0, 1, 2, 0}));
  // A request of either stitch finds it resident: no load.
  CHECK_FALSE(pre.acquire(r, 0, 0, 0, 0));
  pre.release(r, 0, 0, 0, 0);
  CHECK(r.loads({0, 0, 0, 0}) == 1);
}

TEST_CASE("Preloader.HotnessPrefersHotBlocks") {
  Runner r(1, 2, 4, 1, 100);
  r.set_size({0, 1, 1, 0}, 50);
  pl::Hotness pre(300, pl::HotnessOptions{.background = false, .use_measured_load_cost = false});
  pre.on_plan(r, plan_of({{0, 0}}));
  pre.on_plan(r, plan_of({{1, 1}}));
  // Current plan > previous plan > a neighbouring level > never planned.
  CHECK(pre.score({0, 0, 1, 0}) > pre.score({0, 0, 0, 0}));
  CHECK(pre.score({0, 0, 0, 0}) > pre.score({0, 0, 2, 0}));
  CHECK(pre.score({0, 0, 2, 0}) > 0);
  CHECK(pre.score({0, 0, 3, 0}) == 0);
  const auto held = pre.resident();
  CHECK(held.contains({0, 0, 1, 0}));
  CHECK(held.contains({0, 1, 1, 0}));
  CHECK(r.resident_bytes() <= 300);
  // A demand load of a cold block evicts the coldest, never a block of the current plan.
  CHECK(pre.acquire(r, 0, 0, 3, 0));
  pre.release(r, 0, 0, 3, 0);
  CHECK(r.is_resident(0, 0, 1, 0));
  CHECK(r.is_resident(0, 1, 1, 0));
  CHECK(r.resident_bytes() <= 300);
  // Requests make a block hot: after a re-plan, the used neighbour outranks the unused one.
  for (int i = 0; i < 20; ++i) {
    pre.acquire(r, 0, 1, 2, 0);
    pre.release(r, 0, 1, 2, 0);
  }
  pre.on_plan(r, plan_of({{1, 1}}));
  CHECK(pre.score({0, 1, 2, 0}) > pre.score({0, 1, 0, 0}));
}

TEST_CASE("Preloader.HotnessKeepsBlocksWithOutstandingDemand") {
  // The plan (two tasks, three blocks each) does not fit a budget of three blocks. A request
  // that ran task 0's block 0 needs block 1 next: task 1's demand loads evict other blocks,
  // never that one, while others can go; once the request reached it, it is a normal block.
  Runner r(2, 3, 1, 1, 100);
  pl::Hotness pre(300, pl::HotnessOptions{.background = false, .use_measured_load_cost = false});
  pre.on_plan(r, plan_of({{0, 0, 0}, {0, 0, 0}}));
  CHECK(r.resident_bytes() <= 300);
  CHECK(pre.acquire(r, 0, 0, 0, 0) == !r.is_resident(0, 0, 0, 0));
  pre.release(r, 0, 0, 0, 0);
  CHECK(pre.expected({0, 1, 0, 0}) == 1);
  // Use every other block more, and more recently, than (0, 1): only its outstanding demand protects it.
  for (int i = 0; i < 3; ++i)
    for (int b : {0, 1, 2}) {
      pre.acquire(r, 1, b, 0, 0);
      pre.release(r, 1, b, 0, 0);
    }
  bool kept = true;
  for (int b : {0, 1, 2, 0, 1, 2}) {
    pre.acquire(r, 1, b, 0, 0);
    kept = kept && r.is_resident(0, 1, 0, 0);
    pre.release(r, 1, b, 0, 0);
  }
  if (!r.is_resident(0, 1, 0, 0)) kept = false;
  CHECK(kept);
  CHECK(r.resident_bytes() <= 300);
  pre.acquire(r, 0, 1, 0, 0);  // the request arrives: no longer outstanding
  CHECK(pre.expected({0, 1, 0, 0}) == 0);
  CHECK(pre.expected({0, 2, 0, 0}) == 1);
  pre.release(r, 0, 1, 0, 0);
}

TEST_CASE("Preloader.HotnessUsesMeasuredLoadCost") {
  // Same plan weight and size; one block took 30 ms to load: keeping it saves more per byte.
  Runner r(1, 2, 2, 1, 100);
  r.set_delay_ms({0, 0, 1, 0}, 30);
  pl::Hotness pre(pl::HotnessOptions{.background = false});
  pre.on_plan(r, plan_of({{1, 1}}));
  pre.on_plan(r, plan_of({{1, 1}}));
  CHECK(pre.score({0, 0, 1, 0}) > pre.score({0, 1, 1, 0}));
}

TEST_CASE("Preloader.HotnessBackgroundDoesNotBlockResidentRequests") {
  Runner r(1, 2, 3, 1, 100);
  pl::Hotness pre(1000);
  pre.on_plan(r, plan_of({{0, 0}}));  // the first plan loads before on_plan returns
  CHECK(r.is_resident(0, 0, 0, 0));
  r.gate({0, 0, 2, 0});  // (level 1 was preloaded as a neighbour) the background load of the next plan hangs until opened
  pre.on_plan(r, plan_of({{2, 2}}));
  REQUIRE(pretest::eventually([&] { return r.loads_in_progress() == 1; }));
  // A resident block is acquired while the background thread is stuck in a load: the gate
  // stays shut until r.open, so an acquire that waited on that load would never return. It
  // runs on its own thread so that such a bug fails here instead of hanging the suite.
  auto acquired = std::async(std::launch::async, [&] {
    const bool loaded = pre.acquire(r, 0, 1, 0, 0);
    pre.release(r, 0, 1, 0, 0);
    return loaded;
  });
  const bool returned = acquired.wait_for(30s) == std::future_status::ready;
  CHECK(returned);
  r.open({0, 0, 2, 0});
  CHECK_FALSE(acquired.get());  // resident: acquire did not load it
  pre.wait_idle();
  CHECK(r.is_resident(0, 0, 2, 0));
  CHECK(r.is_resident(0, 1, 2, 0));
  CHECK(pre.stats().ahead_loads >= 6);
}

TEST_CASE("Preloader.HotnessLoadsASlowPlanBeforeDroppingTheOldOne") {
  // No budget. Blocks of 64 MiB are expected to take 128 ms each to load (2 ms/MiB): more than
  // make_before_break_ms, so the new plan loads while the old one stays, and the old one goes
  // only after the Engine made the new plan current.
  Runner big(1, 2, 3, 1, std::size_t{64} << 20);
  pl::Hotness pre(pl::HotnessOptions{.make_before_break_ms = 20});
  pre.on_plan(big, plan_of({{0, 0}}));
  pre.on_plan(big, plan_of({{2, 2}}));
  pre.before_adopt(big);
  for (int b = 0; b < 2; ++b) {
    CHECK(big.is_resident(0, b, 2, 0));
    CHECK(big.is_resident(0, b, 0, 0));  // requests still on the old plan find its blocks
  }
  CHECK(pre.after_adopt(big));
  CHECK_FALSE(big.is_resident(0, 0, 0, 0));
  CHECK_FALSE(big.is_resident(0, 1, 0, 0));
  CHECK(big.max_bytes() == std::size_t{4} * (64 << 20));
  CHECK_FALSE(pre.after_adopt(big));  // once per plan

  // Small blocks (expected well under 20 ms): the old plan goes first, the peak is one plan.
  Runner small(1, 2, 3, 1, 100);
  pl::Hotness fast;
  fast.on_plan(small, plan_of({{0, 0}}));
  fast.on_plan(small, plan_of({{2, 2}}));
  fast.before_adopt(small);
  fast.wait_idle();
  CHECK_FALSE(fast.after_adopt(small));
  CHECK_FALSE(small.is_resident(0, 0, 0, 0));
  CHECK(small.is_resident(0, 0, 2, 0));
  CHECK(small.max_bytes() == 200);
}

TEST_CASE("Preloader.EngineKeepsTheOldPlanUntilASlowNewOneIsLoaded") {
  // One task of two 64 MiB blocks (expected 128 ms each to load), no budget. Raising the floor
  // moves it from the fast variant to the accurate one: the Engine makes the new plan current
  // only once its blocks are loaded, so no request waits for a load, and both plans were
  // resident at the switch.
  syn::Zoo z;
  z.blocks = 2;
  z.task_block_ms = {0.2};
  z.variant_speed = {1.0, 0.8};
  z.variant_accuracy = {90, 85};
  z.processor_factor = {1.0};
  z.block_bytes = std::size_t{64} << 20;
  syn::Runner runner(z);
  syn::Estimator est(z);
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}};
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  slo.min_accuracy_pct = 80;
  std::vector<rt::TaskSpec> ts{{"a", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, {},
                                                                                  pl::Hotness{});
  auto serve = [&](int n) {
    for (int i = 0; i < n; ++i) {
      auto h = eng.submit(0, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})});
      REQUIRE(h.wait_for(5s));
      CHECK(h.state() == rt::RequestState::on_time);
    }
  };
  serve(5);
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{1, 1});
  slo.min_accuracy_pct = 88;
  eng.set_slo(0, slo);
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{0, 0});
  CHECK(runner.is_resident(0, 0, 0, 0));
  CHECK(runner.is_resident(0, 1, 0, 0));
  CHECK_FALSE(runner.is_resident(0, 0, 1, 0));  // the old plan went after the switch
  serve(5);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(m.overall.load_stalls == 0);
  CHECK(m.peak_resident_bytes == 4 * z.block_bytes);
  CHECK(runner.resident_bytes() == 2 * z.block_bytes);
}

TEST_CASE("Preloader.ClockworkEvictionOrder") {
  // One block per model; the budget holds two models.
  Runner r(3, 1, 1, 1, 100);
  pl::ClockworkLike pre(200);
  auto use = [&](int t) {
    pre.acquire(r, t, 0, 0, 0);
    pre.release(r, t, 0, 0, 0);
  };
  use(0);
  use(1);
  use(0);  // model 1 is now the least recently used
  CHECK(pre.acquire(r, 2, 0, 0, 0));
  pre.release(r, 2, 0, 0, 0);
  CHECK(r.is_resident(0, 0, 0, 0));
  CHECK_FALSE(r.is_resident(1, 0, 0, 0));  // LRU among models without demand
  // Model 0 has outstanding demand (acquired, not released); model 2 has none but is more
  // recent: no-demand models go first.
  CHECK_FALSE(pre.acquire(r, 0, 0, 0, 0));
  CHECK(pre.acquire(r, 1, 0, 0, 0));
  CHECK(r.is_resident(0, 0, 0, 0));
  CHECK_FALSE(r.is_resident(2, 0, 0, 0));
  pre.release(r, 1, 0, 0, 0);
  pre.release(r, 0, 0, 0, 0);
}

// A request whose block is loaded does not wait for another processor's load: the load-all
// baseline held its one mutex across the runner's load, so on a thrashing budget every
// processor stalled behind the one loading (session 23: INFaaS-like's 60 ms waits).
TEST_CASE("Preloader.LoadAllAcquiresALoadedBlockDuringAnotherLoad") {
  Runner r(2, 1, 1, 2, 100);
  rt::LoadAllPreloader pre(1000);
  CHECK(pre.acquire(r, 0, 0, 0, 0));  // loaded and ours
  pre.release(r, 0, 0, 0, 0);
  r.gate({1, 0, 0, 1});
  std::thread loader([&] {
    CHECK(pre.acquire(r, 1, 0, 0, 1));
    pre.release(r, 1, 0, 0, 1);
  });
  REQUIRE(pretest::eventually([&] { return r.loads_in_progress() == 1; }));
  // The other processor's block is loaded: acquired while that load is still in progress (in a
  // thread of its own, so that a policy that waits fails here instead of hanging the test).
  std::atomic<bool> acquired{false};
  std::thread other([&] {
    CHECK_FALSE(pre.acquire(r, 0, 0, 0, 0));
    acquired = true;
    pre.release(r, 0, 0, 0, 0);
  });
  CHECK(pretest::eventually([&] { return acquired.load(); }));
  CHECK(r.loads_in_progress() == 1);
  r.open({1, 0, 0, 1});
  loader.join();
  other.join();
  CHECK(r.max_concurrent_loads() == 1);
  CHECK(r.resident() == std::set<pretest::Key>{{0, 0, 0, 0}, {1, 0, 0, 1}});
}

TEST_CASE("Preloader.ClockworkLoadsMostDemandedFirstAndWholeModels") {
  Runner r(3, 2, 1, 1, 100);
  pl::ClockworkLike pre;
  r.gate({0, 0, 0, 0});
  // Fixed slots, not emplace_back: g++ 12 warns falsely (-Warray-bounds) in vector<thread>'s regrowth here.
  std::vector<std::thread> ts(4);
  std::size_t started = 0;
  auto request = [&](int t) {
    ts[started++] = std::thread([&, t] {
      pre.acquire(r, t, 0, 0, 0);
      pre.release(r, t, 0, 0, 0);
    });
  };
  request(0);  // holds the load slot (gated)
  REQUIRE(pretest::eventually([&] { return r.loads_in_progress() == 1; }));
  request(1);  // one request for model 1
  request(2);
  request(2);  // two for model 2
  std::this_thread::sleep_for(50ms);
  r.open({0, 0, 0, 0});
  for (auto& t : ts) t.join();
  const auto order = r.order();
  REQUIRE(order.size() == 6);  // three models, two blocks each: whole models
  CHECK(std::get<0>(order[2]) == 2);  // after model 0: model 2 (more demand) before model 1
  CHECK(std::get<0>(order[4]) == 1);
}

TEST_CASE("Preloader.ImpossibleBudgetIsAClearErrorAtStart") {
  syn::Zoo z;
  z.blocks = 2;
  syn::Runner runner(z);
  syn::Estimator est(z);
  rt::EngineOptions o;
  o.memory_budget_bytes = z.block_bytes - 1;
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 64}};
  std::vector<rt::TaskSpec> ts{{"t0", sparseloom::Slo{}}};
  using Eng = rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness>;
  try {
    Eng eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o, pl::Hotness(o.memory_budget_bytes));
    FAIL("started under a budget below one block");
  } catch (const sparseloom::Error& e) {
    CHECK(e.code() == sparseloom::ErrorCode::infeasible);
    CHECK(std::string(e.what()).find("smallest runnable plan") != std::string::npos);
  }
  CHECK(runner.loads() == 0);
  // One block's worth is enough to run (blocks load one at a time).
  o.memory_budget_bytes = z.block_bytes;
  Eng eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o, pl::Hotness(o.memory_budget_bytes));
  auto h = eng.submit(0, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})});
  REQUIRE(h.wait_for(5s));
  CHECK(h.state() == rt::RequestState::on_time);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(m.peak_resident_bytes <= o.memory_budget_bytes);
  CHECK_FALSE(m.budget_exceeded);
}

TEST_CASE("Preloader.FailedLoadRecordedAndFailedOver") {
  // Processor 0 is faster, so the plan starts there; block 1 cannot compile on it.
  syn::Zoo z;
  z.blocks = 2;
  z.processor_factor = {1.0, 2.0};
  syn::Runner runner(z);
  syn::Estimator est(z);
  runner.fail_compile(0, 1, 0, 0);
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 64}, {"p1", rt::ProcessorKind::gpu, 1, 64}};
  sparseloom::Slo slo;
  slo.deadline_ms = 2000;
  std::vector<rt::TaskSpec> ts{{"t0", slo}};
  rt::EngineOptions o;
  o.memory_budget_bytes = 3 * z.block_bytes;
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::OnDemandLru> eng(
      runner, est, syn::GreedyOptimizer{}, ps, ts, o, pl::OnDemandLru(o.memory_budget_bytes));
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 10; ++i) {
    hs.push_back(eng.submit(0, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})}));
    REQUIRE(hs.back().wait_for(5s));
  }
  REQUIRE(eng.drain(5s));
  for (const auto& h : hs) CHECK(h.state() == rt::RequestState::on_time);  // the failing one was re-routed
  const auto tp = eng.plan().tasks[0];
  CHECK(!(tp.variant.choice[1] == 0 && tp.placement.processor[1] == 0));
  const auto m = eng.metrics();
  bool logged = false;
  for (const auto& d : m.decisions) logged = logged || d.reason.find("failed to compile") != std::string::npos;
  CHECK(logged);
  CHECK(m.peak_resident_bytes <= o.memory_budget_bytes);
}

TEST_CASE("Preloader.UnreadableBlockAvoidedOnEveryProcessor") {
  // Variant 0 (faster) is planned first; its block 1 cannot be read (a missing or changed file):
  // no processor can load it, so the engine bans it everywhere and re-plans onto variant 1,
  // rather than trying each processor in turn or failing requests.
  syn::Zoo z;
  z.blocks = 2;
  z.variant_speed = {0.5, 1.0};
  z.variant_accuracy = {90, 88};
  z.processor_factor = {1.0, 2.0};
  syn::Runner runner(z);
  syn::Estimator est(z);
  runner.fail_read(0, 1, 0);
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 64}, {"p1", rt::ProcessorKind::gpu, 1, 64}};
  sparseloom::Slo slo;
  slo.deadline_ms = 2000;
  std::vector<rt::TaskSpec> ts{{"t0", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness> eng(runner, est, syn::GreedyOptimizer{}, ps, ts);
  REQUIRE(eng.plan().tasks[0].variant.choice == std::vector<int>{0, 0});
  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < 10; ++i) {
    hs.push_back(eng.submit(0, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})}));
    REQUIRE(hs.back().wait_for(5s));
  }
  REQUIRE(eng.drain(5s));
  for (const auto& h : hs) CHECK(h.state() == rt::RequestState::on_time);  // rerouted, none lost
  CHECK(eng.plan().tasks[0].variant.choice == std::vector<int>{1, 1});
  const auto m = eng.metrics();
  int load_failures = 0;
  for (const auto& d : m.decisions) load_failures += d.reason.find("failed to load") != std::string::npos;
  CHECK(load_failures == 1);  // one ban covered both processors
  for (const auto& p : m.processors) CHECK(p.available);  // a bad file is no processor's fault
  CHECK(eng.preloader().stats().failed_loads >= 1);
}

TEST_CASE("Preloader.FailedLoadStats") {
  Runner r(1, 1, 2, 1, 100);
  r.fail({0, 0, 1, 0});
  pl::OnDemandLru pre(500);
  CHECK_THROWS_AS(pre.acquire(r, 0, 0, 1, 0), sparseloom::Error);
  const auto st = pre.stats();
  REQUIRE(st.failed_loads == 1);
  REQUIRE(st.failures.size() == 1);
  CHECK(st.failures[0].key == Key{0, 0, 1, 0});
  CHECK(st.failures[0].what.find("failed to compile") != std::string::npos);
  // Nothing stays pinned after the failure: the block's slot can be evicted and others load.
  CHECK(pre.acquire(r, 0, 0, 0, 0));
  pre.release(r, 0, 0, 0, 0);
}

TEST_CASE("Preloader.BlockLargerThanPredictedIsCorrectedAndRecorded") {
  Runner r(4, 1, 1, 1, 100);
  r.set_actual({2, 0, 0, 0}, 150);  // says 100, packs to 150
  pl::OnDemandLru pre(300);
  for (int t = 0; t < 3; ++t) {
    pre.acquire(r, t, 0, 0, 0);
    pre.release(r, t, 0, 0, 0);
  }
  auto st = pre.stats();
  CHECK(st.size_surprises == 1);
  CHECK(st.budget_exceeded);          // transiently, and said so
  CHECK(r.resident_bytes() <= 300);   // corrected at once: the LRU block went
  CHECK_FALSE(r.is_resident(0, 0, 0, 0));
  // Later loads reserve the surprise: no further excess.
  const auto before = r.max_bytes();
  pre.acquire(r, 3, 0, 0, 0);
  pre.release(r, 3, 0, 0, 0);
  CHECK(r.resident_bytes() <= 300);
  CHECK(r.max_bytes() == before);
  CHECK(pre.stats().size_surprises == 1);
}

TEST_CASE("Preloader.EngineBudgetHoldsUnderLoad") {
  // Two tasks, two processors, budget of three blocks for eight in the plans: blocks swap.
  const syn::Zoo z = two_tasks_two_blocks();
  syn::Runner runner(z);
  syn::Estimator est(z);
  rt::EngineOptions o;
  o.memory_budget_bytes = 3 * z.block_bytes;
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}, {"p1", rt::ProcessorKind::cpu, 1, 256}};
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  std::vector<rt::TaskSpec> ts{{"a", slo}, {"b", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o,
                                                                                  pl::Hotness(o.memory_budget_bytes));
  const int done = serve_two_clients(eng, 40);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(done == 80);
  CHECK(m.peak_resident_bytes <= o.memory_budget_bytes);
  CHECK_FALSE(m.budget_exceeded);
  CHECK(m.mean_resident_bytes > 0);
  CHECK(m.mean_resident_bytes <= static_cast<double>(m.peak_resident_bytes) * (1 + 1e-9));  // a time-weighted mean: rounding
  CHECK(m.overall.load_stalls > 0);
}

// Blocks another party left resident in the library (a profiler, an earlier engine on the same
// library) count in a new engine's budget and can be evicted: before, its memory policy knew
// nothing of them, no load could make room past them and every request failed (the e2e
// throughput probes under a budget, session 21).
namespace {
template <class P>
void adopts_blocks_already_resident() {
  const syn::Zoo z = two_tasks_two_blocks();
  syn::Runner runner(z);
  syn::Estimator est(z);
  int all = 0;
  for (int t = 0; t < runner.num_tasks(); ++t)
    for (int b = 0; b < runner.num_blocks(t); ++b)
      for (int v = 0; v < runner.num_variants(t); ++v)
        for (int p = 0; p < runner.num_processors(); ++p) runner.load(t, b, v, p), ++all;
  rt::EngineOptions o;
  o.memory_budget_bytes = 3 * z.block_bytes;
  REQUIRE(runner.resident_bytes() > o.memory_budget_bytes);
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}, {"p1", rt::ProcessorKind::cpu, 1, 256}};
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  std::vector<rt::TaskSpec> ts{{"a", slo}, {"b", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, P> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o,
                                                                        P(o.memory_budget_bytes));
  CHECK(runner.resident_bytes() <= o.memory_budget_bytes);  // down to the budget before the first request
  const int done = serve_two_clients(eng, 20);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(done == 40);
  CHECK(m.overall.count(rt::RequestState::failed) == 0);
  CHECK(m.peak_resident_bytes <= o.memory_budget_bytes);
  if constexpr (requires { eng.preloader().stats(); })
    CHECK(eng.preloader().stats().evictions >= static_cast<std::uint64_t>(all - 3));
}
}  // namespace

TEST_CASE("Preloader.EngineAdoptsBlocksAlreadyResident") {
  SUBCASE("Hotness") { adopts_blocks_already_resident<pl::Hotness>(); }
  SUBCASE("OneModelPerTask") { adopts_blocks_already_resident<pl::OneModelPerTask>(); }
  SUBCASE("OnDemandLru") { adopts_blocks_already_resident<pl::OnDemandLru>(); }
  SUBCASE("ClockworkLike") { adopts_blocks_already_resident<pl::ClockworkLike>(); }
  SUBCASE("LoadAllPreloader") { adopts_blocks_already_resident<rt::LoadAllPreloader>(); }
}

namespace {
// Requests run on two tasks while the budget is lowered from unlimited to two blocks, then an
// impossible budget is refused, then it is raised again: no request is dropped, resident bytes
// fit each budget from the moment set_memory_budget returns, and samples are judged against
// the budget in force when they were taken.
template <class P>
void budget_change_at_run_time() {
  const syn::Zoo z = two_tasks_two_blocks();
  syn::Runner runner(z);
  syn::Estimator est(z);
  rt::EngineOptions o;  // no budget at start
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}, {"p1", rt::ProcessorKind::cpu, 1, 256}};
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  std::vector<rt::TaskSpec> ts{{"a", slo}, {"b", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, P> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o, P{});
  std::atomic<int> done{0}, submitted{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 2; ++c)
    clients.emplace_back([&, c] {
      while (!stop) {
        auto h = eng.submit(c, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})});
        ++submitted;
        if (h.wait_for(5s) && h.state() == rt::RequestState::on_time) ++done;
      }
    });
  while (submitted < 20) std::this_thread::sleep_for(1ms);
  const std::size_t before = runner.resident_bytes();
  CHECK(before > 2 * z.block_bytes);  // the whole plan was resident
  const std::size_t small = 2 * z.block_bytes;
  CHECK(eng.set_memory_budget(small));
  CHECK(runner.resident_bytes() <= small);
  CHECK(eng.memory_budget() == small);
  const int at_change = submitted;
  while (submitted < at_change + 20) {
    CHECK(runner.resident_bytes() <= small);
    std::this_thread::sleep_for(1ms);
  }
  // Below one block: refused at once, the budget in force stays.
  CHECK_THROWS_AS(eng.set_memory_budget(z.block_bytes - 1), sparseloom::Error);
  CHECK(eng.memory_budget() == small);
  CHECK(runner.resident_bytes() <= small);
  CHECK(eng.set_memory_budget(0));  // unlimited again
  const int at_raise = submitted;
  while (submitted < at_raise + 20) std::this_thread::sleep_for(1ms);
  stop = true;
  for (auto& c : clients) c.join();
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(done == submitted);  // no request dropped or late across the changes
  CHECK(m.peak_resident_bytes >= before);
  CHECK_FALSE(m.budget_exceeded);  // the early peak was within the budget of its time
}
}  // namespace

TEST_CASE("Preloader.EngineBudgetChangeAtRunTime") {
  SUBCASE("Hotness") { budget_change_at_run_time<pl::Hotness>(); }
  SUBCASE("OnDemandLru") { budget_change_at_run_time<pl::OnDemandLru>(); }
  SUBCASE("ClockworkLike") { budget_change_at_run_time<pl::ClockworkLike>(); }
  SUBCASE("LoadAllPreloader") { budget_change_at_run_time<rt::LoadAllPreloader>(); }
}

// Per-device budgets: a processor with memory of its own holds at most its budget, whatever
// the global budget leaves room for; a load there evicts only blocks of that processor while
// the global budget still fits.
namespace {
template <class P>
void device_budget_holds_under_concurrent_load() {
  Runner r(2, 2, 3, 2, 100);
  r.set_size({0, 0, 0, 1}, 150);
  r.set_delay_ms(0.2);
  const std::size_t budget = 520, device = 260;
  P pre(budget);
  pre.set_device_budgets({0, device});
  pre.set_pin_wait_ms(200);
  pre.on_plan(r, plan_of({{0, 1}, {2, 2}}));
  hammer(pre, r, 4, 150);
  CHECK(r.max_bytes() <= budget);
  CHECK(r.max_bytes_on(1) <= device);
  CHECK(r.max_bytes_on(1) > 100);  // the device held several blocks: the bound was reached, not avoided
  const auto st = pre.stats();
  CHECK_FALSE(st.budget_exceeded);
  REQUIRE(st.max_device_bytes.size() == 2);
  CHECK(st.max_device_bytes[1] <= device);
  CHECK(pre.device_bytes(1) <= device);
}
}  // namespace

TEST_CASE("Preloader.DeviceBudgetHoldsUnderConcurrentLoad") {
  SUBCASE("Hotness") { device_budget_holds_under_concurrent_load<pl::Hotness>(); }
  SUBCASE("OnDemandLru") { device_budget_holds_under_concurrent_load<pl::OnDemandLru>(); }
  SUBCASE("ClockworkLike") { device_budget_holds_under_concurrent_load<pl::ClockworkLike>(); }
  SUBCASE("OneModelPerTask") { device_budget_holds_under_concurrent_load<pl::OneModelPerTask>(); }
}

TEST_CASE("Preloader.DeviceBudgetEvictsOnlyThatDevice") {
  Runner r(1, 4, 1, 2, 100);
  pl::OnDemandLru pre;  // no global budget
  pre.set_device_budgets({0, 200});
  for (int b = 0; b < 4; ++b)
    for (int p = 0; p < 2; ++p) {
      pre.acquire(r, 0, b, 0, p);
      pre.release(r, 0, b, 0, p);
    }
  // Processor 0 has no budget of its own: all four stay; processor 1 keeps the last two used.
  for (int b = 0; b < 4; ++b) CHECK(r.is_resident(0, b, 0, 0));
  CHECK_FALSE(r.is_resident(0, 0, 0, 1));
  CHECK_FALSE(r.is_resident(0, 1, 0, 1));
  CHECK(r.is_resident(0, 2, 0, 1));
  CHECK(r.is_resident(0, 3, 0, 1));
  CHECK(pre.device_bytes(1) == 200);
  CHECK(pre.device_bytes(0) == 400);
  // A block larger than the device budget is refused with both budgets named.
  r.set_size({0, 0, 0, 1}, 300);
  try {
    pre.acquire(r, 0, 0, 0, 1);
    FAIL("loaded a block larger than its device's budget");
  } catch (const sparseloom::Error& e) {
    CHECK(e.code() == sparseloom::ErrorCode::infeasible);
    CHECK(std::string(e.what()).find("device budget of 200 bytes") != std::string::npos);
  }
}

namespace {
// Two tasks on two processors, processor 1 with room for one block: the plan (greedy, blind to
// device budgets) wants more there, so blocks swap; the engine's own per-device samples (the
// runner's resident_bytes(p)) never exceed it and no request is lost.
template <class P>
void engine_device_budget() {
  const syn::Zoo z = two_tasks_two_blocks();
  syn::Runner runner(z);
  syn::Estimator est(z);
  rt::EngineOptions o;
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}, {"p1", rt::ProcessorKind::gpu, 1, 256}};
  ps[1].memory_budget_bytes = z.block_bytes;
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  slo.rate_rps = 100;  // the greedy planner spreads the tasks over both processors
  std::vector<rt::TaskSpec> ts{{"a", slo}, {"b", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, P> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, o, P{});
  const int done = serve_two_clients(eng, 40);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(done == 80);
  REQUIRE(m.processors.size() == 2);
  CHECK(m.processors[1].memory_budget_bytes == z.block_bytes);
  CHECK(m.processors[1].peak_resident_bytes <= z.block_bytes);
  CHECK(m.processors[1].peak_resident_bytes > 0);  // the device was used
  CHECK(m.processors[1].blocks > 0);
  CHECK_FALSE(m.budget_exceeded);
}
}  // namespace

TEST_CASE("Preloader.EngineDeviceBudget") {
  SUBCASE("Hotness") { engine_device_budget<pl::Hotness>(); }
  SUBCASE("OnDemandLru") { engine_device_budget<pl::OnDemandLru>(); }
  SUBCASE("LoadAllPreloader") { engine_device_budget<rt::LoadAllPreloader>(); }
}

namespace {
// Processor 1's own budget is set, cut and lifted while two clients run: after each call the
// blocks on it fit, no request is lost or late, and an impossible one is refused unchanged.
template <class P>
void device_budget_change_at_run_time() {
  const syn::Zoo z = two_tasks_two_blocks();
  syn::Runner runner(z);
  syn::Estimator est(z);
  std::vector<rt::ProcessorSpec> ps{{"p0", rt::ProcessorKind::cpu, 1, 256}, {"p1", rt::ProcessorKind::gpu, 1, 256}};
  sparseloom::Slo slo;
  slo.deadline_ms = 5000;
  slo.rate_rps = 100;  // the greedy planner spreads the tasks over both processors
  std::vector<rt::TaskSpec> ts{{"a", slo}, {"b", slo}};
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, P> eng(runner, est, syn::GreedyOptimizer{}, ps, ts, {}, P{});
  CHECK(serve_two_clients(eng, 10) == 20);
  REQUIRE(runner.resident_bytes(1) >= 2 * z.block_bytes);  // both blocks of a task on p1
  CHECK(eng.set_device_budget(1, z.block_bytes));
  CHECK(eng.device_budget(1) == z.block_bytes);
  CHECK(runner.resident_bytes(1) <= z.block_bytes);
  CHECK(serve_two_clients(eng, 20) == 40);
  CHECK(eng.metrics().processors[1].memory_budget_bytes == z.block_bytes);
  CHECK_THROWS_AS(eng.set_device_budget(2, 0), sparseloom::Error);  // no such processor
  CHECK(eng.set_device_budget(1, 0));  // none again
  CHECK(serve_two_clients(eng, 10) == 20);
  REQUIRE(eng.drain(5s));
  const auto m = eng.metrics();
  CHECK(m.processors[1].peak_resident_bytes >= 2 * z.block_bytes);  // the first phase, before the cut
  CHECK_FALSE(m.budget_exceeded);  // judged against the budget in force at each sample
}
}  // namespace

TEST_CASE("Preloader.EngineDeviceBudgetChangeAtRunTime") {
  SUBCASE("Hotness") { device_budget_change_at_run_time<pl::Hotness>(); }
  SUBCASE("OnDemandLru") { device_budget_change_at_run_time<pl::OnDemandLru>(); }
  SUBCASE("LoadAllPreloader") { device_budget_change_at_run_time<rt::LoadAllPreloader>(); }
}

TEST_CASE("Preloader.DeviceBudgetChangeBelowEveryBlockRefused") {
  syn::Zoo z;
  z.blocks = 2;
  syn::Runner runner(z);
  syn::Estimator est(z);
  std::vector<rt::ProcessorSpec> ps{{"gpu", rt::ProcessorKind::gpu, 1, 64}};
  ps[0].memory_budget_bytes = 4 * z.block_bytes;
  rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness> eng(runner, est, syn::GreedyOptimizer{}, ps,
                                                                               {{"t0", sparseloom::Slo{}}});
  try {
    eng.set_device_budget(0, z.block_bytes - 1);  // the only processor could hold no block
    FAIL("accepted a device budget below every block");
  } catch (const sparseloom::Error& e) {
    CHECK(e.code() == sparseloom::ErrorCode::infeasible);
  }
  CHECK(eng.device_budget(0) == 4 * z.block_bytes);  // the old one stays in force
  auto h = eng.submit(0, {sparseloom::Tensor::from<float>({1, 1}, std::vector<float>{1})});
  REQUIRE(h.wait_for(5s));
  CHECK(h.state() == rt::RequestState::on_time);
}

namespace {
// A preloader that knows nothing of device budgets (a user's own).
struct GlobalOnly {
  rt::LoadAllPreloader inner;
  template <class L>
  void on_plan(L& lib, const sparseloom::Plan& p) { inner.on_plan(lib, p); }
  template <class L>
  bool acquire(L& lib, sparseloom::TaskIndex t, sparseloom::BlockIndex b, sparseloom::VariantIndex v, sparseloom::ProcessorIndex p) {
    return inner.acquire(lib, t, b, v, p);
  }
  template <class L>
  void release(L& lib, sparseloom::TaskIndex t, sparseloom::BlockIndex b, sparseloom::VariantIndex v, sparseloom::ProcessorIndex p) {
    inner.release(lib, t, b, v, p);
  }
};
}  // namespace

TEST_CASE("Preloader.DeviceBudgetErrorsAtStart") {
  syn::Zoo z;
  z.blocks = 2;
  syn::Runner runner(z);
  syn::Estimator est(z);
  std::vector<rt::TaskSpec> ts{{"t0", sparseloom::Slo{}}};
  std::vector<rt::ProcessorSpec> ps{{"gpu", rt::ProcessorKind::gpu, 1, 64}};
  ps[0].memory_budget_bytes = z.block_bytes - 1;  // the only processor cannot hold any block
  try {
    rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, pl::Hotness> eng(runner, est, syn::GreedyOptimizer{}, ps, ts);
    FAIL("started with no processor able to hold a block");
  } catch (const sparseloom::Error& e) {
    CHECK(e.code() == sparseloom::ErrorCode::infeasible);
    CHECK(std::string(e.what()).find("device budget") != std::string::npos);
  }
  // A preloader that cannot enforce a device budget is refused, not silently ignored.
  ps[0].memory_budget_bytes = 4 * z.block_bytes;
  try {
    rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, GlobalOnly> eng(runner, est, syn::GreedyOptimizer{}, ps, ts);
    FAIL("a device budget was accepted by a preloader that ignores it");
  } catch (const sparseloom::Error& e) {
    CHECK(e.code() == sparseloom::ErrorCode::invalid_argument);
    CHECK(std::string(e.what()).find("per-device budget") != std::string::npos);
  }
  CHECK(runner.loads() == 0);
}
