// Export of stitched variants as one ONNX file (onnx_io::export_stitched): on every committed
// task, stitches with and without repair (QDQ INT8 blocks and transformer adapters included)
// are exported, re-imported with our importer and run on the reference backend, and must give
// StitchedModel's outputs. The cases (model + inputs + expected outputs) are left in
// SPARSELOOM_EXPORT_CASES (or the env var of that name) for tools/testing/check_exported_stitches.py (ONNX Runtime).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "sparseloom/backends/reference/backend.hpp"
#include "zoo_fixture.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/onnx/export.hpp"

using namespace sparseloom;

namespace {
using zoo_test::by_names;
using zoo_test::zoo_dir;

double max_rel_diff(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    d = std::max(d, std::abs(x - y) / std::max(1.0, std::abs(y)));
  }
  return d;
}

// Switches into a block whose repair is a bn_affine (the head may have none).
int affine_switches(const zoo::Manifest& m, const StitchedVariant& s) {
  int n = 0;
  for (std::size_t b = 1; b < s.choice.size(); ++b)
    n += s.choice[b] != s.choice[b - 1] && m.blocks[b].repair.kind == zoo::RepairKind::bn_affine;
  return n;
}
}  // namespace

TEST_CASE("Export.Stitched.ReferenceRunsTheExportLikeStitchedModel") {
  // The ONNX Runtime check passes its own folder, so the two can run in parallel under ctest -j.
  const char* env = std::getenv("SPARSELOOM_EXPORT_CASES");
  const std::filesystem::path cases = env ? env : SPARSELOOM_EXPORT_CASES;
  std::filesystem::remove_all(cases);
  std::filesystem::create_directories(cases);
  std::ofstream list(cases / "cases.txt");
  constexpr int kSamples = 3;
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    const auto& m = z.manifest;
    const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
    // A stitch switching at every block through QDQ INT8 and sparse f32 blocks (both cut
    // directions: f32 -> QDQ and QDQ -> f32), one the zoo's stitch check drew, and one without repair.
    const std::vector<std::string> cycle{"int8_p90", "p50", "int8", "p95", "b4x1_p90"};
    std::vector<std::string> every;
    for (int b = 0; b < z.num_blocks(); ++b) every.push_back(cycle[b % cycle.size()]);
    struct Case { StitchedVariant s; bool repair; };
    const std::vector<Case> stitches{{by_names(m, every), true},
                                     {by_names(m, m.stitched_repair.at(0).variants), true},
                                     {by_names(m, m.stitched_no_repair.at(1).variants), false}};
    for (std::size_t k = 0; k < stitches.size(); ++k) {
      const auto& [s, on] = stitches[k];
      CAPTURE(m.task);
      CAPTURE(k);
      const auto rep = model.repair(s, 2, 32);
      const stitch::StitchRepair* r = on ? &rep : nullptr;
      const std::string name = m.task + "_" + std::to_string(k);
      const auto path = cases / name / "model.onnx";
      const auto sum = onnx_io::export_stitched(z, s, r, path);
      // The repair is in the file: one affine per switch (CNNs) or one adapter per switch out
      // of a non-base variant (transformer).
      int maps = 0, affines = 0;
      for (int b = 0; b < z.num_blocks(); ++b) {
        maps += rep.pre_map[b] != nullptr;
        affines += static_cast<int>(rep.affine[b].size());
      }
      CHECK(sum.residual_maps == (on ? maps : 0));
      CHECK(sum.affine_repairs == (on ? affines : 0));
      if (on) CHECK(maps + affines >= 1);
      CHECK(affines == affine_switches(m, s));

      const auto exe = reference::Backend{}.compile(onnx_io::import_file(path));
      double worst = 0, repair_effect = 0;
      for (int i = 0; i < kSamples; ++i) {
        const Tensor x = z.input(z.test_x, i * 7);
        const Tensor want = model.run(s, r, x);
        const Tensor got = exe.run(std::span<const Tensor>(&x, 1)).front();
        worst = std::max(worst, max_rel_diff(got, want));
        if (on) repair_effect = std::max(repair_effect, max_rel_diff(got, model.run(s, nullptr, x)));
        npy::save(cases / name / ("input_" + std::to_string(i) + ".npy"), x);
        npy::save(cases / name / ("expected_" + std::to_string(i) + ".npy"), want);
      }
      MESSAGE(name << ": " << sum.nodes << " nodes, " << sum.affine_repairs << " affine repairs, " << sum.residual_maps
                   << " adapters; max rel. diff to StitchedModel " << worst << ", repair changes logits by " << repair_effect);
      CHECK(worst <= 1e-4);
      if (on) CHECK(repair_effect > 1e-3);  // an export that dropped the repair would fail above
      list << name << " " << kSamples << "\n";
    }
  }
}

TEST_CASE("Export.Stitched.ExportMeetsTheNamingContractAgain") {
  const auto z = zoo::load_task(zoo_dir() / "fmnist_resnet");
  const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
  const auto s = by_names(z.manifest, {"p90", "int8", "int8", "base", "p50"});
  const auto rep = model.repair(s, 2, 16);
  const auto proto = onnx_io::stitched_model_proto(z, s, &rep);
  const auto parts = onnx_io::detail::split_blocks(proto, zoo::block_boundaries(z.manifest), "exported");
  REQUIRE(parts.size() == 5);
  // Blocks 1 and 3 follow a switch: their Mul/Add pair is counted in their own block.
  CHECK(parts[1].nodes.size() == z.blocks[1][z.manifest.variant_index("int8")].nodes.size() + 2);
  CHECK(parts[2].nodes.size() == z.blocks[2][z.manifest.variant_index("int8")].nodes.size());
  for (const auto& mp : proto.metadata_props())
    if (mp.key() == "sparseloom.stitch") CHECK(mp.value() == "p90,int8,int8,base,p50");
  CHECK(proto.ir_version() == onnx_io::detail::load_model_proto(z.manifest.dir / "base.onnx").ir_version());
}

TEST_CASE("Export.Stitched.ClearErrors") {
  const auto z = zoo::load_task(zoo_dir() / "digits_cnn");
  const auto tmp = std::filesystem::temp_directory_path() / "sparseloom_export_errors.onnx";
  auto code_of = [&](const StitchedVariant& s, const stitch::StitchRepair* r = nullptr) {
    try {
      onnx_io::export_stitched(z, s, r, tmp);
    } catch (const Error& e) {
      MESSAGE(std::string(e.what()));
      return e.code();
    }
    return ErrorCode::internal;
  };
  CHECK(code_of({{0, 0}}) == ErrorCode::invalid_argument);
  CHECK(code_of({{0, 0, 0, 0, 99}}) == ErrorCode::invalid_argument);
  CHECK(code_of({{0, -1, 0, 0, 0}}) == ErrorCode::invalid_argument);
  stitch::StitchRepair short_repair;
  short_repair.affine.resize(2);
  short_repair.pre_map.resize(2);
  CHECK(code_of({{0, 1, 0, 0, 0}}, &short_repair) == ErrorCode::invalid_argument);
  // A repair naming a tensor the block does not produce.
  stitch::StitchRepair wrong;
  wrong.affine.resize(5);
  wrong.pre_map.assign(5, nullptr);
  wrong.affine[2]["repair1"] = ChannelAffine{{1.f}, {0.f}};
  CHECK(code_of({{0, 1, 1, 1, 1}}, &wrong) == ErrorCode::parse);
  // A repair with the wrong channel count.
  stitch::StitchRepair channels;
  channels.affine.resize(5);
  channels.pre_map.assign(5, nullptr);
  channels.affine[1]["repair1"] = ChannelAffine{{1.f}, {0.f}};
  CHECK(code_of({{0, 1, 1, 1, 1}}, &channels) == ErrorCode::shape);

  // Variants breaking the contract: a name owned by no block, and a node reading across a cut.
  ::onnx::ModelProto bad = onnx_io::detail::load_model_proto(z.manifest.dir / "base.onnx");
  const auto bounds = zoo::block_boundaries(z.manifest);
  auto split_code = [&](const ::onnx::ModelProto& p) {
    try {
      onnx_io::detail::split_blocks(p, bounds, "bad");
    } catch (const Error& e) {
      MESSAGE(std::string(e.what()));
      return e.code();
    }
    return ErrorCode::internal;
  };
  ::onnx::ModelProto unnamed = bad;
  unnamed.mutable_graph()->mutable_node(0)->set_output(0, "stray");
  CHECK(split_code(unnamed) == ErrorCode::parse);
  ::onnx::ModelProto crossing = bad;
  auto* last = crossing.mutable_graph()->mutable_node(crossing.graph().node_size() - 1);
  last->set_input(0, crossing.graph().node(0).output(0));  // the head reads a block-0 tensor
  CHECK(split_code(crossing) == ErrorCode::parse);
  CHECK_NOTHROW(onnx_io::detail::split_blocks(bad, bounds, "base"));
}
