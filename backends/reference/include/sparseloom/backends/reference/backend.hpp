#pragma once
// The reference backend: executes any imported graph, f32 and QDQ INT8 (Q/DQ run literally in
// float, as ONNX specifies), single- or multi-threaded. The numerical oracle for other backends.
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "sparseloom/backends/reference/elementwise.hpp"
#include "sparseloom/backends/reference/linear.hpp"
#include "sparseloom/concepts/backend.hpp"
#include "sparseloom/ir/constant_fold.hpp"
#include "sparseloom/ir/graph.hpp"

namespace sparseloom::reference {

inline Tensor transpose(const Tensor& x, const std::vector<std::int64_t>& perm_in) {
  std::vector<std::int64_t> perm = perm_in;
  if (perm.empty())
    for (std::size_t i = x.rank(); i-- > 0;) perm.push_back(static_cast<std::int64_t>(i));
  check(perm.size() == x.rank(), ErrorCode::shape, "Transpose", "perm does not match the input rank");
  const Tensor src = x.contiguous();
  const Shape xs = contiguous_strides(src.shape());
  Shape os, st;  // output shape; input stride of each output axis
  for (auto p : perm) {
    check(p >= 0 && p < static_cast<std::int64_t>(src.rank()), ErrorCode::shape, "Transpose", "perm axis out of range");
    os.push_back(src.shape()[p]);
    st.push_back(xs[p]);
  }
  Tensor y = Tensor::empty(os, src.dtype());
  const auto n = y.numel();
  const std::size_t es = size_of(src.dtype());
  if (n == 0 || src.rank() == 0) {
    if (n) std::memcpy(y.raw(), src.raw(), es);
    return y;
  }
  const std::byte* in = src.raw();
  std::byte* out = y.raw();
  // Walks the output in order, the input offset following (an odometer over the output axes).
  const std::size_t r = os.size();
  const std::int64_t inner = os[r - 1], step = st[r - 1];
  std::vector<std::int64_t> idx(r, 0);
  std::int64_t off = 0;
  for (std::int64_t i = 0; i < n; i += inner) {
    if (es == 4) {
      for (std::int64_t k = 0; k < inner; ++k) std::memcpy(out + (i + k) * 4, in + (off + k * step) * 4, 4);
    } else {
      for (std::int64_t k = 0; k < inner; ++k) std::memcpy(out + (i + k) * es, in + (off + k * step) * es, es);
    }
    for (std::size_t a = r - 1; a-- > 0;) {
      off += st[a];
      if (++idx[a] < os[a]) break;
      off -= st[a] * os[a];
      idx[a] = 0;
    }
  }
  return y;
}

inline void apply_affine(Tensor& t, const ChannelAffine& a, const std::string& name) {
  check(t.rank() >= 2 && t.dtype() == DType::f32, ErrorCode::shape, name, "affine repair needs an f32 N x C x ... tensor");
  const auto c = t.dim(1);
  check(static_cast<std::int64_t>(a.scale.size()) == c && a.shift.size() == a.scale.size(), ErrorCode::shape, name,
        "affine repair has " + std::to_string(a.scale.size()) + " channels, tensor has " + std::to_string(c));
  t = t.contiguous();
  std::int64_t inner = 1;
  for (std::size_t i = 2; i < t.rank(); ++i) inner *= t.dim(i);
  float* p = t.data<float>();
  for (std::int64_t n = 0; n < t.dim(0); ++n)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t k = 0; k < inner; ++k) {
        float& v = p[(n * c + ch) * inner + k];
        v = v * a.scale[ch] + a.shift[ch];
      }
}

class Executable {
 public:
  Executable(ir::Graph g, int threads) : g_(std::move(g)), threads_(threads) { precompute_constants(); }

  const ir::Graph& graph() const noexcept { return g_; }
  // What it holds: the graph's initializers plus the outputs precomputed from them (the
  // preloader counts this as the block's resident bytes).
  std::size_t resident_bytes() const {
    std::size_t n = 0;
    for (const auto& [_, t] : g_.initializers) n += t.nbytes();
    for (const auto& outs : constant_)
      if (outs)
        for (const auto& t : *outs) n += t.nbytes();
    return n;
  }

  std::vector<Tensor> run(std::span<const Tensor> inputs, const RunOptions& ro = {}) const {
    check(inputs.size() == g_.inputs.size(), ErrorCode::invalid_argument, g_.source,
          "expected " + std::to_string(g_.inputs.size()) + " inputs, got " + std::to_string(inputs.size()));
    std::unordered_map<std::string, Tensor> env;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const auto& vi = g_.inputs[i];
      check(inputs[i].shape() == vi.shape && inputs[i].dtype() == vi.dtype, ErrorCode::shape, g_.source,
            "input '" + vi.name + "' must be " + std::string(to_string(vi.dtype)) + to_string(vi.shape) + ", got " +
                std::string(to_string(inputs[i].dtype())) + to_string(inputs[i].shape()));
      env[vi.name] = inputs[i];
    }
    auto get = [&](const ir::Node& n, std::size_t i) -> const Tensor& {
      const std::string& name = n.inputs.at(i);
      if (auto it = env.find(name); it != env.end()) return it->second;
      if (auto it = g_.initializers.find(name); it != g_.initializers.end()) return it->second;
      throw Error(ErrorCode::internal, g_.source + ": " + n.where(), "input '" + name + "' not computed");
    };
    for (std::size_t k = 0; k < g_.nodes.size(); ++k) {
      const ir::Node& n = g_.nodes[k];
      std::vector<Tensor> outs = constant_[k] ? *constant_[k] : eval(n, get);
      for (std::size_t i = 0; i < outs.size() && i < n.outputs.size(); ++i) {
        if (ro.affine)
          if (auto it = ro.affine->find(n.outputs[i]); it != ro.affine->end()) {
            outs[i] = outs[i].clone();
            apply_affine(outs[i], it->second, g_.source + ": tensor '" + n.outputs[i] + "'");
          }
        if (ro.observe) ro.observe(n.outputs[i], outs[i]);
        env[n.outputs[i]] = std::move(outs[i]);
      }
    }
    std::vector<Tensor> result;
    for (const auto& o : g_.outputs) {
      if (auto it = env.find(o.name); it != env.end()) result.push_back(it->second);
      else result.push_back(g_.initializers.at(o.name));
    }
    return result;
  }

 private:
  // A node whose inputs are all initializers (or such nodes' outputs), e.g. the DequantizeLinear
  // of an INT8 weight, gives the same outputs on every run: evaluated once here by the same
  // eval() and reused by run(), so results are bit-identical. One that fails is left to fail
  // (with its usual error) at run time.
  void precompute_constants() {
    constant_.resize(g_.nodes.size());
    std::unordered_map<std::string, Tensor> known;
    auto get = [&](const ir::Node& n, std::size_t i) -> const Tensor& {
      const std::string& name = n.inputs.at(i);
      if (auto it = known.find(name); it != known.end()) return it->second;
      return g_.initializers.at(name);
    };
    for (std::size_t k = 0; k < g_.nodes.size(); ++k) {
      const ir::Node& n = g_.nodes[k];
      bool is_constant = !n.inputs.empty();
      for (const auto& in : n.inputs) is_constant &= in.empty() || g_.is_initializer(in) || known.count(in) != 0;
      if (!is_constant) continue;
      try {
        std::vector<Tensor> outs = eval(n, get);
        for (std::size_t i = 0; i < outs.size() && i < n.outputs.size(); ++i) known[n.outputs[i]] = outs[i];
        constant_[k] = std::move(outs);
      } catch (const std::exception&) {
      }
    }
  }

  template <class Get>
  std::vector<Tensor> eval(const ir::Node& n, Get&& get) const {
    const std::string& op = n.op;
    const std::string where = g_.source + ": " + n.where();
    auto opt = [&](std::size_t i) -> const Tensor* { return n.has_input(i) ? &get(n, i) : nullptr; };
    auto one = [](Tensor t) { return std::vector<Tensor>{std::move(t)}; };
    if (op == "Conv") {
      const Tensor& x = get(n, 0);
      const Tensor& w = get(n, 1);
      std::vector<std::int64_t> ks(w.shape().begin() + 2, w.shape().end());
      ConvParams p{ir::make_window(x.shape(), ks, n.attr<std::vector<std::int64_t>>("strides", {}),
                                   n.attr<std::vector<std::int64_t>>("dilations", {}),
                                   n.attr<std::vector<std::int64_t>>("pads", {}),
                                   n.attr<std::string>("auto_pad", "NOTSET"), false, where),
                   n.attr<std::int64_t>("group", 1)};
      return one(conv(x, w, opt(2), p, threads_));
    }
    if (op == "Gemm")
      return one(gemm(get(n, 0), get(n, 1), opt(2), n.attr<float>("alpha", 1.f), n.attr<float>("beta", 1.f),
                      n.attr<std::int64_t>("transA", 0) != 0, n.attr<std::int64_t>("transB", 0) != 0, threads_));
    if (op == "MatMul") return one(matmul(get(n, 0), get(n, 1), threads_));
    if (op == "Add") return one(binary(get(n, 0), get(n, 1), std::plus<float>{}, where));
    if (op == "Sub") return one(binary(get(n, 0), get(n, 1), std::minus<float>{}, where));
    if (op == "Mul") return one(binary(get(n, 0), get(n, 1), std::multiplies<float>{}, where));
    if (op == "Div") return one(binary(get(n, 0), get(n, 1), std::divides<float>{}, where));
    if (op == "Pow") return one(binary(get(n, 0), get(n, 1), [](float a, float b) { return b == 2.f ? a * a : std::pow(a, b); }, where));
    if (op == "Relu") return one(unary(get(n, 0), [](float v) { return v > 0.f ? v : 0.f; }));
    if (op == "LeakyRelu") {
      const float a = n.attr<float>("alpha", 0.01f);
      return one(unary(get(n, 0), [a](float v) { return v >= 0.f ? v : a * v; }));
    }
    if (op == "Clip") {
      float lo = n.attr<float>("min", -std::numeric_limits<float>::infinity());
      float hi = n.attr<float>("max", std::numeric_limits<float>::infinity());
      if (const Tensor* t = opt(1)) lo = t->contiguous().data<float>()[0];
      if (const Tensor* t = opt(2)) hi = t->contiguous().data<float>()[0];
      return one(unary(get(n, 0), [lo, hi](float v) { return std::min(std::max(v, lo), hi); }));
    }
    if (op == "Sigmoid") return one(unary(get(n, 0), [](float v) { return 1.f / (1.f + std::exp(-v)); }));
    if (op == "HardSigmoid") {
      const float a = n.attr<float>("alpha", 0.2f), b = n.attr<float>("beta", 0.5f);
      return one(unary(get(n, 0), [a, b](float v) { return std::clamp(a * v + b, 0.f, 1.f); }));
    }
    if (op == "HardSwish") return one(unary(get(n, 0), [](float v) { return v * std::clamp(v / 6.f + 0.5f, 0.f, 1.f); }));
    if (op == "Tanh") return one(unary(get(n, 0), [](float v) { return std::tanh(v); }));
    if (op == "Erf") return one(unary(get(n, 0), [](float v) { return std::erf(v); }));
    if (op == "Gelu") return one(unary(get(n, 0), [](float v) { return 0.5f * v * (1.f + std::erf(v * 0.70710678f)); }));
    if (op == "Sqrt") return one(unary(get(n, 0), [](float v) { return std::sqrt(v); }));
    if (op == "Neg") return one(unary(get(n, 0), [](float v) { return -v; }));
    if (op == "Exp") return one(unary(get(n, 0), [](float v) { return std::exp(v); }));
    if (op == "Abs") return one(unary(get(n, 0), [](float v) { return std::fabs(v); }));
    if (op == "Reciprocal") return one(unary(get(n, 0), [](float v) { return 1.f / v; }));
    if (op == "Identity" || op == "Dropout") return one(get(n, 0));
    if (op == "Softmax")
      return one(softmax(get(n, 0), ir::normalize_axis(n.attr<std::int64_t>("axis", -1), static_cast<std::int64_t>(get(n, 0).rank()), where)));
    if (op == "BatchNormalization")
      return one(batch_norm(get(n, 0), get(n, 1), get(n, 2), get(n, 3), get(n, 4), n.attr<float>("epsilon", 1e-5f)));
    if (op == "LayerNormalization") {
      const Tensor& x = get(n, 0);
      return one(layer_norm(x, get(n, 1), opt(2), ir::normalize_axis(n.attr<std::int64_t>("axis", -1), static_cast<std::int64_t>(x.rank()), where),
                            n.attr<float>("epsilon", 1e-5f)));
    }
    if (op == "ReduceMean") {
      std::vector<std::int64_t> axes = n.has_input(1) ? ir::to_i64(get(n, 1), where) : n.attr<std::vector<std::int64_t>>("axes", {});
      return one(reduce_mean(get(n, 0), axes, n.attr<std::int64_t>("keepdims", 1) != 0));
    }
    if (op == "MaxPool" || op == "AveragePool") {
      const Tensor& x = get(n, 0);
      const auto win = ir::make_window(x.shape(), n.attr<std::vector<std::int64_t>>("kernel_shape"),
                                       n.attr<std::vector<std::int64_t>>("strides", {}),
                                       n.attr<std::vector<std::int64_t>>("dilations", {}),
                                       n.attr<std::vector<std::int64_t>>("pads", {}),
                                       n.attr<std::string>("auto_pad", "NOTSET"), n.attr<std::int64_t>("ceil_mode", 0) != 0, where);
      return one(pool(x, win, op == "MaxPool", n.attr<std::int64_t>("count_include_pad", 0) != 0));
    }
    if (op == "GlobalAveragePool") return one(global_avg_pool(get(n, 0)));
    if (op == "Flatten" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze")
      return one(get(n, 0).contiguous().reshape(g_.value(n.outputs[0]).shape));
    if (op == "Transpose") return one(transpose(get(n, 0), n.attr<std::vector<std::int64_t>>("perm", {})));
    if (op == "QuantizeLinear") return one(quantize_linear(get(n, 0), get(n, 1), opt(2), n.attr<std::int64_t>("axis", 1)));
    if (op == "DequantizeLinear") return one(dequantize_linear(get(n, 0), get(n, 1), opt(2), n.attr<std::int64_t>("axis", 1)));
    if (op == "Split") {
      const Tensor& x = get(n, 0);
      const auto axis = ir::normalize_axis(n.attr<std::int64_t>("axis", 0), static_cast<std::int64_t>(x.rank()), where);
      std::vector<Tensor> outs;
      std::int64_t begin = 0;
      for (const auto& o : n.outputs) {
        const auto len = g_.value(o).shape[axis];
        outs.push_back(x.slice(static_cast<std::size_t>(axis), begin, begin + len).contiguous());
        begin += len;
      }
      return outs;
    }
    // Layout ops shared with import-time folding (Concat, Gather, Slice, Cast, ...).
    std::vector<const Tensor*> in;
    std::vector<Shape> shapes;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      in.push_back(opt(i));
      shapes.push_back(in.back() ? in.back()->shape() : Shape{});
    }
    if (auto r = ir::fold(n, in, shapes, /*small_only=*/false)) return *r;
    throw Error(ErrorCode::unsupported, where, "the reference backend cannot run op '" + op + "'");
  }

  ir::Graph g_;
  int threads_;
  std::vector<std::optional<std::vector<Tensor>>> constant_;  // per node: outputs fixed at compile time
};

class Backend {
 public:
  using Executable = reference::Executable;
  static constexpr std::string_view name() { return "reference"; }
  Executable compile(const ir::Graph& g, const CompileOptions& o = {}) const { return Executable(g, o.threads); }
};

static_assert(sparseloom::Backend<Backend>);

}  // namespace sparseloom::reference
