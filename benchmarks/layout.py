"""Does where code and data land move a process's figures?  (ASLR on against off.)

Runs `bench ab X Y --json` --runs times with measuring processes started without address-space
randomization (seambench's default, machine.child_setup) and --runs times with it
(SEAMBENCH_LAYOUT=randomized), alternating, and prints for each side how many processes `bench
ab` dropped as far from their peers and the spread of the per-process ratios (max - min over
the median).  Not a test: it prints what this machine does.

    python benchmarks/layout.py [--runs 5] [X Y]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def one(x, y, layout) -> list:
    env = {**os.environ, "SEAMBENCH_LAYOUT": layout}
    proc = subprocess.run([sys.executable, "-m", "bench", "ab", x, y, "--json"], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"layout: bench ab failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["processes"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/layout.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("x", nargs="?", default="seamcall_ret")
    p.add_argument("y", nargs="?", default="lean")
    a = p.parse_args(argv)
    seen = {"fixed": [], "randomized": []}
    for _ in range(a.runs):
        for layout in seen:
            seen[layout].append(one(a.x, a.y, layout))
    print(f"{a.y} / {a.x}, per process, {a.runs} `bench ab` runs a side")
    for layout, runs in seen.items():
        procs = [q for r in runs for q in r]
        ratios = [q["ratio"] for q in procs]
        spreads = [(max(q["ratio"] for q in r) - min(q["ratio"] for q in r)) / statistics.median(q["ratio"] for q in r)
                   for r in runs]
        print(f"{layout:10s}  processes {len(procs)}, dropped as far from their peers {sum(q['dropped'] for q in procs)}; "
              f"ratios {min(ratios):.4f}-{max(ratios):.4f}; spread within a run: median "
              f"{statistics.median(spreads):.2%}, max {max(spreads):.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
