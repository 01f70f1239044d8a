#pragma once
// Shape arithmetic shared by shape inference and every backend: broadcasting, axis
// normalisation, and the output size of windowed ops (conv, pooling).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"

namespace sparseloom::ir {

inline std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, const std::string& where) {
  check(axis >= -rank && axis < rank, ErrorCode::shape, where,
        "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

inline Shape broadcast_shapes(const Shape& a, const Shape& b, const std::string& where) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const std::int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    check(da == db || da == 1 || db == 1, ErrorCode::shape, where,
          "shapes " + to_string(a) + " and " + to_string(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Geometry of a windowed op over the spatial dims (everything after N, C).
struct Window {
  std::vector<std::int64_t> kernel, strides, dilations, pads;  // pads: begins then ends
  std::vector<std::int64_t> in, out;
  bool ceil_mode = false;
};

inline Window make_window(const Shape& x, std::vector<std::int64_t> kernel,
                          std::vector<std::int64_t> strides, std::vector<std::int64_t> dilations,
                          std::vector<std::int64_t> pads, const std::string& auto_pad,
                          bool ceil_mode, const std::string& where) {
  check(x.size() >= 3, ErrorCode::shape, where, "input must be N x C x spatial, got " + to_string(x));
  const std::size_t s = x.size() - 2;
  check(kernel.size() == s, ErrorCode::shape, where,
        "kernel has " + std::to_string(kernel.size()) + " dims for " + std::to_string(s) + " spatial dims");
  if (strides.empty()) strides.assign(s, 1);
  if (dilations.empty()) dilations.assign(s, 1);
  if (pads.empty()) pads.assign(2 * s, 0);
  check(strides.size() == s && dilations.size() == s && pads.size() == 2 * s, ErrorCode::shape,
        where, "strides/dilations/pads do not match the spatial rank");
  Window w;
  w.ceil_mode = ceil_mode;
  for (std::size_t i = 0; i < s; ++i) {
    check(kernel[i] > 0 && strides[i] > 0 && dilations[i] > 0 && pads[i] >= 0 && pads[i + s] >= 0,
          ErrorCode::shape, where, "kernel, strides and dilations must be positive, pads >= 0");
    const std::int64_t in = x[2 + i];
    const std::int64_t ek = dilations[i] * (kernel[i] - 1) + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const std::int64_t out = (in + strides[i] - 1) / strides[i];
      const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * strides[i] + ek - in);
      pads[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[i + s] = total - pads[i];
    } else if (auto_pad == "VALID") {
      pads[i] = pads[i + s] = 0;
    } else {
      check(auto_pad.empty() || auto_pad == "NOTSET", ErrorCode::unsupported, where,
            "auto_pad '" + auto_pad + "'");
    }
    const std::int64_t span = in + pads[i] + pads[i + s] - ek;
    check(span >= 0, ErrorCode::shape, where, "kernel larger than padded input " + to_string(x));
    std::int64_t out = (ceil_mode ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1;
    // ONNX: with ceil_mode the last window must start inside the input or left padding.
    if (ceil_mode && (out - 1) * strides[i] >= in + pads[i]) --out;
    w.in.push_back(in);
    w.out.push_back(out);
  }
  w.kernel = std::move(kernel);
  w.strides = std::move(strides);
  w.dilations = std::move(dilations);
  w.pads = std::move(pads);
  return w;
}

}  // namespace sparseloom::ir
