#pragma once
// Measures the engine's own per-request cost on this machine (engine_overhead.hpp): the real
// threaded runtime::Engine with a block runner that does nothing, one request at a time with
// a pause between them (so the workers are asleep when it arrives, as at an edge rate). Two
// 2-block tasks: one with both blocks on processor 0, one handed from processor 0 to 1. Per
// request, from the runner's timestamps and the engine's own record:
//   gap      = start of block 1 - end of block 0 (continue_ms on one processor, handoff_ms across);
//   dispatch = latency - gap - both runs (submit, admission, queue, wake-up, completion).
// --fit-profile stores the quantiles of these in the fitted profile.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <span>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/runtime/synthetic.hpp"
#include "sparseloom/sim/engine_overhead.hpp"

namespace sparseloom::sim {

namespace detail {

// Runs nothing; records when each block started and ended (steady clock, ms).
class NoopRunner {
 public:
  struct Run {
    TaskIndex t;
    BlockIndex b;
    ProcessorIndex p;
    double start, end;
  };
  int num_tasks() const { return 2; }
  int num_blocks(TaskIndex) const { return 2; }
  int num_variants(TaskIndex) const { return 1; }
  int num_processors() const { return 2; }
  std::vector<Tensor> run(TaskIndex t, const StitchedVariant&, BlockIndex b, ProcessorIndex p, std::span<const Tensor> in) {
    const double t0 = now();
    std::vector<Tensor> out(in.begin(), in.end());
    const double t1 = now();
    std::lock_guard lk(mu_);
    runs_.push_back({t, b, p, t0, t1});
    return out;
  }
  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return resident_.contains({t, b, v, p});
  }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    resident_.insert({t, b, v, p});
  }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    resident_.erase({t, b, v, p});
  }
  std::size_t resident_bytes() const { return 0; }
  std::size_t block_bytes(TaskIndex, BlockIndex, VariantIndex, ProcessorIndex) const { return 0; }
  std::vector<Run> take() {
    std::lock_guard lk(mu_);
    return std::exchange(runs_, {});
  }
  static double now() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Run> runs_;
  std::set<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>> resident_;
};

// Task 0: both blocks on processor 0; task 1: block 0 on 0, block 1 on 1.
struct FixedPlan {
  template <class E>
  Plan plan(const SystemState&, const E&) {
    Plan out;
    for (int t = 0; t < 2; ++t) {
      TaskPlan tp;
      tp.variant.choice = {0, 0};
      tp.placement.processor = {0, t == 0 ? 0 : 1};
      tp.predicted_latency_ms = 0.002;
      tp.predicted_accuracy_pct = 90;
      tp.meets_slo = true;
      tp.reason = "fixed (overhead measurement)";
      out.tasks.push_back(std::move(tp));
    }
    return out;
  }
};

}  // namespace detail

struct OverheadSamples {
  std::vector<double> dispatch_ms, handoff_ms, continue_ms;
};

// `requests` per task (alternating), a pause of pause_min_ms..pause_max_ms (seeded) between them.
inline OverheadSamples measure_engine_overhead(int requests, double pause_min_ms = 1.0, double pause_max_ms = 4.0,
                                               std::uint64_t seed = 1) {
  check(requests >= 1 && requests <= 100000, ErrorCode::invalid_argument, "sim::measure_engine_overhead",
        "requests must lie in [1, 100000]");
  check(pause_min_ms >= 0 && pause_max_ms >= pause_min_ms, ErrorCode::invalid_argument, "sim::measure_engine_overhead",
        "need 0 <= pause_min_ms <= pause_max_ms");
  runtime::synthetic::Zoo zoo;
  zoo.blocks = 2;
  zoo.task_block_ms = {0.001, 0.001};
  zoo.processor_factor = {1.0, 1.0};
  zoo.block_bytes = 0;
  runtime::synthetic::Estimator est(zoo);
  detail::NoopRunner lib;
  Slo slo;
  slo.deadline_ms = 1000;
  slo.min_accuracy_pct = 0;
  slo.rate_rps = 1000.0 / (0.5 * (pause_min_ms + pause_max_ms) + 0.1);
  std::vector<runtime::ProcessorSpec> procs{{"p0"}, {"p1"}};
  runtime::EngineOptions eo;
  eo.rate_change_ratio = 1e9;  // no re-plans: the fixed plan is the point
  eo.slowdown_ratio = 1e9;
  runtime::Engine<detail::NoopRunner, runtime::synthetic::Estimator, detail::FixedPlan> eng(
      lib, est, detail::FixedPlan{}, procs, {{"same", slo}, {"cross", slo}}, eo);
  SplitMix64 rng(seed);
  OverheadSamples out;
  for (int i = 0; i < 2 * requests; ++i) {
    const auto pause = std::chrono::duration<double, std::milli>(pause_min_ms + (pause_max_ms - pause_min_ms) * rng.uniform());
    std::this_thread::sleep_for(pause);
    const TaskIndex t = i % 2;
    auto h = eng.submit(t);
    h.wait();
    const auto rec = h.record();
    const auto runs = lib.take();
    if (rec.state != runtime::RequestState::on_time || runs.size() != 2 || runs[0].b != 0 || runs[1].b != 1) continue;
    const double gap = runs[1].start - runs[0].end;
    const double inside = runs[0].end - runs[0].start + runs[1].end - runs[1].start;
    out.dispatch_ms.push_back(std::max(0.0, rec.latency_ms() - gap - inside));
    (t == 0 ? out.continue_ms : out.handoff_ms).push_back(std::max(0.0, gap));
  }
  eng.drain();
  return out;
}

}  // namespace sparseloom::sim
