#pragma once
// sparseloom-bench-e2e's simulator modes (issue 12, docs/sim.md):
//  --simulate PROFILE.json: the scenario's policies on the same Engine in DiscreteEvent mode,
//    blocks timed by the cost model of a processor profile (sim::SimRunner), planned on the
//    modelled latencies (sim::ModelEstimator); same per-policy fields as a real run plus
//    energy per request and simulation speed.
//  --fit-profile OUT.json: profiles the scenario's processors for real (the harness's build())
//    and fits each one's roofline (overheads, f32/INT8 throughput, sparse speed-up per format
//    and sparsity) to the measured block latencies; memory bandwidth is measured with a copy;
//    and the engine's own overhead (sim/engine_overhead.hpp): dispatch/hand-off times of the
//    real Engine with a no-op runner, the in-engine block-time factor from a short real run of
//    the scenario, and the slow-down of one core group while the other runs.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "harness.hpp"
#include "throughput.hpp"
#include "sparseloom/preloader/preloader.hpp"
#include "sparseloom/sim/estimator.hpp"
#include "sparseloom/sim/measure_overhead.hpp"
#include "sparseloom/sim/profile.hpp"
#include "sparseloom/sim/sim_runner.hpp"

namespace sparseloom::e2e {

struct SimSetup {
  scenario::Scenario sc;
  sim::SocProfile soc;
  std::unique_ptr<sim::SimRunner> runner;
  sim::ModelEstimator est;
  std::vector<runtime::ProcessorSpec> procs;
  std::vector<runtime::TaskSpec> tasks;
  std::vector<double> worst_ms;
  double setup_s = 0;
};

inline runtime::ProcessorKind kind_of(const std::string& k) {
  return k == "gpu" ? runtime::ProcessorKind::gpu : k == "npu" ? runtime::ProcessorKind::npu : runtime::ProcessorKind::cpu;
}

// The simulated SoC: the scenario's processors when the profile has all of them by name (a
// fitted profile of the machine the scenario ran on), else every processor of the profile.
inline SimSetup build_sim(const std::string& scenario_path, const std::string& profile_path, bool roofline_only = false) {
  const auto t0 = std::chrono::steady_clock::now();
  SimSetup st;
  st.sc = scenario::load_scenario(scenario_path);
  st.soc = sim::load_profile(profile_path);
  if (roofline_only) st.soc.measured_block_ms.clear();
  std::vector<std::string> names;
  for (const auto& p : st.sc.processors)
    if (st.soc.index_of(p.name) >= 0) names.push_back(p.name);
  if (names.size() != st.sc.processors.size()) {
    names.clear();
    for (const auto& p : st.soc.processors) names.push_back(p.name);
  }
  // Tasks repeat in scaled scenarios: each zoo task is loaded and modelled once.
  std::map<std::string, std::pair<sim::TaskModel, estimator::AccuracyModel>> cache;
  std::vector<sim::TaskModel> models;
  std::vector<estimator::AccuracyModel> acc;
  for (const auto& t : st.sc.tasks) {
    auto it = cache.find(t.task);
    if (it == cache.end()) {
      const auto z = zoo::load_task(std::filesystem::path(st.sc.zoo) / t.task);
      it = cache.emplace(t.task, std::make_pair(sim::task_model(z), estimator::fit_accuracy(z.manifest, true, 0.10).model)).first;
    }
    models.push_back(it->second.first);
    acc.push_back(it->second.second);
  }
  st.runner = std::make_unique<sim::SimRunner>(std::move(models), st.soc, names);
  st.est = sim::ModelEstimator(*st.runner, std::move(acc));
  for (const auto& n : names) {
    runtime::ProcessorSpec ps;
    ps.name = n;
    ps.kind = kind_of(st.soc.processors[static_cast<std::size_t>(st.soc.index_of(n))].kind);
    for (const auto& sp : st.sc.processors)  // a device budget the scenario gives this processor by name
      if (sp.name == n) ps.memory_budget_bytes = static_cast<std::size_t>(sp.memory_budget_bytes);
    st.procs.push_back(ps);
  }
  for (std::size_t t = 0; t < st.sc.tasks.size(); ++t) {
    // Band's slo_scale base: the base variant on its slowest processor that can run it.
    const int base = st.runner->task(static_cast<TaskIndex>(t)).base;
    double worst = 0;
    for (int p = 0; p < st.runner->num_processors(); ++p) {
      double sum = 0;
      bool ok = true;
      for (int b = 0; b < st.runner->num_blocks(static_cast<TaskIndex>(t)); ++b) {
        const auto& c = st.runner->cost(static_cast<TaskIndex>(t), b, base, p);
        ok = ok && c.supported;
        sum += c.ms;
      }
      if (ok) worst = std::max(worst, sum);
    }
    st.worst_ms.push_back(worst);
    Slo s = slo_of(st.sc.tasks[t], worst);
    s.max_energy_j = st.sc.tasks[t].max_energy_j;
    s.max_power_w = st.sc.tasks[t].max_power_w;
    s.power_window_s = st.sc.tasks[t].power_window_s;
    st.tasks.push_back({st.sc.tasks[t].task, s});
  }
  st.setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

struct SimRow {
  Row row;
  double energy_per_request = 0, energy_incl_idle = 0, sim_s = 0, wall_s = 0;
};

// One policy over duration_s of simulated time; ro.rate_scale scales every task's rate (planned
// and offered) and ro.slo_changes applies the scenario's mid-run changes, as in run_policy.
template <class Policy, class Pre = runtime::LoadAllPreloader>
SimRow simulate_policy(SimSetup& st, const std::string& name, Policy policy, double duration_s, Pre pre = Pre{},
                       const RunOptions& ro = {}) {
  st.runner->reset(st.sc.seed);
  const auto w0 = std::chrono::steady_clock::now();
  runtime::EngineOptions eo;
  eo.memory_budget_bytes = static_cast<std::size_t>(st.sc.memory_budget_bytes);
  // As in the real harness (run_policy): rate- and slow-down-triggered re-planning on, rates
  // judged over 1 s; every policy the same setting.
  eo.rate_window_ms = 1000;
  auto tasks = st.tasks;
  for (auto& t : tasks) t.slo.rate_rps *= ro.rate_scale;
  runtime::Engine<sim::SimRunner, sim::ModelEstimator, Policy, Pre, runtime::DiscreteEvent> eng(
      *st.runner, st.est, std::move(policy), st.procs, tasks, eo, std::move(pre));
  const double start_ms = eng.metrics().wall_ms;
  // The real harness's arrivals (same seed, bursty honoured, rate changes as segments).
  eng.schedule(scenario_arrivals(st.sc, st.tasks, duration_s * 1000.0, ro.rate_scale, ro.slo_changes));
  auto changes = ro.slo_changes ? st.sc.changes : decltype(st.sc.changes){};
  std::stable_sort(changes.begin(), changes.end(), [](const auto& a, const auto& b) { return a.at_s < b.at_s; });
  for (const auto& c : changes) {
    eng.run_until(start_ms + c.at_s * 1000.0);
    Slo s = tasks[c.task].slo;
    auto tc = st.sc.tasks[c.task];
    if (c.min_accuracy_pct) s.min_accuracy_pct = *c.min_accuracy_pct;
    if (c.rate_rps) s.rate_rps = *c.rate_rps * ro.rate_scale;
    if (c.slo_scale) { tc.slo_scale = *c.slo_scale; s.deadline_ms = slo_of(tc, st.worst_ms[c.task]).deadline_ms; }
    eng.set_slo(static_cast<TaskIndex>(c.task), s);
  }
  eng.drain();
  const auto m = eng.metrics();
  SimRow sr;
  sr.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  sr.sim_s = duration_s;
  Row& r = sr.row;
  r.policy = name;
  r.metrics = runtime::to_json(m);
  const auto& o = m.overall;
  auto served_of = [](const runtime::TaskMetrics& tm) {
    return tm.count(runtime::RequestState::on_time) + tm.count(runtime::RequestState::late) +
           tm.count(runtime::RequestState::below_accuracy);
  };
  const double served = static_cast<double>(served_of(o));
  r.violation = o.slo_violation_rate;
  r.served = served / duration_s;
  r.goodput = static_cast<double>(o.count(runtime::RequestState::on_time)) / duration_s;
  r.p99 = o.p99_ms;
  r.peak = static_cast<double>(m.peak_resident_bytes);
  r.decision = m.decision_ms_mean;
  // Energy: the active energy of every block run (and hand-over), per served request; and
  // with each processor's idle power over the simulated time it was not busy.
  const double active = st.runner->energy_j();
  double idle = 0;
  for (std::size_t p = 0; p < m.processors.size(); ++p)
    idle += st.runner->processor(static_cast<ProcessorIndex>(p)).idle_w * std::max(0.0, m.wall_ms - m.processors[p].busy_ms) * 1e-3;
  sr.energy_per_request = served > 0 ? active / served : 0;
  sr.energy_incl_idle = served > 0 ? (active + idle) / served : 0;
  r.metrics["policy"] = name;
  r.put_summary();
  r.metrics["load_seconds"] = duration_s;
  r.metrics["mean_memory_bytes"] = m.mean_resident_bytes;
  r.metrics["budget_bytes"] = eo.memory_budget_bytes;
  r.metrics["budget_exceeded"] = eo.memory_budget_bytes > 0 && m.peak_resident_bytes > eo.memory_budget_bytes;
  r.metrics["load_stalls"] = o.load_stalls;
  r.metrics["load_stall_ms"] = o.load_stall_ms;
  r.metrics["load_violations"] = o.load_violations;
  r.metrics["preloader"] = preloader_stats_json(eng);
  if (r.metrics["preloader"].is_object())  // simulated load time, as the engine charged it (not wall time)
    r.metrics["preloader"]["load_ms"] = st.runner->loads_total().total_ms(eo.sim_load_ms_per_mib);
  r.metrics["throughput_rps"] = nullptr;  // run_simulation's search fills it in
  r.metrics["requests_issued"] = o.issued;
  r.metrics["requests_accounted"] = o.accounted;
  r.metrics["alternative_routes"] = o.alternative_routes;
  r.metrics["energy_j_per_request"] = sr.energy_per_request;
  r.metrics["energy_source"] = "modelled (processor profile)";
  r.metrics["energy_j_per_request_incl_idle"] = sr.energy_incl_idle;
  json::Json per_task = json::Json::array();
  for (std::size_t t = 0; t < m.tasks.size(); ++t) {
    const double n = static_cast<double>(served_of(m.tasks[t]));
    per_task.push_back({{"task", st.tasks[t].name},
                        {"energy_j_per_request", n > 0 ? st.runner->energy_j(static_cast<TaskIndex>(t)) / n : 0.0},
                        {"max_energy_j", st.tasks[t].slo.max_energy_j ? json::Json(*st.tasks[t].slo.max_energy_j) : json::Json()},
                        {"mean_power_w", st.runner->energy_j(static_cast<TaskIndex>(t)) / duration_s},
                        {"max_window_power_w", st.runner->max_window_power_w(static_cast<TaskIndex>(t), st.tasks[t].slo.power_window_s)},
                        {"max_power_w", st.tasks[t].slo.max_power_w ? json::Json(*st.tasks[t].slo.max_power_w) : json::Json()},
                        {"power_window_s", st.tasks[t].slo.power_window_s}});
  }
  r.metrics["energy_per_task"] = per_task;
  r.metrics["engine_overhead_modelled"] = st.soc.engine.has_value();
  r.metrics["engine_overhead_ms_per_request"] = served > 0 ? st.runner->overhead_ms() / served : 0.0;
  r.metrics["simulated_seconds"] = sr.sim_s;
  r.metrics["wall_seconds"] = sr.wall_s;
  r.metrics["speed_x_real_time"] = sr.sim_s / std::max(sr.wall_s, 1e-9);
  json::Json plan;
  for (const auto& tp : eng.plan().tasks) {
    json::Json procs = json::Json::array();
    for (auto p : tp.placement.processor) procs.push_back(st.procs.at(static_cast<std::size_t>(p)).name);
    auto j = task_plan_json(tp);
    j["processors"] = procs;
    plan.push_back(std::move(j));
  }
  r.metrics["final_plan"] = plan;
  return sr;
}

// The whole --simulate run: every policy, a table, and the JSON.
inline int run_simulation(const std::string& scenario_path, const std::string& profile_path, const std::string& json_path,
                          bool quick, bool roofline_only = false, bool search = false, const ThroughputOptions& topt = {}) {
  SimSetup st = build_sim(scenario_path, profile_path, roofline_only);
  const double dur = quick ? std::min(4.0, st.sc.duration_s) : st.sc.duration_s;
  std::printf("scenario %s simulated on %s (%s): %zu tasks, %zu processors, %.0f s simulated per policy\n", st.sc.name.c_str(),
              st.soc.name.c_str(), profile_path.c_str(), st.tasks.size(), st.procs.size(), dur);
  std::printf("setup (zoo load + cost model) took %.2f s; %d block costs from the profile's measured_blocks, the rest from "
              "its roofline\n", st.setup_s, st.runner->measured_blocks_used());
  std::vector<SimRow> rows;
  std::vector<Throughput> tput;
  double total = 0;
  for (const auto& t : st.tasks) total += t.slo.rate_rps;
  // The systems and memory policies of the real run (for_each_system); the same
  // max-sustainable-rate search as the real run, each probe simulated.
  for_each_system([&](const std::string& name, auto make, auto make_pre, const char*) {
    rows.push_back(simulate_policy(st, name, make(), dur, make_pre()));
    if (!search) return;
    tput.push_back(search_max_scale(
        total,
        [&](double scale, double seconds) {
          RunOptions ro;
          ro.rate_scale = scale;
          ro.slo_changes = false;
          const auto r = simulate_policy(st, name, make(), seconds, make_pre(), ro);
          return std::pair{r.row.violation, r.row.served};
        },
        topt));
    auto& m = rows.back().row.metrics;
    m["throughput_rps"] = tput.back().offered_rps;
    m["max_rate_scale"] = tput.back().rate_scale;
    m["throughput_served_rps"] = tput.back().served_rps;
    m["throughput_probes"] = tput.back().probes;
  });
  const Row& ours = rows.front().row;
  std::printf("\n%-26s %10s %10s %10s %9s %10s %10s %12s%s\n", "policy", "SLO viol.", "served/s", "goodput/s", "p99 ms", "mJ/req",
              "decide ms", "x real time", search ? "     tput rps" : "");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& sr = rows[i];
    const auto& r = sr.row;
    std::printf("%-26s %9.1f%% %10.2f %10.2f %9.2f %10.3f %10.3f %12.0f", r.policy.c_str(), 100 * r.violation, r.served,
                r.goodput, r.p99, 1e3 * sr.energy_per_request, r.decision, sr.sim_s / std::max(sr.wall_s, 1e-9));
    if (search) std::printf(" %12.1f", tput[i].offered_rps);
    std::printf("\n");
  }
  double best = 1e9, best_tput = -1;
  std::string best_name, best_tput_name;
  for (std::size_t i = kFirstBaseline; i < rows.size(); ++i) {
    if (rows[i].row.violation < best) best = rows[i].row.violation, best_name = rows[i].row.policy;
    if (search && tput[i].offered_rps > best_tput) best_tput = tput[i].offered_rps, best_tput_name = rows[i].row.policy;
  }
  const double reduction = best > 0 ? 1.0 - ours.violation / best : 0.0;
  std::printf("\nSLO violation rate vs the best baseline (%s): %.1f%% -> %.1f%%\n", best_name.c_str(), 100 * best, 100 * ours.violation);
  const double tput_ratio = search && best_tput > 0 ? tput[0].offered_rps / best_tput : NAN;
  if (search)
    std::printf("throughput at >= 99 %% attainment vs the best baseline (%s): %.1f -> %.1f rps (%.2fx)\n", best_tput_name.c_str(),
                best_tput, tput[0].offered_rps, tput_ratio);
  if (!json_path.empty()) {
    json::Json out;
    out["scenario"] = st.sc.name;
    out["simulated"] = true;
    out["profile"] = {{"name", st.soc.name}, {"file", profile_path}, {"fitted", st.soc.fitted}};
    out["machine"] = {{"cpu", cpu_model()}, {"note", "the machine that ran the simulation (wall_seconds); the SoC is the profile"}};
    out["processors"] = json::Json::array();
    for (const auto& p : st.procs) out["processors"].push_back({{"name", p.name}, {"kind", std::string(runtime::to_string(p.kind))}});
    out["duration_s"] = dur;
    out["arrival"] = st.sc.arrival;
    out["setup_seconds"] = st.setup_s;
    out["measured_block_costs"] = st.runner->measured_blocks_used();
    if (search) {
      out["throughput_note"] = "throughput_rps: the scenario's total rate x the highest rate scale sustained at >= 99 % SLO attainment, "
                               "searched as in a real run, each probe simulated (" + std::to_string(topt.probe_s) +
                               " s or long enough for >= 500 requests, no mid-run SLO changes)";
      out["throughput_ratio_vs_best_baseline"] = std::isfinite(tput_ratio) ? json::Json(tput_ratio) : json::Json(nullptr);
      out["best_throughput_baseline"] = best_tput_name;
    } else {
      out["throughput_note"] = quick ? "throughput search skipped in --quick; served_rps/goodput_rps are at the scenario's rate"
                                     : "throughput search skipped (--no-throughput); served_rps/goodput_rps are at the scenario's rate";
      out["throughput_ratio_vs_best_baseline"] = nullptr;
    }
    for (const auto& r : rows) out["policies"].push_back(r.row.metrics);
    out["violation_reduction_vs_best_baseline"] = reduction;
    out["best_baseline"] = best_name;
    std::ofstream f(json_path);
    check(f.good(), ErrorCode::io, json_path, "cannot open for writing");
    f << out.dump(1);
  }
  return 0;
}

// --- fitting a profile to measured block latencies ------------------------------------------

namespace fit {

// Least squares of y ~ X c with c >= 0, weighted by w (tiny NNLS: every subset of columns).
inline std::vector<double> nnls(const std::vector<std::vector<double>>& X, const std::vector<double>& y, const std::vector<double>& w) {
  const std::size_t k = X.empty() ? 0 : X[0].size();
  std::vector<double> best(k, 0.0);
  double best_err = INFINITY;
  for (unsigned mask = 1; mask < (1u << k); ++mask) {
    std::vector<std::size_t> cols;
    for (std::size_t j = 0; j < k; ++j)
      if (mask & (1u << j)) cols.push_back(j);
    const std::size_t n = cols.size();
    std::vector<double> A(n * n, 0.0), b(n, 0.0);
    for (std::size_t i = 0; i < X.size(); ++i)
      for (std::size_t a = 0; a < n; ++a) {
        b[a] += w[i] * X[i][cols[a]] * y[i];
        for (std::size_t c = 0; c < n; ++c) A[a * n + c] += w[i] * X[i][cols[a]] * X[i][cols[c]];
      }
    // Gaussian elimination with partial pivoting.
    bool ok = true;
    for (std::size_t c = 0; c < n && ok; ++c) {
      std::size_t piv = c;
      for (std::size_t r = c + 1; r < n; ++r)
        if (std::abs(A[r * n + c]) > std::abs(A[piv * n + c])) piv = r;
      if (std::abs(A[piv * n + c]) < 1e-300) { ok = false; break; }
      for (std::size_t j = 0; j < n; ++j) std::swap(A[c * n + j], A[piv * n + j]);
      std::swap(b[c], b[piv]);
      for (std::size_t r = 0; r < n; ++r) {
        if (r == c) continue;
        const double f = A[r * n + c] / A[c * n + c];
        for (std::size_t j = 0; j < n; ++j) A[r * n + j] -= f * A[c * n + j];
        b[r] -= f * b[c];
      }
    }
    if (!ok) continue;
    std::vector<double> coef(k, 0.0);
    bool nonneg = true;
    for (std::size_t a = 0; a < n; ++a) {
      coef[cols[a]] = b[a] / A[a * n + a];
      nonneg = nonneg && coef[cols[a]] >= 0;
    }
    if (!nonneg) continue;
    double err = 0;
    for (std::size_t i = 0; i < X.size(); ++i) {
      double p = 0;
      for (std::size_t j = 0; j < k; ++j) p += X[i][j] * coef[j];
      err += w[i] * (p - y[i]) * (p - y[i]);
    }
    if (err < best_err) best_err = err, best = coef;
  }
  return best;
}

// Single-thread copy bandwidth of this machine (GB/s) over a buffer of n bytes.
inline double copy_bandwidth_gbps(std::size_t n) {
  std::vector<char> a(n, 1), b(n, 0);
  double best = 0;
  for (int i = 0; i < (n < (1u << 24) ? 200 : 5); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n) / s / 1e9);  // read + write
    a[static_cast<std::size_t>(i)] = b[n - 1 - static_cast<std::size_t>(i)];
  }
  return best;
}

}  // namespace fit

// A block library that times every block it runs and notes whether another block ran at the
// same time (the in-engine block-time factor of the fit).
struct TimedLibrary {
  struct Sample {
    TaskIndex t;
    BlockIndex b;
    VariantIndex v;
    ProcessorIndex p;
    double ms;
    bool overlapped;
    double since_ms;  // since the same (t, b, v, p) last ended (-1: first run)
    int nth;          // runs of the same (t, b, v, p) before this one in the current engine
  };
  explicit TimedLibrary(Library* l) : lib(l) {}
  Library* lib;
  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<int> running{0};
  std::atomic<std::uint64_t> starts{0};
  std::array<std::atomic<int>, 8> running_on{};  // per processor (the harness has at most a few)
  const std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();
  std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>, double> last_end;  // ms since epoch
  std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>, int> runs;  // per engine (cleared by the fit)
  int num_tasks() const { return lib->num_tasks(); }
  int num_blocks(TaskIndex t) const { return lib->num_blocks(t); }
  int num_variants(TaskIndex t) const { return lib->num_variants(t); }
  int num_processors() const { return lib->num_processors(); }
  std::vector<Tensor> run(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, std::span<const Tensor> in) {
    const int n = ++running;
    const auto mine = ++starts;
    auto& here = running_on[static_cast<std::size_t>(p) % running_on.size()];
    ++here;
    const auto t0 = std::chrono::steady_clock::now();
    struct Done {
      std::atomic<int>& r;
      std::atomic<int>& h;
      ~Done() { --r, --h; }
    } done{running, here};
    auto out = lib->run(t, s, b, p, in);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool overlapped = n > 1 || starts.load() != mine;
    std::lock_guard lk(mu);
    const auto v = s.choice[static_cast<std::size_t>(b)];
    const double start = std::chrono::duration<double, std::milli>(t0 - epoch).count();
    const auto [le, first] = last_end.try_emplace({t, b, v, p}, -1.0);
    samples.push_back({t, b, v, p, ms, overlapped, first || le->second < 0 ? -1.0 : start - le->second, runs[{t, b, v, p}]++});
    le->second = start + ms;
    return out;
  }
  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const { return lib->is_resident(t, b, v, p); }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) { lib->load(t, b, v, p); }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) { lib->unload(t, b, v, p); }
  std::size_t resident_bytes() const { return lib->resident_bytes(); }
  std::size_t block_bytes(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const { return lib->block_bytes(t, b, v, p); }
};

// The engine overhead of this machine: dispatch / hand-off / between-blocks times of the real
// Engine (no-op runner), the in-engine block-time factor (measured / profiled median, from a
// short real SparseLoom run of the scenario at its rates, seed + 1 so the validation run's
// arrivals are not the fit's), and the slow-down of processor 0 while processor 1 runs.
// engine_ms: the in-engine median of every block the runs executed often enough (>= 5 times).
inline sim::EngineOverhead fit_engine_overhead(Setup& st, bool quick, std::map<sim::MeasuredBlockKey, double>* engine_ms) {
  sim::EngineOverhead eo;
  const auto os = sim::measure_engine_overhead(quick ? 150 : 300);
  eo.dispatch_ms = sim::Quantiles::of(os.dispatch_ms);
  eo.handoff_ms = sim::Quantiles::of(os.handoff_ms);
  eo.continue_ms = sim::Quantiles::of(os.continue_ms);
  // In-engine block times, over the plans of three kinds of policy (stitched sparse f32, one
  // plain variant, INT8 variants: their blocks differ in how much a cold cache costs them), so
  // the fitted scale and fixed costs are not those of one plan's blocks alone.
  TimedLibrary tl(st.lib.get());
  std::vector<double> insitu;
  std::uint64_t seed_offset = 0;
  auto timed_run = [&](auto opt, double seconds) {
    runtime::EngineOptions o;
    o.memory_budget_bytes = static_cast<std::size_t>(st.sc.memory_budget_bytes);
    o.rate_change_ratio = 1e9;
    o.slowdown_ratio = 1e9;
    tl.runs.clear();  // a new engine: new worker threads, and each block's first runs again
    runtime::Engine<TimedLibrary, estimator::Profiled, decltype(opt)> eng(tl, st.est, opt, st.procs, st.tasks, o);
    for (std::size_t t = 0; t < st.tasks.size(); ++t) st.lib->prepare(static_cast<TaskIndex>(t), eng.plan().tasks[t].variant);
    // Arrivals seeded apart from the scenario's own, so no run here replays the validation's.
    const auto seed = st.sc.seed;
    st.sc.seed = seed + 1 + seed_offset++;
    const auto arrivals = scenario_arrivals(st, seconds * 1000.0, 1.0, false);
    st.sc.seed = seed;
    std::vector<std::size_t> next(st.tasks.size(), 0);
    std::vector<bool> idle_at_arrival;
    // As in run_policy: the generator above the workers, its lateness counted.
    const auto handles = [&] {
      const GeneratorPriority above_workers;
      return runtime::replay(arrivals, [&](TaskIndex t, double late_ms) {
        auto& in = st.inputs[static_cast<std::size_t>(t)];
        const auto p0 = eng.plan().tasks[static_cast<std::size_t>(t)].placement.processor.front();
        // Idle: no block running there and no request in flight anywhere (a request between two
        // blocks is not running, yet the newcomer would queue behind its next block).
        idle_at_arrival.push_back(tl.running_on[static_cast<std::size_t>(p0) % tl.running_on.size()].load() == 0 &&
                                  eng.pending() == 0);
        return eng.submit(t, {in[next[t]++ % in.size()]}, std::nullopt, late_ms);
      });
    }();
    eng.drain(std::chrono::seconds(60));
    // In situ: the queue wait of requests that arrived at an idle engine is the worker's
    // wake-up under the machine's real contention (the no-op measurement above
    // runs with shorter pauses and fewer busy threads, and sees less of it).
    for (std::size_t i = 0; i < handles.size(); ++i) {
      const auto rec = handles[i].record();
      // The wait before its first block (queue_ms also counts waits between blocks: yielding to
      // an earlier deadline, which the simulated engine does by itself).
      if (idle_at_arrival[i] && rec.start_ms >= 0 && rec.state != runtime::RequestState::rejected)
        insitu.push_back(std::max(0.0, rec.start_ms - rec.arrival_ms));
    }
  };
  timed_run(optimizer::SparsityAware{}, quick ? 2.0 : 4.0);
  timed_run(baselines::Fixed{}, quick ? 1.0 : 2.0);
  timed_run(baselines::Infaas{}, quick ? 1.0 : 2.0);
  if (insitu.size() >= 50) eo.dispatch_ms = sim::Quantiles::of(insitu);
  // Scale and per-position fixed cost from the per-block medians; the factor is what is left.
  // A block more than kStall x its expected in-engine time was preempted (colder caches do not
  // do that): its excess is a stall, added time; the others give the factor.
  constexpr double kStall = 5;
  // Each block's first two runs in an engine are left out, as the engine leaves them out of its
  // speed windows: cold (first touch of its buffers, a new worker's caches), they are a few per
  // block in the fit's short runs but a negligible share of a long run's, and they inflated the
  // fitted factor's tail (session 15: p90 1.58 / p99 2.43 with them).
  constexpr int kColdRuns = 2;
  std::erase_if(tl.samples, [](const TimedLibrary::Sample& x) { return x.nth < kColdRuns; });
  std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>, std::vector<double>> per_block;  // in-engine ms
  for (const auto& x : tl.samples) per_block[{x.t, x.b, x.v, x.p}].push_back(x.ms);
  {
    std::vector<sim::BlockTimeSample> bs;
    int group = 0;
    for (const auto& [k, v] : per_block) {
      const auto [t, b, vi, p] = k;
      for (double ms : v)
        bs.push_back({sim::block_position(b, st.lib->num_blocks(t)), st.est.task(t).profile.block[b][vi][p].median_ms, ms, group});
      ++group;
    }
    sim::fit_block_time(eo, bs);
  }
  // Blocks of one model differ beyond their position (a transformer's blocks ran 1.3-1.9x their
  // profile in the engine, a CNN's middle blocks 0.8-1.5x): each block the runs executed keeps
  // its own in-engine median, and the simulator uses it where it has one (the fit above serves
  // the rest); the factor is then what varies around a block's own median.
  std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>, double> own;
  for (auto& [k, v] : per_block) {
    if (v.size() < 5) continue;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    own[k] = v[v.size() / 2];
    const auto [t, b, vi, p] = k;
    if (engine_ms)
      (*engine_ms)[{st.zoos[static_cast<std::size_t>(t)]->manifest.task, static_cast<int>(b),
                    st.zoos[static_cast<std::size_t>(t)]->manifest.variants[static_cast<std::size_t>(vi)].name,
                    st.procs[static_cast<std::size_t>(p)].name}] = own[k];
  }
  // Each sample's ratio to its expected in-engine time; then how that ratio depends on the time
  // since the same block last ran (weights still in cache: reuse_factor); the factor is what is
  // left, drawn independently per block. (Successive factors on one processor are correlated,
  // lag-1 rank correlation 0.5-0.65; drawing them through an AR(1) with it moved the simulated
  // P99 up 7-12 %, too high under heavy load, and a factor by the processor's idle time before
  // the request came out at 0.84-1.02: neither is modelled.)
  std::vector<double> ratio(tl.samples.size(), -1.0), expected(tl.samples.size(), 0.0);
  std::vector<std::pair<double, double>> since_ratio;
  for (std::size_t i = 0; i < tl.samples.size(); ++i) {
    const auto& x = tl.samples[i];
    const double prof = st.est.task(x.t).profile.block[x.b][x.v][x.p].median_ms;
    if (prof <= 0) continue;
    const auto it = own.find({x.t, x.b, x.v, x.p});
    expected[i] = it != own.end() ? it->second : sim::engine_block_ms(eo, prof, sim::block_position(x.b, st.lib->num_blocks(x.t)));
    ratio[i] = x.ms / expected[i];
    if (ratio[i] <= kStall && !x.overlapped) since_ratio.push_back({x.since_ms, ratio[i]});
  }
  eo.reuse_factor = sim::fit_reuse_factor(since_ratio);
  std::vector<double> alone, both, all;
  std::vector<std::pair<double, double>> stalled;  // (measured, expected in engine)
  for (std::size_t i = 0; i < tl.samples.size(); ++i) {
    if (ratio[i] < 0) continue;
    const auto& x = tl.samples[i];
    all.push_back(ratio[i]);
    if (ratio[i] > kStall) {
      stalled.push_back({x.ms, expected[i]});
      continue;
    }
    const double f = ratio[i] / sim::reuse_multiplier(eo, x.since_ms);
    (x.overlapped ? both : alone).push_back(f);
  }
  if (alone.size() < 20) alone.insert(alone.end(), both.begin(), both.end());
  eo.block_time_factor = sim::Quantiles::of(alone);
  if (eo.block_time_factor.q[0] <= 0) eo.block_time_factor = sim::Quantiles::constant(1.0);
  std::vector<double> stall;
  for (auto [m, expect] : stalled) stall.push_back(std::max(0.0, m - expect * eo.block_time_factor.median()));
  eo.stall_probability = all.empty() ? 0.0 : static_cast<double>(stalled.size()) / static_cast<double>(all.size());
  eo.stall_ms = sim::Quantiles::of(stall);
  // Core sharing: the largest first block of the scenario's tasks, run on processor 0 alone and
  // while processor 1 runs blocks back to back.
  double slowdown = 1.0;
  std::string shared_note = "one processor: no core sharing";
  if (st.procs.size() >= 2) {
    TaskIndex bt = 0;
    double best = -1;
    for (std::size_t t = 0; t < st.tasks.size(); ++t) {
      const int base = st.zoos[t]->base();
      const double m = st.est.task(static_cast<TaskIndex>(t)).profile.block[0][base][0].median_ms;
      if (m > best) best = m, bt = static_cast<TaskIndex>(t);
    }
    const int base = st.zoos[static_cast<std::size_t>(bt)]->base();
    StitchedVariant sv;
    sv.choice.assign(static_cast<std::size_t>(st.lib->num_blocks(bt)), base);
    st.lib->load(bt, 0, base, 0);
    st.lib->load(bt, 0, base, 1);
    const std::vector<Tensor> in{st.inputs[static_cast<std::size_t>(bt)][0]};
    auto time_runs = [&](int n) {
      std::vector<double> ms;
      for (int i = 0; i < n; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        (void)st.lib->run(bt, sv, 0, 0, in);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      return ms[ms.size() / 2];
    };
    const int n = quick ? 60 : 150;
    const double m_alone = time_runs(n);
    std::atomic<bool> stop{false};
    std::thread other([&] {
      while (!stop) (void)st.lib->run(bt, sv, 0, 1, in);
    });
    const double m_both = time_runs(n);
    stop = true;
    other.join();
    const double m_alone2 = time_runs(n);  // the machine's other load drifts: bracket the shared run
    const double ref = 0.5 * (m_alone + m_alone2);
    slowdown = std::clamp(m_both / ref, 1.0, 100.0);
    shared_note = "block 0 of " + st.tasks[static_cast<std::size_t>(bt)].name + " on " + st.procs[0].name + ": median " +
                  std::to_string(ref) + " ms alone, " + std::to_string(m_both) + " ms while " + st.procs[1].name + " runs";
  }
  eo.shared_core_slowdown = slowdown;
  eo.source = "measured by --fit-profile on " + cpu_model() + ": dispatch_ms " +
              (insitu.size() >= 50 ? "in situ: the queue wait of " + std::to_string(insitu.size()) +
                                         " requests of the real run below that arrived at an idle engine; "
                                   : std::string("from the no-op run; ")) +
              "handoff/continue from " + std::to_string(os.dispatch_ms.size()) +
              " requests through the threaded Engine with a no-op runner (pauses 1-4 ms); "
              "block_scale and block_added_ms fitted (least squares, one slope, an intercept per position in the chain) to "
              "the per-block medians of " + std::to_string(tl.samples.size()) +
              " blocks of real runs of the scenario (the plans of SparsityAware, Fixed and INFaaS-like) against their profiled "
              "medians, and each block's own in-engine median where it ran >= 5 times (measured_blocks[].engine_ms); "
              "reuse_factor: the median of in-engine time / that median or fit by time since the same block last ended; "
              "block_time_factor = in-engine time / (that median or fit x reuse_factor) (" + std::to_string(both.size()) + " blocks overlapped with another processor's block), "
              "excluding " + std::to_string(stalled.size()) + " blocks above 5x the fit, which give stall_probability and "
              "stall_ms (their time above the median factor); shared_core_slowdown: " + shared_note;
  std::printf("  engine overhead: dispatch p50 %.3f p99 %.3f ms, handoff p50 %.3f p99 %.3f ms, continue p50 %.4f ms; block time "
              "%.2f x profiled + %.3f / %.3f / %.3f ms (first / middle / last), then x %.2f within 1 ms of its last run, x %.2f after 20 ms, factor p50 %.2f p90 %.2f p99 %.2f (%zu blocks), "
              "stalls %.1f %% (p50 %.2f ms); shared-core slow-down %.2f\n",
              eo.dispatch_ms.median(), eo.dispatch_ms.q[7], eo.handoff_ms.median(), eo.handoff_ms.q[7], eo.continue_ms.median(),
              eo.block_scale, eo.block_added_ms[0], eo.block_added_ms[1], eo.block_added_ms[2], sim::reuse_multiplier(eo, 0.75),
              sim::reuse_multiplier(eo, 30), eo.block_time_factor.median(), eo.block_time_factor.q[5], eo.block_time_factor.q[7],
              tl.samples.size(),
              100 * eo.stall_probability, eo.stall_ms.median(), slowdown);
  return eo;
}

// Fits every scenario processor's roofline to what the profiler measured on this machine.
inline int fit_profile(const std::string& scenario_path, const std::string& out_path, bool quick) {
  Setup st = build(scenario_path, quick);
  // The zoo's blocks work within the caches: their activations stream at cache-resident copy
  // bandwidth (256 KiB); DRAM bandwidth (64 MiB) is the SoC's, for the record.
  const double bw = fit::copy_bandwidth_gbps(std::size_t{1} << 18), dram_bw = fit::copy_bandwidth_gbps(std::size_t{1} << 26);
  std::vector<std::vector<std::vector<sim::BlockStats>>> stats;
  for (const auto& z : st.zoos) stats.push_back(sim::task_stats(*z));
  sim::SocProfile soc;
  soc.name = "fitted-" + cpu_model();
  soc.fitted = true;
  soc.description = "Fitted by sparseloom-bench-e2e --fit-profile " + scenario_path + " from the profiler's measured block "
                    "latencies on this machine (" + cpu_model() + "); processors are the scenario's.";
  soc.sources = {"measured: per-block median latencies of every zoo variant of the scenario's tasks on each processor "
                 "(estimator::profile_task), fitted by non-negative least squares on relative error",
                 "measured: single-thread memcpy bandwidth, cache-resident 256 KiB " + std::to_string(bw) + " GB/s (the processors' "
                 "bandwidth: zoo blocks fit in the caches), 64 MiB " + std::to_string(dram_bw) + " GB/s (read + write)",
                 "power: nominal (this machine exposes no readable RAPL counter); energy figures of this profile are not measured"};
  soc.soc = {bw, 16e9, 20};
  soc.description += " DRAM copy bandwidth " + std::to_string(dram_bw) + " GB/s.";
  soc.transfer = {0.0, 1000};  // every block run starts and ends with host tensors (profiler.hpp)
  std::printf("\nfit on %s (copy bandwidth %.1f GB/s)\n", cpu_model().c_str(), bw);
  for (std::size_t p = 0; p < st.procs.size(); ++p) {
    sim::ProcessorModel pm;
    pm.name = st.procs[p].name;
    pm.kind = st.sc.processors[p].kind;
    pm.dtypes = {"f32", "int8"};
    pm.all_ops = true;
    pm.memory_bandwidth_gbps = bw;
    pm.idle_w = 1.0;
    pm.active_w = 5.0 * st.sc.processors[p].threads;
    // 1. Dense f32 blocks: t = launch + kernels x per-kernel + flops / throughput.
    std::vector<std::vector<double>> X;
    std::vector<double> y, w;
    auto measured = [&](std::size_t t, int b, int v) { return st.est.task(static_cast<TaskIndex>(t)).profile.block[b][v][p]; };
    for (std::size_t t = 0; t < stats.size(); ++t)
      for (std::size_t b = 0; b < stats[t].size(); ++b)
        for (std::size_t v = 0; v < stats[t][b].size(); ++v) {
          const auto& s = stats[t][b][v];
          const auto m = measured(t, static_cast<int>(b), static_cast<int>(v));
          if (s.int8 || s.format != sim::Format::dense || m.samples == 0 || m.median_ms <= 0) continue;
          X.push_back({1.0, static_cast<double>(s.kernels), (s.flops_dense + s.flops_pruned) * 1e-9});
          y.push_back(m.median_ms);
          w.push_back(1.0 / (m.median_ms * m.median_ms));
        }
    check(!X.empty(), ErrorCode::invalid_argument, scenario_path, "no dense block was measured on processor " + pm.name);
    const auto c = fit::nnls(X, y, w);
    pm.launch_overhead_ms = c[0];
    pm.kernel_overhead_ms = c[1];
    const double ms_per_gflop = std::max(c[2], 1e-9);
    pm.peak_f32 = 1e3 / ms_per_gflop;  // GFLOP/s
    pm.peak_f16 = pm.peak_f32;
    pm.compute_efficiency = 1.0;
    auto ovh = [&](const sim::BlockStats& s) { return pm.launch_overhead_ms + s.kernels * pm.kernel_overhead_ms; };
    // 2. INT8 (dense) throughput and 3. sparse speed-ups: ratio of summed compute parts.
    double i8_flops = 0, i8_ms = 0;
    // format -> sparsity -> per-block implied speed-ups (modelled dense compute / measured compute)
    std::map<sim::Format, std::map<double, std::vector<double>>> sp;
    for (std::size_t t = 0; t < stats.size(); ++t) {
      const auto& man = st.zoos[t]->manifest;
      for (std::size_t b = 0; b < stats[t].size(); ++b)
        for (std::size_t v = 0; v < stats[t][b].size(); ++v) {
          const auto& s = stats[t][b][v];
          const auto m = measured(t, static_cast<int>(b), static_cast<int>(v));
          if (m.samples == 0) continue;
          const double compute = std::max(1e-6, m.median_ms - ovh(s));
          if (s.int8 && s.format == sim::Format::dense) {
            i8_flops += (s.flops_dense + s.flops_pruned) * 1e-9;
            i8_ms += compute;
          } else if (!s.int8 && s.format != sim::Format::dense && s.flops_pruned > 0) {
            const double level = std::round(man.variants[v].sparsity * 100) / 100;
            sp[s.format][level].push_back(s.flops_pruned * 1e-9 * ms_per_gflop /
                                          std::max(1e-6, compute - s.flops_dense * 1e-9 * ms_per_gflop));
          }
        }
    }
    pm.peak_int8 = i8_ms > 0 ? 1e3 * i8_flops / i8_ms : pm.peak_f32;
    for (const auto& [fmt, levels] : sp) {
      sim::SpeedupCurve cv;
      // The median block: the fit is judged on relative error per block, which the summed
      // ratio (dominated by the largest blocks) does not minimise.
      for (auto [level, v] : levels) {
        if (level <= 0 || level >= 1 || v.empty()) continue;
        std::sort(v.begin(), v.end());
        cv.sparsity.push_back(level);
        cv.speedup.push_back(std::clamp(v[v.size() / 2], 0.01, 1e3));
      }
      if (!cv.sparsity.empty()) pm.sparse[fmt] = cv;
    }
    std::printf("  %-6s launch %.4f ms, per kernel %.4f ms, f32 %.1f GFLOP/s, int8 %.1f GOP/s", pm.name.c_str(),
                pm.launch_overhead_ms, pm.kernel_overhead_ms, pm.peak_f32, pm.peak_int8);
    for (const auto& [fmt, cv] : pm.sparse) {
      std::printf("; %s", sim::to_string(fmt));
      for (std::size_t i = 0; i < cv.sparsity.size(); ++i) std::printf(" %.0f%%:%.2fx", 100 * cv.sparsity[i], cv.speedup[i]);
    }
    std::printf("\n");
    soc.processors.push_back(std::move(pm));
  }
  // The fit's own error: modelled vs measured block latency, over every measured block.
  double err = 0;
  int n = 0;
  std::map<std::string, std::pair<double, int>> by_variant;
  for (std::size_t t = 0; t < stats.size(); ++t)
    for (std::size_t b = 0; b < stats[t].size(); ++b)
      for (std::size_t v = 0; v < stats[t][b].size(); ++v)
        for (std::size_t p = 0; p < st.procs.size(); ++p) {
          const auto m = st.est.task(static_cast<TaskIndex>(t)).profile.block[b][v][p];
          if (m.samples == 0 || m.median_ms <= 0) continue;
          const auto c = sim::block_cost(soc, soc.processors[p], stats[t][b][v]);
          err += std::abs(c.ms - m.median_ms) / m.median_ms;
          ++n;
          const sim::MeasuredBlockKey key{st.zoos[t]->manifest.task, static_cast<int>(b), st.zoos[t]->manifest.variants[v].name,
                                          soc.processors[p].name};
          soc.measured_block_ms[key] = m.median_ms;
          const auto ti = static_cast<TaskIndex>(t);
          const auto bi = static_cast<BlockIndex>(b);
          const auto vi = static_cast<VariantIndex>(v);
          const auto pi = static_cast<ProcessorIndex>(p);
          // Known since the profiler loaded the block (BlockLibrary::block_bytes): no compile here.
          soc.measured_resident_bytes[key] = static_cast<double>(st.lib->block_bytes(ti, bi, vi, pi));
          // A cold load as the engine's memory policies do it (read, import, pack), then freed.
          st.lib->unload(ti, bi, vi, pi);
          const auto l0 = std::chrono::steady_clock::now();
          st.lib->load(ti, bi, vi, pi);
          soc.measured_load_ms[key] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - l0).count();
          st.lib->unload(ti, bi, vi, pi);
          auto& bv = by_variant[st.zoos[t]->manifest.variants[v].name];
          bv.first += (c.ms - m.median_ms) / m.median_ms;
          bv.second++;
        }
  const double mape = n ? err / n : 0;
  std::printf("  mean signed relative error per variant:");
  for (const auto& [name, e] : by_variant) std::printf(" %s %+.0f%%", name.c_str(), 100 * e.first / e.second);
  std::printf("\n");
  std::printf("  block latency fit: mean relative error %.1f %% over %d measured blocks\n", 100 * mape, n);
  soc.description += " Mean relative error of the fitted block latencies: " + std::to_string(100 * mape) + " % over " +
                     std::to_string(n) + " blocks; those blocks' measured medians are in measured_blocks, which the simulator "
                     "uses instead of the roofline for them (--roofline-only ignores them).";
  soc.engine = fit_engine_overhead(st, quick, &soc.measured_engine_ms);
  auto j = sim::to_json(soc);
  j["fit_mean_relative_error"] = mape;
  j["fit_blocks"] = n;
  std::filesystem::path out(out_path);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  std::ofstream f(out_path);
  check(f.good(), ErrorCode::io, out_path, "cannot open for writing");
  f << j.dump(1);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}

}  // namespace sparseloom::e2e
