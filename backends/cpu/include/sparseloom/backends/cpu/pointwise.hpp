#pragma once
// Element-wise and last-axis f32 ops over the processor's pool: what a transformer spends its
// time in besides the weight Gemms (the LayerNorm pieces, GELU's Erf, attention's Softmax and
// scalings). The reference ops run them on one thread through a generic broadcast index walk
// (~25 of 58 ms in a 90 %-sparse BERT-base encoder). The math is the reference's own, element
// for element (same functions, same accumulation order and width), so results are equal.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "sparseloom/backends/cpu/thread_pool.hpp"

namespace sparseloom::cpu {

enum class Unary : std::uint8_t { relu, erf, sqrt, tanh, sigmoid, exp, neg, abs, reciprocal };
enum class Binary : std::uint8_t { add, sub, mul, div, pow };
// How the small operand s maps onto the output index i (d = the output's last dim):
// same shape s[i], scalar s[0], trailing vector s[i % d], one value per row s[i / d].
enum class Bcast : std::uint8_t { same, scalar, vector, row };

namespace detail {
// Calls f with the element function of `op`, so each op gets its own loop (the switch is
// outside it) and the loop vectorises where the op's math does.
template <class F>
void with_unary(Unary op, F f) {
  switch (op) {
    case Unary::relu: return f([](float v) { return v > 0.f ? v : 0.f; });
    case Unary::erf: return f([](float v) { return std::erf(v); });
    case Unary::sqrt: return f([](float v) { return std::sqrt(v); });
    case Unary::tanh: return f([](float v) { return std::tanh(v); });
    case Unary::sigmoid: return f([](float v) { return 1.f / (1.f + std::exp(-v)); });
    case Unary::exp: return f([](float v) { return std::exp(v); });
    case Unary::neg: return f([](float v) { return -v; });
    case Unary::abs: return f([](float v) { return std::fabs(v); });
    case Unary::reciprocal: return f([](float v) { return 1.f / v; });
  }
}

// One op per loop (the switch is outside), so each loop vectorises where its math does.
template <class F>
void binary_range(const float* __restrict x, const float* __restrict s, float* __restrict y, std::int64_t i0, std::int64_t i1,
                  std::int64_t d, Bcast bc, bool s_first, bool relu, F f) {
  auto put = [&](std::int64_t i, float a, float b) {
    const float v = s_first ? f(b, a) : f(a, b);
    y[i] = relu ? (v > 0.f ? v : 0.f) : v;
  };
  switch (bc) {
    case Bcast::same: for (std::int64_t i = i0; i < i1; ++i) put(i, x[i], s[i]); break;
    case Bcast::scalar: { const float b = s[0]; for (std::int64_t i = i0; i < i1; ++i) put(i, x[i], b); break; }
    case Bcast::vector: for (std::int64_t i = i0; i < i1; ++i) put(i, x[i], s[i % d]); break;
    case Bcast::row: for (std::int64_t i = i0; i < i1; ++i) put(i, x[i], s[i / d]); break;
  }
}
}  // namespace detail

// y[i] = op(x[i]) for n elements.
inline void unary(Unary op, const float* x, float* y, std::int64_t n, ThreadPool& pool, int threads) {
  const int parts = split_parts(n, threads);
  pool.run(parts, [=](int t) {
    const std::int64_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    detail::with_unary(op, [&](auto f) {
      for (std::int64_t i = i0; i < i1; ++i) y[i] = f(x[i]);
    });
  });
}

// y = x op s (or s op x when s_first), s broadcast by bc; then max(y, 0) when relu.
inline void binary(Binary op, const float* x, const float* s, float* y, std::int64_t n, std::int64_t d, Bcast bc, bool s_first,
                   bool relu, ThreadPool& pool, int threads) {
  const int parts = split_parts(n, threads);
  pool.run(parts, [=](int t) {
    const std::int64_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    switch (op) {
      case Binary::add: detail::binary_range(x, s, y, i0, i1, d, bc, s_first, relu, [](float a, float b) { return a + b; }); break;
      case Binary::sub: detail::binary_range(x, s, y, i0, i1, d, bc, s_first, relu, [](float a, float b) { return a - b; }); break;
      case Binary::mul: detail::binary_range(x, s, y, i0, i1, d, bc, s_first, relu, [](float a, float b) { return a * b; }); break;
      case Binary::div: detail::binary_range(x, s, y, i0, i1, d, bc, s_first, relu, [](float a, float b) { return a / b; }); break;
      case Binary::pow:
        detail::binary_range(x, s, y, i0, i1, d, bc, s_first, relu, [](float a, float b) { return b == 2.f ? a * a : std::pow(a, b); });
        break;
    }
  });
}

// ReduceMean over the last axis (rows x d -> rows), accumulated in double as the reference.
inline void mean_last(const float* x, float* y, std::int64_t rows, std::int64_t d, ThreadPool& pool, int threads) {
  const int parts = split_parts(rows * d, threads);
  pool.run(parts, [=](int t) {
    for (std::int64_t r = rows * t / parts; r < rows * (t + 1) / parts; ++r) {
      double acc = 0;
      for (std::int64_t k = 0; k < d; ++k) acc += x[r * d + k];
      y[r] = static_cast<float>(acc / static_cast<double>(d));
    }
  });
}

// Softmax over the last axis, as the reference: max-shifted exp, sum in double.
inline void softmax_last(const float* x, float* y, std::int64_t rows, std::int64_t d, ThreadPool& pool, int threads) {
  const int parts = split_parts(rows * d, threads);
  pool.run(parts, [=](int t) {
    for (std::int64_t r = rows * t / parts; r < rows * (t + 1) / parts; ++r) {
      const float* a = x + r * d;
      float* o = y + r * d;
      float m = -std::numeric_limits<float>::infinity();
      for (std::int64_t k = 0; k < d; ++k) m = std::max(m, a[k]);
      double s = 0;
      for (std::int64_t k = 0; k < d; ++k) s += o[k] = std::exp(a[k] - m);
      for (std::int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(o[k] / s);
    }
  });
}

}  // namespace sparseloom::cpu
