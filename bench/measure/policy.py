"""The one exclusion policy: which samples count, and why the others do not.

Every path that times anything (the pyperf worker, `bench ab`, `bench validate`, the
serialization probe, the pytest plugin, the kernel module's client) takes its samples
through bench.measure.sampler, which asks `judge` about each sample.  A sample is excluded,
and measured again, for the first of these that applies:

- context_switch, migration, page_fault: the kernel reports that one of its batches was
  interrupted that way (perf software events read between batches);
- tsc_gap: one of its batches took GAP_FACTOR times the usual TSC ticks per call of that
  slot (time the host took from the vCPU, which the guest kernel does not report); the
  reference chain is a slot like the others, so a gap in it is caught too;
- contention: the sample's load/store probe (a fixed block of independent L1 loads and
  stores, timed beside the reference chain) came out more than CONTENTION_TOLERANCE off the
  machine's floor, in core cycles.  Over it: on a shared host a sibling hyperthread of another
  tenant takes this core's ports for seconds at a time; the latency-bound chain, and so the
  clock conversion, does not see it, but every call that loads and stores does (measured here:
  +14% and +44% states lasting up to 20 s, XSAVE +11% and +35%).  Under it: no core runs the
  probe faster than its ports allow, so the sample's reference chain ran slow and everything
  in it converts low (Zen 4 guest: 0.7% of kept samples 2-10% under, their seamcall_ret
  figures 4% low; once a whole worker 40% under, its figures 30% low);
- nonpositive: the measured batch was not slower than the empty one.

Samples never stand alone for the gap test: `usual` is the median per slot over recent
kept samples (the sampler keeps that history).
"""
from __future__ import annotations

REASONS = ("context_switch", "migration", "page_fault", "tsc_gap", "contention", "nonpositive")
# perf software event (sb_perf_event_names) -> the reason it gives
EVENT_REASONS = {"context_switches": "context_switch", "cpu_migrations": "migration",
                 "page_faults": "page_fault"}
GAP_FACTOR = 1.5
GAP_MIN_HISTORY = 5
# Over the floor (the median of a quiet core's probes): a quiet core's probes sit within ~0.7% of
# one another (Zen 5 guest, probe timed after every batch); a shared core's come at +1% and up and
# move the figures about as much as the probe.  Cutting into the quiet ones would keep the samples
# whose chain ran slow, which makes their figures low.
CONTENTION_TOLERANCE = 0.02


def event_reason(events: dict) -> str | None:
    """The reason the kernel's events over a sample give to exclude it, or None."""
    for name, reason in EVENT_REASONS.items():
        if events.get(name, 0) > 0:
            return reason
    return None


def judge(events: dict, per_call: tuple, usual: tuple | None, net_ticks: tuple,
          contention: float | None = None) -> str | None:
    """The reason a sample is excluded, or None.

    events: event name -> count over the whole sample (all its batches);
    per_call: TSC ticks per call (per ADD for the reference) of each slot of the sample;
    usual: the same, typical for this sampler (None while it has too little history);
    net_ticks: each measured function's batch net of the empty batch;
    contention: the probe's core cycles over the machine's floor, as a ratio (None: no probe or
    floor)."""
    reason = event_reason(events)
    if reason:
        return reason
    if usual is not None and any(x > GAP_FACTOR * u for x, u in zip(per_call, usual) if u > 0):
        return "tsc_gap"
    if contention is not None and not 1 - CONTENTION_TOLERANCE <= contention <= 1 + CONTENTION_TOLERANCE:
        return "contention"
    if any(n <= 0 for n in net_ticks):
        return "nonpositive"
    return None


def counts(reasons) -> dict:
    """reason -> how many, every reason present (0 where none), in REASONS order."""
    out = {r: 0 for r in REASONS}
    for r in reasons:
        if r is not None:
            out[r] += 1
    return out
