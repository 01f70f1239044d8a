// Every shipped policy models Optimizer (and, where it dispatches per request,
// DispatchingOptimizer); types that do not are rejected. "Run" by compiling.
#include <doctest/doctest.h>

#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/optimizer/optimizer.hpp"
#include "synthetic_estimator.hpp"

using namespace sparseloom;
using testing::SyntheticEstimator;

static_assert(Optimizer<optimizer::SparsityAware, SyntheticEstimator>);
static_assert(Optimizer<optimizer::SparsityAwareNoStitching, SyntheticEstimator>);
static_assert(Optimizer<optimizer::SparsityAwareBlind, SyntheticEstimator>);
static_assert(Optimizer<optimizer::Exact, SyntheticEstimator>);
static_assert(Optimizer<baselines::Fixed, SyntheticEstimator>);
static_assert(Optimizer<baselines::BandSEL, SyntheticEstimator>);
static_assert(Optimizer<baselines::BandHEFT, SyntheticEstimator>);
static_assert(Optimizer<baselines::BandLSF, SyntheticEstimator>);
static_assert(Optimizer<baselines::Infaas, SyntheticEstimator>);

static_assert(DispatchingOptimizer<baselines::BandSEL> && LatencyObserver<baselines::BandSEL>);
static_assert(DispatchingOptimizer<baselines::BandHEFT> && DispatchingOptimizer<baselines::BandLSF>);
static_assert(!DispatchingOptimizer<optimizer::SparsityAware>);
static_assert(!DispatchingOptimizer<baselines::Infaas> && !DispatchingOptimizer<baselines::Fixed>);

namespace {
struct ReturnsTheWrongType {
  template <class E>
  std::vector<TaskPlan> plan(const SystemState&, const E&);
};
struct NoPlan {};
struct NotAnEstimator {
  int num_tasks() const;
};
struct DispatchReturnsBool {
  bool dispatch(std::span<const PendingRequest>, std::span<const ProcessorQueue>, double, std::vector<DispatchDecision>&);
};
}  // namespace

static_assert(!Optimizer<ReturnsTheWrongType, SyntheticEstimator>);
static_assert(!Optimizer<NoPlan, SyntheticEstimator>);
static_assert(!Optimizer<optimizer::SparsityAware, NotAnEstimator>);
static_assert(!DispatchingOptimizer<DispatchReturnsBool>);

TEST_CASE("Optimizer.Concepts.StaticChecksCompiled") { CHECK(true); }
