#!/usr/bin/env python3
"""Latency-scale zoo for benchmarks: ResNet-18, ResNet-50, MobileNetV2 (torchvision
architectures) and a BERT-base-sized encoder (4 layers, d 768, 12 heads, FFN 3072, seq 128,
input = token embeddings (1,128,768)), all with RANDOMLY INITIALISED weights -- their
accuracy means nothing; they exist to time kernels and whole models on real shapes.

Each model gets the same compressions as the task zoo: per-layer magnitude pruning of every
Conv/Gemm weight but the first conv at 50/70/80/90/95 %, 4x1 blocks at 90 %, 2:4, INT8 QDQ
(dense and 90 %), BatchNorm folded, batch 1, opset 13.

    .venv/bin/python tools/zoo/latency_zoo.py --out models/latency [--models resnet18 ...]

Generated on demand, never committed (models/latency is git-ignored); ~2.4 GB for all.

Each model directory is also a task the end-to-end benchmark can run (bench/e2e scenarios with
"zoo": "models/latency"): the graph is cut at stage boundaries where one tensor crosses (named
cut0, cut1, ... in every variant), and the manifest carries the task fields the C++ zoo loader
reads. Random weights have no accuracy, so each latency-scale task borrows the accuracies of a
committed task with the same number of blocks and the same variant names (SURROGATE below:
ResNets from fmnist_resnet, MobileNetV2 from digits_cnn, the encoder from fmnist_vit): its
variants' accuracies, single-block swaps and measured stitches, variant by variant and block by
block. Latency, memory and every scheduling effect are the big model's own; accuracy is the
small task's, recorded in the manifest as "accuracy_source". No stitch-time repair is run on
these tasks (their blocks carry none; the borrowed stitch accuracies are the repaired ones).
"""
import argparse
import io
import json
import os
import sys

# the 2 cores are shared: OpenMP's default spin-waiting makes an oversubscribed torch ~10x slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

import models
import onnxio
import train

VARIANTS = [("dense", None, 0.0, False), ("p50", "unstructured", 0.5, False),
            ("p70", "unstructured", 0.7, False), ("p80", "unstructured", 0.8, False),
            ("p90", "unstructured", 0.9, False), ("p95", "unstructured", 0.95, False),
            ("b4x1_p90", "block4x1", 0.9, False), ("s2_4", "2:4", 0.5, False),
            ("int8", None, 0.0, True), ("int8_p90", "unstructured", 0.9, True)]

# Cut points: the module prefixes (torch.onnx node names) whose last node's output is a cut
# tensor; one tensor crosses each (checked), giving the surrogate's number of blocks.
CUTS = {"resnet18": ["/maxpool/", "/layer1/", "/layer2/", "/layer3/"],
        "resnet50": ["/maxpool/", "/layer1/", "/layer2/", "/layer3/"],
        "mobilenetv2": ["/features/features.1/", "/features/features.3/", "/features/features.6/",
                        "/features/features.13/"],
        "bert4": ["/layers.0/", "/layers.1/", "/layers.2/"]}
SURROGATE = {"resnet18": "fmnist_resnet", "resnet50": "fmnist_resnet", "mobilenetv2": "digits_cnn",
             "bert4": "fmnist_vit"}
N_TEST, N_CALIB = 32, 16  # random request inputs / calibration inputs (uint8, preprocessed on use)


class BertEncoder(nn.Module):
    def __init__(self, layers=4, d=768, heads=12, ffn=3072, seq=128):
        super().__init__()
        self.layers = nn.ModuleList([models.EncoderLayer(d, heads, ffn, seq) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        for l in self.layers:
            x = l(x)
        return self.ln(x)


def build(name):
    import torchvision
    torch.manual_seed(0)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None), (1, 3, 224, 224)
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None), (1, 3, 224, 224)
    if name == "mobilenetv2":
        return torchvision.models.mobilenet_v2(weights=None), (1, 3, 224, 224)
    if name == "bert4":
        return BertEncoder(), (1, 128, 768)
    raise ValueError(name)


def fold_bn(model):
    """Folds every BatchNorm2d into the Conv2d right before it (module order)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    mods = list(model.named_modules())
    prev = None
    for name, m in mods:
        if isinstance(m, nn.BatchNorm2d) and prev is not None:
            pname, pconv = prev
            fused = fuse_conv_bn_eval(pconv, m)
            parent = model.get_submodule(pname.rsplit(".", 1)[0]) if "." in pname else model
            setattr(parent, pname.rsplit(".", 1)[-1], fused)
            parent_bn = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent_bn, name.rsplit(".", 1)[-1], nn.Identity())
            prev = None
        elif isinstance(m, nn.Conv2d):
            prev = (name, m)
        elif len(list(m.children())) == 0:
            prev = None if not isinstance(m, nn.Identity) else prev
    return model


def export(model, shape):
    f = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), torch.randn(*shape), f, opset_version=13,
                          input_names=["input"], output_names=["logits"], do_constant_folding=True)
    m = onnx.load_from_string(f.getvalue())
    onnxio._drop_identities(m.graph)
    inits = {t.name for t in m.graph.initializer}
    keep = [v for v in m.graph.input if v.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m


def name_cuts(m, prefixes):
    """Renames the output of the last node under each prefix to cut<i> and checks that it is the
    only tensor produced before the cut and consumed after it. Returns the cut names + shapes."""
    g = m.graph
    nodes = list(g.node)
    produced_at = {o: i for i, n in enumerate(nodes) for o in n.output}
    inits = {t.name for t in g.initializer}
    cuts = []
    for ci, pre in enumerate(prefixes):
        idx = [i for i, n in enumerate(nodes) if n.name.startswith(pre) and n.op_type != "Constant"]
        if not idx:
            raise SystemExit(f"no node under {pre}")
        last = idx[-1]
        old = nodes[last].output[0]
        crossing = {x for n in nodes[last + 1:] for x in n.input
                    if x and x not in inits and produced_at.get(x, -1) <= last and produced_at.get(x, -1) >= 0
                    and nodes[produced_at[x]].op_type != "Constant"}
        if crossing != {old}:
            raise SystemExit(f"cut after {pre}: {sorted(crossing)} cross, expected only {old}")
        new = f"cut{ci}"
        for n in nodes:
            for k, x in enumerate(n.input):
                if x == old:
                    n.input[k] = new
            for k, x in enumerate(n.output):
                if x == old:
                    n.output[k] = new
        cuts.append(new)
    inferred = onnx.shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    return [{"name": c, "shape": shapes.get(c, [])} for c in cuts]


def task_fields(name, shape, cuts, entries, zoo_dir, out):
    """The manifest fields that make this model a task of the end-to-end benchmark, with the
    surrogate task's accuracies (module docstring) and random uint8 request/calibration inputs."""
    sur_name = SURROGATE[name]
    with open(os.path.join(zoo_dir, sur_name, "manifest.json")) as f:
        sur = json.load(f)
    if len(sur["blocks"]) != len(cuts) + 1:
        raise SystemExit(f"{name}: {len(cuts) + 1} blocks, surrogate {sur_name} has {len(sur['blocks'])}")
    to_ours = {v["name"]: v["name"] for v in sur["variants"]}
    to_ours[sur["base"]] = "dense"
    acc = {to_ours[v["name"]]: v["accuracy_pct"] for v in sur["variants"]}
    missing = [e["name"] for e in entries if e["name"] not in acc]
    if missing:
        raise SystemExit(f"{name}: surrogate {sur_name} has no variant {missing}")
    ours = {e["name"] for e in entries}
    rng = np.random.default_rng(1)
    np.save(os.path.join(out, "test_x.npy"), rng.integers(0, 256, (N_TEST,) + tuple(shape[1:]), dtype=np.uint8))
    np.save(os.path.join(out, "test_y.npy"), np.zeros(N_TEST, dtype=np.int64))
    np.save(os.path.join(out, "calib_x.npy"), rng.integers(0, 256, (N_CALIB,) + tuple(shape[1:]), dtype=np.uint8))
    sc = {k: v for k, v in sur["stitch_check"].items() if not isinstance(v, (dict, list))}
    for mode in ("no_repair", "repair"):
        part = dict(sur["stitch_check"][mode])
        part["stitches"] = [{"variants": [to_ours[v] for v in st["variants"]], "accuracy_pct": st["accuracy_pct"]}
                            for st in part["stitches"] if all(to_ours[v] in ours for v in st["variants"])]
        sc[mode] = part
    for key in ("single_swap", "single_swap_repair"):
        sc[key] = {to_ours[v]: a for v, a in sur["stitch_check"][key].items() if to_ours[v] in ours}
    names = ["input"] + [c["name"] for c in cuts] + ["logits"]
    for e in entries:
        e["accuracy_pct"] = acc[e["name"]]
    return {"task": name, "modality": "latency-scale (" + name + ", random weights)",
            "dataset": "none: random uint8 inputs",
            "description": f"{name} with random weights; accuracies borrowed from {sur_name} (see accuracy_source)",
            "accuracy_source": {"task": sur_name, "zoo": zoo_dir,
                                "what": "variant accuracies, single-block swaps and measured stitches of the surrogate "
                                        "task, mapped variant by variant (its base = dense) and block by block; "
                                        "latency and memory are this model's own"},
            "input": {"name": "input", "shape": list(shape), "raw_dtype": "uint8",
                      "preprocess": {"scale": 1 / 255, "mean": 0.5, "std": 0.25}},
            "output": {"name": "logits"},
            "test_data": {"x": "test_x.npy", "y": "test_y.npy", "count": N_TEST},
            "calib_data": {"x": "calib_x.npy", "count": N_CALIB},
            "cut_points": cuts,
            "blocks": [{"index": i, "input": names[i], "output": names[i + 1]} for i in range(len(names) - 1)],
            "base": "dense", "stitch_check": sc}


def prune_graph(m, kind, s):
    """Per-layer pruning of every Conv/Gemm weight initializer but the first conv's."""
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    weights = [n.input[1] for n in g.node if n.op_type in ("Conv", "Gemm") and n.input[1] in inits]
    first = [n.input[1] for n in g.node if n.op_type == "Conv"][:1]
    per_layer = {}
    for wn in weights:
        if wn in first:
            per_layer[wn] = {"sparsity": 0.0, "pattern": "dense"}
            continue
        w = numpy_helper.to_array(inits[wn]).copy()
        mask, pat = train.make_mask(torch.from_numpy(w), kind, s)
        w = w * mask.numpy()
        inits[wn].CopyFrom(numpy_helper.from_array(w.astype(np.float32), wn))
        per_layer[wn] = {"sparsity": round(float(np.mean(w == 0)), 4), "pattern": pat}
    return per_layer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/latency")
    ap.add_argument("--models", nargs="*", default=["resnet18", "resnet50", "mobilenetv2", "bert4"])
    ap.add_argument("--variants", nargs="*", default=[v[0] for v in VARIANTS])
    ap.add_argument("--surrogate-zoo", default="models/zoo",
                    help="committed zoo whose tasks lend their accuracies (module docstring)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    for name in a.models:
        t0 = time.time()
        model, shape = build(name)
        model = fold_bn(model.eval())
        dense = export(model, shape)
        assert not any(n.op_type == "BatchNormalization" for n in dense.graph.node)
        cuts = name_cuts(dense, CUTS[name])
        out = os.path.join(a.out, name)
        os.makedirs(out, exist_ok=True)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        entries = []
        for vname, kind, s, int8 in VARIANTS:
            if vname not in a.variants:
                continue
            m = onnx.ModelProto()
            m.CopyFrom(dense)
            per_layer = prune_graph(m, kind, s) if kind else {}
            if int8:
                m, _ = onnxio.quantize_block(m, {"input": x})
            onnx.checker.check_model(m)
            onnxio.check_ops(m)
            onnxio.session(m).run(None, {"input": x})
            path = os.path.join(out, vname + ".onnx")
            onnx.save(m, path)
            w = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == 1 and t.dims and len(t.dims) >= 2]
            entries.append({"name": vname, "file": vname + ".onnx", "compression": {
                "kind": ("int8+" if int8 and kind else "int8" if int8 else kind or "dense"),
                "sparsity": s, "int8": int8, "per_layer": per_layer}, "bytes": os.path.getsize(path)})
            print(f"{name}/{vname}: {os.path.getsize(path) / 1e6:.1f} MB", flush=True)
        doc = {"schema_version": 1, "model": name,
               "weights": "random (torch.manual_seed(0)); accuracy is not meaningful",
               "int8_calibration": "one standard-normal input (seed 0)"}
        doc.update(task_fields(name, shape, cuts, entries, a.surrogate_zoo, out))
        doc["variants"] = entries
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump(doc, f, indent=1)
        print(f"{name}: {time.time() - t0:.0f}s", flush=True)
    # Block files (one ONNX per block, so a load reads only its block) come from the C++ side,
    # which checks each against its own partition of the variant: docs/zoo.md "Block files".
    print("next: sparseloom split " + " ".join(os.path.join(a.out, n) for n in a.models), flush=True)


if __name__ == "__main__":
    main()
