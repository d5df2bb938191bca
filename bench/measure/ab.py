"""`bench ab X Y`: settle an argument between two conventions.

The native loop runs a batch of X, a batch of Y, a batch of the empty function and the
reference chain in every sample, in an order that gives each the same neighbours as often
(_core.slot_order), on one pinned CPU, so frequency drift, host noise and cache state hit both
alike.  Each pair gives a ratio of per-call costs, net of the empty loop (measured in the same
process).  Pairs during which the kernel reports a context switch, migration or page fault are
dropped and measured again.

That runs in several fresh processes (default 6), one after the other.  Where the code lands
moves one convention against the other, identical code included: measured here, by up to
0.7% the same way in every process of a run when every process put it in the same place
(on the CI's host 0.6-1.4%, a false "faster" for identical twins), and by several percent in
single processes.  So each process draws where it lands: its address space is randomized
(LAYOUT), odd-numbered processes load Y's code before X's, and the pairs are taken in
PLACEMENTS stretches, each with the measured code moved to fresh physical pages
(machine.fresh_code_pages).  What the layout does is then spread between processes, which the
CI holds, not a bias every process shares (benchmarks/layout.py).  A process whose median ratio
is far from its peers' is dropped, reported, and replaced.  The answer is the median ratio over
all kept pairs with a 95% CI that takes the processes as its units
(bench.stats.noise.run_intervals, as bench run's CI takes its workers): Student's t on the
spread of the processes' medians, which a bootstrap over six processes understated.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from statistics import median

from bench.config import Settings, load_builtin
from bench.measure.model import ABError, Sample, Spec
from bench.measure.prepare import Context, prepare
from bench.native import _core, backends, machine
from bench.native.registry import Registry

# Every A/B worker process imports this module: bench.stats (numpy, scipy) is imported only where
# the parent decides, so that six workers do not pay ~50 ms each for what they never use.

DEFAULT_THRESHOLD = 0.005  # below 0.5% two conventions count as no different
NO_DIFFERENCE = "no significant difference"
# bench.stats.verdict.decide's answer as A/B words it: "same" and "unknown" both mean that
# neither convention was shown faster.  One test, so no family correction; the CI (processes as
# its units) already holds what varies between processes, ab's between-run component.
AB_WORDING = {"slower": "slower", "faster": "faster", "same": NO_DIFFERENCE, "unknown": NO_DIFFERENCE}


@dataclass
class ABResult:
    x: str
    y: str
    backend: str
    leaf: str
    n_calls: int
    ratios: list              # Y/X per kept pair (one sample: X, Y, the empty batch, the reference)
    x_cycles: list            # per kept pair, core cycles per call net of the empty batch
    y_cycles: list
    baseline: float           # empty batch, TSC ticks per call (median)
    tsc_per_core: float       # median of the pairs' own TSC ticks per core cycle
    excluded: dict            # reason (bench.measure.policy) -> pairs measured again
    ratio: float
    ci95: tuple
    verdict: str
    threshold: float
    tsc_hz: float
    samples: list = field(default_factory=list)  # every pair (bench.measure.model.Sample), for --trace
    processes: list = field(default_factory=list)  # per process: pid, pairs, median ratio, dropped
    code_pages: str = "shared"  # machine.fresh_code_pages's answer in the measuring processes

    def as_dict(self):
        return {"x": self.x, "y": self.y, "backend": self.backend, "leaf": self.leaf,
                "ratio": self.ratio, "ci95": list(self.ci95), "verdict": self.verdict,
                "change": self.ratio - 1, "threshold": self.threshold,
                "x_cycles": float(median(self.x_cycles)), "y_cycles": float(median(self.y_cycles)),
                "cycles_unit": "core", "tsc_per_core_cycle": self.tsc_per_core,
                "baseline_tsc_cycles": self.baseline, "pairs": len(self.ratios),
                "excluded": sum(self.excluded.values()), "excluded_by_reason": self.excluded,
                "n_calls": self.n_calls, "code_pages": self.code_pages,
                "processes": [{k: v for k, v in p.items() if k != "ratios"} for p in self.processes]}


def default_leaf(catalog, x, y):
    cx, cy = catalog.convention(x), catalog.convention(y)
    common = [lf for lf in cx.meant_for if lf in cy.meant_for]
    return (common or list(cx.meant_for) or list(cy.meant_for) or ["vp_info"])[0]


def run_ab(ctx: Context, x, y, backend="emulated", leaf=None, pairs=2000, threshold=DEFAULT_THRESHOLD,
           allow_unsafe=False, with_ci=True, y_first=False, placements=0) -> ABResult:
    catalog = ctx.catalog
    leaf = leaf or default_leaf(catalog, x, y)
    catalog.leaf(leaf)
    if backend not in backends.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(backends.BACKENDS)}")
    # Each convention not built in is compiled into a unit of its own (Registry.lookup): its
    # emulation knobs (emul_latency) are then its own.  Wrappers are cache-line aligned, so two
    # copies of the same code measure the same (within ~0.05% here).
    if x == y:
        raise ValueError("X and Y are the same convention; declare a twin to A/B identical code")
    # y_first: Y's unit (a convention not built in) is compiled and loaded first, so the two
    # trade places in memory.
    prepared = {n: prepare(Spec(n, backend, leaf), ctx, allow_unsafe) for n in ((y, x) if y_first else (x, y))}
    px, py = prepared[x], prepared[y]
    # One sample = one pair: X, Y, the empty batch (subtracted from both) and the reference
    # chain, in an order balanced over neighbours (_core.slot_order), so drift and the clock's
    # state hit both alike.
    sampler = ctx.sampler([px, py]).calibrate(ctx.target_ticks())
    # placements (the worker processes): the pairs in that many stretches, each with the
    # measured code on fresh physical pages (machine.fresh_code_pages), so that no one placement
    # of the code favours one side for the life of the process.
    code_pages, kept, stretches = "shared", [], max(1, placements)
    try:
        for k in range(stretches):
            if placements:
                code_pages = machine.fresh_code_pages([px.fn, py.fn, _core.timed_code()[0]])
            kept += sampler.take(pairs * (k + 1) // stretches - len(kept), warmups=4)
    finally:
        for p in (px, py):
            p.unit.set_emulation(0)
    log = sampler.screen.log
    if len(kept) < 10:
        raise ABError(f"only {len(kept)} undisturbed pairs out of {len(log)}: the machine is too busy")
    ratios = [s.net_tsc(1) / s.net_tsc(0) for s in kept]
    # with_ci=False in worker processes: the parent decides over all of them
    ratio, ci, verdict = float(median(ratios)), (math.nan, math.nan), NO_DIFFERENCE
    if with_ci:
        from bench.stats.summary import paired_ratio_summary
        from bench.stats.verdict import decide
        ratio, ci = paired_ratio_summary(ratios)
        verdict = AB_WORDING[decide(ci, threshold)]
    return ABResult(x, y, backend, leaf, sampler.n_calls, ratios, [s.core(0) for s in kept],
                    [s.core(1) for s in kept], float(median([s.empty / s.n_calls for s in kept])),
                    float(median([s.tsc_per_core for s in kept])), sampler.screen.excluded(), ratio, ci,
                    verdict, threshold, ctx.clocks["tsc_hz"], list(log), code_pages=code_pages)


def print_result(console, r: ABResult):
    from rich.table import Table
    console.print(f"A/B on {r.backend}, leaf {r.leaf}: {len(r.ratios)} interleaved pairs of {r.n_calls} calls "
                  f"each, in {sum(not p['dropped'] for p in r.processes) or 1} processes")
    t = Table()
    for col in ("convention", "median core cycles/call", "ns/call"):
        t.add_column(col, justify="right" if col != "convention" else "left")
    for name, vals in ((r.x, r.x_cycles), (r.y, r.y_cycles)):
        med = float(median(vals))
        t.add_row(name, f"{med:,.2f}", f"{med * r.tsc_per_core / r.tsc_hz * 1e9:,.2f}")
    console.print(t)
    console.print(f"{r.y} / {r.x}, pair by pair: median {r.ratio:.4f} ({r.ratio - 1:+.2%}), "
                  f"95% CI {r.ci95[0]:.4f} .. {r.ci95[1]:.4f}")
    if r.processes:
        console.print("per process: " + ", ".join(
            f"{p['ratio']:.4f}" + (" (dropped: far from its peers)" if p["dropped"] else "")
            for p in r.processes))
    word = {"slower": f"[red]{r.y} is slower than {r.x}[/]", "faster": f"[green]{r.y} is faster than {r.x}[/]",
            NO_DIFFERENCE: f"no significant difference (the 95% CI is not wholly beyond +-{r.threshold / 2:.2%}: "
                                         "bench.stats.verdict.decide's zones for a threshold of "
                                         f"{r.threshold:.1%})"}[r.verdict]
    console.print(f"verdict: {word}")
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.excluded.items())
    console.print(f"[dim]empty loop {r.baseline:.2f} TSC cycles/call subtracted from both; core cycles from "
                  f"each pair's own reference chain (median 1 core cycle = {r.tsc_per_core:.3f} TSC cycles)"
                  + (f"; {sum(r.excluded.values())} pairs measured again ({dropped})" if r.excluded else "")
                  + f"; code pages {r.code_pages}"
                  + "[/]")


# --- several processes -------------------------------------------------------------------

# Where the workers' code lands, drawn anew in every process and, for the physical pages, in
# every stretch of pairs: identical twins A/B'd in 8 runs each way (benchmarks/layout.py, Zen 4
# guest with a busy sibling) had their runs' ratios spread by sd 0.39% with a fixed address
# space and the pages as loaded (3 of 8 CIs missing 1, as on the CI's host), 0.06% with both
# drawn anew (0 of 8).
LAYOUT = "randomized"  # the workers' address space (machine.child_setup)
PLACEMENTS = 4         # stretches of a worker's pairs, each on fresh code pages (run_ab)
PROCESS_FLOOR = 0.004  # a process's median ratio this far (or 5 robust SDs) from its peers' is an outlier


def processes_interval(groups, confidence=0.95):
    """The median ratio over all processes' pairs and its CI with processes as the units (one
    process: its pairs' order-statistic CI, all it has)."""
    from bench.stats.noise import run_intervals
    from bench.stats.summary import median_ci
    pooled = [float(v) for g in groups for v in g]
    ci = run_intervals([groups], confidence)[0] or median_ci(pooled, confidence)
    return float(median(pooled)), ci


def run_ab_processes(x, y, backend="emulated", leaf=None, pairs=2000, processes=6,
                     threshold=DEFAULT_THRESHOLD, conventions_files=(), allow_unsafe=False, cpu=None,
                     clocks=None, serialize=None, rounds=2) -> ABResult:
    """run_ab in `processes` fresh worker processes (pairs split between them), outlier
    processes replaced; the CI takes the processes as units (see the module).  `clocks`
    (machine.clocks()) and `serialize` (the emulated stub's mode), decided once by the caller,
    go to every worker, as bench run's do."""
    from bench.stats.summary import outlier_groups
    from bench.stats.verdict import decide
    per = max(20, -(-pairs // processes))
    base_cmd = [sys.executable, "-m", "bench.measure.ab", x, y, "--backend", backend, "--pairs", str(per)]
    if leaf:
        base_cmd += ["--leaf", leaf]
    for f in conventions_files:
        base_cmd += ["-C", str(f)]
    if allow_unsafe:
        base_cmd.append("--allow-unsafe")
    if cpu is not None:
        base_cmd += ["--cpu", str(cpu)]
    if clocks:
        base_cmd += ["--tsc-hz", repr(clocks["tsc_hz"]), "--tsc-per-core", repr(clocks["tsc_per_core_cycle"]),
                     "--probe-floor", repr(clocks.get("probe_floor") or 0.0)]
    if serialize:
        base_cmd += ["--serialize", serialize]

    spawned = 0

    def spawn():
        nonlocal spawned
        cmd = base_cmd + (["--y-first"] if spawned % 2 else [])
        spawned += 1
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=machine.child_setup(layout=LAYOUT))
        if proc.returncode != 0:
            # A crash in the timed loop (an instruction this CPU lacks) leaves stderr empty: say the signal.
            rc = proc.returncode
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"failed (exit status {rc})"
            raise ABError(f"A/B worker {how}: {proc.stderr.strip()[-2000:] or 'nothing on stderr'}")
        return json.loads(proc.stdout)

    docs = [spawn() for _ in range(processes)]
    dropped = []
    for _ in range(rounds):
        bad = outlier_groups([d["ratio"] for d in docs], PROCESS_FLOOR)
        if not bad or len(bad) * 2 >= len(docs):
            break
        for i in sorted(bad, reverse=True):
            dropped.append(docs.pop(i))
        docs += [spawn() for _ in bad]
    groups = [d["ratios"] for d in docs]
    ratio, ci = processes_interval(groups)
    first = docs[0]
    samples = sorted((Sample.from_dict(s) for d in docs + dropped for s in d["samples"]), key=lambda s: s.t)
    procs = [{"pid": d["pid"], "pairs": len(d["ratios"]), "ratio": d["ratio"], "dropped": gone,
              "y_first": d["y_first"], "code_pages": d["code_pages"],
              "first_t": d["samples"][0]["t"], "last_t": d["samples"][-1]["t"]}
             for gone, ds in ((False, docs), (True, dropped)) for d in ds]
    excluded = {}
    for d in docs:
        for k, v in d["excluded"].items():
            excluded[k] = excluded.get(k, 0) + v
    return ABResult(x, y, backend, first["leaf"], first["n_calls"], [r for g in groups for r in g],
                    [v for d in docs for v in d["x_cycles"]], [v for d in docs for v in d["y_cycles"]],
                    float(median([d["baseline"] for d in docs])),
                    float(median([d["tsc_per_core"] for d in docs])), excluded,
                    ratio, ci, AB_WORDING[decide(ci, threshold)], threshold,
                    clocks["tsc_hz"] if clocks else first["tsc_hz"], samples,
                    sorted(procs, key=lambda p: p["first_t"]),
                    "; ".join(sorted({d["code_pages"] for d in docs})))


def _worker_main(argv=None):
    """`python -m bench.measure.ab X Y ...`: one process's pairs, as JSON on stdout."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.measure.ab")
    p.add_argument("x")
    p.add_argument("y")
    p.add_argument("--backend", default="emulated")
    p.add_argument("--leaf")
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("-C", dest="files", action="append", default=[])
    p.add_argument("--allow-unsafe", action="store_true")
    p.add_argument("--cpu", type=int)
    p.add_argument("--tsc-hz", type=float, help="the parent's clocks (else measured here)")
    p.add_argument("--tsc-per-core", type=float)
    p.add_argument("--probe-floor", type=float, default=0.0, help="the load/store probe's floor (0: none)")
    p.add_argument("--serialize", help="the emulated stub's serialization (the parent's choice)")
    p.add_argument("--y-first", action="store_true", help="load Y's code before X's")
    a = p.parse_args(argv)
    machine.pin(a.cpu)
    catalog = load_builtin()
    for f in a.files:
        catalog = catalog.with_user_file(f)
    clocks = None
    if a.tsc_hz and a.tsc_per_core:
        clocks = {"tsc_hz": a.tsc_hz, "tsc_per_core_cycle": a.tsc_per_core,
                  "core_hz_estimate": a.tsc_hz / a.tsc_per_core, "probe_floor": a.probe_floor or None}
    ctx = Context(catalog, Registry(catalog), Settings(), clocks=clocks, serialize=a.serialize)
    # SEAMBENCH_PLACEMENTS (0: the pages as loaded) and SEAMBENCH_LAYOUT: benchmarks/layout.py's other ways
    r = run_ab(ctx, a.x, a.y, a.backend, a.leaf, a.pairs, allow_unsafe=a.allow_unsafe, with_ci=False,
               y_first=a.y_first, placements=int(os.environ.get("SEAMBENCH_PLACEMENTS", PLACEMENTS)))
    json.dump({"pid": os.getpid(), "leaf": r.leaf, "n_calls": r.n_calls, "ratios": r.ratios,
               "ratio": r.ratio, "x_cycles": r.x_cycles, "y_cycles": r.y_cycles, "baseline": r.baseline,
               "tsc_per_core": r.tsc_per_core, "excluded": r.excluded, "tsc_hz": r.tsc_hz,
               "code_pages": r.code_pages, "y_first": a.y_first,
               "samples": [s.as_dict() for s in r.samples]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
