#pragma once
// Whether two graphs compute the same thing: same boundary tensors, the same nodes in the same
// order (op, inputs, outputs, attributes) and byte-identical initializers. Node names are not
// compared (the importer names unnamed nodes by position). Used to check that a zoo's block file
// is exactly the block its variant's file partitions into.
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

#include "sparseloom/ir/graph.hpp"

namespace sparseloom::ir {

namespace detail {
inline bool same_tensor(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  return a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}
inline bool same_attribute(const Attribute& a, const Attribute& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, Tensor>) return same_tensor(x, y);
        else return x == y;
      },
      a);
}
// Same boundary names, and the same inferred shape and type for each.
inline bool same_values(const Graph& ga, const std::vector<ValueInfo>& a, const Graph& gb, const std::vector<ValueInfo>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name) return false;
    auto x = ga.values.find(a[i].name), y = gb.values.find(b[i].name);
    if ((x == ga.values.end()) != (y == gb.values.end())) return false;
    if (x != ga.values.end() && (x->second.shape != y->second.shape || x->second.dtype != y->second.dtype)) return false;
  }
  return true;
}
}  // namespace detail

// The first difference between a and b in words, or nullopt when they compute the same thing.
inline std::optional<std::string> first_difference(const Graph& a, const Graph& b) {
  if (!detail::same_values(a, a.inputs, b, b.inputs)) return "different graph inputs (names, shapes or types)";
  if (!detail::same_values(a, a.outputs, b, b.outputs)) return "different graph outputs (names, shapes or types)";
  if (a.nodes.size() != b.nodes.size())
    return std::to_string(a.nodes.size()) + " nodes where " + std::to_string(b.nodes.size()) + " were expected";
  for (std::size_t i = 0; i < a.nodes.size(); ++i) {
    const Node &x = a.nodes[i], &y = b.nodes[i];
    const std::string at = "node " + std::to_string(i) + " (" + x.where() + ")";
    if (x.op != y.op || x.inputs != y.inputs || x.outputs != y.outputs) return at + ": different op, inputs or outputs";
    if (x.attrs.size() != y.attrs.size()) return at + ": different attributes";
    for (const auto& [k, v] : x.attrs) {
      auto it = y.attrs.find(k);
      if (it == y.attrs.end() || !detail::same_attribute(v, it->second)) return at + ": attribute '" + k + "' differs";
    }
  }
  if (a.initializers.size() != b.initializers.size())
    return std::to_string(a.initializers.size()) + " initializers where " + std::to_string(b.initializers.size()) +
           " were expected";
  for (const auto& [name, t] : a.initializers) {
    auto it = b.initializers.find(name);
    if (it == b.initializers.end()) return "initializer '" + name + "' is not expected";
    if (!detail::same_tensor(t, it->second)) return "initializer '" + name + "' differs";
  }
  return std::nullopt;
}

}  // namespace sparseloom::ir
