// Replays every committed fuzz input (seed corpora and crash regressions) through the same
// entry points the fuzzers use, in the normal (and sanitizer) test builds. Inputs live in
// tests/fuzz/{corpus,regressions}/<target>/; older ones sit directly in regressions/ named
// <onnx|npy>-*. The fuzzer's target (the folder, or the prefix) picks the parser.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "sparseloom/backends/cpu/format_decision.hpp"
#include "sparseloom/backends/reference/backend.hpp"
#include "sparseloom/core/json.hpp"
#include "sparseloom/core/npy.hpp"
#include "sparseloom/estimator/profile_table.hpp"
#include "sparseloom/onnx/import.hpp"
#include "sparseloom/scenario/scenario.hpp"
#include "sparseloom/zoo/manifest.hpp"
#if __has_include("sparseloom/sim/profile.hpp")
#include "sparseloom/sim/profile.hpp"
#define SPARSELOOM_HAS_SIM_PROFILE 1
#endif

namespace fs = std::filesystem;
using namespace sparseloom;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Runs one input; returns false when no parser handles `target`.
bool replay(const std::string& target, const std::string& bytes, const std::string& name) {
  try {
    if (target == "npy") {
      npy::parse(bytes, name);
    } else if (target == "onnx" || target == "onnx_import") {
      onnx_io::import_bytes(bytes, name);
    } else if (target == "manifest") {
      zoo::parse_manifest(json::parse(bytes, name), "models/zoo/fuzz", name);
    } else if (target == "scenario") {
      scenario::parse_scenario(json::parse_document(bytes, name).root());
    } else if (target == "profile_table") {
      const auto t = estimator::profile_from_json(json::parse(bytes, name), name);
      estimator::profile_from_json(estimator::to_json(t), name + " (round trip)");  // must not throw
    } else if (target == "format_cache") {
      const auto p = cpu::format_decisions_from_json(json::parse(bytes, name), "fuzz");
      const auto again = cpu::format_decisions_from_json(cpu::format_decisions_to_json(p.entries, "fuzz"), "fuzz");
      CHECK(again.ignored.empty());
      CHECK(again.skipped == 0);
      CHECK(again.entries.formats.size() == p.entries.formats.size());
    } else if (target == "sim_profile") {
#ifdef SPARSELOOM_HAS_SIM_PROFILE
      const auto p = sim::parse_profile(json::parse_document(bytes, name).root());
      sim::parse_profile(sim::to_json(p), name + " (round trip)");
#endif
    } else {
      return false;
    }
  } catch (const Error& e) {
    CHECK_MESSAGE(!e.where().empty(), name << ": an error that names no location: " << e.what());
  }
  return true;
}
}  // namespace

TEST_CASE("Fuzz.Regressions.ReplayWithoutCrash") {
  const fs::path root = fs::path(SPARSELOOM_SOURCE_DIR) / "tests/fuzz";
  std::map<std::string, int> replayed;
  for (const char* kind : {"regressions", "corpus"}) {
    if (!fs::exists(root / kind)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / kind)) {
      if (!e.is_regular_file()) continue;
      const std::string name = e.path().filename().string();
      const bool nested = e.path().parent_path() != root / kind;
      const std::string target = nested ? e.path().parent_path().filename().string() : name.substr(0, name.find('-'));
      INFO(e.path().string());
      // Any exception other than Error escapes here and fails the test with its message.
      if (replay(target, slurp(e.path()), name)) ++replayed[target];
    }
  }
  for (const auto& [t, n] : replayed) MESSAGE("replayed " << n << " " << t << " inputs");
  // Every fuzz target has committed inputs.
  for (const char* t : {"npy", "onnx", "manifest", "scenario", "profile_table", "format_cache"}) CHECK_MESSAGE(replayed[t] >= 1, t);
}
