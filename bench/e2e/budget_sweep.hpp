#pragma once
// sparseloom-bench-e2e --budget-sweep (issue 10): the memory policies side by side on one
// scenario. First every policy runs without a budget (its own peak and mean resident bytes;
// load-all's peak is the 100 % reference), then at budgets of 20..100 % of that peak. One JSON
// record per (budget, policy): SLO attainment, peak/mean memory, budget_exceeded, cold-load
// stalls and the SLO violations they caused. A budget below a policy's smallest runnable plan
// is recorded as the engine's start-up error (attainment 0), not a hang.
// SPARSELOOM_SWEEP_REPEATS=N (default 1) runs every (budget, policy) N times, the policies
// interleaved within each repeat (so a burst of load from elsewhere hits all of them), and
// records the run with the median attainment (all N attainments beside it): on a shared
// machine one run's attainment is noisy, its memory figures are not.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "sparseloom/preloader/preloader.hpp"

namespace sparseloom::e2e {

struct SweepPolicy {
  std::string name, optimizer, memory;
  std::function<Row(Setup&, const std::string&, double, RunOptions)> run;
};

inline std::vector<SweepPolicy> sweep_policies() {
  auto make = [](std::string name, std::string opt, std::string mem, auto optimizer_factory, auto preloader_factory) {
    return SweepPolicy{name, opt, mem, [=](Setup& st, const std::string& n, double dur, RunOptions ro) {
                         return run_policy(st, n, optimizer_factory(), dur, ro, preloader_factory());
                       }};
  };
  return {
      make("SparseLoom+Hotness", "SparsityAware", "preloader::Hotness", [] { return optimizer::SparsityAware{}; },
           [] { return preloader::Hotness{}; }),
      make("SparseLoom+OnDemandLru", "SparsityAware", "preloader::OnDemandLru", [] { return optimizer::SparsityAware{}; },
           [] { return preloader::OnDemandLru{}; }),
      make("ClockworkLike", "SparsityAwareNoStitching", "preloader::ClockworkLike",
           [] { return optimizer::SparsityAwareNoStitching{}; }, [] { return preloader::ClockworkLike{}; }),
      make("one-model-per-task", "BandLSF", "preloader::OneModelPerTask", [] { return baselines::BandLSF{}; },
           [] { return preloader::OneModelPerTask{}; }),
      make("load-all", "SparsityAware", "runtime::LoadAllPreloader", [] { return optimizer::SparsityAware{}; },
           [] { return runtime::LoadAllPreloader{}; }),
  };
}

// SPARSELOOM_SWEEP_BLIND=1 adds SparseLoom+Hotness with plans made as if memory were unlimited
// (EngineOptions::plan_for_budget = false; the preloader still holds the budget): how much of
// the attainment under a budget the optimizer's budget rule costs, now that loads are cheap.
inline void add_blind_policy(std::vector<SweepPolicy>& ps) {
  const char* e = std::getenv("SPARSELOOM_SWEEP_BLIND");
  if (!e || std::string(e) != "1") return;
  ps.insert(ps.begin() + 1, SweepPolicy{"SparseLoom+Hotness/blind-plans", "SparsityAware (budget-blind)", "preloader::Hotness",
                                        [](Setup& st, const std::string& n, double dur, RunOptions ro) {
                                          ro.plan_for_budget = false;
                                          return run_policy(st, n, optimizer::SparsityAware{}, dur, ro, preloader::Hotness{});
                                        }});
}

inline json::Json sweep_record(const SweepPolicy& p, const Row& r, double fraction, std::size_t budget) {
  const auto& m = r.metrics;
  return {{"policy", p.name},
          {"optimizer", p.optimizer},
          {"memory_policy", p.memory},
          {"budget_fraction", fraction},
          {"budget_bytes", budget},
          {"slo_attainment", 1.0 - r.violation},
          {"slo_violation_rate", r.violation},
          {"peak_memory_bytes", m["peak_memory_bytes"]},
          {"mean_memory_bytes", m["mean_memory_bytes"]},
          {"budget_exceeded", m["budget_exceeded"]},
          {"load_stalls", m["load_stalls"]},
          {"load_stall_ms", m["load_stall_ms"]},
          {"load_violations", m["load_violations"]},
          {"requests_accounted", m["requests_accounted"]},
          {"p99_ms", r.p99},
          {"replans", m["decisions"]["count"]},
          {"preloader", m.contains("preloader") ? m["preloader"] : json::Json()}};
}

inline int sweep_repeats() {
  const char* e = std::getenv("SPARSELOOM_SWEEP_REPEATS");
  const int n = e ? std::atoi(e) : 1;
  return std::clamp(n, 1, 20);
}

// The record with the median attainment of `runs` (one per repeat), all attainments beside it.
inline json::Json median_record(std::vector<json::Json> runs) {
  std::vector<double> att;
  for (const auto& r : runs) att.push_back(r["slo_attainment"].get<double>());
  std::stable_sort(runs.begin(), runs.end(),
                   [](const json::Json& a, const json::Json& b) { return a["slo_attainment"].get<double>() < b["slo_attainment"].get<double>(); });
  json::Json out = runs[runs.size() / 2];
  out["slo_attainment_runs"] = att;
  return out;
}

inline int run_budget_sweep(Setup& st, double duration_s, const std::string& json_path, const std::vector<double>& fractions) {
  auto policies = sweep_policies();
  add_blind_policy(policies);
  const int repeats = sweep_repeats();
  std::vector<json::Json> records;
  std::printf("\nbudget sweep: %zu policies x (no budget + %zu budgets) x %d repeats, %.1f s each\n", policies.size(),
              fractions.size(), repeats, duration_s);
  // 1. No budget: each policy's own footprint; load-all's peak is the sweep's 100 %.
  std::vector<Row> free_rows(policies.size());
  std::vector<std::vector<json::Json>> free_runs(policies.size());
  std::vector<std::vector<double>> free_peaks(policies.size());
  RunOptions unlimited;
  unlimited.memory_budget_bytes = 0;
  for (int rep = 0; rep < repeats; ++rep)
    for (std::size_t i = 0; i < policies.size(); ++i) {
      Row r = policies[i].run(st, policies[i].name, duration_s, unlimited);
      free_runs[i].push_back(sweep_record(policies[i], r, 0.0, 0));
      free_peaks[i].push_back(r.peak);
      if (rep == 0) free_rows[i] = std::move(r);
    }
  for (std::size_t i = 0; i < policies.size(); ++i) {
    const auto& p = policies[i];
    // Attainment and peak: each the median over the repeats (a re-plan timed differently can
    // pick another plan, so the peak varies a little between runs too).
    records.push_back(median_record(free_runs[i]));
    auto peaks = free_peaks[i];
    std::sort(peaks.begin(), peaks.end());
    free_rows[i].peak = peaks[peaks.size() / 2];
    free_rows[i].metrics = records.back();
    records.back()["peak_memory_bytes"] = free_rows[i].peak;
    records.back()["peak_memory_bytes_runs"] = free_peaks[i];
    free_rows[i].violation = 1.0 - records.back()["slo_attainment"].get<double>();
    std::printf("  %-24s no budget: attainment %5.1f %%  peak %8.3f MB  mean %8.3f MB  stalls %4llu (%.1f ms)\n", p.name.c_str(),
                100 * (1 - free_rows[i].violation), free_rows[i].peak / 1e6,
                free_rows[i].metrics["mean_memory_bytes"].get<double>() / 1e6,
                static_cast<unsigned long long>(free_rows[i].metrics["load_stalls"].get<std::uint64_t>()),
                free_rows[i].metrics["load_stall_ms"].get<double>());
    std::fflush(stdout);
  }
  const double ref = free_rows.back().peak;  // load-all
  // 2. The sweep.
  for (double f : fractions) {
    const auto budget = static_cast<std::size_t>(std::llround(f * ref));
    RunOptions ro;
    ro.memory_budget_bytes = budget;
    std::vector<std::vector<json::Json>> runs(policies.size());
    for (int rep = 0; rep < repeats; ++rep)
      for (std::size_t i = 0; i < policies.size(); ++i) {
        const auto& p = policies[i];
        json::Json rec;
        try {
          const Row r = p.run(st, p.name, duration_s, ro);
          rec = sweep_record(p, r, f, budget);
        } catch (const Error& e) {
          rec = {{"policy", p.name},       {"optimizer", p.optimizer}, {"memory_policy", p.memory}, {"budget_fraction", f},
                 {"budget_bytes", budget}, {"slo_attainment", 0.0},    {"error", e.what()},        {"budget_exceeded", false}};
        }
        runs[i].push_back(std::move(rec));
      }
    for (std::size_t i = 0; i < policies.size(); ++i) {
      const auto& p = policies[i];
      json::Json rec = median_record(runs[i]);
      // Never exceeded in any repeat, not only the median one.
      bool exceeded = false;
      for (const auto& r : runs[i]) exceeded = exceeded || (r.contains("budget_exceeded") && r["budget_exceeded"].get<bool>());
      rec["budget_exceeded"] = exceeded;
      std::printf("  %3.0f %% (%8.3f MB) %-24s attainment %5.1f %%  peak %8.3f MB  stalls %s%s\n", 100 * f, budget / 1e6,
                  p.name.c_str(), 100 * rec["slo_attainment"].get<double>(),
                  rec.contains("peak_memory_bytes") ? rec["peak_memory_bytes"].get<double>() / 1e6 : 0.0,
                  rec.contains("load_stalls") ? std::to_string(rec["load_stalls"].get<std::uint64_t>()).c_str() : "-",
                  rec.contains("error") ? "  (cannot start)" : "");
      std::fflush(stdout);
      records.push_back(std::move(rec));
    }
  }
  // 3. Memory reduction of SparseLoom+Hotness (no budget) against each other policy, and the
  // smallest swept budget at which each keeps its unconstrained attainment (within 1 pp).
  json::Json reduction, needed;
  const double ours = free_rows.front().peak;
  double sum = 0;
  int n = 0;
  std::printf("\npeak memory of SparseLoom+Hotness vs (no budget):\n");
  for (std::size_t i = 1; i < policies.size(); ++i) {
    const double red = free_rows[i].peak > 0 ? 1.0 - ours / free_rows[i].peak : 0.0;
    reduction[policies[i].name] = red;
    std::printf("  %-24s %8.3f MB -> %8.3f MB (%+.1f %%)\n", policies[i].name.c_str(), free_rows[i].peak / 1e6, ours / 1e6, -100 * red);
    // Averaged over the baselines other than load-everything and the ablation (DESIGN.md).
    if (policies[i].name == "ClockworkLike" || policies[i].name == "one-model-per-task") {
      sum += red;
      ++n;
    }
  }
  for (std::size_t i = 0; i < policies.size(); ++i) {
    const double goal = 1 - free_rows[i].violation - 0.01;
    json::Json best = nullptr;
    for (const auto& rec : records)
      if (rec["policy"] == policies[i].name && rec["budget_fraction"].get<double>() > 0 && rec["slo_attainment"].get<double>() >= goal &&
          (best.is_null() || rec["budget_fraction"].get<double>() < best.get<double>()))
        best = rec["budget_fraction"];
    needed[policies[i].name] = best;
  }
  const double mean_red = n ? sum / n : 0.0;
  std::printf("mean peak-memory reduction vs ClockworkLike and one-model-per-task: %.1f %% (target >= 28 %%)\n", 100 * mean_red);
  if (!json_path.empty()) {
    json::Json out;
    out["schema_version"] = 1;
    out["scenario"] = st.sc.name;
    out["machine"] = {{"cpu", cpu_model()}, {"hardware_threads", std::thread::hardware_concurrency()},
                      {"note", "processors are core groups of this machine and share its cores"}};
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    out["date"] = date;
    out["duration_s"] = duration_s;
    out["repeats"] = repeats;
    out["load_all_peak_bytes"] = ref;
    out["budget_fractions"] = fractions;
    out["records"] = records;
    out["peak_reduction_vs"] = reduction;
    out["mean_peak_reduction_vs_baselines"] = mean_red;
    out["mean_over"] = {"ClockworkLike", "one-model-per-task"};
    out["smallest_budget_fraction_keeping_attainment"] = needed;
    std::ofstream(json_path) << out.dump(1);
  }
  return 0;
}

}  // namespace sparseloom::e2e
