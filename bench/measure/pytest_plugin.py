"""pytest plugin (entry point `seambench`): measure a convention inside pytest-benchmark.

    def test_seamcall_ret_cost(seambench):
        result = seambench("seamcall_ret", backend="emulated", leaf="vp_info")
        assert result["cycles"] > 0

Each pytest-benchmark round is one native sample: a batch of calls of the
convention and a batch of the empty function, interleaved by the C loop, taken
by bench run's own time function (bench.measure.worker.PyperfTimer over
bench.measure.sampler: a sample the exclusion policy rejects is measured again and
counted; a value is never below 0.001 cycles).  The round's duration is the convention's net time per call (seconds), so
pytest-benchmark's statistics, `--benchmark-save`, `--benchmark-compare` and
`--benchmark-compare-fail` work on per-call cost, not on Python overhead (one call
per Python call would report ~20x the true cost here).  Median core cycles per call
(each sample converted by its own reference chain), TSC cycles, the TSC frequency, the
declaration hash and the code hash go into `extra_info`.
"""
from __future__ import annotations

import os

import pytest

_CTX = {}


def _context(conventions_files=()):
    from bench.config import Settings, load_builtin
    from bench.measure.prepare import Context
    from bench.native.registry import Registry
    key = tuple(str(f) for f in conventions_files)
    if key not in _CTX:
        catalog = load_builtin()
        for f in conventions_files:
            catalog = catalog.with_user_file(f)
        _CTX[key] = Context(catalog, Registry(catalog), Settings())
    return _CTX[key]


class SeamBench:
    def __init__(self, benchmark):
        self.benchmark = benchmark

    def __call__(self, convention, backend="emulated", leaf=None, conventions_file=None, rounds=200,
                 warmup_rounds=5, cpu=None, allow_unsafe=False):
        import numpy as np

        from bench.measure.model import Spec
        from bench.measure.prepare import prepare
        from bench.measure.worker import PyperfTimer
        from bench.native import machine
        files = [conventions_file] if isinstance(conventions_file, (str, os.PathLike)) else (conventions_file or [])
        ctx = _context(files)
        conv = ctx.catalog.convention(convention)
        leaf = leaf or (conv.meant_for[0] if conv.meant_for else "vp_info")
        before = os.sched_getaffinity(0)
        machine.pin(cpu)
        p = None
        try:
            spec = Spec(convention, backend, leaf)
            p = prepare(spec, ctx, allow_unsafe=allow_unsafe)
            tsc_hz = ctx.clocks["tsc_hz"]
            timer = PyperfTimer(spec, ctx, prepared=p)
            timer.setup()
            n = timer.sampler.calibrate(ctx.target_ticks()).n_calls
            clock = {"t": 0.0}

            def native_net_clock():
                return clock["t"]

            def one_sample():
                clock["t"] += timer(n) / n  # seconds per call, kept positive as for bench run

            # pytest-benchmark times each round with the fixture's timer; a clock that advances by
            # the native loop's net time per call makes a round's duration exactly that.
            self.benchmark._timer = native_net_clock
            self.benchmark.pedantic(one_sample, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        finally:
            if p is not None:
                p.unit.set_emulation(0)  # also when a round raised: the unit is shared by later tests
            os.sched_setaffinity(0, before)
        excluded = timer.sampler.screen.excluded()
        kept = timer.calls[warmup_rounds:] if len(timer.calls) > warmup_rounds else timer.calls
        tsc = float(np.median([x.net_tsc() for x in kept]))
        info = {"convention": convention, "backend": backend, "leaf": leaf,
                "cycles": float(np.median([x.core() for x in kept])), "cycles_unit": "core", "tsc_cycles": tsc,
                "ns": tsc / tsc_hz * 1e9, "n_calls": n, "excluded": sum(excluded.values()),
                "excluded_by_reason": excluded, "tsc_hz": tsc_hz, "conv_hash": conv.decl_hash,
                "code_hash": p.code_hash}
        self.benchmark.extra_info.update(info)
        return info


@pytest.fixture
def seambench(benchmark):
    """Measure a calling convention through seambench's native loop inside pytest-benchmark."""
    return SeamBench(benchmark)
