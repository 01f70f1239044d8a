// sparseloom inspect PATH: what a model or a zoo task holds. For an .onnx file: op counts and,
// per weight-carrying layer, shape, parameters, non-zeros, sparsity and bytes. For a zoo task
// directory: its blocks (cut points, MACs, repair) and variants (compression, accuracy, size);
// --variant NAME adds that variant's layers, per block.
#include <map>
#include <set>

#include "common.hpp"
#include "sparseloom/onnx/import.hpp"
#include "sparseloom/stitch/partition.hpp"
#include "sparseloom/zoo/manifest.hpp"

namespace sparseloom::cli {
namespace {

struct Layer {
  std::string node, op, weight;
  Shape shape;
  std::int64_t params = 0, nonzeros = 0, bytes = 0;
  int block = -1;
};

std::int64_t nonzeros_of(const Tensor& t) {
  std::int64_t nz = 0;
  const auto n = t.numel();
  switch (t.dtype()) {
    case DType::f32: for (std::int64_t i = 0; i < n; ++i) nz += t.data<float>()[i] != 0.f; break;
    case DType::i8: for (std::int64_t i = 0; i < n; ++i) nz += t.data<std::int8_t>()[i] != 0; break;
    case DType::u8: for (std::int64_t i = 0; i < n; ++i) nz += t.data<std::uint8_t>()[i] != 0; break;
    default: return n;
  }
  return nz;
}

// A layer is a node whose weight is an initializer of rank >= 2 (Conv, Gemm, MatMul), or whose
// weight arrives through a DequantizeLinear of one (QDQ INT8 graphs).
std::vector<Layer> layers_of(const ir::Graph& g) {
  std::map<std::string, std::string> dq;  // DequantizeLinear output -> its int8 initializer
  for (const auto& n : g.nodes)
    if (n.op == "DequantizeLinear" && n.has_input(0) && g.is_initializer(n.inputs[0])) dq[n.outputs[0]] = n.inputs[0];
  std::vector<Layer> out;
  static const std::set<std::string> kOps{"Conv", "Gemm", "MatMul", "ConvTranspose"};
  for (const auto& n : g.nodes) {
    if (!kOps.count(n.op)) continue;
    for (std::size_t i = 0; i < n.inputs.size() && i < 2; ++i) {
      std::string w = n.inputs[i];
      if (auto it = dq.find(w); it != dq.end()) w = it->second;
      const auto it = g.initializers.find(w);
      if (it == g.initializers.end() || it->second.rank() < 2) continue;
      const Tensor& t = it->second;
      out.push_back({n.name, n.op, w, t.shape(), t.numel(), nonzeros_of(t), static_cast<std::int64_t>(t.nbytes())});
      break;
    }
  }
  return out;
}

json::Json layer_json(const Layer& l) {
  json::Json j{{"node", l.node}, {"op", l.op}, {"weight", l.weight}, {"shape", l.shape}, {"params", l.params},
               {"nonzeros", l.nonzeros}, {"sparsity", l.params ? 1.0 - static_cast<double>(l.nonzeros) / static_cast<double>(l.params) : 0.0},
               {"bytes", l.bytes}};
  if (l.block >= 0) j["block"] = l.block;
  return j;
}

void print_layers(const std::vector<Layer>& ls) {
  const bool blocks = !ls.empty() && ls.front().block >= 0;  // known for a zoo variant only
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : ls) {
    rows.push_back({l.node, l.op, to_string(l.shape), std::to_string(l.params), std::to_string(l.nonzeros),
                    fmt::format("{:.1f} %", l.params ? 100.0 * (1.0 - static_cast<double>(l.nonzeros) / static_cast<double>(l.params)) : 0.0),
                    human_bytes(static_cast<double>(l.bytes))});
    if (blocks) rows.back().push_back(std::to_string(l.block));
  }
  std::vector<std::string> head{"layer", "op", "weight shape", "params", "nonzeros", "sparsity", "size"};
  if (blocks) head.push_back("block");
  print_table(head, rows);
}

json::Json model_json(const ir::Graph& g, const std::vector<Layer>& ls, const std::filesystem::path& file) {
  std::map<std::string, int> ops;
  for (const auto& n : g.nodes) ++ops[n.op];
  std::int64_t params = 0, nz = 0, wbytes = 0;
  for (const auto& [_, t] : g.initializers) wbytes += static_cast<std::int64_t>(t.nbytes());
  for (const auto& l : ls) { params += l.params; nz += l.nonzeros; }
  json::Json j{{"kind", "model"}, {"file", file.string()}, {"file_bytes", std::filesystem::file_size(file)}, {"nodes", g.nodes.size()},
               {"ops", ops}, {"parameters", g.parameter_count()}, {"initializer_bytes", wbytes}, {"layer_params", params},
               {"layer_nonzeros", nz}, {"sparsity", params ? 1.0 - static_cast<double>(nz) / static_cast<double>(params) : 0.0}};
  for (const auto& in : g.inputs) j["inputs"].push_back({{"name", in.name}, {"shape", in.shape}, {"dtype", to_string(in.dtype)}});
  for (const auto& o : g.outputs) j["outputs"].push_back({{"name", o.name}, {"shape", o.shape}, {"dtype", to_string(o.dtype)}});
  j["layers"] = json::Json::array();
  for (const auto& l : ls) j["layers"].push_back(layer_json(l));
  return j;
}

int inspect_model(const std::filesystem::path& file, const Globals& g) {
  const ir::Graph graph = onnx_io::import_file(file);
  const auto ls = layers_of(graph);
  const auto j = model_json(graph, ls, file);
  if (g.json) {
    fmt::print("{}\n", j.dump(1));
    return kOk;
  }
  fmt::print("model {}: {} nodes, {} parameters, {} on disk, layer sparsity {:.1f} %\n", file.string(), graph.nodes.size(),
             graph.parameter_count(), human_bytes(static_cast<double>(j["file_bytes"].get<double>())), 100 * j["sparsity"].get<double>());
  for (const auto& in : graph.inputs) fmt::print("  input  {} {} {}\n", in.name, to_string(in.shape), to_string(in.dtype));
  for (const auto& o : graph.outputs) fmt::print("  output {} {} {}\n", o.name, to_string(o.shape), to_string(o.dtype));
  std::string ops;
  for (const auto& [op, n] : j["ops"].items()) ops += fmt::format(" {}x{}", op, n.get<int>());
  fmt::print("  ops:{}\n\n", ops);
  print_layers(ls);
  return kOk;
}

const char* repair_name(zoo::RepairKind k) {
  return k == zoo::RepairKind::bn_affine ? "bn_affine" : k == zoo::RepairKind::residual_map ? "residual_map" : "none";
}

int inspect_task(const std::filesystem::path& dir, const std::string& variant, const Globals& g) {
  const zoo::Manifest m = zoo::load_manifest(dir);
  json::Json j{{"kind", "zoo_task"}, {"task", m.task}, {"dir", dir.string()}, {"modality", m.modality}, {"dataset", m.dataset},
               {"base", m.base}, {"input", {{"name", m.input_name}, {"shape", m.input_shape}}}, {"test_count", m.test_count},
               {"measured_stitches", m.stitched_repair.size() + m.stitched_no_repair.size()}};
  for (const auto& b : m.blocks)
    j["blocks"].push_back({{"index", b.index}, {"input", b.input}, {"output", b.output}, {"macs", b.dense_macs}, {"repair", repair_name(b.repair.kind)}});
  for (const auto& v : m.variants)
    j["variants"].push_back({{"name", v.name}, {"file", v.file}, {"kind", v.kind}, {"sparsity", v.sparsity}, {"int8", v.int8},
                             {"accuracy_pct", v.accuracy_pct}, {"params", v.params}, {"nonzeros", v.nonzeros}, {"bytes", v.bytes},
                             {"macs", v.macs}, {"block_nonzeros", v.block_nonzeros},
                             {"block_files", v.block_files}});
  std::vector<Layer> ls;
  if (!variant.empty()) {
    const auto& v = m.variants.at(static_cast<std::size_t>(m.variant_index(variant)));
    const ir::Graph graph = onnx_io::import_file(dir / v.file);
    ls = layers_of(graph);
    // Which block each layer falls in: the partition at the manifest's cut points.
    std::vector<std::string> bounds{m.blocks.front().input};
    for (const auto& b : m.blocks) bounds.push_back(b.output);
    const auto parts = stitch::partition(graph, bounds);
    for (auto& l : ls)
      for (std::size_t b = 0; b < parts.size(); ++b)
        for (const auto& n : parts[b].nodes)
          if (n.name == l.node) l.block = static_cast<int>(b);
    j["variant"] = model_json(graph, ls, dir / v.file);
  }
  if (g.json) {
    fmt::print("{}\n", j.dump(1));
    return kOk;
  }
  fmt::print("zoo task {} ({}, {}): base '{}', input {} {}, {} test samples, {} measured stitches\n\n", m.task, m.modality, m.dataset,
             m.base, m.input_name, to_string(m.input_shape), m.test_count, j["measured_stitches"].get<std::size_t>());
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : m.blocks)
    rows.push_back({std::to_string(b.index), b.input + " -> " + b.output, std::to_string(b.dense_macs), repair_name(b.repair.kind)});
  print_table({"block", "cut tensors", "dense MACs", "repair"}, rows);
  fmt::print("\n");
  rows.clear();
  for (const auto& v : m.variants)
    rows.push_back({v.name, v.kind, fmt::format("{:.0f} %", 100 * v.sparsity), v.int8 ? "yes" : "no", fmt::format("{:.2f} %", v.accuracy_pct),
                    std::to_string(v.nonzeros), human_bytes(static_cast<double>(v.bytes)), v.block_files.empty() ? "no" : "yes"});
  print_table({"variant", "kind", "sparsity", "int8", "accuracy", "nonzeros", "size", "block files"}, rows);
  if (!ls.empty()) {
    fmt::print("\nvariant {}:\n", variant);
    print_layers(ls);
  }
  return kOk;
}

}  // namespace

void add_inspect(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("inspect", "Show a model (.onnx) or a zoo task directory: ops, blocks, sparsity per layer, size");
  struct Args {
    std::string path, variant;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("path", a->path, "an .onnx model or a zoo task directory (with manifest.json)")->required();
  sub->add_option("--variant", a->variant, "zoo task only: also list this variant's layers per block");
  sub->callback([a, &g] {
    g.action = [a, &g] {
      const std::filesystem::path p(a->path);
      check(std::filesystem::exists(p), ErrorCode::io, a->path, "no such file or directory");
      if (std::filesystem::is_directory(p)) return inspect_task(p, a->variant, g);
      check(a->variant.empty(), ErrorCode::invalid_argument, "--variant", "applies to a zoo task directory only");
      return inspect_model(p, g);
    };
  });
}

}  // namespace sparseloom::cli
