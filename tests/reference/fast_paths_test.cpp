// The reference backend's fast paths (strided transpose, trailing-axis ReduceMean, im2col with
// its padding split out and no copy for 1x1 convs, constant nodes evaluated at compile time)
// must give bit-identical results to the plain formulation they replace: every check here is
// exact equality against a naive version written out in the test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/ir/infer.hpp"

using namespace sparseloom;

namespace {

Tensor random_f32(const Shape& s, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<std::size_t>(numel_of(s)));
  for (auto& e : v) e = d(rng);
  return Tensor::from<float>(s, v);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Output element o reads input element sum_i o[i] * stride[perm[i]].
Tensor naive_transpose(const Tensor& x, const std::vector<std::int64_t>& perm) {
  Shape os;
  for (auto p : perm) os.push_back(x.shape()[p]);
  const Shape xs = contiguous_strides(x.shape());
  Tensor y = Tensor::empty(os, x.dtype());
  const auto es = size_of(x.dtype());
  std::vector<std::int64_t> o(os.size(), 0);
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    std::int64_t f = 0;
    for (std::size_t a = 0; a < perm.size(); ++a) f += o[a] * xs[perm[a]];
    std::memcpy(y.raw() + i * es, x.raw() + f * es, es);
    for (std::size_t a = os.size(); a-- > 0;) {
      if (++o[a] < os[a]) break;
      o[a] = 0;
    }
  }
  return y;
}

// im2col with a bounds check per element, then the backend's own GEMM and bias: what conv()
// computed before its padding split and 1x1 shortcut.
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor* bias, const reference::ConvParams& p, int threads) {
  const bool one_d = x.rank() == 3;
  const auto N = x.dim(0), C = x.dim(1), M = w.dim(0);
  const auto H = one_d ? 1 : x.dim(2), W = x.shape().back();
  const auto KH = one_d ? 1 : w.dim(2), KW = w.shape().back();
  const std::size_t s = one_d ? 1 : 2;
  const auto SH = one_d ? 1 : p.win.strides[0], SW = p.win.strides.back();
  const auto DH = one_d ? 1 : p.win.dilations[0], DW = p.win.dilations.back();
  const auto PH = one_d ? 0 : p.win.pads[0], PW = p.win.pads[s - 1];
  const auto OH = one_d ? 1 : p.win.out[0], OW = p.win.out.back();
  const auto G = p.group, Cg = C / G, Mg = M / G, K = Cg * KH * KW, P = OH * OW;
  Shape os{N, M};
  for (auto o : p.win.out) os.push_back(o);
  Tensor y = Tensor::empty(os, DType::f32);
  std::vector<float> col(static_cast<std::size_t>(K * P));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t g = 0; g < G; ++g) {
      const float* xg = x.data<float>() + (n * C + g * Cg) * H * W;
      for (std::int64_t c = 0; c < Cg; ++c)
        for (std::int64_t kh = 0; kh < KH; ++kh)
          for (std::int64_t kw = 0; kw < KW; ++kw)
            for (std::int64_t oh = 0; oh < OH; ++oh)
              for (std::int64_t ow = 0; ow < OW; ++ow) {
                const auto ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
                col[((c * KH + kh) * KW + kw) * P + oh * OW + ow] =
                    (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xg[(c * H + ih) * W + iw] : 0.f;
              }
      float* yg = y.data<float>() + (n * M + g * Mg) * P;
      reference::matmul_rows(w.data<float>() + g * Mg * K, col.data(), yg, Mg, K, P, G > 1 ? 1 : threads);
      if (bias)
        for (std::int64_t m = 0; m < Mg; ++m)
          for (std::int64_t i = 0; i < P; ++i) yg[m * P + i] += bias->data<float>()[g * Mg + m];
    }
  return y;
}

}  // namespace

TEST_CASE("Reference.FastPaths.TransposeMatchesTheIndexFormula") {
  const std::vector<Shape> shapes = {{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 5}, {1, 16, 4, 16}, {3, 0, 2}};
  std::uint32_t seed = 1;
  for (const auto& s : shapes) {
    const Tensor x = random_f32(s, seed++);
    std::vector<std::int64_t> perm(s.size());
    std::iota(perm.begin(), perm.end(), 0);
    do {
      CAPTURE(to_string(s));
      CAPTURE(to_string(perm));
      CHECK(same_bits(reference::transpose(x, perm), naive_transpose(x, perm)));
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
  // Other element sizes, a strided view as input, the empty perm (reverse) and a rank-0 tensor.
  const Tensor i64 = Tensor::from<std::int64_t>({2, 3, 4}, [] {
    std::vector<std::int64_t> v(24);
    std::iota(v.begin(), v.end(), -5);
    return v;
  }());
  CHECK(same_bits(reference::transpose(i64, {2, 0, 1}), naive_transpose(i64, {2, 0, 1})));
  const Tensor view = random_f32({4, 6}, 99).slice(1, 1, 5);
  CHECK(same_bits(reference::transpose(view, {1, 0}), naive_transpose(view.contiguous(), {1, 0})));
  CHECK(same_bits(reference::transpose(i64, {}), naive_transpose(i64, {2, 1, 0})));
  const Tensor scalar = Tensor::from<float>({}, std::vector<float>{3.5f});
  CHECK(same_bits(reference::transpose(scalar, {}), scalar));
  CHECK_THROWS_AS(reference::transpose(i64, {0, 1}), Error);
}

TEST_CASE("Reference.FastPaths.ReduceMeanOverTrailingAxesSumsInOrder") {
  const Tensor x = random_f32({2, 3, 4, 5}, 7);
  for (const auto& axes : std::vector<std::vector<std::int64_t>>{{-1}, {2, 3}, {1, 2, 3}, {}, {1}, {0, 2}}) {
    CAPTURE(to_string(axes));
    std::vector<bool> red(4, axes.empty());
    for (auto a : axes) red[static_cast<std::size_t>(a < 0 ? a + 4 : a)] = true;
    // Naive: accumulate in double in input order into the kept index.
    Shape keep = x.shape();
    std::int64_t count = 1;
    for (std::size_t i = 0; i < 4; ++i)
      if (red[i]) { count *= keep[i]; keep[i] = 1; }
    std::vector<double> acc(static_cast<std::size_t>(numel_of(keep)), 0.0);
    const Shape ks = contiguous_strides(keep);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      std::int64_t rem = i, o = 0;
      for (std::size_t d = 4; d-- > 0;) {
        const auto idx = rem % x.dim(d);
        rem /= x.dim(d);
        if (!red[d]) o += idx * ks[d];
      }
      acc[static_cast<std::size_t>(o)] += x.data<float>()[i];
    }
    const Tensor y = reference::reduce_mean(x, axes, true);
    REQUIRE(y.shape() == keep);
    for (std::size_t i = 0; i < acc.size(); ++i)
      CHECK(y.data<float>()[i] == static_cast<float>(acc[i] / static_cast<double>(count)));
  }
}

TEST_CASE("Reference.FastPaths.ConvEqualsPlainIm2col") {
  struct Case {
    Shape x, w;
    std::vector<std::int64_t> strides, dilations, pads;
    std::int64_t group;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{1, 3, 9, 8}, {5, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, true},
      {{2, 4, 11, 7}, {6, 4, 3, 2}, {2, 3}, {1, 2}, {1, 2, 0, 1}, 1, false},
      {{1, 4, 6, 6}, {8, 4, 1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 1, true},   // 1x1: no column copy
      {{1, 4, 6, 6}, {8, 2, 1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 2, false},  // grouped 1x1
      {{1, 4, 7, 7}, {8, 4, 1, 1}, {2, 2}, {1, 1}, {0, 0, 0, 0}, 1, true},   // 1x1 strided: im2col
      {{1, 4, 5, 5}, {4, 4, 1, 1}, {1, 1}, {1, 1}, {1, 1, 1, 1}, 1, false},  // 1x1 padded: im2col
      {{1, 8, 9, 9}, {8, 1, 3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, 8, true},   // depthwise
      {{1, 2, 4, 3}, {3, 2, 3, 3}, {1, 2}, {2, 3}, {4, 5, 3, 6}, 1, true},   // pads beyond the input
      {{1, 1, 2, 2}, {1, 1, 1, 3}, {1, 1}, {1, 3}, {0, 0, 0, 6}, 1, true},   // taps wholly in the padding
      {{2, 4, 50}, {6, 4, 5}, {3}, {1}, {2, 2}, 1, true},                    // 1-D
      {{1, 3, 20}, {2, 3, 3}, {1}, {4}, {0, 9}, 1, false},                   // 1-D, dilated
  };
  std::uint32_t seed = 11;
  for (const auto& c : cases) {
    CAPTURE(to_string(c.x));
    CAPTURE(to_string(c.w));
    const Tensor x = random_f32(c.x, seed++), w = random_f32(c.w, seed++), b = random_f32({c.w[0]}, seed++);
    const Shape ks(c.w.begin() + 2, c.w.end());
    reference::ConvParams p{ir::make_window(c.x, ks, c.strides, c.dilations, c.pads, "NOTSET", false, "test"), c.group};
    // Threads split the GEMM's rows (Eigen's blocking, so the rounding, may differ by thread
    // count): each count is compared with the plain version at the same count.
    for (int threads : {1, 2})
      CHECK(same_bits(reference::conv(x, w, c.bias ? &b : nullptr, p, threads), naive_conv(x, w, c.bias ? &b : nullptr, p, threads)));
  }
}

TEST_CASE("Reference.FastPaths.ConstantNodesComputedOnceStillObservedEveryRun") {
  // y = x + DequantizeLinear(wq, s, zp): the DQ node's inputs are all initializers.
  ir::Graph g;
  g.source = "test";
  g.inputs = {{"x", {1, 4}, DType::f32}};
  g.values["x"] = g.inputs[0];
  const std::vector<std::int8_t> q{-7, 0, 5, 100};
  g.initializers["wq"] = Tensor::from<std::int8_t>({1, 4}, q);
  g.initializers["s"] = Tensor::from<float>({}, std::vector<float>{0.25f});
  g.initializers["zp"] = Tensor::from<std::int8_t>({}, std::vector<std::int8_t>{3});
  for (const auto& n : {"wq", "s", "zp"}) g.values[n] = {n, g.initializers[n].shape(), g.initializers[n].dtype()};
  g.nodes.push_back({"dq", "DequantizeLinear", {"wq", "s", "zp"}, {"w"}, {}});
  g.nodes.push_back({"add", "Add", {"x", "w"}, {"y"}, {}});
  g.outputs = {{"y", {}, DType::f32}};
  ir::infer_shapes(g);
  const auto exe = reference::Backend{}.compile(g);
  for (int run = 0; run < 2; ++run) {
    const Tensor x = random_f32({1, 4}, 40 + run);
    int seen = 0;
    RunOptions ro;
    ro.observe = [&](const std::string& name, const Tensor& t) {
      if (name != "w") return;
      ++seen;
      for (int i = 0; i < 4; ++i) {
        const float w = static_cast<float>(q[i] - 3) * 0.25f;
        CHECK(t.data<float>()[i] == (run == 0 ? w * 2.f + 1.f : w));  // observed after the affine
      }
    };
    // An affine repair on the constant's output applies to that run only.
    AffineMap aff;
    aff["w"] = {{2.f, 2.f, 2.f, 2.f}, {1.f, 1.f, 1.f, 1.f}};
    if (run == 0) ro.affine = &aff;
    const auto y = exe.run(std::vector<Tensor>{x}, ro);
    CHECK(seen == 1);
    for (int i = 0; i < 4; ++i) {
      const float w = static_cast<float>(q[i] - 3) * 0.25f;
      CHECK(y[0].data<float>()[i] == x.data<float>()[i] + (run == 0 ? w * 2.f + 1.f : w));
    }
  }
}
