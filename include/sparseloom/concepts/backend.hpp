#pragma once
// The Backend concept: compile an ir::Graph (a whole model or one block) for a device once,
// then run the executable on tensors many times (oneDNN's describe / create / execute).
#include <concepts>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sparseloom/core/tensor.hpp"
#include "sparseloom/ir/graph.hpp"

namespace sparseloom {

// A per-channel affine epilogue y = y * scale[c] + shift[c] on one tensor (channel = dim 1).
// Stitch-time repair lives here: per stitch, a few KB, weights untouched.
struct ChannelAffine {
  std::vector<float> scale, shift;
};
using AffineMap = std::map<std::string, ChannelAffine>;

struct CompileOptions {
  int threads = 1;
};

struct RunOptions {
  const AffineMap* affine = nullptr;  // repairs, keyed by tensor name
  // Sees every tensor as it is produced (after its affine); used for repair statistics.
  std::function<void(const std::string&, const Tensor&)> observe;
};

template <class E>
concept Executable = requires(const E& e, std::span<const Tensor> in, const RunOptions& ro) {
  { e.run(in) } -> std::same_as<std::vector<Tensor>>;
  { e.run(in, ro) } -> std::same_as<std::vector<Tensor>>;
};

template <class B>
concept Backend = requires(const B& b, const ir::Graph& g, const CompileOptions& o) {
  typename B::Executable;
  requires Executable<typename B::Executable>;
  { B::name() } -> std::convertible_to<std::string_view>;
  { b.compile(g, o) } -> std::same_as<typename B::Executable>;
};

}  // namespace sparseloom
