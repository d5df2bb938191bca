"""Timing in the kernel module: the kmod:* backends' counterpart of bench.measure.prepare's
user-space loop.  The device client itself (ioctls, probe, build/load) is bench.native.kmod.
"""
from __future__ import annotations

import errno

from bench.config import AVX_STATE_BITS
from bench.gen.codegen import kernel_unsafe
from bench.measure.model import Measurement, SampleBlock, Spec, UnavailableError
from bench.native import backends
from bench.native.kmod import EXPECTED_STATUS, KMOD_LEAF, MAX_CALLS, KEntry, KmodDevice, KmodError


def _calibrate(d: KmodDevice, e: KEntry, emul: dict, target: float) -> int:
    """Calls per sample so that one sample lasts about `target` TSC ticks."""
    calls, measured = 4, None  # measured: (median batch ticks, the calls that batch made)
    for _ in range(6):
        try:
            r = d.run(e, calls, 5, emul)
        except KmodError as exc:
            if exc.errno != errno.E2BIG or calls == 1:
                raise
            calls = 1  # even a few calls do not fit the interrupts-off budget: measure one
            continue
        measured = (sorted(r.ticks)[2], calls)
        # A sample must stay well inside the module's interrupts-off batch.
        target = min(target, r.budget_ticks / 4)
        if measured[0] >= target / 2 or calls >= MAX_CALLS:
            break
        calls = min(MAX_CALLS, max(calls * 2, int(calls * target / max(measured[0], 1))))
    batch, used = measured
    per_call = max(batch / used, 1e-3)
    return max(1, min(MAX_CALLS, int(target / per_call)))


def measure_kmod(spec: Spec, ctx, verdict) -> Measurement:
    """Time one benchmark in the kernel module: samples of the wrapper and of the empty
    baseline, paired, net per call (the same statistic the user-space loop produces).
    `ctx` is a bench.measure.prepare.Context."""
    conv = ctx.catalog.convention(spec.convention)
    leaf = ctx.catalog.leaf(spec.leaf)
    b = backends.BACKENDS[spec.backend]
    s = ctx.settings
    crash = kernel_unsafe(conv.resolve(leaf))
    if crash:
        raise UnavailableError(f"{spec.name}: not in the kernel module, it would crash the kernel "
                               f"({'; '.join(crash)})")
    try:
        d = KmodDevice()
    except KmodError as exc:
        raise UnavailableError(f"{spec.name}: {exc}") from None
    with d:
        try:
            e = d.find(conv.name, b.crossing, leaf.name)
        except KmodError as exc:
            raise UnavailableError(f"{spec.name}: {exc}") from None
        if not e.runnable:
            cap = d.caps()["crossings"][b.crossing]
            why = cap.why if not cap.available else (
                f"the module issues {b.crossing} only with its read-only leaf "
                f"({KMOD_LEAF.get(b.crossing, '?')})")
            raise UnavailableError(f"{spec.name}: {why}")
        emul, ser_name = {}, None
        if b.crossing == "emulated":
            mode = backends.serialize_mode_for(spec.backend, ctx.registry)
            ser_name = next(k for k, v in backends.SER_MODES.items() if v == mode)
            avx = ctx.xsave["xcr0"] & AVX_STATE_BITS if ctx.xsave["enabled"] and leaf.avx_reset else 0
            emul = {"serialize_mode": mode, "avx_reset_mask": avx}
        try:
            calls = _calibrate(d, e, emul, s.batch_us * 1e-6 * ctx.clocks["tsc_hz"])
            runs = []
            n = s.values + s.warmups
            while len(runs) < s.runs:
                for shrink in range(4):
                    try:
                        r = d.run(e, calls, n, emul)
                        bl = d.run(e, calls, n, emul, baseline=True)
                        break
                    except KmodError as exc:
                        # A slow warm-up (another load, TCG translating) made a sample too long
                        # for the interrupts-off budget: fewer calls per sample, same run.
                        if exc.errno != errno.E2BIG or calls == 1 or shrink == 3:
                            raise
                        calls = max(1, calls // 2)
                        runs.clear()
                net = [(x - y) / calls for x, y in zip(r.ticks, bl.ticks)]
                base = [y / calls for y in bl.ticks]
                runs.append(SampleBlock(values=net[s.warmups:], warmups=net[:s.warmups], baseline=base[s.warmups:]))
                want = EXPECTED_STATUS.get(b.crossing)
                if want is not None and r.status != want:
                    # e.g. a CPU the TDX module was not initialised on: that is an error path, not the call
                    raise UnavailableError(f"{spec.name}: the {b.crossing} calls returned status {r.status:#x}, "
                                           f"expected {want:#x}; not measuring an error path")
        except KmodError as exc:
            raise UnavailableError(str(exc)) from None
    return Measurement(spec, calls, runs, ser_name, conv.decl_hash, verdict.safe, verdict.text, None)
