#pragma once
// What every subcommand shares: the exit codes (docs/cli.md), the global flags, the
// registration signature, table printing, and the profile-table entry points that profile.cpp
// implements for plan/estimate (so only one translation unit compiles the backends).
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cctype>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/estimator/profile_table.hpp"

namespace sparseloom::cli {

// Exit codes, stable for scripts (docs/cli.md).
enum Exit : int {
  kOk = 0,
  kInputError = 1,   // a file or value is wrong: parse, I/O, shape, unsupported, invalid argument
  kUsage = 2,        // bad command line
  kInfeasible = 3,   // no plan meets every task's SLO (the plan is still printed)
  kDeviceError = 4,  // a backend/device failed
  kInternal = 5,     // a bug in SparseLoom
  kToolFailed = 6,   // an external tool (bench binary, python report) failed
};

inline int exit_code_of(ErrorCode c) {
  switch (c) {
    case ErrorCode::infeasible: return kInfeasible;
    case ErrorCode::device: return kDeviceError;
    case ErrorCode::internal: return kInternal;
    default: return kInputError;
  }
}

struct Globals {
  bool json = false;     // machine-readable output on stdout
  bool quiet = false;    // no progress output
  std::function<int()> action;  // set by the chosen subcommand's callback
};

// Each subcommand file defines one of these; main.cpp calls them all.
void add_inspect(CLI::App& app, Globals& g);
void add_zoo(CLI::App& app, Globals& g);
void add_profile(CLI::App& app, Globals& g);
void add_estimate(CLI::App& app, Globals& g);
void add_plan(CLI::App& app, Globals& g);
void add_run(CLI::App& app, Globals& g);
void add_bench(CLI::App& app, Globals& g);
void add_report(CLI::App& app, Globals& g);
void add_split(CLI::App& app, Globals& g);

// --- profile tables (profile.cpp) ---------------------------------------------------------
struct ProfileRequest {
  std::string scenario;
  std::string profile_path;   // explicit table to read; empty: use the cache
  bool quick = false;         // fewer repetitions per block
  bool refresh = false;       // ignore the cache
  bool quiet = false;
};
// The scenario's profile table: the explicit file, a cached table whose processors, device and
// model hashes still match, or a fresh profile (then cached). Errors name what mismatched.
estimator::ProfileTable profile_for(const ProfileRequest& r);
std::filesystem::path cache_path(const std::string& scenario_name);
// The positional scenario and --profile/--quick/--refresh (plan.cpp), for plan and estimate.
void add_profile_options(CLI::App* sub, ProfileRequest& r);
estimator::ProfileTable profile_scenario(const std::string& scenario, bool quick, bool quiet);

// --- output helpers -------------------------------------------------------------------------
// A left-aligned text table: first column left, the rest right-aligned.
inline void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) w[c] = head[c].size();
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  // A column of numbers is right-aligned (header too); text columns are left-aligned.
  std::vector<bool> numeric(head.size(), true);
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c)
      if (!r[c].empty() && !std::isdigit(static_cast<unsigned char>(r[c][0])) && r[c][0] != '-' && r[c][0] != '.') numeric[c] = false;
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (std::size_t c = 0; c < w.size(); ++c) {
      const std::string cell = c < r.size() ? r[c] : "";
      s += c == 0 ? fmt::format("{:<{}}", cell, w[c]) : numeric[c] ? fmt::format("  {:>{}}", cell, w[c]) : fmt::format("  {:<{}}", cell, w[c]);
    }
    fmt::print("{}\n", s);
  };
  line(head);
  std::size_t total = 0;
  for (auto x : w) total += x + 2;
  fmt::print("{}\n", std::string(total - 2, '-'));
  for (const auto& r : rows) line(r);
}

inline std::string human_bytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{:.0f} B", b);
}

// The directory of the running executable (to find sibling tools and the report script).
inline std::filesystem::path self_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::current_path() : p.parent_path();
}

}  // namespace sparseloom::cli
