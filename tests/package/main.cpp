#include <cstdio>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/ir/infer.hpp"
#include "sparseloom/version.hpp"

int main() {
  using namespace sparseloom;
  ir::Graph g;
  g.source = "consumer";
  g.inputs = {{"x", {1, 3}, DType::f32}};
  g.values["x"] = g.inputs[0];
  g.nodes.push_back({"relu", "Relu", {"x"}, {"y"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  ir::infer_shapes(g);
  auto y = reference::Backend{}.compile(g).run(std::vector<Tensor>{Tensor::from<float>({1, 3}, std::vector<float>{-1, 0, 2})});
  std::printf("sparseloom %s: relu -> %.1f %.1f %.1f\n", SPARSELOOM_VERSION_STRING, y[0].data<float>()[0], y[0].data<float>()[1],
              y[0].data<float>()[2]);
  return y[0].data<float>()[2] == 2.f ? 0 : 1;
}
