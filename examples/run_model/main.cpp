// Run one ONNX model with SparseLoom's reference backend: import, compile once, run, time.
//   run_model MODEL.onnx [--threads N] [--input X.npy]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/onnx/import.hpp"

int main(int argc, char** argv) {
  using namespace sparseloom;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [--threads N] [--input X.npy]\n", argv[0]);
    return 2;
  }
  int threads = 1;
  std::string input_path;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--input") input_path = argv[i + 1];
  }
  try {
    const ir::Graph g = onnx_io::import_file(argv[1]);
    std::printf("model %s: %zu nodes, %lld parameters, input %s %s\n", argv[1], g.nodes.size(),
                static_cast<long long>(g.parameter_count()), g.inputs[0].name.c_str(), to_string(g.inputs[0].shape).c_str());
    CompileOptions opt;
    opt.threads = threads;
    const auto exe = reference::Backend{}.compile(g, opt);
    Tensor x = input_path.empty() ? Tensor::zeros(g.inputs[0].shape, g.inputs[0].dtype) : npy::load(input_path);
    if (input_path.empty() && x.dtype() == DType::f32)  // a deterministic, non-trivial input
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 101) / 101.f - 0.5f;
    std::vector<Tensor> out;
    std::vector<double> ms;
    for (int r = 0; r < 10; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      out = exe.run(std::vector<Tensor>{x});
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const Tensor y = out[0].contiguous();
    std::printf("output %s %s:", g.outputs[0].name.c_str(), to_string(y.shape()).c_str());
    for (std::int64_t i = 0; i < std::min<std::int64_t>(y.numel(), 10); ++i) std::printf(" %.4f", y.data<float>()[i]);
    std::printf("%s\n", y.numel() > 10 ? " ..." : "");
    std::printf("reference backend, %d thread(s): median %.3f ms, min %.3f ms over %zu runs\n", threads, ms[ms.size() / 2],
                ms.front(), ms.size());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
