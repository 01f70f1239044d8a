// Every OpenCL kernel against a CPU reference computed here, on odd shapes, with tolerances.
#include <doctest/doctest.h>

#include "reference.hpp"

using namespace sparseloom::opencl;
using namespace sparseloom::opencl::test;

namespace {

struct Shape3 {
  std::int64_t m, k, n;
};

Epilogue test_epilogue(std::int64_t m, Activation a, unsigned seed) {
  Epilogue e;
  e.scale = random_vec(static_cast<std::size_t>(m), seed, 0.5f, 1.5f);
  e.shift = random_vec(static_cast<std::size_t>(m), seed + 1);
  e.act = a;
  if (a == Activation::clip) e.p0 = -0.5f, e.p1 = 0.75f;
  return e;
}

// Runs a bound-able op on X and compares to the reference with tolerance ~ f32 rounding of a
// K-term sum.
template <class Op>
void check_matmul(Op& op, const std::vector<float>& w, const Shape3& s, const Epilogue& e, unsigned seed) {
  const auto x = random_vec(static_cast<std::size_t>(s.k * s.n), seed);
  auto bx = upload(x);
  auto by = scratch(static_cast<std::size_t>(s.m * s.n));
  op.bind(bx, by);
  op.enqueue();
  const auto y = download(by, static_cast<std::size_t>(s.m * s.n));
  const auto ref = gemm_ref(w, x, s.m, s.k, s.n, e);
  const double tol = 1e-5 * (1.0 + max_abs(ref)) * std::sqrt(static_cast<double>(s.k) + 1.0) + 1e-5;
  INFO("M" << s.m << " K" << s.k << " N" << s.n << " err " << max_abs_diff(y, ref) << " tol " << tol);
  CHECK(max_abs_diff(y, ref) <= tol);
}

const Shape3 kShapes[] = {{1, 1, 1}, {7, 13, 5}, {65, 33, 70}, {33, 130, 49}, {96, 64, 196}};
const Activation kActs[] = {Activation::none, Activation::relu, Activation::gelu, Activation::clip, Activation::hardswish};

}  // namespace

TEST_CASE("OpenCL.Gemm.Dense") {
  unsigned seed = 1;
  // Split-K (partial planes + reduce with the epilogue), as GPUs pick for small M x N.
  GemmConfig sk3{32, 32}, sk4{64, 64};
  sk3.splitk = 3;
  sk4.splitk = 4;
  for (auto cfg : {GemmConfig{64, 64}, GemmConfig{32, 32}, GemmConfig{64, 64, true}, sk3, sk4}) {
    for (const auto& s : kShapes) {
      const auto w = random_vec(static_cast<std::size_t>(s.m * s.k), seed++);
      const auto e = test_epilogue(s.m, kActs[seed % 5], seed);
      DenseGemm op(ctx(), w, s.m, s.k, s.n, e, cfg);
      check_matmul(op, w, s, e, seed++);
    }
  }
}

TEST_CASE("OpenCL.Spmm.Csr") {
  unsigned seed = 100;
  const auto& d = ctx().device();
  for (const auto& s : kShapes) {
    auto w = random_vec(static_cast<std::size_t>(s.m * s.k), seed++);
    prune(w, 0.9, seed);
    if (s.m > 2) std::fill(w.begin(), w.begin() + s.k, 0.0f);  // an empty row
    const auto csr = CsrMatrix::from_dense(w, s.m, s.k);
    const auto e = test_epilogue(s.m, kActs[seed % 5], seed);
    // The device's default geometry on every shape; GPU-like ones (nonzero split with its
    // reduction, several rows per group, nonzeros staged through local memory in passes of 8
    // so rows take several passes) on two shapes, any device: each geometry is a build.
    std::vector<SpmmConfig> cfgs{default_spmm_config(d, s.n)};
    // Predicated steps (rows of 10 % of K = a few nonzeros per work-item: every step has
    // missing ones) and N split over groups (the last group partly past N).
    const SpmmConfig odd_n[] = {{1, 32, 4, 1}, {1, 32, 1, 3}, {1, 32, 2, 1, 8}, {1, 32, 4, 1, 0, 1, true},
                                {1, 32, 2, 2, 0, 2, true}, {1, 16, 1, 1, 0, 3, false}};
    const SpmmConfig vec_n[] = {{4, 32, 4, 2, 8}, {4, 64, 2, 1}, {4, 32, 8, 1, 0, 2, true}, {4, 64, 1, 1, 0, 1, true}};
    if (s.n == 70)
      for (const auto& c : odd_n) cfgs.push_back(c);
    if (s.n == 196)
      for (const auto& c : vec_n) cfgs.push_back(c);
    if (s.n == 1) cfgs.push_back(SpmmConfig{1, 32, 2, 1, 0, 1, true});
    for (const auto& c : cfgs) {
      INFO("config " << c.describe());
      CsrSpmm op(ctx(), csr, s.n, e, c);
      check_matmul(op, w, s, e, seed++);
    }
  }
}

TEST_CASE("OpenCL.Spmm.Bsr4x1") {
  unsigned seed = 200;
  const auto& d = ctx().device();
  for (const auto& s : kShapes) {
    auto w = random_vec(static_cast<std::size_t>(s.m * s.k), seed++);
    // Zero whole 4x1 blocks, plus scattered zeros inside kept blocks.
    std::mt19937 g(seed);
    for (std::int64_t b = 0; b < (s.m + 3) / 4; ++b)
      for (std::int64_t k = 0; k < s.k; ++k)
        if (g() % 10 < 8)
          for (std::int64_t r = b * 4; r < std::min(s.m, b * 4 + 4); ++r) w[static_cast<std::size_t>(r * s.k + k)] = 0;
    prune(w, 0.1, seed);
    const auto bsr = Bsr4x1Matrix::from_dense(w, s.m, s.k);
    const auto e = test_epilogue(s.m, kActs[seed % 5], seed);
    std::vector<SpmmConfig> cfgs{default_spmm_config(d, s.n)};
    if (s.n == 70) cfgs.push_back(SpmmConfig{1, 32, 4, 1});
    if (s.n == 70) cfgs.push_back(SpmmConfig{1, 32, 2, 1, 0, 2});
    if (s.n == 196) cfgs.push_back(SpmmConfig{4, 32, 2, 2});
    if (s.n == 196) cfgs.push_back(SpmmConfig{4, 32, 4, 1, 0, 2});
    for (const auto& c : cfgs) {
      INFO("config " << c.describe());
      Bsr4x1Spmm op(ctx(), bsr, s.n, e, c);
      check_matmul(op, w, s, e, seed++);
    }
  }
}

TEST_CASE("OpenCL.Gemm.Int8") {
  unsigned seed = 300;
  for (const auto& s : kShapes) {
    std::mt19937 g(seed++);
    std::vector<std::int8_t> w(static_cast<std::size_t>(s.m * s.k));
    std::vector<std::uint8_t> x(static_cast<std::size_t>(s.k * s.n));
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(g() % 255) - 127);
    for (auto& v : x) v = static_cast<std::uint8_t>(g() % 256);
    const int zx = 128;
    auto e = test_epilogue(s.m, Activation::relu, seed);
    for (auto& v : e.scale) v *= 1e-4f;  // a dequantisation scale
    Int8Gemm op(ctx(), w, s.m, s.k, s.n, zx, e);
    auto bx = upload(x);
    auto by = scratch(static_cast<std::size_t>(s.m * s.n));
    op.bind(bx, by);
    op.enqueue();
    const auto y = download(by, static_cast<std::size_t>(s.m * s.n));
    std::vector<float> ref(y.size());
    for (std::int64_t i = 0; i < s.m; ++i)
      for (std::int64_t j = 0; j < s.n; ++j) {
        std::int64_t acc = 0;
        for (std::int64_t p = 0; p < s.k; ++p)
          acc += w[static_cast<std::size_t>(i * s.k + p)] * (x[static_cast<std::size_t>(p * s.n + j)] - zx);
        const auto q = static_cast<std::size_t>(i * s.n + j);
        ref[q] = act_ref(e.scale[static_cast<std::size_t>(i)] * static_cast<float>(acc) + e.shift[static_cast<std::size_t>(i)], e.act);
      }
    INFO("M" << s.m << " K" << s.k << " N" << s.n);
    CHECK(max_abs_diff(y, ref) <= 1e-5 * (1 + max_abs(ref)));
  }
}

namespace {
std::vector<float> conv_ref(const Conv2dParams& p, const std::vector<float>& x, const std::vector<float>& w,
                            const Epilogue& e) {
  const auto oh = p.oh(), ow = p.ow(), cg = p.c / p.groups, og = p.cout / p.groups;
  std::vector<float> y(static_cast<std::size_t>(p.cout * oh * ow));
  for (std::int64_t o = 0; o < p.cout; ++o)
    for (std::int64_t i = 0; i < oh; ++i)
      for (std::int64_t j = 0; j < ow; ++j) {
        double acc = 0;
        const std::int64_t g = o / og;
        for (std::int64_t c = 0; c < cg; ++c)
          for (std::int64_t a = 0; a < p.kh; ++a)
            for (std::int64_t b = 0; b < p.kw; ++b) {
              const auto ih = i * p.sh - p.ph + a * p.dh, iw = j * p.sw - p.pw + b * p.dw;
              if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
              acc += static_cast<double>(w[static_cast<std::size_t>(((o * cg + c) * p.kh + a) * p.kw + b)]) *
                     x[static_cast<std::size_t>(((g * cg + c) * p.h + ih) * p.w + iw)];
            }
        const float s = e.scale.empty() ? 1.0f : e.scale[static_cast<std::size_t>(o)];
        const float t = e.shift.empty() ? 0.0f : e.shift[static_cast<std::size_t>(o)];
        y[static_cast<std::size_t>((o * oh + i) * ow + j)] = act_ref(static_cast<float>(s * acc + t), e.act, e.p0, e.p1);
      }
  return y;
}
}  // namespace

TEST_CASE("OpenCL.Conv2d") {
  struct Case {
    const char* name;
    Conv2dParams p;
    WeightFormat format;
    double sparsity;
  };
  const Case cases[] = {
      {"3x3 s2 p1 dense", {5, 11, 9, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1}, WeightFormat::dense, 0},
      {"3x3 s1 p1 csr", {8, 7, 7, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1}, WeightFormat::csr, 0.9},
      {"5x5 dilated bsr", {4, 12, 10, 10, 5, 5, 1, 1, 2, 2, 2, 1, 1}, WeightFormat::bsr4x1, 0.5},
      {"1x1 pointwise auto", {16, 6, 5, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1}, WeightFormat::automatic, 0.95},
      {"depthwise 3x3 s2", {10, 9, 13, 10, 3, 3, 2, 2, 1, 1, 1, 1, 10}, WeightFormat::automatic, 0},
      {"1-D conv k9", {6, 1, 40, 8, 1, 9, 1, 2, 0, 4, 1, 1, 1}, WeightFormat::automatic, 0.7},
  };
  unsigned seed = 400;
  for (const auto& c : cases) {
    INFO(c.name);
    const auto& p = c.p;
    auto w = random_vec(static_cast<std::size_t>(p.cout * (p.c / p.groups) * p.kh * p.kw), seed++);
    prune(w, c.sparsity, seed);
    const auto x = random_vec(static_cast<std::size_t>(p.c * p.h * p.w), seed++);
    const auto e = test_epilogue(p.cout, Activation::relu, seed++);
    MatMul::Options opt;
    opt.format = c.format;
    opt.quick = true;
    opt.trial_reps = 2;
    Conv2d conv(ctx(), p, w, e, opt);
    auto bx = upload(x);
    auto by = scratch(static_cast<std::size_t>(p.cout * p.oh() * p.ow()));
    conv.bind(bx, by);
    conv.enqueue();
    const auto y = download(by, static_cast<std::size_t>(p.cout * p.oh() * p.ow()));
    const auto ref = conv_ref(p, x, w, e);
    INFO("kernel " << conv.describe());
    CHECK(max_abs_diff(y, ref) <= 1e-4 * (1 + max_abs(ref)));
  }
  CHECK_THROWS_AS(Conv2d(ctx(), Conv2dParams{4, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2}, std::vector<float>(8 * 2 * 9)),
                  sparseloom::Error);
}

TEST_CASE("OpenCL.MatMul.FormatChoice") {
  const Shape3 s{64, 256, 32};
  MatMul::Options opt;
  opt.quick = true;
  opt.trial_reps = 3;
  {
    const auto w = random_vec(static_cast<std::size_t>(s.m * s.k), 500);
    auto mm = MatMul::create(ctx(), w, s.m, s.k, s.n, {}, opt);
    CHECK(mm.format() == WeightFormat::dense);  // no zeros: sparse formats do not compete
    CHECK(!mm.trials().empty());                // GPUs also try split-K dense geometries
    for (const auto& t : mm.trials()) CHECK(t.kernel.rfind("dense", 0) == 0);
    check_matmul(mm, w, s, {}, 501);
  }
  {
    auto w = random_vec(static_cast<std::size_t>(s.m * s.k), 502);
    prune(w, 0.97, 503);
    auto mm = MatMul::create(ctx(), w, s.m, s.k, s.n, {}, opt);
    CHECK(mm.trials().size() >= 2);  // dense and CSR both timed; the faster one is kept
    double best = 1e300;
    for (const auto& t : mm.trials()) best = std::min(best, t.ms);
    CHECK(best > 0);
    check_matmul(mm, w, s, {}, 504);
  }
}

TEST_CASE("OpenCL.Elementwise") {
  const std::int64_t n = 1037;
  const auto x = random_vec(static_cast<std::size_t>(n), 600, -5, 5);
  auto bx = upload(x);
  auto by = scratch(static_cast<std::size_t>(n));
  for (auto a : {Activation::relu, Activation::clip, Activation::sigmoid, Activation::hardswish, Activation::gelu}) {
    Unary op(ctx(), n, a, 0.0f, 6.0f);
    op.bind(bx, by);
    op.enqueue();
    const auto y = download(by, static_cast<std::size_t>(n));
    double err = 0;
    for (std::int64_t i = 0; i < n; ++i)
      err = std::max(err, static_cast<double>(std::abs(y[static_cast<std::size_t>(i)] -
                                                       act_ref(x[static_cast<std::size_t>(i)], a, 0.0f, 6.0f))));
    INFO("activation " << static_cast<int>(a));
    CHECK(err <= 2e-6 * 5);
  }
  // Binary with each broadcast: full, scalar, per-channel (C=7, inner=13 -> 91 per image... n=1037=91*11+36).
  const std::int64_t inner = 13, channels = 7;
  const auto bfull = random_vec(static_cast<std::size_t>(n), 601);
  const auto bch = random_vec(static_cast<std::size_t>(channels), 602);
  const std::vector<float> bsc{2.5f};
  struct Case {
    BinaryOp op;
    Broadcast br;
    const std::vector<float>* b;
    Activation act;
  };
  const Case cases[] = {{BinaryOp::add, {Broadcast::full, 1, 1}, &bfull, Activation::relu},
                        {BinaryOp::mul, {Broadcast::scalar, 1, 1}, &bsc, Activation::none},
                        {BinaryOp::add, {Broadcast::channel, inner, channels}, &bch, Activation::none},
                        {BinaryOp::mul, {Broadcast::channel, inner, channels}, &bch, Activation::sigmoid}};
  for (const auto& c : cases) {
    auto bb = upload(*c.b);
    Binary op(ctx(), n, c.op, c.br, c.act);
    op.bind(bx, bb, by);
    op.enqueue();
    const auto y = download(by, static_cast<std::size_t>(n));
    double err = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const float bv = c.br.mode == Broadcast::full     ? (*c.b)[static_cast<std::size_t>(i)]
                       : c.br.mode == Broadcast::scalar ? (*c.b)[0]
                                                        : (*c.b)[static_cast<std::size_t>((i / inner) % channels)];
      const float xv = x[static_cast<std::size_t>(i)];
      const float r = act_ref(c.op == BinaryOp::add ? xv + bv : xv * bv, c.act);
      err = std::max(err, static_cast<double>(std::abs(y[static_cast<std::size_t>(i)] - r)));
    }
    CHECK(err <= 1e-5);
  }
}

TEST_CASE("OpenCL.Pool") {
  const std::int64_t c = 3, h = 11, w = 9;
  const auto x = random_vec(static_cast<std::size_t>(c * h * w), 700);
  auto bx = upload(x);
  for (bool is_max : {true, false})
    for (bool incl : {false, true}) {
      Pool2dParams p{c, h, w, 3, 2, 2, 2, 1, 1, is_max, incl};
      auto by = scratch(static_cast<std::size_t>(c * p.oh() * p.ow()));
      Pool2d op(ctx(), p);
      op.bind(bx, by);
      op.enqueue();
      const auto y = download(by, static_cast<std::size_t>(c * p.oh() * p.ow()));
      double err = 0;
      for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t i = 0; i < p.oh(); ++i)
          for (std::int64_t j = 0; j < p.ow(); ++j) {
            float acc = is_max ? -INFINITY : 0.0f;
            int cnt = 0;
            for (std::int64_t a = 0; a < p.kh; ++a)
              for (std::int64_t b = 0; b < p.kw; ++b) {
                const auto ih = i * p.sh - p.ph + a, iw = j * p.sw - p.pw + b;
                if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                const float v = x[static_cast<std::size_t>((ch * h + ih) * w + iw)];
                acc = is_max ? std::max(acc, v) : acc + v;
                ++cnt;
              }
            if (!is_max) acc /= static_cast<float>(incl ? p.kh * p.kw : cnt);
            err = std::max(err, static_cast<double>(std::abs(acc - y[static_cast<std::size_t>((ch * p.oh() + i) * p.ow() + j)])));
          }
      CHECK(err <= 1e-6);
    }
  const std::int64_t hw = 197;
  const auto g = random_vec(static_cast<std::size_t>(5 * hw), 701);
  auto bg = upload(g);
  auto bo = scratch(5);
  GlobalAvgPool gap(ctx(), 5, hw);
  gap.bind(bg, bo);
  gap.enqueue();
  const auto y = download(bo, 5);
  for (std::int64_t ch = 0; ch < 5; ++ch) {
    double s = 0;
    for (std::int64_t i = 0; i < hw; ++i) s += g[static_cast<std::size_t>(ch * hw + i)];
    CHECK(std::abs(y[static_cast<std::size_t>(ch)] - s / hw) <= 1e-6);
  }
}

TEST_CASE("OpenCL.Norm") {
  for (std::int64_t cols : {1, 10, 128, 300, 769}) {
    const std::int64_t rows = 6;
    INFO("cols " << cols);
    auto x = random_vec(static_cast<std::size_t>(rows * cols), 800 + static_cast<unsigned>(cols), -8, 8);
    x[0] = 80.0f;  // softmax must subtract the max
    auto bx = upload(x);
    auto by = scratch(static_cast<std::size_t>(rows * cols));
    Softmax sm(ctx(), rows, cols);
    sm.bind(bx, by);
    sm.enqueue();
    auto y = download(by, static_cast<std::size_t>(rows * cols));
    double err = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = &x[static_cast<std::size_t>(r * cols)];
      const double mx = *std::max_element(xr, xr + cols);
      double s = 0;
      for (std::int64_t i = 0; i < cols; ++i) s += std::exp(xr[i] - mx);
      for (std::int64_t i = 0; i < cols; ++i)
        err = std::max(err, std::abs(std::exp(xr[i] - mx) / s - y[static_cast<std::size_t>(r * cols + i)]));
    }
    CHECK(err <= 1e-6);

    const auto gamma = random_vec(static_cast<std::size_t>(cols), 850);
    const auto beta = random_vec(static_cast<std::size_t>(cols), 851);
    LayerNorm ln(ctx(), rows, cols, gamma, beta, 1e-5f);
    ln.bind(bx, by);
    ln.enqueue();
    y = download(by, static_cast<std::size_t>(rows * cols));
    err = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = &x[static_cast<std::size_t>(r * cols)];
      double mean = 0, var = 0;
      for (std::int64_t i = 0; i < cols; ++i) mean += xr[i];
      mean /= static_cast<double>(cols);
      for (std::int64_t i = 0; i < cols; ++i) var += (xr[i] - mean) * (xr[i] - mean);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(cols) + 1e-5);
      for (std::int64_t i = 0; i < cols; ++i)
        err = std::max(err, std::abs((xr[i] - mean) * rstd * gamma[static_cast<std::size_t>(i)] +
                                     beta[static_cast<std::size_t>(i)] - y[static_cast<std::size_t>(r * cols + i)]));
    }
    CHECK(err <= 1e-4);
  }
}
