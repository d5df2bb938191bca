"""Timing in the kernel module: the kmod:* backends' counterpart of bench.measure.prepare's
user-space loop.  The device client itself (ioctls, probe, build/load) is bench.native.kmod.
"""
from __future__ import annotations

import errno

from bench.config import AVX_STATE_BITS
from bench.gen.codegen import kernel_unsafe
from bench.safety import abi_breaks_seen
from bench.measure import serialize
from bench.measure.model import Measurement, Sample, SampleBlock, Spec, UnavailableError
from bench.measure.sampler import MAX_ROUNDS, Screen
from bench.native import backends
from bench.native.kmod import (EXPECTED_STATUS, KMOD_LEAF, MAX_CALLS, MAX_REF_HUNDREDS, KEntry, KmodDevice,
                               KmodError)


def _calibrate(d: KmodDevice, e: KEntry, emul: dict, target: float) -> tuple:
    """(calls per sample, TSC ticks of that entry batch) so that the entry batch lasts about
    `target` TSC ticks."""
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
        # A whole sample (entry, empty and a reference about as long as the entry, so up to
        # three entry batches) must stay well inside the module's half-budget per sample.
        target = min(target, r.budget_ticks / 8)
        if measured[0] >= target / 2 or calls >= MAX_CALLS:
            break
        calls = min(MAX_CALLS, max(calls * 2, int(calls * target / max(measured[0], 1))))
    batch, used = measured
    per_call = max(batch / used, 1e-3)
    calls = max(1, min(MAX_CALLS, int(target / per_call)))
    return calls, per_call * calls


def ref_hundreds_for(batch_ticks: float, tsc_per_core_cycle: float) -> int:
    """Hundreds of reference ADDs (one core cycle each) that last about as long as a batch of
    `batch_ticks`, from an estimate of TSC ticks per core cycle (clamped: a wild estimate only
    makes the reference shorter or longer, never absent or over the module's limit)."""
    ratio = min(5.0, max(0.2, tsc_per_core_cycle))
    return max(1, min(MAX_REF_HUNDREDS, round(batch_ticks / (100 * ratio))))


def measure_kmod(spec: Spec, ctx, verdict) -> Measurement:
    """Time one benchmark in the kernel module: per sample the wrapper's batch, the empty
    baseline's and the reference chain's, rotated in one ioctl on one CPU; net per call (the
    same statistic the user-space loop produces) and each sample's TSC ticks per core cycle,
    judged by the same exclusion policy (bench.measure.sampler.Screen)."""
    conv = ctx.catalog.convention(spec.convention)
    leaf = ctx.catalog.leaf(spec.leaf)
    b = backends.BACKENDS[spec.backend]
    s = ctx.settings
    observed = abi_breaks_seen(verdict) if conv.imported and verdict.source == "runtime" else None
    crash = kernel_unsafe(conv.resolve(leaf, observed))
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
            mode = ctx.ser_mode(spec.backend)
            ser_name = serialize.name_of(mode)
            avx = ctx.xsave["xcr0"] & AVX_STATE_BITS if ctx.xsave["enabled"] and leaf.avx_reset else 0
            emul = {"serialize_mode": mode, "avx_reset_mask": avx}
        try:
            calls, batch = _calibrate(d, e, emul, s.batch_us * 1e-6 * ctx.clocks["tsc_hz"])
            ref = ref_hundreds_for(batch, ctx.clocks["tsc_per_core_cycle"])
            runs = []
            screen = Screen()  # the one exclusion policy, as in user space (no perf events in ring 0)

            def ioctl(count):
                nonlocal calls, ref
                for shrink in range(4):
                    try:
                        r = d.run(e, calls, count, emul, ref)
                        break
                    except KmodError as exc:
                        # A slow warm-up (another load, TCG translating) made a sample too long
                        # for the interrupts-off budget: fewer calls per sample, same run.
                        if exc.errno != errno.E2BIG or calls == 1 or shrink == 3:
                            raise
                        calls, ref = max(1, calls // 2), max(1, ref // 2)
                        runs.clear()
                if r.bad_status:
                    # e.g. a CPU the TDX module was not initialised on: that is an error path, not the call
                    raise UnavailableError(
                        f"{spec.name}: {r.bad_status} of {calls * count} {b.crossing} calls returned a status "
                        f"other than {EXPECTED_STATUS[b.crossing]:#x} (the first {r.first_bad_status:#x}); "
                        "not measuring an error path")
                return [Sample(t=0, n_calls=calls, ticks=(entry,), empty=empty, ref=ref_ticks,
                               ref_adds=100 * r.ref_hundreds) for entry, empty, ref_ticks in r.samples]

            while len(runs) < s.runs:
                before = len(screen.log)
                fresh = ioctl(s.values + s.warmups)
                warm, kept = fresh[:s.warmups], []
                fresh = fresh[s.warmups:]
                # Excluded samples are measured again, as the user-space sampler does.
                for _ in range(MAX_ROUNDS + 1):
                    kept += [x for x in screen.screen(fresh) if x.excluded is None]
                    if len(kept) >= s.values:
                        break
                    fresh = ioctl(s.values - len(kept))
                runs.append(SampleBlock.of(kept, 0, warm, screen.excluded(before)))
        except KmodError as exc:
            raise UnavailableError(str(exc)) from None
    # The kernel flavor's table records no code ranges: no code hash for kmod:* (yet).
    return Measurement(spec, calls, runs, ser_name, conv.decl_hash, None, verdict.safe, verdict.text)
