// sparseloom-bench-opencl: the OpenCL kernel benchmark on its own (the runner that
// sparseloom-bench-kernels --backend opencl uses), writing JSON with the kernel-only times
// and kernel names beside each record. It has no CPU-ISA-specific code, so a build from one
// x86-64 machine runs on another (the GPU machine).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "kernels/opencl_runner.hpp"

int main(int argc, char** argv) {
  using namespace sparseloom::bench;
  BenchOptions opt;
  OpenclBenchConfig cfg;
  std::string device;
  CLI::App app{"SparseLoom OpenCL kernel benchmark: dense vs CSR vs BSR 4x1 on the fixed layer set"};
  app.add_flag("--quick", opt.quick, "few repetitions and geometries (CI)");
  app.add_option("--sparsities", opt.sparsities, "weight sparsities")->delimiter(',');
  app.add_option("--layers", opt.layers, "layer names (default: the whole fixed set)")->delimiter(',');
  app.add_option("--reps", cfg.reps, "host-timed calls per measurement");
  app.add_flag("--show-trials", cfg.show_trials, "print every candidate geometry's trial time");
  app.add_option("--device", device, "device selector: gpu, cpu, gpu:NAME, NAME (sets SPARSELOOM_OPENCL_DEVICE)");
  app.add_option("--json", opt.json_path, "write the records here");
  CLI11_PARSE(app, argc, argv);
  if (opt.quick) {
    cfg.warmup = 3;
    cfg.reps = std::min(cfg.reps, 20);
    cfg.kernel_reps = 10;
    cfg.trial_reps = 5;
  }
  if (!device.empty()) setenv("SPARSELOOM_OPENCL_DEVICE", device.c_str(), 1);
  opt.backend = "opencl";

  std::vector<Record> records;
  std::vector<OpenclExtra> extra;
  sparseloom::opencl::CompletionTrial floor;
  auto write_json = [&] {
    if (opt.json_path.empty()) return;
    nlohmann::json j;
    j["schema_version"] = 1;
    j["bench"] = "kernels";
    j["backend"] = "opencl";
    j["timing"] = "host wall time per call incl. completion under the wait the backend uses on this device "
                  "(`completion`: CPU devices clWaitForEvents, others the fastest wait of an empty-kernel trial), "
                  "median of reps after warm-up; wait_ms / poll_ms / finish_ms: the same calls under each wait; "
                  "kernel_ms from event profiling";
    j["completion"] = to_string(floor.chosen);
    j["empty_kernel"] = {{"wait_ms", floor.wait_ms}, {"poll_ms", floor.poll_ms}, {"finish_ms", floor.finish_ms},
                         {"kernel_ms", floor.kernel_ms}};
    j["reps"] = cfg.reps;
    j["device"] = records.empty() ? "" : records.front().device;
    auto& arr = j["records"] = nlohmann::json::array();
    for (std::size_t i = 0; i < records.size(); ++i) {
      const auto& r = records[i];
      arr.push_back({{"layer", r.layer}, {"m", r.m}, {"k", r.k}, {"n", r.n}, {"sparsity", r.sparsity},
                     {"format", r.format}, {"pattern", r.pattern}, {"ukernel", r.ukernel}, {"reps", r.reps},
                     {"backend", r.backend}, {"device", r.device}, {"threads", r.threads},
                     {"ours_ms", r.ours_ms}, {"ours_min_ms", r.ours_min_ms}, {"ours_max_ms", r.ours_max_ms},
                     {"onednn_dense_ms", r.onednn_dense_ms}, {"speedup_vs_dense", r.speedup_vs_dense},
                     {"best_peer", r.best_peer}, {"best_peer_ms", r.best_peer_ms}, {"gflops", r.gflops},
                     {"max_abs_err", r.max_abs_err}, {"kernel_ms", extra[i].kernel_ms},
                     {"kernel", extra[i].kernel}, {"weight_bytes", extra[i].weight_bytes},
                     {"wait_ms", extra[i].wait_ms}, {"poll_ms", extra[i].poll_ms},
                     {"finish_ms", extra[i].finish_ms}});
    }
    std::ofstream(opt.json_path) << j.dump(1) << "\n";
  };
  cfg.after_layer = write_json;
  try {
    run_opencl_detailed(opt, cfg, records, extra, &floor);
  } catch (const sparseloom::Error& e) {
    write_json();
    std::cerr << "sparseloom-bench-opencl: " << e.what() << "\n";
    return 2;
  }
  write_json();
  return 0;
}
