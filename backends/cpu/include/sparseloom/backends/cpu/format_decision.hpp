#pragma once
// What the cpu backend's format trials decide (format_choice.hpp) and their JSON form, for the
// decisions kept on disk (format_cache_file.hpp). No kernels here: the parser is fuzzed
// without oneDNN (tests/fuzz/fuzz_format_cache.cpp). Parsing never throws on content: an
// entry that does not validate is skipped and counted, a document of another version or
// machine tag is ignored as a whole (it is a cache: a miss, never a failed start).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sparseloom/backends/cpu/sparse_pack.hpp"
#include "sparseloom/core/json.hpp"

namespace sparseloom::cpu {

// One timed candidate: format, microkernel (or oneDNN implementation) and its time.
struct Candidate {
  Format format;
  std::string kernel;
  double ms;
};

// What a format trial decided for one layer: enough to pack the same choice again without
// timing (format, microkernel or oneDNN, K-chunk) and the timed candidates, so reports and
// the backend's f32-vs-INT8 comparison read the same as after the trial.
struct FormatDecision {
  Format format = Format::dense;
  std::string ukernel;          // our microkernel's name (empty for oneDNN dense)
  std::int64_t kc = 0;
  std::vector<Candidate> candidates;
};

// Format decisions and timed yes/no choices (e.g. a conv's implicit im2col), by cache key.
struct FormatDecisions {
  std::map<std::string, FormatDecision> formats;
  std::map<std::string, bool> flags;
};

inline constexpr int kFormatCacheFileVersion = 1;

struct ParsedFormatDecisions {
  FormatDecisions entries;
  std::size_t skipped = 0;  // entries that did not validate
  std::string ignored;      // why the whole document was ignored ("" when it was read)
};

namespace detail {
inline std::optional<Format> format_named(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(Format::int8_dense); ++i)
    if (s == to_string(static_cast<Format>(i))) return static_cast<Format>(i);
  return std::nullopt;
}
// Bounds for what a real decision holds; anything else is a damaged entry.
inline constexpr std::size_t kMaxKeyChars = 1024, kMaxNameChars = 256, kMaxCandidates = 256;
inline constexpr std::int64_t kMaxKc = std::int64_t{1} << 24;

inline const std::string* string_field(const json::Json& e, const char* name, std::size_t max_chars) {
  const auto it = e.find(name);
  if (it == e.end() || !it->is_string() || it->get_ref<const std::string&>().size() > max_chars) return nullptr;
  return &it->get_ref<const std::string&>();
}

inline std::optional<FormatDecision> decision_of(const json::Json& e) {
  const auto* fmt = string_field(e, "format", kMaxNameChars);
  const auto* uk = string_field(e, "ukernel", kMaxNameChars);
  const auto kc = e.find("kc"), cands = e.find("candidates");
  if (!fmt || !uk || kc == e.end() || !kc->is_number_integer() || cands == e.end() || !cands->is_array() ||
      cands->size() > kMaxCandidates)
    return std::nullopt;
  FormatDecision d;
  const auto f = format_named(*fmt);
  d.ukernel = *uk;
  d.kc = kc->get<std::int64_t>();
  if (!f || d.kc < 0 || d.kc > kMaxKc) return std::nullopt;
  d.format = *f;
  for (const auto& c : *cands) {
    if (!c.is_object()) return std::nullopt;
    const auto* cf_name = string_field(c, "format", kMaxNameChars);
    const auto* kernel = string_field(c, "kernel", kMaxNameChars);
    const auto ms = c.find("ms");
    if (!cf_name || !kernel || ms == c.end() || !ms->is_number()) return std::nullopt;
    const auto cf = format_named(*cf_name);
    const double t = ms->get<double>();
    if (!cf || !(t >= 0 && t < 1e9)) return std::nullopt;
    d.candidates.push_back({*cf, *kernel, t});
  }
  return d;
}
}  // namespace detail

inline json::Json format_decisions_to_json(const FormatDecisions& e, const std::string& tag) {
  json::Json j{{"format_cache", kFormatCacheFileVersion}, {"tag", tag}};
  j["formats"] = json::Json::array();
  for (const auto& [key, d] : e.formats) {
    json::Json cands = json::Json::array();
    for (const auto& c : d.candidates) cands.push_back({{"format", to_string(c.format)}, {"kernel", c.kernel}, {"ms", c.ms}});
    j["formats"].push_back({{"key", key}, {"format", to_string(d.format)}, {"ukernel", d.ukernel}, {"kc", d.kc}, {"candidates", cands}});
  }
  j["flags"] = json::Json::array();
  for (const auto& [key, v] : e.flags) j["flags"].push_back({{"key", key}, {"value", v}});
  return j;
}

// The decisions in `j` when it is a format cache of this version recorded under `tag`.
inline ParsedFormatDecisions format_decisions_from_json(const json::Json& j, const std::string& tag) {
  ParsedFormatDecisions r;
  if (!j.is_object() || !j.contains("format_cache") || !j["format_cache"].is_number_integer() ||
      j["format_cache"].get<std::int64_t>() != kFormatCacheFileVersion) {
    r.ignored = "not a format cache of this version";
    return r;
  }
  const auto* t = detail::string_field(j, "tag", 4096);
  if (!t || *t != tag) {
    r.ignored = "recorded on another machine or build";
    return r;
  }
  auto key_of = [](const json::Json& x) -> const std::string* {
    if (!x.is_object()) return nullptr;
    const auto* k = detail::string_field(x, "key", detail::kMaxKeyChars);
    return k && !k->empty() ? k : nullptr;
  };
  if (const auto it = j.find("formats"); it != j.end() && it->is_array())
    for (const auto& x : *it) {
      const auto* k = key_of(x);
      const auto d = k ? detail::decision_of(x) : std::nullopt;
      if (d) r.entries.formats.emplace(*k, *d);
      else ++r.skipped;
    }
  if (const auto it = j.find("flags"); it != j.end() && it->is_array())
    for (const auto& x : *it) {
      const auto* k = key_of(x);
      const auto v = k ? x.find("value") : x.end();
      if (k && v != x.end() && v->is_boolean()) r.entries.flags.emplace(*k, v->get<bool>());
      else ++r.skipped;
    }
  return r;
}

}  // namespace sparseloom::cpu
