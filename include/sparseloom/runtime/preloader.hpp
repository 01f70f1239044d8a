#pragma once
// The Preloader's hook points in the Engine, and the default policy (load what the plan uses).
//  - on_plan(lib, plan): after every (re-)plan, before requests run on it: load ahead.
//  - acquire(lib, t, b, v, p): before a block runs; makes it resident (a cold load is a stall
//    the engine counts in that request's latency) and pins it. Returns true if it loaded.
//    Throws Error(ErrorCode::infeasible) if the block cannot be made resident within budget.
//  - release(lib, t, b, v, p): after the block ran; unpins it.
//  - set_memory_budget(bytes) (optional): the engine passes EngineOptions::memory_budget_bytes,
//    and Engine::set_memory_budget the new one; shrink_to_budget(lib) (optional) then evicts
//    down to a lowered budget, returning whether resident bytes fit it.
//  - set_device_budgets(bytes per processor) (optional): per-device budgets, at start and from
//    Engine::set_device_budget.
//  - admit(lib, bytes, commit) (optional): room for a new stitch's repair bytes, then commit()
//    counts them, with no load in between (without it the engine waits for background loads and
//    evicts after the repair).
// All four may be called from several threads at once; the policy serialises its calls into
// the runner's load/unload/is_resident/resident_bytes.
#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/block_runner.hpp"

namespace sparseloom::runtime {

template <class P, class L>
concept Preloader = BlockRunner<L> && requires(P& pre, L& lib, const Plan& plan, TaskIndex t, BlockIndex b,
                                               VariantIndex v, ProcessorIndex p) {
  pre.on_plan(lib, plan);
  { pre.acquire(lib, t, b, v, p) } -> std::convertible_to<bool>;
  pre.release(lib, t, b, v, p);
};

// Calls f(task, block, variant, processor) for every block a plan may run: each task's
// placement and, where its routing may take them, its alternatives (a block they share is
// visited once per placement naming it).
template <class F>
void for_each_plan_block(const Plan& plan, F&& f) {
  for (std::size_t t = 0; t < plan.tasks.size(); ++t) {
    const auto& tp = plan.tasks[t];
    const auto visit = [&](const Placement& pl) {
      const auto n = std::min(tp.variant.choice.size(), pl.processor.size());
      for (std::size_t b = 0; b < n; ++b)
        f(static_cast<TaskIndex>(t), static_cast<BlockIndex>(b), tp.variant.choice[b], pl.processor[b]);
    };
    visit(tp.placement);
    if (tp.routing != Routing::planned)
      for (const auto& pl : tp.alternatives) visit(pl);
  }
}

// Loads every block the plan uses; under a budget, evicts unpinned blocks the plan does not
// use (then unpinned ones it does) to make room, and never exceeds the budget. No hotness, no
// prediction: the baseline until the hot-subgraph preloader lands.
// Locking: every call into the runner is made under load_mu_ (one load at a time, as the
// residency manager does); mu_ guards our own state and is never held across a load, so a
// request whose block is already loaded pins it without waiting for another processor's load.
// Lock order: load_mu_ before mu_.
class LoadAllPreloader {
 public:
  LoadAllPreloader() = default;
  explicit LoadAllPreloader(std::size_t budget_bytes) : budget_(budget_bytes) {}
  // Movable before use (the Engine takes it by value); the state moves, the mutexes do not.
  LoadAllPreloader(LoadAllPreloader&& o) noexcept
      : budget_(o.budget_), device_budget_(std::move(o.device_budget_)), in_plan_(std::move(o.in_plan_)),
        loaded_(std::move(o.loaded_)), held_on_(std::move(o.held_on_)), pins_(std::move(o.pins_)) {}

  void set_memory_budget(std::size_t bytes) {
    std::lock_guard lk(mu_);
    budget_ = bytes;
  }
  // Per processor (0 = none): the block bytes held on it never exceed it.
  void set_device_budgets(std::vector<std::size_t> bytes) {
    std::lock_guard lk(mu_);
    device_budget_ = std::move(bytes);
  }

  template <BlockRunner L>
  void on_plan(L& lib, const Plan& plan) {
    std::lock_guard load_lock(load_mu_);
    std::unique_lock lk(mu_);
    in_plan_.clear();
    for_each_plan_block(plan, [&](TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) { in_plan_.insert({t, b, v, p}); });
    const std::vector<Key> keys(in_plan_.begin(), in_plan_.end());
    for (const auto& k : keys) {
      const auto& [t, b, v, p] = k;
      if (lib.is_resident(t, b, v, p)) continue;
      if (!make_room(lib, lib.block_bytes(t, b, v, p), p, /*allow_in_plan=*/false)) continue;  // acquire retries
      load_unlocked(lib, lk, k);
    }
  }

  template <BlockRunner L>
  bool acquire(L& lib, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    {
      std::lock_guard lk(mu_);
      ++pins_[k];
      if (loaded_.contains(k)) return false;  // ours and resident: no runner call, no wait
    }
    std::lock_guard load_lock(load_mu_);
    std::unique_lock lk(mu_);
    if (loaded_.contains(k) || lib.is_resident(t, b, v, p)) return false;  // loaded meanwhile, or not ours
    if (!make_room(lib, lib.block_bytes(t, b, v, p), p, /*allow_in_plan=*/true)) {
      unpin(k);
      throw Error(ErrorCode::infeasible, "LoadAllPreloader",
                  "block " + std::to_string(b) + " of task " + std::to_string(t) + " (variant " +
                      std::to_string(v) + ", processor " + std::to_string(p) +
                      ") does not fit the memory budget of " + std::to_string(budget_) + " bytes or processor " +
                      std::to_string(p) + "'s device budget of " + std::to_string(device_budget(p)) + " bytes");
    }
    try {
      load_unlocked(lib, lk, k);
    } catch (...) {
      unpin(k);  // lk is held again
      throw;
    }
    return true;
  }

  template <BlockRunner L>
  void release(L&, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    unpin({t, b, v, p});
  }

  // Blocks the library already holds that we did not load (a profiler's, an earlier engine's)
  // become ours, so that the budget can evict them (preloader::Residency::adopt_resident).
  template <BlockRunner L>
  int adopt_resident(const L& lib) {
    std::lock_guard load_lock(load_mu_);
    std::lock_guard lk(mu_);
    int adopted = 0;
    for_each_block_slot(lib, [&](TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
      if (!loaded_.contains(Key{t, b, v, p}) && lib.is_resident(t, b, v, p)) note_loaded(lib, Key{t, b, v, p}), ++adopted;
    });
    return adopted;
  }

  // After the budget was lowered: evicts unpinned blocks (not-in-plan first). True if they fit
  // (pinned blocks are not waited for here).
  template <BlockRunner L>
  bool shrink_to_budget(L& lib) {
    std::lock_guard load_lock(load_mu_);
    std::lock_guard lk(mu_);
    bool fits = make_room(lib, 0, -1, /*allow_in_plan=*/true);
    for (std::size_t p = 0; p < device_budget_.size(); ++p) fits = make_room(lib, 0, static_cast<ProcessorIndex>(p), true) && fits;
    return fits;
  }

  // A new stitch's repair bytes (host memory): room is made, then `commit` adds them, with no
  // load in between. True if they fit (else committed anyway: the stitch must run).
  template <BlockRunner L, class F>
  bool admit(L& lib, std::size_t bytes, F&& commit) {
    std::lock_guard load_lock(load_mu_);
    std::lock_guard lk(mu_);
    const bool fits = make_room(lib, bytes, -1, /*allow_in_plan=*/true);
    commit();
    return fits;
  }

 private:
  using Key = std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>;

  // Loads k with mu_ (lk) released, so that acquires of loaded blocks go on; load_mu_ held by
  // the caller keeps every other runner call out. Returns with lk held.
  template <class L>
  void load_unlocked(L& lib, std::unique_lock<std::mutex>& lk, const Key& k) {
    const auto& [t, b, v, p] = k;
    lk.unlock();
    try {
      lib.load(t, b, v, p);
    } catch (...) {
      lk.lock();
      throw;
    }
    lk.lock();
    note_loaded(lib, k);
  }

  void unpin(const Key& k) {
    auto it = pins_.find(k);
    if (it != pins_.end() && --it->second <= 0) pins_.erase(it);
  }

  std::size_t device_budget(ProcessorIndex p) const {
    return p >= 0 && static_cast<std::size_t>(p) < device_budget_.size() ? device_budget_[static_cast<std::size_t>(p)] : 0;
  }
  // Bytes of the blocks we loaded on p, kept as we load and unload (mu_ held).
  std::size_t held_on(ProcessorIndex p) const {
    return p >= 0 && static_cast<std::size_t>(p) < held_on_.size() ? held_on_[static_cast<std::size_t>(p)] : 0;
  }
  template <class L>
  void note_loaded(const L& lib, const Key& k) {
    const auto& [t, b, v, p] = k;
    const std::size_t bytes = lib.block_bytes(t, b, v, p);  // exact once loaded
    if (!loaded_.emplace(k, bytes).second) return;
    if (held_on_.size() <= static_cast<std::size_t>(p)) held_on_.resize(static_cast<std::size_t>(p) + 1, 0);
    held_on_[static_cast<std::size_t>(p)] += bytes;
  }

  // Evicts blocks we loaded that nobody runs until `bytes` more fit the global budget and, on
  // processor `dev` (-1: none), its device budget. False if they cannot.
  template <class L>
  bool make_room(L& lib, std::size_t bytes, ProcessorIndex dev, bool allow_in_plan) {
    const std::size_t db = device_budget(dev);
    if (budget_ == 0 && db == 0) return true;
    if ((budget_ > 0 && bytes > budget_) || (db > 0 && bytes > db)) return false;
    auto global_fits = [&] { return budget_ == 0 || lib.resident_bytes() + bytes <= budget_; };
    auto device_fits = [&] { return db == 0 || held_on(dev) + bytes <= db; };
    for (int pass = 0; pass < (allow_in_plan ? 2 : 1); ++pass) {
      for (auto it = loaded_.begin(); it != loaded_.end() && !(global_fits() && device_fits());) {
        const bool used = in_plan_.contains(it->first);
        const auto& [t, b, v, p] = it->first;
        if (pins_.contains(it->first) || (pass == 0 && used) || (global_fits() && p != dev)) {
          ++it;
          continue;
        }
        lib.unload(t, b, v, p);
        held_on_[static_cast<std::size_t>(p)] -= it->second;
        it = loaded_.erase(it);
      }
    }
    return global_fits() && device_fits();
  }

  std::mutex load_mu_;  // every runner call; before mu_
  std::mutex mu_;       // the state below
  std::size_t budget_ = 0;  // 0 = unlimited
  std::vector<std::size_t> device_budget_;  // per processor, 0 = none
  std::set<Key> in_plan_;
  std::map<Key, std::size_t> loaded_;  // with its bytes at load
  std::vector<std::size_t> held_on_;   // per processor: bytes of loaded_ there
  std::map<Key, int> pins_;
};

}  // namespace sparseloom::runtime
