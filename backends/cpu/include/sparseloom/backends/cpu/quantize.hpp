#pragma once
// Per-tensor QuantizeLinear f32 -> u8 over the processor's pool: the activation quantiser of
// QDQ graphs, which the reference op runs on one thread with a libm call per element (~15 % of
// an INT8 ResNet-50). Same results as the reference: x / scale (a division, not a reciprocal
// product), rounded half to even, plus the zero point, saturated to [0, 255].
#include <algorithm>
#include <cstdint>

#include "sparseloom/backends/cpu/thread_pool.hpp"

namespace sparseloom::cpu {

// One contiguous range; plain pointers and locals (a u8 store through a captured pointer may
// alias the capture itself, which stops vectorisation).
inline void quantize_u8_range(const float* __restrict x, std::uint8_t* __restrict y, std::int64_t n, float scale,
                              std::int32_t zero_point) {
  // v is first clamped to one step beyond the representable range, so |v| < 2^22 and adding
  // then subtracting 1.5 * 2^23 rounds it to an integer half to even (the default FP mode),
  // a form that vectorises without SSE4.1. NaN maps to 0 (the reference's cast of NaN is
  // undefined).
  const float lo = static_cast<float>(-zero_point - 1), hi = static_cast<float>(256 - zero_point);
  constexpr float magic = 12582912.f;
  for (std::int64_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = v >= lo ? v : lo;
    v = v <= hi ? v : hi;
    const int q = static_cast<int>((v + magic) - magic) + zero_point;
    y[i] = static_cast<std::uint8_t>(q < 0 ? 0 : q > 255 ? 255 : q);
  }
}

inline void quantize_u8(const float* x, std::int64_t n, float scale, std::int32_t zero_point, std::uint8_t* y, ThreadPool& pool,
                        int threads) {
  const int parts = split_parts(n, threads, 65536);
  pool.run(parts, [=](int t) {
    const std::int64_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    quantize_u8_range(x + i0, y + i0, i1 - i0, scale, zero_point);
  });
}

}  // namespace sparseloom::cpu
