#pragma once
// Evaluates the small integer/shape ops that torch.onnx emits around Reshape (Shape, Gather,
// Unsqueeze, Concat, ...) when all their inputs are known, so the graph backends see has
// constant shapes only. Weight math (e.g. DequantizeLinear of int8 weights) is never folded.
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/core/tensor.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/shape_util.hpp"

namespace sparseloom::ir {

// Values of an integer (or f32) tensor as int64, bounded so a hostile file cannot ask for a
// huge allocation.
inline std::vector<std::int64_t> to_i64(const Tensor& t, const std::string& where) {
  const auto n = t.numel();
  check(n <= (1 << 20), ErrorCode::shape, where, "index tensor too large");
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  const Tensor c = t.contiguous();
  for (std::int64_t i = 0; i < n; ++i) {
    switch (c.dtype()) {
      case DType::i64: v[i] = c.data<std::int64_t>()[i]; break;
      case DType::i32: v[i] = c.data<std::int32_t>()[i]; break;
      case DType::i8: v[i] = c.data<std::int8_t>()[i]; break;
      case DType::u8: v[i] = c.data<std::uint8_t>()[i]; break;
      case DType::i16: v[i] = c.data<std::int16_t>()[i]; break;
      case DType::f32: v[i] = static_cast<std::int64_t>(c.data<float>()[i]); break;
    }
  }
  return v;
}

inline Tensor i64_tensor(const std::vector<std::int64_t>& v, Shape shape) {
  return Tensor::from<std::int64_t>(std::move(shape), v);
}

inline bool is_foldable_op(const std::string& op) {
  static const std::set<std::string> ops = {"Shape",    "Gather", "Unsqueeze", "Squeeze",
                                            "Concat",   "Slice",  "Cast",      "Identity",
                                            "ConstantOfShape", "Range", "Reshape", "Flatten"};
  return ops.count(op) != 0;
}

// Folds an arithmetic op only when every input is a small integer tensor (a shape computation).
inline bool is_foldable_integer_arith(const std::string& op, const std::vector<const Tensor*>& in) {
  if (op != "Add" && op != "Sub" && op != "Mul" && op != "Div") return false;
  for (const Tensor* t : in)
    if (!t || (t->dtype() != DType::i64 && t->dtype() != DType::i32) || t->numel() > 64) return false;
  return true;
}

}  // namespace sparseloom::ir

namespace sparseloom::ir::detail {

// Builds `out` (contiguous) by copying, for each output element, the source element whose
// flat index `src_index(out_multi_index)` returns. Only used on small constant tensors.
template <class F>
Tensor remap(const Tensor& src_in, Shape out_shape, F src_index) {
  const Tensor src = src_in.contiguous();
  Tensor out = Tensor::empty(out_shape, src.dtype());
  const std::size_t es = size_of(src.dtype());
  const auto n = out.numel();
  std::vector<std::int64_t> idx(out_shape.size(), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t s = src_index(idx);
    std::memcpy(out.raw() + static_cast<std::size_t>(i) * es, src.raw() + static_cast<std::size_t>(s) * es, es);
    for (std::size_t a = out_shape.size(); a-- > 0;) {
      if (++idx[a] < out_shape[a]) break;
      idx[a] = 0;
    }
  }
  return out;
}

inline std::int64_t flat(const std::vector<std::int64_t>& idx, const Shape& strides) {
  std::int64_t f = 0;
  for (std::size_t i = 0; i < idx.size(); ++i) f += idx[i] * strides[i];
  return f;
}

}  // namespace sparseloom::ir::detail

namespace sparseloom::ir {

// Evaluates a foldable node on constant inputs; returns nothing when it cannot (the node then
// stays in the graph and a backend runs it).
// With small_only (import-time folding) weight-sized inputs are left alone; backends call it
// with small_only = false to run the same layout ops on activations.
inline std::optional<std::vector<Tensor>> fold(const Node& n, const std::vector<const Tensor*>& in,
                                               const std::vector<Shape>& in_shapes, bool small_only = true) {
  using detail::flat;
  using detail::remap;
  const std::string w = n.where();
  auto need = [&](std::size_t i) { return i < in.size() && in[i] != nullptr; };
  if (n.op == "Shape") {
    Shape s = in_shapes.at(0);
    const auto r = static_cast<std::int64_t>(s.size());
    std::int64_t start = n.attr<std::int64_t>("start", 0), end = n.attr<std::int64_t>("end", r);
    start = std::clamp<std::int64_t>(start < 0 ? start + r : start, 0, r);
    end = std::clamp<std::int64_t>(end < 0 ? end + r : end, 0, r);
    std::vector<std::int64_t> v(s.begin() + start, s.begin() + std::max(start, end));
    return std::vector<Tensor>{i64_tensor(v, {static_cast<std::int64_t>(v.size())})};
  }
  for (std::size_t i = 0; i < n.inputs.size(); ++i)
    if (!n.inputs[i].empty() && !need(i)) return std::nullopt;
  if (is_foldable_integer_arith(n.op, in)) {
    const auto a = to_i64(*in[0], w), b = to_i64(*in[1], w);
    const Shape os = broadcast_shapes(in[0]->shape(), in[1]->shape(), w);
    const auto on = numel_of(os);
    std::vector<std::int64_t> r(static_cast<std::size_t>(on));
    for (std::int64_t i = 0; i < on; ++i) {
      const auto x = a[a.size() == 1 ? 0 : i], y = b[b.size() == 1 ? 0 : i];
      check(a.size() == 1 || b.size() == 1 || a.size() == b.size(), ErrorCode::unsupported, w,
            "general broadcasting in a shape computation");
      if (n.op == "Add") r[i] = x + y;
      else if (n.op == "Sub") r[i] = x - y;
      else if (n.op == "Mul") r[i] = x * y;
      else { check(y != 0, ErrorCode::shape, w, "division by zero"); r[i] = x / y; }
    }
    return std::vector<Tensor>{i64_tensor(r, os)};
  }
  if (!is_foldable_op(n.op)) return std::nullopt;
  // Weight-sized constants are left for the backend: folding is for shape computations.
  for (const Tensor* t : in)
    if (small_only && t && t->numel() > 4096) return std::nullopt;
  const Tensor& x = *in.at(0);
  if (n.op == "Identity") return std::vector<Tensor>{x};
  if (n.op == "Cast") {
    const auto to = n.attr<std::int64_t>("to");
    const auto v = to_i64(x, w);
    if (to == 7) return std::vector<Tensor>{i64_tensor(v, x.shape())};
    if (to == 1 && x.dtype() != DType::f32) {
      std::vector<float> f(v.begin(), v.end());
      return std::vector<Tensor>{Tensor::from<float>(x.shape(), f)};
    }
    if (to == 1) return std::vector<Tensor>{x.clone()};
    return std::nullopt;
  }
  if (n.op == "Unsqueeze" || n.op == "Squeeze") {
    std::vector<std::int64_t> axes = need(1) ? to_i64(*in[1], w)
                                             : n.attr<std::vector<std::int64_t>>("axes", {});
    Shape s = x.shape();
    if (n.op == "Unsqueeze") {
      const auto r = static_cast<std::int64_t>(s.size() + axes.size());
      for (auto& a : axes) a = normalize_axis(a, r, w);
      std::sort(axes.begin(), axes.end());
      for (auto a : axes) s.insert(s.begin() + a, 1);
    } else {
      const auto r = static_cast<std::int64_t>(s.size());
      Shape o;
      for (std::int64_t i = 0; i < r; ++i) {
        bool sq = axes.empty() ? s[i] == 1 : false;
        for (auto a : axes) sq |= normalize_axis(a, r, w) == i;
        if (!sq) o.push_back(s[i]);
      }
      s = o;
    }
    return std::vector<Tensor>{x.contiguous().reshape(s)};
  }
  if (n.op == "Reshape" || n.op == "Flatten") return std::nullopt;  // handled by inference
  if (n.op == "Gather") {
    const auto r = static_cast<std::int64_t>(x.rank());
    const auto axis = normalize_axis(n.attr<std::int64_t>("axis", 0), r, w);
    const auto idx = to_i64(*in[1], w);
    Shape os;
    for (std::int64_t i = 0; i < axis; ++i) os.push_back(x.shape()[i]);
    for (auto d : in[1]->shape()) os.push_back(d);
    for (std::int64_t i = axis + 1; i < r; ++i) os.push_back(x.shape()[i]);
    const Shape xs = contiguous_strides(x.shape()), is = contiguous_strides(in[1]->shape());
    const auto ir = static_cast<std::int64_t>(in[1]->rank());
    return std::vector<Tensor>{remap(x, os, [&](const std::vector<std::int64_t>& o) {
      std::int64_t k = 0;
      for (std::int64_t i = 0; i < ir; ++i) k += o[axis + i] * is[i];
      std::int64_t g = idx[k];
      if (g < 0) g += x.shape()[axis];
      check(g >= 0 && g < x.shape()[axis], ErrorCode::shape, w, "index out of range");
      std::int64_t f = g * xs[axis];
      for (std::int64_t i = 0; i < axis; ++i) f += o[i] * xs[i];
      for (std::int64_t i = axis + 1; i < r; ++i) f += o[i - 1 + ir] * xs[i];
      return f;
    })};
  }
  if (n.op == "Concat") {
    const auto r = static_cast<std::int64_t>(x.rank());
    const auto axis = normalize_axis(n.attr<std::int64_t>("axis"), r, w);
    Shape os = x.shape();
    os[axis] = 0;
    for (const Tensor* t : in) {
      check(t != nullptr, ErrorCode::parse, w, "empty input name");
      check(t->rank() == x.rank() && t->dtype() == x.dtype(), ErrorCode::shape, w, "inputs differ in rank or dtype");
      os[axis] += t->shape()[axis];
    }
    Tensor out = Tensor::empty(os, x.dtype());
    std::int64_t offset = 0;
    const auto os_strides = contiguous_strides(os);
    for (const Tensor* t : in) {
      const Tensor part = t->contiguous();
      const auto ps = contiguous_strides(part.shape());
      std::vector<std::int64_t> idx(os.size(), 0);
      const std::size_t es = size_of(x.dtype());
      for (std::int64_t i = 0; i < part.numel(); ++i) {
        auto o = idx;
        o[axis] += offset;
        std::memcpy(out.raw() + flat(o, os_strides) * es, part.raw() + flat(idx, ps) * es, es);
        for (std::size_t a = idx.size(); a-- > 0;) {
          if (++idx[a] < part.shape()[a]) break;
          idx[a] = 0;
        }
      }
      offset += part.shape()[axis];
    }
    return std::vector<Tensor>{out};
  }
  if (n.op == "Slice") {
    const auto r = static_cast<std::int64_t>(x.rank());
    const auto starts = to_i64(*in.at(1), w), ends = to_i64(*in.at(2), w);
    std::vector<std::int64_t> axes, steps;
    if (need(3)) axes = to_i64(*in[3], w);
    else for (std::int64_t i = 0; i < static_cast<std::int64_t>(starts.size()); ++i) axes.push_back(i);
    steps = need(4) ? to_i64(*in[4], w) : std::vector<std::int64_t>(starts.size(), 1);
    check(starts.size() == ends.size() && axes.size() == starts.size() && steps.size() == starts.size(),
          ErrorCode::shape, w, "starts/ends/axes/steps differ in length");
    std::vector<std::int64_t> b(r, 0), st(r, 1);
    Shape os = x.shape();
    for (std::size_t i = 0; i < axes.size(); ++i) {
      const auto a = normalize_axis(axes[i], r, w);
      const auto d = x.shape()[a];
      check(steps[i] != 0, ErrorCode::shape, w, "step 0");
      auto s0 = starts[i] < 0 ? starts[i] + d : starts[i];
      auto e0 = ends[i] < 0 ? ends[i] + d : ends[i];
      if (steps[i] > 0) {
        s0 = std::clamp<std::int64_t>(s0, 0, d);
        e0 = std::clamp<std::int64_t>(e0, 0, d);
        os[a] = std::max<std::int64_t>(0, (e0 - s0 + steps[i] - 1) / steps[i]);
      } else {
        s0 = std::clamp<std::int64_t>(s0, -1, d - 1);
        e0 = std::clamp<std::int64_t>(e0, -1, d - 1);
        os[a] = std::max<std::int64_t>(0, (s0 - e0 - steps[i] - 1) / -steps[i]);
      }
      b[a] = s0;
      st[a] = steps[i];
    }
    const Shape xs = contiguous_strides(x.shape());
    return std::vector<Tensor>{remap(x, os, [&](const std::vector<std::int64_t>& o) {
      std::int64_t f = 0;
      for (std::int64_t i = 0; i < r; ++i) f += (b[i] + o[i] * st[i]) * xs[i];
      return f;
    })};
  }
  if (n.op == "ConstantOfShape") {
    const auto s = to_i64(x, w);
    if (numel_of(Shape(s.begin(), s.end()), w) > 4096) return std::nullopt;
    Tensor value = n.has("value") ? n.attr<Tensor>("value") : Tensor::zeros({1}, DType::f32);
    return std::vector<Tensor>{remap(value, Shape(s.begin(), s.end()), [](const auto&) { return std::int64_t{0}; })};
  }
  if (n.op == "Range") {
    const auto s = to_i64(x, w).at(0), l = to_i64(*in.at(1), w).at(0), d = to_i64(*in.at(2), w).at(0);
    check(d != 0, ErrorCode::shape, w, "delta 0");
    std::vector<std::int64_t> v;
    for (auto i = s; (d > 0 ? i < l : i > l) && v.size() < 4096; i += d) v.push_back(i);
    return std::vector<Tensor>{i64_tensor(v, {static_cast<std::int64_t>(v.size())})};
  }
  return std::nullopt;
}

}  // namespace sparseloom::ir
