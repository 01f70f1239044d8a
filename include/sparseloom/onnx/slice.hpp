#pragma once
// Cuts one variant's ONNX model into one model per block at the task's cut points (the zoo's
// block files, docs/zoo.md), so that loading a block reads and parses that block's weights
// only, not the whole variant. The cut follows data flow (the nodes that compute boundary i+1
// from boundary i), not naming rules, so any variant that stitch::partition accepts can be cut.
// Needs the sparseloom::onnx target (protobuf + Debian's onnx_proto).
#include <onnx/onnx_pb.h>

#include <set>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/ir/graph.hpp"

namespace sparseloom::onnx_io {

namespace detail {
inline int onnx_elem_type(DType t) {
  switch (t) {
    case DType::f32: return ::onnx::TensorProto::FLOAT;
    case DType::u8: return ::onnx::TensorProto::UINT8;
    case DType::i8: return ::onnx::TensorProto::INT8;
    case DType::i16: return ::onnx::TensorProto::INT16;
    case DType::i32: return ::onnx::TensorProto::INT32;
    case DType::i64: return ::onnx::TensorProto::INT64;
  }
  return ::onnx::TensorProto::UNDEFINED;
}
inline void set_value_info(::onnx::ValueInfoProto* vi, const ir::ValueInfo& v) {
  vi->set_name(v.name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx_elem_type(v.dtype));
  for (auto d : v.shape) tt->mutable_shape()->add_dim()->set_dim_value(d);
}
}  // namespace detail

// One ModelProto per block of `m`: block i maps boundaries[i] to boundaries[i+1] (boundaries =
// {input, cut0, .., output}). `shapes` is `m` as imported (ir), for the boundary tensors' types.
// A node reading a tensor of another block other than the cut is an error naming it.
inline std::vector<::onnx::ModelProto> slice_blocks(const ::onnx::ModelProto& m, const std::vector<std::string>& boundaries,
                                                    const ir::Graph& shapes, const std::string& source) {
  check(boundaries.size() >= 2, ErrorCode::invalid_argument, source, "need at least an input and an output boundary");
  const auto& g = m.graph();
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) inits.insert(t.name());
  std::vector<::onnx::ModelProto> out;
  for (std::size_t b = 0; b + 1 < boundaries.size(); ++b) {
    const std::string& in = boundaries[b];
    const std::string& to = boundaries[b + 1];
    const std::string where = source + " block " + std::to_string(b);
    // Walk back from the block's output to its input: the nodes it needs, in file order.
    std::set<std::string> needed{to};
    std::vector<bool> keep(static_cast<std::size_t>(g.node_size()), false);
    for (int i = g.node_size(); i-- > 0;) {
      const auto& n = g.node(i);
      bool wanted = false, produces_input = false;
      for (const auto& o : n.output()) {
        wanted |= needed.count(o) != 0;
        produces_input |= o == in;
      }
      if (!wanted || produces_input) continue;
      for (const auto& a : n.attribute())
        check(a.type() != ::onnx::AttributeProto::GRAPH && a.type() != ::onnx::AttributeProto::GRAPHS, ErrorCode::unsupported,
              where + ": node '" + n.name() + "' (" + n.op_type() + ")", "sub-graph attributes cannot be cut into blocks");
      keep[static_cast<std::size_t>(i)] = true;
      for (const auto& x : n.input())
        if (!x.empty() && x != in && !inits.count(x)) needed.insert(x);
    }
    ::onnx::ModelProto bm;
    bm.set_ir_version(m.ir_version());
    *bm.mutable_opset_import() = m.opset_import();
    bm.set_producer_name("sparseloom slice_blocks");
    bm.set_doc_string(where);
    auto* bg = bm.mutable_graph();
    bg->set_name(g.name() + "_b" + std::to_string(b));
    std::set<std::string> produced{in}, used_inits;
    for (int i = 0; i < g.node_size(); ++i) {
      if (!keep[static_cast<std::size_t>(i)]) continue;
      const auto& n = g.node(i);
      for (const auto& x : n.input()) {
        if (x.empty()) continue;
        if (inits.count(x)) {
          used_inits.insert(x);
          continue;
        }
        check(produced.count(x) != 0, ErrorCode::parse, where + ": node '" + n.name() + "' (" + n.op_type() + ")",
              "reads '" + x + "', which crosses the cut: it is neither produced in the block nor its input '" + in + "'");
      }
      for (const auto& o : n.output()) produced.insert(o);
      *bg->add_node() = n;
    }
    check(produced.count(to) != 0 && to != in, ErrorCode::parse, where, "does not produce its output '" + to + "'");
    for (const auto& t : g.initializer())
      if (used_inits.count(t.name())) *bg->add_initializer() = t;
    detail::set_value_info(bg->add_input(), shapes.value(in));
    detail::set_value_info(bg->add_output(), shapes.value(to));
    out.push_back(std::move(bm));
  }
  return out;
}

}  // namespace sparseloom::onnx_io
