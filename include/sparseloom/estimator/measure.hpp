#pragma once
// Measured top-1 accuracy of many stitched variants of one task on its committed test data,
// with or without stitch-time repair. Stitches are visited in lexicographic order and the
// outputs of every block (test and calibration activations) are kept per prefix, so stitches
// sharing their first k blocks run those blocks once. Everything a stitch's block b needs --
// its input, and its repair, which depends only on choice[0..b] -- is a function of the
// prefix, so the result equals StitchedModel::repair + accuracy_pct run on each stitch alone
// (same block runs, same statistics order; tests/estimator checks it). Several workers, each
// with its own compiled model, split the sorted stitches into chunks; per stitch they run the
// same blocks in the same order, so the result is the same as with one (tests check that too).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/estimator/measure_cache.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

namespace sparseloom::estimator {

struct MeasureStats {
  double seconds = 0;          // wall time
  int workers = 1;             // threads that measured (seconds x workers: worker-seconds)
  std::size_t stitches = 0;    // distinct stitches measured
  std::size_t block_runs = 0;  // (block, prefix) nodes run over the test set
  std::size_t naive_block_runs = 0;  // what measuring each stitch alone would run
};

template <Backend B>
class StitchMeasurer {
 public:
  // test_limit: the first test samples used (all when < 0); repair statistics use the whole
  // committed calibration set, as StitchedModel::repair does by default.
  explicit StitchMeasurer(const stitch::StitchedModel<B>& model, std::int64_t test_limit = -1)
      : StitchMeasurer(std::vector<const stitch::StitchedModel<B>*>{&model}, test_limit) {}

  // One worker thread per model. All must be compiled from the same TaskZoo with the same
  // kernels (so every worker computes what one would); give each its own backend instance
  // where a backend serialises runs on one processor (cpu::Backend does).
  explicit StitchMeasurer(std::vector<const stitch::StitchedModel<B>*> models, std::int64_t test_limit = -1)
      : models_(std::move(models)) {
    check(!models_.empty(), ErrorCode::invalid_argument, "StitchMeasurer", "needs at least one model");
    const auto& z = models_.front()->zoo();
    for (const auto* m : models_)
      check(m && &m->zoo() == &z, ErrorCode::invalid_argument, z.manifest.task,
            "StitchMeasurer: every worker's model must be compiled from the same TaskZoo");
    const auto n = test_limit < 0 ? z.test_x.dim(0) : std::min(test_limit, z.test_x.dim(0));
    for (std::int64_t i = 0; i < n; ++i) test_in_.push_back(z.input(z.test_x, i));
    for (std::int64_t i = 0; i < z.calib_x.dim(0); ++i) calib_in_.push_back(z.input(z.calib_x, i));
  }

  std::int64_t test_samples() const { return static_cast<std::int64_t>(test_in_.size()); }
  int workers() const { return static_cast<int>(models_.size()); }

  // Accuracy (%) of each stitch, in the order given (duplicates allowed). With several workers
  // the sorted distinct stitches are cut into contiguous chunks that the workers take in turn;
  // each chunk starts from an empty prefix, so results do not depend on who ran what.
  std::vector<double> measure(const std::vector<StitchedVariant>& stitches, bool repair, MeasureStats* stats = nullptr) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto& z = models_.front()->zoo();
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
    std::vector<std::size_t> distinct;  // first of each run of equal stitches in `order`
    for (std::size_t k = 0; k < order.size(); ++k)
      if (k == 0 || stitches[order[k]].choice != stitches[order[k - 1]].choice) distinct.push_back(order[k]);

    // Calibration activations are only needed by statistics repair (bn_affine).
    bool need_cal = false;
    for (const auto& blk : z.manifest.blocks) need_cal |= repair && blk.repair.kind == zoo::RepairKind::bn_affine;
    std::vector<double> out(stitches.size(), 0.0);
    const int w = std::min<int>(workers(), static_cast<int>(std::max<std::size_t>(1, distinct.size())));
    const auto cuts = chunk_cuts(stitches, distinct, w == 1 ? 1 : 8 * static_cast<std::size_t>(w));
    const std::size_t chunks = cuts.size() - 1;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::vector<std::size_t> runs(static_cast<std::size_t>(w), 0);
    parallel_for(w, w, [&](std::int64_t p0, std::int64_t p1) {
      for (auto p = p0; p < p1; ++p) {
        try {
          const auto me = static_cast<std::size_t>(p);
          for (std::size_t c = next.fetch_add(1); !failed && c < chunks; c = next.fetch_add(1))
            runs[me] += run_chunk(*models_[me], stitches, distinct, cuts[c], cuts[c + 1], repair, need_cal, out);
        } catch (...) {
          failed = true;
          throw;
        }
      }
    });
    for (std::size_t k = 1; k < order.size(); ++k)  // duplicates
      if (stitches[order[k]].choice == stitches[order[k - 1]].choice) out[order[k]] = out[order[k - 1]];
    MeasureStats st;
    st.workers = w;
    st.stitches = distinct.size();
    st.naive_block_runs = distinct.size() * static_cast<std::size_t>(nb);
    for (auto r : runs) st.block_runs += r;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stats) *stats = st;
    return out;
  }

 private:
  // Boundaries of about `chunks` chunks of the sorted distinct stitches (first 0, last n): near
  // equal shares, each moved within half a share to where neighbours share the shortest
  // prefix. A chunk starts with nothing cached, so a cut where block 0 changes costs no block
  // run over measuring on one worker. Several chunks per worker even out unequal chunks.
  static std::vector<std::size_t> chunk_cuts(const std::vector<StitchedVariant>& stitches, const std::vector<std::size_t>& distinct,
                                             std::size_t chunks) {
    const std::size_t n = distinct.size();
    chunks = std::max<std::size_t>(1, std::min(chunks, n));
    auto shared = [&](std::size_t k) {  // common prefix of distinct[k - 1] and distinct[k]
      const auto &a = stitches[distinct[k - 1]].choice, &b = stitches[distinct[k]].choice;
      std::size_t l = 0;
      while (l < a.size() && a[l] == b[l]) ++l;
      return l;
    };
    std::vector<std::size_t> cuts{0};
    const std::size_t half = std::max<std::size_t>(1, n / (2 * chunks));
    for (std::size_t c = 1; c < chunks; ++c) {
      const std::size_t t = n * c / chunks;
      std::size_t best = t, best_l = shared(t);
      for (std::size_t k = std::max(cuts.back() + 1, t > half ? t - half : 1); k <= std::min(n - 1, t + half); ++k) {
        const std::size_t l = shared(k);
        const auto dist = [&](std::size_t x) { return x > t ? x - t : t - x; };
        if (l < best_l || (l == best_l && dist(k) < dist(best))) best = k, best_l = l;
      }
      if (best > cuts.back()) cuts.push_back(best);
    }
    cuts.push_back(n);
    return cuts;
  }

  // Measures distinct[k0, k1) (sorted) on one worker's model, sharing prefixes within the
  // chunk; returns the block runs.
  std::size_t run_chunk(const stitch::StitchedModel<B>& model, const std::vector<StitchedVariant>& stitches,
                        const std::vector<std::size_t>& distinct, std::size_t k0, std::size_t k1, bool repair, bool need_cal,
                        std::vector<double>& out) {
    const auto& z = model.zoo();
    const int nb = z.num_blocks();
    std::vector<std::vector<Tensor>> test(static_cast<std::size_t>(nb)), cal(static_cast<std::size_t>(nb));
    stitch::StitchRepair r;
    r.affine.resize(static_cast<std::size_t>(nb));
    r.pre_map.assign(static_cast<std::size_t>(nb), nullptr);
    const std::vector<int>* prev = nullptr;
    std::size_t block_runs = 0;
    for (std::size_t k = k0; k < k1; ++k) {
      const StitchedVariant& s = stitches[distinct[k]];
      // Blocks before `from` are cached for this prefix; the last block is never cached.
      int from = 0;
      while (prev && from < nb - 1 && (*prev)[from] == s.choice[from]) ++from;
      for (int b = from; b < nb; ++b) {
        set_repair(model, s, b, repair, b == 0 ? calib_in_ : cal[b - 1], r);
        const auto& tin = b == 0 ? test_in_ : test[b - 1];
        ++block_runs;
        if (b + 1 < nb) {
          test[b].resize(tin.size());
          for (std::size_t i = 0; i < tin.size(); ++i) test[b][i] = model.run_block(s, &r, b, tin[i]);
          if (need_cal) {
            const auto& cin = b == 0 ? calib_in_ : cal[b - 1];
            cal[b].resize(cin.size());
            for (std::size_t i = 0; i < cin.size(); ++i) cal[b][i] = model.run_block(s, &r, b, cin[i]);
          }
        } else {
          std::int64_t correct = 0;
          for (std::size_t i = 0; i < tin.size(); ++i) {
            const Tensor y = model.run_block(s, &r, b, tin[i]).contiguous();
            const float* p = y.data<float>();
            std::int64_t best = 0;
            for (std::int64_t c = 1; c < y.numel(); ++c)
              if (p[c] > p[best]) best = c;
            correct += best == z.label(static_cast<std::int64_t>(i));
          }
          out[distinct[k]] = tin.empty() ? 0.0 : 100.0 * static_cast<double>(correct) / static_cast<double>(tin.size());
        }
      }
      prev = &s.choice;
    }
    return block_runs;
  }

  // The repair of block b under stitch s, exactly as StitchedModel::repair computes it (one
  // thread), from the calibration activations entering block b under this prefix (cal[b-1]).
  void set_repair(const stitch::StitchedModel<B>& model, const StitchedVariant& s, int b, bool repair,
                  const std::vector<Tensor>& cal_in, stitch::StitchRepair& r) {
    const auto& z = model.zoo();
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
      const stitch::ChannelStats nat = native(model, b, s.choice[b]);
      const stitch::ChannelStats st = observe(model, b, s.choice[b], cal_in, spec.tensor);
      ChannelAffine a;
      for (std::size_t c = 0; c < nat.channels(); ++c) {
        const double f = nat.stddev(c) / (st.stddev(c) + 1e-5);
        a.scale.push_back(static_cast<float>(f));
        a.shift.push_back(static_cast<float>(nat.mean(c) - st.mean(c) * f));
      }
      r.affine[b][spec.tensor] = std::move(a);
    }
  }

  // Statistics of the repair tensor inside block b of variant v fed by v's own earlier blocks;
  // computed once per (b, v) by whichever worker needs it first (the others wait).
  stitch::ChannelStats native(const stitch::StitchedModel<B>& model, int b, int v) {
    std::lock_guard lock(native_mu_);
    if (auto it = native_.find({b, v}); it != native_.end()) return it->second;
    const StitchedVariant plain = model.plain(v);
    std::vector<Tensor> acts = calib_in_;
    for (int k = 0; k < b; ++k)
      for (auto& x : acts) x = model.run_block(plain, nullptr, k, std::move(x));
    return native_[{b, v}] = observe(model, b, v, acts, model.zoo().manifest.blocks[b].repair.tensor);
  }

  static stitch::ChannelStats observe(const stitch::StitchedModel<B>& model, int b, int v, const std::vector<Tensor>& acts,
                                      const std::string& tensor) {
    stitch::ChannelStats all;
    std::size_t seen = 0;
    RunOptions ro;
    ro.observe = [&](const std::string& name, const Tensor& x) {
      if (name == tensor) { all.add(x); ++seen; }
    };
    for (const auto& x : acts) model.executable(b, v).run(std::span<const Tensor>(&x, 1), ro);
    check(seen == acts.size(), ErrorCode::parse, model.zoo().manifest.task,
          "repair tensor '" + tensor + "' is not produced by block " + std::to_string(b));
    return all;
  }

  std::vector<const stitch::StitchedModel<B>*> models_;
  std::vector<Tensor> test_in_, calib_in_;
  std::mutex native_mu_;
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
// measured again and new ones are added to it (saved every `save_every` stitches). key.test_samples
// is set from the measurer.
// *recorded: the measuring time of these stitches as recorded when they were measured (each
// stitch's share of its run in worker-seconds), over the entries that carry a time (older
// entries do not).
template <Backend B>
std::vector<double> measure_cached(StitchMeasurer<B>& m, const std::filesystem::path& dir, MeasureCacheKey key,
                                   const std::vector<StitchedVariant>& stitches, MeasureStats* stats = nullptr,
                                   RecordedTime* recorded = nullptr, std::size_t save_every = 256) {
  key.test_samples = m.test_samples();
  MeasuredAccuracy known = load_measured(dir, key);
  std::vector<StitchedVariant> todo;
  std::set<std::vector<int>> queued;
  for (const auto& s : stitches)
    if (!known.count(s.choice) && queued.insert(s.choice).second) todo.push_back(s);
  MeasureStats st;
  // In sorted batches (prefixes stay shared within one), each saved when done: a long run that
  // is stopped keeps what it measured.
  std::sort(todo.begin(), todo.end(), [](const auto& a, const auto& b) { return a.choice < b.choice; });
  const std::size_t batch = std::max<std::size_t>(1, save_every);
  for (std::size_t k0 = 0; k0 < todo.size(); k0 += batch) {
    const std::vector<StitchedVariant> part(todo.begin() + static_cast<std::ptrdiff_t>(k0),
                                            todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), k0 + batch)));
    MeasureStats ps;
    const auto acc = m.measure(part, key.repair, &ps);
    // Worker-seconds (wall x workers), so entries measured with 1 or more workers add up alike.
    const double each = ps.seconds * ps.workers / static_cast<double>(std::max<std::size_t>(1, ps.stitches));
    for (std::size_t i = 0; i < part.size(); ++i) known[part[i].choice] = {acc[i], each};
    save_measured(dir, key, known);
    st.seconds += ps.seconds;
    st.workers = ps.workers;
    st.stitches += ps.stitches;
    st.block_runs += ps.block_runs;
    st.naive_block_runs += ps.naive_block_runs;
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
