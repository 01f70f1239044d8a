"""Block-structured models for the zoo tasks.

Every model is a `BlockNet`: a list of blocks run in order; exactly one tensor crosses each
boundary between blocks (residual connections stay inside a block), so the boundaries are
the cut points where variants can be stitched. Shapes only use -1 for the batch dimension,
so one exported graph runs at batch 1 (committed) and batched (evaluation).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Lin(nn.Linear):
    """nn.Linear that trains through a 1x1 convolution (Debian's torch routes Linear to the
    reference BLAS, ~10x slower than oneDNN's convolution here) and exports as Gemm."""

    def forward(self, x):
        if torch.onnx.is_in_onnx_export() or x.dim() != 2:
            return F.linear(x, self.weight, self.bias)
        r, k = x.shape
        y = F.conv2d(x.t().reshape(1, k, r, 1), self.weight.view(self.out_features, k, 1, 1),
                     self.bias)
        return y.reshape(self.out_features, r).t()


class ConvBN(nn.Module):
    """Conv2d (no bias) + BatchNorm2d; `fold()` replaces both by one biased Conv2d for export."""

    def __init__(self, cin, cout, k, stride=1, pad=None, groups=1):
        super().__init__()
        k = k if isinstance(k, tuple) else (k, k)
        stride = stride if isinstance(stride, tuple) else (stride, stride)
        pad = tuple((kk - 1) // 2 for kk in k) if pad is None else pad
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.folded = None

    def forward(self, x):
        if self.folded is not None:
            return self.folded(x)
        return self.bn(self.conv(x))

    def fold(self):
        c, bn = self.conv, self.bn
        f = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                      groups=c.groups, bias=True)
        a = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        f.weight.data = c.weight.detach() * a.view(-1, 1, 1, 1)
        f.bias.data = bn.bias.detach() - bn.running_mean * a
        self.folded = f


class BlockNet(nn.Module):
    def __init__(self, blocks, first_layer, classifier):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.first_layer = first_layer   # module path (not pruned)
        self.classifier = classifier     # module path (not pruned)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class Seq(nn.Sequential):
    """nn.Sequential whose first ConvBN is the block's repair point (see manifest)."""


# ------------------------------------------------------------------------- ResNet-style
class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = ConvBN(cin, cout, 3, stride)
        self.c2 = ConvBN(cout, cout, 3, 1)
        self.sc = ConvBN(cin, cout, 1, stride, 0) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = self.c2(y)
        return F.relu(y + (self.sc(x) if self.sc is not None else x))


class Head(nn.Module):
    def __init__(self, cin, ncls):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = Lin(cin, ncls)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class Stem(nn.Module):
    def __init__(self, cin, cout, stride=1, act="relu"):
        super().__init__()
        self.c1 = ConvBN(cin, cout, 3, stride)
        self.act = act

    def forward(self, x):
        y = self.c1(x)
        return F.relu6(y) if self.act == "relu6" else F.relu(y)


def fmnist_resnet():
    blocks = [Stem(1, 24), Basic(24, 32, 2), Basic(32, 64, 2), Basic(64, 64, 1), Head(64, 10)]
    return BlockNet(blocks, "blocks.0.c1.conv", "blocks.4.fc")


# ------------------------------------------------------------------- MobileNetV2-style
class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        h = cin * t
        self.c1 = ConvBN(cin, h, 1, 1, 0)
        self.dw = ConvBN(h, h, 3, stride, 1, groups=h)
        self.c3 = ConvBN(h, cout, 1, 1, 0)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.c3(F.relu6(self.dw(F.relu6(self.c1(x)))))
        return x + y if self.res else y


class MBStage(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for l in self.layers:
            x = l(x)
        return x


class MBStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = ConvBN(1, 16, 3, 2)        # 28 -> 14
        self.ir = InvRes(16, 24, 1, 3)

    def forward(self, x):
        return self.ir(F.relu6(self.c1(x)))


class MBLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.ir = InvRes(48, 48, 1, 3)
        self.c1x1 = ConvBN(48, 128, 1, 1, 0)

    def forward(self, x):
        return F.relu6(self.c1x1(self.ir(x)))


def fmnist_mobilenet():
    blocks = [MBStem(),
              MBStage([InvRes(24, 24, 1, 3), InvRes(24, 32, 2, 3)]),   # 14 -> 7
              MBStage([InvRes(32, 32, 1, 3), InvRes(32, 48, 1, 3)]),
              MBLast(), Head(128, 10)]
    return BlockNet(blocks, "blocks.0.c1.conv", "blocks.4.fc")


# --------------------------------------------------------------------------- digits CNN
class ConvReLU(nn.Module):
    def __init__(self, cin, cout, k=3, stride=1):
        super().__init__()
        self.c1 = ConvBN(cin, cout, k, stride)

    def forward(self, x):
        return F.relu(self.c1(x))


class DigitsStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = ConvBN(1, 32, 3)
        self.c2 = ConvBN(32, 32, 3)

    def forward(self, x):
        return F.relu(self.c2(F.relu(self.c1(x))))


def digits_cnn():
    blocks = [DigitsStem(), ConvReLU(32, 64, 3, 2), ConvReLU(64, 64, 3), ConvReLU(64, 128, 3, 2),
              Head(128, 10)]
    return BlockNet(blocks, "blocks.0.c1.conv", "blocks.4.fc")


# ------------------------------------------------------------------- raw-audio 1-D CNN
class AudioStem(nn.Module):
    """(N,1,L) int16-scaled audio -> 2-D (N,C,1,L') feature maps; 1-D convs as (1,k) Conv2d."""

    def __init__(self, length):
        super().__init__()
        self.length = length
        self.c1 = ConvBN(1, 16, (1, 80), (1, 4), (0, 38))
        self.c2 = ConvBN(16, 32, (1, 3))

    def forward(self, x):
        x = x.reshape(-1, 1, 1, self.length)
        x = F.max_pool2d(F.relu(self.c1(x)), (1, 4))
        return F.max_pool2d(F.relu(self.c2(x)), (1, 4))


class AudioConv(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.c1 = ConvBN(cin, cout, (1, 3))
        self.c2 = ConvBN(cout, cout, (1, 3))
        self.pool = pool

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return F.max_pool2d(x, (1, self.pool)) if self.pool > 1 else x


def speech_kws(length=8000):
    blocks = [AudioStem(length), AudioConv(32, 48, 4), AudioConv(48, 64, 2), AudioConv(64, 96, 1),
              Head(96, 10)]
    return BlockNet(blocks, "blocks.0.c1.conv", "blocks.4.fc")


# ---------------------------------------------------------------------------- tiny ViT
class EncoderLayer(nn.Module):
    def __init__(self, d, heads, mlp, tokens):
        super().__init__()
        self.d, self.h, self.t = d, heads, tokens
        self.ln1 = nn.LayerNorm(d)
        self.q = Lin(d, d)
        self.k = Lin(d, d)
        self.v = Lin(d, d)
        self.proj = Lin(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = Lin(d, mlp)
        self.fc2 = Lin(mlp, d)

    def forward(self, x):
        d, h, t = self.d, self.h, self.t
        dh = d // h
        z = self.ln1(x).reshape(-1, d)                                 # (N*T, d)
        q = self.q(z).reshape(-1, t, h, dh).transpose(1, 2)
        k = self.k(z).reshape(-1, t, h, dh).permute(0, 2, 3, 1)
        v = self.v(z).reshape(-1, t, h, dh).transpose(1, 2)
        a = torch.softmax(torch.matmul(q, k) * (1.0 / math.sqrt(dh)), dim=-1)
        o = torch.matmul(a, v).transpose(1, 2).reshape(-1, d)
        x = x + self.proj(o).reshape(-1, t, d)
        y = F.gelu(self.fc1(self.ln2(x).reshape(-1, d)))
        return x + self.fc2(y).reshape(-1, t, d)


class PatchEmbed(nn.Module):
    def __init__(self, d, patch, tokens):
        super().__init__()
        self.proj = nn.Conv2d(1, d, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d))
        nn.init.normal_(self.pos, std=0.02)
        self.d, self.t = d, tokens

    def forward(self, x):
        x = self.proj(x).reshape(-1, self.d, self.t).transpose(1, 2)
        return x + self.pos


class VitFirst(nn.Module):
    def __init__(self, d, heads, mlp, tokens):
        super().__init__()
        self.embed = PatchEmbed(d, 7, tokens)
        self.layer = EncoderLayer(d, heads, mlp, tokens)

    def forward(self, x):
        return self.layer(self.embed(x))


class VitLayer(nn.Module):
    def __init__(self, d, heads, mlp, tokens):
        super().__init__()
        self.layer = EncoderLayer(d, heads, mlp, tokens)

    def forward(self, x):
        return self.layer(x)


class VitLast(nn.Module):
    def __init__(self, d, heads, mlp, tokens, ncls):
        super().__init__()
        self.layer = EncoderLayer(d, heads, mlp, tokens)
        self.ln = nn.LayerNorm(d)
        self.fc = Lin(d, ncls)

    def forward(self, x):
        x = self.ln(self.layer(x))
        return self.fc(x.mean(dim=1))  # (N, d): 2-D, exports as Gemm


def fmnist_vit(d=64, heads=4, mlp=128, tokens=16):
    blocks = [VitFirst(d, heads, mlp, tokens), VitLayer(d, heads, mlp, tokens),
              VitLayer(d, heads, mlp, tokens), VitLast(d, heads, mlp, tokens, 10)]
    return BlockNet(blocks, "blocks.0.embed.proj", "blocks.3.fc")
