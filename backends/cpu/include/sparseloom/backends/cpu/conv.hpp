#pragma once
// Convolutions of batch 1, NCHW, on top of the prepared matmuls:
//  - 1x1, stride 1, no padding: Y (Cout x HW) = W (Cout x Cin) * X (Cin x HW), no copy;
//  - k x k, stride 1, sparse (CSR / BSR): no im2col. The input is copied once into a
//    zero-padded plane per channel of width Wp; row (c, i, j) of the implicit im2col matrix is
//    then the contiguous run starting at c*plane + i*Wp + j, so the sparse kernel reads the
//    planes through per-row offsets (SpmmF32::with_row_offsets) and computes Ho x Wp outputs, of
//    which the Wp - Wo columns past each row are dropped. Kept only when a trial at prepare time
//    measures it faster than im2col (it computes (kw-1)/Wp extra columns: 4 % at 56x56, 22 % at
//    7x7, while im2col writes kh*kw copies of the input);
//  - other k x k (and strided 1x1): im2col into a workspace (Cin*kh*kw x Ho*Wo), then the matmul;
//  - depthwise (groups == Cin == Cout): a direct dense kernel.
// Other grouped convolutions are not supported here (the backend splits them per group).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "sparseloom/backends/cpu/format_choice.hpp"

namespace sparseloom::cpu {

struct Conv2dShape {
  std::int64_t cin = 0, cout = 0, h = 0, w = 0;  // input C, output C, input H, W
  std::int64_t kh = 1, kw = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t dil_h = 1, dil_w = 1;
  std::int64_t groups = 1;

  std::int64_t out_h() const { return (h + pad_top + pad_bottom - dil_h * (kh - 1) - 1) / stride_h + 1; }
  std::int64_t out_w() const { return (w + pad_left + pad_right - dil_w * (kw - 1) - 1) / stride_w + 1; }
  bool is_pointwise() const {
    return kh == 1 && kw == 1 && stride_h == 1 && stride_w == 1 && pad_top == 0 && pad_left == 0 &&
           pad_bottom == 0 && pad_right == 0 && groups == 1;
  }
  bool is_depthwise() const { return groups > 1 && groups == cin && groups == cout; }
};

// im2col rows [c0, c1) of Cin (each expands to kh*kw rows of Ho*Wo columns); taps in the
// padding read `pad` (0 for f32, the zero point for quantised u8 activations).
template <class T>
void im2col(const Conv2dShape& s, const T* x, T* col, std::int64_t c0, std::int64_t c1, T pad = T{}) {
  const std::int64_t oh = s.out_h(), ow = s.out_w();
  for (std::int64_t c = c0; c < c1; ++c)
    for (std::int64_t i = 0; i < s.kh; ++i)
      for (std::int64_t j = 0; j < s.kw; ++j) {
        T* dst = col + ((c * s.kh + i) * s.kw + j) * oh * ow;
        for (std::int64_t y = 0; y < oh; ++y) {
          const std::int64_t iy = y * s.stride_h - s.pad_top + i * s.dil_h;
          T* d = dst + y * ow;
          if (iy < 0 || iy >= s.h) {
            std::fill(d, d + ow, pad);
            continue;
          }
          const T* src = x + (c * s.h + iy) * s.w;
          for (std::int64_t xo = 0; xo < ow; ++xo) {
            const std::int64_t ix = xo * s.stride_w - s.pad_left + j * s.dil_w;
            d[xo] = (ix >= 0 && ix < s.w) ? src[ix] : pad;
          }
        }
      }
}
// How a sparse k x k stride-1 layer gets its columns: by the measured choice (default), always
// through the padded planes, or always through im2col.
enum class Im2col : std::uint8_t { measured, implicit, materialised };

// A prepared f32 convolution (weights OIHW, dense f32; zeros are found and exploited).
class Conv2dF32 {
 public:
  Conv2dF32(const Conv2dShape& s, const float* w, const Epilogue& epilogue, ThreadPool& pool,
            const ChoiceOptions& opt = {}, Im2col im2col_mode = Im2col::measured)
      : s_(s), epi_(epilogue, s.cout), threads_(opt.threads) {
    check(s.cin > 0 && s.cout > 0 && s.h > 0 && s.w > 0 && s.out_h() > 0 && s.out_w() > 0, ErrorCode::shape,
          "cpu::Conv2dF32", "empty input or output");
    if (s.is_depthwise()) {
      dw_.assign(w, w + s.cout * s.kh * s.kw);
      return;
    }
    check(s.groups == 1, ErrorCode::unsupported, "cpu::Conv2dF32", "grouped convolution other than depthwise");
    mm_.emplace(prepare_matmul(w, s.cout, s.cin * s.kh * s.kw, s.out_h() * s.out_w(), epilogue, pool, opt));
    if (s.is_pointwise()) return;
    col_.resize(static_cast<std::size_t>(s.cin * s.kh * s.kw * s.out_h() * s.out_w()));
    if (const SpmmF32* sp = mm_->sparse();
        im2col_mode != Im2col::materialised && sp && sp->format() != Format::sparse24 && s.stride_h == 1 && s.stride_w == 1)
      try_implicit(*sp, w, pool, opt, im2col_mode == Im2col::implicit);
  }

  // x: Cin x H x W, y: Cout x Ho x Wo. One run at a time per object (im2col workspace).
  // `epi`, when given, replaces the packed epilogue for this call (weights shared).
  void run(const float* x, float* y, ThreadPool& pool, const EpilogueArrays* epi = nullptr) const {
    if (!dw_.empty()) return run_depthwise(x, y, pool, epi ? *epi : epi_);
    if (s_.is_pointwise()) return mm_->run(x, y, pool, epi);
    if (implicit_) return run_implicit(x, y, pool, epi);
    pool.run(threads_, [&](int t) {
      im2col(s_, x, col_.data(), s_.cin * t / threads_, s_.cin * (t + 1) / threads_);
    });
    mm_->run(col_.data(), y, pool, epi);
  }

  // Bytes held: packed weights plus the im2col (or padded-plane and wide-output) workspaces.
  std::size_t resident_bytes() const {
    return (mm_ ? mm_->weight_bytes() : 0) + (dw_.size() + col_.size() + padded_.size() + wide_.size()) * sizeof(float);
  }

  const std::optional<PreparedMatmul>& matmul() const noexcept { return mm_; }
  // True when the layer runs without im2col (the implicit, padded-plane path above).
  bool implicit_im2col() const noexcept { return implicit_.has_value(); }
  const Conv2dShape& shape() const noexcept { return s_; }

 private:
  std::int64_t padded_w() const { return s_.w + s_.pad_left + s_.pad_right; }
  std::int64_t plane() const {  // one channel's padded plane plus the tail a tap may read past it
    return (s_.h + s_.pad_top + s_.pad_bottom) * padded_w() + s_.dil_w * (s_.kw - 1);
  }

  void run_implicit(const float* x, float* y, ThreadPool& pool, const EpilogueArrays* epi) const {
    const std::int64_t wp = padded_w(), pl = plane(), oh = s_.out_h(), ow = s_.out_w();
    // Interior only: the border of each plane is zeroed once and never written.
    pool.run(threads_, [&](int t) {
      for (std::int64_t c = s_.cin * t / threads_; c < s_.cin * (t + 1) / threads_; ++c)
        for (std::int64_t r = 0; r < s_.h; ++r)
          std::memcpy(padded_.data() + c * pl + (r + s_.pad_top) * wp + s_.pad_left, x + (c * s_.h + r) * s_.w,
                      static_cast<std::size_t>(s_.w) * sizeof(float));
    });
    implicit_->run(padded_.data(), wide_.data(), pool, 0, epi);
    pool.run(threads_, [&](int t) {
      for (std::int64_t c = s_.cout * t / threads_; c < s_.cout * (t + 1) / threads_; ++c)
        for (std::int64_t r = 0; r < oh; ++r)
          std::memcpy(y + (c * oh + r) * ow, wide_.data() + (c * oh + r) * wp, static_cast<std::size_t>(ow) * sizeof(float));
    });
  }

  // Builds the implicit-im2col variant of the chosen sparse kernel and keeps it (dropping the
  // im2col workspace) when it measures faster, end to end, on this processor.
  void try_implicit(const SpmmF32& sp, const float* w, ThreadPool& pool, const ChoiceOptions& opt, bool force) {
    const std::int64_t wp = padded_w(), pl = plane();
    std::vector<std::int64_t> off(static_cast<std::size_t>(s_.cin * s_.kh * s_.kw));
    for (std::int64_t c = 0; c < s_.cin; ++c)
      for (std::int64_t i = 0; i < s_.kh; ++i)
        for (std::int64_t j = 0; j < s_.kw; ++j)
          off[static_cast<std::size_t>((c * s_.kh + i) * s_.kw + j)] = c * pl + i * s_.dil_h * wp + j * s_.dil_w;
    if (s_.cin * pl > INT32_MAX) return;
    implicit_.emplace(sp.with_row_offsets(off, s_.out_h() * wp));
    padded_.assign(static_cast<std::size_t>(s_.cin * pl), 0.f);
    wide_.resize(static_cast<std::size_t>(s_.cout * s_.out_h() * wp));
    if (force) {
      col_ = {};
      return;
    }
    auto measure = [&] {
      std::vector<float> x(static_cast<std::size_t>(s_.cin * s_.h * s_.w), 0.5f), y(static_cast<std::size_t>(s_.cout * s_.out_h() * s_.out_w()));
      const double with = detail::time_min_ms([&] { run_implicit(x.data(), y.data(), pool, nullptr); }, opt.budget_ms);
      auto implicit = std::move(implicit_);
      implicit_.reset();
      const double without = detail::time_min_ms([&] { run(x.data(), y.data(), pool); }, opt.budget_ms);
      implicit_ = std::move(implicit);
      return with < without;
    };
    // A reload of the same layer (the preloader evicts and loads blocks) keeps the first
    // measured choice, so it costs no timing and its size is the same as before.
    bool keep;
    if (opt.use_cache) {
      const std::string key = "conv-implicit:" +
                              std::to_string(detail::hash_bytes(w, static_cast<std::size_t>(s_.cout * s_.cin * s_.kh * s_.kw) * sizeof(float))) +
                              ":" + std::to_string(s_.cin) + "x" + std::to_string(s_.h) + "x" + std::to_string(s_.w) + ":" +
                              std::to_string(s_.cout) + "x" + std::to_string(s_.kh) + "x" + std::to_string(s_.kw) + ":p" +
                              std::to_string(s_.pad_top) + "," + std::to_string(s_.pad_left) + "," + std::to_string(s_.pad_bottom) + "," +
                              std::to_string(s_.pad_right) + ":d" + std::to_string(s_.dil_h) + "," + std::to_string(s_.dil_w) + ":" +
                              sp.ukernel_name() + ":t" + std::to_string(opt.threads) + ":b" + std::to_string(opt.budget_ms);
      keep = FormatCache::instance().decision(key, measure);
    } else {
      keep = measure();
    }
    if (keep) {
      col_ = {};
    } else {
      implicit_.reset();
      padded_ = {};
      wide_ = {};
    }
  }

  // Row by row: every tap adds a contiguous run of input to the output row's accumulator. For
  // stride S > 1 each input row is first split into its S phases (x[p], x[p+S], ...), so a tap
  // reads one phase contiguously too and the loops vectorise.
  void run_depthwise(const float* x, float* y, ThreadPool& pool, const EpilogueArrays& epi) const {
    if (s_.stride_h == 1 && s_.stride_w == 1) return run_depthwise_s1(x, y, pool, epi);
    const std::int64_t oh = s_.out_h(), ow = s_.out_w(), S = s_.stride_w;
    const std::int64_t plen = (s_.w + S - 1) / S;
    pool.run(threads_, [&](int t) {
      std::vector<float> acc(static_cast<std::size_t>(ow)), ph(static_cast<std::size_t>(S == 1 ? 0 : S * plen));
      for (std::int64_t c = s_.cout * t / threads_; c < s_.cout * (t + 1) / threads_; ++c) {
        const float* wc = dw_.data() + c * s_.kh * s_.kw;
        const float* xc = x + c * s_.h * s_.w;
        const float sc = epi.scale[static_cast<std::size_t>(c)], sh = epi.shift[static_cast<std::size_t>(c)];
        for (std::int64_t oy = 0; oy < oh; ++oy) {
          float* a = acc.data();
          std::fill(acc.begin(), acc.end(), 0.f);
          for (std::int64_t i = 0; i < s_.kh; ++i) {
            const std::int64_t iy = oy * s_.stride_h - s_.pad_top + i * s_.dil_h;
            if (iy < 0 || iy >= s_.h) continue;
            const float* xr = xc + iy * s_.w;
            if (S > 1)
              for (std::int64_t p = 0; p < S; ++p) {
                float* dst = ph.data() + p * plen;
                for (std::int64_t q = 0; q * S + p < s_.w; ++q) dst[q] = xr[q * S + p];
              }
            for (std::int64_t j = 0; j < s_.kw; ++j) {
              const float wv = wc[i * s_.kw + j];
              // Output columns whose input column ox*S + off is inside the image.
              const std::int64_t off = j * s_.dil_w - s_.pad_left;
              std::int64_t lo = 0, hi = ow;
              while (lo < ow && lo * S + off < 0) ++lo;
              while (hi > lo && (hi - 1) * S + off >= s_.w) --hi;
              if (lo >= hi) continue;
              const float* src;
              if (S == 1) {
                src = xr + (lo + off);
              } else {
                const std::int64_t first = lo * S + off;  // >= 0
                src = ph.data() + (first % S) * plen + first / S;
              }
              float* ar = a + lo;
              const std::int64_t len = hi - lo;
              for (std::int64_t q = 0; q < len; ++q) ar[q] += wv * src[q];
            }
          }
          float* yr = y + (c * oh + oy) * ow;
          for (std::int64_t ox = 0; ox < ow; ++ox) yr[ox] = std::min(std::max(sc * a[ox] + sh, epi.lo), epi.hi);
        }
      }
    });
  }

  // Stride 1: the channel is copied into a zero-padded plane of width Wp, and every tap adds
  // one contiguous run of oh*Wp values (the Wp - ow columns past each output row are computed
  // and dropped), so small planes (7x7, 14x14) still fill whole vectors.
  void run_depthwise_s1(const float* x, float* y, ThreadPool& pool, const EpilogueArrays& epi) const {
    const std::int64_t oh = s_.out_h(), ow = s_.out_w();
    const std::int64_t wp = s_.w + s_.pad_left + s_.pad_right, hp = s_.h + s_.pad_top + s_.pad_bottom;
    const std::int64_t tail = (s_.kw - 1) * s_.dil_w + 1;
    const std::int64_t n = oh * wp;
    pool.run(threads_, [&](int t) {
      std::vector<float> xp(static_cast<std::size_t>(hp * wp + tail), 0.f), acc(static_cast<std::size_t>(n));
      for (std::int64_t c = s_.cout * t / threads_; c < s_.cout * (t + 1) / threads_; ++c) {
        const float* wc = dw_.data() + c * s_.kh * s_.kw;
        const float* xc = x + c * s_.h * s_.w;
        // Interior only: the border of xp is never written, so it stays zero.
        for (std::int64_t r = 0; r < s_.h; ++r)
          std::memcpy(xp.data() + (r + s_.pad_top) * wp + s_.pad_left, xc + r * s_.w, static_cast<std::size_t>(s_.w) * sizeof(float));
        float* a = acc.data();
        std::fill(acc.begin(), acc.end(), 0.f);
        for (std::int64_t i = 0; i < s_.kh; ++i)
          for (std::int64_t j = 0; j < s_.kw; ++j) {
            const float wv = wc[i * s_.kw + j];
            const float* src = xp.data() + i * s_.dil_h * wp + j * s_.dil_w;
            for (std::int64_t q = 0; q < n; ++q) a[q] += wv * src[q];
          }
        const float sc = epi.scale[static_cast<std::size_t>(c)], sh = epi.shift[static_cast<std::size_t>(c)];
        for (std::int64_t oy = 0; oy < oh; ++oy) {
          float* yr = y + (c * oh + oy) * ow;
          const float* ar = a + oy * wp;
          for (std::int64_t ox = 0; ox < ow; ++ox) yr[ox] = std::min(std::max(sc * ar[ox] + sh, epi.lo), epi.hi);
        }
      }
    });
  }

  Conv2dShape s_;
  EpilogueArrays epi_;
  int threads_;
  std::vector<float> dw_;
  std::optional<PreparedMatmul> mm_;
  std::optional<SpmmF32> implicit_;
  mutable std::vector<float> col_, padded_, wide_;
};

}  // namespace sparseloom::cpu
