// sparseloom report RESULTS.json... [-o DIR]: plots (PNG + SVG) and a markdown page embedding
// them, drawn by tools/report/report.py with matplotlib (the project's venv when present).
#include <cstdlib>

#include "common.hpp"

namespace sparseloom::cli {

int run_external(const std::filesystem::path& exe, const std::vector<std::string>& args);  // bench.cpp

namespace {

// The script: SPARSELOOM_REPORT_SCRIPT, the installed copy, or the source tree's.
std::filesystem::path find_script() {
  if (const char* s = std::getenv("SPARSELOOM_REPORT_SCRIPT"); s && *s) return s;
  for (const auto& p : {self_dir() / ".." / "share" / "sparseloom" / "report" / "report.py",
                        std::filesystem::path(SPARSELOOM_CLI_SOURCE_DIR) / "tools" / "report" / "report.py"})
    if (std::filesystem::exists(p)) return p;
  return {};
}

// The interpreter: SPARSELOOM_PYTHON, the source tree's venv (it has matplotlib), else python3.
std::filesystem::path find_python() {
  if (const char* s = std::getenv("SPARSELOOM_PYTHON"); s && *s) return s;
  const auto venv = std::filesystem::path(SPARSELOOM_CLI_SOURCE_DIR) / ".venv" / "bin" / "python";
  if (std::filesystem::exists(venv)) return venv;
  return "/usr/bin/python3";
}

}  // namespace

void add_report(CLI::App& app, Globals& g) {
  auto* sub = app.add_subcommand("report", "Plots (PNG + SVG) and a markdown page from results JSON (run -o, estimate --json, bench)");
  struct Args {
    std::vector<std::string> inputs;
    std::string outdir = "report", title = "SparseLoom results";
  };
  auto a = std::make_shared<Args>();
  sub->add_option("results", a->inputs, "RESULTS.json files: e2e runs, estimate --json output, kernel benchmarks")->required()->check(CLI::ExistingFile);
  sub->add_option("-o,--output", a->outdir, "directory for the plots and report.md");
  sub->add_option("--title", a->title, "title of the markdown page");
  sub->callback([a, &g] {
    g.action = [a, &g] {
      const auto script = find_script();
      check(!script.empty(), ErrorCode::io, "report.py", "not found (set SPARSELOOM_REPORT_SCRIPT)");
      std::vector<std::string> args{script.string()};
      for (const auto& i : a->inputs) args.push_back(i);
      args.insert(args.end(), {"-o", a->outdir, "--title", a->title});
      const int rc = run_external(find_python(), args);
      if (rc == 1) return kInputError;
      if (rc != 0) return kToolFailed;
      if (!g.json) fmt::print(stderr, "report written to {}/report.md\n", a->outdir);
      return kOk;
    };
  });
}

}  // namespace sparseloom::cli
