#pragma once
// OpenCL failures become sparseloom::Error(ErrorCode::device, where, message), so the engine can
// catch one exception type and fall back to another processor. FaultInjector lets tests force
// each failure class (build, allocation, enqueue, lost device) on a healthy device.
#include <CL/opencl.hpp>

#include <atomic>
#include <string>
#include <string_view>

#include "sparseloom/core/error.hpp"

namespace sparseloom::opencl {

inline const char* cl_error_name(cl_int e) noexcept {
  switch (e) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE";
    case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_CONTEXT: return "CL_INVALID_CONTEXT";
    case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS";
    case CL_INVALID_PROGRAM_EXECUTABLE: return "CL_INVALID_PROGRAM_EXECUTABLE";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE";
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "CL_UNKNOWN_ERROR";
  }
}

// What kind of failure it was; the engine's fallback treats them differently (a build failure
// is permanent for that kernel, out-of-memory may pass after eviction, a lost device is final).
enum class FaultKind { no_platform, no_device, build, out_of_memory, enqueue, lost_device, other };

constexpr std::string_view to_string(FaultKind k) noexcept {
  switch (k) {
    case FaultKind::no_platform: return "no OpenCL platform";
    case FaultKind::no_device: return "no matching OpenCL device";
    case FaultKind::build: return "kernel build failed";
    case FaultKind::out_of_memory: return "out of device memory";
    case FaultKind::enqueue: return "enqueue failed";
    case FaultKind::lost_device: return "device lost";
    case FaultKind::other: return "OpenCL call failed";
  }
  return "OpenCL error";
}

inline FaultKind classify(cl_int e) noexcept {
  switch (e) {
    case -1001: return FaultKind::no_platform;
    case CL_DEVICE_NOT_FOUND: return FaultKind::no_device;
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILER_NOT_AVAILABLE:
    case CL_INVALID_BUILD_OPTIONS: return FaultKind::build;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_INVALID_BUFFER_SIZE:
    case CL_OUT_OF_HOST_MEMORY: return FaultKind::out_of_memory;
    // NVIDIA reports a device that fell off the bus or faulted as CL_OUT_OF_RESOURCES /
    // CL_INVALID_COMMAND_QUEUE on every later call.
    case CL_DEVICE_NOT_AVAILABLE:
    case CL_OUT_OF_RESOURCES:
    case CL_INVALID_COMMAND_QUEUE:
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST: return FaultKind::lost_device;
    default: return FaultKind::other;
  }
}

// The device error SparseLoom throws: still a sparseloom::Error (code device), plus the kind.
class DeviceError : public Error {
 public:
  DeviceError(FaultKind kind, cl_int cl_code, std::string where, const std::string& detail)
      : Error(ErrorCode::device, std::move(where), compose(kind, cl_code, detail)),
        kind_(kind), cl_code_(cl_code) {}
  FaultKind kind() const noexcept { return kind_; }
  cl_int cl_code() const noexcept { return cl_code_; }

 private:
  static std::string compose(FaultKind kind, cl_int code, const std::string& detail) {
    std::string s(to_string(kind));
    if (code != CL_SUCCESS) s += " (" + std::string(cl_error_name(code)) + " " + std::to_string(code) + ")";
    if (!detail.empty()) s += ": " + detail;
    return s;
  }
  FaultKind kind_;
  cl_int cl_code_;
};

// Flags a test sets to make the next matching call fail as the real failure would.
struct FaultInjector {
  std::atomic<bool> fail_build{false};    // program builds fail with a build log
  std::atomic<bool> fail_alloc{false};    // buffer allocations fail as out of device memory
  std::atomic<bool> fail_enqueue{false};  // the next kernel enqueue fails (one shot)
  std::atomic<bool> lose_device{false};   // every later call fails: the device is gone
  void reset() noexcept {
    fail_build = fail_alloc = fail_enqueue = lose_device = false;
  }
};

// Runs f and turns cl::Error into DeviceError. `where` names the operation and the device.
template <class F>
decltype(auto) guarded(std::string_view where, F&& f) {
  try {
    return f();
  } catch (const cl::BuildError& e) {
    std::string log;
    for (const auto& [dev, text] : e.getBuildLog()) log += text;
    throw DeviceError(FaultKind::build, e.err(), std::string(where),
                      std::string(e.what()) + "; build log:\n" + log);
  } catch (const cl::Error& e) {
    throw DeviceError(classify(e.err()), e.err(), std::string(where), e.what());
  }
}

inline void check_cl(cl_int rc, std::string_view where, std::string_view call) {
  if (rc != CL_SUCCESS) [[unlikely]]
    throw DeviceError(classify(rc), rc, std::string(where), std::string(call));
}

}  // namespace sparseloom::opencl
