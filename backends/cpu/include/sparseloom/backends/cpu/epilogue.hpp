#pragma once
// The fused per-output-row epilogue of every CPU kernel: y[m][n] = act(scale[m]*acc + shift[m]).
// Bias, folded BatchNorm, INT8 dequantisation and the stitch-time repair (per-channel scale +
// shift) all fold into scale/shift at pack time, so they cost nothing per request.
#include <cstdint>
#include <limits>
#include <vector>

#include "sparseloom/core/error.hpp"

namespace sparseloom::cpu {

enum class Activation : std::uint8_t { none, relu, clip };

struct Epilogue {
  std::vector<float> scale;  // per output row; empty means 1
  std::vector<float> shift;  // per output row; empty means 0
  Activation act = Activation::none;
  float clip_lo = 0.f, clip_hi = 6.f;  // used by Activation::clip

  static Epilogue none() { return {}; }
  static Epilogue relu() {
    Epilogue e;
    e.act = Activation::relu;
    return e;
  }
  static Epilogue clip(float lo, float hi) {
    Epilogue e;
    e.act = Activation::clip;
    e.clip_lo = lo;
    e.clip_hi = hi;
    return e;
  }
  Epilogue& with_bias(std::vector<float> bias) {
    shift = std::move(bias);
    return *this;
  }
  Epilogue& with_scale(std::vector<float> s) {
    scale = std::move(s);
    return *this;
  }

  // Bounds the kernels clamp to (every kernel is a "minmax" kernel; none = +-inf).
  float lo() const noexcept {
    return act == Activation::none ? -std::numeric_limits<float>::infinity()
                                   : (act == Activation::relu ? 0.f : clip_lo);
  }
  float hi() const noexcept {
    return act == Activation::clip ? clip_hi : std::numeric_limits<float>::infinity();
  }
  float apply(std::int64_t row, float acc) const noexcept {
    const auto r = static_cast<std::size_t>(row);
    float v = (scale.empty() ? acc : scale[r] * acc) + (shift.empty() ? 0.f : shift[r]);
    v = v < lo() ? lo() : v;
    return v > hi() ? hi() : v;
  }
};

// The epilogue expanded to what a kernel reads: scale/shift arrays of length M (padded to a
// multiple of 8 rows so block kernels may read past M), plus clamp bounds.
struct EpilogueArrays {
  std::vector<float> scale, shift;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();

  EpilogueArrays() = default;
  EpilogueArrays(const Epilogue& e, std::int64_t m) {
    const auto mp = static_cast<std::size_t>((m + 7) / 8 * 8);
    check(e.scale.empty() || e.scale.size() == static_cast<std::size_t>(m), ErrorCode::shape,
          "cpu::Epilogue", "scale must have one value per output row");
    check(e.shift.empty() || e.shift.size() == static_cast<std::size_t>(m), ErrorCode::shape,
          "cpu::Epilogue", "shift must have one value per output row");
    scale.assign(mp, 1.f);
    shift.assign(mp, 0.f);
    for (std::size_t i = 0; i < e.scale.size(); ++i) scale[i] = e.scale[i];
    for (std::size_t i = 0; i < e.shift.size(); ++i) shift[i] = e.shift[i];
    lo = e.lo();
    hi = e.hi();
  }
};

}  // namespace sparseloom::cpu
