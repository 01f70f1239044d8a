#pragma once
// The baselines, as policies in the same engine: Fixed, Band (SEL, HEFT, LSF), INFaaS-like.
// The ablations of SparseLoom are configurations of optimizer::BasicSparsityAware.
#include "sparseloom/baselines/band.hpp"
#include "sparseloom/baselines/fixed.hpp"
#include "sparseloom/baselines/infaas.hpp"
