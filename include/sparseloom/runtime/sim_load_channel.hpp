// The discrete-event engine's model of block loading: one channel, as the real preloader runs
// every load under one lock (ResidencyManager's load_mu_). Loads a request waits for (demand)
// queue behind each other; loads no request waits for (a new plan's blocks, prefetches: ahead)
// run when no demand load is queued and give way to one between blocks, as the background
// preloader does (HotnessPreloader::preload checks demand_waiting() before each block).
#pragma once

#include <algorithm>
#include <deque>

namespace sparseloom::runtime {

class SimLoadChannel {
 public:
  // `blocks` ahead loads taking `ms` in all, issued at `now`.
  void ahead(double now, double ms, int blocks) {
    if (ms <= 0 || blocks <= 0) return;
    advance(now);
    for (int i = 0; i < blocks; ++i) queue_.push_back(ms / blocks);
  }

  // A demand load taking `ms` issued at `now`: waits for earlier demand loads and for the ahead
  // block in progress, if any. Returns how long after `now` it is done (the request's stall).
  double demand(double now, double ms) {
    advance(now);
    double start = std::max(now, demand_free_);
    if (head_started_ && !queue_.empty()) {  // an ahead block is being loaded: it finishes first
      start = std::max(start, now + queue_.front());
      queue_.pop_front();
      head_started_ = false;
    }
    demand_free_ = start + ms;
    return demand_free_ - now;
  }

  double ahead_backlog_ms() const {
    double s = 0;
    for (double x : queue_) s += x;
    return s;
  }

 private:
  // Runs queued ahead blocks in the channel's free time up to t.
  void advance(double t) {
    double c = std::max(cursor_, demand_free_);
    while (!queue_.empty() && c < t) {
      if (c + queue_.front() <= t) {
        c += queue_.front();
        queue_.pop_front();
        head_started_ = false;
      } else {
        queue_.front() -= t - c;
        head_started_ = true;
        c = t;
      }
    }
    cursor_ = std::max(c, t);
  }

  std::deque<double> queue_;  // ahead blocks not yet loaded (the head's remaining time)
  bool head_started_ = false; // the head is being loaded
  double cursor_ = 0;         // ahead loading simulated up to here
  double demand_free_ = 0;    // when the last demand load finishes
};

}  // namespace sparseloom::runtime
