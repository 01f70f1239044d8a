#pragma once
// A task's zoo manifest (models/zoo/<task>/manifest.json, written by tools/zoo): variants,
// cut points, blocks with their stitch-time repair, test/calibration data, stitch check.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/core/tensor.hpp"

namespace sparseloom::zoo {

inline constexpr int kManifestSchema = 1;

enum class RepairKind { none, bn_affine, residual_map };

struct RepairSpec {
  RepairKind kind = RepairKind::none;
  std::string tensor;    // bn_affine: the pre-activation tensor inside the block; residual_map: the cut tensor
  std::int64_t channels = 0;
  // residual_map: adapter files per variant of the PREVIOUS block (x' = x @ W + b per token).
  std::map<std::string, std::pair<std::string, std::string>> adapter_files;
  double cost_weights = 0, cost_macs = 0;
};

struct BlockSpec {
  int index = 0;
  std::string input, output;  // cut tensor names
  std::int64_t dense_macs = 0;
  RepairSpec repair;
};

struct VariantSpec {
  std::string name, file, kind;  // kind: dense | unstructured | block4x1 | 2:4 | int8 | int8+...
  double sparsity = 0;
  bool int8 = false;
  double accuracy_pct = 0;
  double plain_twin_accuracy_pct = -1;
  std::int64_t params = 0, nonzeros = 0, bytes = 0, macs = 0;
  std::vector<std::int64_t> block_macs, block_nonzeros;
  // Optional: one ONNX file per block, cut from `file` (sparseloom split): a block load reads
  // only its own weights. Relative to the task directory.
  std::vector<std::string> block_files;
};

struct StitchRecord {
  std::vector<std::string> variants;  // one per block
  double accuracy_pct = 0;
};

struct Manifest {
  std::filesystem::path dir;
  std::string task, modality, dataset, description;
  std::string input_name;
  Shape input_shape;
  std::string raw_dtype;  // uint8 | int16
  double pre_scale = 1, pre_mean = 0, pre_std = 1;
  std::vector<std::string> classes;
  std::string test_x, test_y, calib_x;
  std::int64_t test_count = 0, calib_count = 0;
  std::vector<BlockSpec> blocks;
  std::string base;
  std::vector<VariantSpec> variants;
  std::vector<StitchRecord> stitched_no_repair, stitched_repair;
  // Accuracy of the base with block b taken from variant v: [v][b] (empty when not measured).
  std::vector<std::vector<double>> single_swap, single_swap_repair;
  std::map<std::string, double> summary_no_repair, summary_repair;  // frac_ge_worst_source, ...

  int variant_index(const std::string& name) const {
    for (std::size_t i = 0; i < variants.size(); ++i)
      if (variants[i].name == name) return static_cast<int>(i);
    throw Error(ErrorCode::invalid_argument, (dir / "manifest.json").string(), "no variant named '" + name + "'");
  }
};

// Parses a manifest document; `task_dir` is where its files live, `source` names it in errors
// (the path, or "<fuzz>"). Bounded: fuzzed (tests/fuzz/fuzz_manifest.cpp).
inline Manifest parse_manifest(const json::Json& doc, const std::filesystem::path& task_dir, const std::string& source) {
  const json::Field root(doc, source);
  json::check_schema(root, kManifestSchema);
  Manifest m;
  m.dir = task_dir;
  m.task = root.get<std::string>("task");
  m.modality = root.get_or<std::string>("modality", "");
  m.dataset = root.get_or<std::string>("dataset", "");
  m.description = root.get_or<std::string>("description", "");
  const auto in = root["input"];
  m.input_name = in.get<std::string>("name");
  m.input_shape = in.get<Shape>("shape");
  m.raw_dtype = in.get<std::string>("raw_dtype");
  check(m.raw_dtype == "uint8" || m.raw_dtype == "int16", ErrorCode::unsupported, in.where("raw_dtype"), "'" + m.raw_dtype + "'");
  const auto pre = in["preprocess"];
  m.pre_scale = pre.get<double>("scale");
  m.pre_mean = pre.get<double>("mean");
  m.pre_std = pre.number("std", 1e-12, 1e12);
  if (root["output"].has("classes")) m.classes = root["output"].get<std::vector<std::string>>("classes");
  m.test_x = root["test_data"].get<std::string>("x");
  m.test_y = root["test_data"].get<std::string>("y");
  m.test_count = root["test_data"].get<std::int64_t>("count");
  m.calib_x = root["calib_data"].get<std::string>("x");
  m.calib_count = root["calib_data"].get<std::int64_t>("count");
  m.base = root.get<std::string>("base");
  const auto blocks = root["blocks"];
  check(blocks.size() >= 1, ErrorCode::parse, blocks.where(), "no blocks");
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const auto b = blocks[i];
    BlockSpec s;
    s.index = b.get<int>("index");
    check(s.index == static_cast<int>(i), ErrorCode::parse, b.where("index"), "blocks must be listed in order");
    s.input = b.get<std::string>("input");
    s.output = b.get<std::string>("output");
    s.dense_macs = b.get_or<std::int64_t>("macs", 0);
    if (b.has("repair")) {
      const auto r = b["repair"];
      const auto kind = r.get<std::string>("kind");
      s.repair.tensor = r.get<std::string>("tensor");
      s.repair.cost_weights = r.get_or<double>("cost_weights", 0);
      s.repair.cost_macs = r.get_or<double>("cost_macs", 0);
      if (kind == "bn_affine") {
        s.repair.kind = RepairKind::bn_affine;
        s.repair.channels = r.get<std::int64_t>("channels");
      } else if (kind == "residual_map") {
        s.repair.kind = RepairKind::residual_map;
        const auto files = r["files"];
        check(files.raw().is_object(), ErrorCode::parse, files.where(), "expected an object");
        for (const auto& [v, f] : files.raw().items())
          s.repair.adapter_files[v] = {files[v].get<std::string>("W"), files[v].get<std::string>("b")};
      } else {
        throw Error(ErrorCode::unsupported, r.where("kind"), "repair kind '" + kind + "'");
      }
    }
    m.blocks.push_back(std::move(s));
  }
  for (std::size_t i = 1; i < m.blocks.size(); ++i)
    check(m.blocks[i].input == m.blocks[i - 1].output, ErrorCode::parse, blocks[i].where("input"),
          "does not continue from block " + std::to_string(i - 1) + "'s output");
  const auto vars = root["variants"];
  for (std::size_t i = 0; i < vars.size(); ++i) {
    const auto v = vars[i];
    VariantSpec s;
    s.name = v.get<std::string>("name");
    s.file = v.get<std::string>("file");
    const auto c = v["compression"];
    s.kind = c.get<std::string>("kind");
    s.sparsity = c.get_or<double>("sparsity", 0);
    s.int8 = c.get_or<bool>("int8", false);
    s.accuracy_pct = v.number("accuracy_pct", 0, 100);
    s.plain_twin_accuracy_pct = v.get_or<double>("plain_twin_accuracy_pct", -1);
    s.params = v.get_or<std::int64_t>("params", 0);
    s.nonzeros = v.get_or<std::int64_t>("nonzeros", 0);
    s.bytes = v.get_or<std::int64_t>("bytes", 0);
    s.macs = v.get_or<std::int64_t>("macs", 0);
    s.block_macs = v.get_or<std::vector<std::int64_t>>("block_macs", {});
    s.block_nonzeros = v.get_or<std::vector<std::int64_t>>("block_nonzeros", {});
    check(s.block_macs.empty() || s.block_macs.size() == m.blocks.size(), ErrorCode::parse, v.where("block_macs"),
          "one entry per block expected");
    s.block_files = v.get_or<std::vector<std::string>>("block_files", {});
    check(s.block_files.empty() || s.block_files.size() == m.blocks.size(), ErrorCode::parse, v.where("block_files"),
          "one file per block expected");
    for (const auto& f : s.block_files) {
      const std::filesystem::path bf(f);
      check(!f.empty() && bf.is_relative() && std::find(bf.begin(), bf.end(), "..") == bf.end(), ErrorCode::parse,
            v.where("block_files"), "'" + f + "' must be a path inside the task directory");
    }
    m.variants.push_back(std::move(s));
  }
  m.variant_index(m.base);
  if (root.has("stitch_check")) {
    const auto sc = root["stitch_check"];
    auto read = [&](const char* mode, std::vector<StitchRecord>& out, std::map<std::string, double>& summary) {
      if (!sc.has(mode)) return;
      const auto r = sc[mode];
      for (const auto& [k, val] : r.raw().items())
        if (val.is_number()) summary[k] = val.get<double>();
      const auto st = r["stitches"];
      for (std::size_t i = 0; i < st.size(); ++i) {
        StitchRecord rec{st[i].get<std::vector<std::string>>("variants"), st[i].get<double>("accuracy_pct")};
        check(rec.variants.size() == m.blocks.size(), ErrorCode::parse, st[i].where("variants"), "one variant per block expected");
        for (const auto& n : rec.variants) m.variant_index(n);
        out.push_back(std::move(rec));
      }
    };
    read("no_repair", m.stitched_no_repair, m.summary_no_repair);
    read("repair", m.stitched_repair, m.summary_repair);
    auto singles = [&](const char* key, std::vector<std::vector<double>>& out) {
      if (!sc.has(key)) return;
      out.assign(m.variants.size(), {});
      for (const auto& [name, accs] : sc[key].raw().items()) {
        const auto v = static_cast<std::size_t>(m.variant_index(name));
        out[v] = sc[key][name].get<std::vector<double>>();
        check(out[v].size() == m.blocks.size(), ErrorCode::parse, sc.where(key), "one accuracy per block expected for '" + name + "'");
      }
    };
    singles("single_swap", m.single_swap);
    singles("single_swap_repair", m.single_swap_repair);
  }
  return m;
}

inline Manifest load_manifest(const std::filesystem::path& task_dir) {
  const auto path = task_dir / "manifest.json";
  return parse_manifest(json::load(path), task_dir, path.string());
}

}  // namespace sparseloom::zoo
