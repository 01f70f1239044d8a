#pragma once
// Sparse W (rows) x dense X(KxN) -> Y(MxN), fused epilogue.
// One work-group per row (CSR) or per 4-row block (BSR 4x1), RPW rows in turn. Work-items
// span N (LX of them, NPT vectors of VEC floats each, so a row of X is read coalesced) and KS
// of them split the row's nonzeros, reduced in local memory at the end. Every work-item of a
// group reads the same value/column, so those loads are broadcasts. VEC=4 needs N % 4 == 0.
// NG > 1 splits N over NG work-groups too (more groups for layers with few rows). PRED loads
// the four nonzeros of a step under a predicate instead of leaving a remainder loop, so rows
// shorter than 4 * KS issue all their loads at once (GPUs: latency, not bandwidth, bounds these).
// Geometry (VEC, LX, NPT, KS, RPW, NG, PRED) is a build option, chosen per layer and device by a trial.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kSpmmCommon = R"CLC(
#ifndef VEC
#define VEC 1
#endif
#if VEC == 4
typedef float4 vec_t;
#define EPI(v, s, t) apply_act4(mad((float4)(s), (v), (float4)(t)), act, p0, p1)
#else
typedef float vec_t;
#define EPI(v, s, t) apply_act(mad((s), (v), (t)), act, p0, p1)
#endif
#ifndef LX
#define LX 32
#endif
#ifndef NPT
#define NPT 1
#endif
#ifndef KS
#define KS 1
#endif
#ifndef RPW
#define RPW 1
#endif
#ifndef STAGE
#define STAGE 0
#endif
#ifndef PRED
#define PRED 0
#endif
// The rows of X that a step's four nonzeros (columns c0..c3) multiply.
#define X_ROWS(c0, c1, c2, c3)                                                        \
  __global const vec_t* x0 = X + (c0) * NV; __global const vec_t* x1 = X + (c1) * NV; \
  __global const vec_t* x2 = X + (c2) * NV; __global const vec_t* x3 = X + (c3) * NV
)CLC";

inline constexpr const char* kSpmmCsr = R"CLC(
__kernel __attribute__((reqd_work_group_size(LX, KS, 1)))
void spmm_csr(const int M, const int NV,
              __global const int* restrict rowptr, __global const int* restrict cols,
              __global const float* restrict vals, __global const vec_t* restrict X,
              __global const float* restrict scale, __global const float* restrict shift,
              __global vec_t* restrict Y, const int act, const float p0, const float p1) {
  const int tx = get_local_id(0), s = get_local_id(1);
  const int n0 = get_group_id(0) * LX * NPT;  // this group's part of N (NG > 1)
#if KS > 1
  __local vec_t red[KS][LX * NPT];
#endif
#if STAGE > 0
  __local int lc[STAGE];
  __local float lv[STAGE];
#endif
  for (int r = 0; r < RPW; ++r) {
    // No early exit: barriers below must be reached by every work-item (PoCL miscompiles a
    // barrier behind a uniform break), so a row past M just has an empty range.
    const int row = get_group_id(1) * RPW + r;
    const bool valid = row < M;
    vec_t acc[NPT];
#pragma unroll
    for (int i = 0; i < NPT; ++i) acc[i] = 0.0f;
    const int beg = valid ? rowptr[row] : 0, end = valid ? rowptr[row + 1] : 0;
#if STAGE > 0
    // The row's nonzeros pass through local memory STAGE at a time, loaded coalesced by the
    // whole group with columns pre-multiplied by NV: the X loads then depend on a local read,
    // not on a global one.
    const int lid = s * LX + tx;
    for (int c0 = beg; c0 < end; c0 += STAGE) {
      const int cnt = min(STAGE, end - c0);
      for (int q = lid; q < cnt; q += LX * KS) {
        lc[q] = cols[c0 + q] * NV;
        lv[q] = vals[c0 + q];
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      int q = s;
      for (; q + 3 * KS < cnt; q += 4 * KS) {
        __global const vec_t* x0 = X + lc[q];
        __global const vec_t* x1 = X + lc[q + KS];
        __global const vec_t* x2 = X + lc[q + 2 * KS];
        __global const vec_t* x3 = X + lc[q + 3 * KS];
        const float v0 = lv[q], v1 = lv[q + KS], v2 = lv[q + 2 * KS], v3 = lv[q + 3 * KS];
#pragma unroll
        for (int i = 0; i < NPT; ++i) {
          const int n = n0 + tx + i * LX;
          if (n < NV)
            acc[i] = mad((vec_t)(v3), x3[n], mad((vec_t)(v2), x2[n], mad((vec_t)(v1), x1[n], mad((vec_t)(v0), x0[n], acc[i]))));
        }
      }
      for (; q < cnt; q += KS) {
        __global const vec_t* x0 = X + lc[q];
        const float v0 = lv[q];
#pragma unroll
        for (int i = 0; i < NPT; ++i) {
          const int n = n0 + tx + i * LX;
          if (n < NV) acc[i] = mad((vec_t)(v0), x0[n], acc[i]);
        }
      }
      barrier(CLK_LOCAL_MEM_FENCE);
    }
#elif PRED
    // Four nonzeros per step, the missing ones loaded as column 0 with value 0 and left out of
    // the sum (select, so a non-finite X row 0 cannot leak in).
    for (int j = beg + s; j < end; j += 4 * KS) {
      const bool h1 = j + KS < end, h2 = j + 2 * KS < end, h3 = j + 3 * KS < end;
      const int c0 = cols[j], c1 = h1 ? cols[j + KS] : 0, c2 = h2 ? cols[j + 2 * KS] : 0, c3 = h3 ? cols[j + 3 * KS] : 0;
      const float v0 = vals[j], v1 = h1 ? vals[j + KS] : 0.0f, v2 = h2 ? vals[j + 2 * KS] : 0.0f,
                  v3 = h3 ? vals[j + 3 * KS] : 0.0f;
      X_ROWS(c0, c1, c2, c3);
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n < NV) {
          vec_t a = mad((vec_t)(v0), x0[n], acc[i]);
          const vec_t p1 = (vec_t)(v1) * x1[n], p2 = (vec_t)(v2) * x2[n], p3 = (vec_t)(v3) * x3[n];
          a += h1 ? p1 : (vec_t)(0.0f);
          a += h2 ? p2 : (vec_t)(0.0f);
          a += h3 ? p3 : (vec_t)(0.0f);
          acc[i] = a;
        }
      }
    }
#else
    int j = beg + s;
    // Four nonzeros per step: their index, value and X loads are all in flight at once.
    for (; j + 3 * KS < end; j += 4 * KS) {
      const int c0 = cols[j], c1 = cols[j + KS], c2 = cols[j + 2 * KS], c3 = cols[j + 3 * KS];
      const float v0 = vals[j], v1 = vals[j + KS], v2 = vals[j + 2 * KS], v3 = vals[j + 3 * KS];
      X_ROWS(c0, c1, c2, c3);
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n < NV)
          acc[i] = mad((vec_t)(v3), x3[n], mad((vec_t)(v2), x2[n], mad((vec_t)(v1), x1[n], mad((vec_t)(v0), x0[n], acc[i]))));
      }
    }
    for (; j < end; j += KS) {
      const float v0 = vals[j];
      __global const vec_t* x0 = X + cols[j] * NV;
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n < NV) acc[i] = mad((vec_t)(v0), x0[n], acc[i]);
      }
    }
#endif
#if KS > 1
#pragma unroll
    for (int i = 0; i < NPT; ++i) red[s][tx + i * LX] = acc[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (s == 0) {
      for (int q = 1; q < KS; ++q)
#pragma unroll
        for (int i = 0; i < NPT; ++i) acc[i] += red[q][tx + i * LX];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    if (s == 0 && valid) {
      const float sc = scale[row], sh = shift[row];
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n < NV) Y[row * NV + n] = EPI(acc[i], sc, sh);
      }
    }
  }
}
)CLC";

// BSR with 4x1 blocks: block row b covers rows 4b..4b+3; a block is one column and four values
// (a float4), so each X load serves four rows. Rows past M are zero-padded at pack time.
inline constexpr const char* kSpmmBsr4x1 = R"CLC(
__kernel __attribute__((reqd_work_group_size(LX, KS, 1)))
void spmm_bsr4x1(const int M, const int NV,
                 __global const int* restrict rowptr, __global const int* restrict cols,
                 __global const float4* restrict vals, __global const vec_t* restrict X,
                 __global const float* restrict scale, __global const float* restrict shift,
                 __global vec_t* restrict Y, const int act, const float p0, const float p1) {
  const int tx = get_local_id(0), s = get_local_id(1);
  const int n0 = get_group_id(0) * LX * NPT;  // this group's part of N (NG > 1)
  const int MB = (M + 3) / 4;
#if KS > 1
  __local vec_t red[KS][4 * LX * NPT];
#endif
  for (int r = 0; r < RPW; ++r) {
    const int b = get_group_id(1) * RPW + r;
    const bool valid = b < MB;  // no early exit before the barriers (see spmm_csr)
    vec_t a0[NPT], a1[NPT], a2[NPT], a3[NPT];
#pragma unroll
    for (int i = 0; i < NPT; ++i) a0[i] = a1[i] = a2[i] = a3[i] = 0.0f;
    const int beg = valid ? rowptr[b] : 0, end = valid ? rowptr[b + 1] : 0;
    for (int j = beg + s; j < end; j += KS) {
      const float4 v = vals[j];
      __global const vec_t* x = X + cols[j] * NV;
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n < NV) {
          const vec_t xv = x[n];
          a0[i] = mad((vec_t)(v.x), xv, a0[i]);
          a1[i] = mad((vec_t)(v.y), xv, a1[i]);
          a2[i] = mad((vec_t)(v.z), xv, a2[i]);
          a3[i] = mad((vec_t)(v.w), xv, a3[i]);
        }
      }
    }
#if KS > 1
#pragma unroll
    for (int i = 0; i < NPT; ++i) {
      const int c = tx + i * LX;
      red[s][c] = a0[i];
      red[s][LX * NPT + c] = a1[i];
      red[s][2 * LX * NPT + c] = a2[i];
      red[s][3 * LX * NPT + c] = a3[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (s == 0) {
      for (int q = 1; q < KS; ++q)
#pragma unroll
        for (int i = 0; i < NPT; ++i) {
          const int c = tx + i * LX;
          a0[i] += red[q][c];
          a1[i] += red[q][LX * NPT + c];
          a2[i] += red[q][2 * LX * NPT + c];
          a3[i] += red[q][3 * LX * NPT + c];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    if (s == 0 && valid) {
      const int m = 4 * b;
#pragma unroll
      for (int i = 0; i < NPT; ++i) {
        const int n = n0 + tx + i * LX;
        if (n >= NV) continue;
        Y[m * NV + n] = EPI(a0[i], scale[m], shift[m]);
        if (m + 1 < M) Y[(m + 1) * NV + n] = EPI(a1[i], scale[m + 1], shift[m + 1]);
        if (m + 2 < M) Y[(m + 2) * NV + n] = EPI(a2[i], scale[m + 2], shift[m + 2]);
        if (m + 3 < M) Y[(m + 3) * NV + n] = EPI(a3[i], scale[m + 3], shift[m + 3]);
      }
    }
  }
}
)CLC";

}  // namespace sparseloom::opencl::kernels
