#pragma once
// sim::ModelEstimator: the estimator the optimizer plans with in simulation. Latency per
// block is the cost model's (the same numbers SimRunner::simulate returns), so plans are made
// on modelled latencies; blocks a processor cannot run have infinite latency and can_place is
// false there; accuracy comes from the zoo's measurements (estimator::fit_accuracy); energy
// per request is the blocks' modelled energy plus hand-overs (energy_j, which the optimizer
// uses for Slo::max_energy_j).
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/estimator/accuracy_model.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/sim/sim_runner.hpp"

namespace sparseloom::sim {

class ModelEstimator {
 public:
  ModelEstimator() = default;
  // accuracy[t]: the accuracy model of task t (blocks and variants as in the runner).
  ModelEstimator(const SimRunner& r, std::vector<estimator::AccuracyModel> accuracy) {
    check(static_cast<int>(accuracy.size()) == r.num_tasks(), ErrorCode::invalid_argument, "sim::ModelEstimator",
          "one accuracy model per task expected");
    const int P = r.num_processors();
    std::vector<estimator::Profiled::Task> tasks;
    energy_.resize(static_cast<std::size_t>(r.num_tasks()));
    transfer_j_.resize(energy_.size());
    for (int t = 0; t < r.num_tasks(); ++t) {
      const int B = r.num_blocks(t), V = r.num_variants(t);
      estimator::TaskProfile tp;
      tp.task = r.task(t).name;
      tp.model_hash = "sim:" + r.soc().name;
      tp.block.assign(B, std::vector<std::vector<estimator::LatencyStats>>(V, std::vector<estimator::LatencyStats>(P)));
      tp.bytes.assign(B, std::vector<double>(V, 0));
      energy_[t].assign(static_cast<std::size_t>(B) * V * P, 0.0);
      for (int b = 0; b < B; ++b)
        for (int v = 0; v < V; ++v)
          for (int p = 0; p < P; ++p) {
            const auto& c = r.cost(t, b, v, p);
            const double ms = c.supported ? c.ms : std::numeric_limits<double>::infinity();
            tp.block[b][v][p] = {ms, ms, ms, c.supported ? 1 : 0};
            // Memory figures use the first processor that runs the block (bytes differ by dtype).
            if (c.supported && tp.bytes[b][v] == 0) tp.bytes[b][v] = c.weight_bytes;
            energy_[t][(static_cast<std::size_t>(b) * V + v) * P + p] = c.energy_j;
          }
      // On a fitted machine a hand-over also wakes the other processor's worker: planned with
      // its median, as the real harness plans with its measured thread hand-off.
      const double wake = r.soc().engine ? r.soc().engine->handoff_ms.median() : 0.0;
      for (int b = 1; b < B; ++b) {
        tp.transfer_ms.push_back(r.transfer_ms(t, b) + wake);
        transfer_j_[t].push_back(r.transfer_energy_j(t, b));
      }
      tp.repair_ms.assign(B, 0.0);
      tp.repair_bytes.assign(B, 0.0);
      for (int b = 1; b < B; ++b) tp.repair_ms[b] = r.repair_ms(t, b, 0);
      tasks.push_back({tp.task, std::move(accuracy[t]), std::move(tp)});
    }
    std::vector<estimator::ProcessorProfile> pp;
    for (int p = 0; p < P; ++p) pp.push_back({r.processor(p).name, r.processor(p).kind, "sim", r.soc().name, 1});
    variants_.clear();
    for (int t = 0; t < r.num_tasks(); ++t) variants_.push_back(r.num_variants(t));
    procs_ = P;
    inner_ = estimator::Profiled(std::move(tasks), std::move(pp));
  }

  int num_tasks() const { return inner_.num_tasks(); }
  int num_blocks(TaskIndex t) const { return inner_.num_blocks(t); }
  int num_variants(TaskIndex t) const { return inner_.num_variants(t); }
  int num_processors() const { return inner_.num_processors(); }
  bool can_place(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const { return inner_.can_place(t, b, v, p); }
  double accuracy_pct(TaskIndex t, const StitchedVariant& s) const { return inner_.accuracy_pct(t, s); }
  double latency_ms(TaskIndex t, const StitchedVariant& s, const Placement& pl) const { return inner_.latency_ms(t, s, pl); }
  double block_latency_ms(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return inner_.block_latency_ms(t, b, v, p);
  }
  double memory_bytes(TaskIndex t, const StitchedVariant& s) const { return inner_.memory_bytes(t, s); }
  double block_bytes(TaskIndex t, BlockIndex b, VariantIndex v) const { return inner_.block_bytes(t, b, v); }
  const estimator::Profiled& profiled() const { return inner_; }

  // Modelled energy of one request: its blocks on their processors plus hand-overs.
  double energy_j(TaskIndex t, const StitchedVariant& s, const Placement& pl) const {
    const auto& e = energy_.at(t);
    const int V = variants_.at(t);
    double j = 0;
    for (std::size_t b = 0; b < s.choice.size(); ++b) {
      const int p = pl.processor.at(b);
      if (!can_place(t, static_cast<BlockIndex>(b), s.choice[b], p)) return std::numeric_limits<double>::infinity();
      j += e.at((b * V + s.choice[b]) * procs_ + p);
      if (b > 0 && pl.processor[b] != pl.processor[b - 1]) j += transfer_j_.at(t).at(b - 1);
    }
    return j;
  }

 private:
  estimator::Profiled inner_;
  std::vector<std::vector<double>> energy_;      // [t][(b V + v) P + p]
  std::vector<std::vector<double>> transfer_j_;  // [t][cut]
  std::vector<int> variants_;
  std::size_t procs_ = 0;
};

static_assert(Estimator<ModelEstimator>);

}  // namespace sparseloom::sim
