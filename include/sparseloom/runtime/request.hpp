#pragma once
// A request's shared control block and the handle a caller holds. The engine and the caller
// race on it (completion vs cancel); its mutex makes exactly one of them record the terminal
// state, on that request's own completion path.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/runtime/metrics.hpp"

namespace sparseloom::runtime {

namespace detail {

// The engine-side book of requests: metrics sink and the count of unfinished requests (drain
// and destruction wait on it). It outlives every pending request; a finished request never
// touches it again.
struct Ledger {
  explicit Ledger(std::vector<std::string> task_names) : metrics(std::move(task_names)) {}
  MetricsCollector metrics;
  std::mutex mu;
  std::condition_variable idle;
  std::size_t pending = 0;
  // The engine's clock, for a cancel() that finishes a queued request from the caller's thread.
  double (*now_fn)(const void*) = nullptr;
  const void* clock = nullptr;

  double now() const { return now_fn(clock); }
  void add() {
    std::lock_guard lk(mu);
    ++pending;
  }
  void release() {
    std::lock_guard lk(mu);
    --pending;
    idle.notify_all();  // under the lock: the engine cannot be destroyed before this returns
  }
  std::size_t pending_count() {
    std::lock_guard lk(mu);
    return pending;
  }
  template <class Rep, class Period>
  bool wait_idle(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lk(mu);
    return idle.wait_for(lk, timeout, [&] { return pending == 0; });
  }
};

struct RequestCtl {
  explicit RequestCtl(Ledger* l) : ledger(l) {}
  Ledger* ledger;
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  RequestRecord rec;             // id, task, arrival, deadline until it finishes; then all
  std::vector<Tensor> outputs;   // the last block's outputs, for served requests
  bool running = false;          // a worker holds it (between pop and handoff/finish)
  bool cancel_requested = false;
};

// Records r (whose state is terminal) once; false if the request had already finished.
inline bool finish(RequestCtl& c, RequestRecord r, std::vector<Tensor> outputs = {}) {
  {
    std::lock_guard lk(c.mu);
    if (is_terminal(c.rec.state)) return false;
    c.ledger->metrics.record(r);
    c.rec = std::move(r);
    c.outputs = std::move(outputs);
    c.running = false;
  }
  c.cv.notify_all();
  c.ledger->release();
  return true;
}

}  // namespace detail

// What submit() returns: wait on it (with a timeout), cancel it, read its record and outputs.
// Cheap to copy; valid after the engine is gone (every request has finished by then).
class RequestHandle {
 public:
  RequestHandle() = default;
  explicit RequestHandle(std::shared_ptr<detail::RequestCtl> c) : c_(std::move(c)) {}

  bool valid() const noexcept { return c_ != nullptr; }
  std::uint64_t id() const { return ctl().rec.id; }
  RequestState state() const {
    std::lock_guard lk(ctl().mu);
    return c_->rec.state;
  }
  bool done() const { return is_terminal(state()); }

  // Blocks until the request finishes. Prefer wait_for: a caller should bound every wait.
  RequestState wait() const {
    std::unique_lock lk(ctl().mu);
    c_->cv.wait(lk, [&] { return is_terminal(c_->rec.state); });
    return c_->rec.state;
  }
  // True if the request finished within the timeout.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    std::unique_lock lk(ctl().mu);
    return c_->cv.wait_for(lk, timeout, [&] { return is_terminal(c_->rec.state); });
  }

  // True if the request was still pending. A queued request ends `cancelled` at once; a
  // running one at its next block boundary, unless its last block finishes first.
  bool cancel() {
    auto& c = ctl();
    RequestRecord r;
    {
      std::lock_guard lk(c.mu);
      if (is_terminal(c.rec.state)) return false;
      c.cancel_requested = true;
      if (c.running) return true;
      r = c.rec;
    }
    r.state = RequestState::cancelled;
    r.finish_ms = c.ledger->now();
    r.reason = "cancelled by the caller while queued";
    detail::finish(c, std::move(r));
    return true;
  }

  RequestRecord record() const {
    std::lock_guard lk(ctl().mu);
    return c_->rec;
  }
  std::vector<Tensor> outputs() const {
    std::lock_guard lk(ctl().mu);
    return c_->outputs;
  }

 private:
  detail::RequestCtl& ctl() const {
    check(c_ != nullptr, ErrorCode::invalid_argument, "RequestHandle", "empty handle");
    return *c_;
  }
  std::shared_ptr<detail::RequestCtl> c_;
};

}  // namespace sparseloom::runtime
