#pragma once
// SparseLoom without the preloader (the ablation): nothing is loaded ahead; a request that
// needs a missing block loads that one block and waits for it; under the budget the least
// recently used unpinned blocks are evicted first. Blocks are the unit, so a block shared by
// several stitched variants is loaded once and serves all of them.
#include "sparseloom/preloader/residency.hpp"
#include "sparseloom/runtime/preloader.hpp"

namespace sparseloom::preloader {

class OnDemandLru : public Residency {
 public:
  OnDemandLru() = default;
  explicit OnDemandLru(std::size_t budget_bytes) : Residency(budget_bytes) {}
  OnDemandLru(OnDemandLru&&) noexcept = default;

  template <runtime::BlockRunner L>
  void on_plan(L&, const Plan&) {}

  template <runtime::BlockRunner L>
  bool acquire(L& lib, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    if (pin_if_held(k)) return false;
    load_set(lib, {k}, [this](const Key& x) { return static_cast<double>(last_use(x)); }, /*demand=*/true);
    return true;
  }

  // After the budget was lowered: evicts down to it in this policy's eviction order.
  template <runtime::BlockRunner L>
  bool shrink_to_budget(L& lib) {
    return shrink(lib, [this](const Key& x) { return static_cast<double>(last_use(x)); });
  }
  // A new stitch's repair bytes, room made in this policy's eviction order (Residency::admit_bytes).
  template <runtime::BlockRunner L, class F>
  bool admit(L& lib, std::size_t bytes, F&& commit) {
    return admit_bytes(lib, bytes, [this](const Key& x) { return static_cast<double>(last_use(x)); }, std::forward<F>(commit));
  }

  template <runtime::BlockRunner L>
  void release(L&, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    unpin({t, b, v, p});
  }
};

}  // namespace sparseloom::preloader
