#pragma once
// u8 activation interleave for the INT8 1x4 kernels with SSE2 (baseline x86-64, no target
// attribute needed): out[g][n][j] = X[4g + j][n], zero past K and between N and ldq.
#if defined(__x86_64__)
#include <emmintrin.h>

#include <cstdint>
#include <cstring>

namespace sparseloom::cpu::kernels::x86 {

inline void qu8_interleave_k4__sse2(const std::uint8_t* x, std::int64_t k, std::int64_t n, std::int64_t ldx,
                                    std::int64_t ldq, std::int64_t g0, std::int64_t g1, std::uint8_t* out) {
  alignas(16) static const std::uint8_t zeros[16] = {};
  for (std::int64_t g = g0; g < g1; ++g) {
    const std::uint8_t* rows[4];
    std::int64_t step[4];
    for (int j = 0; j < 4; ++j) {
      const bool in = 4 * g + j < k;
      rows[j] = in ? x + (4 * g + j) * ldx : zeros;
      step[j] = in ? 16 : 0;
    }
    std::uint8_t* o = out + g * ldq * 4;
    std::int64_t c = 0;
    for (; c + 16 <= n; c += 16, o += 64) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[0]));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[1]));
      const __m128i cc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[2]));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[3]));
      const __m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
      const __m128i cd_lo = _mm_unpacklo_epi8(cc, d), cd_hi = _mm_unpackhi_epi8(cc, d);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm_unpacklo_epi16(ab_lo, cd_lo));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), _mm_unpackhi_epi16(ab_lo, cd_lo));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 32), _mm_unpacklo_epi16(ab_hi, cd_hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 48), _mm_unpackhi_epi16(ab_hi, cd_hi));
      for (int j = 0; j < 4; ++j) rows[j] += step[j];
    }
    for (; c < n; ++c, o += 4)
      for (int j = 0; j < 4; ++j) o[j] = 4 * g + j < k ? x[(4 * g + j) * ldx + c] : 0;
    if (ldq > n) std::memset(o, 0, static_cast<std::size_t>((ldq - n) * 4));
  }
}

}  // namespace sparseloom::cpu::kernels::x86
#endif
