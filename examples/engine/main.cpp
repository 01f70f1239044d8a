// A multi-task engine with SparseLoom's default policies (SparsityAware optimizer, load-all
// preloader) on two tasks of the committed zoo, two reference-backend processors, ~1.5 s of
// Poisson load; prints the plan and the per-task results.
//   engine ZOO_DIR [SECONDS]
#include <cstdio>
#include <cstdlib>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/stitch/block_library.hpp"

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
    std::fprintf(stderr, "usage: %s ZOO_DIR [SECONDS]\n", argv[0]);
    return 2;
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.5;
  try {
    // 1. The tasks' zoos, and a library that compiles their blocks for two processors.
    std::vector<std::unique_ptr<zoo::TaskZoo>> zoos;
    std::vector<const zoo::TaskZoo*> ptrs;
    for (const char* task : {"digits_cnn", "speech_kws"}) {
      zoos.push_back(std::make_unique<zoo::TaskZoo>(zoo::load_task(std::filesystem::path(argv[1]) / task)));
      ptrs.push_back(zoos.back().get());
    }
    using Library = stitch::BlockLibrary<reference::Backend>;
    Library lib(ptrs, std::tuple<reference::Backend>{}, {{"ref0", 0, {1}}, {"ref1", 0, {1}}}, 64);
    // 2. The estimator: every block profiled on every processor, accuracy fitted from the zoo.
    std::vector<estimator::Profiled::Task> est_tasks;
    for (int t = 0; t < 2; ++t) {
      auto prof = estimator::profile_task(lib, t, {.reps = 3, .warmup = 1, .budget_ms_per_block = 10});
      est_tasks.push_back({zoos[t]->manifest.task, estimator::fit_accuracy(zoos[t]->manifest, true, 0.10).model, std::move(prof)});
    }
    const estimator::Profiled est(std::move(est_tasks), {{"ref0", "cpu", "reference", "host", 1}, {"ref1", "cpu", "reference", "host", 1}});
    // 3. SLOs, then the engine with the default policies; it plans at construction.
    std::vector<runtime::TaskSpec> tasks{{"digits_cnn", slo(20, 90, 40)},
                                         {"speech_kws", slo(30, 75, 20)}};
    runtime::Engine<Library, estimator::Profiled, optimizer::SparsityAware> eng(lib, est, {}, {processor("ref0"), processor("ref1")}, tasks);
    const Plan plan = eng.plan();  // a snapshot: the engine may re-plan while it runs
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      const auto& tp = plan.tasks[t];
      std::printf("plan %-10s predicted %.2f %% in %.3f ms: %s\n", tasks[t].name.c_str(), tp.predicted_accuracy_pct,
                  tp.predicted_latency_ms, tp.reason.c_str());
    }
    // 4. Load: Poisson arrivals at the SLOs' rates, each request a test sample.
    const auto arrivals = runtime::poisson_arrivals({tasks[0].slo, tasks[1].slo}, seconds * 1000, 1);
    std::vector<std::int64_t> next(2, 0);
    runtime::replay(arrivals, [&](TaskIndex t) {
      const auto& z = *zoos[t];
      return eng.submit(t, {z.input(z.test_x, next[t]++ % z.test_x.dim(0))});
    });
    eng.drain(std::chrono::seconds(30));
    const auto m = eng.metrics();
    for (const auto& tm : m.tasks)
      std::printf("%-10s issued %4llu  on time %4llu  SLO violations %5.1f %%  p99 %.2f ms\n", tm.name.c_str(),
                  static_cast<unsigned long long>(tm.issued), static_cast<unsigned long long>(tm.count(runtime::RequestState::on_time)),
                  100 * tm.slo_violation_rate, tm.p99_ms);
    std::printf("every request accounted: %s; peak resident weights %zu B\n", m.overall.accounted == m.overall.issued ? "yes" : "NO",
                m.peak_resident_bytes);
    return m.overall.accounted == m.overall.issued && m.overall.issued > 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
