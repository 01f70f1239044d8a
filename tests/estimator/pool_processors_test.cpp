// Identical processors' profiles pooled (estimator/pool_processors.hpp): noise averaged, real
// differences (another core type, thread count) kept apart.
#include <doctest/doctest.h>

#include "sparseloom/estimator/pool_processors.hpp"

using namespace sparseloom;
using namespace sparseloom::estimator;

namespace {
// One task, 2 blocks x 2 variants on three processors; times[p] scales processor p.
TaskProfile profile(const std::vector<std::vector<double>>& ms) {  // ms[entry][p], entry = b * 2 + v
  TaskProfile tp;
  tp.task = "t";
  tp.block.assign(2, std::vector<std::vector<LatencyStats>>(2, std::vector<LatencyStats>(ms[0].size())));
  for (int b = 0; b < 2; ++b)
    for (int v = 0; v < 2; ++v)
      for (std::size_t p = 0; p < ms[0].size(); ++p) {
        const double x = ms[static_cast<std::size_t>(b * 2 + v)][p];
        tp.block[b][v][p] = x > 0 ? LatencyStats{x, 1.2 * x, 0.9 * x, 9} : LatencyStats{};
      }
  tp.repaired = tp.block;
  return tp;
}

const std::vector<ProcessorProfile> kProcs{{"cpu0", "cpu", "cpu", "AMD EPYC", 1},
                                           {"cpu1", "cpu", "cpu", "AMD EPYC", 1},
                                           {"cpu2", "cpu", "cpu", "AMD EPYC", 2}};
}  // namespace

TEST_CASE("Estimator.Pool.IdenticalProcessorsShareTheMeanOfTheirProfiles") {
  // cpu0 and cpu1 differ by +-2 % noise; cpu2 runs 2 threads (another processor).
  std::vector<TaskProfile> tasks{profile({{1.00, 1.02, 0.6}, {2.04, 2.00, 1.1}, {3.0, 2.94, 1.6}, {0.5, 0.51, 0.3}})};
  const auto g = pool_identical_processors(tasks, kProcs);
  REQUIRE(g.size() == 1);
  CHECK(g[0].pooled);
  CHECK(g[0].processors == std::vector<int>{0, 1});
  const auto& t = tasks[0].block;
  CHECK(t[0][0][0].median_ms == doctest::Approx(1.01));
  CHECK(t[0][0][1].median_ms == doctest::Approx(1.01));
  CHECK(t[0][1][0].median_ms == doctest::Approx(2.02));
  CHECK(t[1][0][1].median_ms == doctest::Approx(2.97));
  CHECK(t[1][0][0].min_ms == doctest::Approx(0.9 * 2.94));  // the smaller minimum
  CHECK(t[1][0][0].samples == 18);
  CHECK(t[0][0][2].median_ms == doctest::Approx(0.6));  // not in the group: untouched
  CHECK(tasks[0].repaired[0][1][1].median_ms == doctest::Approx(2.02));
  CHECK(describe(g[0], kProcs).find("cpu0+cpu1 pooled") == 0);
}

TEST_CASE("Estimator.Pool.DeclaredIdenticalButMeasuredApartStaySeparate") {
  // One model name, another core type: cpu1 reads 30 % slower on every entry (hybrid CPUs).
  std::vector<TaskProfile> tasks{profile({{1.0, 1.3, 0.6}, {2.0, 2.6, 1.1}, {3.0, 3.9, 1.6}, {0.5, 0.65, 0.3}})};
  const auto g = pool_identical_processors(tasks, kProcs);
  REQUIRE(g.size() == 1);
  CHECK_FALSE(g[0].pooled);
  CHECK(g[0].median_ratio[1] == doctest::Approx(1.3));
  CHECK(tasks[0].block[0][0][1].median_ms == doctest::Approx(1.3));
  CHECK(describe(g[0], kProcs).find("not pooled") != std::string::npos);
}

TEST_CASE("Estimator.Pool.AnEntryOneMemberCannotRunStaysAsMeasured") {
  std::vector<TaskProfile> tasks{profile({{1.0, 0.0, 0.6}, {2.0, 2.04, 1.1}, {3.0, 3.0, 1.6}, {0.5, 0.5, 0.3}})};
  const auto g = pool_identical_processors(tasks, kProcs);
  REQUIRE(g.size() == 1);
  CHECK(g[0].pooled);
  CHECK(tasks[0].block[0][0][0].median_ms == doctest::Approx(1.0));
  CHECK(tasks[0].block[0][0][1].samples == 0);  // still cannot run there
  CHECK(tasks[0].block[0][1][1].median_ms == doctest::Approx(2.02));
}

TEST_CASE("Estimator.Pool.NoGroupWithoutTwoIdenticalProcessors") {
  const std::vector<ProcessorProfile> procs{{"cpu0", "cpu", "cpu", "AMD EPYC", 1}, {"gpu0", "gpu", "opencl", "H200", 1},
                                            {"cpu1", "cpu", "cpu", "AMD EPYC", 2}};
  std::vector<TaskProfile> tasks{profile({{1.0, 1.1, 0.6}, {2.0, 2.1, 1.1}, {3.0, 3.1, 1.6}, {0.5, 0.55, 0.3}})};
  const auto before = tasks[0].block;
  CHECK(pool_identical_processors(tasks, procs).empty());
  CHECK(tasks[0].block[1][1][1].median_ms == before[1][1][1].median_ms);
}
