#pragma once
// Sparse weight formats for Y(MxN) = W(MxK) * X(KxN), and packing from a dense row-major W.
// Every offset into X is pre-multiplied by X's row stride `ldx` (elements), as XNNPACK stores
// byte deltas, so the kernels' inner loops do no index arithmetic. A packed W is therefore
// bound to the ldx (usually N) it was packed for.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::cpu {

enum class Format : std::uint8_t { dense, csr, bsr4x1, bsr8x1, sparse24, int8_1x4, int8_dense };

constexpr const char* to_string(Format f) noexcept {
  switch (f) {
    case Format::dense: return "dense";
    case Format::csr: return "csr";
    case Format::bsr4x1: return "bsr4x1";
    case Format::bsr8x1: return "bsr8x1";
    case Format::sparse24: return "2:4";
    case Format::int8_1x4: return "int8-1x4";
    case Format::int8_dense: return "int8-dense";
  }
  return "?";
}

// Compressed sparse rows, f32. With kc > 0 the nonzeros are split into K-chunks of kc
// columns, stored chunk-major (chunk 0 of every row, then chunk 1, ...), so a kernel can keep
// a kc x tile slice of X in L1 while all rows stream their nonzeros of that chunk.
struct CsrF32 {
  std::int64_t m = 0, k = 0, ldx = 0;
  std::int64_t kc = 0;                // 0: not chunked
  std::vector<std::int32_t> row_ptr;  // m + 1: nonzeros before each row (indexes val if kc == 0)
  std::vector<std::int32_t> seg_ptr;  // kc > 0: chunks * m + 1, start of (chunk, row) in val
  std::vector<std::int32_t> col_off;  // column * ldx, one per nonzero
  std::vector<float> val;
  std::int64_t chunks() const noexcept { return kc ? (k + kc - 1) / kc : 1; }
  std::int64_t nnz() const noexcept { return static_cast<std::int64_t>(val.size()); }
  std::size_t bytes() const noexcept {
    return row_ptr.size() * 4 + seg_ptr.size() * 4 + col_off.size() * 4 + val.size() * 4;
  }
};

// Block sparse rows with R x 1 blocks (R consecutive rows share a column), f32. M is padded
// to a multiple of R with zero rows; block b's values are val[b*R .. b*R+R).
struct BsrF32 {
  int r = 4;
  std::int64_t m = 0, k = 0, ldx = 0;
  std::vector<std::int32_t> blk_ptr;  // ceil(m/r) + 1
  std::vector<std::int32_t> col_off;  // column * ldx, one per block
  std::vector<float> val;             // r per block
  std::int64_t block_rows() const noexcept { return (m + r - 1) / r; }
  std::int64_t blocks() const noexcept { return static_cast<std::int64_t>(col_off.size()); }
  std::size_t bytes() const noexcept { return blk_ptr.size() * 4 + col_off.size() * 4 + val.size() * 4; }
};

// 2:4 semi-structured, f32: in every group of 4 consecutive K of a row at most 2 nonzeros.
// Per (row, group): 2 values and one byte holding both in-group indices (2 bits each).
struct Sparse24F32 {
  std::int64_t m = 0, k = 0, ldx = 0;
  std::int64_t groups = 0;   // ceil(k / 4)
  std::int64_t gc = 0;       // groups per K-chunk (0: not chunked); layout is unchanged
  std::vector<float> val;    // m * groups * 2
  std::vector<std::uint8_t> idx;  // m * groups: i0 | i1 << 2
  std::size_t bytes() const noexcept { return val.size() * 4 + idx.size(); }
};

// INT8 sparse with 1x4 blocks along K (4 consecutive K of one row, zero-filled), so one
// VNNI dot product (u8 x s8, 4-way) serves a block. Unstructured INT8 sparsity uses it too.
// Activations are u8 with a per-tensor scale/zero point and are interleaved per call into
// [ceil(K/4)][ldq][4] bytes; `blk_off` is the block's K-group * ldq * 4 (byte offset).
struct Int8Bsr1x4 {
  std::int64_t m = 0, k = 0, groups = 0;
  std::int64_t ldq = 0;                  // N rounded up to a multiple of 16
  std::int64_t gc = 0;                   // K-groups per chunk (0: not chunked), as CsrF32::kc
  std::vector<std::int32_t> row_ptr;     // m + 1: blocks before each row (indexes blocks if gc == 0)
  std::vector<std::int32_t> seg_ptr;     // gc > 0: chunks * m + 1, start of (chunk, row)
  std::vector<std::int32_t> blk_off;     // group * ldq * 4
  std::vector<std::int8_t> val;          // 4 per block
  std::vector<std::int32_t> row_sum;     // sum of a row's weights (zero-point correction)
  std::vector<float> w_scale;            // per-row weight scale
  std::int64_t chunks() const noexcept { return gc ? (groups + gc - 1) / gc : 1; }
  std::size_t bytes() const noexcept {
    return row_ptr.size() * 4 + seg_ptr.size() * 4 + blk_off.size() * 4 + val.size() + row_sum.size() * 4 +
           w_scale.size() * 4;
  }
};

// What a dense W's zeros look like; drives the format choice.
struct SparsityPattern {
  std::int64_t m = 0, k = 0, nnz = 0;
  double sparsity = 0;     // zeros / (m*k)
  bool is_2of4 = false;    // every group of 4 consecutive K in a row has <= 2 nonzeros
  double fill_4x1 = 0;     // nnz / (4 * nonempty 4x1 blocks): 1 for perfectly 4x1-blocked W
  double fill_8x1 = 0;
  double fill_1x4 = 0;     // nnz / (4 * nonempty 1x4 blocks along K)
};

inline SparsityPattern detect_pattern(const float* w, std::int64_t m, std::int64_t k) {
  SparsityPattern p;
  p.m = m;
  p.k = k;
  p.is_2of4 = true;
  std::int64_t b4 = 0, b8 = 0, b14 = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    const float* row = w + i * k;
    for (std::int64_t g = 0; g < k; g += 4) {
      int c = 0;
      for (std::int64_t j = g; j < std::min(g + 4, k); ++j) c += row[j] != 0.f;
      p.nnz += c;
      b14 += c > 0;
      if (c > 2) p.is_2of4 = false;
    }
  }
  for (std::int64_t i0 = 0; i0 < m; i0 += 4)
    for (std::int64_t j = 0; j < k; ++j) {
      bool any4 = false;
      for (std::int64_t i = i0; i < std::min(i0 + 4, m); ++i) any4 |= w[i * k + j] != 0.f;
      b4 += any4;
    }
  for (std::int64_t i0 = 0; i0 < m; i0 += 8)
    for (std::int64_t j = 0; j < k; ++j) {
      bool any8 = false;
      for (std::int64_t i = i0; i < std::min(i0 + 8, m); ++i) any8 |= w[i * k + j] != 0.f;
      b8 += any8;
    }
  const double total = static_cast<double>(m) * static_cast<double>(k);
  p.sparsity = total > 0 ? 1.0 - static_cast<double>(p.nnz) / total : 0.0;
  p.fill_4x1 = b4 ? static_cast<double>(p.nnz) / (4.0 * static_cast<double>(b4)) : 1.0;
  p.fill_8x1 = b8 ? static_cast<double>(p.nnz) / (8.0 * static_cast<double>(b8)) : 1.0;
  p.fill_1x4 = b14 ? static_cast<double>(p.nnz) / (4.0 * static_cast<double>(b14)) : 1.0;
  return p;
}

namespace detail {
inline void check_pack_args(std::int64_t m, std::int64_t k, std::int64_t ldx, const char* where) {
  check(m > 0 && k > 0, ErrorCode::shape, where, "W must have M > 0 and K > 0");
  check(ldx > 0, ErrorCode::invalid_argument, where, "ldx (row stride of X) must be > 0");
  check(k * ldx < std::numeric_limits<std::int32_t>::max(), ErrorCode::unsupported, where,
        "K * ldx does not fit the 32-bit offsets");
}
}  // namespace detail

// Packs dense row-major W (m x k) into CSR (K-chunked when kc > 0); exact zeros are dropped.
inline CsrF32 pack_csr(const float* w, std::int64_t m, std::int64_t k, std::int64_t ldx, std::int64_t kc = 0) {
  detail::check_pack_args(m, k, ldx, "cpu::pack_csr");
  check(kc >= 0, ErrorCode::invalid_argument, "cpu::pack_csr", "kc must be >= 0");
  CsrF32 c;
  c.m = m;
  c.k = k;
  c.ldx = ldx;
  c.kc = kc >= k ? 0 : kc;
  c.row_ptr.reserve(static_cast<std::size_t>(m + 1));
  c.row_ptr.push_back(0);
  for (std::int64_t i = 0; i < m; ++i) {
    std::int32_t nz = 0;
    for (std::int64_t j = 0; j < k; ++j) nz += w[i * k + j] != 0.f;
    c.row_ptr.push_back(c.row_ptr.back() + nz);
  }
  const std::int64_t step = c.kc ? c.kc : k;
  for (std::int64_t j0 = 0; j0 < k; j0 += step)
    for (std::int64_t i = 0; i < m; ++i) {
      if (c.kc) c.seg_ptr.push_back(static_cast<std::int32_t>(c.val.size()));
      for (std::int64_t j = j0; j < std::min(j0 + step, k); ++j) {
        const float v = w[i * k + j];
        if (v != 0.f) {
          c.val.push_back(v);
          c.col_off.push_back(static_cast<std::int32_t>(j * ldx));
        }
      }
    }
  if (c.kc) c.seg_ptr.push_back(static_cast<std::int32_t>(c.val.size()));
  return c;
}

// Packs W into R x 1 blocks (r = 4 or 8); a block is kept when any of its R values is
// nonzero, so unstructured W packs too (with explicit zeros).
inline BsrF32 pack_bsr(const float* w, std::int64_t m, std::int64_t k, std::int64_t ldx, int r) {
  detail::check_pack_args(m, k, ldx, "cpu::pack_bsr");
  check(r == 4 || r == 8, ErrorCode::unsupported, "cpu::pack_bsr", "block height must be 4 or 8");
  BsrF32 b;
  b.r = r;
  b.m = m;
  b.k = k;
  b.ldx = ldx;
  b.blk_ptr.push_back(0);
  for (std::int64_t i0 = 0; i0 < m; i0 += r) {
    for (std::int64_t j = 0; j < k; ++j) {
      bool any = false;
      for (std::int64_t i = i0; i < std::min<std::int64_t>(i0 + r, m); ++i) any |= w[i * k + j] != 0.f;
      if (!any) continue;
      b.col_off.push_back(static_cast<std::int32_t>(j * ldx));
      for (std::int64_t i = i0; i < i0 + r; ++i) b.val.push_back(i < m ? w[i * k + j] : 0.f);
    }
    b.blk_ptr.push_back(static_cast<std::int32_t>(b.col_off.size()));
  }
  return b;
}

// Packs a 2:4 W; throws when some group of 4 holds more than 2 nonzeros.
// kc > 0 processes K in chunks of kc columns (rounded to groups of 4) to keep X in L1.
inline Sparse24F32 pack_sparse24(const float* w, std::int64_t m, std::int64_t k, std::int64_t ldx,
                                 std::int64_t kc = 0) {
  detail::check_pack_args(m, k, ldx, "cpu::pack_sparse24");
  Sparse24F32 s;
  s.m = m;
  s.k = k;
  s.ldx = ldx;
  s.groups = (k + 3) / 4;
  s.gc = kc > 0 ? std::max<std::int64_t>(1, kc / 4) : 0;
  if (s.gc >= s.groups) s.gc = 0;
  s.val.assign(static_cast<std::size_t>(m * s.groups * 2), 0.f);
  s.idx.assign(static_cast<std::size_t>(m * s.groups), 0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t g = 0; g < s.groups; ++g) {
      const std::int64_t width = std::min<std::int64_t>(4, k - 4 * g);
      int found = 0;
      int slot_idx[2] = {0, width > 1 ? 1 : 0};  // unused slots point inside K (value 0)
      float slot_val[2] = {0.f, 0.f};
      for (std::int64_t j = 0; j < width; ++j) {
        const float v = w[i * k + 4 * g + j];
        if (v == 0.f) continue;
        check(found < 2, ErrorCode::invalid_argument, "cpu::pack_sparse24",
              "row " + std::to_string(i) + ", K group " + std::to_string(g) + " has more than 2 nonzeros");
        slot_idx[found] = static_cast<int>(j);
        slot_val[found] = v;
        ++found;
      }
      if (found == 1 && slot_idx[1] == slot_idx[0]) slot_idx[1] = 0;
      const auto at = static_cast<std::size_t>(i * s.groups + g);
      s.val[2 * at] = slot_val[0];
      s.val[2 * at + 1] = slot_val[1];
      s.idx[at] = static_cast<std::uint8_t>(slot_idx[0] | (slot_idx[1] << 2));
    }
  return s;
}

// Symmetric per-row INT8 quantisation of a dense f32 W: q = round(w / s), s = max|w_row|/127.
struct QuantizedWeights {
  std::vector<std::int8_t> q;  // m * k row-major
  std::vector<float> scale;    // m
};
inline QuantizedWeights quantize_rows_s8(const float* w, std::int64_t m, std::int64_t k) {
  QuantizedWeights r;
  r.q.resize(static_cast<std::size_t>(m * k));
  r.scale.resize(static_cast<std::size_t>(m));
  for (std::int64_t i = 0; i < m; ++i) {
    float mx = 0.f;
    for (std::int64_t j = 0; j < k; ++j) mx = std::max(mx, std::fabs(w[i * k + j]));
    const float s = mx > 0.f ? mx / 127.f : 1.f;
    r.scale[static_cast<std::size_t>(i)] = s;
    for (std::int64_t j = 0; j < k; ++j)
      r.q[static_cast<std::size_t>(i * k + j)] =
          static_cast<std::int8_t>(std::lround(std::clamp(w[i * k + j] / s, -127.f, 127.f)));
  }
  return r;
}

// Packs quantised W (s8, per-row scale) into 1x4 K-blocks for activations with N columns;
// kc > 0 orders the blocks in K-chunks of kc columns (rounded to groups of 4).
inline Int8Bsr1x4 pack_int8_1x4(const std::int8_t* q, const float* w_scale, std::int64_t m,
                                std::int64_t k, std::int64_t n, std::int64_t kc = 0) {
  detail::check_pack_args(m, k, n, "cpu::pack_int8_1x4");
  Int8Bsr1x4 b;
  b.m = m;
  b.k = k;
  b.groups = (k + 3) / 4;
  b.ldq = (n + 15) / 16 * 16;
  b.gc = kc > 0 ? std::max<std::int64_t>(1, kc / 4) : 0;
  if (b.gc >= b.groups) b.gc = 0;
  check(b.groups * b.ldq * 4 < std::numeric_limits<std::int32_t>::max(), ErrorCode::unsupported,
        "cpu::pack_int8_1x4", "K * N does not fit the 32-bit offsets");
  b.row_ptr.push_back(0);
  b.row_sum.assign(static_cast<std::size_t>(m), 0);
  b.w_scale.assign(w_scale, w_scale + m);
  auto block = [&](std::int64_t i, std::int64_t g, std::int8_t* v) {
    bool any = false;
    for (std::int64_t j = 0; j < 4; ++j) {
      v[j] = 4 * g + j < k ? q[i * k + 4 * g + j] : std::int8_t{0};
      any |= v[j] != 0;
    }
    return any;
  };
  for (std::int64_t i = 0; i < m; ++i) {
    std::int32_t blocks = 0;
    for (std::int64_t g = 0; g < b.groups; ++g) {
      std::int8_t v[4];
      blocks += block(i, g, v);
      for (auto x : v) b.row_sum[static_cast<std::size_t>(i)] += x;
    }
    b.row_ptr.push_back(b.row_ptr.back() + blocks);
  }
  const std::int64_t step = b.gc ? b.gc : b.groups;
  for (std::int64_t g0 = 0; g0 < b.groups; g0 += step)
    for (std::int64_t i = 0; i < m; ++i) {
      if (b.gc) b.seg_ptr.push_back(static_cast<std::int32_t>(b.blk_off.size()));
      for (std::int64_t g = g0; g < std::min(g0 + step, b.groups); ++g) {
        std::int8_t v[4];
        if (!block(i, g, v)) continue;
        b.blk_off.push_back(static_cast<std::int32_t>(g * b.ldq * 4));
        b.val.insert(b.val.end(), v, v + 4);
      }
    }
  if (b.gc) b.seg_ptr.push_back(static_cast<std::int32_t>(b.blk_off.size()));
  return b;
}

}  // namespace sparseloom::cpu
