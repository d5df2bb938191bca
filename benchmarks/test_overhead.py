"""Why the timed loop lives in C: the same call timed three ways.

    make bench-overhead      (pytest-benchmark; prints the README's table, figures also in extra_info)

Not a test: nothing here asserts a time.  The call is the pipelined emulated
`lean` wrapper (a few ns), where harness overhead shows most.
"""
import timeit

import numpy as np
import pytest

from bench.native import _core
from bench.native import backends
from bench.native import machine
from bench.config import load_builtin
from bench.measure.sampler import Sampler, Target
from bench.native.registry import Registry


@pytest.fixture(scope="module")
def call():
    machine.pin()
    registry = Registry(load_builtin())
    fn, unit = registry.lookup("lean", "emulated", "vp_info")
    unit.set_emulation(backends.SER_MODES["none"])
    yield fn, _core.Args(64)
    unit.set_emulation(0)


def c_loop_ns(fn, args):
    """Per-call ns from the native loop (baseline subtracted)."""
    hz = machine.clocks()["tsc_hz"]
    s = Sampler([Target(fn, 1, args)], _core.Args(64)).resize(4096).take(200)
    net = np.median([x.net_tsc() for x in s])
    gross = np.median([x.ticks[0] / x.n_calls for x in s])
    return net / hz * 1e9, gross / hz * 1e9


def test_overhead_one_call_per_python_call(benchmark, call, overhead_table):
    fn, args = call
    net, gross = c_loop_ns(fn, args)
    n = 200000
    per_timeit = min(timeit.repeat(lambda: _core.call_once(fn, 1, args), number=n, repeat=5)) / n * 1e9
    benchmark.pedantic(_core.call_once, args=(fn, 1, args), iterations=1000, rounds=200)
    per_pytest_benchmark = benchmark.stats.stats.median * 1e9
    benchmark.extra_info.update({
        "c_loop_ns_net": net, "c_loop_ns_gross": gross, "timeit_ns": per_timeit,
        "pytest_benchmark_ns": per_pytest_benchmark,
        "timeit_over_c_loop": per_timeit / gross, "pytest_benchmark_over_c_loop": per_pytest_benchmark / gross,
    })
    overhead_table += [
        "| harness | per call | vs the C loop |",
        "|---|---|---|",
        f"| C loop (bench.measure.sampler, batches of 4096) | {gross:.2f} ns ({net:.2f} ns net of the empty call) | 1 |",
        f"| `timeit`, one call per Python call | {per_timeit:.1f} ns | {per_timeit / gross:.1f}x |",
        f"| pytest-benchmark, one call per Python call | {per_pytest_benchmark:.1f} ns | "
        f"{per_pytest_benchmark / gross:.1f}x |",
    ]
