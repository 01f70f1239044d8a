#pragma once
// The block library: per (task, block, variant, processor) the block compiled by that
// processor's backend, loaded and unloaded on demand (the preloader decides), and run for any
// stitched variant with its repair. Models runtime::BlockRunner. Backends are a compile-time
// set; a processor's backend is picked by index into it and executables live in a
// std::variant, so the request path has no virtual call.
#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/concepts/backend.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

namespace sparseloom::stitch {

struct ProcessorBinding {
  std::string name;
  std::size_t backend = 0;  // index into the library's backend set
  CompileOptions options;
};

template <Backend... Bs>
class BlockLibrary {
  using Exe = std::variant<std::monostate, typename Bs::Executable...>;

 public:
  // repair_samples: calibration images used per stitch repair (0 = the whole committed set).
  BlockLibrary(std::vector<const zoo::TaskZoo*> tasks, std::tuple<Bs...> backends, std::vector<ProcessorBinding> processors,
               std::int64_t repair_samples = 0)
      : tasks_(std::move(tasks)), backends_(std::move(backends)), procs_(std::move(processors)), repair_samples_(repair_samples) {
    for (const auto& p : procs_)
      check(p.backend < sizeof...(Bs), ErrorCode::invalid_argument, "BlockLibrary",
            "processor '" + p.name + "' names backend " + std::to_string(p.backend) + " of " + std::to_string(sizeof...(Bs)));
    for (const auto* z : tasks_) {
      oracle_.push_back(std::make_unique<StitchedModel<reference::Backend>>(*z, reference::Backend{}));
      slots_.emplace_back(static_cast<std::size_t>(z->num_blocks() * z->num_variants()) * procs_.size());
    }
    on_proc_.assign(procs_.size(), 0);
  }

  int num_tasks() const { return static_cast<int>(tasks_.size()); }
  int num_blocks(TaskIndex t) const { return tasks_.at(t)->num_blocks(); }
  int num_variants(TaskIndex t) const { return tasks_.at(t)->num_variants(); }
  int num_processors() const { return static_cast<int>(procs_.size()); }
  const zoo::TaskZoo& task(TaskIndex t) const { return *tasks_.at(t); }
  const ProcessorBinding& processor(ProcessorIndex p) const { return procs_.at(p); }
  // The reference model of a task (repairs and accuracy are computed on it).
  const StitchedModel<reference::Backend>& oracle(TaskIndex t) const { return *oracle_.at(t); }

  bool is_resident(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    return slot(t, b, v, p).exe.index() != 0;
  }

  // A real load: the block's weights are read from the variant's ONNX file (for a zoo loaded
  // from disk), packed by p's backend (uploaded, for a device) and held until unload() frees
  // them. A missing or corrupt file throws Error(io / parse) naming it: the engine then avoids
  // that (block, variant) everywhere. The read graph is dropped once packed.
  void load(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    Slot& s = slot(t, b, v, p);
    if (s.exe.index() != 0) return;
    const ir::Graph g = tasks_.at(t)->read_block(b, v);
    compile_into<0>(procs_.at(p).backend, g, procs_[p].options, s.exe);
    s.bytes = exe_bytes(s.exe, g);
    s.known.store(s.bytes);  // block_bytes() is exact from now on, resident or not
    std::lock_guard lock(mu_);
    resident_ += s.bytes;
    on_proc_.at(static_cast<std::size_t>(p)) += s.bytes;
  }

  void unload(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    Slot& s = slot(t, b, v, p);
    if (s.exe.index() == 0) return;
    s.exe = std::monostate{};
    std::lock_guard lock(mu_);
    resident_ -= s.bytes;
    on_proc_.at(static_cast<std::size_t>(p)) -= s.bytes;
  }

  std::size_t resident_bytes() const {
    std::lock_guard lock(mu_);
    return resident_ + repair_bytes_;
  }
  // Block bytes resident on processor p (repairs are host-side and not counted here).
  std::size_t resident_bytes(ProcessorIndex p) const {
    std::lock_guard lock(mu_);
    return on_proc_.at(static_cast<std::size_t>(p));
  }
  // Exactly what load() will add to resident_bytes() (packed weights, kept constants and
  // workspaces as the backend reports them): the preloader's budget check relies on it. Known
  // after the block's first load on p; before that it is measured by compiling the block once
  // and freeing it again (the profiler's first load does this for every block).
  std::size_t block_bytes(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    const Slot& s = slot(t, b, v, p);
    if (const auto k = s.known.load(); k != kUnknown) return k;
    std::lock_guard lock(measure_mu_);
    if (const auto k = s.known.load(); k != kUnknown) return k;
    const ir::Graph& g = tasks_.at(t)->blocks.at(b).at(v);
    Exe tmp;
    auto& self = const_cast<BlockLibrary&>(*this);  // compiling uses the (non-const) backend; no state of ours changes
    self.template compile_into<0>(procs_.at(p).backend, g, procs_[p].options, tmp);
    s.known.store(exe_bytes(tmp, g));
    return s.known.load();
  }

  // Repair of a stitch, computed once (on the reference oracle, from the calibration set) and
  // shared by every request that runs it. Call prepare() when a plan is adopted so no request
  // pays for it.
  // Computed outside the map's lock, once per stitch: requests of other stitches never wait.
  const StitchRepair& repair(TaskIndex t, const StitchedVariant& s) {
    return repair(t, s, [](std::size_t, auto&& commit) { commit(); });
  }
  // admit(bytes, commit): the memory policy makes room for the repair's bytes, then calls
  // commit(), which counts them in resident_bytes() (Engine: Preloader::admit).
  template <class Admit>
  const StitchRepair& repair(TaskIndex t, const StitchedVariant& s, Admit&& admit) {
    Entry* e = nullptr;
    {
      std::lock_guard lock(repair_mu_);
      auto& slot = repairs_[std::make_pair(t, s.choice)];
      if (!slot) slot = std::make_unique<Entry>();
      e = slot.get();
    }
    std::call_once(e->once, [&] {
      e->repair = s.is_plain() ? plain_repair(t) : oracle_.at(t)->repair(s, 1, repair_samples_);
      admit(e->repair.bytes, [&] {
        std::lock_guard l2(mu_);
        repair_bytes_ += e->repair.bytes;
      });
      e->done.store(true);
    });
    return e->repair;
  }
  void prepare(TaskIndex t, const StitchedVariant& s) { repair(t, s); }
  template <class Admit>
  void prepare(TaskIndex t, const StitchedVariant& s, Admit&& admit) {
    repair(t, s, std::forward<Admit>(admit));
  }
  // Forgets every computed repair (and its bytes), so the next plan pays its stitch-time work
  // again: benchmarks start each policy from the same state. Only while nothing runs.
  void clear_repairs() {
    std::lock_guard lock(repair_mu_);
    repairs_.clear();
    std::lock_guard l2(mu_);
    repair_bytes_ = 0;
  }
  // Whether s runs without stitch-time work first: plain, no switch into a block whose repair
  // measures statistics (its repair is a few pointers, set in microseconds), or its repair is
  // computed. The Engine makes an interim plan while a planned stitch is not prepared.
  bool prepared(TaskIndex t, const StitchedVariant& s) const {
    if (s.is_plain() || last_calibrated_block(tasks_.at(t)->manifest, s) < 0) return true;
    std::lock_guard lock(repair_mu_);
    auto it = repairs_.find(std::make_pair(t, s.choice));
    return it != repairs_.end() && it->second && it->second->done.load();
  }

  std::vector<Tensor> run(TaskIndex t, const StitchedVariant& s, BlockIndex b, ProcessorIndex p, std::span<const Tensor> in) {
    const StitchRepair& r = repair(t, s);
    Tensor x = in.empty() ? Tensor() : in.front();
    const RunOptions ro = repair_block(&r, b, x);
    return run_block(t, b, s.choice.at(b), p, x, ro);
  }

  // One resident block with explicit run options (the profiler times the repaired path so).
  std::vector<Tensor> run_block(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p, const Tensor& x,
                                const RunOptions& ro) {
    const Slot& sl = slot(t, b, v, p);
    check(sl.exe.index() != 0, ErrorCode::internal, tasks_.at(t)->manifest.task,
          "block " + std::to_string(b) + " is not resident on " + procs_.at(p).name);
    return std::visit(
        [&](const auto& e) -> std::vector<Tensor> {
          if constexpr (std::is_same_v<std::decay_t<decltype(e)>, std::monostate>) {
            return {};
          } else {
            return e.run(std::span<const Tensor>(&x, 1), ro);
          }
        },
        sl.exe);
  }

 private:
  static constexpr std::size_t kUnknown = static_cast<std::size_t>(-1);
  struct Slot {
    Exe exe;
    std::size_t bytes = 0;
    mutable std::atomic<std::size_t> known{kUnknown};  // exact packed size once measured
    Slot() = default;
    Slot(Slot&& o) noexcept : exe(std::move(o.exe)), bytes(o.bytes), known(o.known.load()) {}
  };

  // Backends that pack weights (sparse formats, device buffers) report what they hold.
  static std::size_t exe_bytes(const Exe& exe, const ir::Graph& g) {
    return std::visit(
        [&](const auto& e) -> std::size_t {
          if constexpr (requires { e.resident_bytes(); }) return static_cast<std::size_t>(e.resident_bytes());
          else return graph_bytes(g);
        },
        exe);
  }

  Slot& slot(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) {
    return const_cast<Slot&>(std::as_const(*this).slot(t, b, v, p));
  }
  const Slot& slot(TaskIndex t, BlockIndex b, VariantIndex v, ProcessorIndex p) const {
    const auto* z = tasks_.at(t);
    check(b >= 0 && b < z->num_blocks() && v >= 0 && v < z->num_variants() && p >= 0 && p < num_processors(),
          ErrorCode::invalid_argument, z->manifest.task, "block/variant/processor index out of range");
    return slots_[t][(static_cast<std::size_t>(b) * z->num_variants() + v) * procs_.size() + p];
  }

  template <std::size_t I>
  void compile_into(std::size_t backend, const ir::Graph& g, const CompileOptions& o, Exe& out) {
    if constexpr (I < sizeof...(Bs)) {
      if (backend == I) {
        out.template emplace<I + 1>(std::get<I>(backends_).compile(g, o));
        return;
      }
      compile_into<I + 1>(backend, g, o, out);
    }
  }

  static std::size_t graph_bytes(const ir::Graph& g) {
    std::size_t n = 0;
    for (const auto& [_, t] : g.initializers) n += t.nbytes();
    return n;
  }

  StitchRepair plain_repair(TaskIndex t) const {
    StitchRepair r;
    r.affine.resize(static_cast<std::size_t>(tasks_.at(t)->num_blocks()));
    r.pre_map.assign(r.affine.size(), nullptr);
    return r;
  }

  std::vector<const zoo::TaskZoo*> tasks_;
  std::tuple<Bs...> backends_;
  std::vector<ProcessorBinding> procs_;
  std::vector<std::unique_ptr<StitchedModel<reference::Backend>>> oracle_;
  std::vector<std::vector<Slot>> slots_;  // [task][(block * variants + variant) * processors + processor]
  mutable std::mutex mu_, measure_mu_;
  std::size_t resident_ = 0, repair_bytes_ = 0;
  std::vector<std::size_t> on_proc_;  // resident block bytes per processor
  struct Entry {
    std::once_flag once;
    StitchRepair repair;
    std::atomic<bool> done{false};
  };
  std::int64_t repair_samples_ = 0;
  mutable std::mutex repair_mu_;
  std::map<std::pair<TaskIndex, std::vector<int>>, std::unique_ptr<Entry>> repairs_;
};

}  // namespace sparseloom::stitch
