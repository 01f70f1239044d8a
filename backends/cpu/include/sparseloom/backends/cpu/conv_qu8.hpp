#pragma once
// INT8 convolution of batch 1, NCHW: u8 activations (per-tensor scale and zero point, as a QDQ
// graph quantises them) x s8 weights (per-output-channel scale) -> s32 -> f32 epilogue.
// The convolution is the INT8 matmul Y (Cout x HoWo) = W (Cout x Cin*kh*kw) * col, chosen by
// the same measured trial as an INT8 Gemm (format_choice.hpp):
//  - our INT8 1x4 sparse kernel takes col as K x N (no copy for a pointwise conv);
//  - oneDNN's u8 x s8 matmul wants col^T (N x K) and gives Y^T, so im2col writes the
//    transposed layout directly and one tiled transpose restores NCHW.
// Taps in the padding read the zero point (the quantised 0.0), so padding stays exact.
// Grouped (also depthwise) convolutions are not handled here: they stay f32.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "sparseloom/backends/cpu/conv.hpp"
#include "sparseloom/backends/cpu/format_choice.hpp"
#include "sparseloom/backends/cpu/transpose.hpp"

namespace sparseloom::cpu {

// im2col into col^T: row p = output pixel, columns (c, i, j), for pixels [p0, p1).
inline void im2col_t(const Conv2dShape& s, const std::uint8_t* x, std::uint8_t* colt, std::int64_t p0, std::int64_t p1,
                     std::uint8_t pad) {
  const std::int64_t ow = s.out_w(), k = s.cin * s.kh * s.kw;
  for (std::int64_t p = p0; p < p1; ++p) {
    const std::int64_t oy = p / ow, ox = p % ow;
    std::uint8_t* d = colt + p * k;
    for (std::int64_t c = 0; c < s.cin; ++c)
      for (std::int64_t i = 0; i < s.kh; ++i) {
        const std::int64_t iy = oy * s.stride_h - s.pad_top + i * s.dil_h;
        const bool row_in = iy >= 0 && iy < s.h;
        const std::uint8_t* src = x + (c * s.h + (row_in ? iy : 0)) * s.w;
        for (std::int64_t j = 0; j < s.kw; ++j) {
          const std::int64_t ix = ox * s.stride_w - s.pad_left + j * s.dil_w;
          *d++ = row_in && ix >= 0 && ix < s.w ? src[ix] : pad;
        }
      }
  }
}

class Conv2dQu8 {
 public:
  // q: s8 weights OIHW (Cout x Cin*kh*kw row-major) with per-output-channel scales w_scale.
  Conv2dQu8(const Conv2dShape& s, const std::int8_t* q, const float* w_scale, ActivationQuant xq, const Epilogue& epilogue,
            ThreadPool& pool, const ChoiceOptions& opt = {})
      : s_(s), xq_(xq), threads_(opt.threads) {
    check(s.groups == 1, ErrorCode::unsupported, "cpu::Conv2dQu8", "grouped INT8 convolution");
    check(s.cin > 0 && s.cout > 0 && s.out_h() > 0 && s.out_w() > 0, ErrorCode::shape, "cpu::Conv2dQu8", "empty input or output");
    check(xq.zero_point >= 0 && xq.zero_point <= 255, ErrorCode::invalid_argument, "cpu::Conv2dQu8",
          "u8 activation zero point " + std::to_string(xq.zero_point) + " outside [0, 255]");
    k_ = s.cin * s.kh * s.kw;
    n_ = s.out_h() * s.out_w();
    ChoiceOptions o = opt;
    o.qu8_native = true;  // the dense candidate is run through run_nk (col^T in, Y^T out)
    mm_.emplace(prepare_matmul_qu8(q, w_scale, s.cout, k_, n_, xq, epilogue, pool, o));
    if (mm_->dense()) {
      col_.resize(static_cast<std::size_t>(k_ * n_));
      yt_.resize(static_cast<std::size_t>(n_ * s.cout));
    } else if (!s.is_pointwise()) {
      col_.resize(static_cast<std::size_t>(k_ * n_));
    }
  }

  // x: Cin x H x W (u8), y: Cout x Ho x Wo (f32). One run at a time per object (workspaces).
  void run(const std::uint8_t* x, float* y, ThreadPool& pool) const {
    const auto pad = static_cast<std::uint8_t>(xq_.zero_point);
    if (const DenseQu8* d = mm_->dense()) {
      if (s_.is_pointwise()) {
        transpose_2d(x, s_.cin, n_, col_.data(), pool, threads_);
      } else {
        pool.run(threads_, [&](int t) { im2col_t(s_, x, col_.data(), n_ * t / threads_, n_ * (t + 1) / threads_, pad); });
      }
      d->run_nk(col_.data(), yt_.data(), threads_);
      transpose_2d(yt_.data(), n_, s_.cout, y, pool, threads_);
      return;
    }
    const SpmmQu8& sp = *mm_->sparse();
    if (s_.is_pointwise()) return sp.run(x, y, pool);
    pool.run(threads_, [&](int t) { im2col(s_, x, col_.data(), s_.cin * t / threads_, s_.cin * (t + 1) / threads_, pad); });
    sp.run(col_.data(), y, pool);
  }

  // Packed weights plus the im2col / transposed-output workspaces.
  std::size_t resident_bytes() const { return mm_->weight_bytes() + col_.size() + yt_.size() * sizeof(float); }
  const PreparedMatmulQu8& matmul() const { return *mm_; }
  const Conv2dShape& shape() const noexcept { return s_; }

 private:
  Conv2dShape s_;
  ActivationQuant xq_;
  int threads_;
  std::int64_t k_ = 0, n_ = 0;
  std::optional<PreparedMatmulQu8> mm_;
  mutable std::vector<std::uint8_t> col_;
  mutable std::vector<float> yt_;
};

}  // namespace sparseloom::cpu
