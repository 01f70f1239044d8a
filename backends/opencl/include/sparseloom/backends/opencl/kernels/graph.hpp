#pragma once
// Kernels the graph executor (backend.hpp) needs beyond the layer kernels: every element-wise
// op of the import set with numpy broadcasting, layout copies (index-map gather, concat), the
// general convolution (any groups, batch, asymmetric padding) and pooling (dilation, ceil
// mode), softmax over any axis, mean over a contiguous axis range, batched MatMul of two
// activations, Quantize/Dequantize (values kept as floats on the device), and the per-channel
// affine of a stitch repair. Index arrays (dims/strides) travel in a small int buffer.
namespace sparseloom::opencl::kernels {

inline constexpr const char* kGraph = R"CLC(
#define U_IDENTITY 0
#define U_RELU 1
#define U_LEAKY 2
#define U_CLIP 3
#define U_SIGMOID 4
#define U_HARDSIGMOID 5
#define U_HARDSWISH 6
#define U_TANH 7
#define U_ERF 8
#define U_GELU 9
#define U_SQRT 10
#define U_NEG 11
#define U_EXP 12
#define U_ABS 13
#define U_RECIP 14
inline float unary_op(float v, int op, float p0, float p1) {
  switch (op) {
    case U_RELU: return v > 0.0f ? v : 0.0f;
    case U_LEAKY: return v >= 0.0f ? v : p0 * v;
    case U_CLIP: return fmin(fmax(v, p0), p1);
    case U_SIGMOID: return 1.0f / (1.0f + exp(-v));
    case U_HARDSIGMOID: return clamp(p0 * v + p1, 0.0f, 1.0f);
    case U_HARDSWISH: return v * clamp(v / 6.0f + 0.5f, 0.0f, 1.0f);
    case U_TANH: return tanh(v);
    case U_ERF: return erf(v);
    case U_GELU: return 0.5f * v * (1.0f + erf(v * 0.70710678f));
    case U_SQRT: return sqrt(v);
    case U_NEG: return -v;
    case U_EXP: return exp(v);
    case U_ABS: return fabs(v);
    case U_RECIP: return 1.0f / v;
    default: return v;
  }
}

__kernel void g_unary(__global const float* restrict x, __global float* restrict y, const int n,
                      const int op, const float p0, const float p1) {
  const int i = get_global_id(0);
  if (i < n) y[i] = unary_op(x[i], op, p0, p1);
}

#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_POW 4
inline float binary_op(float a, float b, int op) {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    default: return b == 2.0f ? a * a : pow(a, b);
  }
}
// info: rank, then out dims[rank], a strides[rank], b strides[rank] (0 where broadcast).
__kernel void g_binary(__global const float* a, __global const float* b, __global float* y,
                       __global const int* info, const int n, const int op, const int uop,
                       const float p0, const float p1) {
  const int i = get_global_id(0);
  if (i >= n) return;
  const int rank = info[0];
  int rem = i, ia = 0, ib = 0;
  for (int d = rank - 1; d >= 0; --d) {
    const int dim = info[1 + d];
    const int q = rem % dim;
    rem /= dim;
    ia += q * info[1 + rank + d];
    ib += q * info[1 + 2 * rank + d];
  }
  y[i] = unary_op(binary_op(a[ia], b[ib], op), uop, p0, p1);
}
__kernel void g_binary_same(__global const float* a, __global const float* b, __global float* y,
                            const int n, const int op, const int uop, const float p0, const float p1) {
  const int i = get_global_id(0);
  if (i < n) y[i] = unary_op(binary_op(a[i], b[i], op), uop, p0, p1);
}

// y[i] = x[idx[i]]: every pure data movement (Transpose, Slice, Gather with constant indices,
// Split, Expand, ...) as an index map computed once at compile time.
__kernel void g_gather(__global const float* restrict x, __global const int* restrict idx,
                       __global float* restrict y, const int n) {
  const int i = get_global_id(0);
  if (i < n) y[i] = x[idx[i]];
}

// Block copy: y[o * out_block + out_off + j] = x[o * in_block + in_off + j], j < len
// (Concat writes an input into its slot, Split/Slice read a slot).
__kernel void g_copy_blocks(__global const float* restrict x, __global float* restrict y,
                            const int outer, const int len, const int in_block, const int in_off,
                            const int out_block, const int out_off) {
  const int j = get_global_id(0), o = get_global_id(1);
  if (j < len && o < outer) y[o * out_block + out_off + j] = x[o * in_block + in_off + j];
}

// General 2-D convolution, NCHW, any groups and batch, pads given as begins (the output size
// carries the ends). out = act(scale[co] * acc + shift[co]).
__kernel void g_conv_direct(__global const float* restrict in, __global const float* restrict wt,
                            __global const float* restrict scale, __global const float* restrict shift,
                            __global float* restrict out, const int C, const int H, const int W,
                            const int Cout, const int G, const int KH, const int KW, const int SH,
                            const int SW, const int PH, const int PW, const int DH, const int DW,
                            const int OH, const int OW, const int act, const float p0, const float p1) {
  const int ow = get_global_id(0), oh = get_global_id(1), nco = get_global_id(2);
  if (ow >= OW || oh >= OH) return;
  const int co = nco % Cout, n = nco / Cout;
  const int cpg = C / G, opg = Cout / G, g = co / opg;
  float acc = 0.0f;
  for (int ci = 0; ci < cpg; ++ci) {
    __global const float* x = in + ((n * C + g * cpg + ci) * H) * W;
    __global const float* w = wt + (co * cpg + ci) * KH * KW;
    for (int kh = 0; kh < KH; ++kh) {
      const int ih = oh * SH - PH + kh * DH;
      if (ih < 0 || ih >= H) continue;
      for (int kw = 0; kw < KW; ++kw) {
        const int iw = ow * SW - PW + kw * DW;
        if (iw >= 0 && iw < W) acc = mad(w[kh * KW + kw], x[ih * W + iw], acc);
      }
    }
  }
  out[(nco * OH + oh) * OW + ow] = apply_act(mad(scale[co], acc, shift[co]), act, p0, p1);
}

// Max / average pooling over planes (N*C folded), with dilation and explicit output size.
__kernel void g_pool(__global const float* restrict in, __global float* restrict out,
                     const int H, const int W, const int KH, const int KW, const int SH,
                     const int SW, const int PH, const int PW, const int DH, const int DW,
                     const int OH, const int OW, const int is_max, const int count_include_pad,
                     const int PHE, const int PWE) {
  const int ow = get_global_id(0), oh = get_global_id(1), c = get_global_id(2);
  if (ow >= OW || oh >= OH) return;
  __global const float* x = in + c * H * W;
  float acc = is_max ? -INFINITY : 0.0f;
  int cnt = 0, cnt_pad = 0;
  for (int kh = 0; kh < KH; ++kh) {
    const int ih = oh * SH - PH + kh * DH;
    for (int kw = 0; kw < KW; ++kw) {
      const int iw = ow * SW - PW + kw * DW;
      if (ih < H + PHE && iw < W + PWE) ++cnt_pad;
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
      const float v = x[ih * W + iw];
      acc = is_max ? fmax(acc, v) : acc + v;
      ++cnt;
    }
  }
  if (!is_max) acc /= (float)(count_include_pad ? max(cnt_pad, 1) : max(cnt, 1));
  out[(c * OH + oh) * OW + ow] = acc;
}

// Softmax over the middle axis of an (outer, d, inner) view: one work-item per (outer, inner).
__kernel void g_softmax_axis(__global const float* restrict x, __global float* restrict y,
                             const int outer, const int d, const int inner) {
  const int k = get_global_id(0), o = get_global_id(1);
  if (k >= inner || o >= outer) return;
  __global const float* xr = x + o * d * inner + k;
  __global float* yr = y + o * d * inner + k;
  float mx = -INFINITY;
  for (int i = 0; i < d; ++i) mx = fmax(mx, xr[i * inner]);
  float s = 0.0f;
  for (int i = 0; i < d; ++i) s += exp(xr[i * inner] - mx);
  for (int i = 0; i < d; ++i) yr[i * inner] = exp(xr[i * inner] - mx) / s;
}

// Mean over the middle axis of an (outer, d, inner) view.
__kernel void g_mean_axis(__global const float* restrict x, __global float* restrict y,
                          const int outer, const int d, const int inner) {
  const int k = get_global_id(0), o = get_global_id(1);
  if (k >= inner || o >= outer) return;
  __global const float* xr = x + o * d * inner + k;
  float s = 0.0f;
  for (int i = 0; i < d; ++i) s += xr[i * inner];
  y[o * inner + k] = s / (float)d;
}

// Batched MatMul of two activations. info: batch rank r, out batch dims[r], a batch
// strides[r], b batch strides[r] (0 where broadcast). Y[b] = A[b] (M x K) * B[b] (K x N).
__kernel void g_batch_matmul(__global const float* restrict a, __global const float* restrict b,
                             __global float* restrict y, __global const int* info,
                             const int M, const int N, const int K) {
  const int n = get_global_id(0), m = get_global_id(1), bi = get_global_id(2);
  if (n >= N || m >= M) return;
  const int r = info[0];
  int rem = bi, oa = 0, ob = 0;
  for (int d = r - 1; d >= 0; --d) {
    const int dim = info[1 + d];
    const int q = rem % dim;
    rem /= dim;
    oa += q * info[1 + r + d];
    ob += q * info[1 + 2 * r + d];
  }
  __global const float* ar = a + oa + m * K;
  __global const float* bc = b + ob + n;
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) acc = mad(ar[k], bc[k * N], acc);
  y[(bi * M + m) * N + n] = acc;
}

// Quantize / dequantize with per-tensor or per-channel parameters (channel = (i / inner) %
// channels). Quantized values stay floats on the device (exact for 8-bit); mode 0 quantize,
// 1 dequantize, 2 both (a fused QuantizeLinear -> DequantizeLinear pair).
__kernel void g_qdq(__global const float* restrict x, __global float* restrict y,
                    __global const float* restrict scale, __global const float* restrict zp,
                    const int n, const int inner, const int channels, const int mode,
                    const float lo, const float hi) {
  const int i = get_global_id(0);
  if (i >= n) return;
  const int c = channels > 1 ? (i / inner) % channels : 0;
  float v = x[i];
  if (mode != 1) v = clamp(rint(v / scale[c]) + zp[c], lo, hi);
  if (mode != 0) v = (v - zp[c]) * scale[c];
  y[i] = v;
}

// y = x * scale[c] + shift[c], channel = (i / inner) % channels (BatchNormalization, repairs).
__kernel void g_channel_affine(__global const float* x, __global float* y,
                               __global const float* restrict scale, __global const float* restrict shift,
                               const int n, const int inner, const int channels) {
  const int i = get_global_id(0);
  if (i >= n) return;
  const int c = (i / inner) % channels;
  y[i] = x[i] * scale[c] + shift[c];
}
)CLC";

}  // namespace sparseloom::opencl::kernels
