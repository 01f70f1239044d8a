// The simulator's model of the engine's own overhead (sim/engine_overhead.hpp): the profile
// section and its errors, the quantile distribution, the DES adding it deterministically, and
// the measurement through the real threaded Engine.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <filesystem>

#include "sparseloom/estimator/from_zoo.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "sparseloom/preloader/preloader.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/sim/estimator.hpp"
#include "sparseloom/sim/measure_overhead.hpp"
#include "sparseloom/sim/profile.hpp"
#include "sparseloom/sim/sim_runner.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

using namespace sparseloom;
namespace fs = std::filesystem;

namespace {

const fs::path kRoot = SPARSELOOM_SOURCE_DIR;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

json::Json with_overhead() {
  auto doc = json::load(kRoot / "sim/profiles/orin-agx.json");
  sim::EngineOverhead eo;
  eo.dispatch_ms = sim::Quantiles::of({0.01, 0.02, 0.03, 0.05, 0.4});
  eo.handoff_ms = sim::Quantiles::constant(0.02);
  eo.continue_ms = sim::Quantiles::constant(0.001);
  eo.block_time_factor = sim::Quantiles::of({1.0, 1.2, 1.5, 3.0});
  eo.shared_core_slowdown = 1.3;
  doc["engine_overhead"] = sim::to_json(eo);
  return doc;
}

std::string parse_error(const json::Json& doc) {
  try {
    sim::parse_profile(doc, "p.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

struct Digits {
  zoo::TaskZoo z = zoo::load_task(kRoot / "models/zoo/digits_cnn");
  sim::TaskModel model = sim::task_model(z);
  estimator::AccuracyModel acc = estimator::fit_accuracy(z.manifest, true, 0.10).model;
};
const Digits& digits() {
  static const Digits d;
  return d;
}

// p50 and p99 latency of a 1 s DiscreteEvent run of digits_cnn at 200 rps on the profile's cpu.
std::pair<double, double> des_latency(const sim::SocProfile& soc, std::uint64_t seed) {
  const auto& d = digits();
  sim::SimRunner r({d.model}, soc, {"cpu"});
  r.reset(seed);
  const sim::ModelEstimator est(r, {d.acc});
  Slo slo;
  slo.deadline_ms = 50, slo.rate_rps = 200, slo.min_accuracy_pct = 90;
  runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, runtime::LoadAllPreloader, runtime::DiscreteEvent>
      eng(r, est, optimizer::SparsityAware{}, {{"cpu", runtime::ProcessorKind::cpu}}, {{"digits", slo}});
  eng.schedule(runtime::poisson_arrivals({slo}, 1000, 11));
  REQUIRE(eng.drain());
  const auto m = eng.metrics();
  REQUIRE(m.overall.count(runtime::RequestState::on_time) > 100);
  return {m.overall.p50_ms, m.overall.p99_ms};
}

}  // namespace

TEST_CASE("SimOverhead.QuantilesSampleTheirDistribution") {
  std::vector<double> xs;
  for (int i = 0; i <= 1000; ++i) xs.push_back(i * 0.001);  // uniform on [0, 1]
  const auto q = sim::Quantiles::of(xs);
  CHECK(q.q[0] == doctest::Approx(0.0));
  CHECK(q.median() == doctest::Approx(0.5));
  CHECK(q.q[7] == doctest::Approx(0.99));
  CHECK(q.at(0.95) == doctest::Approx(0.95));
  CHECK(q.at(0.3) == doctest::Approx(0.3));
  CHECK(q.mean() == doctest::Approx(0.5).epsilon(0.01));
  // Sampled by inverse CDF: the sample median lands near the distribution's.
  sim::SplitMix64 rng(3);
  std::vector<double> s;
  for (int i = 0; i < 4000; ++i) s.push_back(q.at(rng.uniform()));
  std::sort(s.begin(), s.end());
  CHECK(s[2000] == doctest::Approx(0.5).epsilon(0.05));
  CHECK(sim::Quantiles::of({}).at(0.7) == 0.0);
}

TEST_CASE("SimOverhead.ProfileSectionRoundTripsAndErrorsNameTheField") {
  const auto p = sim::parse_profile(with_overhead(), "p.json");
  REQUIRE(p.engine);
  CHECK(p.engine->shared_core_slowdown == 1.3);
  CHECK(p.engine->dispatch_ms.q[8] == doctest::Approx(0.4));
  const auto again = sim::parse_profile(sim::to_json(p), "<round trip>");
  REQUIRE(again.engine);
  CHECK(again.engine->block_time_factor.q == p.engine->block_time_factor.q);
  // The published profiles carry none: an ideal engine; the committed fit of this machine has one.
  CHECK(!sim::load_profile(kRoot / "sim/profiles/orin-agx.json").engine);
  const auto fitted = sim::load_profile(kRoot / "sim/profiles/fitted-amd-epyc.json");
  REQUIRE(fitted.engine);
  CHECK(fitted.engine->dispatch_ms.median() > 0);
  // In the engine the first block also pays for its input and a cold cache: never faster than profiled.
  CHECK(sim::engine_block_ms(*fitted.engine, 0.05, sim::BlockPosition::first) > 0.05);
  CHECK(fitted.engine->block_time_factor.median() > 0.5);
  CHECK(!fitted.measured_block_ms.empty());

  auto doc = with_overhead();
  doc["engine_overhead"].erase("handoff_ms");
  auto msg = parse_error(doc);
  CHECK(contains(msg, "engine_overhead.handoff_ms"));
  CHECK(contains(msg, "missing"));

  doc = with_overhead();
  doc["engine_overhead"]["dispatch_ms"].erase("p99");
  CHECK(contains(parse_error(doc), "engine_overhead.dispatch_ms.p99"));

  doc = with_overhead();
  doc["engine_overhead"]["continue_ms"]["p50"] = -0.5;
  msg = parse_error(doc);
  CHECK(contains(msg, "engine_overhead.continue_ms.p50"));
  CHECK(contains(msg, "non-negative"));

  doc = with_overhead();
  doc["engine_overhead"]["dispatch_ms"]["p90"] = 0.0;  // below p75
  CHECK(contains(parse_error(doc), "must not decrease"));

  doc = with_overhead();
  doc["engine_overhead"]["shared_core_slowdown"] = 0.5;
  CHECK(contains(parse_error(doc), "engine_overhead.shared_core_slowdown"));

  doc = with_overhead();
  doc["engine_overhead"]["stall_probability"] = 1.5;
  CHECK(contains(parse_error(doc), "engine_overhead.stall_probability"));

  doc = with_overhead();
  doc["engine_overhead"].erase("stall_ms");
  CHECK(contains(parse_error(doc), "engine_overhead.stall_ms"));

  doc = with_overhead();
  doc["engine_overhead"]["version"] = 4;
  CHECK(contains(parse_error(doc), "engine_overhead.version"));

  doc = with_overhead();
  doc["engine_overhead"]["reuse_factor"] = json::Json::array({{{"up_to_ms", 2.0}, {"factor", 0.7}}, {{"up_to_ms", 1.0}, {"factor", 1.1}}});
  CHECK(contains(parse_error(doc), "engine_overhead.reuse_factor[1].up_to_ms"));

  doc = with_overhead();
  doc["engine_overhead"]["reuse_factor"] = json::Json::array({{{"up_to_ms", 2.0}, {"factor", 0.0}}});
  CHECK(contains(parse_error(doc), "engine_overhead.reuse_factor[0].factor"));

  // Version 2 (before reuse_factor): read without it.
  doc = with_overhead();
  doc["engine_overhead"]["version"] = 2;
  doc["engine_overhead"]["reuse_factor"] = json::Json::array({{{"up_to_ms", 2.0}, {"factor", 0.7}}});
  const auto v2 = sim::parse_profile(doc, "v2.json");
  REQUIRE(v2.engine);
  CHECK(v2.engine->reuse_factor.empty());

  doc = with_overhead();
  doc["engine_overhead"].erase("block_scale");
  CHECK(contains(parse_error(doc), "engine_overhead.block_scale"));

  doc = with_overhead();
  doc["engine_overhead"]["block_added_ms"].erase("last");
  CHECK(contains(parse_error(doc), "engine_overhead.block_added_ms.last"));

  doc = with_overhead();
  doc["engine_overhead"]["block_added_ms"]["first"] = -1.0;
  CHECK(contains(parse_error(doc), "engine_overhead.block_added_ms.first"));

  // Version 1 (before scale and fixed costs): read as the factor alone.
  doc = with_overhead();
  doc["engine_overhead"]["version"] = 1;
  doc["engine_overhead"].erase("block_scale");
  doc["engine_overhead"].erase("block_added_ms");
  const auto v1 = sim::parse_profile(doc, "v1.json");
  REQUIRE(v1.engine);
  CHECK(v1.engine->block_scale == 1.0);
  CHECK(sim::engine_block_ms(*v1.engine, 0.2, sim::BlockPosition::first) == 0.2);

  doc = with_overhead();
  doc["engine_overhead"].erase("version");
  CHECK(contains(parse_error(doc), "engine_overhead.version"));
}

TEST_CASE("SimOverhead.DesAddsItDeterministically") {
  const auto ideal = sim::load_profile(kRoot / "sim/profiles/orin-agx.json");
  auto soc = ideal;
  sim::EngineOverhead eo;
  eo.dispatch_ms = sim::Quantiles::constant(0.3);
  eo.handoff_ms = sim::Quantiles::constant(0.3);
  eo.continue_ms = sim::Quantiles::constant(0.0);
  soc.engine = eo;
  const auto [p50_ideal, p99_ideal] = des_latency(ideal, 1);
  const auto [p50, p99] = des_latency(soc, 1);
  // At 200 rps the cpu is mostly idle: nearly every request pays the dispatch once.
  CHECK(p50 - p50_ideal == doctest::Approx(0.3).epsilon(0.05));
  // A heavy-tailed block-time factor moves the tail, and the same seed gives the same run.
  soc.engine = sim::EngineOverhead{};
  soc.engine->block_time_factor = sim::Quantiles::of({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 6});
  const auto a = des_latency(soc, 7), b = des_latency(soc, 7), c = des_latency(soc, 8);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a.first == doctest::Approx(p50_ideal).epsilon(0.05));
  CHECK(a.second > p99_ideal * 1.3);
  CHECK(p99 > p99_ideal);
  // Stalls: added time on a share of blocks; p50 stays, the tail grows by about the stall.
  soc.engine = sim::EngineOverhead{};
  soc.engine->stall_probability = 0.05;
  soc.engine->stall_ms = sim::Quantiles::constant(4.0);
  const auto st = des_latency(soc, 7);
  CHECK(st.first == doctest::Approx(p50_ideal).epsilon(0.05));
  CHECK(st.second > p99_ideal + 3.5);
}

TEST_CASE("SimOverhead.MeasuredThroughTheThreadedEngine") {
  const auto s = sim::measure_engine_overhead(20, 0.5, 1.5);
  CHECK(s.dispatch_ms.size() == 40);
  CHECK(s.continue_ms.size() == 20);
  CHECK(s.handoff_ms.size() == 20);
  for (double x : s.dispatch_ms) CHECK(x >= 0);
  // A hand-off wakes another worker; a continuation on one worker does not: it is the cheaper.
  CHECK(sim::Quantiles::of(s.continue_ms).median() <= sim::Quantiles::of(s.handoff_ms).median());
  // Every request waits for a worker to wake up: some time, but far below the pauses.
  CHECK(sim::Quantiles::of(s.dispatch_ms).median() > 0);
  CHECK(sim::Quantiles::of(s.dispatch_ms).median() < 50);
}

TEST_CASE("SimOverhead.WindowedPowerOfATask") {
  const auto& d = digits();
  const auto soc = sim::load_profile(kRoot / "sim/profiles/orin-agx.json");
  sim::SimRunner r({d.model}, soc, {"cpu"});
  const sim::ModelEstimator est(r, {d.acc});
  Slo slo;
  slo.deadline_ms = 50, slo.rate_rps = 200, slo.min_accuracy_pct = 90;
  runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, runtime::LoadAllPreloader, runtime::DiscreteEvent>
      eng(r, est, optimizer::SparsityAware{}, {{"cpu", runtime::ProcessorKind::cpu}}, {{"digits", slo}});
  // 1 s at 200 rps, then 1 s at 20 rps: the busiest 0.5 s window draws well above the mean.
  auto busy = runtime::poisson_arrivals({slo}, 1000, 4);
  Slo quiet = slo;
  quiet.rate_rps = 20;
  for (auto a : runtime::poisson_arrivals({quiet}, 1000, 5)) busy.push_back({a.time_ms + 1000, a.task});
  eng.schedule(busy);
  REQUIRE(eng.drain());
  const double mean = r.energy_j(0) / 2.0;
  REQUIRE(mean > 0);
  CHECK(r.max_window_power_w(0, 2.0) == doctest::Approx(mean).epsilon(0.03));
  CHECK(r.max_window_power_w(0, 0.5) > 1.5 * mean);
  CHECK(r.max_window_power_w(0, 0.5) < 2.0 * mean * 1.2);  // at most all of it in the busy second
  r.reset();
  CHECK(r.max_window_power_w(0, 1.0) == 0.0);
}

TEST_CASE("SimOverhead.BlockTimeFitRecoversScaleAndFixedCosts") {
  // In-engine = 1.2 x profiled + 0.04 / 0.005 / 0.015 ms by position, +-2 % noise, and one run
  // in eight preempted (x8): the fit works on per-block medians, so the tail does not move it.
  const std::array<double, 3> added{0.04, 0.005, 0.015};
  std::vector<sim::BlockTimeSample> xs;
  int group = 0;
  for (int pos = 0; pos < 3; ++pos)
    for (double prof : {0.01, 0.03, 0.1, 0.3}) {
      for (int i = 0; i < 16; ++i) {
        const double ms = (1.2 * prof + added[static_cast<std::size_t>(pos)]) * (1.0 + 0.02 * ((i % 3) - 1)) * (i % 8 == 7 ? 8.0 : 1.0);
        xs.push_back({static_cast<sim::BlockPosition>(pos), prof, ms, group});
      }
      ++group;
    }
  xs.push_back({sim::BlockPosition::middle, 0.5, 50.0, group});  // a group of one sample: too few, ignored
  sim::EngineOverhead e;
  sim::fit_block_time(e, xs);
  CHECK(e.block_scale == doctest::Approx(1.2).epsilon(0.02));
  for (std::size_t c = 0; c < 3; ++c) CHECK(e.block_added_ms[c] == doctest::Approx(added[c]).epsilon(0.1));
  CHECK(sim::engine_block_ms(e, 0.1, sim::BlockPosition::last) == doctest::Approx(0.135).epsilon(0.02));
  // Only the middle position measured: the others keep no fixed cost.
  std::vector<sim::BlockTimeSample> mid;
  for (const auto& x : xs)
    if (x.pos == sim::BlockPosition::middle) mid.push_back(x);
  sim::EngineOverhead m;
  sim::fit_block_time(m, mid);
  CHECK(m.block_added_ms[0] == 0.0);
  CHECK(m.block_added_ms[1] == doctest::Approx(0.005).epsilon(0.1));
  // One block size only: scale and fixed cost cannot be told apart, so nothing is fitted.
  std::vector<sim::BlockTimeSample> one;
  for (int i = 0; i < 8; ++i) one.push_back({sim::BlockPosition::middle, 0.1, 0.2, 0});
  sim::EngineOverhead o;
  sim::fit_block_time(o, one);
  CHECK(o.block_scale == 1.0);
  CHECK(o.block_added_ms[1] == 0.0);
  CHECK(sim::block_position(0, 5) == sim::BlockPosition::first);
  CHECK(sim::block_position(2, 5) == sim::BlockPosition::middle);
  CHECK(sim::block_position(4, 5) == sim::BlockPosition::last);
}

// A fitted profile's measured cold-load time is what a demand load stalls a request for in the
// discrete-event engine (the default, 0.5 ms per MiB, is a fraction of a millisecond here).
TEST_CASE("SimOverhead.MeasuredLoadTimesStallDemandLoads") {
  const auto& d = digits();
  auto stall = [&](bool measured) {
    auto doc = json::load(kRoot / "sim/profiles/orin-agx.json");
    doc["measured_blocks"] = json::Json::array();
    for (std::size_t b = 0; b < d.z.manifest.blocks.size(); ++b)
      for (const auto& v : d.z.manifest.variants) {
        json::Json e{{"task", d.model.name}, {"block", static_cast<int>(b)}, {"variant", v.name}, {"processor", "cpu"}, {"ms", 0.5}};
        if (measured) e["load_ms"] = 40.0;
        doc["measured_blocks"].push_back(std::move(e));
      }
    sim::SimRunner r({d.model}, sim::parse_profile(doc, "p.json"), {"cpu"});
    const sim::ModelEstimator est(r, {d.acc});
    Slo slo;
    slo.deadline_ms = 1000, slo.rate_rps = 50, slo.min_accuracy_pct = 90;
    runtime::Engine<sim::SimRunner, sim::ModelEstimator, optimizer::SparsityAware, preloader::OnDemandLru, runtime::DiscreteEvent>
        eng(r, est, optimizer::SparsityAware{}, {{"cpu", runtime::ProcessorKind::cpu}}, {{"digits", slo}}, {}, preloader::OnDemandLru{});
    eng.schedule(runtime::poisson_arrivals({slo}, 1000, 7));
    REQUIRE(eng.drain());
    return eng.metrics().overall;
  };
  const auto with = stall(true), without = stall(false);
  REQUIRE(with.load_stalls > 0);
  // Every demand load of a block costs 40 ms; a request may wait for several.
  CHECK(with.load_stall_ms >= 40.0 * static_cast<double>(with.load_stalls) - 1e-6);
  CHECK(without.load_stalls == with.load_stalls);
  CHECK(without.load_stall_ms < 5.0);
}

TEST_CASE("SimOverhead.PositionCostsInTheDes") {
  // With no other overhead and a factor of 1, block 0 takes its modelled time x scale plus the
  // first block's fixed cost, a middle block x scale plus the middle one's.
  const auto& d = digits();
  auto soc = sim::load_profile(kRoot / "sim/profiles/orin-agx.json");
  soc.engine = sim::EngineOverhead{};
  soc.engine->block_scale = 1.5;
  soc.engine->block_added_ms = {1.0, 0.25, 0.5};
  sim::SimRunner r({d.model}, soc, {"cpu"});
  StitchedVariant s;
  s.choice.assign(static_cast<std::size_t>(r.num_blocks(0)), d.model.base);
  const int last = r.num_blocks(0) - 1;
  CHECK(r.simulate(0, s, 0, 0, 0.0) == doctest::Approx(1.5 * r.cost(0, 0, d.model.base, 0).ms + 1.0));
  CHECK(r.simulate(0, s, 1, 0, 100.0) == doctest::Approx(1.5 * r.cost(0, 1, d.model.base, 0).ms + 0.25));
  CHECK(r.simulate(0, s, last, 0, 200.0) == doctest::Approx(1.5 * r.cost(0, last, d.model.base, 0).ms + 0.5));
}

TEST_CASE("SimOverhead.MeasuredBlocksReplaceTheRoofline") {
  const auto& d = digits();
  auto doc = json::load(kRoot / "sim/profiles/orin-agx.json");
  const auto roofline = sim::SimRunner({d.model}, sim::parse_profile(doc, "p.json"), {"cpu"});
  const std::string base = d.z.manifest.variants[static_cast<std::size_t>(d.model.base)].name;
  doc["measured_blocks"] = json::Json::array();
  doc["measured_blocks"].push_back(
      {{"task", d.model.name}, {"block", 1}, {"variant", base}, {"processor", "cpu"}, {"ms", 0.777}, {"resident_bytes", 123456}, {"load_ms", 42.5}});
  doc["measured_blocks"].push_back({{"task", "no_such_task"}, {"block", 0}, {"variant", base}, {"processor", "cpu"}, {"ms", 1.0}});
  const auto soc = sim::parse_profile(doc, "p.json");
  sim::SimRunner r({d.model}, soc, {"cpu"});
  CHECK(r.measured_blocks_used() == 1);
  CHECK(r.cost(0, 1, d.model.base, 0).ms == 0.777);
  CHECK(r.cost(0, 0, d.model.base, 0).ms == roofline.cost(0, 0, d.model.base, 0).ms);
  // Its measured resident bytes replace the manifest's stored bytes in memory (the runner's and
  // the estimator's); the other blocks keep theirs.
  CHECK(r.block_bytes(0, 1, d.model.base, 0) == 123456);
  CHECK(r.cost(0, 1, d.model.base, 0).load_ms == 42.5);
  CHECK(r.cost(0, 0, d.model.base, 0).load_ms < 0);  // not measured: the engine's default
  // What loads cost the engine: measured times summed, unmeasured blocks by their bytes; a block
  // already resident costs nothing; taking the loads clears them.
  r.take_loads();
  r.load(0, 1, d.model.base, 0);
  r.load(0, 0, d.model.base, 0);
  r.load(0, 1, d.model.base, 0);
  const auto c = r.take_loads();
  CHECK(c.ms == 42.5);
  CHECK(c.unmeasured_bytes == r.cost(0, 0, d.model.base, 0).weight_bytes);
  CHECK(c.blocks == 2);
  CHECK(c.total_ms(2.0) == doctest::Approx(42.5 + c.unmeasured_bytes / (1024.0 * 1024.0) * 2.0));
  CHECK(r.take_loads().ms == 0);
  // The run's total (the simulated preloader's load time) survives taking, and reset() clears it.
  CHECK(r.loads_total().ms >= 42.5);
  r.reset();
  CHECK(r.loads_total().blocks == 0);
  r.load(0, 1, d.model.base, 0);
  r.take_loads();
  CHECK(r.loads_total().ms == 42.5);
  CHECK(r.loads_total().blocks == 1);
  CHECK(r.cost(0, 0, d.model.base, 0).weight_bytes == roofline.cost(0, 0, d.model.base, 0).weight_bytes);
  // The estimator plans with the same time.
  const sim::ModelEstimator est(r, {d.acc});
  CHECK(est.block_latency_ms(0, 1, d.model.base, 0) == 0.777);
  // Round trip, and errors naming the entry.
  CHECK(sim::parse_profile(sim::to_json(soc), "<rt>").measured_block_ms == soc.measured_block_ms);
  CHECK(sim::parse_profile(sim::to_json(soc), "<rt>").measured_resident_bytes == soc.measured_resident_bytes);
  CHECK(sim::parse_profile(sim::to_json(soc), "<rt>").measured_load_ms == soc.measured_load_ms);
  auto bad = doc;
  bad["measured_blocks"][0]["processor"] = "tpu";
  auto msg = parse_error(bad);
  CHECK(contains(msg, "measured_blocks[0].processor"));
  CHECK(contains(msg, "no processor 'tpu'"));
  bad = doc;
  bad["measured_blocks"][1] = bad["measured_blocks"][0];
  CHECK(contains(parse_error(bad), "duplicate"));
  bad = doc;
  bad["measured_blocks"][0]["ms"] = -2.0;
  CHECK(contains(parse_error(bad), "measured_blocks[0].ms"));
  bad = doc;
  bad["measured_blocks"][0].erase("variant");
  CHECK(contains(parse_error(bad), "measured_blocks[0].variant"));
  bad = doc;
  bad["measured_blocks"][0]["engine_ms"] = 0.0;
  CHECK(contains(parse_error(bad), "measured_blocks[0].engine_ms"));
  bad = doc;
  bad["measured_blocks"][0]["resident_bytes"] = -1.0;
  CHECK(contains(parse_error(bad), "measured_blocks[0].resident_bytes"));
  bad = doc;
  bad["measured_blocks"][0]["load_ms"] = -3.0;
  CHECK(contains(parse_error(bad), "measured_blocks[0].load_ms"));

  // A block's in-engine median, where the fit ran it, replaces scale and fixed cost for it.
  auto with_engine = doc;
  with_engine["measured_blocks"][0]["engine_ms"] = 2.5;
  auto soc2 = sim::parse_profile(with_engine, "p.json");
  soc2.engine = sim::EngineOverhead{};
  soc2.engine->block_scale = 3.0;
  soc2.engine->block_added_ms = {1.0, 1.0, 1.0};
  CHECK(sim::parse_profile(sim::to_json(soc2), "<rt>").measured_engine_ms == soc2.measured_engine_ms);
  sim::SimRunner r2({d.model}, soc2, {"cpu"});
  StitchedVariant s;
  s.choice.assign(static_cast<std::size_t>(r2.num_blocks(0)), d.model.base);
  CHECK(r2.simulate(0, s, 1, 0, 10.0) == doctest::Approx(2.5));
  CHECK(r2.simulate(0, s, 2, 0, 20.0) == doctest::Approx(3.0 * r2.cost(0, 2, d.model.base, 0).ms + 1.0));
}

TEST_CASE("SimOverhead.ReuseFactorFit") {
  // A block that ran within 0.5 ms is at 0.7x its median, 2-3 ms after at 0.9x, from 50 ms on
  // (or never before) at 1.1x; 5-10 ms has too few samples and takes the step before it.
  std::vector<std::pair<double, double>> xs;
  for (int i = 0; i < 40; ++i) {
    const double wobble = 1.0 + 0.01 * ((i % 5) - 2);
    xs.push_back({0.2, 0.7 * wobble}), xs.push_back({2.5, 0.9 * wobble}), xs.push_back({80.0, 1.1 * wobble});
    xs.push_back({-1.0, 1.1 * wobble});
  }
  for (int i = 0; i < 5; ++i) xs.push_back({7.0, 3.0});
  xs.push_back({1.0, -1.0});  // not a ratio: ignored
  sim::EngineOverhead e;
  e.reuse_factor = sim::fit_reuse_factor(xs);
  CHECK(sim::reuse_multiplier(e, 0.1) == doctest::Approx(0.7));
  CHECK(sim::reuse_multiplier(e, 2.9) == doctest::Approx(0.9));
  CHECK(sim::reuse_multiplier(e, 7.0) == doctest::Approx(0.9));    // the sparse step: the one before
  CHECK(sim::reuse_multiplier(e, 0.7) == doctest::Approx(0.7));    // no samples: the one before
  CHECK(sim::reuse_multiplier(e, 500.0) == doctest::Approx(1.1));  // beyond the last step
  CHECK(sim::reuse_multiplier(e, -1.0) == doctest::Approx(1.1));   // never ran
  CHECK(sim::reuse_multiplier(sim::EngineOverhead{}, 0.1) == 1.0);
  // The profile section round-trips them.
  auto doc = with_overhead();
  doc["engine_overhead"]["reuse_factor"] = sim::to_json(e)["reuse_factor"];
  const auto p = sim::parse_profile(doc, "p.json");
  REQUIRE(p.engine);
  CHECK(p.engine->reuse_factor.size() == e.reuse_factor.size());
  CHECK(sim::reuse_multiplier(*p.engine, 2.5) == doctest::Approx(0.9));
}

TEST_CASE("SimOverhead.ReuseInTheDes") {
  const auto& d = digits();
  auto soc = sim::load_profile(kRoot / "sim/profiles/orin-agx.json");
  soc.engine = sim::EngineOverhead{};
  soc.engine->reuse_factor = {{1.0, 0.5}, {10.0, 1.0}};
  sim::SimRunner r({d.model}, soc, {"cpu"});
  StitchedVariant s;
  s.choice.assign(static_cast<std::size_t>(r.num_blocks(0)), d.model.base);
  const double m = r.cost(0, 1, d.model.base, 0).ms;
  // Never ran: the last step; again right after it ended: x0.5; long after: the last step.
  const double first = r.simulate(0, s, 1, 0, 0.0);
  CHECK(first == doctest::Approx(m));
  CHECK(r.simulate(0, s, 1, 0, first + 0.5) == doctest::Approx(0.5 * m));
  CHECK(r.simulate(0, s, 1, 0, 1000.0) == doctest::Approx(m));
  // Another variant of the block has its own history.
  StitchedVariant other = s;
  other.choice[1] = d.model.base == 0 ? 1 : 0;
  CHECK(r.simulate(0, other, 1, 0, 1000.0 + m + 0.1) == doctest::Approx(r.cost(0, 1, other.choice[1], 0).ms));
  r.reset(1);  // forgets when blocks ran
  CHECK(r.simulate(0, s, 1, 0, 0.0) == doctest::Approx(m));
}
