// opencl::Backend against the reference backend (the numerical oracle): every committed zoo
// variant, the ONNX cases the reference tests generate (when present), repairs (affine),
// observe, shared contexts, device faults through the Backend API, and the block library's
// real loads onto the device.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "sparseloom/backends/opencl/backend.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/ir/infer.hpp"
#include "sparseloom/onnx/import.hpp"
#include "sparseloom/stitch/block_library.hpp"
#include "sparseloom/stitch/stitched_model.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

using namespace sparseloom;

namespace {

std::filesystem::path zoo_dir() {
  if (const char* e = std::getenv("SPARSELOOM_ZOO")) return e;
  return SPARSELOOM_ZOO_DIR;
}

// One backend (one Context) for the whole binary: executables share it, as the engine's do.
opencl::BackendOptions quick_options() {
  opencl::BackendOptions o;
  o.matmul.quick = true;  // a short format trial keeps the label fast on PoCL
  o.matmul.trial_reps = 3;
  return o;
}
const opencl::Backend& backend() {
  static opencl::Backend b(std::shared_ptr<opencl::Context>(opencl::Context::open()), quick_options());
  return b;
}

bool is_qdq(const ir::Graph& g) {
  for (const auto& n : g.nodes)
    if (n.op == "QuantizeLinear") return true;
  return false;
}
// The largest activation quantisation step of a QDQ graph.
float max_qstep(const ir::Graph& g) {
  float s = 0;
  for (const auto& n : g.nodes)
    if (n.op == "QuantizeLinear" && g.is_initializer(n.inputs[1])) {
      const Tensor t = g.initializers.at(n.inputs[1]).contiguous();
      for (std::int64_t i = 0; i < t.numel(); ++i) s = std::max(s, t.data<float>()[i]);
    }
  return s;
}

struct Diff {
  double max_abs = 0, max_ref = 0;
  bool top1 = true;
};
Diff compare(const Tensor& a_in, const Tensor& r_in) {
  const Tensor a = a_in.contiguous(), r = r_in.contiguous();
  REQUIRE(a.shape() == r.shape());
  REQUIRE(a.dtype() == DType::f32);
  Diff d;
  std::int64_t ba = 0, br = 0;
  const float* pa = a.data<float>();
  const float* pr = r.data<float>();
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    d.max_abs = std::max(d.max_abs, static_cast<double>(std::fabs(pa[i] - pr[i])));
    d.max_ref = std::max(d.max_ref, static_cast<double>(std::fabs(pr[i])));
    if (pa[i] > pa[ba]) ba = i;
    if (pr[i] > pr[br]) br = i;
  }
  d.top1 = ba == br;
  return d;
}

// Checks one graph on the given inputs: f32 within 1e-4 * max|ref| + 1e-5; QDQ: same top-1
// (classifier outputs) and within one quantisation step.
void check_graph(const ir::Graph& g, const std::vector<std::vector<Tensor>>& inputs, const std::string& label,
                 bool classifier) {
  CAPTURE(label);
  const auto ref = reference::Backend{}.compile(g);
  const auto exe = backend().compile(g);
  if (!exe.host_nodes().empty()) {
    std::string h;
    for (const auto& s : exe.host_nodes()) h += s + " ";
    MESSAGE(label << ": host fallback for " << h);
  }
  const bool qdq = is_qdq(g);
  const double step = qdq ? max_qstep(g) : 0.0;
  for (const auto& in : inputs) {
    const auto want = ref.run(in);
    const auto got = exe.run(in);
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < got.size(); ++k) {
      if (want[k].dtype() != DType::f32) {
        CHECK(got[k].dtype() == want[k].dtype());
        continue;
      }
      const Diff d = compare(got[k], want[k]);
      if (qdq) {
        CHECK_MESSAGE(d.max_abs <= step + 1e-4 * d.max_ref + 1e-5, label << ": max diff " << d.max_abs << " step " << step);
        if (classifier) CHECK(d.top1);
      } else {
        CHECK_MESSAGE(d.max_abs <= 1e-4 * d.max_ref + 1e-5, label << ": max diff " << d.max_abs << " of max " << d.max_ref);
      }
    }
  }
}

Tensor random_input(const ir::ValueInfo& vi, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  Tensor t = Tensor::empty(vi.shape, DType::f32);
  for (auto& v : t.span<float>()) v = dist(gen);
  return t;
}

}  // namespace

TEST_CASE("OpenCL.Backend.Concept") {
  static_assert(sparseloom::Backend<opencl::Backend>);
  CHECK(opencl::Backend::name() == "opencl");
}

TEST_CASE("OpenCL.Backend.CompletionModesAndSharedContext") {
  // Busy-polling completion (the GPU default) and blocking waits give the same results; two
  // backends on one Context share its program cache and resident-byte count.
  if (!std::filesystem::is_directory(zoo_dir())) return;
  const auto z = zoo::load_task(zoo::list_tasks(zoo_dir()).front());
  const ir::Graph& g = z.variants[static_cast<std::size_t>(z.base())];
  auto o = quick_options();
  o.completion = opencl::Completion::busy_poll;
  const opencl::Backend poll(backend().context(), o);
  o.completion = opencl::Completion::wait;
  o.fuse = false;  // and the unfused plan gives the same numbers
  const opencl::Backend wait(backend().context(), o);
  o.completion = opencl::Completion::finish;  // event-less reads, clFinish
  o.fuse = true;
  const opencl::Backend fin(backend().context(), o);
  const auto before = backend().context()->resident_bytes();
  const auto a = poll.compile(g), b = wait.compile(g), c = fin.compile(g);
  CHECK(backend().context()->resident_bytes() == before + a.resident_bytes() + b.resident_bytes() + c.resident_bytes());
  CHECK(a.steps() < b.steps());  // fusion removed steps
  const std::vector<Tensor> in{z.input(z.test_x, 1)};
  const auto want = reference::Backend{}.compile(g).run(in);
  for (const auto* e : {&a, &b, &c}) {
    const Diff d = compare(e->run(in)[0], want[0]);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  }
}

TEST_CASE("OpenCL.Backend.ActivationBuffersAreShared") {
  // Tensors whose lifetimes do not overlap share a device buffer: the same numbers, bit for
  // bit, with fewer resident bytes (fused and unfused plans alike).
  if (!std::filesystem::is_directory(zoo_dir())) return;
  std::int64_t shared = 0, own = 0;
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    const ir::Graph& g = z.variants[static_cast<std::size_t>(z.base())];
    const std::vector<Tensor> in{z.input(z.test_x, 2)};
    for (const bool fuse : {true, false}) {
      auto o = quick_options();
      o.fuse = fuse;
      o.matmul.format = opencl::WeightFormat::dense;  // one format both ways: no timed trial between them
      const auto a = opencl::Backend(backend().context(), o).compile(g);
      o.reuse_buffers = false;
      const auto b = opencl::Backend(backend().context(), o).compile(g);
      CAPTURE(z.manifest.task);
      CAPTURE(fuse);
      CHECK(a.resident_bytes() <= b.resident_bytes());
      shared += a.resident_bytes();
      own += b.resident_bytes();
      const Tensor ya = a.run(in)[0].contiguous(), yb = b.run(in)[0].contiguous();
      REQUIRE(ya.numel() == yb.numel());
      CHECK(std::memcmp(ya.raw(), yb.raw(), static_cast<std::size_t>(ya.nbytes())) == 0);
    }
  }
  MESSAGE("resident bytes, base variants: " << shared << " shared vs " << own << " one buffer per tensor");
  CHECK(shared < own);
}

TEST_CASE("OpenCL.Backend.QdqLayersRunInInt8") {
  // The committed INT8 variants' convs and Gemms run on the s8 x u8 kernel (Int8Mode::always; the
  // default trial keeps f32 where that is faster), and classify the whole test subset as the
  // reference backend does (manifest accuracy within one test sample per 200).
  if (!std::filesystem::is_directory(zoo_dir())) return;
  auto o = quick_options();
  o.int8 = opencl::Int8Mode::always;
  const opencl::Backend always(backend().context(), o);
  int int8_layers = 0;
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    for (int v = 0; v < z.num_variants(); ++v) {
      const auto& mv = z.manifest.variants[static_cast<std::size_t>(v)];
      const ir::Graph& g = z.variants[static_cast<std::size_t>(v)];
      if (!is_qdq(g)) continue;
      CAPTURE(z.manifest.task + "/" + mv.name);
      const auto exe = always.compile(g);
      int here = 0;
      for (const auto& k : exe.kernels()) here += k.find("int8.") != std::string::npos;
      int8_layers += here;
      std::int64_t right = 0;
      const std::int64_t n = z.test_x.dim(0);
      for (std::int64_t i = 0; i < n; ++i) {
        const Tensor y = exe.run(std::vector<Tensor>{z.input(z.test_x, i)})[0].contiguous();
        const float* p = y.data<float>();
        right += std::max_element(p, p + y.numel()) - p == z.label(i);
      }
      const double acc = 100.0 * static_cast<double>(right) / static_cast<double>(n);
      MESSAGE(z.manifest.task << "/" << mv.name << ": " << here << " int8 layers, accuracy " << acc << " % (manifest "
                              << mv.accuracy_pct << " %)");
      CHECK(std::abs(acc - mv.accuracy_pct) <= 0.5);
    }
  }
  CHECK(int8_layers > 0);
}

TEST_CASE("OpenCL.Backend.Int8TrialKeepsOnlyTheWinner") {
  // A trial that INT8 wins (forced by the margin) holds exactly what Int8Mode::always holds:
  // the f32 layer it built to compare with, weights and input transposes, is freed.
  if (!std::filesystem::is_directory(zoo_dir())) return;
  const auto z = zoo::load_task(zoo_dir() / "fmnist_vit");  // convs and multi-row Gemms
  const auto it = std::find_if(z.manifest.variants.begin(), z.manifest.variants.end(), [](const auto& v) { return v.name == "int8"; });
  REQUIRE(it != z.manifest.variants.end());
  const ir::Graph& g = z.variants[static_cast<std::size_t>(it - z.manifest.variants.begin())];
  auto o = quick_options();
  o.int8 = opencl::Int8Mode::always;
  const auto always = opencl::Backend(backend().context(), o).compile(g);
  o.int8 = opencl::Int8Mode::trial;
  o.int8_margin = 1e9;
  const auto trial = opencl::Backend(backend().context(), o).compile(g);
  int won = 0;
  for (const auto& k : trial.kernels()) won += k.find("int8.s8u8 (trial") != std::string::npos;
  CHECK(won > 0);
  CHECK(trial.resident_bytes() == always.resident_bytes());
  const std::vector<Tensor> in{z.input(z.test_x, 4)};
  const Tensor a = always.run(in)[0].contiguous(), b = trial.run(in)[0].contiguous();
  REQUIRE(a.numel() == b.numel());
  CHECK(std::memcmp(a.raw(), b.raw(), static_cast<std::size_t>(a.nbytes())) == 0);
}

TEST_CASE("OpenCL.Backend.HostFallbackNodes") {
  // ReduceMean over non-adjacent axes has no kernel: it runs on the host between device steps
  // (download, reference, upload); with host_fallback off the compile says so.
  ir::Graph g;
  g.source = "fallback";
  g.inputs = {{"x", {1, 4, 5, 6}, DType::f32}};
  g.values["x"] = g.inputs[0];
  ir::Node mean{"mean", "ReduceMean", {"x"}, {"m"}, {}};
  mean.attrs["axes"] = std::vector<std::int64_t>{1, 3};
  g.nodes.push_back(mean);
  g.nodes.push_back({"relu", "Relu", {"m"}, {"r"}, {}});
  g.nodes.push_back({"sub", "Sub", {"x", "r"}, {"y"}, {}});
  g.nodes.push_back({"t", "Transpose", {"y"}, {"yt"}, {}});
  g.outputs = {{"yt", {}, DType::f32}, {"m", {}, DType::f32}};
  ir::infer_shapes(g);
  const auto exe = backend().compile(g);
  CHECK(exe.host_nodes().size() == 1);
  const std::vector<Tensor> in{random_input(g.inputs[0], 5)};
  const auto want = reference::Backend{}.compile(g).run(in);
  const auto got = exe.run(in);
  REQUIRE(got.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    const Diff d = compare(got[k], want[k]);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  }
  auto strict = quick_options();
  strict.host_fallback = false;
  CHECK_THROWS_AS(opencl::Backend(backend().context(), strict).compile(g), Error);
}

TEST_CASE("OpenCL.Backend.ZooVariantsMatchReference") {
  if (!std::filesystem::is_directory(zoo_dir())) {
    MESSAGE("no zoo at " << zoo_dir());
    return;
  }
  int graphs = 0;
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    for (int v = 0; v < z.num_variants(); ++v) {
      std::vector<std::vector<Tensor>> ins;
      for (std::int64_t i = 0; i < 3; ++i) ins.push_back({z.input(z.test_x, i)});
      check_graph(z.variants[v], ins, z.manifest.task + "/" + z.manifest.variants[v].name, true);
      ++graphs;
    }
  }
  MESSAGE(graphs << " zoo graphs checked");
  CHECK(graphs > 0);
}

TEST_CASE("OpenCL.Backend.ReferenceCasesMatchReference") {
  const std::filesystem::path dir = std::getenv("SPARSELOOM_REF_CASES") ? std::getenv("SPARSELOOM_REF_CASES") : SPARSELOOM_REF_CASES;
  if (!std::filesystem::exists(dir / "cases.txt")) {
    MESSAGE("no reference cases at " << dir << " (tools/testing/make_reference_cases.py --out " << dir << ")");
    return;
  }
  std::ifstream list(dir / "cases.txt");
  std::string name;
  int cases = 0;
  while (std::getline(list, name)) {
    if (name.empty()) continue;
    const auto d = dir / name;
    const auto g = onnx_io::import_file(d / "model.onnx");
    std::vector<Tensor> in;
    for (std::size_t i = 0; i < g.inputs.size(); ++i) in.push_back(npy::load(d / ("input_" + std::to_string(i) + ".npy")));
    check_graph(g, {in}, name, false);
    ++cases;
  }
  MESSAGE(cases << " reference cases checked");
}

TEST_CASE("OpenCL.Backend.AffineAndObserve") {
  if (!std::filesystem::is_directory(zoo_dir())) return;
  const auto tasks = zoo::list_tasks(zoo_dir());
  REQUIRE(!tasks.empty());
  const auto z = zoo::load_task(tasks.front());
  // A block with a repair tensor.
  int blk = -1;
  for (int b = 0; b < z.num_blocks(); ++b)
    if (z.manifest.blocks[b].repair.kind == zoo::RepairKind::bn_affine) blk = b;
  REQUIRE(blk >= 0);
  const std::string tensor = z.manifest.blocks[blk].repair.tensor;
  const ir::Graph& g = z.blocks[blk][static_cast<std::size_t>(z.base())];
  const auto ref = reference::Backend{}.compile(g);
  const auto exe = backend().compile(g);
  const Tensor x = random_input(g.inputs[0], 7);
  const std::vector<Tensor> in{x};
  const auto c = g.value(tensor).shape[1];
  AffineMap aff;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (std::int64_t k = 0; k < c; ++k) {
    aff[tensor].scale.push_back(u(gen));
    aff[tensor].shift.push_back(u(gen) - 1.f);
  }
  RunOptions ro;
  ro.affine = &aff;
  const auto plain = exe.run(in);
  for (int rep = 0; rep < 2; ++rep) {  // the second run reuses the uploaded repair
    const Diff d = compare(exe.run(in, ro)[0], ref.run(in, ro)[0]);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  }
  // Back without the repair: the epilogue's own scale/shift are restored.
  const Diff back = compare(exe.run(in)[0], plain[0]);
  CHECK(back.max_abs == 0);
  // An affine on a tensor no epilogue absorbs (the block output, after its activation).
  AffineMap aff2;
  const auto& out = g.outputs[0];
  if (out.shape.size() >= 2) {
    aff2[out.name] = ChannelAffine{std::vector<float>(static_cast<std::size_t>(out.shape[1]), 2.f),
                                   std::vector<float>(static_cast<std::size_t>(out.shape[1]), 0.5f)};
    RunOptions ro2;
    ro2.affine = &aff2;
    const Diff d = compare(exe.run(in, ro2)[0], ref.run(in, ro2)[0]);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  }
  // A wrong channel count is a shape error, as in the reference.
  AffineMap bad;
  bad[tensor] = ChannelAffine{{1.f}, {0.f}};
  RunOptions rob;
  rob.affine = &bad;
  CHECK_THROWS_AS(exe.run(in, rob), Error);
  // observe: every tensor the reference sees, with the same values (after the repair).
  std::map<std::string, Tensor> seen_ref, seen_ocl;
  RunOptions o1 = ro, o2 = ro;
  o1.observe = [&](const std::string& n, const Tensor& t) { seen_ref[n] = t.clone(); };
  o2.observe = [&](const std::string& n, const Tensor& t) { seen_ocl[n] = t.clone(); };
  ref.run(in, o1);
  const auto observed_out = exe.run(in, o2);
  CHECK(seen_ocl.size() == seen_ref.size());
  REQUIRE(seen_ocl.count(tensor));
  for (const auto& [n, t] : seen_ref) {
    CAPTURE(n);
    REQUIRE(seen_ocl.count(n));
    if (t.dtype() != DType::f32) continue;
    const Diff d = compare(seen_ocl[n], t);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  }
  // The fast path is unchanged after an observed run.
  CHECK(compare(exe.run(in)[0], plain[0]).max_abs == 0);
}

TEST_CASE("OpenCL.Backend.StitchedModelAccuracy") {
  // The stitch module on the OpenCL backend: repair statistics through observe, repairs through
  // the epilogue override; the same accuracy as on the reference backend on a test subset.
  if (!std::filesystem::is_directory(zoo_dir())) return;
  const auto z = zoo::load_task(zoo::list_tasks(zoo_dir()).front());
  const stitch::StitchedModel<reference::Backend> ref(z, reference::Backend{});
  const stitch::StitchedModel<opencl::Backend> ocl(z, backend());
  const auto& m = z.manifest;
  REQUIRE(!m.stitched_repair.empty());
  StitchedVariant s;
  for (const auto& n : m.stitched_repair.front().variants) s.choice.push_back(m.variant_index(n));
  const auto r_ref = ref.repair(s, 2);
  const auto r_ocl = ocl.repair(s, 2);
  const double a_ref = ref.accuracy_pct(s, &r_ref, 2, 200);
  const double a_ocl = ocl.accuracy_pct(s, &r_ocl, 2, 200);
  MESSAGE(m.task << " stitched+repair on 200 samples: reference " << a_ref << " %, opencl " << a_ocl << " %");
  CHECK(std::abs(a_ref - a_ocl) <= 1.0);
}

TEST_CASE("OpenCL.Backend.FaultsBecomeDeviceErrors") {
  if (!std::filesystem::is_directory(zoo_dir())) return;
  const auto z = zoo::load_task(zoo::list_tasks(zoo_dir()).front());
  const ir::Graph& g = z.variants[static_cast<std::size_t>(z.base())];
  // A fresh context: an empty program cache, so builds really happen.
  auto ctx = std::shared_ptr<opencl::Context>(opencl::Context::open());
  const opencl::Backend b(ctx, quick_options());
  const std::vector<Tensor> in{z.input(z.test_x, 0)};
  const auto want = reference::Backend{}.compile(g).run(in);
  auto expect_device = [](auto&& f, opencl::FaultKind kind) {
    try {
      f();
      FAIL("no error");
    } catch (const opencl::DeviceError& e) {
      CHECK(e.code() == ErrorCode::device);
      CHECK(e.kind() == kind);
    }
  };
  const auto resident0 = ctx->resident_bytes();
  ctx->faults().fail_build = true;
  expect_device([&] { (void)b.compile(g); }, opencl::FaultKind::build);
  ctx->faults().reset();
  CHECK(ctx->resident_bytes() == resident0);  // nothing left behind by the failed compile
  ctx->faults().fail_alloc = true;
  expect_device([&] { (void)b.compile(g); }, opencl::FaultKind::out_of_memory);
  ctx->faults().reset();
  CHECK(ctx->resident_bytes() == resident0);

  const auto exe = b.compile(g);
  CHECK(exe.resident_bytes() > 0);
  CHECK(ctx->resident_bytes() == resident0 + exe.resident_bytes());
  auto ok = [&] {
    const Diff d = compare(exe.run(in)[0], want[0]);
    CHECK(d.max_abs <= 1e-4 * d.max_ref + 1e-5);
  };
  ok();
  ctx->faults().fail_enqueue = true;  // one shot, mid-plan
  expect_device([&] { (void)exe.run(in); }, opencl::FaultKind::enqueue);
  ok();  // the next request is whole again
  ctx->faults().lose_device = true;
  expect_device([&] { (void)exe.run(in); }, opencl::FaultKind::lost_device);
  expect_device([&] { (void)b.compile(g); }, opencl::FaultKind::lost_device);
  ctx->faults().reset();
  ok();
}

TEST_CASE("OpenCL.Backend.BlockLibraryUploadsAndFrees") {
  // The preloader's load on an OpenCL processor (stitch::BlockLibrary): the block is read from
  // its variant file, its weights uploaded to the device, and what the context holds on the
  // device grows by exactly what the library counts as resident; unload frees it there.
  const auto z = zoo::load_task(zoo_dir() / "digits_cnn");
  const opencl::Backend& be = backend();
  stitch::BlockLibrary<opencl::Backend> lib({&z}, std::tuple<opencl::Backend>{be}, {{"gpu", 0, {}}}, 16);
  const std::int64_t before = be.context()->resident_bytes();
  for (BlockIndex b = 0; b < z.num_blocks(); ++b) {
    const std::int64_t now = be.context()->resident_bytes();
    const std::size_t predicted = lib.block_bytes(0, b, 1, 0);
    CHECK(be.context()->resident_bytes() == now);  // measuring the size freed it again
    lib.load(0, b, 1, 0);
    CHECK(lib.is_resident(0, b, 1, 0));
    CHECK(be.context()->resident_bytes() - now == static_cast<std::int64_t>(lib.block_bytes(0, b, 1, 0)));
    // The format trial is timed and not cached on this backend: a recompile may pack a layer
    // differently (the preloader corrects such a surprise and records it).
    CHECK(static_cast<double>(lib.block_bytes(0, b, 1, 0)) == doctest::Approx(static_cast<double>(predicted)).epsilon(0.10));
  }
  const auto held = static_cast<std::int64_t>(lib.resident_bytes());
  CHECK(held > 0);
  CHECK(be.context()->resident_bytes() - before == held);
  CHECK(lib.resident_bytes(0) == lib.resident_bytes());
  // A stitch over device blocks runs and classifies like the reference oracle.
  const StitchedVariant plain{std::vector<int>(static_cast<std::size_t>(z.num_blocks()), 1)};
  std::vector<Tensor> cur{z.input(z.test_x, 0)};
  for (BlockIndex b = 0; b < z.num_blocks(); ++b) cur = lib.run(0, plain, b, 0, cur);
  REQUIRE(cur.size() == 1);
  for (BlockIndex b = 0; b < z.num_blocks(); ++b) lib.unload(0, b, 1, 0);
  CHECK(lib.resident_bytes() == 0);
  CHECK(be.context()->resident_bytes() == before);
}
