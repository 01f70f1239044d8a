#pragma once
// The plan-level performance model every optimizer and baseline shares, so that all policies
// are judged by one yardstick: per-block latency tables (with the processors' availability and
// observed speed applied), candidate (stitch, placement) pairs with the busy time they put on
// each processor, and a queueing model that turns a choice per task into predicted
// criticality-weighted SLO attainment.
//
// Queueing model. Every processor is one server whose queue is earliest-deadline-first and
// whose unit of work is a block: the engine runs a request's consecutive blocks on a processor
// one at a time and yields between two of them to a request due earlier
// (EngineOptions::preempt_between_blocks). Task i sends r_i requests/s and holds processor p
// for busy_ip ms per request as blocks b_ipk (deterministic service), so p sees
//   rho_p = sum_i r_i busy_ip / 1000.
// EDF with one relative deadline per task is modelled as deadline-monotonic priority, preemptive
// at block boundaries (preemptive-resume priority M/G/1 whose lower classes hold the processor
// for one block):
//   W_ip = busy_ip hi_ip / (1 - hi_ip) + R_ip / ((1 - hi_ip)(1 - le_ip)),
//   R_ip = sum_{j: D_j <= D_i} (r_j / 1000) busy_jp^2 / 2 + sum_{j: D_j > D_i} (r_j / 1000) sum_k b_jpk^2 / 2
// (what is in service when the request arrives: a whole request of a class due no later, one
// block of a later one), hi_ip / le_ip = the rho_p of tasks with a deadline shorter than / at
// most task i's; the first term is the work due earlier that runs between its own blocks.
// Against the engine in simulated time (test Sim.OptimizerWaitModelMatchesTheEngine: three
// tasks on one processor) it is within 2-8 % of the mean waits. (A FIFO server waits out whole
// requests of every task: sum_j (r_j / 1000) busy_jp^2 / (2 (1 - rho_p)); until session 14 this
// model assumed that, gave a tight task a processor of its own and piled the rest on the
// other, 3-9x off the engine's waits.) A request of task i waits on every processor its
// placement visits; its wait W_i = sum_p W_ip is taken to be 0 with probability 1 - rho and
// exponential otherwise (rho = the largest rho_p it visits), so
//   P(meet deadline D) = 1 - rho exp(-(D - L_i) rho / W_i)   for D >= L_i, else 0,
// and 0 when it is below its accuracy floor or any processor it uses has rho_p >= 1.
// The objective is sum_i c_i r_i P_i / sum_i c_i r_i (criticality c_i weighs requests), then
// capacity headroom 1 - max_p rho_p (what the maximum sustainable rate scales with).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"

namespace sparseloom::optimizer {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// SystemState lets vectors be shorter than the processor count: missing = available, speed 1.
inline bool usable(const SystemState& s, ProcessorIndex p) {
  return static_cast<std::size_t>(p) >= s.processor_available.size() || s.processor_available[p];
}
inline double speed(const SystemState& s, ProcessorIndex p) {
  if (static_cast<std::size_t>(p) >= s.processor_speed.size()) return 1.0;
  double f = s.processor_speed[p];
  return f > 0 ? f : 1.0;
}

template <Estimator E>
void check_state(const SystemState& s, const E& e, std::string_view policy) {
  check(static_cast<int>(s.slos.size()) == e.num_tasks(), ErrorCode::invalid_argument,
        std::string(policy) + ": SystemState.slos",
        "has " + std::to_string(s.slos.size()) + " entries but the estimator has " +
            std::to_string(e.num_tasks()) + " tasks");
  check(s.memory_budget_bytes >= 0, ErrorCode::invalid_argument,
        std::string(policy) + ": SystemState.memory_budget_bytes", "is negative");
  for (std::size_t p = 0; p < s.device_budget_bytes.size(); ++p)
    check(s.device_budget_bytes[p] >= 0, ErrorCode::invalid_argument,
          std::string(policy) + ": SystemState.device_budget_bytes[" + std::to_string(p) + "]", "is negative");
}

inline double device_budget(const SystemState& s, std::size_t p) {
  return p < s.device_budget_bytes.size() ? s.device_budget_bytes[p] : 0.0;
}
inline bool memory_bound(const SystemState& s) {
  return s.memory_budget_bytes > 0 ||
         std::any_of(s.device_budget_bytes.begin(), s.device_budget_bytes.end(), [](double b) { return b > 0; });
}
// How far a plan's memory is over its budgets: the sum of the relative excess over the global
// budget and over each device's; 0 when it fits them all.
inline double budget_overage(const SystemState& s, double memory_bytes, const std::vector<double>& device_bytes) {
  auto over = [](double used, double budget) {
    return budget > 0 && used > budget * (1 + 1e-12) ? std::max((used - budget) / budget, 1e-12) : 0.0;
  };
  double o = over(memory_bytes, s.memory_budget_bytes);
  for (std::size_t p = 0; p < device_bytes.size(); ++p) o += over(device_bytes[p], device_budget(s, p));
  return o;
}

// Block latencies of one task, [block][variant][processor], as the estimator profiles them
// (raw) and as the planner should use them now (speed applied; kInf where the processor is
// unavailable or cannot run the block).
struct BlockTable {
  int blocks = 0, variants = 0, processors = 0;
  std::vector<double> raw, now;
  std::size_t at(int b, int v, int p) const {
    return (static_cast<std::size_t>(b) * variants + v) * processors + p;
  }
  double raw_ms(int b, int v, int p) const { return raw[at(b, v, p)]; }
  double ms(int b, int v, int p) const { return now[at(b, v, p)]; }
};

template <Estimator E>
BlockTable block_table(const E& e, TaskIndex t, const SystemState& s) {
  BlockTable bt;
  bt.blocks = e.num_blocks(t);
  bt.variants = e.num_variants(t);
  bt.processors = e.num_processors();
  std::size_t n = static_cast<std::size_t>(bt.blocks) * bt.variants * bt.processors;
  bt.raw.assign(n, kInf);
  bt.now.assign(n, kInf);
  for (int b = 0; b < bt.blocks; ++b)
    for (int v = 0; v < bt.variants; ++v)
      for (int p = 0; p < bt.processors; ++p) {
        if (!e.can_place(t, b, v, p)) continue;
        double l = e.block_latency_ms(t, b, v, p);
        bt.raw[bt.at(b, v, p)] = l;
        if (usable(s, p)) bt.now[bt.at(b, v, p)] = l * speed(s, p);
      }
  return bt;
}

// One option for a task: a stitch on a placement, with what it costs.
struct Candidate {
  StitchedVariant stitch;
  Placement placement;
  double latency_ms = 0;    // service time now: estimator latency with processor speeds applied
  double accuracy_pct = 0;
  double memory_bytes = 0;
  std::vector<double> device_bytes;  // per processor: the bytes of the blocks placed on it
  double energy_j = 0;      // per request, where the estimator models energy (energy_j()); else 0
  std::vector<double> busy_ms;  // per processor: time one request holds it
  // per processor: sum of its blocks' squared times there (the queueing model's residual
  // block); empty = one block per processor (busy_ms^2)
  std::vector<double> block_sq_ms;
  // Score units the plan loses for choosing this option instead of the task's current one
  // (its new blocks must load before the plan is current); 0 = no change or no current plan.
  double switch_cost = 0;
};

// Switching costs, in score units (weighted attainment is 0..1, headroom counts x1e-3): an
// option other than the task's plan in force costs `fixed` + `per_mib` x the MiB of the blocks
// it runs differently (other variant or processor), which must load before it is current.
// SparsityAware (SparsityAwareOptions::switch_penalty*) and Exact share the rule.
struct SwitchPenalty {
  double fixed = 1e-4;
  double per_mib = 1e-5;
};

// The task's plan in force (SystemState::current_stitch/placement) if it still fits: the right
// block count, variants in range, every block on one of `procs`; otherwise none (nothing to keep).
struct PlanInForce {
  StitchedVariant stitch;
  Placement placement;
};
inline std::optional<PlanInForce> plan_in_force(const SystemState& s, TaskIndex t, int blocks, int variants,
                                               const std::vector<int>& procs) {
  const auto i = static_cast<std::size_t>(t);
  if (i >= s.current_stitch.size() || i >= s.current_placement.size()) return std::nullopt;
  const auto& sv = s.current_stitch[i];
  const auto& pl = s.current_placement[i];
  if (sv.choice.size() != static_cast<std::size_t>(blocks) || pl.processor.size() != sv.choice.size()) return std::nullopt;
  for (std::size_t b = 0; b < sv.choice.size(); ++b)
    if (sv.choice[b] < 0 || sv.choice[b] >= variants || std::find(procs.begin(), procs.end(), pl.processor[b]) == procs.end())
      return std::nullopt;
  return PlanInForce{sv, pl};
}

// What choosing (sv, pl) costs over keeping `cur` (null: nothing in force, no cost).
template <Estimator E>
double switch_cost(const E& e, TaskIndex t, const StitchedVariant& sv, const Placement& pl, const PlanInForce* cur,
                   SwitchPenalty penalty) {
  if (!cur) return 0.0;
  double mib = 0;
  bool same = true;
  for (std::size_t b = 0; b < sv.choice.size(); ++b) {
    if (sv.choice[b] == cur->stitch.choice[b] && pl.processor[b] == cur->placement.processor[b]) continue;
    same = false;
    mib += e.block_bytes(t, static_cast<BlockIndex>(b), sv.choice[b]) / (1024.0 * 1024.0);
  }
  return same ? 0.0 : penalty.fixed + penalty.per_mib * mib;
}

// Evaluates (stitch, placement) with the estimator, under the state's processor speeds.
// Transfers and repairs (latency beyond the sum of block latencies) add to the latency but
// hold no processor.
template <Estimator E>
Candidate make_candidate(const E& e, TaskIndex t, const BlockTable& bt, StitchedVariant s, Placement pl,
                         double accuracy_pct) {
  Candidate c;
  c.busy_ms.assign(bt.processors, 0.0);
  c.block_sq_ms.assign(bt.processors, 0.0);
  c.device_bytes.assign(bt.processors, 0.0);
  double raw_sum = 0, now_sum = 0;
  for (int b = 0; b < bt.blocks; ++b) {
    int v = s.choice[b], p = pl.processor[b];
    raw_sum += bt.raw_ms(b, v, p);
    now_sum += bt.ms(b, v, p);
    c.busy_ms[p] += bt.ms(b, v, p);
    c.block_sq_ms[p] += bt.ms(b, v, p) * bt.ms(b, v, p);
    c.device_bytes[p] += static_cast<double>(e.block_bytes(t, b, v));
  }
  double overhead = std::max(0.0, static_cast<double>(e.latency_ms(t, s, pl)) - raw_sum);
  c.latency_ms = now_sum + overhead;
  c.accuracy_pct = accuracy_pct;
  c.memory_bytes = e.memory_bytes(t, s);
  // Energy is optional in the Estimator concept: the simulator's estimator models it.
  if constexpr (requires { e.energy_j(t, s, pl); }) c.energy_j = static_cast<double>(e.energy_j(t, s, pl));
  c.stitch = std::move(s);
  c.placement = std::move(pl);
  return c;
}

inline bool runnable(const Candidate& c) { return std::isfinite(c.latency_ms); }

// The energy per request a task may spend: its max_energy_j, and its power limit as energy per
// request. max_power_w holds over any window of power_window_s when the requests in a window
// (Poisson at rate_rps) stay below their 99th percentile, ~ n + 2.33 sqrt(n) with n = rate x
// window: energy per request <= max_power_w x window / that. No limit: none.
inline std::optional<double> energy_limit_j(const Slo& slo) {
  std::optional<double> lim = slo.max_energy_j;
  if (slo.max_power_w && slo.rate_rps > 0) {
    const double n = slo.rate_rps * std::max(slo.power_window_s, 1e-6);
    const double j = *slo.max_power_w * std::max(slo.power_window_s, 1e-6) / (n + 2.33 * std::sqrt(n));
    lim = lim ? std::min(*lim, j) : j;
  }
  return lim;
}

// Option j of task i: an index into its candidates, or kShed: its requests are not admitted
// (they count as violations) and it holds no processor and no memory.
inline constexpr int kShed = -1;

struct TaskOutcome {
  double attainment = 0;  // predicted fraction of its requests within SLO
  double wait_ms = 0;     // predicted mean queueing delay
  double utilisation = 0; // largest rho among the processors it uses
};

// The single number searches maximise: attainment first, then headroom, then accuracy; a
// plan over a memory budget (budget_overage > 0) scores below every plan within them all, less
// the further it is over.
inline double combined_score(double weighted_attainment, double headroom, double mean_accuracy_margin,
                             double overage) {
  double s = weighted_attainment + 1e-3 * std::clamp(headroom, -1.0, 1.0) +
             1e-6 * std::clamp(mean_accuracy_margin, 0.0, 100.0) / 100.0;
  if (overage > 0) s -= 10.0 + overage;
  return s;
}

// Adds (sign 1) or removes (-1) an option's memory to a plan's totals.
inline void add_memory(const Candidate& c, double& memory_bytes, std::vector<double>& device_bytes, double sign = 1.0) {
  memory_bytes += sign * c.memory_bytes;
  if (device_bytes.size() < c.device_bytes.size()) device_bytes.resize(c.device_bytes.size(), 0.0);
  for (std::size_t p = 0; p < c.device_bytes.size(); ++p) device_bytes[p] += sign * c.device_bytes[p];
}

struct Evaluation {
  double weighted_attainment = 0;  // sum c r P / sum c r
  double headroom = 0;             // 1 - max rho (negative when overloaded)
  double memory_bytes = 0;
  std::vector<double> device_bytes;  // per processor
  double mean_accuracy_margin = 0; // pp above the floors, over served tasks (tie-break only)
  double score = 0;                // combined_score of the above
  bool within_budget = true;
  std::vector<TaskOutcome> tasks;
  std::vector<double> rho;
};

// Per-processor load aggregates, updated as tasks change option (the searches' inner loop),
// kept per deadline class for the EDF waits.
class LoadModel {
 public:
  explicit LoadModel(int processors) : all_(processors) {}

  void add(const Candidate& c, const Slo& slo, double sign = 1.0) {
    const double rate = slo.rate_rps;
    if (!(rate > 0)) return;
    Class* cls = nullptr;
    for (auto& k : classes_)
      if (k.deadline_ms == slo.deadline_ms) cls = &k;
    for (std::size_t p = 0; p < all_.size(); ++p) {
      double b = c.busy_ms[p];
      // An unrunnable candidate (kInf) scores 0 itself and loads nothing.
      if (!(b > 0) || !std::isfinite(b)) continue;
      if (!cls) cls = &classes_.emplace_back(Class{slo.deadline_ms, std::vector<Moments>(all_.size())});
      const double sq = p < c.block_sq_ms.size() ? c.block_sq_ms[p] : b * b;
      for (Moments* m : {&all_[p], &cls->on[p]}) {
        m->rho += sign * rate * b / 1000.0;
        m->request_sq += sign * rate * b * b / 1000.0;
        m->block_sq += sign * rate * sq / 1000.0;
      }
    }
  }
  double rho(std::size_t p) const { return std::max(0.0, all_[p].rho); }
  // A FIFO server's mean wait (whole requests as the unit): Band's and INFaaS's own heuristics.
  double wait_ms(std::size_t p) const {
    double r = rho(p);
    if (r >= 1.0) return kInf;
    return std::max(0.0, all_[p].request_sq) / (2.0 * (1.0 - r));
  }
  // The mean delay on p of a request of a task with this deadline that holds p for busy_ms:
  // EDF between blocks (the model at the top of this file).
  double edf_wait_ms(std::size_t p, double deadline_ms, double busy_ms) const {
    if (rho(p) >= 1.0) return kInf;
    double hi = 0, le = 0, residual = 0;
    for (const auto& k : classes_) {
      const Moments& m = k.on[p];
      if (k.deadline_ms < deadline_ms) hi += m.rho;
      if (k.deadline_ms <= deadline_ms) le += m.rho;
      residual += (k.deadline_ms <= deadline_ms ? m.request_sq : m.block_sq) / 2.0;
    }
    hi = std::clamp(hi, 0.0, rho(p));
    le = std::clamp(le, hi, rho(p));
    return std::max(0.0, residual) / ((1.0 - hi) * (1.0 - le)) + busy_ms * hi / (1.0 - hi);
  }
  std::size_t processors() const { return all_.size(); }

  TaskOutcome outcome(const Candidate& c, const Slo& slo) const {
    TaskOutcome o;
    if (!runnable(c) || c.accuracy_pct < slo.min_accuracy_pct) return o;
    if (const auto lim = energy_limit_j(slo); lim && c.energy_j > *lim) return o;  // over its energy/power limit: a violation
    double w = 0, r = 0;
    for (std::size_t p = 0; p < all_.size(); ++p) {
      if (c.busy_ms[p] <= 0) continue;
      w += edf_wait_ms(p, slo.deadline_ms, c.busy_ms[p]);
      r = std::max(r, rho(p));
    }
    o.wait_ms = w;
    o.utilisation = r;
    double slack = slo.deadline_ms - c.latency_ms;
    if (slack < 0 || !std::isfinite(w)) return o;
    o.attainment = w <= 0 ? 1.0 : 1.0 - std::min(1.0, r * std::exp(-slack * r / w));
    return o;
  }

 private:
  // Per processor, of the requests of one deadline class (or of all, all_): utilisation, and
  // rate x the second moment of a request's time there (its whole stay) and of its blocks'.
  struct Moments {
    double rho = 0, request_sq = 0, block_sq = 0;
  };
  struct Class {
    double deadline_ms;
    std::vector<Moments> on;
  };
  std::vector<Moments> all_;  // per processor, every class
  std::vector<Class> classes_;
};

// Evaluates one option per task (kShed or an index into options[i]).
inline Evaluation evaluate(const SystemState& s, const std::vector<std::vector<Candidate>>& options,
                           const std::vector<int>& choice, int processors) {
  LoadModel load(processors);
  Evaluation ev;
  std::size_t n = choice.size();
  for (std::size_t i = 0; i < n; ++i)
    if (choice[i] != kShed) {
      const Candidate& c = options[i][choice[i]];
      load.add(c, s.slos[i]);
      add_memory(c, ev.memory_bytes, ev.device_bytes);
    }
  ev.tasks.resize(n);
  double num = 0, den = 0, margin = 0, switching = 0;
  int served = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Slo& slo = s.slos[i];
    double w = std::max(0.0, slo.criticality) * std::max(0.0, slo.rate_rps);
    den += w;
    if (choice[i] == kShed) continue;
    const Candidate& c = options[i][choice[i]];
    switching += c.switch_cost;
    ev.tasks[i] = load.outcome(c, slo);
    num += w * ev.tasks[i].attainment;
    margin += c.accuracy_pct - slo.min_accuracy_pct;
    ++served;
  }
  ev.weighted_attainment = den > 0 ? num / den : 1.0;
  double max_rho = 0;
  ev.rho.resize(processors);
  for (int p = 0; p < processors; ++p) {
    ev.rho[p] = load.rho(p);
    max_rho = std::max(max_rho, ev.rho[p]);
  }
  ev.headroom = 1.0 - max_rho;
  ev.mean_accuracy_margin = served ? margin / served : 0;
  const double over = budget_overage(s, ev.memory_bytes, ev.device_bytes);
  ev.within_budget = over <= 0;
  ev.score = combined_score(ev.weighted_attainment, ev.headroom, ev.mean_accuracy_margin, over) - switching;
  return ev;
}

// Drops options another option of the same task beats on every count the model uses: no more
// busy time on any processor, latency, memory, and no less accuracy. The score is monotone in
// all of these, so pruning never loses the optimum.
inline void prune_dominated(std::vector<Candidate>& cs) {
  auto leq = [](const Candidate& a, const Candidate& b) {  // a at least as good as b
    if (a.latency_ms > b.latency_ms || a.memory_bytes > b.memory_bytes || a.accuracy_pct < b.accuracy_pct ||
        a.energy_j > b.energy_j || a.switch_cost > b.switch_cost)
      return false;
    for (std::size_t p = 0; p < a.busy_ms.size(); ++p)
      if (a.busy_ms[p] > b.busy_ms[p]) return false;
    return true;
  };
  std::vector<char> dominated(cs.size(), 0);
  for (std::size_t i = 0; i < cs.size(); ++i)
    for (std::size_t j = 0; j < cs.size() && !dominated[i]; ++j) {
      if (i == j || dominated[j]) continue;
      // Equal candidates: keep the first only.
      dominated[i] = leq(cs[j], cs[i]) && (!leq(cs[i], cs[j]) || j < i);
    }
  std::vector<Candidate> kept;
  kept.reserve(cs.size());
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!dominated[i]) kept.push_back(std::move(cs[i]));
  cs = std::move(kept);
}

// The most accurate plain variant: the reference a task is "dense" against (the base model).
template <Estimator E>
VariantIndex reference_variant(const E& e, TaskIndex t, std::vector<double>* plain_accuracy = nullptr) {
  int nb = e.num_blocks(t), nv = e.num_variants(t);
  VariantIndex best = 0;
  double best_acc = -kInf;
  if (plain_accuracy) plain_accuracy->assign(nv, 0.0);
  for (int v = 0; v < nv; ++v) {
    double a = e.accuracy_pct(t, StitchedVariant{std::vector<VariantIndex>(nb, v)});
    if (plain_accuracy) (*plain_accuracy)[v] = a;
    if (a > best_acc) best_acc = a, best = v;
  }
  return best;
}

inline std::string fmt_ms(double v) {
  if (!std::isfinite(v)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Writes the plan's per-task predictions from the shared model (so every policy's plan is
// predicted by the same yardstick) and a reason for each task that misses.
inline void fill_task_plan(TaskPlan& tp, const Candidate* c, const Slo& slo, const TaskOutcome& o,
                           const std::string& why) {
  if (c) {
    tp.variant = c->stitch;
    tp.placement = c->placement;
    tp.predicted_latency_ms = c->latency_ms;
    tp.predicted_accuracy_pct = c->accuracy_pct;
    tp.predicted_memory_bytes = c->memory_bytes;
  }
  tp.meets_slo = c && o.attainment >= 0.99;
  std::string r = why;
  if (c && !tp.meets_slo) {
    if (!runnable(*c))
      r += "; no available processor can run it";
    else if (c->accuracy_pct < slo.min_accuracy_pct)
      r += "; accuracy " + fmt_ms(c->accuracy_pct) + " % below floor " + fmt_ms(slo.min_accuracy_pct) + " %";
    else if (const auto lim = energy_limit_j(slo); lim && c->energy_j > *lim)
      r += "; energy " + fmt_ms(1e3 * c->energy_j) + " mJ per request above its limit " + fmt_ms(1e3 * *lim) + " mJ" +
           (slo.max_power_w && !(slo.max_energy_j && *slo.max_energy_j <= *lim)
                ? " (" + fmt_ms(*slo.max_power_w) + " W over " + fmt_ms(slo.power_window_s) + " s at " + fmt_ms(slo.rate_rps) + " rps)"
                : std::string());
    else if (c->latency_ms > slo.deadline_ms)
      r += "; service time " + fmt_ms(c->latency_ms) + " ms exceeds deadline " + fmt_ms(slo.deadline_ms) + " ms";
    else if (o.utilisation >= 1.0)
      r += "; processor overloaded (utilisation >= 1)";
    else
      r += "; predicted attainment " + fmt_ms(100 * o.attainment) + " % (queueing " + fmt_ms(o.wait_ms) +
           " ms at utilisation " + fmt_ms(o.utilisation) + ")";
  }
  tp.reason = std::move(r);
}

// Searches one option per task to maximise combined_score: a greedy pass (tasks by
// criticality x rate, each taking its best option given those placed before it), then local
// search: single-task moves until none improves, then pair moves (both tasks change at once:
// what a swap of processors needs) for up to pair_moves_max_tasks tasks, among pairs with a
// task that misses its SLO, over each task's best options. Each move is scored incrementally
// in O(tasks x processors).
struct SearchOptions {
  bool allow_shed = true;
  int max_passes = 20;
  int pair_moves_max_tasks = 8;
};

class AssignmentSearch {
 public:
  AssignmentSearch(const SystemState& s, const std::vector<std::vector<Candidate>>& options, int processors)
      : s_(s), opt_(options), load_(processors), choice_(options.size(), kShed) {}

  std::vector<int> run(const SearchOptions& o) { return run_from({}, o); }

  // The same search started from `start` (an option index per task; kShed or missing entries
  // are filled greedily): from the plan in force, a re-plan reaches the cheap changes (one
  // block moved) that a greedy start from nothing may miss for a costlier equivalent.
  std::vector<int> run_from(const std::vector<int>& start, const SearchOptions& o) {
    const int n = static_cast<int>(opt_.size());
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return weight(a) > weight(b); });
    for (int i = 0; i < n; ++i) set(i, kShed);
    for (int i = 0; i < n && i < static_cast<int>(start.size()); ++i)
      if (start[i] >= 0 && start[i] < static_cast<int>(opt_[i].size())) set(i, start[i]);
    for (int i : order)
      if (choice_[i] == kShed) set(i, best_option(i, o.allow_shed).first);
    if (!o.allow_shed)  // every task must hold an option even where none looked worth it
      for (int i = 0; i < n; ++i)
        if (choice_[i] == kShed && !opt_[i].empty()) set(i, 0);
    double cur = score();
    for (int pass = 0; pass < o.max_passes; ++pass) {
      bool improved = false;
      for (int i : order) {
        auto [j, sc] = best_option(i, o.allow_shed);
        if (sc > cur + 1e-12 && j != choice_[i]) set(i, j), cur = sc, improved = true;
      }
      if (!improved && n <= o.pair_moves_max_tasks) improved = pair_pass(o.allow_shed, cur);
      if (!improved) break;
    }
    return choice_;
  }

 private:
  double weight(int i) const { return std::max(0.0, s_.slos[i].criticality) * std::max(0.0, s_.slos[i].rate_rps); }

  void set(int i, int j) {
    if (choice_[i] != kShed) {
      load_.add(opt_[i][choice_[i]], s_.slos[i], -1.0);
      add_memory(opt_[i][choice_[i]], mem_, dev_mem_, -1.0);
    }
    choice_[i] = j;
    if (j != kShed) {
      load_.add(opt_[i][j], s_.slos[i]);
      add_memory(opt_[i][j], mem_, dev_mem_);
    }
  }

  double score() const {
    double num = 0, den = 0, margin = 0, max_rho = 0, switching = 0;
    int served = 0;
    for (std::size_t i = 0; i < opt_.size(); ++i) {
      double w = weight(static_cast<int>(i));
      den += w;
      if (choice_[i] == kShed) continue;
      const Candidate& c = opt_[i][choice_[i]];
      switching += c.switch_cost;
      num += w * load_.outcome(c, s_.slos[i]).attainment;
      margin += c.accuracy_pct - s_.slos[i].min_accuracy_pct;
      ++served;
    }
    for (std::size_t p = 0; p < load_.processors(); ++p) max_rho = std::max(max_rho, load_.rho(p));
    return combined_score(den > 0 ? num / den : 1.0, 1.0 - max_rho, served ? margin / served : 0,
                          budget_overage(s_, mem_, dev_mem_)) -
           switching;
  }

  // The best option for task i with the others fixed (the current one when nothing beats it).
  std::pair<int, double> best_option(int i, bool allow_shed) {
    int keep = choice_[i];
    int best = keep;
    double best_sc = score();
    auto consider = [&](int j) {
      if (j == keep) return;
      set(i, j);
      double sc = score();
      if (sc > best_sc + 1e-12) best_sc = sc, best = j;
    };
    if (allow_shed) consider(kShed);
    for (int j = 0; j < static_cast<int>(opt_[i].size()); ++j) consider(j);
    set(i, keep);
    return {best, best_sc};
  }

  bool pair_pass(bool allow_shed, double& cur) {
    const int n = static_cast<int>(opt_.size());
    int bi = -1, bj = -1, bo = kShed, bp = kShed;
    double best = cur;
    // Pair moves are for a task that misses its SLO (a swap can make room for it); pairs of
    // two tasks that both meet theirs are skipped.
    std::vector<char> missing(n);
    for (int i = 0; i < n; ++i)
      missing[i] = weight(i) > 0 &&
                   (choice_[i] == kShed || load_.outcome(opt_[i][choice_[i]], s_.slos[i]).attainment < 0.999);
    // Each task brings its kPairOptions best options as a single move (and shedding).
    constexpr std::size_t kPairOptions = 8;
    std::vector<std::vector<int>> short_list(n);
    for (int i = 0; i < n; ++i) {
      int keep = choice_[i];
      std::vector<std::pair<double, int>> ranked;
      for (int j = 0; j < static_cast<int>(opt_[i].size()); ++j) {
        set(i, j);
        ranked.push_back({score(), j});
      }
      set(i, keep);
      std::sort(ranked.begin(), ranked.end(), [](auto& x, auto& y) { return x.first > y.first; });
      if (allow_shed) short_list[i].push_back(kShed);
      for (std::size_t r = 0; r < ranked.size() && r < kPairOptions; ++r) short_list[i].push_back(ranked[r].second);
    }
    for (int i = 0; i < n; ++i)
      for (int k = i + 1; k < n; ++k) {
        if (!missing[i] && !missing[k]) continue;
        int ki = choice_[i], kk = choice_[k];
        for (int a : short_list[i]) {
          set(i, a);
          for (int b : short_list[k]) {
            if (a == ki && b == kk) continue;
            set(k, b);
            double sc = score();
            if (sc > best + 1e-12) best = sc, bi = i, bj = k, bo = a, bp = b;
          }
          set(k, kk);
        }
        set(i, ki);
      }
    if (bi < 0) return false;
    set(bi, bo);
    set(bj, bp);
    cur = best;
    return true;
  }

  const SystemState& s_;
  const std::vector<std::vector<Candidate>>& opt_;
  LoadModel load_;
  std::vector<int> choice_;
  double mem_ = 0;
  std::vector<double> dev_mem_;  // per processor
};

// The sparsity-blind latency model (the "without sparsity awareness" ablation and INFaaS's
// placement): per block, log latency is fitted as processor effect + variant effect,
//   log L(b, v, p) ~ a(b, p) + w(b, v),
// by least squares over the (v, p) the profile has. It keeps how fast each processor runs each
// block and how much cheaper each variant is on average, but assumes every processor gains the
// same factor from a variant's sparsity or INT8: it cannot see that a CPU sparse kernel wins at
// 70 % while a GPU needs 90 % or 2:4, or that an NPU gains only from INT8. can_place is kept
// (it is an op-support fact, not a sparsity estimate).
//
// The fit for one block (alternating least squares): exp(proc[p] + var[v]) is the blind latency of variant v on p, also
// where the profile has no entry (the NPU's cost of a dense block it cannot run, say).
struct BlindFit {
  std::vector<double> proc, var;
  std::vector<bool> proc_known;
};

inline BlindFit blind_fit(const BlockTable& bt, int b) {
  const int V = bt.variants, P = bt.processors;
  BlindFit f{std::vector<double>(P, 0.0), std::vector<double>(V, 0.0), std::vector<bool>(P, false)};
  auto known = [&](int v, int p) { return std::isfinite(bt.raw_ms(b, v, p)) && bt.raw_ms(b, v, p) > 0; };
  auto lg = [&](int v, int p) { return std::log(bt.raw_ms(b, v, p)); };
  for (int it = 0; it < 8; ++it) {
    for (int v = 0; v < V; ++v) {
      double sum = 0;
      int n = 0;
      for (int p = 0; p < P; ++p)
        if (known(v, p)) sum += lg(v, p) - f.proc[p], ++n;
      f.var[v] = n ? sum / n : 0;
    }
    for (int p = 0; p < P; ++p) {
      double sum = 0;
      int n = 0;
      for (int v = 0; v < V; ++v)
        if (known(v, p)) sum += lg(v, p) - f.var[v], ++n;
      f.proc[p] = n ? sum / n : 0;
      f.proc_known[p] = n > 0;
    }
  }
  return f;
}

// A table whose `now` is the blind estimate (speed and availability applied) and whose `raw` is
// the true profile.
inline BlockTable blind_table(const BlockTable& bt, const SystemState& s) {
  BlockTable out = bt;
  for (int b = 0; b < bt.blocks; ++b) {
    BlindFit f = blind_fit(bt, b);
    for (int v = 0; v < bt.variants; ++v)
      for (int p = 0; p < bt.processors; ++p) {
        std::size_t k = bt.at(b, v, p);
        out.now[k] = (std::isfinite(bt.raw[k]) && usable(s, p)) ? std::exp(f.proc[p] + f.var[v]) * speed(s, p) : kInf;
      }
  }
  return out;
}

// Blind whole-task cost of variant v on each processor (kInf where unusable or unprofiled),
// extrapolated where the processor cannot actually run v.
inline std::vector<double> blind_task_cost(const BlockTable& bt, const SystemState& s, VariantIndex v) {
  std::vector<double> cost(bt.processors, 0.0);
  for (int b = 0; b < bt.blocks; ++b) {
    BlindFit f = blind_fit(bt, b);
    for (int p = 0; p < bt.processors; ++p)
      cost[p] += (f.proc_known[p] && usable(s, p)) ? std::exp(f.proc[p] + f.var[v]) * speed(s, p) : kInf;
  }
  return cost;
}

// Builds the Plan from one option per task; shed tasks keep their least-memory option so the
// engine still knows what they would run, flagged meets_slo = false. `evaluation`, if given,
// receives the model's evaluation of the choice (per-task attainment and all).
inline Plan make_plan(const SystemState& s, const std::vector<std::vector<Candidate>>& options,
                      const std::vector<int>& choice, const std::vector<std::string>& why,
                      const std::vector<StitchedVariant>& fallback_variant, int processors,
                      Evaluation* evaluation = nullptr) {
  Evaluation local;
  Evaluation& ev = evaluation ? *evaluation : local;
  ev = evaluate(s, options, choice, processors);
  Plan plan;
  plan.tasks.resize(choice.size());
  for (std::size_t i = 0; i < choice.size(); ++i) {
    TaskPlan& tp = plan.tasks[i];
    if (choice[i] != kShed) {
      fill_task_plan(tp, &options[i][choice[i]], s.slos[i], ev.tasks[i], why[i]);
      continue;
    }
    if (options[i].empty()) {
      tp.variant = fallback_variant[i];
      tp.meets_slo = false;
      tp.reason = why[i] + "; not runnable: no available processor can run every block of any candidate";
      continue;
    }
    // Could it meet its SLO with the SoC to itself? If not, say why; else it was shed for others.
    const Candidate* alone = nullptr;
    TaskOutcome alone_o;
    for (const Candidate& c : options[i]) {
      LoadModel only(processors);
      only.add(c, s.slos[i]);
      TaskOutcome o = only.outcome(c, s.slos[i]);
      // Best attainment alone; among hopeless ones, the fastest (its reason is the telling one).
      if (!alone || o.attainment > alone_o.attainment + 1e-12 ||
          (alone_o.attainment <= 0 && o.attainment <= 0 && c.latency_ms < alone->latency_ms))
        alone = &c, alone_o = o;
    }
    if (alone_o.attainment < 0.99) {
      fill_task_plan(tp, alone, s.slos[i], alone_o, why[i] + "; infeasible even with the SoC to itself");
      tp.reason = "shed: " + tp.reason;
      continue;
    }
    const Candidate* lightest = &options[i][0];
    for (const Candidate& c : options[i])
      if (c.memory_bytes < lightest->memory_bytes) lightest = &c;
    fill_task_plan(tp, lightest, s.slos[i], TaskOutcome{}, why[i]);
    tp.meets_slo = false;
    tp.reason = "shed: its requests should be rejected (admission control); serving it would cost other "
                "tasks more criticality-weighted attainment, or memory, than it gains";
  }
  return plan;
}

// A task the plan sheds: its requests should be rejected by admission control.
inline bool is_shed(const TaskPlan& tp) { return tp.reason.rfind("shed", 0) == 0 || tp.placement.processor.empty(); }

// Task t's stitch whole on each other usable processor that runs every block of it.
template <Estimator E>
std::vector<Placement> whole_alternatives(const TaskPlan& tp, TaskIndex t, const SystemState& s, const E& e) {
  std::vector<Placement> out;
  for (ProcessorIndex p = 0; p < e.num_processors(); ++p) {
    if (!usable(s, p)) continue;
    bool runs = true;
    for (std::size_t b = 0; b < tp.variant.choice.size() && runs; ++b)
      runs = e.can_place(t, static_cast<BlockIndex>(b), tp.variant.choice[b], p);
    Placement pl{std::vector<ProcessorIndex>(tp.variant.choice.size(), p)};
    if (runs && pl != tp.placement) out.push_back(std::move(pl));
  }
  return out;
}

// Gives every served task of `plan` (those `which` marks, if given) the given routing and, as
// alternatives, its stitch whole on each other usable processor that can run every block of it
// (TaskPlan::alternatives).
template <Estimator E>
void offer_alternatives(Plan& plan, const SystemState& s, const E& e, Routing routing,
                        const std::vector<bool>* which = nullptr) {
  for (std::size_t t = 0; t < plan.tasks.size(); ++t) {
    TaskPlan& tp = plan.tasks[t];
    if (is_shed(tp) || (which && (t >= which->size() || !(*which)[t]))) continue;
    for (auto& pl : whole_alternatives(tp, static_cast<TaskIndex>(t), s, e)) tp.alternatives.push_back(std::move(pl));
    tp.routing = routing;
  }
}

// Under a memory budget: each alternative holds another copy of its task's stitch on that
// processor, so alternatives are offered only while the plan's predicted memory (ev's totals)
// with them still fits every budget, in the order of `order` (the tasks that need routes most
// first). A task gets its routing once it has one.
template <Estimator E>
void offer_alternatives_within_budget(Plan& plan, const SystemState& s, const E& e, Routing routing,
                                     const std::vector<int>& order, const Evaluation& ev) {
  double memory = ev.memory_bytes;
  std::vector<double> device = ev.device_bytes;
  device.resize(static_cast<std::size_t>(e.num_processors()), 0.0);
  for (const int t : order) {
    TaskPlan& tp = plan.tasks.at(static_cast<std::size_t>(t));
    if (is_shed(tp)) continue;
    const double bytes = tp.predicted_memory_bytes;
    for (auto& pl : whole_alternatives(tp, t, s, e)) {
      auto& on = device[static_cast<std::size_t>(pl.processor.front())];
      on += bytes;
      if (budget_overage(s, memory + bytes, device) > 0) {
        on -= bytes;
        continue;
      }
      memory += bytes;
      tp.alternatives.push_back(std::move(pl));
      tp.routing = routing;
    }
  }
}

// Predicts any Plan (any policy's) with the shared model: the common yardstick for comparing
// policies offline. Shed tasks count as violations and hold nothing. With `switching`, moving
// a task off the state's plan in force costs what the optimizers charge for it (SwitchPenalty).
template <Estimator E>
Evaluation evaluate_plan(const SystemState& s, const E& e, const Plan& plan, std::optional<SwitchPenalty> switching = std::nullopt) {
  const int T = e.num_tasks();
  check(static_cast<int>(plan.tasks.size()) == T, ErrorCode::invalid_argument, "evaluate_plan",
        "plan has " + std::to_string(plan.tasks.size()) + " tasks, the estimator " + std::to_string(T));
  std::vector<std::vector<Candidate>> options(T);
  std::vector<int> choice(T, kShed);
  std::vector<int> procs;
  for (int p = 0; p < e.num_processors(); ++p)
    if (usable(s, p)) procs.push_back(p);
  for (int t = 0; t < T; ++t) {
    const TaskPlan& tp = plan.tasks[t];
    if (is_shed(tp)) continue;
    BlockTable bt = block_table(e, t, s);
    Candidate c = make_candidate(e, t, bt, tp.variant, tp.placement, e.accuracy_pct(t, tp.variant));
    if (switching) {
      const auto in_force = plan_in_force(s, t, e.num_blocks(t), e.num_variants(t), procs);
      c.switch_cost = switch_cost(e, t, c.stitch, c.placement, in_force ? &*in_force : nullptr, *switching);
    }
    options[t].push_back(std::move(c));
    choice[t] = 0;
  }
  return evaluate(s, options, choice, e.num_processors());
}

}  // namespace sparseloom::optimizer
