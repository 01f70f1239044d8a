#!/usr/bin/env python3
"""Runs exported stitched variants in ONNX Runtime and compares with the C++ StitchedModel.

The cases are written by tests/zoo/export_test.cpp (CASES/cases.txt lists "<name> <samples>";
each CASES/<name>/ holds model.onnx, input_<i>.npy and expected_<i>.npy). With --writer, that
test binary is run first to (re)write them into CASES. Exits 77 (ctest: skipped) when onnxruntime is
missing, 1 on any mismatch above the tolerance.
"""
import argparse
import os
import subprocess
import sys

TOL = 1e-4  # max |ort - cpp| / max(1, |cpp|), the same bound the C++ test applies


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--writer", help="test binary that writes the cases (run first)")
    args = ap.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"SKIP: {sys.executable} cannot import onnxruntime/numpy ({e}); run scripts/setup")
        return 77
    if args.writer:
        env = dict(os.environ, SPARSELOOM_EXPORT_CASES=os.path.abspath(args.cases))
        subprocess.run([args.writer, "--test-case=Export.Stitched.ReferenceRunsTheExportLikeStitchedModel"],
                       check=True, env=env)
    listing = os.path.join(args.cases, "cases.txt")
    if not os.path.exists(listing):
        print(f"error: {listing} missing: run the C++ export test first")
        return 1
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    failed, count = 0, 0
    with open(listing) as f:
        for line in f:
            if not line.strip():
                continue
            name, samples = line.split()
            d = os.path.join(args.cases, name)
            sess = ort.InferenceSession(os.path.join(d, "model.onnx"), so, providers=["CPUExecutionProvider"])
            worst = 0.0
            for i in range(int(samples)):
                x = np.load(os.path.join(d, f"input_{i}.npy"))
                want = np.load(os.path.join(d, f"expected_{i}.npy"))
                got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
                if got.shape != want.shape:
                    print(f"FAIL {name}: output shape {got.shape}, C++ {want.shape}")
                    failed += 1
                    break
                worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
            ok = worst <= TOL
            failed += not ok
            count += 1
            print(f"{'ok  ' if ok else 'FAIL'} {name}: max rel. diff ORT vs C++ {worst:.2e}")
    print(f"{count - failed}/{count} exported stitches match in ONNX Runtime {ort.__version__}")
    return 1 if failed or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
