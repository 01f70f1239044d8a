#pragma once
// One device in use: its context, in-order queue(s), program cache, fault injector, and the
// counters the engine reads (resident bytes, host<->device transfers).
#include <CL/opencl.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sparseloom/backends/opencl/completion.hpp"
#include "sparseloom/backends/opencl/device.hpp"
#include "sparseloom/backends/opencl/error.hpp"
#include "sparseloom/backends/opencl/program_cache.hpp"

namespace sparseloom::opencl {

struct ContextOptions {
  bool profiling = false;  // event profiling on the queues (kernel-only times)
  int queues = 1;          // in-order queues; more than one lets independent tasks overlap
  // One more queue, with profiling, after the others: kernel-only times beside unprofiled
  // host-timed runs (profiling can add per-call overhead on some drivers).
  bool profiling_queue = false;
};

// Host<->device traffic at stitching and processor boundaries: bytes, calls and host wall
// time of the blocking copies, so the estimator can charge boundary costs.
struct TransferStats {
  std::atomic<std::uint64_t> h2d_bytes{0}, d2h_bytes{0}, h2d_calls{0}, d2h_calls{0};
  std::atomic<std::uint64_t> h2d_ns{0}, d2h_ns{0};
  void reset() noexcept { h2d_bytes = d2h_bytes = h2d_calls = d2h_calls = h2d_ns = d2h_ns = 0; }
};

class Context {
 public:
  explicit Context(DeviceInfo device, ContextOptions opts = {}) : info_(std::move(device)), opts_(opts) {
    guarded(where(), [&] {
      ctx_ = cl::Context(info_.device);
      const cl_command_queue_properties props = opts_.profiling ? CL_QUEUE_PROFILING_ENABLE : 0;
      for (int i = 0; i < std::max(1, opts_.queues); ++i)
        queues_.emplace_back(ctx_, info_.device, props);
      if (opts_.profiling_queue) queues_.emplace_back(ctx_, info_.device, CL_QUEUE_PROFILING_ENABLE);
      return 0;
    });
  }
  // Selects a device (SPARSELOOM_OPENCL_DEVICE overrides `want`) and opens it.
  static std::unique_ptr<Context> open(DeviceSelector want = {}, ContextOptions opts = {}) {
    return std::make_unique<Context>(select_device(std::move(want)), opts);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const DeviceInfo& device() const noexcept { return info_; }
  const ContextOptions& options() const noexcept { return opts_; }
  cl::Context& cl_context() noexcept { return ctx_; }
  cl::CommandQueue& queue(int i = 0) { return queues_.at(static_cast<std::size_t>(i)); }
  // Index of the profiling queue, or -1 without ContextOptions::profiling_queue.
  int profiling_queue() const noexcept { return opts_.profiling_queue ? static_cast<int>(queues_.size()) - 1 : -1; }
  ProgramCache& programs() noexcept { return programs_; }
  FaultInjector& faults() noexcept { return faults_; }
  TransferStats& transfers() noexcept { return transfers_; }
  std::int64_t resident_bytes() const noexcept { return resident_.load(); }
  void add_resident(std::int64_t delta) noexcept { resident_ += delta; }

  // After a lost-device fault every call fails fast with the same error: the engine moves the
  // processor's work elsewhere instead of retrying into a dead device.
  bool lost() const noexcept { return lost_ || faults_.lose_device; }
  void mark_lost() noexcept { lost_ = true; }
  void ensure_alive(std::string_view what) const {
    if (lost()) throw DeviceError(FaultKind::lost_device, CL_DEVICE_NOT_AVAILABLE, where(), std::string(what));
  }

  cl::Kernel kernel(std::string_view source, const char* name, const std::string& build_options = {}) {
    ensure_alive("building kernel");
    auto prog = programs_.get(ctx_, info_.device, source, build_options, &faults_);
    return guarded(where() + ": kernel " + name, [&] { return cl::Kernel(prog, name); });
  }

  // Builds the programs of `specs` several at once (ProgramCache::prebuild), so the kernel()
  // calls that follow find them built.
  void prebuild(const std::vector<ProgramSpec>& specs) {
    if (lost()) return;
    programs_.prebuild(ctx_, info_.device, specs, &faults_);
  }

  // Waits for queue i; the only blocking call on the per-request path.
  void finish(int i = 0) {
    ensure_alive("finish");
    const cl_int rc = clFinish(queue(i)());
    if (rc != CL_SUCCESS) fail(rc, "clFinish");
  }

  // Waits for `ev` (and so for everything before it on an in-order queue). busy_poll: flush the
  // queue and spin on the event's status instead of sleeping in the driver (clWaitForEvents /
  // clFinish), which on GPUs saves the wake-up latency of a blocking wait per request.
  void wait(cl_event ev, bool busy_poll, int q = 0) {
    ensure_alive("wait");
    if (busy_poll) {
      cl_int rc = clFlush(queue(q)());
      if (rc != CL_SUCCESS) fail(rc, "clFlush");
      cl_int st = CL_QUEUED;
      do {
        rc = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, nullptr);
        if (rc != CL_SUCCESS) fail(rc, "clGetEventInfo");
      } while (st > CL_COMPLETE);
      if (st < 0) fail(st, "command execution");
      return;
    }
    const cl_int rc = clWaitForEvents(1, &ev);
    if (rc != CL_SUCCESS) fail(rc, "clWaitForEvents");
  }

  // The wait `want` stands for on this device: automatic is `wait` on CPU devices and the
  // fastest wait of a trial (measured on first use, then kept for the context) elsewhere.
  Completion resolve(Completion want) {
    if (want != Completion::automatic) return want;
    if (info_.type == DeviceType::cpu) return Completion::wait;
    return completion_trial().chosen;
  }
  // The trial itself (CPU devices too, when asked). A failed trial (a device fault) falls back
  // to `wait` and is tried again on the next call.
  CompletionTrial completion_trial() {
    std::lock_guard lock(trial_mu_);
    if (!trial_) {
      try {
        trial_ = measure_completion(*this);
      } catch (const Error&) {
        return {};
      }
    }
    return *trial_;
  }

  // Maps a failed call to DeviceError, remembering a lost device.
  [[noreturn]] void fail(cl_int rc, std::string_view call) {
    if (classify(rc) == FaultKind::lost_device) lost_ = true;
    throw DeviceError(classify(rc), rc, where(), std::string(call));
  }

  std::string where() const { return "opencl device '" + info_.name + "'"; }

 private:
  DeviceInfo info_;
  ContextOptions opts_;
  cl::Context ctx_;
  std::vector<cl::CommandQueue> queues_;
  ProgramCache programs_;
  FaultInjector faults_;
  TransferStats transfers_;
  std::atomic<std::int64_t> resident_{0};
  std::atomic<bool> lost_{false};
  std::mutex trial_mu_;
  std::optional<CompletionTrial> trial_;
};

}  // namespace sparseloom::opencl
