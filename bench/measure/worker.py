"""The pyperf side of `bench run`: `python -m bench.measure.worker` is both pyperf's manager
and its worker processes.

`bench run` (bench/measure/driver.py) starts the manager once per suite; pyperf's Runner
re-executes `python -m bench.measure.worker <our options> --worker ...` for every worker
process, so this module, not the `bench` console script, is what sys.argv names.
Our options all start with --sb- so they never collide with pyperf's.

Each pyperf call is one kept sample of bench.measure.sampler: a batch of calls of the
convention, a batch of the empty function and a reference ADD chain, interleaved by the C
loop; samples that bench.measure.policy excludes are measured again there.  The calls per
batch are the parent's (--sb-calls, the same in every run on a machine), else sized here
once; pyperf's `loops` only scales what it is told (it gets seconds per call net of the
empty batch and is never asked to calibrate).  The driver stores core cycles per call,
converted sample by sample, from the side file that carries every call's sample and every
excluded one (also for --trace).
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
from bench.measure.prepare import Context, prepare
from bench.native import backends, machine
from bench.native.registry import Registry
from bench.results.store import atomic_write

SIDE_PREFIX = "worker-"


def own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--sb-suite", required=True)
    p.add_argument("--sb-conv-file", action="append", default=[])
    p.add_argument("--sb-specs", required=True, help="comma-separated convention/backend/leaf")
    p.add_argument("--sb-tsc-hz", type=float, required=True)
    p.add_argument("--sb-tsc-per-core", type=float, required=True)
    p.add_argument("--sb-probe-floor", type=float, default=0.0, help="the load/store probe's floor (0: none)")
    p.add_argument("--sb-serialize", required=True, help="the emulated stub's serialization (parent's choice)")
    p.add_argument("--sb-side", required=True, help="folder for side files and progress")
    p.add_argument("--sb-calls", default="", help="comma-separated NAME=N: calls per batch (else sized here)")
    return p


class PyperfTimer:
    """pyperf's time function for one benchmark: one call of it is one kept sample of
    bench.measure.sampler (excluded samples are measured again there).  Set up lazily, on the
    first call, so the manager and the workers measuring other benchmarks never pay for it."""

    def __init__(self, spec, ctx, prepared=None, n_calls=None):
        self.spec, self.ctx = spec, ctx
        self.prepared = prepared  # a bench.measure.model.Prepared, when the caller has one (the pytest plugin)
        self.n_calls = n_calls    # the parent's calls per batch (None: sized on the first call)
        self.sampler = None
        self.calls = []     # per pyperf call (warm-ups, then values): the Sample that stands for it
        self.forced = 0     # calls for which every attempt was excluded: the last one stands

    def setup(self):
        if self.prepared is None:
            # The parent decided what runs (bench.measure.runner.expand: the runtime safety verdict
            # where the check ran, else the prediction); a pair it let through is not judged again.
            self.prepared = prepare(self.spec, self.ctx, allow_unsafe=True)
        self.sampler = self.ctx.sampler([self.prepared])

    def __call__(self, loops):
        if self.sampler is None:
            self.setup()
        if self.sampler.n_calls is None:
            self.sampler.size(self.ctx.target_ticks(), self.n_calls)
        kept = self.sampler.take(1)
        if kept:
            sample = kept[0]
        else:
            sample = self.sampler.screen.log[-1]
            self.forced += 1
        self.calls.append(sample)
        # pyperf divides by loops: return the time `loops` calls take at the measured rate.
        return max(sample.net_tsc(), 1e-3) / self.ctx.clocks["tsc_hz"] * loops

    def side(self) -> dict:
        """What the driver reads back: every call's sample and every excluded one."""
        return {"calls": [x.as_dict() for x in self.calls],
                "excluded": [x.as_dict() for x in self.sampler.screen.log if x.excluded],
                "forced": self.forced, "n_calls": self.sampler.n_calls,
                "serialize_mode": self.prepared.ser_mode, "code_hash": self.prepared.code_hash}


def _build(opts):
    catalog = load_builtin()
    for path in opts.sb_conv_file:
        catalog = catalog.with_user_file(path)
    suite, catalog = parse_suite(opts.sb_suite, catalog, list(backends.BACKENDS))
    clocks = {"tsc_hz": opts.sb_tsc_hz, "tsc_per_core_cycle": opts.sb_tsc_per_core,
              "core_hz_estimate": opts.sb_tsc_hz / opts.sb_tsc_per_core,
              "probe_floor": opts.sb_probe_floor or None}
    registry = Registry(catalog)
    ctx = Context(catalog, registry, suite.settings, clocks=clocks, serialize=opts.sb_serialize)
    specs = [Spec(*s.split("/")) for s in opts.sb_specs.split(",") if s]
    calls = {name: int(n) for name, n in (x.rsplit("=", 1) for x in opts.sb_calls.split(",") if x)}
    return suite, ctx, specs, calls


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, rest = own_parser().parse_known_args(argv)
    own = argv[:len(argv) - len(rest)]
    if rest and argv[len(own):] != rest:
        raise SystemExit("bench.measure.worker: put the --sb-* options before pyperf's")
    suite, ctx, specs, calls = _build(opts)
    s = suite.settings
    token = f"{os.getpid()}-{time.time_ns()}"
    runner = pyperf.Runner(values=s.values, processes=s.runs, warmups=s.warmups,
                           min_time=s.batch_us * 1e-6, program_args=("-m", "bench.measure.worker", *own),
                           metadata={"seambench_worker": token})
    args = runner.parse_args(rest)
    timers = []
    progress = None if args.worker else open(os.path.join(opts.sb_side, "progress"), "a", buffering=1)
    quiet = sys.stderr if args.worker else open(os.devnull, "w")
    for spec in specs:
        timer = PyperfTimer(spec, ctx, n_calls=calls.get(spec.name))
        timers.append(timer)
        # pyperf prints a summary line per benchmark even with --quiet; the driver prints its own.
        with contextlib.redirect_stdout(quiet):
            runner.bench_time_func(spec.name, timer)
        if progress:
            progress.write(spec.name + "\n")
    if args.worker:
        side = {"token": token, "pid": os.getpid(), "tsc_hz": ctx.clocks["tsc_hz"],
                "layout": machine.address_layout(),
                "benchmarks": {x.spec.name: x.side() for x in timers if x.calls}}
        atomic_write(os.path.join(opts.sb_side, f"{SIDE_PREFIX}{token}.json"), json.dumps(side))
    ctx.perf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
