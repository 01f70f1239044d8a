#!/usr/bin/env python3
"""Where sparsity pays on each device: the fixed layer set's sparse kernels against the same
device's dense kernel, per format and sparsity (median over layers), for the CPU backend
(`sparseloom-bench-kernels --backend cpu`: vs oneDNN dense) and each OpenCL device
(`sparseloom-bench-opencl` / `--backend opencl`: vs OpenCL dense on that device), plus, for an
OpenCL device on the same machine as the CPU run (PoCL), its sparse time over the CPU backend's
sparse time for the same layer and sparsity. Prints the markdown table; writes the plot.

usage: devices.py OUT.png --cpu CPU.json [--threads 2] OPENCL.json...
"""
import argparse
import json
import statistics
from collections import defaultdict

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FORMATS = ("csr", "bsr4x1")


def records(path):
    with open(path) as f:
        d = json.load(f)
    return d["records"] if isinstance(d, dict) else d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("png")
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("opencl", nargs="+")
    a = ap.parse_args()

    # (device, format, sparsity) -> per-layer ratios
    vs_dense = defaultdict(list)
    cpu_ms = {}
    for r in records(a.cpu):
        if r.get("threads") != a.threads or r["format"] not in FORMATS or r.get("isa_cap"):
            continue
        vs_dense[("CPU backend (%d threads)" % a.threads, r["format"], round(r["sparsity"], 2))].append(r["speedup_vs_dense"])
        cpu_ms[(r["layer"], r["format"], round(r["sparsity"], 2))] = r["ours_ms"]
    vs_cpu = defaultdict(list)
    devices = ["CPU backend (%d threads)" % a.threads]
    for path in a.opencl:
        for r in records(path):
            if r["format"] not in FORMATS:
                continue
            dev = "OpenCL: " + r["device"].split(" (")[0]
            if dev not in devices:
                devices.append(dev)
            key = (r["layer"], r["format"], round(r["sparsity"], 2))
            vs_dense[(dev, r["format"], key[2])].append(r["speedup_vs_dense"])
            if "pthread" in r["device"] and key in cpu_ms:  # PoCL: the same machine's cores
                vs_cpu[(dev, r["format"], key[2])].append(r["ours_ms"] / cpu_ms[key])

    print("| device | format | " + " | ".join(f"{s:.0%}" for s in (0.5, 0.7, 0.9, 0.95)) + " | layers |")
    print("|---|---|---|---|---|---|---|")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for i, dev in enumerate(devices):
        for ax, fmt in zip(axes, FORMATS):
            pts = sorted((s, statistics.median(v)) for (d, f, s), v in vs_dense.items() if d == dev and f == fmt)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=dev[:48])
            cells = []
            for s in (0.5, 0.7, 0.9, 0.95):
                v = vs_dense.get((dev, fmt, s))
                c = vs_cpu.get((dev, fmt, s))
                cell = f"{statistics.median(v):.2f}x" if v else "-"
                if c:
                    cell += f" ({statistics.median(c):.1f}x the CPU backend's time)"
                cells.append(cell)
            n = max((len(v) for (d, f, s), v in vs_dense.items() if d == dev and f == fmt), default=0)
            print(f"| {dev} | {fmt} | " + " | ".join(cells) + f" | {n} |")
    for ax, fmt in zip(axes, FORMATS):
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(fmt)
        ax.set_xlabel("weight sparsity")
        ax.set_yscale("log")
        ax.set_yticks([0.5, 1, 2, 4, 8])
        ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("own dense time / sparse time (median)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Where sparsity pays, per device (each against its own dense kernel)")
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)


if __name__ == "__main__":
    main()
