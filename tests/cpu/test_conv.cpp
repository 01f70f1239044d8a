// Convolutions (1x1, k x k with stride/padding/dilation, depthwise) and the per-layer format
// choice, against a direct double reference.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <random>

#include "sparseloom/backends/cpu/conv.hpp"

using namespace sparseloom::cpu;

namespace {

std::vector<float> random_vec(std::size_t n, double sparsity, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f), u(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng) >= sparsity ? d(rng) : 0.f;
  return v;
}

void check_conv(const Conv2dShape& s, double sparsity, int threads, Im2col mode = Im2col::measured,
                std::vector<Format> formats = {}) {
  const std::int64_t cpg = s.cin / s.groups, opg = s.cout / s.groups;
  auto w = random_vec(static_cast<std::size_t>(s.cout * cpg * s.kh * s.kw), sparsity, 1);
  auto x = random_vec(static_cast<std::size_t>(s.cin * s.h * s.w), 0.0, 2);
  std::vector<float> bias(static_cast<std::size_t>(s.cout));
  for (std::size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * static_cast<float>(i);
  const Epilogue e = Epilogue::relu().with_bias(bias);
  ThreadPool pool(threads);
  ChoiceOptions opt;
  opt.threads = threads;
  opt.budget_ms = 0.2;
  opt.formats = formats;
  Conv2dF32 conv(s, w.data(), e, pool, opt, mode);
  if (mode == Im2col::implicit && s.stride_h == 1 && s.stride_w == 1) CHECK(conv.implicit_im2col());
  if (mode == Im2col::materialised) CHECK(!conv.implicit_im2col());
  const std::int64_t oh = s.out_h(), ow = s.out_w();
  std::vector<float> y(static_cast<std::size_t>(s.cout * oh * ow), std::nanf(""));
  conv.run(x.data(), y.data(), pool);
  conv.run(x.data(), y.data(), pool);  // again: workspaces are reused
  std::size_t bad = 0;
  for (std::int64_t o = 0; o < s.cout; ++o) {
    const std::int64_t g = o / opg;
    for (std::int64_t oy = 0; oy < oh; ++oy)
      for (std::int64_t ox = 0; ox < ow; ++ox) {
        double acc = 0, mag = 0;
        for (std::int64_t c = 0; c < cpg; ++c)
          for (std::int64_t i = 0; i < s.kh; ++i)
            for (std::int64_t j = 0; j < s.kw; ++j) {
              const std::int64_t iy = oy * s.stride_h - s.pad_top + i * s.dil_h, ix = ox * s.stride_w - s.pad_left + j * s.dil_w;
              if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
              const double p = static_cast<double>(w[static_cast<std::size_t>(((o * cpg + c) * s.kh + i) * s.kw + j)]) *
                               x[static_cast<std::size_t>(((g * cpg + c) * s.h + iy) * s.w + ix)];
              acc += p;
              mag += std::fabs(p);
            }
        const double ref = std::max(0.0, acc + bias[static_cast<std::size_t>(o)]);
        const float got = y[static_cast<std::size_t>((o * oh + oy) * ow + ox)];
        if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-5)) ++bad;
      }
  }
  INFO("cin=" << s.cin << " cout=" << s.cout << " k=" << s.kh << "x" << s.kw << " stride=" << s.stride_h
               << " groups=" << s.groups << " sparsity=" << sparsity << " threads=" << threads << " kernel="
               << (conv.matmul() ? conv.matmul()->kernel() : std::string("depthwise")));
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("Cpu.Conv.Pointwise") {
  for (double sp : {0.0, 0.9})
    for (int t : {1, 2}) check_conv({.cin = 24, .cout = 20, .h = 7, .w = 9}, sp, t);
}

TEST_CASE("Cpu.Conv.KxK") {
  for (int t : {1, 2}) {
    check_conv({.cin = 8, .cout = 12, .h = 9, .w = 11, .kh = 3, .kw = 3, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1}, 0.8, t);
    check_conv({.cin = 5, .cout = 6, .h = 10, .w = 7, .kh = 3, .kw = 2, .stride_h = 2, .stride_w = 2, .pad_top = 1}, 0.5, t);
    check_conv({.cin = 4, .cout = 9, .h = 8, .w = 8, .kh = 3, .kw = 3, .pad_top = 2, .pad_left = 2, .pad_bottom = 2, .pad_right = 2, .dil_h = 2, .dil_w = 2}, 0.9, t);
    check_conv({.cin = 6, .cout = 7, .h = 6, .w = 6, .stride_h = 2, .stride_w = 2}, 0.7, t);
  }
}

TEST_CASE("Cpu.Conv.ImplicitIm2col") {
  // Stride-1 k x k layers read the zero-padded planes through per-row offsets (no im2col):
  // symmetric, one-sided and no padding, dilation, non-square kernels, CSR and 4x1 BSR, run
  // twice (the padded planes' borders must stay zero), 1 and 2 threads.
  const std::vector<Conv2dShape> shapes = {
      {.cin = 8, .cout = 12, .h = 9, .w = 11, .kh = 3, .kw = 3, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1},
      {.cin = 5, .cout = 6, .h = 10, .w = 7, .kh = 3, .kw = 2, .pad_top = 1},
      {.cin = 4, .cout = 9, .h = 8, .w = 8, .kh = 3, .kw = 3, .pad_top = 2, .pad_left = 2, .pad_bottom = 2, .pad_right = 2, .dil_h = 2, .dil_w = 2},
      {.cin = 3, .cout = 16, .h = 12, .w = 12, .kh = 5, .kw = 5},
      {.cin = 7, .cout = 8, .h = 1, .w = 40, .kh = 1, .kw = 3, .pad_left = 1, .pad_right = 1}};
  for (int t : {1, 2})
    for (const auto& s : shapes)
      for (auto f : {Format::csr, Format::bsr4x1}) {
        check_conv(s, 0.8, t, Im2col::implicit, {f});
        check_conv(s, 0.8, t, Im2col::materialised, {f});
      }
}

TEST_CASE("Cpu.Conv.Depthwise") {
  for (int t : {1, 2}) {
    check_conv({.cin = 16, .cout = 16, .h = 9, .w = 7, .kh = 3, .kw = 3, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1, .groups = 16}, 0.0, t);
    check_conv({.cin = 8, .cout = 8, .h = 10, .w = 10, .kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2, .pad_top = 1, .pad_left = 1, .groups = 8}, 0.0, t);
  }
}

TEST_CASE("Cpu.FormatChoice.PicksAndRuns") {
  // The choice keeps the candidate its trial measured fastest, whichever that is on this
  // machine: which format wins is a speed question for bench/kernels, not for a test (a timed
  // assertion failed once in CI on a loaded Xeon). What must hold everywhere: dense and the
  // sparse formats all compete on 97 % sparse weights, the kept one is the argmin of the
  // recorded times, and it computes W * X.
  ThreadPool pool(2);
  ChoiceOptions opt;
  opt.threads = 2;
  opt.budget_ms = 0.5;
  opt.use_cache = false;  // a fresh trial, not an earlier test's decision
  const std::int64_t m = 256, k = 512, n = 64;
  auto w = random_vec(static_cast<std::size_t>(m * k), 0.97, 3);
  auto x = random_vec(static_cast<std::size_t>(k * n), 0.0, 5);
  auto mm = prepare_matmul(w.data(), m, k, n, Epilogue::none(), pool, opt);
  const auto& tried = mm.candidates();
  for (const auto& c : tried) MESSAGE(c.kernel << ": " << c.ms << " ms");
  REQUIRE(tried.size() >= 2);
  CHECK(std::any_of(tried.begin(), tried.end(), [](const Candidate& c) { return c.format == Format::dense; }));
  CHECK(std::any_of(tried.begin(), tried.end(), [](const Candidate& c) { return c.format == Format::csr; }));
  const auto fastest = std::min_element(tried.begin(), tried.end(), [](const Candidate& a, const Candidate& b) { return a.ms < b.ms; });
  CHECK(mm.format() == fastest->format);
  CHECK(mm.kernel() == fastest->kernel);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  mm.run(x.data(), y.data(), pool);
  double worst = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (std::int64_t p = 0; p < k; ++p) ref += double(w[static_cast<std::size_t>(i * k + p)]) * x[static_cast<std::size_t>(p * n + j)];
      worst = std::max(worst, std::abs(ref - y[static_cast<std::size_t>(i * n + j)]));
    }
  CHECK(worst < 1e-3);
  // Without dense the kept one is sparse; without zeros no sparse format is plausible.
  auto sparse_only = opt;
  sparse_only.allow_dense = false;
  CHECK(prepare_matmul(w.data(), m, k, n, Epilogue::none(), pool, sparse_only).format() != Format::dense);
  auto wd = random_vec(64 * 64, 0.0, 4);
  auto md = prepare_matmul(wd.data(), 64, 64, 64, Epilogue::none(), pool, opt);
  MESSAGE("dense -> " << md.kernel());
  CHECK(md.candidates().size() == 1);
  CHECK(md.format() == Format::dense);
  CHECK_THROWS_AS(Conv2dF32({.cin = 4, .cout = 4, .h = 4, .w = 4, .groups = 2}, wd.data(), {}, pool, opt), sparseloom::Error);
}
