// stitch::BlockLibrary as the preloader sees it (issue 10): load compiles/packs the block for
// the processor's backend and unload frees it; block_bytes is exactly what a load adds to
// resident_bytes (before and after the first load); a block two stitches share is one slot;
// repair vectors count in resident_bytes; a load reads the variant's file, or the block's own
// file where the task has block files (and fails clearly when it is gone or changed). On the
// committed zoo's smallest task.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/preloader/on_demand_lru.hpp"
#include "sparseloom/stitch/block_library.hpp"
#include "sparseloom/zoo/block_files.hpp"
#ifdef SPARSELOOM_PRELOADER_TEST_CPU
#include "sparseloom/backends/cpu/backend.hpp"
#endif

using namespace sparseloom;

namespace {

// exact_before_load: the backend packs a block the same way on every compile. The reference
// backend has no timed choices; the cpu backend caches every timed choice (its format trial and
// a conv's implicit-vs-im2col path, cpu::FormatCache), so a recompile packs the same way too.
template <class Lib>
void block_bytes_exact(Lib& lib, bool exact_before_load) {
  const auto& z = lib.task(0);
  for (ProcessorIndex p = 0; p < lib.num_processors(); ++p)
    for (BlockIndex b = 0; b < z.num_blocks(); ++b)
      for (VariantIndex v = 0; v < z.num_variants(); ++v) {
        const std::size_t predicted = lib.block_bytes(0, b, v, p);  // measured without staying resident
        CHECK_FALSE(lib.is_resident(0, b, v, p));
        const std::size_t before = lib.resident_bytes();
        lib.load(0, b, v, p);
        CHECK(lib.is_resident(0, b, v, p));
        const std::size_t added = lib.resident_bytes() - before;
        if (exact_before_load) CHECK(added == predicted);
        else CHECK(static_cast<double>(added) == doctest::Approx(static_cast<double>(predicted)).epsilon(0.10));
        CHECK(lib.block_bytes(0, b, v, p) == added);
        lib.load(0, b, v, p);  // already resident: nothing more held
        CHECK(lib.resident_bytes() - before == added);
        lib.unload(0, b, v, p);
        CHECK_FALSE(lib.is_resident(0, b, v, p));
        CHECK(lib.resident_bytes() == before);
      }
}

}  // namespace

TEST_CASE("Preloader.BlockLibraryLoadsForRealAndCountsExactly") {
  const auto z = zoo::load_task(std::filesystem::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn");
  REQUIRE(z.num_blocks() >= 2);
  REQUIRE(z.num_variants() >= 2);
  SUBCASE("reference backend") {
    stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"ref", 0, {}}}, 16);
    block_bytes_exact(lib, true);
  }
#ifdef SPARSELOOM_PRELOADER_TEST_CPU
  SUBCASE("cpu backend: packed sparse formats, sizes differ from the ONNX initializers") {
    stitch::BlockLibrary<cpu::Backend> lib({&z}, {cpu::Backend(1)}, {{"cpu", 0, {1}}}, 16);
    block_bytes_exact(lib, true);
  }
#endif
  SUBCASE("a block shared by two stitches is held once; repairs count") {
    stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"ref", 0, {}}}, 16);
    const int B = z.num_blocks();
    StitchedVariant a{std::vector<int>(static_cast<std::size_t>(B), 0)}, s = a;
    s.choice.back() = 1;  // shares every block but the last with the plain variant 0
    std::size_t expect = 0;
    for (BlockIndex b = 0; b < B; ++b) {
      lib.load(0, b, 0, 0);
      expect += lib.block_bytes(0, b, 0, 0);
    }
    lib.load(0, B - 1, 1, 0);
    expect += lib.block_bytes(0, B - 1, 1, 0);
    CHECK(lib.resident_bytes() == expect);
    lib.prepare(0, s);  // the stitch's repair vectors
    CHECK(lib.resident_bytes() >= expect);
    const std::size_t with_repair = lib.resident_bytes();
    lib.prepare(0, s);  // once per stitch
    CHECK(lib.resident_bytes() == with_repair);
    // Both stitches run on the shared slots.
    Tensor x = z.input(z.test_x, 0);
    for (const auto* sv : {&a, &s}) {
      std::vector<Tensor> cur{x};
      for (BlockIndex b = 0; b < B; ++b) cur = lib.run(0, *sv, b, 0, cur);
      CHECK(!cur.empty());
    }
  }
}

TEST_CASE("Preloader.BlockLibraryLoadReadsTheVariantFile") {
  // A load reads the block from the variant's ONNX file, so a file that went missing, was
  // corrupted or was replaced after start fails that load with the file named; the other
  // variants still load. On a private copy of the smallest committed task.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("sparseloom-file-load-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn", dir);
  const auto z = zoo::load_task(dir);
  REQUIRE(z.num_variants() >= 3);
  stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"ref", 0, {}}}, 16);
  const fs::path file1 = dir / z.manifest.variants[1].file, file2 = dir / z.manifest.variants[2].file;
  auto load_error = [&](VariantIndex v) -> std::pair<ErrorCode, std::string> {
    try {
      lib.load(0, 0, v, 0);
    } catch (const Error& e) {
      CHECK_FALSE(lib.is_resident(0, 0, v, 0));
      return {e.code(), e.what()};
    }
    lib.unload(0, 0, v, 0);
    return {ErrorCode::internal, "loaded"};
  };
  CHECK(load_error(1).second == "loaded");
  {
    std::ofstream(file1, std::ios::binary | std::ios::trunc) << "not an onnx model";
  }
  auto [code, what] = load_error(1);
  CHECK(code == ErrorCode::io);  // a different file than at start: refused before parsing
  CHECK(what.find(file1.string()) != std::string::npos);
  CHECK(what.find("changed since the zoo was loaded") != std::string::npos);
  fs::copy_file(dir / z.manifest.variants[0].file, file2, fs::copy_options::overwrite_existing);
  CHECK(load_error(2).first == ErrorCode::io);  // a valid model, but not the one profiled
  fs::remove(file1);
  std::tie(code, what) = load_error(1);
  CHECK(code == ErrorCode::io);
  CHECK(what.find(file1.string()) != std::string::npos);
  // Other variants are unaffected, and what was resident before stays usable.
  lib.load(0, 0, 0, 0);
  CHECK(lib.is_resident(0, 0, 0, 0));
  CHECK(lib.resident_bytes() == lib.block_bytes(0, 0, 0, 0));
  fs::remove_all(dir);
}

TEST_CASE("Preloader.BlockFilesLoadOnlyTheirBlock") {
  // zoo::write_block_files cuts every variant into one ONNX file per block and lists them in the
  // manifest; load_task checks each is exactly its block; a load then reads that file alone.
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("sparseloom-block-files-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  // Every committed task cuts into block files that import to exactly its blocks (BN-folded
  // CNNs, the INT8 QDQ variants, the transformer with residual-map adapters).
  for (const auto& t : zoo::list_tasks(fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo")) {
    const fs::path dir = root / t.filename();
    fs::copy(t, dir, fs::copy_options::recursive);
    const auto sum = zoo::write_block_files(dir);
    const auto z = zoo::load_task(dir);
    CAPTURE(z.manifest.task);
    CHECK(sum.variants == z.num_variants());
    CHECK(sum.blocks == z.num_variants() * z.num_blocks());
    for (int v = 0; v < z.num_variants(); ++v) {
      REQUIRE(z.manifest.variants[v].block_files.size() == static_cast<std::size_t>(z.num_blocks()));
      for (int b = 0; b < z.num_blocks(); ++b) CHECK_FALSE(ir::first_difference(z.read_block(b, v), z.blocks[b][v]));
    }
  }
  const fs::path dir = root / "digits_cnn";
  const auto z = zoo::load_task(dir);
  REQUIRE(z.num_variants() >= 3);
  stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"ref", 0, {}}}, 16);
  // Without the variant's own file a block still loads: only its block file is read.
  fs::remove(dir / z.manifest.variants[1].file);
  for (BlockIndex b = 0; b < z.num_blocks(); ++b) {
    lib.load(0, b, 1, 0);
    CHECK(lib.is_resident(0, b, 1, 0));
  }
  Tensor x = z.input(z.test_x, 0);
  std::vector<Tensor> cur{x};
  const auto s = lib.oracle(0).plain(1);
  for (BlockIndex b = 0; b < z.num_blocks(); ++b) cur = lib.run(0, s, b, 0, cur);
  const Tensor expect = lib.oracle(0).run(s, nullptr, x);
  REQUIRE(cur.size() == 1);
  REQUIRE(cur[0].numel() == expect.numel());
  for (std::int64_t i = 0; i < expect.numel(); ++i) CHECK(cur[0].data<float>()[i] == expect.data<float>()[i]);
  // A block file changed after start: that load fails naming it, before parsing.
  const auto& files2 = z.manifest.variants[2].block_files;
  fs::copy_file(dir / z.manifest.variants[0].block_files[1], dir / files2[1], fs::copy_options::overwrite_existing);
  try {
    lib.load(0, 1, 2, 0);
    FAIL("a changed block file loaded");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::io);
    CHECK(std::string(e.what()).find(files2[1]) != std::string::npos);
  }
  CHECK_FALSE(lib.is_resident(0, 1, 2, 0));
  // At start, a block file that is not its block (here: another variant's, a valid model) is
  // refused with the file named.
  fs::copy_file(fs::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn" / z.manifest.variants[1].file, dir / z.manifest.variants[1].file);
  try {
    (void)zoo::load_task(dir);
    FAIL("a mismatched block file was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::parse);
    CHECK(std::string(e.what()).find(files2[1]) != std::string::npos);
    CHECK(std::string(e.what()).find("is not block 1") != std::string::npos);
  }
  // Writing the block files again repairs the task.
  zoo::write_block_files(dir);
  CHECK(zoo::load_task(dir).num_variants() == z.num_variants());
  fs::remove_all(root);
}

TEST_CASE("Preloader.RepairBytesAdmittedWithinTheBudget") {
  // With every byte of the budget held by blocks, a new stitch's repair vectors are admitted
  // through the policy (Preloader::admit): it evicts first, so resident bytes never exceed the
  // budget, where counting them straight away (as before) overshot by the repair's size.
  const auto z = zoo::load_task(std::filesystem::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn");
  stitch::BlockLibrary<reference::Backend> lib({&z}, {}, {{"ref", 0, {}}}, 16);
  const int B = z.num_blocks();
  std::size_t budget = 0;
  for (BlockIndex b = 0; b < B; ++b) budget += lib.block_bytes(0, b, 0, 0) + lib.block_bytes(0, b, 1, 0);
  preloader::OnDemandLru pre(budget);
  for (VariantIndex v : {0, 1})
    for (BlockIndex b = 0; b < B; ++b) {
      pre.acquire(lib, 0, b, v, 0);
      pre.release(lib, 0, b, v, 0);
    }
  REQUIRE(lib.resident_bytes() == budget);  // full
  StitchedVariant s{std::vector<int>(static_cast<std::size_t>(B), 0)};
  s.choice[1] = 1;  // a switch in and out: repaired blocks after both
  std::size_t admitted = 0;
  lib.prepare(0, s, [&](std::size_t bytes, auto&& commit) {
    admitted = bytes;
    CHECK(pre.admit(lib, bytes, commit));
  });
  REQUIRE(admitted > 0);
  CHECK(lib.prepared(0, s));
  CHECK(lib.resident_bytes() <= budget);
  CHECK(lib.resident_bytes() + admitted > budget - lib.block_bytes(0, 0, 0, 0));  // only as much was evicted as needed
  CHECK(pre.stats().evictions >= 1);
  CHECK_FALSE(pre.stats().budget_exceeded);
  lib.prepare(0, s, [&](std::size_t, auto&&) { FAIL("a stitch is admitted once"); });
}

TEST_CASE("Preloader.StitchNeedingNoCalibrationIsPreparedAtOnce") {
  // digits_cnn blocks 1.. carry a bn_affine repair: a switch into one needs calibration first.
  // A fmnist_vit stitch (residual adapters, no statistics) needs none, so the Engine makes no
  // interim plan for it; nor for a latency-scale task, whose blocks carry no repair.
  const auto d = zoo::load_task(std::filesystem::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn");
  const auto v = zoo::load_task(std::filesystem::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/fmnist_vit");
  stitch::BlockLibrary<reference::Backend> lib({&d, &v}, {}, {{"ref", 0, {}}}, 16);
  REQUIRE(d.manifest.blocks[1].repair.kind == zoo::RepairKind::bn_affine);
  StitchedVariant switch_in{std::vector<int>(static_cast<std::size_t>(d.num_blocks()), 0)};
  switch_in.choice[1] = 1;
  CHECK_FALSE(lib.prepared(0, switch_in));
  lib.prepare(0, switch_in);
  CHECK(lib.prepared(0, switch_in));
  StitchedVariant vit{std::vector<int>(static_cast<std::size_t>(v.num_blocks()), 0)};
  vit.choice[0] = 2;
  vit.choice[2] = 4;
  for (const auto& blk : v.manifest.blocks) REQUIRE(blk.repair.kind != zoo::RepairKind::bn_affine);
  CHECK(lib.prepared(1, vit));
}
