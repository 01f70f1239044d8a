// The estimator and the optimizer without the engine: build estimator::Profiled for two zoo
// tasks (profiled on the reference backend), ask it about one stitched variant, then let
// SparsityAware plan under an SLO and show why it chose what it chose.
//   estimate_plan ZOO_DIR
#include <cstdio>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/stitch/block_library.hpp"

// An SLO: deadline, accuracy floor, expected rate (criticality 1).
inline sparseloom::Slo slo(double deadline_ms, double min_accuracy_pct, double rate_rps) {
  sparseloom::Slo s;
  s.deadline_ms = deadline_ms;
  s.min_accuracy_pct = min_accuracy_pct;
  s.rate_rps = rate_rps;
  return s;
}

int main(int argc, char** argv) {
  using namespace sparseloom;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ZOO_DIR\n", argv[0]);
    return 2;
  }
  try {
    const zoo::TaskZoo digits = zoo::load_task(std::filesystem::path(argv[1]) / "digits_cnn");
    const zoo::TaskZoo kws = zoo::load_task(std::filesystem::path(argv[1]) / "speech_kws");
    stitch::BlockLibrary<reference::Backend> lib({&digits, &kws}, std::tuple<reference::Backend>{}, {{"ref0", 0, {1}}});
    std::vector<estimator::Profiled::Task> tasks;
    for (const zoo::TaskZoo* z : {&digits, &kws}) {
      auto prof = estimator::profile_task(lib, static_cast<TaskIndex>(tasks.size()), {.reps = 3, .warmup = 1, .budget_ms_per_block = 10});
      tasks.push_back({z->manifest.task, estimator::fit_accuracy(z->manifest, true, 0.10).model, std::move(prof)});
    }
    const estimator::Profiled est(std::move(tasks), {{"ref0", "cpu", "reference", "host", 1}});
    // Ask about one stitch: the first half of digits' blocks from its sparsest variant.
    const auto& m = digits.manifest;
    int sparsest = 0;
    for (std::size_t v = 0; v < m.variants.size(); ++v)
      if (m.variants[v].sparsity > m.variants[sparsest].sparsity) sparsest = static_cast<int>(v);
    StitchedVariant s{std::vector<int>(m.blocks.size(), digits.base())};
    for (std::size_t b = 0; b < m.blocks.size() / 2; ++b) s.choice[b] = sparsest;
    const Placement on_ref0{std::vector<int>(m.blocks.size(), 0)};
    std::printf("digits: base %.2f %% %.3f ms; stitched (%s in the first half) %.2f %% %.3f ms, %.0f B\n",
                est.accuracy_pct(0, StitchedVariant{std::vector<int>(m.blocks.size(), digits.base())}), est.latency_ms(0, StitchedVariant{std::vector<int>(m.blocks.size(), digits.base())}, on_ref0), m.variants[sparsest].name.c_str(),
                est.accuracy_pct(0, s), est.latency_ms(0, s, on_ref0), est.memory_bytes(0, s));
    // Plan both tasks on the one processor.
    SystemState state;
    state.slos = {slo(10, 95, 50), slo(20, 80, 20)};
    state.processor_available = {true};
    optimizer::SparsityAware opt;
    const Plan plan = opt.plan(state, est);
    for (std::size_t t = 0; t < plan.tasks.size(); ++t)
      std::printf("task %zu: %.2f %%, %.3f ms, meets SLO: %s\n  why: %s\n", t, plan.tasks[t].predicted_accuracy_pct,
                  plan.tasks[t].predicted_latency_ms, plan.tasks[t].meets_slo ? "yes" : "no", plan.tasks[t].reason.c_str());
    std::printf("decided in %.3f ms\n", plan.decision_ms);
    return plan.tasks.size() == 2 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
