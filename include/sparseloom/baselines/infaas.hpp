#pragma once
// baselines::Infaas: INFaaS's model-variant selection (stanford-mast/INFaaS,
// src/master/queryfe_server.cc, gpar_lat_acc_search) as a policy. Per task, among the plain
// variants meeting the accuracy floor whose profiled latency fits the latency SLO, it takes a
// running (loaded) one if any, and among those the one with the smallest SLO - latency (the
// slowest that still fits); with none loaded, the same rule over all that fit. With none
// fitting, the fastest meeting the floor (it will miss). No stitching.
// INFaaS treats hardware as part of a variant and its workers as interchangeable; it has no
// notion of which processor gains from sparsity. Here the processor of each task is chosen
// sparsity-blind: by the reference (dense) model's cost under the blind latency model
// (model.hpp, blind_task_cost), balancing load the way INFaaS picks the least-loaded replica
// (tasks by rate x cost, each to the processor with the smallest blind cost + M/G/1 wait under
// the blind load so far). The variant's latency check then uses its real profile there
// (INFaaS profiles every variant it registers).
// "Loaded" = chosen by the previous plan, plus whatever set_loaded() reports (a preloader
// can). Where nothing is loaded INFaaS itself picks the variant with the smallest load +
// inference time; Options{.cold_start_fastest = true} does that (load time taken as
// proportional to memory_bytes at load_bytes_per_ms), the default applies the slack rule.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/baselines/one_model.hpp"
#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::baselines {

class Infaas {
 public:
  struct Options {
    bool cold_start_fastest = false;
    double load_bytes_per_ms = 1e6;  // ~1 GB/s, for the cold-start rule only
  };
  Infaas() = default;
  explicit Infaas(Options o) : opt_(o) {}

  void set_loaded(TaskIndex t, VariantIndex v) {
    if (t >= static_cast<int>(loaded_.size())) loaded_.resize(t + 1);
    loaded_[t].insert(v);
  }

  template <Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    auto t0 = std::chrono::steady_clock::now();
    optimizer::check_state(s, e, "INFaaS");
    const int T = e.num_tasks(), P = e.num_processors();
    if (static_cast<int>(loaded_.size()) < T) loaded_.resize(T);
    std::vector<BlockTable> bt(T);
    std::vector<std::vector<double>> acc(T), dense(T);
    std::vector<VariantIndex> ref(T);
    std::vector<double> min_dense(T, kInf);
    for (int t = 0; t < T; ++t) {
      bt[t] = optimizer::block_table(e, t, s);
      ref[t] = optimizer::reference_variant(e, t, &acc[t]);
      dense[t] = optimizer::blind_task_cost(bt[t], s, ref[t]);
      for (int p = 0; p < P; ++p)
        if (!runs_some(bt[t], acc[t], s.slos[t].min_accuracy_pct, p)) dense[t][p] = kInf;
      for (double d : dense[t]) min_dense[t] = std::min(min_dense[t], d);
    }
    // Processor per task, by blind dense cost and blind load.
    std::vector<int> order(T), proc(T, -1);
    for (int t = 0; t < T; ++t) order[t] = t;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return s.slos[a].rate_rps * min_dense[a] > s.slos[b].rate_rps * min_dense[b];
    });
    optimizer::LoadModel blind_load(P);
    for (int t : order) {
      double best = kInf;
      for (int p = 0; p < P; ++p) {
        double f = dense[t][p] + blind_load.wait_ms(p);
        if (f < best) best = f, proc[t] = p;
      }
      if (proc[t] < 0) continue;
      Candidate c;
      c.busy_ms.assign(P, 0.0);
      c.busy_ms[proc[t]] = dense[t][proc[t]];
      blind_load.add(c, s.slos[t]);
    }
    // Variant on that processor.
    std::vector<std::vector<Candidate>> options(T);
    std::vector<int> choice(T, optimizer::kShed);
    std::vector<std::string> why(T);
    std::vector<StitchedVariant> fallback(T);
    for (int t = 0; t < T; ++t) {
      fallback[t] = StitchedVariant{std::vector<int>(bt[t].blocks, ref[t])};
      why[t] = "INFaaS: ";
      if (proc[t] < 0) {
        why[t] += "no processor runs a variant meeting the floor";
        for (int p = 0; p < P; ++p) options[t].push_back(whole_on(e, t, bt[t], ref[t], p, acc[t][ref[t]]));
        continue;
      }
      const int p = proc[t];
      const Slo& slo = s.slos[t];
      int pick = -1, fastest = -1;
      bool pick_loaded = false;
      double pick_key = kInf;
      for (int v = 0; v < bt[t].variants; ++v) {
        if (acc[t][v] < slo.min_accuracy_pct) continue;
        Candidate c = whole_on(e, t, bt[t], v, p, acc[t][v]);
        if (!optimizer::runnable(c)) continue;
        int idx = static_cast<int>(options[t].size());
        if (fastest < 0 || c.latency_ms < options[t][fastest].latency_ms) fastest = idx;
        if (c.latency_ms <= slo.deadline_ms) {
          bool is_loaded = loaded_[t].count(v) > 0 || (t < static_cast<int>(previous_.size()) && previous_[t] == v);
          double key = slo.deadline_ms - c.latency_ms;
          if (!is_loaded && opt_.cold_start_fastest) key = c.memory_bytes / opt_.load_bytes_per_ms + c.latency_ms;
          if (pick < 0 || (is_loaded && !pick_loaded) || (is_loaded == pick_loaded && key < pick_key))
            pick = idx, pick_key = key, pick_loaded = is_loaded;
        }
        options[t].push_back(std::move(c));
      }
      choice[t] = pick >= 0 ? pick : fastest;
      why[t] += "processor " + std::to_string(p) + " by dense cost; " +
                (pick >= 0 ? std::string(pick_loaded ? "loaded variant" : "variant") + " with the smallest slack"
                           : std::string("no variant fits the deadline: the fastest meeting the floor"));
    }
    previous_.assign(T, -1);
    for (int t = 0; t < T; ++t)
      if (choice[t] >= 0) previous_[t] = options[t][choice[t]].stitch.choice.front();
    Plan plan = optimizer::make_plan(s, options, choice, why, fallback, P);
    plan.version = ++version_;
    plan.decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

 private:
  static bool runs_some(const BlockTable& bt, const std::vector<double>& acc, double floor, int p) {
    for (int v = 0; v < bt.variants; ++v) {
      if (acc[v] < floor) continue;
      bool all = true;
      for (int b = 0; b < bt.blocks && all; ++b) all = std::isfinite(bt.ms(b, v, p));
      if (all) return true;
    }
    return false;
  }

  Options opt_{};
  std::vector<std::set<VariantIndex>> loaded_;  // reported by set_loaded
  std::vector<VariantIndex> previous_;          // chosen by the last plan: running
  std::uint64_t version_ = 0;
};

}  // namespace sparseloom::baselines
