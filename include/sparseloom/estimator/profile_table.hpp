#pragma once
// Measured costs the latency estimator works from: per (task, block, variant, processor) a
// latency distribution, per (task, block, variant) resident bytes, per (task, cut) the cost of
// moving the cut tensor between processors, and per (task, block) the cost of a repair at a
// switch. Persisted as JSON; the profile cache (ProfileCacheKey, load_cached/save_cached) keys a
// task's profile by its model files + processors (device, backend, threads) + profiling
// options, so a second run on the same machine does not re-profile.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sparseloom/core/json.hpp"

namespace sparseloom::estimator {

inline constexpr int kProfileSchema = 1;

struct LatencyStats {
  double median_ms = 0, p90_ms = 0, min_ms = 0;
  int samples = 0;
};

// Median / p90 / min of a set of timings.
inline LatencyStats summarize(std::vector<double> ms) {
  LatencyStats s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  s.samples = static_cast<int>(ms.size());
  s.min_ms = ms.front();
  s.median_ms = ms[ms.size() / 2];
  s.p90_ms = ms[std::min(ms.size() - 1, ms.size() * 9 / 10)];
  return s;
}

// Times fn() after warm-up until `reps` samples or `budget_ms` are used.
template <class F>
LatencyStats time_it(F&& fn, int reps = 15, int warmup = 2, double budget_ms = 200) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  double spent = 0;
  for (int i = 0; i < reps && (spent < budget_ms || ms.size() < 3); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double d = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ms.push_back(d);
    spent += d;
  }
  return summarize(std::move(ms));
}

struct TaskProfile {
  std::string task;
  std::string model_hash;
  // [block][variant][processor]
  std::vector<std::vector<std::vector<LatencyStats>>> block;
  // [block][variant][processor]: the block right after a switch, which runs with its repair
  // folded into an epilogue (a path that can cost more: e.g. unfused on INT8 blocks). Empty
  // (older profiles), or samples == 0 for a block: as `block`.
  std::vector<std::vector<std::vector<LatencyStats>>> repaired;
  std::vector<std::vector<double>> bytes;          // [block][variant] resident bytes
  std::vector<double> transfer_ms;                  // [cut]: moving the cut tensor between processors
  std::vector<double> repair_ms;                    // [block]: applying the repair at a switch
  std::vector<double> repair_bytes;                 // [block]: per-stitch repair data at a switch
};

// Variant v run whole on its slowest processor (the sum of its block medians there): the unit
// scenarios scale deadlines by (slo_scale, with v the base). Both the e2e harness and the CLI
// planner use it, so a scenario's deadlines agree between them.
inline double slowest_processor_ms(const TaskProfile& tp, int v) {
  double worst = 0;
  const std::size_t P = tp.block.empty() ? 0 : tp.block.front().at(static_cast<std::size_t>(v)).size();
  for (std::size_t p = 0; p < P; ++p) {
    double sum = 0;
    for (const auto& b : tp.block) sum += b.at(static_cast<std::size_t>(v)).at(p).median_ms;
    worst = std::max(worst, sum);
  }
  return worst;
}

struct ProcessorProfile {
  std::string name, kind, backend, device;
  int threads = 1;
};

struct ProfileTable {
  std::vector<ProcessorProfile> processors;
  std::vector<TaskProfile> tasks;
  double profiling_seconds = 0;
};

inline json::Json to_json(const ProfileTable& t) {
  json::Json j;
  j["schema_version"] = kProfileSchema;
  j["profiling_seconds"] = t.profiling_seconds;
  for (const auto& p : t.processors)
    j["processors"].push_back({{"name", p.name}, {"kind", p.kind}, {"backend", p.backend}, {"device", p.device}, {"threads", p.threads}});
  for (const auto& tp : t.tasks) {
    json::Json jt{{"task", tp.task}, {"model_hash", tp.model_hash}, {"bytes", tp.bytes}, {"transfer_ms", tp.transfer_ms},
                  {"repair_ms", tp.repair_ms}, {"repair_bytes", tp.repair_bytes}};
    auto stats = [](const std::vector<std::vector<std::vector<LatencyStats>>>& table) {
      json::Json out = json::Json::array();
      for (const auto& b : table) {
        json::Json jb = json::Json::array();
        for (const auto& v : b) {
          json::Json jv = json::Json::array();
          for (const auto& s : v) jv.push_back({s.median_ms, s.p90_ms, s.min_ms, s.samples});
          jb.push_back(jv);
        }
        out.push_back(jb);
      }
      return out;
    };
    jt["latency"] = stats(tp.block);
    if (!tp.repaired.empty()) jt["latency_repaired"] = stats(tp.repaired);
    j["tasks"].push_back(jt);
  }
  return j;
}

inline ProfileTable profile_from_json(const json::Json& doc, const std::string& source) {
  const json::Field root(doc, source);
  json::check_schema(root, kProfileSchema);
  ProfileTable t;
  t.profiling_seconds = root.get_or<double>("profiling_seconds", 0);
  const auto procs = root["processors"];
  for (std::size_t i = 0; i < procs.size(); ++i)
    t.processors.push_back({procs[i].get<std::string>("name"), procs[i].get<std::string>("kind"),
                            procs[i].get<std::string>("backend"), procs[i].get<std::string>("device"), procs[i].get<int>("threads")});
  const auto tasks = root["tasks"];
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto jt = tasks[i];
    TaskProfile tp;
    tp.task = jt.get<std::string>("task");
    tp.model_hash = jt.get<std::string>("model_hash");
    tp.bytes = jt.get<std::vector<std::vector<double>>>("bytes");
    tp.transfer_ms = jt.get<std::vector<double>>("transfer_ms");
    tp.repair_ms = jt.get<std::vector<double>>("repair_ms");
    tp.repair_bytes = jt.get<std::vector<double>>("repair_bytes");
    auto stats = [&](const std::string& field, std::vector<std::vector<std::vector<LatencyStats>>>& table) {
      const auto lat = jt.get<std::vector<std::vector<std::vector<std::vector<double>>>>>(field);
      for (const auto& b : lat) {
        table.emplace_back();
        for (const auto& v : b) {
          table.back().emplace_back();
          for (const auto& s : v) {
            check(s.size() == 4, ErrorCode::parse, jt.where(field), "each entry is [median, p90, min, samples]");
            // The range check keeps the cast to int defined (tests/fuzz/regressions/profile_table/).
            check(s[3] >= 0 && s[3] <= 1e9, ErrorCode::parse, jt.where(field), "sample count outside [0, 1e9]");
            table.back().back().push_back({s[0], s[1], s[2], static_cast<int>(s[3])});
          }
        }
      }
    };
    stats("latency", tp.block);
    if (jt.has("latency_repaired")) {
      stats("latency_repaired", tp.repaired);
      bool same = tp.repaired.size() == tp.block.size();
      for (std::size_t b = 0; same && b < tp.block.size(); ++b) {
        same = tp.repaired[b].size() == tp.block[b].size();
        for (std::size_t v = 0; same && v < tp.block[b].size(); ++v) same = tp.repaired[b][v].size() == tp.block[b][v].size();
      }
      check(same, ErrorCode::parse, jt.where("latency_repaired"), "must have the shape of \"latency\"");
    }
    check(tp.bytes.size() == tp.block.size(), ErrorCode::parse, jt.where("bytes"), "one row per block expected");
    t.tasks.push_back(std::move(tp));
  }
  return t;
}

inline void save(const ProfileTable& t, const std::filesystem::path& p) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p);
  check(f.good(), ErrorCode::io, p.string(), "cannot open for writing");
  f << to_json(t).dump(1);
}

inline ProfileTable load_profile(const std::filesystem::path& p) { return profile_from_json(json::load(p), p.string()); }

namespace detail {
inline std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}
inline std::string hex16(std::uint64_t h) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}
}  // namespace detail

// FNV-1a over the bytes of the task's model files (a missing file hashes as empty).
inline std::string hash_files(const std::vector<std::filesystem::path>& files) {
  std::uint64_t h = 1469598103934665603ull;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    char buf[65536];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) h = detail::fnv1a(std::string_view(buf, static_cast<std::size_t>(in.gcount())), h);
  }
  return detail::hex16(h);
}

// What a cached task profile is valid for: a profile is reused only when all of it is equal.
struct ProfileCacheKey {
  std::string task;
  std::string files_hash;                    // hash_files over the manifest and every variant file
  std::vector<ProcessorProfile> processors;  // in the order the profile indexes them
  std::string options;                       // profiling settings and build (reps, budget, compiler, ...)

  // Canonical text, stored in the cache file and compared on load (the file name is a hash).
  std::string text() const {
    std::string t = "task=" + task + "\nfiles=" + files_hash + "\noptions=" + options + "\n";
    for (const auto& p : processors)
      t += "processor=" + p.name + "|" + p.kind + "|" + p.backend + "|" + p.device + "|" + std::to_string(p.threads) + "\n";
    return t;
  }
  // File stem in the cache folder: the task name (readable) + a hash of text().
  std::string id() const {
    std::string safe;
    for (char c : task) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
    return safe.substr(0, 64) + "-" + detail::hex16(detail::fnv1a(text()));
  }
};

inline std::filesystem::path cache_path(const std::filesystem::path& dir, const ProfileCacheKey& key) {
  return dir / (key.id() + ".json");
}

// The cached profile for `key`, or nullopt (with the reason in *why) when there is none, it was
// made under another key, or it cannot be read: the cache is disposable, so a damaged entry
// means re-profiling, never a failed run.
inline std::optional<TaskProfile> load_cached(const std::filesystem::path& dir, const ProfileCacheKey& key,
                                              std::string* why = nullptr) {
  auto miss = [&](const std::string& reason) -> std::optional<TaskProfile> {
    if (why) *why = reason;
    return std::nullopt;
  };
  const auto path = cache_path(dir, key);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return miss("no cached profile " + path.string());
  try {
    const auto doc = json::load(path);
    const json::Field root(doc, path.string());
    if (root.get_or<std::string>("cache_key", "") != key.text()) return miss(path.string() + " was made under another key");
    auto table = profile_from_json(doc, path.string());
    if (table.tasks.size() != 1 || table.tasks[0].task != key.task) return miss(path.string() + " holds another task");
    for (const auto& b : table.tasks[0].block)
      for (const auto& v : b)
        if (v.size() != key.processors.size()) return miss(path.string() + " has a different processor count");
    return std::move(table.tasks[0]);
  } catch (const Error& e) {
    return miss(std::string("unreadable cached profile: ") + e.what());
  }
}

// Writes the profile under `key` (to a temporary name first, so a concurrent reader never sees
// half a file).
inline void save_cached(const std::filesystem::path& dir, const ProfileCacheKey& key, const TaskProfile& tp,
                        double profiling_seconds = 0) {
  std::filesystem::create_directories(dir);
  const auto path = cache_path(dir, key);
  auto j = to_json(ProfileTable{key.processors, {tp}, profiling_seconds});
  j["cache_key"] = key.text();
  json::write_text_atomically(path, j.dump(1));
}

}  // namespace sparseloom::estimator
