#pragma once
// Scenario files (sparseloom-bench-e2e, the demo, the CLI): tasks from a zoo with SLOs, the
// processors, the load, a memory budget and SLO changes mid-run. JSON with schema_version;
// errors name the file and the field (docs/scenario-format.md). Bounded: fuzzed.
#include <optional>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/core/types.hpp"

namespace sparseloom::scenario {

inline constexpr int kScenarioSchema = 1;

struct ScenarioProcessor {
  std::string name, backend = "reference", kind = "cpu";
  int threads = 1;
  double memory_budget_bytes = 0;  // its own device memory (0 = none); counts in the global budget too
};

struct ScenarioTask {
  std::string task;          // zoo task directory name
  double slo_scale = 0;      // deadline = slo_scale x the task's worst profiled latency (Band)
  double deadline_ms = 0;    // or an absolute deadline
  double min_accuracy_pct = 0;
  double rate_rps = 10;
  double criticality = 1;
  std::optional<double> max_energy_j;  // J per request (where energy is modelled: the simulator)
  std::optional<double> max_power_w;   // W averaged over power_window_s (where energy is modelled)
  double power_window_s = 1.0;
};

struct SloChange {
  double at_s = 0;
  std::size_t task = 0;
  std::optional<double> min_accuracy_pct, rate_rps, slo_scale;
};

struct Scenario {
  std::string name, description, zoo = "models/zoo", arrival = "poisson";
  double duration_s = 10;
  std::uint64_t seed = 1;
  double memory_budget_bytes = 0;
  std::vector<ScenarioProcessor> processors;
  std::vector<ScenarioTask> tasks;
  std::vector<SloChange> changes;
};

// Parses a scenario from its root field (errors name file, line when known, and field).
inline Scenario parse_scenario(const json::Field& root) {
  json::check_schema(root, kScenarioSchema);
  Scenario s;
  s.name = root.get<std::string>("name");
  s.description = root.get_or<std::string>("description", "");
  s.zoo = root.get_or<std::string>("zoo", s.zoo);
  s.duration_s = root.number("duration_s", 0.1, 86400);
  s.seed = root.get_or<std::uint64_t>("seed", 1);
  s.memory_budget_bytes = root.has("memory_budget_bytes") ? root.number("memory_budget_bytes", 0, 1e15) : 0;
  s.arrival = root.get_or<std::string>("arrival", "poisson");
  check(s.arrival == "poisson" || s.arrival == "bursty", ErrorCode::parse, root.where("arrival"),
        "'" + s.arrival + "' (expected poisson or bursty)");
  const auto procs = root["processors"];
  check(procs.size() >= 1, ErrorCode::parse, procs.where(), "at least one processor");
  for (std::size_t i = 0; i < procs.size(); ++i) {
    ScenarioProcessor p;
    p.name = procs[i].get<std::string>("name");
    p.backend = procs[i].get_or<std::string>("backend", p.backend);
    p.kind = procs[i].get_or<std::string>("kind", p.kind);
    p.threads = static_cast<int>(procs[i].has("threads") ? procs[i].number("threads", 1, 256) : 1);
    if (procs[i].has("memory_budget_bytes")) p.memory_budget_bytes = procs[i].number("memory_budget_bytes", 0, 1e15);
    check(p.backend == "reference" || p.backend == "opencl" || p.backend == "cpu", ErrorCode::parse,
          procs[i].where("backend"), "'" + p.backend + "' (expected reference, cpu or opencl)");
    s.processors.push_back(p);
  }
  const auto tasks = root["tasks"];
  check(tasks.size() >= 1, ErrorCode::parse, tasks.where(), "at least one task");
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto t = tasks[i];
    ScenarioTask st;
    st.task = t.get<std::string>("task");
    if (t.has("slo_scale")) st.slo_scale = t.number("slo_scale", 0.01, 1e6);
    if (t.has("deadline_ms")) st.deadline_ms = t.number("deadline_ms", 0.001, 1e9);
    check(st.slo_scale > 0 || st.deadline_ms > 0, ErrorCode::parse, t.where(), "needs slo_scale or deadline_ms");
    st.min_accuracy_pct = t.has("min_accuracy_pct") ? t.number("min_accuracy_pct", 0, 100) : 0;
    st.rate_rps = t.number("rate_rps", 0, 1e6);
    st.criticality = t.has("criticality") ? t.number("criticality", 0, 1e6) : 1;
    if (t.has("max_energy_j")) st.max_energy_j = t.number("max_energy_j", 0, 1e6);
    if (t.has("max_power_w")) st.max_power_w = t.number("max_power_w", 1e-6, 1e5);
    if (t.has("power_window_s")) {
      check(st.max_power_w.has_value(), ErrorCode::parse, t.where("power_window_s"), "needs max_power_w");
      st.power_window_s = t.number("power_window_s", 0.001, 3600);
    }
    s.tasks.push_back(st);
  }
  if (root.has("slo_changes")) {
    const auto ch = root["slo_changes"];
    for (std::size_t i = 0; i < ch.size(); ++i) {
      SloChange c;
      c.at_s = ch[i].number("at_s", 0, s.duration_s);
      c.task = static_cast<std::size_t>(ch[i].number("task", 0, static_cast<double>(s.tasks.size() - 1)));
      if (ch[i].has("min_accuracy_pct")) c.min_accuracy_pct = ch[i].number("min_accuracy_pct", 0, 100);
      if (ch[i].has("rate_rps")) c.rate_rps = ch[i].number("rate_rps", 0, 1e6);
      if (ch[i].has("slo_scale")) c.slo_scale = ch[i].number("slo_scale", 0.01, 1e6);
      s.changes.push_back(c);
    }
  }
  return s;
}

// Parses a scenario document; `source` names it in errors (a path, or "<bytes>").
inline Scenario parse_scenario(const json::Json& doc, const std::string& source) { return parse_scenario(json::Field(doc, source)); }

// From a file: errors also carry the line of the field.
// A task's SLO: its absolute deadline, or slo_scale x `worst_ms` (the base variant on its
// slowest processor, Band's convention). Found by ADL from the e2e harness and the CLI.
inline Slo slo_of(const ScenarioTask& t, double worst_ms) {
  Slo s;
  s.deadline_ms = t.deadline_ms > 0 ? t.deadline_ms : t.slo_scale * worst_ms;
  s.min_accuracy_pct = t.min_accuracy_pct;
  s.rate_rps = t.rate_rps;
  s.criticality = t.criticality;
  return s;
}

inline Scenario load_scenario(const std::string& path) {
  const auto doc = json::load_document(path);
  return parse_scenario(doc.root());
}

}  // namespace sparseloom::scenario
