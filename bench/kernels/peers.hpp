#pragma once
// Library peers for Y = W(sparse) * X: Eigen 3.4 SparseMatrix (RowMajor) and, when built
// with them, LIBXSMM 1.17 spmdm and MKL sparse BLAS (inspector-executor CSR). Each is set up
// once per W (its "inspector") and timed per call with the same thread count as ours (OpenMP).
#include <cstdint>
#include <vector>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <omp.h>
#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
#include <libxsmm.h>
#endif
#if defined(SPARSELOOM_BENCH_HAS_MKL)
#include <mkl.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#endif

namespace sparseloom::bench {

class EigenSparsePeer {
 public:
  EigenSparsePeer(const float* w, std::int64_t m, std::int64_t k, std::int64_t n) : n_(n), s_(m, k) {
    std::vector<Eigen::Triplet<float>> t;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < k; ++j)
        if (w[i * k + j] != 0.f) t.emplace_back(static_cast<int>(i), static_cast<int>(j), w[i * k + j]);
    s_.setFromTriplets(t.begin(), t.end());
    s_.makeCompressed();
  }
  void run(const float* x, float* y, int threads) {
    Eigen::setNbThreads(threads);
    using RM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RM> X(x, s_.cols(), n_);
    Eigen::Map<RM> Y(y, s_.rows(), n_);
    Y.noalias() = s_ * X;
  }

 private:
  std::int64_t n_;
  Eigen::SparseMatrix<float, Eigen::RowMajor, int> s_;
};

#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
// spmdm: all matrices row-major ('N'); the dense W is converted to its sparse slices once.
class LibxsmmSpmdmPeer {
 public:
  LibxsmmSpmdmPeer(const float* w, std::int64_t m, std::int64_t k, std::int64_t n, int max_threads) {
    libxsmm_init();
    libxsmm_spmdm_init(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), max_threads, &h_, &a_);
    const int blocks = libxsmm_spmdm_get_num_createSparseSlice_blocks(&h_);
#pragma omp parallel num_threads(max_threads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int b = tid; b < blocks; b += nt) libxsmm_spmdm_createSparseSlice_fp32_thread(&h_, 'N', w, a_, b, tid, nt);
    }
  }
  LibxsmmSpmdmPeer(const LibxsmmSpmdmPeer&) = delete;
  LibxsmmSpmdmPeer& operator=(const LibxsmmSpmdmPeer&) = delete;
  ~LibxsmmSpmdmPeer() { libxsmm_spmdm_destroy(&h_); }
  void run(const float* x, float* y, int threads) {
    const float alpha = 1.f, beta = 0.f;
    const int blocks = libxsmm_spmdm_get_num_compute_blocks(&h_);
#pragma omp parallel num_threads(threads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      for (int b = tid; b < blocks; b += nt)
        libxsmm_spmdm_compute_fp32_thread(&h_, 'N', 'N', &alpha, a_, x, 'N', &beta, y, b, tid, nt);
    }
  }

 private:
  libxsmm_spmdm_handle h_{};
  libxsmm_CSR_sparseslice* a_ = nullptr;
};
#endif

#if defined(SPARSELOOM_BENCH_HAS_MKL)
// MKL's threading layer must be chosen before its first call: GNU OpenMP, the runtime oneDNN
// and Eigen use here, so all peers share one pool and GOMP_SPINCOUNT (MKL's default, Intel
// OpenMP, would add a second pool spinning on the same two cores).
inline std::string mkl_init() {
  static const std::string version = [] {
    mkl_set_interface_layer(MKL_INTERFACE_LP64);
    if (!std::getenv("MKL_THREADING_LAYER")) mkl_set_threading_layer(MKL_THREADING_GNU);  // env var: to compare
    mkl_set_dynamic(0);  // else MKL may run fewer threads than asked (measured: 1 of 2 here)
    char buf[256] = {};
    mkl_get_version_string(buf, sizeof buf);
    return std::string(buf);
  }();
  return version;
}

// mkl_sparse_s_mm (or _mv when X is one column) on a CSR handle; the hint and
// mkl_sparse_optimize (the inspector) run here, outside the timed calls. The inspector runs
// with the most threads of the benchmark: measured here, a handle inspected with 1 thread ran
// its 1-thread calls ~2.3x slower than one inspected with 2 (MKL 2026.2, AMD Zen 4).
class MklSparsePeer {
 public:
  MklSparsePeer(const float* w, std::int64_t m, std::int64_t k, std::int64_t n, int inspect_threads) : n_(n) {
    mkl_init();
    mkl_set_num_threads(inspect_threads);
    rows_.push_back(0);
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < k; ++j)
        if (w[i * k + j] != 0.f) {
          cols_.push_back(static_cast<MKL_INT>(j));
          vals_.push_back(w[i * k + j]);
        }
      rows_.push_back(static_cast<MKL_INT>(cols_.size()));
    }
    check(mkl_sparse_s_create_csr(&a_, SPARSE_INDEX_BASE_ZERO, static_cast<MKL_INT>(m), static_cast<MKL_INT>(k), rows_.data(),
                                  rows_.data() + 1, cols_.data(), vals_.data()),
          "mkl_sparse_s_create_csr");
    d_.type = SPARSE_MATRIX_TYPE_GENERAL;
    if (n_ == 1) {
      check(mkl_sparse_set_mv_hint(a_, SPARSE_OPERATION_NON_TRANSPOSE, d_, 1000), "mkl_sparse_set_mv_hint");
    } else {
      check(mkl_sparse_set_mm_hint(a_, SPARSE_OPERATION_NON_TRANSPOSE, d_, SPARSE_LAYOUT_ROW_MAJOR, static_cast<MKL_INT>(n), 1000),
            "mkl_sparse_set_mm_hint");
    }
    check(mkl_sparse_optimize(a_), "mkl_sparse_optimize");
  }
  MklSparsePeer(const MklSparsePeer&) = delete;
  MklSparsePeer& operator=(const MklSparsePeer&) = delete;
  ~MklSparsePeer() { mkl_sparse_destroy(a_); }
  void run(const float* x, float* y, int threads) {
    mkl_set_num_threads(threads);
    const auto n = static_cast<MKL_INT>(n_);
    if (n_ == 1)
      check(mkl_sparse_s_mv(SPARSE_OPERATION_NON_TRANSPOSE, 1.f, a_, d_, x, 0.f, y), "mkl_sparse_s_mv");
    else
      check(mkl_sparse_s_mm(SPARSE_OPERATION_NON_TRANSPOSE, 1.f, a_, d_, SPARSE_LAYOUT_ROW_MAJOR, x, n, n, 0.f, y, n),
            "mkl_sparse_s_mm");
  }

 private:
  static void check(sparse_status_t s, const char* what) {
    if (s != SPARSE_STATUS_SUCCESS) throw std::runtime_error(std::string("MKL peer: ") + what + " failed with status " + std::to_string(s));
  }
  std::int64_t n_;
  std::vector<MKL_INT> rows_, cols_;
  std::vector<float> vals_;
  sparse_matrix_t a_ = nullptr;
  matrix_descr d_{};
};
#endif

}  // namespace sparseloom::bench
