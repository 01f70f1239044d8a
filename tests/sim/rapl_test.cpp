// RAPL energy through powercap (sim/rapl.hpp), on a fake sysfs tree in a temporary directory:
// package domains only, wrap-around, bounded and checked reads; an absent tree is "not exposed".
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "sparseloom/sim/rapl.hpp"

using namespace sparseloom;
namespace fs = std::filesystem;

namespace {

struct FakeSysfs {
  fs::path root = fs::temp_directory_path() / ("sparseloom-rapl-" + std::to_string(::getpid()));
  FakeSysfs() {
    fs::remove_all(root);
    domain("intel-rapl:0", "package-0", 1000, 262143328850);
    domain("intel-rapl:1", "package-1", 5000, 1000000);
    domain("intel-rapl:0:0", "core", 700, 262143328850);  // inside package 0: not added again
    fs::create_directories(root / "intel-rapl");           // the control type, no counter
  }
  ~FakeSysfs() { fs::remove_all(root); }
  void write(const fs::path& p, const std::string& s) const { std::ofstream(p) << s; }
  void domain(const std::string& dir, const std::string& name, std::uint64_t uj, std::uint64_t max) const {
    fs::create_directories(root / dir);
    write(root / dir / "name", name + "\n");
    write(root / dir / "energy_uj", std::to_string(uj) + "\n");
    write(root / dir / "max_energy_range_uj", std::to_string(max) + "\n");
  }
};

}  // namespace

TEST_CASE("Rapl.ReadsPackagesAndHandlesWrapAround") {
  FakeSysfs fake;
  const auto ds = sim::find_rapl(fake.root);
  REQUIRE(ds.size() == 2);
  CHECK(ds[0].name == "package-0");
  CHECK(ds[1].name == "package-1");
  CHECK(ds[1].max_range_uj == 1000000);
  const auto a = sim::read_rapl(ds);
  CHECK(a == std::vector<std::uint64_t>{1000, 5000});
  // 2.5 J on package 0; package 1 wrapped: 1000000 - 5000 + 3000 µJ.
  fake.write(fake.root / "intel-rapl:0" / "energy_uj", "2501000\n");
  fake.write(fake.root / "intel-rapl:1" / "energy_uj", "3000\n");
  const auto b = sim::read_rapl(ds);
  CHECK(sim::rapl_joules(ds, a, b) == doctest::Approx(2.5 + 0.998));
  CHECK_THROWS_AS(sim::rapl_joules(ds, a, {1}), Error);
}

TEST_CASE("Rapl.BadFilesAreErrorsNamingThem") {
  FakeSysfs fake;
  const auto ds = sim::find_rapl(fake.root);
  fake.write(fake.root / "intel-rapl:1" / "energy_uj", "12ab\n");
  try {
    sim::read_rapl(ds);
    FAIL("a malformed counter was read");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("intel-rapl:1/energy_uj") != std::string::npos);
  }
  fake.write(fake.root / "intel-rapl:1" / "energy_uj", std::string(5000, '7'));  // long: bounded read, rejected
  CHECK_THROWS_AS(sim::read_rapl(ds), Error);
  fake.write(fake.root / "intel-rapl:1" / "energy_uj", "2000000\n");  // above its range
  CHECK_THROWS_AS(sim::read_rapl(ds), Error);
  fake.write(fake.root / "intel-rapl:0" / "max_energy_range_uj", "0\n");
  CHECK_THROWS_AS(sim::find_rapl(fake.root), Error);
}

TEST_CASE("Rapl.AbsentIsEmpty") {
  CHECK(sim::find_rapl(fs::temp_directory_path() / "sparseloom-no-such-powercap").empty());
}
