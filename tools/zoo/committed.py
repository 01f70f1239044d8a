"""A committed zoo task as the re-scoring experiments read it (channel_map_check.py,
repair_all_check.py): the manifest, preprocessed test and calibration inputs, per-variant
accuracy and cost, and each variant's blocks cut out of its ONNX file (batch symbolic)."""
import json

import numpy as np
import onnx

import onnxio


class CommittedTask:
    def __init__(self, task, root="models/zoo"):
        self.dir = f"{root}/{task}"
        m = self.manifest = json.load(open(f"{self.dir}/manifest.json"))
        pre = m["input"]["preprocess"]

        def prep(raw):
            return ((raw.astype(np.float32) * pre["scale"] - pre["mean"]) / pre["std"]).astype(np.float32)
        self.xte = prep(np.load(f"{self.dir}/test_x.npy"))
        self.yte = np.load(f"{self.dir}/test_y.npy")
        self.xcal = prep(np.load(f"{self.dir}/calib_x.npy"))
        self.B = len(m["blocks"])
        self.names = ["input"] + [c["name"] for c in m["cut_points"]] + ["logits"]
        self.order = [v["name"] for v in m["variants"]]
        self.vacc = {v["name"]: v["accuracy_pct"] for v in m["variants"]}
        self.vcost = {v["name"]: v["macs"] for v in m["variants"]}
        self.bmacs = {v["name"]: v["block_macs"] for v in m["variants"]}
        # The manifest's sampled stitches (with repair), sorted so consecutive ones share prefixes.
        self.sample = sorted(tuple(s["variants"]) for s in m["stitch_check"]["repair"]["stitches"])

    def blocks(self, variant):
        """The variant's blocks as ModelProtos with a symbolic batch dimension."""
        full = onnx.load(f"{self.dir}/{variant}.onnx")
        return [onnxio.set_batch(onnx.utils.Extractor(full).extract_model([self.names[i]], [self.names[i + 1]]), "N")
                for i in range(self.B)]

    def macs(self, stitch):
        return sum(self.bmacs[v][i] for i, v in enumerate(stitch))
