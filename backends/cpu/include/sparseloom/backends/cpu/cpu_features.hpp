#pragma once
// What this CPU can run, detected at run time (never assumed from compile flags), so one
// binary built without -march=native still dispatches to AVX-512 where the CPU has it.
#include <fstream>
#include <string>

#include "sparseloom/core/cpu_name.hpp"

namespace sparseloom::cpu {

// Kernel families, ordered: a higher value can run everything a lower one can.
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

constexpr const char* to_string(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, amx_int8 = false;

  // The best kernel family this CPU runs: avx512 needs F+BW+VL+FMA, avx2 needs AVX2+FMA.
  Isa best_isa() const noexcept {
    if (avx512f && avx512bw && avx512vl && fma) return Isa::avx512;
    if (avx2 && fma) return Isa::avx2;
    return Isa::scalar;
  }
  bool supports(Isa isa) const noexcept { return static_cast<int>(isa) <= static_cast<int>(best_isa()); }

  // "avx2 fma avx512f ..." for benchmark output.
  std::string isa_string() const {
    std::string s;
    auto add = [&s](bool has, const char* name) {
      if (has) s += (s.empty() ? "" : " ") + std::string(name);
    };
    add(avx2, "avx2");
    add(fma, "fma");
    add(avx512f, "avx512f");
    add(avx512bw, "avx512bw");
    add(avx512vl, "avx512vl");
    add(avx512vnni, "avx512vnni");
    add(avx512bf16, "avx512bf16");
    add(amx_int8, "amx-int8");
    return s.empty() ? "scalar" : s;
  }
};

namespace detail {
inline CpuFeatures detect_cpu_features() noexcept {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  // Flags gcc 12's __builtin_cpu_supports does not know are read from /proc/cpuinfo.
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    line += ' ';
    f.f16c = line.find(" f16c ") != std::string::npos;
    f.avx512bf16 = line.find(" avx512_bf16 ") != std::string::npos;
    f.amx_int8 = line.find(" amx_int8 ") != std::string::npos;
    break;
  }
#endif
  return f;
}
}  // namespace detail

// Features of the CPU we run on (detected once).
inline const CpuFeatures& cpu_features() noexcept {
  static const CpuFeatures f = detail::detect_cpu_features();
  return f;
}

using sparseloom::cpu_model_name;  // core/cpu_name.hpp: keys the format cache (format_cache_file.hpp)

}  // namespace sparseloom::cpu
