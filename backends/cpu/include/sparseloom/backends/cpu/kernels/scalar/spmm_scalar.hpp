#pragma once
// Portable microkernels (any architecture, aarch64 included): the reference for the tests
// and the fallback where no SIMD family is available. Tiles of 16 columns let the compiler
// vectorise with whatever the baseline ISA offers.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "sparseloom/backends/cpu/kernels/args.hpp"

namespace sparseloom::cpu::kernels::scalar {

inline constexpr std::int64_t kTile = 16;

inline float clamp_epilogue(float acc, float s, float b, float lo, float hi) {
  const float v = s * acc + b;
  return std::min(std::max(v, lo), hi);
}

// f32_spmm_csr_minmax_ukernel_16x1__scalar
inline void f32_spmm_csr_minmax_ukernel_16x1__scalar(const CsrF32& w, const F32SpmmArgs& a,
                                                     std::int64_t r0, std::int64_t r1) {
  for (std::int64_t n0 = 0; n0 < a.n; n0 += kTile) {
    const std::int64_t nt = std::min(kTile, a.n - n0);
    for (std::int64_t r = r0; r < r1; ++r) {
      float acc[kTile] = {};
      for (std::int64_t chunk = 0; chunk < w.chunks(); ++chunk) {
        const auto s0 = static_cast<std::size_t>(chunk * w.m + r);
        const std::int32_t j0 = w.kc ? w.seg_ptr[s0] : w.row_ptr[static_cast<std::size_t>(r)];
        const std::int32_t j1 = w.kc ? w.seg_ptr[s0 + 1] : w.row_ptr[static_cast<std::size_t>(r + 1)];
        for (std::int32_t j = j0; j < j1; ++j) {
          const float v = w.val[static_cast<std::size_t>(j)];
          const float* xp = a.x + w.col_off[static_cast<std::size_t>(j)] + n0;
          for (std::int64_t c = 0; c < nt; ++c) acc[c] += v * xp[c];
        }
      }
      float* yp = a.y + r * a.ldy + n0;
      for (std::int64_t c = 0; c < nt; ++c) yp[c] = clamp_epilogue(acc[c], a.scale[r], a.shift[r], a.lo, a.hi);
    }
  }
}

// f32_spmm_bsr_minmax_ukernel_16xR__scalar (R = w.r)
inline void f32_spmm_bsr_minmax_ukernel_16xR__scalar(const BsrF32& w, const F32SpmmArgs& a,
                                                     std::int64_t br0, std::int64_t br1) {
  const int r = w.r;
  for (std::int64_t n0 = 0; n0 < a.n; n0 += kTile) {
    const std::int64_t nt = std::min(kTile, a.n - n0);
    for (std::int64_t br = br0; br < br1; ++br) {
      float acc[8][kTile] = {};
      for (std::int32_t b = w.blk_ptr[static_cast<std::size_t>(br)]; b < w.blk_ptr[static_cast<std::size_t>(br + 1)]; ++b) {
        const float* xp = a.x + w.col_off[static_cast<std::size_t>(b)] + n0;
        const float* wv = w.val.data() + static_cast<std::ptrdiff_t>(b) * r;
        for (int i = 0; i < r; ++i)
          for (std::int64_t c = 0; c < nt; ++c) acc[i][c] += wv[i] * xp[c];
      }
      for (int i = 0; i < r; ++i) {
        const std::int64_t row = br * r + i;
        if (row >= w.m) break;
        float* yp = a.y + row * a.ldy + n0;
        for (std::int64_t c = 0; c < nt; ++c) yp[c] = clamp_epilogue(acc[i][c], a.scale[row], a.shift[row], a.lo, a.hi);
      }
    }
  }
}

// f32_spmm_2of4_minmax_ukernel_16x1__scalar
inline void f32_spmm_2of4_minmax_ukernel_16x1__scalar(const Sparse24F32& w, const F32SpmmArgs& a,
                                                      std::int64_t r0, std::int64_t r1) {
  for (std::int64_t n0 = 0; n0 < a.n; n0 += kTile) {
    const std::int64_t nt = std::min(kTile, a.n - n0);
    for (std::int64_t r = r0; r < r1; ++r) {
      float acc[kTile] = {};
      for (std::int64_t g = 0; g < w.groups; ++g) {
        const auto at = static_cast<std::size_t>(r * w.groups + g);
        const std::uint8_t b = w.idx[at];
        const float* x0 = a.x + (4 * g + (b & 3)) * w.ldx + n0;
        const float* x1 = a.x + (4 * g + (b >> 2)) * w.ldx + n0;
        const float v0 = w.val[2 * at], v1 = w.val[2 * at + 1];
        for (std::int64_t c = 0; c < nt; ++c) acc[c] += v0 * x0[c] + v1 * x1[c];
      }
      float* yp = a.y + r * a.ldy + n0;
      for (std::int64_t c = 0; c < nt; ++c) yp[c] = clamp_epilogue(acc[c], a.scale[r], a.shift[r], a.lo, a.hi);
    }
  }
}

// qu8s8_spmm_1x4_minmax_ukernel_16x1__scalar: u8 x s8 -> s32, f32 epilogue.
inline void qu8s8_spmm_1x4_minmax_ukernel_16x1__scalar(const Int8Bsr1x4& w, const Int8SpmmArgs& a,
                                                      std::int64_t r0, std::int64_t r1) {
  for (std::int64_t n0 = 0; n0 < a.n; n0 += kTile) {
    const std::int64_t nt = std::min(kTile, a.n - n0);
    for (std::int64_t r = r0; r < r1; ++r) {
      std::int32_t acc[kTile] = {};
      for (std::int64_t chunk = 0; chunk < w.chunks(); ++chunk) {
        const auto s0 = static_cast<std::size_t>(chunk * w.m + r);
        const std::int32_t b0 = w.gc ? w.seg_ptr[s0] : w.row_ptr[static_cast<std::size_t>(r)];
        const std::int32_t b1 = w.gc ? w.seg_ptr[s0 + 1] : w.row_ptr[static_cast<std::size_t>(r + 1)];
        for (std::int32_t b = b0; b < b1; ++b) {
          const std::uint8_t* xp = a.xq + w.blk_off[static_cast<std::size_t>(b)] + n0 * 4;
          const std::int8_t* wv = w.val.data() + static_cast<std::ptrdiff_t>(b) * 4;
          for (std::int64_t c = 0; c < nt; ++c)
            acc[c] += wv[0] * xp[4 * c] + wv[1] * xp[4 * c + 1] + wv[2] * xp[4 * c + 2] + wv[3] * xp[4 * c + 3];
        }
      }
      float* yp = a.y + r * a.ldy + n0;
      for (std::int64_t c = 0; c < nt; ++c)
        yp[c] = clamp_epilogue(static_cast<float>(acc[c]), a.scale[r], a.shift[r], a.lo, a.hi);
    }
  }
}

// Interleaves 4 consecutive K rows of u8 X per column: out[g][n][j] = X[4g + j][n] (0 past K/N).
inline void qu8_interleave_k4__scalar(const std::uint8_t* x, std::int64_t k, std::int64_t n, std::int64_t ldx,
                                      std::int64_t ldq, std::int64_t g0, std::int64_t g1, std::uint8_t* out) {
  for (std::int64_t g = g0; g < g1; ++g) {
    std::uint8_t* o = out + g * ldq * 4;
    std::memset(o, 0, static_cast<std::size_t>(ldq * 4));
    for (std::int64_t j = 0; j < 4 && 4 * g + j < k; ++j) {
      const std::uint8_t* xr = x + (4 * g + j) * ldx;
      for (std::int64_t c = 0; c < n; ++c) o[4 * c + j] = xr[c];
    }
  }
}

}  // namespace sparseloom::cpu::kernels::scalar
