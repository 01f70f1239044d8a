// Chains of element-wise and last-axis steps fused into one row pass (row_program.hpp): an
// exported LayerNorm followed by an exported GELU runs as one step and equals the reference
// backend bit for bit; a chain whose intermediate another node reads is cut there; a repair on
// an intermediate or an observer runs the original steps, still equal to the reference.
#include <doctest/doctest.h>

#include <cmath>

#include "reference_compare.hpp"
#include "sparseloom/ir/infer.hpp"

using namespace sparseloom;
using testing::random_tensor;

namespace {

Tensor scalar(float v) {
  Tensor t = Tensor::empty({}, DType::f32);
  t.data<float>()[0] = v;
  return t;
}

// x [2, 16, 64] -> LayerNorm as torch exports it (9 nodes) -> GELU (5 nodes) -> y; with
// `tap`, the LayerNorm's centred input is also added to the input by a node outside the chain.
ir::Graph ln_gelu(bool tap) {
  const std::int64_t d = 64;
  ir::Graph g;
  g.source = "row-fusion-test";
  g.inputs.push_back({"x", {2, 16, d}, DType::f32});
  g.values["x"] = g.inputs.back();
  auto init = [&](const std::string& name, Tensor t) {
    g.values[name] = {name, t.shape(), DType::f32};
    g.initializers.emplace(name, std::move(t));
  };
  init("two", scalar(2.f));
  init("eps", scalar(1e-5f));
  init("gamma", random_tensor({d}, 1, 0.5f, 1.5f));
  init("beta", random_tensor({d}, 2, -0.5f, 0.5f));
  init("sqrt2", scalar(1.4142135f));
  init("one", scalar(1.f));
  init("half", scalar(0.5f));
  const ir::Attribute last = std::vector<std::int64_t>{-1};
  g.nodes = {{"m", "ReduceMean", {"x"}, {"mean"}, {{"axes", last}}},
             {"c", "Sub", {"x", "mean"}, {"centred"}, {}},
             {"p", "Pow", {"centred", "two"}, {"sq"}, {}},
             {"v", "ReduceMean", {"sq"}, {"var"}, {{"axes", last}}},
             {"e", "Add", {"var", "eps"}, {"var_eps"}, {}},
             {"s", "Sqrt", {"var_eps"}, {"std"}, {}},
             {"n", "Div", {"centred", "std"}, {"normed"}, {}},
             {"gm", "Mul", {"normed", "gamma"}, {"scaled"}, {}},
             {"bt", "Add", {"scaled", "beta"}, {"ln"}, {}},
             {"g1", "Div", {"ln", "sqrt2"}, {"z"}, {}},
             {"g2", "Erf", {"z"}, {"erf"}, {}},
             {"g3", "Add", {"erf", "one"}, {"erf1"}, {}},
             {"g4", "Mul", {"ln", "erf1"}, {"xe"}, {}},
             {"g5", "Mul", {"xe", "half"}, {"y"}, {}}};
  if (tap) g.nodes.push_back({"t", "Add", {"x", "centred"}, {"y2"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  if (tap) g.outputs.push_back({"y2", {}, DType::f32});
  ir::infer_shapes(g);
  return g;
}

bool bit_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!testing::same_bits(a[i], b[i])) return false;
  return true;
}

// The fused steps of a run, as "[N ops row-fused]" counts.
std::vector<int> fused_sizes(const cpu::Executable& exe, const std::vector<Tensor>& in) {
  std::vector<int> sizes;
  for (const auto& [step, ms] : exe.profile(in))
    if (auto at = step.find(" ops row-fused]"); at != std::string::npos) {
      const auto open = step.rfind('[', at);
      sizes.push_back(std::stoi(step.substr(open + 1, at - open - 1)));
    }
  return sizes;
}

}  // namespace

TEST_CASE("Cpu.RowFusion.LayerNormThenGeluIsOneStepAndEqualsTheReference") {
  const ir::Graph g = ln_gelu(false);
  const std::vector<Tensor> in{random_tensor({2, 16, 64}, 3, -3.f, 3.f)};
  const auto want = reference::Backend{}.compile(g, {}).run(in);
  for (int threads : {1, 2}) {
    const auto exe = cpu::Backend{}.compile(g, {threads});
    CHECK(fused_sizes(exe, in) == std::vector<int>{14});
    CHECK(bit_equal(exe.run(in), want));
    // An observer sees every intermediate: the original steps run, same result.
    int seen = 0;
    RunOptions ro;
    ro.observe = [&](const std::string&, const Tensor&) { ++seen; };
    CHECK(bit_equal(exe.run(in, ro), want));
    CHECK(seen == 14);
  }
}

TEST_CASE("Cpu.RowFusion.AChainIsCutWhereAnotherNodeReadsAnIntermediate") {
  const ir::Graph g = ln_gelu(true);
  const std::vector<Tensor> in{random_tensor({2, 16, 64}, 4, -3.f, 3.f)};
  const auto exe = cpu::Backend{}.compile(g, {1});
  // "centred" is read by the tap: the chain stops there (mean + centre), and the rest from its
  // square on (the tap's Add has two runtime inputs: not fused).
  CHECK(fused_sizes(exe, in) == std::vector<int>{2, 12});
  CHECK(bit_equal(exe.run(in), reference::Backend{}.compile(g, {}).run(in)));
}

TEST_CASE("Cpu.RowFusion.ARepairOnAnIntermediateRunsTheStepsUnfused") {
  const ir::Graph g = ln_gelu(false);
  const std::vector<Tensor> in{random_tensor({2, 16, 64}, 5, -3.f, 3.f)};
  AffineMap affine;
  ChannelAffine a;
  for (int c = 0; c < 16; ++c) a.scale.push_back(1.f + 0.01f * static_cast<float>(c)), a.shift.push_back(0.1f);
  affine["normed"] = a;  // inside the chain
  RunOptions ro;
  ro.affine = &affine;
  const auto exe = cpu::Backend{}.compile(g, {1});
  const auto repaired = exe.run(in, ro);
  CHECK(bit_equal(repaired, reference::Backend{}.compile(g, {}).run(in, ro)));
  CHECK(!bit_equal(repaired, exe.run(in)));
  // On the chain's output the fused run applies it as it publishes.
  AffineMap on_out;
  on_out["y"] = a;
  ro.affine = &on_out;
  CHECK(bit_equal(exe.run(in, ro), reference::Backend{}.compile(g, {}).run(in, ro)));
}
