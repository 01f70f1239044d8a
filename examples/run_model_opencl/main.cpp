// Run one ONNX model on an OpenCL device (a GPU where one is installed, else PoCL on the CPU):
// import, compile once (weights go resident; each layer's format, dense / CSR / BSR 4x1, is
// picked by a short trial on the device), check against the reference backend, run, time.
//   run_model_opencl MODEL.onnx [--device gpu|cpu|NAME]     (or SPARSELOOM_OPENCL_DEVICE)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sparseloom/backends/opencl/backend.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/import.hpp"

int main(int argc, char** argv) {
  using namespace sparseloom;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [--device gpu|cpu|NAME]\n", argv[0]);
    return 2;
  }
  if (argc >= 4 && std::string(argv[2]) == "--device") setenv("SPARSELOOM_OPENCL_DEVICE", argv[3], 1);
  try {
    const ir::Graph g = onnx_io::import_file(argv[1]);
    // One Context per device: every backend and executable on it shares its queue, program
    // cache and resident-byte count.
    auto ctx = std::shared_ptr<opencl::Context>(opencl::Context::open());
    const opencl::Backend backend(ctx);  // BackendOptions{}: format trial, fusion, automatic wait
    auto t0 = std::chrono::steady_clock::now();
    const auto exe = backend.compile(g);
    const double compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("device %s: compiled %s in %.0f ms, %zu steps, %.2f MB resident, completion: %s\n",
                ctx->device().label().c_str(), argv[1], compile_ms, exe.steps(), exe.resident_bytes() / 1e6,
                opencl::to_string(ctx->resolve(opencl::Completion::automatic)).c_str());
    for (const auto& k : exe.kernels()) std::printf("  %s\n", k.c_str());  // "node: format.geometry"

    Tensor x = Tensor::zeros(g.inputs[0].shape, g.inputs[0].dtype);
    if (x.dtype() == DType::f32)  // a deterministic, non-trivial input
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 101) / 101.f - 0.5f;
    const std::vector<Tensor> in{x};
    const Tensor got = exe.run(in)[0].contiguous();
    const Tensor want = reference::Backend{}.compile(g).run(in)[0].contiguous();
    double diff = 0, scale = 0;
    for (std::int64_t i = 0; i < want.numel(); ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(want.data<float>()[i])));
    }
    const bool ok = diff <= 1e-4 * scale + 1e-5;
    std::printf("vs the reference backend: max |diff| %.3g of max |ref| %.3g: %s\n", diff, scale, ok ? "ok" : "MISMATCH");

    std::vector<double> ms;
    for (int r = 0; r < 20; ++r) {
      t0 = std::chrono::steady_clock::now();
      exe.run(in);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("run (upload, every kernel, download, wait): median %.3f ms, min %.3f ms over %zu runs\n",
                ms[ms.size() / 2], ms.front(), ms.size());
    return ok ? 0 : 1;
  } catch (const Error& e) {  // no platform, no device, build failure, lost device: a clear message
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
