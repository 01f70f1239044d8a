#pragma once
// AVX2 + FMA microkernels (compiled with target attributes; dispatched at run time). Also the
// path used when the benchmark caps the ISA at AVX2 to resemble an edge SoC's CPU.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "sparseloom/backends/cpu/kernels/args.hpp"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
// Target options add to the command line's: in a -march=native build on an AVX-512 machine
// the compiler may give these kernels EVEX encodings (ymm16-31); in a default build they are
// plain AVX2. ("no-avx512f" is not an option: intrinsics would no longer inline.)
#pragma GCC target("avx2,fma")
#endif
#define SL_UK_LAMBDA __attribute__((always_inline))

namespace sparseloom::cpu::kernels::avx2 {

struct VT {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int W = 8;
  static constexpr int kRegs = 16;
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(float v) { return _mm256_set1_ps(v); }
  static inline V load(const float* p) { return _mm256_loadu_ps(p); }
  static inline V load_tail(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V min(V a, V b) { return _mm256_min_ps(a, b); }
  static inline V max(V a, V b) { return _mm256_max_ps(a, b); }
  static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static inline void store_tail(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static inline Mask tail_mask(int rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};

#include "sparseloom/backends/cpu/kernels/x86/f32_spmm.inc"

// INT8 without VNNI: widen u8 to s16 and vpmaddwd against the block's 4 weights (s16, no
// saturation, unlike vpmaddubsw); pairs of K are summed once per tile at the end.
template <int V, bool Tail>
inline __attribute__((always_inline)) void qu8s8_tile(const Int8Bsr1x4& w, const Int8SpmmArgs& a,
                                                      std::int64_t r0, std::int64_t r1, std::int64_t n0,
                                                      __m256i tail) {
  const std::int32_t* off = w.blk_off.data();
  const std::int8_t* val = w.val.data();
  const std::uint8_t* xb = a.xq + n0 * 4;
  const __m256 vlo = _mm256_set1_ps(a.lo), vhi = _mm256_set1_ps(a.hi);
  const std::int64_t chunks = w.chunks();
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int32_t* seg = w.gc ? w.seg_ptr.data() + c * w.m : w.row_ptr.data();
    const bool first = c == 0, last = c == chunks - 1;
    for (std::int64_t r = r0; r < r1; ++r) {
      if (seg[r] == seg[r + 1] && !first && !last) continue;
      __m256i lo[V], hi[V];
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) lo[v] = hi[v] = _mm256_setzero_si256();
      for (std::int32_t j = seg[r]; j < seg[r + 1]; ++j) {
        std::int32_t q;
        __builtin_memcpy(&q, val + 4 * static_cast<std::ptrdiff_t>(j), 4);
        const __m256i wq = _mm256_cvtepi8_epi16(_mm_set1_epi32(q));  // w0 w1 w2 w3 repeated, s16
        const std::uint8_t* xp = xb + off[j];
#pragma GCC unroll 8
        for (int v = 0; v < V; ++v) {
          const __m256i x01 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + 32 * v)));
          const __m256i x23 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + 32 * v + 16)));
          lo[v] = _mm256_add_epi32(lo[v], _mm256_madd_epi16(x01, wq));
          hi[v] = _mm256_add_epi32(hi[v], _mm256_madd_epi16(x23, wq));
        }
      }
      const __m256 s = _mm256_set1_ps(a.scale[r]), b = _mm256_set1_ps(a.shift[r]);
      float* yp = a.y + r * a.ldy + n0;
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        // lo = [c0 c0 c1 c1 | c2 c2 c3 c3] pair sums, hi likewise for c4..c7.
        const __m256i h = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[v], hi[v]), 0xD8);
        __m256 f = _mm256_cvtepi32_ps(h);
        if (!first) f = _mm256_add_ps(f, (Tail && v == V - 1) ? _mm256_maskload_ps(yp + 8 * v, tail) : _mm256_loadu_ps(yp + 8 * v));
        if (last) f = _mm256_min_ps(_mm256_max_ps(_mm256_fmadd_ps(f, s, b), vlo), vhi);
        if (Tail && v == V - 1) _mm256_maskstore_ps(yp + 8 * v, tail, f);
        else _mm256_storeu_ps(yp + 8 * v, f);
      }
    }
  }
}

template <int V>
void qu8s8_spmm_1x4(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) {
  over_n<V, kMaxVRow<V>>(a.n, [&](auto nv, auto tail, std::int64_t n0, __m256i m) SL_UK_LAMBDA {
    qu8s8_tile<decltype(nv)::value, decltype(tail)::value>(w, a, r0, r1, n0, m);
  });
}

inline void f32_spmm_csr_minmax_ukernel_16x1__avx2(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<2>(w, a, r0, r1); }
inline void f32_spmm_csr_minmax_ukernel_32x1__avx2(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<4>(w, a, r0, r1); }
inline void f32_spmm_csr_minmax_ukernel_48x1__avx2(const CsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_csr<6>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_16x4__avx2(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<4, 2>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_24x4__avx2(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<4, 3>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_8x8__avx2(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<8, 1>(w, a, r0, r1); }
inline void f32_spmm_bsr_minmax_ukernel_16x8__avx2(const BsrF32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_bsr<8, 2>(w, a, r0, r1); }
inline void f32_spmm_2of4_minmax_ukernel_16x1__avx2(const Sparse24F32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_2of4<2>(w, a, r0, r1); }
inline void f32_spmm_2of4_minmax_ukernel_32x1__avx2(const Sparse24F32& w, const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) { f32_spmm_2of4<4>(w, a, r0, r1); }
inline void qu8s8_spmm_1x4_minmax_ukernel_16x1__avx2(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) { qu8s8_spmm_1x4<2>(w, a, r0, r1); }
inline void qu8s8_spmm_1x4_minmax_ukernel_32x1__avx2(const Int8Bsr1x4& w, const Int8SpmmArgs& a, std::int64_t r0, std::int64_t r1) { qu8s8_spmm_1x4<4>(w, a, r0, r1); }

}  // namespace sparseloom::cpu::kernels::avx2

#undef SL_UK_LAMBDA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // __x86_64__
