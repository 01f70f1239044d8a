#pragma once
// The simulator's cost model: what one block of one variant costs on one modelled processor,
// in time and energy, from statistics of the block's own graph (FLOPs of its Conv/Gemm/MatMul
// layers, how sparse their weights are, bytes moved, kernels launched, dtype, op types) and the
// processor's roofline (profile.hpp):
//   time   = launch + kernels x kernel_overhead + max(compute, memory)
//   compute = (dense FLOPs + pruned-layer FLOPs / speedup(format, sparsity)) / (peak x efficiency)
//   memory  = (stored weight bytes + activation bytes) / min(processor, SoC bandwidth)
//   energy  = active power x time + DRAM energy per byte x bytes
// A processor whose dtypes or op set do not cover the block cannot run it (an NPU: INT8 only,
// fixed ops). A speed-up below 1 is not taken: the layer runs dense (never slower than dense).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/ir/graph.hpp"
#include "sparseloom/sim/profile.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

namespace sparseloom::sim {

struct BlockStats {
  double flops_dense = 0;      // 2 x MACs of layers kept dense (and activation x activation MatMuls)
  double flops_pruned = 0;     // 2 x dense-equivalent MACs of the pruned layers
  double sparsity = 0;         // MAC-weighted weight sparsity of the pruned layers
  double pruned_elems = 0, pruned_nonzeros = 0;  // weights of the pruned layers
  double other_weight_elems = 0;                 // every other initializer
  double act_elems = 0;        // elements written and read by compute nodes
  double cut_in_elems = 0, cut_out_elems = 0;
  int kernels = 0;             // compute nodes (Q/DQ and shape-only nodes excluded)
  bool int8 = false;           // a QDQ block: INT8 weights and activations
  Format format = Format::dense;
  std::set<std::string> ops;
};

inline Format format_of_kind(const std::string& kind) {
  if (kind.find("unstructured") != std::string::npos) return Format::unstructured;
  if (kind.find("block") != std::string::npos) return Format::block;
  if (kind.find("2:4") != std::string::npos) return Format::semi24;
  return Format::dense;
}

namespace detail {

inline bool shape_only(const std::string& op) {
  static const std::set<std::string> s = {"QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Flatten", "Squeeze",
                                          "Unsqueeze", "Shape", "Cast", "ConstantOfShape", "Range", "Dropout", "Gather", "Slice"};
  return s.count(op) != 0;
}

inline double elems(const ir::Graph& g, const std::string& name) {
  auto it = g.values.find(name);
  if (it == g.values.end()) return 0;
  double n = 1;
  for (auto d : it->second.shape) n *= static_cast<double>(std::max<std::int64_t>(d, 1));
  return n;
}

// The initializer behind a weight input: itself, or the int8 tensor a DequantizeLinear reads.
inline const Tensor* weight_of(const ir::Graph& g, const std::string& name) {
  if (auto it = g.initializers.find(name); it != g.initializers.end()) return &it->second;
  if (const auto* n = g.producer(name); n && n->op == "DequantizeLinear" && n->has_input(0))
    if (auto it = g.initializers.find(n->inputs[0]); it != g.initializers.end()) return &it->second;
  return nullptr;
}

inline double nonzeros(const Tensor& t) {
  double nz = 0;
  if (t.dtype() == DType::f32) {
    for (float x : t.span<float>()) nz += x != 0.0f;
  } else if (t.dtype() == DType::i8) {
    for (std::int8_t x : t.span<std::int8_t>()) nz += x != 0;
  } else {
    nz = static_cast<double>(t.numel());
  }
  return nz;
}

}  // namespace detail

// Statistics of one block's graph; `format` is the variant's sparsity pattern (manifest).
inline BlockStats block_stats(const ir::Graph& g, Format format) {
  BlockStats s;
  s.format = format;
  std::set<std::string> weights;
  double pruned_macs_nz = 0;
  for (const auto& n : g.nodes) {
    s.ops.insert(n.op);
    if (n.op == "QuantizeLinear" || n.op == "DequantizeLinear") s.int8 = true;
    if (detail::shape_only(n.op)) continue;
    ++s.kernels;
    for (const auto& o : n.outputs) s.act_elems += detail::elems(g, o);
    for (std::size_t i = 0; i < n.inputs.size(); ++i)
      if (n.has_input(i) && !detail::weight_of(g, n.inputs[i])) s.act_elems += detail::elems(g, n.inputs[i]);
    if (n.op != "Conv" && n.op != "Gemm" && n.op != "MatMul") continue;
    if (!n.has_input(1) || n.outputs.empty()) continue;
    const double out = detail::elems(g, n.outputs[0]);
    const Tensor* w = detail::weight_of(g, n.inputs[1]);
    double k = 0;
    if (n.op == "Conv") {
      const double cout = w && w->shape().size() >= 1 ? static_cast<double>(std::max<std::int64_t>(w->dim(0), 1)) : 1;
      k = w ? static_cast<double>(w->numel()) / cout : 0;
    } else {
      const auto it = g.values.find(n.inputs[0]);
      if (it != g.values.end() && !it->second.shape.empty()) {
        const auto& sh = it->second.shape;
        const bool trans_a = n.op == "Gemm" && n.attr<std::int64_t>("transA", 0) != 0;
        k = static_cast<double>(trans_a && sh.size() >= 2 ? sh[sh.size() - 2] : sh.back());
      }
    }
    const double macs = out * k;
    if (!w) {  // activation x activation (attention)
      s.flops_dense += 2 * macs;
      continue;
    }
    weights.insert(n.inputs[1]);
    const double numel = static_cast<double>(w->numel()), nz = detail::nonzeros(*w);
    if (numel > 0 && nz < 0.99 * numel) {
      s.flops_pruned += 2 * macs;
      pruned_macs_nz += macs * nz / numel;
      s.pruned_elems += numel;
      s.pruned_nonzeros += nz;
    } else {
      s.flops_dense += 2 * macs;
      s.other_weight_elems += numel;
    }
  }
  for (const auto& [name, t] : g.initializers)
    if (!weights.count(name) && t.numel() > 1) s.other_weight_elems += static_cast<double>(t.numel());
  s.sparsity = s.flops_pruned > 0 ? 1.0 - 2 * pruned_macs_nz / s.flops_pruned : 0.0;
  for (const auto& i : g.inputs) s.cut_in_elems += detail::elems(g, i.name);
  for (const auto& o : g.outputs) s.cut_out_elems += detail::elems(g, o.name);
  return s;
}

// [block][variant] statistics of a zoo task.
inline std::vector<std::vector<BlockStats>> task_stats(const zoo::TaskZoo& z) {
  std::vector<std::vector<BlockStats>> out(static_cast<std::size_t>(z.num_blocks()));
  for (int b = 0; b < z.num_blocks(); ++b)
    for (int v = 0; v < z.num_variants(); ++v)
      out[b].push_back(block_stats(z.blocks[b][v], format_of_kind(z.manifest.variants[v].kind)));
  return out;
}

struct BlockCost {
  bool supported = false;
  std::string why;           // when not supported
  double ms = 0, compute_ms = 0, memory_ms = 0, overhead_ms = 0;
  double bytes = 0;          // moved through memory
  double weight_bytes = 0;   // resident (stored) weight bytes on this processor
  double energy_j = 0;
  std::string dtype;         // precision it runs in
  double speedup = 1;        // taken on the pruned layers
  double engine_ms = 0;      // measured median inside the engine (a fitted profile's measured_blocks); 0: none
  double load_ms = -1;       // measured cold load (a fitted profile's measured_blocks); < 0: none
};

// Whether processor p can run the block, and in which precision.
inline std::string run_dtype(const ProcessorModel& p, const BlockStats& s, std::string* why = nullptr) {
  for (const auto& op : s.ops)
    if (!p.runs_op(op)) {
      if (why) *why = p.name + " does not run op " + op;
      return "";
    }
  if (s.int8 && p.runs_dtype("int8")) return "int8";
  if (p.runs_dtype(p.float_dtype)) return p.float_dtype;
  if (p.runs_dtype("f32")) return "f32";
  if (p.runs_dtype("f16")) return "f16";
  if (why) *why = p.name + (s.int8 ? " runs none of this block's dtypes" : " runs INT8 only and the block is float");
  return "";
}

inline BlockCost block_cost(const SocProfile& soc, const ProcessorModel& p, const BlockStats& s) {
  BlockCost c;
  c.dtype = run_dtype(p, s, &c.why);
  if (c.dtype.empty()) return c;
  c.supported = true;
  const double elem = c.dtype == "int8" ? 1.0 : c.dtype == "f16" ? 2.0 : 4.0;
  double speedup = 1;
  if (s.flops_pruned > 0 && s.format != Format::dense)
    if (auto it = p.sparse.find(s.format); it != p.sparse.end()) speedup = it->second.at(s.sparsity);
  const bool sparse = speedup > 1.0;
  c.speedup = sparse ? speedup : 1.0;
  const double gflops = p.peak(c.dtype) * p.compute_efficiency;
  c.compute_ms = (s.flops_dense + s.flops_pruned / c.speedup) / (gflops * 1e9) * 1e3;
  // Stored weights: sparse formats keep non-zeros plus indices (CSR: a 32-bit column per
  // non-zero, 4x1 blocks: one per four, 2:4: 2 bits per kept value).
  double index = 0;
  if (sparse) index = s.format == Format::unstructured ? 4.0 : s.format == Format::block ? 1.0 : 0.25;
  const double pruned_bytes = sparse ? s.pruned_nonzeros * (elem + index) : s.pruned_elems * elem;
  c.weight_bytes = pruned_bytes + s.other_weight_elems * elem;
  c.bytes = c.weight_bytes + s.act_elems * elem;
  const double bw = std::min(p.memory_bandwidth_gbps, soc.soc.memory_bandwidth_gbps);
  c.memory_ms = c.bytes / (bw * 1e9) * 1e3;
  c.overhead_ms = p.launch_overhead_ms + s.kernels * p.kernel_overhead_ms;
  c.ms = c.overhead_ms + std::max(c.compute_ms, c.memory_ms);
  c.energy_j = p.active_w * c.ms * 1e-3 + soc.soc.dram_pj_per_byte * 1e-12 * c.bytes;
  return c;
}

// Moving a cut tensor of `elems` f32 values between two processors of the SoC.
inline double transfer_ms(const SocProfile& soc, double elems) {
  return soc.transfer.latency_ms + elems * 4.0 / (soc.transfer.bandwidth_gbps * 1e9) * 1e3;
}
inline double transfer_energy_j(const SocProfile& soc, double elems) { return 2 * elems * 4.0 * soc.soc.dram_pj_per_byte * 1e-12; }

}  // namespace sparseloom::sim
