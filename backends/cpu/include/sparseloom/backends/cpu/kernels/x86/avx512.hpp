#pragma once
// AVX-512 microkernels (F + BW + VL + FMA; VNNI for INT8). Compiled with target attributes,
// so a default (-march=x86-64) build still contains them; call them only where
// cpu_features() reports the ISA (the registry does).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "sparseloom/backends/cpu/kernels/args.hpp"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")
#endif
#define SL_UK_LAMBDA __attribute__((always_inline))

namespace sparseloom::cpu::kernels::avx512 {

struct VT {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16;
  static constexpr int kRegs = 32;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float v) { return _mm512_set1_ps(v); }
  static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  static inline V load_tail(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  // maskz forms: gcc 12 warns (maybe-uninitialized) inside the plain _mm512_min/max_ps.
  static inline V min(V a, V b) { return _mm512_maskz_min_ps(static_cast<Mask>(0xFFFF), a, b); }
  static inline V max(V a, V b) { return _mm512_maskz_max_ps(static_cast<Mask>(0xFFFF), a, b); }
  static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline void store_tail(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static inline Mask tail_mask(int rem) { return static_cast<Mask>((1u << rem) - 1u); }
};

#include "sparseloom/backends/cpu/kernels/x86/f32_spmm.inc"

// INT8: one vpdpbusd per 1x4 block and 16 columns (u8 activations x s8 weights -> s32).
// Blocks [j, e) into two s32 accumulator sets.
template <int V>
inline __attribute__((always_inline)) void qu8s8_blocks(const std::int32_t* off, const std::int8_t* val,
                                                        const std::uint8_t* xb, std::int32_t j, std::int32_t e,
                                                        __m512i* acc0, __m512i* acc1) {
  for (; j + 1 < e; j += 2) {
    std::int32_t q0, q1;
    __builtin_memcpy(&q0, val + 4 * static_cast<std::ptrdiff_t>(j), 4);
    __builtin_memcpy(&q1, val + 4 * static_cast<std::ptrdiff_t>(j + 1), 4);
    const __m512i w0 = _mm512_set1_epi32(q0), w1 = _mm512_set1_epi32(q1);
    const std::uint8_t* x0 = xb + off[j];
    const std::uint8_t* x1 = xb + off[j + 1];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      acc0[v] = _mm512_dpbusd_epi32(acc0[v], _mm512_loadu_si512(x0 + 64 * v), w0);
      acc1[v] = _mm512_dpbusd_epi32(acc1[v], _mm512_loadu_si512(x1 + 64 * v), w1);
    }
  }
  if (j < e) {
    std::int32_t q0;
    __builtin_memcpy(&q0, val + 4 * static_cast<std::ptrdiff_t>(j), 4);
    const __m512i w0 = _mm512_set1_epi32(q0);
    const std::uint8_t* x0 = xb + off[j];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc0[v] = _mm512_dpbusd_epi32(acc0[v], _mm512_loadu_si512(x0 + 64 * v), w0);
  }
}

// Unchunked: all of a row's blocks, then the epilogue. Chunked (gc > 0): chunk outer, rows
// inner, raw partial sums kept in Y as f32 (exact below 2^24, a rounding of ~1e-7 beyond).
template <int V, bool Tail>
inline __attribute__((always_inline)) void qu8s8_tile(const Int8Bsr1x4& w, const Int8SpmmArgs& a,
                                                      std::int64_t r0, std::int64_t r1, std::int64_t n0,
                                                      __mmask16 tail) {
  const std::uint8_t* xb = a.xq + n0 * 4;
  const __m512 vlo = _mm512_set1_ps(a.lo), vhi = _mm512_set1_ps(a.hi);
  const std::int64_t chunks = w.chunks();
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int32_t* seg = w.gc ? w.seg_ptr.data() + c * w.m : w.row_ptr.data();
    const bool first = c == 0, last = c == chunks - 1;
    for (std::int64_t r = r0; r < r1; ++r) {
      if (seg[r] == seg[r + 1] && !first && !last) continue;
      __m512i acc0[V], acc1[V];
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc0[v] = acc1[v] = _mm512_setzero_si512();
      qu8s8_blocks<V>(w.blk_off.data(), w.val.data(), xb, seg[r], seg[r + 1], acc0, acc1);
      const __m512 s = _mm512_set1_ps(a.scale[r]), b = _mm512_set1_ps(a.shift[r]);
      float* yp = a.y + r * a.ldy + n0;
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        __m512 f = _mm512_maskz_cvtepi32_ps(static_cast<__mmask16>(0xFFFF), _mm512_add_epi32(acc0[v], acc1[v]));
        if (!first) f = _mm512_add_ps(f, (Tail && v == V - 1) ? _mm512_maskz_loadu_ps(tail, yp + 16 * v) : _mm512_loadu_ps(yp + 16 * v));
        if (last) f = VT::min(VT::max(_mm512_fmadd_ps(f, s, b), vlo), vhi);
        if (Tail && v == V - 1) _mm512_mask_storeu_ps(yp + 16 * v, tail, f);
        else _mm512_storeu_ps(yp + 16 * v, f);
      }
    }
  }
}

// The interleaved activations are padded to ldq (a multiple of 16), so only stores mask.
template <int V>
void qu8s8_spmm_1x4(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) {
  over_n<V, kMaxVRow<V>>(a.n, [&](auto nv, auto tail, std::int64_t n0, __mmask16 m) SL_UK_LAMBDA {
    qu8s8_tile<decltype(nv)::value, decltype(tail)::value>(w, a, r0, r1, n0, m);
  });
}

// XNNPACK-style names: (dtype, op, format, fused clamp, columns x rows tile, ISA).
inline void f32_spmm_csr_minmax_ukernel_32x1__avx512f(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<2>(w, a, r0, r1); }
inline void f32_spmm_csr_minmax_ukernel_64x1__avx512f(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<4>(w, a, r0, r1); }
inline void f32_spmm_csr_minmax_ukernel_96x1__avx512f(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<6>(w, a, r0, r1); }
inline void f32_spmm_csr_minmax_ukernel_128x1__avx512f(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<8>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_32x4__avx512f(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<4, 2>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_64x4__avx512f(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<4, 4>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_96x4__avx512f(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<4, 6>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_32x8__avx512f(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<8, 2>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_48x8__avx512f(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<8, 3>(w, a, r0, r1); }
inline void f32_spmm_2of4_minmax_ukernel_32x1__avx512f(const Sparse24F32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_2of4<2>(w, a, r0, r1); }
inline void f32_spmm_2of4_minmax_ukernel_64x1__avx512f(const Sparse24F32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_2of4<4>(w, a, r0, r1); }
inline void f32_spmm_2of4_minmax_ukernel_128x1__avx512f(const Sparse24F32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_2of4<8>(w, a, r0, r1); }
inline void qu8s8_spmm_1x4_minmax_ukernel_32x1__avx512vnni(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) { qu8s8_spmm_1x4<2>(w, a, r0, r1); }
inline void qu8s8_spmm_1x4_minmax_ukernel_64x1__avx512vnni(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) { qu8s8_spmm_1x4<4>(w, a, r0, r1); }
inline void qu8s8_spmm_1x4_minmax_ukernel_128x1__avx512vnni(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) { qu8s8_spmm_1x4<8>(w, a, r0, r1); }

}  // namespace sparseloom::cpu::kernels::avx512

#undef SL_UK_LAMBDA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
