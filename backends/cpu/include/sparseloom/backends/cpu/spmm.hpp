#pragma once
// Prepared sparse matmuls: Y(MxN) = epilogue(W(MxK, sparse) * X(KxN)), batch 1, row-major.
// Describe once (pack W for a fixed N and a kernel), run many times — oneDNN's primitive idea.
//
//   SpmmF32 mm(Format::csr, w, m, k, n, Epilogue::relu().with_bias(b));   // pack + pick kernel
//   mm.run(x, y, pool);                                                    // Y = relu(W*X + b)
//
// Threads get contiguous row ranges balanced by nonzeros (not by rows).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "sparseloom/backends/cpu/cpu_features.hpp"
#include "sparseloom/backends/cpu/epilogue.hpp"
#include "sparseloom/backends/cpu/kernels/registry.hpp"
#include "sparseloom/backends/cpu/sparse_pack.hpp"
#include "sparseloom/backends/cpu/thread_pool.hpp"

namespace sparseloom::cpu {

// Splits [0, rows) into `parts` contiguous ranges with about equal work, where work of
// rows [0, r) is prefix[r] (a CSR/BSR pointer array) plus `row_cost` per row (the epilogue).
inline std::vector<std::int64_t> balance_rows(const std::vector<std::int32_t>& prefix, int parts,
                                              double row_cost = 0) {
  const auto rows = static_cast<std::int64_t>(prefix.size()) - 1;
  std::vector<std::int64_t> bounds(static_cast<std::size_t>(parts) + 1, rows);
  bounds[0] = 0;
  auto work = [&](std::int64_t r) { return static_cast<double>(prefix[static_cast<std::size_t>(r)]) + row_cost * static_cast<double>(r); };
  const double total = work(rows);
  std::int64_t r = 0;
  for (int p = 1; p < parts; ++p) {
    const double target = total * p / parts;
    while (r < rows && work(r) < target) ++r;
    bounds[static_cast<std::size_t>(p)] = r;
  }
  return bounds;
}

namespace detail {
template <class U>
U pick_ukernel(const std::vector<U>& list, const std::string& name, int default_tile, const char* where) {
  check(!list.empty(), ErrorCode::unsupported, where, "no microkernel for this ISA on this CPU");
  if (!name.empty()) {
    for (const auto& u : list)
      if (name == u.name) return u;
    throw Error(ErrorCode::invalid_argument, where, "unknown microkernel '" + name + "'");
  }
  for (const auto& u : list)
    if (u.n_tile == default_tile) return u;
  return list.front();
}
// Highest family at or below `isa` that has kernels for the given lister.
template <class Lister>
Isa usable_isa(Isa isa, Lister&& list) {
  for (int i = static_cast<int>(isa); i >= 0; --i)
    if (!list(static_cast<Isa>(i)).empty()) return static_cast<Isa>(i);
  return Isa::scalar;
}
}  // namespace detail

// Sparse f32 matmul in CSR, BSR 4x1 / 8x1 or 2:4 (Format::csr/bsr4x1/bsr8x1/sparse24).
class SpmmF32 {
 public:
  // Packs dense row-major w (m x k) for activations X of n columns (row stride n).
  // `ukernel` names a registry kernel (empty: the family's default tile); `isa` caps the family.
  // `threads` is the number of row ranges run() splits the work into. `kc` > 0 walks K in
  // chunks of kc columns (CSR, 2:4; see CsrF32) so a slice of X stays in L1; BSR ignores it.
  SpmmF32(Format format, const float* w, std::int64_t m, std::int64_t k, std::int64_t n,
          const Epilogue& epilogue = {}, int threads = 1, Isa isa = cpu_features().best_isa(),
          const std::string& ukernel = {}, std::int64_t kc = 0)
      : format_(format), m_(m), k_(k), n_(n), epi_(epilogue, m) {
    check(threads >= 1, ErrorCode::invalid_argument, "cpu::SpmmF32", "threads must be >= 1");
    isa = std::min(isa, cpu_features().best_isa());
    switch (format) {
      case Format::csr: {
        auto csr = pack_csr(w, m, k, n, kc);
        isa = detail::usable_isa(isa, [](Isa i) { return csr_ukernels(i); });
        const auto u = detail::pick_ukernel(csr_ukernels(isa), ukernel, isa == Isa::avx512 ? 64 : 32, "cpu::SpmmF32(csr)");
        name_ = u.name;
        if (csr.kc) name_ += "/kc" + std::to_string(csr.kc);
        bounds_ = balance_rows(csr.row_ptr, threads, 2.0);
        bytes_ = csr.bytes();
        packed_ = std::make_shared<const Packed>(Packed{std::move(csr)});
        fn_ = u.fn;
        break;
      }
      case Format::bsr4x1:
      case Format::bsr8x1: {
        const int r = format == Format::bsr4x1 ? 4 : 8;
        auto bsr = pack_bsr(w, m, k, n, r);
        isa = detail::usable_isa(isa, [r](Isa i) { return bsr_ukernels(i, r); });
        const int def = isa == Isa::avx512 ? (r == 4 ? 64 : 32) : 16;
        const auto u = detail::pick_ukernel(bsr_ukernels(isa, r), ukernel, def, "cpu::SpmmF32(bsr)");
        name_ = u.name;
        bounds_ = balance_rows(bsr.blk_ptr, threads, 2.0 * r);
        bytes_ = bsr.bytes();
        packed_ = std::make_shared<const Packed>(Packed{std::move(bsr)});
        fn_ = u.fn;
        break;
      }
      case Format::sparse24: {
        auto s = pack_sparse24(w, m, k, n, kc);
        isa = detail::usable_isa(isa, [](Isa i) { return sparse24_ukernels(i); });
        const auto u = detail::pick_ukernel(sparse24_ukernels(isa), ukernel, isa == Isa::avx512 ? 64 : 32, "cpu::SpmmF32(2:4)");
        name_ = u.name;
        if (s.gc) name_ += "/kc" + std::to_string(4 * s.gc);
        std::vector<std::int32_t> uniform(static_cast<std::size_t>(m + 1));
        for (std::int64_t i = 0; i <= m; ++i) uniform[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
        bounds_ = balance_rows(uniform, threads);
        bytes_ = s.bytes();
        packed_ = std::make_shared<const Packed>(Packed{std::move(s)});
        fn_ = u.fn;
        break;
      }
      default:
        throw Error(ErrorCode::unsupported, "cpu::SpmmF32", std::string("format ") + to_string(format) + " is not an f32 sparse format");
    }
    isa_ = isa;
  }

  // Y (m x n, row stride ldy; 0 = n) = epilogue(W * X), X k x n with row stride n. Uses
  // threads() tasks of `pool` (which must have at least that many threads). `epi`, when given,
  // replaces the packed epilogue for this call (m rows, padded as EpilogueArrays pads them):
  // the per-request stitch repair, with the packed weights shared.
  void run(const float* x, float* y, ThreadPool& pool, std::int64_t ldy = 0, const EpilogueArrays* epi = nullptr) const {
    const EpilogueArrays& e = epi ? *epi : epi_;
    F32SpmmArgs a;
    a.x = x;
    a.n = n_;
    a.y = y;
    a.ldy = ldy ? ldy : n_;
    a.scale = e.scale.data();
    a.shift = e.shift.data();
    a.lo = e.lo;
    a.hi = e.hi;
    const int parts = threads();
    pool.run(parts, [&](int t) {
      const std::int64_t r0 = bounds_[static_cast<std::size_t>(t)], r1 = bounds_[static_cast<std::size_t>(t) + 1];
      if (r0 < r1) run_rows(a, r0, r1);
    });
  }

  // A copy that reads row r of X at x + offset_of_k[r] (instead of x + r * n) and computes
  // `n` columns: X becomes a set of (possibly overlapping) windows of one buffer. A stride-1
  // convolution uses it as an implicit im2col over its zero-padded input (conv.hpp). CSR and
  // BSR only (2:4 kernels address X by row index).
  SpmmF32 with_row_offsets(const std::vector<std::int64_t>& offset_of_k, std::int64_t n) const {
    check(format_ != Format::sparse24, ErrorCode::unsupported, "cpu::SpmmF32::with_row_offsets", "2:4 addresses X by row");
    check(static_cast<std::int64_t>(offset_of_k.size()) == k_ && n > 0, ErrorCode::invalid_argument,
          "cpu::SpmmF32::with_row_offsets", "need one offset per row of X and n > 0");
    SpmmF32 c = *this;
    auto remap = [&](std::vector<std::int32_t>& col_off, std::int64_t ldx) {
      for (auto& o : col_off) {
        const std::int64_t to = offset_of_k[static_cast<std::size_t>(o / ldx)];
        check(to >= 0 && to <= INT32_MAX, ErrorCode::shape, "cpu::SpmmF32::with_row_offsets", "offset out of range");
        o = static_cast<std::int32_t>(to);
      }
    };
    Packed p = *packed_;
    if (auto* csr = std::get_if<CsrF32>(&p)) remap(csr->col_off, csr->ldx);
    else if (auto* bsr = std::get_if<BsrF32>(&p)) remap(bsr->col_off, bsr->ldx);
    c.packed_ = std::make_shared<const Packed>(std::move(p));
    c.n_ = n;
    return c;
  }

  Format format() const noexcept { return format_; }
  Isa isa() const noexcept { return isa_; }
  const std::string& ukernel_name() const noexcept { return name_; }
  int threads() const noexcept { return static_cast<int>(bounds_.size()) - 1; }
  std::size_t weight_bytes() const noexcept { return bytes_; }
  std::int64_t m() const noexcept { return m_; }
  std::int64_t k() const noexcept { return k_; }
  std::int64_t n() const noexcept { return n_; }

 private:
  using Packed = std::variant<CsrF32, BsrF32, Sparse24F32>;
  using Fn = std::variant<CsrUkernelFn, BsrUkernelFn, Sparse24UkernelFn>;

  // Rows (block rows for BSR) [r0, r1).
  void run_rows(const F32SpmmArgs& a, std::int64_t r0, std::int64_t r1) const {
    switch (packed_->index()) {
      case 0: std::get<0>(fn_)(std::get<0>(*packed_), a, r0, r1); break;
      case 1: std::get<1>(fn_)(std::get<1>(*packed_), a, r0, r1); break;
      default: std::get<2>(fn_)(std::get<2>(*packed_), a, r0, r1); break;
    }
  }

  Format format_;
  Isa isa_ = Isa::scalar;
  std::int64_t m_, k_, n_;
  EpilogueArrays epi_;
  std::shared_ptr<const Packed> packed_;  // shared: copies of a prepared layer share weights
  Fn fn_;
  std::string name_;
  std::vector<std::int64_t> bounds_;
  std::size_t bytes_ = 0;
};

// Activation quantisation of an INT8 layer: real = scale * (q - zero_point), q in u8.
struct ActivationQuant {
  float scale = 1.f;
  std::int32_t zero_point = 0;
};

// Sparse INT8 matmul (Format::int8_1x4): u8 X x s8 W (per-row scale) -> s32 -> f32 epilogue.
// Unstructured INT8 sparsity packs into zero-filled 1x4 K-blocks, so one VNNI dot product
// serves a block.
class SpmmQu8 {
 public:
  // q: s8 weights (m x k, row-major) with per-row scales w_scale; X quantised with xq.
  // `kc` > 0 walks K in chunks of kc columns, as SpmmF32.
  SpmmQu8(const std::int8_t* q, const float* w_scale, std::int64_t m, std::int64_t k, std::int64_t n,
          ActivationQuant xq, const Epilogue& epilogue = {}, int threads = 1,
          Isa isa = cpu_features().best_isa(), const std::string& ukernel = {}, std::int64_t kc = 0)
      : m_(m), k_(k), n_(n), epi_(epilogue, m) {
    check(threads >= 1, ErrorCode::invalid_argument, "cpu::SpmmQu8", "threads must be >= 1");
    auto p = pack_int8_1x4(q, w_scale, m, k, n, kc);
    // Fold dequantisation and the zero point: y = s*(acc - zp*rowsum)*ws*xs + b.
    for (std::int64_t i = 0; i < m; ++i) {
      const auto u = static_cast<std::size_t>(i);
      const float s = epi_.scale[u] * p.w_scale[u] * xq.scale;
      epi_.shift[u] -= s * static_cast<float>(xq.zero_point) * static_cast<float>(p.row_sum[u]);
      epi_.scale[u] = s;
    }
    isa = detail::usable_isa(std::min(isa, cpu_features().best_isa()), [](Isa i) { return qu8s8_ukernels(i); });
    const auto u = detail::pick_ukernel(qu8s8_ukernels(isa), ukernel, isa == Isa::avx512 ? 64 : 16, "cpu::SpmmQu8");
    isa_ = isa;
    name_ = u.name;
    if (p.gc) name_ += "/kc" + std::to_string(4 * p.gc);
    fn_ = u.fn;
    bounds_ = balance_rows(p.row_ptr, threads, 2.0);
    bytes_ = p.bytes();
    packed_ = std::make_shared<const Int8Bsr1x4>(std::move(p));
    interleave_ = qu8_interleave_fn();
  }

  // Bytes of the per-call activation workspace: one interleaved copy of X per thread. Each
  // thread interleaves all of X itself (~5 % of the kernel's time at 90 % sparsity): sharing
  // one copy written by all threads made every thread fetch the other's half from its
  // cache, which cost more than the 2nd thread gained.
  std::size_t workspace_bytes() const noexcept { return threads() * per_thread_ws(); }

  // Y (m x n) = epilogue(dequant(W * X)), X u8 k x n (row stride n). `workspace` holds
  // workspace_bytes(); nullptr uses an internal buffer (then one run at a time per object).
  void run(const std::uint8_t* x, float* y, ThreadPool& pool, std::uint8_t* workspace = nullptr,
           std::int64_t ldy = 0) const {
    if (!workspace) {
      if (own_ws_.size() < workspace_bytes()) own_ws_.resize(workspace_bytes());
      workspace = own_ws_.data();
    }
    const Int8Bsr1x4& p = *packed_;
    Int8SpmmArgs a;
    a.n = n_;
    a.y = y;
    a.ldy = ldy ? ldy : n_;
    a.scale = epi_.scale.data();
    a.shift = epi_.shift.data();
    a.lo = epi_.lo;
    a.hi = epi_.hi;
    pool.run(threads(), [&](int t) {
      const std::int64_t r0 = bounds_[static_cast<std::size_t>(t)], r1 = bounds_[static_cast<std::size_t>(t) + 1];
      if (r0 >= r1) return;
      std::uint8_t* ws = workspace + static_cast<std::size_t>(t) * per_thread_ws();
      interleave_(x, k_, n_, n_, p.ldq, 0, p.groups, ws);
      Int8SpmmArgs at = a;
      at.xq = ws;
      fn_(p, at, r0, r1);
    });
  }

  Isa isa() const noexcept { return isa_; }
  const std::string& ukernel_name() const noexcept { return name_; }
  int threads() const noexcept { return static_cast<int>(bounds_.size()) - 1; }
  std::size_t weight_bytes() const noexcept { return bytes_; }
  std::int64_t m() const noexcept { return m_; }
  std::int64_t k() const noexcept { return k_; }
  std::int64_t n() const noexcept { return n_; }

 private:
  std::int64_t m_, k_, n_;
  EpilogueArrays epi_;
  std::shared_ptr<const Int8Bsr1x4> packed_;
  Int8UkernelFn fn_ = nullptr;
  InterleaveFn interleave_ = nullptr;
  Isa isa_ = Isa::scalar;
  std::string name_;
  std::vector<std::int64_t> bounds_;
  std::size_t bytes_ = 0;
  mutable std::vector<std::uint8_t> own_ws_;

  // Rounded to 64 bytes so threads' copies never share a cache line.
  std::size_t per_thread_ws() const noexcept {
    return (static_cast<std::size_t>(packed_->groups * packed_->ldq * 4) + 63) / 64 * 64;
  }
};

}  // namespace sparseloom::cpu
