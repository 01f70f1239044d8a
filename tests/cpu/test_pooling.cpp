// The backend's 2-D MaxPool step (pooling.hpp) against the reference backend, bit for bit:
// ResNet's stem window, speech_kws' 1 x k windows, padding on one side, ceil_mode, dilation,
// NaNs (ignored as the reference ignores them), 1 and 2 threads; 1-D pooling stays with the
// reference op.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "reference_compare.hpp"
#include "sparseloom/ir/infer.hpp"

using namespace sparseloom;
using testing::random_tensor;

namespace {

// MaxPool(x) on both backends; true when equal bit for bit on 1 and 2 threads and the cpu
// backend ran it as its own step (`native`) or not.
bool same_as_reference(const Tensor& x, std::map<std::string, ir::Attribute> attrs, bool native = true) {
  ir::Graph g;
  g.source = "pooling-test";
  g.inputs.push_back({"x", x.shape(), DType::f32});
  g.values["x"] = g.inputs.back();
  g.nodes.push_back({"p", "MaxPool", {"x"}, {"y"}, std::move(attrs)});
  g.outputs = {{"y", {}, DType::f32}};
  ir::infer_shapes(g);
  return testing::cpu_equals_reference(g, {x}, [&](const std::vector<std::string>& steps) {
    bool ran_native = false;
    for (const auto& step : steps) ran_native |= step.find("[MaxPool 2-D]") != std::string::npos;
    return ran_native == native;
  });
}

using V = std::vector<std::int64_t>;

}  // namespace

TEST_CASE("Cpu.Pooling.MaxPoolEqualsTheReference") {
  const Tensor stem = random_tensor({1, 64, 112, 112}, 1);  // ResNet's stem: 3x3, stride 2, pad 1
  CHECK(same_as_reference(stem, {{"kernel_shape", V{3, 3}}, {"strides", V{2, 2}}, {"pads", V{1, 1, 1, 1}}}));
  const Tensor speech = random_tensor({2, 32, 1, 97}, 2);  // 1 x k windows over time
  CHECK(same_as_reference(speech, {{"kernel_shape", V{1, 3}}, {"strides", V{1, 3}}}));
  CHECK(same_as_reference(speech, {{"kernel_shape", V{1, 2}}, {"strides", V{1, 2}}, {"ceil_mode", std::int64_t{1}}}));
  const Tensor x = random_tensor({2, 3, 17, 23}, 3);
  CHECK(same_as_reference(x, {{"kernel_shape", V{2, 2}}}));  // stride 1, no padding
  CHECK(same_as_reference(x, {{"kernel_shape", V{3, 2}}, {"strides", V{2, 3}}, {"pads", V{0, 1, 2, 0}}}));  // one-sided
  CHECK(same_as_reference(x, {{"kernel_shape", V{3, 3}}, {"strides", V{2, 2}}, {"ceil_mode", std::int64_t{1}}}));
  CHECK(same_as_reference(x, {{"kernel_shape", V{2, 3}}, {"dilations", V{2, 2}}, {"pads", V{1, 1, 1, 1}}}));
  CHECK(same_as_reference(x, {{"kernel_shape", V{3, 3}}, {"auto_pad", std::string("SAME_UPPER")}, {"strides", V{2, 2}}}));
  Tensor nans = random_tensor({1, 2, 8, 8}, 4);
  for (std::int64_t i = 0; i < nans.numel(); i += 3) nans.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
  CHECK(same_as_reference(nans, {{"kernel_shape", V{2, 2}}, {"strides", V{2, 2}}}));
}

TEST_CASE("Cpu.Pooling.OtherPoolingStaysWithTheReference") {
  CHECK(same_as_reference(random_tensor({1, 4, 30}, 5), {{"kernel_shape", V{3}}}, false));  // 1-D
}
