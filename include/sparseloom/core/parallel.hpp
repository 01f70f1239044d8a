#pragma once
// A minimal fork-join over [0, n) for code off the hot path (the reference backend, packing,
// profiling). Backends own persistent, pinned pools for the request path.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace sparseloom {

template <class F>
void parallel_for(int threads, std::int64_t n, F&& body) {
  const auto t = static_cast<std::int64_t>(std::clamp<std::int64_t>(threads, 1, std::max<std::int64_t>(n, 1)));
  if (t <= 1) {
    if (n > 0) body(std::int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  const std::int64_t chunk = (n + t - 1) / t;
  for (std::int64_t i = 1; i < t; ++i) {
    pool.emplace_back([&, i] {
      try {
        const auto b = i * chunk, e = std::min(n, b + chunk);
        if (b < e) body(b, e);
      } catch (...) {
        errors[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  }
  try {
    body(std::int64_t{0}, std::min(n, chunk));
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace sparseloom
