"""Where code lands against `bench ab`'s verdict: an A/A experiment on identical twins.

Runs `bench ab X Y --json` (by default the README's twins, docs/ab-pair.yaml: the very same
code compiled twice) --runs times in each of four ways of placing the code, the ways taking
turns: the workers' address space without or with randomization (machine.child_setup,
SEAMBENCH_LAYOUT) and their code on the pages it was loaded on or moved to fresh physical pages
for each of several stretches of pairs (machine.fresh_code_pages, SEAMBENCH_PLACEMENTS).  For
identical code every verdict should be "no significant difference" and the 95% CI should
hold 1 in about 95% of runs; a way of placing the code that keeps one side ahead in every
process of a run (and maybe the other side in the next run) shows as runs whose CI misses 1
and whose processes all lean the same way.  Not a test: it prints what this machine does.

    python benchmarks/layout.py [--runs 8] [X Y]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PAIR = Path(__file__).resolve().parent.parent / "docs" / "ab-pair.yaml"
WAYS = {  # name: (SEAMBENCH_LAYOUT, SEAMBENCH_PLACEMENTS)
    "fixed, loaded pages": ("fixed", "0"),
    "fixed, fresh pages x4": ("fixed", "4"),
    "randomized, loaded pages": ("randomized", "0"),
    "randomized, fresh pages x4": ("randomized", "4"),
}


def one(x, y, layout, placements) -> dict:
    env = {**os.environ, "SEAMBENCH_LAYOUT": layout, "SEAMBENCH_PLACEMENTS": placements}
    proc = subprocess.run([sys.executable, "-m", "bench", "ab", "-C", str(PAIR), x, y, "--json"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"layout: bench ab failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/layout.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("x", nargs="?", default="ab_base")
    p.add_argument("y", nargs="?", default="ab_twin")
    a = p.parse_args(argv)
    seen = {way: [] for way in WAYS}
    for i in range(a.runs):
        for way, (layout, placements) in WAYS.items():
            x, y = (a.x, a.y) if i % 2 == 0 else (a.y, a.x)  # each side X in half the runs
            seen[way].append(one(x, y, layout, placements))
    print(f"{a.y} / {a.x} (identical code: the truth is 1), {a.runs} `bench ab` runs each way, "
          "X and Y swapped every other run")
    print("| way | runs | verdict not 'no difference' | CI misses 1 | run ratios | sd of run ratios "
          "| median CI half-width | processes all one side | spread within a run (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for way, runs in seen.items():
        # each run as twin/base whichever was X, so that a bias of one file shows as one sign
        ratios = [r["ratio"] if r["x"] == a.x else 1 / r["ratio"] for r in runs]
        misses = sum(not r["ci95"][0] <= 1 <= r["ci95"][1] for r in runs)
        wrong = sum(r["verdict"] != "no significant difference" for r in runs)
        half = statistics.median((r["ci95"][1] - r["ci95"][0]) / 2 for r in runs)
        kept = [[q["ratio"] for q in r["processes"] if not q["dropped"]] for r in runs]
        one_side = sum(all(v > 1 for v in k) or all(v < 1 for v in k) for k in kept)
        spread = statistics.median((max(k) - min(k)) / statistics.median(k) for k in kept)
        print(f"| {way} | {len(runs)} | {wrong} | {misses} | {min(ratios):.4f}-{max(ratios):.4f} "
              f"| {statistics.stdev(ratios):.2%} | {half:.2%} | {one_side} | {spread:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
