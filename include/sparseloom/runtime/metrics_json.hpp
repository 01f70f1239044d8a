#pragma once
// EngineMetrics as JSON (nlohmann-json). Kept apart from metrics.hpp so that the core headers
// need only the standard library; link nlohmann_json::nlohmann_json to use it.
#include <nlohmann/json.hpp>

#include "sparseloom/runtime/metrics.hpp"

namespace sparseloom::runtime {

inline nlohmann::json to_json(const TaskMetrics& m) {
  nlohmann::json j;
  j["name"] = m.name;
  j["issued"] = m.issued;
  j["requests_accounted"] = m.accounted;
  for (auto s : kEndStates) j[std::string(to_string(s))] = m.count(s);
  j["violations"] = m.violations;
  j["slo_violation_rate"] = m.slo_violation_rate;
  j["band_satisfactory_rate"] = m.satisfactory_rate;
  j["served_rps"] = m.served_rps;
  j["goodput_rps"] = m.goodput_rps;
  j["latency_ms"] = {{"p50", m.p50_ms}, {"p99", m.p99_ms}, {"mean", m.mean_ms}, {"max", m.max_ms}};
  j["load_stalls"] = m.load_stalls;
  j["load_stall_ms"] = m.load_stall_ms;
  j["load_violations"] = m.load_violations;
  j["retries"] = m.retries;
  j["alternative_routes"] = m.alternative_routes;
  return j;
}

inline nlohmann::json to_json(const EngineMetrics& m) {
  nlohmann::json j;
  j["schema_version"] = 1;
  j["wall_ms"] = m.wall_ms;
  j["overall"] = to_json(m.overall);
  j["tasks"] = nlohmann::json::array();
  for (const auto& t : m.tasks) j["tasks"].push_back(to_json(t));
  j["processors"] = nlohmann::json::array();
  for (const auto& p : m.processors)
    j["processors"].push_back({{"name", p.name},
                               {"kind", p.kind},
                               {"workers", p.workers},
                               {"busy_ms", p.busy_ms},
                               {"utilisation", p.utilisation},
                               {"blocks", p.blocks},
                               {"failures", p.failures},
                               {"available", p.available},
                               {"observed_slowdown", p.observed_slowdown},
                               {"memory_budget_bytes", p.memory_budget_bytes},
                               {"peak_resident_bytes", p.peak_resident_bytes}});
  j["memory"] = {{"peak_resident_bytes", m.peak_resident_bytes},
                 {"mean_resident_bytes", m.mean_resident_bytes},
                 {"budget_bytes", m.memory_budget_bytes},
                 {"budget_exceeded", m.budget_exceeded},
                 {"timeline", nlohmann::json::array()}};
  for (const auto& s : m.memory) j["memory"]["timeline"].push_back({s.t_ms, s.bytes});
  j["slo_timeline"] = {{"bucket_ms", SloTimeline::kBucketMs},
                       {"accounted", m.slo_timeline.accounted},
                       {"violations", m.slo_timeline.violations}};
  j["decisions"] = {{"count", m.decisions.size()},
                    {"decision_ms_mean", m.decision_ms_mean},
                    {"decision_ms_max", m.decision_ms_max},
                    {"log", nlohmann::json::array()}};
  for (const auto& d : m.decisions)
    j["decisions"]["log"].push_back({{"t_ms", d.t_ms}, {"decision_ms", d.decision_ms}, {"version", d.version}, {"reason", d.reason},
                                     {"adopt_wait_ms", d.adopt_wait_ms}, {"new_blocks", d.new_blocks}, {"new_bytes", d.new_bytes},
                                     {"stitch", d.stitch}, {"placement", d.placement}});
  j["first_violations"] = nlohmann::json::array();
  for (const auto& r : m.first_violations)
    j["first_violations"].push_back({{"task", r.task}, {"state", std::string(to_string(r.state))}, {"arrival_ms", r.arrival_ms},
                                     {"start_ms", r.start_ms}, {"finish_ms", r.finish_ms}, {"deadline_ms", r.deadline_ms},
                                     {"queue_ms", r.queue_ms}, {"plan_version", r.plan_version}, {"reason", r.reason}});
  j["queue_handoff_ms_mean"] = m.handoff_ms_mean;
  j["queue_handoff_samples"] = m.handoff_samples;
  return j;
}

}  // namespace sparseloom::runtime
