#pragma once
// Ridge regression by Cholesky on the normal equations, in double. Small systems only (a few
// hundred features): it keeps the core free of Eigen.
#include <cmath>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::estimator {

// Minimises |X w - y|^2 + lambda |w|^2; X is rows x cols, row-major.
inline std::vector<double> ridge(const std::vector<std::vector<double>>& x, const std::vector<double>& y, double lambda) {
  const std::size_t n = x.size(), d = n ? x.front().size() : 0;
  check(n == y.size(), ErrorCode::invalid_argument, "ridge", "rows of X and y differ");
  std::vector<double> a(d * d, 0.0), b(d, 0.0);
  for (std::size_t r = 0; r < n; ++r) {
    const auto& row = x[r];
    for (std::size_t i = 0; i < d; ++i) {
      if (row[i] == 0) continue;
      b[i] += row[i] * y[r];
      for (std::size_t j = 0; j < d; ++j) a[i * d + j] += row[i] * row[j];
    }
  }
  for (std::size_t i = 0; i < d; ++i) a[i * d + i] += lambda;
  // Cholesky: a = L L^T (positive definite for lambda > 0).
  for (std::size_t j = 0; j < d; ++j) {
    double s = a[j * d + j];
    for (std::size_t k = 0; k < j; ++k) s -= a[j * d + k] * a[j * d + k];
    check(s > 0, ErrorCode::internal, "ridge", "normal equations are not positive definite");
    a[j * d + j] = std::sqrt(s);
    for (std::size_t i = j + 1; i < d; ++i) {
      double t = a[i * d + j];
      for (std::size_t k = 0; k < j; ++k) t -= a[i * d + k] * a[j * d + k];
      a[i * d + j] = t / a[j * d + j];
    }
  }
  std::vector<double> z(d), w(d);
  for (std::size_t i = 0; i < d; ++i) {
    double t = b[i];
    for (std::size_t k = 0; k < i; ++k) t -= a[i * d + k] * z[k];
    z[i] = t / a[i * d + i];
  }
  for (std::size_t i = d; i-- > 0;) {
    double t = z[i];
    for (std::size_t k = i + 1; k < d; ++k) t -= a[k * d + i] * w[k];
    w[i] = t / a[i * d + i];
  }
  return w;
}

}  // namespace sparseloom::estimator
