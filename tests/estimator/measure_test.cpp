// Prefix-sharing measurement of stitched accuracy (estimator/measure.hpp) equals measuring each
// stitch alone (StitchedModel::repair + accuracy_pct, the path the zoo test checks against the
// manifest), with and without repair, on a bn_affine task and on a residual_map task; and it
// runs fewer blocks than measuring them one by one. Two workers (each its own compiled model)
// give exactly what one gives.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <set>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/estimator/measure.hpp"

using namespace sparseloom;

namespace {

std::filesystem::path zoo_dir() {
  if (const char* e = std::getenv("SPARSELOOM_ZOO")) return e;
  return SPARSELOOM_ZOO_DIR;
}

void check_task(const std::string& name, std::int64_t limit) {
  const auto z = zoo::load_task(zoo_dir() / name);
  const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
  const int nb = z.num_blocks();
  // Shared prefixes, a switch at every cut, a plain variant, a duplicate, unsorted order.
  std::vector<std::vector<int>> cs = {{0, 4, 4, 1, 9}, {0, 4, 4, 1, 2}, {3, 3, 3, 3, 3}, {0, 4, 7, 7, 2},
                                      {8, 1, 0, 5, 6}, {0, 4, 4, 1, 9}, {0, 0, 0, 0, 5}};
  std::vector<StitchedVariant> stitches;
  for (auto c : cs) {
    c.resize(static_cast<std::size_t>(nb));
    stitches.push_back({c});
  }
  for (bool repair : {true, false}) {
    CAPTURE(name);
    CAPTURE(repair);
    estimator::MeasureStats st;
    const auto got = estimator::measure_stitches(model, stitches, repair, limit, &st);
    REQUIRE(got.size() == stitches.size());
    // Adapter repair reads no calibration statistics: one calibration image keeps it fast.
    const std::int64_t calib = z.manifest.blocks[1].repair.kind == zoo::RepairKind::residual_map ? 1 : 0;
    for (std::size_t k = 0; k < stitches.size(); ++k) {
      const auto rep = model.repair(stitches[k], 1, calib);
      const double alone = model.accuracy_pct(stitches[k], repair ? &rep : nullptr, 1, limit);
      CAPTURE(k);
      CHECK(got[k] == alone);
    }
    std::set<std::vector<int>> distinct;
    for (const auto& s : stitches) distinct.insert(s.choice);
    CHECK(st.stitches == distinct.size());  // duplicates are measured once
    CHECK(st.block_runs < st.naive_block_runs);
  }
}

}  // namespace

TEST_CASE("Estimator.Measure.PrefixSharingEqualsEachStitchAlone.BnAffine") { check_task("digits_cnn", 300); }

TEST_CASE("Estimator.Measure.PrefixSharingEqualsEachStitchAlone.ResidualMap") { check_task("fmnist_vit", 30); }

// Random stitches (shared prefixes, duplicates and plain variants among them) measured by one
// worker and by two, each worker with its own backend and compiled blocks as the bench does.
void check_parallel(const std::string& name, std::int64_t limit, std::size_t n) {
  const auto z = zoo::load_task(zoo_dir() / name);
  const stitch::StitchedModel<reference::Backend> a(z, reference::Backend{}), b(z, reference::Backend{});
  std::mt19937 rng(11);
  std::vector<StitchedVariant> stitches;
  for (std::size_t k = 0; k < n; ++k) {
    std::vector<int> c(static_cast<std::size_t>(z.num_blocks()));
    // Few variants in the first blocks, so prefixes are shared across chunk boundaries.
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<int>(rng() % (i < 2 ? 2 : z.num_variants()));
    stitches.push_back({c});
  }
  stitches.push_back(stitches[3]);
  stitches.push_back({std::vector<int>(static_cast<std::size_t>(z.num_blocks()), 1)});
  for (bool repair : {true, false}) {
    CAPTURE(name);
    CAPTURE(repair);
    estimator::StitchMeasurer<reference::Backend> one(a, limit), two({&a, &b}, limit);
    CHECK(two.workers() == 2);
    estimator::MeasureStats s1, s2;
    const auto serial = one.measure(stitches, repair, &s1);
    const auto parallel = two.measure(stitches, repair, &s2);
    CHECK(parallel == serial);
    CHECK(s1.workers == 1);
    CHECK(s2.workers == 2);
    CHECK(s2.stitches == s1.stitches);
    CHECK(s2.block_runs >= s1.block_runs);  // chunk starts re-run a prefix, never fewer runs
    // Not a constant: the stitches differ in accuracy.
    CHECK(*std::max_element(serial.begin(), serial.end()) > *std::min_element(serial.begin(), serial.end()));
  }
}

TEST_CASE("Estimator.Measure.TwoWorkersEqualOne.BnAffine") { check_parallel("digits_cnn", 100, 16); }

TEST_CASE("Estimator.Measure.TwoWorkersEqualOne.ResidualMap") { check_parallel("fmnist_vit", 20, 8); }

TEST_CASE("Estimator.Measure.RejectsModelsOfAnotherZoo") {
  const auto z1 = zoo::load_task(zoo_dir() / "digits_cnn");
  const auto z2 = zoo::load_task(zoo_dir() / "digits_cnn");
  const stitch::StitchedModel<reference::Backend> a(z1, reference::Backend{}), b(z2, reference::Backend{});
  CHECK_THROWS_AS(estimator::StitchMeasurer<reference::Backend>({&a, &b}, 10), Error);
  CHECK_THROWS_AS(estimator::StitchMeasurer<reference::Backend>(std::vector<const stitch::StitchedModel<reference::Backend>*>{}, 10), Error);
}

TEST_CASE("Estimator.Measure.RejectsAStitchOfTheWrongLength") {
  const auto z = zoo::load_task(zoo_dir() / "digits_cnn");
  const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
  CHECK_THROWS_AS(estimator::measure_stitches(model, {StitchedVariant{{0, 1}}}, true, 10), Error);
  CHECK_THROWS_AS(estimator::measure_stitches(model, {StitchedVariant{{0, 1, 2, 3, 99}}}, true, 10), Error);
}

TEST_CASE("Estimator.Measure.CacheReturnsWhatWasMeasured") {
  const auto z = zoo::load_task(zoo_dir() / "digits_cnn");
  const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
  const auto dir = std::filesystem::temp_directory_path() / ("sparseloom-measure-cache-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  estimator::StitchMeasurer<reference::Backend> m(model, 100);
  estimator::MeasureCacheKey key{"digits_cnn", estimator::hash_task_dir(zoo_dir() / "digits_cnn"), "reference", true, 0};
  const std::vector<StitchedVariant> s = {{{0, 1, 2, 3, 4}}, {{4, 3, 2, 1, 0}}};
  estimator::MeasureStats st;
  const auto first = estimator::measure_cached(m, dir, key, s, &st);
  CHECK(st.stitches == 2);
  const auto again = estimator::measure_cached(m, dir, key, s, &st);
  CHECK(st.stitches == 0);  // served from disk
  CHECK(again == first);
  key.repair = false;  // another key: measured anew
  estimator::measure_cached(m, dir, key, s, &st);
  CHECK(st.stitches == 2);
  // Saved in batches of one: every stitch is on disk, with what a single batch gives.
  key.test_samples = 0;
  const std::vector<StitchedVariant> three = {{{1, 1, 2, 2, 3}}, {{0, 1, 2, 3, 4}}, {{1, 1, 2, 2, 4}}};
  const auto batched = estimator::measure_cached(m, dir, key, three, &st, nullptr, 1);
  CHECK(st.stitches == 2);  // {0, 1, 2, 3, 4} was cached
  CHECK(batched == m.measure(three, false));
  key.test_samples = m.test_samples();
  CHECK(estimator::load_measured(dir, key).size() == 4);
  std::filesystem::remove_all(dir);
}
