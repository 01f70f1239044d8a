// A custom Optimizer: "most accurate plain variant that fits the deadline, whole task on the
// processor where it is fastest". Anything with plan(SystemState, Estimator) -> Plan models the
// concept; the engine takes it in place of SparsityAware. Compared here with SparsityAware on
// the same estimator, then run in the engine for a moment.
//   custom_optimizer ZOO_DIR
#include <cstdio>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/stitch/block_library.hpp"

struct MostAccurateThatFits {
  template <sparseloom::Estimator E>
  sparseloom::Plan plan(const sparseloom::SystemState& s, const E& e) {
    using namespace sparseloom;
    Plan plan;
    for (TaskIndex t = 0; t < e.num_tasks(); ++t) {
      TaskPlan best;
      best.predicted_accuracy_pct = -1;
      for (VariantIndex v = 0; v < e.num_variants(t); ++v)
        for (ProcessorIndex p = 0; p < e.num_processors(); ++p) {
          if (!s.processor_available[p]) continue;
          const StitchedVariant sv{std::vector<int>(e.num_blocks(t), v)};
          const Placement pl{std::vector<int>(e.num_blocks(t), p)};
          bool runnable = true;
          for (BlockIndex b = 0; b < e.num_blocks(t); ++b) runnable = runnable && e.can_place(t, b, v, p);
          if (!runnable) continue;
          const double ms = e.latency_ms(t, sv, pl), acc = e.accuracy_pct(t, sv);
          if (ms <= s.slos[t].deadline_ms && acc > best.predicted_accuracy_pct) {
            best.variant = sv;
            best.placement = pl;
            best.predicted_latency_ms = ms;
            best.predicted_accuracy_pct = acc;
            best.predicted_memory_bytes = e.memory_bytes(t, sv);
            best.meets_slo = acc >= s.slos[t].min_accuracy_pct;
            best.reason = "most accurate plain variant within the deadline, on its fastest processor";
          }
        }
      if (best.predicted_accuracy_pct < 0) {  // nothing fits: the base on processor 0, flagged
        best.variant.choice.assign(e.num_blocks(t), 0);
        best.placement.processor.assign(e.num_blocks(t), 0);
        best.reason = "no plain variant fits the deadline";
      }
      plan.tasks.push_back(best);
    }
    plan.version = ++version_;
    return plan;
  }
  std::uint64_t version_ = 0;
};
static_assert(sparseloom::Optimizer<MostAccurateThatFits, sparseloom::estimator::Profiled>);

// An SLO: deadline, accuracy floor, expected rate (criticality 1).
inline sparseloom::Slo slo(double deadline_ms, double min_accuracy_pct, double rate_rps) {
  sparseloom::Slo s;
  s.deadline_ms = deadline_ms;
  s.min_accuracy_pct = min_accuracy_pct;
  s.rate_rps = rate_rps;
  return s;
}

inline sparseloom::runtime::ProcessorSpec processor(const std::string& name) {
  sparseloom::runtime::ProcessorSpec p;
  p.name = name;
  return p;
}

int main(int argc, char** argv) {
  using namespace sparseloom;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ZOO_DIR\n", argv[0]);
    return 2;
  }
  try {
    const zoo::TaskZoo digits = zoo::load_task(std::filesystem::path(argv[1]) / "digits_cnn");
    using Library = stitch::BlockLibrary<reference::Backend>;
    Library lib({&digits}, std::tuple<reference::Backend>{}, {{"ref0", 0, {1}}}, 64);
    std::vector<estimator::Profiled::Task> tasks;
    tasks.push_back({digits.manifest.task, estimator::fit_accuracy(digits.manifest, true, 0.10).model,
                     estimator::profile_task(lib, 0, {.reps = 3, .warmup = 1, .budget_ms_per_block = 10})});
    const estimator::Profiled est(std::move(tasks), {{"ref0", "cpu", "reference", "host", 1}});
    SystemState state;
    state.slos = {slo(10, 95, 40)};
    state.processor_available = {true};
    const Plan mine = MostAccurateThatFits{}.plan(state, est);
    const Plan theirs = optimizer::SparsityAware{}.plan(state, est);
    std::printf("custom:        %.2f %% in %.3f ms (%s)\n", mine.tasks[0].predicted_accuracy_pct, mine.tasks[0].predicted_latency_ms,
                mine.tasks[0].reason.c_str());
    std::printf("SparsityAware: %.2f %% in %.3f ms (%s)\n", theirs.tasks[0].predicted_accuracy_pct, theirs.tasks[0].predicted_latency_ms,
                theirs.tasks[0].reason.c_str());
    // The engine takes the custom policy as its Optimizer.
    std::vector<runtime::TaskSpec> specs{{"digits_cnn", state.slos[0]}};
    runtime::Engine<Library, estimator::Profiled, MostAccurateThatFits> eng(lib, est, {}, {processor("ref0")}, specs);
    std::int64_t i = 0;
    runtime::replay(runtime::poisson_arrivals(state.slos, 500, 1), [&](TaskIndex t) {
      return eng.submit(t, {digits.input(digits.test_x, i++ % digits.test_x.dim(0))});
    });
    eng.drain(std::chrono::seconds(30));
    const auto m = eng.metrics();
    std::printf("engine with the custom optimizer: %llu requests, %.1f %% SLO violations\n",
                static_cast<unsigned long long>(m.overall.issued), 100 * m.overall.slo_violation_rate);
    return m.overall.issued > 0 && m.overall.accounted == m.overall.issued ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
