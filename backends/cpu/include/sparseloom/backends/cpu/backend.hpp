#pragma once
// cpu::Backend: the graph-level CPU backend (models sparseloom::Backend).
//
//   cpu::Backend proc(4, {0, 1, 2, 3});          // one processor = a core group: its own pool
//   auto exe = proc.compile(graph, {.threads = 4});
//   auto out = exe.run(inputs, {.affine = &repairs});
//
// compile() walks the graph once:
//  - nodes whose inputs are all constants are evaluated once (QDQ weights: DequantizeLinear of
//    the int8 weights becomes f32 weights; activations' Quantize/Dequantize run literally, so
//    INT8 graphs match the reference exactly up to f32 summation order);
//  - Conv (1-D / 2-D, groups 1 or depthwise), Gemm (transA = 0) and MatMul with a constant 2-D
//    right operand become prepared kernels (format chosen per layer by a measured trial on
//    this executable's threads: oneDNN dense, CSR, BSR or 2:4; weights packed once). Bias,
//    alpha/beta, a following bias Add (MatMul) and a following Relu / Clip fold into the
//    kernel's epilogue when the intermediate tensor has a single consumer and is no graph
//    output;
//  - INT8 QDQ Conv (groups 1) / Gemm / MatMul (weights DequantizeLinear(int8 const,
//    per-output-channel scale, zp 0), activation DequantizeLinear(u8 runtime tensor, scalar
//    scale and zero point)) run u8 x s8 -> s32 on the quantised activation itself (oneDNN INT8
//    dense or our INT8 1x4 sparse kernel; convs through a u8 im2col, conv_qu8.hpp),
//    dequantisation scale s_x*s_w[c], bias and activation in the f32 epilogue; kept only when
//    its measured trial beats the layer's best f32 format. The activation's DequantizeLinear is
//    then skipped. Repairs or observation inside such a layer run it through the reference op
//    on the dequantised tensors;
//  - Add/Sub/Mul/Div/Pow with a same-shape, scalar, trailing-vector or per-row operand, unary
//    element-wise ops and last-axis ReduceMean/Softmax run threaded with the reference's math
//    (pointwise.hpp); a chain of them over one input whose intermediates nothing else reads
//    (an exported LayerNorm, GELU, scale-then-Softmax) runs row by row in one pass
//    (row_program.hpp), bit for bit the same;
//  - Transpose runs a tiled copy split over the pool (detail in transpose.hpp), a per-tensor
//    u8 QuantizeLinear a threaded quantiser (quantize.hpp), a MatMul of two activations with
//    the same batch dims Eigen products split over the pool (batched_matmul.hpp);
//  - every other op runs the reference backend's implementation of it (one-node executables).
// run(): RunOptions::affine on a kernel's output is folded into that run's epilogue (scale and
// shift combined with the bias, weights shared: repair costs nothing per request); on any
// other tensor it is applied right after the node that produces it, as the reference does.
// With RunOptions::observe set, fused steps run unfused so every tensor is seen.
// One run at a time per processor (the pool is shared by every executable of a Backend).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sparseloom/backends/cpu/batched_matmul.hpp"
#include "sparseloom/backends/cpu/conv.hpp"
#include "sparseloom/backends/cpu/conv_qu8.hpp"
#include "sparseloom/backends/cpu/format_choice.hpp"
#include "sparseloom/backends/cpu/pointwise.hpp"
#include "sparseloom/backends/cpu/pooling.hpp"
#include "sparseloom/backends/cpu/quantize.hpp"
#include "sparseloom/backends/cpu/row_program.hpp"
#include "sparseloom/backends/cpu/transpose.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/concepts/backend.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/shape_util.hpp"

namespace sparseloom::cpu {

// A processor: a persistent pool and the lock that serialises runs on it.
struct Processor {
  Processor(int threads, std::vector<int> cores) : pool(threads, std::move(cores)) {}
  ThreadPool pool;
  std::mutex mu;
};

// What compile() did with one kernel layer (for reports and the benchmark).
struct LayerInfo {
  std::string node, op;
  Format format = Format::dense;
  std::string kernel;
  std::vector<std::string> fused;  // ops folded into its epilogue
  std::size_t weight_bytes = 0;
};

namespace detail {

// One node run by the reference backend: a one-node graph holding its constant inputs.
struct RefNode {
  std::string name, op;
  std::vector<std::string> runtime_inputs;  // env tensors, in the sub-graph's input order
  std::vector<std::string> outputs;
  std::shared_ptr<const reference::Executable> exe;

  RefNode(const ir::Graph& g, const ir::Node& n, const std::map<std::string, Tensor>& consts, int threads) : name(n.name), op(n.op), outputs(n.outputs) {
    ir::Graph sub;
    sub.source = g.source;
    sub.nodes.push_back(n);
    std::set<std::string> seen;
    for (const auto& in : n.inputs) {
      if (in.empty() || !seen.insert(in).second) continue;
      if (auto it = consts.find(in); it != consts.end()) {
        sub.initializers.emplace(in, it->second);
      } else {
        runtime_inputs.push_back(in);
        sub.inputs.push_back(g.value(in));
      }
      if (auto it = g.values.find(in); it != g.values.end()) sub.values.emplace(in, it->second);
    }
    for (const auto& o : n.outputs) {
      if (auto it = g.values.find(o); it != g.values.end()) {
        sub.values.emplace(o, it->second);
        sub.outputs.push_back(it->second);
      } else {
        sub.outputs.push_back(ir::ValueInfo{o, {}, DType::f32});
      }
    }
    exe = std::make_shared<const reference::Executable>(std::move(sub), threads);
  }

  std::vector<Tensor> run(const std::unordered_map<std::string, Tensor>& env) const {
    std::vector<Tensor> in;
    in.reserve(runtime_inputs.size());
    for (const auto& r : runtime_inputs) in.push_back(env.at(r));
    return exe->run(in);
  }
};

// A shape known at compile time with no empty or unknown dim: native steps need one.
inline bool static_positive(const Shape& s) {
  return std::all_of(s.begin(), s.end(), [](std::int64_t d) { return d > 0; });
}

inline std::vector<float> const_floats(const Tensor& t) {
  const Tensor c = t.contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

inline double best_ms(const std::vector<Candidate>& c) {
  double b = 1e300;
  for (const auto& x : c) b = std::min(b, x.ms);
  return b;
}

// The INT8 operands of a QDQ Gemm/MatMul/Conv: W = DequantizeLinear(s8 const, scale per output
// channel or scalar, zero point 0) and X = DequantizeLinear(u8 runtime tensor, scalar scale
// and zero point). nullopt when the node is not of that form (it then runs in f32).
struct QdqLinear {
  std::vector<std::int8_t> w;   // M x K, row-major (a conv's OIHW as Cout x Cin*kh*kw)
  std::vector<float> w_scale;   // M
  ActivationQuant xq;
  std::string x;                // the u8 activation
  const ir::Node* x_dq = nullptr;  // the DequantizeLinear that made the f32 activation
};

struct QdqLookup {
  const std::map<std::string, Tensor>& consts;
  const std::map<std::string, const ir::Node*>& producer_of;
  const ir::Graph& g;
  const ir::Node* producer(const std::string& t) const {
    auto it = producer_of.find(t);
    return it == producer_of.end() ? nullptr : it->second;
  }
  const Tensor* cst(const std::string& t) const {
    auto it = consts.find(t);
    return it == consts.end() ? nullptr : &it->second;
  }

  // The s8 weights behind `w` (rank `rank`, output channel on `out_axis`, M channels) and
  // their per-channel scales, when `w` is such a DequantizeLinear.
  const Tensor* weights(const std::string& w, std::size_t rank, std::int64_t out_axis, std::int64_t M,
                        std::vector<float>& w_scale) const {
    const ir::Node* wd = producer(w);
    if (!wd || wd->op != "DequantizeLinear") return nullptr;
    const Tensor* wq = cst(wd->inputs.at(0));
    const Tensor* ws = wd->has_input(1) ? cst(wd->inputs[1]) : nullptr;
    if (!wq || !ws || wq->dtype() != DType::i8 || wq->rank() != rank || ws->dtype() != DType::f32) return nullptr;
    if (wd->has_input(2)) {
      const Tensor* wz = cst(wd->inputs[2]);
      if (!wz || wz->dtype() != DType::i8) return nullptr;
      const Tensor z = wz->contiguous();
      for (std::int64_t i = 0; i < z.numel(); ++i)
        if (z.data<std::int8_t>()[i] != 0) return nullptr;
    }
    std::int64_t axis = wd->attr<std::int64_t>("axis", 1);
    if (axis < 0) axis += static_cast<std::int64_t>(rank);
    const auto sv = const_floats(*ws);
    if (sv.size() == 1) w_scale.assign(static_cast<std::size_t>(M), sv[0]);
    else if (static_cast<std::int64_t>(sv.size()) == M && axis == out_axis) w_scale = sv;
    else return nullptr;
    return wq;
  }

  // The u8 tensor and its quantisation behind the f32 activation `x`.
  bool activation(const std::string& x, QdqLinear& r) const {
    const ir::Node* xd = producer(x);
    if (!xd || xd->op != "DequantizeLinear") return false;
    const std::string& q = xd->inputs.at(0);
    if (cst(q) || g.value(q).dtype != DType::u8) return false;
    const Tensor* xs = xd->has_input(1) ? cst(xd->inputs[1]) : nullptr;
    if (!xs || xs->dtype() != DType::f32 || xs->numel() != 1) return false;
    r.xq.scale = const_floats(*xs)[0];
    if (xd->has_input(2)) {
      const Tensor* xz = cst(xd->inputs[2]);
      if (!xz || xz->dtype() != DType::u8 || xz->numel() != 1) return false;
      r.xq.zero_point = xz->contiguous().data<std::uint8_t>()[0];
    }
    r.x = q;
    r.x_dq = xd;
    return true;
  }
};

inline std::optional<QdqLinear> qdq_linear_operands(const ir::Node& n, bool trans_b, std::int64_t M, std::int64_t K,
                                                    const QdqLookup& look) {
  QdqLinear r;
  const Tensor* wq = look.weights(n.inputs[1], 2, trans_b ? 0 : 1, M, r.w_scale);
  if (!wq || !look.activation(n.inputs[0], r)) return std::nullopt;
  const Tensor wc = wq->contiguous();
  const std::int8_t* wp = wc.data<std::int8_t>();
  r.w.resize(static_cast<std::size_t>(M * K));
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t k = 0; k < K; ++k) r.w[static_cast<std::size_t>(i * K + k)] = trans_b ? wp[i * K + k] : wp[k * M + i];
  return r;
}

// A Conv's s8 weights are OIHW (output channel on axis 0): already Cout x Cin*kh*kw.
inline std::optional<QdqLinear> qdq_conv_operands(const ir::Node& n, std::size_t rank, std::int64_t cout,
                                                  const QdqLookup& look) {
  QdqLinear r;
  const Tensor* wq = look.weights(n.inputs[1], rank, 0, cout, r.w_scale);
  if (!wq || !look.activation(n.inputs[0], r)) return std::nullopt;
  const Tensor wc = wq->contiguous();
  r.w.assign(wc.data<std::int8_t>(), wc.data<std::int8_t>() + wc.numel());
  return r;
}

}  // namespace detail

class Executable {
 public:
  std::vector<Tensor> run(std::span<const Tensor> inputs, const RunOptions& ro = {}) const { return run_impl(inputs, ro, nullptr); }

  // Milliseconds per step (kernel layers with their fused ops, or single reference ops) of
  // one run, named by the step's first node output; for benchmarks.
  std::vector<std::pair<std::string, double>> profile(std::span<const Tensor> inputs) const {
    std::vector<double> ms(steps_.size(), 0.0);
    run_impl(inputs, {}, &ms);
    std::vector<std::pair<std::string, double>> out;
    for (std::size_t i = 0; i < steps_.size(); ++i)
      out.emplace_back(steps_[i].kernel ? steps_[i].kernel->mid + " [kernel]"
                       : steps_[i].ew ? steps_[i].ew->mid + " [elementwise]"
                       : steps_[i].pw ? steps_[i].pw->out + " [pointwise]"
                       : steps_[i].tr ? steps_[i].tr->out + " [Transpose]"
                       : steps_[i].q  ? steps_[i].q->out + " [QuantizeLinear]"
                       : steps_[i].mm ? steps_[i].mm->out + " [MatMul]"
                       : steps_[i].view ? steps_[i].view->out + " [view]"
                       : steps_[i].pool ? steps_[i].pool->out + " [MaxPool 2-D]"
                       : steps_[i].rows ? steps_[i].rows->out + " [" + std::to_string(steps_[i].rows->parts.size()) + " ops row-fused]"
                                      : steps_[i].ref->outputs.at(0) + " [" + steps_[i].ref->op + "]",
                       ms[i]);
    return out;
  }

  // Packed weights, kept constants and the kernels' workspaces, in bytes.
  std::size_t resident_bytes() const noexcept { return resident_; }
  int threads() const noexcept { return threads_; }
  const std::vector<LayerInfo>& layers() const noexcept { return layers_; }

 private:
  std::vector<Tensor> run_impl(std::span<const Tensor> inputs, const RunOptions& ro, std::vector<double>* step_ms) const {
    check(inputs.size() == inputs_.size(), ErrorCode::invalid_argument, source_,
          "expected " + std::to_string(inputs_.size()) + " inputs, got " + std::to_string(inputs.size()));
    std::lock_guard lock(proc_->mu);
    std::unordered_map<std::string, Tensor> env;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const auto& vi = inputs_[i];
      check(inputs[i].shape() == vi.shape && inputs[i].dtype() == vi.dtype, ErrorCode::shape, source_,
            "input '" + vi.name + "' must be " + std::string(sparseloom::to_string(vi.dtype)) + sparseloom::to_string(vi.shape) + ", got " +
                std::string(sparseloom::to_string(inputs[i].dtype())) + sparseloom::to_string(inputs[i].shape()));
      env[vi.name] = inputs[i];
    }
    if (ro.affine)
      for (const auto& [name, _] : *ro.affine)
        check(!consts_.count(name), ErrorCode::unsupported, source_,
              "affine repair on tensor '" + name + "', which is a constant here");
    for (std::size_t si = 0; si < steps_.size(); ++si) {
      const Step& s = steps_[si];
      if (ro.observe)
        for (const auto& name : s.observe_consts) ro.observe(name, consts_.at(name));
      const auto t0 = std::chrono::steady_clock::now();
      run_step(s, env, ro);
      if (step_ms) (*step_ms)[si] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      for (const auto& dead : s.release) env.erase(dead);
    }
    if (ro.observe)
      for (const auto& name : tail_observe_consts_) ro.observe(name, consts_.at(name));
    std::vector<Tensor> result;
    for (const auto& o : outputs_) {
      if (auto it = env.find(o); it != env.end()) result.push_back(it->second);
      else result.push_back(consts_.at(o));
    }
    return result;
  }

  friend class Backend;
  enum class Kind : std::uint8_t { conv, linear };

  struct KernelStep {
    Kind kind = Kind::conv;
    std::string in, mid, out;     // input, the kernel node's output, the last fused output
    std::vector<std::string> absorbed_outputs;  // outputs of the fused nodes (last == out)
    std::vector<detail::RefNode> absorbed;      // the fused nodes, for unfused runs
    bool add_fused = false;
    Epilogue epi;                 // packed: scale, kernel bias (+ fused add), activation
    std::vector<float> kernel_bias;  // the kernel node's own bias/shift part (no fused add)
    Shape mid_shape, out_shape;
    // conv
    std::shared_ptr<const Conv2dF32> conv;
    std::int64_t in_per_image = 0, out_per_image = 0, batch = 1;
    // linear: X (rows x k) -> Y (rows x m) via Y^T = W X^T
    std::shared_ptr<const PreparedMatmul> mm;
    // INT8 linear: `in` is the u8 activation (rows x k); `self` is the node on the dequantised
    // tensors, for runs that must see or repair tensors inside the fused layer.
    std::shared_ptr<const PreparedMatmulQu8> qmm;
    std::shared_ptr<const Conv2dQu8> qconv;     // INT8 conv: `in` is the u8 activation (NCHW)
    std::shared_ptr<const detail::RefNode> self;
    // The activation's DequantizeLinear when only this layer reads it: skipped on the INT8
    // path, run before `self` when the layer runs through the reference.
    std::shared_ptr<const detail::RefNode> pre;
    std::int64_t rows = 1, k = 0, m = 0;
  };
  // f32 Add / Sub / Mul / Div / Pow of a full-shape operand x and an operand s that is the
  // same shape, a scalar, a trailing vector or one value per row (pointwise.hpp), optionally
  // with a fused Relu. Either operand may be a constant.
  struct EwStep {
    Binary op = Binary::add;
    Bcast bc = Bcast::same;
    bool s_first = false;  // s is the node's first input
    std::string x, s, mid, out;
    std::int64_t d = 1;    // the output's last dim
    Shape shape;
    std::vector<detail::RefNode> absorbed;  // the fused Relu, for unfused runs
  };
  // A unary element-wise op, or ReduceMean / Softmax over the last axis (pointwise.hpp).
  struct PwStep {
    enum class Kind : std::uint8_t { unary, mean, softmax } kind = Kind::unary;
    Unary op = Unary::relu;
    std::string in, out;
    std::int64_t rows = 1, d = 1;
    Shape shape;  // of the output
  };
  // Per-tensor QuantizeLinear of a runtime f32 tensor to u8 (quantize.hpp).
  struct QStep {
    std::string in, out;
    float scale = 1.f;
    std::int32_t zero_point = 0;
  };
  // MatMul of two runtime f32 tensors with the same batch dims (batched_matmul.hpp).
  struct MmStep {
    std::string a, b, out;
    std::int64_t batch = 1, m = 0, k = 0, n = 0;
    Shape out_shape;
  };
  // Transpose of a runtime tensor.
  struct TrStep {
    std::string in, out, where;
    std::vector<std::int64_t> perm;
  };
  // Reshape / Flatten / Squeeze / Unsqueeze of a runtime tensor to a static shape: a view.
  struct ViewStep {
    std::string in, out;
    Shape shape;
  };
  // 2-D MaxPool of a runtime f32 NCHW tensor (pooling.hpp).
  struct PoolStep {
    std::string in, out;
    MaxPool2d p;
    Shape shape;  // of the output
  };
  struct RowStep;
  struct Step {
    std::shared_ptr<const KernelStep> kernel;
    std::shared_ptr<const EwStep> ew;
    std::shared_ptr<const PwStep> pw;
    std::shared_ptr<const TrStep> tr;
    std::shared_ptr<const QStep> q;
    std::shared_ptr<const MmStep> mm;
    std::shared_ptr<const detail::RefNode> ref;
    std::shared_ptr<const RowStep> rows;
    std::shared_ptr<const ViewStep> view;
    std::shared_ptr<const PoolStep> pool;
    std::vector<std::string> observe_consts;  // folded constants reported before this step
    std::vector<std::string> release;         // env tensors dead after this step
  };
  // Consecutive Ew/Pw steps fused into one row program (row_program.hpp). Runs that must see
  // or repair one of its intermediates run the original steps instead.
  struct RowStep {
    RowProgram prog;
    std::string in, out;
    Shape shape;                      // of the output
    std::vector<std::string> inner;   // the intermediates, in step order
    std::vector<Tensor> keep;         // constant operands the program points into
    std::vector<Step> parts;          // the steps it replaces
  };

  // Every env name a step reads or writes (liveness; who else reads a chain's intermediates).
  static std::vector<std::string> touched(const Step& s) {
    std::vector<std::string> t;
    if (s.kernel) {
      t.push_back(s.kernel->in);
      if (s.kernel->self) t.insert(t.end(), s.kernel->self->runtime_inputs.begin(), s.kernel->self->runtime_inputs.end());
      if (s.kernel->pre) t.insert(t.end(), s.kernel->pre->outputs.begin(), s.kernel->pre->outputs.end());
      for (const auto& r : s.kernel->absorbed) t.insert(t.end(), r.runtime_inputs.begin(), r.runtime_inputs.end());
      t.push_back(s.kernel->mid);
      t.insert(t.end(), s.kernel->absorbed_outputs.begin(), s.kernel->absorbed_outputs.end());
    } else if (s.tr) {
      t = {s.tr->in, s.tr->out};
    } else if (s.q) {
      t = {s.q->in, s.q->out};
    } else if (s.mm) {
      t = {s.mm->a, s.mm->b, s.mm->out};
    } else if (s.ew) {
      t = {s.ew->x, s.ew->s, s.ew->mid, s.ew->out};
    } else if (s.pw) {
      t = {s.pw->in, s.pw->out};
    } else if (s.view) {
      t = {s.view->in, s.view->out};
    } else if (s.pool) {
      t = {s.pool->in, s.pool->out};
    } else if (s.rows) {
      t = {s.rows->in, s.rows->out};
      t.insert(t.end(), s.rows->inner.begin(), s.rows->inner.end());
    } else {
      t = s.ref->runtime_inputs;
      t.insert(t.end(), s.ref->outputs.begin(), s.ref->outputs.end());
    }
    return t;
  }

  void run_step(const Step& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    if (s.kernel) run_kernel(*s.kernel, env, ro);
    else if (s.ew) run_ew(*s.ew, env, ro);
    else if (s.pw) run_pw(*s.pw, env, ro);
    else if (s.rows) run_rows_step(*s.rows, env, ro);
    else if (s.view) publish(s.view->out, env.at(s.view->in).contiguous().reshape(s.view->shape), env, ro);
    else if (s.pool) run_pool(*s.pool, env, ro);
    else if (s.tr) publish(s.tr->out, permute(env.at(s.tr->in), s.tr->perm, proc_->pool, threads_, s.tr->where), env, ro);
    else if (s.q) run_q(*s.q, env, ro);
    else if (s.mm) run_mm(*s.mm, env, ro);
    else run_ref(*s.ref, env, ro);
  }

  void run_rows_step(const RowStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    bool unfused = ro.observe != nullptr;
    if (ro.affine)
      for (const auto& t : s.inner) unfused |= ro.affine->count(t) != 0;
    if (unfused) {
      for (const auto& part : s.parts) run_step(part, env, ro);
      return;
    }
    const Tensor x = env.at(s.in).contiguous();
    Tensor y = Tensor::empty(s.shape, DType::f32);
    run_rows(s.prog, x.data<float>(), y.data<float>(), proc_->pool, threads_);
    publish(s.out, std::move(y), env, ro);
  }

  void publish(const std::string& name, Tensor t, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro,
               bool affine_done = false) const {
    if (ro.affine && !affine_done)
      if (auto it = ro.affine->find(name); it != ro.affine->end()) {
        t = t.clone();
        reference::apply_affine(t, it->second, source_ + ": tensor '" + name + "'");
      }
    if (ro.observe) ro.observe(name, t);
    env[name] = std::move(t);
  }

  void run_ref(const detail::RefNode& r, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    auto outs = r.run(env);
    for (std::size_t i = 0; i < outs.size() && i < r.outputs.size(); ++i) publish(r.outputs[i], std::move(outs[i]), env, ro);
  }

  void run_pool(const PoolStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor x = env.at(s.in).contiguous();
    Tensor y = Tensor::empty(s.shape, DType::f32);
    max_pool_2d(s.p, x.data<float>(), y.data<float>(), proc_->pool, threads_);
    publish(s.out, std::move(y), env, ro);
  }

  void run_q(const QStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor x = env.at(s.in).contiguous();
    Tensor y = Tensor::empty(x.shape(), DType::u8);
    quantize_u8(x.data<float>(), x.numel(), s.scale, s.zero_point, y.data<std::uint8_t>(), proc_->pool, threads_);
    publish(s.out, std::move(y), env, ro);
  }

  void run_mm(const MmStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor a = env.at(s.a).contiguous(), b = env.at(s.b).contiguous();
    Tensor y = Tensor::empty(s.out_shape, DType::f32);
    batched_matmul(a.data<float>(), b.data<float>(), y.data<float>(), s.batch, s.m, s.k, s.n, proc_->pool, threads_);
    publish(s.out, std::move(y), env, ro);
  }

  // A runtime tensor, or a constant the compiled steps kept.
  const Tensor& operand(const std::string& name, const std::unordered_map<std::string, Tensor>& env) const {
    if (auto it = env.find(name); it != env.end()) return it->second;
    return consts_.at(name);
  }

  void run_ew(const EwStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor x = operand(s.x, env).contiguous(), sm = operand(s.s, env).contiguous();
    const bool fuse = !s.absorbed.empty() && !ro.observe && !(ro.affine && ro.affine->count(s.mid));
    Tensor y = Tensor::empty(s.shape, DType::f32);
    binary(s.op, x.data<float>(), sm.data<float>(), y.data<float>(), y.numel(), s.d, s.bc, s.s_first, fuse, proc_->pool, threads_);
    if (fuse) return publish(s.out, std::move(y), env, ro);
    publish(s.mid, std::move(y), env, ro);
    for (const auto& r : s.absorbed) run_ref(r, env, ro);
  }

  void run_pw(const PwStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor x = env.at(s.in).contiguous();
    Tensor y = Tensor::empty(s.shape, DType::f32);
    if (s.kind == PwStep::Kind::unary) unary(s.op, x.data<float>(), y.data<float>(), x.numel(), proc_->pool, threads_);
    else if (s.kind == PwStep::Kind::mean) mean_last(x.data<float>(), y.data<float>(), s.rows, s.d, proc_->pool, threads_);
    else softmax_last(x.data<float>(), y.data<float>(), s.rows, s.d, proc_->pool, threads_);
    publish(s.out, std::move(y), env, ro);
  }

  // Runs the kernel into a fresh tensor of the kernel node's output shape.
  Tensor kernel_call(const KernelStep& s, const Tensor& x_in, const EpilogueArrays* epi, const Shape& shape) const {
    const Tensor x = x_in.contiguous();
    Tensor y = Tensor::empty(shape, DType::f32);
    if (s.qmm) return qkernel_call(s, x, std::move(y));
    if (s.qconv) {
      for (std::int64_t b = 0; b < s.batch; ++b)
        s.qconv->run(x.data<std::uint8_t>() + b * s.in_per_image, y.data<float>() + b * s.out_per_image, proc_->pool);
      return y;
    }
    if (s.kind == Kind::conv) {
      for (std::int64_t b = 0; b < s.batch; ++b)
        s.conv->run(x.data<float>() + b * s.in_per_image, y.data<float>() + b * s.out_per_image, proc_->pool, epi);
      return y;
    }
    if (s.rows == 1) {
      s.mm->run(x.data<float>(), y.data<float>(), proc_->pool, epi);
      return y;
    }
    // Token-major X (rows x k): our kernels take X^T (k x rows) and give Y^T (m x rows).
    // Tiled threaded transposes into per-thread buffers that only grow (no page faults of
    // fresh allocations per call).
    thread_local std::vector<float> xt, yt;
    if (xt.size() < static_cast<std::size_t>(s.rows * s.k)) xt.resize(static_cast<std::size_t>(s.rows * s.k));
    if (yt.size() < static_cast<std::size_t>(s.rows * s.m)) yt.resize(static_cast<std::size_t>(s.rows * s.m));
    transpose_2d(x.data<float>(), s.rows, s.k, xt.data(), proc_->pool, threads_);
    s.mm->run(xt.data(), yt.data(), proc_->pool, epi);
    transpose_2d(yt.data(), s.m, s.rows, y.data<float>(), proc_->pool, threads_);
    return y;
  }

  // INT8 linear: the u8 activation is already token-major X^T (rows x k), oneDNN's native
  // layout; our sparse kernel takes X (k x rows), so it gets the tiled transposes.
  Tensor qkernel_call(const KernelStep& s, const Tensor& x, Tensor y) const {
    const auto* xp = x.data<std::uint8_t>();
    if (const DenseQu8* d = s.qmm->dense()) {
      d->run_nk(xp, y.data<float>(), threads_);
      return y;
    }
    const SpmmQu8& sp = *s.qmm->sparse();
    if (s.rows == 1) {
      sp.run(xp, y.data<float>(), proc_->pool);
      return y;
    }
    thread_local std::vector<std::uint8_t> xt;
    thread_local std::vector<float> yt;
    if (xt.size() < static_cast<std::size_t>(s.rows * s.k)) xt.resize(static_cast<std::size_t>(s.rows * s.k));
    if (yt.size() < static_cast<std::size_t>(s.rows * s.m)) yt.resize(static_cast<std::size_t>(s.rows * s.m));
    transpose_2d(xp, s.rows, s.k, xt.data(), proc_->pool, threads_);
    sp.run(xt.data(), yt.data(), proc_->pool);
    transpose_2d(yt.data(), s.m, s.rows, y.data<float>(), proc_->pool, threads_);
    return y;
  }

  void run_kernel(const KernelStep& s, std::unordered_map<std::string, Tensor>& env, const RunOptions& ro) const {
    const Tensor& x = env.at(s.in);
    if (s.qmm || s.qconv) {
      bool inside = ro.observe != nullptr && (!s.absorbed.empty() || s.pre);
      if (ro.affine) {
        inside |= ro.affine->count(s.mid) != 0;
        for (const auto& o : s.absorbed_outputs) inside |= ro.affine->count(o) != 0;
        if (s.pre) inside |= ro.affine->count(s.pre->outputs.at(0)) != 0;
      }
      if (!inside) return publish(s.out, kernel_call(s, x, nullptr, s.out_shape), env, ro);
      if (s.pre) run_ref(*s.pre, env, ro);
      run_ref(*s.self, env, ro);
      for (const auto& r : s.absorbed) run_ref(r, env, ro);
      return;
    }
    const ChannelAffine* mid_affine = nullptr;
    bool unfused = ro.observe != nullptr && !s.absorbed.empty();
    if (ro.affine) {
      if (auto it = ro.affine->find(s.mid); it != ro.affine->end()) mid_affine = &it->second;
      for (std::size_t i = 0; i + 1 < s.absorbed_outputs.size(); ++i) unfused |= ro.affine->count(s.absorbed_outputs[i]) != 0;
      if (mid_affine && s.add_fused) unfused = true;
    }
    // A per-channel affine (channel = dim 1) folds into the epilogue of a conv or a 2-D linear
    // output (rows x m); elsewhere it is applied after the kernel.
    const bool foldable = s.kind == Kind::conv || s.mid_shape.size() == 2;
    if (mid_affine && !foldable) unfused = true;
    if (!unfused) {
      if (!mid_affine) {
        publish(s.out, kernel_call(s, x, nullptr, s.out_shape), env, ro);
        return;
      }
      publish(s.out, kernel_call(s, x, with_affine(s, *mid_affine, /*keep_act=*/true, s.epi.shift), s.out_shape), env, ro,
              /*affine_done=*/s.out == s.mid);
      return;
    }
    // Unfused: the kernel node's output alone (its bias, the affine), then each fused node.
    const EpilogueArrays* e = nullptr;
    thread_local EpilogueArrays plain;
    if (mid_affine && foldable) {
      e = with_affine(s, *mid_affine, /*keep_act=*/false, s.kernel_bias);
      publish(s.mid, kernel_call(s, x, e, s.mid_shape), env, ro, /*affine_done=*/true);
    } else {
      Epilogue pe = s.epi;
      pe.act = Activation::none;
      pe.shift = s.kernel_bias;
      plain = EpilogueArrays(pe, s.kind == Kind::conv ? s.mid_shape[1] : s.m);
      publish(s.mid, kernel_call(s, x, &plain, s.mid_shape), env, ro);
    }
    for (const auto& r : s.absorbed) run_ref(r, env, ro);
  }

  // This run's epilogue: y = act((scale*acc + shift) * a + c) = act(scale*a*acc + shift*a + c).
  const EpilogueArrays* with_affine(const KernelStep& s, const ChannelAffine& a, bool keep_act,
                                    const std::vector<float>& shift) const {
    const std::int64_t m = s.kind == Kind::conv ? s.mid_shape[1] : s.m;
    check(static_cast<std::int64_t>(a.scale.size()) == m && a.shift.size() == a.scale.size(), ErrorCode::shape,
          source_ + ": tensor '" + s.mid + "'",
          "affine repair has " + std::to_string(a.scale.size()) + " channels, tensor has " + std::to_string(m));
    Epilogue e;
    e.act = keep_act ? s.epi.act : Activation::none;
    e.clip_lo = s.epi.clip_lo;
    e.clip_hi = s.epi.clip_hi;
    e.scale.resize(static_cast<std::size_t>(m));
    e.shift.resize(static_cast<std::size_t>(m));
    for (std::size_t i = 0; i < e.scale.size(); ++i) {
      const float sc = s.epi.scale.empty() ? 1.f : s.epi.scale[i];
      const float sh = shift.empty() ? 0.f : shift[i];
      e.scale[i] = sc * a.scale[i];
      e.shift[i] = sh * a.scale[i] + a.shift[i];
    }
    thread_local EpilogueArrays arrays;
    arrays = EpilogueArrays(e, m);
    return &arrays;
  }

  std::string source_;
  std::shared_ptr<Processor> proc_;
  int threads_ = 1;
  std::vector<ir::ValueInfo> inputs_;
  std::vector<std::string> outputs_;
  std::map<std::string, Tensor> consts_;
  std::vector<Step> steps_;
  std::vector<std::string> tail_observe_consts_;
  std::vector<LayerInfo> layers_;
  std::size_t resident_ = 0;
};

class Backend {
 public:
  using Executable = cpu::Executable;
  // Bumped whenever kernels, formats or workspaces change what a compiled block costs in time or
  // bytes: persisted block profiles (the e2e harness's profile cache) include it in their key.
  static constexpr int kRevision = 3;

  // threads = 0: pools are made on demand, one per thread count asked for. Otherwise one pool of
  // `threads` workers (pinned to `cores` when given) serves every executable of this instance.
  explicit Backend(int threads = 0, std::vector<int> cores = {}) : state_(std::make_shared<State>()) {
    check(threads >= 0, ErrorCode::invalid_argument, "cpu::Backend", "threads must be >= 0");
    state_->fixed = threads;
    state_->cores = std::move(cores);
    if (threads > 0) state_->pools[threads] = std::make_shared<Processor>(threads, state_->cores);
  }

  static constexpr std::string_view name() { return "cpu"; }

  // Budget per candidate of the per-layer format trial (ms).
  Backend& trial_budget_ms(double ms) {
    state_->budget_ms = ms;
    return *this;
  }

  // INT8 QDQ Conv/Gemm/MatMul layers: measured (the faster of the INT8 and f32 trials,
  // default), always INT8, or never (f32 on dequantised weights).
  enum class Int8 : std::uint8_t { measured, always, never };
  Backend& int8(Int8 mode) {
    state_->int8 = mode;
    return *this;
  }

  // Sparse k x k stride-1 convs: implicit im2col when measured faster (default), or forced
  // one way (conv.hpp).
  Backend& conv_im2col(Im2col mode) {
    state_->im2col = mode;
    return *this;
  }

  Executable compile(const ir::Graph& g, const CompileOptions& o = {}) const;

 private:
  struct State {
    std::mutex mu;
    int fixed = 0;
    std::vector<int> cores;
    std::map<int, std::shared_ptr<Processor>> pools;
    double budget_ms = 1.0;
    Int8 int8 = Int8::measured;
    Im2col im2col = Im2col::measured;
  };
  static std::shared_ptr<Executable::EwStep> elementwise_step(const ir::Node& n, const ir::Graph& g,
                                                            const std::map<std::string, Tensor>& consts);
  static std::shared_ptr<Executable::PwStep> pointwise_step(const ir::Node& n, const ir::Graph& g,
                                                          const std::map<std::string, Tensor>& consts);
  static void fuse_row_chains(Executable& exe, const std::set<std::string>& graph_outputs);
  static std::shared_ptr<Executable::PoolStep> max_pool_step(const ir::Node& n, const ir::Graph& g, const std::string& where);
  std::shared_ptr<Processor> processor(int threads) const {
    std::lock_guard lock(state_->mu);
    if (state_->fixed > 0) {
      check(threads <= state_->fixed, ErrorCode::invalid_argument, "cpu::Backend::compile",
            "threads " + std::to_string(threads) + " exceeds this processor's " + std::to_string(state_->fixed));
      return state_->pools.at(state_->fixed);
    }
    auto& p = state_->pools[threads];
    if (!p) p = std::make_shared<Processor>(threads, state_->cores);
    return p;
  }
  std::shared_ptr<State> state_;
};

// A binary element-wise node as an EwStep, when its operands are f32 with static shapes, one
// has the output's shape and the other maps onto it as pointwise.hpp's Bcast can say.
inline std::shared_ptr<Executable::EwStep> Backend::elementwise_step(const ir::Node& n, const ir::Graph& g,
                                                                     const std::map<std::string, Tensor>& consts) {
  static const std::map<std::string, Binary> ops = {
      {"Add", Binary::add}, {"Sub", Binary::sub}, {"Mul", Binary::mul}, {"Div", Binary::div}, {"Pow", Binary::pow}};
  const auto op = ops.find(n.op);
  if (op == ops.end() || n.inputs.size() != 2 || n.outputs.size() != 1 || n.inputs[0].empty() || n.inputs[1].empty()) return nullptr;
  auto info = [&](const std::string& t, Shape& shape) {
    if (auto c = consts.find(t); c != consts.end()) {
      shape = c->second.shape();
      return c->second.dtype() == DType::f32;
    }
    const auto& v = g.value(t);
    shape = v.shape;
    return v.dtype == DType::f32;
  };
  Shape a, b;
  if (!info(n.inputs[0], a) || !info(n.inputs[1], b) || g.value(n.outputs[0]).dtype != DType::f32) return nullptr;
  const Shape out = g.value(n.outputs[0]).shape;
  if (out.empty() || !detail::static_positive(out) || !detail::static_positive(a) || !detail::static_positive(b)) return nullptr;
  auto e = std::make_shared<Executable::EwStep>();
  e->op = op->second;
  e->shape = out;
  e->d = out.back();
  e->mid = e->out = n.outputs[0];
  const bool a_full = a == out;
  e->x = a_full ? n.inputs[0] : n.inputs[1];
  e->s = a_full ? n.inputs[1] : n.inputs[0];
  e->s_first = !a_full;
  const Shape& x = a_full ? a : b;
  const Shape& sm = a_full ? b : a;
  if (x != out) return nullptr;
  const std::int64_t total = numel_of(out), sn = numel_of(sm);
  // Right-aligned, sm's dims must equal out's (row: but its last) and be 1 beyond its rank.
  auto aligned = [&](bool skip_last) {
    if (sm.size() > out.size()) return false;
    for (std::size_t i = 0; i < sm.size(); ++i) {
      const std::size_t oi = out.size() - sm.size() + i;
      if (skip_last && i + 1 == sm.size()) continue;
      if (sm[i] != out[oi]) return false;
    }
    return true;
  };
  if (sm == out) e->bc = Bcast::same;
  else if (sn == 1) e->bc = Bcast::scalar;
  else if (sn == e->d && sm.back() == e->d) e->bc = Bcast::vector;
  else if (sm.back() == 1 && sn * e->d == total && aligned(true)) e->bc = Bcast::row;
  else return nullptr;
  return e;
}

// A unary element-wise node, or ReduceMean / Softmax over the last axis, as a PwStep.
inline std::shared_ptr<Executable::PwStep> Backend::pointwise_step(const ir::Node& n, const ir::Graph& g,
                                                                   const std::map<std::string, Tensor>& consts) {
  static const std::map<std::string, Unary> unaries = {
      {"Relu", Unary::relu}, {"Erf", Unary::erf},   {"Sqrt", Unary::sqrt}, {"Tanh", Unary::tanh},     {"Sigmoid", Unary::sigmoid},
      {"Exp", Unary::exp},   {"Neg", Unary::neg},   {"Abs", Unary::abs},   {"Reciprocal", Unary::reciprocal}};
  using Kind = Executable::PwStep::Kind;
  if (n.inputs.empty() || n.inputs[0].empty() || consts.count(n.inputs[0]) || n.outputs.size() != 1) return nullptr;
  const auto& in = g.value(n.inputs[0]);
  const auto& out = g.value(n.outputs[0]);
  if (in.dtype != DType::f32 || out.dtype != DType::f32 || in.shape.empty() || !detail::static_positive(in.shape) ||
      !detail::static_positive(out.shape))
    return nullptr;
  auto p = std::make_shared<Executable::PwStep>();
  p->in = n.inputs[0];
  p->out = n.outputs[0];
  p->shape = out.shape;
  p->d = in.shape.back();
  p->rows = numel_of(in.shape) / p->d;
  const auto last = static_cast<std::int64_t>(in.shape.size()) - 1;
  if (auto u = unaries.find(n.op); u != unaries.end() && n.inputs.size() == 1) {
    if (out.shape != in.shape) return nullptr;
    p->kind = Kind::unary;
    p->op = u->second;
    return p;
  }
  if (n.op == "Softmax") {
    std::int64_t axis = n.attr<std::int64_t>("axis", -1);
    if (axis < 0) axis += last + 1;
    if (axis != last || out.shape != in.shape) return nullptr;
    p->kind = Kind::softmax;
    return p;
  }
  if (n.op == "ReduceMean") {
    std::vector<std::int64_t> axes;
    if (n.has_input(1)) {
      auto c = consts.find(n.inputs[1]);
      if (c == consts.end() || (c->second.dtype() != DType::i64)) return nullptr;
      const Tensor t = c->second.contiguous();
      axes.assign(t.data<std::int64_t>(), t.data<std::int64_t>() + t.numel());
    } else {
      axes = n.attr<std::vector<std::int64_t>>("axes", {});
    }
    if (axes.size() != 1 || (axes[0] != -1 && axes[0] != last)) return nullptr;
    if (numel_of(out.shape) != p->rows) return nullptr;
    p->kind = Kind::mean;
    return p;
  }
  return nullptr;
}

// A 2-D MaxPool of a runtime f32 tensor with static shapes (one output, no indices), windowed
// as the reference windows it.
inline std::shared_ptr<Executable::PoolStep> Backend::max_pool_step(const ir::Node& n, const ir::Graph& g, const std::string& where) {
  if (n.op != "MaxPool" || n.inputs.size() != 1 || n.outputs.size() != 1) return nullptr;
  const auto& in = g.value(n.inputs[0]);
  const auto& out = g.value(n.outputs[0]);
  if (in.dtype != DType::f32 || in.shape.size() != 4 || !detail::static_positive(in.shape) || !detail::static_positive(out.shape))
    return nullptr;
  const auto win = ir::make_window(in.shape, n.attr<std::vector<std::int64_t>>("kernel_shape", {}),
                                   n.attr<std::vector<std::int64_t>>("strides", {}), n.attr<std::vector<std::int64_t>>("dilations", {}),
                                   n.attr<std::vector<std::int64_t>>("pads", {}), n.attr<std::string>("auto_pad", "NOTSET"),
                                   n.attr<std::int64_t>("ceil_mode", 0) != 0, where);
  if (out.shape != Shape{in.shape[0], in.shape[1], win.out[0], win.out[1]}) return nullptr;
  auto s = std::make_shared<Executable::PoolStep>();
  s->in = n.inputs[0];
  s->out = n.outputs[0];
  s->shape = out.shape;
  s->p = {in.shape[0] * in.shape[1], in.shape[2], in.shape[3], win.out[0], win.out[1], win.kernel[0], win.kernel[1], win.strides[0],
          win.strides[1], win.dilations[0], win.dilations[1], win.pads[0], win.pads[1]};
  return s;
}

// Replaces each run of consecutive Ew/Pw steps that reads one runtime tensor (plus constants and
// its own results) and whose intermediates no other step reads by one RowStep.
inline void Backend::fuse_row_chains(Executable& exe, const std::set<std::string>& graph_outputs) {
  using Step = Executable::Step;
  using Src = RowOp::Src;
  auto& steps = exe.steps_;
  std::map<std::string, std::vector<std::size_t>> users;
  for (std::size_t i = 0; i < steps.size(); ++i)
    for (const auto& name : Executable::touched(steps[i])) users[name].push_back(i);
  auto out_of = [](const Step& st) { return st.ew ? st.ew->out : st.pw->out; };

  // The chain from step i as long as it extends, and its longest prefix (>= 2 steps) whose
  // intermediates stay inside it; nullptr if none.
  auto chain_at = [&](std::size_t i, std::size_t& end) -> std::shared_ptr<Executable::RowStep> {
    const Step& first = steps[i];
    std::string x;
    RowProgram prog;
    if (first.pw) {
      x = first.pw->in;
      prog.rows = first.pw->rows, prog.d = first.pw->d;
    } else if (first.ew && first.ew->absorbed.empty() && !exe.consts_.count(first.ew->x)) {
      x = first.ew->x;
      prog.d = first.ew->d;
      prog.rows = numel_of(first.ew->shape) / std::max<std::int64_t>(prog.d, 1);
    } else {
      return nullptr;
    }
    if (prog.d < 2) return nullptr;
    auto rs = std::make_shared<Executable::RowStep>();
    std::map<std::string, std::pair<int, bool>> slot{{x, {0, true}}};  // name -> (slot, full)
    std::size_t best = 0;  // one past the longest valid prefix
    RowProgram best_prog;
    auto full_or_scalar = [&](std::int64_t rows, std::int64_t d, bool& full) {
      if (rows == prog.rows && d == prog.d) return full = true;
      if (rows == prog.rows && d == 1) return !(full = false);
      return false;
    };
    for (std::size_t j = i; j < steps.size(); ++j) {
      const Step& st = steps[j];
      RowOp op;
      if (st.pw) {
        const auto in = slot.find(st.pw->in);
        bool in_full = false;
        if (in == slot.end() || !full_or_scalar(st.pw->rows, st.pw->d, in_full) || in_full != in->second.second) break;
        op.a = in->second.first;
        if (st.pw->kind == Executable::PwStep::Kind::unary) op.kind = RowOp::Kind::unary, op.u = st.pw->op, op.dst_full = in_full;
        else if (!in_full) break;
        else if (st.pw->kind == Executable::PwStep::Kind::mean) op.kind = RowOp::Kind::mean, op.dst_full = false;
        else op.kind = RowOp::Kind::softmax, op.dst_full = true;
      } else if (st.ew && st.ew->absorbed.empty()) {
        const auto& e = *st.ew;
        const auto xa = slot.find(e.x);
        if (xa == slot.end() || !full_or_scalar(numel_of(e.shape) / std::max<std::int64_t>(e.d, 1), e.d, op.dst_full) ||
            xa->second.second != op.dst_full)
          break;
        op.kind = RowOp::Kind::binary;
        op.b = e.op;
        op.a = xa->second.first;
        op.s_first = e.s_first;
        if (const auto sa = slot.find(e.s); sa != slot.end()) {
          op.src = Src::slot;
          op.s = sa->second.first;
          op.s_full = sa->second.second;
          const bool ok = (e.bc == Bcast::same && op.s_full == op.dst_full) || (e.bc == Bcast::row && op.dst_full && !op.s_full);
          if (!ok) break;
        } else if (const auto c = exe.consts_.find(e.s); c != exe.consts_.end()) {
          const Tensor t = c->second.contiguous();
          if (t.dtype() != DType::f32) break;
          if (e.bc == Bcast::scalar) op.src = Src::const_scalar;
          else if (e.bc == Bcast::vector && op.dst_full) op.src = Src::const_vector;
          else if (e.bc == Bcast::same) op.src = op.dst_full ? Src::const_full : Src::const_row;
          else if (e.bc == Bcast::row && op.dst_full) op.src = Src::const_row;
          else break;
          rs->keep.push_back(t);
          op.c = t.data<float>();
        } else {
          break;  // a second runtime input
        }
      } else {
        break;
      }
      op.dst = prog.slots++;
      prog.ops.push_back(op);
      slot[out_of(st)] = {op.dst, op.dst_full};
      // Valid up to j when no step outside [i, j] (and no graph output) reads i..j-1's results.
      bool valid = j > i;
      for (std::size_t k = i; valid && k < j; ++k) {
        const std::string name = out_of(steps[k]);
        if (graph_outputs.count(name)) valid = false;
        for (std::size_t u : users[name]) valid &= u >= i && u <= j;
      }
      if (valid) {
        best = j + 1;
        best_prog = prog;
        best_prog.out = op.dst;
        best_prog.out_full = op.dst_full;
      }
    }
    if (best == 0) return nullptr;
    end = best;
    rs->prog = std::move(best_prog);
    rs->in = x;
    rs->out = out_of(steps[best - 1]);
    rs->shape = steps[best - 1].ew ? steps[best - 1].ew->shape : steps[best - 1].pw->shape;
    for (std::size_t k = i; k + 1 < best; ++k) rs->inner.push_back(out_of(steps[k]));
    return rs;
  };

  std::vector<Step> out;
  for (std::size_t i = 0; i < steps.size();) {
    std::size_t end = 0;
    if (auto rs = chain_at(i, end)) {
      Step fused;
      for (std::size_t k = i; k < end; ++k) {
        fused.observe_consts.insert(fused.observe_consts.end(), steps[k].observe_consts.begin(), steps[k].observe_consts.end());
        steps[k].observe_consts.clear();
        rs->parts.push_back(steps[k]);
      }
      fused.rows = std::move(rs);
      out.push_back(std::move(fused));
      i = end;
    } else {
      out.push_back(std::move(steps[i++]));
    }
  }
  steps = std::move(out);
}

inline Executable Backend::compile(const ir::Graph& g, const CompileOptions& o) const {
  check(o.threads >= 1, ErrorCode::invalid_argument, "cpu::Backend::compile", "threads must be >= 1");
  Executable exe;
  exe.source_ = g.source;
  exe.proc_ = processor(o.threads);
  exe.threads_ = o.threads;
  exe.inputs_ = g.inputs;
  for (const auto& v : g.outputs) exe.outputs_.push_back(v.name);
  std::lock_guard run_lock(exe.proc_->mu);  // format trials use the pool
  ThreadPool& pool = exe.proc_->pool;
  ChoiceOptions copt;
  copt.threads = o.threads;
  copt.budget_ms = state_->budget_ms;

  std::map<std::string, Tensor>& consts = exe.consts_;
  for (const auto& [k, v] : g.initializers) consts.emplace(k, v);
  std::set<std::string> graph_outputs(exe.outputs_.begin(), exe.outputs_.end());
  std::map<std::string, int> consumers;
  for (const auto& n : g.nodes)
    for (const auto& in : n.inputs)
      if (!in.empty()) ++consumers[in];
  auto single_private = [&](const std::string& t) { return consumers[t] == 1 && !graph_outputs.count(t); };
  std::vector<std::string> pending_observe;  // folded constants, reported before the next step
  std::map<std::string, const ir::Node*> consumer_of;
  for (const auto& n : g.nodes)
    for (const auto& in : n.inputs)
      if (!in.empty()) consumer_of[in] = &n;
  auto is_const = [&](const std::string& t) { return t.empty() || consts.count(t) != 0; };
  std::map<std::string, const ir::Node*> producer_of;
  for (const auto& n : g.nodes)
    for (const auto& out : n.outputs) producer_of[out] = &n;
  // Folds a Relu, or a Clip with constant bounds, that consumes `prev` into the epilogue;
  // false when `c` is neither (the fusion chain stops there).
  auto fuse_activation = [&](const ir::Node& c, const ir::Node& prev, Epilogue& epi) {
    if (c.op == "Relu") {
      epi.act = Activation::relu;
      return true;
    }
    if (c.op != "Clip" || c.inputs[0] != prev.outputs[0] || (c.has_input(1) && !is_const(c.inputs[1])) ||
        (c.has_input(2) && !is_const(c.inputs[2])))
      return false;
    epi.clip_lo = c.has_input(1) ? detail::const_floats(consts.at(c.inputs[1]))[0]
                                 : c.attr<float>("min", -std::numeric_limits<float>::infinity());
    epi.clip_hi = c.has_input(2) ? detail::const_floats(consts.at(c.inputs[2]))[0]
                                 : c.attr<float>("max", std::numeric_limits<float>::infinity());
    epi.act = Activation::clip;
    return true;
  };
  auto shape_of = [&](const std::string& t) { return g.value(t).shape; };
  const detail::QdqLookup look{consts, producer_of, g};
  // An INT8 layer reads the u8 tensor itself; the f32 node stays as `self` for runs that must
  // see or repair tensors inside the layer. The activation's DequantizeLinear step is dropped
  // when only this layer reads it (kept as `pre` for those runs): it would be wasted work.
  auto take_quantised_input = [&](const ir::Node& n, const detail::QdqLinear& qo, Executable::KernelStep& ks) {
    ks.in = qo.x;
    ks.self = std::make_shared<const detail::RefNode>(g, n, consts, o.threads);
    const std::string& dq = qo.x_dq->outputs.at(0);
    if (!single_private(dq)) return;
    for (auto it = exe.steps_.begin(); it != exe.steps_.end(); ++it) {
      if (!it->ref || it->ref->outputs.empty() || it->ref->outputs[0] != dq) continue;
      ks.pre = it->ref;
      pending_observe.insert(pending_observe.begin(), it->observe_consts.begin(), it->observe_consts.end());
      exe.steps_.erase(it);
      return;
    }
  };

  std::set<const ir::Node*> absorbed;
  for (const auto& n : g.nodes) {
    if (absorbed.count(&n)) continue;
    const std::string where = g.source + ": " + n.where();
    // Constant folding (QDQ weights and the like).
    bool all_const = true;
    for (const auto& in : n.inputs) all_const &= is_const(in);
    if (all_const) {
      detail::RefNode r(g, n, consts, 1);
      auto outs = r.run({});
      for (std::size_t i = 0; i < outs.size() && i < n.outputs.size(); ++i) {
        consts[n.outputs[i]] = outs[i];
        pending_observe.push_back(n.outputs[i]);
      }
      continue;
    }
    auto ks = std::make_shared<Executable::KernelStep>();
    bool kernel = false;
    {
      if (n.op == "Conv" && n.has_input(1) && is_const(n.inputs[1]) && (!n.has_input(2) || is_const(n.inputs[2])) &&
          g.value(n.inputs[0]).dtype == DType::f32) {
        const Shape xs = shape_of(n.inputs[0]);
        const Tensor w = consts.at(n.inputs[1]).contiguous();
        if ((xs.size() == 3 || xs.size() == 4) && w.dtype() == DType::f32 && w.rank() == xs.size()) {
          const bool one_d = xs.size() == 3;
          std::vector<std::int64_t> kshape(w.shape().begin() + 2, w.shape().end());
          const auto win = ir::make_window(xs, kshape, n.attr<std::vector<std::int64_t>>("strides", {}),
                                           n.attr<std::vector<std::int64_t>>("dilations", {}),
                                           n.attr<std::vector<std::int64_t>>("pads", {}),
                                           n.attr<std::string>("auto_pad", "NOTSET"), false, where);
          Conv2dShape cs;
          cs.cin = xs[1];
          cs.cout = w.dim(0);
          cs.h = one_d ? 1 : xs[2];
          cs.w = xs.back();
          cs.kh = one_d ? 1 : w.dim(2);
          cs.kw = w.shape().back();
          cs.stride_h = one_d ? 1 : win.strides[0];
          cs.stride_w = win.strides.back();
          cs.dil_h = one_d ? 1 : win.dilations[0];
          cs.dil_w = win.dilations.back();
          const std::size_t sp = one_d ? 1 : 2;
          cs.pad_top = one_d ? 0 : win.pads[0];
          cs.pad_left = win.pads[sp - 1];
          cs.pad_bottom = one_d ? 0 : win.pads[sp];
          cs.pad_right = win.pads[2 * sp - 1];
          cs.groups = n.attr<std::int64_t>("group", 1);
          if (cs.groups == 1 || cs.is_depthwise()) {
            ks->kind = Executable::Kind::conv;
            ks->kernel_bias = n.has_input(2) ? detail::const_floats(consts.at(n.inputs[2])) : std::vector<float>(static_cast<std::size_t>(cs.cout), 0.f);
            ks->epi.scale.assign(static_cast<std::size_t>(cs.cout), 1.f);
            ks->batch = xs[0];
            ks->in_per_image = cs.cin * cs.h * cs.w;
            ks->out_per_image = cs.cout * cs.out_h() * cs.out_w();
            kernel = true;
            ks->mid_shape = shape_of(n.outputs[0]);
            ks->in = n.inputs[0];
            ks->mid = n.outputs[0];
            ks->m = cs.cout;
            ks->epi.shift = ks->kernel_bias;
            ks->out = ks->mid;
            // fusion
            const ir::Node* cur = &n;
            std::vector<std::string> fused_ops;
            while (single_private(cur->outputs[0])) {
              const ir::Node* c = consumer_of[cur->outputs[0]];
              if (!c || ks->epi.act != Activation::none) break;
              if (!fuse_activation(*c, *cur, ks->epi)) break;
              ks->absorbed.emplace_back(g, *c, consts, o.threads);
              ks->absorbed_outputs.push_back(c->outputs[0]);
              fused_ops.push_back(c->op);
              absorbed.insert(c);
              cur = c;
            }
            ks->out = cur->outputs[0];
            ks->out_shape = shape_of(ks->out);
            auto conv = std::make_shared<Conv2dF32>(cs, w.data<float>(), ks->epi, pool, copt, state_->im2col);
            std::optional<detail::QdqLinear> qo;
            if (state_->int8 != Int8::never && cs.groups == 1) qo = detail::qdq_conv_operands(n, xs.size(), cs.cout, look);
            if (qo) {
              auto cand = std::make_shared<const Conv2dQu8>(cs, qo->w.data(), qo->w_scale.data(), qo->xq, ks->epi, pool, copt);
              if (state_->int8 == Int8::always || detail::best_ms(cand->matmul().candidates()) < detail::best_ms(conv->matmul()->candidates())) {
                exe.layers_.push_back(LayerInfo{n.name, n.op, cand->matmul().format(), cand->matmul().kernel(), fused_ops,
                                                cand->matmul().weight_bytes()});
                exe.resident_ += cand->resident_bytes();
                ks->qconv = std::move(cand);
                take_quantised_input(n, *qo, *ks);
              }
            }
            LayerInfo li{n.name, n.op, Format::dense, "direct:depthwise", fused_ops, 0};
            if (ks->qconv) {
              // INT8 chosen: the f32 candidate is dropped.
            } else if (conv->matmul()) {
              li.format = conv->matmul()->format();
              li.kernel = conv->matmul()->kernel() + (conv->implicit_im2col() ? "+implicit-im2col" : "");
              li.weight_bytes = conv->matmul()->weight_bytes();
            } else {
              li.weight_bytes = static_cast<std::size_t>(w.numel()) * sizeof(float);
            }
            if (!ks->qconv) {
              exe.resident_ += conv->resident_bytes();
              exe.layers_.push_back(std::move(li));
              ks->conv = std::move(conv);
            }
          }
        }
      } else if ((n.op == "Gemm" || n.op == "MatMul") && is_const(n.inputs.at(1)) && !is_const(n.inputs[0]) &&
                 g.value(n.inputs[0]).dtype == DType::f32) {
        const Shape as = shape_of(n.inputs[0]);
        const Tensor b = consts.at(n.inputs[1]).contiguous();
        const bool gemm = n.op == "Gemm";
        bool ok = b.dtype() == DType::f32 && b.rank() == 2 && as.size() >= 2;
        if (gemm) ok &= as.size() == 2 && n.attr<std::int64_t>("transA", 0) == 0;
        const bool tb = gemm && n.attr<std::int64_t>("transB", 0) != 0;
        const std::int64_t K = as.back(), M = tb ? b.dim(0) : b.dim(1);
        ok &= (tb ? b.dim(1) : b.dim(0)) == K;
        std::vector<float> shift(static_cast<std::size_t>(ok ? M : 0), 0.f), scale(static_cast<std::size_t>(ok ? M : 0), 1.f);
        if (ok && gemm) {
          const float alpha = n.attr<float>("alpha", 1.f), beta = n.attr<float>("beta", 1.f);
          std::fill(scale.begin(), scale.end(), alpha);
          if (n.has_input(2) && beta != 0.f) {
            const Tensor& c = consts.at(n.inputs[2]);
            const auto cv = detail::const_floats(c);
            const bool per_out = c.numel() == M && (c.rank() == 1 || (c.rank() == 2 && c.dim(0) == 1));
            if (per_out) for (std::int64_t i = 0; i < M; ++i) shift[static_cast<std::size_t>(i)] = beta * cv[static_cast<std::size_t>(i)];
            else if (c.numel() == 1) std::fill(shift.begin(), shift.end(), beta * cv[0]);
            else ok = false;
          }
        }
        if (ok) {
          std::vector<float> wt(static_cast<std::size_t>(M * K));
          const float* bp = b.data<float>();
          for (std::int64_t r = 0; r < M; ++r)
            for (std::int64_t c = 0; c < K; ++c) wt[static_cast<std::size_t>(r * K + c)] = tb ? bp[r * K + c] : bp[c * M + r];
          ks->kind = Executable::Kind::linear;
          ks->in = n.inputs[0];
          ks->mid = n.outputs[0];
          ks->mid_shape = shape_of(ks->mid);
          ks->k = K;
          ks->m = M;
          ks->rows = numel_of(as) / K;
          ks->kernel_bias = shift;
          ks->epi.scale = scale;
          ks->epi.shift = shift;
          const ir::Node* cur = &n;
          std::vector<std::string> fused_ops;
          while (single_private(cur->outputs[0])) {
            const ir::Node* c = consumer_of[cur->outputs[0]];
            if (!c || ks->epi.act != Activation::none) break;
            if (c->op == "Add" && !ks->add_fused && fused_ops.empty()) {
              const std::string& other = c->inputs[0] == cur->outputs[0] ? c->inputs[1] : c->inputs[0];
              if (!is_const(other) || other.empty()) break;
              const Tensor& bt = consts.at(other);
              bool bias_ok = bt.dtype() == DType::f32 && bt.numel() == M && bt.rank() <= ks->mid_shape.size() && bt.shape().back() == M;
              if (!bias_ok || shape_of(c->outputs[0]) != ks->mid_shape) break;
              const auto bv = detail::const_floats(bt);
              for (std::int64_t i = 0; i < M; ++i) ks->epi.shift[static_cast<std::size_t>(i)] += bv[static_cast<std::size_t>(i)];
              ks->add_fused = true;
            } else if (!fuse_activation(*c, *cur, ks->epi)) {
              break;
            }
            ks->absorbed.emplace_back(g, *c, consts, o.threads);
            ks->absorbed_outputs.push_back(c->outputs[0]);
            fused_ops.push_back(c->op);
            absorbed.insert(c);
            cur = c;
          }
          ks->out = cur->outputs[0];
          ks->out_shape = shape_of(ks->out);
          auto mm = std::make_shared<PreparedMatmul>(prepare_matmul(wt.data(), M, K, ks->rows, ks->epi, pool, copt));
          std::shared_ptr<const PreparedMatmulQu8> qmm;
          std::optional<detail::QdqLinear> qo;
          if (state_->int8 != Int8::never) qo = detail::qdq_linear_operands(n, tb, M, K, look);
          if (qo) {
            ChoiceOptions qopt = copt;
            qopt.qu8_native = true;  // qkernel_call runs oneDNN INT8 dense through run_nk
            auto cand = std::make_shared<PreparedMatmulQu8>(
                prepare_matmul_qu8(qo->w.data(), qo->w_scale.data(), M, K, ks->rows, qo->xq, ks->epi, pool, qopt));
            if (state_->int8 == Int8::always || detail::best_ms(cand->candidates()) < detail::best_ms(mm->candidates())) {
              qmm = std::move(cand);
              take_quantised_input(n, *qo, *ks);
            }
          }
          if (qmm) {
            exe.layers_.push_back(LayerInfo{n.name, n.op, qmm->format(), qmm->kernel(), fused_ops, qmm->weight_bytes()});
            exe.resident_ += qmm->weight_bytes();
            ks->qmm = std::move(qmm);
          } else {
            exe.layers_.push_back(LayerInfo{n.name, n.op, mm->format(), mm->kernel(), fused_ops, mm->weight_bytes()});
            exe.resident_ += mm->weight_bytes();
            ks->mm = std::move(mm);
          }
          kernel = true;
        }
      }
    }
    std::shared_ptr<Executable::TrStep> tr;
    if (!kernel && n.op == "Transpose" && n.inputs.size() == 1 && !is_const(n.inputs[0]) && n.outputs.size() == 1) {
      tr = std::make_shared<Executable::TrStep>();
      tr->in = n.inputs[0];
      tr->out = n.outputs[0];
      tr->where = where;
      tr->perm = n.attr<std::vector<std::int64_t>>("perm", {});
    }
    std::shared_ptr<Executable::QStep> qs;
    if (!kernel && !tr && n.op == "QuantizeLinear" && !is_const(n.inputs[0]) && g.value(n.inputs[0]).dtype == DType::f32 &&
        n.has_input(1) && is_const(n.inputs[1]) && (!n.has_input(2) || is_const(n.inputs[2]))) {
      const Tensor& sc = consts.at(n.inputs[1]);
      const Tensor* zp = n.has_input(2) ? &consts.at(n.inputs[2]) : nullptr;
      if (sc.dtype() == DType::f32 && sc.numel() == 1 && (!zp || (zp->dtype() == DType::u8 && zp->numel() == 1))) {
        qs = std::make_shared<Executable::QStep>();
        qs->in = n.inputs[0];
        qs->out = n.outputs.at(0);
        qs->scale = detail::const_floats(sc)[0];
        qs->zero_point = zp ? zp->contiguous().data<std::uint8_t>()[0] : 0;
      }
    }
    std::shared_ptr<Executable::MmStep> mms;
    if (!kernel && !tr && !qs && n.op == "MatMul" && n.inputs.size() == 2 && !is_const(n.inputs[0]) && !is_const(n.inputs[1]) &&
        g.value(n.inputs[0]).dtype == DType::f32 && g.value(n.inputs[1]).dtype == DType::f32) {
      const Shape as = shape_of(n.inputs[0]), bs = shape_of(n.inputs[1]);
      const bool same_batch = as.size() >= 2 && detail::static_positive(as) && detail::static_positive(bs) &&
                              as.size() == bs.size() && std::equal(as.begin(), as.end() - 2, bs.begin()) &&
                              as.back() == bs[bs.size() - 2];
      if (same_batch && shape_of(n.outputs.at(0)).size() == as.size()) {
        mms = std::make_shared<Executable::MmStep>();
        mms->a = n.inputs[0];
        mms->b = n.inputs[1];
        mms->out = n.outputs[0];
        mms->m = as[as.size() - 2];
        mms->k = as.back();
        mms->n = bs.back();
        mms->batch = numel_of(as) / std::max<std::int64_t>(mms->m * mms->k, 1);
        mms->out_shape = shape_of(mms->out);
        if (numel_of(mms->out_shape) != mms->batch * mms->m * mms->n) mms.reset();
      }
    }
    std::shared_ptr<Executable::EwStep> ew;
    std::shared_ptr<Executable::PwStep> pw;
    if (!kernel && !tr && !qs && !mms) {
      ew = elementwise_step(n, g, consts);
      if (ew && single_private(ew->mid)) {
        const ir::Node* c = consumer_of[ew->mid];
        if (c && c->op == "Relu") {
          ew->absorbed.emplace_back(g, *c, consts, o.threads);
          ew->out = c->outputs[0];
          absorbed.insert(c);
        }
      }
      if (!ew) pw = pointwise_step(n, g, consts);
    }
    std::shared_ptr<Executable::ViewStep> view;
    if (!kernel && !tr && !qs && !mms && !ew && !pw &&
        (n.op == "Reshape" || n.op == "Flatten" || n.op == "Squeeze" || n.op == "Unsqueeze") && !n.inputs.empty() &&
        !is_const(n.inputs[0]) && n.outputs.size() == 1 && detail::static_positive(shape_of(n.outputs[0])) &&
        detail::static_positive(shape_of(n.inputs[0])) && numel_of(shape_of(n.outputs[0])) == numel_of(shape_of(n.inputs[0]))) {
      view = std::make_shared<Executable::ViewStep>();
      view->in = n.inputs[0];
      view->out = n.outputs[0];
      view->shape = shape_of(n.outputs[0]);
    }
    std::shared_ptr<Executable::PoolStep> mp;
    if (!kernel && !tr && !qs && !mms && !ew && !pw && !view) mp = max_pool_step(n, g, where);
    Executable::Step step;
    step.observe_consts = std::move(pending_observe);
    pending_observe.clear();
    if (kernel) step.kernel = std::move(ks);
    else if (ew) step.ew = std::move(ew);
    else if (pw) step.pw = std::move(pw);
    else if (tr) step.tr = std::move(tr);
    else if (qs) step.q = std::move(qs);
    else if (mms) step.mm = std::move(mms);
    else if (view) step.view = std::move(view);
    else if (mp) step.pool = std::move(mp);
    else step.ref = std::make_shared<const detail::RefNode>(g, n, consts, o.threads);
    exe.steps_.push_back(std::move(step));
  }
  exe.tail_observe_consts_ = std::move(pending_observe);
  fuse_row_chains(exe, graph_outputs);
  // Liveness: release env tensors after their last use.
  std::map<std::string, std::size_t> last_use;
  for (std::size_t i = 0; i < exe.steps_.size(); ++i)
    for (const auto& name : Executable::touched(exe.steps_[i])) last_use[name] = i;
  for (const auto& [name, i] : last_use)
    if (!graph_outputs.count(name)) exe.steps_[i].release.push_back(name);
  // Constants the steps keep (beyond the graph's own initializers, shared by storage).
  for (const auto& [name, t] : consts)
    if (!g.initializers.count(name)) exe.resident_ += t.nbytes();
  return exe;
}

static_assert(sparseloom::Backend<Backend>);

}  // namespace sparseloom::cpu
