#pragma once
// The latency profiler: times every (block, variant) on every processor of a block library,
// each block fed a realistic input (a test sample run through the base's earlier blocks),
// and the cost of repairs at switches. Profiling cost is reported (profiling_seconds).
#include <algorithm>
#include <chrono>
#include <vector>

#include "sparseloom/estimator/profile_table.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

namespace sparseloom::estimator {

// Bumped when the profiler measures something new, so cached profiles are re-taken.
inline constexpr int kProfilerRevision = 2;  // 2: the repaired path of each block

struct ProfileOptions {
  int reps = 9;
  int warmup = 2;
  double budget_ms_per_block = 60;
  // Whole profiling passes; each timing is the median of the passes' medians. One pass times a
  // block in one burst, so a slow-down of a shared machine lasting a few ms skews that block
  // alone (measured on these VMs: a whole task's plain variants read 40 % slow in one pass).
  int rounds = 1;
};

template <class Library>
TaskProfile profile_task_once(Library& lib, TaskIndex t, const ProfileOptions& opt) {
  const auto& z = lib.task(t);
  const int B = z.num_blocks(), V = z.num_variants(), P = lib.num_processors();
  const int base = z.base();
  TaskProfile tp;
  tp.task = z.manifest.task;
  std::vector<std::filesystem::path> files;
  for (const auto& v : z.manifest.variants) files.push_back(z.manifest.dir / v.file);
  tp.model_hash = hash_files(files);
  // Inputs of each block: sample 0 through the base's blocks on the oracle.
  std::vector<Tensor> inputs{z.input(z.test_x, 0)};
  const auto& oracle = lib.oracle(t);
  for (int b = 0; b + 1 < B; ++b) inputs.push_back(oracle.run_block(oracle.plain(base), nullptr, b, inputs.back()));
  tp.block.assign(B, std::vector<std::vector<LatencyStats>>(V, std::vector<LatencyStats>(P)));
  tp.repaired = tp.block;
  tp.bytes.assign(B, std::vector<double>(V, 0));
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < V; ++v) {
      tp.bytes[b][v] = static_cast<double>(lib.block_bytes(t, b, v, 0));
      const StitchedVariant plain{std::vector<int>(B, v)};
      for (int p = 0; p < P; ++p) {
        try {
          const bool was = lib.is_resident(t, b, v, p);
          lib.load(t, b, v, p);
          tp.block[b][v][p] = time_it([&] { lib.run(t, plain, b, p, std::span<const Tensor>(&inputs[b], 1)); }, opt.reps,
                                      opt.warmup, opt.budget_ms_per_block);
          // After a switch the block runs with the repair folded into its epilogue; an
          // identity repair takes the same path (measured: on the cpu backend INT8 blocks
          // then run their epilogue unfused). If that path fails here, the plain time stands.
          const auto& rs = z.manifest.blocks[b].repair;
          if (b > 0 && rs.kind == zoo::RepairKind::bn_affine && rs.channels > 0) {
            const auto c = static_cast<std::size_t>(rs.channels);
            const AffineMap identity{{rs.tensor, ChannelAffine{std::vector<float>(c, 1.f), std::vector<float>(c, 0.f)}}};
            try {
              tp.repaired[b][v][p] = time_it([&] { lib.run_block(t, b, v, p, inputs[b], RunOptions{&identity, {}}); },
                                             opt.reps, opt.warmup, opt.budget_ms_per_block);
            } catch (const Error&) {
              tp.repaired[b][v][p] = {};
            }
          }
          if (!was) lib.unload(t, b, v, p);
        } catch (const Error&) {
          tp.block[b][v][p] = {};  // samples == 0: this processor cannot run the block
        }
      }
    }
  // Every block run starts and ends with host tensors, so moving a cut tensor between
  // processors costs nothing beyond what the blocks' own times include.
  tp.transfer_ms.assign(static_cast<std::size_t>(std::max(0, B - 1)), 0.0);
  tp.repair_ms.assign(B, 0.0);
  tp.repair_bytes.assign(B, 0.0);
  for (int b = 1; b < B; ++b) {
    const auto& r = z.manifest.blocks[b].repair;
    if (r.kind == zoo::RepairKind::bn_affine) tp.repair_bytes[b] = 2.0 * sizeof(float) * static_cast<double>(r.channels);
    if (r.kind == zoo::RepairKind::residual_map && !z.residual_maps.empty()) {
      const auto& m = z.residual_maps.begin()->second;
      tp.repair_ms[b] = time_it([&] { stitch::apply_residual_map(inputs[b], m); }, opt.reps, opt.warmup, 20).median_ms;
    }
  }
  return tp;
}

// Per entry, the median of several profiles of one task (same library, same shapes).
inline TaskProfile median_profile(const std::vector<TaskProfile>& runs) {
  check(!runs.empty(), ErrorCode::invalid_argument, "median_profile", "no profiles");
  TaskProfile tp = runs.front();
  if (runs.size() == 1) return tp;
  auto median_of = [&](auto&& pick) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(pick(r));
    return summarize(std::move(v)).median_ms;
  };
  using Table = std::vector<std::vector<std::vector<LatencyStats>>>;
  for (Table TaskProfile::*table : {&TaskProfile::block, &TaskProfile::repaired})
    for (std::size_t b = 0; b < (tp.*table).size(); ++b)
      for (std::size_t v = 0; v < (tp.*table)[b].size(); ++v)
        for (std::size_t p = 0; p < (tp.*table)[b][v].size(); ++p) {
          auto& s = (tp.*table)[b][v][p];
          if (s.samples == 0) continue;
          s.median_ms = median_of([&](const TaskProfile& r) { return (r.*table)[b][v][p].median_ms; });
          s.p90_ms = median_of([&](const TaskProfile& r) { return (r.*table)[b][v][p].p90_ms; });
          s.min_ms = median_of([&](const TaskProfile& r) { return (r.*table)[b][v][p].min_ms; });
        }
  for (std::size_t b = 0; b < tp.repair_ms.size(); ++b)
    tp.repair_ms[b] = median_of([&](const TaskProfile& r) { return r.repair_ms[b]; });
  return tp;
}

template <class Library>
TaskProfile profile_task(Library& lib, TaskIndex t, const ProfileOptions& opt = {}) {
  std::vector<TaskProfile> runs;
  for (int r = 0; r < std::max(1, opt.rounds); ++r) runs.push_back(profile_task_once(lib, t, opt));
  return median_profile(runs);
}

}  // namespace sparseloom::estimator
