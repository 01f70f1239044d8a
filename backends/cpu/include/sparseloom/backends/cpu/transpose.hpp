#pragma once
// Cache-tiled, threaded copies that reorder tensors: the 2-D transposes around a token-major
// MatMul/Gemm (our kernels take X as K x N) and the ONNX Transpose op (attention heads).
// A scalar element-by-element copy with one strided side costs ~1.3 ms for 98 k floats; tiles
// of 16 x 16 keep both sides in L1 and the work is split over the processor's pool.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sparseloom/backends/cpu/thread_pool.hpp"
#include "sparseloom/core/tensor.hpp"

namespace sparseloom::cpu {

namespace detail {
inline constexpr std::int64_t kTile = 16;

// dst[a * ldd + b] = src[b * lds + a] for a in [a0, a1), b in [0, cols): one band of a transpose.
template <class T>
void transpose_band(const T* src, std::int64_t lds, T* dst, std::int64_t ldd, std::int64_t a0, std::int64_t a1,
                    std::int64_t cols) {
  for (std::int64_t b0 = 0; b0 < cols; b0 += kTile) {
    const std::int64_t b1 = std::min(b0 + kTile, cols);
    for (std::int64_t a = a0; a < a1; ++a)
      for (std::int64_t b = b0; b < b1; ++b) dst[a * ldd + b] = src[b * lds + a];
  }
}

}  // namespace detail

// dst (cols x rows, row-major) = transpose of src (rows x cols, row-major), on `threads`
// tasks of `pool`.
template <class T>
void transpose_2d(const T* src, std::int64_t rows, std::int64_t cols, T* dst, ThreadPool& pool, int threads) {
  const int parts = split_parts(rows * cols, threads);
  const std::int64_t bands = (cols + detail::kTile - 1) / detail::kTile;
  pool.run(parts, [&](int t) {
    const std::int64_t a0 = bands * t / parts * detail::kTile, a1 = std::min(cols, bands * (t + 1) / parts * detail::kTile);
    if (a0 < a1) detail::transpose_band(src, cols, dst, rows, a0, a1, rows);
  });
}

namespace detail {
// Output dims (size > 1) with the input stride of each, adjacent dims merged when they are
// contiguous in the input too.
struct PermPlan {
  std::vector<std::int64_t> shape, in_stride, out_stride;
};

inline PermPlan plan_permute(const Shape& xs, const std::vector<std::int64_t>& perm) {
  const Shape st = contiguous_strides(xs);
  PermPlan p;
  for (auto d : perm) {
    if (xs[static_cast<std::size_t>(d)] == 1) continue;
    const std::int64_t n = xs[static_cast<std::size_t>(d)], s = st[static_cast<std::size_t>(d)];
    if (!p.shape.empty() && p.in_stride.back() == s * n) {
      p.shape.back() *= n;
      p.in_stride.back() = s;
    } else {
      p.shape.push_back(n);
      p.in_stride.push_back(s);
    }
  }
  p.out_stride.assign(p.shape.size(), 1);
  for (std::size_t i = p.shape.size(); i-- > 1;) p.out_stride[i - 1] = p.out_stride[i] * p.shape[i];
  return p;
}

template <class T>
void permute_typed(const T* src, T* dst, const PermPlan& p, std::int64_t numel, ThreadPool& pool, int threads) {
  const std::size_t r = p.shape.size();
  if (r == 0) {
    if (numel) dst[0] = src[0];
    return;
  }
  // Input offset of output "outer" index `flat` over dims `dims` (in output order).
  auto offsets = [&](std::int64_t flat, const std::vector<std::size_t>& dims, std::int64_t& in_off, std::int64_t& out_off) {
    in_off = out_off = 0;
    for (std::size_t i = dims.size(); i-- > 0;) {
      const std::size_t d = dims[i];
      const std::int64_t v = flat % p.shape[d];
      flat /= p.shape[d];
      in_off += v * p.in_stride[d];
      out_off += v * p.out_stride[d];
    }
  };
  if (p.in_stride.back() == 1) {  // contiguous runs along the last output dim
    const std::int64_t len = p.shape.back(), runs = numel / len;
    std::vector<std::size_t> outer;
    for (std::size_t d = 0; d + 1 < r; ++d) outer.push_back(d);
    const int parts = split_parts(numel, threads);
    pool.run(parts, [&](int t) {
      for (std::int64_t i = runs * t / parts; i < runs * (t + 1) / parts; ++i) {
        std::int64_t io, oo;
        offsets(i, outer, io, oo);
        std::memcpy(dst + oo, src + io, static_cast<std::size_t>(len) * sizeof(T));
      }
    });
    return;
  }
  // The input's innermost dim j lands elsewhere: 2-D tiled transposes of (dim j, last dim)
  // for every index of the other dims, split over (outer index, band of dim j).
  std::size_t j = 0;
  while (p.in_stride[j] != 1) ++j;
  std::vector<std::size_t> outer;
  for (std::size_t d = 0; d + 1 < r; ++d)
    if (d != j) outer.push_back(d);
  const std::int64_t rows = p.shape[j], cols = p.shape.back(), bands = (rows + kTile - 1) / kTile;
  const std::int64_t units = numel / (rows * cols) * bands;
  const int parts = split_parts(numel, threads);
  pool.run(parts, [&](int t) {
    for (std::int64_t u = units * t / parts; u < units * (t + 1) / parts; ++u) {
      std::int64_t io, oo;
      offsets(u / bands, outer, io, oo);
      const std::int64_t a0 = u % bands * kTile;
      transpose_band(src + io, p.in_stride.back(), dst + oo, p.out_stride[j], a0, std::min(rows, a0 + kTile), cols);
    }
  });
}
}  // namespace detail

// ONNX Transpose (perm empty: reversed dims) of any dtype of 1, 2, 4 or 8 bytes.
inline Tensor permute(const Tensor& x_in, std::vector<std::int64_t> perm, ThreadPool& pool, int threads, const std::string& where) {
  const Tensor x = x_in.contiguous();
  const auto rank = static_cast<std::int64_t>(x.rank());
  if (perm.empty())
    for (std::int64_t i = rank; i-- > 0;) perm.push_back(i);
  std::vector<bool> seen(static_cast<std::size_t>(rank), false);
  check(static_cast<std::int64_t>(perm.size()) == rank, ErrorCode::shape, where, "perm has " + std::to_string(perm.size()) + " entries for a rank-" + std::to_string(rank) + " tensor");
  for (auto d : perm) {
    check(d >= 0 && d < rank && !seen[static_cast<std::size_t>(d)], ErrorCode::invalid_argument, where, "perm is not a permutation");
    seen[static_cast<std::size_t>(d)] = true;
  }
  Shape os;
  for (auto d : perm) os.push_back(x.shape()[static_cast<std::size_t>(d)]);
  Tensor y = Tensor::empty(os, x.dtype());
  const auto p = detail::plan_permute(x.shape(), perm);
  const std::int64_t n = x.numel();
  switch (size_of(x.dtype())) {
    case 1: detail::permute_typed(reinterpret_cast<const std::uint8_t*>(x.raw()), reinterpret_cast<std::uint8_t*>(y.raw()), p, n, pool, threads); break;
    case 2: detail::permute_typed(reinterpret_cast<const std::uint16_t*>(x.raw()), reinterpret_cast<std::uint16_t*>(y.raw()), p, n, pool, threads); break;
    case 4: detail::permute_typed(reinterpret_cast<const std::uint32_t*>(x.raw()), reinterpret_cast<std::uint32_t*>(y.raw()), p, n, pool, threads); break;
    case 8: detail::permute_typed(reinterpret_cast<const std::uint64_t*>(x.raw()), reinterpret_cast<std::uint64_t*>(y.raw()), p, n, pool, threads); break;
    default: throw Error(ErrorCode::unsupported, where, "Transpose of a " + std::to_string(size_of(x.dtype())) + "-byte dtype");
  }
  return y;
}

}  // namespace sparseloom::cpu
