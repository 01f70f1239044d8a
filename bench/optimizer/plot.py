#!/usr/bin/env python3
"""Plot sparseloom-bench-optimizer JSON: decision time per policy and problem size (log scale),
and PREDICTED weighted SLO attainment per policy and scenario; print both as markdown tables.

usage: plot.py JSON [--png PNG]
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--png")
    a = ap.parse_args()
    d = json.load(open(a.json))
    m = d.get("machine", {})
    times = [r for r in d["decision_time"] if r["variants"] == 8]
    policies = list(dict.fromkeys(r["policy"] for r in times))
    sizes = sorted({r["tasks"] for r in times})
    print(f"Decision time, median (max) ms, {m.get('cpu', '?')}, {m.get('hardware_threads', '?')} threads, "
          f"load {m.get('load_average_1min', '?')}; 8 variants x 6 blocks x 3 processors\n")
    print("| policy | " + " | ".join(f"{n} tasks" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for p in policies:
        cells = []
        for n in sizes:
            r = next((r for r in times if r["policy"] == p and r["tasks"] == n), None)
            cells.append(f"{r['median_ms']:.3f} ({r['max_ms']:.3f})" if r else "")
        print(f"| {p} | " + " | ".join(cells) + " |")
    rows = d["predicted_attainment"]["rows"]
    names = [p for p in policies if p in rows[0]["policies"]]  # same order (and colours) as above
    print(f"\nPredicted weighted SLO attainment ({d['predicted_attainment']['basis']}), "
          f"mean over {d['predicted_attainment']['instances']} instances\n")
    print("| scenario | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        cells = []
        for n in names:
            x = r["policies"][n]
            star = "*" if x["fraction_of_instances_over_budget"] > 0 else ""
            cells.append(f"{100 * x['predicted_weighted_attainment']:.1f} %{star}")
        print(f"| {r['scenario']} | " + " | ".join(cells) + " |")
    print("\n\\* plan exceeds the memory budget in some instances (the policy does not model one)")
    if not a.png:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    w = 0.8 / len(policies)
    for i, p in enumerate(policies):
        ys = [next((r["median_ms"] for r in times if r["policy"] == p and r["tasks"] == n), 0) for n in sizes]
        ax1.bar([k + i * w for k in range(len(sizes))], ys, w, label=p)
    ax1.set_xticks([k + 0.4 - w / 2 for k in range(len(sizes))], [f"{n} tasks" for n in sizes])
    ax1.set_yscale("log")
    ax1.set_ylabel("plan() median ms")
    ax1.axhline(1, color="grey", ls="--", lw=0.8)
    ax1.axhline(50, color="grey", ls=":", lw=0.8)
    ax1.legend(fontsize=7)
    ax1.set_title("Decision time (8 variants x 6 blocks x 3 processors)")
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        ys = [100 * r["policies"][n]["predicted_weighted_attainment"] for r in rows]
        ax2.bar([k + i * w for k in range(len(rows))], ys, w, label=n)
    ax2.set_xticks([k + 0.4 - w / 2 for k in range(len(rows))], [r["scenario"].split(" (")[0] for r in rows],
                   rotation=20, fontsize=7)
    ax2.set_ylabel("predicted weighted SLO attainment, %")
    ax2.set_title("PREDICTED by the plan model (not measured)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
