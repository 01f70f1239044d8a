#pragma once
// Shared by every runner of sparseloom-bench-kernels: the fixed layer set (DESIGN.md, Settled
// choices), the options, and one record per measurement.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sparseloom::bench {

// Y(MxN) = W(MxK, sparse) * X(KxN), batch 1.
struct LayerShape {
  std::string name;
  std::int64_t m, k, n;
};

inline const std::vector<LayerShape>& layer_set() {
  static const std::vector<LayerShape> layers = {
      {"resnet50.M256K2304N196", 256, 2304, 196}, {"resnet50.M1024K256N196", 1024, 256, 196},
      {"resnet50.M512K2048N49", 512, 2048, 49},   {"mobilenetv2.M96K576N196", 96, 576, 196},
      {"mobilenetv2.M320K960N49", 320, 960, 49},  {"bert.M768K768N128", 768, 768, 128},
      {"bert.M3072K768N128", 3072, 768, 128}, {"bert.M768K3072N128", 768, 3072, 128},
  };
  return layers;
}

struct BenchOptions {
  bool quick = false;
  std::string backend = "cpu";        // cpu | opencl
  std::vector<int> threads = {1, 2};  // CPU threads
  std::vector<double> sparsities = {0.5, 0.7, 0.8, 0.9, 0.95};
  std::string json_path;
  // Added for the CPU runner:
  std::string isa_cap;               // "" (best) or "avx2": caps oneDNN and our kernels
  bool peers = true;                 // time Eigen / LIBXSMM / oneDNN-int8 peers
  double budget_ms = 150;            // timing budget per contender and configuration
  bool verbose = false;              // print every prepare-time candidate
  double quiet_wait_ms = 3000;       // wait up to this long for a quiet machine per record
  std::vector<std::string> layers;   // empty: the whole layer set (--quick: a subset)
};

struct Record {
  std::string layer;
  std::int64_t m = 0, k = 0, n = 0;
  double sparsity = 0;
  std::string format;   // dense | csr | bsr4x1 | bsr1x4 | bsr8x1 | 2:4 | csr-int8 ...
  std::string backend;  // cpu | opencl
  std::string device;   // CPU model + ISA, or OpenCL device name
  int threads = 0;
  double ours_ms = 0;             // median
  double ours_min_ms = 0, ours_max_ms = 0;
  double onednn_dense_ms = 0;     // baseline measured in the same run (0 when not applicable)
  double speedup_vs_dense = 0;    // onednn_dense_ms / ours_ms (or device dense / ours)
  std::string best_peer;          // e.g. "eigen-sparse"
  double best_peer_ms = 0;
  std::map<std::string, double> peer_ms;  // median of every peer that gave right results
  double gflops = 0;              // dense-equivalent 2*M*K*N / time
  double max_abs_err = 0;         // vs a reference computed in the same run
  double kernel_ms = 0;           // device kernel time only (OpenCL event profiling), beside ours_ms
  // Added by the CPU runner:
  std::string pattern;            // random | block4x1 | 2:4 (the zeros of W)
  std::string ukernel;            // microkernel picked by the prepare-time trial
  std::string isa_cap;            // "" or "avx2" (oneDNN and our kernels capped)
  double onednn_dense_min_ms = 0, onednn_dense_max_ms = 0;
  int reps = 0;
  double foreign_load = 0;        // other processes' CPU use during this measurement, in cores
};

}  // namespace sparseloom::bench
