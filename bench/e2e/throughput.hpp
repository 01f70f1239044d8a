#pragma once
// Throughput at saturation on real runs (issue 6): the search of scale_search.hpp, each probe a
// short real run of the scenario with every task's rate (planned and offered) x the scale and
// no mid-run SLO changes. A probe lasts probe_s, or longer so that it offers >= min_requests
// requests (DESIGN's protocol), up to max_probe_s.
#include "harness.hpp"
#include "scale_search.hpp"

namespace sparseloom::e2e {

// make() returns a fresh policy object for each probe (stateful baselines start clean), and
// make_pre() a fresh memory policy.
template <class MakePolicy, class MakePre = runtime::LoadAllPreloader (*)()>
Throughput max_sustainable(Setup& st, const std::string& name, MakePolicy&& make, const ThroughputOptions& o = {},
                           MakePre make_pre = [] { return runtime::LoadAllPreloader{}; }) {
  double total = 0;
  for (const auto& t : st.tasks) total += t.slo.rate_rps;
  return search_max_scale_repeated(
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
