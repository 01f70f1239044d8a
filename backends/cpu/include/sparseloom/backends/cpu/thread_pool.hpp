#pragma once
// A small persistent thread pool for the sparse kernels. Chosen over OpenMP because a
// SparseLoom processor is a *core group*: several processors run at once, each with its own
// thread count and core set, from different runtime worker threads. OpenMP's one global team
// (which oneDNN uses) cannot give each of them its own pinned team; this pool can. Workers
// spin briefly between jobs (layers follow each other within microseconds), then sleep.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "sparseloom/core/error.hpp"

namespace sparseloom::cpu {

// Tasks to split `work` elements of a memory-bound loop into: one per `grain` elements, at most
// `threads` (smaller splits cost more in hand-offs than they gain).
inline int split_parts(std::int64_t work, int threads, std::int64_t grain = 16384) {
  return static_cast<int>(std::clamp<std::int64_t>(work / grain, 1, std::max(threads, 1)));
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Pins the calling thread to one core (Linux; a no-op elsewhere). Returns false on failure.
inline bool pin_current_thread(int core) noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
#else
  (void)core;
  return false;
#endif
}

class ThreadPool {
 public:
  // `threads` workers in total, the calling thread included (it runs task 0). `cores`, when
  // not empty, pins worker i (i >= 1) to cores[i % cores.size()]; the caller is not moved.
  explicit ThreadPool(int threads, std::vector<int> cores = {}) : size_(threads) {
    check(threads >= 1, ErrorCode::invalid_argument, "cpu::ThreadPool", "needs at least 1 thread");
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) {
      workers_.emplace_back([this, i, cores] {
        if (!cores.empty()) pin_current_thread(cores[static_cast<std::size_t>(i) % cores.size()]);
        worker_loop(i);
      });
    }
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int size() const noexcept { return size_; }

  // Runs fn(task) for task in [0, n), n <= size(), task 0 on the calling thread; returns when
  // all are done. One caller at a time (a pool belongs to one processor).
  template <class F>
  void run(int n, F&& fn) {
    if (n <= 1) {
      fn(0);
      return;
    }
    check(n <= size_, ErrorCode::invalid_argument, "cpu::ThreadPool::run", "more tasks than threads");
    using Fn = std::remove_reference_t<F>;
    ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
    call_ = [](void* ctx, int task) { (*static_cast<Fn*>(ctx))(task); };
    tasks_ = n;
    // Every worker acknowledges every job (idle ones too), so none can read the next job's
    // fields while it still handles this one.
    pending_.store(size_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    fn(0);
    // Spin a little (workers usually finish together), then sleep: spinning on while a
    // descheduled worker waits for this very core would only delay it on a busy machine.
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (std::uint32_t spins = 0;; ++spins) {
      const int p = pending_.load(std::memory_order_acquire);
      if (p == 0) break;
      if ((spins & 255u) != 255u || std::chrono::steady_clock::now() < deadline) cpu_relax();
      else pending_.wait(p, std::memory_order_acquire);
    }
  }

 private:
  void worker_loop(int index) {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t g = generation_.load(std::memory_order_acquire);
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      for (std::uint32_t spins = 1; g == seen; ++spins) {
        if ((spins & 255u) == 0 && std::chrono::steady_clock::now() >= deadline) break;
        cpu_relax();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        generation_.wait(seen, std::memory_order_acquire);
        continue;
      }
      seen = g;
      if (stop_.load(std::memory_order_relaxed)) return;
      if (index < tasks_) call_(ctx_, index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_all();
    }
  }

  // How long a thread spins before it sleeps (consecutive layers arrive within microseconds).
  static constexpr std::chrono::microseconds kSpin{100};

  int size_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  void* ctx_ = nullptr;
  void (*call_)(void*, int) = nullptr;
  int tasks_ = 0;
};

}  // namespace sparseloom::cpu
