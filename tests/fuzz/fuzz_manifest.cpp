// libFuzzer target: bytes -> zoo manifest parser (zoo::parse_manifest). Any Error is fine; a
// crash, a sanitizer report or another exception type is a bug.
#include "fuzz_json_target.hpp"
#include "sparseloom/zoo/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sparseloom::fuzz::run_json_target(data, size, [](const sparseloom::json::Document& doc) {
    const auto m = sparseloom::zoo::parse_manifest(doc.json, "models/zoo/fuzz", doc.source);
    // What the manifest promises its users: the base is a listed variant, stitches name one
    // listed variant per block.
    m.variant_index(m.base);
    for (const auto& s : m.stitched_repair)
      if (s.variants.size() != m.blocks.size()) __builtin_trap();
  });
}
