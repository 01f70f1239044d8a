#pragma once
// Shared by the runtime tests: a synthetic world (runner, estimator, greedy optimizer) and the
// invariants every test checks. Tests assert invariants, not timings; every wait is bounded.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "sparseloom/runtime/runtime.hpp"
#include "sparseloom/runtime/synthetic.hpp"

namespace rt = sparseloom::runtime;
namespace syn = sparseloom::runtime::synthetic;
using sparseloom::Slo;
using sparseloom::Tensor;
using namespace std::chrono_literals;

// Sanitizer builds run 2-20x slower: the few checks of wall-clock outcomes (on-time counts,
// detector decisions on real threads) are left to the Release suite and the deterministic
// discrete-event tests; every invariant is still checked.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kTimingChecks = false;
#else
inline constexpr bool kTimingChecks = true;
#endif

using Engine = rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer>;
using SimEngine = rt::Engine<syn::Runner, syn::Estimator, syn::GreedyOptimizer, rt::LoadAllPreloader, rt::DiscreteEvent>;

struct World {
  explicit World(syn::Zoo z) : zoo(z), runner(z), est(z) {}
  syn::Zoo zoo;
  syn::Runner runner;
  syn::Estimator est;
};

inline std::vector<rt::ProcessorSpec> processors(int n, std::size_t capacity = 1024) {
  std::vector<rt::ProcessorSpec> ps;
  for (int i = 0; i < n; ++i)
    ps.push_back({"p" + std::to_string(i), i == 0 ? rt::ProcessorKind::cpu : rt::ProcessorKind::gpu, 1, capacity});
  return ps;
}

inline std::vector<rt::TaskSpec> tasks(int n, Slo slo = {}) {
  std::vector<rt::TaskSpec> ts;
  for (int i = 0; i < n; ++i) ts.push_back({"t" + std::to_string(i), slo});
  return ts;
}

inline Slo slo(double deadline_ms, double floor = 0, double rate = 10, double criticality = 1) {
  Slo s;
  s.deadline_ms = deadline_ms;
  s.min_accuracy_pct = floor;
  s.rate_rps = rate;
  s.criticality = criticality;
  return s;
}

inline Tensor input(float x) { return Tensor::from<float>({1, 2}, std::vector<float>{x, x + 1}); }

// Every issued request is accounted exactly once, and the per-state counts add up.
inline void check_accounting(const rt::EngineMetrics& m) {
  std::uint64_t issued = 0, accounted = 0;
  for (const auto& t : m.tasks) {
    std::uint64_t sum = 0;
    for (auto s : rt::kEndStates) sum += t.count(s);
    CHECK(sum == t.accounted);
    CHECK(t.issued == t.accounted);
    issued += t.issued;
    accounted += t.accounted;
  }
  CHECK(m.overall.issued == issued);
  CHECK(m.overall.accounted == accounted);
}

inline bool all_done(const std::vector<rt::RequestHandle>& hs) {
  for (const auto& h : hs)
    if (!h.done()) return false;
  return true;
}

inline int count_state(const std::vector<rt::RequestHandle>& hs, rt::RequestState s) {
  int n = 0;
  for (const auto& h : hs) n += h.state() == s;
  return n;
}

// Polls cond every 2 ms for at most `limit`; true if it held.
template <class F>
bool eventually(F&& cond, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

inline bool has_decision(const rt::EngineMetrics& m, const std::string& needle) {
  for (const auto& d : m.decisions)
    if (d.reason.find(needle) != std::string::npos) return true;
  return false;
}
