#pragma once
// Tensor storage of 64 KiB and more is kept for reuse instead of going back to malloc.
//
// Why: glibc serves such buffers with mmap (or from a per-thread arena that it trims), so a
// block's activation tensors can page-fault on their first touch, and again whenever the memory
// went back to the kernel. Each new Engine worker thread gets a fresh arena: in the first 250 ms
// of every e2e run, MobileNetV2 requests took 18-30 ms against a 4 ms profile (session 14),
// while the same blocks run on the profiler's (warm) thread took their profiled time; with one
// malloc arena, or with this cache, the slow requests were gone (the page faults themselves
// were not counted). Inference engines keep such buffers (ONNX Runtime's arena, oneDNN's
// scratchpad); so do we.
//
// Size classes are 1/8-octave steps (<= 12.5 % slack); free lists are shared by all threads
// (one mutex: a block allocates a few tensors, at most thousands per second). Cached bytes are
// bounded (SPARSELOOM_TENSOR_CACHE_MB, default 256; 0 disables). Under AddressSanitizer the cache
// is off, so that use-after-free of a tensor buffer is still caught.
#include <bit>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace sparseloom::detail {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kBufferCacheSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kBufferCacheSanitized = true;
#else
inline constexpr bool kBufferCacheSanitized = false;
#endif
#else
inline constexpr bool kBufferCacheSanitized = false;
#endif

class BufferCache {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{64} << 10;
  static constexpr std::size_t kAlignment = 64;

  // The process-wide cache; never destroyed (tensors in static storage may outlive any
  // destruction order), its buffers stay reachable for leak checkers.
  static BufferCache& instance() {
    static BufferCache* c = new BufferCache(limit_from_env());
    return *c;
  }

  // The size class a request of `bytes` is served with (>= bytes).
  static std::size_t size_class(std::size_t bytes) {
    // (the top half of the range is left alone: rounding it up could wrap round to a small size)
    if (bytes < kMinBytes || bytes > std::numeric_limits<std::size_t>::max() / 2) return bytes;
    const std::size_t step = std::size_t{1} << (std::bit_width(bytes - 1) - 4);  // 1/8 of the octave
    return (bytes + step - 1) / step * step;
  }

  // A buffer of at least `bytes`; *got says how many it holds.
  void* allocate(std::size_t bytes, std::size_t* got) {
    const std::size_t n = size_class(bytes);
    *got = n;
    if (n >= kMinBytes && limit_ > 0) {
      std::lock_guard lk(mu_);
      auto it = free_.find(n);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= n;
        return p;
      }
    }
    return ::operator new[](n, std::align_val_t{kAlignment});
  }

  void release(void* p, std::size_t n) {
    if (n >= kMinBytes && limit_ > 0) {
      std::lock_guard lk(mu_);
      if (cached_ + n <= limit_) {
        free_[n].push_back(p);
        cached_ += n;
        return;
      }
    }
    ::operator delete[](p, std::align_val_t{kAlignment});
  }

  std::size_t cached_bytes() {
    std::lock_guard lk(mu_);
    return cached_;
  }
  std::size_t limit_bytes() const { return limit_; }

 private:
  explicit BufferCache(std::size_t limit) : limit_(kBufferCacheSanitized ? 0 : limit) {}

  static std::size_t limit_from_env() {
    std::size_t mb = 256;
    if (const char* e = std::getenv("SPARSELOOM_TENSOR_CACHE_MB")) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(e, &end, 10);
      if (end != e && *end == '\0' && v <= (std::size_t{1} << 20)) mb = static_cast<std::size_t>(v);
    }
    return mb << 20;
  }

  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  const std::size_t limit_;
};

}  // namespace sparseloom::detail
