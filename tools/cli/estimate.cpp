// sparseloom estimate SCENARIO: per task, the Pareto front of stitched variants (latency vs
// accuracy, with memory) from the estimator, each stitch run whole on one processor. Spaces up
// to kExhaustive stitches are enumerated; larger ones are sampled (said in the output).
#include <cmath>
#include <random>

#include "common.hpp"
#include "scenario_model.hpp"

namespace sparseloom::cli {
namespace {

constexpr double kExhaustive = 200000;

struct Point {
  StitchedVariant s;
  int processor = 0;
  double latency_ms = 0, accuracy_pct = 0, bytes = 0;
};

// Non-dominated points: no other is both faster (or equal) and more accurate (or equal).
std::vector<Point> pareto(std::vector<Point> pts) {
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) {
    return a.latency_ms != b.latency_ms ? a.latency_ms < b.latency_ms : a.accuracy_pct > b.accuracy_pct;
  });
  std::vector<Point> front;
  double best = -1;
  for (auto& p : pts)
    if (p.accuracy_pct > best) {
      best = p.accuracy_pct;
      front.push_back(std::move(p));
    }
  return front;
}

struct Args {
  ProfileRequest prof;
  std::string task;
  std::size_t top = 12;
};

int do_estimate(const Args& a, const Globals& g) {
  auto req = a.prof;
  req.quiet = req.quiet || g.quiet || g.json;
  const auto table = profile_for(req);
  const auto m = build_model(scenario::load_scenario(a.prof.scenario), table);
  json::Json out{{"scenario", m.sc.name}, {"tasks", json::Json::array()}};
  bool found = a.task.empty();
  for (int t = 0; t < m.est.num_tasks(); ++t) {
    const auto& man = m.manifests[static_cast<std::size_t>(t)];
    if (!a.task.empty() && man.task != a.task) continue;
    found = true;
    const int B = m.est.num_blocks(t), V = m.est.num_variants(t), P = m.est.num_processors();
    const double space = std::pow(static_cast<double>(V), B);
    const bool exhaustive = space <= kExhaustive;
    std::vector<StitchedVariant> stitches;
    if (exhaustive) {
      StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), 0)};
      for (;;) {
        stitches.push_back(s);
        int b = B - 1;
        while (b >= 0 && ++s.choice[static_cast<std::size_t>(b)] == V) s.choice[static_cast<std::size_t>(b--)] = 0;
        if (b < 0) break;
      }
    } else {
      std::mt19937_64 rng(7);
      for (int v = 0; v < V; ++v) stitches.push_back({std::vector<int>(static_cast<std::size_t>(B), v)});
      while (stitches.size() < kExhaustive) {
        StitchedVariant s;
        for (int b = 0; b < B; ++b) s.choice.push_back(static_cast<int>(rng() % static_cast<std::uint64_t>(V)));
        stitches.push_back(std::move(s));
      }
    }
    json::Json jt{{"task", man.task}, {"space", space}, {"evaluated", stitches.size()}, {"exhaustive", exhaustive}, {"fronts", json::Json::array()}};
    if (!g.json)
      fmt::print("task {}: {} blocks x {} variants = {:.0f} stitched variants ({}), floor {:.1f} %, deadline {:.3f} ms\n", man.task, B, V, space,
                 exhaustive ? "all evaluated" : fmt::format("{} sampled", stitches.size()), m.state.slos[static_cast<std::size_t>(t)].min_accuracy_pct,
                 m.state.slos[static_cast<std::size_t>(t)].deadline_ms);
    for (int p = 0; p < P; ++p) {
      std::vector<Point> pts;
      const Placement pl{std::vector<int>(static_cast<std::size_t>(B), p)};
      for (const auto& s : stitches) {
        bool ok = true;
        for (int b = 0; b < B && ok; ++b) ok = m.est.can_place(t, b, s.choice[static_cast<std::size_t>(b)], p);
        if (ok) pts.push_back({s, p, m.est.latency_ms(t, s, pl), m.est.accuracy_pct(t, s), m.est.memory_bytes(t, s)});
      }
      const auto front = pareto(std::move(pts));
      json::Json jf{{"processor", table.processors[static_cast<std::size_t>(p)].name}, {"points", json::Json::array()}};
      std::vector<std::vector<std::string>> rows;
      for (const auto& pt : front) {
        std::vector<std::string> names;
        std::string joined;
        for (auto v : pt.s.choice) {
          names.push_back(man.variants[static_cast<std::size_t>(v)].name);
          joined += (joined.empty() ? "" : "|") + names.back();
        }
        jf["points"].push_back({{"stitch", names}, {"plain", pt.s.is_plain()}, {"latency_ms", pt.latency_ms},
                                {"accuracy_pct", pt.accuracy_pct}, {"memory_bytes", pt.bytes}});
        if (rows.size() < a.top)
          rows.push_back({joined, pt.s.is_plain() ? "plain" : "stitched", fmt::format("{:.3f}", pt.latency_ms), fmt::format("{:.2f} %", pt.accuracy_pct),
                          human_bytes(pt.bytes)});
      }
      if (!g.json) {
        fmt::print("\n  on {}: {} points on the front{}\n", jf["processor"].get<std::string>(), front.size(),
                   front.size() > a.top ? fmt::format(" (fastest {} shown; --top N)", a.top) : "");
        print_table({"stitch (variant per block)", "", "latency ms", "accuracy", "memory"}, rows);
      }
      jt["fronts"].push_back(std::move(jf));
    }
    if (!g.json) fmt::print("\n");
    out["tasks"].push_back(std::move(jt));
  }
  check(found, ErrorCode::invalid_argument, "--task", "no task '" + a.task + "' in the scenario");
  if (g.json) fmt::print("{}\n", out.dump(1));
  return kOk;
}

}  // namespace

void add_estimate(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("estimate", "Pareto front (latency vs accuracy) of each task's stitched variants, from the estimator");
  auto a = std::make_shared<Args>();
  add_profile_options(sub, a->prof);
  sub->add_option("--task", a->task, "only this task");
  sub->add_option("--top", a->top, "rows shown per front in the table (JSON has all)");
  sub->callback([a, &g] { g.action = [a, &g] { return do_estimate(*a, g); }; });
}

}  // namespace sparseloom::cli
