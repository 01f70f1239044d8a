"""Shared steps of the pipeline: data tensors, base training with caching."""
import numpy as np
import torch

import cache
import data
import tasks
import train


def load_split(task, cache_dir):
    return tasks.TASKS[task]["split"](cache_dir)


def tensors(task, raw, y=None):
    x = torch.from_numpy(data.preprocess(raw, tasks.TASKS[task]["pre"]))
    return (x, torch.from_numpy(y)) if y is not None else x


QUICK_BASE_STEPS = 0   # smoke tests only


def base_model(task, sp, cache_dir, log):
    cfg = tasks.TASKS[task]
    train.set_seed(0)
    m = cfg["model"]()
    xval, yval = tensors(task, sp.xval, sp.yval)
    if not cache.load(cache_dir, task, "base", m):
        xtr, ytr = tensors(task, sp.xtr, sp.ytr)
        steps = QUICK_BASE_STEPS or cfg["base_epochs"] * len(xtr) // 128
        log(f"  training base of {task}: {steps} steps")
        train.train(m, xtr, ytr, steps, cfg["lr"], cfg["wd"], seed=0, log=log)
        cache.save(cache_dir, task, "base", m)
    return m, train.accuracy(m, xval, yval)
