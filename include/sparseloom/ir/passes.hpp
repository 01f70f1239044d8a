#pragma once
// Graph rewrites that keep semantics: BatchNormalization folded into the Conv before it.
#include <cmath>
#include <map>
#include <string>

#include "sparseloom/ir/graph.hpp"

namespace sparseloom::ir {

inline std::map<std::string, int> consumer_counts(const Graph& g) {
  std::map<std::string, int> c;
  for (const auto& n : g.nodes)
    for (const auto& in : n.inputs) ++c[in];
  for (const auto& o : g.outputs) ++c[o.name];
  return c;
}

// y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta  ==  conv'(x) with scaled weights and
// a new bias. Only when the Conv output feeds nothing but the BN and all parameters are constant.
inline void fold_batchnorm(Graph& g) {
  auto consumers = consumer_counts(g);
  std::vector<bool> erase(g.nodes.size(), false);
  for (std::size_t bi = 0; bi < g.nodes.size(); ++bi) {
    Node& bn = g.nodes[bi];
    if (bn.op != "BatchNormalization" || bn.outputs.size() != 1) continue;
    bool params_const = true;
    for (std::size_t i = 1; i < 5; ++i) params_const &= bn.has_input(i) && g.is_initializer(bn.inputs[i]);
    if (!params_const || consumers[bn.inputs[0]] != 1) continue;
    std::size_t ci = bi;
    for (std::size_t j = 0; j < bi; ++j)
      if (!erase[j] && g.nodes[j].op == "Conv" && g.nodes[j].outputs[0] == bn.inputs[0]) ci = j;
    if (ci == bi) continue;
    Node& conv = g.nodes[ci];
    if (!g.is_initializer(conv.inputs[1]) || (conv.has_input(2) && !g.is_initializer(conv.inputs[2]))) continue;
    const Tensor w = g.initializers.at(conv.inputs[1]).contiguous();
    if (w.dtype() != DType::f32) continue;
    const auto m = w.dim(0);
    const auto per = w.numel() / m;
    auto vec = [&](std::size_t i) { return g.initializers.at(bn.inputs[i]).contiguous(); };
    const Tensor gamma = vec(1), beta = vec(2), mean = vec(3), var = vec(4);
    if (gamma.dtype() != DType::f32 || gamma.numel() != m) continue;
    const float eps = bn.attr<float>("epsilon", 1e-5f);
    Tensor nw = w.clone();
    Tensor nb = Tensor::zeros({m}, DType::f32);
    const float* old_b = conv.has_input(2) ? g.initializers.at(conv.inputs[2]).contiguous().data<float>() : nullptr;
    for (std::int64_t c = 0; c < m; ++c) {
      const float s = gamma.data<float>()[c] / std::sqrt(var.data<float>()[c] + eps);
      for (std::int64_t k = 0; k < per; ++k) nw.data<float>()[c * per + k] *= s;
      nb.data<float>()[c] = ((old_b ? old_b[c] : 0.f) - mean.data<float>()[c]) * s + beta.data<float>()[c];
    }
    const std::string wn = conv.name + ".bnfold.weight", bnn = conv.name + ".bnfold.bias";
    g.initializers[wn] = nw;
    g.initializers[bnn] = nb;
    g.values[wn] = {wn, nw.shape(), DType::f32};
    g.values[bnn] = {bnn, nb.shape(), DType::f32};
    conv.inputs.resize(3);
    conv.inputs[1] = wn;
    conv.inputs[2] = bnn;
    g.values.erase(conv.outputs[0]);
    conv.outputs[0] = bn.outputs[0];
    erase[bi] = true;
  }
  std::vector<Node> kept;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (!erase[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  std::set<std::string> used;
  for (const auto& n : g.nodes) used.insert(n.inputs.begin(), n.inputs.end());
  std::erase_if(g.initializers, [&](const auto& kv) { return !used.count(kv.first); });
}

}  // namespace sparseloom::ir
