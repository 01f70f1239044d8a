// Device discovery and selection, the program cache, resident buffers and transfer counters,
// and every device failure class turned into a clean sparseloom::Error (real and injected).
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "reference.hpp"

using namespace sparseloom::opencl;
using namespace sparseloom::opencl::test;

namespace {
// Sets an environment variable for one scope and restores what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

template <class F>
DeviceError expect_device_error(F&& f) {
  try {
    f();
  } catch (const DeviceError& e) {
    CHECK(e.code() == sparseloom::ErrorCode::device);
    return e;
  }
  FAIL("no DeviceError thrown");
  throw;
}
}  // namespace

TEST_CASE("OpenCL.Device.List") {
  const auto all = list_devices();
  REQUIRE(!all.empty());
  for (const auto& d : all) {
    MESSAGE("device: " << to_string(d.type) << " " << d.label() << ", " << d.compute_units << " CUs");
    CHECK(!d.name.empty());
    CHECK(d.max_work_group >= 64);
    CHECK(d.opencl_c_version.find("1.") != std::string::npos);  // OpenCL C 1.2 at least
  }
}

TEST_CASE("OpenCL.Device.Select") {
  ScopedEnv clear("SPARSELOOM_OPENCL_DEVICE", nullptr);
  const auto first = list_devices().front();
  CHECK(select_device({first.type, ""}).name == first.name);
  CHECK(select_device(DeviceSelector::parse(first.name.substr(0, 6))).device() != nullptr);
  const auto e = expect_device_error([] { select_device(DeviceSelector::parse("no-such-device-xyz")); });
  CHECK(e.kind() == FaultKind::no_device);
  CHECK(std::string(e.what()).find(first.name) != std::string::npos);  // lists what exists
  {
    ScopedEnv env("SPARSELOOM_OPENCL_DEVICE", "no-such-device-xyz");
    CHECK(expect_device_error([] { select_device(); }).kind() == FaultKind::no_device);
  }
  const auto s = DeviceSelector::parse("gpu:H200");
  CHECK(s.type == DeviceType::gpu);
  CHECK(s.name == "H200");
  CHECK(DeviceSelector::parse("cpu").type == DeviceType::cpu);
  CHECK(DeviceSelector::parse("pthread").name == "pthread");
}

TEST_CASE("OpenCL.Completion.TrialKeepsTheFastestWait") {
  // The trial times each wait on an empty kernel and keeps the fastest, once per context;
  // CPU devices block in the driver whatever the trial says (a spinning host thread would take
  // a core from the kernels), an explicit wait is kept as asked.
  auto ctx = Context::open();
  const auto t = ctx->completion_trial();
  REQUIRE(t.measured);
  CHECK(t.wait_ms > 0);
  CHECK(t.poll_ms > 0);
  CHECK(t.finish_ms > 0);
  const double best = std::min({t.wait_ms, t.poll_ms, t.finish_ms});
  const double chosen = t.chosen == Completion::finish ? t.finish_ms : t.chosen == Completion::wait ? t.wait_ms : t.poll_ms;
  CHECK(chosen == best);
  CHECK(ctx->completion_trial().finish_ms == t.finish_ms);  // kept, not measured again
  CHECK(ctx->resolve(Completion::busy_poll) == Completion::busy_poll);
  CHECK(ctx->resolve(Completion::automatic) ==
        (ctx->device().type == DeviceType::cpu ? Completion::wait : t.chosen));

  // A trial the device fails (here: its kernel does not build) is no error: `wait`, tried again.
  auto other = Context::open();
  other->faults().fail_build = true;
  const auto failed = other->completion_trial();
  CHECK_FALSE(failed.measured);
  CHECK(failed.chosen == Completion::wait);
  other->faults().reset();
  CHECK(other->completion_trial().measured);
}

TEST_CASE("OpenCL.ProgramCache") {
  Context c(ctx().device());
  const char* src = "__kernel void k(__global float* x) { x[get_global_id(0)] *= 2.0f; }";
  auto k1 = c.kernel(src, "k");
  auto k2 = c.kernel(src, "k");
  CHECK(c.programs().builds() == 1);
  CHECK(c.programs().hits() == 1);
  auto k3 = c.kernel(src, "k", "-DUNUSED=1");
  CHECK(c.programs().builds() == 2);
  const auto e = expect_device_error([&] { c.kernel("__kernel void k( { syntax error", "k"); });
  CHECK(e.kind() == FaultKind::build);
  CHECK(std::string(e.what()).find("build log") != std::string::npos);
  CHECK(c.programs().builds() == 2);  // failures are not cached
  CHECK(expect_device_error([&] { c.kernel(src, "no_such_kernel"); }).code() == sparseloom::ErrorCode::device);

  // Prebuilding on several threads: each new program built once (the cached one not again), a
  // broken one left for kernel() to report with its build log.
  std::vector<ProgramSpec> specs;
  for (int i = 0; i < 6; ++i) specs.push_back({src, "-DVARIANT=" + std::to_string(i)});
  specs.push_back({src, "-DUNUSED=1"});  // cached above
  specs.push_back({"__kernel void k( { syntax error", ""});
  c.prebuild(specs);
  CHECK(c.programs().builds() == 8);
  const auto hits = c.programs().hits();
  for (int i = 0; i < 6; ++i) c.kernel(src, "k", "-DVARIANT=" + std::to_string(i));
  CHECK(c.programs().hits() == hits + 6);
  CHECK(c.programs().builds() == 8);
  CHECK(expect_device_error([&] { c.kernel("__kernel void k( { syntax error", "k"); }).kind() == FaultKind::build);
  // Under an injected build fault nothing is built ahead; kernel() reports the fault.
  c.faults().fail_build = true;
  c.prebuild({{src, "-DVARIANT=99"}});
  c.faults().reset();
  CHECK(c.programs().builds() == 8);
}

TEST_CASE("OpenCL.Buffer.ResidencyAndTransfers") {
  Context c(ctx().device());
  CHECK(c.resident_bytes() == 0);
  {
    std::vector<float> v(1000, 1.5f);
    auto b = Buffer::upload(c, std::span<const float>(v));
    Buffer b2(c, 64);
    CHECK(c.resident_bytes() == 4000 + 64);
    std::vector<float> back(1000);
    b.read(std::span<float>(back));
    CHECK(back[999] == 1.5f);
    Buffer moved = std::move(b);
    CHECK(c.resident_bytes() == 4000 + 64);
  }
  CHECK(c.resident_bytes() == 0);
  CHECK(c.transfers().h2d_bytes == 4000);
  CHECK(c.transfers().d2h_bytes == 4000);
  CHECK(c.transfers().h2d_calls == 1);
  CHECK(c.transfers().d2h_calls == 1);
}

TEST_CASE("OpenCL.Faults.Real") {
  Context c(ctx().device());
  // Larger than the device can allocate in one buffer: a clean out-of-memory error.
  const auto e = expect_device_error([&] { Buffer b(c, static_cast<std::size_t>(c.device().max_alloc_bytes) + 4096); });
  CHECK(e.kind() == FaultKind::out_of_memory);
  CHECK(c.resident_bytes() == 0);
  // A work-group larger than the device allows: a clean enqueue error, not a crash.
  Launch l;
  l.kernel = c.kernel("__kernel void k(__global float* x) { x[get_global_id(0)] = 1.0f; }", "k");
  Buffer b(c, 4 * 4096);
  l.set_args(c, b);
  l.global = {c.device().max_work_group * 2, 1, 1};
  l.local = {c.device().max_work_group * 2, 1, 1};
  CHECK_THROWS_AS(l.enqueue(c), sparseloom::Error);
  CHECK_FALSE(c.lost());
}

TEST_CASE("OpenCL.Faults.Injected") {
  Context c(ctx().device());
  const std::vector<float> w(16 * 8, 0.25f), x(8 * 4, 1.0f);
  SUBCASE("build") {
    c.faults().fail_build = true;
    CHECK(expect_device_error([&] { DenseGemm(c, w, 16, 8, 4); }).kind() == FaultKind::build);
  }
  SUBCASE("alloc") {
    c.faults().fail_alloc = true;
    CHECK(expect_device_error([&] { DenseGemm(c, w, 16, 8, 4); }).kind() == FaultKind::out_of_memory);
    CHECK(c.resident_bytes() == 0);
  }
  SUBCASE("enqueue, one shot") {
    DenseGemm op(c, w, 16, 8, 4);
    auto bx = Buffer::upload(c, std::span<const float>(x));
    Buffer by(c, 16 * 4 * 4);
    op.bind(bx, by);
    c.faults().fail_enqueue = true;
    CHECK(expect_device_error([&] { op.enqueue(); }).kind() == FaultKind::enqueue);
    op.enqueue();  // the next call works again
    c.finish();
  }
  SUBCASE("lost device") {
    DenseGemm op(c, w, 16, 8, 4);
    auto bx = Buffer::upload(c, std::span<const float>(x));
    Buffer by(c, 16 * 4 * 4);
    op.bind(bx, by);
    c.faults().lose_device = true;
    CHECK(c.lost());
    CHECK(expect_device_error([&] { op.enqueue(); }).kind() == FaultKind::lost_device);
    CHECK(expect_device_error([&] { c.finish(); }).kind() == FaultKind::lost_device);
    CHECK(expect_device_error([&] { Buffer b(c, 16); }).kind() == FaultKind::lost_device);
    std::vector<float> y(64);
    CHECK(expect_device_error([&] { by.read(std::span<float>(y)); }).kind() == FaultKind::lost_device);
  }
}

// What the engine does with these errors: run on the device, and on any device error run the
// same layer on another processor (here the CPU reference) with the same result.
TEST_CASE("OpenCL.Faults.Fallback") {
  Context c(ctx().device());
  const std::int64_t m = 8, k = 16, n = 5;
  const auto w = random_vec(static_cast<std::size_t>(m * k), 900);
  const auto x = random_vec(static_cast<std::size_t>(k * n), 901);
  auto run = [&](bool inject) {
    c.faults().reset();
    if (inject) c.faults().lose_device = true;
    try {
      DenseGemm op(c, w, m, k, n);
      auto bx = Buffer::upload(c, std::span<const float>(x));
      Buffer by(c, static_cast<std::size_t>(m * n) * 4);
      op.bind(bx, by);
      op.enqueue();
      std::vector<float> y(static_cast<std::size_t>(m * n));
      by.read(std::span<float>(y));
      return std::pair{y, std::string("opencl")};
    } catch (const sparseloom::Error& e) {
      CHECK(e.code() == sparseloom::ErrorCode::device);
      return std::pair{gemm_ref(w, x, m, k, n), std::string("cpu")};
    }
  };
  const auto [y0, p0] = run(false);
  const auto [y1, p1] = run(true);
  CHECK(p0 == "opencl");
  CHECK(p1 == "cpu");
  CHECK(max_abs_diff(y0, y1) <= 1e-5);
}
