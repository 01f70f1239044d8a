// Whole-model latency of cpu::Backend: compile each ONNX file once (per-layer format trial),
// then time batch-1 inference on a fixed random input. bench/models/run.py times ONNX Runtime
// on the same files with the same thread count, interleaved with this binary, and writes
// bench/results/models.json and the models table of docs/results.md.
//
//   sparseloom-bench-models MODEL.onnx... --threads 2 --json out.json [--reps 30] [--check] [--im2col MODE]
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unistd.h>

#include "sparseloom/backends/cpu/backend.hpp"
#include "sparseloom/backends/cpu/cpu_features.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/import.hpp"

using namespace sparseloom;

namespace {
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Tensor random_input(const ir::ValueInfo& vi, std::uint32_t seed) {
  Tensor t = Tensor::empty(vi.shape, vi.dtype);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  check(vi.dtype == DType::f32, ErrorCode::unsupported, vi.name, "benchmark inputs must be f32");
  for (auto& v : t.span<float>()) v = d(rng);
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  // oneDNN runs on OpenMP, our kernels on the processor's pool: keep GOMP's spin short so its
  // idle workers do not hold the cores our pool needs (as the kernel benchmark does).
  if (!std::getenv("GOMP_SPINCOUNT") && !std::getenv("OMP_WAIT_POLICY")) {
    setenv("GOMP_SPINCOUNT", "30000", 1);
    execv("/proc/self/exe", argv);
  }
  CLI::App app{"SparseLoom whole-model benchmark (cpu::Backend)"};
  std::vector<std::string> files;
  int threads = 1, reps = 30, warmup = 3;
  double budget_ms = 1.0, min_time_s = 0;
  std::string json_path, im2col = "measured";
  bool check_ref = false, verbose = false, prof = false;
  app.add_option("models", files, "ONNX files")->required();
  app.add_option("--threads", threads, "threads (one processor)");
  app.add_option("--reps", reps, "timed runs per model");
  app.add_option("--warmup", warmup, "untimed runs first");
  app.add_option("--min-time-s", min_time_s, "keep timing until this much time has passed");
  app.add_option("--budget-ms", budget_ms, "format-trial budget per candidate and layer");
  app.add_option("--json", json_path, "write records as JSON");
  app.add_option("--im2col", im2col, "sparse k x k stride-1 convs: measured, implicit or materialised")
      ->check(CLI::IsMember({"measured", "implicit", "materialised"}));
  app.add_flag("--check", check_ref, "compare the output with the reference backend");
  app.add_flag("-v,--verbose", verbose, "print every layer's format and kernel");
  app.add_flag("--profile", prof, "print the time of every step (median of --reps runs)");
  CLI11_PARSE(app, argc, argv);

  cpu::Backend backend(threads);
  backend.trial_budget_ms(budget_ms);
  backend.conv_im2col(im2col == "implicit" ? cpu::Im2col::implicit
                      : im2col == "materialised" ? cpu::Im2col::materialised
                                                 : cpu::Im2col::measured);
  nlohmann::json records = nlohmann::json::array();
  for (const auto& file : files) {
    const ir::Graph g = onnx_io::import_file(file);
    const double c0 = now_ms();
    auto exe = backend.compile(g, {threads});
    const double compile_ms = now_ms() - c0;
    std::vector<Tensor> in;
    for (std::size_t i = 0; i < g.inputs.size(); ++i) in.push_back(random_input(g.inputs[i], 1 + static_cast<std::uint32_t>(i)));
    for (int i = 0; i < warmup; ++i) exe.run(in);
    std::vector<double> t;
    const double start = now_ms();
    while (static_cast<int>(t.size()) < reps || now_ms() - start < 1000 * min_time_s) {
      const double t0 = now_ms();
      exe.run(in);
      t.push_back(now_ms() - t0);
    }
    std::sort(t.begin(), t.end());
    const double median = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    std::map<std::string, int> formats;
    for (const auto& l : exe.layers()) ++formats[cpu::to_string(l.format)];
    nlohmann::json rec = {{"model", std::filesystem::path(file).parent_path().filename().string() + "/" +
                                        std::filesystem::path(file).stem().string()},
                          {"file", file},
                          {"threads", threads},
                          {"compile_ms", compile_ms},
                          {"median_ms", median},
                          {"min_ms", t.front()},
                          {"max_ms", t.back()},
                          {"reps", t.size()},
                          {"samples_ms", t},
                          {"resident_bytes", exe.resident_bytes()},
                          {"kernel_layers", exe.layers().size()},
                          {"formats", formats},
                          {"cpu", cpu::cpu_model_name()}};
    if (check_ref) {
      const auto want = reference::Backend{}.compile(g, {threads}).run(in);
      const auto got = exe.run(in);
      double err = 0, ref = 0;
      for (std::size_t o = 0; o < got.size(); ++o) {
        const Tensor a = got[o].contiguous(), b = want[o].contiguous();
        for (std::int64_t k = 0; k < a.numel(); ++k) {
          err = std::max(err, static_cast<double>(std::fabs(a.data<float>()[k] - b.data<float>()[k])));
          ref = std::max(ref, static_cast<double>(std::fabs(b.data<float>()[k])));
        }
      }
      rec["max_err_vs_reference"] = err;
      rec["max_abs_reference"] = ref;
    }
    std::string fs;
    for (const auto& [f, n] : formats) fs += fmt::format("{}:{} ", f, n);
    fmt::print("{:<28} threads {} compile {:8.1f} ms  median {:8.3f} ms (min {:.3f}, max {:.3f}, n {})  resident {:.1f} MB  {}\n",
               rec["model"].get<std::string>(), threads, compile_ms, median, t.front(), t.back(), t.size(),
               static_cast<double>(exe.resident_bytes()) / 1e6, fs);
    if (verbose)
      for (const auto& l : exe.layers()) fmt::print("    {:<40} {:<8} {:<10} {}\n", l.node, l.op, cpu::to_string(l.format), l.kernel);
    if (prof) {
      std::vector<std::vector<double>> per;
      std::vector<std::string> names;
      for (int r = 0; r < reps; ++r) {
        auto p = exe.profile(in);
        per.resize(p.size());
        names.clear();
        for (std::size_t i = 0; i < p.size(); ++i) per[i].push_back(p[i].second), names.push_back(p[i].first);
      }
      double total = 0;
      for (std::size_t i = 0; i < per.size(); ++i) {
        std::sort(per[i].begin(), per[i].end());
        total += per[i][per[i].size() / 2];
        fmt::print("    {:8.3f} ms  {}\n", per[i][per[i].size() / 2], names[i]);
      }
      fmt::print("    {:8.3f} ms  total of step medians\n", total);
    }
    records.push_back(rec);
  }
  if (!json_path.empty()) std::ofstream(json_path) << records.dump(2) << "\n";
  return 0;
}
