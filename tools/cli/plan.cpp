// sparseloom plan SCENARIO: the optimizer's decision for a scenario, without running it: per
// task the stitched variant (a source variant per block), the processor per block, what the
// estimator predicts for it, whether that meets the SLO, and why the optimizer chose it.
// Exit 3 when some task is predicted to miss its SLO (the plan is printed all the same).
#include "common.hpp"
#include "policies.hpp"
#include "scenario_model.hpp"

namespace sparseloom::cli {
namespace {

struct Args {
  ProfileRequest prof;
  std::string policy = "sparseloom";
};

// What the estimator says about the alternatives: the optimizer's own reason names its search;
// this names the trade-off (vs the base on the same processors, vs the fastest plain variant
// that meets the floor), the slack, and the margin.
std::string explain(const ScenarioModel& m, TaskIndex t, const TaskPlan& tp, const std::vector<estimator::ProcessorProfile>& procs) {
  const auto& e = m.est;
  const auto& man = m.manifests[static_cast<std::size_t>(t)];
  const auto& slo = m.state.slos[static_cast<std::size_t>(t)];
  const int B = e.num_blocks(t);
  if (tp.placement.processor.size() != static_cast<std::size_t>(B)) return "no placement";
  auto runnable = [&](const StitchedVariant& s, const Placement& pl) {
    for (int b = 0; b < B; ++b)
      if (pl.processor[b] < 0 || !e.can_place(t, b, s.choice[b], pl.processor[b])) return false;
    return true;
  };
  std::string out = fmt::format("{:+.2f} pp over the {:.1f} % floor, {:.3f} ms of the {:.3f} ms deadline", tp.predicted_accuracy_pct - slo.min_accuracy_pct,
                                slo.min_accuracy_pct, tp.predicted_latency_ms, slo.deadline_ms);
  const StitchedVariant base{std::vector<int>(static_cast<std::size_t>(B), man.variant_index(man.base))};
  if (runnable(base, tp.placement))
    out += fmt::format("; the base on the same processors: {:.3f} ms at {:.2f} %", e.latency_ms(t, base, tp.placement), e.accuracy_pct(t, base));
  double best_ms = 1e300;
  std::string best;
  for (int v = 0; v < e.num_variants(t); ++v)
    for (int p = 0; p < e.num_processors(); ++p) {
      const StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), v)};
      const Placement pl{std::vector<int>(static_cast<std::size_t>(B), p)};
      if (!runnable(s, pl) || e.accuracy_pct(t, s) < slo.min_accuracy_pct) continue;
      if (const double ms = e.latency_ms(t, s, pl); ms < best_ms) {
        best_ms = ms;
        best = fmt::format("{} on {}", man.variants[static_cast<std::size_t>(v)].name, procs[static_cast<std::size_t>(p)].name);
      }
    }
  if (best.empty()) out += "; no plain variant meets the floor";
  else out += fmt::format("; fastest plain variant meeting the floor: {} at {:.3f} ms", best, best_ms);
  return out;
}

int do_plan(const Args& a, const Globals& g) {
  auto req = a.prof;
  req.quiet = req.quiet || g.quiet || g.json;
  const auto table = profile_for(req);
  const auto m = build_model(scenario::load_scenario(a.prof.scenario), table);
  const auto [label, plan] = visit_policy(a.policy, [&](const char* name, auto policy) {
    SystemState s = m.state;
    return std::pair<std::string, Plan>(name, policy.plan(s, m.est));
  });
  const auto& procs = table.processors;
  json::Json j{{"scenario", m.sc.name}, {"policy", label}, {"decision_ms", plan.decision_ms},
               {"memory_budget_bytes", m.sc.memory_budget_bytes}, {"tasks", json::Json::array()}};
  bool feasible = true;
  std::vector<double> load(procs.size(), 0.0);
  double total_bytes = 0;
  for (std::size_t t = 0; t < plan.tasks.size(); ++t) {
    const auto& tp = plan.tasks[t];
    const auto& man = m.manifests[t];
    const auto proc_name = [&](int p) { return p >= 0 && static_cast<std::size_t>(p) < procs.size() ? procs[p].name : std::string("-"); };
    std::vector<std::string> stitch, place;
    for (auto v : tp.variant.choice) stitch.push_back(man.variants.at(static_cast<std::size_t>(v)).name);
    for (auto p : tp.placement.processor) place.push_back(proc_name(p));
    std::vector<std::string> alts;  // other placements the routing may use, "cpu0|cpu0|..."
    for (const auto& pl : tp.alternatives) {
      std::string a;
      for (auto p : pl.processor) a += (a.empty() ? "" : "|") + proc_name(p);
      alts.push_back(a);
    }
    feasible = feasible && tp.meets_slo;
    total_bytes += tp.predicted_memory_bytes;
    const auto& slo = m.state.slos[t];
    j["tasks"].push_back({{"task", man.task}, {"stitch", stitch}, {"placement", place}, {"predicted_accuracy_pct", tp.predicted_accuracy_pct},
                          {"predicted_latency_ms", tp.predicted_latency_ms}, {"predicted_memory_bytes", tp.predicted_memory_bytes},
                          {"deadline_ms", slo.deadline_ms}, {"min_accuracy_pct", slo.min_accuracy_pct}, {"rate_rps", slo.rate_rps},
                          {"meets_slo", tp.meets_slo}, {"reason", tp.reason},
                          {"routing", routing_name(tp.routing)}, {"alternatives", alts},
                          {"explanation", explain(m, static_cast<TaskIndex>(t), tp, procs)}});
    // Predicted load: arrival rate x the time each block keeps its processor busy.
    for (std::size_t b = 0; b < tp.placement.processor.size() && b < tp.variant.choice.size(); ++b)
      if (const int p = tp.placement.processor[b]; p >= 0 && static_cast<std::size_t>(p) < procs.size())
        load[static_cast<std::size_t>(p)] += slo.rate_rps * m.est.block_latency_ms(static_cast<TaskIndex>(t), static_cast<int>(b), tp.variant.choice[b], p) / 1000;
  }
  for (std::size_t p = 0; p < procs.size(); ++p) j["processor_load"].push_back({{"processor", procs[p].name}, {"utilisation", load[p]}});
  j["feasible"] = feasible;
  j["predicted_memory_bytes"] = total_bytes;
  if (g.json) {
    fmt::print("{}\n", j.dump(1));
  } else {
    fmt::print("plan for scenario {} by {} (decided in {:.2f} ms)\n\n", m.sc.name, label, plan.decision_ms);
    std::vector<std::vector<std::string>> rows;
    for (const auto& jt : j["tasks"]) {
      std::string st, pl;
      for (const auto& s : jt["stitch"]) st += (st.empty() ? "" : "|") + s.get<std::string>();
      for (const auto& s : jt["placement"]) pl += (pl.empty() ? "" : "|") + s.get<std::string>();
      rows.push_back({jt["task"], st, pl, fmt::format("{:.2f} %", jt["predicted_accuracy_pct"].get<double>()),
                      fmt::format("{:.1f} %", jt["min_accuracy_pct"].get<double>()), fmt::format("{:.3f}", jt["predicted_latency_ms"].get<double>()),
                      fmt::format("{:.3f}", jt["deadline_ms"].get<double>()), human_bytes(jt["predicted_memory_bytes"].get<double>()),
                      jt["meets_slo"].get<bool>() ? "yes" : "NO"});
    }
    print_table({"task", "stitch (variant per block)", "processor per block", "accuracy", "floor", "latency ms", "deadline ms", "memory", "meets SLO"},
                rows);
    fmt::print("\nwhy:\n");
    for (const auto& jt : j["tasks"]) {
      fmt::print("  {}: {}\n    {}\n", jt["task"].get<std::string>(), jt["reason"].get<std::string>(), jt["explanation"].get<std::string>());
      if (!jt["alternatives"].empty()) {
        std::string a;
        for (const auto& x : jt["alternatives"]) a += (a.empty() ? "" : ", ") + x.get<std::string>();
        fmt::print("    requests routed {} among the placement and {}\n", jt["routing"].get<std::string>(), a);
      }
    }
    std::string loads;
    for (const auto& l : j["processor_load"]) loads += fmt::format(" {} {:.1f} %", l["processor"].get<std::string>(), 100 * l["utilisation"].get<double>());
    fmt::print("\npredicted processor load (rate x busy time):{}\n", loads);
    fmt::print("\nresident weights {}{}; {}\n", human_bytes(total_bytes),
               m.sc.memory_budget_bytes > 0 ? " of a " + human_bytes(m.sc.memory_budget_bytes) + " budget" : "",
               feasible ? "every task is predicted to meet its SLO" : "some task is predicted to miss its SLO (exit code 3)");
  }
  return feasible ? kOk : kInfeasible;
}

}  // namespace

// Options shared by plan and estimate: where the profile comes from.
void add_profile_options(CLI::App* sub, ProfileRequest& r) {
  sub->add_option("scenario", r.scenario, "scenario JSON file (docs/scenario-format.md)")->required();
  sub->add_option("--profile", r.profile_path, "profile table to use (from `sparseloom profile -o`); default: the cache, profiling on a miss");
  sub->add_flag("--quick", r.quick, "when profiling is needed: fewer repetitions per block");
  sub->add_flag("--refresh", r.refresh, "profile again even if the cached table still fits");
}

void add_plan(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("plan", "The optimizer's decision for a scenario: variant and processors per task, and why");
  auto a = std::make_shared<Args>();
  add_profile_options(sub, a->prof);
  sub->add_option("--policy", a->policy, "which policy plans")->check(CLI::IsMember(policy_names()));
  sub->callback([a, &g] { g.action = [a, &g] { return do_plan(*a, g); }; });
}

}  // namespace sparseloom::cli
