"""Synthetic results/ trees in the exact ``bench run`` format, for tests and timing.

    python tests/synth_history.py OUT --commits 1000 --benchmarks 100 [--gz]

writes OUT/<machine>/<sha>.json (pyperf BenchmarkSuite JSON, the layout
``pyperf.BenchmarkSuite.dump`` produces; with ``gz``, ``<sha>.json.gz`` in the stored form
``bench run`` writes now, bench.results.store) and OUT/commits.json. A step can be
planted: from commit index ``step_at`` on, benchmark ``step_bench`` costs
``1 + step`` times as much.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

TSC_HZ = 2.1e9
CONVS = ["seamcall", "seamcall_ret", "seamcall_saved_ret", "tdcall", "tdcall_ret"]
BACKENDS = ["emulated", "nop", "kmod", "trap"]
LEAVES = ["vp_info", "vp_rd", "vp_wr", "mem_page_accept", "sys_rd", "tdg_vm_rd"]


def fake_sha(i: int, salt: str = "") -> str:
    return hashlib.sha1(f"{salt}commit{i}".encode()).hexdigest()


def bench_names(n: int) -> list[str]:
    names = [f"{c}/{b}/{l}" for c in CONVS for b in BACKENDS for l in LEAVES]
    if n > len(names):
        names += [f"extra{i}/emulated/vp_info" for i in range(n - len(names))]
    return names[:n]


def make_history(out, n_commits=30, n_benchmarks=6, machines=("synth-a",), step_at=None,
                 step_bench=None, step=0.05, runs=20, values=3, noise=0.005, seed=1,
                 fail_at=(), salt="", core=False, drift_at=None, drift=0.0, gz=False):
    """Write a synthetic history; returns the list of shas in history order.

    core: write the current format (core cycles per call, seambench_unit, a code hash per
    benchmark that changes where the planted step is: the step is a change of the code);
    drift_at/drift: from that commit on every benchmark costs 1 + drift times as much with
    its code unchanged (the machine moved, not the code)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    names = bench_names(n_benchmarks)
    base = {n: (300 + 40 * i) / TSC_HZ for i, n in enumerate(names)}  # seconds per call
    shas = [fake_sha(i, salt) for i in range(n_commits)]
    commits = {}
    for i, sha in enumerate(shas):
        commits[sha] = {"subject": f"Synthetic commit {i}", "date": 1_700_000_000 + 3600 * i,
                        "parents": [shas[i - 1]] if i else []}
    for m in machines:
        d = out / m
        d.mkdir(parents=True, exist_ok=True)
        for i, sha in enumerate(shas):
            if i in fail_at:
                (d / f"{sha}.failed.log").write_text(f"status: failed\nphase: build\ncommit: {sha}\n\nerror: synthetic\n")
                continue
            benches = []
            for n in names:
                stepped = step_at is not None and i >= step_at and n == step_bench
                level = base[n] * (1 + step if stepped else 1)
                if drift_at is not None and i >= drift_at:
                    level *= 1 + drift
                if core:
                    level *= TSC_HZ / 0.7  # core cycles per call at 0.7 TSC ticks per core cycle
                v = level * (1 + noise * rng.standard_normal((runs, values)))
                conv, backend, leaf = n.split("/")
                md = {"name": n, "seambench_convention": conv, "seambench_backend": backend,
                      "seambench_leaf": leaf}
                if core:
                    md.update(seambench_unit="core_cycles", unit="integer",
                              seambench_code_hash=hashlib.sha1(f"{n}{stepped}".encode()).hexdigest()[:16])
                benches.append({
                    "metadata": md,
                    "runs": [{"metadata": {"date": f"2026-11-26T06:{i % 60:02d}:00"},
                              "values": [float(x) for x in row]} for row in v],
                })
            suite = {"version": "1.0", "benchmarks": benches, "metadata": {
                "seambench_machine": m, "seambench_commit": sha, "seambench_dirty": 0,
                "seambench_tsc_hz": TSC_HZ, "seambench_tsc_per_core_cycle": 0.7, "seambench_conv_hash": "synthetic",
                "seambench_baseline_cycles": 40.0, "cpu_model_name": "Synthetic CPU", "unit": "second",
                "loops": 1000}}
            if gz:
                from bench.results import store
                (d / f"{sha}.json.gz").write_bytes(store.encode(store.compact(suite), ".gz"))
            else:
                with open(d / f"{sha}.json", "w") as f:
                    json.dump(suite, f, separators=(",", ":"))
    with open(out / "commits.json", "w") as f:
        json.dump({"version": 1, "commits": commits}, f)
    return shas


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--benchmarks", type=int, default=100)
    ap.add_argument("--machines", default="synth-a")
    ap.add_argument("--step-at", type=int, default=None)
    ap.add_argument("--step-bench", default=None)
    ap.add_argument("--noise", type=float, default=0.005, help="relative noise per value (default 0.005)")
    ap.add_argument("--gz", action="store_true", help="<sha>.json.gz in the stored form, as bench run writes now")
    a = ap.parse_args(argv)
    make_history(a.out, a.commits, a.benchmarks, tuple(a.machines.split(",")), a.step_at, a.step_bench,
                 noise=a.noise, gz=a.gz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
