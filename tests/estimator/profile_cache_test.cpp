// The profile cache: a cached task profile is reused only under the exact key it was written
// with (model files, processors incl. threads and device, profiling options); any change, a
// damaged file or a missing one is a miss, never an error.
#include <doctest/doctest.h>

#include <fstream>

#include "sparseloom/estimator/profile_table.hpp"

using namespace sparseloom;
using namespace sparseloom::estimator;

namespace {
TaskProfile small_profile() {
  TaskProfile tp;
  tp.task = "t";
  tp.model_hash = "abc";
  tp.block = {{{{1, 1.5, 0.9, 5}, {2, 2, 2, 5}}}, {{{3, 3, 3, 5}, {0, 0, 0, 0}}}};  // 2 blocks x 1 variant x 2 processors
  tp.bytes = {{100}, {200}};
  tp.transfer_ms = {0.5};
  tp.repair_ms = {0, 0.1};
  tp.repair_bytes = {0, 16};
  return tp;
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(d);
  return d;
}
}  // namespace

TEST_CASE("Estimator.ProfileCache.HitOnlyUnderTheSameKey") {
  const auto dir = fresh_dir("sparseloom_profile_cache_test");
  const auto files = dir / "model.onnx";
  std::filesystem::create_directories(dir);
  std::ofstream(files) << "model bytes v1";
  ProfileCacheKey key{"t", hash_files({files}), {{"cpu0", "cpu", "cpu", "Some CPU", 2}, {"ref", "cpu", "reference", "Some CPU", 1}},
                      "reps=9;warmup=2;budget=60"};
  std::string why;
  CHECK_FALSE(load_cached(dir, key, &why));
  CHECK(why.find("no cached profile") != std::string::npos);

  save_cached(dir, key, small_profile(), 1.25);
  const auto hit = load_cached(dir, key, &why);
  REQUIRE(hit);
  CHECK(hit->block[0][0][0].p90_ms == doctest::Approx(1.5));
  CHECK(hit->block[1][0][1].samples == 0);
  CHECK(hit->repair_bytes[1] == doctest::Approx(16));

  // A changed thread count, device, option or model file is another key: a miss.
  auto threads = key;
  threads.processors[0].threads = 1;
  CHECK(threads.id() != key.id());
  CHECK_FALSE(load_cached(dir, threads));
  auto device = key;
  device.processors[1].device = "Other CPU";
  CHECK_FALSE(load_cached(dir, device));
  auto options = key;
  options.options = "reps=5;warmup=2;budget=30";
  CHECK_FALSE(load_cached(dir, options));
  std::ofstream(files) << "model bytes v2";
  auto changed = key;
  changed.files_hash = hash_files({files});
  CHECK(changed.files_hash != key.files_hash);
  CHECK_FALSE(load_cached(dir, changed));
  // Order of processors matters: the profile is indexed by it.
  auto swapped = key;
  std::swap(swapped.processors[0], swapped.processors[1]);
  CHECK_FALSE(load_cached(dir, swapped));
  CHECK(load_cached(dir, key));  // the original entry is still there

  // A file under the right name but another key text (a hash collision or a hand edit) misses.
  std::filesystem::copy_file(cache_path(dir, key), cache_path(dir, threads));
  CHECK_FALSE(load_cached(dir, threads, &why));
  CHECK(why.find("another key") != std::string::npos);
  // A damaged entry is a miss with a reason, and saving again repairs it.
  std::ofstream(cache_path(dir, key)) << "{ not json";
  CHECK_FALSE(load_cached(dir, key, &why));
  CHECK(why.find("unreadable") != std::string::npos);
  save_cached(dir, key, small_profile());
  CHECK(load_cached(dir, key));
  std::filesystem::remove_all(dir);
}
