#include <doctest/doctest.h>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/ir/infer.hpp"

using namespace sparseloom;

namespace {
// x -> Relu -> a -> Add(a, x) -> b -> Relu -> y : the residual makes "a" a bad cut point.
ir::Graph residual_graph() {
  ir::Graph g;
  g.source = "test";
  g.inputs = {{"x", {1, 4}, DType::f32}};
  g.values["x"] = g.inputs[0];
  g.nodes.push_back({"r1", "Relu", {"x"}, {"a"}, {}});
  g.nodes.push_back({"add", "Add", {"a", "x"}, {"b"}, {}});
  g.nodes.push_back({"r2", "Relu", {"b"}, {"y"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  ir::infer_shapes(g);
  return g;
}
}  // namespace

TEST_CASE("IR.Extract.BlocksRunAndComposeToTheWholeGraph") {
  ir::Graph g = residual_graph();
  CHECK(g.value("b").shape == Shape{1, 4});
  ir::Graph tail = ir::extract(g, {"b"}, {"y"});
  CHECK(tail.nodes.size() == 1);
  reference::Backend be;
  Tensor x = Tensor::from<float>({1, 4}, std::vector<float>{-1, 2, -3, 4});
  auto whole = be.compile(g).run(std::vector<Tensor>{x});
  auto head = be.compile(ir::extract(g, {"x"}, {"b"})).run(std::vector<Tensor>{x});
  auto composed = be.compile(tail).run(head);
  for (int i = 0; i < 4; ++i) CHECK(whole[0].data<float>()[i] == composed[0].data<float>()[i]);
}

TEST_CASE("IR.Extract.ATensorCrossingTheCutIsAnError") {
  ir::Graph g = residual_graph();
  CHECK_THROWS_WITH_AS(ir::extract(g, {"a"}, {"y"}), doctest::Contains("crosses the cut"), Error);
}

TEST_CASE("IR.Infer.UnsupportedOpAndBadShapesNameTheNode") {
  ir::Graph g;
  g.source = "m.onnx";
  g.inputs = {{"x", {2, 3}, DType::f32}};
  g.values["x"] = g.inputs[0];
  g.initializers["w"] = Tensor::zeros({4, 5}, DType::f32);
  g.values["w"] = {"w", {4, 5}, DType::f32};
  g.nodes.push_back({"mm", "MatMul", {"x", "w"}, {"y"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  CHECK_THROWS_WITH_AS(ir::infer_shapes(g), doctest::Contains("node 'mm' (MatMul)"), Error);
  g.nodes[0].op = "NonMaxSuppression";
  CHECK_THROWS_WITH_AS(ir::infer_shapes(g), doctest::Contains("'NonMaxSuppression' is not supported"), Error);
}

TEST_CASE("Reference.RepairAffineAndObserve") {
  ir::Graph g = residual_graph();
  reference::Backend be;
  auto exe = be.compile(g);
  Tensor x = Tensor::from<float>({1, 4}, std::vector<float>{1, 2, 3, 4});
  AffineMap aff;
  aff["a"] = {{2, 2, 2, 2}, {1, 1, 1, 1}};  // a' = 2a + 1, so y = relu(2x + 1 + x)
  int seen = 0;
  RunOptions ro;
  ro.affine = &aff;
  ro.observe = [&](const std::string& name, const Tensor&) { seen += name == "a"; };
  auto y = exe.run(std::vector<Tensor>{x}, ro);
  CHECK(seen == 1);
  for (int i = 0; i < 4; ++i) CHECK(y[0].data<float>()[i] == doctest::Approx(3.f * (i + 1) + 1.f));
  aff["a"] = {{1, 1}, {0, 0}};
  CHECK_THROWS_WITH_AS(exe.run(std::vector<Tensor>{x}, ro), doctest::Contains("2 channels"), Error);
}
