// libFuzzer target: bytes -> estimator profile table (estimator::profile_from_json), then a
// round trip through to_json: what the parser accepts must be written back readable.
#include "fuzz_json_target.hpp"
#include "sparseloom/estimator/profile_table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sparseloom::fuzz::run_json_target(data, size, [](const sparseloom::json::Document& doc) {
    using namespace sparseloom;
    const auto t = estimator::profile_from_json(doc.json, doc.source);
    try {
      const auto again = estimator::profile_from_json(estimator::to_json(t), "<round trip>");
      if (again.tasks.size() != t.tasks.size() || again.processors.size() != t.processors.size()) __builtin_trap();
    } catch (const Error&) {
      __builtin_trap();  // a table we accepted but cannot read back
    }
  });
}
