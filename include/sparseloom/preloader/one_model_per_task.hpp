#pragma once
// Band-like memory (one model per task): each task's planned model (its variant, all blocks)
// is held whole on every processor, as Band keeps a model on each worker that can run it, so
// any processor can take the task's next job without a load. When a re-plan changes a task's
// model, the old one is unloaded once nothing runs on it. Under a budget, models are loaded
// in task order while they fit; a miss loads the whole model on that processor, evicting
// models outside the current plan first, then the least recently used.
#include <set>
#include <tuple>

#include "sparseloom/preloader/residency.hpp"
#include "sparseloom/runtime/preloader.hpp"

namespace sparseloom::preloader {

class OneModelPerTask : public Residency {
 public:
  OneModelPerTask() = default;
  explicit OneModelPerTask(std::size_t budget_bytes) : Residency(budget_bytes) {}
  OneModelPerTask(OneModelPerTask&& o) noexcept : Residency(std::move(o)), planned_(std::move(o.planned_)) {}

  template <runtime::BlockRunner L>
  void on_plan(L& lib, const Plan& plan) {
    std::vector<std::vector<Key>> models;
    std::set<Key> planned;
    for (std::size_t t = 0; t < plan.tasks.size(); ++t) {
      const auto& choice = plan.tasks[t].variant.choice;
      for (ProcessorIndex p = 0; p < lib.num_processors(); ++p) {
        std::vector<Key> m;
        for (std::size_t b = 0; b < choice.size(); ++b) m.emplace_back(static_cast<TaskIndex>(t), static_cast<BlockIndex>(b), choice[b], p);
        planned.insert(m.begin(), m.end());
        models.push_back(std::move(m));
      }
    }
    {
      std::lock_guard lk(mu_);
      planned_ = planned;
    }
    evict_if(lib, [&](const Key& k) { return !planned.contains(k); });  // the replaced models
    for (const auto& m : models) {
      try {
        load_set(lib, m, [this](const Key& x) { return rank(x); }, /*demand=*/false,
                 [this](const Key& x) { return !planned_.contains(x); });
      } catch (const Error& e) {
        if (!is_load_failure(e.code())) throw;  // a model that cannot load here: the others still load
      }
    }
  }

  template <runtime::BlockRunner L>
  bool acquire(L& lib, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    if (pin_if_held(k)) return false;
    std::vector<Key> keys{k};
    for (BlockIndex x = 0; x < lib.num_blocks(t); ++x)
      if (x != b) keys.emplace_back(t, x, v, p);
    load_set(lib, keys, [this](const Key& x) { return rank(x); }, /*demand=*/true);
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
    unpin({t, b, v, p});
  }

 private:
  double rank(const Key& k) const {  // mu_ held
    return (planned_.contains(k) ? 1e15 : 0.0) + static_cast<double>(last_use(k));
  }
  std::set<Key> planned_;
};

}  // namespace sparseloom::preloader
