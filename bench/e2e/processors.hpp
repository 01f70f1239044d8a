#pragma once
// The backends a scenario's processors run on in the e2e harness (and the CLI's run/profile):
// up to two cpu core groups (each its own cpu::Backend and pinned pool), one OpenCL device, and
// the reference backend, whichever of them this build has. The library's backend set is fixed
// at compile time; a processor names its backend in the scenario and is bound to its index.
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/stitch/block_library.hpp"
#ifdef SPARSELOOM_E2E_HAS_CPU
#include "sparseloom/backends/cpu/backend.hpp"
#endif
#ifdef SPARSELOOM_E2E_HAS_OPENCL
#include "sparseloom/backends/opencl/backend.hpp"
#endif

namespace sparseloom::e2e {

#ifdef SPARSELOOM_E2E_HAS_OPENCL
// The OpenCL processor's backend, opened only when the scenario names one: opening a context
// costs a PoCL start-up, and throws where no OpenCL platform exists.
class OpenclSlot {
 public:
  using Executable = opencl::Executable;
  static constexpr std::string_view name() { return "opencl"; }
  OpenclSlot() = default;
  explicit OpenclSlot(opencl::Backend b) : be_(std::move(b)) {}
  Executable compile(const ir::Graph& g, const CompileOptions& o) const {
    check(be_.has_value(), ErrorCode::internal, "e2e", "no opencl processor was opened");
    return be_->compile(g, o);
  }

 private:
  std::optional<opencl::Backend> be_;
};
#endif

#if defined(SPARSELOOM_E2E_HAS_CPU) && defined(SPARSELOOM_E2E_HAS_OPENCL)
using Library = stitch::BlockLibrary<cpu::Backend, cpu::Backend, OpenclSlot, reference::Backend>;
constexpr std::size_t kMaxCpu = 2, kOpenclIndex = 2, kReferenceIndex = 3;
#elif defined(SPARSELOOM_E2E_HAS_CPU)
using Library = stitch::BlockLibrary<cpu::Backend, cpu::Backend, reference::Backend>;
constexpr std::size_t kMaxCpu = 2, kOpenclIndex = 0, kReferenceIndex = 2;
#elif defined(SPARSELOOM_E2E_HAS_OPENCL)
using Library = stitch::BlockLibrary<OpenclSlot, reference::Backend>;
constexpr std::size_t kMaxCpu = 0, kOpenclIndex = 0, kReferenceIndex = 1;
#else
using Library = stitch::BlockLibrary<reference::Backend>;
constexpr std::size_t kMaxCpu = 0, kOpenclIndex = 0, kReferenceIndex = 0;
#endif
#ifdef SPARSELOOM_E2E_HAS_OPENCL
constexpr bool kHasOpencl = true;
#else
constexpr bool kHasOpencl = false;
#endif

// What the scenario's processors asked for, and what opening them gave.
struct Backends {
  std::vector<int> cpu_threads;  // per cpu processor, in scenario order (at most kMaxCpu)
  bool opencl = false;           // the scenario has an opencl processor
  // Filled by make_library when an OpenCL device was opened: its label (name, platform,
  // version, driver) and a switch that injects (true) or clears (false) a lost-device fault.
  std::string opencl_device;
  std::function<void(bool)> lose_opencl_device;
};

// The library over `tasks` with the processors of `bind` (each naming an index into Library's
// backend set). CPU core groups get their own cores where the machine has enough.
inline std::unique_ptr<Library> make_library(std::vector<const zoo::TaskZoo*> tasks, std::vector<stitch::ProcessorBinding> bind,
                                             Backends& be, std::int64_t repair_samples) {
#ifdef SPARSELOOM_E2E_HAS_CPU
  auto threads = be.cpu_threads;
  threads.resize(kMaxCpu, 1);
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  auto cores = [&](int first, int n) {
    std::vector<int> c;
    for (int i = 0; i < n && first + i < hw; ++i) c.push_back(first + i);
    return static_cast<int>(c.size()) == n ? c : std::vector<int>{};
  };
  auto cpus = std::make_tuple(cpu::Backend(threads[0], cores(0, threads[0])), cpu::Backend(threads[1], cores(threads[0], threads[1])));
#else
  auto cpus = std::tuple<>{};
#endif
#ifdef SPARSELOOM_E2E_HAS_OPENCL
  OpenclSlot ocl;
  if (be.opencl) {
    opencl::Backend b;  // SPARSELOOM_OPENCL_DEVICE picks the device; any prefers a GPU
    auto ctx = b.context();
    ocl = OpenclSlot(std::move(b));
    be.opencl_device = ctx->device().label();
    be.lose_opencl_device = [ctx](bool lost) {
      if (lost) ctx->faults().lose_device = true;
      else ctx->faults().reset();
    };
  }
  auto gpus = std::make_tuple(std::move(ocl));
#else
  auto gpus = std::tuple<>{};
#endif
  auto all = std::tuple_cat(std::move(cpus), std::move(gpus), std::make_tuple(reference::Backend{}));
  return std::make_unique<Library>(std::move(tasks), std::move(all), std::move(bind), repair_samples);
}

}  // namespace sparseloom::e2e
