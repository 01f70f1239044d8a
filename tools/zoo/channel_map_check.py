"""Experiment (docs/zoo.md, "Channel maps for CNN stitches"): the transformer's repair, a
least-squares map onto the base's stream at each cut, as a 1x1 channel map for a CNN task of the
committed zoo, re-scoring the manifest's sampled stitches without retraining.

  .venv/bin/python tools/zoo/channel_map_check.py TASK [MODES]

MODES (comma separated, default bn,cmap,bn+cmap): bn = the committed bn_affine repair, cmap =
full C x C channel map, cdiag = per-channel map; "+" combines. Prints the stitch-check summary
per mode (map multiply-adds counted in the cost) and writes out/channel-map-TASK.json.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnxio  # noqa: E402
import stitch  # noqa: E402
from committed import CommittedTask  # noqa: E402

ct = CommittedTask(sys.argv[1])
task = ct.manifest["task"]
modes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["bn", "cmap", "bn+cmap"]
m = ct.manifest
xte, yte, xcal, B, order, vacc, vcost = ct.xte, ct.yte, ct.xcal, ct.B, ct.order, ct.vacc, ct.vcost
blocks = {}
for v in order:
    bl = []
    for i, e in enumerate(ct.blocks(v)):
        r = m["blocks"][i].get("repair")
        if r and r["kind"] == "bn_affine":
            e = onnxio.with_repair_inputs(e, r["tensor"], r["channels"])
        bl.append(e)
    blocks[v] = bl
rep_ch = [(b.get("repair") or {}).get("channels") for b in m["blocks"]]
R = stitch.BlockRunner(blocks, rep_ch, xte, xcal, "base", "bn_affine")

def stream(v, i0, i1, h):
    for t in range(i0, i1 + 1):
        h, _ = R._run(v, t, h)
    return h
base_cal = []
h = xcal
for i in range(B):
    h, _ = R._run("base", i, h); base_cal.append(h)

def to2(h): return np.moveaxis(h, 1, -1).reshape(-1, h.shape[1]) if h.ndim == 4 else h.reshape(-1, h.shape[-1])
def fit(kind, ridge=1e-3):
    ad = {}
    for v in order:
        if v == "base": continue
        for i in range(B - 1):
            xs = [to2(stream(v, j, i, xcal if j == 0 else base_cal[j - 1])) for j in range(i + 1)]
            X = np.concatenate(xs).astype(np.float64)
            Y = np.concatenate([to2(base_cal[i])] * (i + 1)).astype(np.float64)
            if kind == "diag":
                mx, sx, my, sy = X.mean(0), X.std(0), Y.mean(0), Y.std(0)
                # per-channel least squares slope
                cov = ((X - mx) * (Y - my)).mean(0)
                a = cov / (sx ** 2 + 1e-8)
                ad[(i, v)] = ("diag", a.astype(np.float32), (my - a * mx).astype(np.float32))
            else:
                Xa = np.concatenate([X, np.ones((len(X), 1))], 1)
                G = Xa.T @ Xa
                lam = ridge * np.trace(G) / G.shape[0]
                sol = np.linalg.solve(G + lam * np.eye(G.shape[0]), Xa.T @ Y)
                ad[(i, v)] = ("full", sol[:-1].astype(np.float32), sol[-1].astype(np.float32))
    return ad

def apply(a, h):
    kind, W, b = a
    if h.ndim == 4:
        if kind == "diag":
            return (h * W.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)).astype(np.float32)
        return (np.einsum("nchw,cd->ndhw", h, W) + b.reshape(1, -1, 1, 1)).astype(np.float32)
    return (h * W + b if kind == "diag" else h @ W + b).astype(np.float32)

def run(stitches, bn, ad):
    out = []
    cache = {}
    for s in stitches:
        ht, hc = xte, xcal
        for i in range(B):
            v = s[i]
            key = (s[:i + 1])
            if key in cache:
                ht, hc = cache[key]; continue
            a = c = None
            sw = i > 0 and s[i] != s[i - 1]
            if sw and ad is not None and s[i - 1] != "base":
                A = ad[(i - 1, s[i - 1])]
                ht, hc = apply(A, ht), apply(A, hc)
            if sw and bn and rep_ch[i]:
                _, raw = R._run(v, i, hc)
                a, c = stitch.bn_affine(stitch.channel_stats(raw), R.nat[v][i])
            ht2, _ = R._run(v, i, ht, a, c)
            hc2 = R._run(v, i, hc, a, c)[0] if i < B - 1 else None
            ht, hc = ht2, hc2
            cache[key] = (ht, hc)
        out.append(round(100.0 * float(np.mean(ht.argmax(1) == yte)), 2))
        if len(cache) > 4000: cache.clear()
    return out

sample = ct.sample
shapes = [c["shape"] for c in m["cut_points"]]
def cost(s, ad):
    c = ct.macs(s)
    if ad is not None:
        for i in range(1, B):
            if s[i] != s[i - 1] and s[i - 1] != "base":
                sh = shapes[i - 1]
                if len(sh) == 4:
                    C, sp = sh[1], int(np.prod(sh[2:]))
                    c += (C * C if ad[(i - 1, s[i - 1])][0] == "full" else C) * sp
                else:
                    d = sh[-1]; c += sh[1] * d * d
    return c
res = {}
for mode in modes:
    bn = "bn" in mode
    ad = fit("diag") if "cdiag" in mode else fit("full") if "cmap" in mode else None
    accs = run(sample, bn, ad)
    summ = stitch.summarize(sample, accs, vacc, vcost, [cost(s, ad) for s in sample])
    nmiss = {}
    for s, a in zip(sample, accs):
        w = min(vacc[v] for v in set(s))
        if a < w - 1e-9:
            nmiss[round(w - a, 2)] = nmiss.get(round(w - a, 2), 0) + 1
    print(task, mode, json.dumps(summ), "misses by pp:", sorted(nmiss.items())[:12], flush=True)
    res[mode] = dict(summ, accs=accs)
os.makedirs("out", exist_ok=True)
json.dump({"sample": sample, "res": res}, open(f"out/channel-map-{task}.json", "w"))
