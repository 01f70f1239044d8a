// The reference backend against ONNX Runtime on real ONNX files: torchvision ResNet-18 and
// MobileNetV2, transformer encoder blocks, a QDQ INT8 conv and single-op models.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/onnx/import.hpp"

using namespace sparseloom;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> cases() {
  std::ifstream f(fs::path(SPARSELOOM_REF_CASES) / "cases.txt");
  std::vector<std::string> names;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) names.push_back(line);
  return names;
}

void check_case(const std::string& name, int threads) {
  const fs::path dir = fs::path(SPARSELOOM_REF_CASES) / name;
  ir::Graph g = onnx_io::import_file(dir / "model.onnx");
  std::vector<Tensor> in;
  for (std::size_t i = 0; i < g.inputs.size(); ++i) in.push_back(npy::load(dir / ("input_" + std::to_string(i) + ".npy")));
  CompileOptions o;
  o.threads = threads;
  auto out = reference::Backend{}.compile(g, o).run(in);
  REQUIRE(out.size() == g.outputs.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    Tensor expected = npy::load(dir / ("expected_" + std::to_string(i) + ".npy"));
    Tensor got = out[i].contiguous();
    REQUIRE(got.numel() == expected.numel());
    double max_err = 0, max_ref = 0;
    for (std::int64_t k = 0; k < got.numel(); ++k) {
      max_err = std::max(max_err, static_cast<double>(std::fabs(got.data<float>()[k] - expected.data<float>()[k])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(expected.data<float>()[k])));
    }
    const double tol = 1e-4 * max_ref + 1e-5;  // DESIGN.md: f32 numerics vs ONNX Runtime
    MESSAGE(name << " output " << i << " threads " << threads << ": max abs error " << max_err << " (max |ref| "
                 << max_ref << ", tolerance " << tol << ")");
    CHECK(max_err <= tol);
  }
}
}  // namespace

TEST_CASE("Reference.Numerics.MatchOnnxRuntime") {
  const auto names = cases();
  REQUIRE(names.size() >= 20);
  for (const auto& n : names) {
    CAPTURE(n);
    check_case(n, 1);
  }
}

TEST_CASE("Reference.Numerics.MultiThreadedMatches") {
  for (const auto& n : cases())
    if (n == "resnet18" || n == "encoder_block_opset13" || n == "op_conv_group") check_case(n, 2);
}
