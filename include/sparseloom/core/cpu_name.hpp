#pragma once
// The CPU's name for caches and result files, from /proc/cpuinfo.
#include <fstream>
#include <string>

namespace sparseloom {

// "AMD EPYC (family 26, model 2)" etc. ("unknown CPU" where /proc/cpuinfo has no name). The
// family and model tell a Zen 4 from a Zen 5 that KVM names alike (their dense GEMM differs 2x,
// session 18): the profile cache, the cpu backend's format cache and every result's machine name
// are keyed by this string.
inline std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name, family, model;
  auto value = [&line] {
    const auto pos = line.find(':');
    if (pos == std::string::npos) return std::string();
    auto s = line.substr(pos + 1);
    s.erase(0, s.find_first_not_of(" \t"));
    return s;
  };
  while (std::getline(in, line)) {  // the first of each (every core repeats them)
    if (name.empty() && (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0)) name = value();
    else if (family.empty() && line.rfind("cpu family", 0) == 0) family = value();
    else if (model.empty() && line.rfind("model\t", 0) == 0) model = value();
  }
  if (name.empty()) name = "unknown CPU";
  return family.empty() ? name : name + " (family " + family + ", model " + model + ")";
}

}  // namespace sparseloom
