#pragma once
// XNNPACK-style tester: a builder that describes one spmm problem (shape, sparsity pattern,
// epilogue, threads) and checks any format / microkernel against a scalar double reference.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "sparseloom/backends/cpu/onednn_dense.hpp"
#include "sparseloom/backends/cpu/spmm.hpp"

namespace sparseloom::cpu::testing {

enum class Pattern { random, block4x1, block8x1, two_of_four, dense, zero };

inline const char* to_string(Pattern p) {
  switch (p) {
    case Pattern::random: return "random";
    case Pattern::block4x1: return "block4x1";
    case Pattern::block8x1: return "block8x1";
    case Pattern::two_of_four: return "2:4";
    case Pattern::dense: return "dense";
    case Pattern::zero: return "zero";
  }
  return "?";
}

class SpmmTester {
 public:
  SpmmTester& m(std::int64_t v) { m_ = v; return *this; }
  SpmmTester& k(std::int64_t v) { k_ = v; return *this; }
  SpmmTester& n(std::int64_t v) { n_ = v; return *this; }
  SpmmTester& sparsity(double s) { sparsity_ = s; return *this; }
  SpmmTester& pattern(Pattern p) { pattern_ = p; return *this; }
  SpmmTester& empty_rows(bool e) { empty_rows_ = e; return *this; }
  SpmmTester& threads(int t) { threads_ = t; return *this; }
  SpmmTester& activation(Activation a) { act_ = a; return *this; }
  SpmmTester& seed(std::uint32_t s) { seed_ = s; return *this; }
  // test_qu8 also checks oneDNN's dense u8 x s8 matmul on the same problem.
  SpmmTester& with_onednn(bool b) { with_onednn_ = b; return *this; }

  // Dense W following the pattern, values in [-1, 1] away from 0.
  std::vector<float> make_w() const {
    std::mt19937 rng(seed_);
    std::uniform_real_distribution<float> val(0.1f, 1.f), u(0.f, 1.f);
    std::bernoulli_distribution sign(0.5);
    auto draw = [&] { return sign(rng) ? val(rng) : -val(rng); };
    std::vector<float> w(static_cast<std::size_t>(m_ * k_), 0.f);
    auto at = [&](std::int64_t i, std::int64_t j) -> float& { return w[static_cast<std::size_t>(i * k_ + j)]; };
    switch (pattern_) {
      case Pattern::zero: break;
      case Pattern::dense:
        for (auto& x : w) x = draw();
        break;
      case Pattern::random:
        for (auto& x : w) x = u(rng) >= sparsity_ ? draw() : 0.f;
        break;
      case Pattern::block4x1:
      case Pattern::block8x1: {
        const std::int64_t r = pattern_ == Pattern::block4x1 ? 4 : 8;
        for (std::int64_t i0 = 0; i0 < m_; i0 += r)
          for (std::int64_t j = 0; j < k_; ++j)
            if (u(rng) >= sparsity_)
              for (std::int64_t i = i0; i < std::min(i0 + r, m_); ++i) at(i, j) = draw();
        break;
      }
      case Pattern::two_of_four:
        for (std::int64_t i = 0; i < m_; ++i)
          for (std::int64_t g = 0; g < k_; g += 4) {
            const std::int64_t a = g + static_cast<std::int64_t>(rng() % 4), b = g + static_cast<std::int64_t>(rng() % 4);
            if (a < k_) at(i, a) = draw();
            if (b < k_ && u(rng) < 0.8f) at(i, b) = draw();
          }
        break;
    }
    if (empty_rows_)
      for (std::int64_t i = 0; i < m_; i += 3)
        for (std::int64_t j = 0; j < k_; ++j) at(i, j) = 0.f;
    return w;
  }

  std::vector<float> make_x() const {
    std::mt19937 rng(seed_ + 1);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::vector<float> x(static_cast<std::size_t>(k_ * n_));
    for (auto& v : x) v = d(rng);
    return x;
  }

  Epilogue make_epilogue() const {
    std::mt19937 rng(seed_ + 2);
    std::uniform_real_distribution<float> s(0.5f, 1.5f), b(-0.5f, 0.5f);
    Epilogue e = act_ == Activation::relu ? Epilogue::relu()
                 : act_ == Activation::clip ? Epilogue::clip(-0.7f, 0.9f) : Epilogue::none();
    std::vector<float> sc(static_cast<std::size_t>(m_)), sh(static_cast<std::size_t>(m_));
    for (auto& v : sc) v = s(rng);
    for (auto& v : sh) v = b(rng);
    return e.with_scale(sc).with_bias(sh);
  }

  // Reference Y in double, plus a per-element tolerance from sum |w*x|.
  void reference(const std::vector<float>& w, const std::vector<float>& x, const Epilogue& e,
                 std::vector<double>& y, std::vector<double>& tol) const {
    y.assign(static_cast<std::size_t>(m_ * n_), 0.0);
    tol.assign(y.size(), 0.0);
    for (std::int64_t i = 0; i < m_; ++i)
      for (std::int64_t c = 0; c < n_; ++c) {
        double acc = 0, mag = 0;
        for (std::int64_t j = 0; j < k_; ++j) {
          const double p = static_cast<double>(w[static_cast<std::size_t>(i * k_ + j)]) * x[static_cast<std::size_t>(j * n_ + c)];
          acc += p;
          mag += std::fabs(p);
        }
        const auto at = static_cast<std::size_t>(i * n_ + c);
        y[at] = e.apply(i, static_cast<float>(acc));
        tol[at] = 2e-6 * mag * 1.5 + 1e-6;
      }
  }

  // Checks format `f` with microkernel `ukernel` (empty: default) of family `isa`.
  void test_f32(Format f, Isa isa, const std::string& ukernel = {}, std::int64_t kc = 0) const {
    const auto w = make_w();
    const auto x = make_x();
    const auto e = make_epilogue();
    std::vector<double> ref, tol;
    reference(w, x, e, ref, tol);
    ThreadPool pool(threads_);
    SpmmF32 mm(f, w.data(), m_, k_, n_, e, threads_, isa, ukernel, kc);
    std::vector<float> y(static_cast<std::size_t>(m_ * n_), std::nanf(""));
    mm.run(x.data(), y.data(), pool);
    compare(y, ref, tol, mm.ukernel_name());
  }

  void test_dense_onednn() const {
    const auto w = make_w();
    const auto x = make_x();
    const auto e = make_epilogue();
    std::vector<double> ref, tol;
    reference(w, x, e, ref, tol);
    DenseF32 d(w.data(), m_, k_, n_, e);
    std::vector<float> y(static_cast<std::size_t>(m_ * n_), std::nanf(""));
    d.run(x.data(), y.data(), threads_);
    for (auto& t : tol) t *= 4;  // oneDNN may reassociate more
    compare(y, ref, tol, "onednn " + d.impl());
  }

  // INT8: quantised W (per-row s8) and u8 X (scale, zero point) against exact integer math,
  // and against oneDNN's u8 x s8 dense matmul.
  void test_qu8(Isa isa, const std::string& ukernel = {}, std::int64_t kc = 0) const {
    const auto wf = make_w();
    const auto qw = quantize_rows_s8(wf.data(), m_, k_);
    std::mt19937 rng(seed_ + 3);
    std::vector<std::uint8_t> xq(static_cast<std::size_t>(k_ * n_));
    for (auto& v : xq) v = static_cast<std::uint8_t>(rng() % 256);
    const ActivationQuant aq{0.02f, 117};
    const auto e = make_epilogue();
    std::vector<double> ref(static_cast<std::size_t>(m_ * n_)), tol(ref.size());
    for (std::int64_t i = 0; i < m_; ++i)
      for (std::int64_t c = 0; c < n_; ++c) {
        std::int64_t acc = 0;
        for (std::int64_t j = 0; j < k_; ++j)
          acc += static_cast<std::int64_t>(qw.q[static_cast<std::size_t>(i * k_ + j)]) *
                 (static_cast<std::int64_t>(xq[static_cast<std::size_t>(j * n_ + c)]) - aq.zero_point);
        const double real = static_cast<double>(acc) * qw.scale[static_cast<std::size_t>(i)] * aq.scale;
        const auto at = static_cast<std::size_t>(i * n_ + c);
        ref[at] = e.apply(i, static_cast<float>(real));
        // f32 rounding of a large s32 sum and of the folded zero-point term.
        tol[at] = 1e-5 * (std::fabs(real) + 1.0) + 2e-7 * 255.0 * 127.0 * static_cast<double>(k_) * qw.scale[static_cast<std::size_t>(i)] * aq.scale;
      }
    ThreadPool pool(threads_);
    SpmmQu8 mm(qw.q.data(), qw.scale.data(), m_, k_, n_, aq, e, threads_, isa, ukernel, kc);
    std::vector<float> y(ref.size(), std::nanf(""));
    mm.run(xq.data(), y.data(), pool);
    compare(y, ref, tol, mm.ukernel_name());
    if (!with_onednn_) return;
    DenseQu8 d(qw.q.data(), qw.scale.data(), m_, k_, n_, aq, e);
    std::vector<float> yd(ref.size(), std::nanf(""));
    d.run(xq.data(), yd.data(), threads_);
    compare(yd, ref, tol, "onednn-int8 " + d.impl());
  }

 private:
  void compare(const std::vector<float>& y, const std::vector<double>& ref, const std::vector<double>& tol,
               const std::string& what) const {
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
      if (!(std::fabs(y[i] - ref[i]) <= tol[i])) {
        if (!bad) first = i;
        ++bad;
      }
    INFO(what << " M=" << m_ << " K=" << k_ << " N=" << n_ << " pattern=" << to_string(pattern_)
              << " sparsity=" << sparsity_ << " threads=" << threads_ << " first bad index=" << first
              << (bad ? " got " + std::to_string(y[first]) + " want " + std::to_string(ref[first]) : std::string()));
    CHECK(bad == 0);
  }

  std::int64_t m_ = 16, k_ = 16, n_ = 16;
  double sparsity_ = 0.8;
  Pattern pattern_ = Pattern::random;
  bool empty_rows_ = false;
  int threads_ = 1;
  Activation act_ = Activation::clip;
  std::uint32_t seed_ = 42;
  bool with_onednn_ = false;
};

}  // namespace sparseloom::cpu::testing
