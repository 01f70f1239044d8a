// sparseloom profile SCENARIO [-o FILE]: times every (block, variant) of the scenario's tasks on
// its processors and writes the persisted profile table (docs/schema: estimator::to_json). Also
// the cache behind plan/estimate: a table is reused while its processors, device and model
// files match, else measured again. The only translation unit here that compiles backends
// (besides run.cpp).
#include <cctype>
#include <cstdlib>

#include "../../bench/e2e/harness.hpp"
#include "common.hpp"
#include "progress.hpp"
#include "scenario_model.hpp"

namespace sparseloom::cli {

std::filesystem::path cache_path(const std::string& scenario_name) {
  std::filesystem::path dir;
  if (const char* d = std::getenv("SPARSELOOM_CACHE_DIR"); d && *d) dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::filesystem::path(x) / "sparseloom";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "sparseloom";
  else dir = std::filesystem::temp_directory_path() / "sparseloom";
  std::string safe = scenario_name;
  for (char& c : safe)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  // The kernels' and the profiler's revisions are in the name: a table timed by an older
  // build (slower steps, other formats) is not reused after an upgrade.
#ifdef SPARSELOOM_CLI_HAS_CPU
  const int kernels = cpu::Backend::kRevision;
#else
  const int kernels = 0;
#endif
  return dir / "profiles" /
         (safe + ".k" + std::to_string(kernels) + "p" + std::to_string(estimator::kProfilerRevision) + ".json");
}

estimator::ProfileTable profile_scenario(const std::string& scenario, bool quick, bool quiet) {
  // Profiling goes task by task; the bar advances per task and shows the elapsed time.
  const auto sc = scenario::load_scenario(scenario);
  Progress bar("profiling " + sc.name, static_cast<double>(sc.tasks.size()), "tasks", quiet);
  bar.update(0, "loading the zoo");
  // The harness's per-block cache is off: `profile` measures (the table is what gets cached).
  e2e::Setup st = e2e::build(
      scenario, quick,
      [&](std::size_t done, std::size_t total) { bar.update(static_cast<double>(done), done < total ? "next: " + sc.tasks[done].task : ""); },
      std::filesystem::path(), /*pool_identical=*/false);  // the table keeps each processor's own; build_model pools
  bar.finish();
  estimator::ProfileTable t;
  t.processors = st.est.processors();
  for (int i = 0; i < st.est.num_tasks(); ++i) t.tasks.push_back(st.est.task(i).profile);
  t.profiling_seconds = st.profiling_s;
  return t;
}

estimator::ProfileTable profile_for(const ProfileRequest& r) {
  const auto sc = scenario::load_scenario(r.scenario);
  const auto manifests = load_manifests(sc);
  if (!r.profile_path.empty()) {
    auto t = estimator::load_profile(r.profile_path);
    const std::string bad = profile_mismatch(sc, t, "", manifests);
    check(bad.empty(), ErrorCode::invalid_argument, r.profile_path, "does not fit scenario " + r.scenario + ": " + bad);
    return t;
  }
  const auto cached = cache_path(sc.name);
  if (!r.refresh && std::filesystem::exists(cached)) {
    try {
      auto t = estimator::load_profile(cached);
      const std::string bad = profile_mismatch(sc, t, bench::cpu_model(), manifests);
      if (bad.empty()) return t;
      if (!r.quiet) fmt::print(stderr, "cached profile {} is stale ({}); profiling again\n", cached.string(), bad);
    } catch (const Error& e) {
      if (!r.quiet) fmt::print(stderr, "cached profile {} unreadable ({}); profiling again\n", cached.string(), e.what());
    }
  }
  auto t = profile_scenario(r.scenario, r.quick, r.quiet);
  try {
    estimator::save(t, cached);
  } catch (const std::exception& e) {
    if (!r.quiet) fmt::print(stderr, "note: could not cache the profile at {}: {}\n", cached.string(), e.what());
  }
  return t;
}

void add_profile(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("profile", "Profile every block of a scenario's tasks on its processors; write the profile table");
  struct Args {
    std::string scenario, out;
    bool quick = false;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("scenario", a->scenario, "scenario JSON file (docs/scenario-format.md)")->required();
  sub->add_option("-o,--output", a->out, "where to write the table (default: the cache plan/estimate read)");
  sub->add_flag("--quick", a->quick, "fewer repetitions per block (5 instead of 9)");
  sub->callback([a, &g] {
    g.action = [a, &g] {
      const auto sc = scenario::load_scenario(a->scenario);
      const auto t = profile_scenario(a->scenario, a->quick, g.quiet || g.json);
      const std::filesystem::path out = a->out.empty() ? cache_path(sc.name) : std::filesystem::path(a->out);
      estimator::save(t, out);
      if (g.json) {
        fmt::print("{}\n", json::Json{{"profile", out.string()}, {"profiling_seconds", t.profiling_seconds},
                                      {"tasks", t.tasks.size()}, {"processors", t.processors.size()}}.dump(1));
        return kOk;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& tp : t.tasks) {
        std::vector<std::string> r{tp.task, std::to_string(tp.block.size()), std::to_string(tp.block.empty() ? 0 : tp.block[0].size())};
        for (std::size_t p = 0; p < t.processors.size(); ++p) {
          double sum = 0;  // fastest variant of each block on this processor, summed over blocks
          for (const auto& b : tp.block) {
            double best = 1e300;
            for (const auto& v : b)
              if (v[p].samples > 0) best = std::min(best, v[p].median_ms);
            sum += best < 1e300 ? best : 0;
          }
          r.push_back(fmt::format("{:.3f}", sum));
        }
        rows.push_back(r);
      }
      std::vector<std::string> head{"task", "blocks", "variants"};
      for (const auto& p : t.processors) head.push_back("fastest ms " + p.name);
      print_table(head, rows);
      fmt::print("\nprofiled in {:.1f} s on {}; table written to {}\n", t.profiling_seconds,
                 t.processors.empty() ? "?" : t.processors[0].device, out.string());
      return kOk;
    };
  });
}

}  // namespace sparseloom::cli
