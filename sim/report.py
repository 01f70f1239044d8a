#!/usr/bin/env python3
"""Simulator results: bench/results/sim-validation.json from a real and a simulated run of the
same scenario (per policy and metric: real, simulated, rel_error, within target), the plot
bench/results/sim-results.png from bench/results/sim-<scenario>-<profile>.json (scenario names start with sim-), and the
markdown tables for docs/results.md (printed)."""
import json
import os
import sys

R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "results")
METRICS = ["slo_violation_rate", "served_rps", "goodput_rps", "p99_ms"]


def load(name):
    with open(os.path.join(R, name)) as f:
        return json.load(f)


def compare(real, sim):
    """Per policy and metric: real, simulated, errors, within target; and how many are."""
    rows = []
    sp = {p["policy"]: p for p in sim["policies"]}
    n_ok = n = 0
    for p in real["policies"]:
        s = sp[p["policy"]]
        row = {"policy": p["policy"]}
        for m in METRICS:
            r, v = p[m], s[m]
            rel = abs(v - r) / abs(r) if r else (0.0 if v == 0 else None)
            ok = abs(v - r) <= 0.02 if m == "slo_violation_rate" else (rel is not None and rel <= 0.10)
            if m == "slo_violation_rate" and rel is not None:
                ok = ok or rel <= 0.10
            row[m] = {"real": r, "simulated": v, "rel_error": rel, "abs_error": abs(v - r), "within_target": ok}
            n_ok += ok
            n += 1
        rows.append(row)
    return rows, f"{n_ok} of {n}"


def validation(real_file, sim_file, machine_note, out_name="sim-validation.json", real2_file=None):
    real, sim = load(real_file), load(sim_file)
    out = {"scenario": real["scenario"], "real_run": real_file, "simulated_run": sim_file,
           "profile": sim.get("profile"), "machine": real["machine"], "note": machine_note,
           "target": "within 10 % relative, or 2 pp absolute for violation rates"}
    out["policies"], out["within_target"] = compare(real, sim)
    out["not_within_target"] = [f"{r['policy']}: {m}" for r in out["policies"] for m in METRICS if not r[m]["within_target"]]
    if real2_file:  # the machine's own run-to-run noise, and the simulator against the second run
        real2 = load(real2_file)
        rr, rr_n = compare(real, real2)
        sr, sr_n = compare(real2, sim)
        out["real_vs_real"] = {"second_run": real2_file, "within_target": rr_n, "policies": rr}
        out["second_real_vs_simulated"] = {"within_target": sr_n, "policies": sr}
        print(f"two real runs agree on {rr_n}; the simulator and the second real run on {sr_n}")
    out["engine_overhead_modelled"] = bool(sim["policies"][0].get("engine_overhead_modelled", False))
    out["rapl"] = real.get("rapl", "not recorded")
    with open(os.path.join(R, out_name), "w") as f:
        json.dump(out, f, indent=1)
    print(f"validation: {out['within_target']} (policy, metric) pairs within target")
    print("| policy | viol. real / sim | served/s real / sim | p99 ms real / sim (rel. err.) |")
    print("|---|---|---|---|")
    for row in out["policies"]:
        v, s, p = row["slo_violation_rate"], row["served_rps"], row["p99_ms"]
        print(f"| {row['policy']} | {100*v['real']:.1f} % / {100*v['simulated']:.1f} % | {s['real']:.1f} / {s['simulated']:.1f} "
              f"| {p['real']:.2f} / {p['simulated']:.2f} ({100*p['rel_error']:.0f} %) |")


def tables(runs):
    rows = []
    for scen, prof in runs:
        f = f"{scen}-{prof}.json"
        if not os.path.exists(os.path.join(R, f)):
            continue
        d = load(f)
        ours = d["policies"][0]
        base = [p for p in d["policies"][3:]]
        best = min(base, key=lambda p: p["slo_violation_rate"])
        npu = any("npu" in t.get("processors", []) for t in ours["final_plan"])
        speed = min(p["speed_x_real_time"] for p in d["policies"])
        rows.append((scen, prof, len(ours["final_plan"]), ours, best, npu, speed, d))
    print("| scenario | profile | tasks | SparseLoom viol. | best baseline viol. | SparseLoom p99 ms | mJ/req ours / best | NPU in SparseLoom's plan | slowest policy, x real time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scen, prof, n, ours, best, npu, speed, _ in rows:
        print(f"| {scen} | {prof} | {n} | {100*ours['slo_violation_rate']:.1f} % | {100*best['slo_violation_rate']:.1f} % ({best['policy']}) "
              f"| {ours['p99_ms']:.2f} | {1e3*ours['energy_j_per_request']:.2f} / {1e3*best['energy_j_per_request']:.2f} | {'yes' if npu else 'no'} | {speed:.0f} |")
    return rows


def plot(rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [f"{s}\n{p}" for s, p, *_ in rows]
    policies = [p["policy"] for p in rows[0][7]["policies"]]
    w = 0.8 / len(policies)
    for i, pol in enumerate(policies):
        v, e = [], []
        for *_, d in rows:
            m = {p["policy"]: p for p in d["policies"]}[pol]
            v.append(100 * m["slo_violation_rate"])
            e.append(1e3 * m["energy_j_per_request"])
        xs = [k + i * w for k in range(len(rows))]
        axes[0].bar(xs, v, w, label=pol)
        axes[1].bar(xs, e, w, label=pol)
    for ax, t in ((axes[0], "SLO violation rate (%)"), (axes[1], "energy per request (mJ)")):
        ax.set_xticks([k + 0.4 - w / 2 for k in range(len(rows))])
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_title(t)
    axes[0].legend(fontsize=7)
    fig.suptitle("Simulated SoCs (sparseloom-bench-e2e --simulate): every policy on the same Engine in DiscreteEvent mode")
    fig.tight_layout()
    fig.savefig(os.path.join(R, "sim-results.png"), dpi=110)
    print("wrote bench/results/sim-results.png")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "validate":
        validation(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "",
                   sys.argv[5] if len(sys.argv) > 5 else "sim-validation.json", sys.argv[6] if len(sys.argv) > 6 else None)
    else:
        scen = ["sim-driving", "sim-ar-8", "sim-ar-8-power", "sim-ar-8-x10", "sim-scale-32", "sim-scale-32-x10"]
        rows = tables([(s, p) for s in scen for p in ("orin-agx", "core-ultra")])
        if rows:
            plot(rows)
