"""A/A experiment: do figures repeat across runs?  (`make bench-repro`)

Runs the same build's suites several times back to back, each a separate `bench run`
(fresh processes, as the dashboard and `bench compare` see them), and prints, per
benchmark, every run's median in core cycles and in TSC cycles, the spread of the medians
((max - min) / median), how often one run's 95% CI covers another run's median, and how
often that CI widened by sqrt(2) does (`repeat_interval`: ~95% where the CI is calibrated).
The runs are stored in a results store of the experiment's own, so its noise record starts
empty and learns each run, as a machine's does: from the third run on, a run's CI counts how
far the earlier runs landed apart (bench.results.noise.run_noise), and the coverage of those
runs' CIs is printed apart.

Not a test: nothing here passes or fails on a time.  It prints the table and stores it
(markdown and JSON) under benchmarks/out/, which the README quotes.

    python benchmarks/repro.py [--runs 6] [--suite configs/quick.yaml --suite configs/repro-trap.yaml]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SUITES = ("configs/quick.yaml", "configs/repro-trap.yaml")
# The brief's targets for the spread of medians (max-min over median), by backend kind.
LIMITS = {"trap": 0.01, "emulated": 0.003}
TRAP_BACKENDS = ("vmcall", "vmmcall", "cpuid")


def run_once(suite: str, store: Path) -> list:
    """One `bench run --json`, stored in `store` (its results and its noise record)."""
    cmd = [sys.executable, "-m", "bench", "run", "--suite", suite, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SEAMBENCH_RESULTS": str(store)})
    if proc.returncode != 0:
        raise SystemExit(f"repro: {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def own_loop_medians(path) -> dict:
    """name -> the run's median had each worker's own empty loop been subtracted, as before the
    run's fitted one (commit f1f013b): each value plus the run's loop less its worker's own
    (seambench_run_empty_core_cycles, that worker's median).  The same runs measured both ways."""
    import pyperf
    out = {}
    for b in pyperf.BenchmarkSuite.load(str(path)).get_benchmarks():
        base = b.get_metadata().get("seambench_baseline_core_cycles")
        runs = [r for r in b.get_runs() if r.values and "seambench_run_empty_core_cycles" in r.get_metadata()]
        if base is not None and runs:
            out[b.get_name()] = float(np.median([v + base - r.get_metadata()["seambench_run_empty_core_cycles"]
                                                 for r in runs for v in r.values]))
    return out


def figures(rec: dict) -> tuple:
    """(core cycles, TSC cycles, 95% CI in core cycles) of one `bench run --json` record."""
    if rec.get("cycles_unit") == "core":
        return rec["cycles"], rec["tsc_cycles"], tuple(rec["ci95"])
    return rec["core_cycles"], rec["cycles"], None  # an older build: cycles were TSC


def repeat_interval(median: float, ci: tuple) -> tuple:
    """Where another run's median should fall, 95% of the time, if the run's CI is calibrated: the
    difference of two runs' log medians has sqrt(2) times the spread of one, so the CI's
    half-widths (log scale) times sqrt(2).  The honest test of the CI: ~95% where it is right,
    where the CI itself can only reach ~83%."""
    k = math.sqrt(2)
    return median * (ci[0] / median) ** k, median * (ci[1] / median) ** k


def coverage(core, cis, which) -> tuple:
    """Over the runs `which` that have a CI: (pairs whose CI covers the other run's median,
    pairs, the same with the CI widened by sqrt(2), runs whose CI covers the median of the others'
    medians, runs)."""
    covered = total = repeat = central = runs = 0
    for i in which:
        ci = cis[i]
        if ci is None:
            continue
        runs += 1
        lo, hi = repeat_interval(core[i], ci)
        others = [med for j, med in enumerate(core) if j != i]
        total += len(others)
        covered += sum(ci[0] <= med <= ci[1] for med in others)
        repeat += sum(lo <= med <= hi for med in others)
        central += ci[0] <= float(np.median(others)) <= ci[1]
    return covered, total, repeat, central, runs


def summarize(runs: list, own=None) -> list:
    """Per benchmark: medians per run, spreads and the CI coverage of other runs' medians; `own`,
    per run, own_loop_medians of its files (a spread for those too)."""
    names = [r["name"] for r in runs[0]]
    rows = []
    for name in names:
        recs = [next((r for r in run if r["name"] == name), None) for run in runs]
        if any(r is None for r in recs):
            continue
        core, tsc, cis = zip(*(figures(r) for r in recs))
        covered, total, repeat, central, with_ci = coverage(core, cis, range(len(cis)))
        # the same for the runs whose CI counts the between-run sd (the record knew the code)
        covered_b, total_b, repeat_b, central_b, with_b = coverage(
            core, cis, [i for i, r in enumerate(recs) if r.get("between_run_sd") is not None])
        backend = recs[0]["backend"]
        spread_core = (max(core) - min(core)) / float(np.median(core))
        mine = [o.get(name) for o in own] if own else []
        if mine and None not in mine:
            spread_own = (max(mine) - min(mine)) / float(np.median(mine))
        else:
            mine, spread_own = [], None
        rows.append({"name": name, "backend": backend, "core": list(core), "tsc": list(tsc),
                     "core_own_loop": mine, "spread_own_loop": spread_own,
                     "n_calls": [r.get("n_calls") for r in recs],
                     "spread_core": spread_core,
                     "spread_tsc": (max(tsc) - min(tsc)) / float(np.median(tsc)),
                     "covered": covered, "pairs": total, "repeat_covered": repeat,
                     "ci95": [list(ci) if ci else None for ci in cis],
                     "covers_central": central, "with_ci": with_ci,
                     "covered_b": covered_b, "pairs_b": total_b, "repeat_covered_b": repeat_b,
                     "covers_central_b": central_b, "with_between": with_b,
                     "between_sd": [r.get("between_run_sd") for r in recs],
                     "limit": LIMITS["trap" if backend in TRAP_BACKENDS else "emulated"]})
    return rows


def _sds(sds) -> str:
    """The between-run sds runs' CIs counted, as a range ("-": none did)."""
    known = [x for x in sds if x is not None]
    return f"{min(known):.2%}-{max(known):.2%} ({len(known)} runs)" if known else "-"


def markdown(rows: list, meta: dict) -> str:
    n = len(rows[0]["core"]) if rows else 0
    out = [f"A/A: {n} back-to-back `bench run`s of one build on {meta['machine']}, {meta['date']} "
           f"(commit {meta['commit'][:12]}, {meta['seconds']:.0f} s)", "",
           "| benchmark | " + " | ".join(f"run {i + 1}" for i in range(n))
           + " | spread (core) | spread (TSC) | limit | CI covers others | √2 CI covers others"
           + " | between-run sd counted | its CI covers others |",
           "|---|" + "---:|" * n + "---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ok = "" if r["spread_core"] <= r["limit"] else " **over**"
        out.append(f"| {r['name']} | " + " | ".join(f"{c:.2f}" for c in r["core"])
                   + f" | {r['spread_core']:.2%}{ok} | {r['spread_tsc']:.2%} | {r['limit']:.1%} | "
                   + (f"{r['covered']}/{r['pairs']}" if r["pairs"] else "-") + " | "
                   + (f"{r['repeat_covered']}/{r['pairs']}" if r["pairs"] else "-") + " | "
                   + _sds(r.get("between_sd") or []) + " | "
                   + (f"{r['covered_b']}/{r['pairs_b']}" if r.get("pairs_b") else "-") + " |")
    cov = sum(r["covered"] for r in rows), sum(r["pairs"] for r in rows)
    within = sum(r["spread_core"] <= r["limit"] for r in rows)
    central = sum(r["covers_central"] for r in rows), sum(r["with_ci"] for r in rows)
    out += ["", f"medians in core cycles per call; {within}/{len(rows)} benchmarks within their limit; "
            f"a run's 95% CI covers another run's median in {cov[0]}/{cov[1]} pairs"
            + (f" ({cov[0] / cov[1]:.0%})" if cov[1] else "")
            + (f", and the median of the other runs' medians in {central[0]}/{central[1]} "
               f"({central[0] / central[1]:.0%})" if central[1] else ""),
            "(an exact 95% CI covers another run's median, itself as uncertain, in about 83% of pairs, "
            "and the median of five others in about 91%)"]
    rep = sum(r["repeat_covered"] for r in rows)
    if cov[1]:
        out.append(f"the CI widened by √2 (where another run should land, 95% of the time, if the CI is "
                   f"calibrated) covers another run's median in {rep}/{cov[1]} pairs ({rep / cov[1]:.0%})")
    cov_b = sum(r.get("covered_b", 0) for r in rows), sum(r.get("pairs_b", 0) for r in rows)
    if cov_b[1]:
        cen_b = sum(r["covers_central_b"] for r in rows), sum(r["with_between"] for r in rows)
        rep_b = sum(r["repeat_covered_b"] for r in rows)
        out.append(f"the CIs that count the between-run sd (runs whose code the experiment's noise record had seen "
                   f"twice before: from run 3 on): another run's median in {cov_b[0]}/{cov_b[1]} pairs "
                   f"({cov_b[0] / cov_b[1]:.0%}), the median of the other runs' medians in {cen_b[0]}/{cen_b[1]} "
                   f"({cen_b[0] / cen_b[1]:.0%}), widened by √2 {rep_b}/{cov_b[1]} ({rep_b / cov_b[1]:.0%})")
    own = [r for r in rows if r.get("spread_own_loop") is not None]
    if own:
        sp = sorted(r["spread_own_loop"] for r in own)
        within_own = sum(r["spread_own_loop"] <= r["limit"] for r in own)
        now = sorted(r["spread_core"] for r in own)
        out.append(f"- the same runs with each worker's own empty loop subtracted instead of the run's (as "
                   f"before commit f1f013b): {within_own}/{len(own)} within their limit, median spread "
                   f"{float(np.median(sp)):.2%} (the run's loop: {sum(r['spread_core'] <= r['limit'] for r in own)}"
                   f"/{len(own)}, {float(np.median(now)):.2%})")
    varied = [r["name"] for r in rows if len(set(r.get("n_calls", []))) > 1]
    if varied:
        out.append(f"- calls per batch differed between runs for {len(varied)} benchmarks (a worker sizes its own where "
                   "the kept size is more than 2x off its batch time)")
    for i, r in enumerate(meta.get("per_run", [])):
        out.append(f"- run {i + 1}: {r['seconds']:.1f} s; samples excluded as contention {r['contention']}, "
                   f"kept on a shared core after the wait ran out {r['contended']}")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/repro.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--suite", action="append", help=f"suite file (repeatable; default {', '.join(DEFAULT_SUITES)})")
    p.add_argument("--out", default=str(HERE / "out"), help="folder for the stored table")
    a = p.parse_args(argv)
    if a.runs < 2:
        p.error("--runs must be at least 2")
    suites = a.suite or list(DEFAULT_SUITES)
    t0 = time.time()
    runs, per_run, own = [], [], []
    with tempfile.TemporaryDirectory(prefix="seambench-repro-") as tmp:
        for i in range(a.runs):
            merged, t_run = [], time.time()
            for k, suite in enumerate(suites):
                merged += run_once(suite, Path(tmp))
            runs.append(merged)
            own.append({k: v for f in dict.fromkeys(r["results_file"] for r in merged if r.get("results_file"))
                        for k, v in own_loop_medians(f).items()})
            per_run.append({"seconds": time.time() - t_run,
                            "contention": sum(r.get("excluded_by_reason", {}).get("contention", 0) for r in merged),
                            "contended": sum(r.get("contended", 0) for r in merged)})
            print(f"repro: run {i + 1}/{a.runs} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    rows = summarize(runs, own)
    first = runs[0][0] if runs and runs[0] else {}
    meta = {"machine": first.get("machine", "?"), "commit": first.get("commit", "?"),
            "date": datetime.datetime.now().isoformat(" ", "minutes"), "seconds": time.time() - t0,
            "suites": suites, "runs": a.runs, "per_run": per_run}
    text = markdown(rows, meta)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"repro-{meta['machine']}"
    (stem.with_suffix(".md")).write_text(text)
    (stem.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"repro: stored {os.path.relpath(stem.with_suffix('.md'))} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
