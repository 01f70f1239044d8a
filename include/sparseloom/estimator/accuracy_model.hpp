#pragma once
// Accuracy of any stitched variant of one task without measuring it (the paper's estimator,
// with STITCHING-NOTES' lesson that adjacent-block interactions matter):
//  1. zero-shot screening from single-block swaps into the base:
//       acc(s) ~ acc(base) - sum_b [acc(base) - single(b, s_b)]
//  2. a ridge model on the residual of (1) with per-(block, variant) terms and per-(cut,
//     variant pair) interaction terms, fitted on a small sample of measured stitches.
//     Optional cheap extras (Features): per-(block, variant) x "switch at its input cut" and
//     x "switch at its output cut" terms, and (block b, block b+2) variant-pair terms.
//  3. optionally (Features::calibrated) a monotone map from (2)'s output to accuracy, fitted
//     on the same samples by isotonic regression: where many drops meet (speech_kws), sums in
//     either space come out S-shaped against the measurements (too low under ~30 %, too high
//     at 40-60 %), and a monotone map removes that bias without touching the ranking.
//  4. optionally (Features::boosted) gradient-boosted trees on what (1)-(3) leave, over each
//     block's single-swap drop and its variant's compression (sparsity, INT8, block, 2:4;
//     set_descriptors): interactions of three and more blocks that pair terms cannot express.
//     Measured (bench/estimator, same samples): held-out MAE 0.45/0.39/0.63/0.71 -> 0.34/0.32/0.49/0.38 pp
//     on digits/resnet/ViT/speech.
// Plain variants are measured, so they are returned exactly.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "sparseloom/core/types.hpp"
#include "sparseloom/estimator/boosted_trees.hpp"
#include "sparseloom/estimator/linear_solve.hpp"

namespace sparseloom::estimator {

struct AccuracySample {
  StitchedVariant s;
  double accuracy_pct = 0;
};

enum class SampleStrategy { random, pair_cover };

// Feature sets of the residual model (bit flags; adjacent pairs are always on). logit: the
// zero-shot sum and the residual model work on logit(accuracy) instead of percentage points,
// so drops compose multiplicatively in the odds (large drops do not add up past zero).
// calibrated: step 3 above.
struct Features {
  enum : unsigned { adjacent = 0, switch_terms = 1, skip_pairs = 2, logit = 4, calibrated = 8, boosted = 16 };
};

class AccuracyModel {
 public:
  AccuracyModel() = default;
  AccuracyModel(int blocks, int variants, int base, unsigned features = Features::adjacent)
      : blocks_(blocks), variants_(variants), base_(base), features_(features) {
    single_.assign(static_cast<std::size_t>(blocks), std::vector<double>(static_cast<std::size_t>(variants), 0.0));
    plain_.assign(static_cast<std::size_t>(variants), 0.0);
  }

  int blocks() const { return blocks_; }
  int variants() const { return variants_; }
  unsigned features() const { return features_; }

  // plain[v]: measured accuracy of each plain variant; single[b][v]: the base with block b
  // taken from v (single[b][base] = plain[base]).
  void set_measurements(std::vector<double> plain, std::vector<std::vector<double>> single) {
    check(static_cast<int>(plain.size()) == variants_ && static_cast<int>(single.size()) == blocks_, ErrorCode::invalid_argument,
          "AccuracyModel", "measurement table has the wrong size");
    plain_ = std::move(plain);
    single_ = std::move(single);
  }

  // Per variant, what the boosted stage (Features::boosted) knows of its compression:
  // {sparsity, INT8, block-sparse, 2:4}. Optional; without it the trees see the drops only.
  // Set before fit(): it changes the trees' inputs, so a fitted boosted stage is dropped.
  using Descriptor = std::array<double, 4>;
  void set_descriptors(std::vector<Descriptor> d) {
    check(static_cast<int>(d.size()) == variants_, ErrorCode::invalid_argument, "AccuracyModel", "one descriptor per variant expected");
    desc_ = std::move(d);
    trees_ = BoostedTrees(boost_opt_);
  }
  void set_boost_options(BoostOptions o) { boost_opt_ = o; }

  double zero_shot(const StitchedVariant& s) const {
    if (s.is_plain()) return plain_.at(s.choice.front());
    return from_space(zero_shot_space(s));
  }

  // Fits the residual model; samples may include plain variants and single swaps.
  void fit(const std::vector<AccuracySample>& samples, double lambda = 2.0) {
    std::vector<std::vector<double>> x;
    std::vector<double> y;
    for (const auto& a : samples) {
      x.push_back(features(a.s));
      y.push_back(to_space(a.accuracy_pct) - zero_shot_space(a.s));
    }
    w_ = x.empty() ? std::vector<double>() : ridge(x, y, lambda);
    knot_x_.clear();
    knot_y_.clear();
    if (features_ & Features::calibrated) {
      std::vector<std::pair<double, double>> xy;  // (uncalibrated prediction, measured)
      for (const auto& a : samples)
        if (!a.s.is_plain()) xy.emplace_back(uncalibrated(a.s), a.accuracy_pct);
      isotonic(std::move(xy));
    }
    trees_ = BoostedTrees(boost_opt_);
    if (features_ & Features::boosted) {
      std::vector<std::vector<double>> rows;
      std::vector<double> r;
      for (const auto& a : samples)
        if (!a.s.is_plain()) {
          const double raw = uncalibrated(a.s);
          rows.push_back(tree_features(a.s, raw));
          r.push_back(a.accuracy_pct - linear_predict(raw));
        }
      trees_.fit(rows, r);
    }
  }

  double predict(const StitchedVariant& s) const {
    check(static_cast<int>(s.choice.size()) == blocks_, ErrorCode::invalid_argument, "AccuracyModel",
          "stitch has " + std::to_string(s.choice.size()) + " blocks, the model " + std::to_string(blocks_));
    if (s.is_plain()) return plain_.at(s.choice.front());
    const double raw = uncalibrated(s);
    const double acc = linear_predict(raw);
    return trees_.empty() ? acc : clamp_accuracy(acc + trees_.predict(tree_features(s, raw)));
  }

  std::size_t num_features() const {
    std::size_t n = static_cast<std::size_t>(blocks_ * variants_ + (blocks_ - 1) * variants_ * variants_);
    if (features_ & Features::switch_terms) n += static_cast<std::size_t>(2 * blocks_ * variants_);
    if (features_ & Features::skip_pairs) n += static_cast<std::size_t>(std::max(0, blocks_ - 2) * variants_ * variants_);
    return n;
  }

  // A fitting sample of n stitched (non-plain) variants. pair_cover first makes every
  // (cut, variant pair) appear at least once, then fills up at random.
  static std::vector<StitchedVariant> sample(int blocks, int variants, std::size_t n, SampleStrategy strategy,
                                             std::uint64_t seed, const std::set<std::vector<int>>& exclude = {}) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> pick(0, variants - 1);
    std::set<std::vector<int>> chosen;
    std::vector<StitchedVariant> out;
    auto accept = [&](std::vector<int> c) {
      StitchedVariant s{c};
      if (s.is_plain() || exclude.count(c) || chosen.count(c) || out.size() >= n) return false;
      chosen.insert(c);
      out.push_back(std::move(s));
      return true;
    };
    if (strategy == SampleStrategy::pair_cover) {
      // Uncovered (cut, a, b); each new stitch greedily covers one pair per cut.
      std::vector<std::set<std::pair<int, int>>> todo(static_cast<std::size_t>(blocks - 1));
      for (int c = 0; c + 1 < blocks; ++c)
        for (int a = 0; a < variants; ++a)
          for (int b = 0; b < variants; ++b) todo[c].insert({a, b});
      for (int guard = 0; guard < 100000 && out.size() < n; ++guard) {
        bool any = false;
        for (const auto& t : todo) any |= !t.empty();
        if (!any) break;
        std::vector<int> c(static_cast<std::size_t>(blocks));
        c[0] = pick(rng);
        for (int k = 0; k + 1 < blocks; ++k) {
          int nb = pick(rng);
          // prefer a successor that covers an open pair
          for (int tries = 0; tries < variants; ++tries) {
            const int cand = (nb + tries) % variants;
            if (todo[k].count({c[k], cand})) { nb = cand; break; }
          }
          c[k + 1] = nb;
        }
        if (accept(c))
          for (int k = 0; k + 1 < blocks; ++k) todo[k].erase({c[k], c[k + 1]});
      }
    }
    for (int guard = 0; guard < 1000000 && out.size() < n; ++guard) {
      std::vector<int> c(static_cast<std::size_t>(blocks));
      for (auto& v : c) v = pick(rng);
      accept(c);
    }
    return out;
  }

 private:
  // A stitch is not trusted to beat the best measured variant by more than noise.
  double clamp_accuracy(double acc) const {
    return std::clamp(acc, 0.0, std::min(100.0, *std::max_element(plain_.begin(), plain_.end()) + 0.5));
  }
  // Steps 1-3, clamped, from steps 1-2's estimate (uncalibrated()).
  double linear_predict(double raw) const { return clamp_accuracy(calibrate(raw)); }

  // Step 4's inputs: per block its single-swap drop (model space) and its variant's
  // descriptor, per cut whether the variant changes there (fmnist_vit: 0.58 -> 0.54 pp in an
  // offline check), then the zero-shot estimate and steps 1-2's (`raw`, uncalibrated()).
  std::vector<double> tree_features(const StitchedVariant& s, double raw) const {
    std::vector<double> f;
    const double base = to_space(plain_[base_]);
    for (int b = 0; b < blocks_; ++b) {
      f.push_back(base - to_space(single_[b][s.choice[b]]));
      if (!desc_.empty()) f.insert(f.end(), desc_[s.choice[b]].begin(), desc_[s.choice[b]].end());
    }
    for (int b = 0; b + 1 < blocks_; ++b) f.push_back(s.choice[b] != s.choice[b + 1] ? 1.0 : 0.0);
    f.push_back(from_space(zero_shot_space(s)));
    f.push_back(raw);
    return f;
  }

  // Steps 1 and 2: zero-shot plus the fitted residual, back in percent (unclamped).
  double uncalibrated(const StitchedVariant& s) const {
    double z = zero_shot_space(s);
    if (!w_.empty()) {
      const auto f = features(s);
      for (std::size_t i = 0; i < f.size(); ++i) z += f[i] * w_[i];
    }
    return from_space(z);
  }

  // Pool-adjacent-violators on (prediction, measured) sorted by prediction: the least-squares
  // non-decreasing step function; its blocks' (mean prediction, mean measured) are the knots.
  void isotonic(std::vector<std::pair<double, double>> xy) {
    std::stable_sort(xy.begin(), xy.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    struct Block { double sx, sy; std::size_t n; };
    std::vector<Block> st;
    for (const auto& [x, y] : xy) {
      st.push_back({x, y, 1});
      while (st.size() > 1 && st[st.size() - 2].sy / static_cast<double>(st[st.size() - 2].n) >=
                                  st.back().sy / static_cast<double>(st.back().n)) {
        const Block b = st.back();
        st.pop_back();
        st.back().sx += b.sx;
        st.back().sy += b.sy;
        st.back().n += b.n;
      }
    }
    for (const auto& b : st) {
      knot_x_.push_back(b.sx / static_cast<double>(b.n));
      knot_y_.push_back(b.sy / static_cast<double>(b.n));
    }
  }

  // Linear between knots, flat beyond them; identity when not calibrated.
  double calibrate(double acc) const {
    if (knot_x_.empty()) return acc;
    if (acc <= knot_x_.front()) return knot_y_.front();
    if (acc >= knot_x_.back()) return knot_y_.back();
    const auto i = static_cast<std::size_t>(std::upper_bound(knot_x_.begin(), knot_x_.end(), acc) - knot_x_.begin());
    const double x0 = knot_x_[i - 1], x1 = knot_x_[i];
    return x1 > x0 ? knot_y_[i - 1] + (knot_y_[i] - knot_y_[i - 1]) * (acc - x0) / (x1 - x0) : knot_y_[i];
  }

  // Accuracy (%) in the space the model adds in: pp, or logit of the fraction correct.
  double to_space(double acc) const {
    if (!(features_ & Features::logit)) return acc;
    const double p = std::clamp(acc / 100.0, 0.002, 0.998);
    return std::log(p / (1 - p));
  }
  double from_space(double z) const { return features_ & Features::logit ? 100.0 / (1.0 + std::exp(-z)) : z; }
  double zero_shot_space(const StitchedVariant& s) const {
    const double base = to_space(plain_[base_]);
    double z = base;
    for (int b = 0; b < blocks_; ++b) z -= base - to_space(single_[b][s.choice[b]]);
    return z;
  }

  std::vector<double> features(const StitchedVariant& s) const {
    std::vector<double> f(num_features(), 0.0);
    for (int b = 0; b < blocks_; ++b) f[static_cast<std::size_t>(b * variants_ + s.choice[b])] = 1.0;
    std::size_t off = static_cast<std::size_t>(blocks_ * variants_);
    const auto V = static_cast<std::size_t>(variants_);
    for (int b = 0; b + 1 < blocks_; ++b)
      if (s.choice[b] != s.choice[b + 1])
        f[off + static_cast<std::size_t>((b * variants_ + s.choice[b]) * variants_ + s.choice[b + 1])] = 1.0;
    off += static_cast<std::size_t>(blocks_ - 1) * V * V;
    if (features_ & Features::switch_terms) {
      // How block b's variant fares right after / right before a switch, whatever the neighbour.
      for (int b = 0; b < blocks_; ++b) {
        const auto i = static_cast<std::size_t>(b) * V + static_cast<std::size_t>(s.choice[b]);
        if (b > 0 && s.choice[b] != s.choice[b - 1]) f[off + i] = 1.0;
        if (b + 1 < blocks_ && s.choice[b] != s.choice[b + 1]) f[off + static_cast<std::size_t>(blocks_) * V + i] = 1.0;
      }
      off += 2 * static_cast<std::size_t>(blocks_) * V;
    }
    if (features_ & Features::skip_pairs)
      for (int b = 0; b + 2 < blocks_; ++b)
        if (s.choice[b] != s.choice[b + 2])
          f[off + (static_cast<std::size_t>(b) * V + static_cast<std::size_t>(s.choice[b])) * V + static_cast<std::size_t>(s.choice[b + 2])] = 1.0;
    return f;
  }

  int blocks_ = 0, variants_ = 0, base_ = 0;
  unsigned features_ = Features::adjacent;
  std::vector<double> plain_;
  std::vector<std::vector<double>> single_;
  std::vector<double> w_;
  std::vector<double> knot_x_, knot_y_;  // calibration (Features::calibrated), increasing x
  std::vector<Descriptor> desc_;
  BoostOptions boost_opt_;
  BoostedTrees trees_;  // step 4 (Features::boosted)
};

// Spearman rank correlation (average ranks for ties).
inline double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<std::size_t> idx(v.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](auto x, auto y) { return v[x] < v[y]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < idx.size();) {
      std::size_t j = i;
      while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (std::size_t k = i; k <= j; ++k) r[idx[k]] = (static_cast<double>(i + j) / 2.0) + 1.0;
      i = j + 1;
    }
    return r;
  };
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) { ma += ra[i]; mb += rb[i]; }
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

}  // namespace sparseloom::estimator
