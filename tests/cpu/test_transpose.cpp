// Tiled threaded transposes (transpose.hpp) against the reference backend's element-by-element
// Transpose: every permutation of small odd-sized tensors, several dtypes, 1 and 2 threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "sparseloom/backends/cpu/transpose.hpp"
#include "sparseloom/backends/reference/backend.hpp"

using namespace sparseloom;

namespace {

Tensor random_tensor(const Shape& s, DType dt, std::uint32_t seed) {
  Tensor t = Tensor::empty(s, dt);
  std::mt19937 rng(seed);
  auto* p = reinterpret_cast<unsigned char*>(t.raw());
  for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
  return t;
}

void expect_same(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  CHECK(std::memcmp(ac.raw(), bc.raw(), ac.nbytes()) == 0);
}

}  // namespace

TEST_CASE("Cpu.Transpose.TwoDMatchesPlainTranspose") {
  cpu::ThreadPool pool(2);
  for (auto [r, c] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {3, 17}, {128, 768}, {161, 33}}) {
    std::vector<float> x(static_cast<std::size_t>(r * c)), y(x.size(), -1.f);
    std::iota(x.begin(), x.end(), 0.f);
    for (int threads : {1, 2}) {
      cpu::transpose_2d(x.data(), r, c, y.data(), pool, threads);
      bool ok = true;
      for (std::int64_t i = 0; i < r; ++i)
        for (std::int64_t j = 0; j < c; ++j) ok &= y[static_cast<std::size_t>(j * r + i)] == x[static_cast<std::size_t>(i * c + j)];
      CHECK_MESSAGE(ok, r << "x" << c << " threads " << threads);
    }
  }
}

TEST_CASE("Cpu.Transpose.PermuteMatchesReference") {
  cpu::ThreadPool pool(2);
  const Shape shape{3, 1, 20, 33};  // a size-1 dim, sizes not multiples of the tile
  std::vector<std::int64_t> perm{0, 1, 2, 3};
  for (DType dt : {DType::f32, DType::u8, DType::i64}) {
    const Tensor x = random_tensor(shape, dt, 5);
    std::vector<std::int64_t> p = perm;
    do {
      for (int threads : {1, 2}) {
        INFO("perm ", p[0], p[1], p[2], p[3], " threads ", threads);
        expect_same(cpu::permute(x, p, pool, threads, "test"), reference::transpose(x, p));
      }
    } while (std::next_permutation(p.begin(), p.end()));
  }
  // The attention shapes, large enough to split over both threads, and the default perm.
  const Tensor a = random_tensor({1, 128, 12, 64}, DType::f32, 6);
  expect_same(cpu::permute(a, {0, 2, 1, 3}, pool, 2, "test"), reference::transpose(a, {0, 2, 1, 3}));
  expect_same(cpu::permute(a, {0, 2, 3, 1}, pool, 2, "test"), reference::transpose(a, {0, 2, 3, 1}));
  expect_same(cpu::permute(a, {}, pool, 2, "test"), reference::transpose(a, {}));
}

TEST_CASE("Cpu.Transpose.RejectsBadPerm") {
  cpu::ThreadPool pool(1);
  const Tensor x = random_tensor({2, 3}, DType::f32, 7);
  CHECK_THROWS_AS(cpu::permute(x, {0, 0}, pool, 1, "test"), Error);
  CHECK_THROWS_AS(cpu::permute(x, {0, 1, 2}, pool, 1, "test"), Error);
  CHECK_THROWS_AS(cpu::permute(x, {0, 2}, pool, 1, "test"), Error);
}
