#include <doctest/doctest.h>

#include <filesystem>

#include "sparseloom/core/npy.hpp"

using namespace sparseloom;

TEST_CASE("Core.Npy.RoundTripEveryDType") {
  const auto dir = std::filesystem::temp_directory_path();
  for (DType t : {DType::f32, DType::u8, DType::i8, DType::i16, DType::i32, DType::i64}) {
    Tensor a = Tensor::empty({2, 3, 5}, t);
    for (std::size_t i = 0; i < a.nbytes(); ++i) a.raw()[i] = static_cast<std::byte>(i * 7 + 1);
    const auto p = dir / ("sparseloom_npy_" + std::string(to_string(t)) + ".npy");
    npy::save(p, a);
    Tensor b = npy::load(p);
    CHECK(b.dtype() == t);
    CHECK(b.shape() == a.shape());
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
    std::filesystem::remove(p);
  }
  Tensor s = Tensor::zeros({7}, DType::f32);  // 1-d shape is written as (7,)
  npy::save(dir / "sparseloom_npy_1d.npy", s);
  CHECK(npy::load(dir / "sparseloom_npy_1d.npy").shape() == Shape{7});
}

TEST_CASE("Core.Npy.MalformedInputIsAnError") {
  const std::string good = [] {
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::string s("\x93NUMPY\x01\x00", 8);
    s += static_cast<char>(h.size());
    s += '\0';
    return s + h + std::string(16, '\0');
  }();
  CHECK(npy::parse(good, "good").numel() == 4);
  CHECK_THROWS_WITH_AS(npy::parse("hello", "x.npy"), doctest::Contains("bad magic"), Error);
  CHECK_THROWS_WITH_AS(npy::parse(good.substr(0, good.size() - 1), "t.npy"), doctest::Contains("truncated"), Error);
  CHECK_THROWS_AS(npy::parse(good.substr(0, 40), "t.npy"), Error);
  std::string fortran = good;
  fortran.replace(fortran.find("False"), 5, "True ");
  CHECK_THROWS_WITH_AS(npy::parse(fortran, "f.npy"), doctest::Contains("fortran_order"), Error);
  std::string c16 = good;
  c16.replace(c16.find("<f4"), 3, "<c8");
  CHECK_THROWS_WITH_AS(npy::parse(c16, "c.npy"), doctest::Contains("dtype"), Error);
  std::string huge = good;
  huge.replace(huge.find("(2, 2)"), 6, "(99999999999999)");
  CHECK_THROWS_AS(npy::parse(huge, "h.npy"), Error);
  CHECK_THROWS_AS(npy::load("/nonexistent/file.npy"), Error);
}
