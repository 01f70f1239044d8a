#pragma once
// estimator::Profiled, the default Estimator: latency of a stitched variant on a placement from
// per-block profiles plus boundary (transfer) and repair terms; accuracy from the
// AccuracyModel (single-swap screening + fitted interactions); memory exact from the blocks'
// resident bytes and the stitch's repair data.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sparseloom/concepts/policies.hpp"
#include "sparseloom/estimator/accuracy_model.hpp"
#include "sparseloom/estimator/profile_table.hpp"

namespace sparseloom::estimator {

class Profiled {
 public:
  struct Task {
    std::string name;
    AccuracyModel accuracy;
    TaskProfile profile;  // latency [block][variant][processor]; samples == 0: cannot run there
  };

  Profiled() = default;
  Profiled(std::vector<Task> tasks, std::vector<ProcessorProfile> processors)
      : tasks_(std::move(tasks)), processors_(std::move(processors)) {
    for (const auto& t : tasks_) {
      check(static_cast<int>(t.profile.block.size()) == t.accuracy.blocks(), ErrorCode::invalid_argument, t.name,
            "profile and accuracy model disagree on the number of blocks");
      for (const auto& b : t.profile.block) {
        check(static_cast<int>(b.size()) == t.accuracy.variants(), ErrorCode::invalid_argument, t.name,
              "profile and accuracy model disagree on the number of variants");
        for (const auto& v : b)
          check(v.size() == processors_.size(), ErrorCode::invalid_argument, t.name, "profile lacks a processor");
      }
    }
  }

  int num_tasks() const { return static_cast<int>(tasks_.size()); }
  int num_blocks(TaskIndex t) const { return tasks_.at(t).accuracy.blocks(); }
  int num_variants(TaskIndex t) const { return tasks_.at(t).accuracy.variants(); }
  int num_processors() const { return static_cast<int>(processors_.size()); }
  const std::vector<ProcessorProfile>& processors() const { return processors_; }
  const Task& task(TaskIndex t) const { return tasks_.at(t); }

  bool can_place(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return tasks_.at(t).profile.block.at(b).at(v).at(p).samples > 0;
  }
  double accuracy_pct(TaskIndex t, const StitchedVariant& s) const { return tasks_.at(t).accuracy.predict(s); }
  double block_latency_ms(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return tasks_.at(t).profile.block.at(b).at(v).at(p).median_ms;
  }

  double latency_ms(TaskIndex t, const StitchedVariant& s, const Placement& pl) const {
    const auto& tp = tasks_.at(t).profile;
    check(s.choice.size() == tp.block.size() && pl.processor.size() == tp.block.size(), ErrorCode::invalid_argument,
          tasks_.at(t).name, "stitch or placement has the wrong number of blocks");
    double ms = 0;
    for (std::size_t b = 0; b < s.choice.size(); ++b) {
      const bool switched = b > 0 && s.choice[b] != s.choice[b - 1];
      // After a switch the block runs with its repair epilogue: its own profile when measured.
      const LatencyStats* rep = switched && b < tp.repaired.size() ? &tp.repaired[b].at(s.choice[b]).at(pl.processor[b]) : nullptr;
      ms += (rep && rep->samples > 0 ? *rep : tp.block[b][s.choice[b]][pl.processor[b]]).median_ms;
      if (b > 0 && pl.processor[b] != pl.processor[b - 1]) ms += tp.transfer_ms.at(b - 1);
      if (switched && b < tp.repair_ms.size()) ms += tp.repair_ms[b];
    }
    return ms;
  }

  double block_bytes(TaskIndex t, BlockIndex b, VariantIndex v) const { return tasks_.at(t).profile.bytes.at(b).at(v); }

  double memory_bytes(TaskIndex t, const StitchedVariant& s) const {
    const auto& tp = tasks_.at(t).profile;
    double bytes = 0;
    for (std::size_t b = 0; b < s.choice.size(); ++b) {
      bytes += tp.bytes.at(b).at(s.choice[b]);
      if (b > 0 && s.choice[b] != s.choice[b - 1] && b < tp.repair_bytes.size()) bytes += tp.repair_bytes[b];
    }
    return bytes;
  }

 private:
  std::vector<Task> tasks_;
  std::vector<ProcessorProfile> processors_;
};

static_assert(Estimator<Profiled>);

}  // namespace sparseloom::estimator
