// sparseloom run SCENARIO: executes a scenario for real on this machine with SparseLoom's
// default policies (SparsityAware optimizer, load-all preloader) or the named --policy list,
// the same arrivals for each: a live progress line per policy, then the results table.
// --output writes RESULTS.json in sparseloom-bench-e2e's format (input of `sparseloom report`).
#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "../../bench/e2e/harness.hpp"
#include "common.hpp"
#include "policies.hpp"
#include "progress.hpp"

namespace sparseloom::cli {
namespace {

struct Args {
  std::string scenario, output;
  std::vector<std::string> policies{"sparseloom"};
  double duration_s = 0;
  double lose_device_after_s = -1;
  bool quick = false;
};

int do_run(const Args& a, const Globals& g) {
  const bool quiet = g.quiet || g.json;
  auto sc = scenario::load_scenario(a.scenario);
  Progress prof("profiling " + sc.name, static_cast<double>(sc.tasks.size()), "tasks", quiet);
  // Block profiles are reused from the CLI's cache directory while their key matches.
  e2e::Setup st = e2e::build(
      a.scenario, a.quick, [&](std::size_t done, std::size_t) { prof.update(static_cast<double>(done)); },
      cache_path(sc.name).parent_path().parent_path() / "blocks");
  prof.finish();
  const double dur = a.duration_s > 0 ? a.duration_s : a.quick ? std::min(4.0, st.sc.duration_s) : st.sc.duration_s;
  std::vector<e2e::Row> rows;
  for (const auto& name : a.policies) {
    rows.push_back(visit_policy(name, [&](const char* label, auto policy) {
      Progress bar(fmt::format("running {:<26}", label), dur, "s", quiet);
      std::atomic<bool> done{false};
      std::thread ticker([&] {
        const auto t0 = std::chrono::steady_clock::now();
        while (!done) {
          const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          bar.update(std::min(dur, el), el < dur ? "" : "load done, draining queued requests");
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      });
      e2e::RunOptions ro;
      ro.lose_device_after_s = a.lose_device_after_s;
      // The ticker is joined however the run ends: an error propagates as an error, not an abort.
      struct Join {
        std::atomic<bool>& done;
        std::thread& t;
        ~Join() {
          done = true;
          t.join();
        }
      };
      auto r = [&] {
        Join j{done, ticker};
        return e2e::run_policy(st, label, std::move(policy), dur, ro);
      }();
      bar.update(dur, fmt::format("{:.1f} % SLO violations", 100 * r.violation));
      bar.finish();
      return r;
    }));
  }
  json::Json out{{"scenario", st.sc.name},
                 {"machine", {{"cpu", e2e::cpu_model()}, {"hardware_threads", std::thread::hardware_concurrency()},
                              {"opencl_device", st.backends.opencl_device.empty() ? json::Json() : json::Json(st.backends.opencl_device)},
                              {"note", "processors are core groups of this machine and share its cores"}}},
                 {"duration_s", dur}, {"profiling_seconds", st.profiling_s}};
  for (const auto& r : rows) out["policies"].push_back(r.metrics);
  if (!a.output.empty()) {
    std::ofstream f(a.output);
    check(f.good(), ErrorCode::io, a.output, "cannot open for writing");
    f << out.dump(1);
  }
  if (g.json) {
    fmt::print("{}\n", out.dump(1));
    return kOk;
  }
  fmt::print("\nscenario {}: {} tasks on {} processors, {:.0f} s per policy (machine: {})\n\n", st.sc.name, st.tasks.size(), st.procs.size(),
             dur, e2e::cpu_model());
  std::vector<std::vector<std::string>> table;
  for (const auto& r : rows)
    table.push_back({r.policy, fmt::format("{:.1f} %", 100 * r.violation), fmt::format("{:.2f}", r.served), fmt::format("{:.2f}", r.goodput),
                     fmt::format("{:.2f}", r.p99), human_bytes(r.peak), fmt::format("{:.3f}", r.decision)});
  print_table({"policy", "SLO violations", "served/s", "goodput/s", "p99 ms", "peak memory", "decision ms"}, table);
  if (!a.output.empty()) fmt::print("\nresults written to {} (sparseloom report {})\n", a.output, a.output);
  return kOk;
}

}  // namespace

void add_run(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("run", "Execute a scenario on this machine: live progress, then the results table");
  auto a = std::make_shared<Args>();
  sub->add_option("scenario", a->scenario, "scenario JSON file (docs/scenario-format.md)")->required();
  sub->add_option("--policy", a->policies, "policies to run, in order (default: sparseloom)")->check(CLI::IsMember(policy_names()));
  sub->add_option("--duration", a->duration_s, "seconds of load per policy (default: the scenario's duration_s)")->check(CLI::PositiveNumber);
  sub->add_option("-o,--output", a->output, "write RESULTS.json (input of `sparseloom report`)");
  sub->add_flag("--quick", a->quick, "quick profiling and at most 4 s per policy");
  sub->add_option("--lose-device-after", a->lose_device_after_s,
                  "fault injection: the opencl processor's device is lost this many seconds into each policy's load")
      ->check(CLI::NonNegativeNumber);
  sub->callback([a, &g] { g.action = [a, &g] { return do_run(*a, g); }; });
}

}  // namespace sparseloom::cli
