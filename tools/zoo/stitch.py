"""Stitch evaluation on per-block ONNX Runtime sessions (batched, graph optimisations off).

A stitch is a tuple of variant names, one per block. Repair (when on), at every block i
whose variant differs from block i-1's:
  bn_affine (CNNs): the block's repair tensor y (first BN-folded Conv output) becomes
    y' = (y - m_st) / (s_st + 1e-5) * s_nat + m_nat per channel, statistics over (N,H,W) of
    the calibration set: nat = the block's own variant run natively, st = under the stitch
    with the earlier repairs applied.
  residual_map (transformers): the cut tensor entering block i is mapped per token,
    x' = x @ W + b, with the adapter of (block i-1, its variant), fitted once per
    (block, variant) onto the base's stream (no adapter when block i-1 is the base's).
"""
import numpy as np

import onnxio


def channel_stats(raw):
    """Per-channel mean and population std over (N, H, W), in float64."""
    ax = (0, 2, 3)
    return raw.mean(axis=ax, dtype=np.float64), raw.std(axis=ax, dtype=np.float64)


def bn_affine(stitched, native):
    """The bn_affine repair y' = y * a + c mapping stitched statistics (mean, std) onto native
    ones, as (1, C, 1, 1) float32 arrays a, c."""
    (m_st, s_st), (m_nat, s_nat) = stitched, native
    af = s_nat / (s_st + 1e-5)
    return (af.astype(np.float32).reshape(1, -1, 1, 1),
            (m_nat - m_st * af).astype(np.float32).reshape(1, -1, 1, 1))


class BlockRunner:
    """Sessions of every (variant, block) and the helpers to run stitches."""

    def __init__(self, eval_blocks, rep_channels, xtest, xcal, base, repair_kind, adapters=None):
        # eval_blocks[v][i]: ModelProto (batch symbolic, with rep_a/rep_c inputs if repairable)
        self.sess = {v: [onnxio.session(m) for m in bl] for v, bl in eval_blocks.items()}
        self.rep_channels = rep_channels   # per block: C or None
        self.xtest, self.xcal = xtest, xcal
        self.base = base
        self.kind = repair_kind
        self.adapters = adapters or {}     # (block, variant) -> (W, b)
        self.nblocks = len(rep_channels)
        self.nat = {}
        for v in eval_blocks:
            self.nat[v] = self._native_stats(v)

    def _run(self, v, i, x, a=None, c=None):
        feeds = {self.sess[v][i].get_inputs()[0].name: x}
        ch = self.rep_channels[i]
        if ch is not None:
            feeds["rep_a"] = np.ones((1, ch, 1, 1), np.float32) if a is None else a
            feeds["rep_c"] = np.zeros((1, ch, 1, 1), np.float32) if c is None else c
        outs = onnxio.run_batched(self.sess[v][i], feeds)
        return outs[0], (outs[1] if ch is not None else None)

    def _native_stats(self, v):
        if self.kind != "bn_affine":
            return None
        st = []
        h = self.xcal
        for i in range(self.nblocks):
            h, raw = self._run(v, i, h)
            st.append(channel_stats(raw) if raw is not None else None)
        return st

    def run_all(self, stitches, repair, log=None):
        """Accuracy inputs: returns list of (logits on test) per stitch; reuses the longest
        common prefix with the previous stitch (stitches sorted)."""
        order = sorted(range(len(stitches)), key=lambda k: stitches[k])
        results = [None] * len(stitches)
        path = []   # per block: (variant, h_test, h_cal)
        prev = ()
        for cnt, k in enumerate(order):
            s = tuple(stitches[k])
            common = 0
            while common < len(prev) and common < len(s) and prev[common] == s[common]:
                common += 1
            path = path[:common]
            for i in range(common, self.nblocks):
                v = s[i]
                h_t = self.xtest if i == 0 else path[i - 1][1]
                h_c = self.xcal if i == 0 else path[i - 1][2]
                a = c = None
                switch = i > 0 and s[i] != s[i - 1]
                if repair and switch and self.kind == "bn_affine" and self.rep_channels[i]:
                    _, raw = self._run(v, i, h_c)
                    a, c = bn_affine(channel_stats(raw), self.nat[v][i])
                if repair and switch and self.kind == "residual_map" and s[i - 1] != self.base:
                    W, b = self.adapters[(i - 1, s[i - 1])]
                    h_t = (h_t @ W + b).astype(np.float32)
                    h_c = (h_c @ W + b).astype(np.float32)
                out_t, _ = self._run(v, i, h_t, a, c)
                out_c = None
                if repair and i < self.nblocks - 1:
                    out_c, _ = self._run(v, i, h_c, a, c)
                path.append((v, out_t, out_c))
            results[k] = path[-1][1]
            prev = s
            if log and (cnt + 1) % 50 == 0:
                log(f"    {cnt + 1}/{len(stitches)} stitches")
        return results


def fit_adapters(runner, variants, calib_native, ridge=1e-3):
    """Per-(block i, variant v) residual map onto the base's stream at cut i: least squares
    (ridge) over all tokens of the calibration set, with v's stream at cut i taken from
    every segment start j <= i (blocks j..i of v fed the base's stream at cut j-1), so the
    map sees the inputs a stitch can hand it."""
    base = runner.base
    adapters = {}
    B = runner.nblocks
    for v in variants:
        if v == base:
            continue
        for i in range(B - 1):
            xs = []
            for j in range(i + 1):
                h = runner.xcal if j == 0 else calib_native[base][j - 1]
                for t in range(j, i + 1):
                    h, _ = runner._run(v, t, h)
                xs.append(h.reshape(-1, h.shape[-1]))
            X = np.concatenate(xs).astype(np.float64)
            Y = np.concatenate([calib_native[base][i].reshape(-1, X.shape[1])] * (i + 1)).astype(np.float64)
            Xa = np.concatenate([X, np.ones((len(X), 1))], 1)
            G = Xa.T @ Xa
            lam = ridge * np.trace(G) / G.shape[0]
            sol = np.linalg.solve(G + lam * np.eye(G.shape[0]), Xa.T @ Y)
            adapters[(i, v)] = (sol[:-1].astype(np.float32), sol[-1].astype(np.float32))
    return adapters


def summarize(stitches, accs, variant_acc, variant_cost, stitch_costs, margin=0.5):
    """frac_ge_worst_source, frac_more_than_5pp_below, pareto_gain_count on a cost basis."""
    ge = below5 = gain = 0
    names = list(variant_acc)
    for s, acc, cst in zip(stitches, accs, stitch_costs):
        worst = min(variant_acc[v] for v in set(s))
        ge += acc >= worst - 1e-9
        below5 += acc < worst - 5.0
        front = [variant_acc[v] for v in names if variant_cost[v] <= cst]
        if front and acc > max(front) + margin:
            gain += 1
    n = len(stitches)
    return {"frac_ge_worst_source": round(ge / n, 4), "frac_more_than_5pp_below": round(below5 / n, 4),
            "pareto_gain_count": gain, "pareto_gain_frac": round(gain / n, 4), "count": n,
            "mean_accuracy_pct": round(float(np.mean(accs)), 2),
            "min_accuracy_pct": round(float(np.min(accs)), 2)}
