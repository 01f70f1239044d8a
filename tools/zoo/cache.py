"""Trained weights cached under <cache>/<task>/<key>.pt so reruns skip training."""
import os

import torch


def path(cache_dir, task, key):
    return os.path.join(cache_dir, task, key + ".pt")


def load(cache_dir, task, key, model):
    p = path(cache_dir, task, key)
    if os.path.exists(p):
        model.load_state_dict(torch.load(p))
        model.eval()
        return True
    return False


def save(cache_dir, task, key, model):
    p = path(cache_dir, task, key)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    torch.save(model.state_dict(), p)
