// Soak mode (issue 14): long mixed load with injected faults on the synthetic test backend,
// checking the engine's invariants throughout, not only at the end:
//   - every request ends in exactly one recorded state (issued == accounted + pending; per
//     task the end-state counts add up to accounted; after the drain issued == accounted);
//   - the memory budget holds (peak resident bytes <= budget, sampled and as the engine saw it);
//   - every wait is bounded (the drain finishes; no request stays pending past a bound).
// Part 1 runs the discrete-event engine over simulated time (default one hour); part 2 the
// threaded engine in real time (default two minutes) with concurrent callers, cancels and
// SLO/processor changes. Faults cycle: 10x slow-down, 10x flood, half the requests cancelled,
// a block that fails to run, one that fails to compile, a processor that disappears.
// Writes bench/results/soak.json. A benchmark, not a test: exits 1 if any invariant broke.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../machine.hpp"
#include "sparseloom/runtime/runtime.hpp"
#include "sparseloom/runtime/synthetic.hpp"

namespace rt = sparseloom::runtime;
namespace syn = sparseloom::runtime::synthetic;
using sparseloom::Slo;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using SimEngine = rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, rt::LoadAllPreloader, rt::DiscreteEvent>;
using RealEngine = rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer>;

// Three tasks of three blocks, two variants, three processors; blocks of 1 MiB under a
// budget of 12 blocks, fewer than the 3 x 3 x (processors used) a free plan would keep, so
// blocks are evicted and reloaded all along.
syn::Zoo soak_zoo(double scale) {
  syn::Zoo z;
  z.blocks = 3;
  z.task_block_ms = {2.0 * scale, 1.0 * scale, 0.5 * scale};
  z.variant_speed = {1.0, 0.5};
  z.variant_accuracy = {92.0, 86.0};
  z.processor_factor = {1.0, 1.5, 2.5};
  return z;
}

std::vector<rt::TaskSpec> soak_tasks(double deadline_ms, double rate) {
  std::vector<rt::TaskSpec> ts;
  for (int i = 0; i < 3; ++i) {
    Slo s;
    s.deadline_ms = deadline_ms * (1 + i);
    s.min_accuracy_pct = 80;
    s.rate_rps = rate;
    s.criticality = 1 + i;
    ts.push_back({"t" + std::to_string(i), s});
  }
  return ts;
}

std::vector<rt::ProcessorSpec> soak_processors() {
  return {{"cpu", rt::ProcessorKind::cpu, 1, 256}, {"gpu", rt::ProcessorKind::gpu, 1, 256}, {"npu", rt::ProcessorKind::npu, 1, 256}};
}

// Invariant bookkeeping shared by both parts.
struct Checker {
  std::size_t budget = 0;
  std::uint64_t checks = 0, violations = 0;
  std::size_t peak_bytes = 0;
  std::vector<std::string> messages;
  void expect(bool ok, const std::string& what) {
    ++checks;
    if (!ok) {
      ++violations;
      if (messages.size() < 20) messages.push_back(what);
      std::cerr << "INVARIANT BROKEN: " << what << "\n";
    }
  }
  // issued == accounted + pending (exact when nothing runs concurrently), the per-task sums,
  // and the budget.
  void metrics(const rt::EngineMetrics& m, std::size_t pending, bool exact, const std::string& when) {
    std::uint64_t issued = 0, accounted = 0;
    for (const auto& t : m.tasks) {
      std::uint64_t sum = 0;
      for (auto s : rt::kEndStates) sum += t.count(s);
      expect(sum == t.accounted, when + ": " + t.name + " end states do not add up to accounted");
      issued += t.issued;
      accounted += t.accounted;
    }
    expect(m.overall.issued == issued && m.overall.accounted == accounted, when + ": overall != sum of tasks");
    if (exact)
      expect(m.overall.issued == m.overall.accounted + pending,
             when + ": issued " + std::to_string(m.overall.issued) + " != accounted " + std::to_string(m.overall.accounted) +
                 " + pending " + std::to_string(pending));
    else
      expect(m.overall.accounted <= m.overall.issued, when + ": more accounted than issued");
    peak_bytes = std::max(peak_bytes, m.peak_resident_bytes);
    expect(budget == 0 || (m.peak_resident_bytes <= budget && !m.budget_exceeded), when + ": memory budget exceeded");
  }
};

json states_json(const rt::TaskMetrics& t) {
  json j;
  for (auto s : rt::kEndStates) j[std::string(rt::to_string(s))] = t.count(s);
  return j;
}

json delta_states(const rt::TaskMetrics& a, const rt::TaskMetrics& b) {
  json j;
  for (auto s : rt::kEndStates) j[std::string(rt::to_string(s))] = b.count(s) - a.count(s);
  return j;
}

// What the current plan runs block b of task t on: {variant, processor}; {0, 0} without a plan.
template <class Eng>
std::pair<sparseloom::VariantIndex, sparseloom::ProcessorIndex> used(const Eng& eng, int t, int b) {
  const auto plan = eng.plan();
  const auto& tp = plan.tasks.at(static_cast<std::size_t>(t));
  if (tp.placement.processor.size() <= static_cast<std::size_t>(b)) return {0, 0};
  return {tp.variant.choice[static_cast<std::size_t>(b)], tp.placement.processor[static_cast<std::size_t>(b)]};
}

const char* kProcNames[] = {"cpu", "gpu", "npu"};

bool has_decision_after(const rt::EngineMetrics& m, double t_ms, const std::string& needle) {
  for (const auto& d : m.decisions)
    if (d.t_ms >= t_ms && d.reason.find(needle) != std::string::npos) return true;
  return false;
}

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// --- part 1: simulated time -------------------------------------------------------------
json soak_sim(double sim_s, std::uint64_t seed, Checker& ck) {
  const auto wall0 = std::chrono::steady_clock::now();
  const syn::Zoo zoo = soak_zoo(1.0);
  syn::Runner runner(zoo);
  syn::Estimator est(zoo);
  auto ts = soak_tasks(40, 60);
  rt::EngineOptions o;
  o.memory_budget_bytes = 12 * zoo.block_bytes;
  ck.budget = o.memory_budget_bytes;
  SimEngine eng(runner, est, syn::GreedyOptimizer{}, soak_processors(), ts, o);
  std::vector<Slo> slos;
  for (const auto& t : ts) slos.push_back(t.slo);

  json faults = json::array();
  const double seg_ms = 60'000;  // one simulated minute per segment; a fault every few
  const int segments = std::max(1, static_cast<int>(sim_s * 1000 / seg_ms));
  std::mt19937_64 rng(seed);
  std::size_t max_pending = 0;
  for (int k = 0; k < segments; ++k) {
    const double t0 = eng.now_ms();
    const auto before = eng.metrics();
    json fault;
    // The one-off faults take their segment's place in the cycle.
    const bool one_off = k == segments / 3 || k == segments / 2 || k == 3 * segments / 4;
    const int phase = one_off ? -1 : k % 8;
    double scale = 1.0;
    std::vector<rt::RequestHandle> cancellable;
    std::vector<bool> cancel_ok;
    sparseloom::ProcessorIndex slowed = 0;
    if (phase == 1) {
      slowed = used(eng, 0, 0).second;
      runner.slow_down(slowed, 10);
      fault = {{"fault", std::string("processor ") + kProcNames[slowed] + " (running t0) slowed down 10x for a minute"}};
    } else if (phase == 3) {
      scale = 10;
      fault = {{"fault", "flood at 10x the planned rate for a minute"}};
    } else if (phase == 5) {
      fault = {{"fault", "a caller cancels half of 2000 extra requests"}};
    } else if (k == segments / 3) {
      const auto [v, p] = used(eng, 0, 1);
      runner.fail_run(0, 1, v, p);
      fault = {{"fault", "block 1 of t0 (the planned variant " + std::to_string(v) + ") fails to run on " + kProcNames[p] + ", from now on"}};
    } else if (k == segments / 2) {
      // Unloaded first, so the engine's next use must compile it again.
      const auto [v, p] = used(eng, 1, 2);
      runner.fail_compile(1, 2, v, p);
      runner.unload(1, 2, v, p);
      fault = {{"fault", "block 2 of t1 (the planned variant " + std::to_string(v) + ") fails to compile on " + kProcNames[p] + ", from now on"}};
    } else if (k == 3 * segments / 4) {
      const auto p = used(eng, 2, 0).second;
      runner.disappear(p);
      fault = {{"fault", std::string("processor ") + kProcNames[p] + " (running t2) disappears, for good"}};
    }
    eng.schedule(rt::poisson_arrivals(slos, seg_ms, rng(), scale));
    if (phase == 5) {
      // Submitted in bursts through the simulated minute; half cancelled at once.
      for (int burst = 0; burst < 20; ++burst) {
        eng.run_until(t0 + burst * seg_ms / 20);
        for (int i = 0; i < 100; ++i) cancellable.push_back(eng.submit(i % 3));
        cancel_ok.resize(cancellable.size(), false);
        for (std::size_t i = cancellable.size() - 100; i < cancellable.size(); i += 2) cancel_ok[i] = cancellable[i].cancel();
      }
    }
    // Check every simulated second.
    for (double t = t0 + 1000; t <= t0 + seg_ms + 1e-6; t += 1000) {
      eng.run_until(t);
      const std::size_t pending = eng.pending();
      max_pending = std::max(max_pending, pending);
      ck.metrics(eng.metrics(), pending, true, "sim t=" + fmt("%.0f s", t / 1000));
      ck.expect(runner.resident_bytes() <= ck.budget, "sim: runner holds more than the budget");
    }
    if (phase == 1) runner.slow_down(slowed, 1);
    if (!fault.is_null()) {
      const auto after = eng.metrics();
      fault["at_s"] = t0 / 1000;
      fault["requests"] = delta_states(before.overall, after.overall);
      fault["replanned"] = has_decision_after(after, t0, "");
      std::string reasons;
      for (const auto& d : after.decisions)
        if (d.t_ms >= t0 && reasons.size() < 200) reasons += (reasons.empty() ? "" : "; ") + d.reason;
      fault["decisions"] = reasons;
      if (phase == 5) {
        // cancel() succeeds on a pending request only (one already rejected stays rejected); a
        // cancelled one ends `cancelled` unless its last block was already running; no request
        // the caller left alone ends `cancelled`.
        int cancelled = 0, accepted = 0;
        for (std::size_t i = 0; i < cancellable.size(); ++i) {
          const bool c = cancellable[i].state() == rt::RequestState::cancelled;
          cancelled += c;
          accepted += cancel_ok[i];
          ck.expect(!c || cancel_ok[i], "sim: a request ended cancelled that was never cancelled");
        }
        fault["cancel_calls"] = 1000;
        fault["cancel_accepted"] = accepted;
        fault["cancelled_of_2000"] = cancelled;
        ck.expect(cancelled <= accepted && cancelled >= accepted * 9 / 10, "sim: accepted cancels did not end cancelled");
      }
      faults.push_back(fault);
    }
  }
  const bool drained = eng.drain();
  ck.expect(drained && eng.pending() == 0, "sim: drain left requests pending");
  const auto m = eng.metrics();
  ck.metrics(m, eng.pending(), true, "sim end");
  ck.expect(m.overall.issued == m.overall.accounted, "sim end: issued != accounted");
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  return {{"simulated_s", eng.now_ms() / 1000},
          {"wall_s", wall_s},
          {"issued", m.overall.issued},
          {"accounted", m.overall.accounted},
          {"states", states_json(m.overall)},
          {"retries", m.overall.retries},
          {"slo_violation_rate", m.overall.slo_violation_rate},
          {"p99_ms", m.overall.p99_ms},
          {"max_latency_ms", m.overall.max_ms},
          {"max_pending", max_pending},
          {"peak_resident_bytes", m.peak_resident_bytes},
          {"memory_budget_bytes", o.memory_budget_bytes},
          {"budget_exceeded", m.budget_exceeded},
          {"replans", m.decisions.size()},
          {"drained", drained},
          {"faults", faults}};
}

// --- part 2: real time ------------------------------------------------------------------
json soak_real(double real_s, std::uint64_t seed, Checker& ck) {
  const syn::Zoo zoo = soak_zoo(0.5);  // blocks of 0.25..1 ms (slept, not spun: shared cores)
  syn::Runner runner(zoo, syn::Wait::sleep);
  syn::Estimator est(zoo);
  auto ts = soak_tasks(40, 40);
  rt::EngineOptions o;
  o.memory_budget_bytes = 12 * zoo.block_bytes;
  ck.budget = o.memory_budget_bytes;
  RealEngine eng(runner, est, syn::GreedyOptimizer{}, soak_processors(), ts, o);

  std::atomic<bool> stop{false};
  std::atomic<double> rate_scale{1.0};
  std::atomic<bool> cancel_half{false};
  std::mutex hs_mu;
  std::vector<rt::RequestHandle> handles;
  std::atomic<std::uint64_t> cancels{0};
  // Callers: one per task, Poisson gaps at the task's rate x rate_scale.
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t)
    callers.emplace_back([&, t] {
      std::mt19937_64 g(seed + static_cast<std::uint64_t>(t));
      std::uint64_t n = 0;
      while (!stop.load()) {
        const double rate = ts[static_cast<std::size_t>(t)].slo.rate_rps * rate_scale.load();
        std::exponential_distribution<double> gap(rate);
        std::this_thread::sleep_for(std::chrono::duration<double>(gap(g)));
        auto h = eng.submit(t);
        if (cancel_half.load() && (n++ % 2 == 0) && h.cancel()) cancels.fetch_add(1);
        std::lock_guard lk(hs_mu);
        handles.push_back(std::move(h));
      }
    });
  // The checker: every 250 ms (other threads run on, so issued vs accounted is a bound here).
  std::size_t max_pending = 0;
  std::thread checker([&] {
    while (!stop.load()) {
      std::this_thread::sleep_for(250ms);
      const std::size_t pending = eng.pending();
      max_pending = std::max(max_pending, pending);
      ck.metrics(eng.metrics(), pending, false, "real t=" + fmt("%.1f s", eng.now_ms() / 1000));
      ck.expect(runner.resident_bytes() <= ck.budget, "real: runner holds more than the budget");
    }
  });

  // The fault schedule: a fault every `slot` seconds, in the order of part 1.
  json faults = json::array();
  const double slot = std::max(2.0, real_s / 12);
  auto run_for = [&](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  auto window = [&](const std::string& name, auto&& start, auto&& finish) {
    const double t0 = eng.now_ms();
    const auto before = eng.metrics();
    start();
    run_for(slot);
    finish();
    run_for(slot / 2);  // let it settle before the next
    const auto after = eng.metrics();
    std::string reasons;
    for (const auto& d : after.decisions)
      if (d.t_ms >= t0 && reasons.size() < 200) reasons += (reasons.empty() ? "" : "; ") + d.reason;
    faults.push_back({{"fault", name}, {"at_s", t0 / 1000}, {"requests", delta_states(before.overall, after.overall)},
                      {"replanned", has_decision_after(after, t0, "")}, {"decisions", reasons}});
  };
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  int round = 0;
  while (elapsed() + 1.5 * slot <= real_s) {
    switch (round++ % 8) {
      case 0: {
        const auto p = used(eng, 0, 0).second;
        window(std::string("processor ") + kProcNames[p] + " (running t0) slowed down 10x", [&] { runner.slow_down(p, 10); },
               [&] { runner.slow_down(p, 1); });
        break;
      }
      case 1: window("flood at 10x the planned rate", [&] { rate_scale.store(10); }, [&] { rate_scale.store(1); }); break;
      case 2: window("callers cancel half their requests", [&] { cancel_half.store(true); }, [&] { cancel_half.store(false); }); break;
      case 3:
        window("SLO changes and a processor toggled out and back, concurrently with load",
               [&] {
                 Slo s = ts[0].slo;
                 s.min_accuracy_pct = 90;
                 eng.set_slo(0, s);
                 eng.set_processor_available(2, false);
               },
               [&] {
                 eng.set_slo(0, ts[0].slo);
                 eng.set_processor_available(2, true);
               });
        break;
      case 4: {
        const auto [v, p] = used(eng, 0, 1);
        window("block 1 of t0 (the planned variant " + std::to_string(v) + ") fails to run on " + kProcNames[p] + ", from now on",
               [&, v = v, p = p] { runner.fail_run(0, 1, v, p); }, [] {});
        break;
      }
      case 5: {
        // Block 2 of t1 cannot compile anywhere but where it runs now; then that processor is
        // taken away for the window, so the re-plan must load it elsewhere and meet the failure.
        // (Unloading a block under the running engine would race with its own runs.)
        const auto p = used(eng, 1, 2).second;
        window(std::string("block 2 of t1 fails to compile (any variant) except on ") + kProcNames[p] + ", which is taken out for the window",
               [&, p = p] {
                 for (sparseloom::ProcessorIndex q = 0; q < 3; ++q)
                   for (sparseloom::VariantIndex v = 0; v < 2; ++v)
                     if (q != p) runner.fail_compile(1, 2, v, q);
                 eng.set_processor_available(p, false);
               },
               [&, p = p] { eng.set_processor_available(p, true); });
        break;
      }
      case 6: {
        const auto p = used(eng, 2, 0).second;
        window(std::string("processor ") + kProcNames[p] + " (running t2) disappears, for good", [&, p = p] { runner.disappear(p); }, [] {});
        break;
      }
      default: run_for(slot); break;
    }
  }
  if (elapsed() < real_s) run_for(real_s - elapsed());
  stop.store(true);
  for (auto& c : callers) c.join();
  checker.join();
  // Bounded waits: the drain finishes, and then every handle is terminal at once.
  const auto d0 = std::chrono::steady_clock::now();
  const bool drained = eng.drain(30s);
  const double drain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
  ck.expect(drained, "real: drain did not finish within 30 s");
  std::uint64_t not_done = 0;
  double max_wait_ms = 0;
  for (const auto& h : handles) {
    if (!h.wait_for(100ms)) ++not_done;
    const auto r = h.record();
    max_wait_ms = std::max(max_wait_ms, r.finish_ms - r.arrival_ms);
  }
  ck.expect(not_done == 0, "real: " + std::to_string(not_done) + " handles not terminal after the drain");
  const auto m = eng.metrics();
  ck.metrics(m, eng.pending(), true, "real end");
  ck.expect(m.overall.issued == m.overall.accounted && m.overall.issued == handles.size(), "real end: issued != accounted");
  return {{"real_s", elapsed()},
          {"issued", m.overall.issued},
          {"accounted", m.overall.accounted},
          {"handles", handles.size()},
          {"states", states_json(m.overall)},
          {"caller_cancels", cancels.load()},
          {"retries", m.overall.retries},
          {"slo_violation_rate", m.overall.slo_violation_rate},
          {"p99_ms", m.overall.p99_ms},
          {"max_wait_ms", max_wait_ms},
          {"max_pending", max_pending},
          {"drain_s", drain_s},
          {"peak_resident_bytes", m.peak_resident_bytes},
          {"memory_budget_bytes", o.memory_budget_bytes},
          {"budget_exceeded", m.budget_exceeded},
          {"replans", m.decisions.size()},
          {"drained", drained},
          {"faults", faults}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sparseloom-bench-soak: hours of mixed load with injected faults, invariants checked throughout"};
  double sim_hours = 1, real_minutes = 2;
  std::uint64_t seed = 14;
  std::string out = "bench/results/soak.json";
  app.add_option("--sim-hours", sim_hours, "simulated time of part 1 (discrete-event engine)");
  app.add_option("--real-minutes", real_minutes, "real time of part 2 (threaded engine)");
  app.add_option("--seed", seed, "arrival seed");
  app.add_option("--out", out, "result file");
  CLI11_PARSE(app, argc, argv);

  Checker sim_ck, real_ck;
  json sim, real;
  if (sim_hours > 0) {
    std::cout << "part 1: " << sim_hours << " h in simulation...\n" << std::flush;
    sim = soak_sim(sim_hours * 3600, seed, sim_ck);
    std::cout << "  " << sim["issued"] << " requests issued, " << sim["accounted"] << " accounted, peak "
              << sim["peak_resident_bytes"] << " of " << sim["memory_budget_bytes"] << " bytes, " << sim_ck.checks
              << " checks, " << sim_ck.violations << " broken (" << fmt("%.1f s wall", sim["wall_s"].get<double>()) << ")\n";
  }
  if (real_minutes > 0) {
    std::cout << "part 2: " << real_minutes << " min in real time...\n" << std::flush;
    real = soak_real(real_minutes * 60, seed, real_ck);
    std::cout << "  " << real["issued"] << " requests issued, " << real["accounted"] << " accounted, peak "
              << real["peak_resident_bytes"] << " of " << real["memory_budget_bytes"] << " bytes, " << real_ck.checks
              << " checks, " << real_ck.violations << " broken, max wait " << fmt("%.1f ms", real["max_wait_ms"].get<double>())
              << "\n";
  }
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%MZ", std::gmtime(&now));
  auto checks = [](const Checker& c) {
    return json{{"checks", c.checks}, {"violations", c.violations}, {"messages", c.messages}};
  };
  json j{{"benchmark", "sparseloom-bench-soak"},
         {"date", date},
         {"machine", sparseloom::bench::cpu_model()},
         {"hardware_threads", std::thread::hardware_concurrency()},
         {"backend", "synthetic test runner (runtime/synthetic.hpp), greedy optimizer, LoadAllPreloader"},
         {"seed", seed},
         {"simulation", sim},
         {"simulation_invariants", checks(sim_ck)},
         {"real", real},
         {"real_invariants", checks(real_ck)}};
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << j.dump(1) << "\n";
  std::cout << "wrote " << out << "\n";
  return sim_ck.violations + real_ck.violations == 0 ? 0 : 1;
}
