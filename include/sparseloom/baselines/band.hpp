#pragma once
// baselines::Band<S>: Band (mrsnu/band) as a policy. One model per task (the fastest plain
// variant meeting the accuracy floor: its best configuration), whole on one processor per
// request, the processor chosen per request at dispatch time by one of Band's schedulers:
//  - shortest_expected_latency (SEL, shortest_expected_latency_scheduler.cc): from a window of
//    pending requests, repeatedly take the one whose best expected finish (processor waiting
//    time + expected latency) is largest and enqueue it on that processor; SLOs are ignored.
//  - heterogeneous_earliest_finish_time (HEFT, heterogeneous_earliest_finish_time_scheduler.cc):
//    the same choice, but a request is only placed on an idle processor; when the most urgent
//    request's best processor is busy it yields (its time is reserved there) and the next
//    most urgent is considered.
//  - least_slack_first (LSF, least_slack_first_scheduler.cc): when some processor is idle,
//    order the window by slack = deadline - now - expected latency; drop a request that cannot
//    finish by its deadline even on its best processor; enqueue the others on their best
//    processor only if it is idle.
// Expected latency per (task, processor) starts at the estimator's profile (with observed
// speed) and follows measurements as an exponential moving average, smoothing 0.1 (Band's
// profile_smoothing_factor default). The window is unbounded by default (Band's
// schedule_window_size default). Band's per-subgraph fallback (splitting a model across
// processors for unsupported ops) is not emulated: a processor that cannot run every block of
// the model is not a candidate for it.
// plan() reports a nominal placement: the processor a static SEL would give each task (largest
// latency first, each to its earliest expected finish under the M/G/1 load of those before),
// with every other processor that runs the model as an alternative and Routing::earliest_finish.
// In the Engine that is how Band's per-request choice happens: each request goes to the
// processor whose EDF wait plus expected service (the engine's profile x observed speed) ends
// first, SEL's rule. The engine keeps no central pending window, so it never calls dispatch():
// HEFT's idle-only placement and LSF's slack order are not reproduced there (its queues are EDF
// with admission control for every policy); dispatch() states those schedulers for a runtime
// that has such a window and is unit-tested on hand-made queues.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "sparseloom/baselines/one_model.hpp"
#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/dispatch.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::baselines {

enum class BandScheduler { shortest_expected_latency, heterogeneous_earliest_finish_time, least_slack_first };

template <BandScheduler S>
class Band {
 public:
  explicit Band(int window_size = INT_MAX, double smoothing = 0.1) : window_(window_size), alpha_(smoothing) {}

  template <Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    auto t0 = std::chrono::steady_clock::now();
    optimizer::check_state(s, e, name());
    const int T = e.num_tasks(), P = e.num_processors();
    std::vector<OneModel> models(T);
    std::vector<std::vector<Candidate>> options(T);
    std::vector<std::string> why(T);
    std::vector<StitchedVariant> fallback(T);
    if (static_cast<int>(expected_.size()) != T) {
      expected_.assign(T, std::vector<double>(P, kInf));
      variant_.assign(T, -1);
    }
    for (int t = 0; t < T; ++t) {
      BlockTable bt = optimizer::block_table(e, t, s);
      models[t] = fastest_meeting_floor(e, t, bt, s.slos[t].min_accuracy_pct);
      options[t] = models[t].on;
      fallback[t] = StitchedVariant{std::vector<int>(e.num_blocks(t), models[t].variant)};
      // Keep measured averages while the model and the processor's state stay; restart from
      // the profile where either changed.
      for (int p = 0; p < P; ++p) {
        double prof = options[t][p].latency_ms;
        if (variant_[t] != models[t].variant || !std::isfinite(expected_[t][p]) || !std::isfinite(prof))
          expected_[t][p] = prof;
      }
      variant_[t] = models[t].variant;
      why[t] = std::string(name()) + ": one model (plain variant " + std::to_string(models[t].variant) +
               "), processor chosen per request";
    }
    // Nominal placement: static SEL.
    std::vector<int> order(T), choice(T, optimizer::kShed);
    for (int t = 0; t < T; ++t) order[t] = t;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return models[a].best_ms() > models[b].best_ms(); });
    optimizer::LoadModel load(P);
    for (int t : order) {
      double best = kInf;
      for (int p = 0; p < P; ++p) {
        double f = load.wait_ms(p) + expected_[t][p];
        if (f < best) best = f, choice[t] = p;
      }
      if (choice[t] != optimizer::kShed) load.add(options[t][choice[t]], s.slos[t]);
    }
    Plan plan = optimizer::make_plan(s, options, choice, why, fallback, P);
    optimizer::offer_alternatives(plan, s, e, Routing::earliest_finish);
    plan.version = ++version_;
    plan.decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

  void observe(TaskIndex t, ProcessorIndex p, double ms) {
    if (t < 0 || t >= static_cast<int>(expected_.size()) || p < 0 || p >= static_cast<int>(expected_[t].size())) return;
    double& x = expected_[t][p];
    x = std::isfinite(x) ? (1 - alpha_) * x + alpha_ * ms : ms;
  }

  void dispatch(std::span<const PendingRequest> pending, std::span<const ProcessorQueue> processors, double now_ms,
                std::vector<DispatchDecision>& out) {
    const int P = static_cast<int>(processors.size());
    std::vector<double> waiting(P);
    for (int p = 0; p < P; ++p) waiting[p] = processors[p].available ? processors[p].waiting_ms : kInf;
    std::vector<PendingRequest> window(pending.begin(),
                                       pending.begin() + std::min<std::size_t>(pending.size(), window_));
    // Requests no usable processor can run are rejected (Band would leave them queued forever).
    std::erase_if(window, [&](const PendingRequest& r) {
      if (std::isfinite(best(r.task, waiting).second)) return false;
      out.push_back({DispatchDecision::Action::drop, r.id, -1, 0});
      return true;
    });
    if constexpr (S == BandScheduler::shortest_expected_latency) {
      while (!window.empty()) {
        int j = most_urgent(window, waiting, {});
        run(out, window[j], best(window[j].task, waiting).first, waiting);
        window.erase(window.begin() + j);
      }
    } else if constexpr (S == BandScheduler::heterogeneous_earliest_finish_time) {
      std::set<int> idle = idle_set(processors);
      while (!window.empty() && !idle.empty()) {
        std::vector<double> reserved = waiting;
        std::vector<bool> yielded(window.size(), false);
        int j = -1, p = -1;
        for (;;) {
          j = most_urgent(window, reserved, yielded);
          if (j < 0) return;  // nobody can be placed now
          p = best(window[j].task, reserved).first;
          if (idle.count(p)) break;
          reserved[p] += expected_[window[j].task][p];
          yielded[j] = true;
        }
        run(out, window[j], p, waiting);
        idle.erase(p);
        window.erase(window.begin() + j);
      }
    } else {
      std::set<int> idle = idle_set(processors);
      if (idle.empty()) return;
      std::vector<double> slack(window.size());
      std::vector<int> order(window.size());
      for (std::size_t i = 0; i < window.size(); ++i) {
        slack[i] = window[i].deadline_ms - now_ms - best(window[i].task, waiting).second;
        order[i] = static_cast<int>(i);
      }
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return slack[a] < slack[b]; });
      for (int i : order) {
        const PendingRequest& r = window[i];
        auto [p, cost] = best(r.task, waiting);
        if (now_ms + cost > r.deadline_ms) {
          out.push_back({DispatchDecision::Action::drop, r.id, p, expected_[r.task][p]});
        } else if (idle.count(p)) {
          run(out, r, p, waiting);
        }
      }
    }
  }

  static constexpr const char* name() {
    if constexpr (S == BandScheduler::shortest_expected_latency) return "Band-SEL";
    else if constexpr (S == BandScheduler::heterogeneous_earliest_finish_time) return "Band-HEFT";
    else return "Band-LSF";
  }

  double expected_ms(TaskIndex t, ProcessorIndex p) const { return expected_[t][p]; }

 private:
  // Earliest expected finish of task t: (processor, waiting + expected latency).
  std::pair<int, double> best(TaskIndex t, const std::vector<double>& waiting) const {
    int bp = -1;
    double bf = kInf;
    if (t < 0 || t >= static_cast<int>(expected_.size())) return {bp, bf};
    for (std::size_t p = 0; p < waiting.size() && p < expected_[t].size(); ++p) {
      double f = waiting[p] + expected_[t][p];
      if (f < bf) bf = f, bp = static_cast<int>(p);
    }
    return {bp, bf};
  }

  // The request whose best finish is largest; only the first pending request of each task is
  // looked at (Band searches each model once per round: its requests cost the same).
  int most_urgent(const std::vector<PendingRequest>& window, const std::vector<double>& waiting,
                  const std::vector<bool>& skip) const {
    int target = -1;
    double largest = -1;
    std::set<TaskIndex> searched;
    for (std::size_t i = 0; i < window.size(); ++i) {
      if (!skip.empty() && skip[i]) continue;
      if (!searched.insert(window[i].task).second) continue;
      double f = best(window[i].task, waiting).second;
      if (std::isfinite(f) && f > largest) largest = f, target = static_cast<int>(i);
    }
    return target;
  }

  void run(std::vector<DispatchDecision>& out, const PendingRequest& r, int p, std::vector<double>& waiting) const {
    double x = expected_[r.task][p];
    out.push_back({DispatchDecision::Action::run, r.id, p, x});
    waiting[p] += x;
  }

  static std::set<int> idle_set(std::span<const ProcessorQueue> processors) {
    std::set<int> idle;
    for (std::size_t p = 0; p < processors.size(); ++p)
      if (processors[p].available && processors[p].idle) idle.insert(static_cast<int>(p));
    return idle;
  }

  std::size_t window_;
  double alpha_;
  std::vector<std::vector<double>> expected_;
  std::vector<VariantIndex> variant_;
  std::uint64_t version_ = 0;
};

using BandSEL = Band<BandScheduler::shortest_expected_latency>;
using BandHEFT = Band<BandScheduler::heterogeneous_earliest_finish_time>;
using BandLSF = Band<BandScheduler::least_slack_first>;

}  // namespace sparseloom::baselines
