"""Does the load/store probe see what moves the figures?  One process, watched for a while.

Interleaves the emulated `seamcall_ret` stub and the `xsave` convention in the sampler (the
probe is not judged here: every undisturbed sample is kept) and prints, per window of samples,
the medians of the TSC-per-core ratio, the probe's core cycles and both conventions' core
cycles; then the same medians over the windows whose probe is within the contention tolerance
of the lowest seen, and over the others.  If the probe is the right sign, the quiet windows
agree to a few tenths of a percent and the others do not.

    python benchmarks/contention.py [--seconds 60] [--window 200]
"""
from __future__ import annotations

import argparse
import statistics as st
import sys
import time

from bench.config import Settings, load_builtin
from bench.measure import policy
from bench.measure.model import Spec
from bench.measure.prepare import Context, prepare
from bench.native import machine
from bench.native.registry import Registry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/contention.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--window", type=int, default=200, help="samples per printed window")
    a = p.parse_args(argv)
    machine.pin()
    catalog = load_builtin()
    ctx = Context(catalog, Registry(catalog), Settings(batch_us=50))
    ctx.clocks["probe_floor"] = None  # watch the probe, exclude nothing by it
    specs = [Spec("seamcall_ret", "emulated", "vp_info"), Spec("xsave", "emulated", "migration")]
    prepared = [prepare(s, ctx) for s in specs]
    sampler = ctx.sampler(prepared).calibrate(ctx.target_ticks())
    rows, t0 = [], time.monotonic()
    print("    s  tsc/core  probe  seamcall_ret   xsave   (core cycles; medians of a window)")
    while time.monotonic() - t0 < a.seconds:
        w = sampler.take(a.window)
        row = (time.monotonic() - t0, st.median(s.tsc_per_core for s in w), st.median(s.probe_core for s in w),
               st.median(s.core(0) for s in w), st.median(s.core(1) for s in w))
        rows.append(row)
        print("%6.1f  %7.4f  %6.1f  %12.2f  %7.1f" % row, flush=True)
    for p_ in prepared:
        p_.unit.set_emulation(0)
    floor = min(r[2] for r in rows)
    quiet = [r for r in rows if r[2] <= floor * (1 + policy.CONTENTION_TOLERANCE)]
    shared = [r for r in rows if r not in quiet]
    for name, group in (("quiet core", quiet), ("shared core", shared)):
        if not group:
            print(f"{name}: no window")
            continue
        def span(v):  # median, and the middle 80% of the windows
            q = st.quantiles(v, n=10) if len(v) > 1 else [v[0]] * 9
            return f"{st.median(v):.1f} (10-90%: {q[0]:.1f}-{q[-1]:.1f}, {(q[-1] - q[0]) / st.median(v):.2%})"
        print(f"{name}: {len(group)}/{len(rows)} windows; seamcall_ret {span([r[3] for r in group])}, "
              f"xsave {span([r[4] for r in group])}; ratios {min(r[1] for r in group):.3f}-"
              f"{max(r[1] for r in group):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
