// sparseloom-bench-e2e SCENARIO.json [--json PATH] [--quick]: runs a multi-task scenario from
// the committed zoo for real on this machine's processors, once per policy (SparsityAware, its
// ablations, and the baselines Fixed, Band SEL/LSF, INFaaS-like) with the same arrivals, and
// prints the paper-style table with ratios measured in the same run.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "harness.hpp"
#include "simulate.hpp"
#include "throughput.hpp"
#include "budget_sweep.hpp"

using namespace sparseloom;
using namespace sparseloom::e2e;

int main(int argc, char** argv) {
#ifdef SPARSELOOM_E2E_HAS_CPU
  // libgomp reads its spin policy when it loads: oneDNN's idle OpenMP threads would otherwise
  // spin on the cores our pools need (bench/kernels does the same).
  if (!std::getenv("GOMP_SPINCOUNT") && !std::getenv("OMP_WAIT_POLICY")) {
    setenv("GOMP_SPINCOUNT", "30000", 1);
    execv("/proc/self/exe", argv);
  }
#endif
  CLI::App app{"SparseLoom end-to-end comparison: SparsityAware vs baselines on one scenario"};
  std::string scenario, json_path;
  bool quick = false;
  app.add_option("scenario", scenario, "scenario JSON file")->required();
  app.add_option("--json", json_path, "write per-policy results as JSON");
  app.add_flag("--quick", quick, "short run (each policy 4 s; no throughput search)");
  bool no_throughput = false;
  ThroughputOptions topt;
  app.add_flag("--no-throughput", no_throughput, "skip the max-sustainable-rate search");
  bool no_profile_cache = false;
  app.add_flag("--no-profile-cache", no_profile_cache, "profile every block again instead of reusing out/profile-cache");
  bool budget_sweep = false;
  std::vector<double> budget_points{0.2, 0.4, 0.6, 0.8, 1.0};
  app.add_flag("--budget-sweep", budget_sweep, "memory policies at budgets of 20..100 % of load-all's peak (issue 10)");
  app.add_option("--budget-points", budget_points, "budget fractions of load-all's peak for --budget-sweep")->check(CLI::Range(0.01, 10.0));
  app.add_option("--probe-seconds", topt.probe_s, "length of one throughput probe run")->check(CLI::Range(0.5, 60.0));
  app.add_option("--search-repeats", topt.searches, "real runs: run the whole throughput search N times per policy and report the median sustained rate")
      ->check(CLI::Range(1, 9));
  app.add_option("--confirm-fails", topt.confirm_fails, "throughput search: run a failing probe again this many times (it fails only if every run fails)")
      ->check(CLI::Range(0, 5));
  std::string sim_profile, fit_out;
  app.add_option("--simulate", sim_profile, "simulate the scenario on a processor profile (sim/profiles/*.json) instead of running it");
  app.add_option("--fit-profile", fit_out, "profile the scenario's processors for real and write a fitted processor profile");
  double warmup_s = 2;
  app.add_option("--warmup-seconds", warmup_s, "an untimed run of the first system before the timed ones (0: none)")->check(CLI::Range(0.0, 60.0));
  int repeats = 1;
  app.add_option("--repeat", repeats, "run every policy N times, interleaved (all policies, then all again); the table and JSON give means, each run under `runs`")
      ->check(CLI::Range(1, 20));
  bool whole_variant_loads = false;
  app.add_flag("--whole-variant-loads", whole_variant_loads, "ablation: block loads read whole variant files even where a task has block files");
  std::vector<std::string> only;
  app.add_option("--systems", only, "run only these systems of the main table (names as printed, comma separated); no comparison with the best baseline then")
      ->delimiter(',');
  bool no_pool = false;
  app.add_flag("--no-pool-processors", no_pool, "ablation: identical processors keep their own (noisy) profiles instead of one pooled profile");
  bool roofline_only = false;
  app.add_flag("--roofline-only", roofline_only, "with --simulate: ignore a fitted profile's measured_blocks (every block from the roofline)");
  double lose_device_after = -1;
  app.add_option("--lose-device-after", lose_device_after,
                 "fault injection: the opencl processor's device is lost this many seconds into each policy's load (main table only)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    if (!sim_profile.empty()) return run_simulation(scenario, sim_profile, json_path, quick, roofline_only, !quick && !no_throughput, topt);
    if (!fit_out.empty()) return fit_profile(scenario, fit_out, quick);
    std::vector<std::string> systems;
    std::string listed;
    for_each_system([&](const std::string& name, auto, auto, const char*) {
      systems.push_back(name);
      listed += (listed.empty() ? "" : ", ") + name;
    });
    for (const auto& o : only)
      check(std::find(systems.begin(), systems.end(), o) != systems.end(), ErrorCode::invalid_argument, "--systems",
            "unknown system '" + o + "' (" + listed + ")");
    const auto selected = [&](const std::string& name) {
      return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
    };
    Setup st = build(scenario, quick, {}, no_profile_cache ? "" : "out/profile-cache", !no_pool);
    if (whole_variant_loads)
      for (auto& z : st.zoos) z->use_block_files = false;
    const double dur = quick ? std::min(4.0, st.sc.duration_s) : st.sc.duration_s;
    if (budget_sweep) return run_budget_sweep(st, quick ? std::min(5.0, st.sc.duration_s) : dur, json_path, budget_points);
    std::printf("scenario %s: %zu tasks, %zu processors, %.0f s per policy; machine %s (%u hardware threads)\n",
                st.sc.name.c_str(), st.tasks.size(), st.procs.size(), dur, cpu_model().c_str(), std::thread::hardware_concurrency());
    std::printf("profiling took %.1f s (%zu of %zu tasks from out/profile-cache, %zu cpu format decisions reused%s%s); "
                "processors share this machine's cores\n",
                st.profiling_s, st.cached_profiles, st.tasks.size(), st.cached_format_decisions,
                st.format_cache_ignored.empty() ? "" : "; format cache ignored: ", st.format_cache_ignored.c_str());
    if (!st.backends.opencl_device.empty()) std::printf("opencl device: %s\n", st.backends.opencl_device.c_str());
    for (const auto& g : st.pooled) std::printf("processors %s\n", estimator::describe(g, st.est.processors()).c_str());
    if (no_pool) std::printf("processors: profiles not pooled (--no-pool-processors)\n");
    for (std::size_t t = 0; t < st.tasks.size(); ++t)
      std::printf("  task %-18s deadline %7.2f ms  floor %5.1f %%  rate %5.1f rps\n", st.tasks[t].name.c_str(),
                  st.tasks[t].slo.deadline_ms, st.tasks[t].slo.min_accuracy_pct, st.tasks[t].slo.rate_rps);
    // Every system of the main table (for_each_system, harness.hpp); the budget sweep
    // (--budget-sweep) compares the memory policies alone.
    std::vector<std::vector<Row>> runs;  // [policy][repeat]
    std::vector<Throughput> tput;
    const bool search = !quick && !no_throughput;
    // An untimed run of the first system first: the process's cold start would otherwise land
    // on whichever policy runs first (session 12: SparseLoom 6.1 % violations in its first
    // run, 0.3 % in its second, every one of them in the first second of load).
    if (warmup_s > 0) {
      bool done = false;
      for_each_system([&](const std::string& name, auto make, auto make_pre, const char*) {
        if (done || !selected(name)) return;
        done = true;
        run_policy(st, name + " (warm-up)", make(), std::min(warmup_s, dur), {}, make_pre());
      });
    }
    for (int rep = 0; rep < repeats; ++rep) {
      std::size_t i = 0;
      for_each_system([&](const std::string& name, auto make, auto make_pre, const char* memory_policy) {
        if (!selected(name)) return;
        if (runs.size() <= i) runs.emplace_back();
        e2e::RunOptions ro;
        ro.lose_device_after_s = lose_device_after;
        runs[i].push_back(run_policy(st, name, make(), dur, ro, make_pre()));
        runs[i++].back().metrics["memory_policy"] = memory_policy;
        if (search && rep == 0) {  // the rate search runs once per policy
          tput.push_back(max_sustainable(st, name, make, topt, make_pre));
          std::printf("  %-26s sustains x%.2f the scenario's rates (%.1f rps) at >= 99 %% attainment", name.c_str(),
                      tput.back().rate_scale, tput.back().offered_rps);
          if (!tput.back().searches.empty()) {
            std::printf(" (median of searches:");
            for (const auto& x : tput.back().searches) std::printf(" x%.2f", x.get<double>());
            std::printf(")");
          }
          std::printf("\n");
          std::fflush(stdout);
        }
      });
    }
    std::vector<Row> rows;
    for (const auto& r : runs) rows.push_back(mean_of_runs(r));
    if (repeats > 1) {
      std::printf("\nSLO violation rate per run (%d runs, interleaved):\n", repeats);
      for (const auto& r : runs) {
        std::printf("  %-26s", r.front().policy.c_str());
        for (const auto& x : r) std::printf(" %6.1f%%", 100 * x.violation);
        std::printf("\n");
      }
    }
    const Row& ours = rows.front();
    std::printf("\n%-26s %10s %10s %10s %9s %12s %16s %10s %14s%s\n", "policy", "SLO viol.", "served/s", "goodput/s", "p99 ms",
                "peak MB", "memory policy", "decide ms", "viol. vs ours", search ? "     tput rps" : "");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      const double ratio = ours.violation > 0 ? r.violation / ours.violation : (r.violation > 0 ? INFINITY : 1.0);
      std::printf("%-26s %9.1f%% %10.2f %10.2f %9.2f %12.3f %16s %10.3f %13.2fx", r.policy.c_str(), 100 * r.violation, r.served,
                  r.goodput, r.p99, r.peak / 1e6, r.metrics["memory_policy"].get<std::string>().c_str(), r.decision, ratio);
      if (search) std::printf(" %12.1f", tput[i].offered_rps);
      std::printf("\n");
    }
    if (!search) std::printf("(throughput at saturation: not searched in this run; drop --quick / --no-throughput)\n");
    // A subset of the systems (--systems) has no best baseline to compare with.
    const bool compare = only.empty();
    double best_baseline = 1e9, best_tput = -1, reduction = 0, tput_ratio = NAN;
    std::string best_name, best_tput_name;
    if (compare) {
      for (std::size_t i = kFirstBaseline; i < rows.size(); ++i) {
        if (rows[i].violation < best_baseline) { best_baseline = rows[i].violation; best_name = rows[i].policy; }
        if (search && tput[i].offered_rps > best_tput) { best_tput = tput[i].offered_rps; best_tput_name = rows[i].policy; }
      }
      reduction = best_baseline > 0 ? 1.0 - ours.violation / best_baseline : 0.0;
      // A relative change from 0 % is undefined: then the difference is given in points.
      const std::string change = best_baseline > 0
          ? (reduction >= 0 ? "-" : "+") + std::to_string(static_cast<int>(std::lround(100 * std::abs(reduction)))) + "%"
          : (ours.violation > 0 ? "+" + std::to_string(100 * ours.violation).substr(0, 4) + " pp" : "equal");
      std::printf("\nSLO violation rate vs the best baseline (%s): %.1f%% -> %.1f%% (%s)\n", best_name.c_str(), 100 * best_baseline,
                  100 * ours.violation, change.c_str());
      tput_ratio = search && best_tput > 0 ? tput[0].offered_rps / best_tput : NAN;
      if (search)
        std::printf("throughput at >= 99 %% attainment vs the best baseline (%s): %.1f -> %.1f rps (%.2fx)\n", best_tput_name.c_str(),
                    best_tput, tput[0].offered_rps, tput_ratio);
    }
    if (!json_path.empty()) {
      json::Json out;
      out["scenario"] = st.sc.name;
      out["machine"] = {{"cpu", cpu_model()}, {"hardware_threads", std::thread::hardware_concurrency()},
                        {"opencl_device", st.backends.opencl_device.empty() ? json::Json() : json::Json(st.backends.opencl_device)},
                        {"note", "processors are core groups of this machine and share its cores"}};
      out["rapl"] = sim::RaplMeter().status();  // "not exposed" where powercap is absent
      out["duration_s"] = dur;
      out["device_loss_injected_after_s"] = lose_device_after >= 0 ? json::Json(lose_device_after) : json::Json();
      out["profiling_seconds"] = st.profiling_s;
      out["profiles_from_cache"] = st.cached_profiles;
      out["format_decisions_from_cache"] = st.cached_format_decisions;
      out["arrival"] = st.sc.arrival;
      out["repeats"] = repeats;
      out["systems"] = compare ? json::Json("all") : json::Json(only);
      {
        json::Json pooled = json::Json::array();
        for (const auto& g : st.pooled) pooled.push_back({{"processors", g.processors}, {"median_ratio", g.median_ratio}, {"pooled", g.pooled}});
        out["pooled_processors"] = no_pool ? json::Json("off (--no-pool-processors)") : pooled;
      }
      out["block_loads"] = whole_variant_loads ? "whole variant files (--whole-variant-loads)" : "block files where a task has them";
      if (search) {
        out["throughput_note"] = "throughput_rps: the scenario's total rate x the highest rate scale sustained at >= 99 % SLO attainment; a probe lasts " +
                                 std::to_string(topt.probe_s) + " s or long enough for >= 500 requests (no mid-run SLO changes)" +
                                 (topt.searches > 1 ? "; the median of " + std::to_string(topt.searches) + " whole searches per policy"
                                                    : std::string());
        out["throughput_ratio_vs_best_baseline"] = compare ? json::Json(tput_ratio) : json::Json();
        out["best_throughput_baseline"] = compare ? json::Json(best_tput_name) : json::Json();
      } else {
        out["throughput_note"] = quick ? "throughput search skipped in --quick (keeps the run under 60 s); served_rps/goodput_rps are at the scenario's rate"
                                       : "throughput search skipped (--no-throughput)";
        out["throughput_ratio_vs_best_baseline"] = nullptr;
      }
      for (std::size_t i = 0; i < rows.size(); ++i) {
        auto m = rows[i].metrics;
        if (search) {
          m["throughput_rps"] = tput[i].offered_rps;
          m["max_rate_scale"] = tput[i].rate_scale;
          m["throughput_served_rps"] = tput[i].served_rps;
          m["throughput_probes"] = tput[i].probes;
          if (!tput[i].searches.empty()) m["throughput_searches"] = tput[i].searches;
        } else {
          m["throughput_rps"] = nullptr;
        }
        out["policies"].push_back(m);
      }
      out["violation_reduction_vs_best_baseline"] = compare ? json::Json(reduction) : json::Json();
      out["best_baseline"] = compare ? json::Json(best_name) : json::Json();
      std::ofstream(json_path) << out.dump(1);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
