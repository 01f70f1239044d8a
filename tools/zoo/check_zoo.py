#!/usr/bin/env python3
"""Checks a built zoo against the contract with the C++ side: files, dtypes, names, ops,
batch 1, cut and repair tensors in every variant, size cap, and (with --accuracy) re-measures
every variant's accuracy with onnxruntime (optimisations off, batch 1).

    .venv/bin/python tools/zoo/check_zoo.py [--zoo models/zoo] [--accuracy]
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import onnx

import data
import onnxio

CAP = 40e6


def check_task(d, accuracy):
    errs = []
    m = json.load(open(os.path.join(d, "manifest.json")))
    assert m["schema_version"] == 1
    x = np.load(os.path.join(d, m["test_data"]["x"]))
    y = np.load(os.path.join(d, m["test_data"]["y"]))
    c = np.load(os.path.join(d, m["calib_data"]["x"]))
    raw = np.dtype(m["input"]["raw_dtype"])
    if x.dtype != raw or c.dtype != raw:
        errs.append(f"data dtype {x.dtype}/{c.dtype} != {raw}")
    if y.dtype != np.int64 or len(y) != len(x) or len(x) != m["test_data"]["count"]:
        errs.append("labels")
    cuts = [p["name"] for p in m["cut_points"]]
    reps = [b["repair"]["tensor"] for b in m["blocks"]
            if b.get("repair") and b["repair"]["kind"] == "bn_affine"]
    xf = data.preprocess(x, m["input"]["preprocess"])
    for v in m["variants"]:
        g = onnx.load(os.path.join(d, v["file"]))
        onnx.checker.check_model(g)
        bad = {n.op_type for n in g.graph.node} - onnxio.ALLOWED_OPS
        if bad:
            errs.append(f"{v['name']}: ops {bad}")
        if g.opset_import[0].version != 13:
            errs.append(f"{v['name']}: opset")
        if [i.name for i in g.graph.input] != ["input"] or [o.name for o in g.graph.output] != ["logits"]:
            errs.append(f"{v['name']}: io names")
        if g.graph.input[0].type.tensor_type.shape.dim[0].dim_value != 1:
            errs.append(f"{v['name']}: batch not fixed to 1")
        produced = {t for n in g.graph.node for t in n.output}
        for t in cuts + reps:
            if t not in produced:
                errs.append(f"{v['name']}: tensor {t} missing")
        if accuracy:
            s = onnxio.session(g)
            pred = [int(np.argmax(s.run(None, {"input": xf[k:k + 1]})[0])) for k in range(len(xf))]
            acc = round(100.0 * float(np.mean(np.array(pred) == y)), 2)
            if abs(acc - v["accuracy_pct"]) > 1e-6:
                errs.append(f"{v['name']}: accuracy {acc} != manifest {v['accuracy_pct']}")
    return m["task"], errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", default="models/zoo")
    ap.add_argument("--accuracy", action="store_true")
    a = ap.parse_args()
    ok = True
    for d in sorted(glob.glob(os.path.join(a.zoo, "*", ""))):
        if not os.path.exists(os.path.join(d, "manifest.json")):
            continue
        t, errs = check_task(d, a.accuracy)
        print(f"{t}: {'ok' if not errs else errs}")
        ok &= not errs
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(a.zoo, "**"), recursive=True)
               if os.path.isfile(p))
    print(f"zoo size {size / 1e6:.2f} MB (cap {CAP / 1e6:.0f} MB)")
    ok &= size < CAP
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
