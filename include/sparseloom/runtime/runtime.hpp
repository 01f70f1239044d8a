#pragma once
// The runtime: the multi-task Engine and what it is built from.
#include "sparseloom/runtime/arrivals.hpp"
#include "sparseloom/runtime/block_runner.hpp"
#include "sparseloom/runtime/clock.hpp"
#include "sparseloom/runtime/engine.hpp"
#include "sparseloom/runtime/metrics.hpp"
#include "sparseloom/runtime/preloader.hpp"
#include "sparseloom/runtime/request.hpp"
