#pragma once
// The e2e harness: builds a scenario's library, estimator and tasks (profiling every block on
// its processors), and runs one policy on it with the scenario's arrivals. Used by
// sparseloom-bench-e2e and the sparseloom CLI.
#include "../machine.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/pool_processors.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/preloader/preloader.hpp"
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/runtime/metrics_json.hpp"
#include "sparseloom/scenario/scenario.hpp"
#include "sparseloom/sim/rapl.hpp"
#include "sparseloom/stitch/block_library.hpp"
#include "processors.hpp"
#include <pthread.h>
#include <sched.h>
#ifdef SPARSELOOM_E2E_HAS_CPU
#include <unistd.h>

#include "sparseloom/backends/cpu/format_cache_file.hpp"
#endif

namespace sparseloom::e2e {

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
  std::size_t cached_profiles = 0;  // tasks whose block profile came from the profile cache
  // cpu backend format decisions taken from <profile cache>/cpu-format-decisions.json, and why
  // that file was not used ("" when it was, or when there is no cpu backend / cache).
  std::size_t cached_format_decisions = 0;
  std::string format_cache_ignored;
  double handoff_ms = 0;  // measured thread-to-thread handoff, the transfer cost between processors
  Backends backends;      // what the processors were bound to (the OpenCL device's label, its fault switch)
  std::vector<estimator::PooledGroup> pooled;  // declared-identical processors (estimator/pool_processors.hpp)
};

// Median one-way handoff between two threads through a mutex + condition variable (what a
// request pays when its next block is on another processor's worker), over 200 round trips.
inline double measure_handoff_ms() {
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;  // 0: main's turn, 1: the peer's
  bool stop = false;
  std::thread peer([&] {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return turn == 1 || stop; });
      if (stop) return;
      turn = 0;
      cv.notify_all();
    }
  });
  std::vector<double> rt;
  for (int i = 0; i < 200; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock lk(mu);
    turn = 1;
    cv.notify_all();
    cv.wait(lk, [&] { return turn == 0; });
    rt.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 2);
  }
  {
    std::lock_guard lk(mu);
    stop = true;
  }
  cv.notify_all();
  peer.join();
  std::nth_element(rt.begin(), rt.begin() + 100, rt.end());
  return rt[100];
}

// on_profiled(done, total) is called after each task is profiled (the CLI's progress bar).
// Block profiles are reused from `profile_cache` (empty: off) when their key matches
// (estimator::ProfileCacheKey: model files, processors, profiling options, compiler).
// `pool_identical`: identical processors share one profile (estimator::pool_identical_processors);
// the cache keeps each processor's own.
inline Setup build(const std::string& path, bool quick, const std::function<void(std::size_t, std::size_t)>& on_profiled = {},
                   const std::filesystem::path& profile_cache = "out/profile-cache", bool pool_identical = true) {
  Setup st;
  st.sc = scenario::load_scenario(path);
  std::vector<const zoo::TaskZoo*> ptrs;
  for (const auto& t : st.sc.tasks) {
    st.zoos.push_back(std::make_unique<zoo::TaskZoo>(zoo::load_task(std::filesystem::path(st.sc.zoo) / t.task)));
    ptrs.push_back(st.zoos.back().get());
    // Large variants without block files make every block load read the whole variant.
    const auto& m = st.zoos.back()->manifest;
    for (const auto& v : m.variants)
      if (v.block_files.empty() && v.bytes > (16 << 20)) {
        std::fprintf(stderr, "note: task %s has no block files: a block load reads its whole variant file (%s: %.0f MB); "
                     "`sparseloom split %s` writes them\n", m.task.c_str(), v.file.c_str(), static_cast<double>(v.bytes) / 1e6,
                     m.dir.string().c_str());
        break;
      }
  }
  std::vector<stitch::ProcessorBinding> bind;
  std::vector<estimator::ProcessorProfile> pprof;
  auto& be = st.backends;
  for (const auto& p : st.sc.processors) {
    std::size_t backend = kReferenceIndex;
    const std::string where = path + ": processor '" + p.name + "'";
    if (p.backend == "cpu") {
      check(be.cpu_threads.size() < kMaxCpu, ErrorCode::unsupported, where,
            kMaxCpu ? "at most 2 cpu processors (core groups) per scenario" : "this build has no cpu backend (oneDNN not found)");
      backend = be.cpu_threads.size();
      be.cpu_threads.push_back(p.threads);
    } else if (p.backend == "opencl") {
      check(kHasOpencl, ErrorCode::unsupported, where, "this build has no opencl backend (OpenCL or CL/opencl.hpp not found)");
      check(!be.opencl, ErrorCode::unsupported, where, "at most 1 opencl processor (one device) per scenario");
      backend = kOpenclIndex;
      be.opencl = true;
    }
    bind.push_back({p.name, backend, {p.threads}});
    pprof.push_back({p.name, p.kind, p.backend, cpu_model(), p.threads});
    runtime::ProcessorSpec ps;
    ps.name = p.name;
    ps.kind = p.kind == "gpu" ? runtime::ProcessorKind::gpu : p.kind == "npu" ? runtime::ProcessorKind::npu : runtime::ProcessorKind::cpu;
    ps.memory_budget_bytes = static_cast<std::size_t>(p.memory_budget_bytes);
    st.procs.push_back(ps);
  }
  // Stitch repairs in the engine use 128 calibration images: the per-channel statistics are
  // stable by then, and a re-plan's new stitch is ready sooner.
  st.lib = make_library(ptrs, bind, be, 128);
  // A profile on an OpenCL device is that device's (the cache key names it).
  for (std::size_t i = 0; i < pprof.size(); ++i)
    if (st.sc.processors[i].backend == "opencl") pprof[i].device = be.opencl_device;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<estimator::Profiled::Task> et;
#ifdef SPARSELOOM_E2E_HAS_CPU
  const std::string cpu_revision = ";cpu_rev=" + std::to_string(cpu::Backend::kRevision);
  // Format trials of an earlier run on this machine: compiling the blocks below packs those
  // formats without timing them again (start-up of a large zoo: minutes otherwise).
  const auto format_file = profile_cache.empty() ? std::filesystem::path{} : profile_cache / "cpu-format-decisions.json";
  if (!format_file.empty()) {
    const auto fr = cpu::load_format_cache(format_file);
    st.cached_format_decisions = fr.added;
    if (fr.ignored != "no file") st.format_cache_ignored = fr.ignored;
  }
#else
  const std::string cpu_revision;
#endif
#ifdef SPARSELOOM_E2E_HAS_OPENCL
  const std::string opencl_revision = be.opencl ? ";opencl_rev=" + std::to_string(opencl::Backend::kRevision) : "";
#else
  const std::string opencl_revision;
#endif
  for (std::size_t t = 0; t < st.zoos.size(); ++t) {
    estimator::ProfileOptions po;
    po.reps = quick ? 5 : 9;
    po.budget_ms_per_block = quick ? 30 : 60;
    const auto& man = st.zoos[t]->manifest;
    std::vector<std::filesystem::path> files{man.dir / "manifest.json"};
    for (const auto& v : man.variants) files.push_back(man.dir / v.file);
    const estimator::ProfileCacheKey key{man.task, estimator::hash_files(files), pprof,
                                         "reps=" + std::to_string(po.reps) + ";warmup=" + std::to_string(po.warmup) +
                                             ";budget_ms=" + std::to_string(po.budget_ms_per_block) +
                                             ";profiler=" + std::to_string(estimator::kProfilerRevision) + ";calib=128;hw_threads=" +
                                             std::to_string(std::thread::hardware_concurrency()) + ";cc=" + __VERSION__ + cpu_revision + opencl_revision};
    auto cached = profile_cache.empty() ? std::nullopt : estimator::load_cached(profile_cache, key);
    const auto tp0 = std::chrono::steady_clock::now();
    auto prof = cached ? std::move(*cached) : estimator::profile_task(*st.lib, static_cast<TaskIndex>(t), po);
    if (cached) {
      ++st.cached_profiles;
      // Profiling loads every block on every processor, which also measures its packed size
      // and fills the cpu backend's format decisions. A cached profile skips that: measure
      // them here, or a plan's first use of a block compiles it (format trial included)
      // during the run, inside the memory policy's lock: a 100+ ms stall of every request.
      const auto ti = static_cast<TaskIndex>(t);
      for (BlockIndex b = 0; b < st.lib->num_blocks(ti); ++b)
        for (VariantIndex v = 0; v < st.lib->num_variants(ti); ++v)
          for (ProcessorIndex p = 0; p < st.lib->num_processors(); ++p) st.lib->block_bytes(ti, b, v, p);
    }
    else if (!profile_cache.empty())
      estimator::save_cached(profile_cache, key, prof, std::chrono::duration<double>(std::chrono::steady_clock::now() - tp0).count());
    // A block boundary between two processors is a handoff between their worker threads
    // (the tensors stay in host memory): what the engine pays there, not zero.
    if (t == 0) st.handoff_ms = measure_handoff_ms();
    for (auto& x : prof.transfer_ms) x = std::max(x, st.handoff_ms);
    auto fit = estimator::fit_accuracy(st.zoos[t]->manifest, true, 0.10);
    et.push_back({st.zoos[t]->manifest.task, std::move(fit.model), std::move(prof)});
    if (on_profiled) on_profiled(t + 1, st.zoos.size());
  }
  st.profiling_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#ifdef SPARSELOOM_E2E_HAS_CPU
  if (!format_file.empty()) {
    try {
      cpu::save_format_cache(format_file);
    } catch (const Error& e) {  // a cache: the run goes on without it
      std::fprintf(stderr, "note: format decisions not saved: %s\n", e.what());
    }
  }
#endif
  if (pool_identical) {
    std::vector<estimator::TaskProfile> profs;
    for (auto& t : et) profs.push_back(std::move(t.profile));
    st.pooled = estimator::pool_identical_processors(profs, pprof);
    for (std::size_t t = 0; t < et.size(); ++t) et[t].profile = std::move(profs[t]);
  }
  // Deadlines scale from the base variant on its slowest processor, as the estimator sees it.
  for (std::size_t t = 0; t < et.size(); ++t) st.worst_ms.push_back(estimator::slowest_processor_ms(et[t].profile, st.zoos[t]->base()));
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

  // The summary figures into `metrics`, under the names every results reader uses.
  void put_summary() {
    metrics["slo_violation_rate"] = violation;
    metrics["served_rps"] = served;
    metrics["goodput_rps"] = goodput;
    metrics["p99_ms"] = p99;
    metrics["peak_memory_bytes"] = static_cast<std::uint64_t>(peak);
    metrics["decision_ms"] = decision;
  }
};

// The scenario's arrivals for duration_ms, every task's rate x rate_scale, following the
// scenario's mid-run rate changes when `changes`. Poisson, or "bursty": on/off modulated
// Poisson with the same mean rate (2.5x the rate for a mean 250 ms, 0.25x for a mean 500 ms).
// `tasks` at their unscaled rates. The real and the simulated harness (simulate.hpp) both
// offer this sequence, so a simulation is compared with the requests the real run served.
inline std::vector<runtime::Arrival> scenario_arrivals(const scenario::Scenario& sc, const std::vector<runtime::TaskSpec>& tasks,
                                                       double duration_ms, double rate_scale, bool changes) {
  std::vector<std::vector<runtime::Arrival>> lists;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    // Segments [from, to) at one rate each.
    std::vector<std::pair<double, double>> seg{{0.0, tasks[t].slo.rate_rps}};
    if (changes)
      for (const auto& c : sc.changes)
        if (c.task == t && c.rate_rps && c.at_s * 1000.0 < duration_ms) seg.push_back({c.at_s * 1000.0, *c.rate_rps});
    std::stable_sort(seg.begin(), seg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<runtime::Arrival> out;
    for (std::size_t i = 0; i < seg.size(); ++i) {
      const double from = seg[i].first, to = i + 1 < seg.size() ? seg[i + 1].first : duration_ms;
      const double rate = seg[i].second * rate_scale;
      if (rate <= 0 || to <= from) continue;
      const std::uint64_t seed = sc.seed * 1000003u + t * 7919u + i;
      std::vector<runtime::Arrival> part;
      if (sc.arrival == "bursty") {
        runtime::BurstyArrivals b(2.5 * rate, 0.25 * rate, 250, 500, seed);
        part = runtime::arrivals_for(b, static_cast<TaskIndex>(t), to - from);
      } else {
        runtime::PoissonArrivals p(rate, seed);
        part = runtime::arrivals_for(p, static_cast<TaskIndex>(t), to - from);
      }
      for (auto& a : part) a.time_ms += from;
      out.insert(out.end(), part.begin(), part.end());
    }
    lists.push_back(std::move(out));
  }
  return runtime::merge_arrivals(std::move(lists));
}
inline std::vector<runtime::Arrival> scenario_arrivals(const Setup& st, double duration_ms, double rate_scale, bool changes) {
  return scenario_arrivals(st.sc, st.tasks, duration_ms, rate_scale, changes);
}

// Under a real-time policy (benchmarks run under `chrt -f`) threads of equal priority do not
// preempt each other: with every core running a worker's blocks back to back, the load
// generator waited up to 30 ms for a core (p99 14-19 ms at 3x the latency-scale rates) and
// offered bunched arrivals. While it lives, the calling thread runs one priority above the
// workers (which inherit the process's); under the default policy it changes nothing.
struct GeneratorPriority {
  int policy = SCHED_OTHER;
  sched_param saved{};
  bool raised = false;
  GeneratorPriority() {
    if (pthread_getschedparam(pthread_self(), &policy, &saved) != 0) return;
    if (policy != SCHED_FIFO && policy != SCHED_RR) return;
    sched_param up = saved;
    up.sched_priority = std::min(saved.sched_priority + 1, sched_get_priority_max(policy));
    raised = pthread_setschedparam(pthread_self(), policy, &up) == 0;
  }
  ~GeneratorPriority() {
    if (raised) pthread_setschedparam(pthread_self(), policy, &saved);
  }
  GeneratorPriority(const GeneratorPriority&) = delete;
  GeneratorPriority& operator=(const GeneratorPriority&) = delete;
};

// How late the load generator called submit (ms): p50 / p99 / max over the run's arrivals.
// One task's entry of a result's final_plan (real and simulated runs alike).
inline json::Json task_plan_json(const TaskPlan& tp) {
  std::vector<std::vector<int>> alts;
  for (const auto& pl : tp.alternatives) alts.push_back(pl.processor);
  return {{"stitch", tp.variant.choice},  {"placement", tp.placement.processor}, {"accuracy_pct", tp.predicted_accuracy_pct},
          {"latency_ms", tp.predicted_latency_ms}, {"reason", tp.reason},     {"routing", routing_name(tp.routing)},
          {"alternatives", alts}};
}

inline json::Json lag_summary(std::vector<double> lag) {
  if (lag.empty()) return json::Json();
  const double p50 = runtime::detail::percentile(lag, 0.5), p99 = runtime::detail::percentile(lag, 0.99);
  return {{"p50", p50}, {"p99", p99}, {"max", *std::max_element(lag.begin(), lag.end())}};
}

// The memory policy's own counters where it keeps them (null otherwise): loads, demand loads,
// evictions, load time. Real and simulated runs report the same fields.
template <class Eng>
json::Json preloader_stats_json(Eng& eng) {
  if constexpr (requires { eng.preloader().stats(); }) {
    const auto ps = eng.preloader().stats();
    return {{"loads", ps.loads},         {"demand_loads", ps.demand_loads}, {"ahead_loads", ps.ahead_loads},
            {"evictions", ps.evictions}, {"failed_loads", ps.failed_loads}, {"load_ms", ps.load_ms}};
  } else {
    return json::Json();
  }
}

struct RunOptions {
  double rate_scale = 1;      // every task's rate, planned and offered, x this
  bool slo_changes = true;    // apply the scenario's mid-run SLO changes
  bool fresh_library = true;  // unload every block first, so memory figures are this run's own
  std::optional<std::size_t> memory_budget_bytes;  // overrides the scenario's (the budget sweep)
  bool plan_for_budget = true;                     // EngineOptions::plan_for_budget (ablation)
  // Fault injection: the OpenCL device is lost this many seconds into the load (< 0: never);
  // the engine must move its work to the other processors. Cleared after the run.
  double lose_device_after_s = -1;
};

template <class Policy, class Pre = runtime::LoadAllPreloader>
Row run_policy(Setup& st, const std::string& name, Policy policy, double duration_s, RunOptions ro = {}, Pre pre = Pre{}) {
  const bool inject = ro.lose_device_after_s >= 0;
  check(!inject || st.backends.lose_opencl_device, ErrorCode::invalid_argument, "device-loss injection",
        "the scenario has no opencl processor to lose");
  // Each policy starts from an empty library: memory figures are its own, and it computes its
  // own stitch repairs (cached repairs would hand a later policy the first one's stitch time).
  if (ro.fresh_library) {
    st.lib->clear_repairs();
    runtime::for_each_block_slot(*st.lib, [&](TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) { st.lib->unload(t, b, v, p); });
  }
  runtime::EngineOptions eo;
  eo.memory_budget_bytes = ro.memory_budget_bytes.value_or(static_cast<std::size_t>(st.sc.memory_budget_bytes));
  eo.plan_for_budget = ro.plan_for_budget;
  // Rate- and slow-down-triggered re-planning are on (the engine's detectors calibrate to the
  // shared cores' contention and measure rates only over load). Rates are judged over 1 s, so
  // the bursty process's on/off periods (means 250/500 ms) average out and a sustained rate
  // change still re-plans. Every policy gets the same setting.
  eo.rate_window_ms = 1000;
  auto tasks = st.tasks;
  for (auto& t : tasks) t.slo.rate_rps *= ro.rate_scale;
  runtime::Engine<Library, estimator::Profiled, Policy, Pre> eng(*st.lib, st.est, std::move(policy), st.procs, tasks, eo, std::move(pre));
  // Stitch repairs of the adopted plan are computed before load arrives (stitch time).
  for (std::size_t t = 0; t < st.tasks.size(); ++t) st.lib->prepare(static_cast<TaskIndex>(t), eng.plan().tasks[t].variant);
  auto arrivals = scenario_arrivals(st, duration_s * 1000.0, ro.rate_scale, ro.slo_changes);
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    const auto start = std::chrono::steady_clock::now();
    if (!ro.slo_changes) return;
    auto cur = tasks;  // changes to one task compose
    for (const auto& c : st.sc.changes) {
      while (!stop && std::chrono::steady_clock::now() - start < std::chrono::duration<double>(c.at_s))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (stop) return;
      Slo& s = cur[c.task].slo;
      auto tc = st.sc.tasks[c.task];
      if (c.min_accuracy_pct) s.min_accuracy_pct = *c.min_accuracy_pct;
      if (c.rate_rps) s.rate_rps = *c.rate_rps * ro.rate_scale;
      if (c.slo_scale) { tc.slo_scale = *c.slo_scale; s.deadline_ms = slo_of(tc, st.worst_ms[c.task]).deadline_ms; }
      eng.set_slo(static_cast<TaskIndex>(c.task), s);
    }
  });
  std::thread injector([&] {
    if (!inject) return;
    const auto start = std::chrono::steady_clock::now();
    while (!stop && std::chrono::steady_clock::now() - start < std::chrono::duration<double>(ro.lose_device_after_s))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!stop) st.backends.lose_opencl_device(true);
  });
  // Both helpers stop and are joined however the load ends (an error propagates, not an abort),
  // and an injected device loss is cleared for the next run.
  auto stop_threads = [&] {
    stop = true;
    for (auto* t : {&changer, &injector})
      if (t->joinable()) t->join();
  };
  struct OnExit {
    decltype(stop_threads)& f;
    std::function<void(bool)> revive;
    ~OnExit() {
      f();
      if (revive) revive(false);
    }
  } joiner{stop_threads, inject ? st.backends.lose_opencl_device : nullptr};
  std::vector<std::size_t> next(st.tasks.size(), 0);
  sim::RaplMeter rapl;  // measured joules where powercap exposes RAPL (sim/rapl.hpp)
  rapl.start();
  const auto load_start = std::chrono::steady_clock::now();
  std::vector<double> submit_lag;
  submit_lag.reserve(arrivals.size());
  {
    const GeneratorPriority above_workers;
    runtime::replay(arrivals, [&](TaskIndex t, double late_ms) {
      auto& in = st.inputs[static_cast<std::size_t>(t)];
      submit_lag.push_back(late_ms);
      return eng.submit(t, {in[next[t]++ % in.size()]}, std::nullopt, late_ms);
    });
  }
  stop_threads();
  eng.drain(std::chrono::seconds(60));
  // Rates over the load itself (the engine's wall clock also covers start-up and stitch-time repair).
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const double rapl_j = rapl.stop();
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
  r.metrics["load_seconds"] = load_s;
  {
    const double served = static_cast<double>(o.count(runtime::RequestState::on_time) + o.count(runtime::RequestState::late) +
                                              o.count(runtime::RequestState::below_accuracy));
    r.metrics["rapl"] = rapl.status();
    r.metrics["energy_source"] = rapl_j >= 0 ? json::Json("rapl (package counters: the whole machine)") : json::Json();
    r.metrics["energy_j_per_request_measured"] = rapl_j >= 0 && served > 0 ? json::Json(rapl_j / served) : json::Json();
  }
  // Memory (issue 10): the engine samples on loads, re-plans and every monitor tick; the
  // preloader's own maximum after each of its loads covers background loads between samples.
  std::size_t peak = m.peak_resident_bytes;
  if constexpr (requires { eng.preloader().stats(); }) peak = std::max(peak, eng.preloader().stats().max_resident_bytes);
  r.metrics["preloader"] = preloader_stats_json(eng);
  r.peak = static_cast<double>(peak);
  r.put_summary();
  r.metrics["mean_memory_bytes"] = m.mean_resident_bytes;
  r.metrics["budget_bytes"] = eo.memory_budget_bytes;
  r.metrics["budget_exceeded"] = eo.memory_budget_bytes > 0 && peak > eo.memory_budget_bytes;
  r.metrics["load_stalls"] = m.overall.load_stalls;
  r.metrics["load_stall_ms"] = m.overall.load_stall_ms;
  r.metrics["load_violations"] = m.overall.load_violations;
  r.metrics["submit_lag_ms"] = lag_summary(submit_lag);
  r.metrics["requests_issued"] = m.overall.issued;
  r.metrics["requests_accounted"] = m.overall.accounted;
  r.metrics["alternative_routes"] = m.overall.alternative_routes;
  json::Json plan;
  for (const auto& tp : eng.plan().tasks) plan.push_back(task_plan_json(tp));
  r.metrics["final_plan"] = plan;
  return r;
}

// One policy's runs (--repeat) as one row: violation rate, rates, P99, peak memory and decision
// time are means over the runs; the first run's details (plans, memory timeline, ...) are kept,
// request counts are summed, and `runs` lists each run's figures.
inline Row mean_of_runs(const std::vector<Row>& runs) {
  check(!runs.empty(), ErrorCode::internal, "mean_of_runs", "no runs");
  Row r = runs.front();
  if (runs.size() == 1) return r;
  const double n = static_cast<double>(runs.size());
  r.violation = r.served = r.goodput = r.p99 = r.peak = r.decision = 0;
  std::int64_t issued = 0, accounted = 0;
  json::Json each = json::Json::array();
  for (const auto& x : runs) {
    r.violation += x.violation / n;
    r.served += x.served / n;
    r.goodput += x.goodput / n;
    r.p99 += x.p99 / n;
    r.peak += x.peak / n;
    r.decision += x.decision / n;
    issued += x.metrics["requests_issued"].get<std::int64_t>();
    accounted += x.metrics["requests_accounted"].get<std::int64_t>();
    each.push_back({{"slo_violation_rate", x.violation}, {"served_rps", x.served}, {"goodput_rps", x.goodput}, {"p99_ms", x.p99},
                    {"peak_memory_bytes", x.peak}, {"decision_ms", x.decision}, {"load_stall_ms", x.metrics["load_stall_ms"]},
                    {"final_plan", x.metrics["final_plan"]}});
  }
  r.put_summary();
  r.metrics["requests_issued"] = issued;
  r.metrics["requests_accounted"] = accounted;
  r.metrics["repeats"] = runs.size();
  r.metrics["runs"] = each;
  return r;
}

// The systems of the main table, ours first, then its ablations, then the baselines (from
// index kFirstBaseline), each with its own memory policy: SparseLoom (and its ablations) with
// the Engine's default preloader::Hotness, Band with its one-model-per-task residency, the
// others load every planned block. f(name, make_policy, make_preloader, memory_policy_name)
// per system, in that order; the real run (main.cpp) and the simulation (simulate.hpp) share it.
inline constexpr std::size_t kFirstBaseline = 4;
template <class F>
void for_each_system(F&& f) {
  const auto hotness = [] { return preloader::Hotness{}; };
  const auto load_all = [] { return runtime::LoadAllPreloader{}; };
  const auto one_model = [] { return preloader::OneModelPerTask{}; };
  f("SparseLoom", [] { return optimizer::SparsityAware{}; }, hotness, "Hotness");
  f("SparseLoom-no-stitching", [] { return optimizer::SparsityAwareNoStitching{}; }, hotness, "Hotness");
  f("SparseLoom-sparsity-blind", [] { return optimizer::SparsityAwareBlind{}; }, hotness, "Hotness");
  f("SparseLoom-no-routing", [] { return optimizer::SparsityAwareNoRouting{}; }, hotness, "Hotness");
  f("Fixed", [] { return baselines::Fixed{}; }, load_all, "LoadAll");
  f("Band-SEL", [] { return baselines::BandSEL{}; }, one_model, "OneModelPerTask");
  f("Band-LSF", [] { return baselines::BandLSF{}; }, one_model, "OneModelPerTask");
  f("INFaaS-like", [] { return baselines::Infaas{}; }, load_all, "LoadAll");
}

}  // namespace sparseloom::e2e
