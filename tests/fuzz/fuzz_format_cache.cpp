// libFuzzer target: bytes -> the cpu backend's format-decision cache document
// (cpu::format_decisions_from_json, under a fixed machine tag), then a round trip: what the
// parser keeps must be written back and read again whole. The parser throws nothing for
// content; only the JSON layer's errors (which name where) may escape.
#include "fuzz_json_target.hpp"
#include "sparseloom/backends/cpu/format_decision.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sparseloom::fuzz::run_json_target(data, size, [](const sparseloom::json::Document& doc) {
    using namespace sparseloom;
    const auto p = cpu::format_decisions_from_json(doc.json, "fuzz");
    const auto again = cpu::format_decisions_from_json(cpu::format_decisions_to_json(p.entries, "fuzz"), "fuzz");
    if (!again.ignored.empty() || again.skipped != 0 || again.entries.formats.size() != p.entries.formats.size() ||
        again.entries.flags.size() != p.entries.flags.size())
      __builtin_trap();  // kept entries that do not survive being written back
  });
}
