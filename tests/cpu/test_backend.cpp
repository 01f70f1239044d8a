// cpu::Backend against the reference backend: every committed zoo variant (whole graphs, f32
// within 1e-4 * max|ref| + 1e-5, INT8 QDQ top-1 agreement), ONNX Runtime's quick reference
// cases, RunOptions::affine on fused and unfused conv outputs, RunOptions::observe; 1 and 2
// threads.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "sparseloom/backends/cpu/backend.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/onnx/import.hpp"
#include "sparseloom/zoo/manifest.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

using namespace sparseloom;
namespace fs = std::filesystem;

namespace {

struct Diff {
  double max_err = 0, max_ref = 0;
  double tol() const { return 1e-4 * max_ref + 1e-5; }
};

Diff diff(const Tensor& got_in, const Tensor& ref_in) {
  const Tensor got = got_in.contiguous(), ref = ref_in.contiguous();
  REQUIRE(got.shape() == ref.shape());
  REQUIRE(got.dtype() == ref.dtype());
  Diff d;
  if (got.dtype() != DType::f32) {
    REQUIRE(std::memcmp(got.raw(), ref.raw(), got.nbytes()) == 0);
    return d;
  }
  for (std::int64_t k = 0; k < got.numel(); ++k) {
    d.max_err = std::max(d.max_err, static_cast<double>(std::fabs(got.data<float>()[k] - ref.data<float>()[k])));
    d.max_ref = std::max(d.max_ref, static_cast<double>(std::fabs(ref.data<float>()[k])));
  }
  return d;
}

std::int64_t argmax(const Tensor& t_in) {
  const Tensor t = t_in.contiguous();
  return std::max_element(t.data<float>(), t.data<float>() + t.numel()) - t.data<float>();
}

Tensor random_input(const Shape& s, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  Tensor t = Tensor::empty(s, DType::f32);
  for (auto& v : t.span<float>()) v = d(rng);
  return t;
}

// A few test inputs of a task: preprocessed test samples where the task has a manifest.
std::vector<Tensor> task_inputs(const fs::path& dir, const ir::Graph& g, int count) {
  std::vector<Tensor> in;
  if (fs::exists(dir / "manifest.json") && fs::exists(dir / "test_x.npy")) {
    zoo::TaskZoo z;
    z.manifest = zoo::load_manifest(dir);
    const Tensor raw = npy::load(dir / "test_x.npy");
    for (int i = 0; i < count && i < raw.dim(0); ++i) in.push_back(z.input(raw, i));
  } else {
    for (int i = 0; i < count; ++i) in.push_back(random_input(g.inputs.at(0).shape, 100u + static_cast<std::uint32_t>(i)));
  }
  return in;
}

cpu::Backend test_backend() { return std::move(cpu::Backend{}.trial_budget_ms(0.2)); }

std::vector<fs::path> zoo_variants() {
  std::vector<fs::path> files;
  const fs::path zoo = fs::path(SPARSELOOM_SOURCE_DIR) / "models" / "zoo";
  if (!fs::exists(zoo)) return files;
  for (const auto& task : fs::directory_iterator(zoo))
    if (task.is_directory())
      for (const auto& f : fs::directory_iterator(task.path()))
        if (f.path().extension() == ".onnx") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("Cpu.Backend.ModelsTheConcept") {
  static_assert(sparseloom::Backend<cpu::Backend>);
  CHECK(cpu::Backend::name() == "cpu");
}

TEST_CASE("Cpu.Backend.ZooVariantsMatchReference") {
  const auto files = zoo_variants();
  REQUIRE(!files.empty());
  auto backend = test_backend();
  int checked = 0;
  for (const auto& file : files) {
    CAPTURE(file.string());
    const ir::Graph g = onnx_io::import_file(file);
    const bool int8 = file.stem().string().rfind("int8", 0) == 0;
    const auto inputs = task_inputs(file.parent_path(), g, 2);
    auto ref = reference::Backend{}.compile(g, {});
    // Two threads on the variants that exercise distinct formats (keeps the label short).
    const std::string stem = file.stem().string();
    const bool two = stem == "base" || stem == "p90" || stem == "b4x1_p90" || stem == "s2_4" || stem == "int8_p90";
    for (int threads : {1, 2}) {
      if (threads == 2 && !two) continue;
      CAPTURE(threads);
      auto exe = backend.compile(g, {threads});
      CHECK(exe.resident_bytes() > 0);
      for (const auto& x : inputs) {
        const std::vector<Tensor> in{x};
        const auto want = ref.run(in);
        const auto got = exe.run(in);
        REQUIRE(got.size() == want.size());
        for (std::size_t o = 0; o < got.size(); ++o) {
          const Diff d = diff(got[o], want[o]);
          if (int8) {
            CHECK(argmax(got[o]) == argmax(want[o]));
            // Q/DQ run literally on f32 weights: differences come only from a rounding flip in
            // a quantiser; bound them by 5 % of the output range.
            CHECK(d.max_err <= 0.05 * d.max_ref + 1e-5);
          } else {
            CHECK(d.max_err <= d.tol());
          }
        }
        ++checked;
      }
    }
  }
  MESSAGE("checked " << checked << " (variant, threads, input) runs over " << files.size() << " zoo files");
}

TEST_CASE("Cpu.Backend.OnnxRuntimeCases") {
  const fs::path root(SPARSELOOM_CPU_REF_CASES);
  std::ifstream f(root / "cases.txt");
  std::vector<std::string> names;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) names.push_back(line);
  REQUIRE(names.size() >= 10);
  auto backend = test_backend();
  for (const auto& name : names) {
    CAPTURE(name);
    const fs::path dir = root / name;
    const ir::Graph g = onnx_io::import_file(dir / "model.onnx");
    std::vector<Tensor> in;
    for (std::size_t i = 0; i < g.inputs.size(); ++i) in.push_back(npy::load(dir / ("input_" + std::to_string(i) + ".npy")));
    for (int threads : {1, 2}) {
      const auto out = backend.compile(g, {threads}).run(in);
      REQUIRE(out.size() == g.outputs.size());
      for (std::size_t i = 0; i < out.size(); ++i) {
        const Diff d = diff(out[i], npy::load(dir / ("expected_" + std::to_string(i) + ".npy")));
        CHECK_MESSAGE(d.max_err <= d.tol(), name << " output " << i << " threads " << threads << ": max error " << d.max_err);
      }
    }
  }
}

TEST_CASE("Cpu.Backend.AffineAndObserveMatchReference") {
  auto backend = test_backend();
  for (const char* rel : {"models/zoo/fmnist_resnet/p90.onnx", "models/zoo/digits_cnn/base.onnx", "models/zoo/speech_kws/p80.onnx"}) {
    const fs::path file = fs::path(SPARSELOOM_SOURCE_DIR) / rel;
    if (!fs::exists(file)) continue;
    CAPTURE(file.string());
    const ir::Graph g = onnx_io::import_file(file);
    // Affine on every Conv output (fused with a Relu or not), and on one Relu output.
    AffineMap affine;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> sc(0.5f, 1.5f), sh(-0.2f, 0.2f);
    bool relu_done = false;
    for (const auto& n : g.nodes) {
      const bool pick = n.op == "Conv" || (n.op == "Relu" && !relu_done);
      if (!pick) continue;
      relu_done |= n.op == "Relu";
      const auto c = g.value(n.outputs[0]).shape.at(1);
      ChannelAffine a;
      for (std::int64_t i = 0; i < c; ++i) a.scale.push_back(sc(rng)), a.shift.push_back(sh(rng));
      affine[n.outputs[0]] = a;
    }
    REQUIRE(affine.size() >= 2);
    const std::vector<Tensor> in{task_inputs(file.parent_path(), g, 1).at(0)};
    auto ref = reference::Backend{}.compile(g, {});
    std::map<std::string, Tensor> ref_seen;
    RunOptions rro;
    rro.affine = &affine;
    rro.observe = [&](const std::string& name, const Tensor& t) { ref_seen[name] = t.clone(); };
    const auto want = ref.run(in, rro);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      auto exe = backend.compile(g, {threads});
      RunOptions ro;
      ro.affine = &affine;
      const auto got = exe.run(in, ro);  // fast path: affine folded into epilogues
      for (std::size_t o = 0; o < got.size(); ++o) {
        const Diff d = diff(got[o], want[o]);
        CHECK(d.max_err <= d.tol());
      }
      // The unaffined output differs (the affine was applied at all).
      const auto plain = exe.run(in);
      CHECK(diff(plain[0], want[0]).max_err > 1e-3);
      // With observe: every produced tensor, same values.
      std::map<std::string, Tensor> seen;
      ro.observe = [&](const std::string& name, const Tensor& t) { seen[name] = t.clone(); };
      const auto got2 = exe.run(in, ro);
      CHECK(seen.size() == ref_seen.size());
      for (const auto& [name, t] : ref_seen) {
        CAPTURE(name);
        REQUIRE(seen.count(name) == 1);
        const Diff d = diff(seen.at(name), t);
        CHECK(d.max_err <= d.tol());
      }
      const Diff d2 = diff(got2[0], want[0]);
      CHECK(d2.max_err <= d2.tol());
    }
  }
}

TEST_CASE("Cpu.Backend.FixedProcessorAndLayers") {
  const fs::path file = fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn/p90.onnx";
  if (!fs::exists(file)) return;
  const ir::Graph g = onnx_io::import_file(file);
  cpu::Backend proc(2);
  proc.trial_budget_ms(0.2);
  auto exe = proc.compile(g, {2});
  CHECK(exe.threads() == 2);
  CHECK(exe.layers().size() == 6);  // 5 Conv + Gemm
  int fused = 0;
  for (const auto& l : exe.layers()) fused += static_cast<int>(l.fused.size());
  CHECK(fused == 5);  // every Conv's Relu
  CHECK_THROWS_AS(proc.compile(g, {3}), Error);
}

TEST_CASE("Cpu.Backend.ObserveSeesEveryTensorOfAQdqGraph") {
  const fs::path file = fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn/int8_p90.onnx";
  if (!fs::exists(file)) return;
  const ir::Graph g = onnx_io::import_file(file);
  const std::vector<Tensor> in{task_inputs(file.parent_path(), g, 1).at(0)};
  std::vector<std::string> want, got;
  RunOptions rro;
  rro.observe = [&](const std::string& name, const Tensor&) { want.push_back(name); };
  reference::Backend{}.compile(g, {}).run(in, rro);
  RunOptions ro;
  ro.observe = [&](const std::string& name, const Tensor&) { got.push_back(name); };
  auto backend = test_backend();
  backend.compile(g, {1}).run(in, ro);
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  CHECK(got == want);
}

namespace {
// Forces every layer of `op` that `pick` accepts onto the INT8 kernels (u8 x s8 -> s32), then
// checks plain, repaired (a random affine on every `nth` such layer's output: fused and
// reference paths in one run) and observed runs against the reference (f32 on dequantised
// tensors): equal up to a rounding flip in a later quantiser, bounded as in
// ZooVariantsMatchReference.
template <class Pick>
void check_int8_layers(const fs::path& file, const std::string& op, Pick pick, int nth, int inputs_n) {
  CAPTURE(file.string());
  const ir::Graph g = onnx_io::import_file(file);
  const auto inputs = task_inputs(file.parent_path(), g, inputs_n);
  AffineMap affine;
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> sc(0.5f, 1.5f), sh(-0.2f, 0.2f);
  int layers = 0;
  for (const auto& n : g.nodes) {
    if (n.op != op || !pick(n)) continue;
    if (++layers % nth) continue;
    const auto c = g.value(n.outputs[0]).shape.at(1);
    ChannelAffine a;
    for (std::int64_t i = 0; i < c; ++i) a.scale.push_back(sc(rng)), a.shift.push_back(sh(rng));
    affine[n.outputs[0]] = a;
  }
  REQUIRE(layers >= nth);
  auto ref = reference::Backend{}.compile(g, {});
  auto close = [](const Tensor& got, const Tensor& want) {
    const Diff d = diff(got, want);
    CHECK(argmax(got) == argmax(want));
    CHECK(d.max_err <= 0.05 * d.max_ref + 1e-5);
  };
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    auto exe = test_backend().int8(cpu::Backend::Int8::always).compile(g, {threads});
    int int8 = 0;
    for (const auto& l : exe.layers())
      int8 += l.op == op && (l.format == cpu::Format::int8_dense || l.format == cpu::Format::int8_1x4);
    CHECK(int8 == layers);
    for (const auto& x : inputs) {
      const std::vector<Tensor> in{x};
      close(exe.run(in)[0], ref.run(in)[0]);
      RunOptions rro, ro;
      rro.affine = ro.affine = &affine;
      std::set<std::string> ref_seen, seen;
      rro.observe = [&](const std::string& name, const Tensor&) { ref_seen.insert(name); };
      ro.observe = [&](const std::string& name, const Tensor&) { seen.insert(name); };
      const auto want = ref.run(in, rro);
      close(exe.run(in, ro)[0], want[0]);
      CHECK(seen == ref_seen);
      ro.observe = nullptr;
      close(exe.run(in, ro)[0], want[0]);
    }
  }
  // Never: no INT8 layer.
  auto f32 = test_backend().int8(cpu::Backend::Int8::never).compile(g, {1});
  for (const auto& l : f32.layers()) CHECK((l.format != cpu::Format::int8_1x4 && l.format != cpu::Format::int8_dense));
}
}  // namespace

TEST_CASE("Cpu.Backend.Int8LinearLayersMatchReference") {
  const fs::path file = fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/fmnist_vit/int8_p90.onnx";
  if (fs::exists(file)) check_int8_layers(file, "Gemm", [](const ir::Node&) { return true; }, 2, 1);
}

TEST_CASE("Cpu.Backend.Int8ConvLayersMatchReference") {
  // Convs of groups 1 (u8 im2col with the zero point as padding); the sparse (int8_p90) and
  // the dense (int8) INT8 paths.
  for (const char* variant : {"int8_p90.onnx", "int8.onnx"}) {
    const fs::path file = fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/fmnist_resnet" / variant;
    if (fs::exists(file))
      check_int8_layers(file, "Conv", [](const ir::Node& n) { return n.attr<std::int64_t>("group", 1) == 1; }, 3, 2);
  }
}
