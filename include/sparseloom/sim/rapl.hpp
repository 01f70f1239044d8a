#pragma once
// Measured energy from Intel RAPL through Linux powercap (/sys/class/powercap/intel-rapl:N):
// the package domains' energy_uj counters read around a real run, wrap-around handled with each
// domain's max_energy_range_uj. Sub-domains (intel-rapl:N:M: cores, uncore, dram) are inside
// their package and are not added again. Reads are bounded (a counter file is a short line;
// anything else is an error naming the file). Many VMs (this project's machine) expose no
// powercap: find_rapl() is then empty and results say "rapl": "not exposed".
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::sim {

struct RaplDomain {
  std::string name;           // the domain's `name` file (package-0, ...)
  std::filesystem::path dir;  // .../intel-rapl:N
  std::uint64_t max_range_uj = 0;
};

namespace detail {

// The first line of a small sysfs file (at most 256 bytes read).
inline std::string read_small(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  check(f.good(), ErrorCode::io, p.string(), "cannot open");
  char buf[257] = {};
  f.read(buf, 256);
  std::string s(buf, static_cast<std::size_t>(f.gcount()));
  s = s.substr(0, s.find('\n'));
  return s;
}

inline std::uint64_t read_u64(const std::filesystem::path& p) {
  const auto s = read_small(p);
  check(!s.empty() && s.size() <= 20 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }),
        ErrorCode::parse, p.string(), "expected an unsigned integer, got '" + s.substr(0, 32) + "'");
  try {
    return std::stoull(s);
  } catch (const std::exception&) {
    throw Error(ErrorCode::parse, p.string(), "out of range: '" + s + "'");
  }
}

}  // namespace detail

// The package domains under `root` (sorted by directory name); none when powercap is absent.
// A domain whose files are unreadable or malformed is an Error naming the file.
inline std::vector<RaplDomain> find_rapl(const std::filesystem::path& root = "/sys/class/powercap") {
  std::vector<RaplDomain> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) return out;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    const auto n = e.path().filename().string();
    // intel-rapl:N (a package), not intel-rapl:N:M (inside it), not the bare "intel-rapl" control type.
    if (n.rfind("intel-rapl:", 0) != 0 || std::count(n.begin(), n.end(), ':') != 1) continue;
    if (!std::filesystem::exists(e.path() / "energy_uj")) continue;
    RaplDomain d;
    d.dir = e.path();
    d.name = std::filesystem::exists(e.path() / "name") ? detail::read_small(e.path() / "name") : n;
    d.max_range_uj = detail::read_u64(e.path() / "max_energy_range_uj");
    check(d.max_range_uj > 0, ErrorCode::parse, (e.path() / "max_energy_range_uj").string(), "must be positive");
    out.push_back(std::move(d));
    if (out.size() > 64) break;  // bounded
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.dir < b.dir; });
  return out;
}

// One reading of every domain's counter (µJ).
inline std::vector<std::uint64_t> read_rapl(const std::vector<RaplDomain>& ds) {
  std::vector<std::uint64_t> v;
  for (const auto& d : ds) {
    const auto x = detail::read_u64(d.dir / "energy_uj");
    check(x <= d.max_range_uj, ErrorCode::parse, (d.dir / "energy_uj").string(), "above max_energy_range_uj");
    v.push_back(x);
  }
  return v;
}

// Joules between two readings, summed over the domains; a counter that went down wrapped once
// at max_energy_range_uj (readings must be closer than one wrap: minutes apart at most).
inline double rapl_joules(const std::vector<RaplDomain>& ds, const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
  check(a.size() == ds.size() && b.size() == ds.size(), ErrorCode::invalid_argument, "sim::rapl_joules", "readings do not match the domains");
  double uj = 0;
  for (std::size_t i = 0; i < ds.size(); ++i)
    uj += static_cast<double>(b[i] >= a[i] ? b[i] - a[i] : (ds[i].max_range_uj - a[i]) + b[i]);
  return uj * 1e-6;
}

// Joules over a span of a real run, never throwing: status() is "not exposed" (no powercap),
// "error: ..." (a counter file went bad; no figure), or the domains it summed. The package
// counters see the whole machine (other programs included), not only the engine.
class RaplMeter {
 public:
  explicit RaplMeter(const std::filesystem::path& root = "/sys/class/powercap") {
    try {
      ds_ = find_rapl(root);
      status_ = ds_.empty() ? "not exposed" : "";
      for (const auto& d : ds_) status_ += (status_.empty() ? "" : ",") + d.name;
    } catch (const std::exception& e) {
      ds_.clear();
      status_ = std::string("error: ") + e.what();
    }
  }
  bool available() const { return !ds_.empty(); }
  const std::string& status() const { return status_; }
  void start() { a_ = read_or_fail(); }
  // Joules since start(); negative when unavailable.
  double stop() {
    if (!available() || a_.empty()) return -1;
    const auto b = read_or_fail();
    return b.empty() ? -1 : rapl_joules(ds_, a_, b);
  }

 private:
  std::vector<std::uint64_t> read_or_fail() {
    if (ds_.empty()) return {};
    try {
      return read_rapl(ds_);
    } catch (const std::exception& e) {
      status_ = std::string("error: ") + e.what();
      ds_.clear();
      return {};
    }
  }
  std::vector<RaplDomain> ds_;
  std::vector<std::uint64_t> a_;
  std::string status_;
};

}  // namespace sparseloom::sim
