// The Engine with a real OpenCL processor (PoCL in CI): requests run block by block on the
// device, the device is lost mid-stream (injected), and the engine moves the work to the other
// processor: every request is served, none lost, and the outputs match the reference backend
// before and after the failover.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "sparseloom/backends/opencl/backend.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/runtime/runtime.hpp"
#include "sparseloom/runtime/synthetic.hpp"
#include "sparseloom/stitch/block_library.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

using namespace sparseloom;
namespace rt = sparseloom::runtime;
namespace syn = sparseloom::runtime::synthetic;
using namespace std::chrono_literals;

namespace {

std::filesystem::path zoo_dir() {
  if (const char* e = std::getenv("SPARSELOOM_ZOO")) return e;
  return SPARSELOOM_ZOO_DIR;
}

double max_abs_diff(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  REQUIRE(a.numel() == b.numel());
  double d = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) d = std::max(d, static_cast<double>(std::abs(a.data<float>()[i] - b.data<float>()[i])));
  return d;
}

}  // namespace

TEST_CASE("OpenCL.Engine.FailsOverWhenTheDeviceIsLost") {
  const auto z = zoo::load_task(zoo_dir() / "digits_cnn");
  opencl::BackendOptions bo;
  bo.matmul.quick = true;
  const opencl::Backend gpu(std::shared_ptr<opencl::Context>(opencl::Context::open()), bo);
  using Library = stitch::BlockLibrary<opencl::Backend, reference::Backend>;
  Library lib({&z}, {gpu, reference::Backend{}}, {{"gpu0", 0, {}}, {"ref0", 1, {1}}}, 16);

  // A plan that starts on the device: the estimator says it is twice as fast (the planning
  // is not under test here; the failover is).
  syn::Zoo model;
  model.blocks = z.num_blocks();
  model.task_block_ms = {0.5};
  model.variant_speed.assign(static_cast<std::size_t>(z.num_variants()), 1.0);
  model.variant_accuracy.assign(static_cast<std::size_t>(z.num_variants()), 95.0);
  model.processor_factor = {0.5, 1.0};
  const syn::Estimator est(model);
  Slo slo;
  slo.deadline_ms = 2000;
  slo.rate_rps = 50;
  std::vector<rt::ProcessorSpec> procs{{"gpu0", rt::ProcessorKind::gpu, 1, 1024}, {"ref0", rt::ProcessorKind::cpu, 1, 1024}};
  rt::Engine<Library, syn::Estimator, syn::GreedyOptimizer> eng(lib, est, syn::GreedyOptimizer{}, procs, {{"digits", slo}});
  const auto start = eng.plan();
  const auto& route = start.tasks.at(0);
  REQUIRE(std::all_of(route.placement.processor.begin(), route.placement.processor.end(), [](int p) { return p == 0; }));

  // Expected outputs: the planned stitch on the reference backend (the library's oracle).
  constexpr int n = 40, lose_at = 15;
  std::vector<Tensor> inputs, want;
  for (int i = 0; i < n; ++i) {
    inputs.push_back(z.input(z.test_x, i % z.test_x.dim(0)));
    want.push_back(lib.oracle(0).run(route.variant, nullptr, inputs.back()));
  }

  std::vector<rt::RequestHandle> hs;
  for (int i = 0; i < n; ++i) {
    if (i == lose_at) gpu.context()->faults().lose_device = true;
    hs.push_back(eng.submit(0, {inputs[static_cast<std::size_t>(i)]}));
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(eng.drain(30s));
  const auto m = eng.metrics();
  gpu.context()->faults().reset();

  CHECK(m.overall.issued == static_cast<std::uint64_t>(n));
  CHECK(m.overall.accounted == static_cast<std::uint64_t>(n));
  CHECK(!m.processors[0].available);
  CHECK(m.processors[0].failures == 1);
  CHECK(m.processors[0].busy_ms > 0);  // the first requests ran on the device
  CHECK(m.processors[1].busy_ms > 0);  // and the rest on the reference processor
  const auto after = eng.plan().tasks.at(0).placement.processor;
  CHECK(std::all_of(after.begin(), after.end(), [](int p) { return p == 1; }));
  // Every request served (one in flight at the loss is retried, not dropped), with the
  // reference backend's outputs.
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    const auto st = hs[static_cast<std::size_t>(i)].state();
    CHECK((st == rt::RequestState::on_time || st == rt::RequestState::late));
    const auto out = hs[static_cast<std::size_t>(i)].outputs();
    REQUIRE(out.size() == 1);
    CHECK(max_abs_diff(out[0], want[static_cast<std::size_t>(i)]) < 1e-3);
  }
}
