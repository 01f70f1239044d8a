#pragma once
// The vocabulary shared by estimator, optimizer, preloader and engine: tasks and their SLOs,
// stitched variants, placements and plans.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sparseloom {

using TaskIndex = int;
using BlockIndex = int;
using VariantIndex = int;
using ProcessorIndex = int;

// One source variant per block of a task. A plain variant v is {v, v, ..., v}.
struct StitchedVariant {
  std::vector<VariantIndex> choice;
  bool operator==(const StitchedVariant&) const = default;
  bool is_plain() const {
    for (auto c : choice)
      if (c != choice.front()) return false;
    return true;
  }
  // Number of variant switches between consecutive blocks (each costs a repair).
  int switches() const {
    int s = 0;
    for (std::size_t i = 1; i < choice.size(); ++i) s += choice[i] != choice[i - 1];
    return s;
  }
};

// One processor per block; consecutive blocks on different processors pay a transfer.
struct Placement {
  std::vector<ProcessorIndex> processor;
  bool operator==(const Placement&) const = default;
};

struct Slo {
  double deadline_ms = 100;        // per request, from arrival
  double min_accuracy_pct = 0;     // accuracy floor of the variant that serves it
  double rate_rps = 10;            // expected arrival rate
  double criticality = 1;          // weight in the objective; shed least critical first
  std::optional<double> max_energy_j;  // per request, where energy is modelled
  // Average power of the task's requests over any window of power_window_s (W), where energy
  // is modelled; the optimizer turns it into a per-request limit (optimizer::energy_limit_j).
  std::optional<double> max_power_w;
  double power_window_s = 1.0;
};

// How the engine routes each request of a task among the placements its plan offers (the
// optimizer's call, per task; every placement runs the same stitch).
enum class Routing : std::uint8_t {
  planned,          // every request on `placement`
  overflow,         // `placement`; a request admission would reject there goes to the
                    // alternative predicted to finish first among those that admit it
  earliest_finish,  // each request on whichever of `placement` and `alternatives` is predicted
                    // to finish first (Band's shortest expected latency, per request)
};

inline const char* routing_name(Routing r) {
  return r == Routing::overflow ? "overflow" : r == Routing::earliest_finish ? "earliest_finish" : "planned";
}

struct TaskPlan {
  StitchedVariant variant;
  Placement placement;
  double predicted_latency_ms = 0;   // service time, no queueing
  double predicted_accuracy_pct = 0;
  double predicted_memory_bytes = 0;
  bool meets_slo = false;            // as the optimizer predicted it
  std::string reason;                // why this choice (for `sparseloom plan`)
  // Other placements of `variant` the routing may use; memory policies that load the plan
  // ahead load these too (a request moved to a cold block would wait for its load). Last, so
  // that positional initialisation of the fields above still compiles.
  std::vector<Placement> alternatives;
  Routing routing = Routing::planned;
};

struct Plan {
  std::vector<TaskPlan> tasks;
  double decision_ms = 0;
  std::uint64_t version = 0;  // increases with every re-plan
};

}  // namespace sparseloom
