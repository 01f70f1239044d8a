#pragma once
// Least-squares gradient-boosted regression trees on a few dense numeric features: the
// accuracy model's nonlinear stage (accuracy_model.hpp, Features::boosted). Stitch accuracy
// has interactions of more than two blocks (three damaged blocks in a row cost more than their
// pairs say) that a ridge model over one-hot pairs cannot express; shallow trees over each
// block's single-swap drop and its variant's compression can. Histogram trees grown leaf-wise,
// as LightGBM and scikit-learn's HistGradientBoostingRegressor do: each feature is cut into at
// most `max_bins` quantile bins once, and a split is found by one scan over a node's histogram.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::estimator {

struct BoostOptions {
  int trees = 300;
  double learning_rate = 0.1;
  int max_leaves = 31;
  int min_samples_leaf = 20;
  double l2 = 0;  // added to a leaf's sample count when its value is the mean residual
  int max_bins = 255;
};

class BoostedTrees {
 public:
  BoostedTrees() = default;
  explicit BoostedTrees(BoostOptions opt) : opt_(opt) {}

  bool empty() const { return trees_.empty(); }

  // rows: n x d, y: n targets. Leaves the model empty (predict() == 0) for fewer than two
  // leaves' worth of samples.
  void fit(const std::vector<std::vector<double>>& rows, const std::vector<double>& y) {
    check(rows.size() == y.size(), ErrorCode::invalid_argument, "BoostedTrees", "rows and targets differ in number");
    check(opt_.trees >= 0 && opt_.learning_rate > 0 && opt_.max_leaves >= 2 && opt_.min_samples_leaf >= 1 && opt_.max_bins >= 2 &&
              opt_.max_bins <= 256 && opt_.l2 >= 0,
          ErrorCode::invalid_argument, "BoostedTrees", "invalid options");
    trees_.clear();
    cuts_.clear();
    const std::size_t n = rows.size(), d = n ? rows.front().size() : 0;
    for (const auto& r : rows) check(r.size() == d, ErrorCode::invalid_argument, "BoostedTrees", "rows differ in length");
    if (n < 2 * static_cast<std::size_t>(opt_.min_samples_leaf)) return;
    make_cuts(rows, d);
    // Binned features, column-major: bins_[f * n + i].
    bins_.assign(n * d, 0);
    for (std::size_t f = 0; f < d; ++f)
      for (std::size_t i = 0; i < n; ++i) bins_[f * n + i] = bin_of(f, rows[i][f]);
    std::vector<double> residual = y, step(n);
    for (int t = 0; t < opt_.trees; ++t) {
      Tree tree = grow(residual, n, d, step);
      const bool stump = tree.nodes.size() == 1;  // no split gains: later trees would repeat it
      for (std::size_t i = 0; i < n; ++i) residual[i] -= step[i];
      trees_.push_back(std::move(tree));
      if (stump) break;
    }
    bins_.clear();
    bins_.shrink_to_fit();
  }

  double predict(const std::vector<double>& x) const {
    double s = 0;
    for (const auto& t : trees_) {
      int k = 0;
      while (t.nodes[static_cast<std::size_t>(k)].feature >= 0) {
        const auto& nd = t.nodes[static_cast<std::size_t>(k)];
        k = x.at(static_cast<std::size_t>(nd.feature)) <= nd.threshold ? nd.left : nd.right;
      }
      s += t.nodes[static_cast<std::size_t>(k)].value;
    }
    return s;
  }

 private:
  struct Node {
    int feature = -1;  // -1: leaf
    double threshold = 0;
    int left = -1, right = -1;
    double value = 0;  // leaf output, learning rate included
  };
  struct Tree {
    std::vector<Node> nodes;
  };
  struct Split {
    double gain = 0;
    int feature = -1, bin = -1;
  };
  struct Leaf {
    int node;
    std::vector<std::uint32_t> rows;
    double sum;
    Split best;
  };

  // Bin edges per feature: the midpoints between distinct values when there are few of them
  // (single-swap drops take one value per variant), else quantiles.
  void make_cuts(const std::vector<std::vector<double>>& rows, std::size_t d) {
    cuts_.assign(d, {});
    std::vector<double> v(rows.size());
    for (std::size_t f = 0; f < d; ++f) {
      for (std::size_t i = 0; i < rows.size(); ++i) v[i] = rows[i][f];
      std::sort(v.begin(), v.end());
      std::vector<double> u;
      for (double x : v)
        if (u.empty() || x != u.back()) u.push_back(x);
      const auto bins = static_cast<std::size_t>(opt_.max_bins);
      if (u.size() <= bins) {
        for (std::size_t i = 0; i + 1 < u.size(); ++i) cuts_[f].push_back(0.5 * (u[i] + u[i + 1]));
      } else {
        for (std::size_t q = 1; q < bins; ++q) {
          const double c = v[q * v.size() / bins];
          if (cuts_[f].empty() || c > cuts_[f].back()) cuts_[f].push_back(c);
        }
      }
    }
  }
  // Bin b holds values in (cuts[b-1], cuts[b]]; a split at bin b sends x <= cuts[b] left.
  std::uint8_t bin_of(std::size_t f, double x) const {
    const auto& c = cuts_[f];
    return static_cast<std::uint8_t>(std::lower_bound(c.begin(), c.end(), x) - c.begin());
  }

  Split best_split(const std::vector<std::uint32_t>& idx, double sum, std::size_t n, std::size_t d,
                   const std::vector<double>& r) const {
    Split best;
    const double cnt = static_cast<double>(idx.size());
    const auto min_leaf = static_cast<double>(opt_.min_samples_leaf);
    if (cnt < 2 * min_leaf) return best;
    const double parent = sum * sum / (cnt + opt_.l2);
    std::vector<double> hs;
    std::vector<std::uint32_t> hc;
    for (std::size_t f = 0; f < d; ++f) {
      const std::size_t nb = cuts_[f].size() + 1;
      if (nb < 2) continue;
      hs.assign(nb, 0.0);
      hc.assign(nb, 0);
      const std::uint8_t* col = bins_.data() + f * n;
      for (auto i : idx) {
        hs[col[i]] += r[i];
        ++hc[col[i]];
      }
      double ls = 0, lc = 0;
      for (std::size_t b = 0; b + 1 < nb; ++b) {
        ls += hs[b];
        lc += hc[b];
        if (lc < min_leaf) continue;
        if (cnt - lc < min_leaf) break;
        const double rs = sum - ls;
        const double gain = ls * ls / (lc + opt_.l2) + rs * rs / (cnt - lc + opt_.l2) - parent;
        if (gain > best.gain + 1e-12) best = {gain, static_cast<int>(f), static_cast<int>(b)};
      }
    }
    return best;
  }

  // One tree on the current residuals; step[i] receives its (shrunk) output for row i.
  Tree grow(const std::vector<double>& r, std::size_t n, std::size_t d, std::vector<double>& step) const {
    Tree tree;
    std::vector<Leaf> leaves;
    std::vector<std::uint32_t> all(n);
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) all[i] = static_cast<std::uint32_t>(i), s += r[i];
    tree.nodes.push_back({});
    leaves.push_back({0, std::move(all), s, {}});
    leaves.back().best = best_split(leaves.back().rows, s, n, d, r);
    while (static_cast<int>(leaves.size()) < opt_.max_leaves) {
      std::size_t pick = leaves.size();
      for (std::size_t l = 0; l < leaves.size(); ++l)
        if (leaves[l].best.feature >= 0 && (pick == leaves.size() || leaves[l].best.gain > leaves[pick].best.gain)) pick = l;
      if (pick == leaves.size()) break;
      Leaf parent = std::move(leaves[pick]);
      const auto f = static_cast<std::size_t>(parent.best.feature);
      const auto cut_bin = static_cast<std::uint8_t>(parent.best.bin);
      Leaf lo{static_cast<int>(tree.nodes.size()), {}, 0, {}}, hi{static_cast<int>(tree.nodes.size() + 1), {}, 0, {}};
      for (auto i : parent.rows) {
        Leaf& side = bins_[f * n + i] <= cut_bin ? lo : hi;
        side.rows.push_back(i);
        side.sum += r[i];
      }
      Node& pn = tree.nodes[static_cast<std::size_t>(parent.node)];
      pn.feature = static_cast<int>(f);
      pn.threshold = cuts_[f][cut_bin];
      pn.left = lo.node;
      pn.right = hi.node;
      tree.nodes.push_back({});
      tree.nodes.push_back({});
      lo.best = best_split(lo.rows, lo.sum, n, d, r);
      hi.best = best_split(hi.rows, hi.sum, n, d, r);
      leaves[pick] = std::move(lo);
      leaves.push_back(std::move(hi));
    }
    for (const auto& l : leaves) {
      const double v = opt_.learning_rate * l.sum / (static_cast<double>(l.rows.size()) + opt_.l2);
      tree.nodes[static_cast<std::size_t>(l.node)].value = v;
      for (auto i : l.rows) step[i] = v;
    }
    return tree;
  }

  BoostOptions opt_;
  std::vector<Tree> trees_;
  std::vector<std::vector<double>> cuts_;
  std::vector<std::uint8_t> bins_;  // during fit only
};

}  // namespace sparseloom::estimator
