#pragma once
// The machine a benchmark ran on, printed and written into every result file.
#include <fstream>
#include <string>

namespace sparseloom::bench {

inline std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

}  // namespace sparseloom::bench
