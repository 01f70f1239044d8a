#pragma once
// A synthetic zoo for exercising the engine without kernels: a BlockRunner whose blocks wait
// (sleep or spin) for a modelled time, with fault hooks (a processor that disappears, a block
// that fails to compile or to run, a processor slowed down), an Estimator that knows the same
// numbers, and a small greedy Optimizer. Used by the runtime tests, the dispatch benchmark
// (fake-runner mode) and quick simulator scenarios; it is a test backend, not a model.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/block_runner.hpp"

namespace sparseloom::runtime::synthetic {

// Every task has `blocks` blocks and `variant_speed.size()` variants. Block (t, b, v, p) takes
// task_block_ms[t] * variant_speed[v] * processor_factor[p] ms; a stitch's accuracy is the
// mean of its blocks' variant accuracies.
struct Zoo {
  int blocks = 2;
  std::vector<double> task_block_ms = {1.0};
  std::vector<double> variant_speed = {1.0};
  std::vector<double> variant_accuracy = {90.0};
  std::vector<double> processor_factor = {1.0};
  std::size_t block_bytes = 1 << 20;

  int num_tasks() const { return static_cast<int>(task_block_ms.size()); }
  int num_variants() const { return static_cast<int>(variant_speed.size()); }
  int num_processors() const { return static_cast<int>(processor_factor.size()); }
  double block_ms(TaskIndex t, VariantIndex v, ProcessorIndex p) const {
    return task_block_ms.at(static_cast<std::size_t>(t)) * variant_speed.at(static_cast<std::size_t>(v)) *
           processor_factor.at(static_cast<std::size_t>(p));
  }
  double accuracy(const StitchedVariant& s) const {
    double a = 0;
    for (auto v : s.choice) a += variant_accuracy.at(static_cast<std::size_t>(v));
    return s.choice.empty() ? 0 : a / static_cast<double>(s.choice.size());
  }
};

enum class Wait { sleep, spin };

class Runner {
 public:
  explicit Runner(Zoo zoo, Wait wait = Wait::sleep)
      : zoo_(std::move(zoo)), wait_(wait), slow_(static_cast<std::size_t>(zoo_.num_processors())),
        dead_(static_cast<std::size_t>(zoo_.num_processors())),
        runs_(static_cast<std::size_t>(zoo_.num_processors())),
        busy_(static_cast<std::size_t>(zoo_.num_processors())) {
    for (auto& s : slow_) s.store(1.0);
  }

  const Zoo& zoo() const { return zoo_; }
  int num_tasks() const { return zoo_.num_tasks(); }
  int num_blocks(TaskIndex) const { return zoo_.blocks; }
  int num_variants(TaskIndex) const { return zoo_.num_variants(); }
  int num_processors() const { return zoo_.num_processors(); }

  std::vector<Tensor> run(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p,
                          std::span<const Tensor> in) {
    check_faults(t, s, b, p);
    const auto pi = static_cast<std::size_t>(p);
    const int overlap = busy_[pi].fetch_add(1) + 1;
    max_overlap_.store(std::max(max_overlap_.load(), overlap));
    wait_for_ms(modelled_ms(t, s, b, p));
    busy_[pi].fetch_sub(1);
    runs_[pi].fetch_add(1);
    return {in.begin(), in.end()};
  }

  // The cost model: what run() waits.
  double modelled_ms(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p) const {
    return zoo_.block_ms(t, s.choice.at(static_cast<std::size_t>(b)), p) * slow_[static_cast<std::size_t>(p)].load();
  }
  // run() in simulated time: the same faults, no waiting (the engine's discrete-event mode).
  double simulate(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p) {
    check_faults(t, s, b, p);
    runs_[static_cast<std::size_t>(p)].fetch_add(1);
    return modelled_ms(t, s, b, p);
  }

  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return resident_.contains({t, b, v, p});
  }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    if (fail_compile_.contains({t, b, v, p}))
      throw Error(ErrorCode::device, "processor " + std::to_string(p),
                  "block " + std::to_string(b) + " variant " + std::to_string(v) + " failed to compile");
    if (fail_read_.contains({t, b, v, 0}))
      throw Error(ErrorCode::io, "variant " + std::to_string(v) + " file", "cannot open (block " + std::to_string(b) + ")");
    if (resident_.insert({t, b, v, p}).second) bytes_ += zoo_.block_bytes;
    ++loads_;
  }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    if (resident_.erase({t, b, v, p})) bytes_ -= zoo_.block_bytes;
  }
  std::size_t resident_bytes() const {
    std::lock_guard lk(mu_);
    return bytes_;
  }
  std::size_t resident_bytes(ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return zoo_.block_bytes * static_cast<std::size_t>(std::count_if(resident_.begin(), resident_.end(),
                                                                     [p](const auto& k) { return std::get<3>(k) == p; }));
  }
  std::size_t block_bytes(TaskIndex, BlockIndex, VariantIndex, ProcessorIndex) const { return zoo_.block_bytes; }

  // --- fault hooks (thread-safe, take effect on the next call) ---
  void disappear(ProcessorIndex p) { dead_.at(static_cast<std::size_t>(p)).store(true); }
  void slow_down(ProcessorIndex p, double factor) { slow_.at(static_cast<std::size_t>(p)).store(factor); }
  void fail_compile(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    fail_compile_.insert({t, b, v, p});
  }
  // The block's file cannot be read: its load fails on every processor (Error(io)).
  void fail_read(TaskIndex t, BlockIndex b, VariantIndex v) {
    std::lock_guard lk(mu_);
    fail_read_.insert({t, b, v, 0});
  }
  void fail_run(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    fail_run_.insert({t, b, v, p});
  }

  // --- observations for tests ---
  std::uint64_t runs(ProcessorIndex p) const { return runs_.at(static_cast<std::size_t>(p)).load(); }
  // Most block runs seen at once on one processor.
  int max_overlap() const { return max_overlap_.load(); }
  std::uint64_t loads() const {
    std::lock_guard lk(mu_);
    return loads_;
  }

 private:
  using Key = std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>;

  void check_faults(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p) const {
    check(t >= 0 && t < num_tasks() && b >= 0 && b < zoo_.blocks && p >= 0 && p < num_processors() &&
              static_cast<std::size_t>(b) < s.choice.size(),
          ErrorCode::invalid_argument, "synthetic::Runner::run", "block out of range");
    if (dead_[static_cast<std::size_t>(p)].load())
      throw Error(ErrorCode::device, "processor " + std::to_string(p), "device disappeared");
    const Key k{t, b, s.choice[static_cast<std::size_t>(b)], p};
    std::lock_guard lk(mu_);
    check(resident_.contains(k), ErrorCode::internal, "synthetic::Runner::run",
          "block " + std::to_string(b) + " of task " + std::to_string(t) + " is not resident");
    if (fail_run_.contains(k)) throw Error(ErrorCode::device, "processor " + std::to_string(p), "subgraph failed to run");
  }

  void wait_for_ms(double ms) const {
    const auto d = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double, std::milli>(ms));
    if (wait_ == Wait::sleep) {
      std::this_thread::sleep_for(d);
      return;
    }
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
    }
  }

  Zoo zoo_;
  Wait wait_;
  std::vector<std::atomic<double>> slow_;
  std::vector<std::atomic<bool>> dead_;
  std::vector<std::atomic<std::uint64_t>> runs_;
  std::vector<std::atomic<int>> busy_;
  std::atomic<int> max_overlap_{0};
  mutable std::mutex mu_;
  std::set<Key> resident_, fail_compile_, fail_run_, fail_read_;
  std::size_t bytes_ = 0;
  std::uint64_t loads_ = 0;
};
static_assert(ModelledBlockRunner<Runner>);

// Knows the zoo's numbers exactly (a perfect estimator), plus a per-block boundary cost of 0.
class Estimator {
 public:
  explicit Estimator(Zoo zoo) : zoo_(std::move(zoo)) {}
  int num_tasks() const { return zoo_.num_tasks(); }
  int num_blocks(TaskIndex) const { return zoo_.blocks; }
  int num_variants(TaskIndex) const { return zoo_.num_variants(); }
  int num_processors() const { return zoo_.num_processors(); }
  bool can_place(TaskIndex, BlockIndex, VariantIndex, ProcessorIndex) const { return true; }
  double accuracy_pct(TaskIndex, const StitchedVariant& s) const { return zoo_.accuracy(s); }
  double latency_ms(TaskIndex t, const StitchedVariant& s, const Placement& pl) const {
    double ms = 0;
    for (std::size_t b = 0; b < s.choice.size() && b < pl.processor.size(); ++b) ms += zoo_.block_ms(t, s.choice[b], pl.processor[b]);
    return ms;
  }
  double block_latency_ms(TaskIndex t, BlockIndex, VariantIndex v, ProcessorIndex p) const { return zoo_.block_ms(t, v, p); }
  double memory_bytes(TaskIndex, const StitchedVariant& s) const {
    return static_cast<double>(zoo_.block_bytes) * static_cast<double>(s.choice.size());
  }
  double block_bytes(TaskIndex, BlockIndex, VariantIndex) const { return static_cast<double>(zoo_.block_bytes); }

 private:
  Zoo zoo_;
};
static_assert(sparseloom::Estimator<Estimator>);

// Per task, in order: among plain variants on one available processor where every block can
// be placed, the fastest (latency x observed slow-down x (1 + load already placed there)) that
// meets the accuracy floor and deadline; if none does, the most accurate, fastest, flagged
// meets_slo = false. Deterministic. `plans` counts calls (tests read it).
class GreedyOptimizer {
 public:
  template <sparseloom::Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    ++plans;
    Plan out;
    std::vector<double> load(static_cast<std::size_t>(e.num_processors()), 0.0);
    for (TaskIndex t = 0; t < e.num_tasks(); ++t) {
      const Slo slo = static_cast<std::size_t>(t) < s.slos.size() ? s.slos[static_cast<std::size_t>(t)] : Slo{};
      TaskPlan best;
      double best_score = std::numeric_limits<double>::infinity();
      bool best_ok = false;
      for (VariantIndex v = 0; v < e.num_variants(t); ++v) {
        for (ProcessorIndex p = 0; p < e.num_processors(); ++p) {
          const auto pi = static_cast<std::size_t>(p);
          if (pi < s.processor_available.size() && !s.processor_available[pi]) continue;
          bool placeable = true;
          for (BlockIndex b = 0; b < e.num_blocks(t); ++b) placeable = placeable && e.can_place(t, b, v, p);
          if (!placeable) continue;
          TaskPlan tp;
          tp.variant.choice.assign(static_cast<std::size_t>(e.num_blocks(t)), v);
          tp.placement.processor.assign(static_cast<std::size_t>(e.num_blocks(t)), p);
          const double speed = pi < s.processor_speed.size() ? s.processor_speed[pi] : 1.0;
          tp.predicted_latency_ms = e.latency_ms(t, tp.variant, tp.placement) * speed;
          tp.predicted_accuracy_pct = e.accuracy_pct(t, tp.variant);
          tp.predicted_memory_bytes = e.memory_bytes(t, tp.variant);
          tp.meets_slo = tp.predicted_accuracy_pct >= slo.min_accuracy_pct && tp.predicted_latency_ms <= slo.deadline_ms;
          const double score = tp.meets_slo ? tp.predicted_latency_ms * (1 + load[pi])
                                            : 1e9 - tp.predicted_accuracy_pct * 1e6 + tp.predicted_latency_ms;
          if ((tp.meets_slo && !best_ok) || (tp.meets_slo == best_ok && score < best_score)) {
            best = std::move(tp);
            best_score = score;
            best_ok = best.meets_slo;
          }
        }
      }
      if (!best.placement.processor.empty()) {
        load[static_cast<std::size_t>(best.placement.processor.front())] += slo.rate_rps * best.predicted_latency_ms / 1000.0;
        best.reason = best_ok ? "fastest plain variant meeting the SLO" : "no variant meets the SLO: most accurate";
      } else {
        best.reason = "no available processor can run this task";
      }
      out.tasks.push_back(std::move(best));
    }
    return out;
  }
  std::atomic<int> plans{0};
  GreedyOptimizer() = default;
  GreedyOptimizer(GreedyOptimizer&& o) noexcept : plans(o.plans.load()) {}
};
static_assert(sparseloom::Optimizer<GreedyOptimizer, Estimator>);

}  // namespace sparseloom::runtime::synthetic
