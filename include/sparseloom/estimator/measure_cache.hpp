#pragma once
// On-disk cache of measured stitched accuracies (measure.hpp), so a second bench run does not
// re-measure. One JSON file per key; the key names the task, a hash of every file in its zoo
// folder (models, test and calibration data, adapters, manifest), the backend, repair on/off
// and the test samples used. The file grows as new stitches are measured; like the profile
// cache it is disposable: a damaged or foreign entry is a miss, never a failed run.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/estimator/profile_table.hpp"

namespace sparseloom::estimator {

struct Measured {
  double accuracy_pct = 0;
  double seconds = -1;  // this stitch's share of the measuring run's worker-seconds; < 0: not recorded
};
using MeasuredAccuracy = std::map<std::vector<int>, Measured>;  // by stitch choice

struct MeasureCacheKey {
  std::string task, files_hash, backend;
  bool repair = true;
  std::int64_t test_samples = 0;

  std::string text() const {
    return "task=" + task + "\nfiles=" + files_hash + "\nbackend=" + backend + "\nrepair=" + (repair ? "1" : "0") +
           "\ntest_samples=" + std::to_string(test_samples) + "\n";
  }
  std::filesystem::path path(const std::filesystem::path& dir) const {
    std::string safe;
    for (char c : task) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
    return dir / ("acc-" + safe.substr(0, 64) + "-" + detail::hex16(detail::fnv1a(text())) + ".json");
  }
};

// Hash of every regular file in a task's zoo folder, in name order.
inline std::string hash_task_dir(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string names;
  for (const auto& f : files) names += f.filename().string() + "\n";
  return hash_files(files) + detail::hex16(detail::fnv1a(names));
}

inline MeasuredAccuracy load_measured(const std::filesystem::path& dir, const MeasureCacheKey& key) {
  MeasuredAccuracy out;
  const auto p = key.path(dir);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) return out;
  try {
    const auto j = json::load(p);
    if (!j.is_object() || !j.contains("cache_key") || j["cache_key"] != key.text()) return out;
    const auto& s = j.at("stitches");
    const auto& a = j.at("accuracy_pct");
    if (!s.is_array() || !a.is_array() || s.size() != a.size()) return {};
    const bool timed = j.contains("seconds") && j["seconds"].is_array() && j["seconds"].size() == s.size();
    for (std::size_t i = 0; i < s.size(); ++i)
      out[s[i].get<std::vector<int>>()] = {a[i].get<double>(), timed ? j["seconds"][i].get<double>() : -1.0};
  } catch (const std::exception&) {
    return {};
  }
  return out;
}

// Written to a temporary name first, so a concurrent reader never sees half a file.
inline void save_measured(const std::filesystem::path& dir, const MeasureCacheKey& key, const MeasuredAccuracy& m) {
  std::filesystem::create_directories(dir);
  json::Json j;
  j["cache_key"] = key.text();
  j["stitches"] = json::Json::array();
  j["accuracy_pct"] = json::Json::array();
  j["seconds"] = json::Json::array();
  for (const auto& [c, a] : m) {
    j["stitches"].push_back(c);
    j["accuracy_pct"].push_back(a.accuracy_pct);
    j["seconds"].push_back(a.seconds);
  }
  json::write_text_atomically(key.path(dir), j.dump());
}

}  // namespace sparseloom::estimator
