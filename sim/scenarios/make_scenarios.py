#!/usr/bin/env python3
"""Writes the simulator's scenarios (sim/scenarios/sim-*.json): a driving-like one (high-rate,
tight-deadline perception tasks marked critical), an AR-like mix of 8 tasks with an energy
limit, and the scaling set (32 tasks; 10x the request rate). Deadlines are Band's slo_scale x
the task's base variant on its slowest processor, so one file fits every profile."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PROCS = [{"name": n, "backend": "reference", "kind": n} for n in ("cpu", "gpu", "npu")]


def scenario(name, description, tasks, duration_s=10, seed=11, changes=None):
    s = {"schema_version": 1, "name": name, "description": description, "zoo": "models/zoo",
         "duration_s": duration_s, "seed": seed, "processors": PROCS, "tasks": tasks}
    if changes:
        s["slo_changes"] = changes
    return s


def task(t, rate, scale, floor, crit=1, energy=None):
    d = {"task": t, "rate_rps": rate, "slo_scale": scale, "min_accuracy_pct": floor, "criticality": crit}
    if energy is not None:
        d["max_energy_j"] = energy
    return d


# AR mix (the paper's motivating application): image, digits (text), speech and a ViT scene
# task, each twice (two cameras / two audio streams), at camera and audio frame rates.
AR = [task("fmnist_resnet", 60, 3, 90, 2), task("digits_cnn", 30, 3, 97), task("speech_kws", 50, 4, 95, 2, 0.002),
      task("fmnist_vit", 30, 4, 83), task("fmnist_resnet", 30, 4, 89), task("digits_cnn", 60, 3, 95),
      task("speech_kws", 25, 5, 90), task("fmnist_vit", 15, 5, 82)]


def scaled(tasks, rate=1.0, copies=1):
    out = []
    for _ in range(copies):
        for t in tasks:
            u = dict(t)
            u["rate_rps"] = t["rate_rps"] * rate
            out.append(u)
    return out


def powered(tasks, i, watts, window_s):
    out = [dict(t) for t in tasks]
    out[i]["max_power_w"] = watts
    out[i]["power_window_s"] = window_s
    return out


files = {
    "sim-driving.json": scenario(
        "sim-driving",
        "Driving-like: per-object classification of camera crops (objects, traffic-sign digits) at high rate with "
        "tight deadlines, marked critical; driver voice commands and a cabin-monitoring ViT are not critical.",
        [task("fmnist_resnet", 3000, 1.5, 90, 5), task("digits_cnn", 3000, 1.5, 97, 5),
         task("speech_kws", 200, 4, 95, 1), task("fmnist_vit", 300, 3, 83, 1)],
        duration_s=5),
    "sim-ar-8.json": scenario(
        "sim-ar-8", "AR-like mix of 8 tasks at camera/audio frame rates; one speech stream has an energy limit "
        "(2 mJ per request); its accuracy floor rises mid-run.", AR,
        changes=[{"at_s": 5, "task": 1, "min_accuracy_pct": 98.0}]),
    "sim-ar-8-x10.json": scenario("sim-ar-8-x10", "sim-ar-8 at 10x the request rate.", scaled(AR, 10)),
    "sim-ar-8-power.json": scenario(
        "sim-ar-8-power", "sim-ar-8 with a power limit on the first scene ViT: 0.6 W averaged over any 1 s window "
        "(unconstrained it runs on the GPU at ~1 W on Orin AGX).", powered(AR, 3, 0.6, 1.0),
        changes=[{"at_s": 5, "task": 1, "min_accuracy_pct": 98.0}]),
    "sim-scale-32.json": scenario("sim-scale-32", "The AR mix replicated to 32 tasks.", scaled(AR, 1, 4)),
    "sim-scale-32-x10.json": scenario("sim-scale-32-x10", "32 tasks at 10x the request rate.", scaled(AR, 10, 4)),
}
for name, s in files.items():
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(s, f, indent=1)
        f.write("\n")
print("wrote", ", ".join(files))
