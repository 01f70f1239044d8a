#pragma once
// Optional per-request extension of the Optimizer concept, for policies that decide at
// dispatch time (Band's schedulers) rather than only per plan.
//
// runtime::Engine does not implement this protocol: it routes each request at admission by its
// task's TaskPlan::routing (core/types.hpp), which is how Band's per-request choice (SEL's rule)
// and SparsityAware's per-request routing run there. The protocol below is for a runtime with one central
// pending window; Band's dispatch() implements it and is tested on hand-made queues.
//
// Protocol (docs/optimizer.md):
//  - An optimizer that models DispatchingOptimizer gets every admitted request in one pending
//    queue (arrival order) instead of routing it by Plan.placement at submit time.
//  - On every arrival and every completion the engine calls
//        o.dispatch(pending, processors, now_ms, decisions)
//    with the pending requests (oldest first) and one ProcessorQueue per processor. The policy
//    appends decisions; requests it does not name stay pending.
//  - run: the engine enqueues the request on that processor's FIFO, all blocks of the task's
//    planned stitch on that one processor, and adds expected_ms to that processor's
//    waiting_ms until the request completes. drop: the request ends as `rejected`.
//  - Where the policy also models LatencyObserver, the engine reports each completed
//    request's service time (start to finish on the processor) with o.observe(task, p, ms).
// Policies without dispatch() are routed by their Plan alone.
#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "sparseloom/core/types.hpp"

namespace sparseloom {

struct PendingRequest {
  std::uint64_t id = 0;
  TaskIndex task = 0;
  double arrival_ms = 0;   // same clock as now_ms
  double deadline_ms = 0;  // absolute: arrival + SLO deadline
};

struct ProcessorQueue {
  double waiting_ms = 0;  // expected time until it could start a new request: the running
                          // request's remainder plus the expected_ms of those queued on it
  bool idle = true;       // nothing running and nothing queued
  bool available = true;
};

struct DispatchDecision {
  enum class Action { run, drop };
  Action action = Action::run;
  std::uint64_t id = 0;
  ProcessorIndex processor = 0;
  double expected_ms = 0;  // the policy's expected service time there
};

template <class O>
concept DispatchingOptimizer = requires(O& o, std::span<const PendingRequest> pending,
                                        std::span<const ProcessorQueue> processors, double now_ms,
                                        std::vector<DispatchDecision>& out) {
  { o.dispatch(pending, processors, now_ms, out) } -> std::same_as<void>;
};

template <class O>
concept LatencyObserver = requires(O& o, TaskIndex t, ProcessorIndex p, double ms) {
  { o.observe(t, p, ms) } -> std::same_as<void>;
};

}  // namespace sparseloom
