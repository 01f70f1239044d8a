// libFuzzer target: bytes -> scenario parser (scenario::parse_scenario on a document that keeps
// its text, as load_scenario does). Any Error is fine; a crash or another exception is a bug.
#include "fuzz_json_target.hpp"
#include "sparseloom/scenario/scenario.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sparseloom::fuzz::run_json_target(data, size, [](const sparseloom::json::Document& doc) {
    const auto s = sparseloom::scenario::parse_scenario(doc.root());
    // The parser's promises to the engine: tasks and processors exist, changes index a task.
    if (s.tasks.empty() || s.processors.empty()) __builtin_trap();
    for (const auto& c : s.changes)
      if (c.task >= s.tasks.size()) __builtin_trap();
  });
}
