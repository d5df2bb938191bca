"""The one sampling engine: every timing in seambench goes through here.

A sample is one rotation of the native loop (_native/measure.c): a batch of n calls of
each measured function, a batch of n calls of the empty function (loop, call and timer
overhead, subtracted), and a reference batch, a dependent chain of register-register ADDs
of known length (one core cycle each).  The reference gives each sample its own TSC ticks
per core cycle, measured within a few hundred microseconds of the calls it converts: the
host moves this machine's core clock in steps of ~2.5% several times a minute, so a figure
in TSC ticks carries whatever state the run happened to get, and a ratio measured once at
start-up is often from another state.  Core cycles per call, converted sample by sample,
are the primary figure; TSC ticks stay in the records.

Where hardware counters exist, each sample carries the counter's core cycles too; the two
sources must agree (`agreement`).

Samples are judged by bench.measure.policy, the one exclusion policy: an excluded sample is
kept in the log with its reason and measured again.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from bench.measure import policy
from bench.native import _core

MAX_ROUNDS = 20           # re-measure at most this many times for the samples asked for
HISTORY = 64              # kept samples the gap test takes its "usual" from
MAX_CALLS = 1 << 20
CALIBRATION_ADDS = 100    # hundreds of ADDs in the calibration samples' reference (10,000 ADDs)
COUNTER_TOLERANCE = 0.05  # counter vs reference-chain core cycles


@dataclass(frozen=True)
class Target:
    """One function to time: its address, the leaf number it is called with (RDI), its Args."""
    fn: int
    rax: int
    args: object


@dataclass(frozen=True)
class Sample:
    """One rotation of the native loop.  Raw TSC ticks; every figure is derived from them."""
    t: int                    # TSC when the sample began
    n_calls: int              # calls per batch
    ticks: tuple              # TSC ticks of each measured function's batch
    empty: int                # TSC ticks of the empty function's batch
    ref: int                  # TSC ticks of the reference chain (0: none)
    ref_adds: int             # ADDs in the reference chain
    events: dict = field(default_factory=dict)  # perf software events over the whole sample
    hw_cycles: tuple | None = None  # counter core cycles per call, net of the empty batch
    excluded: str | None = None     # a policy.REASONS entry, or None: kept

    @property
    def tsc_per_core(self) -> float:
        return self.ref / self.ref_adds if self.ref_adds and self.ref > 0 else math.nan

    def net_tsc(self, i=0) -> float:
        """TSC ticks per call of function i, net of the empty batch."""
        return (self.ticks[i] - self.empty) / self.n_calls

    def core(self, i=0) -> float:
        """Core cycles per call of function i: net TSC ticks over this sample's own ratio."""
        return self.net_tsc(i) / self.tsc_per_core

    def per_call(self) -> tuple:
        """TSC ticks per call of every slot (per ADD for the reference): for the gap test."""
        out = tuple(t / self.n_calls for t in self.ticks) + (self.empty / self.n_calls,)
        return out + ((self.ref / self.ref_adds,) if self.ref_adds else ())

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ticks"] = list(self.ticks)
        d["hw_cycles"] = list(self.hw_cycles) if self.hw_cycles is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        hw = d.get("hw_cycles")
        return cls(t=int(d["t"]), n_calls=int(d["n_calls"]), ticks=tuple(int(x) for x in d["ticks"]),
                   empty=int(d["empty"]), ref=int(d["ref"]), ref_adds=int(d["ref_adds"]),
                   events={k: int(v) for k, v in d.get("events", {}).items()},
                   hw_cycles=tuple(float(x) for x in hw) if hw is not None else None,
                   excluded=d.get("excluded"))


class Screen:
    """Judges fresh samples against the history of kept ones (policy.judge), so every
    sampler, in user space or the kernel module's client, excludes by the same rule."""

    def __init__(self):
        self.kept = []   # recent kept samples, for the gap test
        self.log = []    # every sample judged, kept or not, in order

    def _usual(self, fresh):
        pool = self.kept[-HISTORY:] + [s for s in fresh if policy.event_reason(s.events) is None]
        if len(pool) < policy.GAP_MIN_HISTORY:
            return None
        return tuple(float(x) for x in np.median(np.array([s.per_call() for s in pool]), axis=0))

    def screen(self, fresh: list) -> list:
        """The fresh samples with their verdicts set (a new Sample each); all go to the log."""
        usual = self._usual(fresh)
        out = []
        for s in fresh:
            reason = policy.judge(s.events, s.per_call(), usual,
                                  tuple(t - s.empty for t in s.ticks))
            s = Sample(**{**s.__dict__, "excluded": reason})
            out.append(s)
            self.log.append(s)
            if reason is None:
                self.kept.append(s)
                del self.kept[:-HISTORY]
        return out

    def excluded(self) -> dict:
        return policy.counts(s.excluded for s in self.log)


@dataclass(frozen=True)
class Perf:
    """An open perf_event group (bench.native._core.perf_open): leader fd and event slots."""
    fd: int = -1
    slots: dict = field(default_factory=dict)   # event name -> position in a group read

    @property
    def hw(self) -> bool:
        return "cycles" in self.slots


class Sampler:
    """Times `targets` interleaved with the empty function and the reference chain."""

    def __init__(self, targets, empty_args, perf: Perf = Perf(), n_calls=None, ref_hundreds=None):
        if not 1 <= len(targets) < _core.SET_MAX:
            raise ValueError(f"a sampler times 1..{_core.SET_MAX - 1} functions")
        self.targets = list(targets)
        self.empty_args = empty_args
        self.perf = perf
        self.n_calls = n_calls
        self.ref_hundreds = ref_hundreds
        self.screen = Screen()

    # -- the native call -----------------------------------------------------------
    def _raw(self, count, n_calls, ref_hundreds) -> list:
        fns = (_core.EMPTY_FN,) + tuple(t.fn for t in self.targets)
        leaves = (0,) + tuple(t.rax for t in self.targets)
        args = (self.empty_args,) + tuple(t.args for t in self.targets)
        n_ev = len(self.perf.slots)
        ticks, t0, ev = _core.measure_set(fns, leaves, args, n_calls, count, self.perf.fd, n_ev, ref_hundreds)
        width = len(fns) + (1 if ref_hundreds else 0)
        t = np.frombuffer(ticks, dtype=np.uint64).reshape(count, width).astype(np.int64)
        e = np.frombuffer(ev, dtype=np.uint64).reshape(count, width, n_ev).astype(np.int64) if n_ev else None
        k = len(self.targets)
        out = []
        for i in range(count):
            events, hw = {}, None
            if e is not None:
                events = {name: int(e[i, :, slot].sum()) for name, slot in self.perf.slots.items()
                          if name in policy.EVENT_REASONS}
                if self.perf.hw:
                    c = e[i, :, self.perf.slots["cycles"]]
                    hw = tuple(float(c[1 + j] - c[0]) / n_calls for j in range(k))
            out.append(Sample(t=int(t0[i]), n_calls=n_calls, ticks=tuple(int(x) for x in t[i, 1:1 + k]),
                              empty=int(t[i, 0]), ref=int(t[i, 1 + k]) if ref_hundreds else 0,
                              ref_adds=100 * ref_hundreds, events=events, hw_cycles=hw))
        return out

    # -- sizing ----------------------------------------------------------------------
    def calibrate(self, target_ticks: float) -> "Sampler":
        """Calls per batch so that the slowest target's batch lasts about target_ticks, and a
        reference chain as long as that batch (its TSC-per-core ratio measured here, not
        assumed)."""
        n = 4
        while True:
            fresh = self._raw(3, n, CALIBRATION_ADDS)
            batch = sorted(max(s.ticks) for s in fresh)[1]
            if batch >= target_ticks or n >= MAX_CALLS:
                break
            n = min(_round4(n * max(2.0, min(64.0, target_ticks / max(batch, 1.0)))), MAX_CALLS)
        per_call = batch / n
        self.n_calls = min(_round4(target_ticks / max(per_call, 1e-3)), MAX_CALLS)
        ratio = float(np.median([s.tsc_per_core for s in fresh]))
        self.ref_hundreds = reference_hundreds(self.n_calls * per_call, ratio)
        return self

    # -- sampling ---------------------------------------------------------------------
    def take(self, count: int, warmups: int = 0) -> list:
        """`count` kept samples (after `warmups` samples that are taken and dropped); excluded
        samples are measured again, up to MAX_ROUNDS rounds.  Every sample is in
        self.screen.log."""
        if self.n_calls is None or self.ref_hundreds is None:
            raise RuntimeError("Sampler.take before calibrate()")
        if warmups:
            self._raw(warmups, self.n_calls, self.ref_hundreds)
        kept = []
        for _ in range(MAX_ROUNDS + 1):
            want = count - len(kept)
            if want <= 0:
                break
            kept += [s for s in self.screen.screen(self._raw(want, self.n_calls, self.ref_hundreds))
                     if s.excluded is None]
        return kept


def reference_hundreds(batch_ticks: float, tsc_per_core: float) -> int:
    """Hundreds of ADDs for a reference chain as long as a batch of batch_ticks."""
    if not tsc_per_core > 0:
        tsc_per_core = 1.0
    return int(min(max(1, round(batch_ticks / tsc_per_core / 100)), _core.REF_MAX_HUNDREDS))


def _round4(n) -> int:
    return max(4, int(math.ceil(n / 4.0)) * 4)


def agreement(samples, i=0) -> float | None:
    """Median counter/reference ratio of core cycles per call, where counters exist."""
    pairs = [(s.hw_cycles[i], s.core(i)) for s in samples if s.hw_cycles is not None and s.core(i) > 0]
    if not pairs:
        return None
    return float(np.median([hw / ref for hw, ref in pairs]))
