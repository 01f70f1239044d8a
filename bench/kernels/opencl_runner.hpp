#pragma once
// `sparseloom-bench-kernels --backend opencl`: the fixed layer set on the OpenCL device that
// SPARSELOOM_OPENCL_DEVICE selects (PoCL here, the GPU on the GPU machine). Per layer: OpenCL
// dense, then CSR (unstructured) and BSR 4x1 (block-pruned) at each sparsity, each with its
// work-group geometry picked by a short trial on this device, and its speedup over OpenCL
// dense measured in the same run. Timing as the GPU peers are timed (DESIGN.md): host wall
// time per call including completion, median of `reps` after warm-up; the kernel-only time
// from event profiling on a separate queue goes beside it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "sparseloom/backends/opencl.hpp"

namespace sparseloom::bench {

struct OpenclBenchConfig {
  int warmup = 20;
  int reps = 200;         // host-timed calls per measurement (>= 200 for GPU comparisons)
  int kernel_reps = 50;   // profiled calls for the kernel-only time
  // Per candidate geometry in the trial. GPU geometries differ by ~1 us on ~15 us calls: with
  // 20 calls the trial picked one 3 us slower than a rival (H200, session 18).
  int trial_reps = 60;
  bool show_trials = false;  // print every candidate's trial time
  bool verbose = true;
  std::function<void()> after_layer;  // e.g. write the JSON so far (a killed run keeps its data)
};

// What a Record has no field for: the kernel-only time and the kernel's name.
struct OpenclExtra {
  double kernel_ms = 0;
  std::string kernel;
  std::size_t weight_bytes = 0;
  int reps = 0;
  // The same calls under each wait (Completion): the record's own time uses the context's.
  double wait_ms = 0, poll_ms = 0, finish_ms = 0;
};

namespace ocl_detail {
using namespace sparseloom::opencl;

struct Timing {
  double median = 0, min = 0, max = 0;
};

inline Timing summarize(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front(), t.back()};
}

// Host wall time per call including completion under `mode` (automatic: the wait the backend
// uses on this device, Context::resolve), median/min/max of `reps` after warm-up.
template <class Op>
Timing host_time(Context& ctx, const Op& op, int warmup, int reps, Completion mode = Completion::automatic) {
  return summarize(call_times_ms(ctx, op, warmup, reps, mode));
}

template <class Op>
double kernel_time(Context& ctx, const Op& op, int reps) {
  const int q = ctx.profiling_queue();
  if (q < 0 || reps <= 0) return 0;
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cl_event ev = nullptr;
    op.enqueue(q, &ev);
    cl_ulong b = 0, e = 0;
    check_cl(clWaitForEvents(1, &ev), ctx.where(), "clWaitForEvents");
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof b, &b, nullptr);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof e, &e, nullptr);
    clReleaseEvent(ev);
    t.push_back(static_cast<double>(e - b) * 1e-6);
  }
  return summarize(std::move(t)).median;
}

inline std::vector<float> gemm_host(const std::vector<float>& w, const std::vector<float>& x, std::int64_t m,
                                    std::int64_t k, std::int64_t n) {
  std::vector<float> y(static_cast<std::size_t>(m * n), 0.0f);
  for (std::int64_t i = 0; i < m; ++i) {
    float* yr = &y[static_cast<std::size_t>(i * n)];
    for (std::int64_t p = 0; p < k; ++p) {
      const float a = w[static_cast<std::size_t>(i * k + p)];
      if (a == 0.0f) continue;
      const float* xr = &x[static_cast<std::size_t>(p * n)];
      for (std::int64_t j = 0; j < n; ++j) yr[j] += a * xr[j];
    }
  }
  return y;
}

// The best of `candidates` by a short host-timed trial, kept bound to x/y.
template <class Make, class Cfg>
auto pick(Context& ctx, const std::vector<Cfg>& candidates, Make&& make, const Buffer& x, Buffer& y, int trial_reps,
          bool show = false) {
  std::optional<decltype(make(candidates.front()))> best;
  double best_ms = 1e300;
  for (const auto& c : candidates) {
    auto op = make(c);
    op.bind(x, y);
    const double ms = host_time(ctx, op, 3, trial_reps).median;
    if (show) std::printf("    trial %-28s %8.4f ms\n", op.describe().c_str(), ms);
    if (ms < best_ms) {
      best_ms = ms;
      best.emplace(std::move(op));
    }
  }
  return std::move(*best);
}
}  // namespace ocl_detail

// `floor`: the empty-kernel call under each wait (the per-call floor on this device and the
// wait the records use), where wanted.
inline void run_opencl_detailed(const BenchOptions& opt, const OpenclBenchConfig& cfg, std::vector<Record>& out,
                                std::vector<OpenclExtra>& extra, sparseloom::opencl::CompletionTrial* floor = nullptr) {
  using namespace sparseloom::opencl;
  using namespace ocl_detail;
  ContextOptions copts;
  copts.profiling_queue = true;
  auto ctx = Context::open({}, copts);
  const auto& dev = ctx->device();
  const std::string device = dev.label();
  if (cfg.verbose) std::printf("opencl device: %s, %u compute units\n", device.c_str(), dev.compute_units);
  auto trial = ctx->completion_trial();
  trial.chosen = ctx->resolve(Completion::automatic);  // what the records use
  if (floor) *floor = trial;
  {  // the same empty kernel's device time (event profiling): what no kernel goes below
    struct Empty {
      Launch l;
      void enqueue(int q = 0, cl_event* ev = nullptr) const { l.enqueue(*ctx, q, ev); }
      Context* ctx;
    } e{{}, ctx.get()};
    e.l.kernel = ctx->kernel(kEmptyKernel, "sl_empty");
    Buffer dummy(*ctx, 4);
    e.l.set_args(*ctx, dummy);
    e.l.fixed_local = false;
    const double ek = kernel_time(*ctx, e, cfg.kernel_reps);
    if (floor) floor->kernel_ms = ek;
    if (cfg.verbose)
      std::printf("empty kernel per call: wait %.4f ms, busy-poll %.4f ms, finish %.4f ms (kernel %.4f ms); records use %s\n",
                  trial.wait_ms, trial.poll_ms, trial.finish_ms, ek, to_string(trial.chosen).c_str());
  }

  for (const auto& layer : layer_set()) {
    if (!opt.layers.empty() && std::find(opt.layers.begin(), opt.layers.end(), layer.name) == opt.layers.end())
      continue;
    const auto m = layer.m, k = layer.k, n = layer.n;
    std::mt19937 g(static_cast<unsigned>(m * 131 + k * 7 + n));
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> w(static_cast<std::size_t>(m * k)), x(static_cast<std::size_t>(k * n));
    for (auto& v : w) v = u(g);
    for (auto& v : x) v = u(g);
    auto bx = Buffer::upload(*ctx, std::span<const float>(x));
    Buffer by(*ctx, static_cast<std::size_t>(m * n) * 4);
    std::vector<float> y(static_cast<std::size_t>(m * n));

    auto measure = [&](auto& op, const std::string& format, const char* pattern, double sparsity,
                       const std::vector<float>& wref, double dense_ms) {
      const auto t = host_time(*ctx, op, cfg.warmup, cfg.reps);
      const int half = std::max(cfg.reps / 2, 1);
      const double wms = host_time(*ctx, op, 0, half, Completion::wait).median;
      const double pms = host_time(*ctx, op, 0, half, Completion::busy_poll).median;
      const double fms = host_time(*ctx, op, 0, half, Completion::finish).median;
      const double kms = kernel_time(*ctx, op, cfg.kernel_reps);
      by.read(std::span<float>(y));
      const auto ref = gemm_host(wref, x, m, k, n);
      double err = 0;
      for (std::size_t i = 0; i < y.size(); ++i) err = std::max(err, static_cast<double>(std::abs(y[i] - ref[i])));
      Record r;
      r.layer = layer.name;
      r.m = m, r.k = k, r.n = n;
      r.sparsity = sparsity;
      r.format = format;
      r.backend = "opencl";
      r.device = device;
      r.threads = 0;
      r.ours_ms = t.median, r.ours_min_ms = t.min, r.ours_max_ms = t.max;
      r.speedup_vs_dense = dense_ms > 0 ? dense_ms / t.median : 1.0;
      r.gflops = 2.0 * static_cast<double>(m * k * n) / (t.median * 1e6);
      r.max_abs_err = err;
      r.pattern = pattern;
      r.ukernel = op.describe();
      r.reps = cfg.reps;
      out.push_back(r);
      extra.push_back({kms, op.describe(), op.weight_bytes(), cfg.reps, wms, pms, fms});
      if (cfg.verbose)
        std::printf("%-26s %-7s s=%.2f  %8.4f ms (wait %.4f poll %.4f finish %.4f, kernel %8.4f ms)  x%.2f vs opencl dense  "
                    "err %.1e  [%s]\n",
                    layer.name.c_str(), format.c_str(), sparsity, t.median, wms, pms, fms, kms, r.speedup_vs_dense, err,
                    op.describe().c_str());
      return t.median;
    };

    const auto gemm_cands = MatMul::gemm_candidates(*ctx, opt.quick, m, k, n);
    ctx->prebuild(candidate_programs(gemm_cands, {}, {}, n));
    auto dense = pick(*ctx, gemm_cands, [&](GemmConfig c) { return DenseGemm(*ctx, w, m, k, n, {}, c); }, bx, by,
                      cfg.trial_reps, cfg.show_trials);
    const double dense_ms = measure(dense, "dense", "dense", 0.0, w, 0.0);

    const auto spmm_cands = spmm_candidates(dev, n, opt.quick);
    const auto bsr_cands = spmm_candidates(dev, n, opt.quick, 4);
    ctx->prebuild(candidate_programs({}, spmm_cands, bsr_cands, n));  // several at once, as MatMul::create
    for (double s : opt.sparsities) {
      // Unstructured: exactly round(s * M * K) zeros at random positions.
      std::vector<float> ws = w;
      std::vector<std::size_t> idx(ws.size());
      for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::shuffle(idx.begin(), idx.end(), g);
      for (std::size_t i = 0; i < static_cast<std::size_t>(std::llround(s * static_cast<double>(ws.size()))); ++i)
        ws[idx[i]] = 0.0f;
      const auto csr = CsrMatrix::from_dense(ws, m, k);
      auto sp = pick(*ctx, spmm_cands, [&](SpmmConfig c) { return CsrSpmm(*ctx, csr, n, {}, c); }, bx, by,
                     cfg.trial_reps, cfg.show_trials);
      measure(sp, "csr", "random", s, ws, dense_ms);

      // 4x1 blocks: a fraction s of the blocks zeroed.
      std::vector<float> wb = w;
      std::bernoulli_distribution drop(s);
      for (std::int64_t b = 0; b < (m + 3) / 4; ++b)
        for (std::int64_t c = 0; c < k; ++c)
          if (drop(g))
            for (std::int64_t r = b * 4; r < std::min(m, b * 4 + 4); ++r) wb[static_cast<std::size_t>(r * k + c)] = 0;
      const auto bsr = Bsr4x1Matrix::from_dense(wb, m, k);
      auto bp = pick(*ctx, bsr_cands, [&](SpmmConfig c) { return Bsr4x1Spmm(*ctx, bsr, n, {}, c); }, bx, by,
                     cfg.trial_reps, cfg.show_trials);
      measure(bp, "bsr4x1", "block4x1", s, wb, dense_ms);
    }
    if (cfg.after_layer) cfg.after_layer();
  }
}

inline void run_opencl(const BenchOptions& opt, std::vector<Record>& out) {
  OpenclBenchConfig cfg;
  if (opt.quick) {
    cfg.warmup = 3;
    cfg.reps = 20;
    cfg.kernel_reps = 10;
    cfg.trial_reps = 5;
  }
  std::vector<OpenclExtra> extra;
  run_opencl_detailed(opt, cfg, out, extra);
}

}  // namespace sparseloom::bench
