// sparseloom-bench-estimator: the performance estimator's error on stitched variants it never
// saw, per task of the committed zoo. Accuracy: fitted on the zoo's plain variants, single
// swaps and a fraction of its measured stitches; the other measured stitches are held out.
// Latency: block profiles on this machine's CPU processor vs measured end-to-end latency of
// stitches never profiled whole. Pareto gain on measured latency.
#include <CLI/CLI.hpp>

#include "../machine.hpp"

#include <cstdio>
#include <fstream>
#include <thread>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/estimator/profiler.hpp"
#include "sparseloom/stitch/block_library.hpp"

using namespace sparseloom;

namespace {
using bench::cpu_model;
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SparseLoom estimator error on held-out stitched variants"};
  std::string zoo_dir = "models/zoo", json_path;
  bool quick = false;
  double fraction = 0.10;
  int latency_stitches = 60;
  app.add_option("--zoo", zoo_dir, "zoo directory");
  app.add_option("--json", json_path, "write results as JSON");
  app.add_option("--fit-fraction", fraction, "share of the stitched space the accuracy model may use (<= 0.10)");
  app.add_option("--latency-stitches", latency_stitches, "stitches timed end to end for latency MAPE");
  app.add_flag("--quick", quick, "fewer timed stitches (under 60 s)");
  CLI11_PARSE(app, argc, argv);
  if (quick) latency_stitches = 12;
  try {
    json::Json out;
    out["machine"] = {{"cpu", cpu_model()}, {"threads", std::thread::hardware_concurrency()}};
    out["fit_fraction"] = fraction;
    std::printf("machine: %s\n%-18s %8s %6s %9s %8s %8s %6s %12s\n", cpu_model().c_str(), "task", "MAE pp", "rho",
                "zs MAE", "no-rep", "lat MAPE", "front+", "fraction");
    for (const auto& dir : zoo::list_tasks(zoo_dir)) {
      const zoo::TaskZoo z = zoo::load_task(dir);
      const auto& m = z.manifest;
      const auto fit = estimator::fit_accuracy(m, true, fraction);
      const auto err = estimator::evaluate(fit.model, fit.held_out);
      const auto fit_raw = estimator::fit_accuracy(m, false, fraction);
      const auto err_raw = estimator::evaluate(fit_raw.model, fit_raw.held_out);

      // Latency on this machine's CPU processor (reference backend, 1 thread).
      stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"cpu0", 0, {1}}});
      const auto t0 = std::chrono::steady_clock::now();
      estimator::ProfileOptions po;
      if (quick) po.reps = 5;
      const auto prof = estimator::profile_task(lib, 0, po);
      const double profiling_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      estimator::Profiled est({{m.task, fit.model, prof}}, {{"cpu0", "cpu", "reference", cpu_model(), 1}});
      for (int b = 0; b < z.num_blocks(); ++b)
        for (int v = 0; v < z.num_variants(); ++v) lib.load(0, b, v, 0);
      // Measured latency of plain variants and of held-out stitches, end to end.
      auto measure = [&](const StitchedVariant& s) {
        lib.prepare(0, s);
        const Placement pl{std::vector<int>(s.choice.size(), 0)};
        (void)pl;
        Tensor x = z.input(z.test_x, 1);
        return estimator::time_it(
                   [&] {
                     std::vector<Tensor> cur{x};
                     for (int b = 0; b < z.num_blocks(); ++b) cur = lib.run(0, s, b, 0, cur);
                   },
                   quick ? 5 : 9, 1, 100)
            .median_ms;
      };
      std::vector<double> plain_lat, plain_acc;
      for (int v = 0; v < z.num_variants(); ++v) {
        plain_lat.push_back(measure({std::vector<int>(z.num_blocks(), v)}));
        plain_acc.push_back(m.variants[v].accuracy_pct);
      }
      double mape = 0;
      int timed = 0, front_gain = 0;
      for (const auto& a : fit.held_out) {
        if (timed >= latency_stitches) break;
        const double real = measure(a.s);
        const double pred = est.latency_ms(0, a.s, Placement{std::vector<int>(a.s.choice.size(), 0)});
        mape += std::abs(pred - real) / real;
        ++timed;
        double best = 0;
        for (std::size_t v = 0; v < plain_lat.size(); ++v)
          if (plain_lat[v] <= real) best = std::max(best, plain_acc[v]);
        front_gain += a.accuracy_pct > best + 0.5;
      }
      mape = timed ? 100.0 * mape / timed : 0;
      std::printf("%-18s %8.3f %6.3f %9.3f %8.3f %7.1f%% %6d %11.2f%%\n", m.task.c_str(), err.mae_pp, err.rank_corr,
                  err.zero_shot_mae_pp, err_raw.mae_pp, mape, front_gain, 100 * fit.fraction_profiled);
      out["tasks"].push_back({{"task", m.task},
                              {"accuracy_mae_pp", err.mae_pp},
                              {"rank_corr", err.rank_corr},
                              {"zero_shot_mae_pp", err.zero_shot_mae_pp},
                              {"held_out", err.n},
                              {"no_repair", {{"accuracy_mae_pp", err_raw.mae_pp}, {"rank_corr", err_raw.rank_corr}}},
                              {"latency_mape", mape / 100.0},
                              {"latency_stitches_timed", timed},
                              {"fraction_profiled", fit.fraction_profiled},
                              {"profiling_seconds", profiling_s},
                              {"pareto_gain_count", front_gain},
                              {"pareto_gain_over", "timed held-out stitches"},
                              {"cost_basis", "measured_latency_ms (reference backend, 1 thread)"}});
    }
    if (!json_path.empty()) std::ofstream(json_path) << out.dump(1);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
