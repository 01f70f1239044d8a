#pragma once
// Library peers for Y = W(sparse) * X: Eigen 3.4 SparseMatrix (RowMajor) and, when built
// with it, LIBXSMM 1.17 spmdm. Both are set up once per W (their "inspector") and timed per
// call with the same thread count as ours (OpenMP).
#include <cstdint>
#include <vector>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <omp.h>
#if defined(SPARSELOOM_BENCH_HAS_LIBXSMM)
#include <libxsmm.h>
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

}  // namespace sparseloom::bench
