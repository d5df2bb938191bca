"""Prepare and time one benchmark (convention x backend x leaf) through the native loop.

Each sample times a batch of n calls of the convention and, interleaved with
it, a batch of n calls of an empty function through the same loop: the
difference per call is the convention's cost with loop, call and timer
overhead cancelled.  The empty batch is the reported baseline.
"""
from __future__ import annotations

import math

import numpy as np

from bench.config import AVX_STATE_BITS, Catalog, Settings
from bench.measure import kmod_timer
from bench.measure.model import Measurement, Prepared, SampleBlock, Spec, UnavailableError, UnsafeError
from bench.native import _core, backends, machine
from bench.results.vcs import git_state
from bench.safety import gate_verdict, static_verdict
from bench.stats.summary import per_call

# Event slots the native side may fill; a sample with any of these non-zero was disturbed.
DISTURBING_EVENTS = ("context_switches", "cpu_migrations")
# Per pyperf value (bench.measure.worker) page faults count too: warm-ups have touched every page by then.
DISTURBING_EVENTS_STRICT = DISTURBING_EVENTS + ("page_faults",)


def sample_events(ev, slots, i=0) -> dict:
    """Event name -> count over both batches of sample i, from measure_pair's flat event list
    (laid out [sample][batch a, batch b][event])."""
    n_ev = len(slots)
    at = 2 * n_ev * i
    return {name: int(ev[at + slot]) + int(ev[at + n_ev + slot]) for name, slot in slots.items()}


def disturbed(counts, strict=True, also=()):
    """Whether a sample was disturbed, from its event counts (name -> count over both batches,
    as sample_events gives; or name -> per-sample arrays, which gives a boolean array):
    any of DISTURBING_EVENTS (with page faults too when strict, and the names in `also`)
    non-zero.  Each caller adds its own test of the value itself (net <= 0)."""
    hit = False
    for name in (DISTURBING_EVENTS_STRICT if strict else DISTURBING_EVENTS) + tuple(also):
        c = counts.get(name)
        if c is not None:
            hit = hit | (np.asarray(c) > 0)
    return hit


class Context:
    """What stays the same across the benchmarks of a run: catalog, native registry, clocks, perf."""

    def __init__(self, catalog: Catalog, registry, settings: Settings, clocks=None):
        self.catalog = catalog
        self.registry = registry
        self.settings = settings
        # Worker processes get the parent's clocks: every worker then converts with the same
        # TSC frequency, and none spends time re-measuring it.
        self.clocks = clocks or machine.clocks()
        self.xsave = machine.xsave()
        fd, slots, _ = _core.perf_open()
        self.perf_fd = fd
        self.perf_slots = {k: v for k, v in slots.items() if v is not None}
        self.hw = "cycles" in self.perf_slots and "instructions" in self.perf_slots

    def args(self, fpu_mask=0):
        return _core.Args(self.xsave["size_max"] or 4096, fpu_mask)

    def fpu_mask(self, conv):
        xcr0 = self.xsave["xcr0"]
        return xcr0 if conv.fpu_mask == "xcr0" else xcr0 & conv.fpu_mask


def _round4(n):
    return max(4, int(math.ceil(n / 4.0)) * 4)


def calibrate(fn, leaf_rax, args, base_args, target_ticks) -> int:
    """Calls per batch so that one batch lasts about target_ticks."""
    n = 4
    while True:
        ta, _, _, _ = _core.measure_pair(fn, _core.EMPTY_FN, leaf_rax, 0, args, base_args, n, 3)
        batch = sorted(ta)[1]
        if batch >= target_ticks or n >= 1 << 20:
            break
        n = min(_round4(n * max(2.0, min(64.0, target_ticks / max(batch, 1.0)))), 1 << 20)
    per_call = batch / n
    return min(_round4(target_ticks / max(per_call, 1e-3)), 1 << 20)


def prepare(spec: Spec, ctx: Context, allow_unsafe=False, fn_override=None) -> Prepared:
    conv = ctx.catalog.convention(spec.convention)
    leaf = ctx.catalog.leaf(spec.leaf)
    backend = backends.BACKENDS[spec.backend]
    verdict = gate_verdict(ctx.registry, conv, leaf)  # static, or the runtime check for imported code
    if not verdict.safe and not allow_unsafe:
        raise UnsafeError(f"{spec.name} is {verdict.text}; use --allow-unsafe to time it anyway")
    if backend.where == "kmod":
        raise ValueError(f"{spec.name}: kmod backends are timed by the kernel module (measure_one())")
    why_not = machine.fpu_support(conv.fpu)
    if why_not:
        raise UnavailableError(f"{spec.name}: {why_not}")
    fn, unit = fn_override or ctx.registry.lookup(conv.name, backend.crossing, leaf.name)
    ser_mode = backends.serialize_mode_for(spec.backend, ctx.registry)
    avx_mask = ctx.xsave["xcr0"] & AVX_STATE_BITS if ctx.xsave["enabled"] else 0
    # emul_latency: a convention that makes the emulated module slower by a known amount (for
    # proving `bench ab` and `bench compare` find it).  The knob is per unit, so such a
    # convention is compiled into a unit of its own (Registry compiles user files one by one).
    unit.set_emulation(ser_mode, conv.emul_latency if backend.serialize else 0, avx_mask, 0)
    return Prepared(conv, leaf, fn, unit, ctx.args(ctx.fpu_mask(conv)), ctx.args(), ser_mode, verdict)


def serialize_name(spec: Spec, ser_mode: int):
    if not backends.BACKENDS[spec.backend].serialize:
        return None
    return next(k for k, v in backends.SER_MODES.items() if v == ser_mode)


def measure_one(spec: Spec, ctx: Context, allow_unsafe=False, fn_override=None) -> Measurement:
    """Time one benchmark in this process (blocks of samples, no pyperf workers); a kmod:*
    backend is timed by the kernel module (kmod_timer)."""
    if backends.BACKENDS[spec.backend].where == "kmod":
        verdict = static_verdict(ctx.catalog.convention(spec.convention).resolve(ctx.catalog.leaf(spec.leaf)))
        if not verdict.safe and not allow_unsafe:
            raise UnsafeError(f"{spec.name} is {verdict.text}; use --allow-unsafe to time it anyway")
        return kmod_timer.measure_kmod(spec, ctx, verdict)
    p = prepare(spec, ctx, allow_unsafe, fn_override)
    conv, leaf, fn, unit, verdict, ser_mode = p.conv, p.leaf, p.fn, p.unit, p.verdict, p.ser_mode
    s = ctx.settings
    args, base_args = p.args, p.base_args
    target = s.batch_us * 1e-6 * ctx.clocks["tsc_hz"]
    n_calls = calibrate(fn, leaf.rax, args, base_args, target)
    n_events = len(ctx.perf_slots)
    runs, hw = [], {}
    for _ in range(s.runs):
        ta, tb, _, ev = _core.measure_pair(fn, _core.EMPTY_FN, leaf.rax, 0, args, base_args, n_calls,
                                           s.values + s.warmups, ctx.perf_fd, n_events)
        net = per_call(ta, tb, n_calls)
        base = np.asarray(tb, dtype=float) / n_calls
        # events: [sample][batch a, batch b][event]
        ev = np.asarray(ev, dtype=np.int64).reshape(-1, 2, n_events) if n_events else None
        hit = np.zeros(len(net), dtype=bool)
        totals = {}
        if ev is not None:
            per_sample = {name: ev[:, 0, slot] + ev[:, 1, slot] for name, slot in ctx.perf_slots.items()}
            totals = {name: int(c[s.warmups:].sum()) for name, c in per_sample.items()}
            hit |= disturbed(per_sample, strict=False)
            if ctx.hw:
                for name in ("cycles", "instructions"):
                    slot = ctx.perf_slots[name]
                    net_ev = (ev[s.warmups:, 0, slot] - ev[s.warmups:, 1, slot]) / n_calls
                    hw.setdefault(name, []).extend(float(v) for v in net_ev)
        keep = ~hit[s.warmups:]
        runs.append(SampleBlock(values=[float(v) for v in net[s.warmups:][keep]],
                                warmups=[float(v) for v in net[:s.warmups]],
                                baseline=[float(v) for v in base[s.warmups:][keep]],
                                excluded=int((~keep).sum()), events=totals))
    unit.set_emulation(0)
    ser_name = serialize_name(spec, ser_mode)
    hw_counters = {name: float(np.median(v)) for name, v in hw.items()} if hw else None
    return Measurement(spec, n_calls, runs, ser_name, conv.decl_hash, verdict.safe, verdict.text,
                       hw_counters)


def context_info(ctx: Context, suite_name=None) -> dict:
    """What a results file records about where and from what its figures were made (the
    metadata bench.results.store.run_metadata writes)."""
    c = machine.cpu()
    state = git_state()
    return {
        "machine": machine.machine_id(),
        "commit": state["commit"],
        "dirty": int(state["dirty"]),
        "tsc_hz": ctx.clocks["tsc_hz"],
        "tsc_per_core_cycle": ctx.clocks["tsc_per_core_cycle"],
        "cpu_model_name": c["model_name"],
        "cpu": f"{c['vendor']} family {c['family']} model {c['model']} stepping {c['stepping']}",
        "microcode": c["microcode"],
        "kernel": machine.kernel()["release"],
        "platform": f"Linux-{machine.kernel()['release']}",
        "suite": suite_name,
        "_state": state,
    }
