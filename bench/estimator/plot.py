"""Plots bench/results/estimator.json: per task, predicted vs measured accuracy of the held-out
stitches (repair on), and measured accuracy vs measured latency of the timed stitches against
the plain variants' front, and predicted vs measured latency (those rows only when the run
timed latency: --latency-stitches > 0; the last one only in runs that record the prediction).
Usage: python bench/estimator/plot.py [JSON] [PNG]"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "bench/results/estimator.json"
dst = sys.argv[2] if len(sys.argv) > 2 else "bench/results/estimator.png"
tasks = json.load(open(src))["tasks"]
timed = all("timed_stitch_latency_ms" in t for t in tasks)
lat_pred = timed and all("timed_stitch_predicted_latency_ms" in t for t in tasks)
rows = 1 + timed + lat_pred
fig, ax = plt.subplots(rows, len(tasks), figsize=(4 * len(tasks), 3.75 * rows), squeeze=False)
for i, t in enumerate(tasks):
    a = ax[0][i]
    p, m = t["held_out_predicted_pct"], t["held_out_measured_pct"]
    a.scatter(m, p, s=6, alpha=0.5)
    lo, hi = min(m + p), max(m + p)
    a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    a.set_title(f"{t['task']}: MAE {t['accuracy_mae_pp']:.2f} pp, rho {t['rank_corr']:.3f}\n"
                f"{100 * t['fraction_profiled']:.2f} % of space measured", fontsize=9)
    a.set_xlabel("measured accuracy (%)")
    a.set_ylabel("predicted accuracy (%)")
    if not timed:
        continue
    b = ax[1][i]
    b.scatter(t["timed_stitch_latency_ms"], t["timed_stitch_accuracy_pct"], s=6, alpha=0.5, label="stitched (held out)")
    pl = sorted(zip(t["plain_latency_ms"], t["plain_accuracy_pct"]))
    front, best = [], -1.0
    for lat, acc in pl:
        if acc > best:
            front.append((lat, acc))
            best = acc
    b.scatter([x for x, _ in pl], [y for _, y in pl], c="r", s=14, label="plain variants")
    b.step([x for x, _ in front], [y for _, y in front], "r-", where="post", lw=0.8)
    # Gains confirmed over every measured stitch and by the estimator-guided search (newer runs).
    space = t.get("pareto_measured_space", {}).get("gains", [])
    guided = (t.get("pareto_guided") or {}).get("gain_stitches", [])
    for pts, mk, lab in ((space, "^", "gain, measured sample"), (guided, "*", "gain, estimator-guided")):
        if pts:
            b.scatter([g["latency_ms"] for g in pts], [g["accuracy_pct"] for g in pts], marker=mk, s=22, label=lab)
    title = f"Pareto gains: held-out {t['pareto_gain_count']}"
    if "pareto_gain_count_total" in t:
        title += f", all measured {t['pareto_gain_count_total']}"
    b.set_title(title + " (cpu, 1 thread)", fontsize=9)
    b.set_xlabel("measured latency (ms)")
    b.set_ylabel("accuracy (%)")
    b.legend(fontsize=7)
    if not lat_pred:
        continue
    c = ax[2][i]
    m, p = t["timed_stitch_latency_ms"], t["timed_stitch_predicted_latency_ms"]
    c.scatter(m, p, s=6, alpha=0.5, label="stitched (held out)")
    c.scatter(t["plain_latency_ms"], t["plain_predicted_latency_ms"], c="r", s=14, label="plain variants")
    lo, hi = min(m + p), max(m + p)
    c.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    c.set_title(f"latency MAPE {100 * t['latency_mape']:.1f} % (cpu, 1 thread)", fontsize=9)
    c.set_xlabel("measured latency (ms)")
    c.set_ylabel("predicted latency (ms)")
    c.legend(fontsize=7)
fig.tight_layout()
fig.savefig(dst, dpi=110)
print("wrote", dst)
