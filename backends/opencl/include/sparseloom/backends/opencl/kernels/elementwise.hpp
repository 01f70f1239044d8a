#pragma once
// Element-wise ops. Unary: an activation code from the prelude. Binary: add / mul with B
// broadcast as a full tensor, a scalar, or a per-channel vector (index (i / inner) % channels).
namespace sparseloom::opencl::kernels {

inline constexpr const char* kElementwise = R"CLC(
__kernel void ew_unary(__global const float* restrict x, __global float* restrict y, const int n,
                       const int act, const float p0, const float p1) {
  const int i = get_global_id(0);
  if (i < n) y[i] = apply_act(x[i], act, p0, p1);
}
#define BIN_ADD 0
#define BIN_MUL 1
#define B_FULL 0
#define B_SCALAR 1
#define B_CHANNEL 2
__kernel void ew_binary(__global const float* restrict a, __global const float* restrict b,
                        __global float* restrict y, const int n, const int op, const int bmode,
                        const int inner, const int channels, const int act, const float p0,
                        const float p1) {
  const int i = get_global_id(0);
  if (i >= n) return;
  const float bv = bmode == B_FULL ? b[i] : bmode == B_SCALAR ? b[0] : b[(i / inner) % channels];
  const float v = op == BIN_ADD ? a[i] + bv : a[i] * bv;
  y[i] = apply_act(v, act, p0, p1);
}
)CLC";

}  // namespace sparseloom::opencl::kernels
