// libFuzzer target: bytes -> the simulator's processor profile (sim::parse_profile on a
// document that keeps its text, as sim::load_profile does), then a round trip through to_json.
#include "fuzz_json_target.hpp"
#include "sparseloom/sim/profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return sparseloom::fuzz::run_json_target(data, size, [](const sparseloom::json::Document& doc) {
    using namespace sparseloom;
    const auto p = sim::parse_profile(doc.root());
    try {
      const auto again = sim::parse_profile(sim::to_json(p), "<round trip>");
      if (again.processors.size() != p.processors.size()) __builtin_trap();
    } catch (const Error&) {
      __builtin_trap();  // a profile we accepted but cannot read back
    }
  });
}
