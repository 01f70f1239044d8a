#pragma once
// Clocks of the Engine. All engine times are milliseconds since the engine's origin, as
// double. SteadyClock reads std::chrono::steady_clock; SimClock is advanced by the
// discrete-event loop (the simulator), so the same engine logic runs in simulated time.
#include <algorithm>
#include <chrono>
#include <concepts>

namespace sparseloom::runtime {

template <class C>
concept Clock = requires(const C& c) {
  { c.now_ms() } -> std::convertible_to<double>;
};

class SteadyClock {
 public:
  double now_ms() const noexcept {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - origin_).count();
  }

 private:
  std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
};

// Single-threaded: only the discrete-event loop that owns it reads and advances it.
class SimClock {
 public:
  double now_ms() const noexcept { return t_; }
  // Time never goes back: an event scheduled in the past runs "now".
  void advance_to(double t_ms) noexcept { t_ = std::max(t_, t_ms); }

 private:
  double t_ = 0;
};

static_assert(Clock<SteadyClock> && Clock<SimClock>);

}  // namespace sparseloom::runtime
