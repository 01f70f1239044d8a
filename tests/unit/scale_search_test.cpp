// The throughput search of sparseloom-bench-e2e (bench/e2e/scale_search.hpp) on scripted probes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../../bench/e2e/scale_search.hpp"

using namespace sparseloom;

namespace {
// A policy that sustains scales up to `limit`, with the n-th probe run (0-based) in `stalled`
// failing anyway (a transient stall of the machine).
struct Scripted {
  Scripted(double l, std::vector<int> s) : limit(l), stalled(std::move(s)) {}
  double limit;
  std::vector<int> stalled;
  int runs = 0;
  std::vector<double> scales;
  std::pair<double, double> operator()(double scale, double) {
    scales.push_back(scale);
    const bool stall = std::find(stalled.begin(), stalled.end(), runs++) != stalled.end();
    return {stall || scale > limit ? 0.05 : 0.0, 10 * scale};
  }
};
}  // namespace

TEST_CASE("E2e.ScaleSearch.DoublesThenBisects") {
  Scripted p{3.0, {}};
  e2e::ThroughputOptions o;
  const auto r = e2e::search_max_scale(10.0, std::ref(p), o);
  // 1, 2 pass; 4 fails twice (confirmed); bisect 2..4: 2.83 pass, 3.36 fails twice, 3.08 fails twice.
  CHECK(r.rate_scale == doctest::Approx(std::sqrt(8.0)));
  CHECK(r.offered_rps == doctest::Approx(10 * std::sqrt(8.0)));
  CHECK(r.served_rps == doctest::Approx(10 * std::sqrt(8.0)));
  CHECK(p.runs == 1 + 1 + 2 + 1 + 2 + 2);
  CHECK(r.probes.size() == static_cast<std::size_t>(p.runs));
}

TEST_CASE("E2e.ScaleSearch.ATransientFailureIsRunAgain") {
  // The second probe run (scale 2) stalls: with a confirming run the search goes on doubling.
  Scripted p{3.0, {1}};
  const auto r = e2e::search_max_scale(10.0, std::ref(p), {});
  CHECK(r.rate_scale == doctest::Approx(std::sqrt(8.0)));
  CHECK(p.scales[1] == 2.0);
  CHECK(p.scales[2] == 2.0);
  CHECK(r.probes[1]["sustained"] == false);
  CHECK(r.probes[2]["sustained"] == true);
  CHECK(r.probes[2]["attempt"] == 1);

  // Without it (confirm_fails = 0), that one stall ends the doubling at 2.
  Scripted q{3.0, {1}};
  e2e::ThroughputOptions once;
  once.confirm_fails = 0;
  const auto s = e2e::search_max_scale(10.0, std::ref(q), once);
  CHECK(s.rate_scale < 2.0);
}

TEST_CASE("E2e.ScaleSearch.BelowOneHalvesAndNothingSustainedIsZero") {
  Scripted p{0.3, {}};
  const auto r = e2e::search_max_scale(10.0, std::ref(p), {});
  CHECK(r.rate_scale >= 0.25);
  CHECK(r.rate_scale <= 0.3);
  Scripted never{0.0, {}};
  e2e::ThroughputOptions o;
  o.min_scale = 0.25;
  const auto z = e2e::search_max_scale(10.0, std::ref(never), o);
  CHECK(z.rate_scale == 0);
  CHECK(z.offered_rps == 0);
}

TEST_CASE("E2e.ScaleSearch.RepeatedSearchesReportTheMedian") {
  // Three searches of a policy that sustains x3; the first run of the second search stalls
  // (its x1 probe fails twice: that search finds x0.92). Median: the x2.83 of the others.
  Scripted p{3.0, {9, 10}};
  e2e::ThroughputOptions o;
  o.searches = 3;
  const auto r = e2e::search_max_scale_repeated(10.0, std::ref(p), o);
  REQUIRE(r.searches.size() == 3);
  CHECK(r.searches[0].get<double>() == doctest::Approx(std::sqrt(8.0)));
  CHECK(r.searches[1].get<double>() < 1.0);
  CHECK(r.searches[2].get<double>() == doctest::Approx(std::sqrt(8.0)));
  CHECK(r.rate_scale == doctest::Approx(std::sqrt(8.0)));
  CHECK(r.probes.size() == static_cast<std::size_t>(p.runs));
  CHECK(r.probes[0]["search"].get<std::size_t>() == 0);
  CHECK(r.probes[r.probes.size() - 1]["search"].get<std::size_t>() == 2);
  // One search: the plain search, no list.
  Scripted q{3.0, {}};
  o.searches = 1;
  CHECK(e2e::search_max_scale_repeated(10.0, std::ref(q), o).searches.empty());
}
