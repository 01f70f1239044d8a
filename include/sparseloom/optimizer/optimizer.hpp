#pragma once
// The optimizer policies: SparsityAware (default) and its ablations, the exact reference
// solver, the shared plan model and the optional per-request dispatch extension.
#include "sparseloom/optimizer/dispatch.hpp"
#include "sparseloom/optimizer/exact.hpp"
#include "sparseloom/optimizer/model.hpp"
#include "sparseloom/optimizer/sparsity_aware.hpp"
