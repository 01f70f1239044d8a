#pragma once
// Progress of long work (profiling, runs, zoo assembly): on a terminal a bar redrawn in place
// with rate and ETA; otherwise (logs, CI, pipes) a plain line every few seconds and at the end.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace sparseloom::cli {

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  // total: units of work; unit: what they are ("blocks", "s"); quiet: draw nothing (--json).
  Progress(std::string label, double total, std::string unit, bool quiet = false, std::FILE* out = stderr)
      : label_(std::move(label)), unit_(std::move(unit)), total_(std::max(total, 1e-9)), out_(out),
        tty_(!quiet && isatty(fileno(out))), quiet_(quiet), start_(Clock::now()), last_(start_) {}
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() { finish(); }

  // Work done so far (absolute); redraws at most every 100 ms on a TTY, every 5 s otherwise.
  void update(double done, const std::string& note = "") {
    done_ = std::min(done, total_);
    note_ = note;
    if (done_ >= total_ && !tty_) return;  // finish() prints the last line
    const auto now = Clock::now();
    if (now - last_ < (tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000)) && done_ < total_) return;
    last_ = now;
    draw(false);
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    draw(true);
  }

  double elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  void draw(bool final) {
    if (quiet_) return;
    const double el = elapsed_s(), rate = el > 0 ? done_ / el : 0;
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    char stats[160];
    std::snprintf(stats, sizeof stats, "%.4g/%.4g %s  %.2f %s/s  %s %.0f s", done_, total_, unit_.c_str(), rate, unit_.c_str(),
                  final ? "took" : "ETA", final ? el : eta);
    if (tty_) {
      constexpr int kWidth = 28;
      const int fill = static_cast<int>(kWidth * done_ / total_);
      std::string bar(static_cast<std::size_t>(fill), '#');
      bar.resize(kWidth, '.');
      std::fprintf(out_, "\r\033[K%s [%s] %s%s%s", label_.c_str(), bar.c_str(), stats, note_.empty() ? "" : "  ", note_.c_str());
      if (final) std::fputc('\n', out_);
    } else {
      std::fprintf(out_, "%s: %s%s%s\n", label_.c_str(), stats, note_.empty() ? "" : "  ", note_.c_str());
    }
    std::fflush(out_);
  }

  std::string label_, unit_, note_;
  double total_, done_ = 0;
  std::FILE* out_;
  bool tty_, quiet_, finished_ = false;
  Clock::time_point start_, last_;
};

}  // namespace sparseloom::cli
