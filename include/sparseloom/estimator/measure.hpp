#pragma once
// Measured top-1 accuracy of many stitched variants of one task on its committed test data,
// with or without stitch-time repair. Stitches are visited in lexicographic order and the
// outputs of every block (test and calibration activations) are kept per prefix, so stitches
// sharing their first k blocks run those blocks once. Everything a stitch's block b needs --
// its input, and its repair, which depends only on choice[0..b] -- is a function of the
// prefix, so the result equals StitchedModel::repair + accuracy_pct run on each stitch alone
// (same block runs, same statistics order; tests/estimator checks it).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/estimator/measure_cache.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

namespace sparseloom::estimator {

struct MeasureStats {
  double seconds = 0;
  std::size_t stitches = 0;    // distinct stitches measured
  std::size_t block_runs = 0;  // (block, prefix) nodes run over the test set
  std::size_t naive_block_runs = 0;  // what measuring each stitch alone would run
};

template <Backend B>
class StitchMeasurer {
 public:
  // test_limit: the first test samples used (all when < 0); repair statistics use the whole
  // committed calibration set, as StitchedModel::repair does by default.
  explicit StitchMeasurer(const stitch::StitchedModel<B>& model, std::int64_t test_limit = -1) : model_(&model) {
    const auto& z = model.zoo();
    const auto n = test_limit < 0 ? z.test_x.dim(0) : std::min(test_limit, z.test_x.dim(0));
    for (std::int64_t i = 0; i < n; ++i) test_in_.push_back(z.input(z.test_x, i));
    for (std::int64_t i = 0; i < z.calib_x.dim(0); ++i) calib_in_.push_back(z.input(z.calib_x, i));
  }

  std::int64_t test_samples() const { return static_cast<std::int64_t>(test_in_.size()); }

  // Accuracy (%) of each stitch, in the order given (duplicates allowed).
  std::vector<double> measure(const std::vector<StitchedVariant>& stitches, bool repair, MeasureStats* stats = nullptr) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto& z = model_->zoo();
    const int nb = z.num_blocks(), nv = z.num_variants();
    for (const auto& s : stitches) {
      check(static_cast<int>(s.choice.size()) == nb, ErrorCode::invalid_argument, z.manifest.task,
            "stitch has " + std::to_string(s.choice.size()) + " blocks, the task " + std::to_string(nb));
      for (int v : s.choice)
        check(v >= 0 && v < nv, ErrorCode::invalid_argument, z.manifest.task, "variant index " + std::to_string(v) + " out of range");
    }
    std::vector<std::size_t> order(stitches.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return stitches[a].choice < stitches[b].choice; });

    std::vector<std::vector<Tensor>> test(static_cast<std::size_t>(nb)), cal(static_cast<std::size_t>(nb));
    stitch::StitchRepair r;
    r.affine.resize(static_cast<std::size_t>(nb));
    r.pre_map.assign(static_cast<std::size_t>(nb), nullptr);
    // Calibration activations are only needed by statistics repair (bn_affine).
    bool need_cal = false;
    for (const auto& blk : z.manifest.blocks) need_cal |= repair && blk.repair.kind == zoo::RepairKind::bn_affine;
    std::vector<double> out(stitches.size(), 0.0);
    const std::vector<int>* prev = nullptr;
    MeasureStats st;
    for (std::size_t k = 0; k < order.size(); ++k) {
      const StitchedVariant& s = stitches[order[k]];
      if (prev && *prev == s.choice) {  // duplicate
        out[order[k]] = out[order[k - 1]];
        continue;
      }
      // Blocks before `from` are cached for this prefix; the last block is never cached.
      int from = 0;
      while (prev && from < nb - 1 && (*prev)[from] == s.choice[from]) ++from;
      for (int b = from; b < nb; ++b) {
        set_repair(s, b, repair, b == 0 ? calib_in_ : cal[b - 1], r);
        const auto& tin = b == 0 ? test_in_ : test[b - 1];
        ++st.block_runs;
        if (b + 1 < nb) {
          test[b].resize(tin.size());
          for (std::size_t i = 0; i < tin.size(); ++i) test[b][i] = model_->run_block(s, &r, b, tin[i]);
          if (need_cal) {
            const auto& cin = b == 0 ? calib_in_ : cal[b - 1];
            cal[b].resize(cin.size());
            for (std::size_t i = 0; i < cin.size(); ++i) cal[b][i] = model_->run_block(s, &r, b, cin[i]);
          }
        } else {
          std::int64_t correct = 0;
          for (std::size_t i = 0; i < tin.size(); ++i) {
            const Tensor y = model_->run_block(s, &r, b, tin[i]).contiguous();
            const float* p = y.data<float>();
            std::int64_t best = 0;
            for (std::int64_t c = 1; c < y.numel(); ++c)
              if (p[c] > p[best]) best = c;
            correct += best == z.label(static_cast<std::int64_t>(i));
          }
          out[order[k]] = tin.empty() ? 0.0 : 100.0 * static_cast<double>(correct) / static_cast<double>(tin.size());
        }
      }
      prev = &s.choice;
      ++st.stitches;
      st.naive_block_runs += static_cast<std::size_t>(nb);
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stats) *stats = st;
    return out;
  }

 private:
  // The repair of block b under stitch s, exactly as StitchedModel::repair computes it (one
  // thread), from the calibration activations entering block b under this prefix (cal[b-1]).
  void set_repair(const StitchedVariant& s, int b, bool repair, const std::vector<Tensor>& cal_in,
                  stitch::StitchRepair& r) {
    const auto& z = model_->zoo();
    r.affine[b].clear();
    r.pre_map[b] = nullptr;
    if (!repair || b == 0 || s.choice[b] == s.choice[b - 1]) return;
    const auto& spec = z.manifest.blocks[b].repair;
    if (spec.kind == zoo::RepairKind::residual_map && s.choice[b - 1] != z.base()) {
      auto it = z.residual_maps.find({b, s.choice[b - 1]});
      check(it != z.residual_maps.end(), ErrorCode::parse, z.manifest.task, "missing residual adapter for block " + std::to_string(b));
      r.pre_map[b] = &it->second;
    }
    if (spec.kind == zoo::RepairKind::bn_affine) {
      const stitch::ChannelStats& nat = native(b, s.choice[b]);
      const stitch::ChannelStats st = observe(b, s.choice[b], cal_in, spec.tensor);
      ChannelAffine a;
      for (std::size_t c = 0; c < nat.channels(); ++c) {
        const double f = nat.stddev(c) / (st.stddev(c) + 1e-5);
        a.scale.push_back(static_cast<float>(f));
        a.shift.push_back(static_cast<float>(nat.mean(c) - st.mean(c) * f));
      }
      r.affine[b][spec.tensor] = std::move(a);
    }
  }

  // Statistics of the repair tensor inside block b of variant v fed by v's own earlier blocks.
  const stitch::ChannelStats& native(int b, int v) {
    if (auto it = native_.find({b, v}); it != native_.end()) return it->second;
    const StitchedVariant plain = model_->plain(v);
    std::vector<Tensor> acts = calib_in_;
    for (int k = 0; k < b; ++k)
      for (auto& x : acts) x = model_->run_block(plain, nullptr, k, std::move(x));
    return native_[{b, v}] = observe(b, v, acts, model_->zoo().manifest.blocks[b].repair.tensor);
  }

  stitch::ChannelStats observe(int b, int v, const std::vector<Tensor>& acts, const std::string& tensor) const {
    stitch::ChannelStats all;
    std::size_t seen = 0;
    RunOptions ro;
    ro.observe = [&](const std::string& name, const Tensor& x) {
      if (name == tensor) { all.add(x); ++seen; }
    };
    for (const auto& x : acts) model_->executable(b, v).run(std::span<const Tensor>(&x, 1), ro);
    check(seen == acts.size(), ErrorCode::parse, model_->zoo().manifest.task,
          "repair tensor '" + tensor + "' is not produced by block " + std::to_string(b));
    return all;
  }

 private:
  const stitch::StitchedModel<B>* model_;
  std::vector<Tensor> test_in_, calib_in_;
  std::map<std::pair<int, int>, stitch::ChannelStats> native_;
};

// Accuracy (%) of each stitch on the task's test data (measure each distinct stitch once).
template <Backend B>
std::vector<double> measure_stitches(const stitch::StitchedModel<B>& model, const std::vector<StitchedVariant>& stitches,
                                     bool repair, std::int64_t test_limit = -1, MeasureStats* stats = nullptr) {
  StitchMeasurer<B> m(model, test_limit);
  return m.measure(stitches, repair, stats);
}

struct RecordedTime {
  double seconds = 0;       // summed over the timed entries
  std::size_t timed = 0, stitches = 0;
};

// As StitchMeasurer::measure, but stitches already in the on-disk cache under `key` are not
// measured again and new ones are added to it. key.test_samples is set from the measurer.
// *recorded: the measuring time of these stitches as recorded when they were measured (each
// stitch's share of its run), over the entries that carry a time (older entries do not).
template <Backend B>
std::vector<double> measure_cached(StitchMeasurer<B>& m, const std::filesystem::path& dir, MeasureCacheKey key,
                                   const std::vector<StitchedVariant>& stitches, MeasureStats* stats = nullptr,
                                   RecordedTime* recorded = nullptr) {
  key.test_samples = m.test_samples();
  MeasuredAccuracy known = load_measured(dir, key);
  std::vector<StitchedVariant> todo;
  std::set<std::vector<int>> queued;
  for (const auto& s : stitches)
    if (!known.count(s.choice) && queued.insert(s.choice).second) todo.push_back(s);
  MeasureStats st;
  if (!todo.empty()) {
    const auto acc = m.measure(todo, key.repair, &st);
    const double each = st.seconds / static_cast<double>(std::max<std::size_t>(1, st.stitches));
    for (std::size_t i = 0; i < todo.size(); ++i) known[todo[i].choice] = {acc[i], each};
    save_measured(dir, key, known);
  }
  if (stats) *stats = st;
  std::vector<double> out;
  RecordedTime rt;
  std::set<std::vector<int>> counted;
  for (const auto& s : stitches) {
    const Measured& e = known.at(s.choice);
    out.push_back(e.accuracy_pct);
    if (!counted.insert(s.choice).second) continue;
    ++rt.stitches;
    if (e.seconds >= 0) {
      rt.seconds += e.seconds;
      ++rt.timed;
    }
  }
  if (recorded) *recorded = rt;
  return out;
}

}  // namespace sparseloom::estimator
