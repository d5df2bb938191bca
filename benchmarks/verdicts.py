"""Are `bench compare`'s verdicts to be trusted?  (`make bench-verdicts`)

Three experiments with the one decision rule (bench.stats.verdict), each printed as a table and
stored under benchmarks/out/verdicts-<machine id>.{md,json}:

  aa      --aa-runs back-to-back `bench run --suite configs/quick.yaml` of this build, every pair
          compared: the share of compares with any faster/slower row (target <= 5%).
  power   a planted change: the quick suite plus two conventions, `planted` (seamcall_ret whose
          emulated module spends BASE_LATENCY units of emul_latency) and `planted_pushpop`
          (full_pushpop, the same), each answered on side B `--latency` units later (by default
          the count `bench ab` measures closest to --planted, 1%, on its own parent).  Both sides
          run the same machine code; only the count differs.  --pairs single-run-per-side compares,
          and --pairs3 compares of three runs a side: the share calling it "slower" (target >=
          90%).  Two parents because power follows a row's between-run sd, which differs by row:
          seamcall_ret's is among the largest here, full_pushpop's among the smallest.  The
          planted change actually measured by the compares is printed beside each.
  half    the same with a half-percent change (--half): `planted_half`, seamcall_ret spending
          HALF_BASE_LATENCY units on both sides (a unit is a core cycle, ~0.54% of that
          ~185-cycle call) and on side B the fewest more that `bench ab` measures at --half,
          judged with --half-threshold (0.5%: under the default 1% the "slower" zone starts at
          +0.5%, where such a change sits on the edge).
  bisect  `bench history --bisect` on --histories synthetic 32-commit histories (a real git
          repository; results in the quick suite's shape, its workers x values a commit; a 1%
          step with new code at a random commit): the share that name the exact commit.

Not a test: nothing here passes or fails on a time.  Runs take up to a minute each on the
2-core VM this was written on, so the defaults (20 + 2 x 2 x 18 runs, and the bisect's synthetic
ones) take ~1-1.5 h; the machine's state at the time is in the figures.

    python benchmarks/verdicts.py [--only aa,power,half,bisect] [--aa-runs 20] [--pairs 10] ...

With --only, the parts not run are kept from the machine's stored file, each with its date.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.report import compare  # noqa: E402
from bench.results import store  # noqa: E402
from bench.stats.verdict import FASTER, SLOWER  # noqa: E402

SUITE = "configs/quick.yaml"
PARTS = ("aa", "power", "half", "bisect")  # what --only chooses from; a stored file holds them
SHA_A, SHA_B = "a" * 40, "b" * 40  # the store's layout wants commit names: one per side


def quick_shape() -> tuple:
    """(workers, values) of a quick-suite run: the shape of the synthetic histories' results."""
    from bench.config import load_builtin, parse_suite
    from bench.native.backends import BACKENDS
    suite, _ = parse_suite(ROOT / SUITE, load_builtin(), list(BACKENDS))
    return suite.settings.runs, suite.settings.values


def run_once(out: Path, extra=(), env=None) -> Path:
    cmd = [sys.executable, "-m", "bench", "run", "--suite", SUITE, "-o", str(out), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if p.returncode != 0:
        raise SystemExit(f"verdicts: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return out


def machine_of(path: Path) -> str:
    doc = json.loads(path.read_text())
    return doc["metadata"].get("seambench_machine") or doc["benchmarks"][0]["metadata"]["seambench_machine"]


def into_store(raw: Path, store: Path, sha: str) -> Path:
    """Move a run into <store>/<machine>/<sha>[.n].json: replicates are found there."""
    folder = store / machine_of(raw)
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while (folder / (f"{sha}.json" if n == 1 else f"{sha}.{n}.json")).exists():
        n += 1
    dst = folder / (f"{sha}.json" if n == 1 else f"{sha}.{n}.json")
    shutil.move(str(raw), dst)
    return dst


def env_for(store: Path) -> dict:
    return {**os.environ, "SEAMBENCH_RESULTS": str(store)}  # the noise record goes there too


def judged(a_files, b_files, force=False, threshold=compare.DEFAULT_THRESHOLD) -> compare.Report:
    side = lambda fs: compare.Side(fs[0].name, list(fs), [compare.read(f) for f in fs],
                                   store_at=(fs[0].parent.parent, fs[0].parent.name))
    return compare.compare(side(a_files), side(b_files), threshold=threshold, force=force)


def aa(work: Path, runs: int, log) -> dict:
    store = work / "aa"
    files = []
    for i in range(runs):
        t0 = time.monotonic()
        files.append(into_store(run_once(work / "raw.json", env=env_for(store)), store, SHA_A))
        log(f"aa: run {i + 1}/{runs} ({time.monotonic() - t0:.0f} s)")
    alarms, rows, sources = 0, 0, set()
    per_bench: dict = {}
    for fa, fb in itertools.combinations(files, 2):
        r = judged([fa], [fb])
        bad = [x.name for x in r.rows if x.verdict in (SLOWER, FASTER)]
        alarms += bool(bad)
        rows += len(r.rows)
        for x in r.rows:
            per_bench.setdefault(x.name, []).append(x.verdict)
            sources.add(x.noise_source)
    pairs = runs * (runs - 1) // 2
    sd = {n: r.noise_sd for n, r in ((x.name, x) for x in judged([files[0]], [files[1]]).rows)}
    return {"runs": runs, "compares": pairs, "alarming": alarms, "share": alarms / pairs if pairs else None,
            "sources": sorted(sources),
            "verdicts": {n: {k: v.count(k) for k in set(v)} for n, v in per_bench.items()},
            "between_sd": sd}


# Both sides' module spends at least this many units, so that each added unit is one more
# dependent ADD of its latency row, a core cycle, on both: from 0 the first units hide behind the
# call's other work.  (Until the row, a countdown: its exit mispredicted by process and count, 22
# units +1.09% and 24 units +2.15% over 20 on a Zen 4 guest.)  A plant in the wrapper instead
# (inject_chain) moves its code: 1, 2 and 3 ops measured -0.50%, -0.07% and +4.98%.
BASE_LATENCY = 20

# The planted conventions and their parents.  Power follows a row's between-run sd, which differs
# by row: seamcall_ret's is among the largest here, full_pushpop's among the smallest.  The first
# is reported as `power` (as before), the others under power["others"]; each is answered late by
# the units closest to 1% of its own parent's cost (size_latency), in a file of its own (the
# latency knob is per unit, and the registry compiles each user file into one).
PARENTS = {"planted": "seamcall_ret", "planted_pushpop": "full_pushpop"}
# The half-percent plant: one unit, a core cycle, is about 0.54% of seamcall_ret answered 20
# units late (size_latency finds the units for --half as for --planted).  Judged with
# --half-threshold: under the default 1% threshold the "slower" zone starts at +0.5%, and a
# 0.5% change sits on its edge.
HALF_PARENTS = {"planted_half": "seamcall_ret"}
HALF_BASE_LATENCY = BASE_LATENCY


def planted_names(parents: dict) -> tuple:
    return tuple(f"{name}/emulated/vp_info" for name in parents)


PLANTED = """conventions:
  {name}:
    description: {parent}, answered {latency} units late
    extends: {parent}
    emul_latency: {latency}
"""


TWINS = """conventions:
  planted_a:
    description: {parent}, answered {base} units late
    extends: {parent}
    emul_latency: {base}
  planted_b:
    description: {parent}, answered {latency} units later
    extends: {parent}
    emul_latency: {latency}
"""


def ab_change(work: Path, parent: str, base: int, latency: int, log) -> float:
    """The change `bench ab` (interleaved, in one run) measures from `base` to `latency` units of
    emul_latency on `parent`."""
    y = work / "twins.yaml"
    y.write_text(TWINS.format(parent=parent, base=base, latency=latency))
    p = subprocess.run([sys.executable, "-m", "bench", "ab", "planted_a", "planted_b", "-C", str(y), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"verdicts: bench ab of the planted twins failed:\n{p.stderr[-3000:]}")
    change = json.loads(p.stdout)["change"]
    log(f"plant: emul_latency {latency} against {base} measures {change:+.2%} on {parent} by bench ab")
    return change


def size_latency(work: Path, target: float, log, parent="seamcall_ret", base=BASE_LATENCY) -> int:
    """The emul_latency added to `base` that `bench ab` measures closest to `target` slower than
    `base` alone, on `parent`: the first count measured at or over it, or the one before where
    that is closer (a unit is not a fixed share of every stub's cost on every CPU; two units on
    seamcall_ret measured +0.95% and +1.00%, so "at least 1%" planted three, +1.7%)."""
    below = None
    for latency in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64):
        change = ab_change(work, parent, base, base + latency, log)
        if change >= target:
            return below[0] if below and target - below[1] < change - target else latency
        below = (latency, change)
    return latency


def power(work: Path, pairs: int, pairs3: int, latencies: dict, log, threshold=compare.DEFAULT_THRESHOLD,
          parents=PARENTS, base=BASE_LATENCY, part="power") -> dict:
    """`latencies`: planted convention -> the units side B adds (`parents`' keys), over `base`."""
    extra = {"A": [], "B": []}
    for name, parent in parents.items():
        for side, latency in (("A", base), ("B", base + latencies[name])):
            y = work / f"{name}-{side.lower()}.yaml"
            y.write_text(PLANTED.format(name=name, parent=parent, latency=latency))
            extra[side] += ["-C", str(y)]
    store = work / part
    a_files, b_files = [], []
    need = max(pairs, 3 * pairs3)
    for i in range(need):
        for side, files, sha in (("A", a_files, SHA_A), ("B", b_files, SHA_B)):
            t0 = time.monotonic()
            files.append(into_store(run_once(work / "raw.json", extra[side], env=env_for(store)), store, sha))
            log(f"{part}: {side} run {i + 1}/{need} ({time.monotonic() - t0:.0f} s)")
    (first, first_name), *rest = zip(parents, planted_names(parents))
    return {"latency": latencies[first], "base_latency": base, "threshold": threshold,
            **planted_power(first_name, a_files, b_files, pairs, pairs3, threshold, parents),
            "others": {name: {"latency": latencies[n],
                              **planted_power(name, a_files, b_files, pairs, pairs3, threshold, parents)}
                       for n, name in rest}}


def planted_power(name, a_files, b_files, pairs, pairs3, threshold, parents=PARENTS) -> dict:
    """How often the compares call planted benchmark `name` slower, one and three runs a side."""
    out = {"benchmark": name}
    for k, n in ((1, pairs), (3, pairs3)):
        calls, alarms_elsewhere = [], 0
        for j in range(n):
            r = judged(a_files[j * k:(j + 1) * k], b_files[j * k:(j + 1) * k], force=True, threshold=threshold)
            row = next((x for x in r.rows if x.name == name), None)
            calls.append(row.verdict if row else "missing")
            # every row of a planted convention changed (full_pushpop runs on two leaves)
            alarms_elsewhere += any(x.verdict in (SLOWER, FASTER) for x in r.rows if x.name.split("/")[0] not in parents)
        out[f"{k}_run"] = {"compares": n, "slower": calls.count(SLOWER),
                           "share": calls.count(SLOWER) / n if n else None,
                           "verdicts": {v: calls.count(v) for v in set(calls)},
                           "alarms_on_unchanged_rows": alarms_elsewhere}
    all_r = judged(a_files, b_files, force=True, threshold=threshold)
    row = next(x for x in all_r.rows if x.name == name)
    out["measured_change"] = row.change
    out["measured_ci95"] = [row.ci95[0] - 1, row.ci95[1] - 1]
    return out


def bisect(work: Path, histories: int, step: float, between: float, log) -> dict:
    from bench.history import walk
    from bench.results import layout as rd

    found, undecided, wrong = 0, 0, 0
    rng = np.random.default_rng(2026)
    names = ("seamcall/emulated/vp_info", "lean/emulated/vp_info")
    shape = quick_shape()
    for h in range(histories):
        repo, results = work / f"hist{h}", work / f"hist{h}-results"
        repo.mkdir()
        git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True,
                                        text=True).stdout.strip()
        git("init", "-q", "-b", "main")
        git("config", "user.email", "t@example.com")
        git("config", "user.name", "t")
        at = int(rng.integers(2, 31))
        shas = []
        for i in range(32):
            (repo / "f.txt").write_text(str(i))
            git("add", "-A")
            git("commit", "-qm", f"commit {i}")
            shas.append(git("rev-parse", "HEAD"))
        folder = results / "synth"
        folder.mkdir(parents=True)
        for i, sha in enumerate(shas):
            benches = []
            for k, n in enumerate(names):
                stepped = k == 0 and i >= at
                level = 150.0 * (1 + step if stepped else 1) * np.exp(rng.normal(0, between))
                vals = level * (1 + 0.005 * rng.standard_normal(shape))
                benches.append({"metadata": {"name": n, "unit": "integer", "seambench_unit": "core_cycles",
                                             "seambench_code_hash": f"{n}{stepped}",
                                             "seambench_machine": "synth"},
                                "runs": [{"values": [float(v) for v in row]} for row in vals]})
            (folder / f"{sha}.json").write_text(json.dumps({"version": "1.0", "benchmarks": benches,
                                                            "metadata": {"seambench_commit": sha}}))
        w = walk.Walker(repo, results, machine="synth", worktree=work / f"wt{h}", log=lambda m: None)
        r = walk.bisect(w, shas, names[0], extra_runs=0)  # every commit stored: nothing to measure
        if r.undecided:
            undecided += 1
        elif r.bad == shas[at] and r.exact:
            found += 1
        else:
            wrong += 1
        log(f"bisect: history {h + 1}/{histories}: step at {at}, {'found' if r.bad == shas[at] else r.message[:80]}")
        assert not rd.failed_path(results, "synth", shas[0]).exists()
    return {"histories": histories, "step": step, "between_sd": between, "found": found,
            "undecided": undecided, "wrong": wrong, "share": found / histories if histories else None}


def merged(doc: dict, stored: dict | None) -> dict:
    """doc, with the parts it did not measure taken from the file stored before for the same
    machine (each keeps the date it was measured): `--only power` must not drop a stored A/A."""
    if not isinstance(stored, dict) or stored.get("machine") != doc["machine"]:
        return doc
    out = dict(doc)
    for part in PARTS:
        if part not in doc and isinstance(stored.get(part), dict):
            out[part] = {"date": stored.get("date"), **stored[part]}
    return out


def _when(doc: dict, part: str) -> str:
    d = doc[part].get("date")
    return f" (measured {d})" if d and d != doc["date"] else ""


def markdown(doc: dict) -> str:
    out = [f"Verdicts on {doc['machine']}, {doc['date']} ({doc['seconds']:.0f} s)", ""]
    if "aa" in doc:
        a = doc["aa"]
        out += [f"A/A{_when(doc, 'aa')}: {a['runs']} quick-suite runs of one build, {a['compares']} compares: "
                f"{a['alarming']} with any faster/slower row = {a['share']:.1%} (target <= 5%); "
                f"between-run variance from {', '.join(a['sources'])}", "",
                "| benchmark | between-run sd | verdicts over all pairs |", "|---|---:|---|"]
        for n, v in a["verdicts"].items():
            out.append(f"| {n} | {a['between_sd'].get(n, float('nan')):.2%} | "
                       + ", ".join(f"{k} {c}" for k, c in sorted(v.items())) + " |")
        out.append("")
    for part, what in (("power", "a planted change"), ("half", "a planted half-percent change")):
        if part not in doc:
            continue
        p = doc[part]
        base = f" over {p['base_latency']}" if "base_latency" in p else ""
        base += f", threshold {p['threshold']:.1%}" if "threshold" in p else ""
        planted = [p] + list(p.get("others", {}).values())
        out += [f"{part.capitalize()}{_when(doc, part)}: {what}, emul_latency units{base}, on "
                + ", ".join(f"{x['benchmark']} (+{x.get('latency', p['latency'])})" for x in planted), "",
                "| planted on | measured over all runs (95% CI) | runs a side | compares | called slower "
                "| share (target >= 90%) | alarms on unchanged rows |", "|---|---|---:|---:|---:|---:|---:|"]
        for x in planted:
            change = f"{x['measured_change']:+.2%} ({x['measured_ci95'][0]:+.2%} .. {x['measured_ci95'][1]:+.2%})"
            for k in (1, 3):
                r = x[f"{k}_run"]
                if r["compares"]:
                    out.append(f"| {x['benchmark']} | {change} | {k} | {r['compares']} | {r['slower']} | {r['share']:.0%} "
                               f"| {r['alarms_on_unchanged_rows']} |")
                    change = ""
        out.append("")
    if "bisect" in doc:
        b = doc["bisect"]
        out += [f"Bisect{_when(doc, 'bisect')}: {b['histories']} synthetic 32-commit histories, a {b['step']:.1%} step, between-run sd "
                f"{b['between_sd']:.2%}: exact commit found in {b['found']} ({b['share']:.0%}), undecided "
                f"{b['undecided']}, wrong {b['wrong']}", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--aa-runs", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=10, help="single-run-per-side compares of the planted change")
    ap.add_argument("--pairs3", type=int, default=6, help="three-runs-a-side compares of the planted change")
    ap.add_argument("--latency", type=int, default=0,
                    help="units of emul_latency the planted side adds (0: the count bench ab measures closest to --planted)")
    ap.add_argument("--planted", type=float, default=0.01, help="the planted change, when --latency is 0")
    ap.add_argument("--threshold", type=float, default=compare.DEFAULT_THRESHOLD,
                    help="the decision rule's threshold for the power compares")
    ap.add_argument("--half", type=float, default=0.005, help="the half-percent plant (part half)")
    ap.add_argument("--half-threshold", type=float, default=0.005,
                    help="the decision rule's threshold for the half-percent plant's compares")
    ap.add_argument("--histories", type=int, default=20)
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--between", type=float, default=0.001, help="synthetic between-run sd (bisect)")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--keep", metavar="DIR",
                    help="measure into DIR and keep it (its stores, to judge again): default a temporary folder")
    a = ap.parse_args(argv)
    if a.keep and Path(a.keep).exists() and (not Path(a.keep).is_dir() or any(Path(a.keep).iterdir())):
        # a store already holding runs would lend them to this run's compares
        ap.error(f"--keep {a.keep}: not a new or empty folder")
    only = set(a.only.split(","))
    log = lambda m: print(m, file=sys.stderr, flush=True)
    t0 = time.monotonic()
    doc = {"date": datetime.datetime.now().isoformat(" ", "seconds"), "machine": "synth"}
    with (contextlib.nullcontext(a.keep) if a.keep else tempfile.TemporaryDirectory(prefix="verdicts-")) as tmp:
        work = Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "aa" in only:
            doc["aa"] = aa(work, a.aa_runs, log)
        if "power" in only:
            latencies = {n: a.latency or size_latency(work, a.planted, log, parent) for n, parent in PARENTS.items()}
            doc["power"] = power(work, a.pairs, a.pairs3, latencies, log, a.threshold)
        if "half" in only:
            (name, parent), = HALF_PARENTS.items()
            units = size_latency(work, a.half, log, parent, HALF_BASE_LATENCY)
            doc["half"] = power(work, a.pairs, a.pairs3, {name: units}, log, a.half_threshold,
                                HALF_PARENTS, HALF_BASE_LATENCY, "half")
        if "bisect" in only:
            doc["bisect"] = bisect(work, a.histories, a.step, a.between, log)
        ms = [p.name for p in work.glob("*/*") if p.is_dir() and p.parent.name in ("aa", "power", "half")]
        doc["machine"] = ms[0] if ms else "synthetic data only"
    doc["seconds"] = time.monotonic() - t0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # one file per machine id, as repro.py: a run on another machine leaves this one's standing
    stem = f"verdicts-{doc['machine'] if ms else 'synthetic'}"
    try:
        stored = json.loads((out / f"{stem}.json").read_text())
    except (OSError, ValueError):
        stored = None
    doc = merged(doc, stored)
    text = markdown(doc)
    print(text)
    try:  # atomic: the file stored before stays whole; what cannot be written is recovered elsewhere
        store.atomic_write(out / f"{stem}.md", text + "\n")
        store.atomic_write(out / f"{stem}.json", json.dumps(doc, indent=1) + "\n")
    except store.StoreError as e:
        print(f"verdicts: {e}", file=sys.stderr)
        return 1
    print(f"verdicts: stored {out / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
