#pragma once
// Shape and dtype inference for every op SparseLoom imports, interleaved with constant
// folding of shape computations. After it, every tensor in Graph::values has a fixed shape,
// which is what lets a backend compile a subgraph once and run it many times.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/ir/constant_fold.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/shape_util.hpp"

namespace sparseloom::ir {

inline const std::set<std::string>& supported_ops() {
  static const std::set<std::string> ops = {
      "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Relu", "LeakyRelu", "Clip",
      "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Sqrt", "Neg", "Exp", "Abs",
      "Reciprocal", "Gelu", "Softmax", "BatchNormalization", "MaxPool", "AveragePool",
      "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze",
      "LayerNormalization", "ReduceMean", "QuantizeLinear", "DequantizeLinear", "Identity",
      "Shape", "Gather", "Slice", "Cast", "ConstantOfShape", "Range", "Split", "Dropout"};
  return ops;
}

struct Arity {
  int min_in, max_in, max_out;
};

// Inputs and outputs each op may have, checked before any rule reads them.
inline Arity arity(const std::string& op) {
  static const std::map<std::string, Arity> table = {
      {"Conv", {2, 3, 1}}, {"Gemm", {2, 3, 1}}, {"MatMul", {2, 2, 1}}, {"Add", {2, 2, 1}},
      {"Sub", {2, 2, 1}}, {"Mul", {2, 2, 1}}, {"Div", {2, 2, 1}}, {"Pow", {2, 2, 1}},
      {"Clip", {1, 3, 1}}, {"Dropout", {1, 3, 1}}, {"BatchNormalization", {5, 5, 1}},
      {"LayerNormalization", {2, 3, 1}}, {"Reshape", {2, 2, 1}}, {"Concat", {1, 1 << 16, 1}},
      {"Squeeze", {1, 2, 1}}, {"Unsqueeze", {1, 2, 1}}, {"ReduceMean", {1, 2, 1}},
      {"QuantizeLinear", {2, 3, 1}}, {"DequantizeLinear", {2, 3, 1}}, {"Gather", {2, 2, 1}},
      {"Slice", {3, 5, 1}}, {"Range", {3, 3, 1}}, {"Split", {1, 2, 1 << 16}}};
  auto it = table.find(op);
  return it == table.end() ? Arity{1, 1, 1} : it->second;
}

namespace detail {

inline bool is_unary_same(const std::string& op) {
  static const std::set<std::string> ops = {
      "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Sqrt",
      "Neg", "Exp", "Abs", "Reciprocal", "Gelu", "Softmax", "BatchNormalization",
      "LayerNormalization", "Identity", "Dropout"};
  return ops.count(op) != 0;
}

inline DType onnx_dtype(std::int64_t t, const std::string& where) {
  switch (t) {
    case 1: return DType::f32;
    case 2: return DType::u8;
    case 3: return DType::i8;
    case 6: return DType::i32;
    case 7: return DType::i64;
    default: throw Error(ErrorCode::unsupported, where, "tensor element type " + std::to_string(t));
  }
}

}  // namespace detail

// Infers the outputs of one node from its inputs' shapes (and constant inputs where the
// output shape depends on values, e.g. Reshape).
inline std::vector<ValueInfo> infer_node(const Graph& g, const Node& n) {
  const std::string w = g.source + ": " + n.where();
  auto shape = [&](std::size_t i) -> const Shape& {
    check(n.has_input(i), ErrorCode::parse, w, "missing input " + std::to_string(i));
    return g.value(n.inputs[i]).shape;
  };
  auto dtype = [&](std::size_t i) { return g.value(n.inputs.at(i)).dtype; };
  auto constant = [&](std::size_t i) -> const Tensor& {
    check(n.has_input(i) && g.is_initializer(n.inputs[i]), ErrorCode::unsupported, w,
          "input " + std::to_string(i) + " must be a constant (dynamic shapes are not supported)");
    return g.initializers.at(n.inputs[i]);
  };
  auto one = [&](Shape s, DType t) {
    check(!n.outputs.empty(), ErrorCode::parse, w, "node has no outputs");
    return std::vector<ValueInfo>{{n.outputs[0], std::move(s), t}};
  };
  const std::string& op = n.op;
  if (detail::is_unary_same(op)) {
    if (op == "Softmax") normalize_axis(n.attr<std::int64_t>("axis", -1), static_cast<std::int64_t>(shape(0).size()), w);
    if (op == "BatchNormalization") {
      check(shape(0).size() >= 2, ErrorCode::shape, w, "input must have a channel dimension");
      for (std::size_t i = 1; i < 5; ++i)
        check(numel_of(shape(i)) == shape(0)[1], ErrorCode::shape, w,
              "parameter " + std::to_string(i) + " has " + std::to_string(numel_of(shape(i))) +
                  " values for " + std::to_string(shape(0)[1]) + " channels");
    }
    auto r = one(shape(0), dtype(0));
    return r;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow")
    return one(broadcast_shapes(shape(0), shape(1), w), dtype(0));
  if (op == "Conv") {
    const Shape& x = shape(0);
    const Shape& k = shape(1);
    check(x.size() >= 3 && k.size() == x.size(), ErrorCode::shape, w,
          "input " + to_string(x) + " and weight " + to_string(k) + " ranks do not fit");
    const auto group = n.attr<std::int64_t>("group", 1);
    check(group > 0 && x[1] % group == 0 && k[0] % group == 0 && k[1] * group == x[1], ErrorCode::shape, w,
          "weight " + to_string(k) + " does not fit input " + to_string(x) + " with group " + std::to_string(group));
    if (n.has_input(2)) check(numel_of(shape(2)) == k[0], ErrorCode::shape, w, "bias size differs from output channels");
    std::vector<std::int64_t> ks(k.begin() + 2, k.end());
    if (n.has("kernel_shape")) check(n.attr<std::vector<std::int64_t>>("kernel_shape") == ks, ErrorCode::shape, w, "kernel_shape differs from the weight");
    const Window win = make_window(x, ks, n.attr<std::vector<std::int64_t>>("strides", {}),
                                   n.attr<std::vector<std::int64_t>>("dilations", {}),
                                   n.attr<std::vector<std::int64_t>>("pads", {}),
                                   n.attr<std::string>("auto_pad", "NOTSET"), false, w);
    Shape o{x[0], k[0]};
    o.insert(o.end(), win.out.begin(), win.out.end());
    return one(o, DType::f32);
  }
  if (op == "MaxPool" || op == "AveragePool") {
    const Window win = make_window(shape(0), n.attr<std::vector<std::int64_t>>("kernel_shape"),
                                   n.attr<std::vector<std::int64_t>>("strides", {}),
                                   n.attr<std::vector<std::int64_t>>("dilations", {}),
                                   n.attr<std::vector<std::int64_t>>("pads", {}),
                                   n.attr<std::string>("auto_pad", "NOTSET"),
                                   n.attr<std::int64_t>("ceil_mode", 0) != 0, w);
    Shape o{shape(0)[0], shape(0)[1]};
    o.insert(o.end(), win.out.begin(), win.out.end());
    check(n.outputs.size() == 1, ErrorCode::unsupported, w, "MaxPool indices output");
    return one(o, dtype(0));
  }
  if (op == "GlobalAveragePool") {
    Shape o = shape(0);
    check(o.size() >= 3, ErrorCode::shape, w, "input must be N x C x spatial");
    for (std::size_t i = 2; i < o.size(); ++i) o[i] = 1;
    return one(o, dtype(0));
  }
  if (op == "Gemm") {
    const Shape& a = shape(0);
    const Shape& b = shape(1);
    check(a.size() == 2 && b.size() == 2, ErrorCode::shape, w, "Gemm needs 2-D A and B");
    const bool ta = n.attr<std::int64_t>("transA", 0), tb = n.attr<std::int64_t>("transB", 0);
    const auto m = ta ? a[1] : a[0], k = ta ? a[0] : a[1];
    const auto k2 = tb ? b[1] : b[0], nn = tb ? b[0] : b[1];
    check(k == k2, ErrorCode::shape, w, "A " + to_string(a) + " and B " + to_string(b) + " do not multiply");
    if (n.has_input(2)) broadcast_shapes(shape(2), {m, nn}, w);
    return one({m, nn}, DType::f32);
  }
  if (op == "MatMul") {
    Shape a = shape(0), b = shape(1);
    check(!a.empty() && !b.empty(), ErrorCode::shape, w, "MatMul of a scalar");
    const bool a1 = a.size() == 1, b1 = b.size() == 1;
    if (a1) a.insert(a.begin(), 1);
    if (b1) b.push_back(1);
    check(a.back() == b[b.size() - 2], ErrorCode::shape, w,
          "inner dimensions of " + to_string(shape(0)) + " and " + to_string(shape(1)) + " differ");
    Shape batch = broadcast_shapes(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2), w);
    if (!a1) batch.push_back(a[a.size() - 2]);
    if (!b1) batch.push_back(b.back());
    return one(batch, DType::f32);
  }
  if (op == "Flatten") {
    const Shape& x = shape(0);
    const auto axis = normalize_axis(n.attr<std::int64_t>("axis", 1), static_cast<std::int64_t>(x.size()) + 1, w);
    std::int64_t a = 1, b = 1;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.size()); ++i) (i < axis ? a : b) *= x[i];
    return one({a, b}, dtype(0));
  }
  if (op == "Reshape") {
    const Shape& x = shape(0);
    auto target = to_i64(constant(1), w);
    const bool allowzero = n.attr<std::int64_t>("allowzero", 0) != 0;
    std::int64_t known = 1, infer = -1;
    for (std::size_t i = 0; i < target.size(); ++i) {
      if (target[i] == 0 && !allowzero) {
        check(i < x.size(), ErrorCode::shape, w, "0 in shape refers to a missing input dim");
        target[i] = x[i];
      }
      if (target[i] == -1) {
        check(infer < 0, ErrorCode::shape, w, "more than one -1 in the target shape");
        infer = static_cast<std::int64_t>(i);
      } else {
        check(target[i] >= 0, ErrorCode::shape, w, "negative dimension in the target shape");
        check(target[i] == 0 || known <= (std::int64_t{1} << 40) / target[i], ErrorCode::shape, w,
              "target shape too large");
        known *= target[i];
      }
    }
    const auto total = numel_of(x, w);
    if (infer >= 0) {
      check(known > 0 && total % known == 0, ErrorCode::shape, w, "cannot infer -1 for " + to_string(x));
      target[infer] = total / known;
    }
    check(numel_of(target, w) == total, ErrorCode::shape, w,
          "cannot reshape " + to_string(x) + " to " + to_string(target));
    return one(target, dtype(0));
  }
  if (op == "Transpose") {
    const Shape& x = shape(0);
    auto perm = n.attr<std::vector<std::int64_t>>("perm", {});
    if (perm.empty()) for (std::size_t i = x.size(); i-- > 0;) perm.push_back(static_cast<std::int64_t>(i));
    check(perm.size() == x.size(), ErrorCode::shape, w, "perm length differs from rank");
    Shape o;
    std::vector<bool> seen(x.size(), false);
    for (auto p : perm) {
      check(p >= 0 && p < static_cast<std::int64_t>(x.size()) && !seen[p], ErrorCode::shape, w, "perm is not a permutation");
      seen[p] = true;
      o.push_back(x[p]);
    }
    return one(o, dtype(0));
  }
  if (op == "Concat") {
    Shape o = shape(0);
    const auto axis = normalize_axis(n.attr<std::int64_t>("axis"), static_cast<std::int64_t>(o.size()), w);
    o[axis] = 0;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      const Shape& s = shape(i);
      check(s.size() == o.size(), ErrorCode::shape, w, "inputs differ in rank");
      for (std::size_t d = 0; d < s.size(); ++d)
        check(static_cast<std::int64_t>(d) == axis || s[d] == shape(0)[d], ErrorCode::shape, w, "inputs differ off the concat axis");
      o[axis] += s[axis];
    }
    return one(o, dtype(0));
  }
  if (op == "Squeeze" || op == "Unsqueeze") {
    std::vector<std::int64_t> axes = n.has_input(1) ? to_i64(constant(1), w) : n.attr<std::vector<std::int64_t>>("axes", {});
    Shape s = shape(0);
    if (op == "Unsqueeze") {
      const auto r = static_cast<std::int64_t>(s.size() + axes.size());
      for (auto& a : axes) a = normalize_axis(a, r, w);
      std::sort(axes.begin(), axes.end());
      for (auto a : axes) s.insert(s.begin() + a, 1);
      return one(s, dtype(0));
    }
    const auto r = static_cast<std::int64_t>(s.size());
    Shape o;
    for (std::int64_t i = 0; i < r; ++i) {
      bool sq = axes.empty() && s[i] == 1;
      for (auto a : axes) {
        if (normalize_axis(a, r, w) != i) continue;
        check(s[i] == 1, ErrorCode::shape, w, "squeezing a dimension that is not 1");
        sq = true;
      }
      if (!sq) o.push_back(s[i]);
    }
    return one(o, dtype(0));
  }
  if (op == "ReduceMean") {
    Shape s = shape(0);
    const auto r = static_cast<std::int64_t>(s.size());
    std::vector<std::int64_t> axes = n.has_input(1) ? to_i64(constant(1), w) : n.attr<std::vector<std::int64_t>>("axes", {});
    const bool keep = n.attr<std::int64_t>("keepdims", 1) != 0;
    std::vector<bool> red(s.size(), axes.empty());
    for (auto a : axes) red[normalize_axis(a, r, w)] = true;
    Shape o;
    for (std::int64_t i = 0; i < r; ++i) {
      if (!red[i]) o.push_back(s[i]);
      else if (keep) o.push_back(1);
    }
    return one(o, dtype(0));
  }
  if (op == "QuantizeLinear" || op == "DequantizeLinear") {
    const Shape& x = shape(0);
    const auto scales = numel_of(shape(1), w);
    if (scales != 1) {
      const auto axis = normalize_axis(n.attr<std::int64_t>("axis", 1), static_cast<std::int64_t>(x.size()), w);
      check(x[axis] == scales, ErrorCode::shape, w, "per-axis scale has " + std::to_string(scales) +
            " values for dimension " + std::to_string(x[axis]));
    }
    if (n.has_input(2)) check(numel_of(shape(2), w) == scales, ErrorCode::shape, w, "zero point and scale sizes differ");
    if (op == "DequantizeLinear") return one(x, DType::f32);
    const DType t = n.has_input(2) ? dtype(2) : DType::u8;
    check(t == DType::u8 || t == DType::i8, ErrorCode::unsupported, w, "quantizing to " + std::string(to_string(t)));
    return one(x, t);
  }
  if (op == "Cast") return one(shape(0), detail::onnx_dtype(n.attr<std::int64_t>("to"), w));
  if (op == "Split") {
    const Shape& x = shape(0);
    const auto axis = normalize_axis(n.attr<std::int64_t>("axis", 0), static_cast<std::int64_t>(x.size()), w);
    std::vector<std::int64_t> parts = n.has_input(1) ? to_i64(constant(1), w) : n.attr<std::vector<std::int64_t>>("split", {});
    const auto k = static_cast<std::int64_t>(n.outputs.size());
    if (parts.empty()) {
      check(k > 0 && x[axis] % k == 0, ErrorCode::shape, w, "cannot split evenly");
      parts.assign(k, x[axis] / k);
    }
    check(static_cast<std::int64_t>(parts.size()) == k, ErrorCode::shape, w, "split sizes differ from outputs");
    std::int64_t sum = 0;
    std::vector<ValueInfo> out;
    for (std::int64_t i = 0; i < k; ++i) {
      Shape o = x;
      o[axis] = parts[i];
      sum += parts[i];
      out.push_back({n.outputs[i], o, dtype(0)});
    }
    check(sum == x[axis], ErrorCode::shape, w, "split sizes do not add up");
    return out;
  }
  throw Error(ErrorCode::unsupported, w, "cannot infer the shape of op '" + op +
              "' with non-constant inputs");
}

// Runs inference over the whole graph in order, folding constant shape computations into
// initializers. Graph inputs must already have entries in g.values.
inline void infer_shapes(Graph& g) {
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (auto& n : g.nodes) {
    const std::string w = g.source + ": " + n.where();
    check(supported_ops().count(n.op) != 0, ErrorCode::unsupported, w, "op '" + n.op + "' is not supported");
    const Arity a = arity(n.op);
    check(static_cast<int>(n.inputs.size()) <= a.max_in && n.has_input(0) &&
              static_cast<int>(n.inputs.size()) >= a.min_in,
          ErrorCode::parse, w, "has " + std::to_string(n.inputs.size()) + " inputs, expected " +
              std::to_string(a.min_in) + (a.max_in != a.min_in ? " to " + std::to_string(a.max_in) : std::string()));
    for (int i = 0; i < a.min_in; ++i)
      check(n.has_input(static_cast<std::size_t>(i)), ErrorCode::parse, w, "required input " + std::to_string(i) + " is empty");
    check(!n.outputs.empty() && static_cast<int>(n.outputs.size()) <= a.max_out, ErrorCode::unsupported, w,
          "has " + std::to_string(n.outputs.size()) + " outputs (optional extra outputs are not supported)");
    std::vector<const Tensor*> in;
    std::vector<Shape> shapes;
    for (const auto& name : n.inputs) {
      if (name.empty()) { in.push_back(nullptr); shapes.emplace_back(); continue; }
      auto it = g.initializers.find(name);
      in.push_back(it == g.initializers.end() ? nullptr : &it->second);
      auto v = g.values.find(name);
      check(v != g.values.end(), ErrorCode::parse, w, "input '" + name + "' is never produced");
      shapes.push_back(v->second.shape);
    }
    if (auto folded = fold(n, in, shapes)) {
      check(folded->size() == n.outputs.size(), ErrorCode::internal, w, "fold output count");
      for (std::size_t i = 0; i < folded->size(); ++i) {
        g.values[n.outputs[i]] = {n.outputs[i], (*folded)[i].shape(), (*folded)[i].dtype()};
        g.initializers[n.outputs[i]] = (*folded)[i];
      }
      continue;
    }
    for (auto& vi : infer_node(g, n)) g.values[vi.name] = vi;
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  for (auto& o : g.outputs) {
    auto v = g.values.find(o.name);
    check(v != g.values.end(), ErrorCode::parse, g.source, "graph output '" + o.name + "' is never produced");
    o = v->second;
  }
  // Initializers used only by folded nodes are dead weight now.
  std::set<std::string> used;
  for (const auto& n : g.nodes) used.insert(n.inputs.begin(), n.inputs.end());
  for (const auto& o : g.outputs) used.insert(o.name);
  std::erase_if(g.initializers, [&](const auto& kv) { return !used.count(kv.first); });
}

}  // namespace sparseloom::ir
