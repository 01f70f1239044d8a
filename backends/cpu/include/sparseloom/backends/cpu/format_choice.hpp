#pragma once
// Per-layer format choice at prepare time: detect W's zero pattern, pack the plausible
// formats (oneDNN dense always among them), time each on this machine with the layer's
// thread count, keep the fastest. So a layer is never slower than dense *as measured at
// prepare time*; timings are short (a few runs each), so near-ties may flip between runs.
// Decisions are cached process-wide (FormatCache below): preparing the same weights again with
// the same options (a block reloaded after eviction) packs only the chosen format, untimed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "sparseloom/backends/cpu/format_decision.hpp"
#include "sparseloom/backends/cpu/onednn_dense.hpp"
#include "sparseloom/backends/cpu/spmm.hpp"

namespace sparseloom::cpu {

struct ChoiceOptions {
  int threads = 1;                        // threads the layer will run on
  Isa isa = cpu_features().best_isa();    // cap for our kernels (oneDNN has its own cap)
  bool allow_dense = true;                // oneDNN dense as a candidate
  std::vector<Format> formats;            // empty: every plausible format
  double budget_ms = 3.0;                 // trial time per candidate (at least 3 runs)
  bool qu8_native = false;                // INT8 dense timed by run_nk (caller keeps X^T, Y^T)
  bool use_cache = true;                  // reuse an earlier decision for the same weights (FormatCache)
};

namespace detail {
template <class F>
double time_min_ms(F&& f, double budget_ms) {
  using clock = std::chrono::steady_clock;
  f();  // warm-up
  double best = 1e300, spent = 0;
  for (int i = 0; i < 3 || (spent < budget_ms && i < 50); ++i) {
    const auto t0 = clock::now();
    f();
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    best = std::min(best, ms);
    spent += ms;
  }
  return best;
}

inline std::vector<Format> plausible_formats(const SparsityPattern& p) {
  std::vector<Format> f;
  if (p.sparsity >= 0.3) f.push_back(Format::csr);
  if (p.sparsity >= 0.3 && p.fill_4x1 >= 0.5) f.push_back(Format::bsr4x1);
  if (p.sparsity >= 0.3 && p.fill_8x1 >= 0.5) f.push_back(Format::bsr8x1);
  if (p.is_2of4) f.push_back(Format::sparse24);
  return f;
}

struct KernelTrial {
  std::string name;
  std::int64_t kc = 0;
};

// K-chunk that keeps a kc x tile slice of X in half of a 32 KiB L1.
inline std::int64_t l1_chunk(int n_tile) { return std::max<std::int64_t>(16, 16384 / (4 * n_tile) / 8 * 8); }

// The (microkernel, K-chunk) pairs worth timing for format f in family isa.
inline std::vector<KernelTrial> family_kernels(Format f, Isa isa) {
  std::vector<KernelTrial> v;
  if (f == Format::csr)
    for (auto& u : csr_ukernels(isa))
      for (std::int64_t kc : {std::int64_t{0}, l1_chunk(u.n_tile), 2 * l1_chunk(u.n_tile)}) v.push_back({u.name, kc});
  if (f == Format::bsr4x1) for (auto& u : bsr_ukernels(isa, 4)) v.push_back({u.name});
  if (f == Format::bsr8x1) for (auto& u : bsr_ukernels(isa, 8)) v.push_back({u.name});
  if (f == Format::sparse24)
    for (auto& u : sparse24_ukernels(isa))
      for (std::int64_t kc : {std::int64_t{0}, l1_chunk(u.n_tile), 2 * l1_chunk(u.n_tile)}) v.push_back({u.name, kc});
  // INT8 rows of X are 4x narrower, so the same L1 holds a 4x longer K-chunk.
  if (f == Format::int8_1x4)
    for (auto& u : qu8s8_ukernels(isa))
      for (std::int64_t kc : {std::int64_t{0}, 4 * l1_chunk(u.n_tile), 8 * l1_chunk(u.n_tile)}) v.push_back({u.name, kc});
  return v;
}

// 64-bit hash of a weight buffer (8 bytes a step): the cache key's identity of the weights.
inline std::uint64_t hash_bytes(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  auto mix = [&h](std::uint64_t w) {
    h ^= w;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    mix(w);
  }
  std::uint64_t tail = 0;
  if (n > i) std::memcpy(&tail, p + i, n - i);
  mix(tail);
  return h;
}
}  // namespace detail

// Process-wide, thread-safe cache of format decisions. Key: hash of the weight bytes, the
// shape (m, k, n), the kind (f32 / INT8) and every option that changes the trial (threads,
// ISA cap, allow_dense, formats, qu8_native, trial budget). Holds decisions only (a few hundred
// bytes per layer), never packed weights: a reload still reads and packs for real. Bounded:
// at kMaxEntries the oldest-keyed entries go first. Two prepares racing on a miss both trial;
// the last decision stays (either is a measured best).
class FormatCache {
 public:
  static constexpr std::size_t kMaxEntries = 1 << 14;
  struct Stats {
    std::uint64_t hits = 0, misses = 0;
    std::uint64_t trials = 0;  // candidates timed (each one a measured run of a packed format)
  };

  static FormatCache& instance() {
    static FormatCache c;
    return c;
  }

  std::optional<FormatDecision> find(const std::string& key) {
    std::lock_guard lk(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    ++stats_.hits;
    return it->second;
  }
  void store(const std::string& key, FormatDecision d) {
    std::lock_guard lk(mu_);
    if (map_.size() >= kMaxEntries && !map_.contains(key)) map_.erase(map_.begin());
    map_[key] = std::move(d);
  }
  void count_trial() { trials_.fetch_add(1, std::memory_order_relaxed); }
  Stats stats() const {
    std::lock_guard lk(mu_);
    Stats s = stats_;
    s.trials = trials_.load(std::memory_order_relaxed);
    return s;
  }
  std::size_t size() const {
    std::lock_guard lk(mu_);
    return map_.size();
  }
  // Forgets every decision (the next prepare of each layer trials again); counters stay.
  void clear() {
    std::lock_guard lk(mu_);
    map_.clear();
    flags_.clear();
  }

  // Every decision held, and adding earlier ones back (a FormatCache file,
  // format_cache_file.hpp): a key already decided in this process keeps its decision.
  using Entries = FormatDecisions;
  Entries entries() const {
    std::lock_guard lk(mu_);
    return {map_, flags_};
  }
  std::size_t add(Entries e) {
    std::lock_guard lk(mu_);
    std::size_t added = 0;
    for (auto& [k, d] : e.formats)
      if (map_.size() < kMaxEntries && map_.emplace(k, std::move(d)).second) ++added;
    for (const auto& [k, f] : e.flags)
      if (flags_.size() < kMaxEntries && flags_.emplace(k, f).second) ++added;
    return added;
  }

  // Any other timed yes/no choice made at prepare time (e.g. a conv's implicit-vs-im2col path):
  // `key` must name the choice and everything it depends on (hash_bytes of the weights, shape,
  // threads, trial budget); `decide` runs (and times) only on the first call per key.
  bool decision(const std::string& key, const std::function<bool()>& decide) {
    {
      std::lock_guard lk(mu_);
      if (auto it = flags_.find(key); it != flags_.end()) {
        ++stats_.hits;
        return it->second;
      }
      ++stats_.misses;
    }
    const bool d = decide();  // unlocked: it times kernels
    std::lock_guard lk(mu_);
    if (flags_.size() >= kMaxEntries && !flags_.contains(key)) flags_.erase(flags_.begin());
    flags_[key] = d;
    return d;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, FormatDecision> map_;
  std::map<std::string, bool> flags_;
  Stats stats_;
  std::atomic<std::uint64_t> trials_{0};
};

namespace detail {
// The cache key of one layer's trial (see FormatCache).
inline std::string choice_key(char kind, std::uint64_t weights, std::int64_t m, std::int64_t k, std::int64_t n,
                              Isa isa, const ChoiceOptions& o) {
  std::string key = std::string(1, kind) + ":" + std::to_string(weights) + ":" + std::to_string(m) + "x" +
                    std::to_string(k) + "x" + std::to_string(n) + ":t" + std::to_string(o.threads) + ":i" +
                    std::to_string(static_cast<int>(isa)) + ":d" + std::to_string(o.allow_dense) + ":q" +
                    std::to_string(o.qu8_native) + ":b" + std::to_string(o.budget_ms) + ":f";
  for (Format f : o.formats) key += std::to_string(static_cast<int>(f)) + ",";
  return key;
}
}  // namespace detail

// A prepared f32 matmul layer: Y (m x n) = epilogue(W * X) in the format that measured fastest.
class PreparedMatmul {
 public:
  using Impl = std::variant<SpmmF32, DenseF32>;
  PreparedMatmul(Impl impl, int threads, SparsityPattern pattern, std::vector<Candidate> tried, bool from_cache = false)
      : impl_(std::move(impl)), threads_(threads), pattern_(pattern), tried_(std::move(tried)), from_cache_(from_cache) {}

  // X (k x n) -> Y (m x n), row-major; `pool` must have at least threads() threads. `epi`,
  // when given, replaces the packed epilogue for this call (weights shared).
  void run(const float* x, float* y, ThreadPool& pool, const EpilogueArrays* epi = nullptr) const {
    if (auto* s = std::get_if<SpmmF32>(&impl_)) s->run(x, y, pool, 0, epi);
    else std::get<DenseF32>(impl_).run(x, y, threads_, epi);
  }
  Format format() const { return std::holds_alternative<DenseF32>(impl_) ? Format::dense : std::get<SpmmF32>(impl_).format(); }
  std::string kernel() const {
    return std::holds_alternative<DenseF32>(impl_) ? "onednn:" + std::get<DenseF32>(impl_).impl()
                                                   : std::get<SpmmF32>(impl_).ukernel_name();
  }
  std::size_t weight_bytes() const {
    return std::visit([](const auto& i) { return i.weight_bytes(); }, impl_);
  }
  int threads() const noexcept { return threads_; }
  // The chosen sparse implementation, or null when oneDNN dense won.
  const SpmmF32* sparse() const noexcept { return std::get_if<SpmmF32>(&impl_); }
  const SparsityPattern& pattern() const noexcept { return pattern_; }
  // The candidates of the trial that chose this format (from the cache: that earlier trial's).
  const std::vector<Candidate>& candidates() const noexcept { return tried_; }
  bool from_cache() const noexcept { return from_cache_; }

 private:
  Impl impl_;
  int threads_;
  SparsityPattern pattern_;
  std::vector<Candidate> tried_;
  bool from_cache_ = false;
};

// Packs dense row-major W (m x k) for X with n columns, choosing the format and microkernel
// by a short measured trial on `pool` (see ChoiceOptions).
inline PreparedMatmul prepare_matmul(const float* w, std::int64_t m, std::int64_t k, std::int64_t n,
                                     const Epilogue& epilogue, ThreadPool& pool, const ChoiceOptions& opt = {}) {
  check(opt.threads >= 1 && opt.threads <= pool.size(), ErrorCode::invalid_argument, "cpu::prepare_matmul",
        "threads must be in [1, pool size]");
  const auto pattern = detect_pattern(w, m, k);
  const Isa isa = std::min(opt.isa, cpu_features().best_isa());
  auto& cache = FormatCache::instance();
  std::string key;
  if (opt.use_cache) {
    key = detail::choice_key('f', detail::hash_bytes(w, static_cast<std::size_t>(m * k) * sizeof(float)), m, k, n, isa, opt);
    // A hit packs the decided format only. The 2:4 check guards a (64-bit) hash collision.
    if (auto d = cache.find(key); d && (d->format != Format::sparse24 || pattern.is_2of4)) {
      try {
        if (d->format == Format::dense)
          return PreparedMatmul(DenseF32(w, m, k, n, epilogue), opt.threads, pattern, std::move(d->candidates), true);
        return PreparedMatmul(SpmmF32(d->format, w, m, k, n, epilogue, opt.threads, isa, d->ukernel, d->kc), opt.threads, pattern,
                              std::move(d->candidates), true);
      } catch (const Error&) {
        // A decision this build cannot pack (a damaged or foreign FormatCache file): trial again.
      }
    }
  }
  std::vector<float> x(static_cast<std::size_t>(k * n)), y(static_cast<std::size_t>(m * n));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& v : x) v = d(rng);

  std::vector<Candidate> tried;
  std::optional<PreparedMatmul::Impl> best;
  FormatDecision chosen;
  double best_ms = 1e300;
  const auto formats = opt.formats.empty() ? detail::plausible_formats(pattern) : opt.formats;
  for (Format f : formats) {
    if (f == Format::dense) continue;
    if (f == Format::sparse24 && !pattern.is_2of4) continue;
    for (const auto& kt : detail::family_kernels(f, detail::usable_isa(isa, [f](Isa i) { return detail::family_kernels(f, i); }))) {
      SpmmF32 s(f, w, m, k, n, epilogue, opt.threads, isa, kt.name, kt.kc);
      const double ms = detail::time_min_ms([&] { s.run(x.data(), y.data(), pool); }, opt.budget_ms);
      cache.count_trial();
      tried.push_back({f, s.ukernel_name(), ms});
      if (ms < best_ms) best_ms = ms, best.emplace(std::move(s)), chosen = {f, kt.name, kt.kc, {}};
    }
  }
  const bool want_dense = opt.allow_dense &&
                          (opt.formats.empty() || std::find(opt.formats.begin(), opt.formats.end(), Format::dense) != opt.formats.end());
  if (want_dense || !best) {
    DenseF32 dn(w, m, k, n, epilogue);
    const double ms = detail::time_min_ms([&] { dn.run(x.data(), y.data(), opt.threads); }, opt.budget_ms);
    cache.count_trial();
    tried.push_back({Format::dense, "onednn:" + dn.impl(), ms});
    if (ms < best_ms || !best) best_ms = ms, best.emplace(std::move(dn)), chosen = {Format::dense, {}, 0, {}};
  }
  if (opt.use_cache) {
    chosen.candidates = tried;
    cache.store(key, std::move(chosen));
  }
  return PreparedMatmul(std::move(*best), opt.threads, pattern, std::move(tried));
}

// A prepared INT8 layer (u8 X, s8 W): our 1x4 sparse kernel or oneDNN's dense u8 x s8.
class PreparedMatmulQu8 {
 public:
  using Impl = std::variant<SpmmQu8, DenseQu8>;
  PreparedMatmulQu8(Impl impl, int threads, std::vector<Candidate> tried, bool from_cache = false)
      : impl_(std::move(impl)), threads_(threads), tried_(std::move(tried)), from_cache_(from_cache) {}
  void run(const std::uint8_t* x, float* y, ThreadPool& pool) const {
    if (auto* s = std::get_if<SpmmQu8>(&impl_)) s->run(x, y, pool);
    else std::get<DenseQu8>(impl_).run(x, y, threads_);
  }
  Format format() const { return std::holds_alternative<DenseQu8>(impl_) ? Format::int8_dense : Format::int8_1x4; }
  std::string kernel() const {
    return std::holds_alternative<DenseQu8>(impl_) ? "onednn:" + std::get<DenseQu8>(impl_).impl()
                                                   : std::get<SpmmQu8>(impl_).ukernel_name();
  }
  const std::vector<Candidate>& candidates() const noexcept { return tried_; }
  // The chosen implementation (one of the two is null), for callers with other layouts.
  const DenseQu8* dense() const noexcept { return std::get_if<DenseQu8>(&impl_); }
  const SpmmQu8* sparse() const noexcept { return std::get_if<SpmmQu8>(&impl_); }
  std::size_t weight_bytes() const {
    return std::visit([](const auto& i) { return i.weight_bytes(); }, impl_);
  }
  int threads() const noexcept { return threads_; }
  bool from_cache() const noexcept { return from_cache_; }

 private:
  Impl impl_;
  int threads_;
  std::vector<Candidate> tried_;
  bool from_cache_ = false;
};

// Same choice for an INT8 layer: quantised W (s8, per-row scale), activations quantised by xq.
inline PreparedMatmulQu8 prepare_matmul_qu8(const std::int8_t* q, const float* w_scale, std::int64_t m,
                                            std::int64_t k, std::int64_t n, ActivationQuant xq,
                                            const Epilogue& epilogue, ThreadPool& pool,
                                            const ChoiceOptions& opt = {}) {
  const Isa isa = detail::usable_isa(std::min(opt.isa, cpu_features().best_isa()), [](Isa i) { return qu8s8_ukernels(i); });
  auto& cache = FormatCache::instance();
  std::string key;
  if (opt.use_cache) {
    key = detail::choice_key('q', detail::hash_bytes(q, static_cast<std::size_t>(m * k)), m, k, n, isa, opt);
    if (auto d = cache.find(key)) {
      try {
        if (d->format == Format::int8_dense)
          return PreparedMatmulQu8(DenseQu8(q, w_scale, m, k, n, xq, epilogue), opt.threads, std::move(d->candidates), true);
        return PreparedMatmulQu8(SpmmQu8(q, w_scale, m, k, n, xq, epilogue, opt.threads, isa, d->ukernel, d->kc), opt.threads,
                                 std::move(d->candidates), true);
      } catch (const Error&) {
        // As for f32: a decision this build cannot pack is a miss.
      }
    }
  }
  std::vector<std::uint8_t> x(static_cast<std::size_t>(k * n));
  std::vector<float> y(static_cast<std::size_t>(m * n));
  std::mt19937 rng(7);
  for (auto& v : x) v = static_cast<std::uint8_t>(rng());
  std::vector<Candidate> tried;
  std::optional<PreparedMatmulQu8::Impl> best;
  FormatDecision chosen;
  double best_ms = 1e300;
  std::int64_t nnz = 0;
  for (std::int64_t i = 0; i < m * k; ++i) nnz += q[i] != 0;
  if (static_cast<double>(nnz) <= 0.7 * static_cast<double>(m * k)) {
    for (const auto& kt : detail::family_kernels(Format::int8_1x4, isa)) {
      SpmmQu8 s(q, w_scale, m, k, n, xq, epilogue, opt.threads, isa, kt.name, kt.kc);
      const double ms = detail::time_min_ms([&] { s.run(x.data(), y.data(), pool); }, opt.budget_ms);
      cache.count_trial();
      tried.push_back({Format::int8_1x4, s.ukernel_name(), ms});
      if (ms < best_ms) best_ms = ms, best.emplace(std::move(s)), chosen = {Format::int8_1x4, kt.name, kt.kc, {}};
    }
  }
  if (opt.allow_dense || !best) {
    DenseQu8 dn(q, w_scale, m, k, n, xq, epilogue);
    // With qu8_native the caller runs oneDNN's native (token-major) layout through run_nk, so
    // the transposes of run() are not its cost (cpu::Backend); else run() is timed as called.
    const double ms = detail::time_min_ms([&] {
      if (opt.qu8_native) dn.run_nk(x.data(), y.data(), opt.threads);
      else dn.run(x.data(), y.data(), opt.threads);
    }, opt.budget_ms);
    cache.count_trial();
    tried.push_back({Format::int8_dense, "onednn:" + dn.impl(), ms});
    if (ms < best_ms || !best) best_ms = ms, best.emplace(std::move(dn)), chosen = {Format::int8_dense, {}, 0, {}};
  }
  if (opt.use_cache) {
    chosen.candidates = tried;
    cache.store(key, std::move(chosen));
  }
  return PreparedMatmulQu8(std::move(*best), opt.threads, std::move(tried));
}

}  // namespace sparseloom::cpu
