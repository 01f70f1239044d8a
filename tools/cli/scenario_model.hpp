#pragma once
// A scenario's planning inputs without any backend: the estimator (profile table + accuracy
// model fitted from the zoo manifests), each task's SLO, and the optimizer's SystemState.
// plan and estimate use it; the SLO rule matches the e2e harness (bench/e2e/harness.hpp).
#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/estimator/pool_processors.hpp"
#include "sparseloom/estimator/profiled.hpp"
#include "sparseloom/scenario/scenario.hpp"
#include "sparseloom/zoo/manifest.hpp"

namespace sparseloom::cli {

struct ScenarioModel {
  scenario::Scenario sc;
  std::vector<zoo::Manifest> manifests;
  estimator::Profiled est;
  std::vector<std::string> task_names;
  std::vector<double> worst_ms;  // base variant on its slowest processor (slo_scale's unit)
  SystemState state;
};

inline std::filesystem::path task_dir(const scenario::Scenario& sc, const std::string& task) {
  return std::filesystem::path(sc.zoo) / task;
}

// Why `table` cannot serve `sc` (empty when it can): processors, device and model files must match.
inline std::string profile_mismatch(const scenario::Scenario& sc, const estimator::ProfileTable& table, const std::string& device,
                                    const std::vector<zoo::Manifest>& manifests) {
  if (table.processors.size() != sc.processors.size())
    return fmt::format("it has {} processors, the scenario {}", table.processors.size(), sc.processors.size());
  for (std::size_t p = 0; p < sc.processors.size(); ++p) {
    const auto& a = table.processors[p];
    const auto& b = sc.processors[p];
    if (a.name != b.name || a.backend != b.backend || a.threads != b.threads)
      return fmt::format("processor {} is {}/{}/{} threads there, {}/{}/{} threads in the scenario", p, a.name, a.backend, a.threads,
                         b.name, b.backend, b.threads);
    if (!device.empty() && a.device != device) return fmt::format("it was measured on '{}', this machine is '{}'", a.device, device);
  }
  if (table.tasks.size() != sc.tasks.size()) return fmt::format("it has {} tasks, the scenario {}", table.tasks.size(), sc.tasks.size());
  for (std::size_t t = 0; t < sc.tasks.size(); ++t) {
    if (table.tasks[t].task != manifests[t].task) return fmt::format("task {} is '{}' there, '{}' here", t, table.tasks[t].task, manifests[t].task);
    std::vector<std::filesystem::path> files;
    for (const auto& v : manifests[t].variants) files.push_back(manifests[t].dir / v.file);
    if (table.tasks[t].model_hash != estimator::hash_files(files))
      return fmt::format("the model files of task '{}' changed since it was profiled", manifests[t].task);
  }
  return {};
}

inline std::vector<zoo::Manifest> load_manifests(const scenario::Scenario& sc) {
  std::vector<zoo::Manifest> out;
  for (const auto& t : sc.tasks) out.push_back(zoo::load_manifest(task_dir(sc, t.task)));
  return out;
}

inline ScenarioModel build_model(scenario::Scenario sc, const estimator::ProfileTable& table) {
  ScenarioModel m;
  m.sc = std::move(sc);
  m.manifests = load_manifests(m.sc);
  const std::string bad = profile_mismatch(m.sc, table, "", m.manifests);
  check(bad.empty(), ErrorCode::invalid_argument, "profile table", "does not fit scenario '" + m.sc.name + "': " + bad);
  // Identical processors share one profile (estimator/pool_processors.hpp), as in `run`.
  auto profiles = table.tasks;
  estimator::pool_identical_processors(profiles, table.processors);
  std::vector<estimator::Profiled::Task> tasks;
  for (std::size_t t = 0; t < m.manifests.size(); ++t) {
    auto fit = estimator::fit_accuracy(m.manifests[t], true, 0.10);
    const auto& prof = profiles[t];
    const double worst = estimator::slowest_processor_ms(prof, m.manifests[t].variant_index(m.manifests[t].base));
    m.worst_ms.push_back(worst);
    m.task_names.push_back(m.manifests[t].task);
    tasks.push_back({m.manifests[t].task, std::move(fit.model), prof});
    m.state.slos.push_back(slo_of(m.sc.tasks[t], worst));
  }
  m.est = estimator::Profiled(std::move(tasks), table.processors);
  m.state.processor_available.assign(table.processors.size(), true);
  m.state.memory_budget_bytes = m.sc.memory_budget_bytes;
  for (const auto& p : m.sc.processors) m.state.device_budget_bytes.push_back(p.memory_budget_bytes);
  return m;
}

}  // namespace sparseloom::cli
