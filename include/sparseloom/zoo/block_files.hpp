#pragma once
// Writes a zoo task's block files: each variant cut into one ONNX model per block
// (onnx_io::slice_blocks) under <task>/blocks/, listed in the manifest as the variant's
// `block_files`. With them a block load reads and parses that block only: for a ResNet-50
// variant a 100 MB file per load becomes the block's own 1-60 MB (docs/zoo.md). The files are
// derived data: load_task checks each is exactly its block of the variant file, so stale ones
// fail loudly, and writing them again replaces them.
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sparseloom/core/json.hpp"
#include "sparseloom/onnx/slice.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

namespace sparseloom::zoo {

struct BlockFilesSummary {
  int variants = 0, blocks = 0;
  std::size_t bytes = 0;  // written, all block files together
};

// Cuts every variant of the task in `task_dir` into block files and records them in its
// manifest.json (other fields kept as they are). The manifest changes only when every block
// imports to exactly what the variant's file partitions into.
inline BlockFilesSummary write_block_files(const std::filesystem::path& task_dir) {
  const Manifest m = load_manifest(task_dir);
  const auto bounds = block_boundaries(m);
  const auto sub = task_dir / "blocks";
  std::filesystem::create_directories(sub);
  BlockFilesSummary sum;
  std::vector<std::vector<std::string>> lists;
  for (const auto& v : m.variants) {
    const auto path = task_dir / v.file;
    // Parsed once: the proto is cut, its import gives the shapes and the partition to match.
    const auto model =
        onnx_io::detail::parse_model(onnx_io::detail::read_file(path, onnx_io::ImportOptions{}.max_file_bytes), path.string());
    const auto graph = onnx_io::import_model(model, path.string());
    const auto parts = onnx_io::slice_blocks(model, bounds, graph, path.string());
    const auto expect = stitch::partition(graph, bounds);
    std::vector<std::string> names;
    for (std::size_t b = 0; b < parts.size(); ++b) {
      const std::string rel = "blocks/" + std::filesystem::path(v.file).stem().string() + ".b" + std::to_string(b) + ".onnx";
      std::string bytes;
      check(parts[b].SerializeToString(&bytes), ErrorCode::internal, rel, "cannot serialise the block model");
      // The check load_task makes, made before anything is written: a block this importer
      // would read differently is an error here, not a zoo that no longer loads.
      const auto diff = ir::first_difference(onnx_io::import_bytes(bytes, rel), expect[b]);
      check(!diff, ErrorCode::internal, path.string() + " block " + std::to_string(b),
            "cut into a model that imports differently: " + diff.value_or(""));
      json::write_text_atomically(task_dir / rel, bytes);
      sum.bytes += bytes.size();
      names.push_back(rel);
      ++sum.blocks;
    }
    lists.push_back(std::move(names));
    ++sum.variants;
  }
  // The manifest keeps its key order and every field; only `block_files` is (re)written.
  const auto mpath = task_dir / "manifest.json";
  nlohmann::ordered_json doc;
  try {
    std::ifstream in(mpath);
    doc = nlohmann::ordered_json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::parse, mpath.string(), e.what());
  }
  auto& vars = doc.at("variants");
  check(vars.is_array() && vars.size() == lists.size(), ErrorCode::parse, mpath.string(), "variants changed while writing");
  for (std::size_t i = 0; i < lists.size(); ++i) vars[i]["block_files"] = lists[i];
  json::write_text_atomically(mpath, doc.dump(1) + "\n");
  return sum;
}

}  // namespace sparseloom::zoo
