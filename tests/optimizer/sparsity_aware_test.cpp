// optimizer::SparsityAware and optimizer::Exact on synthetic estimators.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <utility>

#include "sparseloom/optimizer/optimizer.hpp"
#include "synthetic_estimator.hpp"

using namespace sparseloom;
using optimizer::evaluate_plan;
using testing::make_state;
using testing::SyntheticConfig;
using testing::SyntheticEstimator;

namespace {

// A plan is well-formed: one processor and one variant per block, each runnable and usable.
void check_well_formed(const SyntheticEstimator& e, const SystemState& s, const Plan& plan) {
  REQUIRE(static_cast<int>(plan.tasks.size()) == e.num_tasks());
  for (int t = 0; t < e.num_tasks(); ++t) {
    const TaskPlan& tp = plan.tasks[t];
    REQUIRE(static_cast<int>(tp.variant.choice.size()) == e.num_blocks(t));
    if (optimizer::is_shed(tp)) continue;
    REQUIRE(static_cast<int>(tp.placement.processor.size()) == e.num_blocks(t));
    for (int b = 0; b < e.num_blocks(t); ++b) {
      int p = tp.placement.processor[b];
      CHECK(e.can_place(t, b, tp.variant.choice[b], p));
      CHECK(optimizer::usable(s, p));
    }
  }
}

// Two tasks, one block, one variant, one processor, 10 ms each: a hand-made overload.
SyntheticEstimator two_tasks_one_processor() {
  SyntheticEstimator e(SyntheticConfig{.tasks = 2, .blocks = 1, .variants = 1, .processors = 1, .seed = 3});
  for (int t = 0; t < 2; ++t) {
    e.lat_ref(t, 0, 0, 0) = 10.0;
    e.tasks[t].overhead_ms = 0;
  }
  return e;
}

}  // namespace

TEST_CASE("Optimizer.SparsityAware.MeetsFloorsAndDeadlinesWhenFeasible") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    // Light load, loose deadlines: every task can meet its SLO (predicted attainment >= 99 %).
    SystemState s = make_state(e, 0.1, 2.0, 2.0, seed);
    optimizer::SparsityAware opt;
    Plan plan = opt.plan(s, e);
    check_well_formed(e, s, plan);
    for (int t = 0; t < e.num_tasks(); ++t) {
      const TaskPlan& tp = plan.tasks[t];
      INFO("seed " << seed << " task " << t << ": " << tp.reason);
      CHECK(tp.meets_slo);
      CHECK(e.accuracy_pct(t, tp.variant) >= s.slos[t].min_accuracy_pct);
      CHECK(e.latency_ms(t, tp.variant, tp.placement) <= s.slos[t].deadline_ms);
      CHECK(tp.predicted_accuracy_pct == doctest::Approx(e.accuracy_pct(t, tp.variant)));
    }
    CHECK(evaluate_plan(s, e, plan).weighted_attainment > 0.99);
    CHECK(plan.version == 1);
  }
}

TEST_CASE("Optimizer.SparsityAware.StitchesWhenThatPays") {
  // Over a few instances with tight floors and deadlines, some chosen variant is a real stitch.
  int stitched = 0;
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.6, 1.0, 1.5, seed);
    Plan plan = optimizer::SparsityAware{}.plan(s, e);
    for (const auto& tp : plan.tasks) stitched += !tp.variant.is_plain();
  }
  CHECK(stitched > 0);
}

TEST_CASE("Optimizer.Exact.FastSolverWithinGapOfExact") {
  double worst_gap = 0, sum_gap = 0;
  int n = 0;
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.tasks = 3, .blocks = 3, .variants = 3, .processors = 2, .seed = seed});
    // Vary load and tightness so some instances contend.
    double load = 0.3 + 0.15 * static_cast<double>(seed % 5);
    SystemState s = make_state(e, load, 0.8 + 0.1 * static_cast<double>(seed % 4), 1.0 + 0.5 * (seed % 3), seed);
    Plan exact = optimizer::Exact{}.plan(s, e);
    Plan fast = optimizer::SparsityAware{}.plan(s, e);
    check_well_formed(e, s, fast);
    double ex = evaluate_plan(s, e, exact).score, fa = evaluate_plan(s, e, fast).score;
    INFO("seed " << seed << ": exact " << ex << " fast " << fa);
    CHECK(fa <= ex + 1e-9);  // the exact solver is the optimum of the same model
    worst_gap = std::max(worst_gap, ex - fa);
    sum_gap += ex - fa;
    ++n;
  }
  MESSAGE("fast vs exact: worst gap " << worst_gap << ", mean gap " << sum_gap / n << " (score ~ weighted attainment)");
  CHECK(worst_gap <= 0.05);
  CHECK(sum_gap / n <= 0.01);
}

TEST_CASE("Optimizer.Exact.ReplanningWithSwitchingCosts") {
  // A plan in force that is another state's optimum: both solvers charge for leaving it
  // (model.hpp, SwitchPenalty), the exact one stays the optimum of that objective, and it
  // keeps its own optimum when nothing changed; with a prohibitive penalty it keeps every
  // task's plan in force (or sheds the task), never moves one.
  const optimizer::SwitchPenalty pen{};
  double worst_gap = 0;
  int moved_free = 0;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.tasks = 3, .blocks = 3, .variants = 3, .processors = 2, .seed = seed});
    SystemState s = make_state(e, 0.6, 1.1, 1.5, seed);
    const SystemState before = make_state(e, 0.2, 2.0, 3.0, seed + 100);  // lighter load, looser SLOs
    const Plan old = optimizer::Exact{}.plan(before, e);
    for (const auto& tp : old.tasks) {
      s.current_stitch.push_back(tp.variant);
      s.current_placement.push_back(tp.placement);
    }
    const Plan exact = optimizer::Exact{}.plan(s, e), fast = optimizer::SparsityAware{}.plan(s, e);
    check_well_formed(e, s, fast);
    const double ex = evaluate_plan(s, e, exact, pen).score, fa = evaluate_plan(s, e, fast, pen).score;
    INFO("seed " << seed << ": exact " << ex << " fast " << fa);
    CHECK(fa <= ex + 1e-9);
    worst_gap = std::max(worst_gap, ex - fa);
    const Plan free = optimizer::Exact({}, true, true, {0, 0}).plan(s, e);
    for (int t = 0; t < e.num_tasks(); ++t) moved_free += free.tasks[t].variant.choice != old.tasks[t].variant.choice;
    // Nothing changed since: the exact optimum is kept as it is.
    SystemState again = s;
    again.current_stitch.clear();
    again.current_placement.clear();
    for (const auto& tp : exact.tasks) {
      again.current_stitch.push_back(tp.variant);
      again.current_placement.push_back(tp.placement);
    }
    const Plan kept = optimizer::Exact{}.plan(again, e);
    for (int t = 0; t < e.num_tasks(); ++t) {
      CHECK(kept.tasks[t].variant.choice == exact.tasks[t].variant.choice);
      CHECK(kept.tasks[t].placement.processor == exact.tasks[t].placement.processor);
    }
    // Leaving the plan in force costs more than anything gains: keep it or shed.
    const Plan stuck = optimizer::Exact({}, true, true, {1e3, 0}).plan(s, e);
    for (int t = 0; t < e.num_tasks(); ++t)
      CHECK((optimizer::is_shed(stuck.tasks[t]) || (stuck.tasks[t].variant.choice == old.tasks[t].variant.choice &&
                                                    stuck.tasks[t].placement.processor == old.tasks[t].placement.processor)));
  }
  MESSAGE("with switching costs: fast vs exact worst gap " << worst_gap << "; exact without them moved " << moved_free
                                                           << " task variants off the old plan");
  CHECK(worst_gap <= 0.05);
  CHECK(moved_free > 0);  // the states differ enough that re-planning matters
}

TEST_CASE("Optimizer.Exact.RefusesLargeSpaces") {
  SyntheticEstimator e(SyntheticConfig{});
  SystemState s = make_state(e, 0.3, 1.5, 2.0);
  CHECK_THROWS_AS(optimizer::Exact{}.plan(s, e), Error);
}

TEST_CASE("Optimizer.SparsityAware.InfeasibleSloIsReportedPerTask") {
  SyntheticEstimator e(SyntheticConfig{.seed = 4});
  SystemState s = make_state(e, 0.3, 1.5, 2.0, 4);
  s.slos[0].deadline_ms = 0.01;                            // no stitch is that fast
  s.slos[1].min_accuracy_pct = e.tasks[1].base_acc + 5;  // above every variant
  Plan plan = optimizer::SparsityAware{}.plan(s, e);
  check_well_formed(e, s, plan);
  CHECK_FALSE(plan.tasks[0].meets_slo);
  CHECK(plan.tasks[0].reason.find("deadline") != std::string::npos);
  CHECK_FALSE(plan.tasks[1].meets_slo);
  CHECK(plan.tasks[1].reason.find("accuracy") != std::string::npos);
  CHECK(plan.tasks[2].meets_slo);
  CHECK(plan.tasks[3].meets_slo);
}

TEST_CASE("Optimizer.SparsityAware.ReplanMovesTasksOffAnUnavailableProcessor") {
  SyntheticEstimator e(SyntheticConfig{.seed = 2});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 2);
  optimizer::SparsityAware opt;
  Plan before = opt.plan(s, e);
  std::vector<int> uses(e.num_processors(), 0);
  for (const auto& tp : before.tasks)
    for (int p : tp.placement.processor) ++uses[p];
  int busiest = static_cast<int>(std::max_element(uses.begin(), uses.end()) - uses.begin());
  REQUIRE(uses[busiest] > 0);
  s.processor_available[busiest] = false;
  Plan after = opt.plan(s, e);
  CHECK(after.version == before.version + 1);
  check_well_formed(e, s, after);
  for (const auto& tp : after.tasks)
    for (int p : tp.placement.processor) CHECK(p != busiest);
  // A slowed-down processor counts too: its latencies scale.
  s.processor_available[busiest] = true;
  s.processor_speed.assign(e.num_processors(), 1.0);
  s.processor_speed[busiest] = 50.0;
  Plan slow = opt.plan(s, e);
  int on_slow = 0;
  for (const auto& tp : slow.tasks)
    for (int p : tp.placement.processor) on_slow += p == busiest;
  CHECK(on_slow < uses[busiest]);
}

TEST_CASE("Optimizer.SparsityAware.ReplansWhenRatesAndSlosChange") {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.2, 1.5, 2.0, seed);
    optimizer::SparsityAware opt;
    Plan old_plan = opt.plan(s, e);
    // Rates triple and one deadline tightens: the new plan must do at least as well under the
    // new state as keeping the old one would (which the state offers, with its switching cost).
    for (auto& slo : s.slos) slo.rate_rps *= 3;
    s.slos[0].deadline_ms *= 0.6;
    for (const auto& tp : old_plan.tasks) {
      s.current_stitch.push_back(tp.variant);
      s.current_placement.push_back(tp.placement);
    }
    Plan new_plan = opt.plan(s, e);
    CHECK(new_plan.version == old_plan.version + 1);
    double kept = evaluate_plan(s, e, old_plan).score, replanned = evaluate_plan(s, e, new_plan).score;
    INFO("seed " << seed << ": keeping the old plan " << kept << ", re-planned " << replanned);
    CHECK(replanned >= kept - 1e-9);
  }
}

TEST_CASE("Optimizer.SparsityAware.ReplanForOneTaskKeepsTheOthersPlans") {
  // One task's floor rises. With the plan in force in the state, the others keep their stitch
  // and placement (nothing to gain at light load but noise-level score), so the re-plan's loads
  // are that task's alone; without switching costs the others may be reshuffled.
  using Free = optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.switch_penalty = 0, .switch_penalty_per_mib = 0}>;
  int sticky_moves = 0, free_moves = 0, cases = 0;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.15, 2.0, 2.0, seed);
    Plan first = optimizer::SparsityAware{}.plan(s, e);
    for (const auto& tp : first.tasks) {
      s.current_stitch.push_back(tp.variant);
      s.current_placement.push_back(tp.placement);
    }
    // Nothing changed: the plan in force is kept as it is.
    Plan same = optimizer::SparsityAware{}.plan(s, e);
    for (int t = 0; t < e.num_tasks(); ++t) {
      CHECK(same.tasks[t].variant.choice == first.tasks[t].variant.choice);
      CHECK(same.tasks[t].placement.processor == first.tasks[t].placement.processor);
    }
    // Task 0's floor rises just above what its current plan reaches.
    const double raised = first.tasks[0].predicted_accuracy_pct + 0.05;
    if (raised >= 100) continue;
    s.slos[0].min_accuracy_pct = raised;
    Plan sticky = optimizer::SparsityAware{}.plan(s, e), free = Free{}.plan(s, e);
    check_well_formed(e, s, sticky);
    if (!sticky.tasks[0].meets_slo) continue;  // no variant reaches the new floor
    ++cases;
    CHECK(e.accuracy_pct(0, sticky.tasks[0].variant) >= raised);
    for (int t = 1; t < e.num_tasks(); ++t) {
      const bool kept = sticky.tasks[t].variant.choice == first.tasks[t].variant.choice &&
                        sticky.tasks[t].placement.processor == first.tasks[t].placement.processor;
      sticky_moves += !kept;
      free_moves += !(free.tasks[t].variant.choice == first.tasks[t].variant.choice &&
                      free.tasks[t].placement.processor == first.tasks[t].placement.processor);
    }
    // Keeping the others costs no predicted attainment here.
    CHECK(evaluate_plan(s, e, sticky).weighted_attainment >= evaluate_plan(s, e, free).weighted_attainment - 1e-3);
  }
  MESSAGE(cases << " re-plans: other tasks moved " << sticky_moves << " times with switching costs, " << free_moves << " without");
  CHECK(cases >= 4);
  CHECK(sticky_moves == 0);
  CHECK(sticky_moves <= free_moves);
}

TEST_CASE("Optimizer.SparsityAware.MemoryBudgetRespected") {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.3, 2.0, 3.0, seed);
    optimizer::SparsityAware opt;
    Plan free = opt.plan(s, e);
    double used = 0;
    for (const auto& tp : free.tasks) used += tp.predicted_memory_bytes;
    s.memory_budget_bytes = 0.5 * used;
    Plan tight = opt.plan(s, e);
    double tight_used = 0;
    int met = 0;
    for (int t = 0; t < e.num_tasks(); ++t) {
      if (optimizer::is_shed(tight.tasks[t])) continue;
      tight_used += e.memory_bytes(t, tight.tasks[t].variant);
      met += tight.tasks[t].meets_slo;
    }
    INFO("seed " << seed << ": unconstrained " << used << " B, budget " << s.memory_budget_bytes);
    CHECK(tight_used <= s.memory_budget_bytes);
    CHECK(met >= 1);
    CHECK(evaluate_plan(s, e, tight).within_budget);
  }
}

TEST_CASE("Optimizer.SparsityAware.CriticalityDecidesUnderOverload") {
  SyntheticEstimator e = two_tasks_one_processor();
  SystemState s;
  s.slos.assign(2, testing::slo(200, 0, 60));  // rho 0.6 each: one fits, two do not
  for (int critical = 0; critical < 2; ++critical) {
    s.slos[0].criticality = critical == 0 ? 5 : 1;
    s.slos[1].criticality = critical == 1 ? 5 : 1;
    Plan plan = optimizer::SparsityAware{}.plan(s, e);
    CHECK(plan.tasks[critical].meets_slo);
    CHECK_FALSE(plan.tasks[1 - critical].meets_slo);
    CHECK(optimizer::is_shed(plan.tasks[1 - critical]));
    CHECK(evaluate_plan(s, e, plan).weighted_attainment > 0.8);
  }
  // Without overload both are served.
  s.slos[0].rate_rps = s.slos[1].rate_rps = 20;
  Plan plan = optimizer::SparsityAware{}.plan(s, e);
  CHECK(plan.tasks[0].meets_slo);
  CHECK(plan.tasks[1].meets_slo);
}

TEST_CASE("Optimizer.SparsityAware.AblationsScoreNoBetter") {
  double full = 0, nostitch = 0, blind = 0;
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.9, 0.8, 1.5, seed);
    full += evaluate_plan(s, e, optimizer::SparsityAware{}.plan(s, e)).score;
    Plan ns = optimizer::SparsityAwareNoStitching{}.plan(s, e);
    for (const auto& tp : ns.tasks) CHECK(tp.variant.is_plain());
    nostitch += evaluate_plan(s, e, ns).score;
    blind += evaluate_plan(s, e, optimizer::SparsityAwareBlind{}.plan(s, e)).score;
  }
  MESSAGE("summed score over 6 instances: full " << full << ", no stitching " << nostitch << ", blind " << blind);
  CHECK(full >= nostitch - 1e-9);
  CHECK(full >= blind - 1e-9);
}

TEST_CASE("Optimizer.SparsityAware.BlindModelIsProcessorAgnosticInSparsityGain") {
  // In the blind table the ratio between two variants' latencies is the same on every processor.
  SyntheticEstimator e(SyntheticConfig{.seed = 5, .npu_unsupported_block_prob = 0});
  SystemState s = make_state(e, 0.3, 1.5, 2.0);
  optimizer::BlockTable bt = optimizer::block_table(e, 0, s);
  optimizer::BlockTable blind = optimizer::blind_table(bt, s);
  for (int b = 0; b < bt.blocks; ++b) {
    double r0 = blind.ms(b, 2, 0) / blind.ms(b, 0, 0), r1 = blind.ms(b, 2, 1) / blind.ms(b, 0, 1);
    CHECK(r0 == doctest::Approx(r1));
  }
}

TEST_CASE("Optimizer.SparsityAware.DecisionTimeIsReported") {
  SyntheticEstimator e(SyntheticConfig{});  // 4 tasks x 8 variants x 6 blocks x 3 processors
  SystemState s = make_state(e, 0.5, 1.2, 2.0);
  Plan plan = optimizer::SparsityAware{}.plan(s, e);
  MESSAGE("decision time (4x8x6x3, debug-or-release test build): " << plan.decision_ms << " ms");
  CHECK(plan.decision_ms > 0);
  CHECK(plan.decision_ms < 5000);  // catches a runaway search only: bench/optimizer times it
}

TEST_CASE("Optimizer.SparsityAware.RejectsAStateThatDoesNotMatchTheEstimator") {
  SyntheticEstimator e(SyntheticConfig{});
  SystemState s = make_state(e, 0.5, 1.2, 2.0);
  s.slos.pop_back();
  CHECK_THROWS_AS(optimizer::SparsityAware{}.plan(s, e), Error);
}

TEST_CASE("Optimizer.SparsityAware.DeviceBudgetRespected") {
  // A device budget on the processor holding the most bytes, half of what the unconstrained
  // plan puts there: the plan moves blocks off it or picks lighter ones, and the shared model
  // agrees it fits.
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    SyntheticEstimator e(SyntheticConfig{.seed = seed});
    SystemState s = make_state(e, 0.3, 2.0, 3.0, seed);
    optimizer::SparsityAware opt;
    Plan free = opt.plan(s, e);
    auto bytes_on = [&](const Plan& p, ProcessorIndex dev) {
      double n = 0;
      for (int t = 0; t < e.num_tasks(); ++t) {
        if (optimizer::is_shed(p.tasks[t])) continue;
        const auto& tp = p.tasks[t];
        for (std::size_t b = 0; b < tp.placement.processor.size(); ++b)
          if (tp.placement.processor[b] == dev) n += e.block_bytes(t, static_cast<BlockIndex>(b), tp.variant.choice[b]);
      }
      return n;
    };
    ProcessorIndex dev = 0;
    for (ProcessorIndex p = 1; p < e.num_processors(); ++p)
      if (bytes_on(free, p) > bytes_on(free, dev)) dev = p;
    const double on = bytes_on(free, dev);
    REQUIRE(on > 0);
    s.device_budget_bytes.assign(static_cast<std::size_t>(e.num_processors()), 0.0);
    s.device_budget_bytes[static_cast<std::size_t>(dev)] = 0.5 * on;
    Plan tight = opt.plan(s, e);
    INFO("seed " << seed << ": unconstrained " << on << " B on processor " << dev << ", device budget " << 0.5 * on);
    CHECK(bytes_on(tight, dev) <= 0.5 * on);
    CHECK(evaluate_plan(s, e, tight).within_budget);
    CHECK_FALSE(evaluate_plan(s, e, free).within_budget);  // the model sees the old plan over it
  }
}

TEST_CASE("Optimizer.SparsityAware.OffersPerRequestRoutesWithoutABudget") {
  // A served task's stitch, whole on each other usable processor that runs every block of it,
  // is offered for per-request routing (earliest finish by default); none with the option off.
  // (Under a memory budget: RoutesWithinTheMemoryBudget.)
  SyntheticEstimator e(SyntheticConfig{.seed = 2});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 2);
  optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.route_below_attainment = 2}> opt;  // every task
  const Plan plan = opt.plan(s, e);
  int offered = 0;
  for (int t = 0; t < e.num_tasks(); ++t) {
    const TaskPlan& tp = plan.tasks[t];
    if (optimizer::is_shed(tp)) continue;
    CHECK(tp.routing == Routing::earliest_finish);
    std::set<std::vector<int>> want;
    for (int p = 0; p < e.num_processors(); ++p) {
      bool runs = optimizer::usable(s, p);
      for (int b = 0; b < e.num_blocks(t) && runs; ++b) runs = e.can_place(t, b, tp.variant.choice[b], p);
      std::vector<int> whole(static_cast<std::size_t>(e.num_blocks(t)), p);
      if (runs && whole != tp.placement.processor) want.insert(whole);
    }
    std::set<std::vector<int>> got;
    for (const auto& pl : tp.alternatives) got.insert(pl.processor);
    CHECK(got == want);
    CHECK(got.size() == tp.alternatives.size());
    offered += static_cast<int>(got.size());
  }
  CHECK(offered > 0);
  // A processor out of service is offered to nobody.
  s.processor_available[1] = false;
  for (const auto& tp : opt.plan(s, e).tasks)
    for (const auto& pl : tp.alternatives)
      for (int p : pl.processor) CHECK(p != 1);
  s.processor_available[1] = true;
  optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.route_per_request = false}> off;
  for (const auto& tp : off.plan(s, e).tasks) CHECK(tp.alternatives.empty());
  optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.route_below_attainment = 2, .routing = Routing::overflow}> ovf;
  for (const auto& tp : ovf.plan(s, e).tasks)
    if (!optimizer::is_shed(tp)) CHECK(tp.routing == Routing::overflow);
  // The tasks predicted to miss more than 0.1 % of their requests or placed on a processor the
  // model predicts at least half busy get routes; by default (route_all_when_any), once one
  // does, every served task does.
  optimizer::SparsityAware def;
  optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.route_all_when_any = false}> each;
  int with = 0, without = 0, by_utilisation = 0, states_with = 0, states_without = 0;
  // (generous deadlines at high load: met on average, on busy processors)
  for (auto [load, slo_scale] : {std::pair{0.1, 8.0}, std::pair{0.4, 1.5}, std::pair{0.9, 1.5}, std::pair{2.5, 8.0}}) {
    SystemState h = make_state(e, load, slo_scale, 2.0, 2);
    const Plan p = each.plan(h, e);
    const auto ev = evaluate_plan(h, e, p);
    bool any = false;
    for (int t = 0; t < e.num_tasks(); ++t) {
      if (optimizer::is_shed(p.tasks[t])) continue;
      double rho = 0;
      for (int q : p.tasks[t].placement.processor) rho = std::max(rho, ev.rho[static_cast<std::size_t>(q)]);
      INFO("load " << load << ", slo scale " << slo_scale << ", task " << t << ": predicted attainment " << ev.tasks[t].attainment << ", utilisation " << rho);
      const bool qualifies = ev.tasks[t].attainment < 0.999 || rho >= 0.5;
      CHECK((p.tasks[t].routing == Routing::earliest_finish) == qualifies);
      (qualifies ? with : without) += 1;
      by_utilisation += ev.tasks[t].attainment >= 0.999 && rho >= 0.5;
      any = any || qualifies;
    }
    const Plan d = def.plan(h, e);
    for (int t = 0; t < e.num_tasks(); ++t) {
      INFO("load " << load << ", slo scale " << slo_scale << ", task " << t);
      if (!optimizer::is_shed(d.tasks[t])) CHECK((d.tasks[t].routing == Routing::earliest_finish) == any);
    }
    (any ? states_with : states_without) += 1;
  }
  CHECK(with > 0);
  CHECK(without > 0);
  CHECK(by_utilisation > 0);
  CHECK(states_with > 0);
  CHECK(states_without > 0);
}

TEST_CASE("Optimizer.SparsityAware.RoutesWithinTheMemoryBudget") {
  // Each alternative holds another copy of its task's stitch: under a memory budget the plan's
  // predicted memory plus its alternatives' copies stays within the budget; a budget that fits
  // them all gets every route, one that fits only the plan gets none, and the task predicted
  // to miss most is routed first.
  SyntheticEstimator e(SyntheticConfig{.seed = 2});
  SystemState s = make_state(e, 0.4, 1.5, 2.0, 2);
  optimizer::BasicSparsityAware<optimizer::SparsityAwareOptions{.route_below_attainment = 2}> opt;  // every task at risk
  s.memory_budget_bytes = 1e15;
  const Plan roomy = opt.plan(s, e);
  double plan_bytes = 0, copies = 0;
  int served = 0;
  for (int t = 0; t < e.num_tasks(); ++t) {
    const TaskPlan& tp = roomy.tasks[t];
    if (optimizer::is_shed(tp)) continue;
    ++served;
    plan_bytes += tp.predicted_memory_bytes;
    copies += static_cast<double>(tp.alternatives.size()) * tp.predicted_memory_bytes;
    CHECK(tp.routing == Routing::earliest_finish);
  }
  REQUIRE(served > 1);
  REQUIRE(copies > 0);
  const auto offered = [&](const Plan& p) {
    double bytes = 0;
    int n = 0;
    for (const auto& tp : p.tasks) {
      if (optimizer::is_shed(tp)) continue;
      bytes += (1.0 + static_cast<double>(tp.alternatives.size())) * tp.predicted_memory_bytes;
      n += static_cast<int>(tp.alternatives.size());
      CHECK(tp.alternatives.empty() == (tp.routing == Routing::planned));
    }
    return std::pair{bytes, n};
  };
  int last = -1;
  for (const double f : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    s.memory_budget_bytes = plan_bytes + f * copies;
    const Plan p = opt.plan(s, e);
    const auto [bytes, n] = offered(p);
    INFO("budget: the plan + " << f << " of its alternatives' copies");
    CHECK(bytes <= s.memory_budget_bytes * (1 + 1e-9));
    CHECK(n >= last);
    if (f == 0.0) CHECK(n == 0);
    if (f == 1.0) CHECK(n == offered(roomy).second);
    last = n;
  }
  // Room for exactly one copy of the task predicted to miss most: it gets the routes.
  const auto ev = evaluate_plan(s, e, roomy);
  int worst = -1;  // lowest predicted attainment, then the busiest processor (the optimizer's order)
  const auto before = [&](int a, int b) {
    const auto &x = ev.tasks[a], &y = ev.tasks[b];
    return x.attainment != y.attainment ? x.attainment < y.attainment : x.utilisation > y.utilisation;
  };
  for (int t = 0; t < e.num_tasks(); ++t)
    if (!optimizer::is_shed(roomy.tasks[t]) && (worst < 0 || before(t, worst))) worst = t;
  REQUIRE(worst >= 0);
  REQUIRE(!roomy.tasks[worst].alternatives.empty());
  s.memory_budget_bytes = plan_bytes + 1.0001 * roomy.tasks[worst].predicted_memory_bytes;
  const Plan one = opt.plan(s, e);
  CHECK(one.tasks[worst].alternatives.size() == 1);
}
