"""How long `bench dashboard` takes over a large synthetic history (`make dashboard-perf`).

Writes a history of COMMITS x BENCHMARKS (tests/synth_history.py: 60 values per commit and
benchmark) in each form asked for, plain .json as older runs stored it and .json.gz as `bench run`
stores it now, then builds the site from it cold (`--cache none`, `--repo none`) in a fresh
`bench dashboard` process, BUILDS times.  Prints, per form, the history's size, the wall time of
each build (the split `bench dashboard` reports: read, change points, write) and the CPU time of
the process and its workers; stores them in benchmarks/out/dashboard.json.

Not a test: nothing here passes or fails on a time.  The machine's load average is printed
beside the figures: on a shared 2-core VM the wall time follows it, the CPU time much less.

    python benchmarks/dashboard.py [--commits 1000] [--benchmarks 100] [--form json --form gz] [--builds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from synth_history import make_history  # noqa: E402

SPLIT = re.compile(r"\(([0-9.]+) s: read ([0-9.]+), change points ([0-9.]+), write ([0-9.]+)\)")


def build_once(results: Path, site: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bench", "dashboard", "--results", str(results), "-o", str(site),
                        "--repo", "none", "--cache", "none"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"dashboard-perf: bench dashboard failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers are reaped by the build
    m = SPLIT.search(p.stderr + p.stdout)
    total, read, model, write = (float(x) for x in m.groups()) if m else (None,) * 4
    return {"wall_s": round(wall, 2), "build_s": total, "read_s": read, "change_points_s": model, "write_s": write,
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--benchmarks", type=int, default=100)
    ap.add_argument("--form", action="append", choices=("json", "gz"), help="history form(s) (default: both)")
    ap.add_argument("--builds", type=int, default=1, help="builds per form (default 1)")
    ap.add_argument("--out", default=str(HERE / "out" / "dashboard.json"))
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seambench-dashboard-perf-") as tmp:
        for form in a.form or ("json", "gz"):
            results = Path(tmp) / form / "results"
            t0 = time.perf_counter()
            make_history(results, n_commits=a.commits, n_benchmarks=a.benchmarks, gz=form == "gz")
            made = time.perf_counter() - t0
            row = {"form": form, "commits": a.commits, "benchmarks": a.benchmarks,
                   "history_bytes": size_of(results), "written_s": round(made, 1), "builds": []}
            for i in range(a.builds):
                row["builds"].append(build_once(results, Path(tmp) / form / f"site{i}"))
            rows.append(row)
            for b in row["builds"]:
                print(f"{form:4s} {a.commits} commits x {a.benchmarks} benchmarks, {row['history_bytes'] / 1e6:.0f} MB: "
                      f"build {b['build_s']} s (read {b['read_s']}, change points {b['change_points_s']}, "
                      f"write {b['write_s']}), process {b['wall_s']} s wall, {b['cpu_s']} s CPU; "
                      f"load average {b['load_before']} -> {b['load_after']}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    print(f"dashboard-perf: stored {os.path.relpath(out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
