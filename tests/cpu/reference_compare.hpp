#pragma once
// Helpers of the cpu backend's step tests: random inputs, and a graph run on both backends
// compared bit for bit on 1 and 2 threads, with a check of the cpu run's step names (whether a
// node ran as the native step under test).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sparseloom/backends/cpu/backend.hpp"

namespace sparseloom::testing {

inline Tensor random_tensor(const Shape& s, std::uint32_t seed, float lo = -2.f, float hi = 2.f) {
  Tensor t = Tensor::empty(s, DType::f32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

inline bool same_bits(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// True when the cpu backend's first output equals the reference's bit for bit on 1 and 2
// threads and `native(step names)` says what the test expects of how it ran.
template <class Native>
bool cpu_equals_reference(const ir::Graph& g, const std::vector<Tensor>& in, Native native) {
  const Tensor want = reference::Backend{}.compile(g, {}).run(in).at(0);
  bool ok = true;
  for (int threads : {1, 2}) {
    const auto exe = cpu::Backend{}.compile(g, {threads});
    ok &= same_bits(exe.run(in).at(0), want);
    std::vector<std::string> steps;
    for (const auto& [step, ms] : exe.profile(in)) steps.push_back(step);
    ok &= native(steps);
  }
  return ok;
}

}  // namespace sparseloom::testing
