#pragma once
// Dense matmuls through oneDNN: the fallback format of every layer and the baseline every
// sparse kernel is measured against. A primitive is created once per shape with W copied in
// (or reordered once into oneDNN's blocked layout), and run many times.
//
// f32: Y = W * X with W as oneDNN's *source* operand and X as its "weights". oneDNN 2.6 has no
// fast kernel for the transposed problem Y^T = X^T W^T with W pre-packed (it falls to a
// reference kernel, ~800x slower: MACHINE-NOTES), so W stays the source.
// INT8: oneDNN needs s8 weights and u8/s8 sources, so u8 X must be the source: Y^T = X^T W^T,
// W^T reordered once into oneDNN's layout (see DenseQu8).
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#if __has_include(<omp.h>)
#include <omp.h>
#define SPARSELOOM_CPU_HAS_OMP 1
#endif

#include "sparseloom/backends/cpu/epilogue.hpp"
#include "sparseloom/backends/cpu/spmm.hpp"

namespace sparseloom::cpu {

// The process-wide oneDNN CPU engine.
inline dnnl::engine& onednn_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// oneDNN (OpenMP runtime) uses the calling thread's OpenMP thread count.
inline void onednn_set_threads(int threads) {
#if defined(SPARSELOOM_CPU_HAS_OMP)
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

// Caps oneDNN's ISA (e.g. "avx2" to resemble an edge SoC's CPU). Must run before the first
// primitive is created; returns false when oneDNN refused (too late or unknown name).
inline bool onednn_cap_isa(const std::string& isa) {
  static const std::unordered_map<std::string, dnnl::cpu_isa> names = {
      {"sse41", dnnl::cpu_isa::sse41}, {"avx", dnnl::cpu_isa::avx},
      {"avx2", dnnl::cpu_isa::avx2}, {"avx512", dnnl::cpu_isa::avx512_core},
      {"avx512_core_vnni", dnnl::cpu_isa::avx512_core_vnni}, {"all", dnnl::cpu_isa::all}};
  auto it = names.find(isa);
  if (it == names.end()) return false;
  try {
    return dnnl::set_max_cpu_isa(it->second) == dnnl::status::success;
  } catch (const dnnl::error&) {
    return false;
  }
}

namespace detail {
inline void append_activation(dnnl::post_ops& po, const Epilogue& e) {
  if (e.act == Activation::relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  if (e.act == Activation::clip) po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, e.clip_lo, e.clip_hi);
}
}  // namespace detail

// Dense f32 Y (m x n) = epilogue(W (m x k) * X (k x n)), all row-major.
class DenseF32 {
 public:
  DenseF32(const float* w, std::int64_t m, std::int64_t k, std::int64_t n, const Epilogue& epilogue = {})
      : m_(m), k_(k), n_(n), w_(w, w + m * k), epi_(epilogue, m) {
    using tag = dnnl::memory::format_tag;
    using dt = dnnl::memory::data_type;
    auto& eng = onednn_engine();
    src_md_ = dnnl::memory::desc({m, k}, dt::f32, tag::ab);
    wei_md_ = dnnl::memory::desc({k, n}, dt::f32, tag::ab);
    dst_md_ = dnnl::memory::desc({m, n}, dt::f32, tag::ab);
    col_md_ = dnnl::memory::desc({m, 1}, dt::f32, tag::ab);
    // Per-row scale/shift as binary post-ops broadcast along N; kept only when oneDNN runs
    // them in its optimised kernel, else the epilogue is our own pass over Y.
    dnnl::post_ops po;
    if (!epilogue.scale.empty()) po.append_binary(dnnl::algorithm::binary_mul, col_md_), has_mul_ = true;
    if (!epilogue.shift.empty()) po.append_binary(dnnl::algorithm::binary_add, col_md_), has_add_ = true;
    detail::append_activation(po, epilogue);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    try {
      pd_ = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md_, wei_md_, dst_md_), attr, eng);
      if (std::string(pd_.impl_info_str()).find("ref") != std::string::npos) throw dnnl::error(dnnl_unimplemented, "ref");
    } catch (const dnnl::error&) {
      has_mul_ = has_add_ = false;
      manual_epilogue_ = true;
      pd_ = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md_, wei_md_, dst_md_), eng);
    }
    prim_ = dnnl::matmul(pd_);
    // A plain primitive for per-call epilogues whose activation differs from the packed one.
    if (!manual_epilogue_ && (has_mul_ || has_add_ || epilogue.act != Activation::none)) {
      plain_pd_ = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md_, wei_md_, dst_md_), eng);
      plain_ = dnnl::matmul(plain_pd_);
    }
  }

  // Runs on `threads` OpenMP threads of the calling thread. `epi`, when given, replaces the
  // packed epilogue for this call: fused when the packed primitive has both per-row post-ops
  // and the same clamp, else a plain matmul and our own pass over Y.
  void run(const float* x, float* y, int threads, const EpilogueArrays* epi = nullptr) const {
    if (epi && !(has_mul_ && has_add_ && epi->lo == epi_.lo && epi->hi == epi_.hi)) return run_override(x, y, threads, *epi);
    const EpilogueArrays& e = epi ? *epi : epi_;
    auto& eng = onednn_engine();
    onednn_set_threads(threads);
    dnnl::memory src(src_md_, eng, const_cast<float*>(w_.data()));
    dnnl::memory wei(wei_md_, eng, const_cast<float*>(x));
    dnnl::memory dst(dst_md_, eng, y);
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    int idx = 0;
    if (has_mul_) args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx++) | DNNL_ARG_SRC_1,
                               dnnl::memory(col_md_, eng, const_cast<float*>(e.scale.data())));
    if (has_add_) args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx++) | DNNL_ARG_SRC_1,
                               dnnl::memory(col_md_, eng, const_cast<float*>(e.shift.data())));
    thread_local dnnl::stream strm(eng);
    prim_.execute(strm, args);
    strm.wait();
    if (manual_epilogue_) manual(y, e);
  }

  // oneDNN's implementation name, e.g. "brg:avx512_core".
  std::string impl() const { return pd_.impl_info_str(); }
  bool fused_epilogue() const noexcept { return !manual_epilogue_; }

 private:
  void manual(float* y, const EpilogueArrays& e) const {
    for (std::int64_t r = 0; r < m_; ++r) {
      const float s = e.scale[static_cast<std::size_t>(r)], b = e.shift[static_cast<std::size_t>(r)];
      float* yr = y + r * n_;
      for (std::int64_t c = 0; c < n_; ++c) yr[c] = std::min(std::max(s * yr[c] + b, e.lo), e.hi);
    }
  }
  void run_override(const float* x, float* y, int threads, const EpilogueArrays& e) const {
    auto& eng = onednn_engine();
    onednn_set_threads(threads);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(src_md_, eng, const_cast<float*>(w_.data()))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(wei_md_, eng, const_cast<float*>(x))},
        {DNNL_ARG_DST, dnnl::memory(dst_md_, eng, y)}};
    thread_local dnnl::stream strm(eng);
    (manual_epilogue_ ? prim_ : plain_).execute(strm, args);
    strm.wait();
    manual(y, e);
  }

 public:
  std::size_t weight_bytes() const noexcept { return w_.size() * sizeof(float); }
  std::int64_t m() const noexcept { return m_; }
  std::int64_t k() const noexcept { return k_; }
  std::int64_t n() const noexcept { return n_; }

 private:
  std::int64_t m_, k_, n_;
  std::vector<float> w_;
  EpilogueArrays epi_;
  dnnl::memory::desc src_md_, wei_md_, dst_md_, col_md_;
  dnnl::matmul::primitive_desc pd_, plain_pd_;
  dnnl::matmul prim_, plain_;
  bool has_mul_ = false, has_add_ = false, manual_epilogue_ = false;
};

// Dense INT8: Y (m x n, f32) = epilogue(dequant(W_s8 (m x k, per-row scale) * X_u8 (k x n))).
// oneDNN runs Y^T (n x m) = X^T (n x k) * W^T with contiguous X^T and Y^T (with transposed
// strides it falls to a reference kernel, ~1000x slower). run_nk() takes that native layout
// (what an INT8 oneDNN pipeline keeps between layers); run() transposes around it.
class DenseQu8 {
 public:
  DenseQu8(const std::int8_t* q, const float* w_scale, std::int64_t m, std::int64_t k, std::int64_t n,
           ActivationQuant xq, const Epilogue& epilogue = {})
      : m_(m), k_(k), n_(n), epi_(epilogue, m) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    auto& eng = onednn_engine();
    src_md_ = dnnl::memory::desc({n, k}, dt::u8, tag::ab);
    dst_md_ = dnnl::memory::desc({n, m}, dt::f32, tag::ab);
    const dnnl::memory::desc user_w({k, m}, dt::s8, dnnl::memory::dims{1, k});  // W^T over W
    const dnnl::memory::desc any_w({k, m}, dt::s8, tag::any);
    row_md_ = dnnl::memory::desc({1, m}, dt::f32, tag::ab);
    std::vector<float> scales(static_cast<std::size_t>(m));
    for (std::int64_t i = 0; i < m; ++i)
      scales[static_cast<std::size_t>(i)] = epi_.scale[static_cast<std::size_t>(i)] * w_scale[i] * xq.scale;
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, scales);
    if (xq.zero_point != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {xq.zero_point});
    dnnl::post_ops po;
    if (!epilogue.shift.empty()) po.append_binary(dnnl::algorithm::binary_add, row_md_), has_add_ = true;
    detail::append_activation(po, epilogue);
    attr.set_post_ops(po);
    pd_ = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md_, any_w, dst_md_), attr, eng);
    prim_ = dnnl::matmul(pd_);
    wei_ = dnnl::memory(pd_.weights_desc(), eng);
    dnnl::memory user(user_w, eng, const_cast<std::int8_t*>(q));
    dnnl::stream strm(eng);
    dnnl::reorder(user, wei_).execute(strm, user, wei_);
    strm.wait();
  }

  // Native layout: xt = X^T (n x k, u8), yt = Y^T (n x m, f32), both row-major.
  void run_nk(const std::uint8_t* xt, float* yt, int threads) const {
    auto& eng = onednn_engine();
    onednn_set_threads(threads);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(src_md_, eng, const_cast<std::uint8_t*>(xt))},
        {DNNL_ARG_WEIGHTS, wei_},
        {DNNL_ARG_DST, dnnl::memory(dst_md_, eng, yt)}};
    if (has_add_) args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                               dnnl::memory(row_md_, eng, const_cast<float*>(epi_.shift.data())));
    thread_local dnnl::stream strm(eng);
    prim_.execute(strm, args);
    strm.wait();
  }

  // Our layout: x = X (k x n, u8), y = Y (m x n, f32). One run at a time per object.
  void run(const std::uint8_t* x, float* y, int threads) const {
    xt_.resize(static_cast<std::size_t>(n_ * k_));
    yt_.resize(static_cast<std::size_t>(n_ * m_));
    for (std::int64_t r = 0; r < k_; ++r)
      for (std::int64_t c = 0; c < n_; ++c) xt_[static_cast<std::size_t>(c * k_ + r)] = x[r * n_ + c];
    run_nk(xt_.data(), yt_.data(), threads);
    for (std::int64_t r = 0; r < n_; ++r)
      for (std::int64_t c = 0; c < m_; ++c) y[c * n_ + r] = yt_[static_cast<std::size_t>(r * m_ + c)];
  }

  std::string impl() const { return pd_.impl_info_str(); }
  std::size_t weight_bytes() const noexcept { return wei_.get_desc().get_size(); }

 private:
  std::int64_t m_, k_, n_;
  EpilogueArrays epi_;
  dnnl::memory::desc src_md_, dst_md_, row_md_;
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  dnnl::memory wei_;
  bool has_add_ = false;
  mutable std::vector<std::uint8_t> xt_;
  mutable std::vector<float> yt_;
};

}  // namespace sparseloom::cpu
