#pragma once
// Stitched variant -> one ONNX file that ONNX Runtime runs with the outputs StitchedModel
// computes. Block i's nodes and initializers are copied from variant choice[i]'s ONNX, found by
// the zoo's naming contract (docs/zoo.md): names prefixed `b<i>.`, the cut `cut<i>` (produced by
// block i), `repair<i>`, and a cut's activation Q/DQ `<cut>_qdq.*` (owned by the block reading
// the cut). Every copied node is checked to read only its own block, so a variant that breaks
// the contract is rejected, not silently mis-stitched. The repair is written as the C++
// executes it (stitch::repair_block): bn_affine as Mul/Add by [1,C,1,..] constants on the
// repair tensor, residual_map as MatMul + Add on the cut entering the block. New names carry the
// block's `b<i>.` prefix, so the exported model still meets the contract.
// Needs the sparseloom::onnx target (protobuf + Debian's onnx_proto).
#include <onnx/onnx_pb.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/onnx/import.hpp"
#include "sparseloom/stitch/stitched_model.hpp"
#include "sparseloom/zoo/task_zoo.hpp"

namespace sparseloom::onnx_io {

struct ExportSummary {
  std::size_t nodes = 0, initializers = 0;
  int affine_repairs = 0;  // bn_affine epilogues written
  int residual_maps = 0;   // adapters written
};

namespace detail {

// Which block owns a tensor or initializer name under the zoo contract; nullopt when the name
// follows none of its rules. boundaries = {input, cut0, .., output}; boundary k feeds block k.
inline std::optional<int> owner_block(const std::string& name, const std::vector<std::string>& boundaries) {
  auto number_after = [&](std::size_t pos, std::size_t& end) -> std::optional<int> {
    end = pos;
    while (end < name.size() && end - pos < 6 && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end == pos) return std::nullopt;
    return std::stoi(name.substr(pos, end - pos));
  };
  std::size_t end = 0;
  if (name.size() > 1 && name[0] == 'b')
    if (auto n = number_after(1, end); n && end < name.size() && name[end] == '.') return n;
  if (name.rfind("repair", 0) == 0)
    if (auto n = number_after(6, end); n && end == name.size()) return n;
  for (std::size_t k = 0; k < boundaries.size(); ++k) {
    if (k > 0 && name == boundaries[k]) return static_cast<int>(k) - 1;
    if (k + 1 < boundaries.size() && name.rfind(boundaries[k] + "_qdq.", 0) == 0) return static_cast<int>(k);
  }
  return std::nullopt;
}

inline ::onnx::TensorProto float_tensor(const std::string& name, const Shape& shape, const float* data) {
  ::onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(::onnx::TensorProto::FLOAT);
  for (auto d : shape) t.add_dims(d);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(numel_of(shape)) * sizeof(float)));
  return t;
}

inline ::onnx::NodeProto binary_node(const std::string& op, const std::string& name, const std::string& a,
                                     const std::string& b, const std::string& out) {
  ::onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  n.add_input(a);
  n.add_input(b);
  n.add_output(out);
  return n;
}

// One block of one variant's ModelProto, checked against the contract.
struct BlockPart {
  std::vector<const ::onnx::NodeProto*> nodes;
  std::vector<const ::onnx::TensorProto*> initializers;
  std::vector<const ::onnx::ValueInfoProto*> value_info;
};

inline std::vector<BlockPart> split_blocks(const ::onnx::ModelProto& m, const std::vector<std::string>& boundaries,
                                           const std::string& source) {
  const int nb = static_cast<int>(boundaries.size()) - 1;
  std::vector<BlockPart> parts(static_cast<std::size_t>(nb));
  auto owner = [&](const std::string& name, const std::string& what) {
    const auto b = owner_block(name, boundaries);
    check(b && *b >= 0 && *b < nb, ErrorCode::parse, source + ": " + what + " '" + name + "'",
          "name follows no rule of the zoo naming contract (b<i>.*, cut<i>, repair<i>, <cut>_qdq.*), so its block is unknown");
    return *b;
  };
  const auto& g = m.graph();
  std::map<std::string, int> init_block, produced_in;
  for (const auto& t : g.initializer()) {
    const int b = owner(t.name(), "initializer");
    init_block[t.name()] = b;
    parts[b].initializers.push_back(&t);
  }
  for (const auto& n : g.node()) {
    const std::string where = source + ": node '" + n.name() + "' (" + n.op_type() + ")";
    check(n.output_size() > 0, ErrorCode::parse, where, "node without outputs");
    const int b = owner(n.output(0), "tensor");
    for (const auto& o : n.output())
      check(owner(o, "tensor") == b, ErrorCode::parse, where, "outputs belong to different blocks");
    // The contract says only the cut crosses a cut: a node reading another block's tensor
    // would dangle once its block is taken from another variant.
    for (const auto& in : n.input()) {
      if (in.empty() || in == boundaries[b]) continue;
      auto pi = produced_in.find(in);
      auto ii = init_block.find(in);
      const bool own = (pi != produced_in.end() && pi->second == b) || (ii != init_block.end() && ii->second == b);
      check(own, ErrorCode::parse, where,
            "reads '" + in + "', which is not produced inside block " + std::to_string(b) + " nor its input '" +
                boundaries[b] + "': the variant breaks the one-tensor-per-cut contract");
    }
    for (const auto& o : n.output()) produced_in[o] = b;
    parts[b].nodes.push_back(&n);
  }
  for (int b = 0; b < nb; ++b)
    check(produced_in.count(boundaries[b + 1]) && produced_in[boundaries[b + 1]] == b, ErrorCode::parse, source,
          "block " + std::to_string(b) + " does not produce its output '" + boundaries[b + 1] + "'");
  for (const auto& vi : g.value_info())
    if (auto b = owner_block(vi.name(), boundaries); b && *b >= 0 && *b < nb) parts[*b].value_info.push_back(&vi);
  return parts;
}

inline ::onnx::ModelProto load_model_proto(const std::filesystem::path& path) {
  return parse_model(read_file(path, ImportOptions{}.max_file_bytes), path.string());
}

inline std::int64_t default_opset(const ::onnx::ModelProto& m) {
  for (const auto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
  return -1;
}

}  // namespace detail

// The stitched (and, with `repair`, repaired) variant `s` of task `z` as one ModelProto. The
// repair must be the one StitchedModel::repair computed for `s` (nullptr: no repair).
inline ::onnx::ModelProto stitched_model_proto(const zoo::TaskZoo& z, const StitchedVariant& s,
                                               const stitch::StitchRepair* repair, ExportSummary* summary = nullptr) {
  const auto& m = z.manifest;
  const int nb = z.num_blocks();
  const std::string task = m.task.empty() ? std::string("task") : m.task;
  check(nb >= 1 && s.choice.size() == static_cast<std::size_t>(nb), ErrorCode::invalid_argument, task,
        "stitch has " + std::to_string(s.choice.size()) + " blocks, the task " + std::to_string(nb));
  for (int b = 0; b < nb; ++b)
    check(s.choice[b] >= 0 && s.choice[b] < z.num_variants(), ErrorCode::invalid_argument, task,
          "block " + std::to_string(b) + ": variant index " + std::to_string(s.choice[b]) + " out of range [0, " +
              std::to_string(z.num_variants()) + ")");
  if (repair)
    check(repair->affine.size() == static_cast<std::size_t>(nb) && repair->pre_map.size() == static_cast<std::size_t>(nb),
          ErrorCode::invalid_argument, task, "repair was computed for a different number of blocks");
  const auto boundaries = zoo::block_boundaries(m);

  // Each source variant is read and split once.
  std::map<int, ::onnx::ModelProto> protos;
  std::map<int, std::vector<detail::BlockPart>> parts;
  for (int v : s.choice) {
    if (protos.count(v)) continue;
    const auto path = m.dir / m.variants[v].file;
    protos[v] = detail::load_model_proto(path);
    parts[v] = detail::split_blocks(protos[v], boundaries, path.string());
  }
  const auto& first = protos.at(s.choice.front());
  for (const auto& [v, p] : protos) {
    const std::string where = (m.dir / m.variants[v].file).string();
    check(p.ir_version() == first.ir_version(), ErrorCode::unsupported, where,
          "IR version " + std::to_string(p.ir_version()) + " differs from the stitch's first block's " +
              std::to_string(first.ir_version()));
    check(detail::default_opset(p) == detail::default_opset(first), ErrorCode::unsupported, where,
          "opset " + std::to_string(detail::default_opset(p)) + " differs from the stitch's first block's " +
              std::to_string(detail::default_opset(first)));
  }

  ::onnx::ModelProto out;
  out.set_ir_version(first.ir_version());
  *out.mutable_opset_import() = first.opset_import();
  out.set_producer_name("sparseloom-export");
  std::string names;
  for (int b = 0; b < nb; ++b) names += (b ? "," : "") + m.variants[s.choice[b]].name;
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"sparseloom.task", m.task}, {"sparseloom.stitch", names}, {"sparseloom.repair", repair ? "on" : "off"}}) {
    auto* p = out.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  auto* g = out.mutable_graph();
  g->set_name(task + " stitch " + names);
  for (const auto& in : first.graph().input()) {
    bool is_init = false;
    for (const auto& t : first.graph().initializer()) is_init = is_init || t.name() == in.name();
    if (!is_init) *g->add_input() = in;
  }
  *g->mutable_output() = protos.at(s.choice.back()).graph().output();

  ExportSummary sum;
  for (int b = 0; b < nb; ++b) {
    const int v = s.choice[b];
    const auto& part = parts.at(v)[b];
    const std::string pre = "b" + std::to_string(b) + ".stitch_";
    const std::string where = task + " block " + std::to_string(b) + " (" + m.variants[v].name + ")";
    for (const auto* t : part.initializers) *g->add_initializer() = *t;
    for (const auto* vi : part.value_info) *g->add_value_info() = *vi;

    // residual_map: x' = x @ W + b on the cut entering this block; the block reads x'.
    std::string block_input = boundaries[b];
    if (repair && repair->pre_map[b]) {
      const auto& rm = *repair->pre_map[b];
      const Tensor w = rm.w.contiguous(), bias = rm.b.contiguous();
      check(w.dtype() == DType::f32 && bias.dtype() == DType::f32 && w.rank() == 2 && bias.numel() == w.dim(1),
            ErrorCode::shape, where, "residual map must be an f32 (d, d) matrix with a (d,) bias");
      *g->add_initializer() = detail::float_tensor(pre + "map.W", w.shape(), w.data<float>());
      *g->add_initializer() = detail::float_tensor(pre + "map.b", {bias.numel()}, bias.data<float>());
      *g->add_node() = detail::binary_node("MatMul", pre + "map.MatMul", block_input, pre + "map.W", pre + "map.xw");
      *g->add_node() = detail::binary_node("Add", pre + "map.Add", pre + "map.xw", pre + "map.b", pre + "map.out");
      block_input = pre + "map.out";
      ++sum.residual_maps;
    }
    // bn_affine: the named tensor's producer writes a new name; Mul/Add restore the original
    // name, so every consumer sees the repaired value, as under RunOptions::affine.
    std::map<std::string, const ChannelAffine*> affine;
    if (repair)
      for (const auto& [tensor, a] : repair->affine[b]) affine[tensor] = &a;
    std::set<std::string> applied;
    for (const auto* np : part.nodes) {
      ::onnx::NodeProto n = *np;
      std::vector<::onnx::NodeProto> after;
      for (auto& in : *n.mutable_input())
        if (in == boundaries[b]) in = block_input;
      for (auto& o : *n.mutable_output()) {
        auto it = affine.find(o);
        if (it == affine.end()) continue;
        const ChannelAffine& a = *it->second;
        const auto& vals = z.blocks[b][v].values;
        auto vi = vals.find(o);
        check(vi != vals.end() && vi->second.shape.size() >= 2, ErrorCode::shape, where,
              "repair tensor '" + o + "' has no N x C x ... shape in the imported block");
        const auto c = vi->second.shape[1];
        check(static_cast<std::int64_t>(a.scale.size()) == c && a.shift.size() == a.scale.size(), ErrorCode::shape, where,
              "repair of '" + o + "' has " + std::to_string(a.scale.size()) + " channels, the tensor " + std::to_string(c));
        Shape cs(vi->second.shape.size(), 1);
        cs[1] = c;
        const std::string p = pre + "affine." + o;
        *g->add_initializer() = detail::float_tensor(p + ".scale", cs, a.scale.data());
        *g->add_initializer() = detail::float_tensor(p + ".shift", cs, a.shift.data());
        after.push_back(detail::binary_node("Mul", p + ".Mul", p + ".in", p + ".scale", p + ".scaled"));
        after.push_back(detail::binary_node("Add", p + ".Add", p + ".scaled", p + ".shift", o));
        applied.insert(o);
        o = p + ".in";
        ++sum.affine_repairs;
      }
      // The producer first, then its Mul/Add: the graph stays in topological order.
      *g->add_node() = std::move(n);
      for (auto& a : after) *g->add_node() = std::move(a);
    }
    for (const auto& [tensor, a] : affine) {
      (void)a;
      check(applied.count(tensor), ErrorCode::parse, where,
            "repair tensor '" + tensor + "' is not produced by this block's nodes");
    }
  }
  sum.nodes = static_cast<std::size_t>(g->node_size());
  sum.initializers = static_cast<std::size_t>(g->initializer_size());
  if (summary) *summary = sum;
  return out;
}

// Writes the stitched variant as one ONNX file (see stitched_model_proto).
inline ExportSummary export_stitched(const zoo::TaskZoo& z, const StitchedVariant& s, const stitch::StitchRepair* repair,
                                     const std::filesystem::path& path) {
  ExportSummary sum;
  const auto model = stitched_model_proto(z, s, repair, &sum);
  std::string bytes;
  check(model.SerializeToString(&bytes), ErrorCode::internal, path.string(), "protobuf serialisation failed");
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  check(f.good(), ErrorCode::io, path.string(), "cannot open for writing");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  check(f.good(), ErrorCode::io, path.string(), "write failed");
  return sum;
}

}  // namespace sparseloom::onnx_io
