// The accuracy measurement as sparseloom-bench-estimator runs it: cpu backend, one
// cpu::Backend (own processor) and compiled model per worker. Two workers must give exactly
// what one gives; this relies on the second compile reusing the first one's per-layer format
// decisions (cpu FormatCache), so both run the same kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "sparseloom/backends/cpu/backend.hpp"
#include "sparseloom/estimator/measure.hpp"

using namespace sparseloom;

TEST_CASE("Estimator.Measure.TwoWorkersEqualOne.Cpu") {
  const auto z = zoo::load_task(std::filesystem::path(SPARSELOOM_ZOO_DIR) / "digits_cnn");
  const stitch::StitchedModel<cpu::Backend> a(z, cpu::Backend(1)), b(z, cpu::Backend(1));
  std::mt19937 rng(3);
  std::vector<StitchedVariant> stitches;
  for (int k = 0; k < 24; ++k) {
    std::vector<int> c(static_cast<std::size_t>(z.num_blocks()));
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<int>(rng() % (i == 0 ? 2 : z.num_variants()));
    stitches.push_back({c});
  }
  for (bool repair : {true, false}) {
    CAPTURE(repair);
    estimator::StitchMeasurer<cpu::Backend> one(a, 200), two({&a, &b}, 200);
    estimator::MeasureStats st;
    const auto serial = one.measure(stitches, repair);
    const auto parallel = two.measure(stitches, repair, &st);
    CHECK(st.workers == 2);
    CHECK(parallel == serial);
    CHECK(*std::max_element(serial.begin(), serial.end()) > *std::min_element(serial.begin(), serial.end()));
  }
}
