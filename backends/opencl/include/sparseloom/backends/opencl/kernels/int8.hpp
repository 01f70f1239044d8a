#pragma once
// INT8 dense GEMM: W s8 (MxK4 row-major, K padded to a multiple of 4 with zeros, per-row
// symmetric scale), X u8 (KxN row-major, per-tensor zero point zx). acc = sum W*(X - zx)
// = sum W*X - zx * rowsum(W), in int32; y = act(scale[m] * acc + shift[m]) with scale[m] =
// w_scale[m] * x_scale folded on the host. Each work-item computes 4 rows x 4 columns: a
// char4 of W against four uchar4 rows of X per K-step of 4 (int4 multiply-adds).
namespace sparseloom::opencl::kernels {

inline constexpr const char* kGemmS8U8 = R"CLC(
inline int4 load_x4(__global const uchar* X, int k, int n, int N) {
  __global const uchar* p = X + k * N + n;
  if (n + 3 < N) return convert_int4(vload4(0, p));
  return (int4)(p[0], n + 1 < N ? p[1] : 0, n + 2 < N ? p[2] : 0, 0);
}
__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_s8u8(const int M, const int N, const int K, const int K4,
               __global const char* restrict W, __global const uchar* restrict X,
               __global const int* restrict wsum, const int zx,
               __global const float* restrict scale, __global const float* restrict shift,
               __global float* restrict Y, const int act, const float p0, const float p1) {
  const int n = get_global_id(0) * 4, m0 = get_global_id(1) * 4;
  if (n >= N || m0 >= M) return;
  int4 acc[4] = {(int4)(0), (int4)(0), (int4)(0), (int4)(0)};
  __global const char* w[4];
  for (int i = 0; i < 4; ++i) w[i] = W + min(m0 + i, M - 1) * K4;
  int k = 0;
  for (; k + 3 < K; k += 4) {
    const int4 x0 = load_x4(X, k, n, N), x1 = load_x4(X, k + 1, n, N);
    const int4 x2 = load_x4(X, k + 2, n, N), x3 = load_x4(X, k + 3, n, N);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int4 wv = convert_int4(vload4(0, w[i] + k));
      acc[i] += wv.x * x0 + wv.y * x1 + wv.z * x2 + wv.w * x3;
    }
  }
  for (; k < K; ++k) {
    const int4 xk = load_x4(X, k, n, N);
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[i] += (int)w[i][k] * xk;
  }
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + i;
    if (m >= M) break;
    const float4 a = convert_float4(acc[i] - (int4)(zx * wsum[m]));
    const float4 v = apply_act4(mad((float4)(scale[m]), a, (float4)(shift[m])), act, p0, p1);
    __global float* y = Y + m * N + n;
    if (n + 3 < N) {
      vstore4(v, 0, y);
    } else {
      y[0] = v.x;
      if (n + 1 < N) y[1] = v.y;
      if (n + 2 < N) y[2] = v.z;
    }
  }
}
)CLC";

// A dequantised u8 activation X (R x K row-major) back to u8 and transposed to K x R (the
// INT8 GEMM's right operand), as kConv's im2col_u8 does for convs.
inline constexpr const char* kQuantU8T = R"CLC(
__kernel void quant_u8_t(__global const float* restrict in, __global uchar* restrict out, const float sx, const int zx,
                         const int R, const int K) {
  const int r = get_global_id(0), k = get_global_id(1);
  if (r >= R || k >= K) return;
  out[k * R + r] = (uchar)clamp((int)rint(in[r * K + k] / sx) + zx, 0, 255);
}
)CLC";

}  // namespace sparseloom::opencl::kernels
