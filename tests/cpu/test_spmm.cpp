// Every sparse format x every microkernel and ISA family this CPU runs, over M/K/N edge cases,
// against a double-precision reference.
#include <doctest/doctest.h>

#include <atomic>

#include "spmm_tester.hpp"

using namespace sparseloom::cpu;
using sparseloom::cpu::testing::Pattern;
using sparseloom::cpu::testing::SpmmTester;

namespace {

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (cpu_features().supports(i)) v.push_back(i);
  return v;
}

std::vector<std::string> ukernel_names(Format f, Isa isa) {
  std::vector<std::string> names;
  switch (f) {
    case Format::csr: for (auto& u : csr_ukernels(isa)) names.emplace_back(u.name); break;
    case Format::bsr4x1: for (auto& u : bsr_ukernels(isa, 4)) names.emplace_back(u.name); break;
    case Format::bsr8x1: for (auto& u : bsr_ukernels(isa, 8)) names.emplace_back(u.name); break;
    case Format::sparse24: for (auto& u : sparse24_ukernels(isa)) names.emplace_back(u.name); break;
    case Format::int8_1x4: for (auto& u : qu8s8_ukernels(isa)) names.emplace_back(u.name); break;
    default: break;
  }
  return names;
}

// Runs every kernel of every family on the tester's problem.
void all_kernels(const SpmmTester& t, std::initializer_list<Format> formats) {
  for (Isa isa : isas())
    for (Format f : formats)
      for (const auto& name : ukernel_names(f, isa)) {
        if (f == Format::int8_1x4) {
          t.test_qu8(isa, name);
          for (std::int64_t kc : {4, 12}) t.test_qu8(isa, name, kc);
          continue;
        }
        t.test_f32(f, isa, name);
        // K-chunked CSR: tiny chunks (many empty segments) and a middling one.
        if (f == Format::csr || f == Format::sparse24)
          for (std::int64_t kc : {1, 3, 16}) t.test_f32(f, isa, name, kc);
      }
}

constexpr std::initializer_list<Format> kF32 = {Format::csr, Format::bsr4x1, Format::bsr8x1};

}  // namespace

TEST_CASE("Cpu.Features.Detected") {
  const auto& f = cpu_features();
  MESSAGE(cpu_model_name() << ": " << f.isa_string() << " -> " << std::string(to_string(f.best_isa())));
  CHECK(f.supports(Isa::scalar));
  CHECK(!csr_ukernels(Isa::scalar).empty());
}

TEST_CASE("Cpu.ThreadPool.RunsEveryTaskOnce") {
  for (std::vector<int> cores : {std::vector<int>{}, std::vector<int>{0}}) {
    ThreadPool pool(3, cores);
    CHECK(pool.size() == 3);
    for (int rep = 0; rep < 200; ++rep) {
      const int n = 1 + rep % 3;
      std::vector<std::atomic<int>> hits(3);
      pool.run(n, [&](int t) { hits[static_cast<std::size_t>(t)].fetch_add(1); });
      for (int t = 0; t < 3; ++t) CHECK(hits[static_cast<std::size_t>(t)].load() == (t < n ? 1 : 0));
    }
    CHECK_THROWS_AS(pool.run(4, [](int) {}), sparseloom::Error);
  }
}

TEST_CASE("Cpu.Spmm.EdgeN") {
  for (std::int64_t n : {1, 7, 8, 15, 16, 17, 31, 49, 65, 100, 129})
    all_kernels(SpmmTester().m(13).k(37).n(n).sparsity(0.7), {Format::csr, Format::bsr4x1, Format::bsr8x1, Format::int8_1x4});
}

TEST_CASE("Cpu.Spmm.EdgeMK") {
  for (std::int64_t m : {1, 3, 4, 5, 8, 9, 33})
    for (std::int64_t k : {1, 2, 3, 4, 5, 63})
      all_kernels(SpmmTester().m(m).k(k).n(23).sparsity(0.5).seed(static_cast<std::uint32_t>(m * 100 + k)),
                  {Format::csr, Format::bsr4x1, Format::bsr8x1, Format::int8_1x4});
}

TEST_CASE("Cpu.Spmm.Patterns") {
  for (Pattern p : {Pattern::random, Pattern::block4x1, Pattern::block8x1, Pattern::two_of_four, Pattern::dense, Pattern::zero})
    for (bool empty : {false, true}) {
      const SpmmTester t = SpmmTester().m(29).k(70).n(40).sparsity(0.9).pattern(p).empty_rows(empty);
      all_kernels(t, {Format::csr, Format::bsr4x1, Format::bsr8x1, Format::int8_1x4});
      if (p == Pattern::two_of_four || p == Pattern::zero) all_kernels(t, {Format::sparse24});
    }
}

TEST_CASE("Cpu.Spmm.TwoOfFour.KTails") {
  for (std::int64_t k : {1, 2, 3, 4, 5, 6, 7, 9, 66})
    all_kernels(SpmmTester().m(7).k(k).n(37).pattern(Pattern::two_of_four).seed(static_cast<std::uint32_t>(k)), {Format::sparse24});
}

TEST_CASE("Cpu.Spmm.Threads") {
  for (int t : {1, 2, 3, 5})
    for (Activation a : {Activation::none, Activation::relu, Activation::clip})
      all_kernels(SpmmTester().m(61).k(90).n(50).sparsity(0.85).threads(t).activation(a),
                  {Format::csr, Format::bsr4x1, Format::bsr8x1, Format::int8_1x4});
  // More threads than rows: some ranges are empty.
  all_kernels(SpmmTester().m(2).k(9).n(18).threads(4), {Format::csr, Format::bsr4x1, Format::bsr8x1, Format::int8_1x4});
}

TEST_CASE("Cpu.Spmm.LayerSized") {
  all_kernels(SpmmTester().m(96).k(576).n(196).sparsity(0.9).threads(2), kF32);
  all_kernels(SpmmTester().m(96).k(576).n(196).sparsity(0.9).pattern(Pattern::block4x1).threads(2), {Format::bsr4x1});
}

TEST_CASE("Cpu.Pack.CsrChunks") {
  const auto w = SpmmTester().m(9).k(20).sparsity(0.6).make_w();
  const auto plain = pack_csr(w.data(), 9, 20, 5);
  const auto chunked = pack_csr(w.data(), 9, 20, 5, 8);
  CHECK(chunked.chunks() == 3);
  CHECK(chunked.seg_ptr.size() == 3 * 9 + 1);
  CHECK(chunked.nnz() == plain.nnz());
  CHECK(chunked.row_ptr == plain.row_ptr);
  CHECK(pack_csr(w.data(), 9, 20, 5, 20).kc == 0);  // one chunk is no chunking
}

TEST_CASE("Cpu.Dense.OneDnn") {
  for (Activation a : {Activation::none, Activation::relu, Activation::clip}) {
    SpmmTester().m(33).k(70).n(49).pattern(Pattern::dense).activation(a).test_dense_onednn();
    SpmmTester().m(64).k(64).n(128).pattern(Pattern::random).activation(a).threads(2).test_dense_onednn();
  }
}

TEST_CASE("Cpu.Dense.OneDnnInt8") {
  for (Activation a : {Activation::none, Activation::relu}) {
    SpmmTester().m(33).k(70).n(49).pattern(Pattern::dense).activation(a).with_onednn(true).test_qu8(Isa::scalar);
    SpmmTester().m(64).k(128).n(17).sparsity(0.5).activation(a).threads(2).with_onednn(true).test_qu8(Isa::scalar);
  }
}

TEST_CASE("Cpu.Pack.DetectPattern") {
  auto w = SpmmTester().m(32).k(64).sparsity(0.75).pattern(Pattern::block4x1).make_w();
  auto p = detect_pattern(w.data(), 32, 64);
  CHECK(p.fill_4x1 == doctest::Approx(1.0));
  CHECK(p.sparsity > 0.6);
  w = SpmmTester().m(32).k(64).pattern(Pattern::two_of_four).make_w();
  p = detect_pattern(w.data(), 32, 64);
  CHECK(p.is_2of4);
  w = SpmmTester().m(32).k(64).pattern(Pattern::dense).make_w();
  p = detect_pattern(w.data(), 32, 64);
  CHECK(!p.is_2of4);
  CHECK(p.sparsity == 0.0);
  CHECK_THROWS_AS(pack_sparse24(w.data(), 32, 64, 16), sparseloom::Error);
}
