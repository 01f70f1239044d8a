#pragma once
// Dispatch overhead of the Engine (DESIGN, "Definitions"): time per request through the
// Engine (one task, one processor, idle queues) / the same compiled blocks called directly in
// a loop on one thread - 1. Queue handoff latency (enqueue -> a worker takes it) and the
// completion wake-up of the waiting caller are reported beside it, not hidden in it.
// Templated on the runner and estimator, so a real block library plugs in unchanged.
#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

#include "sparseloom/runtime/engine.hpp"

namespace sparseloom::bench {

// The plan is fixed: one stitch on processor 0 (what the benchmark measures is dispatch).
struct FixedPlanOptimizer {
  StitchedVariant variant;
  template <sparseloom::Estimator E>
  Plan plan(const SystemState&, const E& e) const {
    Plan p;
    TaskPlan tp;
    tp.variant = variant;
    tp.placement.processor.assign(variant.choice.size(), 0);
    tp.predicted_latency_ms = e.latency_ms(0, tp.variant, tp.placement);
    p.tasks.push_back(tp);
    return p;
  }
};

struct DispatchResult {
  int requests = 0;
  double direct_ms = 0;        // median per request, blocks called directly
  double engine_e2e_ms = 0;    // median submit -> caller wakes with the result
  double engine_ms = 0;        // median e2e - queue handoff - completion wake-up
  double handoff_ms = 0;       // median enqueue -> worker takes it
  double wakeup_ms = 0;        // median result recorded -> caller's wait returns
  double dispatch_overhead = 0;  // engine_ms / direct_ms - 1
  double e2e_ratio = 0;          // engine_e2e_ms / direct_ms
};

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Alternates rounds of direct calls and engine requests (so drift on a busy machine hits both).
template <runtime::BlockRunner L, sparseloom::Estimator E>
DispatchResult measure_dispatch(L& lib, const E& est, const StitchedVariant& variant, const std::vector<Tensor>& input,
                                int requests, int rounds, int warmup = 50) {
  using namespace runtime;
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  ProcessorSpec proc{"p0", ProcessorKind::cpu, 1, 1024};
  TaskSpec task{"bench", Slo{}};
  task.slo.deadline_ms = 1e9;  // nothing is rejected or late: the benchmark measures dispatch
  EngineOptions opts;
  opts.admission_control = false;
  opts.monitor_period_ms = 1000;
  Engine<L, E, FixedPlanOptimizer> eng(lib, est, FixedPlanOptimizer{variant}, {proc}, {task}, opts);
  const int blocks = static_cast<int>(variant.choice.size());

  auto direct_once = [&] {
    const auto t0 = Clock::now();
    std::vector<Tensor> cur = input;
    for (int b = 0; b < blocks; ++b) cur = lib.run(0, variant, b, 0, std::span<const Tensor>(cur));
    return ms(Clock::now() - t0);
  };
  std::vector<double> direct, e2e, engine, handoff, wakeup;
  for (int i = 0; i < warmup; ++i) {
    direct_once();
    eng.submit(0, input).wait();
  }
  const int per_round = std::max(1, requests / std::max(1, rounds));
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < per_round; ++i) direct.push_back(direct_once());
    for (int i = 0; i < per_round; ++i) {
      const double t0 = eng.now_ms();
      auto h = eng.submit(0, input);
      h.wait();
      const double t1 = eng.now_ms();
      const auto rec = h.record();
      const double wake = t1 - rec.finish_ms;
      e2e.push_back(t1 - t0);
      handoff.push_back(rec.queue_ms);
      wakeup.push_back(wake);
      engine.push_back(t1 - t0 - rec.queue_ms - wake);
    }
  }
  eng.drain(std::chrono::seconds(10));
  DispatchResult out;
  out.requests = static_cast<int>(e2e.size());
  out.direct_ms = median(direct);
  out.engine_e2e_ms = median(e2e);
  out.engine_ms = median(engine);
  out.handoff_ms = median(handoff);
  out.wakeup_ms = median(wakeup);
  out.dispatch_overhead = out.engine_ms / out.direct_ms - 1;
  out.e2e_ratio = out.engine_e2e_ms / out.direct_ms;
  return out;
}

}  // namespace sparseloom::bench
