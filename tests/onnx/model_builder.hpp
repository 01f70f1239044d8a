#pragma once
// Builds small ONNX models in C++ for tests, so error cases need no files or Python.
#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

namespace sparseloom::testing {

struct ModelBuilder {
  ::onnx::ModelProto m;
  ::onnx::GraphProto* g;

  explicit ModelBuilder(int opset = 13) {
    m.set_ir_version(8);
    auto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g = m.mutable_graph();
    g->set_name("test");
  }
  ModelBuilder& input(const std::string& name, const std::vector<long>& shape) {
    auto* vi = g->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(::onnx::TensorProto::FLOAT);
    for (long d : shape) tt->mutable_shape()->add_dim()->set_dim_value(d);
    return *this;
  }
  ModelBuilder& output(const std::string& name) {
    g->add_output()->set_name(name);
    return *this;
  }
  ModelBuilder& weight(const std::string& name, const std::vector<long>& shape, float value = 0.5f) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(::onnx::TensorProto::FLOAT);
    long n = 1;
    for (long d : shape) { t->add_dims(d); n *= d; }
    std::vector<float> v(static_cast<std::size_t>(n), value);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    return *this;
  }
  ::onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                          const std::string& name = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + std::to_string(g->node_size()) : name);
    for (const auto& i : in) n->add_input(i);
    for (const auto& o : out) n->add_output(o);
    return *n;
  }
  std::string bytes() const { return m.SerializeAsString(); }
};

inline void add_ints(::onnx::NodeProto& n, const std::string& name, const std::vector<long>& v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INTS);
  for (long x : v) a->add_ints(x);
}

}  // namespace sparseloom::testing
