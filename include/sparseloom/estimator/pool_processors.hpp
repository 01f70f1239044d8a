#pragma once
// Pools the latency profiles of identical processors. Two core groups of one CPU (same kind,
// backend, device and thread count) run a block equally fast; their profiles differ by
// measurement noise alone (sd 2-2.5 % per entry on the 2-core VMs, up to 15 %). Kept apart,
// that noise is what the optimizer optimises: it split a task's blocks across two identical
// core groups for a "faster" core that is not, paying a hand-off per request. Pooled, every
// (block, variant) has one figure on all of them, from twice the samples.
//
// Declared identity is not trusted alone: hybrid CPUs report one model name for cores of
// different speeds. A group is pooled only when its measured tables also agree: the median
// over all entries of the ratio to the group's first processor within `tolerance`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "sparseloom/estimator/profile_table.hpp"

namespace sparseloom::estimator {

struct PooledGroup {
  std::vector<int> processors;  // indices into the processor list, ascending
  std::vector<double> median_ratio;  // per member: its median entry ratio to the first member
  bool pooled = false;               // false: declared identical, measured different
};

namespace detail {
inline bool same_processor(const ProcessorProfile& a, const ProcessorProfile& b) {
  return a.kind == b.kind && a.backend == b.backend && a.device == b.device && a.threads == b.threads;
}

// Median over every entry both processors can run (block and repaired tables) of q / p.
inline double median_entry_ratio(const std::vector<TaskProfile>& tasks, int p, int q) {
  std::vector<double> r;
  using Table = std::vector<std::vector<std::vector<LatencyStats>>>;
  for (const auto& tp : tasks)
    for (const Table* table : {&tp.block, &tp.repaired})
      for (const auto& b : *table)
        for (const auto& v : b) {
          const auto& x = v.at(static_cast<std::size_t>(p));
          const auto& y = v.at(static_cast<std::size_t>(q));
          if (x.samples > 0 && y.samples > 0 && x.median_ms > 0 && y.median_ms > 0) r.push_back(y.median_ms / x.median_ms);
        }
  if (r.empty()) return 1.0;
  std::nth_element(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(r.size() / 2), r.end());
  return r[r.size() / 2];
}
}  // namespace detail

// Groups of >= 2 declared-identical processors; each entry of a pooled group becomes, on every
// member that can run it, the mean of the members' figures (median, p90; min is the minimum;
// samples summed). Entries a member cannot run (samples == 0) stay so. Returns every group
// with its measured ratios, pooled or not, for the caller to report.
inline std::vector<PooledGroup> pool_identical_processors(std::vector<TaskProfile>& tasks,
                                                          const std::vector<ProcessorProfile>& processors,
                                                          double tolerance = 0.05) {
  const int P = static_cast<int>(processors.size());
  std::vector<PooledGroup> groups;
  std::vector<bool> taken(static_cast<std::size_t>(P), false);
  for (int p = 0; p < P; ++p) {
    if (taken[static_cast<std::size_t>(p)]) continue;
    PooledGroup g;
    g.processors.push_back(p);
    for (int q = p + 1; q < P; ++q)
      if (!taken[static_cast<std::size_t>(q)] && detail::same_processor(processors[static_cast<std::size_t>(p)], processors[static_cast<std::size_t>(q)])) {
        g.processors.push_back(q);
        taken[static_cast<std::size_t>(q)] = true;
      }
    if (g.processors.size() < 2) continue;
    g.pooled = true;
    for (int q : g.processors) {
      const double r = detail::median_entry_ratio(tasks, p, q);
      g.median_ratio.push_back(r);
      if (std::abs(r - 1.0) > tolerance) g.pooled = false;
    }
    if (g.pooled) {
      using Table = std::vector<std::vector<std::vector<LatencyStats>>>;
      for (auto& tp : tasks)
        for (Table* table : {&tp.block, &tp.repaired})
          for (auto& b : *table)
            for (auto& v : b) {
              LatencyStats sum;
              sum.min_ms = 1e300;
              int n = 0;
              for (int q : g.processors) {
                const auto& s = v.at(static_cast<std::size_t>(q));
                if (s.samples <= 0) continue;
                sum.median_ms += s.median_ms;
                sum.p90_ms += s.p90_ms;
                sum.min_ms = std::min(sum.min_ms, s.min_ms);
                sum.samples += s.samples;
                ++n;
              }
              if (n < 2) continue;
              sum.median_ms /= n;
              sum.p90_ms /= n;
              for (int q : g.processors)
                if (v[static_cast<std::size_t>(q)].samples > 0) v[static_cast<std::size_t>(q)] = sum;
            }
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

// "cpu0+cpu1 pooled (median ratios 1.000, 1.004)" / "... not pooled: measured 1.31x apart".
inline std::string describe(const PooledGroup& g, const std::vector<ProcessorProfile>& processors) {
  std::string s;
  for (std::size_t i = 0; i < g.processors.size(); ++i)
    s += (i ? "+" : "") + processors.at(static_cast<std::size_t>(g.processors[i])).name;
  s += g.pooled ? " pooled (identical; median entry ratios" : " not pooled (declared identical, measured apart; median entry ratios";
  for (double r : g.median_ratio) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.3f", r);
    s += buf;
  }
  return s + ")";
}

}  // namespace sparseloom::estimator
