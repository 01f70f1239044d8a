#pragma once
// optimizer::SparsityAware: the default Optimizer. Jointly picks, for every task, a stitched
// variant and a processor per block, knowing what each processor gains from each variant's
// sparsity/INT8 and that tasks queue behind each other on shared processors.
//
// Fast solver, per plan():
//  1. Per task, candidates from a Pareto dynamic programme over blocks. The state at block b is
//     (variant, processor); a label is (latency so far, accuracy drop so far), where latency
//     adds block latency on that processor (the estimator's, with observed speed), a transfer
//     when the processor changes and a repair when the variant changes (both probed from the
//     estimator), and the drop is a per-block proxy: accuracy of the reference variant minus
//     that of the reference with only block b swapped. Each state keeps the fastest label per
//     bucket of an 8-bucket grid on the drop axis, finest just below the task's accuracy
//     head-room (detail::drop_grid); labels far beyond it are cut. The DP runs once with all
//     usable processors (mixed placements) and once per processor (whole task on it), so
//     candidates differ in which processors they load, not only in total latency. Plain
//     variants on every processor and on their best mixed placement are added; under a memory
//     budget, so is the front of (bytes, drop), each stitch on its fastest placement.
//     Accuracy is not additive: every candidate's true accuracy comes from
//     e.accuracy_pct(t, stitch) and its latency from e.latency_ms; those below the floor go.
//  2. Options are pruned by dominance (busy time per processor, latency, memory, accuracy) and
//     assigned by AssignmentSearch (model.hpp): greedy by criticality x rate, then single- and
//     pair-move local search on predicted criticality-weighted attainment (M/G/1 queueing per
//     processor), then headroom; the memory budget is a constraint; a task may be shed.
// Placement is per block. Nothing here enumerates variants^blocks.
//  3. Per request (`route_per_request`): a served task the model predicts to miss more than
//     0.1 % of its requests, or placed on a processor it predicts at least half busy (and then
//     every served task), also gets its stitch whole on every other usable processor that runs
//     it, and Routing::earliest_finish: the engine sends each of its requests to the
//     placement predicted to finish it first (queueing bursts the M/G/1 model averages away
//     land where there is room; Routing::overflow, which moves only the requests the planned
//     placement would reject, is the option). Under a memory budget every alternative is
//     another copy of the stitch's blocks: routes go to as many tasks as fit beside the plan
//     (offer_alternatives_within_budget: those at risk first).
//
// Ablations (same code, flags): stitching = false restricts every task to plain variants;
// sparsity_aware = false plans with blind_table (model.hpp): each processor's speed per block
// is known, but every variant is assumed to gain the same factor on every processor.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/optimizer/model.hpp"

namespace sparseloom::optimizer {

struct SparsityAwareOptions {
  bool stitching = true;       // false: plain variants only (ablation "without stitching")
  bool sparsity_aware = true;  // false: blind latency model (ablation "without sparsity awareness")
  bool allow_shed = true;      // may reject a task's requests to save the others
  int max_passes = 20;
  int pair_moves_max_tasks = 8;
  // Re-plans weigh switching: an option other than the task's current one (SystemState's
  // current_stitch/placement) costs switch_penalty + switch_penalty_per_mib x the MiB of its
  // blocks the current plan does not hold, in score units (weighted attainment is 0..1, headroom
  // counts x1e-3). So a task keeps its plan unless another gains ~0.01 pp of predicted attainment
  // (or 0.1 of headroom) plus ~0.001 pp per MiB to load: a re-plan for one task's SLO no longer
  // reshuffles the others for noise-level gains, and the changed tasks' loads are what the
  // make-before-break wait has to cover. 0 and 0: no stickiness (as before session 10).
  double switch_penalty = SwitchPenalty{}.fixed;
  double switch_penalty_per_mib = SwitchPenalty{}.per_mib;
  // Per-request routing (3.): whole-stitch alternatives for the tasks whose predicted attainment
  // is below route_below_attainment (the others rarely need one, and each alternative holds a
  // copy of the stitch's blocks), used as `routing` says.
  bool route_per_request = true;
  double route_below_attainment = 0.999;
  // ... and for the tasks on a processor whose predicted utilisation is at least this: the
  // model's attainment is a mean over Poisson arrivals, and bursts queue on a loaded processor
  // even where it predicts none missed.
  double route_above_utilisation = 0.5;
  // ... and, once one task has routes, every served task: a routed task's requests land on the
  // others' processors, where a task without routes has no way around them (steady latency-scale
  // run, session 20: MobileNetV2, not routed, had 4 of 329 requests rejected behind the routed
  // tasks' blocks).
  bool route_all_when_any = true;
  Routing routing = Routing::earliest_finish;
};

namespace detail {

struct Label {
  double lat = kInf, drop = 0;
  int prev = -1;  // index into the previous block's arena
  int v = 0, p = 0;
};

// The drop axis is cut into at most 8 buckets; each DP state keeps the fastest label per bucket
// (an epsilon-grid Pareto front: O(1) per label, no sorting). The buckets are finest just below
// the task's accuracy head-room, where the fastest stitch that still meets the floor lies, and
// two buckets above it keep stitches whose true drop may be smaller than the proxy says.
struct Grid {
  double upper[8] = {kInf, kInf, kInf, kInf, kInf, kInf, kInf, kInf};  // ascending
  int n = 0;
  int bucket(double d) const {  // branch-free: the hot loop of the DP
    int k = 0;
    for (int i = 0; i < 8; ++i) k += d > upper[i];
    return k < n ? k : -1;
  }
};

inline Grid drop_grid(double head_room, double cap) {
  double h = std::max(head_room, 0.05);
  cap = std::max(cap, h);
  Grid g;
  const double at[] = {0.25 * h, 0.5 * h, 0.7 * h, 0.85 * h, 0.95 * h, h, h + 0.5 * (cap - h), cap};
  for (double x : at) g.upper[g.n++] = x;
  return g;
}

// Per-task inputs of the DP.
struct TaskCosts {
  std::vector<double> drop;      // [b * V + v]: proxy accuracy drop of block b from variant v
  std::vector<double> transfer;  // [(b * P + p) * P + q]: boundary after block b, p -> q
  std::vector<double> repair;    // [b]: variant switch after block b
};

struct DpResult {
  StitchedVariant stitch;
  Placement placement;
};

// Pareto DP over blocks minimising cost (pt.ms: latency, or bytes for the memory front) against
// proxy drop; `variants` and `procs` restrict the states. Returns the final front.
inline std::vector<DpResult> pareto_dp(const BlockTable& pt, const TaskCosts& c, const std::vector<int>& variants,
                                       const std::vector<int>& procs, const Grid& g, bool with_transfers = true) {
  const int B = pt.blocks, V = pt.variants, P = pt.processors, NB = g.n;
  std::vector<std::vector<Label>> arena(B);
  std::vector<int> front(static_cast<std::size_t>(V) * P * NB, -1), prev(front.size(), -1);
  auto slot = [&](int v, int p, int k) { return (static_cast<std::size_t>(v) * P + p) * NB + k; };
  // Arrivals at processor p by a variant switch, per bucket: the cheapest label of block b-1
  // (any variant, any processor, transfer and repair added) and the cheapest of another
  // variant than that one, so a state of either variant finds its best switch in O(1).
  struct Arrival {
    double lat = kInf;
    int idx = -1, v = -1;
  };
  std::vector<Arrival> first(static_cast<std::size_t>(P) * NB), second(first.size());
  Label best[8];
  for (int b = 0; b < B; ++b) {
    front.swap(prev);
    std::fill(front.begin(), front.end(), -1);
    if (b > 0) {
      std::fill(first.begin(), first.end(), Arrival{});
      std::fill(second.begin(), second.end(), Arrival{});
      double rp = with_transfers ? c.repair[b - 1] : 0;
      for (int p : procs)
        for (int q : procs) {
          double tr = (q == p || !with_transfers) ? 0 : c.transfer[(static_cast<std::size_t>(b - 1) * P + q) * P + p];
          for (int v : variants)
            for (int k = 0; k < NB; ++k) {
              int i = prev[slot(v, q, k)];
              if (i < 0) continue;
              Arrival a{arena[b - 1][i].lat + tr + rp, i, v};
              Arrival& f = first[static_cast<std::size_t>(p) * NB + k];
              Arrival& g2 = second[static_cast<std::size_t>(p) * NB + k];
              if (a.lat < f.lat) {
                if (f.v != v) g2 = f;
                f = a;
              } else if (v != f.v && a.lat < g2.lat) {
                g2 = a;
              }
            }
        }
    }
    for (int v : variants)
      for (int p : procs) {
        double l = pt.ms(b, v, p);
        if (!std::isfinite(l)) continue;
        double d = c.drop[static_cast<std::size_t>(b) * V + v];
        for (auto& x : best) x.lat = kInf;
        auto consider = [&](double lat0, double drop0, int from) {
          double nd = drop0 + d;
          int k = g.bucket(nd);
          if (k < 0) return;
          double nl = lat0 + l;
          if (nl < best[k].lat) best[k] = Label{nl, nd, from, v, p};
        };
        if (b == 0) {
          consider(0, 0, -1);
        } else {
          for (int q : procs) {
            double tr = (q == p || !with_transfers) ? 0 : c.transfer[(static_cast<std::size_t>(b - 1) * P + q) * P + p];
            for (int k = 0; k < NB; ++k) {
              int i = prev[slot(v, q, k)];
              if (i >= 0) consider(arena[b - 1][i].lat + tr, arena[b - 1][i].drop, i);
            }
          }
          for (int k = 0; k < NB; ++k) {
            const Arrival& f = first[static_cast<std::size_t>(p) * NB + k];
            const Arrival& a = f.v != v ? f : second[static_cast<std::size_t>(p) * NB + k];
            if (a.idx >= 0) consider(a.lat, arena[b - 1][a.idx].drop, a.idx);
          }
        }
        double fastest = kInf;  // Pareto filter: a bucket with more drop must be faster
        for (int k = 0; k < NB; ++k) {
          if (!(best[k].lat < fastest)) continue;
          fastest = best[k].lat;
          arena[b].push_back(best[k]);
          front[slot(v, p, k)] = static_cast<int>(arena[b].size()) - 1;
        }
      }
  }
  // Final front over all states.
  for (auto& x : best) x.lat = kInf, x.prev = -1;
  for (std::size_t i = 0; i < arena[B - 1].size(); ++i) {
    const Label& x = arena[B - 1][i];
    int k = g.bucket(x.drop);
    if (k >= 0 && x.lat < best[k].lat) best[k] = x, best[k].prev = static_cast<int>(i);  // prev: own index here
  }
  std::vector<DpResult> out;
  double fastest = kInf;
  for (int k = 0; k < NB; ++k) {
    if (!(best[k].lat < fastest)) continue;
    fastest = best[k].lat;
    DpResult r;
    r.stitch.choice.assign(B, 0);
    r.placement.processor.assign(B, 0);
    for (int bb = B - 1, i = best[k].prev; bb >= 0; i = arena[bb][i].prev, --bb) {
      r.stitch.choice[bb] = arena[bb][i].v;
      r.placement.processor[bb] = arena[bb][i].p;
    }
    out.push_back(std::move(r));
  }
  return out;
}

// The fastest placement of a fixed stitch over `procs` (Viterbi with transfer costs); empty
// where no processor set runs it.
inline Placement best_placement(const BlockTable& pt, const TaskCosts& c, const StitchedVariant& s,
                                const std::vector<int>& procs) {
  const int B = pt.blocks, P = pt.processors;
  std::vector<double> cost(P, kInf), next(P);
  std::vector<int> from(static_cast<std::size_t>(B) * P, -1);
  for (int p : procs) cost[p] = pt.ms(0, s.choice[0], p);
  for (int b = 1; b < B; ++b) {
    std::fill(next.begin(), next.end(), kInf);
    for (int p : procs) {
      double l = pt.ms(b, s.choice[b], p);
      if (!std::isfinite(l)) continue;
      for (int q : procs) {
        double x = cost[q] + (q == p ? 0 : c.transfer[(static_cast<std::size_t>(b - 1) * P + q) * P + p]) + l;
        if (x < next[p]) next[p] = x, from[static_cast<std::size_t>(b) * P + p] = q;
      }
    }
    cost.swap(next);
  }
  int end = -1;
  for (int p : procs)
    if (std::isfinite(cost[p]) && (end < 0 || cost[p] < cost[end])) end = p;
  if (end < 0) return {};
  Placement pl{std::vector<int>(B)};
  for (int b = B - 1, p = end; b >= 0; p = from[static_cast<std::size_t>(b) * P + p], --b) pl.processor[b] = p;
  return pl;
}

// Probes the estimator for the costs its latency adds beyond the blocks: a transfer at each
// boundary for each processor pair, a repair at each boundary for a variant switch. Each is
// measured as latency_ms minus the blocks' profiled latencies minus the fixed per-request
// overhead of a plain single-processor run.
template <Estimator E>
TaskCosts probe_costs(const E& e, TaskIndex t, const BlockTable& bt, VariantIndex ref, bool stitching,
                      const std::vector<int>& procs) {
  const int B = bt.blocks, V = bt.variants, P = bt.processors;
  TaskCosts c;
  c.drop.assign(static_cast<std::size_t>(B) * V, 0.0);
  c.transfer.assign(static_cast<std::size_t>(B) * P * P, 0.0);
  c.repair.assign(B, 0.0);
  auto runs_all = [&](int v, int p, int from, int to) {
    for (int b = from; b < to; ++b)
      if (!std::isfinite(bt.raw_ms(b, v, p))) return false;
    return true;
  };
  auto extra = [&](const StitchedVariant& s, const Placement& pl) {
    double sum = 0;
    for (int b = 0; b < B; ++b) sum += bt.raw_ms(b, s.choice[b], pl.processor[b]);
    return static_cast<double>(e.latency_ms(t, s, pl)) - sum;
  };
  // Fixed overhead: a plain variant on one processor that runs all of it.
  double base = 0;
  for (int p : procs) {
    int v = runs_all(ref, p, 0, B) ? ref : -1;
    for (int u = 0; u < V && v < 0; ++u)
      if (runs_all(u, p, 0, B)) v = u;
    if (v < 0) continue;
    base = extra(StitchedVariant{std::vector<int>(B, v)}, Placement{std::vector<int>(B, p)});
    break;
  }
  for (int b = 0; b + 1 < B; ++b)
    for (int p : procs)
      for (int q : procs) {
        if (p == q) continue;
        int v = -1;
        for (int u = 0; u < V && v < 0; ++u)
          if (runs_all(u, p, 0, b + 1) && runs_all(u, q, b + 1, B)) v = u;
        if (v < 0) continue;  // no plain variant spans this boundary on p -> q: left at 0
        Placement pl{std::vector<int>(B, q)};
        std::fill(pl.processor.begin(), pl.processor.begin() + b + 1, p);
        c.transfer[(static_cast<std::size_t>(b) * P + p) * P + q] =
            std::max(0.0, extra(StitchedVariant{std::vector<int>(B, v)}, pl) - base);
      }
  if (!stitching) return c;
  StitchedVariant r{std::vector<int>(B, ref)};
  double ref_acc = e.accuracy_pct(t, r);
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < V; ++v) {
      if (v == ref) continue;
      StitchedVariant s = r;
      s.choice[b] = v;
      c.drop[static_cast<std::size_t>(b) * V + v] = ref_acc - e.accuracy_pct(t, s);
    }
  for (int b = 0; b + 1 < B; ++b)
    for (int p : procs) {
      int other = -1;
      for (int u = 0; u < V && other < 0; ++u)
        if (u != ref && runs_all(u, p, b + 1, B)) other = u;
      if (other < 0 || !runs_all(ref, p, 0, b + 1)) continue;
      StitchedVariant s = r;
      std::fill(s.choice.begin() + b + 1, s.choice.end(), other);
      c.repair[b] = std::max(0.0, extra(s, Placement{std::vector<int>(B, p)}) - base);
      break;
    }
  return c;
}

}  // namespace detail

template <SparsityAwareOptions Opt = SparsityAwareOptions{}>
class BasicSparsityAware {
 public:
  static constexpr SparsityAwareOptions options = Opt;

  template <Estimator E>
  Plan plan(const SystemState& s, const E& e) {
    auto t0 = std::chrono::steady_clock::now();
    check_state(s, e, name());
    const int T = e.num_tasks(), P = e.num_processors();
    std::vector<int> procs;
    for (int p = 0; p < P; ++p)
      if (usable(s, p)) procs.push_back(p);

    std::vector<std::vector<Candidate>> options(T);
    std::vector<BlockTable> truth(T), belief;
    std::vector<std::string> why(T);
    std::vector<StitchedVariant> fallback(T);
    std::vector<std::optional<PlanInForce>> cur(T);  // each task's plan in force, if keepable
    if (!Opt.sparsity_aware) belief.resize(T);
    for (int t = 0; t < T; ++t) {
      truth[t] = block_table(e, t, s);
      if (!Opt.sparsity_aware) belief[t] = blind_table(truth[t], s);
      const BlockTable& pt = Opt.sparsity_aware ? truth[t] : belief[t];
      cur[t] = plan_in_force(s, t, pt.blocks, pt.variants, procs);
      options[t] = candidates(e, t, s.slos[t], pt, procs, memory_bound(s), fallback[t], cur[t]);
      why[t] = std::string(name()) + ": " + std::to_string(options[t].size()) + " options";
    }
    const SearchOptions so{Opt.allow_shed, Opt.max_passes, Opt.pair_moves_max_tasks};
    std::vector<int> choice = AssignmentSearch(s, options, P).run(so);
    // Re-planning: also search from the plan in force (each task's option equal to it, where it
    // is still an option), and keep whichever scores higher, switching costs included.
    std::vector<int> keep(T, kShed);
    bool any = false;
    for (int t = 0; t < T; ++t)
      if (cur[t])
        for (int j = 0; j < static_cast<int>(options[t].size()) && keep[t] == kShed; ++j)
          if (options[t][j].stitch.choice == cur[t]->stitch.choice && options[t][j].placement.processor == cur[t]->placement.processor)
            keep[t] = j, any = true;
    if (any) {
      std::vector<int> from_current = AssignmentSearch(s, options, P).run_from(keep, so);
      if (evaluate(s, options, from_current, P).score > evaluate(s, options, choice, P).score) choice = std::move(from_current);
    }

    Plan plan;
    std::vector<std::vector<Candidate>> real;
    if (!Opt.sparsity_aware) {
      // The blind model chose; the plan reports what the estimator predicts for that choice.
      real.resize(T);
      for (int t = 0; t < T; ++t) {
        for (const Candidate& c : options[t])
          real[t].push_back(make_candidate(e, t, truth[t], c.stitch, c.placement, c.accuracy_pct));
      }
    }
    Evaluation ev;
    plan = make_plan(s, Opt.sparsity_aware ? options : real, choice, why, fallback, P, &ev);
    if (Opt.route_per_request) {
      std::vector<bool> tight(T);
      for (int t = 0; t < T; ++t)
        tight[t] = choice[t] != kShed && (ev.tasks[t].attainment < Opt.route_below_attainment ||
                                          ev.tasks[t].utilisation >= Opt.route_above_utilisation);
      const bool any = std::find(tight.begin(), tight.end(), true) != tight.end();
      if (!memory_bound(s)) {
        if (Opt.route_all_when_any && any)
          for (int t = 0; t < T; ++t) tight[t] = choice[t] != kShed;
        offer_alternatives(plan, s, e, Opt.routing, &tight);
      } else if (any) {
        // Under a budget, routes for as many tasks as fit: those at risk first (lowest predicted
        // attainment, then busiest processor), then, with route_all_when_any, the others.
        std::vector<int> order;
        for (int t = 0; t < T; ++t)
          if (choice[t] != kShed && (tight[t] || Opt.route_all_when_any)) order.push_back(t);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
          if (tight[a] != tight[b]) return static_cast<bool>(tight[a]);
          if (ev.tasks[a].attainment != ev.tasks[b].attainment) return ev.tasks[a].attainment < ev.tasks[b].attainment;
          return ev.tasks[a].utilisation > ev.tasks[b].utilisation;
        });
        offer_alternatives_within_budget(plan, s, e, Opt.routing, order, ev);
      }
    }
    plan.version = ++version_;
    plan.decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return plan;
  }

  static constexpr const char* name() {
    if (!Opt.stitching && !Opt.sparsity_aware) return "SparsityAware(no stitching, sparsity-blind)";
    if (!Opt.stitching) return "SparsityAware(no stitching)";
    if (!Opt.sparsity_aware) return "SparsityAware(sparsity-blind)";
    if (!Opt.route_per_request) return "SparsityAware(no routing)";
    return "SparsityAware";
  }

 private:
  template <Estimator E>
  std::vector<Candidate> candidates(const E& e, TaskIndex t, const Slo& slo, const BlockTable& pt,
                                    const std::vector<int>& procs, bool budget_bound,
                                    StitchedVariant& fallback, const std::optional<PlanInForce>& cur) const {
    const int B = pt.blocks, V = pt.variants;
    std::vector<double> plain_acc;
    VariantIndex ref = reference_variant(e, t, &plain_acc);
    fallback = StitchedVariant{std::vector<int>(B, ref)};
    std::vector<Candidate> out;
    if (procs.empty()) return out;
    detail::TaskCosts costs = detail::probe_costs(e, t, pt, ref, Opt.stitching, procs);

    std::vector<detail::DpResult> found;
    auto add = [&](std::vector<detail::DpResult> r) { found.insert(found.end(), r.begin(), r.end()); };
    if (cur) found.push_back({cur->stitch, cur->placement});  // keeping the plan in force is always an option
    // Plain variants: each processor alone, and the best mixed placement.
    for (int v = 0; v < V; ++v) {
      if (plain_acc[v] < slo.min_accuracy_pct && v != ref) continue;
      StitchedVariant sv{std::vector<int>(B, v)};
      for (int p : procs) {
        bool runs = true;
        for (int b = 0; b < B && runs; ++b) runs = std::isfinite(pt.ms(b, v, p));
        if (runs) found.push_back({sv, Placement{std::vector<int>(B, p)}});
      }
      if (procs.size() > 1) {
        Placement pl = detail::best_placement(pt, costs, sv, procs);
        if (!pl.processor.empty()) found.push_back({std::move(sv), std::move(pl)});
      }
    }
    if (Opt.stitching) {
      std::vector<int> all(V);
      for (int v = 0; v < V; ++v) all[v] = v;
      double head = plain_acc[ref] - slo.min_accuracy_pct;
      // The proxy is approximate: keep stitches up to half as much again beyond the head-room.
      const detail::Grid grid = detail::drop_grid(head, std::max(0.0, head) * 1.5 + 0.5);
      for (int p : procs) add(detail::pareto_dp(pt, costs, all, {p}, grid));
      if (procs.size() > 1) add(detail::pareto_dp(pt, costs, all, procs, grid));
      if (budget_bound) {
        // Under a memory budget: the lightest stitches per accuracy (the same DP on bytes),
        // each on its fastest placement.
        BlockTable bytes = pt;
        for (int b = 0; b < B; ++b)
          for (int v = 0; v < V; ++v)
            for (int p = 0; p < pt.processors; ++p)
              if (std::isfinite(pt.ms(b, v, p))) bytes.now[bytes.at(b, v, p)] = e.block_bytes(t, b, v);
        for (auto& r : detail::pareto_dp(bytes, costs, all, procs, grid, false)) {
          r.placement = detail::best_placement(pt, costs, r.stitch, procs);
          if (!r.placement.processor.empty()) found.push_back(std::move(r));
        }
      }
    }
    // Exact accuracy and latency per distinct candidate; keep those meeting the floor.
    std::map<std::pair<std::vector<int>, std::vector<int>>, bool> seen;
    std::map<std::vector<int>, double> acc_cache;
    Candidate most_accurate;
    bool have_any = false;
    for (auto& r : found) {
      if (!seen.emplace(std::make_pair(r.stitch.choice, r.placement.processor), true).second) continue;
      double acc;
      if (r.stitch.is_plain()) {
        acc = plain_acc[r.stitch.choice.front()];
      } else {
        auto it = acc_cache.find(r.stitch.choice);
        acc = it != acc_cache.end() ? it->second : (acc_cache[r.stitch.choice] = e.accuracy_pct(t, r.stitch));
      }
      if (acc < slo.min_accuracy_pct) {
        if (!have_any || acc > most_accurate.accuracy_pct) {
          most_accurate = make_candidate(e, t, pt, r.stitch, r.placement, acc);
          have_any = runnable(most_accurate);
        }
        continue;
      }
      Candidate c = make_candidate(e, t, pt, std::move(r.stitch), std::move(r.placement), acc);
      if (runnable(c)) out.push_back(std::move(c));
    }
    if (Opt.stitching) descend(e, t, slo, pt, out, acc_cache);
    // What choosing each costs over keeping the plan in force (model.hpp, switch_cost).
    for (auto& c : out)
      c.switch_cost = switch_cost(e, t, c.stitch, c.placement, cur ? &*cur : nullptr, {Opt.switch_penalty, Opt.switch_penalty_per_mib});
    // No candidate meets the floor: keep the most accurate so the plan can say so.
    if (out.empty() && have_any) out.push_back(std::move(most_accurate));
    prune_dominated(out);
    return out;
  }

  // The drop proxy misjudges stitches near the floor. From the fastest few candidates that
  // meet it, swap single blocks to faster variants on the same processor while the true
  // accuracy stays above the floor (largest gain first), adding each improvement.
  template <Estimator E>
  void descend(const E& e, TaskIndex t, const Slo& slo, const BlockTable& pt, std::vector<Candidate>& out,
               std::map<std::vector<int>, double>& acc_cache) const {
    constexpr int kStarts = 3;
    const int B = pt.blocks, V = pt.variants;
    std::vector<std::size_t> order(out.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return out[a].latency_ms < out[b].latency_ms; });
    if (order.size() > kStarts) order.erase(order.begin() + kStarts, order.end());
    struct Move {
      double gain;
      int b, v;
    };
    std::vector<Move> moves;
    for (std::size_t start : order) {
      StitchedVariant cur = out[start].stitch;
      const Placement pl = out[start].placement;
      double cur_lat = out[start].latency_ms;
      for (int step = 0; step < B; ++step) {
        moves.clear();
        for (int b = 0; b < B; ++b)
          for (int v = 0; v < V; ++v) {
            double gain = pt.ms(b, cur.choice[b], pl.processor[b]) - pt.ms(b, v, pl.processor[b]);
            if (v != cur.choice[b] && gain > 0) moves.push_back({gain, b, v});
          }
        std::sort(moves.begin(), moves.end(), [](const Move& a, const Move& b) { return a.gain > b.gain; });
        bool moved = false;
        for (const Move& m : moves) {
          StitchedVariant next = cur;
          next.choice[m.b] = m.v;
          auto it = acc_cache.find(next.choice);
          double acc = it != acc_cache.end() ? it->second : (acc_cache[next.choice] = e.accuracy_pct(t, next));
          if (acc < slo.min_accuracy_pct) continue;
          Candidate c = make_candidate(e, t, pt, next, pl, acc);
          if (!(c.latency_ms < cur_lat)) continue;
          cur = std::move(next);
          cur_lat = c.latency_ms;
          out.push_back(std::move(c));
          moved = true;
          break;
        }
        if (!moved) break;
      }
    }
  }

  std::uint64_t version_ = 0;
};

using SparsityAware = BasicSparsityAware<>;
// Ablation: plain variants only.
using SparsityAwareNoStitching = BasicSparsityAware<SparsityAwareOptions{.stitching = false}>;
// Ablation: latency model blind to which processor gains from which variant (blind_table).
using SparsityAwareBlind = BasicSparsityAware<SparsityAwareOptions{.sparsity_aware = false}>;
// Ablation: every request runs on its task's planned placement (no per-request routing, 3.).
using SparsityAwareNoRouting = BasicSparsityAware<SparsityAwareOptions{.route_per_request = false}>;

}  // namespace sparseloom::optimizer
