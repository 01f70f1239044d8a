#pragma once
// Convolution, batch 1, NCHW. A general conv is im2col into (C*KH*KW) x (OH*OW) followed by a
// dense or sparse GEMM with the weights as the M x K operand; a 1x1 stride-1 conv skips
// im2col. Depthwise (groups == C == Cout) runs directly, one output per work-item.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kConv = R"CLC(
__kernel void im2col(__global const float* restrict in, __global float* restrict out,
                     const int C, const int H, const int W, const int KH, const int KW,
                     const int SH, const int SW, const int PH, const int PW,
                     const int DH, const int DW, const int OH, const int OW) {
  const int p = get_global_id(0), row = get_global_id(1);
  const int P = OH * OW;
  if (p >= P || row >= C * KH * KW) return;
  const int kw = row % KW, kh = (row / KW) % KH, c = row / (KW * KH);
  const int oh = p / OW, ow = p % OW;
  const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
  out[row * P + p] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? in[(c * H + ih) * W + iw] : 0.0f;
}

__kernel void depthwise_conv(__global const float* restrict in, __global const float* restrict wt,
                             __global const float* restrict scale, __global const float* restrict shift,
                             __global float* restrict out, const int C, const int H, const int W,
                             const int KH, const int KW, const int SH, const int SW,
                             const int PH, const int PW, const int DH, const int DW,
                             const int OH, const int OW, const int act, const float p0, const float p1) {
  const int ow = get_global_id(0), oh = get_global_id(1), c = get_global_id(2);
  if (ow >= OW || oh >= OH || c >= C) return;
  __global const float* x = in + c * H * W;
  __global const float* w = wt + c * KH * KW;
  float acc = 0.0f;
  for (int kh = 0; kh < KH; ++kh) {
    const int ih = oh * SH - PH + kh * DH;
    if (ih < 0 || ih >= H) continue;
    for (int kw = 0; kw < KW; ++kw) {
      const int iw = ow * SW - PW + kw * DW;
      if (iw >= 0 && iw < W) acc = mad(w[kh * KW + kw], x[ih * W + iw], acc);
    }
  }
  out[(c * OH + oh) * OW + ow] = apply_act(mad(scale[c], acc, shift[c]), act, p0, p1);
}
)CLC";

}  // namespace sparseloom::opencl::kernels
