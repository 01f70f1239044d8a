#pragma once
// OpenCL C 1.2 shared by every kernel: the fused epilogue y = act(scale[m] * acc + shift[m]).
// Bias and the stitch repair both fold into scale/shift at pack time, so they cost nothing.
namespace sparseloom::opencl::kernels {

// Activation codes match opencl::Activation.
inline constexpr const char* kPrelude = R"CLC(
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_CLIP 2
#define ACT_SIGMOID 3
#define ACT_HARDSWISH 4
#define ACT_GELU 5
inline float apply_act(float v, int act, float p0, float p1) {
  switch (act) {
    case ACT_RELU: return fmax(v, 0.0f);
    case ACT_CLIP: return clamp(v, p0, p1);
    case ACT_SIGMOID: return 1.0f / (1.0f + exp(-v));
    case ACT_HARDSWISH: return v * clamp(v + 3.0f, 0.0f, 6.0f) * (1.0f / 6.0f);
    case ACT_GELU: return 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
    default: return v;
  }
}
inline float4 apply_act4(float4 v, int act, float p0, float p1) {
  return (float4)(apply_act(v.x, act, p0, p1), apply_act(v.y, act, p0, p1),
                  apply_act(v.z, act, p0, p1), apply_act(v.w, act, p0, p1));
}
)CLC";

}  // namespace sparseloom::opencl::kernels
