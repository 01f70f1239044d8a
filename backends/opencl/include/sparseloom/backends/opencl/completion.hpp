#pragma once
// How a call waits for the device. At batch 1 a GPU call's host time is launch plus completion,
// and the cheapest wait depends on the driver: on NVIDIA's OpenCL (H200, driver 580) clFinish
// after an event-less enqueue came out ~1.5 us per call below flushing and spinning on the
// call's event, the opposite of what spinning buys with its CUDA runtime. So `automatic`
// measures the waits once per context on an empty kernel and keeps the fastest; CPU devices
// (PoCL) block in the driver, since a spinning host thread would take a core from the kernels.
#include <CL/opencl.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "sparseloom/backends/opencl/error.hpp"

namespace sparseloom::opencl {

enum class Completion {
  automatic,  // CPU devices: wait; others: the fastest of the three below, measured per context
  wait,       // enqueue with an event, clWaitForEvents
  busy_poll,  // enqueue with an event, clFlush, spin on the event's status
  finish,     // enqueue without an event, clFinish
};

inline std::string to_string(Completion c) {
  switch (c) {
    case Completion::automatic: return "automatic";
    case Completion::wait: return "wait";
    case Completion::busy_poll: return "busy_poll";
    case Completion::finish: return "finish";
  }
  return "?";
}

// Host wall time per empty-kernel call (median) under each wait, and the fastest.
struct CompletionTrial {
  double wait_ms = 0, poll_ms = 0, finish_ms = 0;
  double kernel_ms = 0;  // its device time from event profiling, where a caller measured it
  Completion chosen = Completion::wait;
  bool measured = false;  // false: not a GPU/accelerator, or the trial failed (chosen = wait)
};

// One call to completion under `mode` (not automatic): `enqueue(cl_event*)` issues the work on
// queue `q`, asking for an event where the wait needs one.
template <class Ctx, class Enqueue>
void complete_call(Ctx& ctx, Completion mode, Enqueue&& enqueue, int q = 0) {
  if (mode == Completion::finish) {
    enqueue(static_cast<cl_event*>(nullptr));
    ctx.finish(q);
    return;
  }
  cl_event ev = nullptr;
  enqueue(&ev);
  try {
    ctx.wait(ev, mode == Completion::busy_poll, q);
  } catch (...) {
    clReleaseEvent(ev);
    throw;
  }
  clReleaseEvent(ev);
}

// A kernel that does nothing: the trial's, and the benchmark's per-call floor.
inline constexpr const char* kEmptyKernel = "__kernel void sl_empty(__global int* p) { if (p == 0) return; }";

// Times the three waits on an empty kernel, interleaved (rounds of `reps / 10` calls each) so a
// drift of the host's clock or load does not favour one of them.
template <class Ctx>
CompletionTrial measure_completion(Ctx& ctx, int reps = 300) {
  CompletionTrial t;
  cl::Kernel k = ctx.kernel(kEmptyKernel, "sl_empty");
  cl::Buffer dummy = guarded(ctx.where() + ": completion trial", [&] {
    cl::Buffer b(ctx.cl_context(), CL_MEM_READ_WRITE, 4);
    k.setArg(0, b);
    return b;
  });
  const std::size_t one = 1;
  auto enqueue = [&](cl_event* ev) {
    const cl_int rc = clEnqueueNDRangeKernel(ctx.queue(0)(), k(), 1, nullptr, &one, nullptr, 0, nullptr, ev);
    if (rc != CL_SUCCESS) ctx.fail(rc, "clEnqueueNDRangeKernel (completion trial)");
  };
  const Completion modes[3] = {Completion::wait, Completion::busy_poll, Completion::finish};
  std::vector<double> ms[3];
  for (int i = 0; i < 10; ++i) complete_call(ctx, Completion::finish, enqueue);  // warm-up
  const int round = std::max(1, reps / 10);
  for (int r = 0; r < 10; ++r)
    for (int m = 0; m < 3; ++m)
      for (int i = 0; i < round; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        complete_call(ctx, modes[m], enqueue);
        ms[m].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  t.wait_ms = median(ms[0]);
  t.poll_ms = median(ms[1]);
  t.finish_ms = median(ms[2]);
  const double best = std::min({t.wait_ms, t.poll_ms, t.finish_ms});
  // Ties go to the blocking waits (they leave the core to others).
  t.chosen = t.finish_ms == best ? Completion::finish : t.wait_ms == best ? Completion::wait : Completion::busy_poll;
  t.measured = true;
  return t;
}

}  // namespace sparseloom::opencl
