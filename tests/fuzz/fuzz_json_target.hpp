#pragma once
// Shared body of the JSON-format fuzz targets (manifest, scenario, profile table, processor
// profile): bytes -> json::parse_document (kept text, so error locations scan it too) ->
// the format's parser. sparseloom::Error is the only acceptable failure; anything else that
// escapes (a std:: or nlohmann exception) reaches libFuzzer as an uncaught exception, i.e. a
// crash, and so does any sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/json.hpp"

namespace sparseloom::fuzz {

// Inputs past this size only slow the fuzzer down: every format here is a small file.
inline constexpr std::size_t kMaxJsonBytes = 1 << 20;

template <class Parse>
int run_json_target(const std::uint8_t* data, std::size_t size, Parse&& parse) {
  if (size > kMaxJsonBytes) return -1;  // libFuzzer: do not add to the corpus
  try {
    const auto doc = json::parse_document(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    parse(doc);
  } catch (const Error& e) {
    // Every error must say where: an empty location means a message the user cannot act on.
    if (e.where().empty()) __builtin_trap();
  }
  return 0;
}

}  // namespace sparseloom::fuzz
