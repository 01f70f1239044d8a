#pragma once
// Row-wise reductions over the last axis: softmax (max-subtracted) and layer normalisation
// (two-pass mean/variance, gamma/beta). One work-group of RED_LS work-items per row.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kNorm = R"CLC(
#define RED_LS 128
inline float group_sum(__local float* part, float v) {
  const int l = get_local_id(0);
  part[l] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = RED_LS / 2; w > 0; w >>= 1) {
    if (l < w) part[l] += part[l + w];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = part[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
inline float group_max(__local float* part, float v) {
  const int l = get_local_id(0);
  part[l] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = RED_LS / 2; w > 0; w >>= 1) {
    if (l < w) part[l] = fmax(part[l], part[l + w]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float r = part[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}

__kernel __attribute__((reqd_work_group_size(RED_LS, 1, 1)))
void softmax_rows(__global const float* restrict x, __global float* restrict y, const int cols) {
  __local float part[RED_LS];
  const int row = get_group_id(0), l = get_local_id(0);
  __global const float* xr = x + row * cols;
  __global float* yr = y + row * cols;
  float mx = -INFINITY;
  for (int i = l; i < cols; i += RED_LS) mx = fmax(mx, xr[i]);
  mx = group_max(part, mx);
  float s = 0.0f;
  for (int i = l; i < cols; i += RED_LS) s += exp(xr[i] - mx);
  s = group_sum(part, s);
  const float inv = 1.0f / s;
  for (int i = l; i < cols; i += RED_LS) yr[i] = exp(xr[i] - mx) * inv;
}

__kernel __attribute__((reqd_work_group_size(RED_LS, 1, 1)))
void layernorm_rows(__global const float* restrict x, __global const float* restrict gamma,
                    __global const float* restrict beta, __global float* restrict y,
                    const int cols, const float eps) {
  __local float part[RED_LS];
  const int row = get_group_id(0), l = get_local_id(0);
  __global const float* xr = x + row * cols;
  __global float* yr = y + row * cols;
  float s = 0.0f;
  for (int i = l; i < cols; i += RED_LS) s += xr[i];
  const float mean = group_sum(part, s) / (float)cols;
  float v = 0.0f;
  for (int i = l; i < cols; i += RED_LS) { const float d = xr[i] - mean; v = mad(d, d, v); }
  const float rstd = rsqrt(group_sum(part, v) / (float)cols + eps);
  for (int i = l; i < cols; i += RED_LS) yr[i] = mad((xr[i] - mean) * rstd, gamma[i], beta[i]);
}
)CLC";

}  // namespace sparseloom::opencl::kernels
