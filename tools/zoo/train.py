"""Training, magnitude pruning and stitch-compatible (B2) fine-tuning."""
import copy
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import ConvBN, Lin


def set_seed(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def _cosine(opt, base_lr, step, total, warmup):
    if step < warmup:
        lr = base_lr * (step + 1) / warmup
    else:
        lr = 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr


def accuracy(model, x, y, bs=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return 100.0 * correct / len(x)


def apply_masks(model, masks):
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m)


def _frozen_stats_call(block, x):
    """Runs a block in train mode without updating its BatchNorm running statistics."""
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        return block(x)
    finally:
        for m, mo in zip(bns, saved):
            m.momentum = mo


def _stitch_bn_call(block, x, repaired):
    """Runs a block the way inference runs it inside a stitch: every BatchNorm on its running
    statistics, except, in the block after a switch (`repaired`), the first one (the block's
    repair point) on the batch's statistics: the stitch-time repair (stitch.py) maps that
    tensor onto the variant's native statistics, which is what batch normalisation does when
    the running statistics are the native ones. Running statistics are left alone."""
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.training, m.momentum) for m in bns]
    for k, m in enumerate(bns):
        m.train(repaired and k == 0)
        m.momentum = 0.0
    try:
        return block(x)
    finally:
        for m, (tr, mo) in zip(bns, saved):
            m.train(tr)
            m.momentum = mo


def train(model, x, y, steps, lr, wd=0.0, bs=128, seed=0, masks=None, teacher=None, lam=0.0,
          mix=0.5, warmup_frac=0.05, log=None, own_stats=False, block_lam=None, ce_stitch=0.0,
          partners=(), stitch_bn=False):
    """Trains `model` for `steps` minibatches. With a teacher (the base), adds B2 block-wise
    distillation: sum over cut points of MSE(block out, base block out) / mean(base out^2),
    where each block's input is, with probability `mix`, the BASE's activation instead of
    the variant's own (stitch-aware mixing). `block_lam` (one weight per cut point, None:
    all 1) scales each cut's distillation term, e.g. to hold fragile blocks closer to the
    base. `ce_stitch` > 0 adds that weight x cross-entropy of a random stitch of the
    variant's and the base's blocks (each block from either with probability 0.5; the base
    frozen, gradients flow through it into the variant's earlier blocks); with `partners`
    (already derived variants, frozen) a block not taken from the variant comes from the
    base or one of them, uniformly. `stitch_bn`: the base-input and stitch passes normalise
    as a repaired stitch does at inference (_stitch_bn_call) instead of on batch statistics
    throughout, and leave the running statistics to the own chain. Masks are re-applied
    after every step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    n = len(x)
    perm = torch.randperm(n, generator=g)
    pos = 0
    warmup = int(steps * warmup_frac)
    t0 = time.time()
    if teacher is not None:
        teacher.eval()
        t_req = [p.requires_grad for p in teacher.parameters()]
        if ce_stitch:
            for p in teacher.parameters():
                p.requires_grad_(False)
        others = [teacher] + list(partners)
        p_req = [[p.requires_grad for p in o.parameters()] for o in partners]
        for o in partners:
            o.eval()
            for p in o.parameters():
                p.requires_grad_(False)
    apply_masks(model, masks)
    for step in range(steps):
        model.train()
        if pos + bs > n:
            perm = torch.randperm(n, generator=g)
            pos = 0
        idx = perm[pos:pos + bs]
        pos += bs
        xb, yb = x[idx], y[idx]
        _cosine(opt, lr, step, steps, warmup)
        if teacher is None:
            loss = F.cross_entropy(model(xb), yb)
        else:
            with torch.no_grad():
                acts = [xb]
                for b in teacher.blocks:
                    acts.append(b(acts[-1]))
            # cross-entropy on the variant's own chain; each block's distillation input is
            # the base's activation (probability `mix`) or the variant's own
            nb = len(model.blocks)
            coin = torch.rand(nb, generator=g)
            h = xb
            dl = 0.0
            for i, b in enumerate(model.blocks):
                out = b(h)
                if i < nb - 1:
                    if i > 0 and coin[i] < mix:
                        # own_stats: BN running statistics come from the variant's own chain
                        # only (the committed zoo was built without it: stats of both inputs)
                        if stitch_bn:
                            d_out = _stitch_bn_call(b, acts[i], True)
                        else:
                            d_out = _frozen_stats_call(b, acts[i]) if own_stats else b(acts[i])
                    else:
                        d_out = out
                    term = F.mse_loss(d_out, acts[i + 1]) / acts[i + 1].pow(2).mean().clamp_min(1e-8)
                    dl = dl + (term if block_lam is None else block_lam[i] * term)
                h = out
            loss = F.cross_entropy(h, yb) + lam * dl
            if ce_stitch:
                pick = torch.rand(nb, generator=g)
                hs = xb
                prev = None
                for i, b in enumerate(model.blocks):
                    if pick[i] >= 0.5:
                        # pick in [0.5, 1) -> base, or a partner, uniformly
                        src = others[min(int((pick[i] - 0.5) * 2 * len(others)), len(others) - 1)]
                    else:
                        src = model
                    if stitch_bn:
                        hs = _stitch_bn_call(src.blocks[i], hs, i > 0 and src is not prev)
                    elif src is not model:
                        hs = src.blocks[i](hs)
                    else:   # own_stats: the stitch pass leaves the running statistics alone
                        hs = _frozen_stats_call(b, hs) if own_stats else b(hs)
                    prev = src
                loss = loss + ce_stitch * F.cross_entropy(hs, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        apply_masks(model, masks)
        if log and (step % 200 == 0 or step == steps - 1):
            log(f"    step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    if teacher is not None and ce_stitch:
        for p, r in zip(teacher.parameters(), t_req):
            p.requires_grad_(r)
    if teacher is not None:
        for o, req in zip(partners, p_req):
            for p, r in zip(o.parameters(), req):
                p.requires_grad_(r)
    model.eval()
    return model


# ------------------------------------------------------------------------------ pruning
def prunable_layers(model):
    """(param name, module) of every Conv/Linear weight that is pruned: all but the first
    layer, the classifier and depthwise convolutions."""
    out = []
    for name, mod in model.named_modules():
        if name in (model.first_layer, model.classifier):
            continue
        if isinstance(mod, nn.Conv2d) and not name.endswith("folded"):
            if mod.groups > 1:
                continue
            out.append((name + ".weight", mod))
        elif isinstance(mod, Lin):
            out.append((name + ".weight", mod))
    return out


def effective_weight(model, pname):
    """Weight as it acts after BatchNorm folding (rows scaled by gamma / sqrt(var + eps)):
    magnitudes are ranked on what the exported graph holds."""
    mods = dict(model.named_modules())
    mname = pname[: -len(".weight")]
    w = dict(model.named_parameters())[pname].detach()
    parent = mods.get(mname[: -len(".conv")]) if mname.endswith(".conv") else None
    if isinstance(parent, ConvBN):
        bn = parent.bn
        a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        w = w * a.view(-1, *([1] * (w.dim() - 1)))
    return w


def make_mask(w, kind, sparsity):
    """Mask for weight w viewed as M x K (K = C_in*kh*kw).
    unstructured: per-layer magnitude; block4x1: 4 consecutive output rows at one k share a
    mask bit (L1 score); 2:4: in every 4 consecutive K elements of a row keep the 2 largest.
    Returns (mask like w, realised pattern name) -- layers a pattern cannot tile stay dense."""
    m, k = w.shape[0], w[0].numel()
    a = w.reshape(m, k).abs()
    if kind == "unstructured":
        nprune = int(round(sparsity * a.numel()))
        if nprune == 0:
            return torch.ones_like(w), "dense"
        thr = a.flatten().kthvalue(nprune).values
        mask = (a > thr).float()
        # ties at the threshold: keep exactly numel - nprune
        return mask.reshape(w.shape), "unstructured"
    if kind == "block4x1":
        if m % 4:
            return torch.ones_like(w), "dense"
        s = a.reshape(m // 4, 4, k).sum(1)
        nprune = int(round(sparsity * s.numel()))
        thr = s.flatten().kthvalue(nprune).values
        keep = (s > thr).float()
        return keep.unsqueeze(1).expand(m // 4, 4, k).reshape(w.shape).contiguous(), "block4x1"
    if kind == "2:4":
        if k % 4:
            return torch.ones_like(w), "dense"
        g = a.reshape(m, k // 4, 4)
        idx = g.argsort(dim=2)[:, :, :2]
        mask = torch.ones_like(g)
        mask.scatter_(2, idx, 0.0)
        return mask.reshape(w.shape), "2:4"
    raise ValueError(kind)


def prune(model, kind, sparsity):
    """Returns masks {param name: mask} and applies them to `model` in place."""
    masks = {}
    pattern = {}
    for pname, mod in prunable_layers(model):
        mask, pat = make_mask(effective_weight(model, pname), kind, sparsity)
        masks[pname] = mask
        pattern[pname] = pat
    apply_masks(model, masks)
    return masks, pattern


def clone(model):
    return copy.deepcopy(model)
