#pragma once
// Request end states and the engine's metrics. Every request ends in exactly one terminal
// state, recorded once on its own completion path (MetricsCollector::record); the counts per
// state are summed from those records, never derived from the issued counter.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sparseloom/core/types.hpp"

namespace sparseloom::runtime {

enum class RequestState : std::uint8_t {
  pending,         // not finished yet (the only non-terminal state)
  on_time,         // served by its deadline by a variant meeting the accuracy floor
  late,            // served after its deadline
  below_accuracy,  // served by a variant predicted below the task's floor at that time
  rejected,        // admission control (cannot make its deadline, shed, queue full, shut down)
  failed,          // an error (device failure with no time left to retry, memory budget, ...)
  cancelled,       // by the caller; leaves the violation-rate denominator
};
inline constexpr std::size_t kNumEndStates = 6;
inline constexpr std::array<RequestState, kNumEndStates> kEndStates = {
    RequestState::on_time, RequestState::late,   RequestState::below_accuracy,
    RequestState::rejected, RequestState::failed, RequestState::cancelled};

constexpr std::string_view to_string(RequestState s) noexcept {
  switch (s) {
    case RequestState::pending: return "pending";
    case RequestState::on_time: return "on_time";
    case RequestState::late: return "late";
    case RequestState::below_accuracy: return "below_accuracy";
    case RequestState::rejected: return "rejected";
    case RequestState::failed: return "failed";
    case RequestState::cancelled: return "cancelled";
  }
  return "unknown";
}
constexpr bool is_terminal(RequestState s) noexcept { return s != RequestState::pending; }
constexpr bool is_violation(RequestState s) noexcept {
  return s == RequestState::late || s == RequestState::below_accuracy || s == RequestState::rejected ||
         s == RequestState::failed;
}
// Served = ran to completion (whether in SLO or not).
constexpr bool is_served(RequestState s) noexcept {
  return s == RequestState::on_time || s == RequestState::late || s == RequestState::below_accuracy;
}
constexpr std::size_t state_slot(RequestState s) noexcept { return static_cast<std::size_t>(s) - 1; }

struct RequestRecord {
  std::uint64_t id = 0;
  TaskIndex task = 0;
  RequestState state = RequestState::pending;
  double arrival_ms = 0;
  double deadline_ms = 0;   // absolute, engine time
  double start_ms = -1;     // first block started; -1 if it never ran
  double finish_ms = 0;     // when the terminal state was recorded
  double load_stall_ms = 0; // waiting for cold block loads, inside its latency
  double queue_ms = 0;      // waiting in processor queues (with idle queues: the handoff latency)
  int attempts = 1;         // > 1 when retried on a new plan after a device failure
  bool alternative = false; // admitted on one of its plan's alternative placements (TaskPlan::routing)
  std::uint64_t plan_version = 0;
  double accuracy_pct = 0;  // predicted accuracy of the stitch that served it
  std::string reason;       // why it was rejected / failed / late
  double latency_ms() const noexcept { return finish_ms - arrival_ms; }
};

struct TaskMetrics {
  std::string name;
  std::uint64_t issued = 0;
  std::uint64_t accounted = 0;  // sum over end states, from the records
  std::array<std::uint64_t, kNumEndStates> by_state{};
  std::uint64_t count(RequestState s) const noexcept { return by_state[state_slot(s)]; }
  std::uint64_t violations = 0;
  double slo_violation_rate = 0;  // violations / (accounted - cancelled)
  double satisfactory_rate = 0;   // Band's: on_time / (accounted - cancelled - rejected)
  double served_rps = 0;          // completed (on_time + late + below_accuracy) per second
  double goodput_rps = 0;         // on_time per second
  double p50_ms = 0, p99_ms = 0, mean_ms = 0, max_ms = 0;  // latency of served requests
  std::uint64_t load_stalls = 0;  // served requests that waited for a cold load
  double load_stall_ms = 0;       // total
  std::uint64_t load_violations = 0;  // late requests that would have met their deadline without the stall
  std::uint64_t retries = 0;      // requests that ran on a second plan
  std::uint64_t alternative_routes = 0;  // requests admitted on an alternative placement of their plan
};

struct ProcessorMetrics {
  std::string name;
  std::string kind;
  int workers = 1;
  double busy_ms = 0;
  double utilisation = 0;  // busy / (wall x workers)
  std::uint64_t blocks = 0;
  std::uint64_t failures = 0;
  bool available = true;
  double observed_slowdown = 1;  // measured / predicted block time (EMA)
  std::size_t memory_budget_bytes = 0;  // its device budget (0 = none)
  std::size_t peak_resident_bytes = 0;  // most block bytes seen on it (where the runner reports it)
};

struct MemorySample {
  double t_ms = 0;
  std::size_t bytes = 0;
};

// SLO outcomes over time: requests by the bucket their end state was recorded in (cancelled
// ones left out, as in the violation rate), for "violations over time" plots.
struct SloTimeline {
  static constexpr double kBucketMs = 250;
  static constexpr std::size_t kMaxBuckets = 1 << 16;  // 4.5 h of 250 ms buckets; later ones land in the last
  std::vector<std::uint64_t> accounted, violations;
};

struct DecisionRecord {
  double t_ms = 0;  // when the plan became current
  double decision_ms = 0;
  std::uint64_t version = 0;
  std::string reason;
  // From the decision to the plan becoming current: stitch-time repairs and, where the memory
  // policy loads before breaking, the new blocks' loads (the old plan runs meanwhile).
  double adopt_wait_ms = 0;
  int new_blocks = 0;         // blocks of the plan not resident when it was decided
  double new_bytes = 0;       // their packed bytes
  std::vector<std::vector<int>> stitch, placement;  // per task: variant and processor per block
};

struct EngineMetrics {
  // The first violations of the run as recorded (state, reason, times), up to
  // MetricsCollector::kMaxViolationRecords: what a violation rate alone cannot say (when, which
  // task, admission or late).
  std::vector<RequestRecord> first_violations;
  double wall_ms = 0;
  std::vector<TaskMetrics> tasks;
  TaskMetrics overall;
  std::vector<ProcessorMetrics> processors;
  std::vector<MemorySample> memory;  // resident bytes, sampled on every load/unload
  SloTimeline slo_timeline;
  std::size_t peak_resident_bytes = 0;
  double mean_resident_bytes = 0;       // time-weighted over the samples, to the end of the run
  std::size_t memory_budget_bytes = 0;  // 0 = none
  bool budget_exceeded = false;         // a sample above a non-zero budget
  std::vector<DecisionRecord> decisions;
  double decision_ms_mean = 0, decision_ms_max = 0;
  // Queue handoff: enqueue -> a worker starts it, over every queued block run.
  double handoff_ms_mean = 0;
  std::uint64_t handoff_samples = 0;
};

namespace detail {
inline double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  // Nearest rank.
  const auto k = static_cast<std::size_t>(std::clamp(q * static_cast<double>(v.size()) - 1e-9, 0.0,
                                                     static_cast<double>(v.size() - 1)));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}
}  // namespace detail

// Thread-safe sink of records; summarize() turns them into EngineMetrics.
class MetricsCollector {
 public:
  static constexpr std::size_t kMaxMemorySamples = 1 << 16;
  static constexpr std::size_t kMaxViolationRecords = 64;

  explicit MetricsCollector(std::vector<std::string> task_names) : tasks_(task_names.size()) {
    for (std::size_t i = 0; i < tasks_.size(); ++i) tasks_[i].m.name = std::move(task_names[i]);
  }

  void issue(TaskIndex t) {
    std::lock_guard lk(mu_);
    ++tasks_.at(static_cast<std::size_t>(t)).m.issued;
  }

  void record(const RequestRecord& r) {
    std::lock_guard lk(mu_);
    auto& t = tasks_.at(static_cast<std::size_t>(r.task));
    ++t.m.by_state[state_slot(r.state)];
    ++t.m.accounted;
    if (r.attempts > 1) ++t.m.retries;
    if (r.alternative) ++t.m.alternative_routes;
    if (r.state != RequestState::cancelled) {
      const auto b = static_cast<std::size_t>(std::clamp(r.finish_ms / SloTimeline::kBucketMs, 0.0,
                                                         static_cast<double>(SloTimeline::kMaxBuckets - 1)));
      if (timeline_.accounted.size() <= b) {
        timeline_.accounted.resize(b + 1, 0);
        timeline_.violations.resize(b + 1, 0);
      }
      ++timeline_.accounted[b];
      timeline_.violations[b] += is_violation(r.state);
      if (is_violation(r.state) && first_violations_.size() < kMaxViolationRecords) first_violations_.push_back(r);
    }
    if (is_served(r.state)) {
      t.latencies.push_back(r.latency_ms());
      if (r.load_stall_ms > 0) {
        ++t.m.load_stalls;
        t.m.load_stall_ms += r.load_stall_ms;
        if (r.state == RequestState::late && r.latency_ms() - r.load_stall_ms <= r.deadline_ms - r.arrival_ms)
          ++t.m.load_violations;
      }
    }
  }

  void decision(DecisionRecord d) {
    std::lock_guard lk(mu_);
    decisions_.push_back(std::move(d));
  }

  void memory(double t_ms, std::size_t bytes) {
    std::lock_guard lk(mu_);
    peak_ = std::max(peak_, bytes);
    if (!memory_.empty() && memory_.back().bytes == bytes) return;
    if (memory_.size() < kMaxMemorySamples) memory_.push_back({t_ms, bytes});
  }

  void handoff(double ms) {
    std::lock_guard lk(mu_);
    handoff_sum_ += ms;
    ++handoff_n_;
  }

  std::size_t peak_resident_bytes() const {
    std::lock_guard lk(mu_);
    return peak_;
  }

  EngineMetrics summarize(double wall_ms, std::vector<ProcessorMetrics> processors,
                          std::size_t budget_bytes) const {
    std::lock_guard lk(mu_);
    EngineMetrics out;
    out.wall_ms = wall_ms;
    const double wall_s = std::max(wall_ms, 1e-9) / 1000.0;
    std::vector<double> all;
    out.overall.name = "overall";
    for (const auto& t : tasks_) {
      auto m = t.m;
      auto lat = t.latencies;
      all.insert(all.end(), lat.begin(), lat.end());
      finish(m, lat, wall_s);
      out.tasks.push_back(m);
      out.overall.issued += m.issued;
      out.overall.accounted += m.accounted;
      for (std::size_t i = 0; i < kNumEndStates; ++i) out.overall.by_state[i] += m.by_state[i];
      out.overall.load_stalls += m.load_stalls;
      out.overall.load_stall_ms += m.load_stall_ms;
      out.overall.load_violations += m.load_violations;
      out.overall.retries += m.retries;
      out.overall.alternative_routes += m.alternative_routes;
    }
    finish(out.overall, all, wall_s);
    for (auto& p : processors)
      p.utilisation = std::min(1.0, p.busy_ms / (std::max(wall_ms, 1e-9) * std::max(p.workers, 1)));
    out.processors = std::move(processors);
    out.memory = memory_;
    out.slo_timeline = timeline_;
    out.first_violations = first_violations_;
    out.peak_resident_bytes = peak_;
    out.memory_budget_bytes = budget_bytes;
    out.budget_exceeded = budget_bytes > 0 && peak_ > budget_bytes;
    if (!memory_.empty()) {
      // Resident bytes are a step function between samples.
      double area = 0;
      const double t0 = memory_.front().t_ms, t1 = std::max(wall_ms, memory_.back().t_ms);
      for (std::size_t i = 0; i < memory_.size(); ++i) {
        const double until = i + 1 < memory_.size() ? memory_[i + 1].t_ms : t1;
        area += static_cast<double>(memory_[i].bytes) * (until - memory_[i].t_ms);
      }
      out.mean_resident_bytes = t1 > t0 ? area / (t1 - t0) : static_cast<double>(memory_.back().bytes);
    }
    out.decisions = decisions_;
    for (const auto& d : decisions_) {
      out.decision_ms_mean += d.decision_ms;
      out.decision_ms_max = std::max(out.decision_ms_max, d.decision_ms);
    }
    if (!decisions_.empty()) out.decision_ms_mean /= static_cast<double>(decisions_.size());
    out.handoff_samples = handoff_n_;
    out.handoff_ms_mean = handoff_n_ ? handoff_sum_ / static_cast<double>(handoff_n_) : 0;
    return out;
  }

 private:
  static void finish(TaskMetrics& m, std::vector<double>& lat, double wall_s) {
    const auto c = [&](RequestState s) { return m.count(s); };
    m.violations = c(RequestState::late) + c(RequestState::below_accuracy) + c(RequestState::rejected) +
                   c(RequestState::failed);
    const auto denom = m.accounted - c(RequestState::cancelled);
    m.slo_violation_rate = denom ? static_cast<double>(m.violations) / static_cast<double>(denom) : 0;
    const auto band_denom = denom - c(RequestState::rejected);
    m.satisfactory_rate = band_denom ? static_cast<double>(c(RequestState::on_time)) / static_cast<double>(band_denom) : 0;
    const auto served = c(RequestState::on_time) + c(RequestState::late) + c(RequestState::below_accuracy);
    m.served_rps = static_cast<double>(served) / wall_s;
    m.goodput_rps = static_cast<double>(c(RequestState::on_time)) / wall_s;
    if (!lat.empty()) {
      double sum = 0;
      for (double x : lat) sum += x;
      m.mean_ms = sum / static_cast<double>(lat.size());
      m.max_ms = *std::max_element(lat.begin(), lat.end());
      m.p50_ms = detail::percentile(lat, 0.50);
      m.p99_ms = detail::percentile(lat, 0.99);
    }
  }

  struct PerTask {
    TaskMetrics m;
    std::vector<double> latencies;
  };
  mutable std::mutex mu_;
  std::vector<PerTask> tasks_;
  std::vector<DecisionRecord> decisions_;
  std::vector<MemorySample> memory_;
  SloTimeline timeline_;
  std::vector<RequestRecord> first_violations_;
  std::size_t peak_ = 0;
  double handoff_sum_ = 0;
  std::uint64_t handoff_n_ = 0;
};

}  // namespace sparseloom::runtime
