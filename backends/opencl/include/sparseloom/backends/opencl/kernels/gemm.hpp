#pragma once
// Dense f32 GEMM Y(MxN) = W(MxK) * X(KxN), all row-major, with the fused epilogue.
// A work-group computes a TM x TN tile; each work-item a 4 x 4 register block (float4 along
// N); K advances TK at a time through local memory. W is staged transposed so a work-item
// reads its four rows as one float4. Edges are zero-filled on load, so any M, N, K works.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kGemmF32 = R"CLC(
#ifndef TM
#define TM 64
#endif
#ifndef TN
#define TN 64
#endif
#ifndef TK
#define TK 16
#endif
#ifndef SPLITK
#define SPLITK 0
#endif
#define WX (TN / 4)
#define WY (TM / 4)
#define NT (WX * WY)

__kernel __attribute__((reqd_work_group_size(WX, WY, 1)))
void gemm_f32(const int M, const int N, const int K,
              __global const float* restrict W, __global const float* restrict X,
              __global const float* restrict scale, __global const float* restrict shift,
              __global float* restrict Y, const int act, const float p0, const float p1) {
  __local float Ws[TK][TM];
  __local float Xs[TK][TN];
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int lid = ty * WX + tx;
  const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;
#if SPLITK
  // Split-K: work-group z sums K range [z * kc, (z + 1) * kc) into its own partial plane of Y
  // (Y is the M x N x SPLITK workspace); gemm_splitk_reduce adds the planes and the epilogue.
  const int kc = ((K + SPLITK - 1) / SPLITK + TK - 1) / TK * TK;
  const int kb = get_group_id(2) * kc, ke = min(K, kb + kc);
#else
  const int kb = 0, ke = K;
#endif
  float4 acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  for (int k0 = kb; k0 < ke; k0 += TK) {
    for (int i = lid; i < TM * TK; i += NT) {
      const int m = i / TK, k = i % TK;
      const int gm = m0 + m, gk = k0 + k;
      Ws[k][m] = (gm < M && gk < ke) ? W[gm * K + gk] : 0.0f;
    }
    for (int i = lid; i < TK * TN; i += NT) {
      const int k = i / TN, n = i % TN;
      const int gk = k0 + k, gn = n0 + n;
      Xs[k][n] = (gk < ke && gn < N) ? X[gk * N + gn] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (int k = 0; k < TK; ++k) {
      const float4 a = vload4(ty, &Ws[k][0]);
      const float4 b = vload4(tx, &Xs[k][0]);
      acc0 = mad((float4)(a.x), b, acc0);
      acc1 = mad((float4)(a.y), b, acc1);
      acc2 = mad((float4)(a.z), b, acc2);
      acc3 = mad((float4)(a.w), b, acc3);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const int n = n0 + tx * 4;
  float4 accs[4] = {acc0, acc1, acc2, acc3};
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= M) break;
#if SPLITK
    const float4 v = accs[i];
    __global float* y = Y + (get_group_id(2) * M + m) * N;
#else
    const float s = scale[m], t = shift[m];
    const float4 v = apply_act4(mad((float4)(s), accs[i], (float4)(t)), act, p0, p1);
    __global float* y = Y + m * N;
#endif
    if (n + 3 < N) {
      vstore4(v, 0, y + n);
    } else {
      if (n < N) y[n] = v.x;
      if (n + 1 < N) y[n + 1] = v.y;
      if (n + 2 < N) y[n + 2] = v.z;
    }
  }
}

// Y[m, n] = act(scale[m] * sum_z P[z, m, n] + shift[m]) over the split-K partial planes.
__kernel void gemm_splitk_reduce(const int M, const int N, const int S, __global const float* restrict P,
                                 __global const float* restrict scale, __global const float* restrict shift,
                                 __global float* restrict Y, const int act, const float p0, const float p1) {
  const int i = get_global_id(0);
  if (i >= M * N) return;
  const int m = i / N;
  float acc = 0.0f;
  for (int z = 0; z < S; ++z) acc += P[z * M * N + i];
  Y[i] = apply_act(mad(scale[m], acc, shift[m]), act, p0, p1);
}
)CLC";

// Register-blocked GEMM without local memory or barriers: each work-item computes 4 rows x 8
// columns (four float8 accumulators), streaming its W rows and X row segments from cache.
// This is the shape CPU devices (PoCL) run well: barriers force PoCL to spill every work-item's
// accumulators, and float8 maps onto the SIMD unit directly.
inline constexpr const char* kGemmF32RegisterBlocked = R"CLC(
inline float8 load_x8(__global const float* p, int n, int N) {
  if (n + 7 < N) return vload8(0, p);
  float t[8];
  for (int j = 0; j < 8; ++j) t[j] = n + j < N ? p[j] : 0.0f;
  return vload8(0, t);
}
__kernel void gemm_f32_rb(const int M, const int N, const int K,
                          __global const float* restrict W, __global const float* restrict X,
                          __global const float* restrict scale, __global const float* restrict shift,
                          __global float* restrict Y, const int act, const float p0, const float p1) {
  const int n = get_global_id(0) * 8, m0 = get_global_id(1) * 4;
  if (n >= N || m0 >= M) return;
  __global const float* w0 = W + min(m0, M - 1) * K;
  __global const float* w1 = W + min(m0 + 1, M - 1) * K;
  __global const float* w2 = W + min(m0 + 2, M - 1) * K;
  __global const float* w3 = W + min(m0 + 3, M - 1) * K;
  float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  for (int k = 0; k < K; ++k) {
    const float8 x = load_x8(X + k * N + n, n, N);
    a0 = mad((float8)(w0[k]), x, a0);
    a1 = mad((float8)(w1[k]), x, a1);
    a2 = mad((float8)(w2[k]), x, a2);
    a3 = mad((float8)(w3[k]), x, a3);
  }
  float8 acc[4] = {a0, a1, a2, a3};
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + i;
    if (m >= M) break;
    const float s = scale[m], t = shift[m];
    float r[8];
    vstore8(acc[i], 0, r);
    __global float* y = Y + m * N + n;
    for (int j = 0; j < 8 && n + j < N; ++j) y[j] = apply_act(mad(s, r[j], t), act, p0, p1);
  }
}
)CLC";

}  // namespace sparseloom::opencl::kernels
