#pragma once
// Convolution, batch 1, NCHW. A general conv is im2col into (C*KH*KW) x (OH*OW) followed by a
// dense or sparse GEMM with the weights as the M x K operand; a 1x1 stride-1 conv skips
// im2col. Depthwise (groups == C == Cout) runs directly, one output per work-item.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kConv = R"CLC(
// The input element that row `row`, column `p` of the im2col matrix holds; -1 in the padding.
inline int im2col_src(const int p, const int row, const int H, const int W, const int KH, const int KW,
                      const int SH, const int SW, const int PH, const int PW, const int DH, const int DW,
                      const int OW) {
  const int kw = row % KW, kh = (row / KW) % KH, c = row / (KW * KH);
  const int oh = p / OW, ow = p % OW;
  const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
  return (ih >= 0 && ih < H && iw >= 0 && iw < W) ? (c * H + ih) * W + iw : -1;
}

__kernel void im2col(__global const float* restrict in, __global float* restrict out,
                     const int C, const int H, const int W, const int KH, const int KW,
                     const int SH, const int SW, const int PH, const int PW,
                     const int DH, const int DW, const int OH, const int OW) {
  const int p = get_global_id(0), row = get_global_id(1);
  const int P = OH * OW;
  if (p >= P || row >= C * KH * KW) return;
  const int i = im2col_src(p, row, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW);
  out[row * P + p] = i >= 0 ? in[i] : 0.0f;
}

// im2col of a dequantised u8 activation back to its u8 values (the INT8 conv's right operand):
// in holds (q - zx) * sx, so rint(in / sx) is q - zx to well under half a step. Padding is the
// real zero, i.e. zx.
__kernel void im2col_u8(__global const float* restrict in, __global uchar* restrict out, const float sx, const int zx,
                        const int C, const int H, const int W, const int KH, const int KW,
                        const int SH, const int SW, const int PH, const int PW,
                        const int DH, const int DW, const int OH, const int OW) {
  const int p = get_global_id(0), row = get_global_id(1);
  const int P = OH * OW;
  if (p >= P || row >= C * KH * KW) return;
  const int i = im2col_src(p, row, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW);
  out[row * P + p] = (uchar)(i >= 0 ? clamp((int)rint(in[i] / sx) + zx, 0, 255) : zx);
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
