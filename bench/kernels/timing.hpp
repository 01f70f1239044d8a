#pragma once
// Interleaved timing: every repetition runs each contender once, so slow drifts of a shared
// machine hit all of them alike; each contender reports median, min and max.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <sys/resource.h>
#include <vector>

namespace sparseloom::bench {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
};

inline Timing summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Timing t;
  if (v.empty()) return t;
  t.min_ms = v.front();
  t.max_ms = v.back();
  const std::size_t n = v.size();
  t.median_ms = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return t;
}

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Times contenders in alternating blocks: each block runs one contender `reps / blocks`
// times back to back after one untimed warm-up run (so thread pools are warm, as between the
// consecutive layers of a network), and blocks of all contenders alternate, so slow drifts
// of a shared machine hit them alike. Each contender reports median, min and max.
inline std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fns, int reps, int blocks = 3) {
  std::vector<std::vector<double>> t(fns.size());
  blocks = std::max(1, std::min(blocks, reps));
  for (int b = 0; b < blocks; ++b)
    for (std::size_t i = 0; i < fns.size(); ++i) {
      fns[i]();
      const int n = reps * (b + 1) / blocks - reps * b / blocks;
      for (int r = 0; r < n; ++r) {
        const double t0 = now_ms();
        fns[i]();
        t[i].push_back(now_ms() - t0);
      }
    }
  std::vector<Timing> out;
  for (auto& v : t) out.push_back(summarize(v));
  return out;
}

// Busy CPU time of the whole machine and of this process, to estimate foreign load.
struct LoadProbe {
  double machine_busy_s = 0, self_s = 0, wall_ms = 0;
  static LoadProbe now() {
    LoadProbe p;
    std::ifstream in("/proc/stat");
    std::string cpu;
    long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    in >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal;
    p.machine_busy_s = static_cast<double>(user + nice + sys + irq + softirq) / 100.0;  // USER_HZ
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    p.self_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    p.wall_ms = now_ms();
    return p;
  }
  // Cores used by other processes between `a` and `b`.
  static double foreign_cores(const LoadProbe& a, const LoadProbe& b) {
    const double wall_s = (b.wall_ms - a.wall_ms) / 1000.0;
    if (wall_s <= 0.05) return 0;
    return std::max(0.0, ((b.machine_busy_s - a.machine_busy_s) - (b.self_s - a.self_s)) / wall_s);
  }
};

// Waits (up to max_wait_ms) for a 100 ms window in which other processes use less than
// `cores` of CPU; returns the foreign load of the last window.
inline double wait_for_quiet(double cores, double max_wait_ms) {
  const double t0 = now_ms();
  double load = 0;
  do {
    const auto a = LoadProbe::now();
    const double until = now_ms() + 100;
    while (now_ms() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    load = LoadProbe::foreign_cores(a, LoadProbe::now());
  } while (load > cores && now_ms() - t0 < max_wait_ms);
  return load;
}

}  // namespace sparseloom::bench
