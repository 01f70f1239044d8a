#pragma once
// Built programs, keyed by device + source hash + build options, shared by every op on one
// context. Thread-safe; a failed build is not cached, so a fixed source can be rebuilt.
#include <CL/opencl.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "sparseloom/backends/opencl/error.hpp"

namespace sparseloom::opencl {

// FNV-1a, 64 bit: stable across runs, good enough to key a handful of kernel sources.
constexpr std::uint64_t hash_source(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A program to build: its source and build options.
struct ProgramSpec {
  std::string source, options;
};

class ProgramCache {
 public:
  using Key = std::tuple<cl_device_id, std::uint64_t, std::string>;

  // Options every build gets: OpenCL C 1.2 (PoCL and NVIDIA both offer it), mad allowed.
  static constexpr std::string_view kBaseOptions = "-cl-std=CL1.2 -cl-mad-enable";

  cl::Program get(const cl::Context& ctx, const cl::Device& dev, std::string_view source,
                  const std::string& options, const FaultInjector* faults = nullptr) {
    const Key key{dev(), hash_source(source), options};
    {
      std::lock_guard lock(mu_);
      if (auto it = programs_.find(key); it != programs_.end()) {
        ++hits_;
        return it->second;
      }
    }
    const std::string where = "opencl::ProgramCache::get(options '" + options + "')";
    if (faults && (faults->fail_build || faults->lose_device))
      throw DeviceError(faults->lose_device ? FaultKind::lost_device : FaultKind::build,
                        faults->lose_device ? CL_DEVICE_NOT_AVAILABLE : CL_BUILD_PROGRAM_FAILURE,
                        where, "injected fault; build log:\n<injected>");
    // Built outside the lock, so builds of different programs run at once (prebuild); two
    // threads building the same one keep the first.
    cl::Program prog = guarded(where, [&] {
      cl::Program p(ctx, std::string(source));
      const std::string opts = std::string(kBaseOptions) + " " + options;
      try {
        p.build(std::vector<cl::Device>{dev}, opts.c_str());
      } catch (const cl::Error& e) {
        // The log says which line failed: that is what a user needs to see.
        std::string log;
        try {
          log = p.getBuildInfo<CL_PROGRAM_BUILD_LOG>(dev);
        } catch (const cl::Error&) {
        }
        throw DeviceError(FaultKind::build, e.err(), where, "build log:\n" + log);
      }
      return p;
    });
    std::lock_guard lock(mu_);
    const auto [it, inserted] = programs_.emplace(key, prog);
    if (inserted) ++builds_;
    return it->second;
  }

  // Builds the programs of `specs` not cached yet on up to `threads` host threads: a per-layer
  // trial compiles tens of geometries, and a driver's compiler uses one core per build (the
  // NVIDIA driver ~0.1-0.3 s each, so a MobileNetV2 took over 45 s one at a time). Failures
  // are left for get() to report where the program is used.
  void prebuild(const cl::Context& ctx, const cl::Device& dev, const std::vector<ProgramSpec>& specs,
                const FaultInjector* faults = nullptr, unsigned threads = 0) {
    if (faults && (faults->fail_build || faults->lose_device)) return;
    std::vector<const ProgramSpec*> todo;
    {
      std::lock_guard lock(mu_);
      for (const auto& s : specs)
        if (!programs_.count(Key{dev(), hash_source(s.source), s.options})) todo.push_back(&s);
    }
    if (todo.size() < 2) return;  // one build gains nothing from a thread
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min<unsigned>({threads, 16u, static_cast<unsigned>(todo.size())});
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i; (i = next++) < todo.size();) {
        try {
          get(ctx, dev, todo[i]->source, todo[i]->options, faults);
        } catch (...) {  // reported by the get() of the op that needs it
        }
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
  }

  std::size_t builds() const { std::lock_guard l(mu_); return builds_; }
  std::size_t hits() const { std::lock_guard l(mu_); return hits_; }

 private:
  mutable std::mutex mu_;
  std::map<Key, cl::Program> programs_;
  std::size_t builds_ = 0, hits_ = 0;
};

}  // namespace sparseloom::opencl
