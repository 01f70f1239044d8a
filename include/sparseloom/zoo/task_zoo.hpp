#pragma once
// Loads one task of a zoo: its manifest, every variant imported and partitioned into blocks,
// the committed test and calibration data (native dtype, preprocessed on use) and the
// residual-map adapters of transformer tasks.
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sparseloom/core/npy.hpp"
#include "sparseloom/ir/compare.hpp"
#include "sparseloom/onnx/import.hpp"
#include "sparseloom/stitch/partition.hpp"
#include "sparseloom/zoo/manifest.hpp"

namespace sparseloom::zoo {

struct ResidualMap {
  Tensor w;  // (d, d): x' = x @ w + b per token
  Tensor b;  // (d,)
};

struct TaskZoo {
  Manifest manifest;
  std::vector<ir::Graph> variants;               // whole graphs, manifest order
  std::vector<std::vector<ir::Graph>> blocks;    // [block][variant]
  Tensor test_x, test_y, calib_x;                // raw (uint8/int16), labels int64
  // Adapter applied to the cut tensor entering block i, keyed (i, variant of block i-1).
  std::map<std::pair<int, int>, ResidualMap> residual_maps;
  // Where load_task read it from (empty for a zoo built in memory): a block load re-reads the
  // variant's ONNX file from here (read_block), and checks it is the file read at start (a
  // hash per variant: profiles and accuracies were taken of that one).
  std::filesystem::path dir;
  std::vector<std::size_t> file_hash;
  // Per variant with block files (manifest `block_files`): the hash of each block's file, which
  // load_task checked is exactly that block of the variant's file; read_block then reads only it.
  std::vector<std::vector<std::size_t>> block_file_hash;
  bool use_block_files = true;  // false: loads read whole variant files even so (an ablation)

  int num_blocks() const { return static_cast<int>(manifest.blocks.size()); }
  int num_variants() const { return static_cast<int>(variants.size()); }
  int base() const { return manifest.variant_index(manifest.base); }

  // Sample i of raw data (N, ...) as the model's f32 input: (raw * scale - mean) / std.
  Tensor input(const Tensor& raw, std::int64_t i) const {
    check(i >= 0 && i < raw.dim(0), ErrorCode::invalid_argument, manifest.task, "sample index out of range");
    Tensor x = Tensor::empty(manifest.input_shape, DType::f32);
    const auto per = raw.numel() / raw.dim(0);
    check(per == x.numel(), ErrorCode::shape, manifest.task,
          "data sample has " + std::to_string(per) + " values, the model input " + to_string(manifest.input_shape));
    const float s = static_cast<float>(manifest.pre_scale), m = static_cast<float>(manifest.pre_mean),
                d = static_cast<float>(manifest.pre_std);
    float* o = x.data<float>();
    for (std::int64_t k = 0; k < per; ++k) {
      const float r = raw.dtype() == DType::u8 ? static_cast<float>(raw.data<std::uint8_t>()[i * per + k])
                                               : static_cast<float>(raw.data<std::int16_t>()[i * per + k]);
      o[k] = (r * s - m) / d;
    }
    return x;
  }
  std::int64_t label(std::int64_t i) const { return test_y.data<std::int64_t>()[i]; }

  // Block b of variant v as a load reads it: imported from the block's own file where the
  // variant has block files, else from the variant's ONNX file and cut at the task's cut points
  // again (a missing, corrupt or changed file fails here with the file named), or, for a zoo
  // built in memory, the graph held in `blocks`.
  ir::Graph read_block(int b, int v) const;
};

namespace detail {
// A variant file's bytes and their hash: load_task records the hash, read_block checks it.
struct VariantFile {
  std::string bytes;
  std::size_t hash = 0;
};
inline VariantFile read_variant_file(const std::filesystem::path& path) {
  VariantFile f{onnx_io::detail::read_file(path, onnx_io::ImportOptions{}.max_file_bytes), 0};
  f.hash = std::hash<std::string_view>{}(f.bytes);
  return f;
}
// A load's read: the file's bytes, refused unless they hash as they did when the zoo was loaded.
inline std::string read_unchanged(const std::filesystem::path& path, std::size_t hash) {
  auto f = read_variant_file(path);
  check(f.hash == hash, ErrorCode::io, path.string(), "changed since the zoo was loaded (its profiles and accuracies are of the old file)");
  return std::move(f.bytes);
}
}  // namespace detail

inline std::vector<std::string> block_boundaries(const Manifest& m) {
  std::vector<std::string> b{m.blocks.front().input};
  for (const auto& blk : m.blocks) b.push_back(blk.output);
  return b;
}

inline TaskZoo load_task(const std::filesystem::path& dir) {
  TaskZoo z;
  z.dir = dir;
  z.manifest = load_manifest(dir);
  const auto& m = z.manifest;
  const auto bounds = block_boundaries(m);
  z.blocks.resize(m.blocks.size());
  for (const auto& v : m.variants) {
    const auto f = detail::read_variant_file(dir / v.file);
    z.file_hash.push_back(f.hash);
    z.variants.push_back(onnx_io::import_bytes(f.bytes, (dir / v.file).string()));
    auto parts = stitch::partition(z.variants.back(), bounds);
    z.block_file_hash.emplace_back();
    for (std::size_t b = 0; b < v.block_files.size(); ++b) {
      // A block file must be exactly the block the variant's file partitions into: profiles,
      // accuracies and repairs are all taken of the latter.
      const auto path = dir / v.block_files[b];
      const auto bf = detail::read_variant_file(path);
      const auto diff = ir::first_difference(onnx_io::import_bytes(bf.bytes, path.string()), parts[b]);
      check(!diff, ErrorCode::parse, path.string(),
            "is not block " + std::to_string(b) + " of " + v.file + ": " + diff.value_or("") +
                " (rewrite the block files with `sparseloom split`)");
      z.block_file_hash.back().push_back(bf.hash);
    }
    for (std::size_t b = 0; b < parts.size(); ++b) z.blocks[b].push_back(std::move(parts[b]));
  }
  const DType raw = m.raw_dtype == "uint8" ? DType::u8 : DType::i16;
  z.test_x = npy::load(dir / m.test_x);
  z.test_y = npy::load(dir / m.test_y);
  z.calib_x = npy::load(dir / m.calib_x);
  check(z.test_x.dtype() == raw && z.calib_x.dtype() == raw, ErrorCode::parse, (dir / m.test_x).string(),
        "data dtype differs from the manifest's raw_dtype " + m.raw_dtype);
  check(z.test_y.dtype() == DType::i64 && z.test_y.rank() == 1 && z.test_y.dim(0) == z.test_x.dim(0), ErrorCode::parse,
        (dir / m.test_y).string(), "labels must be int64 with one per test sample");
  check(z.test_x.dim(0) == m.test_count, ErrorCode::parse, (dir / m.test_x).string(), "sample count differs from the manifest");
  for (std::size_t i = 0; i < m.blocks.size(); ++i) {
    const auto& r = m.blocks[i].repair;
    if (r.kind != RepairKind::residual_map) continue;
    for (const auto& [vname, files] : r.adapter_files) {
      ResidualMap map{npy::load(dir / files.first), npy::load(dir / files.second)};
      check(map.w.rank() == 2 && map.w.dim(0) == map.w.dim(1) && map.b.numel() == map.w.dim(0), ErrorCode::shape,
            (dir / files.first).string(), "adapter must be (d, d) with a (d,) bias");
      z.residual_maps[{static_cast<int>(i), m.variant_index(vname)}] = std::move(map);
    }
  }
  return z;
}

inline ir::Graph TaskZoo::read_block(int b, int v) const {
  check(b >= 0 && b < num_blocks() && v >= 0 && v < num_variants(), ErrorCode::invalid_argument, manifest.task,
        "block " + std::to_string(b) + " of variant " + std::to_string(v) + " is out of range");
  if (dir.empty()) return blocks[static_cast<std::size_t>(b)][static_cast<std::size_t>(v)];
  const auto& spec = manifest.variants[static_cast<std::size_t>(v)];
  if (use_block_files && !spec.block_files.empty()) {
    const auto path = dir / spec.block_files.at(static_cast<std::size_t>(b));
    const auto hash = block_file_hash.at(static_cast<std::size_t>(v)).at(static_cast<std::size_t>(b));
    return onnx_io::import_bytes(detail::read_unchanged(path, hash), path.string());
  }
  const auto path = dir / spec.file;
  const auto bytes = detail::read_unchanged(path, file_hash.at(static_cast<std::size_t>(v)));
  auto parts = stitch::partition(onnx_io::import_bytes(bytes, path.string()), block_boundaries(manifest));
  return std::move(parts.at(static_cast<std::size_t>(b)));
}

inline std::vector<std::filesystem::path> list_tasks(const std::filesystem::path& zoo_dir) {
  std::vector<std::filesystem::path> out;
  check(std::filesystem::is_directory(zoo_dir), ErrorCode::io, zoo_dir.string(), "zoo directory does not exist");
  for (const auto& e : std::filesystem::directory_iterator(zoo_dir))
    if (e.is_directory() && std::filesystem::exists(e.path() / "manifest.json")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sparseloom::zoo
