#pragma once
// Activation x activation MatMul (attention's Q K^T and P V: [batch..., m, k] x [batch..., k, n],
// same batch dims) on the processor's pool: one Eigen product per (batch item, row band). The
// reference op forks and joins std::threads for every batch item, which on a busy 2-core machine
// cost 35-45 ms per BERT-base attention MatMul instead of ~1 ms.
#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "sparseloom/backends/cpu/thread_pool.hpp"

namespace sparseloom::cpu {

inline void batched_matmul(const float* a, const float* b, float* y, std::int64_t batch, std::int64_t m, std::int64_t k,
                           std::int64_t n, ThreadPool& pool, int threads) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MapC = Eigen::Map<const RowMat>;
  using MapM = Eigen::Map<RowMat>;
  // Fewer batch items than threads: split rows too, so every thread has work.
  const std::int64_t bands = std::clamp<std::int64_t>((threads + batch - 1) / std::max<std::int64_t>(batch, 1), 1, std::max<std::int64_t>(m, 1));
  const std::int64_t tasks = batch * bands;
  const int parts = static_cast<int>(std::clamp<std::int64_t>(tasks, 1, std::max(threads, 1)));
  pool.run(parts, [=](int t) {
    for (std::int64_t j = tasks * t / parts; j < tasks * (t + 1) / parts; ++j) {
      const std::int64_t i = j / bands, r = j % bands;
      const std::int64_t r0 = m * r / bands, r1 = m * (r + 1) / bands;
      if (r1 <= r0) continue;
      MapM(y + i * m * n + r0 * n, r1 - r0, n).noalias() = MapC(a + i * m * k + r0 * k, r1 - r0, k) * MapC(b + i * k * n, k, n);
    }
  });
}

}  // namespace sparseloom::cpu
