// The backend's element-wise and last-axis steps (pointwise.hpp) against the reference
// backend, bit for bit: every binary op with each broadcast form of its second operand on
// either side, runtime or constant, with and without a fused Relu; the unary ops; ReduceMean
// and Softmax over the last axis; and shapes the steps do not take (they fall back to the
// reference op, still equal). 1 and 2 threads, tensors above the 16 k split.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "reference_compare.hpp"
#include "sparseloom/ir/infer.hpp"

using namespace sparseloom;
using testing::random_tensor;

namespace {

// y = op(inputs) [-> Relu]; `consts` become initializers. Returns whether cpu == reference
// bit for bit, on 1 and 2 threads, and whether the op ran as a native step (`fast`) or not.
bool same_as_reference(const std::string& op, const std::vector<std::pair<std::string, Tensor>>& operands,
                       const std::vector<std::string>& const_names, bool relu = false,
                       std::map<std::string, ir::Attribute> attrs = {}, bool fast = true) {
  ir::Graph g;
  g.source = "pointwise-test";
  std::vector<Tensor> in;
  std::vector<std::string> names;
  for (const auto& [name, t] : operands) {
    names.push_back(name);
    if (std::find(const_names.begin(), const_names.end(), name) != const_names.end()) {
      g.initializers.emplace(name, t);
      g.values[name] = {name, t.shape(), DType::f32};
    } else {
      g.inputs.push_back({name, t.shape(), DType::f32});
      g.values[name] = g.inputs.back();
      in.push_back(t);
    }
  }
  g.nodes.push_back({"n", op, names, {relu ? "mid" : "y"}, std::move(attrs)});
  if (relu) g.nodes.push_back({"r", "Relu", {"mid"}, {"y"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  ir::infer_shapes(g);
  // The node's own step (named by its output), not the Relu's.
  const std::string self = relu ? "mid [" : "y [";
  return testing::cpu_equals_reference(g, in, [&](const std::vector<std::string>& steps) {
    bool native = false;
    for (const auto& step : steps)
      native |= step.rfind(self, 0) == 0 && (step.find("[elementwise]") != std::string::npos || step.find("[pointwise]") != std::string::npos);
    return native == fast;
  });
}

}  // namespace

TEST_CASE("Cpu.Pointwise.BinaryOpsEveryBroadcastForm") {
  const Shape full{2, 96, 200};  // 38 400 elements: two tasks on 2 threads
  const Tensor x = random_tensor(full, 1, 0.1f, 2.f);
  const std::vector<std::pair<const char*, Tensor>> smalls = {
      {"same", random_tensor(full, 2, 0.1f, 2.f)},
      {"scalar", random_tensor({}, 3, 0.5f, 2.f)},
      {"scalar-1d", random_tensor({1}, 4, 0.5f, 2.f)},
      {"vector", random_tensor({200}, 5, 0.1f, 2.f)},
      {"vector-3d", random_tensor({1, 1, 200}, 6, 0.1f, 2.f)},
      {"row", random_tensor({2, 96, 1}, 7, 0.1f, 2.f)},
      {"row-2d", random_tensor({96, 1}, 8, 0.1f, 2.f)},  // broadcast over dim 0 too: reference fallback
      {"middle", random_tensor({1, 96, 200}, 9, 0.1f, 2.f)}};  // not a Bcast form: reference fallback
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Pow"})
    for (const auto& [form, s] : smalls)
      for (bool s_first : {false, true})
        for (bool s_const : {false, true})
          for (bool relu : {false, true}) {
            CAPTURE(std::string(op));
            CAPTURE(std::string(form));
            CAPTURE(s_first);
            CAPTURE(s_const);
            CAPTURE(relu);
            std::vector<std::pair<std::string, Tensor>> operands = {{"x", x}, {"s", s}};
            if (s_first) std::swap(operands[0], operands[1]);
            const bool fast = std::string(form) != "row-2d" && std::string(form) != "middle";
            CHECK(same_as_reference(op, operands, s_const ? std::vector<std::string>{"s"} : std::vector<std::string>{}, relu, {}, fast));
          }
  // Pow with the exponent 2 (x * x) and a general one.
  Tensor two = Tensor::empty({}, DType::f32);
  two.data<float>()[0] = 2.f;
  Tensor frac = Tensor::empty({}, DType::f32);
  frac.data<float>()[0] = 0.37f;
  CHECK(same_as_reference("Pow", {{"x", x}, {"e", two}}, {"e"}));
  CHECK(same_as_reference("Pow", {{"x", x}, {"e", frac}}, {"e"}));
}

TEST_CASE("Cpu.Pointwise.UnaryAndLastAxisOps") {
  const Tensor x = random_tensor({3, 128, 100}, 11);
  for (const char* op : {"Relu", "Erf", "Tanh", "Sigmoid", "Exp", "Neg", "Abs", "Reciprocal"}) {
    CAPTURE(std::string(op));
    CHECK(same_as_reference(op, {{"x", x}}, {}));
  }
  CHECK(same_as_reference("Sqrt", {{"x", random_tensor({3, 128, 100}, 12, 0.f, 4.f)}}, {}));
  CHECK(same_as_reference("Softmax", {{"x", x}}, {}, false, {{"axis", std::int64_t{-1}}}));
  CHECK(same_as_reference("Softmax", {{"x", x}}, {}, false, {{"axis", std::int64_t{2}}}));
  CHECK(same_as_reference("Softmax", {{"x", x}}, {}, false, {{"axis", std::int64_t{1}}}, false));  // not last: reference
  CHECK(same_as_reference("ReduceMean", {{"x", x}}, {}, false, {{"axes", std::vector<std::int64_t>{-1}}}));
  CHECK(same_as_reference("ReduceMean", {{"x", x}}, {}, false,
                          {{"axes", std::vector<std::int64_t>{-1}}, {"keepdims", std::int64_t{0}}}));
  CHECK(same_as_reference("ReduceMean", {{"x", x}}, {}, false, {{"axes", std::vector<std::int64_t>{1}}}, false));  // reference
}
