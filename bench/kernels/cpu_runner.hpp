#pragma once
// The CPU runner: for each layer x weight configuration x thread count, our kernel (format
// fixed by the configuration, microkernel picked by the prepare-time trial) against oneDNN
// dense f32 and the library peers, all timed interleaved in the same run.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "peers.hpp"
#include "timing.hpp"
#include "sparseloom/backends/cpu/format_choice.hpp"

namespace sparseloom::bench {

// One weight configuration of a layer.
struct WeightConfig {
  std::string pattern;  // random | block4x1 | 2:4
  double sparsity;
  cpu::Format format;   // csr | bsr4x1 | sparse24 | int8_1x4
};

inline std::vector<WeightConfig> weight_configs(const BenchOptions& o) {
  std::vector<WeightConfig> c;
  for (double s : o.sparsities) c.push_back({"random", s, cpu::Format::csr});
  for (double s : {0.7, 0.9}) c.push_back({"block4x1", s, cpu::Format::bsr4x1});
  c.push_back({"2:4", 0.5, cpu::Format::sparse24});
  for (double s : (o.quick ? std::vector<double>{0.9} : std::vector<double>{0.7, 0.9, 0.95}))
    c.push_back({"random", s, cpu::Format::int8_1x4});
  return c;
}

// Dense row-major W (m x k) with the configuration's zero pattern (magnitude-pruning-like
// values: nonzeros away from 0).
inline std::vector<float> make_weights(const WeightConfig& c, std::int64_t m, std::int64_t k, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.05f, 1.f), u(0.f, 1.f);
  auto draw = [&] { return (rng() & 1) ? mag(rng) : -mag(rng); };
  std::vector<float> w(static_cast<std::size_t>(m * k), 0.f);
  if (c.pattern == "random") {
    for (auto& v : w) v = u(rng) >= c.sparsity ? draw() : 0.f;
  } else if (c.pattern == "block4x1") {
    for (std::int64_t i0 = 0; i0 < m; i0 += 4)
      for (std::int64_t j = 0; j < k; ++j)
        if (u(rng) >= c.sparsity)
          for (std::int64_t i = i0; i < std::min(i0 + 4, m); ++i) w[static_cast<std::size_t>(i * k + j)] = draw();
  } else {  // 2:4: two distinct positions of every 4
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t g = 0; g < k; g += 4) {
        const int a = static_cast<int>(rng() % 4);
        const int b = (a + 1 + static_cast<int>(rng() % 3)) % 4;
        for (int p : {a, b})
          if (g + p < k) w[static_cast<std::size_t>(i * k + g + p)] = draw();
      }
  }
  return w;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, static_cast<double>(std::fabs(a[i] - b[i])));
  return e;
}

inline std::vector<LayerShape> selected_layers(const BenchOptions& o) {
  std::vector<LayerShape> out;
  std::vector<std::string> names = o.layers;
  if (names.empty() && o.quick)
    names = {"resnet50.M256K2304N196", "mobilenetv2.M320K960N49", "bert.M768K768N128"};
  for (const auto& l : layer_set())
    if (names.empty() || std::find(names.begin(), names.end(), l.name) != names.end()) out.push_back(l);
  return out;
}

inline void run_cpu(const BenchOptions& o, const std::string& device, std::vector<Record>& records) {
  const cpu::Isa isa = o.isa_cap == "avx2" ? cpu::Isa::avx2 : cpu::cpu_features().best_isa();
  const int max_threads = *std::max_element(o.threads.begin(), o.threads.end());
  cpu::ThreadPool pool(max_threads);
  for (const auto& layer : selected_layers(o)) {
    const std::int64_t m = layer.m, k = layer.k, n = layer.n;
    std::vector<float> x(static_cast<std::size_t>(k * n));
    std::vector<std::uint8_t> xq(x.size());
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (auto& v : x) v = d(rng);
    for (auto& v : xq) v = static_cast<std::uint8_t>(rng());
    std::vector<float> y_ours(static_cast<std::size_t>(m * n)), y_dense(y_ours.size()), y_peer(y_ours.size());
    std::uint32_t seed = 100;
    for (const auto& cfg : weight_configs(o)) {
      const auto w = make_weights(cfg, m, k, ++seed);
      cpu::DenseF32 dense(w.data(), m, k, n);
      std::unique_ptr<EigenSparsePeer> eigen;
#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
      std::unique_ptr<LibxsmmSpmdmPeer> xsmm;
#endif
#if defined(SPARSELOOM_BENCH_HAS_MKL)
      std::unique_ptr<MklSparsePeer> mkl;
#endif
      const bool int8 = cfg.format == cpu::Format::int8_1x4;
      cpu::QuantizedWeights qw;
      std::unique_ptr<cpu::DenseQu8> dense_q;
      const cpu::ActivationQuant aq{0.01f, 128};
      if (int8) {
        qw = cpu::quantize_rows_s8(w.data(), m, k);
        if (o.peers) dense_q = std::make_unique<cpu::DenseQu8>(qw.q.data(), qw.scale.data(), m, k, n, aq);
      } else if (o.peers) {
        eigen = std::make_unique<EigenSparsePeer>(w.data(), m, k, n);
#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
        xsmm = std::make_unique<LibxsmmSpmdmPeer>(w.data(), m, k, n, max_threads);
#endif
#if defined(SPARSELOOM_BENCH_HAS_MKL)
        mkl = std::make_unique<MklSparsePeer>(w.data(), m, k, n, max_threads);
#endif
      }
      for (int t : o.threads) {
        cpu::ChoiceOptions co;
        co.threads = t;
        co.isa = isa;
        co.allow_dense = false;
        co.formats = {cfg.format};
        co.budget_ms = o.quick ? 2 : 5;
        Record r;
        r.layer = layer.name;
        r.m = m, r.k = k, r.n = n;
        r.sparsity = cfg.sparsity;
        r.format = cpu::to_string(cfg.format);
        r.pattern = cfg.pattern;
        r.backend = "cpu";
        r.device = device;
        r.threads = t;
        r.isa_cap = o.isa_cap;
        std::vector<std::function<void()>> fns;
        std::vector<std::string> peer_names;
        std::function<void()> ours_fn;
        std::unique_ptr<cpu::PreparedMatmul> ours;
        std::unique_ptr<cpu::PreparedMatmulQu8> ours_q;
        if (int8) {
          ours_q = std::make_unique<cpu::PreparedMatmulQu8>(cpu::prepare_matmul_qu8(qw.q.data(), qw.scale.data(), m, k, n, aq, {}, pool, co));
          r.ukernel = ours_q->kernel();
          if (o.verbose)
            for (const auto& c : ours_q->candidates()) fmt::print("    candidate {:<52} {:8.4f} ms (min)\n", c.kernel, c.ms);
          fns.push_back([&] { ours_q->run(xq.data(), y_ours.data(), pool); });
        } else {
          ours = std::make_unique<cpu::PreparedMatmul>(cpu::prepare_matmul(w.data(), m, k, n, {}, pool, co));
          r.ukernel = ours->kernel();
          if (o.verbose)
            for (const auto& c : ours->candidates()) fmt::print("    candidate {:<52} {:8.4f} ms (min)\n", c.kernel, c.ms);
          fns.push_back([&] { ours->run(x.data(), y_ours.data(), pool); });
        }
        fns.push_back([&] { dense.run(x.data(), y_dense.data(), t); });
        if (dense_q) {
          fns.push_back([&] { dense_q->run(xq.data(), y_peer.data(), t); });
          peer_names.push_back("onednn-int8-dense");
        }
        if (eigen) {
          fns.push_back([&] { eigen->run(x.data(), y_peer.data(), t); });
          peer_names.push_back("eigen-sparse");
        }
#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
        if (xsmm) {
          fns.push_back([&] { xsmm->run(x.data(), y_peer.data(), t); });
          peer_names.push_back("libxsmm-spmdm");
        }
#endif
#if defined(SPARSELOOM_BENCH_HAS_MKL)
        if (mkl) {
          fns.push_back([&] { mkl->run(x.data(), y_peer.data(), t); });
          peer_names.push_back("mkl-sparse");
        }
#endif
        // Correctness of ours and of each peer, against oneDNN dense on the same W (f32) or
        // oneDNN u8 x s8 dense (INT8).
        dense.run(x.data(), y_dense.data(), t);
        fns[0]();
        std::vector<bool> peer_ok(peer_names.size(), true);
        double scale = 0;
        for (float v : y_dense) scale = std::max(scale, static_cast<double>(std::fabs(v)));
        if (int8) {
          if (dense_q) {
            fns[2]();
            r.max_abs_err = max_abs_diff(y_ours, y_peer);
          }
        } else {
          r.max_abs_err = max_abs_diff(y_ours, y_dense);
          for (std::size_t p = 0; p < peer_names.size(); ++p) {
            std::fill(y_peer.begin(), y_peer.end(), 0.f);
            fns[2 + p]();
            peer_ok[p] = max_abs_diff(y_peer, y_dense) <= 1e-4 * scale + 1e-4;
            if (!peer_ok[p]) fmt::print("  note: {} gives wrong results on {} ({} {}), left out\n", peer_names[p], layer.name, cfg.pattern, cfg.sparsity);
          }
        }
        // Enough repetitions for the slowest contender to fill the budget, within [5, 40].
        const double dense_ms = time_interleaved({fns[1]}, 1)[0].median_ms;
        const int reps = std::clamp(static_cast<int>(o.budget_ms / std::max(dense_ms, 1e-3)), o.quick ? 5 : 9, 40);
        wait_for_quiet(0.3, o.quiet_wait_ms);
        const auto probe0 = LoadProbe::now();
        const auto tm = time_interleaved(fns, reps);
        r.foreign_load = LoadProbe::foreign_cores(probe0, LoadProbe::now());
        r.reps = reps;
        r.ours_ms = tm[0].median_ms;
        r.ours_min_ms = tm[0].min_ms;
        r.ours_max_ms = tm[0].max_ms;
        r.onednn_dense_ms = tm[1].median_ms;
        r.onednn_dense_min_ms = tm[1].min_ms;
        r.onednn_dense_max_ms = tm[1].max_ms;
        r.speedup_vs_dense = r.onednn_dense_ms / r.ours_ms;
        for (std::size_t p = 0; p < peer_names.size(); ++p)
          if (peer_ok[p]) r.peer_ms[peer_names[p]] = tm[2 + p].median_ms;
        for (std::size_t p = 0; p < peer_names.size(); ++p)
          if (peer_ok[p] && (r.best_peer.empty() || tm[2 + p].median_ms < r.best_peer_ms)) {
            r.best_peer = peer_names[p];
            r.best_peer_ms = tm[2 + p].median_ms;
          }
        r.gflops = 2.0 * static_cast<double>(m * k * n) / (r.ours_ms * 1e6);
        fmt::print("{:<26} {:<9} {:>4.0f}% {:<9} t={} ours {:8.4f} ms  dense {:8.4f} ms  x{:5.2f}  {:<18} {:8.4f} ms  err {:.1e}  load {:.2f}  {}\n",
                   layer.name, r.pattern, 100 * r.sparsity, r.format, t, r.ours_ms, r.onednn_dense_ms,
                   r.speedup_vs_dense, r.best_peer.empty() ? "-" : r.best_peer, r.best_peer_ms, r.max_abs_err,
                   r.foreign_load, r.ukernel);
        std::fflush(stdout);
        records.push_back(r);
      }
    }
  }
}

}  // namespace sparseloom::bench
