#pragma once
// The cpu backend's format decisions on disk (like TensorRT's timing cache): a restart packs
// every layer in the format its earlier trial chose instead of timing the candidates again,
// which is most of a large zoo's start-up (ResNet-50 and BERT-sized blocks: minutes on 2
// cores). The file carries a machine tag (CPU model, ISA, hardware threads, backend revision,
// compiler): a file from another machine or build is ignored, and so is a damaged one or any
// entry in it that does not validate (format_decision.hpp). A miss, never a failed start; an
// entry that validates but cannot be packed is a miss too (prepare_matmul trials again).
#include <filesystem>
#include <string>
#include <thread>

#include "sparseloom/backends/cpu/backend.hpp"
#include "sparseloom/backends/cpu/format_decision.hpp"
#include "sparseloom/core/json.hpp"

namespace sparseloom::cpu {

// Everything a recorded decision's timing depended on beyond what its key names.
inline std::string format_cache_tag() {
  return cpu_model_name() + ";isa=" + to_string(cpu_features().best_isa()) +
         ";hw_threads=" + std::to_string(std::thread::hardware_concurrency()) +
         ";cpu_rev=" + std::to_string(Backend::kRevision) + ";cc=" + __VERSION__;
}

struct FormatCacheFileResult {
  std::size_t added = 0;    // decisions taken into the process-wide FormatCache
  std::size_t skipped = 0;  // entries that did not validate
  std::string ignored;      // why the whole file was ignored ("" when it was read)
};

// Writes every decision of this process (FormatCache::instance()) to `file` (atomically: a
// concurrent reader never sees half a file).
inline void save_format_cache(const std::filesystem::path& file, const std::string& tag = format_cache_tag()) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  json::write_text_atomically(file, format_decisions_to_json(FormatCache::instance().entries(), tag).dump());
}

// Adds the decisions in `file` to the process-wide FormatCache when its tag matches. Never
// throws for the file's content or absence; `ignored` says why nothing was taken.
inline FormatCacheFileResult load_format_cache(const std::filesystem::path& file, const std::string& tag = format_cache_tag()) {
  FormatCacheFileResult r;
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) {
    r.ignored = "no file";
    return r;
  }
  if (size > (std::uintmax_t{256} << 20)) {
    r.ignored = "larger than 256 MiB";
    return r;
  }
  try {
    auto parsed = format_decisions_from_json(json::load(file), tag);
    r.skipped = parsed.skipped;
    r.ignored = parsed.ignored;
    if (r.ignored.empty()) r.added = FormatCache::instance().add(std::move(parsed.entries));
  } catch (const Error& e) {
    r.ignored = std::string("not valid JSON: ") + e.what();
  }
  return r;
}

}  // namespace sparseloom::cpu
