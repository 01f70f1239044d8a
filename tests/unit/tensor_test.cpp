#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "sparseloom/core/tensor.hpp"

using namespace sparseloom;

TEST_CASE("Core.Tensor.ShapeStridesAndAlignment") {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::f32);
  CHECK(t.numel() == 24);
  CHECK(t.nbytes() == 96);
  CHECK(t.strides() == Shape{12, 4, 1});
  CHECK(reinterpret_cast<std::uintptr_t>(t.raw()) % Tensor::kAlignment == 0);
  CHECK(t.is_contiguous());
}

TEST_CASE("Core.Tensor.ViewsShareStorage") {
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from<float>({3, 4}, v);
  Tensor r = t.reshape({4, 3});
  CHECK(r.same_storage(t));
  r.data<float>()[0] = 42.f;
  CHECK(t.data<float>()[0] == 42.f);
  Tensor s = t.slice(1, 1, 3);  // columns 1..2: not contiguous
  CHECK_FALSE(s.is_contiguous());
  Tensor c = s.clone();
  CHECK(c.shape() == Shape{3, 2});
  CHECK(c.data<float>()[0] == 1.f);
  CHECK(c.data<float>()[1] == 2.f);
  CHECK(c.data<float>()[2] == 5.f);
  CHECK_FALSE(c.same_storage(t));
}

TEST_CASE("Core.Tensor.ErrorsSayWhatAndWhere") {
  Tensor t = Tensor::zeros({2, 2}, DType::f32);
  CHECK_THROWS_AS(t.data<std::int8_t>(), Error);
  CHECK_THROWS_WITH_AS(t.reshape({3}), doctest::Contains("cannot reshape [2,2] to [3]"), Error);
  CHECK_THROWS_AS(Tensor::zeros({-1, 2}, DType::f32), Error);
  CHECK_THROWS_AS(Tensor::zeros({1 << 30, 1 << 30}, DType::f32), Error);  // no overflow, no huge alloc
  CHECK_THROWS_AS(t.slice(0, 1, 3), Error);
  try {
    t.dim(5);
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::shape);
    CHECK(std::string(e.what()).find("Tensor::dim") != std::string::npos);
  }
}

TEST_CASE("Core.Tensor.LargeBuffersAreReused") {
  using sparseloom::detail::BufferCache;
  // Size classes: at least the request, at most 1/8 above it, 64-byte multiples.
  for (std::size_t n : {std::size_t{65536}, std::size_t{65537}, std::size_t{100000}, std::size_t{3211264}, std::size_t{1} << 30})
    CHECK((BufferCache::size_class(n) >= n && BufferCache::size_class(n) <= n + n / 8 && BufferCache::size_class(n) % 64 == 0));
  CHECK(BufferCache::size_class(1000) == 1000);  // small buffers stay malloc's
  const std::size_t huge = std::numeric_limits<std::size_t>::max() - 7;  // no wrap-round to a small class
  CHECK(BufferCache::size_class(huge) == huge);
  auto& cache = BufferCache::instance();
  const void* first = nullptr;
  {
    auto t = sparseloom::Tensor::empty({1, 64, 112, 112}, sparseloom::DType::f32);  // 3.2 MB, a ResNet activation
    first = t.raw();
    CHECK(reinterpret_cast<std::uintptr_t>(first) % sparseloom::Tensor::kAlignment == 0);
  }
  auto again = sparseloom::Tensor::zeros({64, 112, 112}, sparseloom::DType::f32);  // same bytes, other shape
  if (cache.limit_bytes() == 0) {
    MESSAGE("tensor buffer cache off (AddressSanitizer build or SPARSELOOM_TENSOR_CACHE_MB=0)");
  } else {
    CHECK(again.raw() == first);  // the freed buffer, not a fresh mmap
    CHECK(again.data<float>()[12345] == 0.0f);
    CHECK(cache.cached_bytes() <= cache.limit_bytes());
  }
}
