// sparseloom bench [NAME] [-- ARGS...]: runs one of the benchmark binaries (built with
// -DSPARSELOOM_BUILD_BENCH=ON: -O3 -march=native) with ARGS; without NAME, lists those found.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "common.hpp"

namespace sparseloom::cli {
namespace {

const std::vector<std::string> kBenches{"kernels", "models", "optimizer", "dispatch", "estimator", "e2e"};

// Build tree: <build>/tools/cli/sparseloom next to <build>/bench/<name>/sparseloom-bench-<name>;
// SPARSELOOM_BENCH_DIR or PATH otherwise.
std::filesystem::path find_bench(const std::string& name) {
  const std::string exe = "sparseloom-bench-" + name;
  std::vector<std::filesystem::path> dirs;
  if (const char* d = std::getenv("SPARSELOOM_BENCH_DIR"); d && *d) dirs.emplace_back(d);
  dirs.push_back(self_dir() / ".." / ".." / "bench" / name);
  dirs.push_back(self_dir());
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (std::size_t s = 0, e; s <= p.size(); s = e + 1) {
      e = p.find(':', s);
      if (e == std::string::npos) e = p.size();
      if (e > s) dirs.emplace_back(p.substr(s, e - s));
    }
  }
  for (const auto& d : dirs)
    if (std::filesystem::exists(d / exe)) return std::filesystem::weakly_canonical(d / exe);
  return {};
}

int run_tool(const std::filesystem::path& exe, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string e = exe.string();
  argv.push_back(e.data());
  std::vector<std::string> copy = args;
  for (auto& s : copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  check(pid >= 0, ErrorCode::device, e, "cannot start a process");
  if (pid == 0) {
    execv(e.c_str(), argv.data());
    std::_Exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

void add_bench(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("bench", "Run a benchmark binary (kernels, models, optimizer, dispatch, estimator, e2e); no name: list them");
  struct Args {
    std::string name;
    std::vector<std::string> args;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("name", a->name, "which benchmark")->check(CLI::IsMember(kBenches));
  sub->add_option("args", a->args, "arguments passed to it (put them after --)");
  sub->callback([a, &g] {
    g.action = [a, &g] {
      if (a->name.empty()) {
        json::Json j = json::Json::array();
        std::vector<std::vector<std::string>> rows;
        for (const auto& n : kBenches) {
          const auto p = find_bench(n);
          j.push_back({{"name", n}, {"path", p.empty() ? json::Json() : json::Json(p.string())}});
          rows.push_back({n, p.empty() ? "(not built: configure with -DSPARSELOOM_BUILD_BENCH=ON)" : p.string()});
        }
        if (g.json) fmt::print("{}\n", j.dump(1));
        else print_table({"benchmark", "binary"}, rows);
        return kOk;
      }
      const auto exe = find_bench(a->name);
      check(!exe.empty(), ErrorCode::invalid_argument, "sparseloom-bench-" + a->name,
            "not found next to sparseloom, in SPARSELOOM_BENCH_DIR or on PATH (configure with -DSPARSELOOM_BUILD_BENCH=ON)");
      const int rc = run_tool(exe, a->args);
      if (rc != 0) fmt::print(stderr, "error: {} exited with {}\n", exe.string(), rc);
      return rc == 0 ? kOk : kToolFailed;
    };
  });
}

// report.cpp runs the python script the same way.
int run_external(const std::filesystem::path& exe, const std::vector<std::string>& args) { return run_tool(exe, args); }

}  // namespace sparseloom::cli
