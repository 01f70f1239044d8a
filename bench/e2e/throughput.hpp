#pragma once
// Throughput at saturation: the highest request-rate scale a policy sustains at >= 99 % SLO
// attainment (issue 6). Each probe is a short real run of the scenario with every task's rate
// (planned and offered) x the scale and no mid-run SLO changes; the search doubles the scale
// from 1 until a probe fails (or halves it until one passes), then bisects geometrically.
// A probe lasts probe_s, or longer so that it offers >= min_requests requests (DESIGN's
// protocol), up to max_probe_s. One probe per scale: on shared cores a noisy probe can end the
// doubling early, for every policy alike; the probes are in the JSON.
#include <algorithm>
#include <cmath>
#include <utility>

#include "harness.hpp"

namespace sparseloom::e2e {

struct ThroughputOptions {
  double probe_s = 2.5;      // shortest probe run ...
  double min_requests = 500; // ... long enough for this many requests (DESIGN's protocol)
  double max_probe_s = 20;
  double target = 0.99;      // SLO attainment a sustained scale must reach
  double max_scale = 256;    // doubling stops here
  double min_scale = 1.0 / 16;
  int bisections = 3;        // geometric bisection steps between the last pass and the first fail
};

struct Throughput {
  double rate_scale = 0;     // the highest scale sustained (0: not even min_scale)
  double offered_rps = 0;    // the scenario's total rate x rate_scale
  double served_rps = 0;     // measured in the probe at rate_scale
  json::Json probes = json::Json::array();
};

// The search alone: run_probe(scale, seconds) runs the scenario once at that rate scale and
// returns {SLO violation rate, served rps}. The real harness probes by running (below), the
// simulator by simulating (simulate.hpp), so both search the same way.
template <class RunProbe>
Throughput search_max_scale(double total_rps, RunProbe&& run_probe, const ThroughputOptions& o = {}) {
  Throughput best;
  auto probe = [&](double scale) {
    const double len = std::min(o.max_probe_s, std::max(o.probe_s, o.min_requests / std::max(total_rps * scale, 1e-9)));
    const auto [violation, served] = run_probe(scale, len);
    const bool ok = 1.0 - violation >= o.target;
    best.probes.push_back({{"rate_scale", scale}, {"seconds", len}, {"slo_violation_rate", violation}, {"served_rps", served},
                           {"sustained", ok}});
    if (ok && scale > best.rate_scale) {
      best.rate_scale = scale;
      best.served_rps = served;
    }
    return ok;
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

// make() returns a fresh policy object for each probe (stateful baselines start clean), and
// make_pre() a fresh memory policy.
template <class MakePolicy, class MakePre = runtime::LoadAllPreloader (*)()>
Throughput max_sustainable(Setup& st, const std::string& name, MakePolicy&& make, const ThroughputOptions& o = {},
                           MakePre make_pre = [] { return runtime::LoadAllPreloader{}; }) {
  double total = 0;
  for (const auto& t : st.tasks) total += t.slo.rate_rps;
  return search_max_scale(
      total,
      [&](double scale, double seconds) {
        RunOptions ro;
        ro.rate_scale = scale;
        ro.slo_changes = false;
        ro.fresh_library = false;  // blocks stay compiled across probes: only rates matter here
        const Row r = run_policy(st, name, make(), seconds, ro, make_pre());
        return std::pair{r.violation, r.served};
      },
      o);
}

}  // namespace sparseloom::e2e
