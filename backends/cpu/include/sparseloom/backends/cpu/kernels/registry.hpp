#pragma once
// Every microkernel compiled into this build, with its ISA requirement and tile width, as
// XNNPACK lists its ukernels. Callers pick from `*_ukernels(isa)`, which keeps only kernels the
// running CPU supports at or below `isa` (so an AVX-512 machine can still run the AVX2 path).
#include <span>
#include <vector>

#include "sparseloom/backends/cpu/cpu_features.hpp"
#include "sparseloom/backends/cpu/kernels/args.hpp"
#include "sparseloom/backends/cpu/kernels/scalar/spmm_scalar.hpp"
#include "sparseloom/backends/cpu/kernels/x86/avx2.hpp"
#include "sparseloom/backends/cpu/kernels/x86/avx512.hpp"
#include "sparseloom/backends/cpu/kernels/x86/interleave_sse2.hpp"

namespace sparseloom::cpu {

template <class Fn>
struct Ukernel {
  const char* name;
  Isa isa;
  int n_tile;     // columns per tile
  int rows = 1;   // rows per tile (R of BSR R x 1)
  bool needs_vnni = false;
  Fn fn;
};

namespace detail {
template <class Fn>
std::vector<Ukernel<Fn>> filter_ukernels(std::span<const Ukernel<Fn>> all, Isa isa, int rows = 0) {
  std::vector<Ukernel<Fn>> out;
  const auto& f = cpu_features();
  for (const auto& u : all) {
    if (u.isa != isa) continue;
    if (!f.supports(u.isa) || (u.needs_vnni && !f.avx512vnni)) continue;
    if (rows && u.rows != rows) continue;
    out.push_back(u);
  }
  return out;
}
}  // namespace detail

// CSR f32 kernels of exactly family `isa` that this CPU can run (empty if none).
inline std::vector<Ukernel<CsrUkernelFn>> csr_ukernels(Isa isa) {
  static const Ukernel<CsrUkernelFn> all[] = {
      {"f32_spmm_csr_minmax_ukernel_16x1__scalar", Isa::scalar, 16, 1, false, &kernels::scalar::f32_spmm_csr_minmax_ukernel_16x1__scalar},
#if defined(__x86_64__)
      {"f32_spmm_csr_minmax_ukernel_16x1__avx2", Isa::avx2, 16, 1, false, &kernels::avx2::f32_spmm_csr_minmax_ukernel_16x1__avx2},
      {"f32_spmm_csr_minmax_ukernel_32x1__avx2", Isa::avx2, 32, 1, false, &kernels::avx2::f32_spmm_csr_minmax_ukernel_32x1__avx2},
      {"f32_spmm_csr_minmax_ukernel_48x1__avx2", Isa::avx2, 48, 1, false, &kernels::avx2::f32_spmm_csr_minmax_ukernel_48x1__avx2},
      {"f32_spmm_csr_minmax_ukernel_32x1__avx512f", Isa::avx512, 32, 1, false, &kernels::avx512::f32_spmm_csr_minmax_ukernel_32x1__avx512f},
      {"f32_spmm_csr_minmax_ukernel_64x1__avx512f", Isa::avx512, 64, 1, false, &kernels::avx512::f32_spmm_csr_minmax_ukernel_64x1__avx512f},
      {"f32_spmm_csr_minmax_ukernel_96x1__avx512f", Isa::avx512, 96, 1, false, &kernels::avx512::f32_spmm_csr_minmax_ukernel_96x1__avx512f},
      {"f32_spmm_csr_minmax_ukernel_128x1__avx512f", Isa::avx512, 128, 1, false, &kernels::avx512::f32_spmm_csr_minmax_ukernel_128x1__avx512f},
#endif
  };
  return detail::filter_ukernels<CsrUkernelFn>(all, isa);
}

// BSR R x 1 f32 kernels of family `isa` for block height `rows` (4 or 8).
inline std::vector<Ukernel<BsrUkernelFn>> bsr_ukernels(Isa isa, int rows) {
  static const Ukernel<BsrUkernelFn> all[] = {
      {"f32_spmm_bsr_minmax_ukernel_16x4__scalar", Isa::scalar, 16, 4, false, &kernels::scalar::f32_spmm_bsr_minmax_ukernel_16xR__scalar},
      {"f32_spmm_bsr_minmax_ukernel_16x8__scalar", Isa::scalar, 16, 8, false, &kernels::scalar::f32_spmm_bsr_minmax_ukernel_16xR__scalar},
#if defined(__x86_64__)
      {"f32_spmm_bsr_minmax_ukernel_16x4__avx2", Isa::avx2, 16, 4, false, &kernels::avx2::f32_spmm_bsr_minmax_ukernel_16x4__avx2},
      {"f32_spmm_bsr_minmax_ukernel_24x4__avx2", Isa::avx2, 24, 4, false, &kernels::avx2::f32_spmm_bsr_minmax_ukernel_24x4__avx2},
      {"f32_spmm_bsr_minmax_ukernel_8x8__avx2", Isa::avx2, 8, 8, false, &kernels::avx2::f32_spmm_bsr_minmax_ukernel_8x8__avx2},
      {"f32_spmm_bsr_minmax_ukernel_16x8__avx2", Isa::avx2, 16, 8, false, &kernels::avx2::f32_spmm_bsr_minmax_ukernel_16x8__avx2},
      {"f32_spmm_bsr_minmax_ukernel_32x4__avx512f", Isa::avx512, 32, 4, false, &kernels::avx512::f32_spmm_bsr_minmax_ukernel_32x4__avx512f},
      {"f32_spmm_bsr_minmax_ukernel_64x4__avx512f", Isa::avx512, 64, 4, false, &kernels::avx512::f32_spmm_bsr_minmax_ukernel_64x4__avx512f},
      {"f32_spmm_bsr_minmax_ukernel_96x4__avx512f", Isa::avx512, 96, 4, false, &kernels::avx512::f32_spmm_bsr_minmax_ukernel_96x4__avx512f},
      {"f32_spmm_bsr_minmax_ukernel_32x8__avx512f", Isa::avx512, 32, 8, false, &kernels::avx512::f32_spmm_bsr_minmax_ukernel_32x8__avx512f},
      {"f32_spmm_bsr_minmax_ukernel_48x8__avx512f", Isa::avx512, 48, 8, false, &kernels::avx512::f32_spmm_bsr_minmax_ukernel_48x8__avx512f},
#endif
  };
  return detail::filter_ukernels<BsrUkernelFn>(all, isa, rows);
}

inline std::vector<Ukernel<Sparse24UkernelFn>> sparse24_ukernels(Isa isa) {
  static const Ukernel<Sparse24UkernelFn> all[] = {
      {"f32_spmm_2of4_minmax_ukernel_16x1__scalar", Isa::scalar, 16, 1, false, &kernels::scalar::f32_spmm_2of4_minmax_ukernel_16x1__scalar},
#if defined(__x86_64__)
      {"f32_spmm_2of4_minmax_ukernel_16x1__avx2", Isa::avx2, 16, 1, false, &kernels::avx2::f32_spmm_2of4_minmax_ukernel_16x1__avx2},
      {"f32_spmm_2of4_minmax_ukernel_32x1__avx2", Isa::avx2, 32, 1, false, &kernels::avx2::f32_spmm_2of4_minmax_ukernel_32x1__avx2},
      {"f32_spmm_2of4_minmax_ukernel_32x1__avx512f", Isa::avx512, 32, 1, false, &kernels::avx512::f32_spmm_2of4_minmax_ukernel_32x1__avx512f},
      {"f32_spmm_2of4_minmax_ukernel_64x1__avx512f", Isa::avx512, 64, 1, false, &kernels::avx512::f32_spmm_2of4_minmax_ukernel_64x1__avx512f},
      {"f32_spmm_2of4_minmax_ukernel_128x1__avx512f", Isa::avx512, 128, 1, false, &kernels::avx512::f32_spmm_2of4_minmax_ukernel_128x1__avx512f},
#endif
  };
  return detail::filter_ukernels<Sparse24UkernelFn>(all, isa);
}

inline std::vector<Ukernel<Int8UkernelFn>> qu8s8_ukernels(Isa isa) {
  static const Ukernel<Int8UkernelFn> all[] = {
      {"qu8s8_spmm_1x4_minmax_ukernel_16x1__scalar", Isa::scalar, 16, 1, false, &kernels::scalar::qu8s8_spmm_1x4_minmax_ukernel_16x1__scalar},
#if defined(__x86_64__)
      {"qu8s8_spmm_1x4_minmax_ukernel_16x1__avx2", Isa::avx2, 16, 1, false, &kernels::avx2::qu8s8_spmm_1x4_minmax_ukernel_16x1__avx2},
      {"qu8s8_spmm_1x4_minmax_ukernel_32x1__avx2", Isa::avx2, 32, 1, false, &kernels::avx2::qu8s8_spmm_1x4_minmax_ukernel_32x1__avx2},
      {"qu8s8_spmm_1x4_minmax_ukernel_32x1__avx512vnni", Isa::avx512, 32, 1, true, &kernels::avx512::qu8s8_spmm_1x4_minmax_ukernel_32x1__avx512vnni},
      {"qu8s8_spmm_1x4_minmax_ukernel_64x1__avx512vnni", Isa::avx512, 64, 1, true, &kernels::avx512::qu8s8_spmm_1x4_minmax_ukernel_64x1__avx512vnni},
      {"qu8s8_spmm_1x4_minmax_ukernel_128x1__avx512vnni", Isa::avx512, 128, 1, true, &kernels::avx512::qu8s8_spmm_1x4_minmax_ukernel_128x1__avx512vnni},
#endif
  };
  return detail::filter_ukernels<Int8UkernelFn>(all, isa);
}

// The u8 interleave used by the INT8 path (SSE2 on x86-64, portable elsewhere).
inline InterleaveFn qu8_interleave_fn() {
#if defined(__x86_64__)
  return &kernels::x86::qu8_interleave_k4__sse2;
#else
  return &kernels::scalar::qu8_interleave_k4__scalar;
#endif
}

}  // namespace sparseloom::cpu
