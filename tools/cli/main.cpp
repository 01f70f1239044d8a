// sparseloom: the command line, one subcommand per step of the workflow
//   inspect -> zoo (-> split) -> profile -> estimate -> plan -> run -> bench -> report
// Tables for people by default, --json for scripts; exit codes in common.hpp / docs/cli.md.
#include <cstdio>
#include <cstdlib>

#include "common.hpp"
#include "sparseloom/version.hpp"

#ifdef SPARSELOOM_CLI_HAS_CPU
#include <unistd.h>
#endif

int main(int argc, char** argv) {
  using namespace sparseloom::cli;
#ifdef SPARSELOOM_CLI_HAS_CPU
  // libgomp reads its spin policy when it loads: oneDNN's idle OpenMP threads would otherwise
  // spin on the cores our pools need (as sparseloom-bench-e2e does).
  if (!std::getenv("GOMP_SPINCOUNT") && !std::getenv("OMP_WAIT_POLICY")) {
    setenv("GOMP_SPINCOUNT", "30000", 1);
    execv("/proc/self/exe", argv);
  }
#endif
  CLI::App app{"SparseLoom: multi-DNN inference of stitched sparse models.\n"
               "Exit codes: 0 ok, 1 input error, 2 usage, 3 infeasible, 4 device error, 5 internal error,\n"
               "6 external tool failed.",
               "sparseloom"};
  app.set_version_flag("--version", SPARSELOOM_VERSION_STRING);
  Globals g;
  app.add_flag("--json", g.json, "machine-readable JSON on stdout (every subcommand)");
  app.add_flag("-q,--quiet", g.quiet, "no progress output");
  app.require_subcommand(1);
  app.fallthrough();  // --json / -q are accepted after the subcommand too
  add_inspect(app, g);
  add_zoo(app, g);
  add_split(app, g);
  add_profile(app, g);
  add_estimate(app, g);
  add_plan(app, g);
  add_run(app, g);
  add_bench(app, g);
  add_report(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;  // --help / --version exit 0; every other parse failure is usage
  }
  try {
    return g.action ? g.action() : kUsage;
  } catch (const sparseloom::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code_of(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return kInternal;
  }
}
