#pragma once
// Device discovery and selection: by type (GPU/CPU/accelerator/any) and a name substring.
// SPARSELOOM_OPENCL_DEVICE overrides the caller's choice: "gpu", "cpu", "gpu:H200",
// "pthread" (a bare word is a name substring matched against platform and device names).
#include <CL/opencl.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "sparseloom/backends/opencl/error.hpp"

namespace sparseloom::opencl {

enum class DeviceType { any, gpu, cpu, accelerator };

inline std::string to_string(DeviceType t) {
  switch (t) {
    case DeviceType::any: return "any";
    case DeviceType::gpu: return "gpu";
    case DeviceType::cpu: return "cpu";
    case DeviceType::accelerator: return "accelerator";
  }
  return "?";
}

struct DeviceInfo {
  cl::Platform platform;
  cl::Device device;
  std::string platform_name, name, vendor, version, driver, opencl_c_version;
  DeviceType type = DeviceType::any;
  unsigned compute_units = 0;
  std::size_t max_work_group = 0;
  std::uint64_t global_mem_bytes = 0, max_alloc_bytes = 0, local_mem_bytes = 0;

  // "NVIDIA H200 (NVIDIA CUDA, OpenCL 3.0 CUDA, driver 580.x)": what benchmark records carry.
  std::string label() const {
    return name + " (" + platform_name + ", " + version + ", driver " + driver + ")";
  }
};

namespace detail {
inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\0' || std::isspace(static_cast<unsigned char>(s.back())))) s.pop_back();
  return s;
}
inline DeviceType type_of(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU) return DeviceType::gpu;
  if (t & CL_DEVICE_TYPE_CPU) return DeviceType::cpu;
  if (t & CL_DEVICE_TYPE_ACCELERATOR) return DeviceType::accelerator;
  return DeviceType::any;
}
}  // namespace detail

// Every device of every platform. No platform at all (no ICD, no vendor file) is an error
// that says how to fix it; an empty platform is skipped.
inline std::vector<DeviceInfo> list_devices() {
  std::vector<cl::Platform> platforms;
  cl_int rc = CL_SUCCESS;
  try {
    rc = cl::Platform::get(&platforms);
  } catch (const cl::Error& e) {
    rc = e.err();
  }
  if (rc != CL_SUCCESS || platforms.empty())
    throw DeviceError(FaultKind::no_platform, rc, "opencl::list_devices",
                      "no OpenCL platform is installed (install an ICD such as pocl-opencl-icd, or "
                      "point OCL_ICD_VENDORS at a directory with a vendor .icd file)");
  std::vector<DeviceInfo> out;
  for (auto& p : platforms) {
    std::vector<cl::Device> devs;
    try {
      p.getDevices(CL_DEVICE_TYPE_ALL, &devs);
    } catch (const cl::Error&) {
      continue;  // CL_DEVICE_NOT_FOUND on an empty platform
    }
    for (auto& d : devs) {
      DeviceInfo i;
      guarded("opencl::list_devices", [&] {
        i.platform = p;
        i.device = d;
        i.platform_name = detail::trim(p.getInfo<CL_PLATFORM_NAME>());
        i.name = detail::trim(d.getInfo<CL_DEVICE_NAME>());
        i.vendor = detail::trim(d.getInfo<CL_DEVICE_VENDOR>());
        i.version = detail::trim(d.getInfo<CL_DEVICE_VERSION>());
        i.driver = detail::trim(d.getInfo<CL_DRIVER_VERSION>());
        i.opencl_c_version = detail::trim(d.getInfo<CL_DEVICE_OPENCL_C_VERSION>());
        i.type = detail::type_of(d.getInfo<CL_DEVICE_TYPE>());
        i.compute_units = d.getInfo<CL_DEVICE_MAX_COMPUTE_UNITS>();
        i.max_work_group = d.getInfo<CL_DEVICE_MAX_WORK_GROUP_SIZE>();
        i.global_mem_bytes = d.getInfo<CL_DEVICE_GLOBAL_MEM_SIZE>();
        i.max_alloc_bytes = d.getInfo<CL_DEVICE_MAX_MEM_ALLOC_SIZE>();
        i.local_mem_bytes = d.getInfo<CL_DEVICE_LOCAL_MEM_SIZE>();
        return 0;
      });
      out.push_back(std::move(i));
    }
  }
  return out;
}

struct DeviceSelector {
  DeviceType type = DeviceType::any;
  std::string name;  // substring of the device or platform name, case-insensitive; empty: any

  // "gpu", "cpu", "accelerator", "any", "gpu:H200", or a bare name substring.
  static DeviceSelector parse(const std::string& text) {
    DeviceSelector s;
    auto head = text, tail = std::string();
    if (auto c = text.find(':'); c != std::string::npos) {
      head = text.substr(0, c);
      tail = text.substr(c + 1);
    }
    const auto h = detail::lower(head);
    if (h == "gpu") s.type = DeviceType::gpu;
    else if (h == "cpu") s.type = DeviceType::cpu;
    else if (h == "accelerator") s.type = DeviceType::accelerator;
    else if (h == "any" || h.empty()) s.type = DeviceType::any;
    else { s.name = text; return s; }
    s.name = tail;
    return s;
  }
  std::string describe() const { return to_string(type) + (name.empty() ? "" : ":" + name); }
};

// The device the environment asks for, else the caller's choice. With type any, a GPU is
// preferred over an accelerator over a CPU (the order a user of an inference engine expects).
inline DeviceInfo select_device(DeviceSelector want = {}) {
  if (const char* env = std::getenv("SPARSELOOM_OPENCL_DEVICE"); env && *env)
    want = DeviceSelector::parse(env);
  auto all = list_devices();
  const auto needle = detail::lower(want.name);
  auto rank = [](DeviceType t) {
    return t == DeviceType::gpu ? 0 : t == DeviceType::accelerator ? 1 : t == DeviceType::cpu ? 2 : 3;
  };
  const DeviceInfo* best = nullptr;
  for (const auto& d : all) {
    if (want.type != DeviceType::any && d.type != want.type) continue;
    if (!needle.empty() && detail::lower(d.name).find(needle) == std::string::npos &&
        detail::lower(d.platform_name).find(needle) == std::string::npos)
      continue;
    if (!best || rank(d.type) < rank(best->type)) best = &d;
  }
  if (!best) {
    std::string seen;
    for (const auto& d : all) seen += "\n  " + to_string(d.type) + ": " + d.label();
    throw DeviceError(FaultKind::no_device, CL_DEVICE_NOT_FOUND, "opencl::select_device",
                      "nothing matches '" + want.describe() + "'; devices present:" + seen);
  }
  return *best;
}

}  // namespace sparseloom::opencl
