"""Does the empty batch's state move a stub's net figure, within a process and across processes?

The empty function's batch (call, return, loop) was seen at several levels in core cycles a
call while the load/store probe sat at its floor (4.25, 5.0, 5.75, 6.5, 7.25 on a Zen 4 guest),
hopping every few milliseconds, and the net figure (the stub's batch minus the empty one) moved
with it.  The cause was the native loop: one copy, whose call sites the empty function and the
measured one shared; with a copy per slot (_native/measure.c) the empty batch stays at its floor.
This runs --processes fresh processes per benchmark, one after another, each taking --samples
kept samples through the sampler (gate and policy as `bench run` has them, at the calls per
batch `bench run` keeps for this CPU), and prints per process the median net figure of all kept
samples and of those whose empty batch is at the process's own floor (within TOLERANCE of the
2nd percentile), with the share of those; the empty batch's floor and median; the sd of the
medians of consecutive windows of WINDOW samples (the measured batch's own states within the
process); then the spread (max - min over the median) of both figures across processes.  Not a
test: it prints what this machine does.

    python benchmarks/front_end.py [--processes 6] [--samples 400] [SPEC ...]
"""
from __future__ import annotations

import argparse
import json
import statistics as st
import subprocess
import sys

DEFAULT = ("lean/emulated/vp_info", "tdcall/emulated/vp_info", "seamcall_ret/emulated/vp_info",
           "full_pushpop/emulated/vp_info", "xsave/emulated/migration")
TOLERANCE = 0.08  # over the floor: the empty batch's floor state, as the experiment splits it
QUANTILE = 0.02
WINDOW = 50       # kept samples a window: the state of the measured batch within one process


def child(spec: str, samples: int, batch_us: float) -> dict:
    from bench.config import Settings, load_builtin
    from bench.measure.model import Spec
    from bench.measure.prepare import Context, prepare
    from bench.native import machine
    from bench.native.registry import Registry
    from bench.measure.driver import kept_calls  # the calls per batch bench run keeps for this CPU

    machine.pin()
    catalog = load_builtin()
    ctx = Context(catalog, Registry(catalog), Settings(batch_us=batch_us))
    sp = Spec(*spec.split("/"))
    p = prepare(sp, ctx)
    n_calls = kept_calls([sp], batch_us).get(spec)
    sampler = ctx.sampler([p]).size(ctx.target_ticks(), n_calls)
    kept = sampler.take(samples, warmups=4)

    def empty_per_call(s):  # the empty batch's core cycles a call
        return s.empty / s.n_calls / s.tsc_per_core
    empty = sorted(map(empty_per_call, kept))
    floor = empty[int(QUANTILE * (len(empty) - 1))]
    at_floor = [s.core() for s in kept if empty_per_call(s) <= floor * (1 + TOLERANCE)]
    windows = [st.median(s.core() for s in kept[i:i + WINDOW]) for i in range(0, len(kept) - WINDOW + 1, WINDOW)]
    return {"n_calls": sampler.n_calls, "kept": len(kept), "net": st.median(s.core() for s in kept),
            "windows": st.pstdev(windows) / st.mean(windows) if len(windows) > 1 else 0.0,
            "floor_net": st.median(at_floor), "floor_share": len(at_floor) / len(kept),
            "empty_floor": floor, "empty_median": st.median(empty)}


def spread(xs) -> float:
    return (max(xs) - min(xs)) / st.median(xs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/front_end.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--batch-us", type=float, default=100, help="as configs/quick.yaml")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("specs", nargs="*", default=list(DEFAULT))
    a = p.parse_args(argv)
    if a.child:
        json.dump(child(a.child, a.samples, a.batch_us), sys.stdout)
        return 0
    from bench.native import machine
    print(f"{machine.machine_id()}: net core cycles a call per fresh process; 'floor' = samples whose "
          f"empty batch is within {TOLERANCE:.0%} of the process's {QUANTILE:.0%} quantile")
    for spec in a.specs:
        docs = []
        for _ in range(a.processes):
            proc = subprocess.run([sys.executable, __file__, "--child", spec, "--samples", str(a.samples),
                                   "--batch-us", repr(a.batch_us)],
                                  capture_output=True, text=True, preexec_fn=machine.child_setup())
            if proc.returncode != 0:
                raise SystemExit(f"front_end: {spec}: a process failed: {proc.stderr[-2000:]}")
            docs.append(json.loads(proc.stdout))
        print(f"{spec} ({docs[0]['n_calls']} calls a batch)")
        for d in docs:
            print(f"  all {d['net']:9.2f}   floor {d['floor_net']:9.2f} ({d['floor_share']:4.0%} of {d['kept']})   "
                  f"empty a call: floor {d['empty_floor']:.2f}, median {d['empty_median']:.2f}   "
                  f"sd of {WINDOW}-sample windows {d['windows']:.3%}")
        print(f"  spread across processes: all {spread([d['net'] for d in docs]):.2%}, "
              f"floor {spread([d['floor_net'] for d in docs]):.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
