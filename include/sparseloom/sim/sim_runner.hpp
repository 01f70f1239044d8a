#pragma once
// sim::SimRunner: a block library whose processors are modelled (a ModelledBlockRunner for the
// Engine's DiscreteEvent mode). Every (task, block, variant, processor) gets its time and
// energy from the cost model; blocks a processor cannot run (an NPU given a float block or an
// op outside its set) cannot be loaded or simulated there, and the estimator built from the
// runner (sim/estimator.hpp) marks them unplaceable. It accounts the energy of what it ran.
// run() exists for the concept: it sleeps the modelled time and returns no tensors.
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/block_runner.hpp"
#include "sparseloom/sim/cost_model.hpp"

namespace sparseloom::sim {

// What the runner needs of one task: its name, [block][variant] statistics, and the repairs.
struct TaskModel {
  std::string name;
  std::vector<std::vector<BlockStats>> blocks;  // [block][variant]
  int base = 0;                                // the base (dense) variant
  std::vector<double> repair_flops;            // [block]: f32 FLOPs of the repair at a switch into it (0: free)
};

inline TaskModel task_model(const zoo::TaskZoo& z) {
  TaskModel m{z.manifest.task, task_stats(z), z.base(), {}};
  for (const auto& b : z.manifest.blocks)
    m.repair_flops.push_back(b.repair.kind == zoo::RepairKind::residual_map ? 2 * b.repair.cost_macs : 0.0);
  return m;
}

class SimRunner {
 public:
  // `processors`: the profile's processors the engine uses, in the engine's order (by name).
  SimRunner(std::vector<TaskModel> tasks, SocProfile soc, const std::vector<std::string>& processors)
      : tasks_(std::move(tasks)), soc_(std::move(soc)) {
    check(!processors.empty(), ErrorCode::invalid_argument, "sim::SimRunner", "no processors");
    for (const auto& n : processors) {
      const int i = soc_.index_of(n);
      check(i >= 0, ErrorCode::invalid_argument, soc_.source_file + ": processors",
            "the profile has no processor '" + n + "'");
      procs_.push_back(soc_.processors[static_cast<std::size_t>(i)]);
    }
    const int P = num_processors();
    cost_.resize(tasks_.size());
    last_proc_.resize(tasks_.size());
    energy_j_.assign(tasks_.size(), 0.0);
    for (std::size_t t = 0; t < tasks_.size(); ++t) {
      const auto& tm = tasks_[t];
      check(!tm.blocks.empty() && !tm.blocks[0].empty(), ErrorCode::invalid_argument, tm.name, "task has no blocks");
      last_proc_[t].assign(tm.blocks.size(), -1);
      for (const auto& b : tm.blocks) {
        check(b.size() == tm.blocks[0].size(), ErrorCode::invalid_argument, tm.name, "blocks differ in variant count");
        cost_[t].emplace_back();
        for (const auto& v : b) {
          cost_[t].back().emplace_back();
          for (int p = 0; p < P; ++p) cost_[t].back().back().push_back(block_cost(soc_, procs_[p], v));
        }
      }
    }
  }

  // --- shape ---
  int num_tasks() const { return static_cast<int>(tasks_.size()); }
  int num_blocks(TaskIndex t) const { return static_cast<int>(tasks_.at(t).blocks.size()); }
  int num_variants(TaskIndex t) const { return static_cast<int>(tasks_.at(t).blocks.at(0).size()); }
  int num_processors() const { return static_cast<int>(procs_.size()); }
  const SocProfile& soc() const { return soc_; }
  const ProcessorModel& processor(ProcessorIndex p) const { return procs_.at(p); }
  const TaskModel& task(TaskIndex t) const { return tasks_.at(t); }
  const BlockCost& cost(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return cost_.at(t).at(b).at(v).at(p);
  }

  // Modelled hand-over of block b's input from another processor, and the repair at a switch.
  double transfer_ms(TaskIndex t, BlockIndex b) const { return sim::transfer_ms(soc_, tasks_.at(t).blocks.at(b).at(0).cut_in_elems); }
  double transfer_energy_j(TaskIndex t, BlockIndex b) const {
    return sim::transfer_energy_j(soc_, tasks_.at(t).blocks.at(b).at(0).cut_in_elems);
  }
  double repair_ms(TaskIndex t, BlockIndex b, ProcessorIndex p) const {
    const auto& tm = tasks_.at(t);
    const double f = static_cast<std::size_t>(b) < tm.repair_flops.size() ? tm.repair_flops[b] : 0.0;
    if (f <= 0) return 0;
    const auto& pm = procs_.at(p);
    const double peak = pm.peak(pm.runs_dtype("f32") || pm.runs_dtype("f16") ? pm.float_dtype : "int8") * pm.compute_efficiency;
    return f / (peak * 1e9) * 1e3;
  }

  // --- ModelledBlockRunner ---
  double simulate(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p) {
    const auto v = s.choice.at(static_cast<std::size_t>(b));
    const auto& c = checked(t, b, v, p);
    double ms = c.ms, j = c.energy_j;
    // Blocks of one task hand over on the processors the current plan placed them: the last
    // processor that ran block b-1 of this task is where this block's input comes from.
    auto& last = last_proc_[static_cast<std::size_t>(t)];
    if (b > 0 && last[b - 1] >= 0 && last[b - 1] != p) ms += transfer_ms(t, b), j += transfer_energy_j(t, b);
    if (b > 0 && s.choice[b] != s.choice[b - 1]) {
      const double r = repair_ms(t, b, p);
      ms += r;
      j += procs_[p].active_w * r * 1e-3;
    }
    last[b] = p;
    energy_j_[static_cast<std::size_t>(t)] += j;
    blocks_run_++;
    return ms;
  }

  // --- BlockRunner ---
  std::vector<Tensor> run(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, std::span<const Tensor>) {
    const double ms = simulate(t, s, b, p);
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
    return {};
  }
  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return resident_.count({t, b, v, p}) != 0;
  }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const auto& c = checked(t, b, v, p);
    if (resident_.insert({t, b, v, p}).second) bytes_ += static_cast<std::size_t>(c.weight_bytes);
  }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    if (resident_.erase({t, b, v, p})) bytes_ -= static_cast<std::size_t>(cost(t, b, v, p).weight_bytes);
  }
  std::size_t resident_bytes() const { return bytes_; }
  std::size_t block_bytes(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return static_cast<std::size_t>(cost(t, b, v, p).weight_bytes);
  }

  // --- energy accounting (of what simulate/run ran) ---
  double energy_j(TaskIndex t) const { return energy_j_.at(t); }
  double energy_j() const {
    double e = 0;
    for (double x : energy_j_) e += x;
    return e;
  }
  std::uint64_t blocks_run() const { return blocks_run_; }
  // Forgets residency, energy and hand-over history (between policy runs).
  void reset() {
    resident_.clear();
    bytes_ = 0;
    energy_j_.assign(tasks_.size(), 0.0);
    for (auto& l : last_proc_) std::fill(l.begin(), l.end(), -1);
    blocks_run_ = 0;
  }

 private:
  const BlockCost& checked(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    check(t >= 0 && t < num_tasks() && b >= 0 && b < num_blocks(t) && v >= 0 && v < num_variants(t) && p >= 0 &&
              p < num_processors(),
          ErrorCode::invalid_argument, "sim::SimRunner", "block index out of range");
    const auto& c = cost_[t][b][v][p];
    check(c.supported, ErrorCode::device, tasks_[t].name + " block " + std::to_string(b) + " variant " + std::to_string(v),
          "cannot run on " + procs_[p].name + ": " + c.why);
    return c;
  }

  std::vector<TaskModel> tasks_;
  SocProfile soc_;
  std::vector<ProcessorModel> procs_;
  std::vector<std::vector<std::vector<std::vector<BlockCost>>>> cost_;  // [t][b][v][p]
  std::vector<std::vector<int>> last_proc_;
  std::vector<double> energy_j_;
  std::set<std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>> resident_;
  std::size_t bytes_ = 0;
  std::uint64_t blocks_run_ = 0;
};

static_assert(runtime::ModelledBlockRunner<SimRunner>);

}  // namespace sparseloom::sim
