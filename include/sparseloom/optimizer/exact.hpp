#pragma once
// optimizer::Exact: the reference solver for small spaces, used to check the fast one. It
// enumerates every stitch x per-block placement of every task (variants^blocks x
// processors^blocks), asks the estimator for each one's accuracy and latency, drops those below
// the floor and those dominated (model.hpp, prune_dominated: never the optimum), then tries
// every combination of one option (or shedding) per task and keeps the best combined_score,
// less switching costs when the state holds a plan in force: the optimum of the same model
// SparsityAware optimises. Throws Error(invalid_argument) when
// the space exceeds the limits given at construction.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::optimizer {

class Exact {
 public:
  struct Limits {
    double per_task = 1e5;      // stitches x placements enumerated per task
    double combinations = 5e6;  // product over tasks of (options + 1) after pruning
  };
  Exact() = default;
  // `switching`: what an option other than a task's plan in force costs (model.hpp; the same
  // default as SparsityAware's), so both solve the same re-planning problem.
  explicit Exact(Limits l, bool stitching = true, bool allow_shed = true, SwitchPenalty switching = {})
      : limits_(l), stitching_(stitching), allow_shed_(allow_shed), switching_(switching) {}

  template <Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    auto t0 = std::chrono::steady_clock::now();
    check_state(s, e, "Exact");
    const int T = e.num_tasks(), P = e.num_processors();
    std::vector<int> procs;
    for (int p = 0; p < P; ++p)
      if (usable(s, p)) procs.push_back(p);
    std::vector<std::vector<Candidate>> options(T);
    std::vector<std::string> why(T);
    std::vector<StitchedVariant> fallback(T);
    double combos = 1;
    for (int t = 0; t < T; ++t) {
      options[t] = enumerate(e, t, s, procs, fallback[t]);
      why[t] = "Exact: " + std::to_string(options[t].size()) + " undominated options";
      combos *= static_cast<double>(options[t].size() + 1);
    }
    check(combos <= limits_.combinations, ErrorCode::invalid_argument, "Exact::plan",
          std::to_string(static_cast<long long>(combos)) + " combinations exceed the limit of " +
              std::to_string(static_cast<long long>(limits_.combinations)));
    std::vector<int> choice(T, allow_shed_ ? kShed : 0), best = choice;
    for (int t = 0; t < T; ++t)
      if (options[t].empty()) choice[t] = best[t] = kShed;
    double best_score = -kInf;
    // Odometer over every task's options (kShed first where shedding is allowed).
    for (;;) {
      double sc = evaluate(s, options, choice, P).score;
      if (sc > best_score + 1e-12) best_score = sc, best = choice;
      int t = 0;
      for (; t < T; ++t) {
        int first = (allow_shed_ || options[t].empty()) ? kShed : 0;
        if (choice[t] + 1 < static_cast<int>(options[t].size())) {
          ++choice[t];
          break;
        }
        choice[t] = first;
      }
      if (t == T) break;
    }
    Plan plan = make_plan(s, options, best, why, fallback, P);
    plan.version = ++version_;
    plan.decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

 private:
  template <Estimator E>
  std::vector<Candidate> enumerate(const E& e, TaskIndex t, const SystemState& s, const std::vector<int>& procs,
                                   StitchedVariant& fallback) const {
    const int B = e.num_blocks(t), V = e.num_variants(t);
    BlockTable bt = block_table(e, t, s);
    fallback = StitchedVariant{std::vector<int>(B, reference_variant(e, t))};
    std::vector<Candidate> out;
    if (procs.empty()) return out;
    double space = std::pow(static_cast<double>(stitching_ ? V : 1), B) * std::pow(static_cast<double>(procs.size()), B);
    if (!stitching_) space *= V;
    check(space <= limits_.per_task, ErrorCode::invalid_argument, "Exact::plan: task " + std::to_string(t),
          "space of " + std::to_string(static_cast<long long>(space)) + " stitches x placements exceeds the limit");
    std::vector<int> sv(B, 0), pv(B, 0);
    auto next = [](std::vector<int>& x, int base) {
      for (auto& d : x) {
        if (++d < base) return true;
        d = 0;
      }
      return false;
    };
    const auto in_force = plan_in_force(s, t, B, V, procs);
    Candidate best_below;
    bool have_below = false;
    do {
      if (!stitching_ && !StitchedVariant{sv}.is_plain()) continue;
      StitchedVariant st{sv};
      double acc = e.accuracy_pct(t, st);
      std::fill(pv.begin(), pv.end(), 0);
      do {
        Placement pl{std::vector<int>(B)};
        bool ok = true;
        for (int b = 0; b < B && ok; ++b) {
          pl.processor[b] = procs[pv[b]];
          ok = std::isfinite(bt.ms(b, sv[b], pl.processor[b]));
        }
        if (!ok) continue;
        Candidate c = make_candidate(e, t, bt, st, pl, acc);
        c.switch_cost = switch_cost(e, t, c.stitch, c.placement, in_force ? &*in_force : nullptr, switching_);
        if (acc >= s.slos[t].min_accuracy_pct)
          out.push_back(std::move(c));
        else if (!have_below || acc > best_below.accuracy_pct)
          best_below = std::move(c), have_below = true;
      } while (next(pv, static_cast<int>(procs.size())));
    } while (next(sv, V));
    if (out.empty() && have_below) out.push_back(std::move(best_below));
    prune_dominated(out);
    return out;
  }

  Limits limits_{};
  bool stitching_ = true;
  bool allow_shed_ = true;
  SwitchPenalty switching_{};
  std::uint64_t version_ = 0;
};

}  // namespace sparseloom::optimizer
