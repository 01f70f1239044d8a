#pragma once
// A chain of element-wise and last-axis ops run row by row in one pass: what an exported
// LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), GELU (Div, Erf, Add,
// Mul, Mul) or attention's scale-then-Softmax become. Step by step, each op costs a tensor
// allocation, a pass over memory and the executable's dispatch; ViT-sized models (16 tokens x
// 64) spend most of their time there, not in the Gemms that sparsity makes cheaper. Here a row
// (d values, in L1) goes through every op before the next row. Each op's math is pointwise.hpp's,
// element for element, with every intermediate stored (no contraction across ops), so results
// equal the step-by-step run bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "sparseloom/backends/cpu/pointwise.hpp"
#include "sparseloom/backends/cpu/thread_pool.hpp"

namespace sparseloom::cpu {

// Slots hold one row of a value: slot 0 is the chain's input row (d values); every other slot is
// d values ("full") or one value per row ("scalar": a mean, or what follows from it).
struct RowOp {
  enum class Kind : std::uint8_t { unary, binary, mean, softmax } kind = Kind::unary;
  // Where a binary op's second operand s comes from: a slot, or a constant that is one value,
  // a trailing vector (d), the whole tensor (rows x d), or one value per row.
  enum class Src : std::uint8_t { slot, const_scalar, const_vector, const_full, const_row } src = Src::slot;
  Unary u = Unary::relu;
  Binary b = Binary::add;
  int dst = 0, a = 0, s = 0;   // slots: result, first operand (x), second operand when src == slot
  bool dst_full = true;        // the result has d values per row (else one)
  bool s_full = true;          // a slot operand s has d values per row
  bool s_first = false;        // y = s op x
  const float* c = nullptr;    // constant operand (kept alive by the owner)
};

struct RowProgram {
  std::int64_t rows = 1, d = 1;
  int slots = 1;
  std::vector<RowOp> ops;
  int out = 0;  // the slot written to the output
  bool out_full = true;
};

namespace detail {
template <class F>
void row_binary(const RowOp& op, const float* a, const float* s, float* y, std::int64_t n, bool s_vec, F f) {
  // Separate loops per operand shape and order, so each vectorises.
  if (s_vec) {
    if (op.s_first) for (std::int64_t k = 0; k < n; ++k) y[k] = f(s[k], a[k]);
    else for (std::int64_t k = 0; k < n; ++k) y[k] = f(a[k], s[k]);
  } else {
    const float b = s[0];
    if (op.s_first) for (std::int64_t k = 0; k < n; ++k) y[k] = f(b, a[k]);
    else for (std::int64_t k = 0; k < n; ++k) y[k] = f(a[k], b);
  }
}

inline void run_row_op(const RowOp& op, float* const* slot, std::int64_t r, std::int64_t d) {
  float* y = slot[op.dst];
  const float* a = slot[op.a];
  const std::int64_t n = op.dst_full ? d : 1;
  switch (op.kind) {
    case RowOp::Kind::unary:
      with_unary(op.u, [&](auto f) {
        for (std::int64_t k = 0; k < n; ++k) y[k] = f(a[k]);
      });
      return;
    case RowOp::Kind::mean: {
      double acc = 0;
      for (std::int64_t k = 0; k < d; ++k) acc += a[k];
      y[0] = static_cast<float>(acc / static_cast<double>(d));
      return;
    }
    case RowOp::Kind::softmax: {
      float m = -std::numeric_limits<float>::infinity();
      for (std::int64_t k = 0; k < d; ++k) m = std::max(m, a[k]);
      double sum = 0;
      for (std::int64_t k = 0; k < d; ++k) sum += y[k] = std::exp(a[k] - m);
      for (std::int64_t k = 0; k < d; ++k) y[k] = static_cast<float>(y[k] / sum);
      return;
    }
    case RowOp::Kind::binary: break;
  }
  const float* s = nullptr;
  bool s_vec = false;
  switch (op.src) {
    case RowOp::Src::slot: s = slot[op.s], s_vec = op.s_full && n > 1; break;
    case RowOp::Src::const_scalar: s = op.c; break;
    case RowOp::Src::const_vector: s = op.c, s_vec = true; break;
    case RowOp::Src::const_full: s = op.c + r * n, s_vec = true; break;
    case RowOp::Src::const_row: s = op.c + r; break;
  }
  switch (op.b) {
    case Binary::add: return row_binary(op, a, s, y, n, s_vec, [](float p, float q) { return p + q; });
    case Binary::sub: return row_binary(op, a, s, y, n, s_vec, [](float p, float q) { return p - q; });
    case Binary::mul: return row_binary(op, a, s, y, n, s_vec, [](float p, float q) { return p * q; });
    case Binary::div: return row_binary(op, a, s, y, n, s_vec, [](float p, float q) { return p / q; });
    case Binary::pow:
      return row_binary(op, a, s, y, n, s_vec, [](float p, float q) { return q == 2.f ? p * p : std::pow(p, q); });
  }
}
}  // namespace detail

// y (rows x d, or rows when the output slot is scalar) = the program applied to x (rows x d).
inline void run_rows(const RowProgram& p, const float* x, float* y, ThreadPool& pool, int threads) {
  const int parts = split_parts(p.rows * p.d * static_cast<std::int64_t>(p.ops.size()), threads);
  pool.run(parts, [&p, x, y, parts](int t) {
    // Per thread, slots 1.. of d values each and the slot pointers; they only grow (no
    // allocation per call once warm).
    thread_local std::vector<float> buf;
    thread_local std::vector<float*> slot;
    const auto need = static_cast<std::size_t>(std::max(p.slots - 1, 0) * p.d);
    if (buf.size() < need) buf.resize(need);
    if (slot.size() < static_cast<std::size_t>(p.slots)) slot.resize(static_cast<std::size_t>(p.slots));
    for (int s = 1; s < p.slots; ++s) slot[static_cast<std::size_t>(s)] = buf.data() + static_cast<std::size_t>(s - 1) * p.d;
    const std::int64_t out_n = p.out_full ? p.d : 1;
    for (std::int64_t r = p.rows * t / parts; r < p.rows * (t + 1) / parts; ++r) {
      slot[0] = const_cast<float*>(x + r * p.d);  // read only: no op writes slot 0
      for (const auto& op : p.ops) detail::run_row_op(op, slot.data(), r, p.d);
      std::memcpy(y + r * out_n, slot[static_cast<std::size_t>(p.out)], static_cast<std::size_t>(out_n) * sizeof(float));
    }
  });
}

}  // namespace sparseloom::cpu
