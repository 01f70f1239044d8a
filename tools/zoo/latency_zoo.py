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
    a = ap.parse_args()
    torch.set_num_threads(2)
    for name in a.models:
        t0 = time.time()
        model, shape = build(name)
        model = fold_bn(model.eval())
        dense = export(model, shape)
        assert not any(n.op_type == "BatchNormalization" for n in dense.graph.node)
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
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump({"schema_version": 1, "model": name, "input": {"name": "input", "shape": list(shape)},
                       "output": {"name": "logits"},
                       "weights": "random (torch.manual_seed(0)); accuracy is not meaningful",
                       "int8_calibration": "one standard-normal input (seed 0)",
                       "variants": entries}, f, indent=1)
        print(f"{name}: {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
