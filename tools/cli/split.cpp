// sparseloom split TASK_DIR...: writes each zoo task's block files (one ONNX model per block
// and variant, listed in the manifest), so that a block load reads only its own weights.
#include <chrono>

#include "common.hpp"
#include "sparseloom/zoo/block_files.hpp"

namespace sparseloom::cli {

void add_split(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("split", "Write per-block ONNX files for zoo tasks (a block load then reads only that block)");
  auto dirs = std::make_shared<std::vector<std::string>>();
  sub->add_option("tasks", *dirs, "zoo task directories (with manifest.json)")->required();
  sub->callback([dirs, &g] {
    g.action = [dirs, &g] {
      json::Json out = json::Json::array();
      std::vector<std::vector<std::string>> rows;
      for (const auto& d : *dirs) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto s = zoo::write_block_files(d);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out.push_back({{"task_dir", d}, {"variants", s.variants}, {"block_files", s.blocks}, {"bytes", s.bytes}, {"seconds", sec}});
        rows.push_back({d, std::to_string(s.variants), std::to_string(s.blocks), human_bytes(static_cast<double>(s.bytes)),
                        fmt::format("{:.1f} s", sec)});
        if (!g.quiet && !g.json) fmt::print(stderr, "{}: {} block files\n", d, s.blocks);
      }
      if (g.json) fmt::print("{}\n", out.dump(1));
      else print_table({"task", "variants", "block files", "size", "time"}, rows);
      return kOk;
    };
  });
}

}  // namespace sparseloom::cli
