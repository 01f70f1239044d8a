#pragma once
// The max-sustainable-rate search alone (issue 6), free of the harness so that it is tested on
// its own (tests/unit) and shared by real runs (throughput.hpp) and simulated ones
// (simulate.hpp): the highest request-rate scale a policy sustains at >= 99 % SLO attainment.
// The search doubles the scale from 1 until a probe fails (or halves it until one passes), then
// bisects geometrically. A failing probe is run again (confirm_fails): on shared cores a
// transient stall of the machine fails a probe at a scale the policy sustains, while a scale
// past saturation fails every time, so a failure counts only when it repeats. Stalls do not
// make probes pass, so passes are not repeated. Every probe run is in the JSON.
#include <algorithm>
#include <cmath>
#include <vector>
#include <utility>

#include "sparseloom/core/json.hpp"

namespace sparseloom::e2e {

struct ThroughputOptions {
  double probe_s = 2.5;      // shortest probe run ...
  double min_requests = 500; // ... long enough for this many requests (DESIGN's protocol)
  double max_probe_s = 20;
  double target = 0.99;      // SLO attainment a sustained scale must reach
  double max_scale = 256;    // doubling stops here
  double min_scale = 1.0 / 16;
  int bisections = 3;        // geometric bisection steps between the last pass and the first fail
  int confirm_fails = 1;     // a failing probe is run again this many times; the scale fails only if all fail
  int searches = 1;          // whole searches per policy; the median sustained scale is reported
};

struct Throughput {
  double rate_scale = 0;     // the highest scale sustained (0: not even min_scale)
  double offered_rps = 0;    // the scenario's total rate x rate_scale
  double served_rps = 0;     // measured in the probe at rate_scale
  json::Json probes = json::Json::array();
  json::Json searches = json::Json::array();  // the sustained scale of each search (searches > 1)
};

// run_probe(scale, seconds) runs the scenario once at that rate scale and returns
// {SLO violation rate, served rps}.
template <class RunProbe>
Throughput search_max_scale(double total_rps, RunProbe&& run_probe, const ThroughputOptions& o = {}) {
  Throughput best;
  auto probe = [&](double scale) {
    const double len = std::min(o.max_probe_s, std::max(o.probe_s, o.min_requests / std::max(total_rps * scale, 1e-9)));
    for (int attempt = 0; attempt <= std::max(0, o.confirm_fails); ++attempt) {
      const auto [violation, served] = run_probe(scale, len);
      const bool ok = 1.0 - violation >= o.target;
      best.probes.push_back({{"rate_scale", scale}, {"seconds", len}, {"slo_violation_rate", violation}, {"served_rps", served},
                             {"sustained", ok}, {"attempt", attempt}});
      if (ok) {
        if (scale > best.rate_scale) best.rate_scale = scale, best.served_rps = served;
        return true;
      }
    }
    return false;
  };
  double lo = 0, hi = 0;
  if (probe(1.0)) {
    lo = 1.0;
    for (double s = 2.0;; s *= 2) {
      if (s > o.max_scale) { hi = 0; break; }
      if (!probe(s)) { hi = s; break; }
      lo = s;
    }
  } else {
    hi = 1.0;
    for (double s = 0.5; s >= o.min_scale; s /= 2) {
      if (probe(s)) { lo = s; break; }
      hi = s;
    }
  }
  for (int i = 0; i < o.bisections && lo > 0 && hi > 0; ++i) {
    const double mid = std::sqrt(lo * hi);
    (probe(mid) ? lo : hi) = mid;
  }
  best.offered_rps = best.rate_scale * total_rps;
  return best;
}

// o.searches whole searches, one after another; the one with the median sustained scale is
// returned (the lower median for an even count), with every search's scale in `searches` and
// every probe, tagged with its search, in `probes`. One search's result moves by a bisection
// step or more between runs on shared cores (session 13: one plan x1.30 and x2.83).
template <class RunProbe>
Throughput search_max_scale_repeated(double total_rps, RunProbe&& run_probe, const ThroughputOptions& o = {}) {
  std::vector<Throughput> all;
  for (int i = 0; i < std::max(1, o.searches); ++i) all.push_back(search_max_scale(total_rps, run_probe, o));
  if (all.size() == 1) return all.front();
  std::vector<std::size_t> order(all.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return all[a].rate_scale < all[b].rate_scale; });
  Throughput out = all[order[(order.size() - 1) / 2]];
  out.probes = json::Json::array();
  for (std::size_t i = 0; i < all.size(); ++i) {
    out.searches.push_back(all[i].rate_scale);
    for (auto p : all[i].probes) {
      p["search"] = i;
      out.probes.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace sparseloom::e2e
