#pragma once
// ONNX -> ir::Graph. Every read is bounded and checked: a malformed, truncated or hostile file
// gives a sparseloom::Error naming the file, node and field, never a crash or an abort.
// Needs the sparseloom::onnx target (protobuf + Debian's onnx_proto).
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/infer.hpp"
#include "sparseloom/ir/passes.hpp"

namespace sparseloom::onnx_io {

struct ImportOptions {
  // Fixed shapes for graph inputs; symbolic dims of inputs not listed here take `symbolic_dim`.
  std::map<std::string, Shape> input_shapes;
  std::int64_t symbolic_dim = 1;
  bool fold_batchnorm = true;
  std::size_t max_file_bytes = std::size_t{2} << 30;
  // Largest tensor any node may produce; a model asking for more is rejected at import
  // rather than failing an allocation mid-request.
  std::size_t max_tensor_bytes = std::size_t{4} << 30;
};

// The opsets we implement the default-domain semantics of.
inline constexpr std::int64_t kMinOpset = 11;
inline constexpr std::int64_t kMaxOpset = 18;

namespace detail {

inline DType dtype_from_onnx(int t, const std::string& where) {
  switch (t) {
    case ::onnx::TensorProto::FLOAT: return DType::f32;
    case ::onnx::TensorProto::UINT8: return DType::u8;
    case ::onnx::TensorProto::INT8: return DType::i8;
    case ::onnx::TensorProto::INT16: return DType::i16;
    case ::onnx::TensorProto::INT32: return DType::i32;
    case ::onnx::TensorProto::INT64: return DType::i64;
    default:
      throw Error(ErrorCode::unsupported, where,
                  "tensor element type " + std::to_string(t) + " (supported: float, uint8, int8, int32, int64)");
  }
}

inline Tensor tensor_from_proto(const ::onnx::TensorProto& p, const std::string& where) {
  check(p.data_location() != ::onnx::TensorProto::EXTERNAL, ErrorCode::unsupported, where,
        "external tensor data (save the model with all tensors inside the .onnx file)");
  const DType dt = dtype_from_onnx(p.data_type(), where);
  Shape shape(p.dims().begin(), p.dims().end());
  const auto n = numel_of(shape, where);
  const std::size_t bytes = static_cast<std::size_t>(n) * size_of(dt);
  // Sizes are checked against the data actually present before anything is allocated.
  if (p.has_raw_data()) {
    check(p.raw_data().size() == bytes, ErrorCode::parse, where,
          "raw_data holds " + std::to_string(p.raw_data().size()) + " bytes, shape " +
              to_string(shape) + " of " + std::string(to_string(dt)) + " needs " + std::to_string(bytes));
    Tensor t = Tensor::empty(shape, dt);
    if (bytes) std::memcpy(t.raw(), p.raw_data().data(), bytes);  // little-endian hosts only
    return t;
  }
  const int present = dt == DType::f32 ? p.float_data_size() : dt == DType::i64 ? p.int64_data_size() : p.int32_data_size();
  check(present == n, ErrorCode::parse, where,
        "holds " + std::to_string(present) + " values, shape " + to_string(shape) + " needs " + std::to_string(n));
  Tensor t = Tensor::empty(shape, dt);
  auto fill = [&](const auto& field, auto cast) {
    for (std::int64_t i = 0; i < n; ++i) cast(i, field.Get(static_cast<int>(i)));
  };
  switch (dt) {
    case DType::f32: fill(p.float_data(), [&](auto i, float v) { t.data<float>()[i] = v; }); break;
    case DType::i64: fill(p.int64_data(), [&](auto i, std::int64_t v) { t.data<std::int64_t>()[i] = v; }); break;
    case DType::i32: fill(p.int32_data(), [&](auto i, std::int32_t v) { t.data<std::int32_t>()[i] = v; }); break;
    case DType::i8: fill(p.int32_data(), [&](auto i, std::int32_t v) { t.data<std::int8_t>()[i] = static_cast<std::int8_t>(v); }); break;
    case DType::u8: fill(p.int32_data(), [&](auto i, std::int32_t v) { t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(v); }); break;
    case DType::i16: fill(p.int32_data(), [&](auto i, std::int32_t v) { t.data<std::int16_t>()[i] = static_cast<std::int16_t>(v); }); break;
  }
  return t;
}

inline ir::Attribute attribute_from_proto(const ::onnx::AttributeProto& a, const std::string& where) {
  using A = ::onnx::AttributeProto;
  switch (a.type()) {
    case A::INT: return std::int64_t{a.i()};
    case A::FLOAT: return a.f();
    case A::STRING: return a.s();
    case A::INTS: return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
    case A::FLOATS: return std::vector<float>(a.floats().begin(), a.floats().end());
    case A::TENSOR: return tensor_from_proto(a.t(), where);
    default:
      throw Error(ErrorCode::unsupported, where, "attribute type " + std::to_string(a.type()));
  }
}

inline std::string read_file(const std::filesystem::path& path, std::size_t limit) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  check(!ec, ErrorCode::io, path.string(), "cannot open: " + ec.message());
  check(size <= limit, ErrorCode::io, path.string(), "file is larger than the " + std::to_string(limit) + "-byte limit");
  std::ifstream f(path, std::ios::binary);
  check(f.good(), ErrorCode::io, path.string(), "cannot open for reading");
  std::string bytes(size, '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(size));
  check(static_cast<std::size_t>(f.gcount()) == size, ErrorCode::io, path.string(), "short read");
  return bytes;
}

// ONNX bytes as a ModelProto that has a graph; `source` names the bytes in errors.
inline ::onnx::ModelProto parse_model(std::string_view bytes, const std::string& source) {
  ::onnx::ModelProto model;
  check(bytes.size() <= static_cast<std::size_t>(INT32_MAX), ErrorCode::parse, source, "model larger than 2 GiB");
  check(model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())), ErrorCode::parse, source,
        "not a valid ONNX model (truncated or corrupt protobuf)");
  check(model.has_graph(), ErrorCode::parse, source, "model has no graph");
  return model;
}

}  // namespace detail

// A parsed model (detail::parse_model) as a Graph with inferred shapes, folded shape
// computations and (by default) BatchNormalization folded into the preceding Conv.
inline ir::Graph import_model(const ::onnx::ModelProto& model, const std::string& source, const ImportOptions& opt = {}) {
  std::int64_t opset = -1;
  for (const auto& o : model.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  check(opset >= 0, ErrorCode::parse, source, "no default-domain opset_import");
  check(opset >= kMinOpset && opset <= kMaxOpset, ErrorCode::unsupported, source,
        "opset " + std::to_string(opset) + " (supported: " + std::to_string(kMinOpset) + " to " +
            std::to_string(kMaxOpset) + ")");

  const auto& gp = model.graph();
  ir::Graph g;
  g.source = source;
  for (const auto& init : gp.initializer()) {
    const std::string where = source + ": initializer '" + init.name() + "'";
    check(!init.name().empty(), ErrorCode::parse, where, "initializer without a name");
    g.initializers[init.name()] = detail::tensor_from_proto(init, where);
    g.values[init.name()] = {init.name(), g.initializers[init.name()].shape(), g.initializers[init.name()].dtype()};
  }
  for (const auto& vi : gp.input()) {
    if (g.is_initializer(vi.name())) continue;
    const std::string where = source + ": graph input '" + vi.name() + "'";
    check(vi.type().has_tensor_type(), ErrorCode::unsupported, where, "input is not a tensor");
    const auto& tt = vi.type().tensor_type();
    ir::ValueInfo v{vi.name(), {}, detail::dtype_from_onnx(tt.elem_type(), where)};
    if (auto it = opt.input_shapes.find(vi.name()); it != opt.input_shapes.end()) {
      v.shape = it->second;
      check(!tt.has_shape() || tt.shape().dim_size() == static_cast<int>(v.shape.size()), ErrorCode::shape, where,
            "given shape " + to_string(v.shape) + " has a different rank than the model's");
    } else {
      check(tt.has_shape(), ErrorCode::shape, where, "input has no shape; pass it in ImportOptions::input_shapes");
      for (const auto& d : tt.shape().dim()) {
        v.shape.push_back(d.has_dim_value() ? d.dim_value() : opt.symbolic_dim);
      }
    }
    numel_of(v.shape, where);
    g.values[v.name] = v;
    g.inputs.push_back(v);
  }
  check(!g.inputs.empty(), ErrorCode::parse, source, "graph has no non-constant input");

  std::set<std::string> produced;
  for (const auto& v : g.values) produced.insert(v.first);
  int index = 0;
  for (const auto& np : gp.node()) {
    ir::Node n;
    n.name = np.name().empty() ? np.op_type() + "_" + std::to_string(index) : np.name();
    n.op = np.op_type();
    ++index;
    const std::string where = source + ": " + n.where();
    check(np.domain().empty() || np.domain() == "ai.onnx" ||
              (np.domain() == "com.microsoft" && n.op == "Gelu"),
          ErrorCode::unsupported, where, "operator domain '" + np.domain() + "'");
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute())
      n.attrs[a.name()] = detail::attribute_from_proto(a, where + ": attribute '" + a.name() + "'");
    if (n.op == "Constant") {
      check(n.outputs.size() == 1 && n.has("value"), ErrorCode::unsupported, where,
            "only Constant with a tensor 'value' is supported");
      Tensor t = n.attr<Tensor>("value");
      g.initializers[n.outputs[0]] = t;
      g.values[n.outputs[0]] = {n.outputs[0], t.shape(), t.dtype()};
      produced.insert(n.outputs[0]);
      continue;
    }
    check(ir::supported_ops().count(n.op) != 0, ErrorCode::unsupported, where,
          "op '" + n.op + "' is not supported by SparseLoom");
    for (const auto& in : n.inputs)
      check(in.empty() || produced.count(in), ErrorCode::parse, where,
            "input '" + in + "' is not a graph input, an initializer or the output of an earlier node "
            "(missing initializer or nodes out of topological order)");
    for (const auto& o : n.outputs) {
      check(!o.empty(), ErrorCode::parse, where, "empty output name");
      check(!produced.count(o), ErrorCode::parse, where, "tensor '" + o + "' is produced twice");
      produced.insert(o);
    }
    g.nodes.push_back(std::move(n));
  }
  for (const auto& o : gp.output()) {
    check(produced.count(o.name()), ErrorCode::parse, source, "graph output '" + o.name() + "' is never produced");
    g.outputs.push_back({o.name(), {}, DType::f32});
  }
  check(!g.outputs.empty(), ErrorCode::parse, source, "graph has no outputs");
  ir::infer_shapes(g);
  for (const auto& [name, v] : g.values)
    check(static_cast<std::size_t>(numel_of(v.shape)) * size_of(v.dtype) <= opt.max_tensor_bytes, ErrorCode::shape,
          source + ": tensor '" + name + "'", "shape " + to_string(v.shape) + " exceeds the " +
          std::to_string(opt.max_tensor_bytes) + "-byte tensor limit");
  if (opt.fold_batchnorm) ir::fold_batchnorm(g);
  return g;
}

// Parses ONNX bytes into a Graph (import_model). `source` names the bytes in errors.
inline ir::Graph import_bytes(std::string_view bytes, const std::string& source, const ImportOptions& opt = {}) {
  return import_model(detail::parse_model(bytes, source), source, opt);
}

inline ir::Graph import_file(const std::filesystem::path& path, const ImportOptions& opt = {}) {
  const std::string bytes = detail::read_file(path, opt.max_file_bytes);
  return import_bytes(bytes, path.string(), opt);
}

}  // namespace sparseloom::onnx_io
