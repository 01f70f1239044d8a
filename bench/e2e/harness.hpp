#pragma once
// The e2e harness: builds a scenario's library, estimator and tasks (profiling every block on
// its processors), and runs one policy on it with the scenario's arrivals. Used by
// sparseloom-bench-e2e and the sparseloom CLI.
#include "../machine.hpp"

#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/runtime/metrics_json.hpp"
#include "sparseloom/scenario/scenario.hpp"
#include "sparseloom/stitch/block_library.hpp"
#ifdef SPARSELOOM_E2E_HAS_CPU
#include <unistd.h>

#include "sparseloom/backends/cpu/backend.hpp"
#endif

namespace sparseloom::e2e {

#ifdef SPARSELOOM_E2E_HAS_CPU
// Two CPU processors (core groups), each its own cpu::Backend instance with its own pool, plus
// the reference backend. A processor names its backend in the scenario.
using Library = stitch::BlockLibrary<cpu::Backend, cpu::Backend, reference::Backend>;
constexpr std::size_t kReferenceIndex = 2, kMaxCpu = 2;
#else
using Library = stitch::BlockLibrary<reference::Backend>;
constexpr std::size_t kReferenceIndex = 0, kMaxCpu = 0;
#endif

using bench::cpu_model;

struct Setup {
  scenario::Scenario sc;
  std::vector<std::unique_ptr<zoo::TaskZoo>> zoos;
  std::unique_ptr<Library> lib;
  estimator::Profiled est;
  std::vector<runtime::ProcessorSpec> procs;
  std::vector<runtime::TaskSpec> tasks;
  std::vector<double> worst_ms;  // per task: base variant on its slowest processor (Band's slo_scale base)
  std::vector<std::vector<Tensor>> inputs;
  double profiling_s = 0;
};

inline Slo slo_of(const scenario::ScenarioTask& t, double worst_ms) {
  Slo s;
  s.deadline_ms = t.deadline_ms > 0 ? t.deadline_ms : t.slo_scale * worst_ms;
  s.min_accuracy_pct = t.min_accuracy_pct;
  s.rate_rps = t.rate_rps;
  s.criticality = t.criticality;
  return s;
}

inline Setup build(const std::string& path, bool quick) {
  Setup st;
  st.sc = scenario::load_scenario(path);
  std::vector<const zoo::TaskZoo*> ptrs;
  for (const auto& t : st.sc.tasks) {
    st.zoos.push_back(std::make_unique<zoo::TaskZoo>(zoo::load_task(std::filesystem::path(st.sc.zoo) / t.task)));
    ptrs.push_back(st.zoos.back().get());
  }
  std::vector<stitch::ProcessorBinding> bind;
  std::vector<estimator::ProcessorProfile> pprof;
  std::vector<int> cpu_threads;
  for (const auto& p : st.sc.processors) {
    std::size_t backend = kReferenceIndex;
    if (p.backend == "cpu") {
      check(cpu_threads.size() < kMaxCpu, ErrorCode::unsupported, path + ": processor '" + p.name + "'",
            kMaxCpu ? "at most 2 cpu processors (core groups) per scenario" : "this build has no cpu backend (oneDNN not found)");
      backend = cpu_threads.size();
      cpu_threads.push_back(p.threads);
    } else {
      check(p.backend == "reference", ErrorCode::unsupported, path + ": processor '" + p.name + "'",
            "backend '" + p.backend + "' is not wired into sparseloom-bench-e2e yet (use cpu or reference)");
    }
    bind.push_back({p.name, backend, {p.threads}});
    pprof.push_back({p.name, p.kind, p.backend, cpu_model(), p.threads});
    (void)kMaxCpu;
    runtime::ProcessorSpec ps;
    ps.name = p.name;
    ps.kind = p.kind == "gpu" ? runtime::ProcessorKind::gpu : p.kind == "npu" ? runtime::ProcessorKind::npu : runtime::ProcessorKind::cpu;
    st.procs.push_back(ps);
  }
  // Stitch repairs in the engine use 128 calibration images: the per-channel statistics are
  // stable by then, and a re-plan's new stitch is ready sooner.
#ifdef SPARSELOOM_E2E_HAS_CPU
  cpu_threads.resize(kMaxCpu, 1);
  // Core groups: on a machine with enough cores, processor i gets its own cores.
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  auto cores = [&](int first, int n) {
    std::vector<int> c;
    for (int i = 0; i < n && first + i < hw; ++i) c.push_back(first + i);
    return static_cast<int>(c.size()) == n ? c : std::vector<int>{};
  };
  std::tuple<cpu::Backend, cpu::Backend, reference::Backend> backends{
      cpu::Backend(cpu_threads[0], cores(0, cpu_threads[0])), cpu::Backend(cpu_threads[1], cores(cpu_threads[0], cpu_threads[1])),
      reference::Backend{}};
  st.lib = std::make_unique<Library>(ptrs, std::move(backends), bind, 128);
#else
  st.lib = std::make_unique<Library>(ptrs, std::tuple<reference::Backend>{}, bind, 128);
#endif
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<estimator::Profiled::Task> et;
  for (std::size_t t = 0; t < st.zoos.size(); ++t) {
    estimator::ProfileOptions po;
    po.reps = quick ? 5 : 9;
    po.budget_ms_per_block = quick ? 30 : 60;
    auto prof = estimator::profile_task(*st.lib, static_cast<TaskIndex>(t), po);
    auto fit = estimator::fit_accuracy(st.zoos[t]->manifest, true, 0.10);
    double worst = 0;
    const int base = st.zoos[t]->base();
    for (std::size_t p = 0; p < st.procs.size(); ++p) {
      double sum = 0;
      for (const auto& b : prof.block) sum += b[base][p].median_ms;
      worst = std::max(worst, sum);
    }
    st.worst_ms.push_back(worst);
    et.push_back({st.zoos[t]->manifest.task, std::move(fit.model), std::move(prof)});
  }
  st.profiling_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.est = estimator::Profiled(std::move(et), pprof);
  for (std::size_t t = 0; t < st.sc.tasks.size(); ++t) {
    st.tasks.push_back({st.sc.tasks[t].task, slo_of(st.sc.tasks[t], st.worst_ms[t])});
    std::vector<Tensor> in;
    for (std::int64_t i = 0; i < std::min<std::int64_t>(32, st.zoos[t]->test_x.dim(0)); ++i)
      in.push_back(st.zoos[t]->input(st.zoos[t]->test_x, i));
    st.inputs.push_back(std::move(in));
  }
  return st;
}

struct Row {
  std::string policy;
  json::Json metrics;
  double violation = 0, served = 0, goodput = 0, p99 = 0, peak = 0, decision = 0;
};

template <class Policy>
Row run_policy(Setup& st, const std::string& name, Policy policy, double duration_s) {
  // Each policy starts from an empty library: memory figures are its own.
  for (int t = 0; t < st.lib->num_tasks(); ++t)
    for (int b = 0; b < st.lib->num_blocks(t); ++b)
      for (int v = 0; v < st.lib->num_variants(t); ++v)
        for (int p = 0; p < st.lib->num_processors(); ++p) st.lib->unload(t, b, v, p);
  runtime::EngineOptions eo;
  eo.memory_budget_bytes = static_cast<std::size_t>(st.sc.memory_budget_bytes);
  // The scenario's rates are known and its SLO changes re-plan explicitly. Rate- and
  // slow-down-triggered re-planning misfire here: the engine starts seconds before load does
  // (stitch repairs), and two processors sharing two cores measure contention as a slow-down
  // (docs/status.md). Every policy gets the same setting.
  eo.rate_change_ratio = 1e9;
  eo.slowdown_ratio = 1e9;
  runtime::Engine<Library, estimator::Profiled, Policy> eng(*st.lib, st.est, std::move(policy), st.procs, st.tasks, eo);
  // Stitch repairs of the adopted plan are computed before load arrives (stitch time).
  for (std::size_t t = 0; t < st.tasks.size(); ++t) st.lib->prepare(static_cast<TaskIndex>(t), eng.plan().tasks[t].variant);
  std::vector<Slo> slos;
  for (const auto& t : st.tasks) slos.push_back(t.slo);
  auto arrivals = runtime::poisson_arrivals(slos, duration_s * 1000.0, st.sc.seed);
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& c : st.sc.changes) {
      while (!stop && std::chrono::steady_clock::now() - start < std::chrono::duration<double>(c.at_s))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (stop) return;
      Slo s = st.tasks[c.task].slo;
      auto tc = st.sc.tasks[c.task];
      if (c.min_accuracy_pct) s.min_accuracy_pct = *c.min_accuracy_pct;
      if (c.rate_rps) s.rate_rps = *c.rate_rps;
      if (c.slo_scale) { tc.slo_scale = *c.slo_scale; s.deadline_ms = slo_of(tc, st.worst_ms[c.task]).deadline_ms; }
      eng.set_slo(static_cast<TaskIndex>(c.task), s);
    }
  });
  std::vector<std::size_t> next(st.tasks.size(), 0);
  const auto load_start = std::chrono::steady_clock::now();
  runtime::replay(arrivals, [&](TaskIndex t) {
    auto& in = st.inputs[static_cast<std::size_t>(t)];
    return eng.submit(t, {in[next[t]++ % in.size()]});
  });
  stop = true;
  changer.join();
  eng.drain(std::chrono::seconds(60));
  // Rates over the load itself (the engine's wall clock also covers start-up and stitch-time repair).
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const auto m = eng.metrics();
  Row r;
  r.policy = name;
  r.metrics = runtime::to_json(m);
  r.violation = m.overall.slo_violation_rate;
  const auto& o = m.overall;
  r.served = static_cast<double>(o.count(runtime::RequestState::on_time) + o.count(runtime::RequestState::late) +
                                 o.count(runtime::RequestState::below_accuracy)) / load_s;
  r.goodput = static_cast<double>(o.count(runtime::RequestState::on_time)) / load_s;
  r.p99 = m.overall.p99_ms;
  r.peak = static_cast<double>(m.peak_resident_bytes);
  r.decision = m.decision_ms_mean;
  r.metrics["policy"] = name;
  r.metrics["slo_violation_rate"] = r.violation;
  r.metrics["load_seconds"] = load_s;
  r.metrics["served_rps"] = r.served;
  r.metrics["goodput_rps"] = r.goodput;
  r.metrics["p99_ms"] = r.p99;
  r.metrics["peak_memory_bytes"] = m.peak_resident_bytes;
  r.metrics["requests_issued"] = m.overall.issued;
  r.metrics["requests_accounted"] = m.overall.accounted;
  r.metrics["decision_ms"] = r.decision;
  json::Json plan;
  for (const auto& tp : eng.plan().tasks)
    plan.push_back({{"stitch", tp.variant.choice}, {"placement", tp.placement.processor}, {"accuracy_pct", tp.predicted_accuracy_pct},
                    {"latency_ms", tp.predicted_latency_ms}, {"reason", tp.reason}});
  r.metrics["final_plan"] = plan;
  return r;
}

}  // namespace sparseloom::e2e
