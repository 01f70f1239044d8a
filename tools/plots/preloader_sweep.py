#!/usr/bin/env python3
"""Plots sparseloom-bench-e2e --budget-sweep results: SLO attainment vs memory budget (% of
load-all's peak) per memory policy, and each policy's peak resident memory at that budget.

usage: tools/plots/preloader_sweep.py SWEEP.json OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        d = json.load(f)
    recs = [r for r in d["records"] if r["budget_fraction"] > 0]
    policies = list(dict.fromkeys(r["policy"] for r in d["records"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for pol in policies:
        rs = sorted((r for r in recs if r["policy"] == pol), key=lambda r: r["budget_fraction"])
        x = [100 * r["budget_fraction"] for r in rs]
        ax1.plot(x, [100 * r["slo_attainment"] for r in rs], marker="o", label=pol)
        ax2.plot(x, [r.get("peak_memory_bytes", 0) / 1e6 for r in rs], marker="o", label=pol)
    ref = d["load_all_peak_bytes"] / 1e6
    ax1.set_xlabel("memory budget (%% of load-all peak, %.2f MB)" % ref)
    ax1.set_ylabel("SLO attainment (%)")
    ax1.set_ylim(0, 102)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot([100 * f for f in d["budget_fractions"]], [f * ref for f in d["budget_fractions"]], "k--", lw=0.8, label="budget")
    ax2.set_xlabel("memory budget (% of load-all peak)")
    ax2.set_ylabel("peak resident memory (MB)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle("%s on %s (%s), %.0f s per run" % (d["scenario"], d["machine"]["cpu"], d["date"], d["duration_s"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=120)


if __name__ == "__main__":
    main(sys.argv)
