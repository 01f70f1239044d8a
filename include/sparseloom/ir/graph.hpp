#pragma once
// The intermediate representation: a topologically ordered list of nodes over named tensors,
// with initializers (weights) held as Tensors. One Graph per model variant; blocks of a
// variant are sub-Graphs cut out of it (ir::extract).
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"

namespace sparseloom::ir {

using Attribute = std::variant<std::int64_t, float, std::string, std::vector<std::int64_t>,
                               std::vector<float>, Tensor>;

struct Node {
  std::string name;
  std::string op;  // ONNX op type, e.g. "Conv"
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;

  std::string where() const { return "node '" + name + "' (" + op + ")"; }

  bool has(const std::string& a) const { return attrs.count(a) != 0; }

  template <class T>
  T attr(const std::string& a, T fallback) const {
    auto it = attrs.find(a);
    if (it == attrs.end()) return fallback;
    const T* v = std::get_if<T>(&it->second);
    check(v != nullptr, ErrorCode::parse, where() + ": attribute '" + a + "'", "has the wrong type");
    return *v;
  }
  template <class T>
  T attr(const std::string& a) const {
    auto it = attrs.find(a);
    check(it != attrs.end(), ErrorCode::parse, where(), "missing required attribute '" + a + "'");
    const T* v = std::get_if<T>(&it->second);
    check(v != nullptr, ErrorCode::parse, where() + ": attribute '" + a + "'", "has the wrong type");
    return *v;
  }
  // Number of inputs actually given (optional trailing ones may be "" or absent).
  bool has_input(std::size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

struct ValueInfo {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
};

class Graph {
 public:
  std::string source;  // file or description, used in error messages
  std::vector<Node> nodes;  // topological order
  std::map<std::string, Tensor> initializers;
  std::vector<ValueInfo> inputs;   // graph inputs that are not initializers
  std::vector<ValueInfo> outputs;
  std::map<std::string, ValueInfo> values;  // every tensor's inferred shape and dtype

  bool is_initializer(const std::string& n) const { return initializers.count(n) != 0; }

  const ValueInfo& value(const std::string& n) const {
    auto it = values.find(n);
    check(it != values.end(), ErrorCode::shape, source, "no shape known for tensor '" + n + "'");
    return it->second;
  }

  const Node* producer(const std::string& tensor) const {
    for (const auto& n : nodes)
      for (const auto& o : n.outputs)
        if (o == tensor) return &n;
    return nullptr;
  }

  std::int64_t parameter_count() const {
    std::int64_t n = 0;
    for (const auto& [_, t] : initializers) n += t.numel();
    return n;
  }
};

// The sub-graph that computes `outputs` from `inputs` (tensor names of `g`). Every node needed
// must be reachable from `inputs` and initializers only; otherwise a tensor crosses the cut
// and the cut is invalid (a clear error naming it).
inline Graph extract(const Graph& g, const std::vector<std::string>& inputs,
                     const std::vector<std::string>& outputs) {
  std::set<std::string> available(inputs.begin(), inputs.end());
  std::set<std::string> needed(outputs.begin(), outputs.end());
  std::vector<bool> keep(g.nodes.size(), false);
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool produces_needed = false;
    for (const auto& o : n.outputs) produces_needed |= needed.count(o) != 0;
    if (!produces_needed) continue;
    bool produces_input = false;
    for (const auto& o : n.outputs) produces_input |= available.count(o) != 0;
    if (produces_input) continue;  // the cut stops here
    keep[i] = true;
    for (const auto& in : n.inputs)
      if (!in.empty() && !available.count(in) && !g.is_initializer(in)) needed.insert(in);
  }
  Graph sub;
  sub.source = g.source + "[" + (inputs.empty() ? std::string() : inputs.front()) + " -> " +
               (outputs.empty() ? std::string() : outputs.front()) + "]";
  std::set<std::string> produced(inputs.begin(), inputs.end());
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (!keep[i]) continue;
    const Node& n = g.nodes[i];
    for (const auto& in : n.inputs) {
      if (in.empty()) continue;
      if (auto it = g.initializers.find(in); it != g.initializers.end()) {
        sub.initializers.emplace(in, it->second);
      } else {
        check(produced.count(in) != 0, ErrorCode::shape, g.source,
              "tensor '" + in + "' used by " + n.where() +
                  " crosses the cut: it is not produced inside the block nor a block input");
      }
    }
    for (const auto& o : n.outputs) produced.insert(o);
    sub.nodes.push_back(n);
  }
  for (const auto& in : inputs) sub.inputs.push_back(g.value(in));
  for (const auto& out : outputs) {
    check(produced.count(out) != 0, ErrorCode::shape, g.source,
          "output '" + out + "' is not computed from the given inputs");
    sub.outputs.push_back(g.value(out));
  }
  for (const auto& [name, vi] : g.values)
    if (produced.count(name)) sub.values.emplace(name, vi);
  return sub;
}

}  // namespace sparseloom::ir
