// The cpu backend's format-decision cache (issue 10: cheap cold loads). A layer prepared again
// with the same weights and options packs the format the first trial chose, without timing
// any candidate; other weights or options trial again; results stay exact. Through
// stitch::BlockLibrary: a block reloaded after eviction trials no format and loads faster
// (both times printed).
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "sparseloom/backends/cpu/backend.hpp"
#include "sparseloom/backends/cpu/format_cache_file.hpp"
#include "sparseloom/stitch/block_library.hpp"

using namespace sparseloom;

namespace {

std::vector<float> sparse_weights(std::int64_t m, std::int64_t k, double sparsity, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::bernoulli_distribution keep(1.0 - sparsity);
  std::vector<float> w(static_cast<std::size_t>(m * k));
  for (auto& x : w) x = keep(rng) ? d(rng) : 0.f;
  return w;
}

// Max |Y - W X| over the output, W (m x k), X (k x n), no epilogue.
template <class Prepared>
double max_error(const Prepared& p, const std::vector<float>& w, std::int64_t m, std::int64_t k, std::int64_t n,
                 cpu::ThreadPool& pool) {
  std::vector<float> x(static_cast<std::size_t>(k * n)), y(static_cast<std::size_t>(m * n));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& v : x) v = d(rng);
  p.run(x.data(), y.data(), pool);
  double err = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (std::int64_t c = 0; c < k; ++c) ref += double(w[static_cast<std::size_t>(i * k + c)]) * x[static_cast<std::size_t>(c * n + j)];
      err = std::max(err, std::abs(ref - y[static_cast<std::size_t>(i * n + j)]));
    }
  return err;
}

bool same_candidates(const std::vector<cpu::Candidate>& a, const std::vector<cpu::Candidate>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].format != b[i].format || a[i].kernel != b[i].kernel || a[i].ms != b[i].ms) return false;
  return true;
}

}  // namespace

TEST_CASE("Preloader.FormatCacheSkipsTheTrialOnASecondPrepare") {
  auto& cache = cpu::FormatCache::instance();
  cache.clear();  // doctest re-enters the case for every subcase
  cpu::ThreadPool pool(1);
  const std::int64_t m = 64, k = 96, n = 24;
  auto w = sparse_weights(m, k, 0.8, 11);
  cpu::ChoiceOptions opt;
  opt.budget_ms = 0.2;

  const auto s0 = cache.stats();
  const auto first = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
  const auto s1 = cache.stats();
  CHECK_FALSE(first.from_cache());
  CHECK(s1.trials - s0.trials == first.candidates().size());
  CHECK(first.candidates().size() >= 2);  // sparse formats and oneDNN dense were timed

  const auto second = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
  const auto s2 = cache.stats();
  CHECK(second.from_cache());
  CHECK(s2.trials == s1.trials);  // nothing timed
  CHECK(s2.hits == s1.hits + 1);
  CHECK(second.format() == first.format());
  CHECK(second.kernel() == first.kernel());
  CHECK(second.weight_bytes() == first.weight_bytes());
  CHECK(same_candidates(second.candidates(), first.candidates()));  // reports read the same
  CHECK(max_error(first, w, m, k, n, pool) < 1e-4);
  CHECK(max_error(second, w, m, k, n, pool) < 1e-4);

  SUBCASE("other weights trial again") {
    auto w2 = w;
    w2[5] += 0.5f;
    const auto third = cpu::prepare_matmul(w2.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
    CHECK_FALSE(third.from_cache());
    CHECK(cache.stats().trials > s2.trials);
    CHECK(max_error(third, w2, m, k, n, pool) < 1e-4);
  }
  SUBCASE("other options trial again") {
    auto o2 = opt;
    o2.allow_dense = false;
    const auto third = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, o2);
    CHECK_FALSE(third.from_cache());
    CHECK(third.format() != cpu::Format::dense);
    CHECK(cache.stats().trials > s2.trials);
  }
  SUBCASE("use_cache = false always trials") {
    auto o2 = opt;
    o2.use_cache = false;
    const auto third = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, o2);
    CHECK_FALSE(third.from_cache());
    CHECK(cache.stats().trials - s2.trials == third.candidates().size());
  }
  SUBCASE("clear forgets") {
    cache.clear();
    CHECK(cache.size() == 0);
    const auto third = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
    CHECK_FALSE(third.from_cache());
  }
}

TEST_CASE("Preloader.FormatCacheInt8") {
  auto& cache = cpu::FormatCache::instance();
  cache.clear();
  cpu::ThreadPool pool(1);
  const std::int64_t m = 32, k = 64, n = 16;
  std::mt19937 rng(5);
  std::vector<std::int8_t> q(static_cast<std::size_t>(m * k));
  for (auto& v : q) v = (rng() % 4 == 0) ? static_cast<std::int8_t>(static_cast<int>(rng() % 200) - 100) : 0;
  std::vector<float> scale(static_cast<std::size_t>(m), 0.01f);
  cpu::ChoiceOptions opt;
  opt.budget_ms = 0.2;
  const cpu::ActivationQuant xq{0.02f, 128};
  const auto first = cpu::prepare_matmul_qu8(q.data(), scale.data(), m, k, n, xq, cpu::Epilogue::none(), pool, opt);
  const auto s1 = cache.stats();
  const auto second = cpu::prepare_matmul_qu8(q.data(), scale.data(), m, k, n, xq, cpu::Epilogue::none(), pool, opt);
  CHECK_FALSE(first.from_cache());
  CHECK(second.from_cache());
  CHECK(cache.stats().trials == s1.trials);
  CHECK(second.format() == first.format());
  CHECK(second.kernel() == first.kernel());
  CHECK(same_candidates(second.candidates(), first.candidates()));
  // Same packed weights, so the same outputs.
  std::vector<std::uint8_t> x(static_cast<std::size_t>(k * n));
  for (auto& v : x) v = static_cast<std::uint8_t>(rng());
  std::vector<float> y1(static_cast<std::size_t>(m * n)), y2(y1.size());
  first.run(x.data(), y1.data(), pool);
  second.run(x.data(), y2.data(), pool);
  CHECK(y1 == y2);
}

TEST_CASE("Preloader.FormatCacheOtherTimedDecisions") {
  auto& cache = cpu::FormatCache::instance();
  cache.clear();
  int timed = 0;
  auto decide = [&] { return ++timed % 2 == 1; };  // would flip if it ran again
  const bool first = cache.decision("conv-implicit:1234:t1", decide);
  CHECK(cache.decision("conv-implicit:1234:t1", decide) == first);
  CHECK(timed == 1);
  cache.decision("conv-implicit:1234:t2", decide);  // another key decides for itself
  CHECK(timed == 2);
}

TEST_CASE("Preloader.ReloadAfterEvictionSkipsTheFormatTrial") {
  auto& cache = cpu::FormatCache::instance();
  const auto z = zoo::load_task(std::filesystem::path(SPARSELOOM_SOURCE_DIR) / "models/zoo/digits_cnn");
  stitch::BlockLibrary<cpu::Backend> lib({&z}, {cpu::Backend(1)}, {{"cpu", 0, {1}}}, 16);
  cache.clear();
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t0) { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); };
  double cold_ms = 0, warm_ms = 0;
  int blocks = 0;
  for (BlockIndex b = 0; b < z.num_blocks(); ++b)
    for (VariantIndex v = 0; v < z.num_variants(); ++v) {
      const auto s0 = cache.stats();
      auto t0 = clock::now();
      lib.load(0, b, v, 0);  // first load: the format trial runs (block_bytes() is not asked first)
      cold_ms += ms_since(t0);
      const std::size_t bytes = lib.resident_bytes();
      const auto s1 = cache.stats();
      lib.unload(0, b, v, 0);
      CHECK(lib.resident_bytes() == 0);  // unload frees the packed weights
      t0 = clock::now();
      lib.load(0, b, v, 0);  // reload after eviction: decisions from the cache
      warm_ms += ms_since(t0);
      const auto s2 = cache.stats();
      CHECK(s2.trials == s1.trials);
      // Same formats; a conv's implicit-vs-im2col choice (conv.hpp) is still timed per compile
      // and may change its workspace, so the bytes are compared loosely.
      CHECK(static_cast<double>(lib.resident_bytes()) == doctest::Approx(static_cast<double>(bytes)).epsilon(0.25));
      CHECK(lib.block_bytes(0, b, v, 0) == lib.resident_bytes());
      lib.unload(0, b, v, 0);
      if (s1.trials > s0.trials) ++blocks;  // blocks with matmul/conv layers
    }
  REQUIRE(blocks > 0);
  const int n = z.num_blocks() * z.num_variants();
  std::printf("digits_cnn, %d blocks x variants on 1 thread: cold load (format trial) %.2f ms/block, reload (cached "
              "decision) %.2f ms/block, %.1fx\n",
              n, cold_ms / n, warm_ms / n, warm_ms > 0 ? cold_ms / warm_ms : 0.0);
  CHECK(warm_ms < cold_ms);
}

// The decisions on disk (format_cache_file.hpp): a new process (here: a cleared cache) that
// loads them packs the same formats without timing; a file from another machine, a damaged
// file or damaged entries are ignored, and an entry this build cannot pack is a miss.
TEST_CASE("Preloader.FormatCacheFileRestoresDecisionsAndRejectsBadOnes") {
  namespace fs = std::filesystem;
  auto& cache = cpu::FormatCache::instance();
  cache.clear();
  cpu::ThreadPool pool(1);
  const std::int64_t m = 64, k = 96, n = 24;
  auto w = sparse_weights(m, k, 0.8, 21);
  cpu::ChoiceOptions opt;
  opt.budget_ms = 0.2;
  const auto first = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
  CHECK(cache.decision("test:flag", [] { return true; }));  // a timed yes/no choice (conv.hpp's kind)
  const fs::path dir = fs::temp_directory_path() / ("sparseloom-format-cache-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto file = dir / "sub" / "decisions.json";
  cpu::save_format_cache(file);
  auto write = [&](const std::string& text) { std::ofstream(file, std::ios::trunc) << text; };

  cache.clear();
  auto r = cpu::load_format_cache(file);
  CHECK(r.ignored.empty());
  CHECK(r.added >= 1);
  CHECK(r.skipped == 0);
  const auto t0 = cache.stats().trials;
  const auto again = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
  CHECK(again.from_cache());
  CHECK(cache.stats().trials == t0);  // nothing timed
  CHECK(again.format() == first.format());
  CHECK(again.kernel() == first.kernel());
  CHECK(same_candidates(again.candidates(), first.candidates()));
  CHECK(max_error(again, w, m, k, n, pool) < 1e-4);
  CHECK(cache.decision("test:flag", [] { return false; }));  // restored: not decided again

  // Another machine or build: ignored as a whole.
  cache.clear();
  r = cpu::load_format_cache(file, "some other CPU");
  CHECK(r.added == 0);
  CHECK(r.ignored.find("another machine") != std::string::npos);
  CHECK(cache.size() == 0);
  // Missing, not JSON, truncated, wrong version: ignored, never thrown.
  CHECK(cpu::load_format_cache(dir / "none.json").ignored == "no file");
  const std::string good = [&] { std::ifstream in(file); return std::string(std::istreambuf_iterator<char>(in), {}); }();
  for (const std::string& bad : {std::string("\x01\xff not json"), good.substr(0, good.size() / 2), std::string("[]"),
                                std::string("{\"format_cache\": \"1\"}")}) {
    write(bad);
    r = cpu::load_format_cache(file);
    CHECK(r.added == 0);
    CHECK_FALSE(r.ignored.empty());
  }
  // Damaged entries are skipped one by one; the rest is taken.
  const std::string tag = cpu::format_cache_tag();
  auto doc = [&](const std::string& formats) {
    json::Json j{{"format_cache", cpu::kFormatCacheFileVersion}, {"tag", tag}, {"flags", json::Json::array()}};
    j["formats"] = json::Json::parse(formats);
    return j.dump();
  };
  write(doc(R"([{"key": "a", "format": "csr", "ukernel": "", "kc": -4, "candidates": []},
                {"key": "b", "format": "lz77", "ukernel": "", "kc": 0, "candidates": []},
                {"key": "c", "format": "csr", "ukernel": "", "kc": 0, "candidates": [{"format": "csr", "kernel": "x", "ms": -1}]},
                {"key": "", "format": "csr", "ukernel": "", "kc": 0, "candidates": []},
                {"key": "d", "format": "csr", "ukernel": "", "kc": 0, "candidates": []}])"));
  cache.clear();
  r = cpu::load_format_cache(file);
  CHECK(r.skipped == 4);
  CHECK(r.added == 1);
  // A well-formed entry this build cannot pack (an unknown microkernel) is a miss: trial again.
  json::Json saved = json::Json::parse(good);
  REQUIRE(!saved["formats"].empty());
  for (auto& e : saved["formats"]) e["format"] = "csr", e["ukernel"] = "no_such_ukernel";
  write(saved.dump());
  cache.clear();
  r = cpu::load_format_cache(file);
  CHECK(r.added >= 1);
  const auto t1 = cache.stats().trials;
  const auto retried = cpu::prepare_matmul(w.data(), m, k, n, cpu::Epilogue::none(), pool, opt);
  CHECK_FALSE(retried.from_cache());
  CHECK(cache.stats().trials > t1);
  CHECK(max_error(retried, w, m, k, n, pool) < 1e-4);
  fs::remove_all(dir);
  cache.clear();
}
