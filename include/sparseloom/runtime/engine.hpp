#pragma once
// The multi-task Engine: processors with their own workers and bounded queues, tasks with SLOs
// that may change while it runs, admission control, per-request execution of each task's
// current stitched variant block by block on its planned processors, re-planning on change,
// and metrics. Policies are template parameters: the request path has no virtual call.
//
//   Engine<Runner, Estimator, Optimizer, Preloader = preloader::Hotness, Exec = Threaded>
//
// The default preloader is SparseLoom's hot-subgraph policy: without a budget it holds the
// current plan's blocks (and loads them ahead of use); LoadAllPreloader keeps everything any
// plan ever used.
//
// Exec picks how blocks execute and what the clock is:
//  - Threaded: worker threads per processor run blocks through the runner; SteadyClock.
//  - DiscreteEvent: one thread, a simulated clock; a block takes the runner's modelled time
//    (ModelledBlockRunner::simulate) or the estimator's. Requests, queues, admission,
//    re-planning, preloading and metrics are the same code (the simulator, issue 12).
#include <algorithm>
#include <functional>
#include <array>
#include <cmath>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/block_runner.hpp"
#include "sparseloom/runtime/clock.hpp"
#include "sparseloom/runtime/metrics.hpp"
#include "sparseloom/runtime/sim_load_channel.hpp"
#include "sparseloom/preloader/hotness.hpp"
#include "sparseloom/runtime/preloader.hpp"
#include "sparseloom/runtime/request.hpp"

namespace sparseloom::runtime {

enum class ProcessorKind : std::uint8_t { cpu, gpu, npu };
constexpr std::string_view to_string(ProcessorKind k) noexcept {
  switch (k) {
    case ProcessorKind::cpu: return "cpu";
    case ProcessorKind::gpu: return "gpu";
    case ProcessorKind::npu: return "npu";
  }
  return "unknown";
}

struct ProcessorSpec {
  std::string name;
  ProcessorKind kind = ProcessorKind::cpu;
  int workers = 1;                   // threads taking blocks off this processor's queue
  std::size_t queue_capacity = 1024; // bounds admissions; an admitted request's next block always gets in
  // Memory of its own (a discrete GPU/NPU), 0 = none: the blocks held on it never exceed this.
  // They count in EngineOptions::memory_budget_bytes too. Needs a preloader that enforces it
  // (set_device_budgets: every preloader:: policy and LoadAllPreloader).
  std::size_t memory_budget_bytes = 0;
};

struct TaskSpec {
  std::string name;
  Slo slo;
};

struct EngineOptions {
  std::size_t memory_budget_bytes = 0;  // 0 = unlimited; passed to the optimizer and preloader
  bool plan_for_budget = true;          // false: the optimizer plans as if unlimited (ablation); the preloader still enforces it
  bool admission_control = true;        // reject requests predicted to miss their deadline
  // Queues are earliest-deadline-first. A job running consecutive blocks on one processor
  // yields between two of them when a request with an earlier deadline waits there (it goes
  // back into the queue, its tensors with it), and admission counts only the queued work due
  // before the new request plus the block now running: without this a 12 ms-deadline request
  // waited out a whole 17-20 ms encoder or ResNet-50 behind it, and admission, assuming it
  // queued behind everything, rejected or shed requests EDF would have served (session 13).
  bool preempt_between_blocks = true;
  // The first runs of each (task, block, variant) on a processor are left out of its speed
  // windows (admission's per-task speed and the slow-down detector): first runs can pay
  // one-time costs that read as a 5-8x slow-down, and admission then turned the task away until
  // the estimate went stale 1 s later (session 13: 32 of MobileNetV2's requests in the first
  // 1.7 s of a run). Session 14 traced that slow-down to new worker threads' malloc arenas (gone
  // with one arena, and with core/buffer_cache.hpp keeping tensor buffers); this stays as a guard.
  int cold_runs_ignored = 2;
  int max_attempts = 2;                 // plans a request may run on after device failures
  // Re-planning on observed change (checked every monitor_period_ms).
  double monitor_period_ms = 10;
  // Rates: a task's rate is measured over a full window of its own load (from its first
  // arrival, and again from each new plan), never over the idle time before load starts.
  double rate_window_ms = 500;          // arrival rates measured over this window
  double rate_change_ratio = 0.5;       // re-plan when |observed - planned| > ratio x planned
  int rate_min_arrivals = 20;           // ... and the window holds enough arrivals to tell
  double rate_change_z = 4;             // ... and the count is this many Poisson std devs off
  double rate_confirm_ms = -1;          // ... on every check for this long (< 0: rate_window_ms / 2)
  // Slow-downs: a processor's speed is measured / predicted time over its last 16 blocks
  // (blocks above 4x the window's median ratio left out: preempted); its first
  // slowdown_min_samples calibrate a baseline (the contention it runs under, up to
  // slowdown_baseline_cap), and it is slow when speed / baseline exceeds
  // slowdown_ratio x that of the least slowed other calibrated processor (contention every
  // processor shares is not one processor's slow-down). With no other calibrated processor
  // the cap is all that separates contention from a slow-down present from the start.
  double slowdown_ratio = 3;
  int slowdown_min_samples = 8;         // 1..16
  double slowdown_baseline_cap = 3;
  double slowdown_confirm_ms = 500;     // ... on every check for this long (another program's busy moment is not it)
  // Discrete-event mode: modelled time of a cold block load.
  double sim_load_ms_per_mib = 0.5;
};

struct Threaded {
  static constexpr bool discrete_event = false;
  using clock_type = SteadyClock;
};
struct DiscreteEvent {
  static constexpr bool discrete_event = true;
  using clock_type = SimClock;
};

namespace detail {

using BlockKey = std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>;

// The estimator as the optimizer should see it after blocks failed to compile: those
// (task, block, variant, processor) cannot be placed.
template <class E>
struct MaskedEstimator {
  const E* e;
  const std::set<BlockKey>* banned;
  // Optional: stitches usable now (e.g. their repair is computed); any other stitch is
  // reported far below every accuracy floor, so the optimizer does not pick it.
  const std::function<bool(TaskIndex, const StitchedVariant&)>* ready = nullptr;
  int num_tasks() const { return e->num_tasks(); }
  int num_blocks(TaskIndex t) const { return e->num_blocks(t); }
  int num_variants(TaskIndex t) const { return e->num_variants(t); }
  int num_processors() const { return e->num_processors(); }
  bool can_place(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return !banned->contains({t, b, v, p}) && e->can_place(t, b, v, p);
  }
  double accuracy_pct(TaskIndex t, const StitchedVariant& s) const {
    return ready && !(*ready)(t, s) ? kNotReadyAccuracy : e->accuracy_pct(t, s);
  }
  double latency_ms(TaskIndex t, const StitchedVariant& s, const Placement& pl) const { return e->latency_ms(t, s, pl); }
  double block_latency_ms(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return e->block_latency_ms(t, b, v, p);
  }
  static constexpr double kNotReadyAccuracy = -1e9;
  double memory_bytes(TaskIndex t, const StitchedVariant& s) const { return e->memory_bytes(t, s); }
  double block_bytes(TaskIndex t, BlockIndex b, VariantIndex v) const { return e->block_bytes(t, b, v); }
  // Optional: energy per request, where the estimator models it (the simulator's).
  double energy_j(TaskIndex t, const StitchedVariant& s, const Placement& pl) const
    requires requires(const E& x) { x.energy_j(t, s, pl); }
  {
    return e->energy_j(t, s, pl);
  }
};

}  // namespace detail

template <BlockRunner L, sparseloom::Estimator E, sparseloom::Optimizer<E> O, Preloader<L> P = preloader::Hotness,
          class Exec = Threaded>
class Engine {
  using ClockT = typename Exec::clock_type;
  static constexpr bool kSim = Exec::discrete_event;
  // A runner that models its loads (SimRunner::take_loads): the discrete-event mode prices them.
  static constexpr bool kPricedLoads = requires(L& l) { l.take_loads(); };

 public:
  Engine(L& lib, const E& estimator, O optimizer, std::vector<ProcessorSpec> processors, std::vector<TaskSpec> tasks,
         EngineOptions options = {}, P preloader = P{})
      : lib_(lib), est_(estimator), opt_(std::move(optimizer)), pre_(std::move(preloader)), opts_(options),
        ledger_(names_of(tasks)) {
    validate(processors, tasks);
    for (const auto& p : processors) device_budgets_.push_back(p.memory_budget_bytes);
    if constexpr (kSim && requires { pre_.set_background(false); }) pre_.set_background(false);  // simulated time only
    if constexpr (requires { pre_.set_device_budgets(device_budgets_); }) {
      pre_.set_device_budgets(device_budgets_);
    } else {
      check(!device_bound(), ErrorCode::invalid_argument, "Engine: processor memory_budget_bytes",
            "a per-device budget needs a preloader that enforces it (set_device_budgets: preloader::Hotness, OnDemandLru, "
            "ClockworkLike, OneModelPerTask, LoadAllPreloader); this one holds only the global budget");
    }
    check_budget_floor(opts_.memory_budget_bytes);
    budget_now_.store(opts_.memory_budget_bytes);
    ledger_.now_fn = [](const void* c) { return static_cast<const ClockT*>(c)->now_ms(); };
    ledger_.clock = &clock_;
    for (auto& spec : processors) {
      auto pr = std::make_unique<Proc>();
      pr->spec = std::move(spec);
      pr->idle_slots = pr->spec.workers;
      pr->task_speed.resize(tasks.size());
      procs_.push_back(std::move(pr));
    }
    for (const auto& t : tasks) {
      auto lv = std::make_unique<TaskLive>();
      lv->store(t.slo);
      live_.push_back(std::move(lv));
      state_.slos.push_back(t.slo);
    }
    state_.processor_available.assign(procs_.size(), true);
    state_.processor_speed.assign(procs_.size(), 1.0);
    state_.memory_budget_bytes = opts_.plan_for_budget ? static_cast<double>(opts_.memory_budget_bytes) : 0.0;
    if (opts_.plan_for_budget)
      for (std::size_t b : device_budgets_) state_.device_budget_bytes.push_back(static_cast<double>(b));
    if constexpr (requires { pre_.set_memory_budget(std::size_t{}); }) pre_.set_memory_budget(opts_.memory_budget_bytes);
    // Blocks already resident in the library (a profiler's, an earlier engine's) join the memory
    // policy's residency, least recently used, and go down to the budget before the first plan.
    if constexpr (requires { pre_.adopt_resident(lib_); }) {
      if (pre_.adopt_resident(lib_) > 0)
        if constexpr (requires { pre_.shrink_to_budget(lib_); }) pre_.shrink_to_budget(lib_);
    }
    replan("start");
    if constexpr (!kSim) {
      for (std::size_t p = 0; p < procs_.size(); ++p)
        for (int w = 0; w < procs_[p]->spec.workers; ++w)
          procs_[p]->workers.emplace_back([this, p] { worker_loop(static_cast<ProcessorIndex>(p)); });
      monitor_ = std::thread([this] { monitor_loop(); });
    } else {
      schedule_monitor();
    }
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Stops intake; requests not finished are recorded `rejected` ("engine shut down"); blocks
  // already running finish first. Call drain() before to finish them instead.
  ~Engine() { shutdown(); }

  // Submits one request of task t; deadline_ms is relative to its arrival (default: the task's
  // SLO). waited_ms: the request arrived that long before this call (a sensor timestamp, a load
  // generator that ran late); its latency and deadline count from then.
  // Never blocks on the queues: a request that cannot be admitted comes back `rejected`.
  RequestHandle submit(TaskIndex t, std::vector<Tensor> input = {}, std::optional<double> deadline_ms = {},
                       double waited_ms = 0) {
    check(t >= 0 && static_cast<std::size_t>(t) < live_.size(), ErrorCode::invalid_argument, "Engine::submit",
          "task " + std::to_string(t) + " out of range (" + std::to_string(live_.size()) + " tasks)");
    check(std::isfinite(waited_ms) && waited_ms >= 0, ErrorCode::invalid_argument, "Engine::submit",
          "waited_ms must be finite and >= 0");
    const double now = clock_.now_ms();
    const double arrived = now - waited_ms;
    auto& lv = *live_[static_cast<std::size_t>(t)];
    auto ctl = std::make_shared<detail::RequestCtl>(&ledger_);
    ctl->rec.id = next_id_.fetch_add(1, std::memory_order_relaxed);
    ctl->rec.task = t;
    ctl->rec.arrival_ms = arrived;
    ctl->rec.deadline_ms = arrived + (deadline_ms ? *deadline_ms : lv.deadline_ms.load(std::memory_order_relaxed));
    ledger_.add();
    ledger_.metrics.issue(t);
    lv.arrivals.fetch_add(1, std::memory_order_relaxed);
    RequestHandle handle(ctl);
    if (closed_.load()) {
      reject_new(*ctl, now, "the engine is draining or shut down");
      return handle;
    }
    auto snap = current();
    const auto& route = snap->routes[static_cast<std::size_t>(t)];
    if (!route.valid) {
      reject_new(*ctl, now, "no feasible plan: " + route.reason);
      return handle;
    }
    auto job = std::make_unique<Job>();
    job->rec = ctl->rec;
    job->ctl = std::move(ctl);
    job->criticality = lv.criticality.load(std::memory_order_relaxed);
    job->input = std::move(input);
    job->current = job->input;
    job->snap = std::move(snap);
    admit(std::move(job), now);
    return handle;
  }

  // Changes a task's SLO (deadline, floor, rate, criticality) and re-plans before returning.
  void set_slo(TaskIndex t, const Slo& slo) {
    check(t >= 0 && static_cast<std::size_t>(t) < live_.size(), ErrorCode::invalid_argument, "Engine::set_slo",
          "task out of range");
    std::lock_guard lk(planner_mu_);
    live_[static_cast<std::size_t>(t)]->store(slo);
    state_.slos[static_cast<std::size_t>(t)] = slo;
    replan_locked("SLO of task " + std::to_string(t) + " changed");
  }

  // Takes a processor out of (or back into) service and re-plans before returning.
  void set_processor_available(ProcessorIndex p, bool available) {
    check(p >= 0 && static_cast<std::size_t>(p) < procs_.size(), ErrorCode::invalid_argument,
          "Engine::set_processor_available", "processor out of range");
    std::lock_guard lk(planner_mu_);
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    pr.available.store(available);
    if (available) {
      {
        std::lock_guard sl(pr.speed_mu);
        pr.speed.store(1.0);
        pr.speed_samples.store(0);
        pr.baseline.store(0);
        pr.window = SpeedWindow{};
        for (auto& w : pr.task_speed) w = SpeedWindow{};
      }
      pr.slow_flagged.store(false);
      state_.processor_speed[static_cast<std::size_t>(p)] = 1.0;
    }
    replan_locked("processor " + pr.spec.name + (available ? " available" : " unavailable"));
  }

  // Stops intake and waits until every admitted request has finished (served, or rejected at
  // dispatch when it can no longer make its deadline). True if all finished within the timeout.
  // Discrete-event mode: runs the simulation (scheduled arrivals included) until it is empty,
  // then stops intake; the timeout does not apply.
  template <class Rep = long, class Period = std::milli>
  bool drain(std::chrono::duration<Rep, Period> timeout = std::chrono::seconds(30)) {
    if constexpr (kSim) {
      run_until_idle();
      closed_.store(true);
      return ledger_.pending_count() == 0;
    } else {
      closed_.store(true);
      return ledger_.wait_idle(timeout);
    }
  }

  // Requests not finished yet.
  std::size_t pending() { return ledger_.pending_count(); }

  Plan plan() const { return current()->plan; }
  // The memory policy (its own statistics: loads, evictions, failed loads).
  const P& preloader() const { return pre_; }
  std::uint64_t plan_version() const { return current()->plan.version; }
  double now_ms() const { return clock_.now_ms(); }
  const std::vector<std::string>& task_names() const { return ledger_task_names_; }

  EngineMetrics metrics() const {
    std::vector<ProcessorMetrics> ps;
    for (const auto& pr : procs_) {
      ProcessorMetrics m;
      m.name = pr->spec.name;
      m.kind = std::string(to_string(pr->spec.kind));
      m.workers = pr->spec.workers;
      m.busy_ms = pr->busy_ms.load();
      m.blocks = pr->blocks.load();
      m.failures = pr->failures.load();
      m.available = pr->available.load();
      m.observed_slowdown = pr->speed.load();
      {
        std::lock_guard lk(budget_mu_);
        m.memory_budget_bytes = device_budgets_.at(ps.size());
        m.peak_resident_bytes = device_peak_.empty() ? 0 : device_peak_.at(ps.size());
      }
      ps.push_back(std::move(m));
    }
    auto out = ledger_.metrics.summarize(clock_.now_ms(), std::move(ps), budget_now_.load());
    // After a run-time change the peak may predate the current budget: judge every sample
    // against the budget in force when it was taken.
    if (budget_changed_.load()) out.budget_exceeded = over_budget_.load();
    if (device_over_.load()) out.budget_exceeded = true;
    return out;
  }

  // Changes the memory budget at run time (0 = unlimited). The preloader evicts down to it in
  // its own order (waiting for running requests to release pinned blocks; none is dropped),
  // and the optimizer re-plans for it, before this returns; from then on it is the budget that
  // metrics judge samples by. Returns false if pinned blocks still held resident bytes above
  // it when the preloader gave up waiting. Throws Error(infeasible), keeping the old budget,
  // if it is below the smallest runnable plan (as at start).
  bool set_memory_budget(std::size_t bytes) {
    std::lock_guard lk(planner_mu_);
    check_budget_floor(bytes);
    const bool raise = raises(opts_.memory_budget_bytes, bytes);
    opts_.memory_budget_bytes = bytes;
    state_.memory_budget_bytes = opts_.plan_for_budget ? static_cast<double>(bytes) : 0.0;
    budget_changed_.store(true);
    const bool fits = change_budget(
        raise, [&] { set_budget_now(bytes); },
        [&] {
          if constexpr (requires { pre_.set_memory_budget(std::size_t{}); }) pre_.set_memory_budget(bytes);
        },
        "memory budget set to " + std::to_string(bytes) + " bytes");
    return fits && (bytes == 0 || lib_.resident_bytes() <= bytes);
  }
  std::size_t memory_budget() const { return budget_now_.load(); }

  // Changes processor p's own memory budget at run time (0 = none), as set_memory_budget does
  // the global one: the preloader evicts p's blocks down to it and the optimizer re-plans for it
  // before this returns. Throws Error(infeasible), keeping the old budget, if some task would
  // have no variant whose every block fits a processor; Error(invalid_argument) for a processor
  // out of range or a preloader that enforces no device budgets. Returns false if pinned
  // blocks still held more than the budget on p when the preloader gave up waiting.
  bool set_device_budget(ProcessorIndex p, std::size_t bytes) {
    std::lock_guard lk(planner_mu_);
    check(p >= 0 && static_cast<std::size_t>(p) < procs_.size(), ErrorCode::invalid_argument, "Engine::set_device_budget",
          "processor " + std::to_string(p) + " of " + std::to_string(procs_.size()));
    const auto& name = procs_[static_cast<std::size_t>(p)]->spec.name;
    if constexpr (requires { pre_.set_device_budgets(device_budgets_); }) {
      auto next = device_budgets_;
      next[static_cast<std::size_t>(p)] = bytes;
      check_budget_floor(opts_.memory_budget_bytes, next);
      const bool raise = raises(device_budgets_[static_cast<std::size_t>(p)], bytes);
      if (opts_.plan_for_budget) state_.device_budget_bytes.assign(next.begin(), next.end());
      bool fits = change_budget(
          raise, [&] { set_device_budgets_now(next); }, [&] { pre_.set_device_budgets(next); },
          "memory budget of " + name + " set to " + std::to_string(bytes) + " bytes");
      if constexpr (requires { lib_.resident_bytes(ProcessorIndex{}); })
        fits = fits && (bytes == 0 || lib_.resident_bytes(p) <= bytes);
      return fits;
    } else {
      throw Error(ErrorCode::invalid_argument, "Engine::set_device_budget",
                  "processor " + name + ": this preloader enforces no per-device budget (set_device_budgets)");
    }
  }
  std::size_t device_budget(ProcessorIndex p) const {
    std::lock_guard lk(budget_mu_);
    return device_budgets_.at(static_cast<std::size_t>(p));
  }

  // --- discrete-event mode ---
  // Schedules arrivals (times relative to the current simulated time), each submitted with an
  // empty input and its task's deadline.
  void schedule(const std::vector<Arrival>& arrivals)
    requires kSim
  {
    const double base = clock_.now_ms();
    // Loads before the first arrivals (the initial plan's blocks) are setup, not run time.
    if constexpr (kPricedLoads)
      if (!std::exchange(sim_scheduled_, true)) lib_.take_loads();
    for (const auto& a : arrivals) {
      Event ev;
      ev.kind = EventKind::arrival;
      ev.t = base + a.time_ms;
      ev.task = a.task;
      push_event(std::move(ev));
    }
  }
  // Processes every event up to t_ms, then sets the clock to t_ms.
  void run_until(double t_ms)
    requires kSim
  {
    while (!events_.empty() && events_.front().t <= t_ms) step();
    clock_.advance_to(t_ms);
  }
  // Processes events until only the periodic monitor is left.
  void run_until_idle()
    requires kSim
  {
    while (busy_events_ > 0) step();
  }

 private:
  // ---------------------------------------------------------------------------------------
  struct Route {
    bool valid = false;
    StitchedVariant variant;
    Placement placement;
    std::vector<double> block_ms;  // predicted per block; sums to the estimator's latency
    double accuracy_pct = 0;
    std::string reason;
  };
  struct Snapshot {
    Plan plan;
    std::vector<Route> routes;               // one per task: its plan's placement
    std::vector<std::vector<Route>> alts;    // per task: its plan's alternatives (TaskPlan::routing)
  };
  struct Job {
    std::shared_ptr<detail::RequestCtl> ctl;
    RequestRecord rec;  // the draft written on completion
    double criticality = 1;
    std::vector<Tensor> input, current;
    std::shared_ptr<const Snapshot> snap;
    BlockIndex next = 0;
    bool started = false;  // a block of the current attempt ran
    const Route* alt = nullptr;  // one of snap->alts[task] admission chose, else the plan's route
    const Route& route() const { return alt ? *alt : snap->routes[static_cast<std::size_t>(rec.task)]; }
  };
  struct Entry {
    double deadline = 0;
    std::uint64_t seq = 0;
    double work_ms = 0;  // predicted time of the blocks it runs here (in the backlog)
    double enqueued_ms = 0;
    std::unique_ptr<Job> job;
  };
  // Heap order: earliest deadline first, then arrival order.
  struct EntryLater {
    bool operator()(const Entry& a, const Entry& b) const {
      return a.deadline > b.deadline || (a.deadline == b.deadline && a.seq > b.seq);
    }
  };
  // The last 16 blocks' (measured, predicted) times and what they say: measured over predicted
  // summed, leaving out blocks above 4x the window's median ratio (one preempted block on a
  // shared core is not a slow-down; a processor slowed as a whole moves the median with it).
  struct SpeedWindow {
    std::array<std::pair<double, double>, 16> ring{};
    int n = 0;
    double speed = 1, at_ms = 0;
    // forget_after_ms: a window idle that long starts afresh (its samples describe a past state).
    void add(double measured, double predicted, double now, double forget_after_ms = 1e300) {
      if (n > 0 && now - at_ms > forget_after_ms) *this = SpeedWindow{};
      ring[static_cast<std::size_t>(n) % ring.size()] = {measured, predicted};
      ++n;
      at_ms = now;
      const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(n), ring.size());
      if (k < 3) return;  // too few to say anything: the profile's speed stands
      std::array<double, 16> r{};
      for (std::size_t i = 0; i < k; ++i) r[i] = ring[i].first / ring[i].second;
      auto w = r;
      std::nth_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(k / 2), w.begin() + static_cast<std::ptrdiff_t>(k));
      double m = 0, pd = 0;
      for (std::size_t i = 0; i < k; ++i)
        if (r[i] <= 4 * w[k / 2]) m += ring[i].first, pd += ring[i].second;
      speed = pd > 0 ? m / pd : w[k / 2];
    }
  };

  struct Proc {
    ProcessorSpec spec;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Entry> heap;
    bool stop = false;
    std::atomic<double> backlog_ms{0};
    std::atomic<double> running_until_ms{0};  // predicted end of the block running now (0: idle)
    std::atomic<bool> available{true};
    std::atomic<double> busy_ms{0};
    std::atomic<std::uint64_t> blocks{0}, failures{0};
    std::atomic<double> speed{1};       // measured / predicted over the last 16 blocks (record_speed)
    std::atomic<int> speed_samples{0};  // since start or the last return to service
    std::atomic<double> baseline{0};    // calibrated speed (0: still calibrating)
    std::atomic<bool> slow_flagged{false};
    std::mutex speed_mu;                // window, task_speed, runs
    std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex>, int> runs;  // block runs seen here (cold_runs_ignored)
    SpeedWindow window;                 // every block on this processor: slow-down detection
    std::vector<SpeedWindow> task_speed;  // [task]: admission
    std::vector<std::thread> workers;
    int idle_slots = 0;  // discrete-event mode
  };
  struct TaskLive {
    std::atomic<double> deadline_ms{100}, min_accuracy{0}, criticality{1};
    std::atomic<std::uint64_t> arrivals{0};
    void store(const Slo& s) {
      deadline_ms.store(s.deadline_ms);
      min_accuracy.store(s.min_accuracy_pct);
      criticality.store(s.criticality);
    }
  };
  enum class EventKind : std::uint8_t { arrival, dispatch, block_end, monitor, loaded };
  struct Event {
    double t = 0;
    std::uint64_t seq = 0;
    EventKind kind = EventKind::dispatch;
    ProcessorIndex p = 0;
    TaskIndex task = 0;
    std::unique_ptr<Job> job;
    double t_start = 0;
  };
  struct EventLater {
    bool operator()(const Event& a, const Event& b) const { return a.t > b.t || (a.t == b.t && a.seq > b.seq); }
  };

  // --- construction -----------------------------------------------------------------------
  std::vector<std::string> names_of(const std::vector<TaskSpec>& tasks) {
    for (const auto& t : tasks) ledger_task_names_.push_back(t.name);
    return ledger_task_names_;
  }

  void validate(const std::vector<ProcessorSpec>& ps, const std::vector<TaskSpec>& ts) const {
    const auto nt = static_cast<int>(ts.size()), np = static_cast<int>(ps.size());
    check(nt > 0 && np > 0, ErrorCode::invalid_argument, "Engine", "needs at least one task and one processor");
    check(lib_.num_tasks() == nt && est_.num_tasks() == nt, ErrorCode::invalid_argument, "Engine",
          std::to_string(nt) + " tasks given, runner has " + std::to_string(lib_.num_tasks()) + ", estimator " +
              std::to_string(est_.num_tasks()));
    check(lib_.num_processors() == np && est_.num_processors() == np, ErrorCode::invalid_argument, "Engine",
          std::to_string(np) + " processors given, runner has " + std::to_string(lib_.num_processors()) +
              ", estimator " + std::to_string(est_.num_processors()));
    for (int t = 0; t < nt; ++t)
      check(lib_.num_blocks(t) == est_.num_blocks(t) && lib_.num_blocks(t) > 0 &&
                lib_.num_variants(t) == est_.num_variants(t),
            ErrorCode::invalid_argument, "Engine: task " + ts[static_cast<std::size_t>(t)].name,
            "runner and estimator disagree on blocks or variants");
    for (const auto& p : ps)
      check(p.workers >= 1 && p.queue_capacity >= 1, ErrorCode::invalid_argument, "Engine: processor " + p.name,
            "needs workers >= 1 and queue_capacity >= 1");
  }

  // Whether a budget change from `old` to `bytes` (0 = none) raises it.
  static bool raises(std::size_t old, std::size_t bytes) { return bytes == 0 || (old != 0 && bytes > old); }
  // The order of every run-time budget change (planner_mu_ held): a raise is in force before
  // anything more loads; the policy gets the new budget and evicts down to it; a cut is in
  // force once resident bytes were brought under it; then re-plan for it and sample memory.
  // Returns whether the policy's eviction fitted.
  template <class InForce, class ToPolicy>
  bool change_budget(bool raise, InForce in_force, ToPolicy to_policy, std::string reason) {
    if (raise) in_force();
    to_policy();
    bool fits = true;
    if constexpr (requires { pre_.shrink_to_budget(lib_); }) fits = pre_.shrink_to_budget(lib_);
    in_force();
    replan_locked(std::move(reason));
    sample_memory(clock_.now_ms());
    return fits;
  }

  static bool device_bound(const std::vector<std::size_t>& budgets) {
    return std::any_of(budgets.begin(), budgets.end(), [](std::size_t b) { return b > 0; });
  }
  bool device_bound() const { return device_bound(device_budgets_); }
  // budget_mu_: sample_memory and metrics read the per-device budgets from worker threads.
  void set_device_budgets_now(const std::vector<std::size_t>& budgets) {
    std::lock_guard lk(budget_mu_);
    device_budgets_ = budgets;
  }

  // A budget below the smallest runnable plan is an error at start, not requests that fail
  // (or wait) forever: every task must have a variant whose every block fits on some processor
  // (blocks load one at a time, so the largest block of the lightest variant is the floor; a
  // processor with a device budget takes only blocks that fit it).
  void check_budget_floor(std::size_t budget) const { check_budget_floor(budget, device_budgets_); }
  void check_budget_floor(std::size_t budget, const std::vector<std::size_t>& device_budgets) const {
    if (budget == 0 && !device_bound(device_budgets)) return;
    constexpr auto kNone = std::numeric_limits<std::size_t>::max();
    for (TaskIndex t = 0; t < lib_.num_tasks(); ++t) {
      std::size_t floor = kNone;
      for (VariantIndex v = 0; v < lib_.num_variants(t); ++v) {
        std::size_t largest = 0;
        for (BlockIndex b = 0; b < lib_.num_blocks(t) && largest != kNone; ++b) {
          std::size_t smallest = kNone;
          for (ProcessorIndex p = 0; p < lib_.num_processors(); ++p) {
            if (!est_.can_place(t, b, v, p)) continue;
            const auto bytes = static_cast<std::size_t>(lib_.block_bytes(t, b, v, p));
            const std::size_t db = device_budgets.at(static_cast<std::size_t>(p));
            if (db == 0 || bytes <= db) smallest = std::min(smallest, bytes);
          }
          largest = std::max(largest, smallest);
        }
        floor = std::min(floor, largest);
      }
      check(floor != kNone && (budget == 0 || floor <= budget), ErrorCode::infeasible, "Engine: memory budget",
            (floor == kNone ? "task " + std::to_string(t) +
                                  " has no variant whose every block fits a processor's device budget (processor memory_budget_bytes)"
                            : std::to_string(budget) + " bytes is below the smallest runnable plan: task " + std::to_string(t) +
                                  " needs " + std::to_string(floor) +
                                  " bytes resident at once (the largest block of its lightest variant)"));
    }
  }

  // Records resident bytes now, and whether they are above the budget in force.
  // budget_mu_ makes a sample's bytes and the budget it is judged by one reading.
  void sample_memory(double now) {
    std::lock_guard lk(budget_mu_);
    const std::size_t bytes = lib_.resident_bytes();
    ledger_.metrics.memory(now, bytes);
    const std::size_t budget = budget_now_.load();
    if (budget > 0 && bytes > budget) over_budget_.store(true);
    // Per device, where the runner reports it: an independent check of the preloader's books.
    if constexpr (requires { lib_.resident_bytes(ProcessorIndex{}); }) {
      if (device_peak_.empty()) device_peak_.assign(device_budgets_.size(), 0);
      for (std::size_t p = 0; p < device_budgets_.size(); ++p) {
        const std::size_t on = lib_.resident_bytes(static_cast<ProcessorIndex>(p));
        device_peak_[p] = std::max(device_peak_[p], on);
        if (device_budgets_[p] > 0 && on > device_budgets_[p]) device_over_.store(true);
      }
    }
  }

  void set_budget_now(std::size_t bytes) {
    std::lock_guard lk(budget_mu_);
    budget_now_.store(bytes);
  }

  // --- planning ---------------------------------------------------------------------------
  std::shared_ptr<const Snapshot> current() const {
    std::lock_guard lk(snap_mu_);
    return snap_;
  }

  void replan(const std::string& reason) {
    std::lock_guard lk(planner_mu_);
    replan_locked(reason);
  }

  // Plans with the optimizer (around banned blocks; with `ready`, only stitches usable now).
  bool plan_with(const SystemState& st, Plan& plan, std::string& reason,
                 const std::function<bool(TaskIndex, const StitchedVariant&)>* ready = nullptr) {
    try {
      if constexpr (sparseloom::Optimizer<O, detail::MaskedEstimator<E>>) {
        if (!banned_.empty() || ready)
          plan = opt_.plan(st, detail::MaskedEstimator<E>{&est_, &banned_, ready});
        else
          plan = opt_.plan(st, est_);
      } else {
        plan = opt_.plan(st, est_);
      }
      return true;
    } catch (const std::exception& e) {
      reason += std::string("; optimizer failed, keeping the previous plan: ") + e.what();
      return false;
    }
  }

  void replan_locked(std::string reason) {
    SystemState st = state_;
    for (std::size_t p = 0; p < procs_.size(); ++p) st.processor_available[p] = procs_[p]->available.load();
    if (auto cur = current())  // what changing each task's plan would cost (the optimizer's call)
      for (const auto& tp : cur->plan.tasks) {
        st.current_stitch.push_back(tp.variant);
        st.current_placement.push_back(tp.placement);
      }
    Plan plan;
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = plan_with(st, plan, reason);
    const double decision_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!ok) {
      if (auto old = current()) plan = old->plan;
    }
    // A stitch whose repair is not computed yet (seconds of calibration on a new stitch) would
    // hold the plan back, and requests would keep running the old plan, below a raised accuracy
    // floor. So first adopt an interim plan of variants usable now (plain ones, stitches already
    // repaired), then compute the repairs and adopt the full plan.
    if constexpr (!kSim && requires(TaskIndex t, const StitchedVariant& s) { lib_.prepared(t, s); }) {
      std::function<bool(TaskIndex, const StitchedVariant&)> ready = [this](TaskIndex t, const StitchedVariant& s) {
        return s.choice.size() != static_cast<std::size_t>(lib_.num_blocks(t)) || lib_.prepared(t, s);
      };
      bool waiting = false;
      for (std::size_t t = 0; t < plan.tasks.size() && t < live_.size(); ++t)
        waiting = waiting || !ready(static_cast<TaskIndex>(t), plan.tasks[t].variant);
      if (ok && waiting && current()) {
        Plan interim;
        std::string why = reason + "; interim plan while new stitches are repaired";
        const auto i0 = std::chrono::steady_clock::now();
        if (plan_with(st, interim, why, &ready))
          adopt(std::move(interim), std::move(why),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - i0).count());
      }
    }
    adopt(std::move(plan), std::move(reason), decision_ms);
  }

  // Makes `plan` current: its stitch-time work done, its blocks preloaded, then swapped in.
  void adopt(Plan plan, std::string reason, double decision_ms) {
    const double decided = clock_.now_ms();
    plan.decision_ms = decision_ms;
    plan.version = ++version_;
    auto snap = std::make_shared<Snapshot>();
    for (TaskIndex t = 0; t < static_cast<TaskIndex>(live_.size()); ++t) {
      snap->routes.push_back(make_route(plan, t));
      auto& alts = snap->alts.emplace_back();
      if (static_cast<std::size_t>(t) < plan.tasks.size() && plan.tasks[static_cast<std::size_t>(t)].routing != Routing::planned)
        for (const auto& pl : plan.tasks[static_cast<std::size_t>(t)].alternatives)
          if (auto r = make_route(plan, t, &pl); r.valid && r.placement != snap->routes.back().placement) alts.push_back(std::move(r));
    }
    // Stitch-time work (e.g. the repairs of newly chosen stitches) is done before the plan is
    // adopted, here on the planner thread: requests keep running on the current plan meanwhile.
    if constexpr (requires(TaskIndex t, const StitchedVariant& s) { lib_.prepare(t, s); }) {
      // A new stitch's repair vectors (a few KB) count in resident memory. With a preloader
      // that admits them (Preloader::admit), room is made and they are counted with no load in
      // between; otherwise background loads are let finish first and the preloader evicts down
      // to the budget after.
      const auto admit = [this](std::size_t bytes, auto&& commit) { pre_.admit(lib_, bytes, commit); };
      constexpr bool admits = requires(TaskIndex t, const StitchedVariant& s, std::size_t n, const std::function<void()>& c) {
        pre_.admit(lib_, n, c);
        lib_.prepare(t, s, admit);
      };
      if constexpr (!admits && requires { pre_.wait_idle(); }) pre_.wait_idle();
      for (std::size_t t = 0; t < plan.tasks.size() && t < live_.size(); ++t) {
        if (plan.tasks[t].variant.choice.size() != static_cast<std::size_t>(lib_.num_blocks(static_cast<TaskIndex>(t)))) continue;
        try {
          if constexpr (admits) lib_.prepare(static_cast<TaskIndex>(t), plan.tasks[t].variant, admit);
          else lib_.prepare(static_cast<TaskIndex>(t), plan.tasks[t].variant);
        } catch (const std::exception& e) {
          reason += std::string("; preparing task ") + std::to_string(t) + ": " + e.what();
        }
      }
      const std::size_t budget = budget_now_.load();
      if (!admits && budget > 0 && lib_.resident_bytes() > budget) {
        if constexpr (requires { pre_.shrink_to_budget(lib_); }) pre_.shrink_to_budget(lib_);
      }
    }
    // The plan's block sizes, measured here, outside the memory policy's locks: a block never
    // compiled on its processor is compiled once to measure it (with the cpu backend's format
    // trial), and a policy asking for it under its lock would stall every request meanwhile.
    DecisionRecord rec;
    rec.decision_ms = decision_ms;
    rec.version = version_;
    for (std::size_t t = 0; t < plan.tasks.size() && t < live_.size(); ++t) {
      const auto& tp = plan.tasks[t];
      rec.stitch.emplace_back(tp.variant.choice.begin(), tp.variant.choice.end());
      rec.placement.emplace_back(tp.placement.processor.begin(), tp.placement.processor.end());
      for (std::size_t b = 0; b < std::min(tp.variant.choice.size(), tp.placement.processor.size()); ++b) {
        const auto tb = static_cast<TaskIndex>(t);
        const auto bb = static_cast<BlockIndex>(b);
        try {
          const double bytes = static_cast<double>(lib_.block_bytes(tb, bb, tp.variant.choice[b], tp.placement.processor[b]));
          if (!lib_.is_resident(tb, bb, tp.variant.choice[b], tp.placement.processor[b])) ++rec.new_blocks, rec.new_bytes += bytes;
        } catch (const std::exception&) {
          // A block that cannot be compiled fails (and is banned) when a request loads it.
        }
      }
    }
    try {
      pre_.on_plan(lib_, plan);
      // A memory policy that loads a slow plan before dropping the old one is waited for here;
      // requests keep running the current plan meanwhile instead of stalling on its loads.
      if constexpr (requires { pre_.before_adopt(lib_); }) pre_.before_adopt(lib_);
    } catch (const std::exception& e) {
      reason += std::string("; preloading: ") + e.what();  // acquire() loads (or fails) per block
    }
    snap->plan = std::move(plan);
    const double now = clock_.now_ms();
    sample_memory(now);  // both plans' blocks, where the policy loaded before breaking
    rec.t_ms = now;
    rec.adopt_wait_ms = now - decided;
    rec.reason = std::move(reason);
    ledger_.metrics.decision(std::move(rec));
    {
      std::lock_guard lk(snap_mu_);
      snap_ = std::move(snap);
    }
    if constexpr (requires { pre_.after_adopt(lib_); }) {
      bool dropped = false;
      try {
        dropped = pre_.after_adopt(lib_);
      } catch (const std::exception&) {
        // An unload does not fail; a policy that throws keeps the blocks until its next eviction.
      }
      if (dropped) sample_memory(clock_.now_ms());
    }
  }

  // Task t's route on its plan's placement, or on `alt` (one of its alternatives).
  Route make_route(const Plan& plan, TaskIndex t, const Placement* alt = nullptr) const {
    Route r;
    if (static_cast<std::size_t>(t) >= plan.tasks.size()) {
      r.reason = "the plan has no entry for this task";
      return r;
    }
    const auto& tp = plan.tasks[static_cast<std::size_t>(t)];
    const auto& placement = alt ? *alt : tp.placement;
    const auto nb = static_cast<std::size_t>(lib_.num_blocks(t));
    if (tp.variant.choice.size() != nb || placement.processor.size() != nb) {
      r.reason = tp.reason.empty() ? "the plan does not cover every block" : tp.reason;
      return r;
    }
    double sum = 0;
    for (std::size_t b = 0; b < nb; ++b) {
      const auto v = tp.variant.choice[b];
      const auto p = placement.processor[b];
      if (v < 0 || v >= lib_.num_variants(t) || p < 0 || static_cast<std::size_t>(p) >= procs_.size()) {
        r.reason = "the plan names a variant or processor out of range";
        return r;
      }
      if (banned_.contains({t, static_cast<BlockIndex>(b), v, p})) {
        r.reason = "the plan uses a block that failed to compile";
        return r;
      }
      r.block_ms.push_back(est_.block_latency_ms(t, static_cast<BlockIndex>(b), v, p));
      sum += r.block_ms.back();
    }
    r.variant = tp.variant;
    r.placement = placement;
    // Scale block times so they sum to the estimator's latency (transfers and repairs included).
    const double total = est_.latency_ms(t, r.variant, r.placement);
    if (sum > 0 && total > 0)
      for (auto& ms : r.block_ms) ms *= total / sum;
    r.accuracy_pct = est_.accuracy_pct(t, r.variant);
    r.valid = true;
    r.reason = tp.reason;
    return r;
  }

  bool route_usable(const Route& r) const {
    if (!r.valid) return false;
    for (auto p : r.placement.processor)
      if (!procs_[static_cast<std::size_t>(p)]->available.load()) return false;
    return true;
  }

  // What admission multiplies task t's predicted block times on p by: measured over predicted
  // time of t's own recent blocks there. Per task, because blocks of different sizes are not
  // slowed alike (a fixed per-block cost makes a 0.01 ms block 6x its profile and a 1 ms block
  // 1.05x): one processor-wide figure let a task of small blocks shut a task of large ones out.
  // Without 3 samples, or none for kStaleSpeedMs, the profile's speed: when admission rejects
  // all of a task's requests, no block of it runs to correct an estimate the processor has
  // since left behind, so the task is tried again rather than shut out for the rest of the run.
  static constexpr double kStaleSpeedMs = 1000;
  double speed(ProcessorIndex p, TaskIndex t) const {
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    std::lock_guard lk(pr.speed_mu);
    const auto& w = pr.task_speed[static_cast<std::size_t>(t)];
    if (w.n < 3 || clock_.now_ms() - w.at_ms > kStaleSpeedMs) return 1.0;
    return std::max(1.0, w.speed);
  }

  // Predicted service time of what is left of a job (on route r: its own by default), at
  // observed processor speeds.
  double remaining_ms(const Job& j) const { return remaining_ms(j, j.route()); }
  double remaining_ms(const Job& j, const Route& r) const {
    double ms = 0;
    for (std::size_t b = static_cast<std::size_t>(j.next); b < r.block_ms.size(); ++b)
      ms += r.block_ms[b] * speed(r.placement.processor[b], j.rec.task);
    return ms;
  }

  // Predicted time of the consecutive blocks a job runs on processor p from its next block.
  double work_here_ms(const Job& j, ProcessorIndex p) const {
    const auto& r = j.route();
    double ms = 0;
    for (std::size_t b = static_cast<std::size_t>(j.next); b < r.block_ms.size() && r.placement.processor[b] == p; ++b)
      ms += r.block_ms[b] * speed(p, j.rec.task);
    return ms;
  }

  // --- terminal states --------------------------------------------------------------------
  void reject_new(detail::RequestCtl& c, double now, std::string why) {
    RequestRecord r = c.rec;
    r.state = RequestState::rejected;
    r.finish_ms = now;
    r.reason = std::move(why);
    detail::finish(c, std::move(r));
  }

  void end(std::unique_ptr<Job> j, RequestState s, std::string why, std::vector<Tensor> outputs = {}) {
    j->rec.state = s;
    j->rec.finish_ms = clock_.now_ms();
    j->rec.reason = std::move(why);
    j->rec.plan_version = j->snap->plan.version;
    detail::finish(*j->ctl, std::move(j->rec), std::move(outputs));
  }

  void complete(std::unique_ptr<Job> j, double t_end) {
    const auto& r = j->route();
    const double floor = live_[static_cast<std::size_t>(j->rec.task)]->min_accuracy.load();
    j->rec.accuracy_pct = r.accuracy_pct;
    RequestState s = RequestState::on_time;
    std::string why;
    if (r.accuracy_pct < floor) {
      s = RequestState::below_accuracy;
      why = "served at " + std::to_string(r.accuracy_pct) + " % under a floor of " + std::to_string(floor) + " %";
    } else if (t_end > j->rec.deadline_ms) {
      s = RequestState::late;
      why = "finished " + std::to_string(t_end - j->rec.deadline_ms) + " ms after its deadline";
    }
    auto out = std::move(j->current);
    end(std::move(j), s, std::move(why), std::move(out));
  }

  // --- queues -----------------------------------------------------------------------------
  // Admits a new request on one of the routes its task's plan offers (TaskPlan::routing), in
  // route_order: first without shedding anything, then letting each route shed less critical
  // queued work; rejected with the first route's reason if none admits it.
  void admit(std::unique_ptr<Job> job, double now) {
    const auto order = route_order(*job, now);
    std::string why;
    for (const bool may_shed : {false, true}) {
      if (may_shed && !opts_.admission_control) break;
      for (std::size_t i = 0; i < order.size(); ++i) {
        job->alt = order[i];
        job->rec.alternative = order[i] != nullptr;
        std::string w;
        if (try_admit(job, now, may_shed, w)) return;
        if (i == 0) why = std::move(w);
      }
    }
    job->alt = order.front();
    job->rec.alternative = job->alt != nullptr;
    end(std::move(job), RequestState::rejected, "admission: " + why);
  }

  // The routes a new request may take, in the order admission tries them (nullptr: the plan's
  // own): planned, the plan's alone; overflow, the plan's, then the alternatives by predicted
  // finish; earliest_finish, all by predicted finish (ties keep the plan's first).
  std::vector<const Route*> route_order(const Job& j, double now) {
    const auto t = static_cast<std::size_t>(j.rec.task);
    const Snapshot& snap = *j.snap;
    std::vector<const Route*> order{nullptr};
    const Routing routing = t < snap.plan.tasks.size() ? snap.plan.tasks[t].routing : Routing::planned;
    if (routing == Routing::planned || snap.alts[t].empty()) return order;
    std::vector<std::pair<double, const Route*>> ranked;
    if (routing == Routing::earliest_finish) ranked.emplace_back(predicted_finish(j, snap.routes[t], now), nullptr);
    for (const Route& r : snap.alts[t])
      if (route_usable(r)) ranked.emplace_back(predicted_finish(j, r, now), &r);
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (routing == Routing::earliest_finish) order.clear();
    for (const auto& [f, r] : ranked) order.push_back(r);
    return order;
  }

  // When a new request on route r would finish: the wait on its first processor (EDF, as
  // admission counts it), or the backlog of another processor it uses if longer, plus its
  // service time at observed speeds.
  double predicted_finish(const Job& j, const Route& r, double now) {
    auto& pr = *procs_[static_cast<std::size_t>(r.placement.processor.front())];
    double wait = 0;
    {
      std::lock_guard lk(pr.mu);
      wait = wait_locked(pr, j.rec.deadline_ms, now);
    }
    return now + std::max(wait, others_backlog_ms(r)) + remaining_ms(j, r);
  }

  // The longest backlog among the processors route r uses after its first: a new request
  // waits behind those too.
  double others_backlog_ms(const Route& r) const {
    const ProcessorIndex p0 = r.placement.processor.front();
    double others = 0;
    for (auto q : r.placement.processor)
      if (q != p0) others = std::max(others, procs_[static_cast<std::size_t>(q)]->backlog_ms.load());
    return others;
  }

  // Admission of a new request on job->route(): pushed to its first processor if it can meet
  // its deadline there (with may_shed, also if shedding less critical queued work makes room),
  // the queue has room and it breaks no promise. True if admitted (job moved); else `why`.
  bool try_admit(std::unique_ptr<Job>& job, double now, bool may_shed, std::string& why) {
    const auto& r = job->route();
    const ProcessorIndex p0 = r.placement.processor.front();
    auto& pr = *procs_[static_cast<std::size_t>(p0)];
    const double service = remaining_ms(*job);
    const double others = others_backlog_ms(r);
    const double deadline = job->rec.deadline_ms;
    std::vector<std::unique_ptr<Job>> shed;
    bool admitted = false;
    {
      std::lock_guard lk(pr.mu);
      const double wait = wait_locked(pr, deadline, now);
      const auto fits = [&](double w, std::size_t queued) {
        const bool in_time = !opts_.admission_control || now + std::max(w, others) + service <= deadline;
        return in_time && queued < pr.spec.queue_capacity;
      };
      const bool promises = !opts_.admission_control || keeps_promises_locked(pr, *job, now);
      if (pr.stop) {
        why = "the engine is shut down";
      } else if (promises && (fits(wait, pr.heap.size()) ||
                              (may_shed && opts_.admission_control && shed_for(pr, *job, now, wait, service, others, shed)))) {
        push_locked(p0, std::move(job), now);
        admitted = true;
      } else {
        const bool full = pr.heap.size() >= pr.spec.queue_capacity;
        why = !promises ? "it would make an admitted request of equal or higher criticality on " + pr.spec.name + " late"
              : full    ? "queue of " + pr.spec.name + " is full"
                   : "predicted finish " + std::to_string(now + std::max(wait, others) + service - deadline) +
                         " ms after its deadline";
      }
    }
    if (admitted) kick(p0);
    for (auto& v : shed) end(std::move(v), RequestState::rejected, "shed: a more critical request needed " + pr.spec.name);
    return admitted;
  }

  // What a new request due at `deadline` waits on pr before its first block starts (pr.mu
  // held): with preemption between blocks, the block running now and the queued work due no
  // later than it (EDF order); without, the whole backlog, as a FIFO queue would have it.
  double wait_locked(const Proc& pr, double deadline, double now) const {
    if (!opts_.preempt_between_blocks) return pr.backlog_ms.load();
    double w = std::max(0.0, pr.running_until_ms.load() - now);
    for (const auto& e : pr.heap)
      if (e.deadline <= deadline) w += e.work_ms;
    return w;
  }

  // Whether admitting j ahead of the queued requests due after it (EDF) keeps each of those
  // at least as critical as j that would finish in time without j in time with it: admission
  // rejects nothing for a promise it then breaks. Less critical ones may be pushed late; those
  // not started yet are then rejected when dispatched (ready()). pr.mu held.
  bool keeps_promises_locked(const Proc& pr, const Job& j, double now) const {
    if (!opts_.preempt_between_blocks || pr.heap.empty()) return true;
    std::vector<const Entry*> es;
    es.reserve(pr.heap.size());
    for (const auto& e : pr.heap) es.push_back(&e);
    std::sort(es.begin(), es.end(), [](const Entry* a, const Entry* b) { return EntryLater{}(*b, *a); });
    const double d = j.rec.deadline_ms;
    const double delay = work_here_ms(j, j.route().placement.processor.front());
    double t = now + std::max(0.0, pr.running_until_ms.load() - now);
    bool behind = false;
    for (const Entry* e : es) {
      if (!behind && e->deadline > d) behind = true, t += delay;
      t += e->work_ms;
      if (!behind || !e->job || e->job->criticality < j.criticality) continue;
      const double finish = t + std::max(0.0, remaining_ms(*e->job) - e->work_ms);
      if (finish > e->deadline && finish - delay <= e->deadline) return false;
    }
    return true;
  }

  // Under overload: removes queued, not yet started requests less critical than j that it
  // waits behind (least critical first, then latest deadline) until j fits; removes none if
  // it cannot fit.
  bool shed_for(Proc& pr, const Job& j, double now, double wait, double service, double others,
                std::vector<std::unique_ptr<Job>>& shed) {
    std::vector<std::size_t> cand;
    for (std::size_t i = 0; i < pr.heap.size(); ++i) {
      const auto& e = pr.heap[i];
      const bool ahead = !opts_.preempt_between_blocks || e.deadline <= j.rec.deadline_ms;
      if (ahead && e.job && !e.job->started && e.job->next == 0 && e.job->criticality < j.criticality) cand.push_back(i);
    }
    std::sort(cand.begin(), cand.end(), [&](std::size_t a, std::size_t b) {
      const auto &ja = *pr.heap[a].job, &jb = *pr.heap[b].job;
      return ja.criticality < jb.criticality || (ja.criticality == jb.criticality && ja.rec.deadline_ms > jb.rec.deadline_ms);
    });
    double backlog = pr.backlog_ms.load();
    std::size_t queued = pr.heap.size(), k = 0;
    const auto fits = [&] {
      return now + std::max(wait, others) + service <= j.rec.deadline_ms && queued < pr.spec.queue_capacity;
    };
    while (!fits() && k < cand.size()) {
      backlog -= pr.heap[cand[k]].work_ms;
      wait -= pr.heap[cand[k]].work_ms;
      --queued;
      ++k;
    }
    if (!fits()) return false;
    cand.resize(k);
    std::sort(cand.begin(), cand.end());
    for (auto it = cand.rbegin(); it != cand.rend(); ++it) {
      shed.push_back(std::move(pr.heap[*it].job));
      pr.heap.erase(pr.heap.begin() + static_cast<std::ptrdiff_t>(*it));
    }
    std::make_heap(pr.heap.begin(), pr.heap.end(), EntryLater{});
    pr.backlog_ms.store(std::max(0.0, backlog));
    return true;
  }

  void push_locked(ProcessorIndex p, std::unique_ptr<Job> j, double now) {
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    Entry e;
    e.deadline = j->rec.deadline_ms;
    e.seq = seq_.fetch_add(1, std::memory_order_relaxed);
    e.work_ms = work_here_ms(*j, p);
    e.enqueued_ms = now;
    e.job = std::move(j);
    pr.backlog_ms.store(pr.backlog_ms.load() + e.work_ms);
    pr.heap.push_back(std::move(e));
    std::push_heap(pr.heap.begin(), pr.heap.end(), EntryLater{});
  }

  // Hands a running job to processor p's queue (no admission: it was admitted already, so it
  // never waits on a full queue and no cycle of full queues can deadlock).
  void hand_off(ProcessorIndex p, std::unique_ptr<Job> j) {
    {
      std::lock_guard lk(j->ctl->mu);
      j->ctl->running = false;  // while queued, cancel() finishes it at once
    }
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    {
      std::lock_guard lk(pr.mu);
      if (!pr.stop) {
        push_locked(p, std::move(j), clock_.now_ms());
      }
    }
    if (j) {
      end(std::move(j), RequestState::rejected, "the engine shut down before it finished");
      return;
    }
    kick(p);
  }

  void kick(ProcessorIndex p) {
    if constexpr (kSim) {
      Event ev;
      ev.kind = EventKind::dispatch;
      ev.t = clock_.now_ms();
      ev.p = p;
      push_event(std::move(ev));
    } else {
      procs_[static_cast<std::size_t>(p)]->cv.notify_one();
    }
  }

  // --- per-block steps, shared by both execution modes -------------------------------------
  // A job taken off a queue: false if it finished meanwhile (cancelled).
  bool begin(Job& j) {
    auto& c = *j.ctl;
    {
      std::lock_guard lk(c.mu);
      if (is_terminal(c.rec.state)) return false;
      if (!c.cancel_requested) {
        c.running = true;
        return true;
      }
    }
    RequestRecord r = j.rec;
    r.state = RequestState::cancelled;
    r.finish_ms = clock_.now_ms();
    r.reason = "cancelled by the caller while queued";
    detail::finish(c, std::move(r));
    return false;
  }

  bool cancel_requested(const Job& j) const {
    std::lock_guard lk(j.ctl->mu);
    return j.ctl->cancel_requested;
  }

  // Checks before a block runs on p. False if the job left (rerouted or finished).
  bool ready(ProcessorIndex p, std::unique_ptr<Job>& j, double now) {
    if (!procs_[static_cast<std::size_t>(p)]->available.load()) {
      reroute(std::move(j), "processor " + procs_[static_cast<std::size_t>(p)]->spec.name + " is unavailable", false);
      return false;
    }
    if (!j->started && opts_.admission_control && now + remaining_ms(*j) > j->rec.deadline_ms) {
      end(std::move(j), RequestState::rejected, "admission: cannot meet its deadline when dispatched");
      return false;
    }
    return true;
  }

  // Makes the next block resident (Preloader::acquire). False if the job left. `loaded` is
  // true when it waited for a cold load.
  bool acquire(ProcessorIndex p, std::unique_ptr<Job>& j, bool& loaded) {
    const auto t = j->rec.task;
    const auto b = j->next;
    const auto v = j->route().variant.choice[static_cast<std::size_t>(b)];
    try {
      loaded = pre_.acquire(lib_, t, b, v, p);
    } catch (const Error& e) {
      // A device failure bans the block on that processor; an unreadable file (missing,
      // corrupt, changed) bans it on every processor. Either way the request is rerouted. An
      // optimizer that cannot be masked avoids a failing processor, but a bad file is no
      // processor's fault: that request fails.
      const bool file = is_load_failure(e.code()) && e.code() != ErrorCode::device;
      constexpr bool maskable = sparseloom::Optimizer<O, detail::MaskedEstimator<E>>;
      if (e.code() == ErrorCode::device || (file && maskable)) {
        {
          std::lock_guard lk(planner_mu_);
          if constexpr (maskable) {
            for (ProcessorIndex q = 0; q < static_cast<ProcessorIndex>(procs_.size()); ++q)
              if (file || q == p) banned_.insert({t, b, v, q});
          } else {
            procs_[static_cast<std::size_t>(p)]->available.store(false);  // cannot mask: avoid the processor
          }
          replan_locked(std::string(file ? "block failed to load: " : "block failed to compile: ") + e.what());
        }
        reroute(std::move(j), e.what(), true);
      } else {
        end(std::move(j), RequestState::failed, e.what());
      }
      return false;
    } catch (const std::exception& e) {
      end(std::move(j), RequestState::failed, e.what());
      return false;
    }
    if (loaded) sample_memory(clock_.now_ms());
    return true;
  }

  // The job's block on p ended (ran, threw, or never started): unpin it; p runs nothing for
  // admission's wait to count until the next block starts.
  void release(ProcessorIndex p, const Job& j) {
    procs_[static_cast<std::size_t>(p)]->running_until_ms.store(0);
    const auto b = j.next;
    pre_.release(lib_, j.rec.task, b, j.route().variant.choice[static_cast<std::size_t>(b)], p);
  }

  // A block ran on p from t0 to t1; the processor was occupied with it for `occupied` ms (the
  // run plus the engine's own work around it, cold-load stalls excluded): that is what the
  // observed slow-down compares with the prediction, so admission sees the engine's cost too.
  // True if the job's next block runs on p right away.
  bool after_block(ProcessorIndex p, std::unique_ptr<Job>& j, std::vector<Tensor> out, double t0, double t1,
                   double occupied) {
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    pr.busy_ms.fetch_add(t1 - t0, std::memory_order_relaxed);
    pr.blocks.fetch_add(1, std::memory_order_relaxed);
    const double predicted = j->route().block_ms[static_cast<std::size_t>(j->next)];
    if (predicted > 0)
      record_speed(pr, j->rec.task, j->next, j->route().variant.choice[static_cast<std::size_t>(j->next)], occupied, predicted, t1);
    if (j->rec.start_ms < 0) j->rec.start_ms = t0;
    j->started = true;
    j->current = std::move(out);
    ++j->next;
    if (static_cast<std::size_t>(j->next) == j->route().block_ms.size()) {
      complete(std::move(j), t1);
      return false;
    }
    if (cancel_requested(*j)) {
      end(std::move(j), RequestState::cancelled, "cancelled by the caller between blocks");
      return false;
    }
    const auto np = j->route().placement.processor[static_cast<std::size_t>(j->next)];
    if (np == p && !(opts_.preempt_between_blocks && more_urgent_waiting(pr, j->rec.deadline_ms))) return true;
    hand_off(np, std::move(j));
    return false;
  }

  // A queued request on pr is due before `deadline` (EDF: the heap's top is the earliest).
  bool more_urgent_waiting(Proc& pr, double deadline) {
    std::lock_guard lk(pr.mu);
    return !pr.heap.empty() && pr.heap.front().deadline < deadline;
  }

  // A block run threw. A device error takes the processor out and re-plans; the request is
  // retried on the new plan if its deadline allows.
  void on_run_error(ProcessorIndex p, std::unique_ptr<Job> j, bool device, const std::string& what) {
    if (!device) {
      end(std::move(j), RequestState::failed, what);
      return;
    }
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    {
      std::lock_guard lk(planner_mu_);
      if (pr.available.exchange(false)) {
        pr.failures.fetch_add(1);
        replan_locked("processor " + pr.spec.name + " failed: " + what);
      }
    }
    reroute(std::move(j), what, true);
  }

  // Moves a job onto the current plan: continues where it was if the stitch is unchanged,
  // else starts over from its input. Ends it failed (after an error) or rejected when no
  // usable plan or no time is left.
  void reroute(std::unique_ptr<Job> j, const std::string& why, bool after_error) {
    std::shared_ptr<const Snapshot> snap;
    {
      std::lock_guard lk(planner_mu_);  // a re-plan in progress lands first
      snap = current();
    }
    const auto bad = after_error ? RequestState::failed : RequestState::rejected;
    if (after_error && ++j->rec.attempts > opts_.max_attempts) {
      end(std::move(j), bad, why + "; out of attempts");
      return;
    }
    const auto& r = snap->routes[static_cast<std::size_t>(j->rec.task)];
    if (!route_usable(r)) {
      end(std::move(j), bad, why + "; no usable plan for the task");
      return;
    }
    if (!(j->started && r.variant == j->route().variant)) {
      j->next = 0;
      j->current = j->input;
      j->started = false;
    }
    j->snap = std::move(snap);
    j->alt = nullptr;
    j->rec.alternative = false;
    if (clock_.now_ms() + remaining_ms(*j) > j->rec.deadline_ms) {
      end(std::move(j), bad, why + "; no time left to retry");
      return;
    }
    const auto np = j->route().placement.processor[static_cast<std::size_t>(j->next)];
    hand_off(np, std::move(j));
  }

  // --- threaded execution -----------------------------------------------------------------
  void worker_loop(ProcessorIndex p) {
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    for (;;) {
      Entry e;
      {
        std::unique_lock lk(pr.mu);
        pr.cv.wait(lk, [&] { return !pr.heap.empty() || pr.stop; });
        if (pr.stop) {
          auto rest = std::move(pr.heap);
          pr.heap.clear();
          pr.backlog_ms.store(0);
          lk.unlock();
          for (auto& x : rest)
            if (x.job) end(std::move(x.job), RequestState::rejected, "the engine shut down before it finished");
          return;
        }
        std::pop_heap(pr.heap.begin(), pr.heap.end(), EntryLater{});
        e = std::move(pr.heap.back());
        pr.heap.pop_back();
        pr.backlog_ms.store(std::max(0.0, pr.backlog_ms.load() - e.work_ms));
      }
      run_entry(p, std::move(e));
    }
  }

  void run_entry(ProcessorIndex p, Entry e) {
    const double waited = clock_.now_ms() - e.enqueued_ms;
    ledger_.metrics.handoff(waited);
    auto j = std::move(e.job);
    if (!begin(*j)) return;
    j->rec.queue_ms += waited;
    double mark = clock_.now_ms();  // when this processor started working on the job's block
    for (;;) {
      const double now = clock_.now_ms();
      if (!ready(p, j, now)) return;
      bool loaded = false;
      const double ta = clock_.now_ms();
      if (!acquire(p, j, loaded)) return;
      const double t0 = clock_.now_ms();
      const double stall = loaded ? t0 - ta : 0.0;
      j->rec.load_stall_ms += stall;
      mark_running(p, t0, *j);
      std::vector<Tensor> out;
      try {
        out = lib_.run(j->rec.task, j->route().variant, j->next, p, std::span<const Tensor>(j->current));
      } catch (const Error& err) {
        release(p, *j);
        on_run_error(p, std::move(j), err.code() == ErrorCode::device, err.what());
        return;
      } catch (const std::exception& err) {
        release(p, *j);
        on_run_error(p, std::move(j), false, err.what());
        return;
      }
      const double t1 = clock_.now_ms();
      release(p, *j);
      const double occupied = t1 - mark - stall;
      mark = t1;
      if (!after_block(p, j, std::move(out), t0, t1, occupied)) return;
    }
  }

  // Records the predicted end of j's next block on p, started at t0 (admission's wait).
  void mark_running(ProcessorIndex p, double t0, const Job& j) {
    procs_[static_cast<std::size_t>(p)]->running_until_ms.store(t0 + predicted_block_ms(p, j));
  }
  double predicted_block_ms(ProcessorIndex p, const Job& j) const {
    return j.route().block_ms[static_cast<std::size_t>(j.next)] * speed(p, j.rec.task);
  }

  void monitor_loop() {
    std::unique_lock lk(mon_mu_);
    while (!mon_stop_) {
      mon_cv_.wait_for(lk, std::chrono::duration<double, std::milli>(opts_.monitor_period_ms), [&] { return mon_stop_; });
      if (mon_stop_) break;
      lk.unlock();
      monitor_tick(clock_.now_ms());
      lk.lock();
    }
  }

  int speed_min_samples() const { return std::clamp(opts_.slowdown_min_samples, 1, 16); }

  // One block's measured and predicted time, for the processor (slow-down detection; its first
  // samples calibrate the baseline) and for the task (admission, speed() above).
  void record_speed(Proc& pr, TaskIndex t, BlockIndex b, VariantIndex v, double measured, double predicted, double now) {
    std::lock_guard lk(pr.speed_mu);
    if (++pr.runs[{t, b, v}] <= opts_.cold_runs_ignored) return;
    pr.task_speed[static_cast<std::size_t>(t)].add(measured, predicted, now, kStaleSpeedMs);
    pr.window.add(measured, predicted, now);
    pr.speed_samples.store(pr.window.n, std::memory_order_relaxed);
    if (pr.window.n < 3) return;
    pr.speed.store(pr.window.speed, std::memory_order_relaxed);
    if (pr.window.n == speed_min_samples())
      pr.baseline.store(std::clamp(pr.window.speed, 1.0, std::max(1.0, opts_.slowdown_baseline_cap)));
  }

  // Re-plans on a measured change: arrival rates off the planned ones, a processor slowed down.
  void monitor_tick(double now) {
    sample_memory(now);  // background preloads and evictions too
    check_slowdowns(now);
    check_rates(now);
  }

  // A processor is slow when its speed over its calibrated baseline exceeds slowdown_ratio x
  // that of the least slowed other calibrated processor (1 when there is none).
  void check_slowdowns(double now) {
    const int need = speed_min_samples();
    slow_since_.resize(procs_.size(), -1);
    auto slowness = [&](const Proc& pr) {
      const double base = pr.baseline.load();
      return base > 0 && pr.available.load() && pr.speed_samples.load() >= need ? pr.speed.load() / base : -1.0;
    };
    for (std::size_t p = 0; p < procs_.size(); ++p) {
      auto& pr = *procs_[p];
      // After calibration, a full window of new samples before judging.
      if (pr.slow_flagged.load() || pr.speed_samples.load() < need + 16) continue;
      const double s = slowness(pr);
      if (s < 0) continue;
      double least = INFINITY;
      for (std::size_t q = 0; q < procs_.size(); ++q)
        if (q != p) {
          const double sq = slowness(*procs_[q]);
          if (sq >= 0) least = std::min(least, sq);
        }
      const double ref = std::isfinite(least) ? std::max(1.0, least) : 1.0;
      if (s <= opts_.slowdown_ratio * ref) {
        slow_since_[p] = -1;
        continue;
      }
      if (slow_since_[p] < 0) slow_since_[p] = now;
      if (now - slow_since_[p] < opts_.slowdown_confirm_ms) continue;
      pr.slow_flagged.store(true);
      std::lock_guard lk(planner_mu_);
      state_.processor_speed[p] = s / ref;
      replan_locked("processor " + pr.spec.name + " slowed down " + std::to_string(s / ref) + "x (speed " +
                    std::to_string(pr.speed.load()) + "x the profile, calibrated " + std::to_string(pr.baseline.load()) + "x)");
    }
  }

  // Each task's rate over a full window of its own load; a re-plan when it is off the planned
  // rate by rate_change_ratio and rate_change_z Poisson std devs, on every check for
  // rate_confirm_ms (hysteresis). Every new plan restarts the windows (warm-up).
  void check_rates(double now) {
    const std::uint64_t version = plan_version();
    std::vector<std::uint64_t> counts;
    for (const auto& lv : live_) counts.push_back(lv->arrivals.load(std::memory_order_relaxed));
    if (version != rate_plan_version_ || rate_track_.size() != counts.size()) {
      rate_plan_version_ = version;
      rate_hist_.clear();
      rate_track_.assign(counts.size(), RateTrack{});
      for (std::size_t t = 0; t < counts.size(); ++t) rate_track_[t] = {now, counts[t], true, -1};
    }
    rate_hist_.push_back({now, counts});
    // Keep the latest sample at or before now - window as the front.
    while (rate_hist_.size() > 2 && now - rate_hist_[1].t >= opts_.rate_window_ms) rate_hist_.pop_front();
    const double confirm = opts_.rate_confirm_ms >= 0 ? opts_.rate_confirm_ms : opts_.rate_window_ms / 2;
    std::vector<double> changed(counts.size(), -1);
    bool any = false;
    {
      std::lock_guard lk(planner_mu_);
      for (std::size_t t = 0; t < counts.size(); ++t) {
        auto& tr = rate_track_[t];
        if (tr.waiting) {  // no arrival since the window restarted: load has not started
          if (counts[t] == tr.n0) {
            tr.t0 = now;
            continue;
          }
          tr.waiting = false;
        }
        const auto& old = rate_hist_.front();
        const double t_from = old.t >= tr.t0 ? old.t : tr.t0;
        const double n = static_cast<double>(counts[t] - (old.t >= tr.t0 ? old.counts[t] : tr.n0));
        const double span = now - t_from;
        if (span < opts_.rate_window_ms) continue;  // warming up
        const double planned = state_.slos[t].rate_rps;
        const double expect = planned * span / 1000.0, dev = std::abs(n - expect);
        const bool enough = n >= opts_.rate_min_arrivals || expect >= opts_.rate_min_arrivals;
        if (!(enough && dev > opts_.rate_change_ratio * std::max(expect, 1e-9) &&
              dev > opts_.rate_change_z * std::sqrt(std::max(expect, 1.0)))) {
          tr.off_since = -1;
          continue;
        }
        if (tr.off_since < 0) tr.off_since = now;
        if (now - tr.off_since < confirm) continue;
        changed[t] = n * 1000.0 / span;
        any = true;
      }
      if (!any) return;
      std::string why;
      for (std::size_t t = 0; t < counts.size(); ++t) {
        if (changed[t] < 0) continue;
        why += (why.empty() ? "" : ", ") + ledger_task_names_[t] + " " + std::to_string(state_.slos[t].rate_rps) + " -> " +
               std::to_string(changed[t]) + " rps";
        state_.slos[t].rate_rps = changed[t];
      }
      replan_locked("arrival rate changed: " + why);
    }
  }

  void shutdown() {
    closed_.store(true);
    if constexpr (!kSim) {
      {
        std::lock_guard lk(mon_mu_);
        mon_stop_ = true;
      }
      mon_cv_.notify_all();
      if (monitor_.joinable()) monitor_.join();
      for (auto& pr : procs_) {
        {
          std::lock_guard lk(pr->mu);
          pr->stop = true;
        }
        pr->cv.notify_all();
      }
      for (auto& pr : procs_)
        for (auto& w : pr->workers) w.join();
      // Every request has finished by now; a caller's cancel() may still be leaving the ledger.
      ledger_.wait_idle(std::chrono::seconds(10));
    } else {
      for (auto& pr : procs_) {
        pr->stop = true;
        for (auto& x : pr->heap)
          if (x.job) end(std::move(x.job), RequestState::rejected, "the engine shut down before it finished");
        pr->heap.clear();
      }
      for (auto& ev : events_)
        if (ev.job) end(std::move(ev.job), RequestState::rejected, "the engine shut down before it finished");
      events_.clear();
    }
  }

  // --- discrete-event execution ----------------------------------------------------------
  void push_event(Event ev) {
    ev.seq = seq_.fetch_add(1, std::memory_order_relaxed);
    if (ev.kind != EventKind::monitor) ++busy_events_;
    events_.push_back(std::move(ev));
    std::push_heap(events_.begin(), events_.end(), EventLater{});
  }

  void schedule_monitor() {
    Event ev;
    ev.kind = EventKind::monitor;
    ev.t = clock_.now_ms() + opts_.monitor_period_ms;
    push_event(std::move(ev));
  }

  void step() {
    std::pop_heap(events_.begin(), events_.end(), EventLater{});
    Event ev = std::move(events_.back());
    events_.pop_back();
    if (ev.kind != EventKind::monitor) --busy_events_;
    clock_.advance_to(ev.t);
    switch (ev.kind) {
      case EventKind::arrival: submit(ev.task); break;
      case EventKind::monitor:
        monitor_tick(clock_.now_ms());
        schedule_monitor();
        break;
      case EventKind::dispatch: sim_dispatch(ev.p); break;
      case EventKind::loaded: procs_[static_cast<std::size_t>(ev.p)]->running_until_ms.store(ev.t_start); break;
      case EventKind::block_end: {
        auto& pr = *procs_[static_cast<std::size_t>(ev.p)];
        release(ev.p, *ev.job);
        ++pr.idle_slots;
        if (after_block(ev.p, ev.job, std::move(ev.job->current), ev.t_start, clock_.now_ms(),
                        clock_.now_ms() - ev.t_start))
          sim_start(ev.p, std::move(ev.job));
        sim_dispatch(ev.p);
        break;
      }
    }
    sim_queue_loads();
  }

  // Loads that happened outside a request's acquire (a re-plan's blocks, prefetches) go on the
  // load channel as ahead loads: no request waits for them, but demand loads queue behind the
  // one in progress.
  void sim_queue_loads() {
    if constexpr (kPricedLoads) {
      const auto c = lib_.take_loads();
      sim_loads_.ahead(clock_.now_ms(), c.total_ms(opts_.sim_load_ms_per_mib), c.blocks);
    }
  }

  void sim_dispatch(ProcessorIndex p) {
    auto& pr = *procs_[static_cast<std::size_t>(p)];
    while (pr.idle_slots > 0 && !pr.heap.empty()) {
      std::pop_heap(pr.heap.begin(), pr.heap.end(), EntryLater{});
      Entry e = std::move(pr.heap.back());
      pr.heap.pop_back();
      pr.backlog_ms.store(std::max(0.0, pr.backlog_ms.load() - e.work_ms));
      const double waited = clock_.now_ms() - e.enqueued_ms;
      ledger_.metrics.handoff(waited);
      auto j = std::move(e.job);
      if (!begin(*j)) continue;
      j->rec.queue_ms += waited;
      sim_start(p, std::move(j));
    }
  }

  // Starts the job's next block on p in simulated time (takes a slot until its block_end).
  void sim_start(ProcessorIndex p, std::unique_ptr<Job> j) {
    const double now = clock_.now_ms();
    if (!ready(p, j, now)) return;
    bool loaded = false;
    // A runner that models its loads reports every block loaded while this one was acquired (a
    // memory policy may load more than the block asked for); the request waits for them on the
    // load channel (SimLoadChannel).
    sim_queue_loads();
    if (!acquire(p, j, loaded)) return;
    double stall = 0;
    if (loaded) {
      if constexpr (kPricedLoads) {
        stall = sim_loads_.demand(now, lib_.take_loads().total_ms(opts_.sim_load_ms_per_mib));
      } else {
        const auto b = j->next;
        const auto v = j->route().variant.choice[static_cast<std::size_t>(b)];
        stall = sim_loads_.demand(now, static_cast<double>(lib_.block_bytes(j->rec.task, b, v, p)) / (1024.0 * 1024.0) *
                                           opts_.sim_load_ms_per_mib);
      }
      j->rec.load_stall_ms += stall;
    }
    double ms = 0;
    try {
      // A runner that models the engine's own overhead needs the simulated start time.
      if constexpr (requires { lib_.simulate(j->rec.task, j->route().variant, j->next, p, now); })
        ms = lib_.simulate(j->rec.task, j->route().variant, j->next, p, now + stall);
      else if constexpr (ModelledBlockRunner<L>)
        ms = lib_.simulate(j->rec.task, j->route().variant, j->next, p);
      else
        ms = j->route().block_ms[static_cast<std::size_t>(j->next)];
    } catch (const Error& err) {
      release(p, *j);
      on_run_error(p, std::move(j), err.code() == ErrorCode::device, err.what());
      return;
    } catch (const std::exception& err) {
      release(p, *j);
      on_run_error(p, std::move(j), false, err.what());
      return;
    }
    --procs_[static_cast<std::size_t>(p)]->idle_slots;
    // Admission's view of the running block is the threaded engine's: nothing while the block
    // loads (release() cleared it), then its predicted time from the load's end (mark_running).
    if (stall > 0) {
      Event le;
      le.kind = EventKind::loaded;
      le.p = p;
      le.t = now + stall;
      le.t_start = now + stall + predicted_block_ms(p, *j);
      push_event(std::move(le));
    } else {
      mark_running(p, now, *j);
    }
    Event ev;
    ev.kind = EventKind::block_end;
    ev.p = p;
    ev.t_start = now + stall;
    ev.t = now + stall + ms;
    ev.job = std::move(j);
    push_event(std::move(ev));
  }

  // ---------------------------------------------------------------------------------------
  L& lib_;
  const E& est_;
  O opt_;
  P pre_;
  EngineOptions opts_;
  ClockT clock_;
  std::vector<std::string> ledger_task_names_;
  detail::Ledger ledger_;
  std::vector<std::unique_ptr<Proc>> procs_;
  std::vector<std::unique_ptr<TaskLive>> live_;

  std::mutex planner_mu_;  // state_, opt_, version_, banned_; serialises re-plans
  std::atomic<std::size_t> budget_now_{0};  // memory budget in force (set_memory_budget)
  std::vector<std::size_t> device_budgets_;   // per processor (ProcessorSpec::memory_budget_bytes)
  std::vector<std::size_t> device_peak_;      // per processor, most block bytes sampled there (budget_mu_)
  std::atomic<bool> device_over_{false};      // a sample above a device budget
  std::atomic<bool> budget_changed_{false}, over_budget_{false};
  mutable std::mutex budget_mu_;  // a leaf lock: memory samples vs budget changes
  SystemState state_;
  std::uint64_t version_ = 0;
  std::set<detail::BlockKey> banned_;

  mutable std::mutex snap_mu_;
  std::shared_ptr<const Snapshot> snap_;

  std::atomic<bool> closed_{false};
  std::atomic<std::uint64_t> next_id_{0}, seq_{0};

  std::thread monitor_;
  std::mutex mon_mu_;
  std::condition_variable mon_cv_;
  bool mon_stop_ = false;
  struct RateSample {
    double t;
    std::vector<std::uint64_t> counts;
  };
  std::deque<RateSample> rate_hist_;  // monitor thread only (and the rate state below)
  struct RateTrack {
    double t0 = 0;            // the task's window starts no earlier than this sample ...
    std::uint64_t n0 = 0;     // ... whose arrival count this is
    bool waiting = true;      // no arrival yet since the window restarted
    double off_since = -1;    // the rate has been off the plan on every check since then
  };
  std::vector<RateTrack> rate_track_;
  std::vector<double> slow_since_;  // per processor: judged slow on every check since then (-1: not)
  std::uint64_t rate_plan_version_ = 0;

  std::vector<Event> events_;  // discrete-event mode: a heap
  SimLoadChannel sim_loads_;       // discrete-event mode: block loads, serialised as for real
  bool sim_scheduled_ = false;     // discrete-event mode: arrivals were scheduled once
  std::size_t busy_events_ = 0;
};

}  // namespace sparseloom::runtime
