#pragma once
// The latency profiler: times every (block, variant) on every processor of a block library,
// each block fed a realistic input (a test sample run through the base's earlier blocks),
// and the cost of repairs at switches. Profiling cost is reported (profiling_seconds).
#include <chrono>
#include <vector>

#include "sparseloom/estimator/profile_table.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

namespace sparseloom::estimator {

struct ProfileOptions {
  int reps = 9;
  int warmup = 2;
  double budget_ms_per_block = 60;
};

template <class Library>
TaskProfile profile_task(Library& lib, TaskIndex t, const ProfileOptions& opt = {}) {
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

}  // namespace sparseloom::estimator
