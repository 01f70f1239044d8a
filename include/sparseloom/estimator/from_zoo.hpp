#pragma once
// Builds the accuracy side of the estimator from what the zoo measured: plain variants,
// single-block swaps into the base, and a fitting subset of the measured stitches. The rest of
// the measured stitches stay held out to report the estimator's error honestly.
#include <algorithm>
#include <random>
#include <vector>

#include "sparseloom/estimator/accuracy_model.hpp"
#include "sparseloom/zoo/manifest.hpp"

namespace sparseloom::estimator {

struct AccuracyFit {
  AccuracyModel model;
  std::vector<AccuracySample> fit, held_out;
  double fraction_profiled = 0;  // measured stitched variants used / stitched variants in the space
};

inline StitchedVariant stitch_of(const zoo::Manifest& m, const std::vector<std::string>& names) {
  StitchedVariant s;
  for (const auto& n : names) s.choice.push_back(m.variant_index(n));
  return s;
}

// Each variant's compression as the boosted stage of the accuracy model sees it.
inline std::vector<AccuracyModel::Descriptor> descriptors_of(const zoo::Manifest& m) {
  std::vector<AccuracyModel::Descriptor> d;
  for (const auto& v : m.variants)
    d.push_back({v.sparsity, v.int8 ? 1.0 : 0.0, v.kind.find("block") != std::string::npos ? 1.0 : 0.0,
                 v.kind.find("2:4") != std::string::npos ? 1.0 : 0.0});
  return d;
}

// fit_fraction: share of the task's stitched space whose measured accuracy the model may use
// (single swaps count towards it); the remaining measured stitches are held out.
inline AccuracyFit fit_accuracy(const zoo::Manifest& m, bool repair, double fit_fraction, std::uint64_t seed = 7,
                                double lambda = 2.0) {
  const int B = static_cast<int>(m.blocks.size()), V = static_cast<int>(m.variants.size()), base = m.variant_index(m.base);
  const auto& singles = repair ? m.single_swap_repair : m.single_swap;
  const auto& stitched = repair ? m.stitched_repair : m.stitched_no_repair;
  check(!singles.empty() && !stitched.empty(), ErrorCode::parse, m.task, "the manifest has no stitch check to fit on");
  std::vector<double> plain;
  for (const auto& v : m.variants) plain.push_back(v.accuracy_pct);
  std::vector<std::vector<double>> single(static_cast<std::size_t>(B), std::vector<double>(static_cast<std::size_t>(V)));
  for (int v = 0; v < V; ++v)
    for (int b = 0; b < B; ++b) single[b][v] = v == base ? plain[base] : singles.at(v).at(b);
  AccuracyFit f;
  f.model = AccuracyModel(B, V, base);
  f.model.set_measurements(plain, single);
  f.model.set_descriptors(descriptors_of(m));
  double space = 1;
  for (int b = 0; b < B; ++b) space *= V;
  space -= V;  // stitched variants exclude the plain ones
  const double singles_used = static_cast<double>(B * (V - 1));
  const auto budget = static_cast<std::size_t>(std::max(0.0, fit_fraction * space - singles_used));
  std::vector<std::size_t> order(stitched.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  // Never fit on more than half of the measured stitches: the rest is the held-out test.
  const std::size_t n_fit = std::min(budget, stitched.size() / 2);
  for (std::size_t k = 0; k < order.size(); ++k) {
    AccuracySample a{stitch_of(m, stitched[order[k]].variants), stitched[order[k]].accuracy_pct};
    (k < n_fit ? f.fit : f.held_out).push_back(std::move(a));
  }
  std::vector<AccuracySample> train = f.fit;
  for (int b = 0; b < B; ++b)
    for (int v = 0; v < V; ++v) {
      StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), base)};
      s.choice[b] = v;
      if (!s.is_plain()) train.push_back({s, single[b][v]});
    }
  f.model.fit(train, lambda);
  f.fraction_profiled = (singles_used + static_cast<double>(n_fit)) / space;
  return f;
}

struct AccuracyError {
  double mae_pp = 0, rank_corr = 0, zero_shot_mae_pp = 0;
  std::size_t n = 0;
};

inline AccuracyError evaluate(const AccuracyModel& model, const std::vector<AccuracySample>& held_out) {
  AccuracyError e;
  std::vector<double> pred, truth;
  for (const auto& a : held_out) {
    pred.push_back(model.predict(a.s));
    truth.push_back(a.accuracy_pct);
    e.mae_pp += std::abs(pred.back() - truth.back());
    e.zero_shot_mae_pp += std::abs(model.zero_shot(a.s) - truth.back());
  }
  e.n = held_out.size();
  if (e.n) {
    e.mae_pp /= static_cast<double>(e.n);
    e.zero_shot_mae_pp /= static_cast<double>(e.n);
    e.rank_corr = spearman(pred, truth);
  }
  return e;
}

// The manifest's measured stitches (with or without repair) as samples: the held-out truth.
inline std::vector<AccuracySample> manifest_stitches(const zoo::Manifest& m, bool repair) {
  std::vector<AccuracySample> out;
  for (const auto& r : repair ? m.stitched_repair : m.stitched_no_repair) out.push_back({stitch_of(m, r.variants), r.accuracy_pct});
  return out;
}

// A model holding the manifest's plain variants and single swaps (zero-shot ready), and those
// single swaps as training samples.
inline AccuracyModel zero_shot_model(const zoo::Manifest& m, bool repair, unsigned features,
                                     std::vector<AccuracySample>* singles_out = nullptr) {
  const int B = static_cast<int>(m.blocks.size()), V = static_cast<int>(m.variants.size()), base = m.variant_index(m.base);
  const auto& singles = repair ? m.single_swap_repair : m.single_swap;
  check(!singles.empty(), ErrorCode::parse, m.task, "the manifest has no single-swap check to fit on");
  std::vector<double> plain;
  for (const auto& v : m.variants) plain.push_back(v.accuracy_pct);
  std::vector<std::vector<double>> single(static_cast<std::size_t>(B), std::vector<double>(static_cast<std::size_t>(V)));
  for (int v = 0; v < V; ++v)
    for (int b = 0; b < B; ++b) single[b][v] = v == base ? plain[base] : singles.at(v).at(b);
  AccuracyModel model(B, V, base, features);
  model.set_measurements(plain, single);
  model.set_descriptors(descriptors_of(m));
  if (singles_out)
    for (int b = 0; b < B; ++b)
      for (int v = 0; v < V; ++v) {
        StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), base)};
        s.choice[b] = v;
        if (!s.is_plain()) singles_out->push_back({s, single[b][v]});
      }
  return model;
}

struct FitChoice {
  unsigned features = Features::adjacent;
  double lambda = 2.0;
  double cv_mae_pp = 0;  // mean absolute error over the folds of the fitting sample
};

// Fits on measured stitched samples (plus the manifest's plain variants and single swaps), with
// the feature set and ridge lambda chosen by k-fold cross-validation on `measured` alone: the
// held-out stitches never influence the choice.
inline AccuracyModel fit_cross_validated(const zoo::Manifest& m, bool repair, const std::vector<AccuracySample>& measured,
                                         const std::vector<unsigned>& feature_sets, const std::vector<double>& lambdas,
                                         int folds = 5, FitChoice* chosen = nullptr, std::uint64_t seed = 11) {
  check(!feature_sets.empty() && !lambdas.empty() && folds >= 2, ErrorCode::invalid_argument, "fit_cross_validated",
        "need a feature set, a lambda and >= 2 folds");
  std::vector<std::size_t> order(measured.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  FitChoice best;
  best.cv_mae_pp = -1;
  for (unsigned fs : feature_sets)
    for (double lambda : lambdas) {
      double err = 0;
      std::size_t n = 0;
      for (int k = 0; k < folds && measured.size() >= static_cast<std::size_t>(folds); ++k) {
        std::vector<AccuracySample> train, test;
        AccuracyModel model = zero_shot_model(m, repair, fs, &train);
        for (std::size_t i = 0; i < order.size(); ++i) (static_cast<int>(i % folds) == k ? test : train).push_back(measured[order[i]]);
        model.fit(train, lambda);
        for (const auto& a : test) { err += std::abs(model.predict(a.s) - a.accuracy_pct); ++n; }
      }
      const double mae = n ? err / static_cast<double>(n) : 0;
      if (best.cv_mae_pp < 0 || mae < best.cv_mae_pp) best = {fs, lambda, mae};
    }
  std::vector<AccuracySample> train;
  AccuracyModel model = zero_shot_model(m, repair, best.features, &train);
  train.insert(train.end(), measured.begin(), measured.end());
  model.fit(train, best.lambda);
  if (chosen) *chosen = best;
  return model;
}

}  // namespace sparseloom::estimator
