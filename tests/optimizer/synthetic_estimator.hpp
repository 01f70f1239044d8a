#pragma once
// A synthetic Estimator for optimizer tests and benchmarks: random but structured per-block
// latencies per processor kind and an accuracy model with per-block drops plus interactions.
//  - Processors cycle CPU, GPU, NPU. A CPU gains from unstructured sparsity only from ~70 %
//    (below it the kernel falls back to dense), from 4x1 blocks, a little from 2:4, and from
//    INT8; a GPU is ~4x faster dense but gains from unstructured sparsity only at >= 90 %, more
//    from 2:4 and blocks; an NPU runs only INT8 variants (and not every block), gains nothing
//    from sparsity.
//  - Accuracy of a stitch: base - D - 0.01 D^2 - 0.15 x (drops of the two blocks at each
//    variant switch), D = sum of per-block drops: not additive, so a per-block proxy is only a
//    proxy.
//  - Latency of a stitch on a placement: blocks + a transfer at every processor change + a
//    repair at every variant switch + a fixed per-request overhead.
// All tables are public so a test can shape a scenario by hand.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"

namespace sparseloom::testing {

enum class ProcKind { cpu, gpu, npu };
enum class VarKind { dense, unstructured, block4x1, semi24, int8, int8_unstructured };

struct VariantDesc {
  VarKind kind = VarKind::dense;
  double sparsity = 0;
};

struct SyntheticConfig {
  int tasks = 4, blocks = 6, variants = 8, processors = 3;
  std::uint64_t seed = 1;
  double npu_unsupported_block_prob = 0.2;
};

class SyntheticEstimator {
 public:
  struct Task {
    int blocks = 0, variants = 0;
    std::vector<VariantDesc> var;
    std::vector<double> lat;       // [(b * V + v) * P + p], NaN where it cannot run
    std::vector<double> drop;      // [b * V + v], pp
    std::vector<double> bytes;     // [b * V + v]
    std::vector<double> transfer;  // [b]: boundary after block b
    double base_acc = 90;
    double repair_ms = 0.02, overhead_ms = 0.05, repair_bytes = 4096;
  };

  explicit SyntheticEstimator(SyntheticConfig c) : cfg_(c) {
    std::mt19937_64 rng(c.seed);
    std::uniform_real_distribution<double> u(0, 1);
    for (int p = 0; p < c.processors; ++p) kind.push_back(static_cast<ProcKind>(p % 3));
    static const VariantDesc menu[] = {{VarKind::dense, 0},          {VarKind::unstructured, 0.7},
                                       {VarKind::unstructured, 0.9}, {VarKind::semi24, 0.5},
                                       {VarKind::int8, 0},           {VarKind::unstructured, 0.95},
                                       {VarKind::block4x1, 0.9},     {VarKind::int8_unstructured, 0.9}};
    for (int t = 0; t < c.tasks; ++t) {
      Task k;
      k.blocks = c.blocks;
      k.variants = c.variants;
      for (int v = 0; v < c.variants; ++v) {
        VariantDesc d = menu[v % 8];
        if (v >= 8) d.sparsity = std::min(0.97, d.sparsity + 0.02 * (v / 8));
        k.var.push_back(d);
      }
      k.base_acc = 85 + 10 * u(rng);
      double scale = 0.5 + 1.5 * u(rng);
      const int B = c.blocks, V = c.variants, P = c.processors;
      k.lat.assign(static_cast<std::size_t>(B) * V * P, NAN);
      k.drop.assign(static_cast<std::size_t>(B) * V, 0);
      k.bytes.assign(static_cast<std::size_t>(B) * V, 0);
      k.transfer.assign(B, 0);
      for (int b = 0; b < B; ++b) {
        double macs_ms = scale * (0.5 + 2.5 * u(rng));
        double sens = 0.5 + u(rng);
        double weights = 1e6 * (0.5 + 3.5 * u(rng));
        bool npu_ok = u(rng) >= c.npu_unsupported_block_prob;
        k.transfer[b] = 0.1 + 0.4 * u(rng);
        for (int v = 0; v < V; ++v) {
          const VariantDesc& d = k.var[v];
          k.drop[b * V + v] = sens * drop_factor(d) * 3.0 / B;
          k.bytes[b * V + v] = weights * density(d);
          for (int p = 0; p < P; ++p) {
            double f = speed_factor(kind[p], d);
            if (kind[p] == ProcKind::npu && !npu_ok) f = NAN;
            k.lat[(static_cast<std::size_t>(b) * V + v) * P + p] = macs_ms * f * (0.9 + 0.2 * u(rng));
          }
        }
      }
      tasks.push_back(std::move(k));
    }
  }

  // Estimator concept.
  int num_tasks() const { return static_cast<int>(tasks.size()); }
  int num_blocks(TaskIndex t) const { return tasks[t].blocks; }
  int num_variants(TaskIndex t) const { return tasks[t].variants; }
  int num_processors() const { return static_cast<int>(kind.size()); }
  bool can_place(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return !std::isnan(lat(t, b, v, p));
  }
  double block_latency_ms(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const { return lat(t, b, v, p); }
  double accuracy_pct(TaskIndex t, const StitchedVariant& s) const {
    const Task& k = tasks[t];
    double d = 0, sw = 0;
    for (int b = 0; b < k.blocks; ++b) {
      d += k.drop[b * k.variants + s.choice[b]];
      if (b > 0 && s.choice[b] != s.choice[b - 1])
        sw += 0.15 * (k.drop[(b - 1) * k.variants + s.choice[b - 1]] + k.drop[b * k.variants + s.choice[b]]);
    }
    return k.base_acc - d - 0.01 * d * d - sw;
  }
  double latency_ms(TaskIndex t, const StitchedVariant& s, const Placement& pl) const {
    const Task& k = tasks[t];
    double l = k.overhead_ms;
    for (int b = 0; b < k.blocks; ++b) {
      l += lat(t, b, s.choice[b], pl.processor[b]);
      if (b > 0 && pl.processor[b] != pl.processor[b - 1]) l += k.transfer[b - 1];
      if (b > 0 && s.choice[b] != s.choice[b - 1]) l += k.repair_ms;
    }
    return l;
  }
  double block_bytes(TaskIndex t, BlockIndex b, VariantIndex v) const {
    return tasks[t].bytes[b * tasks[t].variants + v];
  }
  double memory_bytes(TaskIndex t, const StitchedVariant& s) const {
    double m = tasks[t].repair_bytes * s.switches();
    for (int b = 0; b < tasks[t].blocks; ++b) m += block_bytes(t, b, s.choice[b]);
    return m;
  }

  double lat(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    const Task& k = tasks[t];
    return k.lat[(static_cast<std::size_t>(b) * k.variants + v) * kind.size() + p];
  }
  double& lat_ref(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    Task& k = tasks[t];
    return k.lat[(static_cast<std::size_t>(b) * k.variants + v) * kind.size() + p];
  }

  std::vector<ProcKind> kind;
  std::vector<Task> tasks;

 private:
  static double speed_factor(ProcKind pk, const VariantDesc& d) {
    switch (pk) {
      case ProcKind::cpu:
        switch (d.kind) {
          case VarKind::dense: return 1.0;
          case VarKind::unstructured: return d.sparsity < 0.7 ? 1.0 : std::max(0.08, 1.0 - (d.sparsity - 0.6) * 2.4);
          case VarKind::block4x1: return (1 - d.sparsity) * 1.5 + 0.05;
          case VarKind::semi24: return 0.8;
          case VarKind::int8: return 0.45;
          case VarKind::int8_unstructured: return 0.45 * std::max(0.2, 1.0 - (d.sparsity - 0.6) * 2.4);
        }
        break;
      case ProcKind::gpu: {
        double g = 0.25;
        switch (d.kind) {
          case VarKind::dense: return g;
          case VarKind::unstructured: return g * (d.sparsity < 0.9 ? 1.0 : 1.0 - (d.sparsity - 0.85) * 5);
          case VarKind::block4x1: return g * (d.sparsity >= 0.8 ? 0.5 : 1.0);
          case VarKind::semi24: return g * 0.55;
          case VarKind::int8: return g * 0.7;
          case VarKind::int8_unstructured: return g * 0.7;
        }
        break;
      }
      case ProcKind::npu:
        return (d.kind == VarKind::int8 || d.kind == VarKind::int8_unstructured) ? 0.12 : NAN;
    }
    return 1.0;
  }
  static double drop_factor(const VariantDesc& d) {
    switch (d.kind) {
      case VarKind::dense: return 0;
      case VarKind::unstructured: return d.sparsity < 0.75 ? 0.3 : d.sparsity < 0.92 ? 1.2 : 2.5;
      case VarKind::block4x1: return 1.8;
      case VarKind::semi24: return 0.8;
      case VarKind::int8: return 0.3;
      case VarKind::int8_unstructured: return 1.6;
    }
    return 0;
  }
  static double density(const VariantDesc& d) {
    switch (d.kind) {
      case VarKind::dense: return 1;
      case VarKind::unstructured: return std::min(1.0, (1 - d.sparsity) * 1.5);
      case VarKind::block4x1: return (1 - d.sparsity) * 1.1;
      case VarKind::semi24: return 0.5625;
      case VarKind::int8: return 0.25;
      case VarKind::int8_unstructured: return 0.25 * (1 - d.sparsity) * 1.5;
    }
    return 1;
  }

  SyntheticConfig cfg_;
};

static_assert(Estimator<SyntheticEstimator>);

inline Slo slo(double deadline_ms, double min_accuracy_pct, double rate_rps, double criticality = 1) {
  Slo s;
  s.deadline_ms = deadline_ms;
  s.min_accuracy_pct = min_accuracy_pct;
  s.rate_rps = rate_rps;
  s.criticality = criticality;
  return s;
}

// A state for the estimator: floors `floor_pp` below each task's base accuracy, deadlines
// `slo_scale` x the task's dense latency on its fastest processor (Band's slo_scale
// convention), rates such that the dense models alone would load the fastest processor to
// `load` in total.
inline SystemState make_state(const SyntheticEstimator& e, double load, double slo_scale, double floor_pp,
                              std::uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  SystemState s;
  const int T = e.num_tasks();
  std::vector<double> dense(T), w(T);
  double wsum = 0;
  for (int t = 0; t < T; ++t) {
    double best = INFINITY;
    for (int p = 0; p < e.num_processors(); ++p) {
      double l = 0;
      for (int b = 0; b < e.num_blocks(t); ++b) l += e.lat(t, b, 0, p);
      if (!std::isnan(l)) best = std::min(best, l);
    }
    dense[t] = best;
    w[t] = u(rng);
    wsum += w[t] * dense[t];
  }
  for (int t = 0; t < T; ++t) {
    Slo slo;
    slo.deadline_ms = slo_scale * dense[t];
    slo.min_accuracy_pct = e.tasks[t].base_acc - floor_pp;
    slo.rate_rps = 1000.0 * load * w[t] / wsum;
    s.slos.push_back(slo);
  }
  s.processor_available.assign(e.num_processors(), true);
  return s;
}

}  // namespace sparseloom::testing
