#pragma once
// The policy concepts the Engine is templated on. Each shipped policy is checked with
// static_assert next to its definition; a user's own policy only has to model the concept.
#include <concepts>
#include <cstddef>
#include <vector>

#include "sparseloom/core/types.hpp"

namespace sparseloom {

// Accuracy, latency and memory of any stitched variant on any placement, without running it.
template <class E>
concept Estimator = requires(const E& e, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p,
                             const StitchedVariant& s, const Placement& pl) {
  { e.num_tasks() } -> std::convertible_to<int>;
  { e.num_blocks(t) } -> std::convertible_to<int>;
  { e.num_variants(t) } -> std::convertible_to<int>;
  { e.num_processors() } -> std::convertible_to<int>;
  // False where the processor cannot run that block (op set, dtype: an NPU runs INT8 only).
  { e.can_place(t, b, v, p) } -> std::convertible_to<bool>;
  { e.accuracy_pct(t, s) } -> std::convertible_to<double>;
  // Service time of one request, no queueing, including boundary transfers and repairs.
  { e.latency_ms(t, s, pl) } -> std::convertible_to<double>;
  { e.block_latency_ms(t, b, v, p) } -> std::convertible_to<double>;
  // Resident bytes the stitch needs (its blocks' packed weights + its repair vectors).
  { e.memory_bytes(t, s) } -> std::convertible_to<double>;
  { e.block_bytes(t, b, v) } -> std::convertible_to<double>;
};

// What the optimizer plans for: SLOs, observed rates, which processors are usable, budget.
struct SystemState {
  std::vector<Slo> slos;                      // one per task
  std::vector<bool> processor_available;      // one per processor
  double memory_budget_bytes = 0;             // 0 = unlimited; all resident blocks (the SoC's shared memory)
  // Per processor, 0 = none: the memory of a device that has its own (a discrete GPU/NPU).
  // Its blocks count in memory_budget_bytes too. Shorter than the processor count = none.
  std::vector<double> device_budget_bytes = {};
  std::vector<double> processor_speed = {};   // observed slow-down factors (1 = as profiled)
  // The plan in force per task (empty: none, e.g. the first plan). An optimizer may weigh what
  // changing it costs: the new blocks must be loaded (and repaired) before the plan is current.
  std::vector<StitchedVariant> current_stitch = {};
  std::vector<Placement> current_placement = {};
};

template <class O, class E>
concept Optimizer = Estimator<E> && requires(O& o, const SystemState& s, const E& e) {
  { o.plan(s, e) } -> std::same_as<Plan>;
};

}  // namespace sparseloom
