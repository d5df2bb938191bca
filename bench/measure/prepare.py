"""Prepare and time one benchmark (convention x backend x leaf) in this process.

Every timing goes through bench.measure.sampler: per sample a batch of the convention, a
batch of the empty function (subtracted) and a reference ADD chain (each sample's own TSC
ticks per core cycle), judged by bench.measure.policy.
"""
from __future__ import annotations

from bench.config import AVX_STATE_BITS, Catalog, Settings
from bench.measure import kmod_timer, serialize
from bench.measure.model import Measurement, Prepared, SampleBlock, Spec, UnavailableError, UnsafeError
from bench.measure.sampler import Perf, Sampler, Target
from bench.native import _core, backends, machine
from bench.results.vcs import git_state
from bench.safety import gate_verdict


class Context:
    """What stays the same across the benchmarks of a run: catalog, native registry, clocks,
    the emulated stub's serialization, perf events.  Worker processes get the parent's clocks
    and serialization (`clocks`, `serialize`): every worker then converts with the same TSC
    frequency and times the same stub, and none spends time measuring them again."""

    def __init__(self, catalog: Catalog, registry, settings: Settings, clocks=None, serialize=None):
        self.catalog = catalog
        self.registry = registry
        self.settings = settings
        self.clocks = clocks or machine.clocks()
        self._serialize = serialize
        self.xsave = machine.xsave()
        self.perf = Perf.open()

    @property
    def serialize(self) -> str:
        """The emulated stub's serialization mode name, measured the first time it is needed."""
        if self._serialize is None:
            self._serialize = serialize.choice(self.registry, self.clocks.get("probe_floor"))["mode"]
        return self._serialize

    def ser_mode(self, backend: str) -> int:
        b = backends.BACKENDS[backend]
        return serialize.mode_for(backend, self.serialize if b.serialize == "auto" else None)

    def args(self, fpu_mask=0):
        return _core.Args(self.xsave["size_max"] or 4096, fpu_mask)

    def fpu_mask(self, conv):
        xcr0 = self.xsave["xcr0"]
        return xcr0 if conv.fpu_mask == "xcr0" else xcr0 & conv.fpu_mask

    def target_ticks(self) -> float:
        """TSC ticks one batch should last (settings.batch_us)."""
        return self.settings.batch_us * 1e-6 * self.clocks["tsc_hz"]

    def sampler(self, prepared: list) -> Sampler:
        """A sampler of these Prepared benchmarks, interleaved in every sample."""
        return Sampler([Target(p.fn, p.leaf.rax, p.args) for p in prepared], self.args(), self.perf,
                       probe_floor=self.clocks.get("probe_floor"))


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
    ser_mode = ctx.ser_mode(spec.backend)
    avx_mask = ctx.xsave["xcr0"] & AVX_STATE_BITS if ctx.xsave["enabled"] else 0
    # emul_latency: a convention that makes the emulated module slower by a known amount (for
    # proving `bench ab` and `bench compare` find it).  The knob is per unit, so such a
    # convention is compiled into a unit of its own (Registry compiles user files one by one).
    unit.set_emulation(ser_mode, conv.emul_latency if backend.serialize else 0, avx_mask, 0)
    return Prepared(conv, leaf, fn, unit, ctx.args(ctx.fpu_mask(conv)), ser_mode, verdict, ctx.registry)


def serialize_name(spec: Spec, ser_mode: int):
    if not backends.BACKENDS[spec.backend].serialize:
        return None
    return serialize.name_of(ser_mode)


def measure_one(spec: Spec, ctx: Context, allow_unsafe=False, fn_override=None) -> Measurement:
    """Time one benchmark in this process (blocks of samples, no pyperf workers); a kmod:*
    backend is timed by the kernel module (kmod_timer)."""
    if backends.BACKENDS[spec.backend].where == "kmod":
        # The declaration's prediction; imported code has none, so the runtime check's verdict
        # (its C-ABI findings are what kmod_timer's crash filter reads, as the build's did).
        verdict = gate_verdict(ctx.registry, ctx.catalog.convention(spec.convention), ctx.catalog.leaf(spec.leaf))
        if not verdict.safe and not allow_unsafe:
            raise UnsafeError(f"{spec.name} is {verdict.text}; use --allow-unsafe to time it anyway")
        return kmod_timer.measure_kmod(spec, ctx, verdict)
    p = prepare(spec, ctx, allow_unsafe, fn_override)
    s = ctx.settings
    sampler = ctx.sampler([p]).calibrate(ctx.target_ticks())
    runs = []
    try:
        for _ in range(s.runs):
            before = len(sampler.screen.log)
            warm = sampler.warm(s.warmups)
            kept = sampler.take(s.values)
            runs.append(SampleBlock.of(kept, 0, warm, sampler.screen.excluded(before)))
    finally:
        p.unit.set_emulation(0)
    return Measurement(spec, sampler.n_calls, runs, serialize_name(spec, p.ser_mode), p.conv.decl_hash,
                       p.code_hash, p.verdict.safe, p.verdict.text)


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
