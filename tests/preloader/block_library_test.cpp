// stitch::BlockLibrary as the preloader sees it (issue 10): load compiles/packs the block for
// the processor's backend and unload frees it; block_bytes is exactly what a load adds to
// resident_bytes (before and after the first load); a block two stitches share is one slot;
// repair vectors count in resident_bytes. On the committed zoo's smallest task.
#include <doctest/doctest.h>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/stitch/block_library.hpp"
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
