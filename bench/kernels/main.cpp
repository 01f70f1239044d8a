// sparseloom-bench-kernels: our sparse kernels vs oneDNN dense and library peers on the fixed
// layer set (DESIGN.md), as JSON + a table of ratios. By default a second pass re-executes
// this binary with oneDNN and our kernels capped at AVX2 (an edge-SoC-like CPU).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <unistd.h>

#include "common.hpp"
#include "cpu_runner.hpp"
#if defined(SPARSELOOM_BENCH_WITH_OPENCL)
#include "opencl_runner.hpp"
#endif

using namespace sparseloom;
using namespace sparseloom::bench;

namespace {

nlohmann::json to_json(const Record& r) {
  return {{"layer", r.layer}, {"m", r.m}, {"k", r.k}, {"n", r.n}, {"sparsity", r.sparsity},
          {"format", r.format}, {"pattern", r.pattern}, {"backend", r.backend}, {"device", r.device},
          {"threads", r.threads}, {"isa_cap", r.isa_cap}, {"ukernel", r.ukernel},
          {"ours_ms", r.ours_ms}, {"ours_min_ms", r.ours_min_ms}, {"ours_max_ms", r.ours_max_ms},
          {"onednn_dense_ms", r.onednn_dense_ms}, {"onednn_dense_min_ms", r.onednn_dense_min_ms},
          {"onednn_dense_max_ms", r.onednn_dense_max_ms}, {"speedup_vs_dense", r.speedup_vs_dense},
          {"best_peer", r.best_peer}, {"best_peer_ms", r.best_peer_ms}, {"gflops", r.gflops},
          {"max_abs_err", r.max_abs_err}, {"reps", r.reps}, {"foreign_load", r.foreign_load},
          {"peer_ms", r.peer_ms}};
}

Record from_json(const nlohmann::json& j) {
  Record r;
  r.layer = j.at("layer");
  r.m = j.at("m"), r.k = j.at("k"), r.n = j.at("n");
  r.sparsity = j.at("sparsity");
  r.format = j.at("format");
  r.pattern = j.value("pattern", "");
  r.backend = j.at("backend");
  r.device = j.at("device");
  r.threads = j.at("threads");
  r.isa_cap = j.value("isa_cap", "");
  r.ukernel = j.value("ukernel", "");
  r.ours_ms = j.at("ours_ms"), r.ours_min_ms = j.value("ours_min_ms", 0.0), r.ours_max_ms = j.value("ours_max_ms", 0.0);
  r.onednn_dense_ms = j.at("onednn_dense_ms");
  r.onednn_dense_min_ms = j.value("onednn_dense_min_ms", 0.0), r.onednn_dense_max_ms = j.value("onednn_dense_max_ms", 0.0);
  r.speedup_vs_dense = j.at("speedup_vs_dense");
  r.best_peer = j.value("best_peer", ""), r.best_peer_ms = j.value("best_peer_ms", 0.0);
  r.gflops = j.value("gflops", 0.0), r.max_abs_err = j.value("max_abs_err", 0.0);
  r.reps = j.value("reps", 0), r.foreign_load = j.value("foreign_load", 0.0);
  if (j.contains("peer_ms")) r.peer_ms = j.at("peer_ms").get<std::map<std::string, double>>();
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over layers of ours/dense and peer/dense (and ours/peer), per format x sparsity x threads.
void print_summary(const std::vector<Record>& recs) {
  struct Key {
    std::string cap, format, pattern;
    double sparsity;
    int threads;
    bool operator<(const Key& o) const {
      return std::tie(cap, format, pattern, sparsity, threads) < std::tie(o.cap, o.format, o.pattern, o.sparsity, o.threads);
    }
  };
  std::map<Key, std::vector<const Record*>> groups;
  for (const auto& r : recs) groups[{r.isa_cap, r.format, r.pattern, r.sparsity, r.threads}].push_back(&r);
  fmt::print("\nMedian over layers (speedup = oneDNN dense f32 time / time):\n");
  fmt::print("{:<6} {:<9} {:<9} {:>5} {:>3} {:>8} {:>8} {:>8} {:>9} {:>6} {}\n", "isa", "format", "pattern", "spars",
             "thr", "ours", "min", "max", "best-peer", "ours/p", "layers");
  for (const auto& [k, v] : groups) {
    std::vector<double> s, p, op;
    for (auto* r : v) {
      s.push_back(r->speedup_vs_dense);
      if (r->best_peer_ms > 0) {
        p.push_back(r->onednn_dense_ms / r->best_peer_ms);
        op.push_back(r->best_peer_ms / r->ours_ms);
      }
    }
    fmt::print("{:<6} {:<9} {:<9} {:>4.0f}% {:>3} {:>7.2f}x {:>7.2f}x {:>7.2f}x {:>8.2f}x {:>5.2f}x {}\n",
               k.cap.empty() ? "best" : k.cap, k.format, k.pattern, 100 * k.sparsity, k.threads, median(s),
               *std::min_element(s.begin(), s.end()), *std::max_element(s.begin(), s.end()), median(p), median(op), v.size());
  }
  // Each peer on its own (records where it ran and gave right results).
  std::map<std::pair<Key, std::string>, std::vector<const Record*>> per_peer;
  for (const auto& r : recs)
    for (const auto& [name, ms] : r.peer_ms) per_peer[{{r.isa_cap, r.format, r.pattern, r.sparsity, r.threads}, name}].push_back(&r);
  if (per_peer.empty()) return;
  fmt::print("\nMedian over layers, per peer (peer speedup vs oneDNN dense; ours / peer = peer time / our time):\n");
  fmt::print("{:<9} {:<9} {:>5} {:>3} {:<18} {:>8} {:>9} {}\n", "format", "pattern", "spars", "thr", "peer", "peer", "ours/peer", "layers");
  for (const auto& [kp, v] : per_peer) {
    std::vector<double> p, op;
    for (auto* r : v) {
      const double ms = r->peer_ms.at(kp.second);
      p.push_back(r->onednn_dense_ms / ms);
      op.push_back(ms / r->ours_ms);
    }
    fmt::print("{:<9} {:<9} {:>4.0f}% {:>3} {:<18} {:>7.2f}x {:>8.2f}x {}\n", kp.first.format, kp.first.pattern,
               100 * kp.first.sparsity, kp.first.threads, kp.second, median(p), median(op), v.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP (oneDNN, Eigen, LIBXSMM) and our pool share two cores: GOMP's default spin after a
  // parallel region (GOMP_SPINCOUNT 300k, ~1 ms) holds a core our pool's worker then needs,
  // and vice versa. Give GOMP a spin of the same order as our pool's 100 us. libgomp reads
  // the variable when it loads, so set it and re-execute once.
  if (!std::getenv("GOMP_SPINCOUNT") && !std::getenv("OMP_WAIT_POLICY")) {
    setenv("GOMP_SPINCOUNT", "30000", 1);
    execv("/proc/self/exe", argv);
  }
  CLI::App app{"SparseLoom kernel benchmark: sparse kernels vs oneDNN dense and library peers"};
  BenchOptions o;
  bool no_avx2_pass = false;
  std::string merge_from;
  app.add_flag("--quick", o.quick, "representative subset, under a minute on 2 cores");
  app.add_option("--json", o.json_path, "write records as JSON to this path");
  app.add_option("--threads", o.threads, "thread counts to measure")->delimiter(',');
  app.add_option("--sparsities", o.sparsities, "unstructured sparsities")->delimiter(',');
  app.add_option("--backend", o.backend, "cpu | opencl")->check(CLI::IsMember({"cpu", "opencl"}));
  app.add_option("--layers", o.layers, "layer names (default: all; --quick: a subset)")->delimiter(',');
  app.add_option("--budget-ms", o.budget_ms, "timing budget per contender and configuration");
  app.add_option("--quiet-wait-ms", o.quiet_wait_ms, "wait up to this long for other processes to calm down");
  app.add_option("--isa-cap", o.isa_cap, "cap oneDNN and our kernels: avx2")->check(CLI::IsMember({"", "avx2"}));
  app.add_flag("--no-avx2-pass", no_avx2_pass, "skip the second pass capped at AVX2");
  app.add_flag("-v,--verbose", o.verbose, "print every prepare-time candidate");
  app.add_flag("!--no-peers", o.peers, "skip the library peers");
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    o.sparsities = {0.7, 0.9, 0.95};
    o.budget_ms = std::min(o.budget_ms, 25.0);
    o.quiet_wait_ms = std::min(o.quiet_wait_ms, 100.0);
  }

  // The cap must precede oneDNN's first primitive (same effect as ONEDNN_MAX_CPU_ISA=AVX2).
  if (o.isa_cap == "avx2" && !cpu::onednn_cap_isa("avx2")) {
    fmt::print(stderr, "could not cap oneDNN at AVX2\n");
    return 1;
  }
  const auto& f = cpu::cpu_features();
  const std::string device = fmt::format("{} [{}]{}", cpu::cpu_model_name(), f.isa_string(),
                                         o.isa_cap.empty() ? "" : " capped at " + o.isa_cap);
  fmt::print("machine: {}, {} logical CPUs; our kernels: {}; oneDNN {}.{}.{}{}; GOMP_SPINCOUNT={} OMP_WAIT_POLICY={}\n",
             cpu::cpu_model_name(), sysconf(_SC_NPROCESSORS_ONLN), f.isa_string(), dnnl_version()->major,
             dnnl_version()->minor, dnnl_version()->patch, o.isa_cap.empty() ? "" : " (capped at " + o.isa_cap + ")",
             std::getenv("GOMP_SPINCOUNT") ? std::getenv("GOMP_SPINCOUNT") : "-",
             std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "-");
#if defined(SPARSELOOM_BENCH_HAS_MKL)
  const std::string mkl_version = o.peers ? mkl_init() : "";
  if (o.peers)
    fmt::print("MKL sparse peer: {} ({} threading layer)\n", mkl_version,
               std::getenv("MKL_THREADING_LAYER") ? std::getenv("MKL_THREADING_LAYER") : "GNU OpenMP");
#else
  const std::string mkl_version = "not built (MKL not found at configure time; run scripts/setup and reconfigure)";
  if (o.peers) fmt::print("MKL sparse peer: {}\n", mkl_version);
#endif
  std::vector<Record> records;
  const auto t0 = now_ms();
  // Pass capped at AVX2 (oneDNN and our kernels), in a fresh process, run first: while this
  // process has not yet started any OpenMP or pool threads, nothing of it competes with the
  // child for the two cores (measured: idle GOMP workers of the peers halved the child's
  // 2-thread results).
  if (o.backend == "cpu" && o.isa_cap.empty() && !no_avx2_pass && f.best_isa() == cpu::Isa::avx512) {
    const std::string tmp = fmt::format("/tmp/sparseloom-bench-kernels-avx2-{}.json", getpid());
    std::string cmd = fmt::format("'{}' --isa-cap avx2 --no-peers --budget-ms {} --quiet-wait-ms {} --json '{}'", argv[0],
                                  o.budget_ms, o.quiet_wait_ms, tmp);
    if (o.quick) cmd += " --quick";
    if (!o.layers.empty()) {
      std::string ls;
      for (const auto& l : o.layers) ls += (ls.empty() ? "" : ",") + l;
      cmd += " --layers " + ls;
    }
    std::string th;
    for (int t : o.threads) th += (th.empty() ? "" : ",") + std::to_string(t);
    cmd += " --threads " + th;
    if (!o.quick) {
      std::string sp;
      for (double s : o.sparsities) sp += (sp.empty() ? "" : ",") + fmt::format("{}", s);
      cmd += " --sparsities " + sp;
    }
    fmt::print("\n--- pass capped at AVX2: {}\n", cmd);
    std::fflush(stdout);
    const int rc = std::system(cmd.c_str());
    if (rc == 0) {
      std::ifstream in(tmp);
      const auto doc = nlohmann::json::parse(in);  // named: a temporary would die before the loop
      for (const auto& j : doc.at("records")) records.push_back(from_json(j));
      std::remove(tmp.c_str());
    } else {
      fmt::print(stderr, "AVX2 pass failed (status {})\n", rc);
    }
  }
  if (o.backend == "cpu") {
    run_cpu(o, device, records);
  } else {
#if defined(SPARSELOOM_BENCH_WITH_OPENCL)
    run_opencl(o, records);
#else
    fmt::print(stderr, "this build has no OpenCL runner\n");
    return 1;
#endif
  }
  print_summary(records);
  // Other processes on the cores wreck multi-threaded timings (oneDNN's OpenMP barriers most:
  // its 2-thread matmul then takes 10x longer and our ratios look absurdly good). Say so.
  std::size_t loaded = 0, multi = 0;
  for (const auto& r : records)
    if (r.threads > 1) {
      ++multi;
      loaded += r.foreign_load > 0.5;
    }
  if (loaded > 0)
    fmt::print("WARNING: {} of {} multi-threaded records ran with > 0.5 cores of foreign CPU load: their ratios "
               "are not trustworthy. Rerun on a quiet machine, or as root under `chrt -f 10` (SCHED_FIFO).\n",
               loaded, multi);
  fmt::print("total {:.1f} s\n", (now_ms() - t0) / 1000);
  if (!o.json_path.empty()) {
    nlohmann::json j;
    j["machine"] = {{"cpu", cpu::cpu_model_name()}, {"isa", f.isa_string()},
                    {"logical_cpus", sysconf(_SC_NPROCESSORS_ONLN)},
                    {"onednn", fmt::format("{}.{}.{}", dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch)},
                    {"mkl", mkl_version}};
    j["quick"] = o.quick;
    j["records"] = nlohmann::json::array();
    for (const auto& r : records) j["records"].push_back(to_json(r));
    std::ofstream(o.json_path) << j.dump(1) << "\n";
    fmt::print("wrote {}\n", o.json_path);
  }
  return 0;
}
