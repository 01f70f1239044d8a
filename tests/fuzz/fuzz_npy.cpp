// libFuzzer target: bytes -> .npy parser. Any Error is fine; a crash is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sparseloom/core/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    sparseloom::npy::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  } catch (const sparseloom::Error&) {
  }
  return 0;
}
