#pragma once
// Arguments every spmm microkernel takes. A microkernel computes output rows (or block rows)
// [row_begin, row_end) over all N columns, N-tile outer and rows inner, so a K x tile slice
// of X stays in L2 while the rows stream their nonzeros.
#include <cstdint>

#include "sparseloom/backends/cpu/sparse_pack.hpp"

namespace sparseloom::cpu {

struct F32SpmmArgs {
  const float* x = nullptr;  // K x ldx (ldx fixed by the packed weights)
  std::int64_t n = 0;        // columns of X and Y
  float* y = nullptr;        // M x ldy
  std::int64_t ldy = 0;
  const float* scale = nullptr;  // per row, padded to a multiple of 8 rows
  const float* shift = nullptr;
  float lo = 0, hi = 0;          // clamp bounds
};

struct Int8SpmmArgs {
  const std::uint8_t* xq = nullptr;  // interleaved activations [groups][ldq][4]
  std::int64_t n = 0;
  float* y = nullptr;
  std::int64_t ldy = 0;
  const float* scale = nullptr;  // dequantisation folded in: y = scale*acc_s32 + shift
  const float* shift = nullptr;
  float lo = 0, hi = 0;
};

using CsrUkernelFn = void (*)(const CsrF32&, const F32SpmmArgs&, std::int64_t, std::int64_t);
using BsrUkernelFn = void (*)(const BsrF32&, const F32SpmmArgs&, std::int64_t, std::int64_t);
using Sparse24UkernelFn = void (*)(const Sparse24F32&, const F32SpmmArgs&, std::int64_t, std::int64_t);
using Int8UkernelFn = void (*)(const Int8Bsr1x4&, const Int8SpmmArgs&, std::int64_t, std::int64_t);
// Interleaves u8 X (K x n, row stride ldx) groups [g_begin, g_end) into [groups][ldq][4].
using InterleaveFn = void (*)(const std::uint8_t*, std::int64_t k, std::int64_t n, std::int64_t ldx,
                              std::int64_t ldq, std::int64_t g_begin, std::int64_t g_end, std::uint8_t*);

}  // namespace sparseloom::cpu
