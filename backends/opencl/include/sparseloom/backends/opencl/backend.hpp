#pragma once
// opencl::Backend: the core Backend concept on an OpenCL device. compile() turns an ir::Graph
// into a plan of pre-bound device ops: weights uploaded once (resident, counted on the
// Context), every tensor given a device buffer, every kernel's arguments set. run() is one
// upload per input, all kernels enqueued back to back, one (non-blocking) download per output
// and one wait: no host round trip in between.
//
// Every op of the import set runs on the device except (host fallback, per node, noted in
// Executable::host_nodes()): Cast between different dtypes, ConstantOfShape/Range on
// activations, Gemm with a full-size C, ReduceMean over non-adjacent axes, MatMul with a 1-D
// operand, Clip with non-constant bounds, Gather/Slice/... whose indices are not constant.
// Nodes whose inputs are all constant (DequantizeLinear of INT8 weights, shape arithmetic) are
// evaluated once at compile time by the reference backend.
//
// Fusion (BackendOptions::fuse): an activation after Conv/Gemm/MatMul/Add goes into that op's
// epilogue; a QuantizeLinear -> DequantizeLinear pair runs as one kernel. RunOptions::affine on
// a Conv/Gemm/2-D MatMul output (pre-activation) overrides that op's epilogue scale/shift
// (uploaded only when it changes: a stitch repair costs nothing per request); on any other
// tensor it is one in-place kernel after its producer. RunOptions::observe runs an unfused plan
// (built on first use) and downloads every tensor: the slow path.
#include <CL/opencl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "sparseloom/backends/opencl/buffer.hpp"
#include "sparseloom/backends/opencl/context.hpp"
#include "sparseloom/backends/opencl/kernels/graph.hpp"
#include "sparseloom/backends/opencl/ops.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/concepts/backend.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/shape_util.hpp"

namespace sparseloom::opencl {

// INT8 layers of QDQ graphs: where a short trial on the device finds them faster than f32 on
// the dequantised values, always (a quarter of the weight bytes), or never.
enum class Int8Mode { trial, always, never };

struct BackendOptions {
  MatMulOptions matmul{};  // per-layer weight format (dense / CSR / BSR 4x1 by trial)
  bool fuse = true;        // activations into producers' epilogues, Q->DQ pairs into one kernel
  bool host_fallback = true;  // ops without a kernel run on the host; false: ErrorCode::unsupported
  // Activations share device buffers when their lifetimes do not overlap (the resident bytes of
  // a deep block drop to about its widest cut); false: one buffer per tensor.
  bool reuse_buffers = true;
  // QDQ graphs: a Conv (groups 1) or Gemm (transB) whose input is a per-tensor u8
  // DequantizeLinear and whose weight dequantises s8 per output channel can run on the INT8
  // kernels (Conv2dInt8, GemmInt8) instead of f32 on the dequantised values (the same numbers up
  // to f32 rounding of the accumulation; the input is requantised from its dequantised values,
  // so an affine repair placed on that input itself would be rounded to the grid).
  Int8Mode int8 = Int8Mode::trial;
  // trial: INT8 wins when its time is below this x the f32 path's (0.9: clearly faster, since
  // small layers' timings are noisy; above 1 prefers INT8 for its bytes unless much slower).
  double int8_margin = 0.9;
  Completion completion = Completion::automatic;  // how run() waits (completion.hpp)
};

namespace graph_detail {

inline std::vector<float> to_floats(const Tensor& t_in) {
  const Tensor t = t_in.contiguous();
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> v(n);
  switch (t.dtype()) {
    case DType::f32: std::memcpy(v.data(), t.raw(), n * 4); break;
    case DType::i8: for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(reinterpret_cast<const std::int8_t*>(t.raw())[i]); break;
    case DType::u8: for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(reinterpret_cast<const std::uint8_t*>(t.raw())[i]); break;
    case DType::i16: for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(reinterpret_cast<const std::int16_t*>(t.raw())[i]); break;
    case DType::i32: for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(reinterpret_cast<const std::int32_t*>(t.raw())[i]); break;
    case DType::i64: for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(reinterpret_cast<const std::int64_t*>(t.raw())[i]); break;
  }
  return v;
}

// Device values are floats; integer tensors hold exact integers (8-bit quantised values).
inline Tensor from_floats(const float* p, const Shape& shape, DType dt) {
  Tensor t = Tensor::empty(shape, dt);
  const auto n = static_cast<std::size_t>(t.numel());
  auto conv = [&](auto* out) {
    using T = std::remove_pointer_t<decltype(out)>;
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(std::nearbyint(p[i]));
  };
  switch (dt) {
    case DType::f32: std::memcpy(t.raw(), p, n * 4); break;
    case DType::i8: conv(reinterpret_cast<std::int8_t*>(t.raw())); break;
    case DType::u8: conv(reinterpret_cast<std::uint8_t*>(t.raw())); break;
    case DType::i16: conv(reinterpret_cast<std::int16_t*>(t.raw())); break;
    case DType::i32: conv(reinterpret_cast<std::int32_t*>(t.raw())); break;
    case DType::i64: conv(reinterpret_cast<std::int64_t*>(t.raw())); break;
  }
  return t;
}

inline std::int64_t prod(const Shape& s, std::size_t b, std::size_t e) {
  std::int64_t p = 1;
  for (std::size_t i = b; i < e && i < s.size(); ++i) p *= s[i];
  return p;
}

// Activation codes of the fused epilogue (kernels/common.hpp) for an activation node.
struct Act {
  Activation act = Activation::none;
  float p0 = 0, p1 = 0;
};

}  // namespace graph_detail

class Backend;

class Executable {
 public:
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;
  Executable(Executable&&) noexcept = default;
  Executable& operator=(Executable&&) noexcept = default;

  std::vector<Tensor> run(std::span<const Tensor> inputs, const RunOptions& ro = {}) const {
    std::lock_guard lock(impl_->mu);
    return impl_->run(inputs, ro);
  }

  const ir::Graph& graph() const noexcept { return impl_->g; }
  Context& context() const noexcept { return *impl_->ctx; }
  // Device bytes this executable holds (weights, activations, scratch), counted at compile.
  std::int64_t resident_bytes() const noexcept { return impl_->main.resident; }
  // Nodes that run on the host (no OpenCL kernel for that case), and the kernel of every GEMM-like
  // node ("node: dense.tile32x32", "node: csr.v4.lx64.ks4.r1").
  const std::vector<std::string>& host_nodes() const noexcept { return impl_->main.host_nodes; }
  const std::vector<std::string>& kernels() const noexcept { return impl_->main.kernel_choice; }
  // Wall time compile() spent on each node (program builds, the per-layer format trial).
  const std::vector<std::pair<std::string, double>>& compile_times() const noexcept { return impl_->main.compile_ms; }
  std::size_t steps() const noexcept { return impl_->main.steps.size(); }

  // Compiled state (public for the builder; not an API).
  struct EpiSlot {
    std::string tensor;  // the tensor whose per-channel affine this epilogue can absorb
    EpilogueBuffers* buf = nullptr;
    std::vector<float> scale, shift;  // as compiled
    bool overridden = false;
    std::vector<float> cur_scale, cur_shift;
  };

  struct Step {
    std::string node;
    std::vector<std::string> outputs;      // tensors this step produces (observe, affine)
    std::function<void()> enqueue;         // device work (empty for host / constant steps)
    std::function<void()> host;            // host fallback (blocking)
  };

  struct Plan {
    bool built = false;
    std::deque<Buffer> buffers;
    std::unordered_map<std::string, Buffer*> slot;  // activation tensor -> device buffer
    std::vector<Step> steps;
    std::deque<EpiSlot> epi;
    std::unordered_map<std::string, EpiSlot*> epi_of;  // tensor -> epilogue that can absorb its affine
    std::unordered_map<std::string, std::size_t> producer;  // tensor -> step index
    std::vector<std::shared_ptr<void>> keep;  // ops, launches, parameter buffers
    std::map<std::string, Tensor> consts;     // initializers and compile-time results
    std::vector<std::string> host_nodes, kernel_choice;
    std::vector<std::pair<std::string, double>> compile_ms;  // per node: build + format trial
    std::int64_t resident = 0;
    // Per-tensor repair buffers for affines that no epilogue absorbs.
    std::unordered_map<std::string, std::pair<Buffer, Buffer>> post_affine;
  };

  struct Impl {
    std::shared_ptr<Context> ctx;
    ir::Graph g;
    BackendOptions opt;
    Completion wait = Completion::wait;  // resolved: never automatic
    Plan main, unfused;
    std::mutex mu;

    Impl(std::shared_ptr<Context> c, ir::Graph graph, BackendOptions o)
        : ctx(std::move(c)), g(std::move(graph)), opt(o) {
      wait = ctx->resolve(opt.completion);
    }

    std::vector<Tensor> run(std::span<const Tensor> inputs, const RunOptions& ro);
    void build(Plan& p, bool fuse);
  };

  explicit Executable(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::unique_ptr<Impl> impl_;
};

// ------------------------------------------------------------------------------------------
// Compilation.
namespace graph_detail {

class Builder {
 public:
  using Plan = Executable::Plan;
  using Step = Executable::Step;
  using EpiSlot = Executable::EpiSlot;

  Builder(Context& ctx, const ir::Graph& g, const BackendOptions& opt, Plan& p, bool fuse)
      : ctx_(ctx), g_(g), opt_(opt), p_(p), fuse_(fuse) {}

  void build() {
    const auto resident0 = ctx_.resident_bytes();
    for (const auto& [k, t] : g_.initializers) p_.consts.emplace(k, t);
    for (const auto& n : g_.nodes)
      for (const auto& o : n.outputs) made_by_[o] = &n;
    for (const auto& n : g_.nodes)
      for (const auto& in : n.inputs)
        if (!in.empty()) ++consumers_[in];
    for (const auto& o : g_.outputs) ++consumers_[o.name], outputs_.insert(o.name);
    for (const auto& vi : g_.inputs) ++consumers_[vi.name], new_slot(vi.name);  // inputs are never reused
    skip_.assign(g_.nodes.size(), false);
    for (std::size_t i = 0; i < g_.nodes.size(); ++i) {
      if (skip_[i]) continue;
      const ir::Node& n = g_.nodes[i];
      const std::size_t before = p_.steps.size();
      const std::vector<bool> skipped_before = skip_;
      const auto t0 = std::chrono::steady_clock::now();
      if (all_const(n)) {
        fold_now(n);
      } else if (!compile_node(i)) {
        check(opt_.host_fallback, ErrorCode::unsupported, where(n), "no OpenCL kernel for this case");
        host_step(n);
      }
      p_.compile_ms.emplace_back(
          n.name, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      for (std::size_t s = before; s < p_.steps.size(); ++s)
        for (const auto& o : p_.steps[s].outputs) p_.producer[o] = s;
      // Steps run in compile order, so once node i (with the consumers it fused) is compiled,
      // a tensor no later node reads can hand its buffer on.
      retire(n);
      for (std::size_t j = i + 1; j < g_.nodes.size(); ++j)
        if (skip_[j] && !skipped_before[j]) retire(g_.nodes[j]);
    }
    p_.resident = ctx_.resident_bytes() - resident0;
    p_.built = true;
  }

 private:
  // ---------------------------------------------------------------- helpers
  std::string where(const ir::Node& n) const { return g_.source + ": " + n.where() + " on " + ctx_.where(); }
  bool is_const(const std::string& t) const { return p_.consts.count(t) != 0; }
  bool all_const(const ir::Node& n) const {
    for (const auto& in : n.inputs)
      if (!in.empty() && !is_const(in)) return false;
    return !n.inputs.empty();
  }
  const Tensor& cst(const std::string& t) const { return p_.consts.at(t); }
  const Shape& shape(const std::string& t) const { return g_.value(t).shape; }
  std::int64_t numel(const std::string& t) const { return numel_of(shape(t)); }

  // An activation's buffer: the smallest free one that fits, else a new one.
  Buffer& new_slot(const std::string& t) {
    const auto bytes = static_cast<std::size_t>(std::max<std::int64_t>(numel(t), 1)) * 4;
    Buffer* b = nullptr;
    if (auto it = free_.lower_bound(bytes); opt_.reuse_buffers && it != free_.end()) {
      b = it->second;
      free_.erase(it);
    } else {
      b = &p_.buffers.emplace_back(ctx_, bytes);
    }
    refs_[b] = 1;
    p_.slot[t] = b;
    return *b;
  }
  // t is another view of b's bytes (Reshape and friends).
  void alias(const std::string& t, Buffer& b) {
    p_.slot[t] = &b;
    if (auto r = refs_.find(&b); r != refs_.end()) ++r->second;
  }
  // Node n has been compiled: each input read for the last time, and each output nothing reads,
  // gives up its buffer (the buffer is free once no view of it is live).
  void retire(const ir::Node& n) {
    auto drop = [&](const std::string& t) {
      const auto s = p_.slot.find(t);
      if (s == p_.slot.end()) return;
      const auto r = refs_.find(s->second);
      if (r != refs_.end() && --r->second == 0) free_.emplace(r->first->bytes(), r->first);
    };
    for (const auto& in : n.inputs)
      if (!in.empty())
        if (auto c = consumers_.find(in); c != consumers_.end() && --c->second == 0) drop(in);
    for (const auto& o : n.outputs)
      if (!o.empty() && consumers_.count(o) == 0) drop(o);
  }
  Buffer& dst(const std::string& t) { return new_slot(t); }
  // The device buffer holding tensor t: an activation's slot or an uploaded constant.
  Buffer& src(const std::string& t) {
    if (auto it = p_.slot.find(t); it != p_.slot.end()) return *it->second;
    check(is_const(t), ErrorCode::internal, g_.source, "tensor '" + t + "' has no device buffer");
    const auto v = to_floats(cst(t));
    auto& b = p_.buffers.emplace_back(ctx_, std::max<std::size_t>(v.size(), 1) * 4, CL_MEM_READ_ONLY);
    if (!v.empty()) b.write(std::span<const float>(v));
    p_.slot[t] = &b;
    return b;
  }
  template <class T>
  Buffer& param(const std::vector<T>& v) {
    auto b = std::make_shared<Buffer>(Buffer::upload(ctx_, std::span<const T>(v.data(), v.size()), CL_MEM_READ_ONLY));
    p_.keep.push_back(b);
    return *b;
  }
  template <class T, class... A>
  T& keep(A&&... a) {
    auto sp = std::make_shared<T>(std::forward<A>(a)...);
    p_.keep.push_back(sp);
    return *sp;
  }
  Launch& launch(const char* name, std::size_t n, std::string opts = {}) {
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), name, opts);
    l.global = {detail::round_up(std::max<std::size_t>(n, 1), 64), 1, 1};
    l.local = {64, 1, 1};
    return l;
  }
  void push(const ir::Node& n, std::vector<std::string> outs, std::function<void()> f) {
    p_.steps.push_back(Step{n.name, std::move(outs), std::move(f), {}});
  }
  static int i32(std::int64_t v) { return detail::to_int(v, "tensor dimension"); }

  // The single consumer of t, if t feeds exactly one node and is not a graph output.
  std::optional<std::size_t> sole_consumer(const std::string& t, std::size_t after) const {
    if (!fuse_ || outputs_.count(t) || consumers_.count(t) == 0 || consumers_.at(t) != 1) return std::nullopt;
    for (std::size_t j = after + 1; j < g_.nodes.size(); ++j)
      for (const auto& in : g_.nodes[j].inputs)
        if (in == t) return j;
    return std::nullopt;
  }
  // An activation node after node i that the epilogue can absorb: marks it skipped.
  std::pair<Act, std::string> fuse_act(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    Act a;
    auto j = sole_consumer(n.outputs[0], i);
    if (!j) return {a, n.outputs[0]};
    const ir::Node& m = g_.nodes[*j];
    if (m.inputs.empty() || m.inputs[0] != n.outputs[0]) return {a, n.outputs[0]};
    if (m.op == "Relu") a.act = Activation::relu;
    else if (m.op == "Sigmoid") a.act = Activation::sigmoid;
    else if (m.op == "HardSwish") a.act = Activation::hardswish;
    else if (m.op == "Gelu") a.act = Activation::gelu;
    else if (m.op == "Clip") {
      auto b = clip_bounds(m);
      if (!b) return {a, n.outputs[0]};
      a.act = Activation::clip;
      a.p0 = b->first;
      a.p1 = b->second;
    } else {
      return {a, n.outputs[0]};
    }
    skip_[*j] = true;
    return {a, m.outputs[0]};
  }
  std::optional<std::pair<float, float>> clip_bounds(const ir::Node& m) const {
    float lo = m.attr<float>("min", -std::numeric_limits<float>::infinity());
    float hi = m.attr<float>("max", std::numeric_limits<float>::infinity());
    for (std::size_t k : {1u, 2u}) {
      if (!m.has_input(k)) continue;
      if (!is_const(m.inputs[k])) return std::nullopt;
      (k == 1 ? lo : hi) = to_floats(cst(m.inputs[k]))[0];
    }
    return std::make_pair(lo, hi);
  }
  // The epilogue slot: affines on `tensor` fold into `buf`'s scale/shift.
  void add_epi(const std::string& tensor, EpilogueBuffers& buf, std::vector<float> scale, std::vector<float> shift) {
    auto& e = p_.epi.emplace_back();
    e.tensor = tensor;
    e.buf = &buf;
    e.scale = std::move(scale);
    e.shift = std::move(shift);
    p_.epi_of[tensor] = &e;
  }

  // ---------------------------------------------------------------- compile-time / host nodes
  // A one-node graph the reference backend runs: `consts` as initializers, the rest inputs.
  ir::Graph single(const ir::Node& n) const {
    ir::Graph s;
    s.source = g_.source;
    s.nodes = {n};
    std::set<std::string> seen;
    for (const auto& in : n.inputs) {
      if (in.empty() || !seen.insert(in).second) continue;
      if (is_const(in)) s.initializers.emplace(in, cst(in));
      else s.inputs.push_back(g_.value(in));
      if (g_.values.count(in)) s.values[in] = g_.value(in);
      else s.values[in] = ir::ValueInfo{in, cst(in).shape(), cst(in).dtype()};
    }
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      s.outputs.push_back(g_.value(o));
      s.values[o] = g_.value(o);
    }
    return s;
  }
  void fold_now(const ir::Node& n) {
    auto exe = reference::Executable(single(n), 1);
    const auto outs = exe.run({});
    std::size_t k = 0;
    std::vector<std::string> names;
    for (const auto& o : n.outputs)
      if (!o.empty()) {
        p_.consts[o] = outs[k++];
        names.push_back(o);
      }
    push(n, names, {});  // nothing to run; observe still sees the constants
  }
  void host_step(const ir::Node& n) {
    p_.host_nodes.push_back(n.name + " (" + n.op + ")");
    auto exe = std::make_shared<reference::Executable>(single(n), 1);
    std::vector<std::pair<Buffer*, ir::ValueInfo>> ins;
    for (const auto& vi : exe->graph().inputs) ins.emplace_back(&src(vi.name), vi);
    std::vector<std::pair<Buffer*, std::string>> outs;
    std::vector<std::string> names;
    for (const auto& o : n.outputs)
      if (!o.empty()) {
        outs.emplace_back(&dst(o), o);
        names.push_back(o);
      }
    Step s{n.name, names, {}, [exe, ins, outs]() {
             std::vector<Tensor> xs;
             for (const auto& [b, vi] : ins) {
               std::vector<float> h(static_cast<std::size_t>(numel_of(vi.shape)));
               b->read(std::span<float>(h));
               xs.push_back(from_floats(h.data(), vi.shape, vi.dtype));
             }
             auto ys = exe->run(xs);
             for (std::size_t k = 0; k < outs.size(); ++k) {
               const auto v = to_floats(ys[k]);
               if (!v.empty()) outs[k].first->write(std::span<const float>(v));
             }
           }};
    p_.steps.push_back(std::move(s));
  }

  // ---------------------------------------------------------------- device nodes
  bool compile_node(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    const std::string& op = n.op;
    if (op == "Conv") return conv(i);
    if (op == "Gemm" || op == "MatMul") return gemm(i);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") return binary(i);
    if (unary_code(n) >= 0) return unary(n);
    if (op == "Identity" || op == "Dropout" || op == "Flatten" || op == "Reshape" || op == "Squeeze" ||
        op == "Unsqueeze" || (op == "Cast" && g_.value(n.inputs[0]).dtype == g_.value(n.outputs[0]).dtype)) {
      if (n.outputs.size() > 1 && !n.outputs[1].empty()) return false;  // Dropout's mask
      alias(n.outputs[0], src(n.inputs[0]));  // same bytes, another shape
      push(n, {n.outputs[0]}, {});
      return true;
    }
    if (op == "QuantizeLinear" || op == "DequantizeLinear") return qdq(i);
    if (op == "BatchNormalization") return batchnorm(n);
    if (op == "Softmax") return softmax(n);
    if (op == "LayerNormalization") return layernorm(n);
    if (op == "ReduceMean") return reduce_mean(n);
    if (op == "MaxPool" || op == "AveragePool") return pool(n);
    if (op == "GlobalAveragePool") {
      const Shape& xs = shape(n.inputs[0]);
      if (xs.size() < 3) return false;
      auto& gap = keep<GlobalAvgPool>(ctx_, xs[0] * xs[1], prod(xs, 2, xs.size()));
      gap.bind(src(n.inputs[0]), dst(n.outputs[0]));
      push(n, {n.outputs[0]}, [&gap] { gap.enqueue(); });
      return true;
    }
    if (op == "Concat") return concat(n);
    if (op == "Shape" || op == "Size") return shape_only(n);
    return index_map(n);  // Transpose, Slice, Gather, Split, ...: data movement by index
  }

  bool conv(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    const std::string wn = n.inputs[1];
    if (!is_const(wn) || (n.has_input(2) && !is_const(n.inputs[2]))) return false;
    const Shape& xs = shape(n.inputs[0]);
    const Tensor w = cst(wn).contiguous();
    if (w.dtype() != DType::f32 || (xs.size() != 3 && xs.size() != 4)) return false;
    std::vector<std::int64_t> ks(w.shape().begin() + 2, w.shape().end());
    const auto win = ir::make_window(xs, ks, n.attr<std::vector<std::int64_t>>("strides", {}),
                                     n.attr<std::vector<std::int64_t>>("dilations", {}),
                                     n.attr<std::vector<std::int64_t>>("pads", {}),
                                     n.attr<std::string>("auto_pad", "NOTSET"), false, where(n));
    const bool one_d = xs.size() == 3;
    const std::size_t s = one_d ? 1 : 2;
    const std::int64_t N = xs[0], C = xs[1], H = one_d ? 1 : xs[2], W = xs.back(), Cout = w.dim(0);
    const std::int64_t G = n.attr<std::int64_t>("group", 1);
    const std::int64_t KH = one_d ? 1 : win.kernel[0], KW = win.kernel.back();
    const std::int64_t SH = one_d ? 1 : win.strides[0], SW = win.strides.back();
    const std::int64_t DH = one_d ? 1 : win.dilations[0], DW = win.dilations.back();
    const std::int64_t PH = one_d ? 0 : win.pads[0], PW = win.pads[s - 1];
    const std::int64_t PHe = one_d ? 0 : win.pads[s], PWe = win.pads[2 * s - 1];
    const std::int64_t OH = one_d ? 1 : win.out[0], OW = win.out.back();
    std::vector<float> bias = n.has_input(2) ? to_floats(cst(n.inputs[2])) : std::vector<float>(Cout, 0.f);
    auto [a, out_name] = fuse_act(i);
    Epilogue epi = Epilogue::bias(bias, a.act);
    epi.p0 = a.p0;
    epi.p1 = a.p1;
    Buffer& x = src(n.inputs[0]);
    Buffer& y = dst(out_name);
    const std::span<const float> wspan(w.data<float>(), static_cast<std::size_t>(w.numel()));
    Conv2dParams cp{C, H, W, Cout, KH, KW, SH, SW, PH, PW, DH, DW, G};
    const bool layer_ok = N == 1 && PH == PHe && PW == PWe && cp.oh() == OH && cp.ow() == OW &&
                          (G == 1 || cp.depthwise());
    std::shared_ptr<Conv2d> f32;  // the f32 layer, when an INT8 trial built it already
    if (auto q = layer_ok && G == 1 ? int8_operands(n, Cout) : std::nullopt) {
      Epilogue qe = epi;
      qe.scale.resize(static_cast<std::size_t>(Cout));
      for (std::size_t m = 0; m < qe.scale.size(); ++m) qe.scale[m] = q->w_scale[q->w_scale.size() == 1 ? 0 : m] * q->sx;
      auto c = std::make_shared<Conv2dInt8>(ctx_, cp, std::span<const std::int8_t>(q->w), q->sx, q->zx, qe);
      c->bind(x, y);
      std::string trial;
      if (opt_.int8 == Int8Mode::trial) {
        f32 = std::make_shared<Conv2d>(ctx_, cp, wspan, epi, opt_.matmul);
        f32->bind(x, y);
        const double ti = trial_ms(*c), tf = trial_ms(*f32);
        trial = " (trial: int8 " + std::to_string(ti) + " ms, f32 " + std::to_string(tf) + " ms)";
        if (!int8_wins(ti, tf)) p_.kernel_choice.push_back(n.name + ": " + f32->describe() + trial);
        else f32.reset();
      }
      if (!f32) {
        p_.keep.push_back(c);
        p_.kernel_choice.push_back(n.name + ": int8.s8u8" + trial);
        add_epi(n.outputs[0], c->epilogue(), qe.scale, bias);
        push(n, {out_name}, [c = c.get()] { c->enqueue(); });
        return true;
      }
    }
    if (layer_ok) {
      if (!f32) {
        f32 = std::make_shared<Conv2d>(ctx_, cp, wspan, epi, opt_.matmul);
        f32->bind(x, y);
        p_.kernel_choice.push_back(n.name + ": " + f32->describe());
      }
      p_.keep.push_back(f32);
      auto& c = *f32;
      add_epi(n.outputs[0], c.epilogue(), std::vector<float>(Cout, 1.f), bias);
      push(n, {out_name}, [&c] { c.enqueue(); });
      return true;
    }
    auto& wb = param(std::vector<float>(wspan.begin(), wspan.end()));
    auto& eb = keep<EpilogueBuffers>(ctx_, epi, Cout);
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_conv_direct");
    l.dims = 3;
    l.fixed_local = false;
    l.global = {static_cast<std::size_t>(OW), static_cast<std::size_t>(OH), static_cast<std::size_t>(N * Cout)};
    l.set_args(ctx_, x, wb, eb.scale, eb.shift, y, i32(C), i32(H), i32(W), i32(Cout), i32(G), i32(KH), i32(KW),
               i32(SH), i32(SW), i32(PH), i32(PW), i32(DH), i32(DW), i32(OH), i32(OW), eb.act, eb.p0, eb.p1);
    p_.kernel_choice.push_back(n.name + ": direct");
    add_epi(n.outputs[0], eb, std::vector<float>(Cout, 1.f), bias);
    push(n, {out_name}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  // Gemm and MatMul with a constant weight: Y^T (M x R) = W (M x K) * X^T (K x R) through MatMul
  // (dense / CSR / BSR), transposes around it only when R > 1. MatMul of two activations: the
  // batched kernel.
  bool gemm(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    const bool is_gemm = n.op == "Gemm";
    const std::string& an = n.inputs[0];
    const std::string& bn = n.inputs[1];
    const Shape& as = is_const(an) ? cst(an).shape() : shape(an);
    const Shape& ys = shape(n.outputs[0]);
    if (!is_const(bn) || is_const(an)) return is_gemm ? false : batch_matmul(n);
    const Tensor b = cst(bn).contiguous();
    if (b.dtype() != DType::f32 || as.size() < 2) return false;
    bool trans_a = false, trans_b = false;
    float alpha = 1.f, beta = 1.f;
    if (is_gemm) {
      trans_a = n.attr<std::int64_t>("transA", 0) != 0;
      trans_b = n.attr<std::int64_t>("transB", 0) != 0;
      alpha = n.attr<float>("alpha", 1.f);
      beta = n.attr<float>("beta", 1.f);
      if (b.rank() != 2 || as.size() != 2) return false;
    } else {
      if (b.rank() < 2 || prod(b.shape(), 0, b.rank() - 2) != 1) return batch_matmul(n);
    }
    const std::int64_t K = trans_b ? b.shape().back() : b.shape()[b.rank() - 2];
    const std::int64_t M = trans_b ? b.shape()[b.rank() - 2] : b.shape().back();
    const std::int64_t R = is_gemm ? (trans_a ? as[1] : as[0]) : numel_of(as) / as.back();
    // W: M x K row-major.
    std::vector<float> w(static_cast<std::size_t>(M * K));
    const float* pb = b.data<float>();
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t k = 0; k < K; ++k) w[m * K + k] = trans_b ? pb[m * K + k] : pb[k * M + m];
    std::vector<float> scale(static_cast<std::size_t>(M), alpha), shift(static_cast<std::size_t>(M), 0.f);
    if (is_gemm && n.has_input(2)) {
      if (!is_const(n.inputs[2])) return false;
      const Tensor c = cst(n.inputs[2]);
      const auto cv = to_floats(c);
      if (c.numel() == M && (c.rank() == 1 || c.dim(0) == 1 || R == 1)) {
        for (std::int64_t m = 0; m < M; ++m) shift[m] = beta * cv[m];
      } else if (c.numel() == 1) {
        for (auto& v : shift) v = beta * cv[0];
      } else {
        return false;  // a full C: host
      }
    }
    auto [a, out_name] = fuse_act(i);
    Epilogue epi;
    epi.scale = scale;
    epi.shift = shift;
    epi.act = a.act;
    epi.p0 = a.p0;
    epi.p1 = a.p1;
    Buffer& x = src(an);
    Buffer& y = dst(out_name);
    Buffer* yt = &y;
    Launch* tout = nullptr;
    if (R > 1) {
      auto& tb = keep<Buffer>(ctx_, static_cast<std::size_t>(M * R) * 4);
      yt = &tb;
      tout = &transpose2d(tb, y, M, R);
    }
    // QDQ Gemm (W: M x K, transB) in integers: the input's requantisation also transposes it.
    std::shared_ptr<GemmInt8> q8;
    Epilogue qe = epi;
    if (auto q = is_gemm && trans_b && !trans_a ? int8_operands(n, M) : std::nullopt) {
      for (std::size_t m = 0; m < qe.scale.size(); ++m) qe.scale[m] *= q->w_scale[q->w_scale.size() == 1 ? 0 : m] * q->sx;
      q8 = std::make_shared<GemmInt8>(ctx_, std::span<const std::int8_t>(q->w), M, K, R, q->sx, q->zx, qe);
      q8->bind(x, *yt);
    }
    auto take_int8 = [&](const std::string& trial) {
      p_.keep.push_back(q8);
      p_.kernel_choice.push_back(n.name + ": int8.s8u8" + trial);
      if (ys.size() == 2) add_epi(n.outputs[0], q8->epilogue(), qe.scale, shift);
      push(n, {out_name}, [q8 = q8.get(), tout, c = &ctx_] {
        q8->enqueue();
        if (tout) tout->enqueue(*c);
      });
      return true;
    };
    if (q8 && opt_.int8 == Int8Mode::always) return take_int8("");
    const std::size_t f32_from = p_.keep.size();  // what the f32 path keeps from here on
    auto mmp = std::make_shared<MatMul>(MatMul::create(ctx_, std::span<const float>(w), M, K, R, epi, opt_.matmul));
    MatMul& mm = *mmp;
    // X^T: K x R. Gemm with transA already is; R == 1 is the same memory.
    Buffer* xt = &x;
    Launch* tin = nullptr;
    if (R > 1 && !trans_a) {
      auto& tb = keep<Buffer>(ctx_, static_cast<std::size_t>(K * R) * 4);
      tin = &transpose2d(x, tb, R, K);
      xt = &tb;
    }
    mm.bind(*xt, *yt);
    std::string trial;
    if (q8) {  // the f32 path (input transpose + GEMM) against the INT8 one
      struct F32 {
        Launch* tin;
        MatMul* mm;
        Context* c;
        void enqueue() const {
          if (tin) tin->enqueue(*c);
          mm->enqueue();
        }
      };
      const double ti = trial_ms(*q8), tf = trial_ms(F32{tin, &mm, &ctx_});
      trial = " (trial: int8 " + std::to_string(ti) + " ms, f32 " + std::to_string(tf) + " ms)";
      if (int8_wins(ti, tf)) {
        p_.keep.resize(f32_from);  // the f32 path's input transpose (buffer, index map, launch) goes
        return take_int8(trial);
      }
    }
    p_.keep.push_back(mmp);
    p_.kernel_choice.push_back(n.name + ": " + mm.describe() + trial);
    if (ys.size() == 2) add_epi(n.outputs[0], mm.epilogue(), scale, shift);
    push(n, {out_name}, [tin, tout, &mm, c = &ctx_] {
      if (tin) tin->enqueue(*c);
      mm.enqueue();
      if (tout) tout->enqueue(*c);
    });
    return true;
  }
  // y (cols x rows) = x (rows x cols)^T through the index-map gather.
  Launch& transpose2d(const Buffer& x, Buffer& y, std::int64_t rows, std::int64_t cols) {
    std::vector<int> idx(static_cast<std::size_t>(rows * cols));
    for (std::int64_t c = 0; c < cols; ++c)
      for (std::int64_t r = 0; r < rows; ++r) idx[c * rows + r] = static_cast<int>(r * cols + c);
    auto& l = launch("g_gather", idx.size());
    l.set_args(ctx_, x, param(idx), y, i32(rows * cols));
    return l;
  }

  bool batch_matmul(const ir::Node& n) {
    const Shape as = is_const(n.inputs[0]) ? cst(n.inputs[0]).shape() : shape(n.inputs[0]);
    const Shape bs = is_const(n.inputs[1]) ? cst(n.inputs[1]).shape() : shape(n.inputs[1]);
    const Shape& ys = shape(n.outputs[0]);
    if (as.size() < 2 || bs.size() < 2) return false;
    const std::int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
    const std::size_t r = ys.size() - 2;
    std::vector<int> info{static_cast<int>(r)};
    auto batch_strides = [&](const Shape& s) {
      std::vector<int> st(r, 0);
      const std::size_t sr = s.size() - 2;
      std::int64_t acc = s[s.size() - 2] * s.back();
      for (std::size_t d = sr; d-- > 0;) {
        const std::size_t od = r - sr + d;
        st[od] = s[d] == 1 ? 0 : static_cast<int>(acc);
        acc *= s[d];
      }
      return st;
    };
    for (std::size_t d = 0; d < r; ++d) info.push_back(static_cast<int>(ys[d]));
    for (int v : batch_strides(as)) info.push_back(v);
    for (int v : batch_strides(bs)) info.push_back(v);
    const std::int64_t batch = prod(ys, 0, r);
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_batch_matmul");
    l.dims = 3;
    l.fixed_local = false;
    l.global = {static_cast<std::size_t>(N), static_cast<std::size_t>(M), static_cast<std::size_t>(batch)};
    l.set_args(ctx_, src(n.inputs[0]), src(n.inputs[1]), dst(n.outputs[0]), param(info), i32(M), i32(N), i32(K));
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  static int unary_code(const ir::Node& n) {
    static const std::map<std::string, int> codes = {
        {"Relu", 1}, {"LeakyRelu", 2}, {"Clip", 3}, {"Sigmoid", 4}, {"HardSigmoid", 5}, {"HardSwish", 6},
        {"Tanh", 7}, {"Erf", 8}, {"Gelu", 9}, {"Sqrt", 10}, {"Neg", 11}, {"Exp", 12}, {"Abs", 13},
        {"Reciprocal", 14}};
    auto it = codes.find(n.op);
    return it == codes.end() ? -1 : it->second;
  }
  std::optional<std::pair<float, float>> unary_params(const ir::Node& n) const {
    if (n.op == "LeakyRelu") return std::make_pair(n.attr<float>("alpha", 0.01f), 0.f);
    if (n.op == "HardSigmoid") return std::make_pair(n.attr<float>("alpha", 0.2f), n.attr<float>("beta", 0.5f));
    if (n.op == "Clip") return clip_bounds(n);
    return std::make_pair(0.f, 0.f);
  }
  bool unary(const ir::Node& n) {
    auto p = unary_params(n);
    if (!p) return false;
    const auto cnt = numel(n.outputs[0]);
    auto& l = launch("g_unary", static_cast<std::size_t>(cnt));
    l.set_args(ctx_, src(n.inputs[0]), dst(n.outputs[0]), i32(cnt), unary_code(n), p->first, p->second);
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  bool binary(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    static const std::map<std::string, int> codes = {{"Add", 0}, {"Sub", 1}, {"Mul", 2}, {"Div", 3}, {"Pow", 4}};
    auto sh = [&](const std::string& t) { return is_const(t) ? cst(t).shape() : shape(t); };
    const Shape as = sh(n.inputs[0]), bs = sh(n.inputs[1]);
    const Shape& ys = shape(n.outputs[0]);
    // A fused activation (the residual Add + ReLU of ResNet in one kernel).
    int uop = 0;
    float p0 = 0, p1 = 0;
    std::string out_name = n.outputs[0];
    if (auto j = sole_consumer(n.outputs[0], i)) {
      const ir::Node& m = g_.nodes[*j];
      if (unary_code(m) >= 0 && m.inputs[0] == n.outputs[0])
        if (auto p = unary_params(m)) {
          uop = unary_code(m);
          p0 = p->first;
          p1 = p->second;
          skip_[*j] = true;
          out_name = m.outputs[0];
        }
    }
    const auto cnt = numel_of(ys);
    Buffer& a = src(n.inputs[0]);
    Buffer& b = src(n.inputs[1]);
    Buffer& y = dst(out_name);
    const int opc = codes.at(n.op);
    if (as == ys && bs == ys) {
      auto& l = launch("g_binary_same", static_cast<std::size_t>(cnt));
      l.set_args(ctx_, a, b, y, i32(cnt), opc, uop, p0, p1);
      push(n, {out_name}, [&l, c = &ctx_] { l.enqueue(*c); });
      return true;
    }
    const std::size_t r = ys.size();
    auto strides = [&](const Shape& s) {
      std::vector<int> st(r, 0);
      const Shape cs = contiguous_strides(s);
      for (std::size_t d = 0; d < s.size(); ++d) st[r - s.size() + d] = s[d] == 1 ? 0 : static_cast<int>(cs[d]);
      return st;
    };
    std::vector<int> info{static_cast<int>(r)};
    for (auto d : ys) info.push_back(i32(d));
    for (int v : strides(as)) info.push_back(v);
    for (int v : strides(bs)) info.push_back(v);
    auto& l = launch("g_binary", static_cast<std::size_t>(cnt));
    l.set_args(ctx_, a, b, y, param(info), i32(cnt), opc, uop, p0, p1);
    push(n, {out_name}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  // By default INT8 only when clearly faster: small layers' timings are noisy (fmnist_vit's
  // 0.05 ms Gemms), and a tie keeps the f32 path the rest of the backend is tuned for.
  bool int8_wins(double int8_ms, double f32_ms) const { return int8_ms < opt_.int8_margin * f32_ms; }
  // Median wall time of a layer's call to completion on the device (INT8 vs f32 trial).
  template <class Op>
  double trial_ms(const Op& op) {
    op.enqueue();
    ctx_.finish();
    std::vector<double> t(static_cast<std::size_t>(opt_.matmul.quick ? 3 : 5));
    for (auto& v : t) {
      const auto t0 = std::chrono::steady_clock::now();
      op.enqueue();
      ctx_.finish();
      v = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    return t[t.size() / 2];
  }

  // The integer operands of a QDQ layer: input = DequantizeLinear(u8, per-tensor sx, zx),
  // weight = DequantizeLinear(s8 initializer, per-output-channel or per-tensor scale, zero point 0).
  struct Int8Operands {
    std::vector<std::int8_t> w;
    std::vector<float> w_scale;
    float sx = 1;
    int zx = 0;
  };
  std::optional<Int8Operands> int8_operands(const ir::Node& n, std::int64_t cout) const {
    if (opt_.int8 == Int8Mode::never) return std::nullopt;
    const auto made = [&](const std::string& t) -> const ir::Node* {
      const auto it = made_by_.find(t);
      return it == made_by_.end() ? nullptr : it->second;
    };
    const ir::Node* dx = made(n.inputs[0]);
    const ir::Node* dw = made(n.inputs[1]);
    if (!dx || !dw || dx->op != "DequantizeLinear" || dw->op != "DequantizeLinear") return std::nullopt;
    if (!dx->has_input(2) || !is_const(dx->inputs[1]) || !is_const(dx->inputs[2]) || cst(dx->inputs[2]).dtype() != DType::u8 ||
        cst(dx->inputs[1]).numel() != 1 || cst(dx->inputs[2]).numel() != 1)
      return std::nullopt;
    if (!is_const(dw->inputs[0]) || cst(dw->inputs[0]).dtype() != DType::i8 || !is_const(dw->inputs[1]) ||
        (dw->has_input(2) && !is_const(dw->inputs[2])))
      return std::nullopt;
    Int8Operands r;
    r.sx = to_floats(cst(dx->inputs[1]))[0];
    const float zx = to_floats(cst(dx->inputs[2]))[0];
    r.zx = static_cast<int>(zx);
    r.w_scale = to_floats(cst(dw->inputs[1]));
    const Tensor wq = cst(dw->inputs[0]).contiguous();
    if (!(r.sx > 0) || zx < 0 || zx > 255 || wq.rank() < 1 || wq.dim(0) != cout ||
        (r.w_scale.size() != 1 && static_cast<std::int64_t>(r.w_scale.size()) != cout) ||
        (r.w_scale.size() > 1 && ir::normalize_axis(dw->attr<std::int64_t>("axis", 1), static_cast<std::int64_t>(wq.rank()), where(*dw)) != 0))
      return std::nullopt;
    if (dw->has_input(2))
      for (const float z : to_floats(cst(dw->inputs[2])))
        if (z != 0) return std::nullopt;
    r.w.assign(wq.data<std::int8_t>(), wq.data<std::int8_t>() + wq.numel());
    return r;
  }

  // Quantize/Dequantize parameters (scale, zero point, per-channel geometry) of node q.
  struct QParams {
    std::vector<float> scale, zp;
    std::int64_t inner = 1, channels = 1;
    float lo = 0, hi = 255;
  };
  std::optional<QParams> qparams(const ir::Node& q, bool quantize) const {
    if (!is_const(q.inputs[1]) || (q.has_input(2) && !is_const(q.inputs[2]))) return std::nullopt;
    QParams p;
    p.scale = to_floats(cst(q.inputs[1]));
    p.zp = q.has_input(2) ? to_floats(cst(q.inputs[2])) : std::vector<float>(p.scale.size(), 0.f);
    const Shape& xs = shape(q.inputs[0]);
    if (p.scale.size() > 1) {
      const auto axis = ir::normalize_axis(q.attr<std::int64_t>("axis", 1), static_cast<std::int64_t>(xs.size()), where(q));
      p.channels = xs[axis];
      p.inner = prod(xs, axis + 1, xs.size());
      if (static_cast<std::int64_t>(p.scale.size()) != p.channels || p.zp.size() != p.scale.size()) return std::nullopt;
    }
    if (quantize) {
      const DType t = q.has_input(2) ? cst(q.inputs[2]).dtype() : DType::u8;
      if (t != DType::u8 && t != DType::i8) return std::nullopt;
      p.lo = t == DType::u8 ? 0.f : -128.f;
      p.hi = t == DType::u8 ? 255.f : 127.f;
    }
    return p;
  }
  bool qdq(std::size_t i) {
    const ir::Node& n = g_.nodes[i];
    const bool quantize = n.op == "QuantizeLinear";
    auto q = qparams(n, quantize);
    if (!q) return false;
    int mode = quantize ? 0 : 1;
    std::string out_name = n.outputs[0];
    if (quantize)
      if (auto j = sole_consumer(n.outputs[0], i); j && g_.nodes[*j].op == "DequantizeLinear") {
        auto d = qparams(g_.nodes[*j], false);
        if (d && d->channels == q->channels && d->inner == q->inner && d->zp == q->zp && d->scale == q->scale) {
          mode = 2;
          skip_[*j] = true;
          out_name = g_.nodes[*j].outputs[0];
        }
      }
    const auto cnt = numel(n.outputs[0]);
    // x / scale correctly rounded, as the reference's host division, so rint ties match.
    auto& l = launch("g_qdq", static_cast<std::size_t>(cnt), "-cl-fp32-correctly-rounded-divide-sqrt");
    l.set_args(ctx_, src(n.inputs[0]), dst(out_name), param(q->scale), param(q->zp), i32(cnt), i32(q->inner),
               i32(q->channels), mode, q->lo, q->hi);
    push(n, {out_name}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }
  bool batchnorm(const ir::Node& n) {
    for (std::size_t k = 1; k < 5; ++k)
      if (!is_const(n.inputs[k])) return false;
    const auto gamma = to_floats(cst(n.inputs[1])), beta = to_floats(cst(n.inputs[2])),
               mean = to_floats(cst(n.inputs[3])), var = to_floats(cst(n.inputs[4]));
    const float eps = n.attr<float>("epsilon", 1e-5f);
    std::vector<float> s(gamma.size()), t(gamma.size());
    for (std::size_t c = 0; c < gamma.size(); ++c) {
      s[c] = gamma[c] / std::sqrt(var[c] + eps);
      t[c] = beta[c] - mean[c] * s[c];
    }
    const Shape& xs = shape(n.inputs[0]);
    if (xs.size() < 2 || static_cast<std::int64_t>(s.size()) != xs[1]) return false;
    return channel_affine(n, src(n.inputs[0]), dst(n.outputs[0]), s, t, prod(xs, 2, xs.size()));
  }
  bool channel_affine(const ir::Node& n, Buffer& x, Buffer& y, const std::vector<float>& s,
                      const std::vector<float>& t, std::int64_t inner) {
    const auto cnt = numel(n.outputs[0]);
    auto& l = launch("g_channel_affine", static_cast<std::size_t>(cnt));
    l.set_args(ctx_, x, y, param(s), param(t), i32(cnt), i32(inner), i32(static_cast<std::int64_t>(s.size())));
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  bool softmax(const ir::Node& n) {
    const Shape& xs = shape(n.inputs[0]);
    const auto axis = static_cast<std::size_t>(
        ir::normalize_axis(n.attr<std::int64_t>("axis", -1), static_cast<std::int64_t>(xs.size()), where(n)));
    const std::int64_t outer = prod(xs, 0, axis), d = xs[axis], inner = prod(xs, axis + 1, xs.size());
    if (inner == 1) {
      auto& sm = keep<Softmax>(ctx_, outer, d);
      sm.bind(src(n.inputs[0]), dst(n.outputs[0]));
      push(n, {n.outputs[0]}, [&sm] { sm.enqueue(); });
      return true;
    }
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_softmax_axis");
    l.dims = 2;
    l.fixed_local = false;
    l.global = {static_cast<std::size_t>(inner), static_cast<std::size_t>(outer), 1};
    l.set_args(ctx_, src(n.inputs[0]), dst(n.outputs[0]), i32(outer), i32(d), i32(inner));
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  bool layernorm(const ir::Node& n) {
    if (!is_const(n.inputs[1]) || (n.has_input(2) && !is_const(n.inputs[2]))) return false;
    if (n.outputs.size() > 1) {
      for (std::size_t k = 1; k < n.outputs.size(); ++k)
        if (!n.outputs[k].empty()) return false;  // Mean / InvStdDev outputs
    }
    const Shape& xs = shape(n.inputs[0]);
    const auto axis = static_cast<std::size_t>(
        ir::normalize_axis(n.attr<std::int64_t>("axis", -1), static_cast<std::int64_t>(xs.size()), where(n)));
    const std::int64_t rows = prod(xs, 0, axis), cols = prod(xs, axis, xs.size());
    const auto gamma = to_floats(cst(n.inputs[1]));
    const auto beta = n.has_input(2) ? to_floats(cst(n.inputs[2])) : std::vector<float>(gamma.size(), 0.f);
    if (static_cast<std::int64_t>(gamma.size()) != cols || beta.size() != gamma.size()) return false;
    auto& ln = keep<LayerNorm>(ctx_, rows, cols, std::span<const float>(gamma), std::span<const float>(beta),
                               n.attr<float>("epsilon", 1e-5f));
    ln.bind(src(n.inputs[0]), dst(n.outputs[0]));
    push(n, {n.outputs[0]}, [&ln] { ln.enqueue(); });
    return true;
  }

  bool reduce_mean(const ir::Node& n) {
    const Shape& xs = shape(n.inputs[0]);
    const auto r = static_cast<std::int64_t>(xs.size());
    std::vector<std::int64_t> axes;
    if (n.has_input(1)) {
      if (!is_const(n.inputs[1])) return false;
      axes = ir::to_i64(cst(n.inputs[1]), where(n));
    } else {
      axes = n.attr<std::vector<std::int64_t>>("axes", {});
    }
    if (axes.empty())
      for (std::int64_t a = 0; a < r; ++a) axes.push_back(a);
    for (auto& a : axes) a = ir::normalize_axis(a, r, where(n));
    std::sort(axes.begin(), axes.end());
    for (std::size_t k = 1; k < axes.size(); ++k)
      if (axes[k] != axes[k - 1] + 1) return false;
    const auto a0 = static_cast<std::size_t>(axes.front()), a1 = static_cast<std::size_t>(axes.back()) + 1;
    const std::int64_t outer = prod(xs, 0, a0), d = prod(xs, a0, a1), inner = prod(xs, a1, xs.size());
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_mean_axis");
    l.dims = 2;
    l.fixed_local = false;
    l.global = {static_cast<std::size_t>(inner), static_cast<std::size_t>(outer), 1};
    l.set_args(ctx_, src(n.inputs[0]), dst(n.outputs[0]), i32(outer), i32(d), i32(inner));
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  bool pool(const ir::Node& n) {
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) return false;  // MaxPool indices
    const Shape& xs = shape(n.inputs[0]);
    if (xs.size() != 3 && xs.size() != 4) return false;
    const auto win = ir::make_window(xs, n.attr<std::vector<std::int64_t>>("kernel_shape"),
                                     n.attr<std::vector<std::int64_t>>("strides", {}),
                                     n.attr<std::vector<std::int64_t>>("dilations", {}),
                                     n.attr<std::vector<std::int64_t>>("pads", {}),
                                     n.attr<std::string>("auto_pad", "NOTSET"),
                                     n.attr<std::int64_t>("ceil_mode", 0) != 0, where(n));
    const bool one_d = xs.size() == 3;
    const std::size_t s = one_d ? 1 : 2;
    const std::int64_t H = one_d ? 1 : xs[2], W = xs.back();
    const std::int64_t KH = one_d ? 1 : win.kernel[0], KW = win.kernel.back();
    const std::int64_t SH = one_d ? 1 : win.strides[0], SW = win.strides.back();
    const std::int64_t DH = one_d ? 1 : win.dilations[0], DW = win.dilations.back();
    const std::int64_t PH = one_d ? 0 : win.pads[0], PW = win.pads[s - 1];
    const std::int64_t PHe = one_d ? 0 : win.pads[s], PWe = win.pads[2 * s - 1];
    const std::int64_t OH = one_d ? 1 : win.out[0], OW = win.out.back();
    auto& l = keep<Launch>();
    l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_pool");
    l.dims = 3;
    l.fixed_local = false;
    l.global = {static_cast<std::size_t>(OW), static_cast<std::size_t>(OH), static_cast<std::size_t>(xs[0] * xs[1])};
    l.set_args(ctx_, src(n.inputs[0]), dst(n.outputs[0]), i32(H), i32(W), i32(KH), i32(KW), i32(SH), i32(SW),
               i32(PH), i32(PW), i32(DH), i32(DW), i32(OH), i32(OW), n.op == "MaxPool" ? 1 : 0,
               n.attr<std::int64_t>("count_include_pad", 0) != 0 ? 1 : 0, i32(PHe), i32(PWe));
    push(n, {n.outputs[0]}, [&l, c = &ctx_] { l.enqueue(*c); });
    return true;
  }

  bool concat(const ir::Node& n) {
    const Shape& ys = shape(n.outputs[0]);
    const auto axis = static_cast<std::size_t>(
        ir::normalize_axis(n.attr<std::int64_t>("axis", 0), static_cast<std::int64_t>(ys.size()), where(n)));
    const std::int64_t outer = prod(ys, 0, axis), inner = prod(ys, axis + 1, ys.size());
    Buffer& y = dst(n.outputs[0]);
    std::vector<Launch*> ls;
    std::int64_t off = 0;
    for (const auto& t : n.inputs) {
      if (t.empty()) continue;
      const Shape s = is_const(t) ? cst(t).shape() : shape(t);
      const std::int64_t len = s[axis] * inner;
      if (len > 0) {
        auto& l = keep<Launch>();
        l.kernel = ctx_.kernel(detail::source(kernels::kGraph), "g_copy_blocks");
        l.dims = 2;
        l.fixed_local = false;
        l.global = {static_cast<std::size_t>(len), static_cast<std::size_t>(std::max<std::int64_t>(outer, 1)), 1};
        l.set_args(ctx_, src(t), y, i32(outer), i32(len), i32(len), 0, i32(ys[axis] * inner), i32(off));
        ls.push_back(&l);
      }
      off += len;
    }
    push(n, {n.outputs[0]}, [ls, c = &ctx_] {
      for (auto* l : ls) l->enqueue(*c);
    });
    return true;
  }

  // Ops that read only their input's (static) shape: constants at compile time.
  bool shape_only(const ir::Node& n) {
    const auto& vi = g_.value(n.inputs[0]);
    if (numel_of(vi.shape) > (std::int64_t{1} << 26)) return false;
    ir::Graph s = single(n);
    s.inputs.clear();
    s.initializers[n.inputs[0]] = Tensor::zeros(vi.shape, vi.dtype);
    const auto outs = reference::Executable(std::move(s), 1).run({});
    p_.consts[n.outputs[0]] = outs[0];
    push(n, {n.outputs[0]}, {});
    return true;
  }

  // Pure data movement with one activation input: evaluate the node once on an iota tensor
  // (the reference backend), which gives every output element's source index.
  bool index_map(const ir::Node& n) {
    static const std::set<std::string> movers = {"Transpose", "Slice", "Gather", "Split", "Expand", "Tile",
                                                 "DepthToSpace", "SpaceToDepth"};
    if (!movers.count(n.op) || !n.has_input(0) || is_const(n.inputs[0])) return false;
    for (std::size_t k = 1; k < n.inputs.size(); ++k)
      if (!n.inputs[k].empty() && !is_const(n.inputs[k])) return false;
    const auto& vi = g_.value(n.inputs[0]);
    const auto cnt = numel_of(vi.shape);
    if (cnt >= (std::int64_t{1} << 24)) return false;  // iota must be exact in f32
    ir::Graph s = single(n);
    s.inputs.clear();
    std::vector<float> iota(static_cast<std::size_t>(cnt));
    std::iota(iota.begin(), iota.end(), 0.f);
    s.initializers[n.inputs[0]] = Tensor::from<float>(vi.shape, iota);
    s.values[n.inputs[0]].dtype = DType::f32;
    for (auto& o : s.outputs) o.dtype = DType::f32;
    for (const auto& o : n.outputs)
      if (!o.empty()) s.values[o].dtype = DType::f32;
    std::vector<Tensor> idx_out;
    try {
      idx_out = reference::Executable(std::move(s), 1).run({});
    } catch (const Error&) {
      return false;
    }
    Buffer& x = src(n.inputs[0]);
    std::vector<Launch*> ls;
    std::vector<std::string> names;
    std::size_t k = 0;
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      const auto v = to_floats(idx_out[k++]);
      std::vector<int> idx(v.begin(), v.end());
      auto& l = launch("g_gather", idx.size());
      l.set_args(ctx_, x, param(idx), dst(o), i32(static_cast<std::int64_t>(idx.size())));
      ls.push_back(&l);
      names.push_back(o);
    }
    push(n, names, [ls, c = &ctx_] {
      for (auto* l : ls) l->enqueue(*c);
    });
    return true;
  }

  Context& ctx_;
  const ir::Graph& g_;
  const BackendOptions& opt_;
  Plan& p_;
  bool fuse_;
  std::map<std::string, int> consumers_;  // reads left per tensor (graph inputs and outputs hold one more)
  std::set<std::string> outputs_;
  std::vector<bool> skip_;
  std::unordered_map<std::string, const ir::Node*> made_by_;  // tensor -> the node that produces it
  std::unordered_map<Buffer*, int> refs_;  // live tensors on each activation buffer
  std::multimap<std::size_t, Buffer*> free_;     // activation buffers no live tensor uses, by size
};

}  // namespace graph_detail

inline void Executable::Impl::build(Plan& p, bool fuse) {
  try {
    graph_detail::Builder(*ctx, g, opt, p, fuse).build();
  } catch (...) {
    p = Plan{};  // releases whatever was allocated: a failed compile leaves nothing resident
    throw;
  }
}

// ------------------------------------------------------------------------------------------
// Running.
inline std::vector<Tensor> Executable::Impl::run(std::span<const Tensor> inputs, const RunOptions& ro) {
  check(inputs.size() == g.inputs.size(), ErrorCode::invalid_argument, g.source,
        "expected " + std::to_string(g.inputs.size()) + " inputs, got " + std::to_string(inputs.size()));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto& vi = g.inputs[i];
    check(inputs[i].shape() == vi.shape && inputs[i].dtype() == vi.dtype, ErrorCode::shape, g.source,
          "input '" + vi.name + "' must be " + std::string(sparseloom::to_string(vi.dtype)) + sparseloom::to_string(vi.shape) +
              ", got " + std::string(sparseloom::to_string(inputs[i].dtype())) + sparseloom::to_string(inputs[i].shape()));
  }
  ctx->ensure_alive("run");
  const bool observing = static_cast<bool>(ro.observe);
  Plan& p = observing ? unfused : main;
  if (!p.built) build(p, !observing && opt.fuse);
  cl_command_queue q = ctx->queue(0)();

  // Repairs: fold into epilogues where one absorbs the tensor (written only when it changes),
  // otherwise an in-place kernel after the producing step.
  std::vector<std::vector<std::pair<Buffer*, std::string>>> post;
  std::set<const EpiSlot*> active;
  if (ro.affine) {
    for (const auto& [name, a] : *ro.affine) {
      auto pit = p.producer.find(name);
      const bool absorbed = p.epi_of.count(name) != 0;
      if (pit == p.producer.end() && !absorbed) continue;  // not produced here (as the reference: ignored)
      const auto& vi = g.value(name);
      check(vi.shape.size() >= 2 && vi.dtype == DType::f32, ErrorCode::shape, g.source + ": tensor '" + name + "'",
            "affine repair needs an f32 N x C x ... tensor");
      const auto c = vi.shape[1];
      check(static_cast<std::int64_t>(a.scale.size()) == c && a.shift.size() == a.scale.size(), ErrorCode::shape,
            g.source + ": tensor '" + name + "'",
            "affine repair has " + std::to_string(a.scale.size()) + " channels, tensor has " + std::to_string(c));
      if (auto eit = p.epi_of.find(name); eit != p.epi_of.end()) {
        EpiSlot& e = *eit->second;
        std::vector<float> s(e.scale.size()), t(e.scale.size());
        for (std::size_t k = 0; k < s.size(); ++k) {
          s[k] = e.scale[k] * a.scale[k];
          t[k] = e.shift[k] * a.scale[k] + a.shift[k];
        }
        if (!e.overridden || s != e.cur_scale || t != e.cur_shift) {
          e.buf->scale.write(std::span<const float>(s));
          e.buf->shift.write(std::span<const float>(t));
          e.cur_scale = std::move(s);
          e.cur_shift = std::move(t);
          e.overridden = true;
        }
        active.insert(&e);
        continue;
      }
      auto& bufs = p.post_affine[name];
      if (!bufs.first || bufs.first.bytes() != a.scale.size() * 4) {
        bufs.first = Buffer(*ctx, a.scale.size() * 4, CL_MEM_READ_ONLY);
        bufs.second = Buffer(*ctx, a.scale.size() * 4, CL_MEM_READ_ONLY);
      }
      bufs.first.write(std::span<const float>(a.scale));
      bufs.second.write(std::span<const float>(a.shift));
      if (post.empty()) post.resize(p.steps.size());
      post[pit->second].emplace_back(p.slot.at(name), name);
    }
  }
  for (auto& e : p.epi)
    if (e.overridden && !active.count(&e)) {  // a repair no longer asked for: back to the weights' own
      e.buf->scale.write(std::span<const float>(e.scale));
      e.buf->shift.write(std::span<const float>(e.shift));
      e.overridden = false;
    }

  std::vector<std::vector<float>> staging;  // converted inputs, alive until the wait
  std::vector<Tensor> held;
  std::vector<Tensor> result;
  std::vector<std::vector<float>> out_staging;
  cl_event last = nullptr;
  auto& ts = ctx->transfers();
  try {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      Buffer& b = *p.slot.at(g.inputs[i].name);
      const void* src;
      std::size_t bytes;
      if (inputs[i].dtype() == DType::f32) {
        held.push_back(inputs[i].contiguous());
        src = held.back().raw();
        bytes = held.back().nbytes();
      } else {
        staging.push_back(graph_detail::to_floats(inputs[i]));
        src = staging.back().data();
        bytes = staging.back().size() * 4;
      }
      if (bytes == 0) continue;
      const cl_int rc = clEnqueueWriteBuffer(q, b.mem(), CL_FALSE, 0, bytes, src, 0, nullptr, nullptr);
      if (rc != CL_SUCCESS) ctx->fail(rc, "clEnqueueWriteBuffer");
      ts.h2d_bytes += bytes;
      ts.h2d_calls += 1;
    }
    Launch affine_launch;
    for (std::size_t s = 0; s < p.steps.size(); ++s) {
      const Step& st = p.steps[s];
      if (st.host) st.host();
      else if (st.enqueue) st.enqueue();
      if (!post.empty())
        for (auto& [buf, name] : post[s]) {
          auto& bufs = p.post_affine.at(name);
          const auto& vi = g.value(name);
          const auto cnt = numel_of(vi.shape);
          const auto inner = graph_detail::prod(vi.shape, 2, vi.shape.size());
          affine_launch.kernel = ctx->kernel(detail::source(kernels::kGraph), "g_channel_affine");
          affine_launch.global = {detail::round_up(static_cast<std::size_t>(cnt), 64), 1, 1};
          affine_launch.local = {64, 1, 1};
          affine_launch.set_args(*ctx, *buf, *buf, bufs.first, bufs.second, detail::to_int(cnt, "n"),
                                 detail::to_int(inner, "inner"), detail::to_int(vi.shape[1], "channels"));
          affine_launch.enqueue(*ctx);
        }
      if (observing)
        for (const auto& o : st.outputs) {
          const auto& vi = g.value(o);
          if (auto c = p.consts.find(o); c != p.consts.end()) {
            ro.observe(o, c->second);
            continue;
          }
          std::vector<float> h(static_cast<std::size_t>(numel_of(vi.shape)));
          if (!h.empty()) p.slot.at(o)->read(std::span<float>(h));
          ro.observe(o, graph_detail::from_floats(h.data(), vi.shape, vi.dtype));
        }
    }
    for (const auto& o : g.outputs) {
      if (auto c = p.consts.find(o.name); c != p.consts.end()) {
        result.push_back(c->second);
        out_staging.emplace_back();
        continue;
      }
      const auto cnt = static_cast<std::size_t>(numel_of(o.shape));
      void* dst;
      if (o.dtype == DType::f32) {
        result.push_back(Tensor::empty(o.shape, DType::f32));
        out_staging.emplace_back();
        dst = result.back().raw();
      } else {
        result.emplace_back();
        out_staging.emplace_back(cnt);
        dst = out_staging.back().data();
      }
      if (cnt == 0) continue;
      if (last) clReleaseEvent(last), last = nullptr;
      const cl_int rc = clEnqueueReadBuffer(q, p.slot.at(o.name)->mem(), CL_FALSE, 0, cnt * 4, dst, 0, nullptr,
                                            wait == Completion::finish ? nullptr : &last);
      if (rc != CL_SUCCESS) ctx->fail(rc, "clEnqueueReadBuffer");
      ts.d2h_bytes += cnt * 4;
      ts.d2h_calls += 1;
    }
    if (last) {
      ctx->wait(last, wait == Completion::busy_poll);
      clReleaseEvent(last);
      last = nullptr;
    } else {
      ctx->finish();
    }
  } catch (...) {
    // Nothing the device still reads or writes may outlive this call's host memory.
    if (last) clReleaseEvent(last);
    clFinish(q);
    throw;
  }
  for (std::size_t k = 0; k < result.size(); ++k)
    if (!out_staging[k].empty()) result[k] = graph_detail::from_floats(out_staging[k].data(), g.outputs[k].shape, g.outputs[k].dtype);
  return result;
}

// ------------------------------------------------------------------------------------------
// The backend: one Context per device, shared by every executable compiled on it.
class Backend {
 public:
  using Executable = opencl::Executable;
  static constexpr std::string_view name() { return "opencl"; }
  // Bumped when kernels, fusion or buffer planning change what a block costs or holds: cached
  // block profiles (the e2e harness's profile cache) taken before then are not reused.
  static constexpr int kRevision = 3;

  // The default device (SPARSELOOM_OPENCL_DEVICE overrides; any prefers a GPU).
  Backend() : Backend(std::shared_ptr<Context>(Context::open({DeviceType::any, ""}))) {}
  explicit Backend(std::shared_ptr<Context> ctx, BackendOptions opt = {}) : ctx_(std::move(ctx)), opt_(opt) {
    check(ctx_ != nullptr, ErrorCode::invalid_argument, "opencl::Backend", "no context");
  }

  Executable compile(const ir::Graph& g, const CompileOptions& = {}) const {
    ctx_->ensure_alive("compile");
    auto impl = std::make_unique<Executable::Impl>(ctx_, g, opt_);
    impl->build(impl->main, opt_.fuse);
    return Executable(std::move(impl));
  }

  const std::shared_ptr<Context>& context() const noexcept { return ctx_; }
  const BackendOptions& options() const noexcept { return opt_; }

 private:
  std::shared_ptr<Context> ctx_;
  BackendOptions opt_;
};

static_assert(sparseloom::Backend<Backend>);

}  // namespace sparseloom::opencl
