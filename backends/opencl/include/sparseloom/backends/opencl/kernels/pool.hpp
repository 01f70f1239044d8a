#pragma once
// Pooling, NCHW, batch folded into channels. max/avg over a KH x KW window (avg counts the
// padding or not, as ONNX's count_include_pad says); global average pool reduces each channel
// in one work-group through local memory.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kPool = R"CLC(
__kernel void pool2d(__global const float* restrict in, __global float* restrict out,
                     const int C, const int H, const int W, const int KH, const int KW,
                     const int SH, const int SW, const int PH, const int PW, const int OH,
                     const int OW, const int is_max, const int count_include_pad) {
  const int ow = get_global_id(0), oh = get_global_id(1), c = get_global_id(2);
  if (ow >= OW || oh >= OH || c >= C) return;
  __global const float* x = in + c * H * W;
  float acc = is_max ? -INFINITY : 0.0f;
  int cnt = 0;
  for (int kh = 0; kh < KH; ++kh) {
    const int ih = oh * SH - PH + kh;
    if (ih < 0 || ih >= H) continue;
    for (int kw = 0; kw < KW; ++kw) {
      const int iw = ow * SW - PW + kw;
      if (iw < 0 || iw >= W) continue;
      const float v = x[ih * W + iw];
      acc = is_max ? fmax(acc, v) : acc + v;
      ++cnt;
    }
  }
  if (!is_max) acc /= (float)(count_include_pad ? KH * KW : max(cnt, 1));
  out[(c * OH + oh) * OW + ow] = acc;
}

#define GAP_LS 64
__kernel __attribute__((reqd_work_group_size(GAP_LS, 1, 1)))
void global_avgpool(__global const float* restrict in, __global float* restrict out, const int HW) {
  __local float part[GAP_LS];
  const int c = get_group_id(0), l = get_local_id(0);
  __global const float* x = in + c * HW;
  float s = 0.0f;
  for (int i = l; i < HW; i += GAP_LS) s += x[i];
  part[l] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = GAP_LS / 2; w > 0; w >>= 1) {
    if (l < w) part[l] += part[l + w];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (l == 0) out[c] = part[0] / (float)HW;
}
)CLC";

}  // namespace sparseloom::opencl::kernels
