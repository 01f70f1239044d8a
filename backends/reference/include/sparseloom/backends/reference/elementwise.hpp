#pragma once
// Reference element-wise, normalisation and quantisation ops (f32 unless stated). Clarity over
// speed: this backend is the numerical oracle every other backend is tested against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "sparseloom/core/tensor.hpp"
#include "sparseloom/ir/constant_fold.hpp"
#include "sparseloom/ir/graph.hpp"
#include "sparseloom/ir/shape_util.hpp"

namespace sparseloom::reference {

template <class F>
Tensor unary(const Tensor& x, F f) {
  const Tensor c = x.contiguous();
  Tensor y = Tensor::empty(c.shape(), DType::f32);
  const float* a = c.data<float>();
  float* o = y.data<float>();
  const auto n = c.numel();
  for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  return y;
}

// Calls f(out_index, a_index, b_index) for numpy broadcasting of a and b.
template <class F>
void broadcast_indices(const Shape& as, const Shape& bs, const Shape& os, F f) {
  const std::size_t r = os.size();
  auto padded_strides = [&](const Shape& s) {
    Shape st(r, 0);
    const Shape cs = contiguous_strides(s);
    for (std::size_t i = 0; i < s.size(); ++i)
      st[r - s.size() + i] = s[i] == 1 ? 0 : cs[i];
    return st;
  };
  const Shape sa = padded_strides(as), sb = padded_strides(bs);
  std::vector<std::int64_t> idx(r, 0);
  std::int64_t ia = 0, ib = 0;
  const auto n = numel_of(os);
  for (std::int64_t i = 0; i < n; ++i) {
    f(i, ia, ib);
    for (std::size_t d = r; d-- > 0;) {
      ia += sa[d];
      ib += sb[d];
      if (++idx[d] < os[d]) break;
      ia -= sa[d] * os[d];
      ib -= sb[d] * os[d];
      idx[d] = 0;
    }
  }
}

template <class F>
Tensor binary(const Tensor& a_in, const Tensor& b_in, F f, const std::string& where) {
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  check(a.dtype() == DType::f32 && b.dtype() == DType::f32, ErrorCode::unsupported, where,
        "element-wise op on " + std::string(to_string(a.dtype())) + " and " + std::string(to_string(b.dtype())));
  const Shape os = ir::broadcast_shapes(a.shape(), b.shape(), where);
  Tensor y = Tensor::empty(os, DType::f32);
  const float *pa = a.data<float>(), *pb = b.data<float>();
  float* o = y.data<float>();
  if (a.shape() == b.shape()) {
    const auto n = y.numel();
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
  } else {
    broadcast_indices(a.shape(), b.shape(), os, [&](auto i, auto ia, auto ib) { o[i] = f(pa[ia], pb[ib]); });
  }
  return y;
}

// Softmax over one axis (opset 13 semantics).
inline Tensor softmax(const Tensor& x_in, std::int64_t axis) {
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  std::int64_t outer = 1, inner = 1;
  const auto d = x.shape()[axis];
  for (std::int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (std::size_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  const float* a = x.data<float>();
  float* o = y.data<float>();
  for (std::int64_t p = 0; p < outer; ++p)
    for (std::int64_t q = 0; q < inner; ++q) {
      const auto base = p * d * inner + q;
      float m = -std::numeric_limits<float>::infinity();
      for (std::int64_t k = 0; k < d; ++k) m = std::max(m, a[base + k * inner]);
      double s = 0;
      for (std::int64_t k = 0; k < d; ++k) s += o[base + k * inner] = std::exp(a[base + k * inner] - m);
      for (std::int64_t k = 0; k < d; ++k) o[base + k * inner] = static_cast<float>(o[base + k * inner] / s);
    }
  return y;
}

// Normalises over the trailing dims from `axis`, then scale and bias (opset 17 LayerNormalization).
inline Tensor layer_norm(const Tensor& x_in, const Tensor& scale, const Tensor* bias, std::int64_t axis, float eps) {
  const Tensor x = x_in.contiguous();
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(x.rank()); ++i) (i < axis ? outer : inner) *= x.shape()[i];
  const Tensor s = scale.contiguous();
  check(s.numel() == inner && (!bias || bias->numel() == inner), ErrorCode::shape, "LayerNormalization",
        "scale/bias size differs from the normalised size");
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float* a = x.data<float>();
  const Tensor b = bias ? bias->contiguous() : Tensor();
  for (std::int64_t p = 0; p < outer; ++p) {
    double mean = 0, var = 0;
    for (std::int64_t k = 0; k < inner; ++k) mean += a[p * inner + k];
    mean /= static_cast<double>(inner);
    for (std::int64_t k = 0; k < inner; ++k) var += (a[p * inner + k] - mean) * (a[p * inner + k] - mean);
    var /= static_cast<double>(inner);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (std::int64_t k = 0; k < inner; ++k)
      y.data<float>()[p * inner + k] = static_cast<float>((a[p * inner + k] - mean) * inv * s.data<float>()[k] +
                                                          (bias ? b.data<float>()[k] : 0.f));
  }
  return y;
}

inline Tensor batch_norm(const Tensor& x_in, const Tensor& g, const Tensor& b, const Tensor& m, const Tensor& v, float eps) {
  const Tensor x = x_in.contiguous();
  const auto c = x.shape()[1];
  std::int64_t inner = 1;
  for (std::size_t i = 2; i < x.rank(); ++i) inner *= x.shape()[i];
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const auto G = g.contiguous(), B = b.contiguous(), M = m.contiguous(), V = v.contiguous();
  for (std::int64_t n = 0; n < x.shape()[0]; ++n)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      const float s = G.data<float>()[ch] / std::sqrt(V.data<float>()[ch] + eps);
      const float sh = B.data<float>()[ch] - M.data<float>()[ch] * s;
      const auto base = (n * c + ch) * inner;
      for (std::int64_t k = 0; k < inner; ++k) y.data<float>()[base + k] = x.data<float>()[base + k] * s + sh;
    }
  return y;
}

inline Tensor reduce_mean(const Tensor& x_in, std::vector<std::int64_t> axes, bool keepdims) {
  const Tensor x = x_in.contiguous();
  const auto r = static_cast<std::int64_t>(x.rank());
  std::vector<bool> red(x.rank(), axes.empty());
  for (auto a : axes) red[ir::normalize_axis(a, r, "ReduceMean")] = true;
  Shape keep_shape = x.shape(), out_shape;
  std::int64_t count = 1;
  for (std::int64_t i = 0; i < r; ++i) {
    if (red[i]) { count *= keep_shape[i]; keep_shape[i] = 1; if (keepdims) out_shape.push_back(1); }
    else out_shape.push_back(keep_shape[i]);
  }
  std::vector<double> acc(static_cast<std::size_t>(numel_of(keep_shape)), 0.0);
  const float* px = x.data<float>();
  // Reducing trailing axes only (LayerNorm's mean): each output sums one contiguous run, in the
  // same order as the general walk below.
  std::int64_t lead = 0;
  while (lead < r && !red[lead]) ++lead;
  bool trailing = true;
  for (std::int64_t i = lead; i < r; ++i) trailing &= red[i] != false;
  if (trailing) {
    for (std::size_t o = 0; o < acc.size(); ++o)
      for (std::int64_t k = 0; k < count; ++k) acc[o] += px[static_cast<std::int64_t>(o) * count + k];
  } else {
    broadcast_indices(x.shape(), keep_shape, x.shape(), [&](auto i, auto, auto io) { acc[io] += px[i]; });
  }
  Tensor y = Tensor::empty(out_shape, DType::f32);
  for (std::size_t i = 0; i < acc.size(); ++i) y.data<float>()[i] = static_cast<float>(acc[i] / static_cast<double>(count));
  return y;
}

// Per-tensor or per-axis parameters of a Q/DQ op, as the index of each element's channel.
struct QuantParams {
  std::vector<float> scale;
  std::vector<std::int32_t> zero_point;
  std::int64_t axis = 0, inner = 1, channels = 1;
};

inline QuantParams quant_params(const Tensor& x, const Tensor& scale, const Tensor* zp, std::int64_t axis) {
  QuantParams q;
  const Tensor s = scale.contiguous();
  q.scale.assign(s.data<float>(), s.data<float>() + s.numel());
  q.channels = s.numel();
  if (zp) {
    const auto z = ir::to_i64(*zp, "QuantizeLinear zero point");
    q.zero_point.assign(z.begin(), z.end());
  } else {
    q.zero_point.assign(static_cast<std::size_t>(q.channels), 0);
  }
  if (q.channels > 1) {
    q.axis = ir::normalize_axis(axis, static_cast<std::int64_t>(x.rank()), "QuantizeLinear");
    for (std::size_t i = q.axis + 1; i < x.rank(); ++i) q.inner *= x.shape()[i];
  }
  return q;
}

inline Tensor quantize_linear(const Tensor& x_in, const Tensor& scale, const Tensor* zp, std::int64_t axis) {
  const Tensor x = x_in.contiguous();
  const QuantParams q = quant_params(x, scale, zp, axis);
  const DType t = zp ? zp->dtype() : DType::u8;
  Tensor y = Tensor::empty(x.shape(), t);
  const int lo = t == DType::u8 ? 0 : -128, hi = t == DType::u8 ? 255 : 127;
  const float* px = x.data<float>();
  const auto n = x.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto c = q.channels > 1 ? (i / q.inner) % q.channels : 0;
    // nearbyint rounds half to even in the default rounding mode, as ONNX specifies.
    const float v = std::nearbyint(px[i] / q.scale[c]) + static_cast<float>(q.zero_point[c]);
    const int s = static_cast<int>(std::clamp(v, static_cast<float>(lo), static_cast<float>(hi)));
    if (t == DType::u8) y.raw()[i] = static_cast<std::byte>(static_cast<std::uint8_t>(s));
    else y.raw()[i] = static_cast<std::byte>(static_cast<std::int8_t>(s));
  }
  return y;
}

inline Tensor dequantize_linear(const Tensor& x_in, const Tensor& scale, const Tensor* zp, std::int64_t axis) {
  const Tensor x = x_in.contiguous();
  const QuantParams q = quant_params(x, scale, zp, axis);
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  check(x.dtype() == DType::u8 || x.dtype() == DType::i8 || x.dtype() == DType::i32, ErrorCode::unsupported,
        "DequantizeLinear", "input dtype " + std::string(to_string(x.dtype())));
  float* py = y.data<float>();
  const auto n = x.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto c = q.channels > 1 ? (i / q.inner) % q.channels : 0;
    const std::int32_t v = x.dtype() == DType::u8   ? std::to_integer<std::uint8_t>(x.raw()[i])
                           : x.dtype() == DType::i8 ? static_cast<std::int8_t>(std::to_integer<std::uint8_t>(x.raw()[i]))
                                                    : reinterpret_cast<const std::int32_t*>(x.raw())[i];
    py[i] = static_cast<float>(v - q.zero_point[c]) * q.scale[c];
  }
  return y;
}

}  // namespace sparseloom::reference
