#pragma once
// Runs stitched variants of one task on one backend. Every (block, variant) is compiled once;
// a stitch only chooses among them, so stitches share packed weights. Stitch-time repair
// (STITCHING-NOTES; DESIGN.md "Resolutions") is held per stitch:
//  - bn_affine: a per-channel scale/shift on the first BN-folded conv output of the block after
//    each switch, from calibration statistics (native vs under the stitch), applied as that
//    layer's epilogue through RunOptions::affine: weights untouched, a few KB per stitch;
//  - residual_map: the zoo's least-squares adapter of (block i-1, its variant) applied to the
//    cut tensor entering block i, fitted once per (block, variant) and shared by all stitches.
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "sparseloom/concepts/backend.hpp"
#include "sparseloom/core/parallel.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

namespace sparseloom::stitch {

struct StitchRepair {
  std::vector<AffineMap> affine;                    // per block (empty map: none)
  std::vector<const zoo::ResidualMap*> pre_map;     // per block, applied to its input
  double seconds = 0;                               // time to compute it
  std::size_t bytes = 0;                            // per-stitch repair data (affine vectors)
  std::size_t shared_adapter_bytes = 0;             // adapters it uses (held once per adapter)
};

// Per-channel mean and population std of an N x C x ... tensor stream, accumulated in double.
class ChannelStats {
 public:
  void add(const Tensor& t_in) {
    const Tensor t = t_in.contiguous();
    const auto c = t.dim(1);
    if (sum_.empty()) { sum_.assign(c, 0); sq_.assign(c, 0); }
    check(static_cast<std::int64_t>(sum_.size()) == c, ErrorCode::shape, "ChannelStats", "channel count changed");
    std::int64_t inner = 1;
    for (std::size_t i = 2; i < t.rank(); ++i) inner *= t.dim(i);
    const float* p = t.data<float>();
    for (std::int64_t n = 0; n < t.dim(0); ++n)
      for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t k = 0; k < inner; ++k) {
          const double v = p[(n * c + ch) * inner + k];
          sum_[ch] += v;
          sq_[ch] += v * v;
        }
    count_ += t.dim(0) * inner;
  }
  void merge(const ChannelStats& o) {
    if (sum_.empty()) { *this = o; return; }
    for (std::size_t i = 0; i < sum_.size(); ++i) { sum_[i] += o.sum_[i]; sq_[i] += o.sq_[i]; }
    count_ += o.count_;
  }
  double mean(std::size_t c) const { return sum_[c] / static_cast<double>(count_); }
  double stddev(std::size_t c) const { return std::sqrt(std::max(0.0, sq_[c] / static_cast<double>(count_) - mean(c) * mean(c))); }
  std::size_t channels() const { return sum_.size(); }

 private:
  std::vector<double> sum_, sq_;
  std::int64_t count_ = 0;
};

namespace detail {
// 16 floats as a GCC/Clang vector: one AVX-512 register, two AVX or four SSE ones, whatever
// the target has.
typedef float f32x16 __attribute__((vector_size(64)));

// y = x w + b for tokens [t, t + 4) when d % 16 == 0: a 4 x 16 tile of y stays in registers
// across k. The row-at-a-time loop reloaded and stored its output row at every k: 3.6 us for
// fmnist_vit's 16 x 64 cut, as much as a block's sparse savings, paid on every switch; this
// is 0.9 us. Each output still sums b, then k = 0..d-1 in order: the same result.
inline void residual_map_4rows(const float* x, const float* w, const float* b, float* y, std::int64_t d, std::int64_t t) {
  for (std::int64_t j = 0; j < d; j += 16) {
    f32x16 bj;
    std::memcpy(&bj, b + j, sizeof bj);
    f32x16 a0 = bj, a1 = bj, a2 = bj, a3 = bj;
    for (std::int64_t k = 0; k < d; ++k) {
      f32x16 wk;
      std::memcpy(&wk, w + k * d + j, sizeof wk);
      a0 += x[(t + 0) * d + k] * wk;
      a1 += x[(t + 1) * d + k] * wk;
      a2 += x[(t + 2) * d + k] * wk;
      a3 += x[(t + 3) * d + k] * wk;
    }
    std::memcpy(y + (t + 0) * d + j, &a0, sizeof a0);
    std::memcpy(y + (t + 1) * d + j, &a1, sizeof a1);
    std::memcpy(y + (t + 2) * d + j, &a2, sizeof a2);
    std::memcpy(y + (t + 3) * d + j, &a3, sizeof a3);
  }
}
}  // namespace detail

// The transformer's stitch adapter (zoo residual_map): y = x W + b per token of the cut tensor.
inline Tensor apply_residual_map(const Tensor& x_in, const zoo::ResidualMap& m) {
  const Tensor x = x_in.contiguous();
  const auto d = m.w.dim(0);
  check(x.shape().back() == d, ErrorCode::shape, "residual_map", "cut tensor width differs from the adapter's");
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float *px = x.data<float>(), *w = m.w.data<float>(), *b = m.b.data<float>();
  float* py = y.data<float>();
  const std::int64_t tokens = x.numel() / d;
  std::int64_t t = 0;
  if (d % 16 == 0)
    for (; t + 4 <= tokens; t += 4) detail::residual_map_4rows(px, w, b, py, d, t);
  for (; t < tokens; ++t) {
    for (std::int64_t j = 0; j < d; ++j) py[t * d + j] = b[j];
    for (std::int64_t k = 0; k < d; ++k) {
      const float a = px[t * d + k];
      for (std::int64_t j = 0; j < d; ++j) py[t * d + j] += a * w[k * d + j];
    }
  }
  return y;
}

// What a stitch's repair does around block b: maps the block's input (residual_map) in place
// and returns the run options carrying its epilogue affine (bn_affine). One place for every
// runner of stitched blocks.
inline RunOptions repair_block(const StitchRepair* r, int b, Tensor& x) {
  RunOptions ro;
  if (!r) return ro;
  if (r->pre_map[b]) x = apply_residual_map(x, *r->pre_map[b]);
  if (!r->affine[b].empty()) ro.affine = &r->affine[b];
  return ro;
}

// The last block of s whose repair measures statistics on the calibration set (a switch into
// a bn_affine block), or -1: residual adapters and blocks without a repair need none.
inline int last_calibrated_block(const zoo::Manifest& m, const StitchedVariant& s) {
  int last = -1;
  for (std::size_t b = 1; b < s.choice.size() && b < m.blocks.size(); ++b)
    if (s.choice[b] != s.choice[b - 1] && m.blocks[b].repair.kind == zoo::RepairKind::bn_affine) last = static_cast<int>(b);
  return last;
}

template <Backend B>
class StitchedModel {
 public:
  using Exe = typename B::Executable;

  StitchedModel(const zoo::TaskZoo& zoo, const B& backend, CompileOptions opt = {}) : zoo_(&zoo) {
    exes_.resize(zoo.blocks.size());
    for (std::size_t b = 0; b < zoo.blocks.size(); ++b)
      for (const auto& g : zoo.blocks[b]) exes_[b].push_back(backend.compile(g, opt));
  }

  const zoo::TaskZoo& zoo() const { return *zoo_; }
  const Exe& executable(int block, int variant) const { return exes_.at(block).at(variant); }

  // One request through the stitch (input x in the model's input shape).
  Tensor run(const StitchedVariant& s, const StitchRepair* r, Tensor x) const {
    check(s.choice.size() == exes_.size(), ErrorCode::invalid_argument, zoo_->manifest.task,
          "stitch has " + std::to_string(s.choice.size()) + " blocks, the task " + std::to_string(exes_.size()));
    for (std::size_t b = 0; b < exes_.size(); ++b) x = run_block(s, r, static_cast<int>(b), std::move(x));
    return x;
  }

  Tensor run_block(const StitchedVariant& s, const StitchRepair* r, int b, Tensor x) const {
    const int v = s.choice[b];
    check(v >= 0 && v < static_cast<int>(exes_[b].size()), ErrorCode::invalid_argument, zoo_->manifest.task,
          "variant index " + std::to_string(v) + " out of range");
    const RunOptions ro = repair_block(r, b, x);
    return std::move(exes_[b][v].run(std::span<const Tensor>(&x, 1), ro).front());
  }

  // Stitch-time repair from the committed calibration set (its first `samples` images; all
  // when samples <= 0); no gradients.
  StitchRepair repair(const StitchedVariant& s, int threads = 1, std::int64_t samples = 0) const {
    const auto t0 = std::chrono::steady_clock::now();
    const auto& m = zoo_->manifest;
    const int nb = static_cast<int>(exes_.size());
    StitchRepair r;
    r.affine.resize(nb);
    r.pre_map.assign(nb, nullptr);
    const int base = zoo_->base();
    const auto n = samples > 0 ? std::min(samples, zoo_->calib_x.dim(0)) : zoo_->calib_x.dim(0);
    // Calibration activations are needed only up to the last block that measures statistics:
    // running the rest of the chain on the calibration set cost a large model seconds per new
    // stitch for nothing.
    const int last_stats = last_calibrated_block(m, s);
    std::vector<Tensor> acts(last_stats < 0 ? 0 : static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < acts.size(); ++i) acts[i] = zoo_->input(zoo_->calib_x, static_cast<std::int64_t>(i));
    for (int b = 0; b < nb; ++b) {
      const bool sw = b > 0 && s.choice[b] != s.choice[b - 1];
      const auto& spec = m.blocks[b].repair;
      if (sw && spec.kind == zoo::RepairKind::residual_map && s.choice[b - 1] != base) {
        auto it = zoo_->residual_maps.find({b, s.choice[b - 1]});
        check(it != zoo_->residual_maps.end(), ErrorCode::parse, m.task, "missing residual adapter for block " + std::to_string(b));
        r.pre_map[b] = &it->second;
        r.shared_adapter_bytes += it->second.w.nbytes() + it->second.b.nbytes();
      }
      if (sw && spec.kind == zoo::RepairKind::bn_affine) {
        const ChannelStats nat = native_stats(b, s.choice[b], threads, n);
        const ChannelStats st = observe(b, s.choice[b], acts, spec.tensor, threads);
        ChannelAffine a;
        for (std::size_t c = 0; c < nat.channels(); ++c) {
          const double f = nat.stddev(c) / (st.stddev(c) + 1e-5);
          a.scale.push_back(static_cast<float>(f));
          a.shift.push_back(static_cast<float>(nat.mean(c) - st.mean(c) * f));
        }
        r.bytes += 2 * a.scale.size() * sizeof(float);
        r.affine[b][spec.tensor] = std::move(a);
      }
      if (b < last_stats) {
        parallel_for(threads, n, [&](std::int64_t i0, std::int64_t i1) {
          for (auto i = i0; i < i1; ++i) acts[i] = run_block(s, &r, b, acts[i]);
        });
      }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  // Top-1 accuracy (%) on the first `limit` committed test samples (all when limit < 0).
  double accuracy_pct(const StitchedVariant& s, const StitchRepair* r, int threads = 1, std::int64_t limit = -1) const {
    const auto n = limit < 0 ? zoo_->test_x.dim(0) : std::min(limit, zoo_->test_x.dim(0));
    std::vector<int> correct(static_cast<std::size_t>(n), 0);
    parallel_for(threads, n, [&](std::int64_t i0, std::int64_t i1) {
      for (auto i = i0; i < i1; ++i) {
        const Tensor y = run(s, r, zoo_->input(zoo_->test_x, i)).contiguous();
        const float* p = y.data<float>();
        std::int64_t best = 0;
        const auto classes = y.numel();
        for (std::int64_t k = 1; k < classes; ++k)
          if (p[k] > p[best]) best = k;
        correct[i] = best == zoo_->label(i);
      }
    });
    std::int64_t c = 0;
    for (int v : correct) c += v;
    return n ? 100.0 * static_cast<double>(c) / static_cast<double>(n) : 0.0;
  }

  StitchedVariant plain(int variant) const { return {std::vector<int>(exes_.size(), variant)}; }

 private:
  // Statistics of `tensor` inside block b of variant v, when v runs natively on the calib set.
  ChannelStats native_stats(int b, int v, int threads, std::int64_t n) const {
    std::lock_guard lock(mu_);
    auto key = std::make_tuple(b, v, n);
    if (auto it = native_.find(key); it != native_.end()) return it->second;
    std::vector<Tensor> acts(static_cast<std::size_t>(n));
    const StitchedVariant native = plain(v);
    parallel_for(threads, n, [&](std::int64_t i0, std::int64_t i1) {
      for (auto i = i0; i < i1; ++i) {
        Tensor x = zoo_->input(zoo_->calib_x, i);
        for (int k = 0; k < b; ++k) x = run_block(native, nullptr, k, std::move(x));
        acts[i] = std::move(x);
      }
    });
    return native_[key] = observe(b, v, acts, zoo_->manifest.blocks[b].repair.tensor, threads);
  }

  ChannelStats observe(int b, int v, const std::vector<Tensor>& acts, const std::string& tensor, int threads) const {
    const auto n = static_cast<std::int64_t>(acts.size());
    const int t = std::max(1, threads);
    std::vector<ChannelStats> part(static_cast<std::size_t>(t));
    std::vector<std::int64_t> seen(static_cast<std::size_t>(t), 0);
    const std::int64_t chunk = (n + t - 1) / t;
    parallel_for(t, t, [&](std::int64_t p0, std::int64_t p1) {
      for (auto p = p0; p < p1; ++p) {
        RunOptions ro;
        ro.observe = [&](const std::string& name, const Tensor& x) {
          if (name == tensor) { part[p].add(x); ++seen[p]; }
        };
        for (auto i = p * chunk; i < std::min(n, (p + 1) * chunk); ++i)
          exes_[b][v].run(std::span<const Tensor>(&acts[i], 1), ro);
      }
    });
    ChannelStats all;
    std::int64_t total = 0;
    for (int p = 0; p < t; ++p) { all.merge(part[p]); total += seen[p]; }
    check(total == n, ErrorCode::parse, zoo_->manifest.task,
          "repair tensor '" + tensor + "' is not produced by block " + std::to_string(b));
    return all;
  }

  const zoo::TaskZoo* zoo_;
  std::vector<std::vector<Exe>> exes_;
  mutable std::mutex mu_;
  mutable std::map<std::tuple<int, int, std::int64_t>, ChannelStats> native_;
};

}  // namespace sparseloom::stitch
