"""The pyperf side of `bench run`: `python -m bench.measure.worker` is both pyperf's manager
and its worker processes.

`bench run` (bench/measure/driver.py) starts the manager once per suite; pyperf's Runner
re-executes `python -m bench.measure.worker <our options> --worker ...` for every worker
process, so this module, not the `bench` console script, is what sys.argv names.
Our options all start with --sb- so they never collide with pyperf's.

Each pyperf value is one interleaved native sample: a batch of `loops` calls of the
convention and a batch of `loops` calls of the empty function, timed back to back
by the C loop.  The value is their difference: seconds per call, net of the loop.
Around each sample the C loop reads perf software events; a sample during which
the thread was switched out, migrated or took a page fault is not returned to
pyperf but measured again (up to MAX_RETRIES times) and counted; so is a sample one of whose
batches took far longer per call than the worker's usual (a TSC gap: time the host took).  Every sample,
kept or not, goes to a side file that the driver reads for its statistics on
disturbance and for --trace.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import pyperf

from bench.config import load_builtin, parse_suite
from bench.measure.model import Spec
from bench.measure.prepare import Context, disturbed, prepare, sample_events
from bench.native import _core, backends
from bench.native.registry import Registry
from bench.results.store import atomic_write

MAX_RETRIES = 20
# A batch taking this many times the worker's usual time per call had time taken from it that
# the guest kernel does not report (the host preempted the vCPU): the TSC gap.  An inflated
# empty batch would make the net value too small, an inflated convention batch too large.
GAP_FACTOR = 1.5
GAP_MIN_SAMPLES = 5
SIDE_PREFIX = "worker-"


def own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--sb-suite", required=True)
    p.add_argument("--sb-conv-file", action="append", default=[])
    p.add_argument("--sb-specs", required=True, help="comma-separated convention/backend/leaf")
    p.add_argument("--sb-tsc-hz", type=float, required=True)
    p.add_argument("--sb-tsc-per-core", type=float, required=True)
    p.add_argument("--sb-side", required=True, help="folder for side files and progress")
    return p


class Sampler:
    """pyperf's time function for one benchmark: set up lazily, on the first call, so the
    manager and the workers measuring other benchmarks never pay for it."""

    def __init__(self, spec, ctx, prepared=None):
        self.spec, self.ctx = spec, ctx
        self.prepared = prepared  # a bench.measure.model.Prepared, when the caller has one (the pytest plugin)
        self.samples = []   # one entry per native sample, kept or not
        self.calls = 0      # pyperf calls of this function (= values + warm-ups)

    def setup(self):
        # The parent decided what runs (bench.measure.runner.expand: the runtime safety verdict where the
        # check ran, else the prediction); a pair it let through is not judged again here.
        self.prepared = prepare(self.spec, self.ctx, allow_unsafe=True)

    def _gap(self, a_per_call, b_per_call):
        clean = [x for x in self.samples[-64:] if x["kept"] and not x["disturbed"]]
        if len(clean) < GAP_MIN_SAMPLES:
            return False
        ref_a = sorted(x["a"] / x["n"] for x in clean)[len(clean) // 2]
        ref_b = sorted(x["b"] / x["n"] for x in clean)[len(clean) // 2]
        return a_per_call > GAP_FACTOR * ref_a or b_per_call > GAP_FACTOR * ref_b

    def __call__(self, loops):
        if self.prepared is None:
            self.setup()
        p, ctx = self.prepared, self.ctx
        # The C loop runs calls in fours; pyperf calibrates loops as powers of two.
        n = max(4, (loops + 3) // 4 * 4)
        slots = ctx.perf_slots
        n_ev = len(slots)
        index = self.calls
        self.calls += 1
        for attempt in range(MAX_RETRIES + 1):
            ta, tb, t0, ev = _core.measure_pair(p.fn, _core.EMPTY_FN, p.leaf.rax, 0, p.args, p.base_args,
                                                n, 1, ctx.perf_fd, n_ev)
            counts = sample_events(ev, slots)
            net = (int(ta[0]) - int(tb[0])) / n
            counts["tsc_gap"] = int(self._gap(int(ta[0]) / n, int(tb[0]) / n))
            bad = bool(disturbed(counts, also=("tsc_gap",)) or net <= 0)
            sample = {"i": index, "t": int(t0[0]), "a": int(ta[0]), "b": int(tb[0]), "n": n,
                      "ev": counts, "disturbed": bad, "kept": False}
            if ctx.hw:  # core cycles and instructions per call, net of the empty batch
                sample["hw"] = {name: (int(ev[slots[name]]) - int(ev[n_ev + slots[name]])) / n
                                for name in ("cycles", "instructions")}
            self.samples.append(sample)
            if not bad:
                break
        self.samples[-1]["kept"] = True
        # pyperf divides by loops: return the time `loops` calls take at the measured rate.
        per_call = max(net, 1e-3) / ctx.clocks["tsc_hz"]
        return per_call * loops


def _build(opts):
    catalog = load_builtin()
    for path in opts.sb_conv_file:
        catalog = catalog.with_user_file(path)
    suite, catalog = parse_suite(opts.sb_suite, catalog, list(backends.BACKENDS))
    clocks = {"tsc_hz": opts.sb_tsc_hz, "tsc_per_core_cycle": opts.sb_tsc_per_core,
              "core_hz_estimate": opts.sb_tsc_hz / opts.sb_tsc_per_core}
    registry = Registry(catalog)
    ctx = Context(catalog, registry, suite.settings, clocks=clocks)
    specs = [Spec(*s.split("/")) for s in opts.sb_specs.split(",") if s]
    return suite, ctx, specs


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, rest = own_parser().parse_known_args(argv)
    own = argv[:len(argv) - len(rest)]
    if rest and argv[len(own):] != rest:
        raise SystemExit("bench.measure.worker: put the --sb-* options before pyperf's")
    suite, ctx, specs = _build(opts)
    s = suite.settings
    token = f"{os.getpid()}-{time.time_ns()}"
    runner = pyperf.Runner(values=s.values, processes=s.runs, warmups=s.warmups,
                           min_time=s.batch_us * 1e-6, program_args=("-m", "bench.measure.worker", *own),
                           metadata={"seambench_worker": token})
    args = runner.parse_args(rest)
    samplers = []
    progress = None if args.worker else open(os.path.join(opts.sb_side, "progress"), "a", buffering=1)
    quiet = sys.stderr if args.worker else open(os.devnull, "w")
    for spec in specs:
        sampler = Sampler(spec, ctx)
        samplers.append(sampler)
        # pyperf prints a summary line per benchmark even with --quiet; the driver prints its own.
        with contextlib.redirect_stdout(quiet):
            runner.bench_time_func(spec.name, sampler)
        if progress:
            progress.write(spec.name + "\n")
    if args.worker:
        done = [x for x in samplers if x.samples]
        side = {"token": token, "pid": os.getpid(), "benchmarks": {x.spec.name: {
            "samples": x.samples, "n_calls": x.samples[-1]["n"],
            "serialize_mode": x.prepared.ser_mode, "tsc_hz": ctx.clocks["tsc_hz"]} for x in done}}
        atomic_write(os.path.join(opts.sb_side, f"{SIDE_PREFIX}{token}.json"), json.dumps(side))
    if ctx.perf_fd >= 0:
        os.close(ctx.perf_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
