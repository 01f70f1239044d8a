#!/usr/bin/env python3
"""Plot scripts/gpu-check runs: median over the layer set of cuBLAS dense host time / ours, per
sparsity and format, one line per run, with the DESIGN.md targets and each run's ceiling: the
median over layers of cuBLAS / the fastest call of that run (any layer, any format), about what
a kernel taking no time would reach, since the driver's launch + completion floor dominates
small calls (the empty-kernel trial at context open runs on a cold GPU and reads higher).
Prints the markdown table for docs/results.md.

usage: gpu.py OUT.png RUN_DIR...   (each RUN_DIR holds a gpu-check summary.json)
"""
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(d):
    s = json.loads((Path(d) / "summary.json").read_text())
    ek = s.get("empty_kernel", {})
    empty = ek.get(s.get("completion", "finish") + "_ms") or ek.get("finish_ms")
    fastest = min((r["opencl_ms"] for r in s["rows"]), default=None)
    cublas = {r["layer"]: r["cublas_ms"] for r in s["rows"] if "cublas_ms" in r}
    ceiling = statistics.median(c / fastest for c in cublas.values()) if fastest and cublas else None
    return s, (empty, fastest), ceiling


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, runs = sys.argv[1], sys.argv[2:]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    rows = []
    for i, d in enumerate(runs):
        s, floor, ceiling = load(d)
        label = Path(d).name
        for ax, fmt in zip(axes, ("csr", "bsr4x1")):
            pts = sorted((m["sparsity"], m["median_vs_cublas"]) for m in s["medians"]
                         if m["format"] == fmt and "median_vs_cublas" in m)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=label)
            if ceiling:
                ax.axhline(ceiling, color=f"C{i}", ls=":", lw=1)
        med = {(m["format"], m["sparsity"]): m for m in s["medians"]}
        g = lambda f, sp, k="median_vs_cublas": med.get((f, sp), {}).get(k)
        rows.append((label, g("csr", 0.9), g("csr", 0.95), g("bsr4x1", 0.9), g("bsr4x1", 0.95),
                     g("csr", 0.9, "median_vs_cublas_kernel_only"), g("csr", 0.95, "median_vs_cublas_kernel_only"),
                     g("dense", 0.0), floor, ceiling, s.get("completion", "")))
    for ax, fmt in zip(axes, ("csr (unstructured)", "bsr 4x1 (blocks)")):
        ax.plot([0.9, 0.95], [1.7, 2.0], "k*", ms=12, label="DESIGN.md targets")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(fmt)
        ax.set_xlabel("weight sparsity")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cuBLAS dense host time / ours (median over layers)")
    axes[0].legend(fontsize=8, title="dotted: cuBLAS / fastest call", title_fontsize=7)
    fig.suptitle("OpenCL on the GPU vs cuBLAS dense (torch), host wall time per call incl. completion")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    f = lambda v, fmt="{:.2f}x": "-" if v is None else fmt.format(v)
    us = lambda v: f(v * 1e3 if v else None, "{:.1f} us")
    print("| run | CSR @90 % | CSR @95 % | 4x1 @90 % | 4x1 @95 % | CSR kernel-only @90 / 95 % | OpenCL dense | "
          "empty-kernel call (cold) / fastest call | ceiling: cuBLAS / fastest call | wait |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {f(r[1])} | {f(r[2])} | {f(r[3])} | {f(r[4])} | {f(r[5])} / {f(r[6])} | {f(r[7])} | "
              f"{us(r[8][0])} / {us(r[8][1])} | {f(r[9])} | {r[10]} |")


if __name__ == "__main__":
    main()
