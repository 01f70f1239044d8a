#pragma once
// The hot-subgraph preloader (SparseLoom's default memory policy). Each block (task, block,
// variant, processor) gets a hotness score from
//  - the plans that use it: the current plan (weight 1), the last `history` plans (decay^age:
//    a re-plan on an SLO or load change often returns to a recent configuration), and, under a
//    budget with room to spare, the neighbouring sparsity levels of the current blocks
//    (neighbour_weight: a re-plan on a changed SLO or rate typically moves a block one level);
//  - how often requests used it since the last plan (acquires, normalised);
//  - how many stitched variants of those plans share it (held once, it serves all of them);
//  - its measured cold-load time (bytes x default_load_ms_per_mib until first loaded) per byte:
//    the stall it saves per byte of budget it takes.
// Eviction (a demand load under a budget) ranks by plan weight first (a block of the current
// plan is never evicted for a predicted one), then by outstanding demand (requests that ran
// the block before it in the current plan and will need it next, as Clockwork weighs models
// by outstanding demand), then least recently used. (Ordering the current plan's blocks by
// use x sharing x cost per byte instead was measured worse when the plan does not fit:
// 60 % vs 76 % attainment at 40 % of load-all on the demo, docs/results.md.)
// After each re-plan the hottest set that fits the budget is loaded, hottest first, on one
// background thread (bounded: one thread, one pending target list, replaced by the next plan);
// that thread gives way to requests waiting for a block (a demand load); a block of the
// current plan displaces only blocks outside it, a predicted one only blocks no plan scores. Blocks outside every scored plan are dropped once unpinned, so without a
// budget only the current and recent plans stay resident. Without a budget the old plan's
// blocks go before the new ones load (the peak is the larger plan, not both), unless loading
// the new plan's missing blocks is expected to take longer than make_before_break_ms (a large
// model's block takes 100s of ms to read and pack): then the new plan loads first, the Engine
// keeps running the old one meanwhile (before_adopt waits), and the old blocks go once the new
// plan is current (after_adopt). The first plan is loaded before
// on_plan returns (the engine plans before it admits requests), and with background = false
// everything is synchronous (the discrete-event engine, tests). A request whose block is
// missing loads it at once (evicting the coldest unpinned blocks) and the wait counts in its
// latency.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "sparseloom/preloader/residency.hpp"
#include "sparseloom/runtime/preloader.hpp"

namespace sparseloom::preloader {

struct HotnessOptions {
  bool background = true;               // load ahead on the preloader's own thread
  int history = 1;                      // previous plans that keep a score
  double decay = 0.5;                   // weight of a plan `age` re-plans old: decay^age
  double neighbour_weight = 0.1;        // blocks one sparsity level away (preloaded only under a budget)
  double default_load_ms_per_mib = 2.0; // cold-load cost guess before a block was first loaded
  bool use_measured_load_cost = true;   // false: always the guess (deterministic scores, tests)
  // Without a budget: expected load time of a new plan's missing blocks above which the old
  // plan stays resident until the new one is loaded (see the top). Below it a stall of a few
  // ms costs less than holding two plans.
  double make_before_break_ms = 20.0;
};

class Hotness : public Residency {
 public:
  Hotness() = default;
  explicit Hotness(std::size_t budget_bytes, HotnessOptions o = {}) : Residency(budget_bytes), opt_(o) {}
  explicit Hotness(HotnessOptions o) : opt_(o) {}
  // Movable before use (the Engine takes it by value); the thread starts on the second plan.
  Hotness(Hotness&& o) noexcept
      : Residency(std::move(o)), opt_(o.opt_), history_(std::move(o.history_)), score_(std::move(o.score_)),
        weight_(std::move(o.weight_)), next_of_(std::move(o.next_of_)),
        expected_(std::move(o.expected_)), current_(std::move(o.current_)), uses_(std::move(o.uses_)) {}
  // Synchronous loading (no thread of its own): the Engine's discrete-event mode sets it, where
  // simulated time must not depend on a real thread. Before the first plan only.
  void set_background(bool on) { opt_.background = on; }
  ~Hotness() {
    {
      std::lock_guard lk(bg_mu_);
      bg_stop_ = true;
    }
    bg_cv_.notify_all();
    if (bg_.joinable()) bg_.join();
  }

  template <runtime::BlockRunner L>
  void on_plan(L& lib, const Plan& plan) {
    std::vector<Key> targets;
    bool before_break = false;
    {
      std::lock_guard load_lock(load_mu_);  // rescore asks the runner for block sizes: serialised
      std::lock_guard lk(mu_);
      history_.push_front(plan);
      while (static_cast<int>(history_.size()) > opt_.history + 1) history_.pop_back();
      targets = rescore(lib);
      if (budget_ == 0 && opt_.background && started_) {
        double ms = 0;  // expected time to load the new plan's missing blocks
        for (const Key& k : current_) {
          if (is_held(k)) continue;
          const auto& [t, b, v, p] = k;
          double c = opt_.use_measured_load_cost ? measured_load_ms(k) : -1.0;
          if (c < 0) c = static_cast<double>(lib.block_bytes(t, b, v, p)) / (1024.0 * 1024.0) * opt_.default_load_ms_per_mib;
          ms += c;
        }
        before_break = ms > opt_.make_before_break_ms;
      }
    }
    before_break_ = before_break;
    auto job = [this, &lib, targets = std::move(targets), before_break](const std::atomic<bool>& superseded) {
      preload(lib, targets, superseded, before_break);
    };
    if (!opt_.background || !started_) {
      started_ = true;
      const std::atomic<bool> never{false};
      job(never);
      return;
    }
    std::lock_guard lk(bg_mu_);
    if (!bg_.joinable()) bg_ = std::thread([this] { bg_loop(); });
    superseded_ = true;  // the job in flight (if any) stops at its next block
    next_ = std::move(job);
    bg_cv_.notify_all();
  }

  template <runtime::BlockRunner L>
  bool acquire(L& lib, TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    {
      std::lock_guard lk(mu_);
      ++uses_[k];
      // This request no longer waits for k; it will want k's successor in the plan next.
      if (auto e = expected_.find(k); e != expected_.end() && --e->second <= 0) expected_.erase(e);
      if (auto n = next_of_.find(k); n != next_of_.end()) {
        auto& c = expected_[n->second];
        c = std::min(c + 1, kMaxExpected);
      }
    }
    if (pin_if_held(k)) return false;
    load_set(lib, {k}, [this](const Key& x) { return rank(x); }, /*demand=*/true);
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

  // The current score of a block (0 = cold); for tests and reports.
  double score(const Key& k) const {
    std::lock_guard lk(mu_);
    auto it = score_.find(k);
    return it == score_.end() ? 0.0 : it->second;
  }
  // Requests that ran k's predecessor in the current plan and have not reached k yet.
  int expected(const Key& k) const {
    std::lock_guard lk(mu_);
    auto it = expected_.find(k);
    return it == expected_.end() ? 0 : it->second;
  }
  // The Engine calls these around making a plan current: before_adopt waits until a plan that
  // loads before breaking the old one is resident (requests keep running the old plan), and
  // after_adopt then drops the old plan's blocks (those still pinned by a request go with the
  // next eviction) and says whether it did. No-ops for a plan that broke the old one first.
  template <runtime::BlockRunner L>
  void before_adopt(L&) {
    if (before_break_) wait_idle();
  }
  template <runtime::BlockRunner L>
  bool after_adopt(L& lib) {
    if (!before_break_.exchange(false)) return false;
    evict_if(lib, [this](const Key& k) { return !current_.contains(k); });
    return true;
  }

  // Blocks until the background thread has nothing left to do (tests, benchmarks).
  void wait_idle() {
    std::unique_lock lk(bg_mu_);
    bg_cv_.wait(lk, [&] { return !next_ && !bg_busy_; });
  }

 private:
  using Job = std::function<void(const std::atomic<bool>&)>;

  // Scores every block of the recent plans (and the current plan's neighbours) and returns
  // the hot set to load, hottest first. mu_ held.
  template <class L>
  std::vector<Key> rescore(L& lib) {
    std::map<Key, double> weight;               // plan weight of each block
    std::map<std::tuple<TaskIndex, BlockIndex, VariantIndex>, std::set<std::vector<int>>> sharing;
    double w = 1.0;
    for (const Plan& pl : history_) {
      for (const auto& k : plan_keys(pl)) {
        auto& x = weight[k];
        x = std::max(x, w);
        const auto& [t, b, v, p] = k;
        sharing[{t, b, v}].insert(pl.tasks[static_cast<std::size_t>(t)].variant.choice);
      }
      w *= opt_.decay;
    }
    if (budget_ > 0 && opt_.neighbour_weight > 0) {
      for (const auto& k : plan_keys(history_.front())) {
        const auto& [t, b, v, p] = k;
        for (VariantIndex n : {v - 1, v + 1}) {
          if (n < 0 || n >= lib.num_variants(t)) continue;
          auto& x = weight[{t, b, n, p}];
          x = std::max(x, opt_.neighbour_weight);
        }
      }
    }
    double max_uses = 0;
    for (const auto& [_, u] : uses_) max_uses = std::max(max_uses, u);
    score_.clear();
    for (const auto& [k, pw] : weight) {
      const auto& [t, b, v, p] = k;
      const double bytes = std::max<double>(1.0, static_cast<double>(lib.block_bytes(t, b, v, p)));
      const double mib = bytes / (1024.0 * 1024.0);
      double cost = opt_.use_measured_load_cost ? measured_load_ms(k) : -1.0;
      if (cost < 0) cost = mib * opt_.default_load_ms_per_mib;
      auto u = uses_.find(k);
      const double use = 1.0 + (u == uses_.end() || max_uses == 0 ? 0.0 : u->second / max_uses);
      auto s = sharing.find({t, b, v});
      const double shares = s == sharing.end() ? 1.0 : static_cast<double>(s->second.size());
      // Plan weight orders first (a block of the current plan always outranks a recent or
      // neighbouring one, whatever its size or cost); use, sharing and cost per byte order
      // blocks of the same weight.
      const double within = std::min(use * shares * std::max(cost, 1e-3) / mib, kTier - 1);
      score_[k] = pw * kTier + within;
    }
    weight_ = weight;
    // Successor of each block in the current plan (outstanding demand, see acquire).
    next_of_.clear();
    expected_.clear();
    const Plan& cur = history_.front();
    for (std::size_t t = 0; t < cur.tasks.size(); ++t) {
      const auto& tp = cur.tasks[t];
      const auto n = std::min(tp.variant.choice.size(), tp.placement.processor.size());
      for (std::size_t b = 0; b + 1 < n; ++b)
        next_of_[{static_cast<TaskIndex>(t), static_cast<BlockIndex>(b), tp.variant.choice[b], tp.placement.processor[b]}] = {
            static_cast<TaskIndex>(t), static_cast<BlockIndex>(b + 1), tp.variant.choice[b + 1], tp.placement.processor[b + 1]};
    }
    // Usage decays per plan: a block used a lot long ago is not hot now.
    for (auto it = uses_.begin(); it != uses_.end();) {
      it->second *= 0.5;
      it = it->second < 0.5 ? uses_.erase(it) : std::next(it);
    }
    // Without a budget the hot set is the current plan only: no room is held for speculation.
    std::vector<Key> out;
    for (const auto& [k, s] : score_)
      if (budget_ > 0 || weight[k] >= 1.0) out.push_back(k);
    current_.clear();
    for (const auto& [k, pw] : weight)
      if (pw >= 1.0) current_.insert(k);
    // Blocks of the current plan first (a request needs them now), then by score.
    std::stable_sort(out.begin(), out.end(), [&](const Key& a, const Key& b) {
      const bool ca = weight[a] >= 1.0, cb = weight[b] >= 1.0;
      if (ca != cb) return ca;
      return score_[a] > score_[b];
    });
    return out;
  }

  double plan_weight(const Key& k) const {  // mu_ held
    auto it = weight_.find(k);
    return it == weight_.end() ? 0.0 : it->second;
  }
  // Eviction rank, lowest first: plan weight (tiers), then outstanding demand, then least
  // recently used. Unscored blocks are coldest.
  double rank(const Key& k) const {  // mu_ held
    const double pw = plan_weight(k);
    const double lru = 0.5 * static_cast<double>(last_use(k)) / static_cast<double>(tick_ + 1);
    if (pw <= 0) return lru;
    auto e = expected_.find(k);
    const double demand = e == expected_.end() ? 0.0 : static_cast<double>(e->second);
    return pw * kTier + std::min(demand, kTier / 4) + lru;  // stays within its tier
  }

  template <class L>
  void preload(L& lib, const std::vector<Key>& targets, const std::atomic<bool>& superseded, bool before_break) {
    // Without a budget, blocks outside the current plan go before the new ones load (the peak
    // is then the larger plan, not both); a request still on the old plan reloads what it needs.
    // Loading before breaking, they go in after_adopt instead.
    const bool unlimited = memory_budget() == 0;
    if (unlimited && !before_break) evict_if(lib, [this](const Key& k) { return !current_.contains(k); });
    for (const Key& k : targets) {
      if (superseded.load()) return;
      while (opt_.background && demand_waiting() && !superseded.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
      double pw = 0;
      {
        std::lock_guard lk(mu_);
        if (is_held(k)) continue;
        pw = plan_weight(k);
      }
      // A block of the current plan may displace only blocks outside it (displacing one of its
      // own would just move the stalls); a predicted block loads only into budget held by
      // blocks no scored plan uses.
      const bool current = pw >= 1.0;
      try {
        load_set(lib, {k}, [this](const Key& x) { return rank(x); }, /*demand=*/false,
                 [this, current](const Key& x) { return current ? plan_weight(x) < 1.0 : plan_weight(x) <= 0.0; });
      } catch (const Error& e) {
        // A device or file failure is recorded in stats(); a request needing the block fails over.
        if (!is_load_failure(e.code())) throw;
      }
    }
    // Without a budget nothing forces eviction: drop what no scored plan uses.
    if (!before_break)
      evict_if(lib, [this, unlimited](const Key& k) { return unlimited ? !current_.contains(k) : !score_.contains(k); });
  }

  void bg_loop() {
    std::unique_lock lk(bg_mu_);
    for (;;) {
      bg_cv_.wait(lk, [&] { return bg_stop_ || next_; });
      if (bg_stop_) return;
      Job job = std::move(next_);
      next_ = nullptr;
      superseded_ = false;
      bg_busy_ = true;
      lk.unlock();
      try {
        job(superseded_);
      } catch (...) {
        // A load that fails is recorded in stats(); the requests that need it fail over.
      }
      lk.lock();
      bg_busy_ = false;
      bg_cv_.notify_all();
    }
  }

  HotnessOptions opt_;
  std::deque<Plan> history_;        // newest first
  static constexpr double kTier = 1e9;  // score = plan weight x kTier + (use x sharing x cost per byte)
  static constexpr int kMaxExpected = 64;  // bounds counts left by requests that were dropped
  std::map<Key, double> score_;
  std::map<Key, double> weight_;         // plan weight of each scored block
  std::map<Key, Key> next_of_;           // successor of each block in the current plan
  std::map<Key, int> expected_;          // requests that will need the block next
  std::set<Key> current_;               // blocks of the current plan
  std::map<Key, double> uses_;      // acquires since the last plans (decayed)
  bool started_ = false;            // the first plan was loaded synchronously
  std::atomic<bool> before_break_{false};  // the last plan loads before the old one goes
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  std::thread bg_;
  Job next_;
  std::atomic<bool> superseded_{false};
  bool bg_busy_ = false, bg_stop_ = false;
};

}  // namespace sparseloom::preloader
