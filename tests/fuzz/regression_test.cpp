// Replays every committed fuzz input (seed corpus and crash regressions) through the same
// entry points the fuzzers use, in the normal (and sanitizer) test builds.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/onnx/import.hpp"

namespace fs = std::filesystem;
using namespace sparseloom;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("Fuzz.Regressions.ReplayWithoutCrash") {
  const fs::path dir = fs::path(SPARSELOOM_SOURCE_DIR) / "tests/fuzz/regressions";
  int replayed = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string bytes = slurp(e.path());
    const std::string name = e.path().filename().string();
    try {
      if (name.rfind("npy-", 0) == 0) {
        npy::parse(bytes, name);
      } else if (name.rfind("onnx-", 0) == 0) {
        onnx_io::import_bytes(bytes, name);
      }
    } catch (const Error&) {
    }
    ++replayed;
  }
  MESSAGE("replayed " << replayed << " inputs");
  CHECK(replayed >= 1);
}
