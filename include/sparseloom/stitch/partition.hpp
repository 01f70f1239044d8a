#pragma once
// Cuts a variant's graph into blocks at the task's common cut points. Every node must land in
// exactly one block and only the cut tensor may cross each cut; otherwise the zoo is not
// stitchable and we say which tensor breaks it.
#include <string>
#include <vector>

#include "sparseloom/ir/graph.hpp"

namespace sparseloom::stitch {

// boundaries = {graph input, cut0, cut1, ..., graph output}: block i maps boundaries[i] to
// boundaries[i+1].
inline std::vector<ir::Graph> partition(const ir::Graph& g, const std::vector<std::string>& boundaries) {
  check(boundaries.size() >= 2, ErrorCode::invalid_argument, g.source, "need at least an input and an output boundary");
  std::vector<ir::Graph> blocks;
  std::size_t nodes = 0;
  for (std::size_t i = 0; i + 1 < boundaries.size(); ++i) {
    check(g.values.count(boundaries[i + 1]) != 0, ErrorCode::parse, g.source,
          "cut tensor '" + boundaries[i + 1] + "' does not exist in this variant");
    blocks.push_back(ir::extract(g, {boundaries[i]}, {boundaries[i + 1]}));
    blocks.back().source = g.source + " block " + std::to_string(i);
    nodes += blocks.back().nodes.size();
  }
  check(nodes == g.nodes.size(), ErrorCode::parse, g.source,
        std::to_string(g.nodes.size() - nodes) + " node(s) lie outside every block: a tensor other than the cut crosses a cut point");
  return blocks;
}

}  // namespace sparseloom::stitch
