#pragma once
// The machine a benchmark ran on, printed and written into every result file.
#include <string>

#include "sparseloom/core/cpu_name.hpp"

namespace sparseloom::bench {

// The CPU's model name with its family and model numbers (core/cpu_name.hpp): it keys the
// profile cache and names the machine in results.
inline std::string cpu_model() { return cpu_model_name(); }

}  // namespace sparseloom::bench
