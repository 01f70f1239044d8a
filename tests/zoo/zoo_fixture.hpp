#pragma once
// Shared by the zoo tests: where the committed zoo is, and stitches named by variant.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "sparseloom/core/types.hpp"
#include "sparseloom/zoo/manifest.hpp"

namespace zoo_test {

inline std::filesystem::path zoo_dir() {
  if (const char* e = std::getenv("SPARSELOOM_ZOO")) return e;
  return SPARSELOOM_ZOO_DIR;
}

inline sparseloom::StitchedVariant by_names(const sparseloom::zoo::Manifest& m, const std::vector<std::string>& names) {
  sparseloom::StitchedVariant s;
  for (const auto& n : names) s.choice.push_back(m.variant_index(n));
  return s;
}

}  // namespace zoo_test
