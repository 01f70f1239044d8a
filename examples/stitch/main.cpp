// Stitch two variants of a zoo task and measure them: the first half of the blocks from one
// variant, the rest from another, with and without stitch-time repair.
// With --export-onnx PATH the repaired stitch is also written as one ONNX file (ONNX Runtime
// runs it with the same outputs).
//   stitch ZOO_TASK_DIR [FIRST_VARIANT] [SECOND_VARIANT] [--export-onnx PATH]
#include <cstdio>
#include <string>
#include <vector>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/onnx/export.hpp"
#include "sparseloom/stitch/stitched_model.hpp"

int main(int argc, char** argv) {
  using namespace sparseloom;
  std::vector<std::string> args;
  std::string export_path;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--export-onnx" && i + 1 < argc) export_path = argv[++i];
    else args.push_back(argv[i]);
  }
  if (args.empty() || args[0].rfind("--", 0) == 0) {
    std::fprintf(stderr, "usage: %s ZOO_TASK_DIR [FIRST_VARIANT] [SECOND_VARIANT] [--export-onnx PATH]\n", argv[0]);
    return 2;
  }
  try {
    const zoo::TaskZoo z = zoo::load_task(args[0]);
    const auto& m = z.manifest;
    const int a = m.variant_index(args.size() > 1 ? args[1] : "p90");
    const int b = m.variant_index(args.size() > 2 ? args[2] : m.base);
    const stitch::StitchedModel<reference::Backend> model(z, reference::Backend{});
    StitchedVariant s;
    for (int k = 0; k < z.num_blocks(); ++k) s.choice.push_back(k < z.num_blocks() / 2 ? a : b);
    const auto repair = model.repair(s, 2);
    std::printf("task %s, %d blocks; stitch = blocks 0-%d from %s, the rest from %s\n", m.task.c_str(), z.num_blocks(),
                z.num_blocks() / 2 - 1, m.variants[a].name.c_str(), m.variants[b].name.c_str());
    std::printf("  %-24s %6.2f %%\n", m.variants[a].name.c_str(), model.accuracy_pct(model.plain(a), nullptr, 2));
    std::printf("  %-24s %6.2f %%\n", m.variants[b].name.c_str(), model.accuracy_pct(model.plain(b), nullptr, 2));
    std::printf("  %-24s %6.2f %%\n", "stitched, no repair", model.accuracy_pct(s, nullptr, 2));
    std::printf("  %-24s %6.2f %%  (repair took %.1f ms, holds %zu B per stitch + %zu B shared adapters)\n",
                "stitched, repaired", model.accuracy_pct(s, &repair, 2), repair.seconds * 1e3, repair.bytes,
                repair.shared_adapter_bytes);
    if (!export_path.empty()) {
      const auto sum = onnx_io::export_stitched(z, s, &repair, export_path);
      std::printf("  wrote %s (%zu nodes, %d affine repairs, %d adapters)\n", export_path.c_str(), sum.nodes,
                  sum.affine_repairs, sum.residual_maps);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
