"""The one sampling engine: every timing in seambench goes through here.

A sample is one rotation of the native loop (_native/measure.c): a batch of n calls of
each measured function, a batch of n calls of the empty function (loop, call and timer
overhead: subtracted, sample by sample, or in `bench run` as the run's empty loop fitted over
its workers on a backend, bench.measure.driver.fit_baseline), and a reference batch, a dependent
chain of register-register ADDs of known length (one core cycle each).  The reference gives
each sample its own TSC ticks per core cycle, measured within a few hundred microseconds of
the calls it converts: the host moves this machine's core clock in steps of ~2.5% several
times a minute, so a figure in TSC ticks carries whatever state the run happened to get, and
a ratio measured once at start-up is often from another state.  Core cycles per call,
converted sample by sample, are the primary figure; TSC ticks stay in the records.

Where hardware counters exist, each sample carries the counter's core cycles too; the two
sources must agree (`agreement`).

The loop also times a load/store probe after every batch (sb_probe_ticks; a sample keeps
its slowest): in core cycles it sits at
a floor that is the machine's, except while a sibling hyperthread shares the core; such
samples are excluded (policy: contention) and the sampler waits, within a per-process
budget, for the core to be its own again.  The floor is the parent's (machine.clocks, kept
per machine across runs), lowered here if this process sees the core quieter.  Before each
sample the native loop's gate runs the probe until the core is quiet (at most GATE_PROBES):
a sibling that is busy nearly all the time still leaves quiet windows of a few hundred
microseconds, and a sample started in one is mostly quiet to its end.

Samples are judged by bench.measure.policy, the one exclusion policy: an excluded sample is
kept in the log with its reason and measured again.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field, replace

from bench.measure import policy
from bench.measure.model import Sample
from bench.native import _core

MAX_ROUNDS = 20           # re-measure at most this many times for the samples asked for
# Per sampler: how long it may wait, in all, for a contended core to clear; after that contended
# samples are kept and counted (Sample.contended).  The host's shared-core states last from a
# fraction of a second to ~20 s: a wait outlasts the short ones without stalling a run.
CONTENTION_WAIT_S = float(os.environ.get("SEAMBENCH_CONTENTION_WAIT_S", "0.5"))
HISTORY = 64              # kept samples the gap test takes its "usual" from
# A floor given too high (the machine's first start-up on a shared core) is lowered by FLOOR_RUN
# samples in a row under it and otherwise undisturbed, to their median, but by no more than
# FLOOR_LOWER_MAX in all: the host passes through states in which the reference chain runs slow
# for milliseconds (5-10% under) and, rarely, for a whole worker (40% under), and a floor
# lowered to one of them would keep every sample of it and exclude the quiet ones after it.
FLOOR_RUN = 32
FLOOR_LOWER_MAX = 0.10
MAX_CALLS = 1 << 20
# The gate (_native/measure.c): each sample waits, at most this many probes (~1-5 ms), for a
# core its sibling hyperthread leaves alone.  Such a core comes in windows of a few hundred
# microseconds (Zen 3 guest, a sibling busy 98% of the time: 0.1% of ungated 100-us samples
# quiet, 77% of gated ones).
GATE_PROBES = 1000
SIZE_SLACK = 2.0          # a given calls-per-batch stands while its batch is within 2x of the target
CALIBRATION_ADDS = 100    # hundreds of ADDs in the calibration samples' reference (10,000 ADDs)
COUNTER_TOLERANCE = 0.05  # counter vs reference-chain core cycles
HW_COUNTERS = ("cycles", "instructions")  # hardware counters recorded per sample, where they exist


@dataclass(frozen=True)
class Target:
    """One function to time: its address, the leaf number it is called with (RDI), its Args."""
    fn: int
    rax: int
    args: object


class Floor:
    """A floor in core cycles that quiet samples set (the load/store probe's).  Lowered
    by FLOOR_RUN samples in a row more than `tolerance` under it and otherwise undisturbed (to
    their median), never by one and never under FLOOR_LOWER_MAX below the floor given: a sample
    whose chain was slowed looks fast and would set a floor nothing else reaches."""

    def __init__(self, value: float | None, tolerance: float):
        self.value = value
        self.lowest = value * (1 - FLOOR_LOWER_MAX) if value else None
        self.tolerance = tolerance
        self.quiet = []  # the latest undisturbed samples' core cycles (FLOOR_RUN at most)

    def over(self, core: float) -> float | None:
        """core over the floor (None: no floor, or nothing measured)."""
        return core / self.value if self.value and core > 0 else None

    def offer(self, core: float) -> None:
        """The core cycles of a sample nothing but its probe's distance from the floor excluded."""
        self.quiet = self.quiet[-(FLOOR_RUN - 1):] + [core]
        if len(self.quiet) == FLOOR_RUN and all(q < self.value * (1 - self.tolerance) for q in self.quiet):
            self.value = max(float(statistics.median(self.quiet)), self.lowest)
            self.quiet = []


class Screen:
    """Judges fresh samples against the history of kept ones (policy.judge), so every
    sampler, in user space or the kernel module's client, excludes by the same rule."""

    def __init__(self, probe_floor: float | None = None):
        self.kept = []   # recent kept samples, for the gap test
        self.log = []    # every sample judged, kept or not, in order
        # the probe's uncontended core cycles (None: not judged): the parent's, lowered here
        self.probe = Floor(probe_floor, policy.CONTENTION_TOLERANCE)
        self.tolerate = False  # the wait budget is spent: contended samples are kept, flagged

    @property
    def probe_floor(self) -> float | None:
        return self.probe.value

    def _usual(self, fresh):
        pool = self.kept[-HISTORY:] + [s for s in fresh if policy.event_reason(s.events) is None]
        if len(pool) < policy.GAP_MIN_HISTORY:
            return None
        return tuple(float(statistics.median(col)) for col in zip(*(s.per_call() for s in pool)))

    def seed(self, samples: list) -> None:
        """History from calibration samples (not logged, not kept for figures): the gap test then
        works from the first sample judged, instead of waiting for GAP_MIN_HISTORY of them."""
        for s in samples:
            if policy.event_reason(s.events) is None and all(t > s.empty for t in s.ticks):
                self.kept.append(s)
        del self.kept[:-HISTORY]

    def screen(self, fresh: list) -> list:
        """The fresh samples with their verdicts set (a new Sample each); all go to the log."""
        usual = self._usual(fresh)
        out = []
        for s in fresh:
            contention = self.probe.over(s.probe_core) if s.probe else None
            reason = policy.judge(s.events, s.per_call(), usual,
                                  tuple(t - s.empty for t in s.ticks), contention)
            if contention is not None and (reason is None or (reason == "contention" and contention < 1)):
                self.probe.offer(s.probe_core)  # a sample under the floor may be a quieter core
            s = replace(s, excluded=reason)
            if reason == "contention" and self.tolerate:
                s = replace(s, excluded=None, contended=True)
                reason = None
            out.append(s)
            self.log.append(s)
            if reason is None:
                self.kept.append(s)
                del self.kept[:-HISTORY]
        return out

    def excluded(self, since: int = 0) -> dict:
        """reason -> samples excluded (from log entry `since` on), reasons with none left out."""
        return {k: v for k, v in policy.counts(s.excluded for s in self.log[since:]).items() if v}


@dataclass(frozen=True)
class Perf:
    """An open perf_event group (bench.native._core.perf_open): leader fd and event slots."""
    fd: int = -1
    slots: dict = field(default_factory=dict)   # event name -> position in a group read

    @property
    def hw(self) -> bool:
        return "cycles" in self.slots

    @classmethod
    def open(cls) -> "Perf":
        """This thread's group of every event the kernel offers (none: fd -1, no slots)."""
        fd, slots, _ = _core.perf_open()
        return cls(fd, {k: v for k, v in slots.items() if v is not None})

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)


class Sampler:
    """Times `targets` interleaved with the empty function and the reference chain."""

    def __init__(self, targets, empty_args, perf: Perf = Perf(), n_calls=None, ref_hundreds=None,
                 probe_floor: float | None = None):
        if not 1 <= len(targets) < _core.SET_MAX:
            raise ValueError(f"a sampler times 1..{_core.SET_MAX - 1} functions")
        self.targets = list(targets)
        self.empty_args = empty_args
        self.perf = perf
        self.n_calls = n_calls
        self.ref_hundreds = ref_hundreds
        self.batch_ticks = None  # the slowest target's batch when last sized (resize)
        self.screen = Screen(probe_floor)
        self.wait_left = CONTENTION_WAIT_S
        self.ratio = None        # TSC ticks per core cycle of the latest samples: the gate's scale
        self.gate_s = 0.0        # seconds the gate waited in the latest native call
        # Samples taken so far: the next native call continues the batch order's rotation
        # (_core.slot_order) where the last one stopped.  Samples excluded and measured again
        # come a few at a time, and from sample 0 each time they would all run in the first
        # row's order.
        self.rotation = 0

    # -- the native call -----------------------------------------------------------
    def _gate(self, ref_hundreds) -> int:
        """The gate's limit in TSC ticks: the probe's floor at the latest samples' clock, with
        the tolerance (0: no gate, while there is no floor or ratio yet).  It stays on once the
        wait budget is spent: each sample's wait is bounded (GATE_PROBES), and a sample started
        in a quiet window is the likelier to be quiet, flagged or not."""
        floor = self.screen.probe.value
        if not (ref_hundreds and floor and self.ratio):
            return 0
        return int(floor * self.ratio * (1 + policy.CONTENTION_TOLERANCE))

    def _raw(self, count, n_calls, ref_hundreds) -> list:
        fns = (_core.EMPTY_FN,) + tuple(t.fn for t in self.targets)
        leaves = (0,) + tuple(t.rax for t in self.targets)
        args = (self.empty_args,) + tuple(t.args for t in self.targets)
        n_ev = len(self.perf.slots)
        gate = self._gate(ref_hundreds)
        t_wall = time.monotonic()
        ticks, t0, ev, probe, waited = _core.measure_set(fns, leaves, args, n_calls, count, self.perf.fd, n_ev,
                                                         ref_hundreds, gate, GATE_PROBES if gate else 0,
                                                         self.rotation)
        self.rotation = (self.rotation + count) & 0xFFFFFFFF
        t_wall = time.monotonic() - t_wall
        width = len(fns) + (1 if ref_hundreds else 0)
        k = len(self.targets)
        counters = [name for name in HW_COUNTERS if name in self.perf.slots]
        out = []
        for i in range(count):
            t = [_signed(x) for x in ticks[i * width:(i + 1) * width]]
            events, hw = {}, {}
            if n_ev:
                def per_slot(slot):  # one event's deltas over the sample's batches, slot by slot
                    return [_signed(ev[(i * width + j) * n_ev + slot]) for j in range(width)]
                events = {name: sum(per_slot(slot)) for name, slot in self.perf.slots.items()
                          if name in policy.EVENT_REASONS}
                for name in counters:  # per call, net of the empty batch, like the TSC figure
                    c = per_slot(self.perf.slots[name])
                    hw[name] = tuple(float(c[1 + j] - c[0]) / n_calls for j in range(k))
            out.append(Sample(t=int(t0[i]), n_calls=n_calls, ticks=tuple(t[1:1 + k]),
                              empty=t[0], ref=t[1 + k] if ref_hundreds else 0,
                              ref_adds=100 * ref_hundreds, events=events, hw=hw,
                              probe=int(probe[i]) if ref_hundreds else 0))
        ratios = [x.tsc_per_core for x in out if x.ref > 0]
        if ratios:
            self.ratio = float(statistics.median(ratios))
        # the gate's share of the call's wall time: its probes (at about the limit each) against
        # everything the samples ran
        gated = sum(waited) * gate
        self.gate_s = t_wall * gated / (gated + sum(_signed(x) for x in ticks) + width * sum(probe)) if gated else 0.0
        return out

    # -- sizing ----------------------------------------------------------------------
    def calibrate(self, target_ticks: float) -> "Sampler":
        """Calls per batch so that the slowest target's batch lasts about target_ticks, and a
        reference chain as long as that batch."""
        n = 4
        while True:
            fresh = self._raw(3, n, CALIBRATION_ADDS)
            batch = sorted(max(s.ticks) for s in fresh)[1]
            if batch >= target_ticks or n >= MAX_CALLS:
                break
            n = min(_round4(n * max(2.0, min(64.0, target_ticks / max(batch, 1.0)))), MAX_CALLS)
        per_call = batch / n
        return self.resize(min(_round4(target_ticks / max(per_call, 1e-3)), MAX_CALLS))

    def size(self, target_ticks: float, n_calls: int | None = None) -> "Sampler":
        """n_calls per batch where given (the parent's, the same run after run) and its batch
        lasts within SIZE_SLACK of target_ticks, else calibrate(target_ticks)."""
        if n_calls:
            self.resize(n_calls)
            if 1 / SIZE_SLACK <= self.batch_ticks / target_ticks <= SIZE_SLACK:
                return self
        return self.calibrate(target_ticks)

    def resize(self, n_calls: int) -> "Sampler":
        """n_calls per batch (a multiple of 4), and a reference chain about as long as the
        slowest target's batch: its TSC-per-core ratio is measured here, never assumed."""
        fresh = self._raw(2 * policy.GAP_MIN_HISTORY, n_calls, CALIBRATION_ADDS)
        batch = float(statistics.median(max(s.ticks) for s in fresh))
        ratio = float(statistics.median(s.tsc_per_core for s in fresh))
        self.n_calls, self.ref_hundreds = n_calls, reference_hundreds(batch, ratio)
        self.batch_ticks = batch
        self.screen.seed(fresh)  # per call (per ADD for the reference): comparable at any chain length
        return self

    # -- sampling ---------------------------------------------------------------------
    def warm(self, count: int) -> list:
        """`count` warm-up samples: taken, not judged, not kept."""
        self._check()
        return self._raw(count, self.n_calls, self.ref_hundreds) if count > 0 else []

    def take(self, count: int, warmups: int = 0) -> list:
        """`count` kept samples (after `warmups` warm-up samples); excluded samples are measured
        again, up to MAX_ROUNDS rounds and, while the core is contended, for as long as the
        sampler's wait budget lasts, so fewer may come back.  Every judged sample is in
        self.screen.log."""
        self._check()
        self.warm(warmups)
        kept, rounds = [], 0
        while len(kept) < count:
            t0 = time.monotonic()
            fresh = self.screen.screen(self._raw(count - len(kept), self.n_calls, self.ref_hundreds))
            kept += [s for s in fresh if s.excluded is None]
            contended = any(s.excluded == "contention" for s in fresh) and not self.screen.tolerate
            # waiting for a quiet core, in the gate or in samples measured again: the wait
            # budget, not a round of the limit
            self.wait_left -= time.monotonic() - t0 if contended else self.gate_s
            self.screen.tolerate = self.screen.tolerate or self.wait_left <= 0
            if contended:
                continue
            rounds += 1
            if rounds > MAX_ROUNDS:
                break
        return kept

    def _check(self):
        if self.n_calls is None or self.ref_hundreds is None:
            raise ValueError("the sampler has no batch size yet: calibrate() or resize() first")


def reference_hundreds(batch_ticks: float, tsc_per_core: float) -> int:
    """Hundreds of ADDs for a reference chain as long as a batch of batch_ticks: a multiple of
    the pieces the native loop times it in (_core.REF_PIECES)."""
    if not tsc_per_core > 0:
        tsc_per_core = 1.0
    k = _core.REF_PIECES
    pieces = min(max(1, round(batch_ticks / tsc_per_core / 100 / k)), _core.REF_MAX_HUNDREDS // k)
    return int(pieces * k)


def _signed(x: int) -> int:
    """A uint64 from the native loop as the signed difference it is (a counter can step back)."""
    return x - (1 << 64) if x >= 1 << 63 else x


def _round4(n) -> int:
    return max(4, int(math.ceil(n / 4.0)) * 4)


def agreement(block) -> float | None:
    """Median of counter / reference-chain core cycles per call over a SampleBlock's samples, where
    hardware counters exist (else None).  The two sources must agree within COUNTER_TOLERANCE."""
    hw = block.hw.get("cycles")
    if not hw:
        return None
    pairs = [(h, c) for h, c in zip(hw, block.core) if c > 0]
    return float(statistics.median(h / c for h, c in pairs)) if pairs else None
