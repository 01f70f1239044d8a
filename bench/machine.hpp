#pragma once
// The machine a benchmark ran on, printed and written into every result file.
#include <fstream>
#include <string>

namespace sparseloom::bench {

// The CPU's model name, with its family and model numbers where /proc/cpuinfo has them (x86):
// KVM guests here report "AMD EPYC" for a Zen 4 and a Zen 5 alike, whose dense GEMM differs
// 2x (session 18), and this string keys the profile cache and names the machine in results.
inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string name, family, model;
  auto value = [](const std::string& l) {
    const auto c = l.find(':');
    return c == std::string::npos || c + 2 > l.size() ? std::string() : l.substr(c + 2);
  };
  for (std::string line; std::getline(f, line);) {  // the first of each (every core repeats them)
    if (name.empty() && line.rfind("model name", 0) == 0) name = value(line);
    else if (family.empty() && line.rfind("cpu family", 0) == 0) family = value(line);
    else if (model.empty() && line.rfind("model\t", 0) == 0) model = value(line);
  }
  if (name.empty()) name = "unknown CPU";
  return family.empty() ? name : name + " (family " + family + ", model " + model + ")";
}

}  // namespace sparseloom::bench
