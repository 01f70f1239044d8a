#pragma once
// What every preloader shares: pins, one global memory budget, and the one place where blocks
// are loaded and evicted. Policies differ only in which blocks they load ahead (on_plan), how
// much they load on a miss (a block, or a whole model), and the order they evict in (a rank:
// lowest first). Invariants, for every policy:
//  - The runner's resident_bytes() never exceeds the budget through a load of ours: a load
//    first evicts until the block fits, and loads/evictions are serialised (one loader at a
//    time, load_mu_), so the check and the load see the same state. Asserted in debug builds;
//    stats().max_resident_bytes records the most seen after any load.
//  - Per-device budgets (a processor with memory of its own): the bytes of the blocks we hold
//    on that processor (block_bytes, exact after a load) never exceed its budget; a load there
//    evicts blocks of that processor until it fits (and any blocks until the global one fits).
//  - A pinned block (acquired, running) is never evicted.
//  - A request whose block is resident never waits for a load (acquire takes only mu_).
// Lock order: load_mu_ before mu_. mu_ is never held across a runner load/unload.
#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/block_runner.hpp"
#include "sparseloom/runtime/preloader.hpp"

namespace sparseloom::preloader {

using Key = std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>;

inline std::string describe(const Key& k) {
  const auto& [t, b, v, p] = k;
  return "block " + std::to_string(b) + " of task " + std::to_string(t) + " (variant " + std::to_string(v) +
         ", processor " + std::to_string(p) + ")";
}

struct FailedLoad {
  Key key;
  std::string what;
};

struct Stats {
  std::uint64_t loads = 0;            // runner loads (demand + ahead)
  std::uint64_t demand_loads = 0;     // loads a request waited for
  std::uint64_t ahead_loads = 0;      // loads ahead of use (on_plan, background)
  std::uint64_t evictions = 0;
  std::uint64_t failed_loads = 0;
  std::uint64_t size_surprises = 0;   // loads that added more than block_bytes() said (then corrected)
  double load_ms = 0;                 // total time in runner loads
  std::size_t max_resident_bytes = 0; // most resident bytes seen after a load of ours
  std::vector<std::size_t> max_device_bytes;  // per processor with a device budget: most held there
  bool budget_exceeded = false;       // max_resident_bytes > budget (never, unless another party loads)
  std::vector<FailedLoad> failures;   // the last few (bounded)
};

class Residency {
 public:
  static constexpr std::size_t kMaxFailures = 64;

  Residency() = default;
  explicit Residency(std::size_t budget_bytes) : budget_(budget_bytes) {}
  // Movable before use (the Engine takes its preloader by value); mutexes are not moved.
  Residency(Residency&& o) noexcept
      : budget_(o.budget_), pin_wait_ms_(o.pin_wait_ms_), pins_(std::move(o.pins_)), resident_(std::move(o.resident_)),
        tick_(o.tick_), load_ms_(std::move(o.load_ms_)), margin_(o.margin_), stats_(std::move(o.stats_)),
        device_budget_(std::move(o.device_budget_)), held_bytes_(std::move(o.held_bytes_)), device_bytes_(std::move(o.device_bytes_)) {}

  void set_memory_budget(std::size_t bytes) {
    std::lock_guard lk(mu_);
    budget_ = bytes;
  }
  std::size_t memory_budget() const {
    std::lock_guard lk(mu_);
    return budget_;
  }
  // Per processor (0 = none); blocks on a budgeted processor count in the global budget too.
  void set_device_budgets(std::vector<std::size_t> bytes) {
    std::lock_guard lk(mu_);
    device_budget_ = std::move(bytes);
    stats_.max_device_bytes.resize(std::max(stats_.max_device_bytes.size(), device_budget_.size()), 0);
  }
  std::size_t device_budget(ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return device_budget_of(p);
  }
  // Bytes of the blocks we hold on processor p.
  std::size_t device_bytes(ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return held_on(p);
  }
  // How long a demand load waits for pinned blocks to be released before it gives up.
  void set_pin_wait_ms(double ms) { pin_wait_ms_ = ms; }
  Stats stats() const {
    std::lock_guard lk(mu_);
    return stats_;
  }
  // Blocks the library already holds that we do not (another party loaded them: a profiler, an
  // earlier engine on the same library) become ours, least recently used, so that the budget
  // counts them and can evict them: otherwise no load could make room past them. Called
  // without locks held; the Engine calls it before its first plan.
  template <runtime::BlockRunner L>
  int adopt_resident(const L& lib) {
    std::unique_lock load_lock(load_mu_);
    std::lock_guard lk(mu_);
    int adopted = 0;
    runtime::for_each_block_slot(lib, [&](TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
      const Key k{t, b, v, p};
      if (resident_.contains(k) || !lib.is_resident(t, b, v, p)) return;
      hold(k, lib.block_bytes(t, b, v, p));
      resident_[k] = 0;  // older than anything we load
      ++adopted;
    });
    return adopted;
  }

  // Keys we hold resident (tests and reports).
  std::set<Key> resident() const {
    std::lock_guard lk(mu_);
    std::set<Key> out;
    for (const auto& [k, _] : resident_) out.insert(k);
    return out;
  }

 protected:
  // Lowest rank is evicted first; called with mu_ held.
  using Rank = std::function<double(const Key&)>;

  bool is_held(const Key& k) const { return resident_.contains(k); }  // mu_ held
  void touch(const Key& k) { resident_[k] = ++tick_; }                  // mu_ held
  std::uint64_t last_use(const Key& k) const {                          // mu_ held
    auto it = resident_.find(k);
    return it == resident_.end() ? 0 : it->second;
  }
  bool pinned(const Key& k) const { return pins_.contains(k); }  // mu_ held
  void pin(const Key& k) { ++pins_[k]; }                         // mu_ held
  void unpin(const Key& k) {                                     // mu_ held
    auto it = pins_.find(k);
    if (it != pins_.end() && --it->second <= 0) pins_.erase(it);
    cv_.notify_all();
  }
  // Measured cold-load time of k, or -1 if never loaded.
  double measured_load_ms(const Key& k) const {  // mu_ held
    auto it = load_ms_.find(k);
    return it == load_ms_.end() ? -1.0 : it->second;
  }

  // The fast path of acquire: pins k if resident. mu_ taken here.
  bool pin_if_held(const Key& k) {
    std::lock_guard lk(mu_);
    if (!resident_.contains(k)) return false;
    pin(k);
    touch(k);
    return true;
  }

  // Loads `keys` (a block, or a whole model: all kept from eviction while it loads), evicting
  // unpinned blocks lowest rank first; `evictable` filters victims (e.g. a preload may only
  // displace colder blocks). On a demand load (`demand`), keys.front() ends pinned and a lack
  // of room waits up to pin_wait_ms for pins to be released, then throws
  // Error(infeasible); a runner failure is recorded and rethrown (Error(device): the Engine
  // plans around the block). Returns the number of blocks it loaded. Ahead loads stop quietly
  // at the first block that does not fit. Called without mu_ held.
  template <runtime::BlockRunner L>
  int load_set(L& lib, const std::vector<Key>& keys, const Rank& rank, bool demand,
               const std::function<bool(const Key&)>& evictable = {}) {
    if (demand) waiting_demand_.fetch_add(1);
    std::unique_lock load_lock(load_mu_);
    if (demand) waiting_demand_.fetch_sub(1);
    std::unique_lock lk(mu_);
    const Key& first = keys.front();
    if (demand) pin(first);  // kept from eviction from here on
    int loaded = 0;
    const std::set<Key> protect(keys.begin(), keys.end());
    for (const Key& k : keys) {
      if (resident_.contains(k)) {
        touch(k);
        continue;
      }
      const auto& [t, b, v, p] = k;
      lk.unlock();
      const std::size_t need = lib.block_bytes(t, b, v, p);
      lk.lock();
      // Room for the block plus the largest size surprise seen so far (a backend whose format
      // trial is timed may pack a block a little differently on each compile).
      if (!make_room(lib, lk, need + margin_, rank, protect, evictable, demand && k == first, p) &&
          !make_room(lib, lk, need, rank, protect, evictable, false, p)) {
        if (!demand) break;
        if (k != first) break;  // the rest of a model is best effort; the block a request needs is not
        unpin(first);
        throw Error(ErrorCode::infeasible, "preloader",
                    describe(k) + " needs " + std::to_string(need) + " bytes: does not fit " + budget_text(lib, p) +
                        " (the rest pinned by running requests)");
      }
      lk.unlock();
      const auto t0 = std::chrono::steady_clock::now();
      try {
        lib.load(t, b, v, p);
      } catch (const std::exception& e) {
        lk.lock();
        ++stats_.failed_loads;
        if (stats_.failures.size() < kMaxFailures) stats_.failures.push_back({k, e.what()});
        if (demand) unpin(first);
        throw;
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::size_t now_bytes = lib.resident_bytes();
      const std::size_t held = lib.block_bytes(t, b, v, p);  // exact once loaded
      lk.lock();
      hold(k, held);
      if (budget_ > 0 && now_bytes > budget_) {
        // The block came out larger than block_bytes() said: learn the margin and evict more
        // now; the excess is transient and recorded.
        ++stats_.size_surprises;
        margin_ = std::max(margin_, now_bytes - budget_);
        stats_.max_resident_bytes = std::max(stats_.max_resident_bytes, now_bytes);
        stats_.budget_exceeded = true;
        std::set<Key> keep = protect;
        keep.insert(k);
        make_room(lib, lk, 0, rank, keep, {}, false, p);
        now_bytes = lib.resident_bytes();
      }
      if (const std::size_t db = device_budget_of(p); db > 0) {
        const std::size_t on = held_on(p);
        auto& mx = stats_.max_device_bytes.at(static_cast<std::size_t>(p));
        mx = std::max(mx, on);
        if (on > db) stats_.budget_exceeded = true;
      }
      load_ms_[k] = ms;
      touch(k);
      ++loaded;
      ++stats_.loads;
      ++(demand ? stats_.demand_loads : stats_.ahead_loads);
      stats_.load_ms += ms;
      stats_.max_resident_bytes = std::max(stats_.max_resident_bytes, now_bytes);
      if (budget_ > 0 && now_bytes > budget_) stats_.budget_exceeded = true;
      assert((budget_ == 0 || now_bytes <= budget_ || stats_.size_surprises > 0) && "preloader: resident bytes over the memory budget");
    }
    cv_.notify_all();
    return loaded;
  }

  // Evicts unpinned blocks (not in `protect`) lowest rank first until resident + need fits the
  // global budget and `need` more on processor `dev` fits its device budget (dev < 0: no
  // block to place, just the global budget). While only the device is short, only blocks on it
  // are evicted. Holds load_mu_ (caller) and mu_ (lk); drops mu_ around each unload.
  template <class L>
  bool make_room(L& lib, std::unique_lock<std::mutex>& lk, std::size_t need, const Rank& rank, const std::set<Key>& protect,
                 const std::function<bool(const Key&)>& evictable, bool may_wait, ProcessorIndex dev) {
    const std::size_t db = device_budget_of(dev);
    if (budget_ == 0 && db == 0) return true;
    if ((budget_ > 0 && need > budget_) || (db > 0 && need > db)) return false;
    auto global_fits = [&] { return budget_ == 0 || lib.resident_bytes() + need <= budget_; };
    auto device_fits = [&] { return db == 0 || held_on(dev) + need <= db; };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double, std::milli>(pin_wait_ms_);
    for (;;) {
      const bool g = global_fits();
      if (g && device_fits()) return true;
      const Key* victim = nullptr;
      double best = 0;
      for (const auto& [k, _] : resident_) {
        if (pins_.contains(k) || protect.contains(k) || (evictable && !evictable(k))) continue;
        if (g && std::get<3>(k) != dev) continue;  // only the device is short
        const double r = rank(k);
        if (!victim || r < best) {
          victim = &k;
          best = r;
        }
      }
      if (!victim) {
        // Everything left is pinned by running requests: they release it within a block's time.
        if (!may_wait || cv_.wait_until(lk, deadline) == std::cv_status::timeout) return global_fits() && device_fits();
        continue;
      }
      const Key k = *victim;
      resident_.erase(k);
      release_bytes(k);
      ++stats_.evictions;
      lk.unlock();
      const auto& [t, b, v, p] = k;
      lib.unload(t, b, v, p);
      lk.lock();
    }
  }

  // Evicts every unpinned block we hold for which `drop` is true (e.g. shrink to a new budget,
  // or drop blocks no plan will use). Called without locks held.
  template <runtime::BlockRunner L>
  void evict_if(L& lib, const std::function<bool(const Key&)>& drop) {
    std::unique_lock load_lock(load_mu_);
    std::unique_lock lk(mu_);
    std::vector<Key> out;
    for (const auto& [k, _] : resident_)
      if (!pins_.contains(k) && drop(k)) out.push_back(k);
    for (const auto& k : out) {
      resident_.erase(k);
      release_bytes(k);
    }
    stats_.evictions += out.size();
    lk.unlock();
    for (const auto& [t, b, v, p] : out) lib.unload(t, b, v, p);
  }

  // Evicts unpinned blocks, lowest rank first, until resident bytes fit the budget (after the
  // budget was lowered); waits up to pin_wait_ms for running requests to release pinned ones.
  // True if they fit. Called without locks held.
  template <runtime::BlockRunner L>
  bool shrink(L& lib, const Rank& rank) {
    std::unique_lock load_lock(load_mu_);
    std::unique_lock lk(mu_);
    bool fits = make_room(lib, lk, 0, rank, {}, {}, /*may_wait=*/true, -1);
    for (std::size_t p = 0; p < device_budget_.size(); ++p)
      if (device_budget_[p] > 0) fits = make_room(lib, lk, 0, rank, {}, {}, true, static_cast<ProcessorIndex>(p)) && fits;
    return fits;
  }

  // Host bytes that are not a block (a new stitch's repair vectors): makes room for `bytes` in
  // the global budget, evicting lowest rank first, then runs `commit` (which adds them to the
  // runner's resident bytes) before any load can check room again. Loads are serialised by
  // load_mu_, so none sees the bytes before they count. True if they fit; otherwise they are
  // committed anyway (the stitch must run) and the excess is recorded.
  template <runtime::BlockRunner L, class F>
  bool admit_bytes(L& lib, std::size_t bytes, const Rank& rank, F&& commit) {
    std::unique_lock load_lock(load_mu_);
    std::unique_lock lk(mu_);
    const bool fits = make_room(lib, lk, bytes, rank, {}, {}, /*may_wait=*/true, -1);
    commit();
    const std::size_t now_bytes = lib.resident_bytes();
    stats_.max_resident_bytes = std::max(stats_.max_resident_bytes, now_bytes);
    if (budget_ > 0 && now_bytes > budget_) stats_.budget_exceeded = true;
    return fits;
  }

  // --- per-device accounting (mu_ held) ---
  std::size_t device_budget_of(ProcessorIndex p) const {
    return p >= 0 && static_cast<std::size_t>(p) < device_budget_.size() ? device_budget_[static_cast<std::size_t>(p)] : 0;
  }
  std::size_t held_on(ProcessorIndex p) const {
    return p >= 0 && static_cast<std::size_t>(p) < device_bytes_.size() ? device_bytes_[static_cast<std::size_t>(p)] : 0;
  }
  void hold(const Key& k, std::size_t bytes) {
    const auto p = static_cast<std::size_t>(std::get<3>(k));
    if (device_bytes_.size() <= p) device_bytes_.resize(p + 1, 0);
    held_bytes_[k] = bytes;
    device_bytes_[p] += bytes;
  }
  void release_bytes(const Key& k) {
    auto it = held_bytes_.find(k);
    if (it == held_bytes_.end()) return;
    device_bytes_[static_cast<std::size_t>(std::get<3>(k))] -= it->second;
    held_bytes_.erase(it);
  }
  template <class L>
  std::string budget_text(const L& lib, ProcessorIndex p) const {
    std::string out = "the memory budget of " + std::to_string(budget_) + " bytes (" + std::to_string(lib.resident_bytes()) + " resident)";
    if (const std::size_t db = device_budget_of(p); db > 0)
      out += " or processor " + std::to_string(p) + "'s device budget of " + std::to_string(db) + " bytes (" +
             std::to_string(held_on(p)) + " held there)";
    return out;
  }

  // Blocks until no request waits for a demand load (ahead loads give way to them).
  bool demand_waiting() const { return waiting_demand_.load() > 0; }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::mutex load_mu_;
  std::size_t budget_ = 0;  // 0 = unlimited
  double pin_wait_ms_ = 2000;
  std::map<Key, int> pins_;
  std::map<Key, std::uint64_t> resident_;  // held blocks -> last use tick
  std::uint64_t tick_ = 0;
  std::map<Key, double> load_ms_;          // measured cold-load time per block
  std::atomic<int> waiting_demand_{0};
  std::size_t margin_ = 0;                 // largest size surprise seen: reserved on later loads
  Stats stats_;
  std::vector<std::size_t> device_budget_;   // per processor, 0 = none
  std::map<Key, std::size_t> held_bytes_;    // bytes of each held block, as loaded
  std::vector<std::size_t> device_bytes_;    // per processor: sum of held_bytes_ there
};

// The keys a plan may run: (task, block, its variant, its processor), each once; alternatives
// its routing may take included (runtime::for_each_plan_block).
inline std::vector<Key> plan_keys(const Plan& plan) {
  std::set<Key> keys;
  runtime::for_each_plan_block(plan, [&](TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) { keys.emplace(t, b, v, p); });
  return {keys.begin(), keys.end()};
}

}  // namespace sparseloom::preloader
