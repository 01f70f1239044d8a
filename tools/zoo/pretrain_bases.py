#!/usr/bin/env python3
"""Trains (or loads from cache) every task's base model; build_zoo.py does the same itself,
this only warms the cache."""
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import build_common as bc

torch.set_num_threads(2)
cache = sys.argv[1]
for t in sys.argv[2:]:
    t0 = time.time()
    sp = bc.load_split(t, cache)
    m, acc = bc.base_model(t, sp, cache, print)
    print(t, "base val acc %.2f  %.0fs" % (acc, time.time() - t0), flush=True)
