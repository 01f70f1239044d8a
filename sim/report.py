#!/usr/bin/env python3
"""Simulator results: bench/results/sim-validation*.json from a real and a simulated run of the
same scenario (per policy and metric: real, simulated, rel_error, within target; `validate-mean`:
against the mean of several real runs), the plot
bench/results/sim-results.png from bench/results/sim-<scenario>-<profile>.json (scenario names start with sim-), and the
markdown tables for docs/results.md (printed)."""
import json
import os
import sys

R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "results")
METRICS = ["slo_violation_rate", "served_rps", "goodput_rps", "p99_ms"]


def load(name):
    """A result file; "FILE#runs[K]" is run K of a --repeat file (each policy's figures from its
    runs[K], the rest as in the file)."""
    path, _, run = name.partition("#runs[")
    with open(os.path.join(R, path)) as f:
        d = json.load(f)
    if run:
        k = int(run.rstrip("]"))
        d["policies"] = [dict(p, **p["runs"][k]) for p in d["policies"]]
    return d


def within(m, real, sim):
    rel = abs(sim - real) / abs(real) if real else (0.0 if sim == 0 else None)
    ok = rel is not None and rel <= 0.10
    if m == "slo_violation_rate":
        ok = ok or abs(sim - real) <= 0.02
    return rel, ok


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
            rel, ok = within(m, r, v)
            row[m] = {"real": r, "simulated": v, "rel_error": rel, "abs_error": abs(v - r), "within_target": ok}
            n_ok += ok
            n += 1
        rows.append(row)
    return rows, f"{n_ok} of {n}"


def validation(real_file, sim_file, machine_note, out_name="sim-validation-single.json", real2_file=None):
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


def validation_mean(out_name, note, sim_file, real_files):
    """The simulator against the mean of N real runs of the same scenario (what it predicts: a
    single 20-30 s run's P99 scatters around that mean), and each real run against the mean of
    the others (the noise floor a single-run comparison cannot beat)."""
    sim, reals = load(sim_file), [load(f) for f in real_files]
    first = reals[0]
    out = {"scenario": first["scenario"], "real_runs": real_files, "simulated_run": sim_file,
           "profile": sim.get("profile"), "machine": first["machine"], "note": note,
           "target": "within 10 % relative, or 2 pp absolute for violation rates, of the mean of the real runs",
           "policies": []}
    n = n_ok = 0
    loo_n = loo_ok = 0
    sp = {p["policy"]: p for p in sim["policies"]}
    # Throughput at saturation over the searches of the real runs that searched it (not
    # --no-throughput; a run with --search-repeats N counts each of its N), when there are at
    # least two searches and the simulation searched too.
    def searched(r):
        return all(q.get("throughput_rps") is not None for q in r["policies"])

    def searches(q):
        scales = q.get("throughput_searches") or []
        if scales and not any(scales):  # every search sustained nothing
            return [0.0] * len(scales)
        if not scales or not q.get("max_rate_scale"):
            return [q["throughput_rps"]]
        return [q["throughput_rps"] * s / q["max_rate_scale"] for s in scales]
    n_searches = sum(len(searches(r["policies"][0])) for r in reals if searched(r))
    metrics = METRICS + (["throughput_rps"] if n_searches >= 2 and searched(sim) else [])
    out["metrics"] = metrics
    out["throughput_real_runs"] = [f for f, r in zip(real_files, reals) if searched(r)]
    for p in first["policies"]:
        name = p["policy"]
        row = {"policy": name}
        per = [[q for q in r["policies"] if q["policy"] == name][0] for r in reals]
        for m in metrics:
            vals = ([v for q in per if q.get(m) is not None for v in searches(q)] if m == "throughput_rps"
                    else [q[m] for q in per if q.get(m) is not None])
            mean = sum(vals) / len(vals)
            rel, ok = within(m, mean, sp[name][m])
            loo = []
            for i, v in enumerate(vals if len(vals) > 1 else []):  # a lone value has no others
                others = vals[:i] + vals[i + 1:]
                r_i, ok_i = within(m, sum(others) / len(others), v)
                loo.append({"rel_error": r_i, "within_target": ok_i})
                loo_n += 1
                loo_ok += ok_i
            row[m] = {"real": mean, "real_runs": vals, "simulated": sp[name][m], "rel_error": rel,
                      "abs_error": abs(sp[name][m] - mean), "within_target": ok, "real_run_vs_others": loo}
            n += 1
            n_ok += ok
        out["policies"].append(row)
    out["within_target"] = f"{n_ok} of {n}"
    out["not_within_target"] = [f"{r['policy']}: {m}" for r in out["policies"] for m in metrics if not r[m]["within_target"]]
    out["real_run_vs_mean_of_others_within_target"] = f"{loo_ok} of {loo_n}"
    out["engine_overhead_modelled"] = bool(sim["policies"][0].get("engine_overhead_modelled", False))
    out["rapl"] = first.get("rapl", "not recorded")
    with open(os.path.join(R, out_name), "w") as f:
        json.dump(out, f, indent=1)
    print(f"simulator vs the mean of {len(reals)} real runs: {out['within_target']} (policy, metric) pairs within target; "
          f"a real run vs the mean of the others: {out['real_run_vs_mean_of_others_within_target']}")
    tp = "throughput_rps" in metrics
    print("| policy | viol. real mean / sim | served/s real mean / sim | p99 ms real runs | p99 ms mean / sim (rel. err.) |"
          + (" throughput rps real runs | mean / sim (rel. err.) |" if tp else ""))
    print("|---|---|---|---|---|" + ("---|---|" if tp else ""))
    for row in out["policies"]:
        v, s, q = row["slo_violation_rate"], row["served_rps"], row["p99_ms"]
        signed = (q["simulated"] - q["real"]) / q["real"]
        line = (f"| {row['policy']} | {100*v['real']:.2f} % / {100*v['simulated']:.2f} % | {s['real']:.1f} / {s['simulated']:.1f} "
                f"| {' '.join(f'{x:.2f}' for x in q['real_runs'])} | {q['real']:.3f} / {q['simulated']:.3f} ({100*signed:+.0f} %) |")
        if tp:
            t = row["throughput_rps"]
            ts = (t["simulated"] - t["real"]) / t["real"] if t["real"] else float("nan")
            line += f" {' '.join(f'{x:.0f}' for x in t['real_runs'])} | {t['real']:.0f} / {t['simulated']:.0f} ({100*ts:+.0f} %) |"
        print(line)


def revalidate(out_name, note, old_name, sim_file):
    """A stored validate-mean result against a new simulated run of the same scenario (the real
    runs' values are kept in it; their raw JSON may not be)."""
    old, sim = load(old_name), load(sim_file)
    sp = {p["policy"]: p for p in sim["policies"]}
    out = dict(old, simulated_run=sim_file, profile=sim.get("profile"), note=note, revalidated_from=old_name)
    n = n_ok = 0
    for row in out["policies"]:
        for m in old["metrics"]:
            r = row[m]
            rel, ok = within(m, r["real"], sp[row["policy"]][m])
            row[m] = dict(r, simulated=sp[row["policy"]][m], rel_error=rel, abs_error=abs(sp[row["policy"]][m] - r["real"]),
                          within_target=ok)
            n += 1
            n_ok += ok
    out["within_target"] = f"{n_ok} of {n}"
    out["not_within_target"] = [f"{r['policy']}: {m}" for r in out["policies"] for m in old["metrics"] if not r[m]["within_target"]]
    with open(os.path.join(R, out_name), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{out_name}: {out['within_target']} (was {old['within_target']})")
    for row in out["policies"]:
        q = row["p99_ms"]
        print(f"  {row['policy']}: p99 {q['real']:.3f} / {q['simulated']:.3f} ({100 * (q['simulated'] - q['real']) / q['real']:+.0f} %)")


def combine(out_name, note, files):
    """bench/results/sim-validation.json: the validate-mean results of several scenarios in one file."""
    parts = [load(f) for f in files]
    out = {"note": note, "target": parts[0]["target"], "files": files,
           "within_target": {p["scenario"]: p["within_target"] for p in parts},
           "real_run_vs_mean_of_others_within_target": {p["scenario"]: p["real_run_vs_mean_of_others_within_target"] for p in parts},
           "scenarios": parts}
    with open(os.path.join(R, out_name), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{out_name}: {out['within_target']}")


def tables(runs):
    rows = []
    for scen, prof in runs:
        f = f"{scen}-{prof}.json"
        if not os.path.exists(os.path.join(R, f)):
            continue
        d = load(f)
        ours = d["policies"][0]
        base = [p for p in d["policies"] if not p["policy"].startswith("SparseLoom")]
        best = min(base, key=lambda p: p["slo_violation_rate"])
        npu = any("npu" in t.get("processors", []) for t in ours["final_plan"])
        speed = min(p["speed_x_real_time"] for p in d["policies"])
        rows.append((scen, prof, len(ours["final_plan"]), ours, best, npu, speed, d))
    print("| scenario | profile | tasks | SparseLoom viol. | best baseline viol. | SparseLoom p99 ms | mJ/req ours / best | NPU in SparseLoom's plan | throughput vs best baseline | slowest policy, x real time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scen, prof, n, ours, best, npu, speed, d in rows:
        tput = d.get("throughput_ratio_vs_best_baseline")  # absent where the search did not run
        print(f"| {scen} | {prof} | {n} | {100*ours['slo_violation_rate']:.1f} % | {100*best['slo_violation_rate']:.1f} % ({best['policy']}) "
              f"| {ours['p99_ms']:.2f} | {1e3*ours['energy_j_per_request']:.2f} / {1e3*best['energy_j_per_request']:.2f} | {'yes' if npu else 'no'} "
              f"| {f'{tput:.2f}x' if isinstance(tput, (int, float)) else '-'} | {speed:.0f} |")
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
    if len(sys.argv) > 1 and sys.argv[1] == "validate-mean":  # OUT NOTE SIM REAL1 REAL2 ...
        validation_mean(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif len(sys.argv) > 1 and sys.argv[1] == "revalidate":  # OUT NOTE OLD_VALIDATION SIM
        revalidate(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "combine":  # OUT NOTE FILE1 FILE2 ...
        combine(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) > 1 and sys.argv[1] == "validate":
        validation(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "",
                   sys.argv[5] if len(sys.argv) > 5 else "sim-validation-single.json", sys.argv[6] if len(sys.argv) > 6 else None)
    else:
        scen = ["sim-driving", "sim-ar-8", "sim-ar-8-power", "sim-ar-8-x10", "sim-scale-32", "sim-scale-32-x10"]
        rows = tables([(s, p) for s in scen for p in ("orin-agx", "core-ultra")])
        if rows:
            plot(rows)
