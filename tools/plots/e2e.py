#!/usr/bin/env python3
"""Plots sparseloom-bench-e2e results: SLO violation rate and throughput (max sustainable
rate at >= 99 % attainment) per policy, one group of bars per scenario; prints the markdown
table of docs/results.md (ratios against the best baseline of the same run).

usage: tools/plots/e2e.py OUT.png RESULT.json [RESULT.json ...]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out, paths = argv[1], argv[2:]
    runs = []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        runs.append((d.get("scenario", p), d))
    policies = [p["policy"] for p in runs[0][1]["policies"]]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(runs) * len(policies) / 4), 7), sharex=True)
    width = 0.8 / len(policies)
    # Lower panel: throughput at saturation where searched, else peak memory.
    searched = any(isinstance(r.get("throughput_rps"), (int, float)) for _, d in runs for r in d["policies"])
    for k, pol in enumerate(policies):
        viol, low, each = [], [], []
        for _, d in runs:
            row = next((r for r in d["policies"] if r["policy"] == pol), None)
            viol.append(100 * row["slo_violation_rate"] if row else float("nan"))
            t = (row.get("throughput_rps") if searched else row.get("peak_memory_bytes", 0) / 1e6) if row else None
            low.append(t if isinstance(t, (int, float)) else float("nan"))
            each.append([100 * x["slo_violation_rate"] for x in row.get("runs", [])] if row else [])
        xs = [i + (k - (len(policies) - 1) / 2) * width for i in range(len(runs))]
        axes[0].bar(xs, viol, width, label=pol)
        for x, e in zip(xs, each):  # --repeat: each run's rate over its mean
            axes[0].plot([x] * len(e), e, "k.", markersize=4)
        axes[1].bar(xs, low, width, label=pol)
    axes[0].set_ylabel("SLO violation rate (%)" + (" (bars: mean, dots: runs)" if any(
        r.get("runs") for _, d in runs for r in d["policies"]) else ""))
    axes[1].set_ylabel("throughput at >= 99 % attainment (rps)" if searched else "peak resident memory (MB)")
    axes[1].set_xticks(range(len(runs)))
    axes[1].set_xticklabels([n for n, _ in runs], rotation=15, ha="right")
    machine = runs[0][1].get("machine", {})
    fig.suptitle(f"sparseloom-bench-e2e on {machine.get('cpu', '?')} ({machine.get('hardware_threads', '?')} hw threads); "
                 "processors share the cores", fontsize=9)
    axes[0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)
    print_table(runs)


BASELINES = ("Fixed", "Band-SEL", "Band-LSF", "INFaaS-like")


def print_table(runs):
    print("| scenario | policy | SLO violations | vs best baseline | served/s | p99 ms | throughput rps (x scale) "
          "| vs best baseline | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, d in runs:
        rows = d["policies"]
        base = [r for r in rows if r["policy"] in BASELINES]
        best_v = min(r["slo_violation_rate"] for r in base)
        tputs = [r.get("throughput_rps") for r in base if isinstance(r.get("throughput_rps"), (int, float))]
        best_t = max(tputs) if tputs else None
        for i, r in enumerate(rows):
            v = r["slo_violation_rate"]
            rv = f"{v / best_v:.2f}x" if best_v > 0 else ("equal" if v == 0 else f"+{100 * v:.2f} pp")
            t = r.get("throughput_rps")
            ts = f"{t:.{0 if t >= 100 else 1}f} (x{r.get('max_rate_scale', 0):.2f})" if isinstance(t, (int, float)) else "-"
            rt = f"{t / best_t:.2f}x" if isinstance(t, (int, float)) and best_t else "-"
            print(f"| {name if i == 0 else ''} | {r['policy']} | {100 * v:.2f} % | {rv} | {r['served_rps']:.0f} "
                  f"| {r['p99_ms']:.2f} | {ts} | {rt} | {r['peak_memory_bytes'] / 1e6:.2f} |")


if __name__ == "__main__":
    main(sys.argv)
