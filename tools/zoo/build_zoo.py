#!/usr/bin/env python3
"""Builds the real sparse model zoo: per task a base model trained on an offline dataset,
sparse/INT8 variants derived from it, ONNX files with common cut points, test/calibration
data and manifest.json with a stitch check.

    .venv/bin/python tools/zoo/build_zoo.py --out models/zoo [--tasks t1 t2] [--derivation b2|plain]

Deterministic (fixed seeds; trained weights are cached under --cache, default out/zoo-cache,
so a rerun only re-exports and re-measures). See docs/zoo.md.
"""
import argparse
import json
import os
import sys

# the 2 cores are shared: OpenMP's default spin-waiting makes an oversubscribed torch ~10x slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import build_common as bc
import cache
import onnxio
import stitch
import tasks
import train

# name, pruning kind, sparsity, int8, source (for int8 of a pruned variant)
VARIANTS = [
    ("base", None, 0.0, False, None),
    ("p50", "unstructured", 0.50, False, None),
    ("p70", "unstructured", 0.70, False, None),
    ("p80", "unstructured", 0.80, False, None),
    ("p90", "unstructured", 0.90, False, None),
    ("p95", "unstructured", 0.95, False, None),
    ("b4x1_p90", "block4x1", 0.90, False, None),
    ("s2_4", "2:4", 0.50, False, None),
    ("int8", None, 0.0, True, "base"),
    ("int8_p90", "unstructured", 0.90, True, "p90"),
]
PLAIN_TWINS = {"p90", "p95"}      # plain twins measured on every task
LAMBDA_SWEEP = {"p95": [1.0, 0.3]}
LAMBDA_DEFAULT = 1.0
STITCH_SAMPLE = 200
STITCH_SEED = 1234
OWN_STATS = False  # --b2-own-stats: BN running stats from the variant's own chain only
FT_STEPS = FT_STEPS_SPARSE = 0  # --ft-steps / --ft-steps-sparse overrides (0: the task's)
QUICK_STEPS = 0   # --quick: smoke test (few fine-tuning steps, small stitch sample)
BLOCK_LAM = None  # --block-lam: per-cut-point distillation weights (None: all 1)
CE_STITCH = 0.0   # --ce-stitch: weight of the cross-entropy on random variant/base stitches
STITCH_POOL = False  # --stitch-pool: those stitches also draw blocks from earlier variants
POOL_WEAK_FIRST = False  # --pool-weak-first: derive the sparsest variants first
STITCH_BN = False  # --stitch-bn: base-input and stitch passes normalise as a repaired stitch
CO_ADAPT = 0  # --co-adapt: rounds in which every variant trains on with all others as partners
KEY_SUFFIX = ""  # the B2 options, in co-adapt cache keys
CLI_B2 = {}  # B2 options given on the command line (None: the task's default)


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def derive(task, sp, base, name, kind, sparsity, derivation, cache_dir, lam=None, partners=()):
    """Prunes a copy of the base and fine-tunes it (plain CE, or B2 distillation)."""
    cfg = tasks.TASKS[task]
    lam = LAMBDA_DEFAULT if lam is None else lam
    key = f"{name}_plain" if derivation == "plain" else f"{name}_b2_lam{lam:g}"
    steps = QUICK_STEPS or FT_STEPS or cfg["ft_steps"]
    sparse_steps = FT_STEPS_SPARSE or cfg.get("ft_steps_sparse")
    if sparsity >= 0.9 and sparse_steps and not QUICK_STEPS:
        steps = sparse_steps   # the >= 90 % variants need longer to recover
    if not QUICK_STEPS and steps != 100:
        key += f"_s{steps}"    # the budget is part of the cache key (100: the first zoo's keys)
    if QUICK_STEPS:
        key += "_quick"
    own_stats = OWN_STATS or cfg.get("b2_own_stats", False)
    if own_stats and derivation == "b2":
        key += "_ownstats"
    if BLOCK_LAM and derivation == "b2":
        key += "_bl" + "-".join(f"{w:g}" for w in BLOCK_LAM)
    if CE_STITCH and derivation == "b2":
        key += f"_cest{CE_STITCH:g}"
        if STITCH_POOL:
            key += "_poolwf" if POOL_WEAK_FIRST else "_pool"
    if STITCH_BN and derivation == "b2":
        key += "_sbn"
    m = train.clone(base)
    masks, pattern = train.prune(m, kind, sparsity)
    if not cache.load(cache_dir, task, key, m):
        xtr, ytr = bc.tensors(task, sp.xtr, sp.ytr)
        log(f"  deriving {task}/{key}")
        train.set_seed(1)
        # crc32, not hash(): Python salts str hashes per process, so hash(name) gave every
        # from-scratch build different variants (found in session 6).
        train.train(m, xtr, ytr, steps, cfg["ft_lr"], 0.0, seed=zlib.crc32(name.encode()) % 1000,
                    masks=masks, teacher=base if derivation == "b2" else None, lam=lam, log=None,
                    own_stats=own_stats, block_lam=BLOCK_LAM,
                    ce_stitch=CE_STITCH, partners=partners if STITCH_POOL else (),
                    stitch_bn=STITCH_BN)
        cache.save(cache_dir, task, key, m)
    train.apply_masks(m, masks)
    return m, pattern


def onnx_name(torch_pname):
    """blocks.<i>.<path>.conv.weight -> b<i>.<path>.folded.weight (BN folded)."""
    parts = torch_pname.split(".")
    i = parts[1]
    rest = ".".join(parts[2:])
    if rest.endswith(".conv.weight"):
        rest = rest[: -len(".conv.weight")] + ".folded.weight"
    return f"b{i}.{rest}"


def layer_costs(block_model):
    """Per Conv/Gemm/MatMul of a float block graph at batch 1: (weight name or None, dense
    MACs, nonzero MACs, weight array)."""
    m = onnxio.set_batch(block_model, 1)
    shapes = {}
    for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]
            o = shapes[n.output[0]]
            sp = int(np.prod(o[2:]))
            out.append((n.input[1], w.size * sp, int(np.count_nonzero(w)) * sp, w))
        elif n.op_type == "Gemm":
            w = inits[n.input[1]]
            r = shapes[n.input[0]][0]
            out.append((n.input[1], w.size * r, int(np.count_nonzero(w)) * r, w))
        elif n.op_type == "MatMul":
            a, b = shapes[n.input[0]], shapes[n.input[1]]
            macs = int(np.prod(a)) * b[-1]
            out.append((None, macs, macs, None))
    return out


def sparse_bytes(w, int8):
    """Storage of one weight as the smaller of dense and CSR (values + int32 column index +
    int32 row pointers)."""
    eb = 1 if int8 else 4
    m = w.shape[0]
    nnz = int(np.count_nonzero(w))
    return min(w.size * eb, nnz * (eb + 4) + (m + 1) * 4)


def set_b2_options(task):
    """The stitch-aware B2 options for one task: the command line's where given, else the
    task's `b2` dict in tasks.py (so the one zoo command rebuilds what was committed), else off."""
    global BLOCK_LAM, CE_STITCH, STITCH_POOL, POOL_WEAK_FIRST, STITCH_BN, CO_ADAPT, KEY_SUFFIX
    cfg = tasks.TASKS[task]
    d = cfg.get("b2", {})
    o = {k: (v if v is not None else d.get(k)) for k, v in CLI_B2.items()}
    BLOCK_LAM = o["block_lam"]
    CE_STITCH = float(o["ce_stitch"] or 0.0)
    STITCH_POOL, POOL_WEAK_FIRST = bool(o["stitch_pool"]), bool(o["pool_weak_first"])
    STITCH_BN, CO_ADAPT = bool(o["stitch_bn"]), int(o["co_adapt"] or 0)
    KEY_SUFFIX = "-".join(str(x) for x in (
        FT_STEPS or cfg["ft_steps"], FT_STEPS_SPARSE or cfg.get("ft_steps_sparse") or 0,
        int(bool(OWN_STATS or cfg.get("b2_own_stats"))),
        ",".join(f"{w:g}" for w in BLOCK_LAM) if BLOCK_LAM else "bl1", CE_STITCH,
        int(STITCH_POOL), int(POOL_WEAK_FIRST), int(STITCH_BN)))


def co_adapt(task, sp, models, lam_used, rnd, cache_dir):
    """--co-adapt round `rnd`: every B2 variant trains on from its weights with every other
    variant (as it was after the previous round, frozen) as a stitch partner, so the blocks
    derived early also learn to take the later variants' blocks (one derivation order
    cannot do that). Same loss as the derivation, masks held, half the steps."""
    cfg = tasks.TASKS[task]
    prev = dict(models)
    xtr, ytr = bc.tensors(task, sp.xtr, sp.ytr)
    for name, lam in lam_used.items():
        m = train.clone(prev[name])
        pruned = {n for n, _ in train.prunable_layers(m)}
        masks = {n: (p != 0).float() for n, p in m.named_parameters() if n in pruned}
        steps = max(1, (FT_STEPS or cfg["ft_steps"]) // 2)
        key = f"{name}_co{rnd}_{KEY_SUFFIX}_lam{lam:g}_s{steps}"
        if not cache.load(cache_dir, task, key, m):
            log(f"  co-adapting {task}/{key}")
            train.set_seed(1 + rnd)
            train.train(m, xtr, ytr, steps, cfg["ft_lr"], 0.0, seed=zlib.crc32(name.encode()) % 1000 + rnd,
                        masks=masks, teacher=prev["base"], lam=lam, own_stats=OWN_STATS,
                        block_lam=BLOCK_LAM, ce_stitch=CE_STITCH,
                        partners=[prev[v] for v in prev if v not in ("base", name)], stitch_bn=STITCH_BN)
            cache.save(cache_dir, task, key, m)
        models[name] = m


def build_task(task, out_root, cache_dir, derivation):
    t0 = time.time()
    cfg = tasks.TASKS[task]
    set_b2_options(task)
    out = os.path.join(out_root, task)
    os.makedirs(out, exist_ok=True)
    sp = bc.load_split(task, cache_dir)
    base, base_val = bc.base_model(task, sp, cache_dir, log)
    log(f"{task}: base val acc {base_val:.2f}")
    xval, yval = bc.tensors(task, sp.xval, sp.yval)

    # ---------------------------------------------------------------- derive variants
    torch_models, patterns, deriv, plain_twin_val, lam_used = {}, {}, {}, {}, {}
    torch_models["base"] = base
    derive_order = VARIANTS
    if STITCH_POOL and POOL_WEAK_FIRST:   # later variants learn to take the odd ones' blocks
        derive_order = sorted(VARIANTS, key=lambda v: -v[2])
    for name, kind, s, int8, src in derive_order:
        if kind is None or int8:
            continue
        if derivation == "plain":
            m, pat = derive(task, sp, base, name, kind, s, "plain", cache_dir)
            torch_models[name], patterns[name], deriv[name] = m, pat, "plain"
            continue
        twin_acc = None
        if name in PLAIN_TWINS:
            tw, _ = derive(task, sp, base, name, kind, s, "plain", cache_dir)
            twin_acc = train.accuracy(tw, xval, yval)
            plain_twin_val[name] = (tw, twin_acc)
        chosen = None
        sweep = cfg.get("lambda_sweep", LAMBDA_SWEEP)
        for lam in sweep.get(name, [LAMBDA_DEFAULT]) if LAMBDA_DEFAULT == 1.0 else \
                [LAMBDA_DEFAULT] + [l for l in sweep.get(name, []) if l < LAMBDA_DEFAULT]:
            m, pat = derive(task, sp, base, name, kind, s, "b2", cache_dir, lam,
                            partners=[torch_models[v] for v in torch_models if v != "base"])
            acc = train.accuracy(m, xval, yval)
            log(f"  {name} b2 lambda {lam:g}: val {acc:.2f}" +
                (f" (plain twin {twin_acc:.2f})" if twin_acc is not None else ""))
            if chosen is None or acc > chosen[2]:
                chosen = (m, lam, acc)
            if twin_acc is None or acc >= twin_acc - 1.0:
                chosen = (m, lam, acc)
                break
        torch_models[name], patterns[name], deriv[name] = chosen[0], pat, "b2"
        lam_used[name] = chosen[1]
    for r in range(1, CO_ADAPT + 1):
        co_adapt(task, sp, torch_models, lam_used, r, cache_dir)

    # ------------------------------------------------------------------- shapes, data
    xte = bc.tensors(task, sp.xte).numpy()
    xcal = bc.tensors(task, sp.xcal).numpy()
    B = len(base.blocks)
    shapes = []
    with torch.no_grad():
        h = torch.from_numpy(xte[:1])
        shapes.append(list(h.shape))
        for b in base.blocks:
            h = b(h)
            shapes.append(list(h.shape))
    cut_names = ["input"] + [f"cut{i}" for i in range(B - 1)] + ["logits"]
    np.save(os.path.join(out, "test_x.npy"), np.ascontiguousarray(sp.xte))
    np.save(os.path.join(out, "test_y.npy"), sp.yte.astype(np.int64))
    np.save(os.path.join(out, "calib_x.npy"), np.ascontiguousarray(sp.xcal))
    is_vit = not any(onnxio.first_convbn(b) for b in list(base.blocks)[1:])
    repair_kind = "residual_map" if is_vit else "bn_affine"

    # ------------------------------------------------------------------ export blocks
    float_blocks, rep_names = {}, {}
    for name, m in torch_models.items():
        bl = []
        for i, blk in enumerate(m.blocks):
            g, rep = onnxio.export_block(blk, shapes[i], i, cut_names[i], cut_names[i + 1],
                                         repair=(i > 0 and repair_kind == "bn_affine"))
            bl.append(g)
            rep_names[i] = rep
        float_blocks[name] = bl
    rep_channels = [None] * B
    for i in range(B):
        if rep_names[i]:
            mm = onnxio.set_batch(float_blocks["base"][i], 1)
            vi = {v.name: v for v in mm.graph.value_info}
            rep_channels[i] = vi[rep_names[i]].type.tensor_type.shape.dim[1].dim_value

    def native_calib(blocks):
        hs, h = [], xcal
        for i, g in enumerate(blocks):
            h = onnxio.run_batched(onnxio.session(g), {g.graph.input[0].name: h})[0]
            hs.append(h)
        return hs

    all_blocks = dict(float_blocks)
    qinfo = {}
    for name, kind, s, int8, src in VARIANTS:
        if not int8:
            continue
        hs = native_calib(float_blocks[src])
        qb = []
        for i, g in enumerate(float_blocks[src]):
            inp = xcal if i == 0 else hs[i - 1]
            q, qp = onnxio.quantize_block(g, {g.graph.input[0].name: inp})
            qb.append(q)
        all_blocks[name] = qb
        qinfo[name] = src

    # ------------------------------------------- full graphs, accuracy, cost, manifest
    order = [v[0] for v in VARIANTS]
    vinfo = {}
    for name, kind, s, int8, src in VARIANTS:
        full = onnxio.merge_blocks(all_blocks[name], f"{task}_{name}")
        onnxio.check_ops(full)
        path = os.path.join(out, name + ".onnx")
        onnx.save(full, path)
        sess = onnxio.session(full)
        pred = np.array([int(np.argmax(sess.run(None, {"input": xte[k:k + 1]})[0]))
                         for k in range(len(xte))])
        acc = 100.0 * float(np.mean(pred == sp.yte))
        fb = float_blocks[src if int8 else name]
        per_layer, block_macs, block_nnz, dense_block_macs = {}, [], [], []
        params = nnz = sbytes = 0
        tm_pattern = {onnx_name(k): v for k, v in patterns.get(src if int8 else name, {}).items()}
        for i, g in enumerate(fb):
            dm = nzm = bn = 0
            for wname, dmacs, nzmacs, w in layer_costs(g):
                dm += dmacs
                nzm += nzmacs
                if w is None:
                    continue
                c = int(np.count_nonzero(w))
                bn += c
                params += w.size
                nnz += c
                sbytes += sparse_bytes(w, int8)
                e = {"sparsity": round(1 - c / w.size, 4), "pattern": tm_pattern.get(wname, "dense"),
                     "shape": list(w.shape)}
                if int8:
                    e["initializer"] = wname + ".int8"
                per_layer[wname] = e
            block_macs.append(int(nzm))
            block_nnz.append(int(bn))
            dense_block_macs.append(int(dm))
        pruned = [e for e in per_layer.values() if e["pattern"] != "dense"]
        entry = {
            "name": name, "file": name + ".onnx",
            "derivation": "none" if (kind is None or int8) and name in ("base", "int8") else
            ("none" if int8 else deriv[name]),
            "compression": {
                "kind": ("int8" if int8 and kind is None else
                         "dense" if kind is None else
                         ("int8+" if int8 else "") + kind),
                "sparsity": s, "int8": int8,
                "sparsity_scope": "per-layer, every Conv/Gemm weight except the first layer, "
                                  "the classifier and depthwise convolutions",
                "per_layer": per_layer},
            "accuracy_pct": round(acc, 2),
            "params": int(params), "nonzeros": int(nnz),
            "bytes": os.path.getsize(path), "weight_bytes_sparse": int(sbytes),
            "macs": int(sum(block_macs)), "block_macs": block_macs, "block_nonzeros": block_nnz,
        }
        if int8:
            entry["derived_from"] = src
            entry["activation_quant"] = "per-tensor static uint8 (asymmetric, zero point), " \
                                        "min/max over the calibration set"
        if name in plain_twin_val:
            tw = plain_twin_val[name][0]
            entry["plain_twin_accuracy_pct"] = round(train.accuracy(
                tw, torch.from_numpy(xte), torch.from_numpy(sp.yte)), 2)
        if name in lam_used:
            entry["distill_lambda"] = lam_used[name]
        vinfo[name] = entry
        log(f"  {name:10s} acc {acc:6.2f}  macs {entry['macs']:>9d}  nnz {nnz:>7d}  "
            f"file {entry['bytes']:>7d} B  ({len(pruned)} sparse layers)")
    dense_macs = dense_block_macs

    # ------------------------------------------------------------------- stitch check
    eval_blocks = {}
    for v in order:
        eval_blocks[v] = [onnxio.with_repair_inputs(g, rep_names[i], rep_channels[i])
                          if rep_names[i] else g for i, g in enumerate(all_blocks[v])]
    runner = stitch.BlockRunner(eval_blocks, rep_channels, xte, xcal, "base", repair_kind)
    adapters = {}
    if repair_kind == "residual_map":
        calib_native = {v: native_calib(all_blocks[v]) for v in ["base"]}
        adapters = stitch.fit_adapters(runner, order, calib_native)
        runner.adapters = adapters
        for (i, v), (W, b) in adapters.items():
            np.save(os.path.join(out, f"adapter_cut{i}_{v}_W.npy"), W)
            np.save(os.path.join(out, f"adapter_cut{i}_{v}_b.npy"), b)

    def acc_of(logits):
        return round(100.0 * float(np.mean(logits.argmax(1) == sp.yte)), 2)

    # sanity: unstitched variants through block sessions == full graphs
    pure = [tuple([v] * B) for v in order]
    pure_acc = [acc_of(l) for l in runner.run_all(pure, False)]
    for v, a in zip(order, pure_acc):
        if abs(a - vinfo[v]["accuracy_pct"]) > 0.051:
            log(f"  WARNING {v}: block-wise {a} vs full graph {vinfo[v]['accuracy_pct']}")
    singles = [tuple(v if j == i else "base" for j in range(B)) for v in order[1:] for i in range(B)]
    rng = np.random.default_rng(STITCH_SEED)
    space = len(order) ** B
    sample = set()
    if space - len(order) <= cfg.get("stitch_sample", STITCH_SAMPLE):
        import itertools
        sample = {s for s in itertools.product(order, repeat=B) if len(set(s)) > 1}
    n_sample = STITCH_SAMPLE if QUICK_STEPS else cfg.get("stitch_sample", STITCH_SAMPLE)
    while len(sample) < min(n_sample, space - len(order)):
        s = tuple(order[k] for k in rng.integers(0, len(order), B))
        if len(set(s)) > 1:
            sample.add(s)
    sample = sorted(sample, key=lambda s: rng.random())
    variant_acc = {v: vinfo[v]["accuracy_pct"] for v in order}
    variant_cost = {v: vinfo[v]["macs"] for v in order}
    T = shapes[1][1] if repair_kind == "residual_map" else 0
    dmodel = shapes[1][-1] if repair_kind == "residual_map" else 0

    def cost(s, repair):
        c = sum(vinfo[v]["block_macs"][i] for i, v in enumerate(s))
        if repair and repair_kind == "residual_map":
            c += sum(T * dmodel * dmodel for i in range(1, B) if s[i] != s[i - 1] and s[i - 1] != "base")
        return int(c)

    check = {"sample_size": len(sample), "seed": STITCH_SEED, "space_size": space}
    for mode in ("no_repair", "repair"):
        rep = mode == "repair"
        log(f"  stitch check ({mode}): {len(singles)} single swaps, {len(sample)} stitches")
        sl = [acc_of(l) for l in runner.run_all(singles, rep)]
        ss = {}
        for k, s in enumerate(singles):
            v = [x for x in s if x != "base"][0]
            ss.setdefault(v, []).append(sl[k])
        accs = [acc_of(l) for l in runner.run_all(sample, rep, log)]
        costs = [cost(s, rep) for s in sample]
        summ = stitch.summarize(sample, accs, variant_acc, variant_cost, costs)
        check["single_swap" if not rep else "single_swap_repair"] = ss
        check[mode] = dict(summ, cost_basis="macs", stitches=[
            {"variants": list(s), "accuracy_pct": a, "cost_macs": c}
            for s, a, c in zip(sample, accs, costs)])
        log(f"  {mode}: " + json.dumps(summ))

    blocks = []
    for i in range(B):
        b = {"index": i, "input": cut_names[i], "output": cut_names[i + 1],
             "macs": int(dense_macs[i])}
        if repair_kind == "bn_affine":
            b["repair"] = ({"kind": "bn_affine", "tensor": rep_names[i], "channels": rep_channels[i],
                            "cost_weights": 2 * rep_channels[i]} if rep_names[i] else None)
        else:
            if i > 0:
                b["repair"] = {
                    "kind": "residual_map", "tensor": cut_names[i],
                    "applied_when": f"the variant of block {i - 1} differs from block {i}'s "
                                    f"and is not the base",
                    "adapter_of": f"(block {i - 1}, variant of block {i - 1})",
                    "files": {v: {"W": f"adapter_cut{i - 1}_{v}_W.npy",
                                  "b": f"adapter_cut{i - 1}_{v}_b.npy"} for v in order if v != "base"},
                    "formula": "x' = x @ W + b per token (x: (1,T,d) cut tensor, W: (d,d), b: (d,))",
                    "cost_weights": dmodel * dmodel + dmodel, "cost_macs": T * dmodel * dmodel}
            else:
                b["repair"] = None
        blocks.append(b)

    manifest = {
        "schema_version": 1, "task": task, "modality": cfg["modality"], "dataset": cfg["dataset"],
        "description": cfg["description"],
        "input": {"name": "input", "shape": shapes[0],
                  "raw_dtype": "int16" if sp.xte.dtype == np.int16 else "uint8",
                  "preprocess": cfg["pre"]},
        "output": {"name": "logits", "classes": cfg["classes"]},
        "test_data": {"x": "test_x.npy", "y": "test_y.npy", "count": int(len(sp.yte))},
        "calib_data": {"x": "calib_x.npy", "count": int(len(sp.xcal))},
        "cut_points": [{"name": cut_names[i + 1], "shape": shapes[i + 1]} for i in range(B - 1)],
        "blocks": blocks,
        "base": "base",
        "derivation": {
            "kind": derivation,
            "description": ("B2: fine-tune with cross-entropy + lambda x sum over cut points "
                            "of MSE(block out, base block out)/mean(base out^2); each block's "
                            "input is the base's activation with probability 0.5 (stitch-aware "
                            "mixing); masks held; lambda swept over [1, 0.3] for p95 "
                            "(largest lambda within 1 pp of the plain twin on validation)"
                            if derivation == "b2" else
                            "plain: prune, fine-tune with cross-entropy only, masks held"),
            "b2_bn_running_stats": ("variant's own chain only (--b2-own-stats)"
                                    if OWN_STATS or cfg.get("b2_own_stats") else
                                    "updated by both the own-chain and the base-input passes"),
            "fine_tune_steps": FT_STEPS or cfg["ft_steps"],
            "fine_tune_steps_ge_90pct": FT_STEPS_SPARSE or cfg.get("ft_steps_sparse", FT_STEPS or cfg["ft_steps"]),
            "lambda_sweep": cfg.get("lambda_sweep", LAMBDA_SWEEP),
            "batch": 128, "lr": cfg["ft_lr"],
            "pruning": "magnitude of the BN-folded weight, per layer; every Conv/Gemm weight "
                       "except the first layer, the classifier and depthwise convolutions",
            "int8": "QDQ: weights int8 per-output-channel symmetric (DequantizeLinear axis 0, "
                    "zero point 0, scale max|w|/127); activations per-tensor static uint8 with "
                    "zero point at the input of every Conv/Gemm/MatMul; no fine-tuning"},
        "variants": [vinfo[v] for v in order],
        "definitions": {
            "macs": "multiply-accumulates with a nonzero weight at batch 1 (Conv: nonzeros x "
                    "output positions; Gemm: nonzeros x rows; activation MatMul: dense); INT8 "
                    "MACs count the same as f32",
            "bytes": "size of the .onnx file (dense storage)",
            "weight_bytes_sparse": "sum over weights of min(dense, CSR: values + int32 column "
                                   "index + int32 row pointers); 1-byte values for INT8",
            "accuracy_pct": "top-1 on the committed test subset, onnxruntime with graph "
                            "optimisations disabled, batch 1",
            "pareto_gain_count": "stitches whose accuracy exceeds, by more than 0.5 pp, the "
                                 "best unstitched variant whose macs are <= the stitch's "
                                 "(stitch macs = sum of its blocks' macs, plus the residual "
                                 "maps' MACs under repair)",
            "frac_ge_worst_source": "share of sampled stitches at least as accurate as the "
                                    "least accurate variant among their sources"},
        "repair": {"kind": repair_kind},
        "stitch_check": check,
        "build_seconds": round(time.time() - t0, 1),
    }
    extra = {}   # non-default B2 options only: the default manifest stays as it was
    if BLOCK_LAM:
        extra["block_lambda"] = BLOCK_LAM
    if CE_STITCH:
        extra["ce_stitch"] = {"weight": CE_STITCH, "partners": (
            "base and the variants derived before" + (" (sparsest first)" if POOL_WEAK_FIRST else "")
            if STITCH_POOL else "base")}
    if STITCH_BN:
        extra["stitch_bn"] = ("base-input and stitch passes: BatchNorm on running statistics, batch "
                              "statistics at the repair point of the block after a switch, running "
                              "statistics from the own chain only")
    if CO_ADAPT:
        extra["co_adapt"] = {"rounds": CO_ADAPT, "description": (
            "after the derivation, every B2 variant trains on for half the steps with every "
            "other variant (previous round, frozen) as a stitch partner")}
    if derivation == "b2":
        manifest["derivation"].update(extra)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"{task}: done in {time.time() - t0:.0f}s")
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/zoo")
    ap.add_argument("--tasks", nargs="*", default=tasks.ORDER, choices=tasks.ORDER)
    ap.add_argument("--derivation", default="b2", choices=["b2", "plain"])
    ap.add_argument("--cache", default="out/zoo-cache")
    ap.add_argument("--quick", action="store_true", help="smoke test, not a zoo")
    ap.add_argument("--lam", type=float, default=1.0, help="B2 distillation weight")
    ap.add_argument("--b2-own-stats", action="store_true",
                    help="B2 without BatchNorm running-stat updates from the base-input passes")
    ap.add_argument("--ft-steps", type=int, default=0, help="fine-tuning steps (overrides the task's)")
    ap.add_argument("--ft-steps-sparse", type=int, default=0,
                    help="fine-tuning steps of the >= 90 %% variants (overrides the task's)")
    ap.add_argument("--block-lam", default="",
                    help="B2 per-cut-point distillation weights, comma separated (default all 1)")
    ap.add_argument("--ce-stitch", type=float, default=0.0,
                    help="B2 weight of the cross-entropy on random variant/base block stitches")
    ap.add_argument("--stitch-pool", action="store_true",
                    help="--ce-stitch stitches also draw blocks from the variants derived before")
    ap.add_argument("--pool-weak-first", action="store_true",
                    help="with --stitch-pool: derive the sparsest variants first")
    ap.add_argument("--stitch-bn", action="store_true",
                    help="B2's base-input and stitch passes normalise as a repaired stitch does "
                         "at inference (running statistics; batch statistics at the repair point "
                         "after a switch)")
    ap.add_argument("--co-adapt", type=int, default=0,
                    help="rounds after the derivation in which every B2 variant trains on (half "
                         "the steps) with all the others as stitch partners")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (1 lets two builds share a 2-core machine)")
    a = ap.parse_args()
    global LAMBDA_DEFAULT, OWN_STATS, FT_STEPS, FT_STEPS_SPARSE, CLI_B2
    # B2 options given here win over the task's `b2` defaults in tasks.py (set_b2_options)
    CLI_B2 = dict(block_lam=[float(w) for w in a.block_lam.split(",")] if a.block_lam else None,
                  ce_stitch=a.ce_stitch or None, stitch_pool=a.stitch_pool or None,
                  pool_weak_first=a.pool_weak_first or None, stitch_bn=a.stitch_bn or None,
                  co_adapt=a.co_adapt or None)
    FT_STEPS, FT_STEPS_SPARSE = a.ft_steps, a.ft_steps_sparse
    LAMBDA_DEFAULT = a.lam
    OWN_STATS = a.b2_own_stats
    if a.quick:
        global QUICK_STEPS, STITCH_SAMPLE
        QUICK_STEPS, STITCH_SAMPLE = 5, 12
        bc.QUICK_BASE_STEPS = 20
    torch.set_num_threads(a.threads)
    for t in a.tasks:
        build_task(t, a.out, a.cache, a.derivation)


if __name__ == "__main__":
    main()
