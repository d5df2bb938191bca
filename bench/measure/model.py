"""Records of the measure stage: what a benchmark is, what timing it produced, and the errors
that say why one was not timed.  Pure data (no numpy, no native code), so every stage above
and every process (pyperf workers, `bench ab` workers, the driver) can hold them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spec:
    convention: str
    backend: str
    leaf: str

    @property
    def name(self):
        return f"{self.convention}/{self.backend}/{self.leaf}"


@dataclass(frozen=True)
class Sample:
    """One rotation of the native loop (bench.measure.sampler): raw TSC ticks of each measured
    function's batch, of the empty function's and of the reference ADD chain.  Every figure is
    derived from these; the record crosses process boundaries as `as_dict`/`from_dict`."""
    t: int                    # TSC when the sample began
    n_calls: int              # calls per batch
    ticks: tuple              # TSC ticks of each measured function's batch
    empty: int                # TSC ticks of the empty function's batch
    ref: int                  # TSC ticks of the reference chain (0: none)
    ref_adds: int             # ADDs in the reference chain
    events: dict = field(default_factory=dict)  # perf software events over the whole sample
    probe: int = 0            # TSC ticks of the load/store probe (0: none, e.g. the kernel module)
    hw: dict = field(default_factory=dict)      # counter name -> per function, per call, net of empty
    excluded: str | None = None                 # a policy.REASONS entry, or None: kept
    contended: bool = False   # kept although its probe said contention: the wait budget had run out

    @property
    def tsc_per_core(self) -> float:
        """This sample's TSC ticks per core cycle, from its own reference chain."""
        return self.ref / self.ref_adds if self.ref_adds and self.ref > 0 else math.nan

    def net_tsc(self, i=0, baseline=None) -> float:
        """TSC ticks per call of function i, net of this sample's empty batch, or of `baseline`
        (core cycles per call of the empty loop, LoopBaseline.per_call) at this sample's clock."""
        if baseline is None:
            return (self.ticks[i] - self.empty) / self.n_calls
        return self.ticks[i] / self.n_calls - baseline * self.tsc_per_core

    def core(self, i=0, baseline=None) -> float:
        """Core cycles per call of function i: net TSC ticks over this sample's own ratio."""
        return self.net_tsc(i, baseline) / self.tsc_per_core

    @property
    def empty_core(self) -> float:
        """Core cycles of the empty batch as a whole (calls and the timer's fences)."""
        return self.empty / self.tsc_per_core

    @property
    def probe_core(self) -> float:
        """Core cycles of the load/store probe (nan where none): above the machine's floor, a
        sibling hyperthread was sharing this core's ports (policy: contention)."""
        return self.probe / self.tsc_per_core if self.probe > 0 else math.nan

    def per_call(self) -> tuple:
        """TSC ticks per call of every slot (per ADD for the reference): for the gap test."""
        out = tuple(t / self.n_calls for t in self.ticks) + (self.empty / self.n_calls,)
        return out + ((self.ref / self.ref_adds,) if self.ref_adds else ())

    def as_dict(self) -> dict:
        return {"t": self.t, "n_calls": self.n_calls, "ticks": list(self.ticks), "empty": self.empty,
                "ref": self.ref, "ref_adds": self.ref_adds, "probe": self.probe, "events": dict(self.events),
                "hw": {k: list(v) for k, v in self.hw.items()}, "excluded": self.excluded,
                "contended": self.contended}

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        return cls(t=int(d["t"]), n_calls=int(d["n_calls"]), ticks=tuple(int(x) for x in d["ticks"]),
                   empty=int(d["empty"]), ref=int(d["ref"]), ref_adds=int(d["ref_adds"]),
                   probe=int(d.get("probe", 0)),
                   events={k: int(v) for k, v in d.get("events", {}).items()},
                   hw={k: tuple(float(x) for x in v) for k, v in d.get("hw", {}).items()},
                   excluded=d.get("excluded"), contended=bool(d.get("contended", False)))


MIN_UNCONTENDED = 5  # samples of a block that make its figure without the contended ones


@dataclass(frozen=True)
class LoopBaseline:
    """The empty loop's cost in core cycles, one for every benchmark of a `bench run` on one
    backend: `batch` a batch whatever its length (the timer's fences) plus `call` a call, fitted
    over the empty batches of all those workers (bench.measure.driver.fit_baseline).
    Subtracted instead of each sample's own empty batch: one error for the whole run, which
    its CI carries (per_call_var), not each worker's own.  While the native loop called the
    empty and the measured function through the same call sites, a worker's empty batch also
    landed in states (Zen 4 guest: 5.0, 5.8, 6.6 or 7.3 core cycles a call) that its measured
    batch did not share; the loop has one copy per slot since (_native/measure.c)."""
    batch: float
    call: float
    workers: int
    cov: tuple = ((0.0, 0.0), (0.0, 0.0))  # of (call, batch) over resamples of the workers

    def per_call(self, n_calls: int) -> float:
        return self.call + self.batch / n_calls

    def per_call_var(self, n_calls: int) -> float:
        """The variance of per_call(n_calls): one error for every benchmark of the run, which
        the spread of its workers does not show (bench.measure.runner adds it to the run's CI)."""
        (cc, cb), (_, bb) = self.cov
        return max(cc + 2 * cb / n_calls + bb / (n_calls * n_calls), 0.0)

    def describe(self) -> str:
        return (f"{self.call:.2f} core cycles a call + {self.batch:.1f} a batch, fitted over the empty "
                f"batches of {self.workers} worker{'s' if self.workers != 1 else ''}")


@dataclass
class SampleBlock:
    """One block of consecutive samples of one benchmark (a pyperf worker's values, or a block
    of one process): the per-sample figures of its kept samples."""
    core: list            # core cycles per call, converted sample by sample (the primary figure)
    tsc: list             # TSC ticks per call net of the empty batch
    tsc_per_core: list    # each sample's own TSC ticks per core cycle
    baseline: list        # empty-loop TSC ticks per call
    warmups: list = field(default_factory=list)    # core cycles per call of the warm-up samples
    excluded: dict = field(default_factory=dict)   # reason (policy.REASONS) -> samples measured again
    hw: dict = field(default_factory=dict)         # counter name -> per-call values, where counters exist
    contended: int = 0    # kept samples measured while a sibling hyperthread shared the core

    @property
    def values(self):
        return self.core

    @classmethod
    def of(cls, kept, i=0, warmups=(), excluded=None, baseline: LoopBaseline | None = None) -> "SampleBlock":
        """The block of function i from kept Samples (and warm-up Samples, figures only), net of
        each sample's own empty batch, or of `baseline` where given.  Samples kept on a shared
        core (the sampler's wait ran out) stand in the figure only where fewer than
        MIN_UNCONTENDED others do; else they count as excluded for contention, like the ones the
        sampler measured again."""
        excluded = dict(excluded or {})
        quiet = [s for s in kept if not s.contended]
        if len(quiet) < len(kept) and len(quiet) >= MIN_UNCONTENDED:
            excluded["contention"] = excluded.get("contention", 0) + len(kept) - len(quiet)
            kept = quiet
        hw = {}
        for s in kept:
            for name, per_fn in s.hw.items():
                hw.setdefault(name, []).append(per_fn[i])
        def base(s):  # core cycles a call to subtract (None: the sample's own empty batch)
            return baseline.per_call(s.n_calls) if baseline is not None else None
        return cls(core=[s.core(i, base(s)) for s in kept], tsc=[s.net_tsc(i, base(s)) for s in kept],
                   tsc_per_core=[s.tsc_per_core for s in kept], baseline=[s.empty / s.n_calls for s in kept],
                   warmups=[s.core(i, base(s)) for s in warmups], excluded=excluded, hw=hw,
                   contended=sum(s.contended for s in kept))


@dataclass
class Measurement:
    spec: Spec
    n_calls: int
    runs: list                # SampleBlock per worker process or block
    serialize: str | None
    conv_hash: str            # the declaration (bench.config)
    code_hash: str | None     # the machine code executed (bench.native.codehash); None: not known
    safe: bool | None
    safety: str
    from_workers: bool = False  # runs are pyperf worker processes (else blocks of one process)
    excluded_workers: int = 0   # workers dropped and replaced: noisy, or figures from a shared core
    baseline: LoopBaseline | None = None  # the run's empty loop, subtracted (None: each sample's own)

    def _pooled(self, field: str) -> list:
        """One SampleBlock field over every block, in order."""
        return [v for r in self.runs for v in getattr(r, field)]

    @property
    def values(self):
        """Core cycles per call of every kept sample."""
        return self._pooled("core")

    @property
    def tsc_values(self):
        return self._pooled("tsc")

    @property
    def ratios(self):
        return self._pooled("tsc_per_core")

    @property
    def baseline_values(self):
        return self._pooled("baseline")

    @property
    def excluded_by_reason(self) -> dict:
        out = {}
        for r in self.runs:
            for k, v in r.excluded.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def excluded(self) -> int:
        return sum(self.excluded_by_reason.values())

    @property
    def contended(self) -> int:
        """Kept samples taken on a shared core (SampleBlock.contended): the figure may be high."""
        return sum(r.contended for r in self.runs)

    @property
    def hw_counters(self) -> dict | None:
        """Median per-call counter figures (core cycles, instructions), where counters exist."""
        pooled = {}
        for r in self.runs:
            for k, v in r.hw.items():
                pooled.setdefault(k, []).extend(v)
        return {k: _median(v) for k, v in pooled.items() if v} or None


@dataclass
class Prepared:
    """Everything the timed loop needs for one benchmark, emulation knobs already set."""
    conv: object
    leaf: object
    fn: int
    unit: object
    args: object
    ser_mode: int
    verdict: object
    registry: object = field(repr=False, default=None)

    @functools.cached_property
    def code_hash(self) -> str | None:
        """The machine code one call executes (Registry.code_hash), hashed when first asked for:
        ~40 ms of disassembly a benchmark, which `bench ab`'s workers never need."""
        return self.registry.code_hash(self.fn, self.unit) if self.registry is not None else None


def _median(values) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


class UnsafeError(RuntimeError):
    """The pair is unsafe (the safety check's verdict) and --allow-unsafe was not given."""


class UnavailableError(RuntimeError):
    """The benchmark cannot run here (a CPU feature, the kernel module, a crossing); the message says why."""


class ABError(RuntimeError):
    """An A/B run that could not give an answer (too few undisturbed pairs, a failed worker)."""


class DriverError(RuntimeError):
    """pyperf's manager or a worker process failed; the message carries its output."""
