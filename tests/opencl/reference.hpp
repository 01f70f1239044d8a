#pragma once
// Plain CPU references the OpenCL kernels are checked against, and small test helpers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "sparseloom/backends/opencl.hpp"

namespace sparseloom::opencl::test {

// One context for the whole test binary (SPARSELOOM_OPENCL_DEVICE picks the device).
inline Context& ctx() {
  static std::unique_ptr<Context> c = Context::open();
  return *c;
}

inline std::vector<float> random_vec(std::size_t n, unsigned seed, float lo = -1, float hi = 1) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Zeroes a fraction s of the entries, chosen at random (exact count).
inline void prune(std::vector<float>& w, double s, unsigned seed) {
  std::vector<std::size_t> idx(w.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), std::mt19937(seed));
  for (std::size_t i = 0; i < static_cast<std::size_t>(s * static_cast<double>(w.size())); ++i) w[idx[i]] = 0;
}

inline float act_ref(float v, Activation a, float p0 = 0, float p1 = 0) {
  switch (a) {
    case Activation::relu: return std::max(v, 0.0f);
    case Activation::clip: return std::clamp(v, p0, p1);
    case Activation::sigmoid: return 1.0f / (1.0f + std::exp(-v));
    case Activation::hardswish: return v * std::clamp(v + 3.0f, 0.0f, 6.0f) / 6.0f;
    case Activation::gelu: return 0.5f * v * (1.0f + std::erf(v / std::sqrt(2.0f)));
    case Activation::none: return v;
  }
  return v;
}

// Y = act(scale * W X + shift), W MxK, X KxN, double accumulation.
inline std::vector<float> gemm_ref(std::span<const float> w, std::span<const float> x, std::int64_t m, std::int64_t k,
                                   std::int64_t n, const Epilogue& e = {}) {
  std::vector<double> acc(static_cast<std::size_t>(m * n), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t p = 0; p < k; ++p) {
      const double a = w[static_cast<std::size_t>(i * k + p)];
      if (a == 0) continue;
      for (std::int64_t j = 0; j < n; ++j) acc[static_cast<std::size_t>(i * n + j)] += a * x[static_cast<std::size_t>(p * n + j)];
    }
  std::vector<float> y(acc.size());
  for (std::int64_t i = 0; i < m; ++i) {
    const float s = e.scale.empty() ? 1.0f : e.scale[static_cast<std::size_t>(i)];
    const float t = e.shift.empty() ? 0.0f : e.shift[static_cast<std::size_t>(i)];
    for (std::int64_t j = 0; j < n; ++j) {
      const auto q = static_cast<std::size_t>(i * n + j);
      y[q] = act_ref(static_cast<float>(s * acc[q] + t), e.act, e.p0, e.p1);
    }
  }
  return y;
}

inline double max_abs(std::span<const float> v) {
  double r = 0;
  for (float x : v) r = std::max(r, static_cast<double>(std::abs(x)));
  return r;
}
inline double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double r = 0;
  for (std::size_t i = 0; i < a.size(); ++i) r = std::max(r, static_cast<double>(std::abs(a[i] - b[i])));
  return r;
}

template <class T>
Buffer upload(std::span<const T> v) { return Buffer::upload(ctx(), v); }
template <class T>
Buffer upload(const std::vector<T>& v) { return Buffer::upload(ctx(), std::span<const T>(v)); }
inline Buffer scratch(std::size_t floats) { return Buffer(ctx(), floats * 4); }
inline std::vector<float> download(const Buffer& b, std::size_t floats) {
  std::vector<float> v(floats);
  b.read(std::span<float>(v));
  return v;
}

}  // namespace sparseloom::opencl::test
