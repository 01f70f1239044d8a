#pragma once
// A block runner for preloader tests: per-block sizes, an optional load delay and gate, loads
// that fail on demand, and what the budget tests must see from outside the policy: the most
// bytes ever resident at once and the order of loads.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <thread>
#include <tuple>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/core/types.hpp"
#include "sparseloom/runtime/block_runner.hpp"

namespace pretest {

using sparseloom::BlockIndex;
using sparseloom::ProcessorIndex;
using sparseloom::TaskIndex;
using sparseloom::VariantIndex;
using Key = std::tuple<TaskIndex, BlockIndex, VariantIndex, ProcessorIndex>;

class Runner {
 public:
  Runner(int tasks, int blocks, int variants, int processors, std::size_t bytes = 100)
      : tasks_(tasks), blocks_(blocks), variants_(variants), procs_(processors), default_bytes_(bytes) {}

  int num_tasks() const { return tasks_; }
  int num_blocks(TaskIndex) const { return blocks_; }
  int num_variants(TaskIndex) const { return variants_; }
  int num_processors() const { return procs_; }
  std::vector<sparseloom::Tensor> run(TaskIndex, const sparseloom::StitchedVariant&, BlockIndex, ProcessorIndex,
                                      std::span<const sparseloom::Tensor> in) {
    return {in.begin(), in.end()};
  }
  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    return resident_.contains({t, b, v, p});
  }
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    const Key k{t, b, v, p};
    {
      std::unique_lock lk(mu_);
      ++concurrent_loads_;
      max_concurrent_loads_ = std::max(max_concurrent_loads_, concurrent_loads_);
      if (gated_.contains(k)) gate_cv_.wait(lk, [&] { return !gated_.contains(k); });
    }
    double delay = delay_ms_;
    if (auto it = key_delay_.find(k); it != key_delay_.end()) delay = it->second;
    if (delay > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(delay));
    std::lock_guard lk(mu_);
    --concurrent_loads_;
    if (failing_.contains(k))
      throw sparseloom::Error(sparseloom::ErrorCode::device, "test runner", "block failed to compile");
    if (resident_.insert(k).second) {
      bytes_ += actual_bytes(k);
      auto& on = on_proc_[p];
      on += actual_bytes(k);
      max_on_proc_[p] = std::max(max_on_proc_[p], on);
    }
    max_bytes_ = std::max(max_bytes_, bytes_);
    order_.push_back(k);
    ++loads_[k];
  }
  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    std::lock_guard lk(mu_);
    if (resident_.erase({t, b, v, p})) {
      bytes_ -= actual_bytes({t, b, v, p});
      on_proc_[p] -= actual_bytes({t, b, v, p});
    }
  }
  std::size_t resident_bytes() const {
    std::lock_guard lk(mu_);
    return bytes_;
  }
  std::size_t block_bytes(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    auto it = sizes_.find({t, b, v, p});
    return it == sizes_.end() ? default_bytes_ : it->second;
  }

  // --- set-up (before use) and observations ---
  void set_size(const Key& k, std::size_t bytes) { sizes_[k] = bytes; }
  void set_delay_ms(double ms) { delay_ms_ = ms; }
  // The block packs to `bytes` although block_bytes() says otherwise (a timed format trial).
  void set_actual(const Key& k, std::size_t bytes) { actual_[k] = bytes; }
  void set_delay_ms(const Key& k, double ms) { key_delay_[k] = ms; }
  void fail(const Key& k) {
    std::lock_guard lk(mu_);
    failing_.insert(k);
  }
  void gate(const Key& k) {
    std::lock_guard lk(mu_);
    gated_.insert(k);
  }
  void open(const Key& k) {
    std::lock_guard lk(mu_);
    gated_.erase(k);
    gate_cv_.notify_all();
  }
  std::size_t max_bytes() const {
    std::lock_guard lk(mu_);
    return max_bytes_;
  }
  // The most bytes ever resident on processor p at once.
  std::size_t max_bytes_on(ProcessorIndex p) const {
    std::lock_guard lk(mu_);
    auto it = max_on_proc_.find(p);
    return it == max_on_proc_.end() ? 0 : it->second;
  }
  int loads_in_progress() const {
    std::lock_guard lk(mu_);
    return concurrent_loads_;
  }
  int max_concurrent_loads() const {
    std::lock_guard lk(mu_);
    return max_concurrent_loads_;
  }
  int loads(const Key& k) const {
    std::lock_guard lk(mu_);
    auto it = loads_.find(k);
    return it == loads_.end() ? 0 : it->second;
  }
  std::vector<Key> order() const {
    std::lock_guard lk(mu_);
    return order_;
  }
  std::set<Key> resident() const {
    std::lock_guard lk(mu_);
    return resident_;
  }

 private:
  int tasks_, blocks_, variants_, procs_;
  std::size_t default_bytes_;
  std::map<Key, std::size_t> sizes_;
  std::map<Key, double> key_delay_;
  std::map<Key, std::size_t> actual_;
  std::size_t actual_bytes(const Key& k) const {
    auto it = actual_.find(k);
    const auto& [t, b, v, p] = k;
    return it == actual_.end() ? block_bytes(t, b, v, p) : it->second;
  }
  double delay_ms_ = 0;
  mutable std::mutex mu_;
  std::condition_variable gate_cv_;
  std::set<Key> resident_, failing_, gated_;
  std::size_t bytes_ = 0, max_bytes_ = 0;
  std::map<ProcessorIndex, std::size_t> on_proc_, max_on_proc_;
  int concurrent_loads_ = 0, max_concurrent_loads_ = 0;
  std::vector<Key> order_;
  std::map<Key, int> loads_;
};
static_assert(sparseloom::runtime::BlockRunner<Runner>);

// Polls cond every 2 ms for at most 5 s.
template <class F>
bool eventually(F&& cond) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

// A plan running stitch `choice` of every task on processor p.
inline sparseloom::Plan plan_of(std::vector<std::vector<int>> choices, ProcessorIndex p = 0) {
  sparseloom::Plan pl;
  for (auto& c : choices) {
    sparseloom::TaskPlan tp;
    tp.placement.processor.assign(c.size(), p);
    tp.variant.choice = std::move(c);
    pl.tasks.push_back(std::move(tp));
  }
  return pl;
}

}  // namespace pretest
