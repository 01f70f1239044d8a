#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "sparseloom/estimator/profiled.hpp"

using namespace sparseloom;
using namespace sparseloom::estimator;

namespace {
// A synthetic task whose true stitched accuracy has per-block drops and adjacent-pair
// interactions (what an additive model misses, STITCHING-NOTES).
struct Truth {
  int blocks, variants;
  std::vector<std::vector<double>> drop;       // [b][v]
  std::vector<std::vector<double>> pair;       // [b*V + a][c]
  double base = 90;
  double acc(const StitchedVariant& s) const {
    double a = base;
    for (int b = 0; b < blocks; ++b) a -= drop[b][s.choice[b]];
    for (int b = 0; b + 1 < blocks; ++b)
      if (s.choice[b] != s.choice[b + 1]) a -= pair[b * variants + s.choice[b]][s.choice[b + 1]];
    return a;
  }
};

Truth make_truth(int blocks, int variants, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  Truth t{blocks, variants, {}, {}};
  t.drop.assign(blocks, std::vector<double>(variants));
  for (int b = 0; b < blocks; ++b)
    for (int v = 1; v < variants; ++v) t.drop[b][v] = 4.0 * u(rng) * v / variants;
  t.pair.assign(static_cast<std::size_t>(blocks * variants), std::vector<double>(variants));
  for (auto& row : t.pair)
    for (auto& x : row) x = 1.5 * u(rng);
  return t;
}

AccuracyModel model_of(const Truth& t) {
  AccuracyModel m(t.blocks, t.variants, 0);
  std::vector<double> plain;
  for (int v = 0; v < t.variants; ++v) plain.push_back(t.acc({std::vector<int>(t.blocks, v)}));
  std::vector<std::vector<double>> single(t.blocks, std::vector<double>(t.variants));
  for (int b = 0; b < t.blocks; ++b)
    for (int v = 0; v < t.variants; ++v) {
      StitchedVariant s{std::vector<int>(t.blocks, 0)};
      s.choice[b] = v;
      single[b][v] = t.acc(s);
    }
  m.set_measurements(plain, single);
  return m;
}
// What the accuracy model is fitted from, measured on a synthetic `truth`: the plain variants,
// every single-block swap into variant 0, a pair-covering training sample of `train_n` stitches, and
// `held_out` random stitches kept out of training.
struct SyntheticMeasurements {
  std::vector<double> plain;
  std::vector<std::vector<double>> single;
  std::vector<AccuracySample> train;
  std::vector<StitchedVariant> held;
};
template <class F>
SyntheticMeasurements synthetic_measurements(int B, int V, const F& truth, int held_out, std::size_t train_n = 150) {
  SyntheticMeasurements m;
  for (int v = 0; v < V; ++v) m.plain.push_back(truth({std::vector<int>(B, v)}));
  m.single.assign(B, std::vector<double>(V));
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < V; ++v) {
      StitchedVariant s{std::vector<int>(B, 0)};
      s.choice[b] = v;
      m.single[b][v] = truth(s);
      if (!s.is_plain()) m.train.push_back({s, m.single[b][v]});
    }
  m.held = AccuracyModel::sample(B, V, static_cast<std::size_t>(held_out), SampleStrategy::random, 4);
  std::set<std::vector<int>> exclude;
  for (const auto& s : m.held) exclude.insert(s.choice);
  for (const auto& s : AccuracyModel::sample(B, V, train_n, SampleStrategy::pair_cover, 2, exclude)) m.train.push_back({s, truth(s)});
  return m;
}

}  // namespace

TEST_CASE("Estimator.Accuracy.InteractionsFittedFromASmallSample") {
  const Truth t = make_truth(4, 8, 7);
  AccuracyModel m = model_of(t);
  // Zero-shot misses the pair terms...
  const auto held = AccuracyModel::sample(4, 8, 300, SampleStrategy::random, 99);
  double zs_err = 0;
  for (const auto& s : held) zs_err += std::abs(m.zero_shot(s) - t.acc(s));
  zs_err /= static_cast<double>(held.size());
  // ...a pair-covering sample of ~6 % of the 4096-stitch space (plus the measured single swaps
  // and plain variants) recovers them.
  std::set<std::vector<int>> exclude;
  for (const auto& s : held) exclude.insert(s.choice);
  const auto fit = AccuracyModel::sample(4, 8, 250, SampleStrategy::pair_cover, 1, exclude);
  std::vector<AccuracySample> samples;
  for (const auto& s : fit) samples.push_back({s, t.acc(s)});
  for (int b = 0; b < 4; ++b)
    for (int v = 0; v < 8; ++v) {
      StitchedVariant s{std::vector<int>(4, 0)};
      s.choice[b] = v;
      samples.push_back({s, t.acc(s)});
    }
  m.fit(samples, 0.05);
  std::vector<double> pred, truth;
  double err = 0;
  for (const auto& s : held) {
    pred.push_back(m.predict(s));
    truth.push_back(t.acc(s));
    err += std::abs(pred.back() - truth.back());
  }
  err /= static_cast<double>(held.size());
  MESSAGE("zero-shot MAE " << zs_err << " pp, fitted MAE " << err << " pp, rho " << spearman(pred, truth));
  CHECK(zs_err > 1.0);
  CHECK(err < 0.25);
  CHECK(spearman(pred, truth) > 0.95);
  // Plain variants are measured, so they are exact.
  CHECK(m.predict({std::vector<int>(4, 3)}) == doctest::Approx(t.acc({std::vector<int>(4, 3)})));
}

TEST_CASE("Estimator.Accuracy.LogitAndSwitchTermsFitMultiplicativeDrops") {
  // Drops that compose in the odds (large drops do not add up past zero) plus a penalty on the
  // block after every switch that depends only on that block's variant: what the logit space
  // and the switch terms model and the pp-additive pair model only approximates.
  const int B = 5, V = 6;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::vector<double>> d(B, std::vector<double>(V)), sw(B, std::vector<double>(V));
  for (int b = 0; b < B; ++b)
    for (int v = 1; v < V; ++v) { d[b][v] = 0.8 * u(rng); sw[b][v] = 0.4 * u(rng); }
  auto truth = [&](const StitchedVariant& s) {
    double z = 2.0;  // logit of the base's 88 %
    for (int b = 0; b < B; ++b) {
      z -= d[b][s.choice[b]];
      if (b > 0 && s.choice[b] != s.choice[b - 1]) z -= sw[b][s.choice[b]];
    }
    return 100.0 / (1.0 + std::exp(-z));
  };
  const auto [plain, single, train, held] = synthetic_measurements(B, V, truth, 300);
  auto mae = [&](unsigned features) {
    AccuracyModel m(B, V, 0, features);
    m.set_measurements(plain, single);
    m.fit(train, 0.1);
    double e = 0;
    for (const auto& s : held) e += std::abs(m.predict(s) - truth(s));
    return e / static_cast<double>(held.size());
  };
  const double pairs = mae(Features::adjacent), rich = mae(Features::switch_terms | Features::logit);
  MESSAGE("pp pairs MAE " << pairs << " pp, logit + switch terms MAE " << rich << " pp");
  CHECK(rich < 0.6);
  CHECK(rich < 0.25 * pairs);
  CHECK(AccuracyModel(B, V, 0, Features::switch_terms | Features::skip_pairs).num_features() ==
        static_cast<std::size_t>(B * V + (B - 1) * V * V + 2 * B * V + (B - 2) * V * V));
}

// Drops that add up in a latent score but saturate through a steep S-shaped link (a stand-in
// for speech_kws): neither pp nor logit sums follow it; the isotonic calibration on top of the
// pp model must cut the error and keep the ranking and the plain variants exact.
TEST_CASE("Estimator.Accuracy.CalibrationFollowsASaturatingLink") {
  const int B = 4, V = 5;
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::vector<double>> d(B, std::vector<double>(V));
  for (int b = 0; b < B; ++b)
    for (int v = 1; v < V; ++v) d[b][v] = 2.5 * u(rng);
  auto truth = [&](const StitchedVariant& s) {
    double z = 4.0;
    for (int b = 0; b < B; ++b) z -= d[b][s.choice[b]];
    return 10.0 + 90.0 / (1.0 + std::exp(-z));  // 10 % chance floor
  };
  const auto [plain, single, train, held] = synthetic_measurements(B, V, truth, 200);
  auto fitted = [&](unsigned features) {
    AccuracyModel m(B, V, 0, features);
    m.set_measurements(plain, single);
    m.fit(train, 0.3);
    return m;
  };
  auto mae = [&](const AccuracyModel& m) {
    double e = 0;
    for (const auto& s : held) e += std::abs(m.predict(s) - truth(s));
    return e / static_cast<double>(held.size());
  };
  const auto raw = fitted(Features::adjacent), cal = fitted(Features::calibrated);
  MESSAGE("pp MAE " << mae(raw) << " pp, calibrated " << mae(cal) << " pp");
  CHECK(mae(cal) < 0.7 * mae(raw));
  // Monotone in the uncalibrated prediction: calibration never reorders two stitches.
  std::vector<std::pair<double, double>> pc;
  for (const auto& s : held) pc.emplace_back(raw.predict(s), cal.predict(s));
  std::sort(pc.begin(), pc.end());
  for (std::size_t i = 1; i < pc.size(); ++i) CHECK(pc[i].second >= pc[i - 1].second - 1e-9);
  for (int v = 0; v < V; ++v) CHECK(cal.predict({std::vector<int>(B, v)}) == plain[v]);
}

// Three heavily pruned blocks in a row cost more than their pairs say (what speech_kws shows):
// no pair term can express it, the boosted stage over drops and descriptors can.
TEST_CASE("Estimator.Accuracy.BoostedStageLearnsThreeBlockInteractions") {
  const int B = 5, V = 6;
  std::mt19937_64 rng(12);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::vector<double>> d(B, std::vector<double>(V));
  for (int b = 0; b < B; ++b)
    for (int v = 1; v < V; ++v) d[b][v] = 1.5 * u(rng) * v / V;
  auto heavy = [](int v) { return v >= 3; };
  auto truth = [&](const StitchedVariant& s) {
    double a = 90;
    for (int b = 0; b < B; ++b) a -= d[b][s.choice[b]];
    for (int b = 0; b + 2 < B; ++b)
      if (heavy(s.choice[b]) && heavy(s.choice[b + 1]) && heavy(s.choice[b + 2])) a -= 6;
    return a;
  };
  const auto [plain, single, train, held] = synthetic_measurements(B, V, truth, 300, 1500);
  std::vector<AccuracyModel::Descriptor> desc;
  for (int v = 0; v < V; ++v) desc.push_back({0.1 * v + (v >= 3 ? 0.3 : 0.0), 0, 0, 0});  // sparsity grows with v
  auto mae = [&](unsigned features) {
    AccuracyModel m(B, V, 0, features);
    m.set_measurements(plain, single);
    m.set_descriptors(desc);
    m.fit(train, 1.0);
    double e = 0;
    for (const auto& s : held) e += std::abs(m.predict(s) - truth(s));
    for (int v = 0; v < V; ++v) CHECK(m.predict({std::vector<int>(B, v)}) == plain[v]);  // plain variants exact
    return e / static_cast<double>(held.size());
  };
  const unsigned pairs = Features::switch_terms | Features::skip_pairs;
  const double ridge = mae(pairs), boosted = mae(pairs | Features::boosted);
  MESSAGE("ridge MAE " << ridge << " pp, + boosted trees " << boosted << " pp");
  CHECK(boosted < 0.5 * ridge);
  CHECK_THROWS_AS(AccuracyModel(B, V, 0).set_descriptors({}), Error);
}

TEST_CASE("Estimator.BoostedTrees.StepsAndProducts") {
  // y = 3 [x0 > 0.5] + 2 x1 x2 on uniform inputs, x3 pure noise: trees must find the step and
  // approximate the product; the same data fitted twice gives the same model.
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  auto f = [](const std::vector<double>& x) { return 3.0 * (x[0] > 0.5) + 2.0 * x[1] * x[2]; };
  std::vector<std::vector<double>> rows, test;
  std::vector<double> y;
  for (int i = 0; i < 3000; ++i) {
    rows.push_back({u(rng), u(rng), u(rng), u(rng)});
    y.push_back(f(rows.back()));
  }
  for (int i = 0; i < 500; ++i) test.push_back({u(rng), u(rng), u(rng), u(rng)});
  BoostedTrees a, b;
  a.fit(rows, y);
  b.fit(rows, y);
  double err = 0, spread = 0;
  for (const auto& x : test) {
    err += std::abs(a.predict(x) - f(x));
    spread += std::abs(f(x) - 2.0);  // ~ the error of predicting the mean
    CHECK(a.predict(x) == b.predict(x));
  }
  MESSAGE("boosted trees MAE " << err / 500 << " vs " << spread / 500 << " for the mean");
  CHECK(err < 0.1 * spread);
  // Too few samples for two leaves: no model, predicts 0. Bad shapes are errors.
  BoostedTrees tiny;
  tiny.fit({{1.0}, {2.0}}, {1.0, 2.0});
  CHECK(tiny.empty());
  CHECK(tiny.predict({1.5}) == 0.0);
  CHECK_THROWS_AS(tiny.fit({{1.0}, {2.0, 3.0}}, {1.0, 2.0}), Error);
  CHECK_THROWS_AS(tiny.fit({{1.0}}, {1.0, 2.0}), Error);
  CHECK_THROWS_AS(BoostedTrees(BoostOptions{.max_bins = 300}).fit({{1.0}}, {1.0}), Error);
}

TEST_CASE("Estimator.Accuracy.PairCoverSampleCoversEveryAdjacentPair") {
  const auto s = AccuracyModel::sample(3, 5, 60, SampleStrategy::pair_cover, 3);
  std::set<std::tuple<int, int, int>> seen;
  for (const auto& x : s) {
    CHECK_FALSE(x.is_plain());
    for (int b = 0; b < 2; ++b) seen.insert({b, x.choice[b], x.choice[b + 1]});
  }
  CHECK(seen.size() >= 2 * 25 - 5);  // all 50 (cut, pair) combinations but the plain-only ones
}

TEST_CASE("Estimator.Ridge.SolvesALeastSquaresProblem") {
  std::vector<std::vector<double>> x{{1, 0}, {0, 1}, {1, 1}, {2, 1}};
  std::vector<double> y{1, 2, 3, 4};  // y = 1*x0 + 2*x1
  const auto w = ridge(x, y, 1e-9);
  CHECK(w[0] == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(w[1] == doctest::Approx(2.0).epsilon(1e-6));
}

TEST_CASE("Estimator.Profiled.LatencyMemoryAndPersistence") {
  TaskProfile tp;
  tp.task = "t";
  tp.model_hash = "abc";
  // 2 blocks x 2 variants x 2 processors; variant 1 is faster on processor 1 only.
  tp.block = {{{{1, 1, 1, 5}, {2, 2, 2, 5}}, {{0.8, 1, 0.8, 5}, {0.2, 0.3, 0.2, 5}}},
              {{{3, 3, 3, 5}, {4, 4, 4, 5}}, {{2, 2, 2, 5}, {0, 0, 0, 0}}}};
  tp.bytes = {{100, 40}, {200, 50}};
  tp.transfer_ms = {0.5};
  tp.repair_ms = {0, 0.1};
  tp.repair_bytes = {0, 16};
  AccuracyModel am(2, 2, 0);
  am.set_measurements({90, 80}, {{90, 85}, {90, 86}});
  Profiled e({{"t", am, tp}}, {{"cpu", "cpu", "reference", "x", 1}, {"gpu", "gpu", "opencl", "y", 1}});
  CHECK_FALSE(e.can_place(0, 1, 1, 1));
  CHECK(e.latency_ms(0, {{1, 0}}, {{1, 0}}) == doctest::Approx(0.2 + 0.5 + 3 + 0.1));
  CHECK(e.memory_bytes(0, {{1, 0}}) == doctest::Approx(40 + 200 + 16));
  CHECK(e.accuracy_pct(0, {{1, 1}}) == doctest::Approx(80));
  const auto path = std::filesystem::temp_directory_path() / "sparseloom_profile_test.json";
  ProfileTable table{e.processors(), {tp}, 1.5};
  save(table, path);
  const auto back = load_profile(path);
  CHECK(back.tasks.at(0).block[0][1][1].median_ms == doctest::Approx(0.2));
  CHECK(back.processors.at(1).backend == "opencl");
  std::filesystem::remove(path);
}

// A block after a switch runs with its repair in the epilogue, which can cost more than the
// plain block (INT8 blocks on the cpu backend); the latency of a stitch takes that profile for
// switched blocks only, it survives the JSON round trip, and a misshapen one is a parse error.
TEST_CASE("Estimator.Profiled.RepairedPathAfterASwitch") {
  TaskProfile tp;
  tp.task = "t";
  tp.model_hash = "abc";
  tp.block = {{{{1, 1, 1, 5}}, {{2, 2, 2, 5}}}, {{{3, 3, 3, 5}}, {{4, 4, 4, 5}}}};
  tp.repaired = {{{{0, 0, 0, 0}}, {{0, 0, 0, 0}}}, {{{3.5, 3.5, 3.5, 5}}, {{0, 0, 0, 0}}}};
  tp.bytes = {{100, 40}, {200, 50}};
  tp.transfer_ms = {0};
  tp.repair_ms = {0, 0};
  tp.repair_bytes = {0, 0};
  AccuracyModel am(2, 2, 0);
  am.set_measurements({90, 80}, {{90, 85}, {90, 86}});
  Profiled e({{"t", am, tp}}, {{"cpu", "cpu", "cpu", "x", 1}});
  CHECK(e.latency_ms(0, {{0, 0}}, {{0, 0}}) == doctest::Approx(1 + 3));    // no switch: plain profiles
  CHECK(e.latency_ms(0, {{1, 0}}, {{0, 0}}) == doctest::Approx(2 + 3.5));  // switch into block 1 of variant 0
  CHECK(e.latency_ms(0, {{0, 1}}, {{0, 0}}) == doctest::Approx(1 + 4));    // not measured repaired: plain
  CHECK(e.block_latency_ms(0, 1, 0, 0) == doctest::Approx(3));
  const auto path = std::filesystem::temp_directory_path() / "sparseloom_profile_repaired_test.json";
  save(ProfileTable{e.processors(), {tp}, 0}, path);
  const auto back = load_profile(path);
  REQUIRE(back.tasks.at(0).repaired.size() == 2);
  CHECK(back.tasks.at(0).repaired[1][0][0].median_ms == doctest::Approx(3.5));
  auto doc = json::load(path);
  doc["tasks"][0]["latency_repaired"][1].erase(1);
  std::ofstream(path) << doc.dump();
  CHECK_THROWS_WITH_AS(load_profile(path), doctest::Contains("latency_repaired"), Error);
  std::filesystem::remove(path);
}
