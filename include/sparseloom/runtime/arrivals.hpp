#pragma once
// Request arrival processes (Poisson, bursty on/off, trace file) and a load generator that
// submits them. Every process is seeded and deterministic on every platform (own exponential
// sampling from mt19937_64 bits, no std:: distribution whose output varies by library).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"

namespace sparseloom::runtime {

struct Arrival {
  double time_ms = 0;  // from the start of the run
  TaskIndex task = 0;
  bool operator==(const Arrival&) const = default;
};

namespace detail {
inline double uniform01(std::mt19937_64& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }
inline double exponential_ms(std::mt19937_64& g, double rate_rps) {
  return -std::log1p(-uniform01(g)) * 1000.0 / rate_rps;
}
}  // namespace detail

// Exponential inter-arrival times at rate_rps.
class PoissonArrivals {
 public:
  PoissonArrivals(double rate_rps, std::uint64_t seed) : rate_(rate_rps), g_(seed) {
    check(rate_rps > 0, ErrorCode::invalid_argument, "PoissonArrivals", "rate must be > 0");
  }
  double next_gap_ms() { return detail::exponential_ms(g_, rate_); }

 private:
  double rate_;
  std::mt19937_64 g_;
};

// On/off modulated Poisson (a Markov-modulated process): exponential on and off periods with
// the given means, Poisson at on_rps while on and off_rps (may be 0) while off.
class BurstyArrivals {
 public:
  BurstyArrivals(double on_rps, double off_rps, double mean_on_ms, double mean_off_ms, std::uint64_t seed)
      : on_rps_(on_rps), off_rps_(off_rps), mean_on_(mean_on_ms), mean_off_(mean_off_ms), g_(seed) {
    check(on_rps > 0 && off_rps >= 0 && mean_on_ms > 0 && mean_off_ms > 0, ErrorCode::invalid_argument,
          "BurstyArrivals", "need on_rps > 0, off_rps >= 0 and positive period means");
    phase_end_ = detail::exponential_ms(g_, 1000.0 / mean_on_);
  }
  // Mean rate over a long run.
  double mean_rps() const { return (on_rps_ * mean_on_ + off_rps_ * mean_off_) / (mean_on_ + mean_off_); }

  double next_gap_ms() {
    const double start = t_;
    for (;;) {
      const double rate = on_ ? on_rps_ : off_rps_;
      const double cand = rate > 0 ? t_ + detail::exponential_ms(g_, rate) : phase_end_ + 1;
      if (cand <= phase_end_) {
        t_ = cand;
        return t_ - start;
      }
      // Memoryless: restart the draw at the phase boundary.
      t_ = phase_end_;
      on_ = !on_;
      phase_end_ = t_ + detail::exponential_ms(g_, 1000.0 / (on_ ? mean_on_ : mean_off_));
    }
  }

 private:
  double on_rps_, off_rps_, mean_on_, mean_off_;
  std::mt19937_64 g_;
  bool on_ = true;
  double t_ = 0, phase_end_ = 0;
};

template <class A>
concept ArrivalProcess = requires(A& a) {
  { a.next_gap_ms() } -> std::convertible_to<double>;
};

// Arrivals of one task from a process, in [0, duration_ms).
template <ArrivalProcess A>
std::vector<Arrival> arrivals_for(A& process, TaskIndex task, double duration_ms) {
  std::vector<Arrival> out;
  for (double t = process.next_gap_ms(); t < duration_ms; t += process.next_gap_ms()) out.push_back({t, task});
  return out;
}

// Merges per-task arrival lists into one time-ordered list (stable: ties keep task order).
inline std::vector<Arrival> merge_arrivals(std::vector<std::vector<Arrival>> lists) {
  std::vector<Arrival> all;
  for (auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  std::stable_sort(all.begin(), all.end(), [](const Arrival& a, const Arrival& b) { return a.time_ms < b.time_ms; });
  return all;
}

// Poisson arrivals for every task at its SLO rate, seeded per task from one seed.
inline std::vector<Arrival> poisson_arrivals(const std::vector<Slo>& slos, double duration_ms, std::uint64_t seed,
                                             double rate_scale = 1.0) {
  std::vector<std::vector<Arrival>> lists;
  for (std::size_t t = 0; t < slos.size(); ++t) {
    if (slos[t].rate_rps * rate_scale <= 0) continue;
    PoissonArrivals p(slos[t].rate_rps * rate_scale, seed * 1000003u + t);
    lists.push_back(arrivals_for(p, static_cast<TaskIndex>(t), duration_ms));
  }
  return merge_arrivals(std::move(lists));
}

// A trace: CSV lines "time_ms,task" (an optional header line starting with a letter), where
// task is an index or one of task_names. Sorted by time on return.
inline std::vector<Arrival> parse_trace_csv(std::istream& in, const std::vector<std::string>& task_names,
                                            const std::string& where = "trace") {
  std::vector<Arrival> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    if (lineno == 1 && std::isalpha(static_cast<unsigned char>(line[0]))) continue;  // header
    const auto at = where + ":" + std::to_string(lineno);
    const auto comma = line.find(',');
    check(comma != std::string::npos, ErrorCode::parse, at, "expected 'time_ms,task', got '" + line + "'");
    Arrival a;
    try {
      std::size_t used = 0;
      a.time_ms = std::stod(line.substr(0, comma), &used);
    } catch (const std::exception&) {
      throw Error(ErrorCode::parse, at, "bad time '" + line.substr(0, comma) + "'");
    }
    check(std::isfinite(a.time_ms) && a.time_ms >= 0, ErrorCode::parse, at, "time must be finite and >= 0");
    auto task = line.substr(comma + 1);
    while (!task.empty() && task.front() == ' ') task.erase(task.begin());
    const auto named = std::find(task_names.begin(), task_names.end(), task);
    if (named != task_names.end()) {
      a.task = static_cast<TaskIndex>(named - task_names.begin());
    } else {
      std::size_t used = 0;
      long idx = -1;
      try {
        idx = std::stol(task, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      check(used == task.size() && idx >= 0 && idx < static_cast<long>(task_names.size()), ErrorCode::parse, at,
            "unknown task '" + task + "'");
      a.task = static_cast<TaskIndex>(idx);
    }
    out.push_back(a);
  }
  std::stable_sort(out.begin(), out.end(), [](const Arrival& a, const Arrival& b) { return a.time_ms < b.time_ms; });
  return out;
}

inline std::vector<Arrival> load_trace_csv(const std::string& path, const std::vector<std::string>& task_names) {
  std::ifstream f(path);
  check(f.good(), ErrorCode::io, path, "cannot open trace file");
  return parse_trace_csv(f, task_names, path);
}

// Replays arrivals in real time: calls submit(task) at each arrival's time from now and
// collects what it returns (the caller's handles). Returns when the last one is submitted.
// A submit that also takes a double is told how late it is called (ms): a generator that
// cannot keep its schedule (its thread waits for a core) should count that wait against the
// request (Engine::submit's waited_ms), not hide it.
template <class Submit>
auto replay(const std::vector<Arrival>& arrivals, Submit&& submit) {
  constexpr bool kTold = std::invocable<Submit&, TaskIndex, double>;
  using Handle = typename std::conditional_t<kTold, std::invoke_result<Submit&, TaskIndex, double>,
                                             std::invoke_result<Submit&, TaskIndex>>::type;
  std::vector<Handle> out;
  out.reserve(arrivals.size());
  const auto start = std::chrono::steady_clock::now();
  for (const auto& a : arrivals) {
    const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double, std::milli>(a.time_ms));
    std::this_thread::sleep_until(due);
    if constexpr (kTold)
      out.push_back(submit(a.task, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due).count()));
    else
      out.push_back(submit(a.task));
  }
  return out;
}

// The load generator: Poisson arrivals for every task at its SLO rate (x rate_scale) for
// duration_ms, submitted in real time through submit(task). Returns what submit returned.
template <class Submit>
auto generate_load(const std::vector<Slo>& slos, double duration_ms, std::uint64_t seed, Submit&& submit,
                   double rate_scale = 1.0) {
  return replay(poisson_arrivals(slos, duration_ms, seed, rate_scale), std::forward<Submit>(submit));
}

}  // namespace sparseloom::runtime
