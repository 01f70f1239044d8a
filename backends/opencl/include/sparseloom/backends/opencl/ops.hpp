#pragma once
// Host-side launchers. Describe, then create, then execute (as oneDNN): an op is built once
// for a shape (weights uploaded and resident, kernel built through the cache), bound to its
// buffers once (kernel arguments set), then enqueue() costs one clEnqueueNDRangeKernel: no
// blocking call, no argument setting, no allocation on the per-request path.
// bind() must be called before the first enqueue() and again whenever a bound buffer is
// replaced (kernel arguments do not keep buffers alive).
#include <CL/opencl.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "sparseloom/backends/opencl/buffer.hpp"
#include "sparseloom/backends/opencl/context.hpp"
#include "sparseloom/backends/opencl/formats.hpp"
#include "sparseloom/backends/opencl/kernels/common.hpp"
#include "sparseloom/backends/opencl/kernels/conv.hpp"
#include "sparseloom/backends/opencl/kernels/elementwise.hpp"
#include "sparseloom/backends/opencl/kernels/gemm.hpp"
#include "sparseloom/backends/opencl/kernels/int8.hpp"
#include "sparseloom/backends/opencl/kernels/norm.hpp"
#include "sparseloom/backends/opencl/kernels/pool.hpp"
#include "sparseloom/backends/opencl/kernels/spmm.hpp"

namespace sparseloom::opencl {

// Codes shared with the OpenCL prelude (kernels/common.hpp).
enum class Activation : int { none = 0, relu = 1, clip = 2, sigmoid = 3, hardswish = 4, gelu = 5 };

// y[m, :] = act(scale[m] * acc[m, :] + shift[m]). Bias is shift with scale 1; a folded
// BatchNorm or a stitch repair is a per-channel scale/shift. Empty vectors mean 1 and 0.
struct Epilogue {
  std::vector<float> scale, shift;
  Activation act = Activation::none;
  float p0 = 0, p1 = 0;  // clip bounds

  static Epilogue bias(std::vector<float> b, Activation a = Activation::none) {
    Epilogue e;
    e.shift = std::move(b);
    e.act = a;
    return e;
  }
  static Epilogue clip(float lo, float hi) {
    Epilogue e;
    e.act = Activation::clip;
    e.p0 = lo;
    e.p1 = hi;
    return e;
  }
};

namespace detail {
inline int to_int(std::int64_t v, const char* what) {
  check(v >= 0 && v < (std::int64_t{1} << 31), ErrorCode::unsupported, "opencl ops",
        std::string(what) + " = " + std::to_string(v) + " does not fit the kernels' 32-bit indices");
  return static_cast<int>(v);
}
inline std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }
template <class T>
std::span<const T> cspan(const std::vector<T>& v) { return {v.data(), v.size()}; }
inline std::string source(const char* body) { return std::string(kernels::kPrelude) + body; }
}  // namespace detail

// A kernel whose arguments are set and whose ND-range is fixed.
class Launch {
 public:
  cl::Kernel kernel;
  std::array<std::size_t, 3> global{1, 1, 1}, local{1, 1, 1};
  cl_uint dims = 1;
  bool fixed_local = true;

  void enqueue(Context& ctx, int queue = 0, cl_event* event = nullptr) const {
    if (ctx.lost()) [[unlikely]] ctx.ensure_alive("enqueue");
    auto& inject = ctx.faults().fail_enqueue;  // a plain load first: no RMW on the hot path
    if (inject.load(std::memory_order_relaxed) && inject.exchange(false)) [[unlikely]]
      throw DeviceError(FaultKind::enqueue, CL_OUT_OF_RESOURCES, ctx.where(), "injected fault in clEnqueueNDRangeKernel");
    const cl_int rc = clEnqueueNDRangeKernel(ctx.queue(queue)(), kernel(), dims, nullptr, global.data(),
                                             fixed_local ? local.data() : nullptr, 0, nullptr, event);
    if (rc != CL_SUCCESS) [[unlikely]] ctx.fail(rc, "clEnqueueNDRangeKernel");
  }
  template <class... A>
  void set_args(Context& ctx, const A&... a) {
    guarded(ctx.where() + ": setting kernel arguments", [&] {
      cl_uint i = 0;
      (set_one(i++, a), ...);
      return 0;
    });
  }

 private:
  void set_one(cl_uint i, const Buffer& b) { kernel.setArg(i, b.get()); }
  template <class T>
  void set_one(cl_uint i, const T& v) { kernel.setArg(i, v); }
};

// Scale/shift vectors of an epilogue for `m` channels, uploaded once.
struct EpilogueBuffers {
  Buffer scale, shift;
  int act = 0;
  float p0 = 0, p1 = 0;
  EpilogueBuffers() = default;
  EpilogueBuffers(Context& ctx, const Epilogue& e, std::int64_t m) : act(static_cast<int>(e.act)), p0(e.p0), p1(e.p1) {
    auto fill = [&](const std::vector<float>& v, float def, const char* what) {
      check(v.empty() || static_cast<std::int64_t>(v.size()) == m, ErrorCode::shape, "opencl::Epilogue",
            std::string(what) + " has " + std::to_string(v.size()) + " values for " + std::to_string(m) + " channels");
      return v.empty() ? std::vector<float>(static_cast<std::size_t>(m), def) : v;
    };
    scale = Buffer::upload(ctx, detail::cspan(fill(e.scale, 1.0f, "scale")), CL_MEM_READ_ONLY);
    shift = Buffer::upload(ctx, detail::cspan(fill(e.shift, 0.0f, "shift")), CL_MEM_READ_ONLY);
  }
};

// ---------------------------------------------------------------- dense f32 GEMM
struct GemmConfig {
  int tm = 64, tn = 64;  // work-group tile; each work-item computes 4x4
  bool register_blocked = false;  // kGemmF32RegisterBlocked instead: 4x8 per work-item, no local memory
  // Split-K: the K range split over this many work-groups per tile (partial planes, then one
  // reduce kernel with the epilogue). Fills a large GPU when M x N alone gives few tiles
  // (M512 K2048 N49: 32 tiles of 32x32 for 132 SMs).
  int splitk = 1;
  std::string describe() const {
    return register_blocked ? std::string("rb4x8")
                            : "tile" + std::to_string(tm) + "x" + std::to_string(tn) +
                                  (splitk > 1 ? ".sk" + std::to_string(splitk) : "");
  }
};

class DenseGemm {
 public:
  DenseGemm(Context& ctx, std::span<const float> w, std::int64_t m, std::int64_t k, std::int64_t n,
            const Epilogue& epi = {}, GemmConfig cfg = {})
      : ctx_(&ctx), m_(m), k_(k), n_(n), cfg_(cfg) {
    check(static_cast<std::int64_t>(w.size()) == m * k, ErrorCode::shape, "opencl::DenseGemm", "weight is not M x K");
    weights_ = Buffer::upload(ctx, w, CL_MEM_READ_ONLY);
    epi_ = EpilogueBuffers(ctx, epi, m);
    launch_.dims = 2;
    const auto progs = programs(cfg);
    if (cfg.register_blocked) {
      launch_.kernel = ctx.kernel(progs[0].source, "gemm_f32_rb");
      launch_.fixed_local = false;
      launch_.global = {static_cast<std::size_t>((n + 7) / 8), static_cast<std::size_t>((m + 3) / 4), 1};
      return;
    }
    const int sk = std::max(1, cfg.splitk);
    launch_.kernel = ctx.kernel(progs[0].source, "gemm_f32", progs[0].options);
    launch_.dims = sk > 1 ? 3 : 2;
    launch_.local = {static_cast<std::size_t>(cfg.tn / 4), static_cast<std::size_t>(cfg.tm / 4), 1};
    launch_.global = {detail::round_up(static_cast<std::size_t>(n), cfg.tn) / 4,
                      detail::round_up(static_cast<std::size_t>(m), cfg.tm) / 4, static_cast<std::size_t>(sk)};
    if (sk > 1) {
      partial_ = Buffer(ctx, static_cast<std::size_t>(m * n * sk) * 4);
      reduce_.kernel = ctx.kernel(progs[1].source, "gemm_splitk_reduce", progs[1].options);
      reduce_.global = {detail::round_up(static_cast<std::size_t>(m * n), 128), 1, 1};
      reduce_.local = {128, 1, 1};
    }
  }
  // The programs a geometry builds (Context::prebuild).
  static std::vector<ProgramSpec> programs(const GemmConfig& cfg) {
    if (cfg.register_blocked) return {{detail::source(kernels::kGemmF32RegisterBlocked), ""}};
    const int sk = std::max(1, cfg.splitk);
    const std::string tile = "-DTM=" + std::to_string(cfg.tm) + " -DTN=" + std::to_string(cfg.tn);
    std::vector<ProgramSpec> out{{detail::source(kernels::kGemmF32), tile + " -DSPLITK=" + std::to_string(sk > 1 ? sk : 0)}};
    if (sk > 1) out.push_back({out[0].source, tile + " -DSPLITK=0"});
    return out;
  }
  // X: K x N f32, Y: M x N f32 (row-major).
  void bind(const Buffer& x, Buffer& y) {
    const bool sk = static_cast<bool>(partial_);
    launch_.set_args(*ctx_, detail::to_int(m_, "M"), detail::to_int(n_, "N"), detail::to_int(k_, "K"), weights_, x,
                     epi_.scale, epi_.shift, sk ? partial_ : y, epi_.act, epi_.p0, epi_.p1);
    if (sk)
      reduce_.set_args(*ctx_, detail::to_int(m_, "M"), detail::to_int(n_, "N"), cfg_.splitk, partial_, epi_.scale,
                       epi_.shift, y, epi_.act, epi_.p0, epi_.p1);
  }
  void enqueue(int queue = 0, cl_event* ev = nullptr) const {
    if (partial_) {
      launch_.enqueue(*ctx_, queue);
      reduce_.enqueue(*ctx_, queue, ev);
      return;
    }
    launch_.enqueue(*ctx_, queue, ev);
  }
  std::size_t weight_bytes() const { return weights_.bytes(); }
  std::string describe() const { return "dense." + cfg_.describe(); }
  EpilogueBuffers& epilogue() noexcept { return epi_; }

 private:
  Context* ctx_;
  std::int64_t m_, k_, n_;
  GemmConfig cfg_;
  Buffer weights_, partial_;
  EpilogueBuffers epi_;
  Launch launch_, reduce_;
};

// ---------------------------------------------------------------- sparse x dense
// Work-group geometry of the SpMM kernels (kernels/spmm.hpp).
struct SpmmConfig {
  int vec = 1;  // 4: float4 along N (needs N % 4 == 0)
  int lx = 32;  // work-items along N
  int ks = 1;   // work-items splitting a row's nonzeros
  int rpw = 1;  // rows (block rows) per work-group
  int stage = 0;  // CSR only: nonzeros staged through local memory per pass (0: read directly)
  int ng = 1;     // work-groups splitting N
  bool pred = false;  // CSR only, stage 0: predicated steps of four nonzeros, no remainder loop
  int npt(std::int64_t n) const {
    const std::int64_t per_group = (n / vec + ng - 1) / ng;
    return static_cast<int>((per_group + lx - 1) / lx);
  }
  std::string options(std::int64_t n) const {
    return "-DVEC=" + std::to_string(vec) + " -DLX=" + std::to_string(lx) + " -DNPT=" + std::to_string(npt(n)) +
           " -DKS=" + std::to_string(ks) + " -DRPW=" + std::to_string(rpw) + " -DSTAGE=" + std::to_string(stage) +
           " -DPRED=" + (pred ? "1" : "0");
  }
  std::string describe() const {
    return "v" + std::to_string(vec) + ".lx" + std::to_string(lx) + ".ks" + std::to_string(ks) + ".r" +
           std::to_string(rpw) + (stage ? ".st" + std::to_string(stage) : "") + (ng > 1 ? ".g" + std::to_string(ng) : "") +
           (pred ? ".p" : "");
  }
};

// Vectors of N one work-item keeps in registers at most: wide layers (early convs, N = 112 x
// 112) split N over work-groups instead. Unbounded, NPT reached 196 there: kernels fully
// unrolled over it took PoCL 49 s to build and would spill every register on a GPU.
inline int max_npt(const DeviceInfo& d) { return d.type == DeviceType::cpu ? 8 : 4; }
inline SpmmConfig bound_npt(SpmmConfig c, const DeviceInfo& d, std::int64_t n) {
  const std::int64_t nv = n / c.vec, per_group = static_cast<std::int64_t>(c.lx) * max_npt(d);
  c.ng = std::max<int>(c.ng, static_cast<int>((nv + per_group - 1) / per_group));
  return c;
}

// A sensible geometry without a trial: GPUs want many work-items per row, CPUs (PoCL) want
// few, large work-groups vectorised along N.
inline SpmmConfig default_spmm_config(const DeviceInfo& d, std::int64_t n) {
  SpmmConfig c;
  c.vec = n % 4 == 0 ? 4 : 1;
  const std::int64_t nv = n / c.vec;
  c.lx = nv > 32 ? 64 : 32;
  if (d.type == DeviceType::cpu) {
    // PoCL runs a work-group as a loop over work-items: few of them, each with several
    // vectors of N, measured fastest (M512 K2048 N49 at 90 %: lx 8 twice as fast as lx 49).
    c.lx = c.vec == 4 ? 16 : 8;
    c.ks = 1;
    c.rpw = 8;
  } else {
    c.ks = c.lx == 64 ? 4 : 8;
  }
  return bound_npt(c, d, n);
}

// Local memory the nonzero-split reduction needs (rows_per_item: 1 for CSR, 4 for BSR 4x1).
inline std::size_t spmm_local_bytes(const SpmmConfig& c, std::int64_t n, int rows_per_item) {
  return (c.ks > 1 ? static_cast<std::size_t>(c.ks * c.lx * c.npt(n) * c.vec * 4 * rows_per_item) : 0) +
         static_cast<std::size_t>(c.stage) * 8;
}

// The geometries a per-layer trial compares on device d (all of them fit its limits).
inline std::vector<SpmmConfig> spmm_candidates(const DeviceInfo& d, std::int64_t n, bool quick = false,
                                               int rows_per_item = 1) {
  std::vector<SpmmConfig> out{default_spmm_config(d, n)};
  // The default geometry can exceed a device's local memory for large N (early conv layers):
  // fall back to the plain one-stage geometry, which needs none.
  if (spmm_local_bytes(out[0], n, rows_per_item) > d.local_mem_bytes ||
      static_cast<std::size_t>(out[0].lx * out[0].ks) > d.max_work_group)
    out[0] = bound_npt(SpmmConfig{n % 4 == 0 ? 4 : 1, 32, 1, 1}, d, n);
  if (d.type == DeviceType::cpu) {
    if (!quick) {
      auto c = out[0];
      c.rpw = 32;
      out.push_back(c);
      c = out[0];
      c.lx = c.lx == 8 ? 16 : 8;
      out.push_back(bound_npt(c, d, n));
    }
    return out;
  }
  const int vec = n % 4 == 0 ? 4 : 1;
  const std::int64_t nv = n / vec;
  for (int lx : {32, 64}) {
    if (lx == 64 && nv <= 32) continue;
    for (int ks : {1, 2, 4, 8, 16}) {
      if (quick && ks != 4) continue;
      if (static_cast<std::size_t>(lx * ks) > d.max_work_group) continue;
      SpmmConfig c = bound_npt({vec, lx, ks, 1}, d, n);
      if (spmm_local_bytes(c, n, rows_per_item) > d.local_mem_bytes / 2) continue;
      if (c.describe() != out[0].describe()) out.push_back(c);
      if (rows_per_item == 1 && !quick) {  // CSR: the same geometry with predicated or staged nonzeros
        auto p = c;
        p.pred = true;
        out.push_back(p);
        c.stage = 256;
        out.push_back(c);
      }
    }
  }
  // CSR, rows split over 32 work-items each (short rows: one predicated step per item).
  if (rows_per_item == 1 && !quick && nv <= 32 && d.max_work_group >= 1024) {
    SpmmConfig c = bound_npt({vec, 32, 32, 1}, d, n);
    c.pred = true;
    if (spmm_local_bytes(c, n, rows_per_item) <= d.local_mem_bytes / 2) out.push_back(c);
  }
  // N over two groups: twice the groups for layers with few rows (and short rows).
  if (!quick && nv > 32)
    for (int ks : {4, 8, 16, 32}) {
      SpmmConfig c{vec, 32, ks, 1};
      c.ng = 2;
      c = bound_npt(c, d, n);
      c.pred = rows_per_item == 1;
      if (static_cast<std::size_t>(c.lx * c.ks) <= d.max_work_group &&
          spmm_local_bytes(c, n, rows_per_item) <= d.local_mem_bytes / 2)
        out.push_back(c);
    }
  // Wide layers: N over as many groups as keep NPT bounded (duplicates dropped).
  std::vector<SpmmConfig> bounded;
  for (auto& c : out) {
    c = bound_npt(c, d, n);
    if (std::none_of(bounded.begin(), bounded.end(), [&](const SpmmConfig& b) { return b.describe() == c.describe(); }))
      bounded.push_back(c);
  }
  return bounded;
}

namespace detail {
inline void check_spmm(const Context& ctx, const SpmmConfig& c, std::int64_t n, int rows_per_item) {
  check(c.ng >= 1 && c.lx >= 1 && c.ks >= 1 && c.rpw >= 1, ErrorCode::invalid_argument, "opencl::SpmmConfig",
        c.describe() + ": every extent must be at least 1");
  check(!c.pred || (rows_per_item == 1 && c.stage == 0), ErrorCode::invalid_argument, "opencl::SpmmConfig",
        c.describe() + ": predicated steps are a CSR variant without staging");
  check(c.vec == 1 || (c.vec == 4 && n % 4 == 0), ErrorCode::invalid_argument, "opencl::SpmmConfig",
        "vec 4 needs N % 4 == 0, N = " + std::to_string(n));
  check(static_cast<std::size_t>(c.lx * c.ks) <= ctx.device().max_work_group, ErrorCode::invalid_argument,
        "opencl::SpmmConfig", c.describe() + " exceeds the device's work-group size");
  check(spmm_local_bytes(c, n, rows_per_item) <= ctx.device().local_mem_bytes, ErrorCode::invalid_argument, "opencl::SpmmConfig",
        c.describe() + " needs more local memory than the device has");
}
}  // namespace detail

class CsrSpmm {
 public:
  CsrSpmm(Context& ctx, const CsrMatrix& w, std::int64_t n, const Epilogue& epi = {}, std::optional<SpmmConfig> cfg = {})
      : ctx_(&ctx), m_(w.rows), k_(w.cols), n_(n), cfg_(cfg.value_or(default_spmm_config(ctx.device(), n))) {
    detail::check_spmm(ctx, cfg_, n, 1);
    rowptr_ = Buffer::upload(ctx, detail::cspan(w.rowptr), CL_MEM_READ_ONLY);
    cols_ = Buffer::upload(ctx, detail::cspan(w.colidx), CL_MEM_READ_ONLY);
    vals_ = Buffer::upload(ctx, detail::cspan(w.values), CL_MEM_READ_ONLY);
    epi_ = EpilogueBuffers(ctx, epi, m_);
    const auto prog = program(cfg_, n);
    launch_.kernel = ctx.kernel(prog.source, "spmm_csr", prog.options);
    launch_.dims = 2;
    launch_.local = {static_cast<std::size_t>(cfg_.lx), static_cast<std::size_t>(cfg_.ks), 1};
    const auto groups = static_cast<std::size_t>((m_ + cfg_.rpw - 1) / cfg_.rpw);
    launch_.global = {static_cast<std::size_t>(cfg_.lx * cfg_.ng), groups * static_cast<std::size_t>(cfg_.ks), 1};
  }
  void bind(const Buffer& x, Buffer& y) {
    launch_.set_args(*ctx_, detail::to_int(m_, "M"), detail::to_int(n_ / cfg_.vec, "N"), rowptr_, cols_, vals_, x,
                     epi_.scale, epi_.shift, y, epi_.act, epi_.p0, epi_.p1);
  }
  void enqueue(int queue = 0, cl_event* ev = nullptr) const { launch_.enqueue(*ctx_, queue, ev); }
  std::size_t weight_bytes() const { return rowptr_.bytes() + cols_.bytes() + vals_.bytes(); }
  EpilogueBuffers& epilogue() noexcept { return epi_; }
  std::string describe() const { return "csr." + cfg_.describe(); }
  static ProgramSpec program(const SpmmConfig& c, std::int64_t n) {
    return {detail::source((std::string(kernels::kSpmmCommon) + kernels::kSpmmCsr).c_str()), c.options(n)};
  }

 private:
  Context* ctx_;
  std::int64_t m_, k_, n_;
  SpmmConfig cfg_;
  Buffer rowptr_, cols_, vals_;
  EpilogueBuffers epi_;
  Launch launch_;
};

class Bsr4x1Spmm {
 public:
  Bsr4x1Spmm(Context& ctx, const Bsr4x1Matrix& w, std::int64_t n, const Epilogue& epi = {},
             std::optional<SpmmConfig> cfg = {})
      : ctx_(&ctx), m_(w.rows), k_(w.cols), n_(n), cfg_(cfg.value_or(default_spmm_config(ctx.device(), n))) {
    detail::check_spmm(ctx, cfg_, n, 4);
    rowptr_ = Buffer::upload(ctx, detail::cspan(w.rowptr), CL_MEM_READ_ONLY);
    cols_ = Buffer::upload(ctx, detail::cspan(w.colidx), CL_MEM_READ_ONLY);
    vals_ = Buffer::upload(ctx, detail::cspan(w.values), CL_MEM_READ_ONLY);
    epi_ = EpilogueBuffers(ctx, epi, m_);
    const auto prog = program(cfg_, n);
    launch_.kernel = ctx.kernel(prog.source, "spmm_bsr4x1", prog.options);
    launch_.dims = 2;
    launch_.local = {static_cast<std::size_t>(cfg_.lx), static_cast<std::size_t>(cfg_.ks), 1};
    const auto groups = static_cast<std::size_t>(((m_ + 3) / 4 + cfg_.rpw - 1) / cfg_.rpw);
    launch_.global = {static_cast<std::size_t>(cfg_.lx * cfg_.ng), groups * static_cast<std::size_t>(cfg_.ks), 1};
  }
  void bind(const Buffer& x, Buffer& y) {
    launch_.set_args(*ctx_, detail::to_int(m_, "M"), detail::to_int(n_ / cfg_.vec, "N"), rowptr_, cols_, vals_, x,
                     epi_.scale, epi_.shift, y, epi_.act, epi_.p0, epi_.p1);
  }
  void enqueue(int queue = 0, cl_event* ev = nullptr) const { launch_.enqueue(*ctx_, queue, ev); }
  std::size_t weight_bytes() const { return rowptr_.bytes() + cols_.bytes() + vals_.bytes(); }
  EpilogueBuffers& epilogue() noexcept { return epi_; }
  std::string describe() const { return "bsr4x1." + cfg_.describe(); }
  static ProgramSpec program(const SpmmConfig& c, std::int64_t n) {
    return {detail::source((std::string(kernels::kSpmmCommon) + kernels::kSpmmBsr4x1).c_str()), c.options(n)};
  }

 private:
  Context* ctx_;
  std::int64_t m_, k_, n_;
  SpmmConfig cfg_;
  Buffer rowptr_, cols_, vals_;
  EpilogueBuffers epi_;
  Launch launch_;
};

// ---------------------------------------------------------------- INT8 dense GEMM
// W s8 M x K (per-row symmetric), X u8 K x N with zero point zx. The epilogue's scale must be
// w_scale[m] * x_scale (the dequantisation), its shift the bias.
class Int8Gemm {
 public:
  Int8Gemm(Context& ctx, std::span<const std::int8_t> w, std::int64_t m, std::int64_t k, std::int64_t n, int zx,
           const Epilogue& epi)
      : ctx_(&ctx), m_(m), k_(k), n_(n), zx_(zx) {
    check(static_cast<std::int64_t>(w.size()) == m * k, ErrorCode::shape, "opencl::Int8Gemm", "weight is not M x K");
    k4_ = (k + 3) / 4 * 4;
    std::vector<std::int8_t> padded(static_cast<std::size_t>(m * k4_), 0);
    std::vector<std::int32_t> sums(static_cast<std::size_t>(m), 0);
    for (std::int64_t r = 0; r < m; ++r)
      for (std::int64_t c = 0; c < k; ++c) {
        const auto v = w[static_cast<std::size_t>(r * k + c)];
        padded[static_cast<std::size_t>(r * k4_ + c)] = v;
        sums[static_cast<std::size_t>(r)] += v;
      }
    weights_ = Buffer::upload(ctx, detail::cspan(padded), CL_MEM_READ_ONLY);
    wsum_ = Buffer::upload(ctx, detail::cspan(sums), CL_MEM_READ_ONLY);
    epi_ = EpilogueBuffers(ctx, epi, m);
    launch_.kernel = ctx.kernel(detail::source(kernels::kGemmS8U8), "gemm_s8u8");
    launch_.dims = 2;
    launch_.local = {16, 16, 1};
    launch_.global = {detail::round_up(static_cast<std::size_t>((n + 3) / 4), 16),
                      detail::round_up(static_cast<std::size_t>((m + 3) / 4), 16), 1};
  }
  void bind(const Buffer& x_u8, Buffer& y) {
    launch_.set_args(*ctx_, detail::to_int(m_, "M"), detail::to_int(n_, "N"), detail::to_int(k_, "K"),
                     detail::to_int(k4_, "K"), weights_, x_u8, wsum_, zx_, epi_.scale, epi_.shift, y, epi_.act,
                     epi_.p0, epi_.p1);
  }
  void enqueue(int queue = 0, cl_event* ev = nullptr) const { launch_.enqueue(*ctx_, queue, ev); }
  std::size_t weight_bytes() const { return weights_.bytes() + wsum_.bytes(); }
  EpilogueBuffers& epilogue() { return epi_; }

 private:
  Context* ctx_;
  std::int64_t m_, k_, n_, k4_ = 0;
  int zx_;
  Buffer weights_, wsum_;
  EpilogueBuffers epi_;
  Launch launch_;
};

// The programs of a format trial's candidates for an N-column layer (Context::prebuild).
inline std::vector<ProgramSpec> candidate_programs(const std::vector<GemmConfig>& gemms, const std::vector<SpmmConfig>& csrs,
                                                   const std::vector<SpmmConfig>& bsrs, std::int64_t n) {
  std::vector<ProgramSpec> specs;
  for (const auto& g : gemms)
    for (auto& p : DenseGemm::programs(g)) specs.push_back(std::move(p));
  for (const auto& c : csrs) specs.push_back(CsrSpmm::program(c, n));
  for (const auto& c : bsrs) specs.push_back(Bsr4x1Spmm::program(c, n));
  return specs;
}

// ---------------------------------------------------------------- per-layer format choice
enum class WeightFormat { automatic, dense, csr, bsr4x1 };

inline std::string to_string(WeightFormat f) {
  switch (f) {
    case WeightFormat::automatic: return "auto";
    case WeightFormat::dense: return "dense";
    case WeightFormat::csr: return "csr";
    case WeightFormat::bsr4x1: return "bsr4x1";
  }
  return "?";
}

// One call to completion with the context's wait for GPUs (Context::resolve: the fastest of a
// trial), or `mode` where given.
template <class Op>
void call_and_wait(Context& ctx, const Op& op, Completion mode = Completion::automatic) {
  complete_call(ctx, ctx.resolve(mode), [&](cl_event* ev) { op.enqueue(0, ev); });
}

// Host wall time of each of `reps` calls including completion, after `warmup` calls: the
// same clock the GPU peers are timed with (host wall time per call, torch.cuda.synchronize).
template <class Op>
std::vector<double> call_times_ms(Context& ctx, const Op& op, int warmup, int reps, Completion mode = Completion::automatic) {
  mode = ctx.resolve(mode);
  for (int i = 0; i < warmup; ++i) op.enqueue();
  ctx.finish();
  std::vector<double> t(static_cast<std::size_t>(std::max(reps, 1)));
  for (auto& v : t) {
    const auto t0 = std::chrono::steady_clock::now();
    call_and_wait(ctx, op, mode);
    v = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  return t;
}

// Their median.
template <class Op>
double time_per_call_ms(Context& ctx, const Op& op, int warmup, int reps, Completion mode = Completion::automatic) {
  std::vector<double> t = call_times_ms(ctx, op, warmup, reps, mode);
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

struct FormatTrial {
  std::string kernel;  // e.g. "csr.v4.lx64.ks4.r1"
  double ms = 0;
};

struct MatMulOptions {
  WeightFormat format = WeightFormat::automatic;
  int trial_reps = 10;
  bool quick = false;  // fewer geometries in the trial
};

// MatMul with the weight format chosen per layer on this device: dense always competes;
// sparse formats compete where the zero pattern allows them, and win only by being faster
// (so a layer is never slower than dense). `automatic` runs a short trial on scratch buffers.
class MatMul {
 public:
  using Impl = std::variant<DenseGemm, CsrSpmm, Bsr4x1Spmm>;

  using Options = MatMulOptions;

  static MatMul create(Context& ctx, std::span<const float> w, std::int64_t m, std::int64_t k, std::int64_t n,
                       const Epilogue& epi = {}, Options opt = {}) {
    switch (opt.format) {
      case WeightFormat::dense: return MatMul(DenseGemm(ctx, w, m, k, n, epi, default_gemm(ctx)));
      case WeightFormat::csr: return MatMul(CsrSpmm(ctx, CsrMatrix::from_dense(w, m, k), n, epi));
      case WeightFormat::bsr4x1: return MatMul(Bsr4x1Spmm(ctx, Bsr4x1Matrix::from_dense(w, m, k), n, epi));
      case WeightFormat::automatic: break;
    }
    Buffer x(ctx, static_cast<std::size_t>(k * n) * 4), y(ctx, static_cast<std::size_t>(m * n) * 4);
    const std::vector<float> probe(static_cast<std::size_t>(k * n), 0.5f);
    x.write(detail::cspan(probe));
    std::optional<Impl> best;
    double best_ms = 1e300;
    std::vector<FormatTrial> trials;
    auto consider = [&](auto&& op) {
      op.bind(x, y);
      const double ms = time_per_call_ms(ctx, op, 2, opt.trial_reps);
      trials.push_back({op.describe(), ms});
      if (ms < best_ms) {
        best_ms = ms;
        best.emplace(std::move(op));
      }
    };
    const auto gemms = gemm_candidates(ctx, opt.quick, m, k, n);
    const bool try_csr = zero_fraction(w) >= 0.5, try_bsr = block4x1_zero_fraction(w, m, k) >= 0.5;
    const auto csrs = try_csr ? spmm_candidates(ctx.device(), n, opt.quick) : std::vector<SpmmConfig>{};
    const auto bsrs = try_bsr ? spmm_candidates(ctx.device(), n, opt.quick, 4) : std::vector<SpmmConfig>{};
    ctx.prebuild(candidate_programs(gemms, csrs, bsrs, n));  // every candidate's program first, several at once
    for (auto g : gemms) consider(DenseGemm(ctx, w, m, k, n, epi, g));
    if (try_csr) {
      const auto csr = CsrMatrix::from_dense(w, m, k);
      for (auto c : csrs) consider(CsrSpmm(ctx, csr, n, epi, c));
    }
    if (try_bsr) {
      const auto bsr = Bsr4x1Matrix::from_dense(w, m, k);
      for (auto c : bsrs) consider(Bsr4x1Spmm(ctx, bsr, n, epi, c));
    }
    MatMul mm(std::move(*best));
    mm.trials_ = std::move(trials);
    return mm;
  }

  void bind(const Buffer& x, Buffer& y) { std::visit([&](auto& op) { op.bind(x, y); }, impl_); }
  void enqueue(int queue = 0, cl_event* ev = nullptr) const {
    std::visit([&](const auto& op) { op.enqueue(queue, ev); }, impl_);
  }
  WeightFormat format() const {
    return impl_.index() == 0 ? WeightFormat::dense : impl_.index() == 1 ? WeightFormat::csr : WeightFormat::bsr4x1;
  }
  std::string describe() const { return std::visit([](const auto& op) { return op.describe(); }, impl_); }
  std::size_t weight_bytes() const { return std::visit([](const auto& op) { return op.weight_bytes(); }, impl_); }
  const std::vector<FormatTrial>& trials() const { return trials_; }
  EpilogueBuffers& epilogue() { return std::visit([](auto& op) -> EpilogueBuffers& { return op.epilogue(); }, impl_); }

  static GemmConfig default_gemm(const Context& ctx) {
    return ctx.device().type == DeviceType::cpu ? GemmConfig{64, 64, true} : GemmConfig{32, 32};
  }
  static std::vector<GemmConfig> gemm_candidates(const Context& ctx, bool quick) {
    if (quick) return {default_gemm(ctx)};
    return {GemmConfig{64, 64, true}, GemmConfig{64, 64}, GemmConfig{32, 32}, GemmConfig{32, 64}};
  }
  // The candidates for an M x K x N layer: on GPUs, split-K variants where the tiles alone
  // would leave most compute units idle.
  static std::vector<GemmConfig> gemm_candidates(const Context& ctx, bool quick, std::int64_t m, std::int64_t k,
                                                 std::int64_t n) {
    auto out = gemm_candidates(ctx, quick);
    if (ctx.device().type == DeviceType::cpu) return out;
    const std::int64_t cu = std::max<std::int64_t>(ctx.device().compute_units, 1);
    for (int t : {32, 64}) {
      const std::int64_t tiles = ((m + t - 1) / t) * ((n + t - 1) / t);
      std::int64_t sk = 1;
      while (tiles * sk < 2 * cu && sk < 64 && k / (sk * 2) >= 64) sk *= 2;
      if (sk == 1) continue;
      for (std::int64_t s : {sk / 2, sk, sk * 2}) {
        if (s < 2 || k / s < 32) continue;
        if (quick && s != sk) continue;
        GemmConfig c{t, t};
        c.splitk = static_cast<int>(s);
        out.push_back(c);
      }
    }
    return out;
  }

 private:
  explicit MatMul(Impl impl) : impl_(std::move(impl)) {}
  Impl impl_;
  std::vector<FormatTrial> trials_;
};

// ---------------------------------------------------------------- convolution
struct Conv2dParams {
  std::int64_t c = 0, h = 0, w = 0, cout = 0, kh = 1, kw = 1;
  std::int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  std::int64_t oh() const { return (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  std::int64_t ow() const { return (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  bool depthwise() const { return groups > 1 && groups == c && cout == c; }
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

namespace detail {
// kConv's unfold kernels (im2col, im2col_u8): one work-item per element of the
// (C*KH*KW) x (OH*OW) matrix; bind_unfold passes x, cols, the kernel's own arguments, then
// the geometry.
inline Launch unfold_launch(Context& ctx, const char* name, const Conv2dParams& p) {
  Launch l;
  l.kernel = ctx.kernel(source(kernels::kConv), name);
  l.dims = 2;
  l.fixed_local = false;
  l.global = {static_cast<std::size_t>(p.oh() * p.ow()), static_cast<std::size_t>(p.c / p.groups * p.kh * p.kw), 1};
  return l;
}
template <class... Extra>
void bind_unfold(Launch& l, Context& ctx, const Conv2dParams& p, const Buffer& x, Buffer& cols, Extra... extra) {
  const auto i = [](std::int64_t v) { return to_int(v, "conv dimension"); };
  l.set_args(ctx, x, cols, extra..., i(p.c), i(p.h), i(p.w), i(p.kh), i(p.kw), i(p.sh), i(p.sw), i(p.ph), i(p.pw), i(p.dh),
             i(p.dw), i(p.oh()), i(p.ow()));
}
}  // namespace detail

// Batch-1 NCHW conv; weights are Cout x (C/groups) x KH x KW. Dense, CSR or BSR through
// MatMul after im2col; depthwise directly.
class Conv2d {
 public:
  Conv2d(Context& ctx, const Conv2dParams& p, std::span<const float> w, const Epilogue& epi = {},
         MatMul::Options opt = {})
      : ctx_(&ctx), p_(p) {
    const auto where = "opencl::Conv2d";
    check(p.c > 0 && p.h > 0 && p.w > 0 && p.cout > 0 && p.oh() > 0 && p.ow() > 0, ErrorCode::shape, where,
          "empty input or output");
    check(p.groups == 1 || p.depthwise(), ErrorCode::unsupported, where,
          "grouped convolution other than depthwise (groups = " + std::to_string(p.groups) + ")");
    const std::int64_t kdim = p.c / p.groups * p.kh * p.kw;
    check(static_cast<std::int64_t>(w.size()) == p.cout * kdim, ErrorCode::shape, where, "weight size mismatch");
    if (p.depthwise()) {
      weights_ = Buffer::upload(ctx, w, CL_MEM_READ_ONLY);
      epi_ = EpilogueBuffers(ctx, epi, p.cout);
      direct_.kernel = ctx.kernel(detail::source(kernels::kConv), "depthwise_conv");
      direct_.dims = 3;
      direct_.fixed_local = false;
      direct_.global = {static_cast<std::size_t>(p.ow()), static_cast<std::size_t>(p.oh()), static_cast<std::size_t>(p.c)};
      return;
    }
    const std::int64_t P = p.oh() * p.ow();
    mm_.emplace(MatMul::create(ctx, w, p.cout, kdim, P, epi, opt));
    if (!p.pointwise()) {
      cols_ = Buffer(ctx, static_cast<std::size_t>(kdim * P) * 4);
      im2col_ = detail::unfold_launch(ctx, "im2col", p);
    }
  }
  // X: C x H x W, Y: Cout x OH x OW.
  void bind(const Buffer& x, Buffer& y) {
    const auto i = [](std::int64_t v) { return detail::to_int(v, "conv dimension"); };
    const auto& p = p_;
    if (p.depthwise()) {
      direct_.set_args(*ctx_, x, weights_, epi_.scale, epi_.shift, y, i(p.c), i(p.h), i(p.w), i(p.kh), i(p.kw),
                       i(p.sh), i(p.sw), i(p.ph), i(p.pw), i(p.dh), i(p.dw), i(p.oh()), i(p.ow()), epi_.act, epi_.p0,
                       epi_.p1);
      return;
    }
    if (p.pointwise()) {
      mm_->bind(x, y);
      return;
    }
    detail::bind_unfold(im2col_, *ctx_, p, x, cols_);
    mm_->bind(cols_, y);
  }
  void enqueue(int queue = 0) const {
    if (p_.depthwise()) return direct_.enqueue(*ctx_, queue);
    if (!p_.pointwise()) im2col_.enqueue(*ctx_, queue);
    mm_->enqueue(queue);
  }
  std::string describe() const { return p_.depthwise() ? "depthwise.direct" : mm_->describe(); }
  const MatMul* matmul() const { return mm_ ? &*mm_ : nullptr; }
  EpilogueBuffers& epilogue() { return p_.depthwise() ? epi_ : mm_->epilogue(); }
  std::size_t weight_bytes() const { return p_.depthwise() ? weights_.bytes() : mm_->weight_bytes(); }

 private:
  Context* ctx_;
  Conv2dParams p_;
  std::optional<MatMul> mm_;
  Buffer cols_, weights_;
  EpilogueBuffers epi_;
  Launch im2col_, direct_;
};

// Batch-1 NCHW conv (groups 1) of a QDQ graph in integers: the input, a dequantised u8 tensor
// (per-tensor scale sx, zero point zx), is unfolded back to its u8 values, and the s8 weights
// (Cout x C x KH x KW, per-output-channel symmetric) run through Int8Gemm. The epilogue's scale
// must be w_scale[m] * sx, its shift the bias.
class Conv2dInt8 {
 public:
  Conv2dInt8(Context& ctx, const Conv2dParams& p, std::span<const std::int8_t> w, float sx, int zx, const Epilogue& epi)
      : ctx_(&ctx), p_(p), sx_(sx), zx_(zx) {
    check(p.groups == 1, ErrorCode::unsupported, "opencl::Conv2dInt8", "grouped convolution");
    check(sx > 0 && zx >= 0 && zx <= 255, ErrorCode::invalid_argument, "opencl::Conv2dInt8", "input scale/zero point");
    const std::int64_t kdim = p.c * p.kh * p.kw, P = p.oh() * p.ow();
    gemm_.emplace(ctx, w, p.cout, kdim, P, zx, epi);
    cols_ = Buffer(ctx, static_cast<std::size_t>(std::max<std::int64_t>(kdim * P, 4)));
    im2col_ = detail::unfold_launch(ctx, "im2col_u8", p);
  }
  // X: C x H x W (f32, dequantised), Y: Cout x OH x OW.
  void bind(const Buffer& x, Buffer& y) {
    detail::bind_unfold(im2col_, *ctx_, p_, x, cols_, sx_, zx_);
    gemm_->bind(cols_, y);
  }
  void enqueue(int queue = 0) const {
    im2col_.enqueue(*ctx_, queue);
    gemm_->enqueue(queue);
  }
  EpilogueBuffers& epilogue() { return gemm_->epilogue(); }
  std::size_t weight_bytes() const { return gemm_->weight_bytes(); }

 private:
  Context* ctx_;
  Conv2dParams p_;
  float sx_;
  int zx_;
  std::optional<Int8Gemm> gemm_;
  Buffer cols_;
  Launch im2col_;
};

// Y^T (M x R) = W (M x K, s8, per-row symmetric) * X^T of a QDQ Gemm in integers: X (R x K, a
// dequantised u8 tensor with per-tensor sx, zx) is requantised and transposed in one pass, then
// Int8Gemm. The epilogue's scale must be w_scale[m] * sx (times alpha), its shift the bias.
class GemmInt8 {
 public:
  GemmInt8(Context& ctx, std::span<const std::int8_t> w, std::int64_t m, std::int64_t k, std::int64_t r, float sx, int zx,
           const Epilogue& epi)
      : ctx_(&ctx), k_(k), r_(r), sx_(sx), zx_(zx) {
    check(sx > 0 && zx >= 0 && zx <= 255, ErrorCode::invalid_argument, "opencl::GemmInt8", "input scale/zero point");
    gemm_.emplace(ctx, w, m, k, r, zx, epi);
    xq_ = Buffer(ctx, static_cast<std::size_t>(std::max<std::int64_t>(k * r, 4)));
    quant_.kernel = ctx.kernel(detail::source(kernels::kQuantU8T), "quant_u8_t");
    quant_.dims = 2;
    quant_.fixed_local = false;
    quant_.global = {static_cast<std::size_t>(r), static_cast<std::size_t>(k), 1};
  }
  // X: R x K (f32, dequantised), Y: M x R.
  void bind(const Buffer& x, Buffer& y) {
    quant_.set_args(*ctx_, x, xq_, sx_, zx_, detail::to_int(r_, "R"), detail::to_int(k_, "K"));
    gemm_->bind(xq_, y);
  }
  void enqueue(int queue = 0) const {
    quant_.enqueue(*ctx_, queue);
    gemm_->enqueue(queue);
  }
  EpilogueBuffers& epilogue() { return gemm_->epilogue(); }

 private:
  Context* ctx_;
  std::int64_t k_, r_;
  float sx_;
  int zx_;
  std::optional<Int8Gemm> gemm_;
  Buffer xq_;
  Launch quant_;
};

// ---------------------------------------------------------------- element-wise, pooling, norms
namespace detail {
inline Launch flat_launch(Context& ctx, const char* body, const char* name, std::int64_t n, std::size_t local) {
  Launch l;
  l.kernel = ctx.kernel(source(body), name);
  l.global = {round_up(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)), local), 1, 1};
  l.local = {local, 1, 1};
  return l;
}
}  // namespace detail

// y = act(x) over n elements.
class Unary {
 public:
  Unary(Context& ctx, std::int64_t n, Activation act, float p0 = 0, float p1 = 0)
      : ctx_(&ctx), n_(n), act_(static_cast<int>(act)), p0_(p0), p1_(p1),
        l_(detail::flat_launch(ctx, kernels::kElementwise, "ew_unary", n, 64)) {}
  void bind(const Buffer& x, Buffer& y) { l_.set_args(*ctx_, x, y, detail::to_int(n_, "n"), act_, p0_, p1_); }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  std::int64_t n_;
  int act_;
  float p0_, p1_;
  Launch l_;
};

enum class BinaryOp : int { add = 0, mul = 1 };
// How B broadcasts against A (n elements): same shape, one scalar, or one value per channel
// where channel = (i / inner) % channels (NCHW per-channel: inner = H*W).
struct Broadcast {
  enum Mode : int { full = 0, scalar = 1, channel = 2 } mode = full;
  std::int64_t inner = 1, channels = 1;
};

// y = act(a op b), the residual add + ReLU of ResNet in one kernel.
class Binary {
 public:
  Binary(Context& ctx, std::int64_t n, BinaryOp op, Broadcast b = {}, Activation act = Activation::none)
      : ctx_(&ctx), n_(n), op_(op), b_(b), act_(static_cast<int>(act)),
        l_(detail::flat_launch(ctx, kernels::kElementwise, "ew_binary", n, 64)) {}
  void bind(const Buffer& a, const Buffer& b, Buffer& y) {
    l_.set_args(*ctx_, a, b, y, detail::to_int(n_, "n"), static_cast<int>(op_), static_cast<int>(b_.mode),
                detail::to_int(std::max<std::int64_t>(b_.inner, 1), "inner"),
                detail::to_int(std::max<std::int64_t>(b_.channels, 1), "channels"), act_, 0.0f, 0.0f);
  }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  std::int64_t n_;
  BinaryOp op_;
  Broadcast b_;
  int act_;
  Launch l_;
};

struct Pool2dParams {
  std::int64_t c = 0, h = 0, w = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
  bool max = true;
  bool count_include_pad = false;
  std::int64_t oh() const { return (h + 2 * ph - kh) / sh + 1; }
  std::int64_t ow() const { return (w + 2 * pw - kw) / sw + 1; }
};

class Pool2d {
 public:
  Pool2d(Context& ctx, const Pool2dParams& p) : ctx_(&ctx), p_(p) {
    check(p.oh() > 0 && p.ow() > 0, ErrorCode::shape, "opencl::Pool2d", "window larger than the padded input");
    l_.kernel = ctx.kernel(detail::source(kernels::kPool), "pool2d");
    l_.dims = 3;
    l_.fixed_local = false;
    l_.global = {static_cast<std::size_t>(p.ow()), static_cast<std::size_t>(p.oh()), static_cast<std::size_t>(p.c)};
  }
  void bind(const Buffer& x, Buffer& y) {
    const auto i = [](std::int64_t v) { return detail::to_int(v, "pool dimension"); };
    l_.set_args(*ctx_, x, y, i(p_.c), i(p_.h), i(p_.w), i(p_.kh), i(p_.kw), i(p_.sh), i(p_.sw), i(p_.ph), i(p_.pw),
                i(p_.oh()), i(p_.ow()), p_.max ? 1 : 0, p_.count_include_pad ? 1 : 0);
  }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  Pool2dParams p_;
  Launch l_;
};

// C x HW -> C.
class GlobalAvgPool {
 public:
  GlobalAvgPool(Context& ctx, std::int64_t c, std::int64_t hw) : ctx_(&ctx), hw_(hw) {
    l_.kernel = ctx.kernel(detail::source(kernels::kPool), "global_avgpool");
    l_.global = {static_cast<std::size_t>(c) * 64, 1, 1};
    l_.local = {64, 1, 1};
  }
  void bind(const Buffer& x, Buffer& y) { l_.set_args(*ctx_, x, y, detail::to_int(hw_, "HW")); }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  std::int64_t hw_;
  Launch l_;
};

// Softmax over the last axis of a rows x cols tensor.
class Softmax {
 public:
  Softmax(Context& ctx, std::int64_t rows, std::int64_t cols) : ctx_(&ctx), cols_(cols) {
    l_.kernel = ctx.kernel(detail::source(kernels::kNorm), "softmax_rows");
    l_.global = {static_cast<std::size_t>(rows) * 128, 1, 1};
    l_.local = {128, 1, 1};
  }
  void bind(const Buffer& x, Buffer& y) { l_.set_args(*ctx_, x, y, detail::to_int(cols_, "cols")); }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  std::int64_t cols_;
  Launch l_;
};

// LayerNorm over the last axis (gamma, beta of length cols).
class LayerNorm {
 public:
  LayerNorm(Context& ctx, std::int64_t rows, std::int64_t cols, std::span<const float> gamma,
            std::span<const float> beta, float eps = 1e-5f)
      : ctx_(&ctx), cols_(cols), eps_(eps) {
    check(static_cast<std::int64_t>(gamma.size()) == cols && static_cast<std::int64_t>(beta.size()) == cols,
          ErrorCode::shape, "opencl::LayerNorm", "gamma/beta must have cols values");
    gamma_ = Buffer::upload(ctx, gamma, CL_MEM_READ_ONLY);
    beta_ = Buffer::upload(ctx, beta, CL_MEM_READ_ONLY);
    l_.kernel = ctx.kernel(detail::source(kernels::kNorm), "layernorm_rows");
    l_.global = {static_cast<std::size_t>(rows) * 128, 1, 1};
    l_.local = {128, 1, 1};
  }
  void bind(const Buffer& x, Buffer& y) { l_.set_args(*ctx_, x, gamma_, beta_, y, detail::to_int(cols_, "cols"), eps_); }
  void enqueue(int queue = 0) const { l_.enqueue(*ctx_, queue); }

 private:
  Context* ctx_;
  std::int64_t cols_;
  float eps_;
  Buffer gamma_, beta_;
  Launch l_;
};

}  // namespace sparseloom::opencl
