#pragma once
// What the one-model baselines share: a plain variant run whole on one processor, and "the
// fastest plain variant meeting the accuracy floor" (DESIGN, Settled choices: baselines get
// their best configuration; for one-model policies that is this variant).
#include <algorithm>
#include <cmath>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::baselines {

using optimizer::BlockTable;
using optimizer::Candidate;
using optimizer::kInf;

// Plain variant v with every block on p (kInf latency where p cannot run all of it or is unusable).
template <Estimator E>
Candidate whole_on(const E& e, TaskIndex t, const BlockTable& bt, VariantIndex v, ProcessorIndex p, double acc) {
  StitchedVariant s{std::vector<VariantIndex>(bt.blocks, v)};
  Placement pl{std::vector<ProcessorIndex>(bt.blocks, p)};
  for (int b = 0; b < bt.blocks; ++b)
    if (!std::isfinite(bt.ms(b, v, p))) {
      Candidate c;
      c.stitch = std::move(s);
      c.placement = std::move(pl);
      c.latency_ms = kInf;
      c.accuracy_pct = acc;
      c.busy_ms.assign(bt.processors, 0.0);
      return c;
    }
  return optimizer::make_candidate(e, t, bt, std::move(s), std::move(pl), acc);
}

struct OneModel {
  VariantIndex variant = 0;
  double accuracy_pct = 0;
  bool meets_floor = false;
  std::vector<Candidate> on;  // per processor: the variant whole on it
  double best_ms() const {
    double m = kInf;
    for (const auto& c : on) m = std::min(m, c.latency_ms);
    return m;
  }
  ProcessorIndex best_processor() const {
    ProcessorIndex best = -1;
    for (std::size_t p = 0; p < on.size(); ++p)
      if (std::isfinite(on[p].latency_ms) && (best < 0 || on[p].latency_ms < on[best].latency_ms))
        best = static_cast<ProcessorIndex>(p);
    return best;
  }
};

template <Estimator E>
OneModel model_on_each(const E& e, TaskIndex t, const BlockTable& bt, VariantIndex v, double acc, double floor) {
  OneModel m;
  m.variant = v;
  m.accuracy_pct = acc;
  m.meets_floor = acc >= floor;
  for (int p = 0; p < bt.processors; ++p) m.on.push_back(whole_on(e, t, bt, v, p, acc));
  return m;
}

// The fastest plain variant (whole on its best usable processor) meeting the floor; the most
// accurate plain variant where none meets it.
template <Estimator E>
OneModel fastest_meeting_floor(const E& e, TaskIndex t, const BlockTable& bt, double floor) {
  std::vector<double> acc;
  VariantIndex ref = optimizer::reference_variant(e, t, &acc);
  OneModel best;
  bool found = false;
  for (int v = 0; v < bt.variants; ++v) {
    if (acc[v] < floor) continue;
    OneModel m = model_on_each(e, t, bt, v, acc[v], floor);
    if (!std::isfinite(m.best_ms())) continue;
    if (!found || m.best_ms() < best.best_ms()) best = std::move(m), found = true;
  }
  return found ? best : model_on_each(e, t, bt, ref, acc[ref], floor);
}

}  // namespace sparseloom::baselines
