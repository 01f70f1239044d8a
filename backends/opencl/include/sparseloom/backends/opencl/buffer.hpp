#pragma once
// Device buffers. Each counts its bytes as resident on its Context while it lives, so the
// preloader can see what a device holds; uploads and downloads are counted as transfers.
// A Buffer must not outlive its Context.
#include <CL/opencl.hpp>

#include <chrono>
#include <cstring>
#include <span>
#include <string>

#include "sparseloom/backends/opencl/context.hpp"

namespace sparseloom::opencl {

class Buffer {
 public:
  Buffer() = default;
  Buffer(Context& ctx, std::size_t bytes, cl_mem_flags flags = CL_MEM_READ_WRITE) : ctx_(&ctx), bytes_(bytes) {
    ctx.ensure_alive("allocating " + std::to_string(bytes) + " bytes");
    const std::string where = ctx.where() + ": allocating " + std::to_string(bytes) + " bytes";
    if (ctx.faults().fail_alloc)
      throw DeviceError(FaultKind::out_of_memory, CL_MEM_OBJECT_ALLOCATION_FAILURE, where, "injected fault");
    if (bytes > ctx.device().max_alloc_bytes)
      throw DeviceError(FaultKind::out_of_memory, CL_INVALID_BUFFER_SIZE, where,
                        "larger than the device's largest allocation (" +
                            std::to_string(ctx.device().max_alloc_bytes) + " bytes)");
    cl_int rc = CL_SUCCESS;
    cl_mem m = clCreateBuffer(ctx.cl_context()(), flags, std::max<std::size_t>(bytes, 4), nullptr, &rc);
    if (rc != CL_SUCCESS) throw DeviceError(classify(rc), rc, where, "clCreateBuffer");
    buf_ = cl::Buffer(m);  // takes ownership
    ctx.add_resident(static_cast<std::int64_t>(bytes_));
  }
  template <class T>
  static Buffer upload(Context& ctx, std::span<const T> host, cl_mem_flags flags = CL_MEM_READ_WRITE) {
    Buffer b(ctx, host.size_bytes(), flags);
    b.write(host);
    return b;
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      ctx_ = o.ctx_;
      buf_ = std::move(o.buf_);
      bytes_ = o.bytes_;
      o.ctx_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  std::size_t bytes() const noexcept { return bytes_; }
  const cl::Buffer& get() const noexcept { return buf_; }
  cl_mem mem() const noexcept { return buf_(); }
  explicit operator bool() const noexcept { return buf_() != nullptr; }

  // Blocking host->device copy into the buffer at byte `offset`.
  template <class T>
  void write(std::span<const T> host, std::size_t offset = 0, int queue = 0) {
    copy(true, const_cast<T*>(host.data()), host.size_bytes(), offset, queue);
  }
  // Blocking device->host copy (waits for all work queued before it on that queue).
  template <class T>
  void read(std::span<T> host, std::size_t offset = 0, int queue = 0) const {
    copy(false, host.data(), host.size_bytes(), offset, queue);
  }

 private:
  void copy(bool to_device, void* host, std::size_t n, std::size_t offset, int queue) const {
    check(offset + n <= bytes_, ErrorCode::invalid_argument, "opencl::Buffer",
          "copy of " + std::to_string(n) + " bytes at " + std::to_string(offset) + " overruns " +
              std::to_string(bytes_) + " bytes");
    ctx_->ensure_alive(to_device ? "upload" : "download");
    if (n == 0) return;  // OpenCL rejects empty copies; an all-zero sparse matrix has none
    const auto t0 = std::chrono::steady_clock::now();
    cl_command_queue q = ctx_->queue(queue)();
    const cl_int rc = to_device ? clEnqueueWriteBuffer(q, buf_(), CL_TRUE, offset, n, host, 0, nullptr, nullptr)
                                : clEnqueueReadBuffer(q, buf_(), CL_TRUE, offset, n, host, 0, nullptr, nullptr);
    if (rc != CL_SUCCESS) ctx_->fail(rc, to_device ? "clEnqueueWriteBuffer" : "clEnqueueReadBuffer");
    const auto ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    auto& t = ctx_->transfers();
    (to_device ? t.h2d_bytes : t.d2h_bytes) += n;
    (to_device ? t.h2d_calls : t.d2h_calls) += 1;
    (to_device ? t.h2d_ns : t.d2h_ns) += ns;
  }
  void release() noexcept {
    if (ctx_ && buf_()) ctx_->add_resident(-static_cast<std::int64_t>(bytes_));
    buf_ = cl::Buffer();
    ctx_ = nullptr;
  }
  Context* ctx_ = nullptr;
  cl::Buffer buf_;
  std::size_t bytes_ = 0;
};

}  // namespace sparseloom::opencl
