#pragma once
// sim::SimRunner: a block library whose processors are modelled (a ModelledBlockRunner for the
// Engine's DiscreteEvent mode). Every (task, block, variant, processor) gets its time and
// energy from the cost model; blocks a processor cannot run (an NPU given a float block or an
// op outside its set) cannot be loaded or simulated there, and the estimator built from the
// runner (sim/estimator.hpp) marks them unplaceable. It accounts the energy of what it ran.
// run() exists for the concept: it sleeps the modelled time and returns no tensors.
// With a profile's engine_overhead (a fitted machine), simulate(t, s, b, p, start_ms), which the
// DiscreteEvent engine calls, adds the engine's own cost sampled with a seeded RNG (same seed,
// same run): the dispatch before a request's first block and the hand-off from another
// processor when p's worker was idle (it must be woken), else the between-blocks bookkeeping;
// and turns the block's modelled time into its in-engine time (scale, the fixed cost of its
// position in the chain, x the reuse factor of the time since the same block last ended, the
// sampled factor, x shared_core_slowdown while another processor is running a block), plus a
// preemption stall with the profile's probability.
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
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
  std::vector<std::string> variants;           // names (a fitted profile's measured blocks are keyed by them)
  int base = 0;                                // the base (dense) variant
  std::vector<double> repair_flops;            // [block]: f32 FLOPs of the repair at a switch into it (0: free)
};

inline TaskModel task_model(const zoo::TaskZoo& z) {
  TaskModel m{z.manifest.task, task_stats(z), {}, z.base(), {}};
  for (const auto& v : z.manifest.variants) m.variants.push_back(v.name);
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
    busy_from_.assign(procs_.size(), -1.0);
    timeline_.resize(tasks_.size());
    busy_until_.assign(procs_.size(), -1.0);
    energy_j_.assign(tasks_.size(), 0.0);
    last_end_.resize(tasks_.size());
    for (std::size_t t = 0; t < tasks_.size(); ++t) {
      const auto& tm = tasks_[t];
      check(!tm.blocks.empty() && !tm.blocks[0].empty(), ErrorCode::invalid_argument, tm.name, "task has no blocks");
      last_proc_[t].assign(tm.blocks.size(), -1);
      last_end_[t].assign(tm.blocks.size() * tm.blocks[0].size() * procs_.size(), -1.0);
      for (const auto& b : tm.blocks) {
        check(b.size() == tm.blocks[0].size(), ErrorCode::invalid_argument, tm.name, "blocks differ in variant count");
        cost_[t].emplace_back();
        for (const auto& v : b) {
          cost_[t].back().emplace_back();
          for (int p = 0; p < P; ++p) cost_[t].back().back().push_back(block_cost(soc_, procs_[p], v));
        }
      }
      // A fitted profile's measured medians replace the roofline's time for those blocks (energy
      // follows the time at the processor's active power).
      for (std::size_t b = 0; b < tm.blocks.size() && !soc_.measured_block_ms.empty(); ++b)
        for (std::size_t v = 0; v < tm.variants.size() && v < tm.blocks[b].size(); ++v)
          for (int p = 0; p < P; ++p) {
            const auto it = soc_.measured_block_ms.find({tm.name, static_cast<int>(b), tm.variants[v], procs_[p].name});
            auto& c = cost_[t][b][v][static_cast<std::size_t>(p)];
            if (it == soc_.measured_block_ms.end() || !c.supported) continue;
            c.energy_j += procs_[p].active_w * (it->second - c.ms) * 1e-3;
            c.energy_j = std::max(0.0, c.energy_j);
            c.ms = it->second;
            ++measured_blocks_used_;
            if (const auto e = soc_.measured_engine_ms.find(it->first); e != soc_.measured_engine_ms.end()) c.engine_ms = e->second;
            if (const auto m = soc_.measured_resident_bytes.find(it->first); m != soc_.measured_resident_bytes.end())
              c.weight_bytes = m->second;
            if (const auto l = soc_.measured_load_ms.find(it->first); l != soc_.measured_load_ms.end()) c.load_ms = l->second;
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
  double simulate(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p) { return simulate_at(t, s, b, p, nullptr); }
  // The same, started at simulated time start_ms: adds the engine overhead (if the profile has it).
  double simulate(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, double start_ms) {
    return simulate_at(t, s, b, p, &start_ms);
  }

  // --- BlockRunner ---
  std::vector<Tensor> run(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, std::span<const Tensor>) {
    const double ms = simulate(t, s, b, p);
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
    return {};
  }

 private:
  double simulate_at(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, const double* start) {
    const auto v = s.choice.at(static_cast<std::size_t>(b));
    const auto& c = checked(t, b, v, p);
    double& last_end = last_end_[static_cast<std::size_t>(t)][block_slot(t, b, v, p)];  // when this block last ended
    double ms = c.ms, j = c.energy_j;
    auto& last = last_proc_[static_cast<std::size_t>(t)];
    const bool from_other = b > 0 && last[b - 1] >= 0 && last[b - 1] != p;
    double overhead = 0;
    if (start && soc_.engine) {
      const auto& eo = *soc_.engine;
      const auto pi = static_cast<std::size_t>(p);
      double factor = eo.block_time_factor.at(rng_.uniform());
      factor *= reuse_multiplier(eo, last_end < 0 ? -1.0 : *start - last_end);
      bool shared = false;
      for (std::size_t q = 0; q < procs_.size(); ++q)
        shared = shared || (q != pi && busy_from_[q] <= *start && busy_until_[q] > *start);
      if (shared) factor *= eo.shared_core_slowdown;
      const double in_engine = (c.engine_ms > 0 ? c.engine_ms : engine_block_ms(eo, c.ms, block_position(b, num_blocks(t)))) * factor;
      j += procs_[pi].active_w * std::max(0.0, in_engine - c.ms) * 1e-3;  // a slower run burns active power longer
      ms = in_engine;
      const double us = rng_.uniform(), uq = rng_.uniform();
      if (us < eo.stall_probability) ms += eo.stall_ms.at(uq);  // preempted: time passes, no work done
      // p's worker sleeps unless a block of p ended no earlier than now (it takes the next at once).
      const bool idle = *start > busy_until_[pi];
      const double u = rng_.uniform();
      overhead = !idle ? eo.continue_ms.at(u) : b == 0 ? eo.dispatch_ms.at(u) : from_other ? eo.handoff_ms.at(u) : eo.continue_ms.at(u);
    }
    // Blocks of one task hand over on the processors the current plan placed them: the last
    // processor that ran block b-1 of this task is where this block's input comes from.
    if (from_other) ms += transfer_ms(t, b), j += transfer_energy_j(t, b);
    if (b > 0 && s.choice[b] != s.choice[b - 1]) {
      const double r = repair_ms(t, b, p);
      ms += r;
      j += procs_[p].active_w * r * 1e-3;
    }
    last[b] = p;
    energy_j_[static_cast<std::size_t>(t)] += j;
    if (start && *start >= 0 && *start < kMaxBuckets * kBucketMs) {  // the timeline for windowed power (bounded)
      auto& tl = timeline_[static_cast<std::size_t>(t)];
      const auto k = static_cast<std::size_t>(*start / kBucketMs);
      if (tl.size() <= k) tl.resize(k + 1, 0.0);
      tl[k] += j;
    }
    blocks_run_++;
    ms += overhead;
    overhead_ms_ += overhead;
    if (start) {
      busy_from_[static_cast<std::size_t>(p)] = *start;
      busy_until_[static_cast<std::size_t>(p)] = *start + ms;
      last_end = *start + ms;
    }
    return ms;
  }

  std::size_t block_slot(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return (static_cast<std::size_t>(b) * static_cast<std::size_t>(num_variants(t)) + static_cast<std::size_t>(v)) *
               procs_.size() +
           static_cast<std::size_t>(p);
  }

 public:
  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return resident_.count({t, b, v, p}) != 0;
  }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const auto& c = checked(t, b, v, p);
    if (!resident_.insert({t, b, v, p}).second) return;
    bytes_ += static_cast<std::size_t>(c.weight_bytes);
    for (LoadCost* l : {&pending_load_, &loads_total_}) {
      ++l->blocks;
      if (c.load_ms >= 0) l->ms += c.load_ms;
      else l->unmeasured_bytes += c.weight_bytes;
    }
  }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    if (resident_.erase({t, b, v, p})) bytes_ -= static_cast<std::size_t>(cost(t, b, v, p).weight_bytes);
  }
  std::size_t resident_bytes() const { return bytes_; }
  std::size_t resident_bytes(ProcessorIndex p) const {
    std::size_t n = 0;
    for (const auto& [t, b, v, q] : resident_)
      if (q == p) n += block_bytes(t, b, v, q);
    return n;
  }
  std::size_t block_bytes(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return static_cast<std::size_t>(cost(t, b, v, p).weight_bytes);
  }
  // What load() loaded since the last call: the measured load times, and the bytes of blocks
  // without one (the engine prices those at EngineOptions::sim_load_ms_per_mib). The
  // discrete-event engine charges a request's demand load with it, which covers every block a
  // memory policy loads for it (one-model-per-task loads the whole model at once).
  struct LoadCost {
    double ms = 0;
    double unmeasured_bytes = 0;
    int blocks = 0;
    // The time it takes, with the unmeasured bytes at `ms_per_mib`.
    double total_ms(double ms_per_mib) const { return ms + unmeasured_bytes / (1024.0 * 1024.0) * ms_per_mib; }
  };
  LoadCost take_loads() { return std::exchange(pending_load_, LoadCost{}); }
  // Every load since reset(), the setup's included (a real run's preloader counts those too).
  const LoadCost& loads_total() const { return loads_total_; }

  // --- energy accounting (of what simulate/run ran) ---
  double energy_j(TaskIndex t) const { return energy_j_.at(t); }
  double energy_j() const {
    double e = 0;
    for (double x : energy_j_) e += x;
    return e;
  }
  std::uint64_t blocks_run() const { return blocks_run_; }
  // How many (task, block, variant, processor) costs came from the profile's measured blocks.
  int measured_blocks_used() const { return measured_blocks_used_; }
  // Task t's highest average power (W) over any window of window_s in simulated time (blocks
  // counted at their start, in 10 ms steps); 0 before any timed simulate().
  double max_window_power_w(TaskIndex t, double window_s) const {
    const auto& tl = timeline_.at(static_cast<std::size_t>(t));
    const auto w = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(window_s * 1000.0 / kBucketMs)));
    double sum = 0, best = 0;
    for (std::size_t k = 0; k < tl.size(); ++k) {
      sum += tl[k];
      if (k >= w) sum -= tl[k - w];
      best = std::max(best, sum);
    }
    return best / (static_cast<double>(w) * kBucketMs * 1e-3);
  }
  // Engine overhead added so far (ms, summed over blocks).
  double overhead_ms() const { return overhead_ms_; }
  // Forgets residency, energy and hand-over history (between policy runs); restarts the
  // overhead sampling from `seed` (every policy sees the same stream).
  void reset(std::uint64_t seed = 0) {
    rng_ = SplitMix64(seed);
    overhead_ms_ = 0;
    for (auto& tl : timeline_) tl.clear();
    std::fill(busy_from_.begin(), busy_from_.end(), -1.0);
    std::fill(busy_until_.begin(), busy_until_.end(), -1.0);
    for (auto& l : last_end_) std::fill(l.begin(), l.end(), -1.0);
    resident_.clear();
    bytes_ = 0;
    pending_load_ = {};
    loads_total_ = {};
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
  LoadCost pending_load_, loads_total_;
  std::uint64_t blocks_run_ = 0;
  int measured_blocks_used_ = 0;
  SplitMix64 rng_;
  double overhead_ms_ = 0;
  std::vector<double> busy_from_, busy_until_;  // [p]: the last block started on p (simulated ms)
  std::vector<std::vector<double>> last_end_;   // [t][block_slot]: when that block last ended (-1: never)
  static constexpr double kBucketMs = 10;
  static constexpr double kMaxBuckets = 1e6;  // ~3 simulated hours
  std::vector<std::vector<double>> timeline_;   // [t][10 ms step]: energy of blocks started then (J)
};

static_assert(runtime::ModelledBlockRunner<SimRunner>);

}  // namespace sparseloom::sim
