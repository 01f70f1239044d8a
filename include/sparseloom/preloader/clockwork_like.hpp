#pragma once
// Clockwork-like loading (Clockwork's controller load tracker, as DESIGN.md's baselines
// describe it): whole models are the unit (a model = one variant of a task on one processor,
// all its blocks); nothing is loaded ahead; when requests wait for missing models, the one
// with the most outstanding demand is loaded first (one load at a time); eviction takes models
// with no outstanding demand first, then the least recently used.
// Outstanding demand of a model = requests that acquired one of its blocks and have not
// released it yet, plus those waiting for it to load.
#include <map>
#include <tuple>

#include "sparseloom/preloader/residency.hpp"
#include "sparseloom/runtime/preloader.hpp"

namespace sparseloom::preloader {

class ClockworkLike : public Residency {
 public:
  using Model = std::tuple<TaskIndex, VariantIndex, ProcessorIndex>;

  ClockworkLike() = default;
  explicit ClockworkLike(std::size_t budget_bytes) : Residency(budget_bytes) {}
  ClockworkLike(ClockworkLike&& o) noexcept
      : Residency(std::move(o)), demand_(std::move(o.demand_)), waiting_(std::move(o.waiting_)),
        model_use_(std::move(o.model_use_)), model_tick_(o.model_tick_) {}

  template <runtime::BlockRunner L>
  void on_plan(L&, const Plan&) {}

  template <runtime::BlockRunner L>
  bool acquire(L& lib, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    const Model m{t, v, p};
    std::unique_lock lk(mu_);
    ++demand_[m];
    model_use_[m] = ++model_tick_;
    if (is_held(k)) {
      pin(k);
      touch(k);
      return false;
    }
    // Wait for our turn: no load in flight and ours the missing model with most demand.
    ++waiting_[m];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(pin_wait_ms_ * 4);
    const bool turn = cv_.wait_until(lk, deadline, [&] { return is_held(k) || (!loading_ && most_demanded_waiting() == m); });
    if (--waiting_[m] == 0) waiting_.erase(m);
    if (!turn) {
      drop_demand(m);
      cv_.notify_all();
      throw Error(ErrorCode::infeasible, "ClockworkLike", describe(k) + ": no load slot within the wait limit");
    }
    if (is_held(k)) {
      pin(k);
      touch(k);
      return true;  // another request loaded it while this one waited
    }
    loading_ = true;
    lk.unlock();
    std::vector<Key> keys{k};
    for (BlockIndex x = 0; x < lib.num_blocks(t); ++x)
      if (x != b) keys.emplace_back(t, x, v, p);
    try {
      load_set(lib, keys, [this](const Key& x) { return rank(x); }, /*demand=*/true);
    } catch (...) {
      lk.lock();
      loading_ = false;
      drop_demand(m);
      cv_.notify_all();
      throw;
    }
    lk.lock();
    loading_ = false;
    cv_.notify_all();
    return true;
  }

  // After the budget was lowered: evicts down to it in this policy's eviction order.
  template <runtime::BlockRunner L>
  bool shrink_to_budget(L& lib) {
    return shrink(lib, [this](const Key& x) { return rank(x); });
  }
  // A new stitch's repair bytes, room made in this policy's eviction order (Residency::admit_bytes).
  template <runtime::BlockRunner L, class F>
  bool admit(L& lib, std::size_t bytes, F&& commit) {
    return admit_bytes(lib, bytes, [this](const Key& x) { return rank(x); }, std::forward<F>(commit));
  }

  template <runtime::BlockRunner L>
  void release(L&, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    drop_demand({t, v, p});
    unpin({t, b, v, p});
  }

 private:
  void drop_demand(const Model& m) {  // mu_ held
    auto it = demand_.find(m);
    if (it != demand_.end() && --it->second <= 0) demand_.erase(it);
  }
  // Models without demand rank below every model with demand; within each, least recently used first.
  double rank(const Key& k) const {  // mu_ held
    const Model m{std::get<0>(k), std::get<2>(k), std::get<3>(k)};
    auto u = model_use_.find(m);
    const double use = u == model_use_.end() ? 0.0 : static_cast<double>(u->second);
    return (demand_.contains(m) ? 1e15 : 0.0) + use;
  }
  Model most_demanded_waiting() const {  // mu_ held
    Model best{-1, -1, -1};
    int most = -1;
    for (const auto& [m, _] : waiting_) {
      auto d = demand_.find(m);
      const int n = d == demand_.end() ? 0 : d->second;
      if (n > most) {
        most = n;
        best = m;
      }
    }
    return best;
  }

  std::map<Model, int> demand_, waiting_;
  std::map<Model, std::uint64_t> model_use_;
  std::uint64_t model_tick_ = 0;
  bool loading_ = false;
};

}  // namespace sparseloom::preloader
