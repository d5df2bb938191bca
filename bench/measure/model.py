"""Records of the measure stage: what a benchmark is, what timing it produced, and the errors
that say why one was not timed.  Pure data (no numpy, no native code), so every stage above
and every process (pyperf workers, `bench ab` workers, the driver) can hold them.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spec:
    convention: str
    backend: str
    leaf: str

    @property
    def name(self):
        return f"{self.convention}/{self.backend}/{self.leaf}"


@dataclass
class SampleBlock:
    """One block of consecutive samples (a pyperf run, or one of the kernel module's runs)."""
    values: list          # net TSC ticks per call, one per kept sample
    warmups: list
    baseline: list        # empty-loop TSC ticks per call, per kept sample
    excluded: int = 0     # samples dropped as disturbed
    events: dict = field(default_factory=dict)  # event name -> total over the block


@dataclass
class Measurement:
    spec: Spec
    n_calls: int
    runs: list                # SampleBlock per worker process or block
    serialize: str | None
    conv_hash: str
    safe: bool | None
    safety: str
    hw_counters: dict | None  # per-call core cycles / instructions, when the kernel offers them
    from_workers: bool = False  # runs are pyperf worker processes (else blocks of one process)
    excluded_workers: int = 0   # workers dropped as far noisier than their peers

    @property
    def values(self):
        return [v for r in self.runs for v in r.values]

    @property
    def baseline_values(self):
        return [v for r in self.runs for v in r.baseline]

    @property
    def excluded(self):
        return sum(r.excluded for r in self.runs)


@dataclass
class Prepared:
    """Everything the timed loop needs for one benchmark, emulation knobs already set."""
    conv: object
    leaf: object
    fn: int
    unit: object
    args: object
    base_args: object
    ser_mode: int
    verdict: object


class UnsafeError(RuntimeError):
    """The pair is unsafe (the safety check's verdict) and --allow-unsafe was not given."""


class UnavailableError(RuntimeError):
    """The benchmark cannot run here (a CPU feature, the kernel module, a crossing); the message says why."""


class ABError(RuntimeError):
    """An A/B run that could not give an answer (too few undisturbed pairs, a failed worker)."""


class DriverError(RuntimeError):
    """pyperf's manager or a worker process failed; the message carries its output."""
