"""ONNX export of block-structured models, block graphs, QDQ (INT8), merging, checks.

Each block is exported on its own (BatchNorm folded, batch dimension symbolic) and its
tensor names are prefixed "b<i>." except its boundary tensors, which get the cut names
("input", "cut0", ..., "logits"). The first BN-folded Conv output of block i is renamed
"repair<i>". Blocks are then merged into one graph whose batch dimension is fixed to 1.
"""
import copy
import io

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from models import ConvBN

OPSET = 13
ALLOWED_OPS = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid",
               "HardSwish", "Softmax", "BatchNormalization", "MaxPool", "AveragePool",
               "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat", "ReduceMean",
               "Pow", "Sqrt", "Erf", "Constant", "Shape", "Unsqueeze", "QuantizeLinear",
               "DequantizeLinear"}


def folded_copy(block):
    b = copy.deepcopy(block).eval()
    for m in b.modules():
        if isinstance(m, ConvBN):
            m.fold()
    return b


def first_convbn(block):
    """Parameter name (inside the block) of the first BN-folded conv's weight, or None."""
    for name, m in block.named_modules():
        if isinstance(m, ConvBN):
            return (name + "." if name else "") + "folded.weight"
    return None


def export_block(block, in_shape, index, in_name, out_name, repair=True):
    """Exports one block as an ONNX ModelProto with symbolic batch; returns (model, repair
    tensor name or None)."""
    b = folded_copy(block)
    x = torch.zeros(2, *in_shape[1:])
    f = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(b, x, f, opset_version=OPSET, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, do_constant_folding=True)
    m = onnx.load_from_string(f.getvalue())
    g = m.graph
    _drop_identities(g)
    pre = f"b{index}."
    rw = first_convbn(block) if repair else None
    rep_name = None
    mapping = {"x": in_name, "y": out_name}
    if rw is not None:
        for n in g.node:
            if n.op_type == "Conv" and n.input[1] == rw:
                rep_name = f"repair{index}"
                mapping[n.output[0]] = rep_name
                break
        assert rep_name is not None, f"repair conv {rw} not found in block {index}"

    def ren(t):
        if t == "":
            return t
        return mapping.get(t, pre + t)

    for n in g.node:
        n.name = pre + (n.name or n.op_type)
        for i, t in enumerate(n.input):
            n.input[i] = ren(t)
        for i, t in enumerate(n.output):
            n.output[i] = ren(t)
    for t in g.initializer:
        t.name = ren(t.name)
    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = ren(v.name)
    # drop initializers from graph inputs (older exporters list them)
    inits = {t.name for t in g.initializer}
    keep = [v for v in g.input if v.name not in inits]
    del g.input[:]
    g.input.extend(keep)
    del g.value_info[:]
    return m, rep_name


def _drop_identities(g):
    """The exporter deduplicates equal initializers through Identity nodes: give each
    consumer its own copy instead (Identity is outside the op contract)."""
    inits = {t.name: t for t in g.initializer}
    for n in [n for n in g.node if n.op_type == "Identity"]:
        src, dst = n.input[0], n.output[0]
        if src in inits:
            t = copy.deepcopy(inits[src])
            t.name = dst
            g.initializer.append(t)
        else:
            for c in g.node:
                for i, x in enumerate(c.input):
                    if x == dst:
                        c.input[i] = src
            for o in g.output:
                assert o.name != dst, "Identity feeding a graph output"
        g.node.remove(n)


def set_batch(model, batch):
    """Copy of model with the batch dimension of its input/output set (int or symbol)."""
    m = copy.deepcopy(model)
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        if isinstance(batch, int):
            d.ClearField("dim_param")
            d.dim_value = batch
        else:
            d.ClearField("dim_value")
            d.dim_param = batch
    del m.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(m)


def merge_blocks(blocks, name):
    """One graph from block graphs (each consuming the previous one's output)."""
    nodes, inits = [], []
    for b in blocks:
        nodes.extend(copy.deepcopy(b.graph.node))
        inits.extend(copy.deepcopy(b.graph.initializer))
    g = helper.make_graph(nodes, name, [copy.deepcopy(blocks[0].graph.input[0])],
                          [copy.deepcopy(blocks[-1].graph.output[0])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="sparseloom-zoo")
    m.ir_version = 7
    m = set_batch(m, 1)
    onnx.checker.check_model(m)
    return m


# ---------------------------------------------------------------------------- sessions
def session(model):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def with_outputs(model, names):
    """Copy of model that also returns the named intermediate tensors (float)."""
    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    return m


def with_repair_inputs(model, rep_name, channels):
    """Eval form of a block: the repair tensor becomes raw * rep_a + rep_c (rep_a, rep_c are
    graph inputs of shape [1,C,1,1]; a=1, c=0 is the identity) and the raw conv output is an
    extra graph output, so a stitch can measure and repair it batched."""
    m = copy.deepcopy(model)
    g = m.graph
    raw = rep_name + "_raw"
    for n in g.node:
        for i, t in enumerate(n.output):
            if t == rep_name:
                n.output[i] = raw
    idx = [i for i, n in enumerate(g.node) if raw in n.output][0]
    mul = helper.make_node("Mul", [raw, "rep_a"], [rep_name + "_scaled"], name="rep_mul")
    add = helper.make_node("Add", [rep_name + "_scaled", "rep_c"], [rep_name], name="rep_add")
    g.node.insert(idx + 1, mul)
    g.node.insert(idx + 2, add)
    g.input.append(helper.make_tensor_value_info("rep_a", TensorProto.FLOAT, [1, channels, 1, 1]))
    g.input.append(helper.make_tensor_value_info("rep_c", TensorProto.FLOAT, [1, channels, 1, 1]))
    g.output.append(helper.make_tensor_value_info(raw, TensorProto.FLOAT, None))
    return m


def run_batched(sess, feeds, bs=500):
    """Runs a session over the batch dimension of the first feed in chunks; extra feeds
    without a batch dimension are passed as they are. Returns list of outputs."""
    first = list(feeds)[0]
    n = feeds[first].shape[0]
    outs = None
    for i in range(0, n, bs):
        f = {k: (v[i:i + bs] if k == first else v) for k, v in feeds.items()}
        r = sess.run(None, f)
        outs = [[x] for x in r] if outs is None else [o + [x] for o, x in zip(outs, r)]
    return [np.concatenate(o) for o in outs]


# ---------------------------------------------------------------------------------- QDQ
def _act_inputs(g):
    inits = {t.name for t in g.initializer}
    acts = []
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            cand = [n.input[0]]
        elif n.op_type == "MatMul":
            cand = list(n.input)
        else:
            continue
        for t in cand:
            if t not in inits and t not in acts:
                acts.append(t)
    return acts


def quantize_block(model, calib_feeds):
    """QDQ copy of a float block graph: weights of every Conv/Gemm become int8 initializers
    with per-output-channel symmetric scales (DequantizeLinear axis 0, zero point 0);
    every activation input of a Conv/Gemm/MatMul gets a per-tensor static uint8
    QuantizeLinear/DequantizeLinear pair (asymmetric, zero point from the calibration
    min/max, range widened to include 0). Returns (model, {tensor: (scale, zero point)})."""
    g0 = model.graph
    acts = _act_inputs(g0)
    probe = session(with_outputs(model, acts))
    names = [o.name for o in probe.get_outputs()]
    vals = run_batched(probe, calib_feeds)
    ranges = {}
    for nm, v in zip(names, vals):
        if nm in acts:
            ranges[nm] = (min(0.0, float(v.min())), max(0.0, float(v.max())))
    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, new_inits = [], []
    qparams = {}
    for a in acts:
        lo, hi = ranges[a]
        s = max((hi - lo) / 255.0, 1e-8)
        zp = int(np.clip(np.round(-lo / s), 0, 255))
        qparams[a] = (s, zp)
        base = a + "_qdq"
        new_inits += [numpy_helper.from_array(np.array(s, np.float32), base + ".scale"),
                      numpy_helper.from_array(np.array(zp, np.uint8), base + ".zp")]
        new_nodes.append((a, [
            helper.make_node("QuantizeLinear", [a, base + ".scale", base + ".zp"], [base + ".q"],
                             name=base + ".Q"),
            helper.make_node("DequantizeLinear", [base + ".q", base + ".scale", base + ".zp"],
                             [base + ".dq"], name=base + ".DQ")]))
    wq = {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm") and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]])
            if n.op_type == "Gemm":
                tb = [a.i for a in n.attribute if a.name == "transB"]
                assert tb and tb[0] == 1, "Gemm weights expected as (M, K) with transB=1"
            mx = np.abs(w.reshape(w.shape[0], -1)).max(1)
            sc = np.where(mx > 0, mx / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.round(w / sc.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
            nm = n.input[1]
            wq[nm] = (q, sc)
    # rewrite
    dq_nodes = []
    for nm, (q, sc) in wq.items():
        g.initializer.remove(inits[nm])
        new_inits += [numpy_helper.from_array(q, nm + ".int8"),
                      numpy_helper.from_array(sc, nm + ".scale"),
                      numpy_helper.from_array(np.zeros(sc.shape, np.int8), nm + ".zp")]
        dq_nodes.append(helper.make_node("DequantizeLinear", [nm + ".int8", nm + ".scale", nm + ".zp"],
                                         [nm], name=nm + ".DQ", axis=0))
    rename = {a: a + "_qdq.dq" for a in acts}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            for i, t in enumerate(n.input):
                if t in rename and (i == 0 or n.op_type == "MatMul"):
                    n.input[i] = rename[t]
    # insert Q/DQ right after the producer of each activation (or at the top for inputs)
    nodes = list(g.node)
    out = list(dq_nodes)
    pending = dict(new_nodes)
    graph_inputs = {v.name for v in g.input}
    for a in list(pending):
        if a in graph_inputs:
            out += pending.pop(a)
    for n in nodes:
        out.append(n)
        for t in n.output:
            if t in pending:
                out += pending.pop(t)
    assert not pending, pending
    del g.node[:]
    g.node.extend(out)
    g.initializer.extend(new_inits)
    return m, qparams


def check_ops(model):
    bad = {n.op_type for n in model.graph.node} - ALLOWED_OPS
    assert not bad, f"ops outside the contract: {bad}"
