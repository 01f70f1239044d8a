"""Experiment (docs/zoo.md, "Repairing every convolution of the block after a switch"): the
committed bn_affine repair renormalises only the first BN-folded Conv of the block after a
variant switch; STITCHING-NOTES' remedy A re-estimated every BatchNorm of that block (its CNN had
one conv per block, so the two were the same there). This re-scores the manifest's sampled
stitches of a committed CNN task with every Conv of the block after a switch renormalised in
turn (per channel, native vs stitched statistics on the calibration set, each conv measured
with the repairs of the convs before it applied), without retraining.

  .venv/bin/python tools/zoo/repair_all_check.py TASK [MODES]

MODES (comma separated, default first,all): first = the committed repair (first conv only),
all = every conv of the block after a switch, all+next = also every conv of the block after
that. Prints the stitch-check summary per mode and writes out/repair-all-TASK.json.
"""
import copy
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnxio  # noqa: E402
import stitch  # noqa: E402
from committed import CommittedTask  # noqa: E402


def conv_channels(g, conv):
    inits = {t.name: t for t in g.initializer}
    w = conv.input[1]
    if w not in inits:  # QDQ: the weight is a DequantizeLinear of an int8 initializer
        w = next(n.input[0] for n in g.node if w in n.output)
    return inits[w].dims[0]


def with_conv_repairs(model):
    """Every Conv output t becomes t_raw * rep_a<k> + rep_c<k>; t_raw is an extra output.
    Returns (model, [channels per conv in node order])."""
    m = copy.deepcopy(model)
    g = m.graph
    convs = [n for n in g.node if n.op_type == "Conv"]
    chans = [conv_channels(g, n) for n in convs]
    for k, (n, c) in enumerate(zip(convs, chans)):
        t = n.output[0]
        raw = f"{t}_raw{k}"
        n.output[0] = raw
        idx = list(g.node).index(n)
        g.node.insert(idx + 1, helper.make_node("Mul", [raw, f"rep_a{k}"], [f"{t}_s{k}"]))
        g.node.insert(idx + 2, helper.make_node("Add", [f"{t}_s{k}", f"rep_c{k}"], [t]))
        g.input.append(helper.make_tensor_value_info(f"rep_a{k}", TensorProto.FLOAT, [1, c, 1, 1]))
        g.input.append(helper.make_tensor_value_info(f"rep_c{k}", TensorProto.FLOAT, [1, c, 1, 1]))
        g.output.append(helper.make_tensor_value_info(raw, TensorProto.FLOAT, None))
    return m, chans


def main():
    ct = CommittedTask(sys.argv[1])
    modes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["first", "all"]
    xte, yte, xcal, B, order = ct.xte, ct.yte, ct.xcal, ct.B, ct.order
    sess, chans = {}, {}
    for v in order:
        sess[v], chans[v] = [], []
        for e in ct.blocks(v):
            e, ch = with_conv_repairs(e)
            sess[v].append(onnxio.session(e))
            chans[v].append(ch)

    def run(v, i, x, reps=None):
        """Returns (block output, [raw conv outputs]); reps: {k: (a, c)}."""
        s = sess[v][i]
        feeds = {s.get_inputs()[0].name: x}
        for k, c in enumerate(chans[v][i]):
            a, b = (reps or {}).get(k, (None, None))
            feeds[f"rep_a{k}"] = np.ones((1, c, 1, 1), np.float32) if a is None else a
            feeds[f"rep_c{k}"] = np.zeros((1, c, 1, 1), np.float32) if b is None else b
        outs = onnxio.run_batched(s, feeds)
        return outs[0], outs[1:]

    nat = {}
    for v in order:
        h, nat[v] = xcal, []
        for i in range(B):
            h, raws = run(v, i, h)
            nat[v].append([stitch.channel_stats(r) for r in raws])

    def repairs(v, i, hc, which):
        """Per-conv affine of block i fed hc: each conv in node order measured with the
        repairs of the convs before it."""
        reps = {}
        for k in which:
            _, raws = run(v, i, hc, reps)
            reps[k] = stitch.bn_affine(stitch.channel_stats(raws[k]), nat[v][i][k])
        return reps

    def score(stitches, mode):
        """stitches sorted: each reuses the blocks it shares with the previous one's prefix."""
        out, path, prev = [], [], ()
        for s in stitches:
            common = 0
            while common < min(len(prev), len(s)) and prev[common] == s[common]:
                common += 1
            path = path[:common]
            ht, hc = (xte, xcal) if common == 0 else path[-1]
            since = B  # blocks since the last switch
            for i in range(B):
                v = s[i]
                if i > 0 and s[i] != s[i - 1]:
                    since = 0
                else:
                    since += 1
                if i < common:
                    continue
                nconv = len(chans[v][i])
                which = []
                if nconv and i > 0 and since == 0:
                    which = [0] if mode == "first" else list(range(nconv))
                elif nconv and since == 1 and mode == "all+next":
                    which = list(range(nconv))
                reps = repairs(v, i, hc, which) if which else None
                ht = run(v, i, ht, reps)[0]
                hc = run(v, i, hc, reps)[0] if i < B - 1 else None
                path.append((ht, hc))
            out.append(round(100.0 * float(np.mean(ht.argmax(1) == yte)), 2))
            prev = s
        return out

    sample = ct.sample
    res = {}
    for mode in modes:
        accs = score(sample, mode)
        summ = stitch.summarize(sample, accs, ct.vacc, ct.vcost, [ct.macs(s) for s in sample])
        print(ct.manifest["task"], mode, json.dumps(summ), flush=True)
        res[mode] = dict(summ, accs=accs)
    os.makedirs("out", exist_ok=True)
    json.dump({"sample": sample, "res": res}, open(f"out/repair-all-{ct.manifest['task']}.json", "w"))


if __name__ == "__main__":
    main()
