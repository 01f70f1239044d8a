#!/usr/bin/env python3
"""Writes the committed seed corpora of the JSON fuzz targets (tests/fuzz/corpus/<target>/):
small, valid files cut from the committed formats, so libFuzzer starts from inputs that reach
deep into each parser instead of failing at the first field.
  tools/reliability/make_corpus.py            (rerun after a format changes)"""
import copy
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fuzz/corpus"


def write(target, name, doc):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def trim_manifest(m, keep=2):
    """Keeps every field but only `keep` stitch records / single-swap rows per mode."""
    m = copy.deepcopy(m)
    sc = m.get("stitch_check", {})
    for mode in ("no_repair", "repair"):
        if mode in sc and "stitches" in sc[mode]:
            sc[mode]["stitches"] = sc[mode]["stitches"][:keep]
    for key in ("single_swap", "single_swap_repair"):
        if key in sc:
            sc[key] = dict(list(sc[key].items())[:keep])
    # Variants: the base, those the kept records name, and two more.
    used = {m.get("base")}
    for mode in ("no_repair", "repair"):
        for st in sc.get(mode, {}).get("stitches", []):
            used.update(st.get("variants", []))
    for key in ("single_swap", "single_swap_repair"):
        used.update(sc.get(key, {}).keys())
    extra = [v["name"] for v in m.get("variants", []) if v["name"] not in used][:2]
    m["variants"] = [v for v in m.get("variants", []) if v["name"] in used or v["name"] in extra]
    if "output" in m and "classes" in m["output"]:
        m["output"]["classes"] = m["output"]["classes"][:4]
    return m


def main():
    for p in sorted((ROOT / "models/zoo").glob("*/manifest.json")):
        write("manifest", p.parent.name + ".json", trim_manifest(json.loads(p.read_text())))
    for p in sorted((ROOT / "bench/e2e/scenarios").glob("*.json")):
        write("scenario", p.name, json.loads(p.read_text()))
    # A profile table in estimator::to_json's layout: 2 processors, a task of 2 blocks x 2 variants.
    lat = [[[[1.0, 1.2, 0.9, 15], [2.0, 2.4, 1.8, 15]], [[0.5, 0.6, 0.45, 15], [1.1, 1.3, 1.0, 15]]],
           [[[0.8, 0.9, 0.7, 15], [1.6, 1.9, 1.5, 15]], [[0.4, 0.5, 0.35, 15], [0.9, 1.0, 0.8, 15]]]]
    write("profile_table", "small.json", {
        "schema_version": 1, "profiling_seconds": 1.5,
        "processors": [{"name": "cpu0", "kind": "cpu", "backend": "reference", "device": "host", "threads": 1},
                       {"name": "gpu0", "kind": "gpu", "backend": "opencl", "device": "pocl", "threads": 1}],
        "tasks": [{"task": "t0", "model_hash": "0123456789abcdef", "bytes": [[1000, 400], [2000, 800]],
                   "transfer_ms": [0.05], "repair_ms": [0.0, 0.01], "repair_bytes": [0, 256], "latency": lat}]})
    sims = sorted((ROOT / "sim/profiles").glob("*.json"))
    for p in sims:
        write("sim_profile", p.name, json.loads(p.read_text()))
    # A hand-written SoC (sim::parse_profile's fields), so the corpus exists before sim/profiles does.
    proc = {"name": "cpu", "kind": "cpu", "peak_gflops": {"f32": 100, "f16": 0, "int8": 200}, "dtypes": ["f32", "int8"],
            "compute_efficiency": 0.6, "memory_bandwidth_gbps": 50, "launch_overhead_ms": 0.01, "kernel_overhead_ms": 0.002,
            "sparse_speedup": {"unstructured": {"sparsity": [0.5, 0.9], "speedup": [1.2, 3.0]},
                               "block": {"sparsity": [0.7], "speedup": [2.0]}},
            "ops": "all", "power_w": {"idle": 1, "active": 5}}
    npu = {"name": "npu", "kind": "npu", "peak_gflops": {"f32": 0, "f16": 0, "int8": 4000}, "dtypes": ["int8"],
           "memory_bandwidth_gbps": 40, "launch_overhead_ms": 0.1, "ops": ["Conv", "Relu", "Add"],
           "power_w": {"idle": 0.2, "active": 2}}
    write("sim_profile", "tiny-soc.json", {
        "schema_version": 1, "name": "tiny-soc", "description": "fuzz seed", "fitted": False, "sources": ["hand-written"],
        "soc": {"memory_bandwidth_gbps": 60, "memory_capacity_bytes": 8e9, "dram_pj_per_byte": 20},
        "transfer": {"latency_ms": 0.05, "bandwidth_gbps": 20}, "processors": [proc, npu]})


if __name__ == "__main__":
    main()
