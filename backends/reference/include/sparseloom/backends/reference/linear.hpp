#pragma once
// Reference Conv / Gemm / MatMul / pooling on Eigen. Conv is im2col + GEMM per group (direct
// for depthwise); output channels are split across threads.
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sparseloom/core/parallel.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/ir/shape_util.hpp"
#include "sparseloom/backends/reference/elementwise.hpp"

namespace sparseloom::reference {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapC = Eigen::Map<const RowMat>;
using MapM = Eigen::Map<RowMat>;

// C(m x n) = A(m x k) * B(k x n), rows of C split over threads.
inline void matmul_rows(const float* a, const float* b, float* c, std::int64_t m, std::int64_t k, std::int64_t n, int threads) {
  parallel_for(threads, m, [&](std::int64_t r0, std::int64_t r1) {
    MapM(c + r0 * n, r1 - r0, n).noalias() = MapC(a + r0 * k, r1 - r0, k) * MapC(b, k, n);
  });
}

inline Tensor gemm(const Tensor& a_in, const Tensor& b_in, const Tensor* c_in, float alpha, float beta, bool ta, bool tb, int threads) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  RowMat A = MapC(a.data<float>(), a.dim(0), a.dim(1));
  RowMat B = MapC(b.data<float>(), b.dim(0), b.dim(1));
  if (ta) A.transposeInPlace();
  if (tb) B.transposeInPlace();
  Tensor y = Tensor::zeros({A.rows(), B.cols()}, DType::f32);
  matmul_rows(A.data(), B.data(), y.data<float>(), A.rows(), A.cols(), B.cols(), threads);
  MapM Y(y.data<float>(), A.rows(), B.cols());
  if (alpha != 1.f) Y *= alpha;
  if (c_in && beta != 0.f) {
    const Tensor c = c_in->contiguous();
    const Shape os{A.rows(), B.cols()};
    float* o = y.data<float>();
    const float* pc = c.data<float>();
    Shape cs = c.shape();
    // C broadcasts onto (m, n).
    Shape st(2, 0);
    const auto r = cs.size();
    if (r == 2) { st[0] = cs[0] == 1 ? 0 : cs[1]; st[1] = cs[1] == 1 ? 0 : 1; }
    else if (r == 1) { st[1] = cs[0] == 1 ? 0 : 1; }
    for (std::int64_t i = 0; i < os[0]; ++i)
      for (std::int64_t j = 0; j < os[1]; ++j) o[i * os[1] + j] += beta * pc[i * st[0] + j * st[1]];
  }
  return y;
}

// numpy-style matmul with batch broadcasting.
inline Tensor matmul(const Tensor& a_in, const Tensor& b_in, int threads) {
  Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const bool a1 = a.rank() == 1, b1 = b.rank() == 1;
  if (a1) a = a.reshape({1, a.dim(0)});
  if (b1) b = b.reshape({b.dim(0), 1});
  const auto m = a.shape()[a.rank() - 2], k = a.shape().back(), n = b.shape().back();
  const Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = ir::broadcast_shapes(ab, bb, "MatMul");
  Shape os = batch;
  if (!a1) os.push_back(m);
  if (!b1) os.push_back(n);
  Tensor y = Tensor::empty(os, DType::f32);
  const auto nb = numel_of(batch);
  std::vector<std::int64_t> ia(nb), ib(nb);
  broadcast_indices(ab, bb, batch, [&](auto i, auto x, auto z) { ia[i] = x; ib[i] = z; });
  for (std::int64_t i = 0; i < nb; ++i)
    matmul_rows(a.data<float>() + ia[i] * m * k, b.data<float>() + ib[i] * k * n, y.data<float>() + i * m * n, m, k, n, threads);
  return y;
}

struct ConvParams {
  ir::Window win;
  std::int64_t group = 1;
};

// Conv over N x C x spatial (1-D or 2-D). Weights M x C/g x k..., optional bias.
inline Tensor conv(const Tensor& x_in, const Tensor& w_in, const Tensor* bias_in, const ConvParams& p, int threads) {
  const Tensor x = x_in.contiguous(), w = w_in.contiguous();
  check(x.rank() == 3 || x.rank() == 4, ErrorCode::unsupported, "Conv", "only 1-D and 2-D convolutions");
  const bool one_d = x.rank() == 3;
  const auto N = x.dim(0), C = x.dim(1), M = w.dim(0);
  const auto H = one_d ? 1 : x.dim(2), W = x.shape().back();
  const auto KH = one_d ? 1 : w.dim(2), KW = w.shape().back();
  const std::size_t s = one_d ? 1 : 2;
  auto at = [&](const std::vector<std::int64_t>& v, std::size_t i2d, std::int64_t dflt) {
    return one_d ? (i2d == 0 ? dflt : v[0]) : v[i2d];
  };
  const auto SH = at(p.win.strides, 0, 1), SW = at(p.win.strides, 1, 1);
  const auto DH = at(p.win.dilations, 0, 1), DW = at(p.win.dilations, 1, 1);
  const auto PH = one_d ? 0 : p.win.pads[0], PW = p.win.pads[s - 1];
  const auto OH = one_d ? 1 : p.win.out[0], OW = p.win.out.back();
  const auto G = p.group, Cg = C / G, Mg = M / G, K = Cg * KH * KW, P = OH * OW;
  Shape os{N, M};
  for (auto o : p.win.out) os.push_back(o);
  Tensor y = Tensor::empty(os, DType::f32);
  const Tensor b = bias_in ? bias_in->contiguous() : Tensor();
  // A 1x1, stride-1, unpadded conv's column matrix is its input: no copy.
  const bool pointwise = KH == 1 && KW == 1 && SH == 1 && SW == 1 && PH == 0 && PW == 0 && OH == H && OW == W;
  std::vector<float> col(pointwise ? 0 : static_cast<std::size_t>(K * P));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t g = 0; g < G; ++g) {
      const float* xg = x.data<float>() + (n * C + g * Cg) * H * W;
      for (std::int64_t c = 0; c < Cg && !pointwise; ++c)
        for (std::int64_t kh = 0; kh < KH; ++kh)
          for (std::int64_t kw = 0; kw < KW; ++kw) {
            float* row = col.data() + ((c * KH + kh) * KW + kw) * P;
            // Output columns [lo, hi) read inside the input row; the rest are padding zeros.
            const auto off = kw * DW - PW;
            const auto lo = std::min(OW, off >= 0 ? std::int64_t{0} : (-off + SW - 1) / SW);
            const auto hi = std::max(lo, std::min(OW, W - off > 0 ? (W - off + SW - 1) / SW : std::int64_t{0}));
            for (std::int64_t oh = 0; oh < OH; ++oh) {
              const auto ih = oh * SH - PH + kh * DH;
              float* r = row + oh * OW;
              if (ih < 0 || ih >= H) {
                std::fill(r, r + OW, 0.f);
                continue;
              }
              const auto base = (c * H + ih) * W + off;
              std::fill(r, r + lo, 0.f);
              for (std::int64_t ow = lo; ow < hi; ++ow) r[ow] = xg[base + ow * SW];
              std::fill(r + hi, r + OW, 0.f);
            }
          }
      float* yg = y.data<float>() + (n * M + g * Mg) * P;
      matmul_rows(w.data<float>() + g * Mg * K, pointwise ? xg : col.data(), yg, Mg, K, P, G > 1 ? 1 : threads);
      if (bias_in)
        for (std::int64_t m = 0; m < Mg; ++m)
          for (std::int64_t i = 0; i < P; ++i) yg[m * P + i] += b.data<float>()[g * Mg + m];
    }
  return y;
}

inline Tensor pool(const Tensor& x_in, const ir::Window& win, bool is_max, bool count_include_pad) {
  const Tensor x = x_in.contiguous();
  check(x.rank() == 3 || x.rank() == 4, ErrorCode::unsupported, "Pool", "only 1-D and 2-D pooling");
  const bool one_d = x.rank() == 3;
  const auto N = x.dim(0), C = x.dim(1), H = one_d ? 1 : x.dim(2), W = x.shape().back();
  const std::size_t s = one_d ? 1 : 2;
  const auto KH = one_d ? 1 : win.kernel[0], KW = win.kernel.back();
  const auto SH = one_d ? 1 : win.strides[0], SW = win.strides.back();
  const auto DH = one_d ? 1 : win.dilations[0], DW = win.dilations.back();
  const auto PH = one_d ? 0 : win.pads[0], PW = win.pads[s - 1];
  const auto PHe = one_d ? 0 : win.pads[s], PWe = win.pads[2 * s - 1];
  const auto OH = one_d ? 1 : win.out[0], OW = win.out.back();
  Shape os{N, C};
  for (auto o : win.out) os.push_back(o);
  Tensor y = Tensor::empty(os, DType::f32);
  for (std::int64_t nc = 0; nc < N * C; ++nc) {
    const float* xp = x.data<float>() + nc * H * W;
    float* yp = y.data<float>() + nc * OH * OW;
    for (std::int64_t oh = 0; oh < OH; ++oh)
      for (std::int64_t ow = 0; ow < OW; ++ow) {
        float acc = is_max ? -std::numeric_limits<float>::infinity() : 0.f;
        std::int64_t cnt = 0, cnt_pad = 0;
        for (std::int64_t kh = 0; kh < KH; ++kh)
          for (std::int64_t kw = 0; kw < KW; ++kw) {
            const auto ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
            // Positions in the explicit padding count for count_include_pad; beyond it (ceil_mode) never.
            if (ih >= -PH && ih < H + PHe && iw >= -PW && iw < W + PWe) ++cnt_pad;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const float v = xp[ih * W + iw];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++cnt;
          }
        yp[oh * OW + ow] = is_max ? acc : acc / static_cast<float>(std::max<std::int64_t>(count_include_pad ? cnt_pad : cnt, 1));
      }
  }
  return y;
}

inline Tensor global_avg_pool(const Tensor& x_in) {
  const Tensor x = x_in.contiguous();
  const auto nc = x.dim(0) * x.dim(1);
  const auto inner = x.numel() / std::max<std::int64_t>(nc, 1);
  Shape os = x.shape();
  for (std::size_t i = 2; i < os.size(); ++i) os[i] = 1;
  Tensor y = Tensor::empty(os, DType::f32);
  for (std::int64_t i = 0; i < nc; ++i) {
    double s = 0;
    for (std::int64_t k = 0; k < inner; ++k) s += x.data<float>()[i * inner + k];
    y.data<float>()[i] = static_cast<float>(s / static_cast<double>(inner));
  }
  return y;
}

}  // namespace sparseloom::reference
