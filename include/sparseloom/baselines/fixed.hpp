#pragma once
// baselines::Fixed: one plain variant per task on one fixed processor, FIFO, no load or SLO
// reaction (Band's FixedWorkerScheduler: every request of a model goes to the worker its
// configuration names). Its best configuration (DESIGN, Settled choices): per task the fastest
// plain variant meeting the accuracy floor, and the task -> processor mapping that maximises
// predicted attainment (chosen once, at the first plan, by the shared search without shedding),
// unless the caller gives a mapping. Later plans keep variant and mapping; only a task whose
// processor became unavailable (or cannot run its variant) moves, to its fastest usable one,
// for as long as that lasts.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sparseloom/baselines/one_model.hpp"
#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::baselines {

class Fixed {
 public:
  Fixed() = default;
  explicit Fixed(std::vector<ProcessorIndex> mapping) : mapping_(std::move(mapping)) {}

  template <Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    auto t0 = std::chrono::steady_clock::now();
    optimizer::check_state(s, e, "Fixed");
    const int T = e.num_tasks(), P = e.num_processors();
    bool first = variant_.empty();
    if (first) variant_.assign(T, -1);
    std::vector<OneModel> models(T);
    for (int t = 0; t < T; ++t) {
      if (first) {  // the variant is chosen once, on the profile (nothing down, no slow-down)
        BlockTable profile = optimizer::block_table(e, t, SystemState{s.slos, {}, 0, {}});
        variant_[t] = fastest_meeting_floor(e, t, profile, s.slos[t].min_accuracy_pct).variant;
      }
      BlockTable bt = optimizer::block_table(e, t, s);
      std::vector<double> acc;
      optimizer::reference_variant(e, t, &acc);
      models[t] = model_on_each(e, t, bt, variant_[t], acc[variant_[t]], s.slos[t].min_accuracy_pct);
    }
    std::vector<std::vector<Candidate>> options(T);
    for (int t = 0; t < T; ++t) options[t] = models[t].on;
    if (mapping_.empty()) {
      std::vector<std::vector<Candidate>> runnable(T);
      std::vector<std::vector<int>> proc_of(T);
      for (int t = 0; t < T; ++t)
        for (int p = 0; p < P; ++p)
          if (optimizer::runnable(options[t][p])) runnable[t].push_back(options[t][p]), proc_of[t].push_back(p);
      optimizer::AssignmentSearch search(s, runnable, P);
      auto pick = search.run({.allow_shed = false});
      mapping_.assign(T, -1);
      for (int t = 0; t < T; ++t)
        if (pick[t] != optimizer::kShed) mapping_[t] = proc_of[t][pick[t]];
    }
    check(static_cast<int>(mapping_.size()) == T, ErrorCode::invalid_argument, "Fixed: mapping",
                     "has " + std::to_string(mapping_.size()) + " entries for " + std::to_string(T) + " tasks");
    std::vector<int> choice(T, optimizer::kShed);
    std::vector<std::string> why(T);
    std::vector<StitchedVariant> fallback(T);
    for (int t = 0; t < T; ++t) {
      fallback[t] = StitchedVariant{std::vector<int>(e.num_blocks(t), variant_[t])};
      int p = mapping_[t];
      why[t] = "Fixed: plain variant " + std::to_string(variant_[t]) + " on processor " + std::to_string(p);
      if (p < 0 || p >= P || !optimizer::runnable(options[t][p])) {
        p = models[t].best_processor();
        why[t] += " (unavailable: moved to " + std::to_string(p) + ")";
      }
      choice[t] = p;
    }
    Plan plan = optimizer::make_plan(s, options, choice, why, fallback, P);
    plan.version = ++version_;
    plan.decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

  const std::vector<ProcessorIndex>& mapping() const { return mapping_; }

 private:
  std::vector<ProcessorIndex> mapping_;
  std::vector<VariantIndex> variant_;
  std::uint64_t version_ = 0;
};

}  // namespace sparseloom::baselines
