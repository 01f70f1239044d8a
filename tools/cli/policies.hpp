#pragma once
// The policies the CLI can name (--policy): SparseLoom's optimizer, its ablations and the
// baselines. visit_policy calls f(name, policy) with a fresh instance of the named one.
#include <string>
#include <vector>

#include "sparseloom/baselines/baselines.hpp"
#include "sparseloom/core/error.hpp"
#include "sparseloom/optimizer/optimizer.hpp"

namespace sparseloom::cli {

inline const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> n{"sparseloom", "no-stitching", "sparsity-blind", "no-routing", "fixed", "band-sel", "band-heft", "band-lsf", "infaas"};
  return n;
}

template <class F>
decltype(auto) visit_policy(const std::string& name, F&& f) {
  if (name == "sparseloom") return f("SparseLoom", optimizer::SparsityAware{});
  if (name == "no-stitching") return f("SparseLoom-no-stitching", optimizer::SparsityAwareNoStitching{});
  if (name == "sparsity-blind") return f("SparseLoom-sparsity-blind", optimizer::SparsityAwareBlind{});
  if (name == "no-routing") return f("SparseLoom-no-routing", optimizer::SparsityAwareNoRouting{});
  if (name == "fixed") return f("Fixed", baselines::Fixed{});
  if (name == "band-sel") return f("Band-SEL", baselines::BandSEL{});
  if (name == "band-heft") return f("Band-HEFT", baselines::BandHEFT{});
  if (name == "band-lsf") return f("Band-LSF", baselines::BandLSF{});
  if (name == "infaas") return f("INFaaS-like", baselines::Infaas{});
  throw Error(ErrorCode::invalid_argument, "--policy", "unknown policy '" + name + "'");
}

}  // namespace sparseloom::cli
