// The committed zoo, checked in C++ without Python: every variant's accuracy on the committed
// test subset reproduces the manifest (within 0.1 pp), stitched variants reproduce the
// manifest's stitch check with and without repair, and the structure is stitchable.
#include <doctest/doctest.h>

#include <cstdlib>

#include "sparseloom/backends/reference/backend.hpp"
#include "zoo_fixture.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

using namespace sparseloom;

namespace {
using zoo_test::by_names;
using zoo_test::zoo_dir;
}  // namespace

TEST_CASE("Zoo.Committed.StructureMeetsTheIssue") {
  const auto tasks = zoo::list_tasks(zoo_dir());
  CHECK(tasks.size() >= 4);
  for (const auto& t : tasks) {
    const auto m = zoo::load_manifest(t);
    CAPTURE(m.task);
    CHECK(m.variants.size() >= 8);
    CHECK(m.blocks.size() >= 4);
  }
}

TEST_CASE("Zoo.Committed.VariantAccuracyReproducedInCpp") {
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
    for (int v = 0; v < z.num_variants(); ++v) {
      const double acc = model.accuracy_pct(model.plain(v), nullptr, 2);
      const auto& spec = z.manifest.variants[v];
      MESSAGE(z.manifest.task << "/" << spec.name << ": C++ " << acc << " %, manifest " << spec.accuracy_pct << " %");
      CHECK(std::abs(acc - spec.accuracy_pct) <= 0.1 + 1e-9);
    }
  }
}

TEST_CASE("Zoo.Committed.StitchedAccuracyReproducedInCpp") {
  for (const auto& t : zoo::list_tasks(zoo_dir())) {
    const auto z = zoo::load_task(t);
    const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
    const auto& m = z.manifest;
    REQUIRE(m.stitched_repair.size() >= 4);
    for (std::size_t k = 0; k < 4; ++k) {
      const auto s_raw = by_names(m, m.stitched_no_repair[k].variants);
      const double raw = model.accuracy_pct(s_raw, nullptr, 2);
      const auto s_rep = by_names(m, m.stitched_repair[k].variants);
      const auto rep = model.repair(s_rep, 2);
      const double repaired = model.accuracy_pct(s_rep, &rep, 2);
      MESSAGE(m.task << " stitch " << k << ": no repair " << raw << " (manifest " << m.stitched_no_repair[k].accuracy_pct
                     << "), repaired " << repaired << " (manifest " << m.stitched_repair[k].accuracy_pct << ", repair "
                     << rep.seconds * 1e3 << " ms, " << rep.bytes << " B)");
      CHECK(std::abs(raw - m.stitched_no_repair[k].accuracy_pct) <= 0.1 + 1e-9);
      // Repair statistics are recomputed here in float on another engine: allow 0.2 pp.
      CHECK(std::abs(repaired - m.stitched_repair[k].accuracy_pct) <= 0.2 + 1e-9);
    }
  }
}

TEST_CASE("Stitch.ResidualMapEqualsTheRowLoopOnEveryShape") {
  // The 4-token x 16-wide register tiles, the leftover tokens and widths that are no multiple
  // of 16 all give what a plain loop does in the same order (b, then k = 0..d-1).
  for (auto [tokens, d] : {std::pair<std::int64_t, std::int64_t>{16, 64}, {17, 64}, {3, 32}, {5, 24}}) {
    CAPTURE(tokens);
    CAPTURE(d);
    Tensor x = Tensor::empty({1, tokens, d}, DType::f32);
    zoo::ResidualMap m{Tensor::empty({d, d}, DType::f32), Tensor::empty({d}, DType::f32)};
    for (std::int64_t i = 0; i < tokens * d; ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 23) * 0.11f - 1.2f;
    for (std::int64_t i = 0; i < d * d; ++i) m.w.data<float>()[i] = static_cast<float>((i * 13) % 29) * 0.03f - 0.4f;
    for (std::int64_t i = 0; i < d; ++i) m.b.data<float>()[i] = static_cast<float>(i) * 0.01f - 0.1f;
    const Tensor y = stitch::apply_residual_map(x, m);
    int differ = 0;
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t j = 0; j < d; ++j) {
        float ref = m.b.data<float>()[j];
        for (std::int64_t k = 0; k < d; ++k) ref += x.data<float>()[t * d + k] * m.w.data<float>()[k * d + j];
        differ += y.data<float>()[t * d + j] != ref;
      }
    CHECK(differ == 0);
  }
}
