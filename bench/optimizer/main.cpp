// sparseloom-bench-optimizer: decision time of the optimizer policies, and an offline
// comparison of every policy's PREDICTED weighted SLO attainment on synthetic scenarios.
//
// Decision time: wall time of plan() (what Plan.decision_ms reports) and the thread's CPU time
// (robust to a busy machine), median and max over repetitions, on instances of the synthetic estimator (tests/optimizer/synthetic_estimator.hpp)
// of 4 tasks x 8 variants x 6 blocks x 3 processors, 16 and 32 tasks; the exact solver where
// its space is small enough, with SparsityAware on the same instances for the ratio.
// Predicted attainment: each policy's plan judged by the shared plan model
// (optimizer::evaluate_plan: M/G/1 queueing per processor, exponential wait tail) with the
// synthetic estimator's latencies. It is a prediction of the model, not a measurement: the
// engine's end-to-end benchmark measures. Band's per-request dispatch is represented by its
// nominal placement (static SEL), which understates the balancing it does at run time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "synthetic_estimator.hpp"

using namespace sparseloom;
using testing::make_state;
using testing::SyntheticConfig;
using testing::SyntheticEstimator;
using json = nlohmann::json;

namespace {

struct Stats {
  double median = 0, max = 0, min = 0;
  int reps = 0;
};

// CPU time of this thread: unlike wall time, not inflated when a busy machine preempts us.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.reps = static_cast<int>(v.size());
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.max = v.back();
  s.min = v.front();
  return s;
}

// A policy, freshly constructed for every plan (no state carried between repetitions).
using Planner = std::function<Plan(const SystemState&, const SyntheticEstimator&)>;

template <class Policy>
Planner planner() {
  return [](const SystemState& s, const SyntheticEstimator& e) { return Policy{}.plan(s, e); };
}

const std::vector<std::pair<std::string, Planner>>& policies() {
  static const std::vector<std::pair<std::string, Planner>> all = {
      {"SparsityAware", planner<optimizer::SparsityAware>()},
      {"SparsityAware(no stitching)", planner<optimizer::SparsityAwareNoStitching>()},
      {"SparsityAware(sparsity-blind)", planner<optimizer::SparsityAwareBlind>()},
      {"INFaaS-like", planner<baselines::Infaas>()},
      {"Band-SEL (nominal)", planner<baselines::BandSEL>()},
      {"Fixed", planner<baselines::Fixed>()},
  };
  return all;
}

json time_policy(const std::string& name, const Planner& plan, SyntheticConfig cfg, int reps, int instances) {
  std::vector<SyntheticEstimator> es;
  std::vector<SystemState> ss;
  for (int i = 0; i < instances; ++i) {
    cfg.seed = 100 + static_cast<std::uint64_t>(i);
    es.emplace_back(cfg);
    ss.push_back(make_state(es.back(), 0.8, 1.0, 2.0, cfg.seed));
  }
  plan(ss[0], es[0]);  // warm-up
  std::vector<double> ms, cpu;
  for (int r = 0; r < reps; ++r) {
    int i = r % instances;
    double c0 = thread_cpu_ms();
    auto t0 = std::chrono::steady_clock::now();
    Plan p = plan(ss[i], es[i]);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(thread_cpu_ms() - c0);
  }
  Stats st = stats(ms), ct = stats(cpu);
  std::printf("  %-30s %2d tasks x %d x %d x %d: wall median %8.3f ms, max %8.3f ms; cpu median %8.3f ms, max %8.3f ms (%d reps)\n",
              name.c_str(), cfg.tasks, cfg.variants, cfg.blocks, cfg.processors, st.median, st.max, ct.median, ct.max,
              st.reps);
  return {{"policy", name},       {"tasks", cfg.tasks},        {"variants", cfg.variants}, {"blocks", cfg.blocks},
          {"processors", cfg.processors}, {"median_ms", st.median}, {"max_ms", st.max},     {"min_ms", st.min},
          {"cpu_median_ms", ct.median},   {"cpu_max_ms", ct.max},   {"reps", st.reps}};
}

// Where the numbers came from: CPU model, hardware threads, load average at start.
json machine_info() {
  json m;
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);)
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  m["hardware_threads"] = std::thread::hardware_concurrency();
  std::ifstream load("/proc/loadavg");
  double l1 = 0;
  if (load >> l1) m["load_average_1min"] = l1;
  return m;
}

struct Scenario {
  std::string name;
  double load, slo_scale, floor_pp;
  bool memory_constrained;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SparseLoom optimizer benchmark: decision time and predicted SLO attainment per policy"};
  std::string json_path;
  int reps = 200, instances = 10;
  bool quick = false;
  app.add_option("--json", json_path, "write results as JSON to this path");
  app.add_option("--reps", reps, "repetitions for the 4-task decision time (fewer for larger)");
  app.add_option("--instances", instances, "random instances per scenario");
  app.add_flag("--quick", quick, "fewer repetitions (smoke test)");
  CLI11_PARSE(app, argc, argv);
  if (quick) reps = 20, instances = 3;
  {
    json m = machine_info();
    std::printf("Machine: %s, %u hardware threads, load average %.2f\n", m.value("cpu", std::string("?")).c_str(),
                m["hardware_threads"].get<unsigned>(), m.value("load_average_1min", 0.0));
  }

  json out;
  out["schema_version"] = 1;
  out["machine"] = machine_info();
  out["estimator"] = "synthetic (tests/optimizer/synthetic_estimator.hpp)";

  // --- decision time ------------------------------------------------------------------------
  std::printf("Decision time of plan() (fresh policy object each time; tasks x variants x blocks x processors)\n");
  json times = json::array();
  for (int tasks : {4, 16, 32}) {
    SyntheticConfig cfg{.tasks = tasks, .blocks = 6, .variants = 8, .processors = 3};
    int r = std::max(10, reps / (tasks / 4));
    for (const auto& [name, plan] : policies()) times.push_back(time_policy(name, plan, cfg, r, instances));
  }
  // The exact solver where it is feasible, with the fast one on the same instances.
  SyntheticConfig small{.tasks = 3, .blocks = 3, .variants = 3, .processors = 2};
  json exact_t = time_policy("Exact", planner<optimizer::Exact>(), small, std::max(5, reps / 20), instances);
  json fast_t = time_policy("SparsityAware", planner<optimizer::SparsityAware>(), small, std::max(5, reps / 20), instances);
  times.push_back(exact_t);
  times.push_back(fast_t);
  double speedup = exact_t["median_ms"].get<double>() / fast_t["median_ms"].get<double>();
  std::printf("  SparsityAware is %.1fx faster than Exact on 3x3x3x2 instances\n", speedup);
  out["decision_time"] = times;
  out["exact_over_fast_median_ratio"] = speedup;

  // --- fast vs exact gap ----------------------------------------------------------------------
  {
    std::vector<double> gaps;
    for (int i = 0; i < instances * 3; ++i) {
      small.seed = 500 + static_cast<std::uint64_t>(i);
      SyntheticEstimator e(small);
      SystemState s = make_state(e, 0.3 + 0.15 * (i % 5), 0.8 + 0.1 * (i % 4), 1.0 + 0.5 * (i % 3), small.seed);
      double ex = optimizer::evaluate_plan(s, e, optimizer::Exact{}.plan(s, e)).weighted_attainment;
      double fa = optimizer::evaluate_plan(s, e, optimizer::SparsityAware{}.plan(s, e)).weighted_attainment;
      gaps.push_back(ex - fa);
    }
    Stats g = stats(gaps);
    double mean = 0;
    for (double x : gaps) mean += x;
    mean /= static_cast<double>(gaps.size());
    std::printf("Fast vs exact, predicted weighted attainment gap over %d instances: mean %.4f, max %.4f\n",
                g.reps, mean, g.max);
    out["fast_vs_exact_gap"] = {{"instances", g.reps}, {"mean", mean}, {"max", g.max}};
  }

  // --- predicted attainment per policy --------------------------------------------------------
  const std::vector<Scenario> scenarios = {
      {"light load, loose SLO", 0.3, 1.5, 2.0, false},
      {"heavy load, tight SLO", 1.0, 0.8, 1.5, false},
      {"overload, tight SLO", 1.8, 0.8, 1.5, false},
      {"tight accuracy floors", 0.8, 1.0, 0.5, false},
      {"memory-constrained (40 % of unconstrained plan)", 0.8, 1.0, 2.0, true},
  };
  std::printf("\nPREDICTED weighted SLO attainment (shared plan model, synthetic estimator; not measured),\n"
              "mean over %d instances of 4 tasks x 8 variants x 6 blocks x 3 processors\n", instances);
  std::printf("  %-48s", "scenario");
  for (const auto& [name, _] : policies()) std::printf(" %14.14s", name.c_str());
  std::printf("  ours/best-baseline\n");
  json table = json::array();
  for (const Scenario& sc : scenarios) {
    std::map<std::string, double> att;
    for (int i = 0; i < instances; ++i) {
      SyntheticEstimator e(SyntheticConfig{.seed = 1000 + static_cast<std::uint64_t>(i)});
      SystemState s = make_state(e, sc.load, sc.slo_scale, sc.floor_pp, 1000 + static_cast<std::uint64_t>(i));
      if (sc.memory_constrained) {
        double used = 0;
        for (const auto& tp : optimizer::SparsityAware{}.plan(s, e).tasks) used += tp.predicted_memory_bytes;
        s.memory_budget_bytes = 0.4 * used;
      }
      for (const auto& [name, plan] : policies()) {
        optimizer::Evaluation ev = optimizer::evaluate_plan(s, e, plan(s, e));
        // A plan over the budget cannot be held resident: its attainment is reported as is,
        // with the overrun beside it in the JSON.
        att[name] += ev.weighted_attainment / instances;
        if (!ev.within_budget) att[name + " over budget"] += 1.0 / instances;
      }
    }
    double best_baseline = 0;
    // The best baseline among those whose plans fit the budget in every instance.
    for (const char* b : {"INFaaS-like", "Band-SEL (nominal)", "Fixed"})
      if (att[std::string(b) + " over budget"] == 0) best_baseline = std::max(best_baseline, att[b]);
    std::printf("  %-48s", sc.name.c_str());
    json row = {{"scenario", sc.name}, {"load", sc.load}, {"slo_scale", sc.slo_scale}, {"floor_pp", sc.floor_pp}};
    json by = json::object();
    for (const auto& [name, _] : policies()) {
      // '*': the plan exceeds the memory budget in some instances (it ignores the budget).
      std::printf(" %12.1f%%%c", 100 * att[name], att[name + " over budget"] > 0 ? '*' : ' ');
      by[name] = {{"predicted_weighted_attainment", att[name]}, {"fraction_of_instances_over_budget", att[name + " over budget"]}};
    }
    double ratio = best_baseline > 0 ? att["SparsityAware"] / best_baseline : 0;
    if (best_baseline > 0)
      std::printf("  %.2fx\n", ratio);
    else
      std::printf("  n/a\n");
    row["policies"] = by;
    row["sparsityaware_over_best_baseline"] = ratio;
    table.push_back(row);
  }
  std::printf("  * = that policy's plan exceeds the memory budget in some instances (it does not model one)\n");
  out["predicted_attainment"] = {{"basis", "predicted by the shared plan model (optimizer::evaluate_plan), not measured"},
                                 {"instances", instances},
                                 {"rows", table}};
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << out.dump(2) << "\n";
    std::printf("\nwrote %s\n", json_path.c_str());
  }
  return 0;
}
