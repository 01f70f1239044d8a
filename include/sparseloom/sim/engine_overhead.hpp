#pragma once
// The engine's own cost per request on a real machine, which a cost model of the kernels does
// not see: the queue hand-off and worker wake-up before a request's first block (`dispatch_ms`),
// the hand-off of a running request to another processor's idle worker (`handoff_ms`), the
// bookkeeping between blocks on a worker that is already awake (`continue_ms`), how much slower
// a block runs inside the engine than in the profiler's back-to-back loop (`block_time_factor`:
// cold caches, other load), the rare preemption of a block by other programs, which is time
// added rather than a factor (`stall_probability`, `stall_ms`: a 0.01 ms block preempted for
// 5 ms is not 500x slower in the sense a 0.3 ms block would be) and, for processors that are
// core groups of one CPU, the extra slow-down when another processor runs at the same time
// (`shared_core_slowdown`).
// Each time is an empirical distribution (quantiles, sampled by inverse CDF with the
// simulator's seeded RNG). A profile's optional "engine_overhead" section; absent means none
// (the published SoC profiles: an ideal engine, docs/sim.md). Measured by --fit-profile
// (sim/measure_overhead.hpp).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/json.hpp"

namespace sparseloom::sim {

inline constexpr int kEngineOverheadVersion = 1;

// Quantiles of a non-negative quantity at fixed probabilities; linear in between.
struct Quantiles {
  static constexpr std::array<double, 9> kProb{0.0, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 1.0};
  static constexpr std::array<const char*, 9> kKey{"p0", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p100"};
  std::array<double, 9> q{};  // all zero: a constant 0

  static Quantiles constant(double v) {
    Quantiles d;
    d.q.fill(v);
    return d;
  }
  // From samples (need not be sorted); no samples: constant 0.
  static Quantiles of(std::vector<double> xs) {
    Quantiles d;
    if (xs.empty()) return d;
    std::sort(xs.begin(), xs.end());
    for (std::size_t i = 0; i < kProb.size(); ++i) {
      const double pos = kProb[i] * static_cast<double>(xs.size() - 1);
      const auto lo = static_cast<std::size_t>(pos);
      const std::size_t hi = std::min(lo + 1, xs.size() - 1);
      d.q[i] = xs[lo] + (pos - static_cast<double>(lo)) * (xs[hi] - xs[lo]);
    }
    return d;
  }
  // Inverse CDF at u in [0, 1].
  double at(double u) const {
    u = std::clamp(u, 0.0, 1.0);
    for (std::size_t i = 1; i < kProb.size(); ++i)
      if (u <= kProb[i]) return q[i - 1] + (u - kProb[i - 1]) / (kProb[i] - kProb[i - 1]) * (q[i] - q[i - 1]);
    return q.back();
  }
  double median() const { return q[3]; }
  double mean() const {  // of the piecewise-linear distribution
    double m = 0;
    for (std::size_t i = 1; i < kProb.size(); ++i) m += (kProb[i] - kProb[i - 1]) * 0.5 * (q[i] + q[i - 1]);
    return m;
  }
};

struct EngineOverhead {
  Quantiles dispatch_ms, handoff_ms, continue_ms;
  Quantiles block_time_factor = Quantiles::constant(1.0);
  double stall_probability = 0;  // per block
  Quantiles stall_ms;            // added to a stalled block
  double shared_core_slowdown = 1.0;
  std::string source;
};

// Small, fast, portable: the same stream on every platform (std distributions are not).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed = 0) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  std::uint64_t s_;
};

namespace detail {

inline Quantiles quantiles(const json::Field& f, double hi) {
  check(f.raw().is_object(), ErrorCode::parse, f.where(), "expected an object of quantiles p0 .. p100");
  Quantiles d;
  for (std::size_t i = 0; i < Quantiles::kKey.size(); ++i) {
    const std::string k = Quantiles::kKey[i];
    check(f.has(k), ErrorCode::parse, f.where(k), "missing required field");
    const double v = f.get<double>(k);
    check(std::isfinite(v) && v >= 0, ErrorCode::parse, f.where(k), "must be a non-negative number (got " + std::to_string(v) + ")");
    check(v <= hi, ErrorCode::parse, f.where(k), "implausibly large (" + std::to_string(v) + " > " + std::to_string(hi) + ")");
    check(i == 0 || v >= d.q[i - 1], ErrorCode::parse, f.where(k), "quantiles must not decrease");
    d.q[i] = v;
  }
  return d;
}

inline json::Json to_json(const Quantiles& d) {
  json::Json j = json::Json::object();
  for (std::size_t i = 0; i < Quantiles::kKey.size(); ++i) j[Quantiles::kKey[i]] = d.q[i];
  return j;
}

}  // namespace detail

inline EngineOverhead parse_engine_overhead(const json::Field& f) {
  check(f.raw().is_object(), ErrorCode::parse, f.where(), "expected an object");
  check(f.has("version"), ErrorCode::parse, f.where("version"), "missing required field");
  const int v = f.get<int>("version");
  check(v == kEngineOverheadVersion, ErrorCode::unsupported, f.where("version"),
        "version " + std::to_string(v) + " (this SparseLoom reads version " + std::to_string(kEngineOverheadVersion) + ")");
  EngineOverhead e;
  e.source = f.get_or<std::string>("source", "");
  for (const char* k : {"dispatch_ms", "handoff_ms", "continue_ms", "block_time_factor", "stall_probability", "stall_ms",
                        "shared_core_slowdown"})
    check(f.has(k), ErrorCode::parse, f.where(k), "missing required field");
  e.dispatch_ms = detail::quantiles(f["dispatch_ms"], 1e4);
  e.handoff_ms = detail::quantiles(f["handoff_ms"], 1e4);
  e.continue_ms = detail::quantiles(f["continue_ms"], 1e4);
  e.block_time_factor = detail::quantiles(f["block_time_factor"], 1e3);
  check(e.block_time_factor.q[0] > 0, ErrorCode::parse, f["block_time_factor"].where("p0"), "must be positive");
  e.stall_probability = f.get<double>("stall_probability");
  check(std::isfinite(e.stall_probability) && e.stall_probability >= 0 && e.stall_probability <= 1, ErrorCode::parse,
        f.where("stall_probability"), "must lie in [0, 1] (got " + std::to_string(e.stall_probability) + ")");
  e.stall_ms = detail::quantiles(f["stall_ms"], 1e5);
  e.shared_core_slowdown = f.get<double>("shared_core_slowdown");
  check(std::isfinite(e.shared_core_slowdown) && e.shared_core_slowdown >= 1 && e.shared_core_slowdown <= 100, ErrorCode::parse,
        f.where("shared_core_slowdown"), "must lie in [1, 100] (got " + std::to_string(e.shared_core_slowdown) + ")");
  return e;
}

inline json::Json to_json(const EngineOverhead& e) {
  return {{"version", kEngineOverheadVersion},
          {"source", e.source},
          {"dispatch_ms", detail::to_json(e.dispatch_ms)},
          {"handoff_ms", detail::to_json(e.handoff_ms)},
          {"continue_ms", detail::to_json(e.continue_ms)},
          {"block_time_factor", detail::to_json(e.block_time_factor)},
          {"stall_probability", e.stall_probability},
          {"stall_ms", detail::to_json(e.stall_ms)},
          {"shared_core_slowdown", e.shared_core_slowdown}};
}

}  // namespace sparseloom::sim
