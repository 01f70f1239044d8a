// The threaded u8 quantiser (quantize.hpp) against the reference QuantizeLinear: bit-equal on
// random values, exact halves (ties round to even), saturation on both sides and large
// magnitudes, for several zero points and 1 and 2 threads.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "sparseloom/backends/cpu/quantize.hpp"
#include "sparseloom/backends/reference/backend.hpp"

using namespace sparseloom;

TEST_CASE("Cpu.Quantize.MatchesReferenceQuantizeLinear") {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> xs;
  for (int i = 0; i < 140000; ++i) xs.push_back(nd(rng));  // above the 64 k split: both threads work
  for (float h = -300.5f; h <= 300.5f; h += 1.f) xs.push_back(h * 0.05f);  // exact halves at scale 0.05
  for (float big : {1e9f, -1e9f, 3e38f, -3e38f, 0.f, -0.f}) xs.push_back(big);
  const Shape shape{static_cast<std::int64_t>(xs.size())};
  Tensor x = Tensor::empty(shape, DType::f32);
  std::memcpy(x.data<float>(), xs.data(), xs.size() * sizeof(float));
  for (int threads : {1, 2}) {
    cpu::ThreadPool pool(threads);
    for (std::uint8_t zp : {std::uint8_t{0}, std::uint8_t{3}, std::uint8_t{128}, std::uint8_t{255}}) {
      CAPTURE(threads);
      CAPTURE(int(zp));
      const float scale = 0.05f;
      Tensor sc = Tensor::empty({}, DType::f32);
      sc.data<float>()[0] = scale;
      Tensor z = Tensor::empty({}, DType::u8);
      z.data<std::uint8_t>()[0] = zp;
      const Tensor want = reference::quantize_linear(x, sc, &z, 1);
      std::vector<std::uint8_t> got(xs.size());
      cpu::quantize_u8(xs.data(), static_cast<std::int64_t>(xs.size()), scale, zp, got.data(), pool, threads);
      int diff = 0;
      for (std::size_t i = 0; i < got.size(); ++i) diff += got[i] != want.data<std::uint8_t>()[i];
      CHECK(diff == 0);
    }
  }
}
