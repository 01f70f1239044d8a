#pragma once
// The engine's own cost per request on a real machine, which a cost model of the kernels does
// not see: the queue hand-off and worker wake-up before a request's first block (`dispatch_ms`),
// the hand-off of a running request to another processor's idle worker (`handoff_ms`), the
// bookkeeping between blocks on a worker that is already awake (`continue_ms`), how much slower
// a block runs inside the engine than in the profiler's back-to-back loop (`block_scale` and
// `block_added_ms` per position in the request: the first block also pays for the input copy
// and caches cold from the idle wait, the last for the output; a fitted profile's
// measured_blocks[].engine_ms, per block, where the fit ran it; `block_time_factor`: what is
// left, run-to-run noise and other load), the rare preemption of a block by other programs,
// which is time added rather than a factor (`stall_probability`, `stall_ms`: a 0.01 ms block
// preempted for 5 ms is not 500x slower in the sense a 0.3 ms block would be) and, for
// processors that are
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

// Version 2 added block_scale and block_added_ms (version 1 profiles are read with scale 1 and
// nothing added, i.e. the factor alone, as they were fitted). Version 3 added the optional
// reuse_factor (absent: none, as version 2 simulated).
inline constexpr int kEngineOverheadVersion = 3;

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

// Where a block sits in its task's chain: the in-engine time of the first and last block
// carries fixed costs the middle ones do not (measured: +0.04 ms first, +0.015 ms last on a
// 2-vCPU EPYC, which a pooled factor turned into a 5x factor on 0.01 ms blocks and then applied
// to 0.3 ms ones).
enum class BlockPosition { first = 0, middle = 1, last = 2 };
inline constexpr std::array<const char*, 3> kBlockPositionKey{"first", "middle", "last"};
inline BlockPosition block_position(int b, int num_blocks) {
  return b == 0 ? BlockPosition::first : b + 1 >= num_blocks ? BlockPosition::last : BlockPosition::middle;
}

// A step function of a time in ms: the factor of the first step with x < up_to_ms; beyond the
// last step, or x < 0 (never), the last step's. Steps in increasing up_to_ms.
struct Step {
  double up_to_ms;
  double factor;
};
inline double step_factor(const std::vector<Step>& steps, double x_ms) {
  if (steps.empty()) return 1.0;
  if (x_ms >= 0)
    for (const auto& s : steps)
      if (x_ms < s.up_to_ms) return s.factor;
  return steps.back().factor;
}

struct EngineOverhead {
  Quantiles dispatch_ms, handoff_ms, continue_ms;
  // In-engine block time = (block_scale x modelled + block_added_ms[position]) x reuse x factor.
  double block_scale = 1.0;
  std::array<double, 3> block_added_ms{0.0, 0.0, 0.0};  // [BlockPosition]
  // How much faster a block runs when the same block (task, block, variant, processor) ended
  // `since` ms ago: its weights are still in cache (on a 2-vCPU EPYC 0.63-0.81x its in-engine
  // median within 1 ms, 1.06-1.18x after 20-50 ms). Under load the requests that queue run their
  // blocks back to back, warm; drawn without regard to this, the simulated tail got cold times.
  std::vector<Step> reuse_factor;  // by since (ms); empty: 1
  Quantiles block_time_factor = Quantiles::constant(1.0);
  double stall_probability = 0;  // per block
  Quantiles stall_ms;            // added to a stalled block
  double shared_core_slowdown = 1.0;
  std::string source;
};

// The expected in-engine time of a block the model (or profiler) puts at `ms`.
inline double engine_block_ms(const EngineOverhead& e, double ms, BlockPosition pos) {
  return e.block_scale * ms + e.block_added_ms[static_cast<std::size_t>(pos)];
}

inline double reuse_multiplier(const EngineOverhead& e, double since_ms) { return step_factor(e.reuse_factor, since_ms); }

// A step function from (x_ms, in-engine time / expected) pairs, x_ms < 0: never: the median
// ratio per interval of `edges` (then one beyond the last edge, which also takes "never"); an
// interval with fewer than 30 pairs takes the one before it (none before: 1).
inline std::vector<Step> fit_steps(const std::vector<std::pair<double, double>>& x_ratio, const std::vector<double>& edges) {
  constexpr std::size_t kMinSamples = 30;
  std::vector<std::vector<double>> bins(edges.size() + 1);
  for (auto [x, r] : x_ratio) {
    if (!(r > 0) || !std::isfinite(r)) continue;
    std::size_t i = 0;
    while (x >= 0 && i < edges.size() && x >= edges[i]) ++i;
    bins[x < 0 ? edges.size() : i].push_back(r);
  }
  std::vector<Step> steps;
  double prev = 1.0;
  for (std::size_t i = 0; i < bins.size(); ++i) {
    auto& v = bins[i];
    if (v.size() >= kMinSamples) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      prev = v[v.size() / 2];
    }
    steps.push_back({i < edges.size() ? edges[i] : 1e9, prev});
  }
  return steps;
}
inline std::vector<Step> fit_reuse_factor(const std::vector<std::pair<double, double>>& since_ratio) {
  return fit_steps(since_ratio, {0.5, 1, 2, 3, 5, 10, 20, 50});
}

// One timed block of a real run: where it sits, the profiler's median and what it took.
struct BlockTimeSample {
  BlockPosition pos;
  double profiled_ms;
  double measured_ms;
  int group;  // same (task, block, variant, processor): one median per group enters the fit
};

// Fits block_scale and block_added_ms by least squares on the per-group medians (medians: the
// tail is the factor's and the stalls' business), with one slope shared by all positions and
// one intercept per position (a position without groups keeps 0). The slope is clamped to
// [0.5, 5] and intercepts to >= 0 (a faster-than-profiled fixed cost is noise).
inline void fit_block_time(EngineOverhead& e, const std::vector<BlockTimeSample>& xs) {
  struct G {
    BlockPosition pos{};
    std::vector<double> prof, meas;
  };
  std::vector<G> g;
  for (const auto& x : xs) {
    if (x.group < 0 || !(x.profiled_ms > 0) || !(x.measured_ms >= 0)) continue;
    if (static_cast<std::size_t>(x.group) >= g.size()) g.resize(static_cast<std::size_t>(x.group) + 1);
    auto& gi = g[static_cast<std::size_t>(x.group)];
    gi.pos = x.pos, gi.prof.push_back(x.profiled_ms), gi.meas.push_back(x.measured_ms);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::array<std::vector<std::pair<double, double>>, 3> pts;  // (x, y) per position
  for (const auto& gi : g)
    if (gi.meas.size() >= 3) pts[static_cast<std::size_t>(gi.pos)].push_back({median(gi.prof), median(gi.meas)});
  double sxy = 0, sxx = 0;
  std::array<double, 3> mx{}, my{};
  for (std::size_t c = 0; c < 3; ++c) {
    if (pts[c].empty()) continue;
    for (auto [x, y] : pts[c]) mx[c] += x, my[c] += y;
    mx[c] /= static_cast<double>(pts[c].size()), my[c] /= static_cast<double>(pts[c].size());
    for (auto [x, y] : pts[c]) sxy += (x - mx[c]) * (y - my[c]), sxx += (x - mx[c]) * (x - mx[c]);
  }
  if (sxx <= 0) return;  // no spread in block sizes: nothing to tell scale from fixed cost
  e.block_scale = std::clamp(sxy / sxx, 0.5, 5.0);
  for (std::size_t c = 0; c < 3; ++c) e.block_added_ms[c] = pts[c].empty() ? 0.0 : std::max(0.0, my[c] - e.block_scale * mx[c]);
}

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
  check(v >= 1 && v <= kEngineOverheadVersion, ErrorCode::unsupported, f.where("version"),
        "version " + std::to_string(v) + " (this SparseLoom reads versions 1 to " + std::to_string(kEngineOverheadVersion) + ")");
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
  if (v >= 2) {
    for (const char* k : {"block_scale", "block_added_ms"}) check(f.has(k), ErrorCode::parse, f.where(k), "missing required field");
    e.block_scale = f.get<double>("block_scale");
    check(std::isfinite(e.block_scale) && e.block_scale > 0 && e.block_scale <= 100, ErrorCode::parse, f.where("block_scale"),
          "must lie in (0, 100] (got " + std::to_string(e.block_scale) + ")");
    const auto a = f["block_added_ms"];
    check(a.raw().is_object(), ErrorCode::parse, a.where(), "expected an object with first, middle, last");
    for (std::size_t c = 0; c < 3; ++c) {
      const char* k = kBlockPositionKey[c];
      check(a.has(k), ErrorCode::parse, a.where(k), "missing required field");
      const double x = a.get<double>(k);
      check(std::isfinite(x) && x >= 0 && x <= 1e4, ErrorCode::parse, a.where(k), "must lie in [0, 1e4] ms (got " + std::to_string(x) + ")");
      e.block_added_ms[c] = x;
    }
  }
  auto steps = [&](const char* key, std::vector<Step>& out) {
    if (v < 3 || !f.has(key)) return;
    const auto r = f[key];
    check(r.raw().is_array(), ErrorCode::parse, r.where(), "expected an array of {up_to_ms, factor}");
    for (std::size_t i = 0; i < r.raw().size(); ++i) {
      const auto x = r[i];
      check(x.raw().is_object() && x.has("up_to_ms") && x.has("factor"), ErrorCode::parse, x.where(), "expected {up_to_ms, factor}");
      const Step st{x.get<double>("up_to_ms"), x.get<double>("factor")};
      check(std::isfinite(st.up_to_ms) && st.up_to_ms > 0 && (out.empty() || st.up_to_ms > out.back().up_to_ms), ErrorCode::parse,
            x.where("up_to_ms"), "must be positive and increasing");
      check(std::isfinite(st.factor) && st.factor > 0 && st.factor <= 100, ErrorCode::parse, x.where("factor"),
            "must lie in (0, 100] (got " + std::to_string(st.factor) + ")");
      out.push_back(st);
    }
  };
  steps("reuse_factor", e.reuse_factor);
  e.shared_core_slowdown = f.get<double>("shared_core_slowdown");
  check(std::isfinite(e.shared_core_slowdown) && e.shared_core_slowdown >= 1 && e.shared_core_slowdown <= 100, ErrorCode::parse,
        f.where("shared_core_slowdown"), "must lie in [1, 100] (got " + std::to_string(e.shared_core_slowdown) + ")");
  return e;
}

inline json::Json to_json(const EngineOverhead& e) {
  auto steps = [](const std::vector<Step>& v) {
    json::Json a = json::Json::array();
    for (const auto& r : v) a.push_back({{"up_to_ms", r.up_to_ms}, {"factor", r.factor}});
    return a;
  };
  return {{"version", kEngineOverheadVersion},
          {"source", e.source},
          {"dispatch_ms", detail::to_json(e.dispatch_ms)},
          {"handoff_ms", detail::to_json(e.handoff_ms)},
          {"continue_ms", detail::to_json(e.continue_ms)},
          {"block_scale", e.block_scale},
          {"block_added_ms", {{"first", e.block_added_ms[0]}, {"middle", e.block_added_ms[1]}, {"last", e.block_added_ms[2]}}},
          {"reuse_factor", steps(e.reuse_factor)},
          {"block_time_factor", detail::to_json(e.block_time_factor)},
          {"stall_probability", e.stall_probability},
          {"stall_ms", detail::to_json(e.stall_ms)},
          {"shared_core_slowdown", e.shared_core_slowdown}};
}

}  // namespace sparseloom::sim
