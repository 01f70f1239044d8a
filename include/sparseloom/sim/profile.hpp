#pragma once
// Processor profiles of an SoC the simulator models (sim/profiles/*.json, docs/sim.md,
// docs/schema/processor-profile.schema.json): per processor a roofline (dense f32/f16/INT8
// peak, memory bandwidth, launch and per-kernel overhead), sparse speed-ups per format and
// sparsity, the dtypes and ops it runs (an NPU: INT8 only, a fixed op set), idle and active
// power; the SoC's shared memory; the cost of handing a tensor between processors. Versioned
// JSON; every error names the file and the field. Bounded: fuzzed via parse_profile.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/json.hpp"
#include "sparseloom/ir/infer.hpp"
#include "sparseloom/sim/engine_overhead.hpp"

namespace sparseloom::sim {

inline constexpr int kProcessorProfileSchema = 1;

enum class Format { dense, unstructured, block, semi24 };
inline const char* to_string(Format f) {
  switch (f) {
    case Format::dense: return "dense";
    case Format::unstructured: return "unstructured";
    case Format::block: return "block";
    case Format::semi24: return "2:4";
  }
  return "?";
}

// Speed-up of the compute-bound part over dense at a sparsity, piecewise linear between the
// listed points (1 at sparsity 0; held flat beyond the last point). Below 1 means the sparse
// kernel is slower: the processor then runs that layer dense (never slower than dense).
struct SpeedupCurve {
  std::vector<double> sparsity, speedup;  // ascending sparsity
  double at(double s) const {
    if (sparsity.empty()) return 1.0;
    double x0 = 0, y0 = 1;
    for (std::size_t i = 0; i < sparsity.size(); ++i) {
      if (s <= sparsity[i]) {
        const double w = sparsity[i] > x0 ? (s - x0) / (sparsity[i] - x0) : 1.0;
        return y0 + w * (speedup[i] - y0);
      }
      x0 = sparsity[i], y0 = speedup[i];
    }
    return y0;
  }
};

struct ProcessorModel {
  std::string name, kind;  // kind: cpu | gpu | npu
  double peak_f32 = 0, peak_f16 = 0, peak_int8 = 0;  // GFLOP/s (INT8: GOP/s), dense
  std::string float_dtype = "f32";  // precision float blocks run in here (f32 or f16)
  double compute_efficiency = 1;    // share of peak reached by dense layers of this size
  double memory_bandwidth_gbps = 0;
  double launch_overhead_ms = 0;    // per block (a dispatch)
  double kernel_overhead_ms = 0;    // per compute node in the block
  std::map<Format, SpeedupCurve> sparse;  // missing format: no speed-up (runs dense)
  std::set<std::string> dtypes;           // f32 | f16 | int8
  bool all_ops = false;
  std::set<std::string> ops;
  double idle_w = 0, active_w = 0;

  bool runs_dtype(const std::string& d) const { return dtypes.count(d) != 0; }
  bool runs_op(const std::string& op) const { return all_ops || ops.count(op) != 0; }
  double peak(const std::string& dtype) const {
    return dtype == "int8" ? peak_int8 : dtype == "f16" ? peak_f16 : peak_f32;
  }
};

struct SocModel {
  double memory_bandwidth_gbps = 0;  // shared by every processor
  double memory_capacity_bytes = 0;
  double dram_pj_per_byte = 0;       // energy of moving one byte to or from DRAM
};

struct TransferModel {
  double latency_ms = 0;       // synchronisation / cache maintenance per hand-over
  double bandwidth_gbps = 0;   // copy (or coherence) bandwidth of the cut tensor
};

// (task, block, variant, processor) by name.
using MeasuredBlockKey = std::tuple<std::string, int, std::string, std::string>;

struct SocProfile {
  std::string name, description, source_file;
  std::vector<std::string> sources;  // where the numbers come from
  bool fitted = false;               // true: fitted from measured runs
  SocModel soc;
  TransferModel transfer;
  std::vector<ProcessorModel> processors;
  // The engine's own per-request cost on the machine (engine_overhead.hpp); none: an ideal engine.
  std::optional<EngineOverhead> engine;
  // Optional, fitted profiles only: the profiler's median of named zoo blocks on this machine,
  // which the simulator uses instead of the roofline for those blocks (the roofline's per-block
  // error, ~25 % here, would otherwise swamp the engine model being validated).
  std::map<MeasuredBlockKey, double> measured_block_ms;
  // Optional with it: a block's median time inside the engine where the fit's real runs
  // executed it (measured_blocks[].engine_ms); the simulator uses it instead of
  // engine_overhead's scale and fixed costs for that block.
  std::map<MeasuredBlockKey, double> measured_engine_ms;
  // Optional with it: the bytes the block held resident on that processor in the fit's real
  // library (packed weights and what the backend keeps; measured_blocks[].resident_bytes). The
  // simulator charges them to memory instead of the manifest's stored weight bytes: packed
  // formats differ from the manifest's CSR-or-dense estimate (latency-scale SparseLoom plan:
  // 103 MB by the manifest, 328 MB packed), so a memory budget binds as it does for real.
  std::map<MeasuredBlockKey, double> measured_resident_bytes;
  // Optional with it: the block's cold load time in the fit's real library (file read, import,
  // pack; measured_blocks[].load_ms). The discrete-event engine stalls a demand load for it
  // instead of EngineOptions::sim_load_ms_per_mib x its bytes (0.5 ms/MiB; the latency-scale
  // blocks load at 1.4 ms/MiB in the median, 0.07-8.4 from the 10th to the 90th percentile).
  std::map<MeasuredBlockKey, double> measured_load_ms;

  int index_of(const std::string& name) const {
    for (std::size_t i = 0; i < processors.size(); ++i)
      if (processors[i].name == name) return static_cast<int>(i);
    return -1;
  }
};

namespace detail {

inline double rate(const json::Field& f, const std::string& key, double hi = 1e12) {
  const double v = f.get<double>(key);
  check(std::isfinite(v) && v >= 0, ErrorCode::parse, f.where(key), "must be a non-negative number (got " + std::to_string(v) + ")");
  check(v <= hi, ErrorCode::parse, f.where(key), "implausibly large (" + std::to_string(v) + " > " + std::to_string(hi) + ")");
  return v;
}
inline double positive(const json::Field& f, const std::string& key, double hi = 1e12) {
  const double v = rate(f, key, hi);
  check(v > 0, ErrorCode::parse, f.where(key), "must be positive");
  return v;
}

inline SpeedupCurve curve(const json::Field& f) {
  SpeedupCurve c;
  const auto s = f["sparsity"], u = f["speedup"];
  check(s.size() == u.size() && s.size() >= 1 && s.size() <= 64, ErrorCode::parse, f.where(),
        "'sparsity' and 'speedup' need the same number of points (1 to 64)");
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double x = s[i].get<double>(), y = u[i].get<double>();
    check(std::isfinite(x) && x > 0 && x < 1, ErrorCode::parse, s[i].where(), "sparsity must lie in (0, 1)");
    check(i == 0 || x > c.sparsity.back(), ErrorCode::parse, s[i].where(), "sparsity points must ascend");
    check(std::isfinite(y) && y > 0 && y <= 1e4, ErrorCode::parse, u[i].where(), "speed-up must be positive");
    c.sparsity.push_back(x);
    c.speedup.push_back(y);
  }
  return c;
}

inline ProcessorModel processor(const json::Field& f) {
  ProcessorModel p;
  p.name = f.get<std::string>("name");
  check(!p.name.empty(), ErrorCode::parse, f.where("name"), "empty");
  p.kind = f.get<std::string>("kind");
  check(p.kind == "cpu" || p.kind == "gpu" || p.kind == "npu", ErrorCode::parse, f.where("kind"),
        "'" + p.kind + "' (expected cpu, gpu or npu)");
  const auto peak = f["peak_gflops"];
  p.peak_f32 = rate(peak, "f32");
  p.peak_f16 = rate(peak, "f16");
  p.peak_int8 = rate(peak, "int8");
  const auto dt = f["dtypes"];
  check(dt.size() >= 1 && dt.size() <= 3, ErrorCode::parse, dt.where(), "one to three of f32, f16, int8");
  for (std::size_t i = 0; i < dt.size(); ++i) {
    const auto d = dt[i].get<std::string>();
    check(d == "f32" || d == "f16" || d == "int8", ErrorCode::parse, dt[i].where(), "unknown dtype '" + d + "' (expected f32, f16 or int8)");
    check(p.peak(d) > 0, ErrorCode::parse, peak.where(d), "must be positive: the processor runs " + d);
    p.dtypes.insert(d);
  }
  p.float_dtype = f.get_or<std::string>("float_dtype", p.runs_dtype("f32") ? "f32" : "f16");
  check(p.float_dtype == "f32" || p.float_dtype == "f16", ErrorCode::parse, f.where("float_dtype"), "'" + p.float_dtype + "' (expected f32 or f16)");
  p.compute_efficiency = f.has("compute_efficiency") ? positive(f, "compute_efficiency", 1.0) : 1.0;
  p.memory_bandwidth_gbps = positive(f, "memory_bandwidth_gbps", 1e5);
  p.launch_overhead_ms = rate(f, "launch_overhead_ms", 1e4);
  p.kernel_overhead_ms = f.has("kernel_overhead_ms") ? rate(f, "kernel_overhead_ms", 1e4) : 0.0;
  if (f.has("sparse_speedup")) {
    const auto sp = f["sparse_speedup"];
    check(sp.raw().is_object(), ErrorCode::parse, sp.where(), "expected an object keyed by format");
    for (const auto& [k, _] : sp.raw().items()) {
      Format fmt;
      if (k == "unstructured") fmt = Format::unstructured;
      else if (k == "block") fmt = Format::block;
      else if (k == "2:4") fmt = Format::semi24;
      else throw Error(ErrorCode::parse, sp.where(k), "unknown sparse format '" + k + "' (expected unstructured, block or 2:4)");
      p.sparse[fmt] = curve(sp[k]);
    }
  }
  const auto ops = f["ops"];
  if (ops.raw().is_string()) {
    check(ops.get<std::string>() == "all", ErrorCode::parse, ops.where(), "expected \"all\" or a list of ONNX op types");
    p.all_ops = true;
  } else {
    check(ops.size() >= 1, ErrorCode::parse, ops.where(), "at least one op");
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const auto op = ops[i].get<std::string>();
      check(ir::supported_ops().count(op) != 0, ErrorCode::parse, ops[i].where(), "unknown op '" + op + "'");
      p.ops.insert(op);
    }
  }
  const auto pw = f["power_w"];
  p.idle_w = rate(pw, "idle", 1e4);
  p.active_w = rate(pw, "active", 1e4);
  check(p.active_w >= p.idle_w, ErrorCode::parse, pw.where("active"), "active power below idle power");
  return p;
}

}  // namespace detail


// Parses a profile document; `source` names it in errors (a path, or "<bytes>").
inline SocProfile parse_profile(const json::Field& root) {
  json::check_schema(root, kProcessorProfileSchema);
  SocProfile s;
  s.name = root.get<std::string>("name");
  s.description = root.get_or<std::string>("description", "");
  s.fitted = root.get_or<bool>("fitted", false);
  const auto src = root["sources"];
  check(src.size() >= 1, ErrorCode::parse, src.where(), "cite at least one source for the numbers");
  for (std::size_t i = 0; i < src.size(); ++i) s.sources.push_back(src[i].get<std::string>());
  const auto soc = root["soc"];
  s.soc.memory_bandwidth_gbps = detail::positive(soc, "memory_bandwidth_gbps", 1e5);
  s.soc.memory_capacity_bytes = detail::positive(soc, "memory_capacity_bytes", 1e15);
  s.soc.dram_pj_per_byte = detail::rate(soc, "dram_pj_per_byte", 1e4);
  const auto tr = root["transfer"];
  s.transfer.latency_ms = detail::rate(tr, "latency_ms", 1e4);
  s.transfer.bandwidth_gbps = detail::positive(tr, "bandwidth_gbps", 1e5);
  const auto procs = root["processors"];
  check(procs.size() >= 1 && procs.size() <= 64, ErrorCode::parse, procs.where(), "one to 64 processors");
  for (std::size_t i = 0; i < procs.size(); ++i) {
    auto p = detail::processor(procs[i]);
    check(s.index_of(p.name) < 0, ErrorCode::parse, procs[i].where("name"), "duplicate processor '" + p.name + "'");
    s.processors.push_back(std::move(p));
  }
  if (root.has("engine_overhead")) s.engine = parse_engine_overhead(root["engine_overhead"]);
  if (root.has("measured_blocks")) {
    const auto mb = root["measured_blocks"];
    check(mb.raw().is_array() && mb.size() <= 1000000, ErrorCode::parse, mb.where(), "expected a list of at most 1e6 blocks");
    for (std::size_t i = 0; i < mb.size(); ++i) {
      const auto e = mb[i];
      const auto task = e.get<std::string>("task"), variant = e.get<std::string>("variant"), proc = e.get<std::string>("processor");
      const int block = e.get<int>("block");
      check(block >= 0 && block < 4096, ErrorCode::parse, e.where("block"), "must lie in [0, 4096)");
      check(s.index_of(proc) >= 0, ErrorCode::parse, e.where("processor"), "the profile has no processor '" + proc + "'");
      const double ms = detail::positive(e, "ms", 1e6);
      const MeasuredBlockKey key{task, block, variant, proc};
      if (e.has("engine_ms")) s.measured_engine_ms[key] = detail::positive(e, "engine_ms", 1e6);
      if (e.has("resident_bytes")) s.measured_resident_bytes[key] = detail::rate(e, "resident_bytes", 1e13);
      if (e.has("load_ms")) s.measured_load_ms[key] = detail::rate(e, "load_ms", 1e6);
      check(s.measured_block_ms.emplace(key, ms).second, ErrorCode::parse, e.where(),
            "duplicate block " + task + " block " + std::to_string(block) + " variant " + variant + " on " + proc);
    }
  }
  return s;
}

inline SocProfile parse_profile(const json::Json& doc, const std::string& source) {
  auto s = parse_profile(json::Field(doc, source));
  s.source_file = source;
  return s;
}

// From a file: errors also name the line.
inline SocProfile load_profile(const std::filesystem::path& path) {
  const auto doc = json::load_document(path);
  auto s = parse_profile(doc.root());
  s.source_file = path.string();
  return s;
}

// The inverse of parse_profile (what --fit-profile writes).
inline json::Json to_json(const SocProfile& s) {
  json::Json j;
  j["schema_version"] = kProcessorProfileSchema;
  j["name"] = s.name;
  j["description"] = s.description;
  j["fitted"] = s.fitted;
  j["sources"] = s.sources;
  j["soc"] = {{"memory_bandwidth_gbps", s.soc.memory_bandwidth_gbps},
              {"memory_capacity_bytes", s.soc.memory_capacity_bytes},
              {"dram_pj_per_byte", s.soc.dram_pj_per_byte}};
  j["transfer"] = {{"latency_ms", s.transfer.latency_ms}, {"bandwidth_gbps", s.transfer.bandwidth_gbps}};
  for (const auto& p : s.processors) {
    json::Json jp{{"name", p.name}, {"kind", p.kind},
                  {"peak_gflops", {{"f32", p.peak_f32}, {"f16", p.peak_f16}, {"int8", p.peak_int8}}},
                  {"float_dtype", p.float_dtype}, {"compute_efficiency", p.compute_efficiency},
                  {"memory_bandwidth_gbps", p.memory_bandwidth_gbps}, {"launch_overhead_ms", p.launch_overhead_ms},
                  {"kernel_overhead_ms", p.kernel_overhead_ms},
                  {"dtypes", std::vector<std::string>(p.dtypes.begin(), p.dtypes.end())},
                  {"power_w", {{"idle", p.idle_w}, {"active", p.active_w}}}};
    if (p.all_ops) jp["ops"] = "all";
    else jp["ops"] = std::vector<std::string>(p.ops.begin(), p.ops.end());
    for (const auto& [fmt, c] : p.sparse) jp["sparse_speedup"][to_string(fmt)] = {{"sparsity", c.sparsity}, {"speedup", c.speedup}};
    j["processors"].push_back(jp);
  }
  if (s.engine) j["engine_overhead"] = to_json(*s.engine);
  for (const auto& [key, ms] : s.measured_block_ms) {
    const auto& [task, block, variant, proc] = key;
    json::Json e{{"task", task}, {"block", block}, {"variant", variant}, {"processor", proc}, {"ms", ms}};
    if (const auto it = s.measured_engine_ms.find(key); it != s.measured_engine_ms.end()) e["engine_ms"] = it->second;
    if (const auto it = s.measured_resident_bytes.find(key); it != s.measured_resident_bytes.end()) e["resident_bytes"] = it->second;
    if (const auto it = s.measured_load_ms.find(key); it != s.measured_load_ms.end()) e["load_ms"] = it->second;
    j["measured_blocks"].push_back(std::move(e));
  }
  return j;
}

}  // namespace sparseloom::sim
