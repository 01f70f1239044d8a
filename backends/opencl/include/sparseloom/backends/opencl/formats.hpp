#pragma once
// Host-side packing of a dense row-major weight matrix into the sparse formats the OpenCL
// kernels run: CSR and BSR with 4x1 blocks (4 rows x 1 column). Zero-pattern detection lives
// here too, so a user's already-pruned model picks its format without a zoo pipeline.
#include <cstdint>
#include <span>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::opencl {

struct CsrMatrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<std::int32_t> rowptr, colidx;
  std::vector<float> values;

  static CsrMatrix from_dense(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
    check(static_cast<std::int64_t>(w.size()) == rows * cols, ErrorCode::shape, "opencl::CsrMatrix",
          "weight has " + std::to_string(w.size()) + " values, expected rows*cols");
    CsrMatrix c;
    c.rows = rows;
    c.cols = cols;
    c.rowptr.reserve(static_cast<std::size_t>(rows) + 1);
    c.rowptr.push_back(0);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t k = 0; k < cols; ++k) {
        const float v = w[static_cast<std::size_t>(r * cols + k)];
        if (v != 0.0f) {
          c.colidx.push_back(static_cast<std::int32_t>(k));
          c.values.push_back(v);
        }
      }
      c.rowptr.push_back(static_cast<std::int32_t>(c.values.size()));
    }
    return c;
  }
  std::int64_t nnz() const noexcept { return static_cast<std::int64_t>(values.size()); }
  std::size_t bytes() const noexcept { return rowptr.size() * 4 + colidx.size() * 4 + values.size() * 4; }
};

// Blocks of 4 consecutive rows x 1 column; a block is stored when any of its 4 values is
// non-zero. Rows past `rows` (when rows % 4 != 0) are zero padding.
struct Bsr4x1Matrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<std::int32_t> rowptr, colidx;  // over block rows
  std::vector<float> values;                 // 4 per block, row-minor

  static Bsr4x1Matrix from_dense(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
    check(static_cast<std::int64_t>(w.size()) == rows * cols, ErrorCode::shape, "opencl::Bsr4x1Matrix",
          "weight has " + std::to_string(w.size()) + " values, expected rows*cols");
    Bsr4x1Matrix b;
    b.rows = rows;
    b.cols = cols;
    const std::int64_t mb = (rows + 3) / 4;
    b.rowptr.push_back(0);
    for (std::int64_t br = 0; br < mb; ++br) {
      for (std::int64_t k = 0; k < cols; ++k) {
        float v[4] = {0, 0, 0, 0};
        bool any = false;
        for (int i = 0; i < 4; ++i) {
          const std::int64_t r = br * 4 + i;
          if (r < rows) v[i] = w[static_cast<std::size_t>(r * cols + k)];
          any = any || v[i] != 0.0f;
        }
        if (!any) continue;
        b.colidx.push_back(static_cast<std::int32_t>(k));
        b.values.insert(b.values.end(), v, v + 4);
      }
      b.rowptr.push_back(static_cast<std::int32_t>(b.colidx.size()));
    }
    return b;
  }
  std::int64_t blocks() const noexcept { return static_cast<std::int64_t>(colidx.size()); }
  std::size_t bytes() const noexcept { return rowptr.size() * 4 + colidx.size() * 4 + values.size() * 4; }
};

inline double zero_fraction(std::span<const float> w) {
  std::size_t z = 0;
  for (float v : w) z += v == 0.0f;
  return w.empty() ? 0.0 : static_cast<double>(z) / static_cast<double>(w.size());
}

// Fraction of 4x1 blocks that are entirely zero (what BSR 4x1 can skip).
inline double block4x1_zero_fraction(std::span<const float> w, std::int64_t rows, std::int64_t cols) {
  std::int64_t zero = 0, all = 0;
  for (std::int64_t br = 0; br < (rows + 3) / 4; ++br)
    for (std::int64_t k = 0; k < cols; ++k) {
      bool any = false;
      for (std::int64_t r = br * 4; r < std::min(rows, br * 4 + 4); ++r)
        any = any || w[static_cast<std::size_t>(r * cols + k)] != 0.0f;
      zero += !any;
      ++all;
    }
  return all ? static_cast<double>(zero) / static_cast<double>(all) : 0.0;
}

}  // namespace sparseloom::opencl
