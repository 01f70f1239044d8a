#!/usr/bin/env python3
"""sparseloom report: results JSON -> plots (PNG + SVG) and a markdown page embedding them.

Reads any of the JSON files SparseLoom writes and plots what each holds:
  - e2e results (`sparseloom run -o`, sparseloom-bench-e2e --json): SLO violations per policy
    and task, resident memory over time per policy, and the budget sweep when present
    ("budget_sweep": [{"budget_bytes", "policy", "slo_violation_rate"}, ...]);
  - Pareto fronts (`sparseloom estimate --json`): latency vs accuracy per task and processor;
  - kernel results (sparseloom-bench-kernels --json): speedup over dense vs sparsity per format
    and device.
Usage: report.py RESULTS.json [MORE.json ...] -o OUTDIR [--title T]
Exit codes: 0 ok, 1 unreadable or unrecognised input, 6 matplotlib missing.
"""
import argparse
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {path}: {e}")


def save(fig, outdir, stem, made):
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(outdir, f"{stem}.{ext}"), dpi=130 if ext == "png" else None, bbox_inches="tight")
    made.append(stem)


def e2e_plots(doc, plt, outdir, tag, made, notes):
    pols = doc.get("policies") or []
    names = [p.get("policy", f"policy {i}") for i, p in enumerate(pols)]
    # SLO violations per policy: overall and per task, side by side.
    tasks = [t.get("name", str(i)) for i, t in enumerate(pols[0].get("tasks", []))] if pols else []
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 3.6))
    groups = ["overall"] + tasks
    width = 0.8 / max(1, len(groups))
    top = 0.0
    for gi, g in enumerate(groups):
        vals = []
        for p in pols:
            if g == "overall":
                vals.append(100 * p.get("slo_violation_rate", p.get("overall", {}).get("slo_violation_rate", 0)))
            else:
                t = next((t for t in p.get("tasks", []) if t.get("name") == g), {})
                vals.append(100 * t.get("slo_violation_rate", 0))
        ax.bar([i + gi * width for i in range(len(pols))], vals, width, label=g)
        top = max([top] + vals)
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(pols))])
    ax.set_xticklabels(names, rotation=25, ha="right")
    ax.set_ylim(0, max(1.0, top * 1.15))  # 0 % violations must still read as a real axis
    ax.set_ylabel("SLO violations (%)")
    ax.set_title(f"SLO violations per policy ({doc.get('scenario', '')})")
    ax.legend(fontsize=8)
    save(fig, outdir, f"{tag}-slo-violations", made)
    plt.close(fig)
    # Resident memory over time per policy (the engine's memory timeline).
    fig, ax = plt.subplots(figsize=(7, 3.6))
    any_line = False
    for name, p in zip(names, pols):
        tl = p.get("memory", {}).get("timeline") or []
        if tl:
            xs = [x[0] / 1000 for x in tl]
            ys = [x[1] / 1e6 for x in tl]
            if len(xs) == 1:  # a single sample: hold it to the end of the run
                xs.append(xs[0] + p.get("load_seconds", doc.get("duration_s", 1)))
                ys.append(ys[0])
            ax.step(xs, ys, where="post", label=name)
            any_line = True
    if any_line:
        budget = max((p.get("memory", {}).get("budget_bytes", 0) or 0) for p in pols)
        if budget:
            ax.axhline(budget / 1e6, color="k", ls="--", lw=1, label="budget")
        ax.set_xlabel("time since engine start (s)")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("resident weights (MB)")
        ax.set_title("Memory over time per policy")
        ax.legend(fontsize=8)
        save(fig, outdir, f"{tag}-memory", made)
    plt.close(fig)
    # SLO violation rate over time per policy (the engine's slo_timeline buckets).
    fig, ax = plt.subplots(figsize=(7, 3.6))
    any_line = False
    for name, p in zip(names, pols):
        tl = p.get("slo_timeline") or {}
        acc, vio = tl.get("accounted") or [], tl.get("violations") or []
        if acc:
            w = tl.get("bucket_ms", 250) / 1000
            pts = [(i * w, 100 * v / a) for i, (a, v) in enumerate(zip(acc, vio)) if a]
            ax.plot([x for x, _ in pts], [y for _, y in pts], drawstyle="steps-post", label=name)
            any_line = True
    if any_line:
        ax.set_xlabel("time since engine start (s)")
        ax.set_ylabel("SLO violations (%)")
        ax.set_ylim(bottom=0)
        ax.set_title("SLO violations over time per policy")
        ax.legend(fontsize=8)
        save(fig, outdir, f"{tag}-slo-over-time", made)
    else:
        notes.append(f"{tag}: no slo_timeline in this file (written by engines since 2026-11-26).")
    plt.close(fig)
    sweep_plots(doc, plt, outdir, tag, made, notes)


def sweep_plots(doc, plt, outdir, tag, made, notes):
    # The budget sweep: `budget_sweep` records, or a --budget-sweep file (records + budget_fractions).
    sweep = doc.get("budget_sweep") or (doc.get("records") if "budget_fractions" in doc else None)
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for pol in sorted({r["policy"] for r in sweep}):
            # Budgets an engine refused to start under have no rate: they are left out of the line.
            # Budget 0 is the unlimited reference run; it has no place on a budget axis.
            rs = sorted((r for r in sweep if r["policy"] == pol and r.get("slo_violation_rate") is not None
                         and r.get("budget_bytes")), key=lambda r: r["budget_bytes"])
            ax.plot([r["budget_bytes"] / 1e6 for r in rs], [100 * r["slo_violation_rate"] for r in rs], marker="o", label=pol)
        ax.set_xlabel("memory budget (MB)")
        ax.set_ylabel("SLO violations (%)")
        ax.set_title("Budget sweep")
        ax.legend(fontsize=8)
        save(fig, outdir, f"{tag}-budget-sweep", made)
        plt.close(fig)
    else:
        notes.append(f"{tag}: no budget sweep in this file (sparseloom-bench-e2e --budget-sweep writes one).")


def pareto_plots(doc, plt, outdir, tag, made):
    for t in doc["tasks"]:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for f in t["fronts"]:
            pts = f["points"]
            ax.step([p["latency_ms"] for p in pts], [p["accuracy_pct"] for p in pts], where="post", marker=".", label=f"{f['processor']} (stitched)")
            plain = [p for p in pts if p["plain"]]
            ax.scatter([p["latency_ms"] for p in plain], [p["accuracy_pct"] for p in plain], marker="s", s=30, zorder=3)
        ax.set_xlabel("predicted latency (ms)")
        ax.set_ylabel("predicted accuracy (%)")
        ax.set_title(f"Pareto front of stitched variants: {t['task']}")
        ax.legend(fontsize=8)
        save(fig, outdir, f"{tag}-pareto-{t['task']}", made)
        plt.close(fig)


def kernel_plots(doc, plt, outdir, tag, made):
    recs = [r for r in doc["records"] if "sparsity" in r and "speedup_vs_dense" in r]
    devices = sorted({r.get("device", "?") for r in recs})
    for di, dev in enumerate(devices):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for fmt in sorted({r.get("format", "?") for r in recs if r.get("device", "?") == dev}):
            by = {}
            for r in recs:
                if r.get("device", "?") == dev and r.get("format", "?") == fmt:
                    by.setdefault(r["sparsity"], []).append(r["speedup_vs_dense"])
            xs = sorted(by)
            med = [sorted(by[x])[len(by[x]) // 2] for x in xs]
            ax.plot([100 * x for x in xs], med, marker="o", label=fmt)
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("speedup vs dense (median over layers)")
        ax.set_title(f"Kernel speedup vs sparsity\n{dev[:70]}", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, outdir, f"{tag}-kernels-{di}", made)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("-o", "--outdir", default="report")
    ap.add_argument("--title", default="SparseLoom results")
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "sparseloom"  # reproducible SVGs
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: matplotlib is not installed (scripts/setup installs python3-matplotlib)", file=sys.stderr)
        return 6
    os.makedirs(a.outdir, exist_ok=True)
    made, notes, sections = [], [], []
    for path in a.inputs:
        doc = load(path)
        tag = os.path.splitext(os.path.basename(path))[0]
        before = len(made)
        if isinstance(doc, dict) and "policies" in doc:
            e2e_plots(doc, plt, a.outdir, tag, made, notes)
            kind = "end-to-end run"
        elif isinstance(doc, dict) and "budget_fractions" in doc:
            sweep_plots(doc, plt, a.outdir, tag, made, notes)
            kind = "memory budget sweep"
        elif isinstance(doc, dict) and doc.get("tasks") and "fronts" in doc["tasks"][0]:
            pareto_plots(doc, plt, a.outdir, tag, made)
            kind = "estimator Pareto fronts"
        elif isinstance(doc, dict) and doc.get("records") and "speedup_vs_dense" in doc["records"][0]:
            kernel_plots(doc, plt, a.outdir, tag, made)
            kind = "kernel benchmark"
        else:
            print(f"error: {path}: not a results file this report knows (e2e, estimate or kernels JSON)", file=sys.stderr)
            return 1
        machine = doc.get("machine", {}) if isinstance(doc, dict) else {}
        sections.append((path, kind, machine.get("cpu", ""), made[before:]))
    md = [f"# {a.title}", ""]
    for path, kind, cpu, stems in sections:
        md += [f"## {os.path.basename(path)} ({kind})", ""]
        if cpu:
            md += [f"Machine: {cpu}.", ""]
        for s in stems:
            md += [f"![{s}]({s}.png)", f"([SVG]({s}.svg))", ""]
    for n in notes:
        md += [f"- {n}"]
    with open(os.path.join(a.outdir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(json.dumps({"outdir": a.outdir, "page": os.path.join(a.outdir, "report.md"), "plots": made}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
