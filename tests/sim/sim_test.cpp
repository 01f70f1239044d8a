// The simulator (issue 12): processor profiles, the cost model, the modelled runner and
// estimator, a DiscreteEvent run of the same Engine on them, and the energy constraint.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/preloader/preloader.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/scenario/scenario.hpp"
#include "sparseloom/sim/estimator.hpp"
#include "sparseloom/sim/profile.hpp"
#include "sparseloom/sim/sim_runner.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

using namespace sparseloom;
namespace fs = std::filesystem;

namespace {

const fs::path kRoot = SPARSELOOM_SOURCE_DIR;

json::Json profile_doc(const std::string& name) { return json::load(kRoot / "sim/profiles" / (name + ".json")); }

std::string parse_error(const json::Json& doc) {
  try {
    sim::parse_profile(doc, "p.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// digits_cnn on the AGX Orin's cpu, gpu and npu (loaded once: ONNX import of ten variants).
struct Digits {
  zoo::TaskZoo z = zoo::load_task(kRoot / "models/zoo/digits_cnn");
  sim::SocProfile soc = sim::load_profile(kRoot / "sim/profiles/orin-agx.json");
  sim::TaskModel model = sim::task_model(z);
  estimator::AccuracyModel acc = estimator::fit_accuracy(z.manifest, true, 0.10).model;
  sim::SimRunner runner(int tasks = 1) const {
    return sim::SimRunner(std::vector<sim::TaskModel>(static_cast<std::size_t>(tasks), model), soc, {"cpu", "gpu", "npu"});
  }
  sim::ModelEstimator est(const sim::SimRunner& r) const {
    return sim::ModelEstimator(r, std::vector<estimator::AccuracyModel>(static_cast<std::size_t>(r.num_tasks()), acc));
  }
};
const Digits& digits() {
  static const Digits d;
  return d;
}

sim::BlockStats pruned_block(double sparsity, sim::Format f) {
  sim::BlockStats s;
  s.flops_dense = 1e7;
  s.flops_pruned = 2e9;
  s.sparsity = sparsity;
  s.pruned_elems = 1e5;
  s.pruned_nonzeros = (1 - sparsity) * 1e5;
  s.act_elems = 1e4;
  s.kernels = 3;
  s.format = f;
  s.ops = {"Conv", "Relu"};
  return s;
}

}  // namespace

// Every fitted profile committed (this machine's, the GPU machine's): it parses, says it is
// fitted, carries its measured blocks and engine overhead, and survives the writer.
TEST_CASE("Sim.FittedProfilesParse") {
  int n = 0;
  bool gpu = false;
  for (const auto& e : std::filesystem::directory_iterator(kRoot / "sim/profiles")) {
    const auto name = e.path().filename().string();
    if (name.rfind("fitted-", 0) != 0) continue;
    CAPTURE(name);
    const auto p = sim::load_profile(e.path());
    ++n;
    CHECK(p.fitted);
    CHECK(!p.measured_block_ms.empty());
    CHECK(p.engine.has_value());
    for (const auto& m : p.processors) gpu = gpu || m.kind == "gpu";
    const auto again = sim::parse_profile(sim::to_json(p), "<round trip>");
    CHECK(again.measured_block_ms.size() == p.measured_block_ms.size());
    CHECK(again.processors.size() == p.processors.size());
  }
  CHECK(n >= 2);
  CHECK(gpu);  // fitted-h200-cpu-gpu.json: the GPU machine's CPU group and H200 (session 22)
}

TEST_CASE("Sim.ShippedProfilesParse") {
  for (const char* n : {"orin-agx", "orin-nano", "core-ultra"}) {
    CAPTURE(n);
    const auto p = sim::load_profile(kRoot / "sim/profiles" / (std::string(n) + ".json"));
    CHECK(!p.sources.empty());
    const int npu = p.index_of("npu");
    REQUIRE(npu >= 0);
    const auto& m = p.processors[static_cast<std::size_t>(npu)];
    CHECK(m.kind == "npu");
    CHECK(m.dtypes == std::set<std::string>{"int8"});
    CHECK(!m.all_ops);
    // The writer and the reader agree.
    const auto again = sim::parse_profile(sim::to_json(p), "<round trip>");
    CHECK(again.processors.size() == p.processors.size());
    CHECK(again.processors[1].peak_f16 == p.processors[1].peak_f16);
  }
}

TEST_CASE("Sim.ProfileErrorsNameTheField") {
  auto doc = profile_doc("orin-agx");
  doc["processors"][2].erase("power_w");
  auto msg = parse_error(doc);
  CHECK(contains(msg, "p.json"));
  CHECK(contains(msg, "processors[2].power_w"));
  CHECK(contains(msg, "missing"));

  doc = profile_doc("orin-agx");
  doc["processors"][1]["memory_bandwidth_gbps"] = -5.0;
  msg = parse_error(doc);
  CHECK(contains(msg, "processors[1].memory_bandwidth_gbps"));
  CHECK(contains(msg, "non-negative"));

  doc = profile_doc("orin-agx");
  doc["processors"][0]["peak_gflops"]["int8"] = -1.0;
  CHECK(contains(parse_error(doc), "processors[0].peak_gflops.int8"));

  doc = profile_doc("orin-agx");
  doc["processors"][2]["ops"].push_back("FancyConv");
  msg = parse_error(doc);
  CHECK(contains(msg, "processors[2].ops["));
  CHECK(contains(msg, "unknown op 'FancyConv'"));

  doc = profile_doc("orin-agx");
  doc["processors"][1]["sparse_speedup"]["8:16"] = doc["processors"][1]["sparse_speedup"]["2:4"];
  CHECK(contains(parse_error(doc), "processors[1].sparse_speedup.8:16"));

  doc = profile_doc("orin-agx");
  doc["schema_version"] = 7;
  CHECK(contains(parse_error(doc), "schema_version"));

  doc = profile_doc("orin-agx");
  doc.erase("soc");
  CHECK(contains(parse_error(doc), "soc"));
  CHECK(parse_error(profile_doc("orin-agx")).empty());
}

TEST_CASE("Sim.NpuRejectsFloatBlocks") {
  const auto& d = digits();
  auto r = d.runner();
  const auto est = d.est(r);
  const int base = d.z.base(), i8 = d.z.manifest.variant_index("int8");
  const int npu = 2;
  for (int b = 0; b < r.num_blocks(0); ++b) {
    CAPTURE(b);
    const auto& c = r.cost(0, b, base, npu);
    CHECK(!c.supported);
    CHECK(contains(c.why, "INT8"));
    CHECK(r.cost(0, b, i8, npu).supported);
    CHECK(r.cost(0, b, base, 0).supported);
    CHECK(!est.can_place(0, b, base, npu));
    CHECK(est.can_place(0, b, i8, npu));
    CHECK(std::isinf(est.block_latency_ms(0, b, base, npu)));
    const StitchedVariant plain{std::vector<int>(static_cast<std::size_t>(r.num_blocks(0)), base)};
    try {
      r.simulate(0, plain, b, npu);
      FAIL("a float block ran on the NPU");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::device);
    }
    CHECK_THROWS_AS(r.load(0, b, base, npu), Error);
  }
  // The planner sees infinite latency there.
  SystemState s;
  s.slos = {Slo{}};
  const auto bt = optimizer::block_table(est, 0, s);
  CHECK(std::isinf(bt.ms(0, base, npu)));
  CHECK(std::isfinite(bt.ms(0, i8, npu)));
  // A fixed op set: an INT8 block with Softmax is not on the DLA's list, but on Intel's NPU's.
  sim::BlockStats attn = pruned_block(0.5, sim::Format::dense);
  attn.int8 = true;
  attn.ops = {"MatMul", "Softmax", "QuantizeLinear", "DequantizeLinear"};
  const auto ultra = sim::load_profile(kRoot / "sim/profiles/core-ultra.json");
  CHECK(!sim::block_cost(d.soc, d.soc.processors[2], attn).supported);
  CHECK(sim::block_cost(ultra, ultra.processors[2], attn).supported);
}

TEST_CASE("Sim.CostMonotoneInSparsity") {
  const auto& soc = digits().soc;
  const auto& cpu = soc.processors[0];  // unstructured speed-up rises with sparsity
  double prev = std::numeric_limits<double>::infinity();
  for (double s : {0.5, 0.6, 0.7, 0.8, 0.9, 0.95}) {
    const double ms = sim::block_cost(soc, cpu, pruned_block(s, sim::Format::unstructured)).ms;
    CHECK(ms <= prev);
    prev = ms;
  }
  CHECK(sim::block_cost(soc, cpu, pruned_block(0.95, sim::Format::unstructured)).ms <
        0.6 * sim::block_cost(soc, cpu, pruned_block(0.5, sim::Format::unstructured)).ms);
  // Where the sparse kernel loses (GPU, unstructured 50 %), the layer runs dense: never slower.
  const auto& gpu = soc.processors[1];
  CHECK(sim::block_cost(soc, gpu, pruned_block(0.5, sim::Format::unstructured)).ms ==
        doctest::Approx(sim::block_cost(soc, gpu, pruned_block(0.5, sim::Format::dense)).ms));
  CHECK(sim::block_cost(soc, gpu, pruned_block(0.5, sim::Format::semi24)).ms <
        sim::block_cost(soc, gpu, pruned_block(0.5, sim::Format::dense)).ms);
  // The model follows the curve, not sparsity itself: a curve that falls makes it slower.
  auto odd = cpu;
  odd.sparse[sim::Format::unstructured] = sim::SpeedupCurve{{0.5, 0.9}, {6.0, 2.0}};
  CHECK(sim::block_cost(soc, odd, pruned_block(0.9, sim::Format::unstructured)).ms >
        sim::block_cost(soc, odd, pruned_block(0.5, sim::Format::unstructured)).ms);
}

TEST_CASE("Sim.DesRunAccountsEveryRequest") {
  const auto& d = digits();
  auto r = d.runner(2);
  const auto est = d.est(r);
  std::vector<runtime::ProcessorSpec> procs{{"cpu", runtime::ProcessorKind::cpu}, {"gpu", runtime::ProcessorKind::gpu},
                                            {"npu", runtime::ProcessorKind::npu}};
  Slo a, b;
  a.deadline_ms = 2, a.rate_rps = 3000, a.min_accuracy_pct = 90;
  b.deadline_ms = 1, b.rate_rps = 3000, b.criticality = 3;
  runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, runtime::LoadAllPreloader, runtime::DiscreteEvent>
      eng(r, est, optimizer::SparsityAware{}, procs, {{"a", a}, {"b", b}});
  eng.schedule(runtime::poisson_arrivals({a, b}, 1000, 3));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  CHECK(m.overall.issued > 5000);
  CHECK(m.overall.accounted == m.overall.issued);
  std::uint64_t sum = 0;
  for (auto s : runtime::kEndStates) sum += m.overall.count(s);
  CHECK(sum == m.overall.issued);
  const auto served = m.overall.count(runtime::RequestState::on_time) + m.overall.count(runtime::RequestState::late) +
                      m.overall.count(runtime::RequestState::below_accuracy);
  CHECK(served > 0);
  CHECK(r.blocks_run() >= served * static_cast<std::uint64_t>(r.num_blocks(0)));
  CHECK(r.energy_j() > 0);
  CHECK(m.processors[0].busy_ms + m.processors[1].busy_ms + m.processors[2].busy_ms > 0);
}

TEST_CASE("Sim.EnergyConstraintRespected") {
  const auto& d = digits();
  // A power-hungry CPU: the fastest processor for this small model is then not the frugal one.
  auto soc = d.soc;
  soc.processors[0].active_w = 200;
  sim::SimRunner r({d.model}, soc, {"cpu", "gpu", "npu"});
  const sim::ModelEstimator est(r, {d.acc});
  Slo slo;
  slo.deadline_ms = 50, slo.rate_rps = 200, slo.min_accuracy_pct = 90;
  SystemState s;
  s.slos = {slo};
  // Plain variants only: the whole-task options on one processor are then all candidates.
  optimizer::SparsityAwareNoStitching opt;
  const auto p0 = opt.plan(s, est).tasks[0];
  const double e0 = est.energy_j(0, p0.variant, p0.placement);
  // The least energy of any plain variant meeting the floor, over every placement.
  const int B = r.num_blocks(0), P = r.num_processors();
  double emin = std::numeric_limits<double>::infinity();
  for (int v = 0; v < r.num_variants(0); ++v) {
    const StitchedVariant sv{std::vector<int>(static_cast<std::size_t>(B), v)};
    if (est.accuracy_pct(0, sv) < slo.min_accuracy_pct) continue;
    int combos = 1;
    for (int b = 0; b < B; ++b) combos *= P;
    for (int k = 0; k < combos; ++k) {
      Placement pl;
      for (int b = 0, x = k; b < B; ++b, x /= P) pl.processor.push_back(x % P);
      emin = std::min(emin, est.energy_j(0, sv, pl));
    }
  }
  REQUIRE(emin < 0.9 * e0);  // the unconstrained plan is not already the frugal one
  slo.max_energy_j = 0.5 * (emin + e0);
  s.slos = {slo};
  const auto p1 = opt.plan(s, est).tasks[0];
  CHECK(p1.meets_slo);
  CHECK(est.energy_j(0, p1.variant, p1.placement) <= *slo.max_energy_j);
  CHECK(p1.predicted_accuracy_pct >= slo.min_accuracy_pct);
  // Below what any option needs: planned as a violation, with the reason.
  slo.max_energy_j = 0.5 * emin;
  s.slos = {slo};
  const auto p2 = opt.plan(s, est).tasks[0];
  CHECK(!p2.meets_slo);
  // And in a DiscreteEvent run the energy spent per served request stays within the limit.
  slo.max_energy_j = 0.5 * (emin + e0);
  r.reset();
  runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, runtime::LoadAllPreloader, runtime::DiscreteEvent>
      eng(r, est, optimizer::SparsityAware{}, {{"cpu", runtime::ProcessorKind::cpu}, {"gpu", runtime::ProcessorKind::gpu},
                                               {"npu", runtime::ProcessorKind::npu}},
          {{"digits", slo}});
  eng.schedule(runtime::poisson_arrivals({slo}, 1000, 5));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  const auto served = m.overall.count(runtime::RequestState::on_time) + m.overall.count(runtime::RequestState::late);
  REQUIRE(served > 100);
  CHECK(r.energy_j(0) / static_cast<double>(served) <= *slo.max_energy_j * 1.001);
}

TEST_CASE("Sim.PowerLimitOverAWindow") {
  // The per-request energy a power limit allows: tighter for a shorter window (more Poisson
  // variation in its request count), never looser than max_energy_j.
  Slo w;
  w.rate_rps = 100;
  w.max_power_w = 2.0;
  w.power_window_s = 10;
  const double long_window = *optimizer::energy_limit_j(w);
  CHECK(long_window < 2.0 / 100);
  CHECK(long_window > 0.9 * 2.0 / 100);
  w.power_window_s = 0.1;
  CHECK(*optimizer::energy_limit_j(w) < 0.7 * long_window);
  w.max_energy_j = 1e-3;
  CHECK(*optimizer::energy_limit_j(w) == doctest::Approx(1e-3));
  CHECK(!optimizer::energy_limit_j(Slo{}));

  const auto& d = digits();
  auto soc = d.soc;
  soc.processors[0].active_w = 200;  // the fastest processor is then not the frugal one
  sim::SimRunner r({d.model}, soc, {"cpu", "gpu", "npu"});
  const sim::ModelEstimator est(r, {d.acc});
  Slo slo;
  slo.deadline_ms = 50, slo.rate_rps = 200, slo.min_accuracy_pct = 90;
  SystemState s;
  s.slos = {slo};
  optimizer::SparsityAwareNoStitching opt;
  const auto p0 = opt.plan(s, est).tasks[0];
  const double e0 = est.energy_j(0, p0.variant, p0.placement);
  const int B = r.num_blocks(0), P = r.num_processors();
  double emin = std::numeric_limits<double>::infinity();  // the most frugal plain option meeting the floor
  for (int v = 0; v < r.num_variants(0); ++v) {
    const StitchedVariant sv{std::vector<int>(static_cast<std::size_t>(B), v)};
    if (est.accuracy_pct(0, sv) < slo.min_accuracy_pct) continue;
    for (int p = 0; p < P; ++p) emin = std::min(emin, est.energy_j(0, sv, Placement{std::vector<int>(static_cast<std::size_t>(B), p)}));
  }
  REQUIRE(emin < 0.9 * e0);
  // A power limit between what the unconstrained plan draws and what the frugal one needs.
  const double lim = 0.5 * (emin + e0);
  const double n = slo.rate_rps * 1.0, per_j = 1.0 / (n + 2.33 * std::sqrt(n));
  slo.max_power_w = lim / per_j;
  slo.power_window_s = 1.0;
  s.slos = {slo};
  CHECK(*optimizer::energy_limit_j(slo) == doctest::Approx(lim));
  const auto p1 = opt.plan(s, est).tasks[0];
  CHECK(p1.meets_slo);
  const double e1 = est.energy_j(0, p1.variant, p1.placement);
  CHECK(e1 <= lim * 1.0001);
  CHECK(e1 * slo.rate_rps < *slo.max_power_w);  // the mean power is within the limit
  CHECK((p1.placement.processor != p0.placement.processor || p1.variant.choice != p0.variant.choice));
  // A limit no option can meet: planned as a violation, the reason names the power limit.
  slo.max_power_w = 1e-6;
  s.slos = {slo};
  const auto p2 = opt.plan(s, est).tasks[0];
  CHECK(!p2.meets_slo);
  CHECK(contains(p2.reason, "W over"));
}

TEST_CASE("Sim.ScenarioPowerFields") {
  auto doc = json::load(kRoot / "sim/scenarios/sim-ar-8.json");
  doc["tasks"][0]["max_power_w"] = 1.5;
  doc["tasks"][0]["power_window_s"] = 0.5;
  const auto sc = scenario::parse_scenario(doc, "s.json");
  REQUIRE(sc.tasks[0].max_power_w);
  CHECK(*sc.tasks[0].max_power_w == 1.5);
  CHECK(sc.tasks[0].power_window_s == 0.5);
  CHECK(sc.tasks[1].power_window_s == 1.0);
  auto err = [](const json::Json& j) {
    try {
      scenario::parse_scenario(j, "s.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto bad = doc;
  bad["tasks"][0]["max_power_w"] = -1.0;
  CHECK(contains(err(bad), "tasks[0].max_power_w"));
  bad = doc;
  bad["tasks"][1]["power_window_s"] = 2.0;  // without max_power_w
  CHECK(contains(err(bad), "tasks[1].power_window_s"));
  bad = doc;
  bad["tasks"][0]["power_window_s"] = 0.0;
  CHECK(contains(err(bad), "tasks[0].power_window_s"));
}

TEST_CASE("Sim.DeviceBudgetHeldInADesRun") {
  // The Orin with 40 % of the unconstrained plan's bytes on its busiest processor as that
  // device's own memory: the plan and the preloader keep its blocks within it, and every
  // request is accounted.
  const auto& d = digits();
  Slo a, b;
  a.deadline_ms = 3, a.rate_rps = 800, a.min_accuracy_pct = 90;
  b.deadline_ms = 2, b.rate_rps = 800, b.criticality = 3;
  auto run = [&](std::size_t dev, std::size_t budget) {
    auto r = d.runner(2);
    const auto est = d.est(r);
    std::vector<runtime::ProcessorSpec> procs{{"cpu", runtime::ProcessorKind::cpu}, {"gpu", runtime::ProcessorKind::gpu},
                                              {"npu", runtime::ProcessorKind::npu}};
    procs.at(dev).memory_budget_bytes = budget;
    runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, preloader::Hotness, runtime::DiscreteEvent> eng(
        r, est, optimizer::SparsityAware{}, procs, {{"a", a}, {"b", b}}, {}, preloader::Hotness(preloader::HotnessOptions{.background = false}));
    eng.schedule(runtime::poisson_arrivals({a, b}, 1000, 5));
    REQUIRE(eng.drain());
    return eng.metrics();
  };
  const auto free = run(0, 0);
  std::size_t dev = 0;
  for (std::size_t p = 1; p < free.processors.size(); ++p)
    if (free.processors[p].peak_resident_bytes > free.processors[dev].peak_resident_bytes) dev = p;
  const std::size_t peak = free.processors[dev].peak_resident_bytes;
  REQUIRE(peak > 0);
  const auto budget = static_cast<std::size_t>(0.4 * static_cast<double>(peak));
  const auto m = run(dev, budget);
  INFO("device " << free.processors[dev].name << ": " << peak << " B unconstrained, budget " << budget);
  CHECK(m.processors[dev].memory_budget_bytes == budget);
  CHECK(m.processors[dev].peak_resident_bytes <= budget);
  CHECK_FALSE(m.budget_exceeded);
  CHECK(m.overall.accounted == m.overall.issued);
  CHECK(m.overall.count(runtime::RequestState::on_time) > 0);

  // The scenario field: per processor, and a clear error naming it when it is bad.
  auto doc = json::load(kRoot / "sim/scenarios/sim-ar-8.json");
  doc["processors"][1]["memory_budget_bytes"] = 65536;
  CHECK(scenario::parse_scenario(doc, "s.json").processors[1].memory_budget_bytes == 65536);
  doc["processors"][1]["memory_budget_bytes"] = -1;
  try {
    scenario::parse_scenario(doc, "s.json");
    FAIL("a negative device budget was accepted");
  } catch (const Error& e) {
    CHECK(contains(e.what(), "processors[1].memory_budget_bytes"));
  }
}
