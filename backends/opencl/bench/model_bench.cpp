// sparseloom-bench-opencl-model MODEL.onnx: a whole model end to end through opencl::Backend.
// Imports the ONNX file, compiles it (per-layer format trial on this device), checks the output
// against the reference backend on one random input, then times run() per call (one upload,
// every kernel back to back, one download, one wait): host wall time, median of --reps after
// --warmup, the clock torch's peers are timed with in scripts/gpu-check.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <thread>

#include "sparseloom/backends/opencl/backend.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/import.hpp"

using namespace sparseloom;
using Clock = std::chrono::steady_clock;

namespace {
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Zero fraction over the weights of Conv / Gemm / MatMul nodes (what pruning touched).
std::pair<double, std::int64_t> weight_sparsity(const ir::Graph& g) {
  std::int64_t zeros = 0, total = 0;
  for (const auto& n : g.nodes) {
    if (n.op != "Conv" && n.op != "Gemm" && n.op != "MatMul") continue;
    if (n.inputs.size() < 2 || !g.is_initializer(n.inputs[1])) continue;
    const Tensor w = g.initializers.at(n.inputs[1]).contiguous();
    if (w.dtype() != DType::f32) continue;
    for (float v : w.span<float>()) zeros += v == 0.0f;
    total += w.numel();
  }
  return {total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0, total};
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sparseloom-bench-opencl-model: a whole ONNX model through opencl::Backend"};
  std::string model, json_path, name, device;
  int reps = 100, warmup = 10, ref_threads = 0;
  bool quick = false, no_check = false, no_reuse = false;
  std::string int8 = "trial";
  app.add_option("model", model, "ONNX file")->required();
  app.add_option("--reps", reps, "timed calls");
  app.add_option("--warmup", warmup, "untimed calls first");
  app.add_option("--json", json_path, "write the result here");
  app.add_option("--name", name, "label in the output (default: the file name)");
  app.add_option("--device", device, "SPARSELOOM_OPENCL_DEVICE value (gpu, cpu, gpu:H200)");
  app.add_option("--ref-threads", ref_threads, "reference backend threads (0: all cores)");
  app.add_flag("--quick", quick, "short format trial (fewer kernel geometries)");
  app.add_flag("--no-check", no_check, "skip the reference check");
  app.add_option("--int8", int8, "QDQ convs on the INT8 kernel: trial (where faster, per layer), always, never")
      ->check(CLI::IsMember({"trial", "always", "never"}));
  app.add_flag("--no-buffer-reuse", no_reuse, "ablation: one device buffer per activation tensor");
  CLI11_PARSE(app, argc, argv);
  if (!device.empty()) setenv("SPARSELOOM_OPENCL_DEVICE", device.c_str(), 1);
  if (name.empty()) name = std::filesystem::path(model).stem().string();
  if (ref_threads <= 0) ref_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  nlohmann::json j;
  j["schema_version"] = 1;
  j["bench"] = "opencl-model";
  j["model"] = name;
  j["timing"] = "host wall time per run() (input upload, all kernels, output download, completion: the backend's "
                "wait on this device, `completion`), median of reps after warm-up";
  auto write = [&] {
    if (!json_path.empty()) std::ofstream(json_path) << j.dump(1) << "\n";
  };
  try {
    auto t0 = Clock::now();
    const ir::Graph g = onnx_io::import_file(model);
    j["import_ms"] = ms_since(t0);
    const auto [sparsity, params] = weight_sparsity(g);
    j["weight_sparsity"] = sparsity;
    j["weight_params"] = params;
    j["nodes"] = g.nodes.size();

    auto ctx = std::shared_ptr<opencl::Context>(opencl::Context::open());
    j["device"] = ctx->device().label();
    j["completion"] = to_string(ctx->resolve(opencl::Completion::automatic));
    opencl::BackendOptions bo;
    bo.matmul.quick = quick;
    bo.int8 = int8 == "always" ? opencl::Int8Mode::always : int8 == "never" ? opencl::Int8Mode::never : opencl::Int8Mode::trial;
    bo.reuse_buffers = !no_reuse;
    j["int8_mode"] = int8;
    j["buffer_reuse"] = bo.reuse_buffers;
    const opencl::Backend backend(ctx, bo);
    t0 = Clock::now();
    const auto exe = backend.compile(g);
    j["compile_ms"] = ms_since(t0);
    j["program_builds"] = ctx->programs().builds();
    j["resident_bytes"] = exe.resident_bytes();
    j["steps"] = exe.steps();
    j["host_nodes"] = exe.host_nodes();
    std::map<std::string, int> formats;
    for (const auto& k : exe.kernels()) {
      const auto p = k.find(": ");
      const auto kind = k.substr(p + 2, k.find('.', p + 2) - (p + 2));
      ++formats[kind];
    }
    j["kernel_formats"] = formats;
    j["kernels"] = exe.kernels();
    {  // where compile time went: the slowest nodes
      auto ct = exe.compile_times();
      std::sort(ct.begin(), ct.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      auto& slow = j["slowest_compile_nodes"] = nlohmann::json::array();
      for (std::size_t i = 0; i < std::min<std::size_t>(8, ct.size()); ++i) {
        slow.push_back({{"node", ct[i].first}, {"ms", ct[i].second}});
        std::printf("  compile: %-40s %8.0f ms\n", ct[i].first.c_str(), ct[i].second);
      }
    }

    std::mt19937 gen(0);
    std::normal_distribution<float> dist;
    std::vector<Tensor> in;
    for (const auto& vi : g.inputs) {
      Tensor t = Tensor::empty(vi.shape, DType::f32);
      for (auto& v : t.span<float>()) v = dist(gen);
      in.push_back(t);
    }
    const auto got = exe.run(in);
    if (!no_check) {
      t0 = Clock::now();
      const auto want = reference::Backend{}.compile(g, CompileOptions{ref_threads}).run(in);
      j["reference_ms"] = ms_since(t0);
      double max_abs = 0, max_ref = 0;
      bool top1 = true;
      for (std::size_t k = 0; k < want.size(); ++k) {
        const Tensor a = got[k].contiguous(), r = want[k].contiguous();
        if (r.dtype() != DType::f32) continue;
        std::int64_t ba = 0, br = 0;
        for (std::int64_t i = 0; i < r.numel(); ++i) {
          const float av = a.data<float>()[i], rv = r.data<float>()[i];
          max_abs = std::max(max_abs, static_cast<double>(std::fabs(av - rv)));
          max_ref = std::max(max_ref, static_cast<double>(std::fabs(rv)));
          if (av > a.data<float>()[ba]) ba = i;
          if (rv > r.data<float>()[br]) br = i;
        }
        top1 = top1 && ba == br;
      }
      const bool ok = max_abs <= 1e-4 * max_ref + 1e-5;
      j["check"] = {{"max_abs_err", max_abs}, {"max_abs_ref", max_ref}, {"top1_agrees", top1},
                    {"within_f32_tolerance", ok}, {"tolerance", "1e-4 * max|ref| + 1e-5"}};
      std::printf("%s: check vs reference: max |diff| %.3g of max |ref| %.3g (%s), top-1 %s\n", name.c_str(), max_abs,
                  max_ref, ok ? "ok" : "OUT OF TOLERANCE", top1 ? "agrees" : "differs");
    }
    write();

    for (int i = 0; i < warmup; ++i) exe.run(in);
    std::vector<double> t(static_cast<std::size_t>(std::max(1, reps)));
    for (auto& v : t) {
      const auto s = Clock::now();
      exe.run(in);
      v = ms_since(s);
    }
    std::sort(t.begin(), t.end());
    j["reps"] = reps;
    j["ms"] = t[t.size() / 2];
    j["min_ms"] = t.front();
    j["p90_ms"] = t[std::min(t.size() - 1, t.size() * 9 / 10)];
    std::printf("%s on %s: %.4f ms per call (min %.4f, p90 %.4f), compile %.0f ms, %zu steps, %.1f MB resident, "
                "weights %.1f %% zero, host nodes %zu\n",
                name.c_str(), ctx->device().label().c_str(), t[t.size() / 2], t.front(),
                t[std::min(t.size() - 1, t.size() * 9 / 10)], j["compile_ms"].get<double>(), exe.steps(),
                static_cast<double>(exe.resident_bytes()) / 1e6, 100 * sparsity, exe.host_nodes().size());
    for (const auto& [k, c] : formats) std::printf("  %s: %d layers\n", k.c_str(), c);
    write();
  } catch (const std::exception& e) {
    j["error"] = e.what();
    write();
    std::cerr << "sparseloom-bench-opencl-model: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
