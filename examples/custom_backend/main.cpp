// A custom Backend: the smallest thing that models sparseloom::Backend (concepts/backend.hpp).
// It runs graphs of MatMul, Add and Relu on f32 tensors (2-D MatMul), skipping zero weights,
// and says clearly which op it does not support. Checked against the reference backend on a
// small MLP built in code.
//   custom_backend
#include <cmath>
#include <cstdio>
#include <map>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/concepts/backend.hpp"

namespace tiny {
using namespace sparseloom;

class Executable {
 public:
  explicit Executable(ir::Graph g) : g_(std::move(g)) {}
  std::vector<Tensor> run(std::span<const Tensor> in, const RunOptions& = {}) const {
    std::map<std::string, Tensor> env(g_.initializers.begin(), g_.initializers.end());
    for (std::size_t i = 0; i < g_.inputs.size() && i < in.size(); ++i) env[g_.inputs[i].name] = in[i].contiguous();
    for (const auto& n : g_.nodes) {
      const Tensor& a = env.at(n.inputs[0]);
      Tensor y;
      if (n.op == "Relu") {
        y = a.clone();  // a fresh buffer: inputs stay untouched
        for (auto& v : y.span<float>()) v = std::max(v, 0.f);
      } else if (n.op == "Add") {  // y = a + b, b broadcast over rows
        y = a.clone();
        const Tensor& b = env.at(n.inputs[1]);
        const auto cols = b.numel();
        for (std::int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] += b.data<float>()[i % cols];
      } else {  // MatMul (M, K) x (K, N), zero weights skipped: the sparse part of the idea
        const Tensor& w = env.at(n.inputs[1]);
        const auto M = a.dim(0), K = a.dim(1), N = w.dim(1);
        y = Tensor::zeros({M, N}, DType::f32);
        for (std::int64_t k = 0; k < K; ++k)
          for (std::int64_t j = 0; j < N; ++j)
            if (const float wv = w.data<float>()[k * N + j]; wv != 0.f)
              for (std::int64_t i = 0; i < M; ++i) y.data<float>()[i * N + j] += a.data<float>()[i * K + k] * wv;
      }
      env[n.outputs[0]] = std::move(y);
    }
    std::vector<Tensor> out;
    for (const auto& o : g_.outputs) out.push_back(env.at(o.name));
    return out;
  }

 private:
  ir::Graph g_;
};

struct Backend {
  using Executable = tiny::Executable;
  static constexpr std::string_view name() { return "tiny"; }
  Executable compile(const ir::Graph& g, const CompileOptions& = {}) const {
    for (const auto& n : g.nodes)
      check(n.op == "MatMul" || n.op == "Add" || n.op == "Relu", ErrorCode::unsupported, g.source + ": " + n.where(),
            "the tiny backend runs MatMul, Add and Relu only");
    return Executable(g);
  }
};
static_assert(sparseloom::Backend<Backend>);

}  // namespace tiny

int main() {
  using namespace sparseloom;
  // y = Relu(x @ W + b) with a 75 %-sparse W: a graph built in code (import_file gives the same).
  ir::Graph g;
  g.source = "mlp";
  std::vector<float> w(16 * 8), b(8), x(4 * 16);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = i % 4 == 0 ? std::sin(static_cast<float>(i)) : 0.f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = 0.1f * static_cast<float>(i) - 0.3f;
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.7f * static_cast<float>(i));
  g.initializers["W"] = Tensor::from<float>({16, 8}, w);
  g.initializers["b"] = Tensor::from<float>({8}, b);
  g.inputs = {{"x", {4, 16}, DType::f32}};
  g.outputs = {{"y", {4, 8}, DType::f32}};
  g.nodes = {{"mm", "MatMul", {"x", "W"}, {"h"}, {}}, {"add", "Add", {"h", "b"}, {"z"}, {}}, {"relu", "Relu", {"z"}, {"y"}, {}}};
  for (const auto& v : {ir::ValueInfo{"x", {4, 16}, DType::f32}, ir::ValueInfo{"h", {4, 8}, DType::f32}, ir::ValueInfo{"z", {4, 8}, DType::f32},
                        ir::ValueInfo{"y", {4, 8}, DType::f32}})
    g.values[v.name] = v;
  try {
    const std::vector<Tensor> in{Tensor::from<float>({4, 16}, x)};
    const auto ours = tiny::Backend{}.compile(g).run(in)[0];
    const auto ref = reference::Backend{}.compile(g).run(in)[0].contiguous();
    double err = 0;
    for (std::int64_t i = 0; i < ours.numel(); ++i) err = std::max(err, static_cast<double>(std::abs(ours.data<float>()[i] - ref.data<float>()[i])));
    std::printf("tiny backend vs reference on a 75 %%-sparse MLP: max abs error %.2e\n", err);
    // An op it does not run is a clear error at compile time, never a crash.
    g.nodes[2].op = "Sigmoid";
    try {
      tiny::Backend{}.compile(g);
      return 1;
    } catch (const Error& e) {
      std::printf("as expected: %s\n", e.what());
    }
    return err < 1e-5 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
