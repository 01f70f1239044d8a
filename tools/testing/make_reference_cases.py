#!/usr/bin/env python3
"""Writes ONNX test cases and ONNX Runtime's outputs for the C++ numerics tests.

Each case is a folder OUT/<name>/ with model.onnx, input_<i>.npy and expected_<i>.npy (ONNX
Runtime, graph optimisations disabled so QDQ runs literally), plus cases.txt listing them.
Models: torchvision ResNet-18 and MobileNetV2 (random weights), a transformer encoder block
(opset 13 decomposition and opset 17 LayerNormalization), a QDQ INT8 CNN, and single-op models
for the import op set. Deterministic (fixed seeds).
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

torch.manual_seed(0)
RNG = np.random.default_rng(0)


def run_ort(path, inputs):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)


def save_case(out, name, model_path_or_proto, inputs):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    if isinstance(model_path_or_proto, onnx.ModelProto):
        onnx.save(model_path_or_proto, path)
    for i, x in enumerate(inputs):
        np.save(os.path.join(d, f"input_{i}.npy"), x)
    for i, y in enumerate(run_ort(path, inputs)):
        np.save(os.path.join(d, f"expected_{i}.npy"), y.astype(np.float32))
    return name


def randomize_batchnorm(module):
    """Random BN statistics, so deep random-weight models keep non-trivial activations."""
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
    return module


def export_torch(out, name, module, example, opset=13):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, example, os.path.join(d, "model.onnx"), opset_version=opset,
                          input_names=["input"], output_names=["output"], do_constant_folding=True)
    return save_case(out, name, None, [example.numpy()])


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder block (BERT/ViT style), written out so export is plain."""

    def __init__(self, d=64, heads=4, mlp=128):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q = q.reshape(b, t, self.h, self.dh).transpose(1, 2)
        k = k.reshape(b, t, self.h, self.dh).transpose(1, 2)
        v = v.reshape(b, t, self.h, self.dh).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / self.dh ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


def single_op_cases(out):
    names = []

    def case(name, nodes, inputs, inits, outputs, opset=13):
        graph = helper.make_graph(nodes, name,
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, x.shape) for n, x in inputs],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                                  [numpy_helper.from_array(v, k) for k, v in inits.items()])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        names.append(save_case(out, "op_" + name, m, [x for _, x in inputs]))

    f = lambda *s: RNG.standard_normal(s).astype(np.float32)
    x = f(1, 8, 11, 13)
    case("conv_pads_strides_dil", [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 2, 0, 1], strides=[2, 1], dilations=[1, 2])],
         [("x", x)], {"w": f(6, 8, 3, 3), "b": f(6)}, ["y"])
    case("conv_group", [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])], [("x", x)], {"w": f(4, 4, 3, 3)}, ["y"])
    case("conv_depthwise", [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=8, pads=[1, 1, 1, 1], strides=[2, 2])],
         [("x", x)], {"w": f(8, 1, 3, 3), "b": f(8)}, ["y"])
    case("conv_same_upper", [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])], [("x", x)], {"w": f(5, 8, 3, 3)}, ["y"])
    case("conv1d", [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[2, 2], strides=[3])], [("x", f(1, 4, 50))], {"w": f(6, 4, 5), "b": f(6)}, ["y"])
    case("maxpool_ceil", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], [("x", x)], {}, ["y"])
    case("avgpool_pad", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)], [("x", x)], {}, ["y"])
    case("avgpool_nopad", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], strides=[2, 2], pads=[1, 1, 0, 0])], [("x", x)], {}, ["y"])
    case("gap_flatten_gemm", [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["h"]),
                              helper.make_node("Gemm", ["h", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)],
         [("x", x)], {"w": f(10, 8), "b": f(10)}, ["y"])
    case("gemm_transA", [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=1)], [("a", f(7, 3))], {"w": f(7, 5), "c": f(1, 5)}, ["y"])
    case("matmul_batched", [helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", f(2, 3, 4, 5))], {"b": f(3, 5, 6)}, ["y"])
    case("elementwise", [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Mul", ["s", "c"], ["m"]),
                         helper.make_node("Sub", ["m", "b"], ["d"]), helper.make_node("Div", ["d", "c2"], ["q"]),
                         helper.make_node("Sigmoid", ["q"], ["y1"]), helper.make_node("HardSigmoid", ["q"], ["y2"]),
                         helper.make_node("Clip", ["q", "lo", "hi"], ["y3"]), helper.make_node("Erf", ["q"], ["y4"]),
                         helper.make_node("Relu", ["q"], ["y5"]), helper.make_node("Tanh", ["q"], ["y6"])],
         [("a", f(2, 3, 4))], {"b": f(3, 1), "c": f(4), "c2": (np.abs(f(1)) + 1).astype(np.float32),
                                "lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, ["y1", "y2", "y3", "y4", "y5", "y6"])
    case("hardswish14", [helper.make_node("HardSwish", ["a"], ["y"])], [("a", f(2, 9) * 4)], {}, ["y"], opset=14)
    case("softmax_axis1", [helper.make_node("Softmax", ["a"], ["y"], axis=1)], [("a", f(2, 5, 3))], {}, ["y"])
    case("transpose_concat", [helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 1, 3]), helper.make_node("Concat", ["t", "t"], ["y"], axis=3)],
         [("a", f(1, 3, 4, 5))], {}, ["y"])
    case("bn", [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-3)], [("x", x)],
         {"g": f(8), "b": f(8), "m": f(8), "v": (np.abs(f(8)) + 0.5).astype(np.float32)}, ["y"])
    case("conv_bn_fold", [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                          helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"])],
         [("x", x)], {"w": f(4, 8, 3, 3), "g": f(4), "b": f(4), "m": f(4), "v": (np.abs(f(4)) + 0.5).astype(np.float32)}, ["y"])
    case("layernorm17", [helper.make_node("LayerNormalization", ["a", "s", "b"], ["y"], axis=-1, epsilon=1e-5)],
         [("a", f(1, 6, 16))], {"s": f(16), "b": f(16)}, ["y"], opset=17)
    case("reducemean_pow_sqrt", [helper.make_node("ReduceMean", ["a"], ["m"], axes=[-1]), helper.make_node("Sub", ["a", "m"], ["d"]),
                                 helper.make_node("Pow", ["d", "two"], ["p"]), helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
                                 helper.make_node("Sqrt", ["v"], ["y"])],
         [("a", f(2, 3, 8))], {"two": np.array(2.0, np.float32)}, ["y"])
    # Shape computation folded at import: Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    case("reshape_shape_subgraph", [helper.make_node("Shape", ["a"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
                                    helper.make_node("Unsqueeze", ["n", "ax"], ["nu"]), helper.make_node("Concat", ["nu", "m1"], ["shape"], axis=0),
                                    helper.make_node("Reshape", ["a", "shape"], ["y"])],
         [("a", f(2, 3, 4))], {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)}, ["y"])
    xq = f(1, 4, 9, 9)
    case("qdq_conv", [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                      helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
                      helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1])],
         [("x", xq)], {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8),
                       "wq": RNG.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8), "ws": (np.abs(f(6)) * 0.01 + 0.001).astype(np.float32),
                       "wz": np.zeros(6, np.int8), "b": f(6)}, ["y"])
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="skip the torchvision models")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    names = single_op_cases(a.out)
    names.append(export_torch(a.out, "encoder_block_opset13", EncoderBlock(), torch.randn(1, 17, 64)))
    names.append(export_torch(a.out, "encoder_block_opset17", EncoderBlock(), torch.randn(1, 17, 64), opset=17))
    if not a.quick:
        import torchvision
        names.append(export_torch(a.out, "resnet18", randomize_batchnorm(torchvision.models.resnet18()), torch.randn(1, 3, 224, 224)))
        names.append(export_torch(a.out, "mobilenet_v2", randomize_batchnorm(torchvision.models.mobilenet_v2()), torch.randn(1, 3, 224, 224)))
    with open(os.path.join(a.out, "cases.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"wrote {len(names)} cases to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
