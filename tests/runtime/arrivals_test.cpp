// Arrival processes are seeded, deterministic and have the rates they claim; traces parse
// or fail with a clear error.
#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "sparseloom/runtime/arrivals.hpp"

namespace rt = sparseloom::runtime;

TEST_CASE("Arrivals.Poisson.RateAndDeterminism") {
  rt::PoissonArrivals a(200, 42), b(200, 42), c(200, 43);
  const auto xa = rt::arrivals_for(a, 0, 50'000);
  const auto xb = rt::arrivals_for(b, 0, 50'000);
  const auto xc = rt::arrivals_for(c, 0, 50'000);
  CHECK(xa == xb);
  CHECK(xa != xc);
  CHECK(static_cast<double>(xa.size()) == doctest::Approx(10'000).epsilon(0.05));
  for (std::size_t i = 1; i < xa.size(); ++i) CHECK(xa[i].time_ms >= xa[i - 1].time_ms);
}

TEST_CASE("Arrivals.Bursty.MeanRate") {
  rt::BurstyArrivals a(400, 0, 50, 150, 1);
  CHECK(a.mean_rps() == doctest::Approx(100));
  const auto xs = rt::arrivals_for(a, 1, 200'000);
  CHECK(static_cast<double>(xs.size()) == doctest::Approx(20'000).epsilon(0.1));
  // Burstiness: the busiest 100 ms window holds far more than the mean 10.
  std::size_t best = 0;
  for (std::size_t i = 0, j = 0; i < xs.size(); ++i) {
    while (xs[i].time_ms - xs[j].time_ms > 100) ++j;
    best = std::max(best, i - j + 1);
  }
  CHECK(best > 25);
}

TEST_CASE("Arrivals.Merge.PerTaskRates") {
  std::vector<sparseloom::Slo> slos(2);
  slos[0].rate_rps = 100;
  slos[1].rate_rps = 10;
  const auto xs = rt::poisson_arrivals(slos, 20'000, 3);
  std::size_t n0 = 0;
  for (const auto& a : xs) n0 += a.task == 0;
  CHECK(static_cast<double>(n0) == doctest::Approx(2000).epsilon(0.1));
  CHECK(static_cast<double>(xs.size() - n0) == doctest::Approx(200).epsilon(0.25));
  CHECK(xs == rt::poisson_arrivals(slos, 20'000, 3));
}

TEST_CASE("Arrivals.Trace.Parse") {
  std::istringstream in("time_ms,task\n10,speech\n5.5,1\n# comment\n\n20,image\r\n");
  const auto xs = rt::parse_trace_csv(in, {"image", "speech"});
  REQUIRE(xs.size() == 3);
  CHECK(xs[0] == rt::Arrival{5.5, 1});
  CHECK(xs[1] == rt::Arrival{10, 1});
  CHECK(xs[2] == rt::Arrival{20, 0});
}

TEST_CASE("Arrivals.Trace.Errors") {
  const std::vector<std::string> names{"a"};
  auto parse = [&](const char* text) {
    std::istringstream in(text);
    return rt::parse_trace_csv(in, names, "t.csv");
  };
  CHECK_THROWS_WITH_AS(parse("1,b\n"), doctest::Contains("t.csv:1"), sparseloom::Error);
  CHECK_THROWS_AS(parse("1;a\n"), sparseloom::Error);
  CHECK_THROWS_AS(parse("x\n1,5\n"), sparseloom::Error);
  CHECK_THROWS_AS(parse("-1,a\n"), sparseloom::Error);
  CHECK_THROWS_AS(rt::load_trace_csv("/nonexistent/trace.csv", names), sparseloom::Error);
}

// A submit that takes (task, late_ms) is told how late the generator called it: here the
// first call holds the generator 30 ms, so the arrival due at 1 ms is submitted >= 29 ms late.
TEST_CASE("Arrivals.Replay.TellsSubmitHowLateItIs") {
  const std::vector<rt::Arrival> xs{{0, 0}, {1, 1}, {40, 0}};
  std::vector<double> late;
  const auto tasks = rt::replay(xs, [&](sparseloom::TaskIndex t, double late_ms) {
    late.push_back(late_ms);
    if (late.size() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return t;
  });
  CHECK(tasks == std::vector<sparseloom::TaskIndex>{0, 1, 0});
  REQUIRE(late.size() == 3);
  for (double l : late) CHECK(l >= 0);
  CHECK(late[1] >= 29);
  // The one-argument form still works (and is not told).
  CHECK(rt::replay(xs, [](sparseloom::TaskIndex t) { return t + 1; }) == std::vector<sparseloom::TaskIndex>{1, 2, 1});
}
