"""Perfetto traces of every sample, written with the perfetto package's own builder.

Per benchmark a track group holds: the per-call cost of each sample as a counter
over time, each worker process as a slice (named with its pid, and whether it was
dropped as noisy), the perf software events the kernel counted during each sample
as counters, and an instant event on each disturbed sample.  Open the file in
ui.perfetto.dev.  Times are TSC ticks converted with the run's TSC frequency, from
the first sample.
"""
from __future__ import annotations

import os
from pathlib import Path

from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import CounterDescriptor, TrackEvent
from perfetto.trace_builder.proto_builder import TraceProtoBuilder

from bench.results import store

SEQ = 0x5EA3  # trusted_packet_sequence_id of every packet: one writer
EVENT_TRACKS = {"context_switches": "context switches", "cpu_migrations": "CPU migrations",
                "page_faults": "page faults", "tsc_gap": "TSC gaps"}


class _Writer:
    def __init__(self, tsc_hz, origin):
        self.b = TraceProtoBuilder()
        self.tsc_hz, self.origin = tsc_hz, origin
        self.next_uuid = 1
        first = self.b.add_packet()
        first.trusted_packet_sequence_id = SEQ
        first.sequence_flags = 1  # SEQ_INCREMENTAL_STATE_CLEARED

    def ns(self, tick):
        return max(0, int(round((tick - self.origin) / self.tsc_hz * 1e9)))

    def track(self, name, parent=None, counter=False, unit=None):
        uuid = self.next_uuid
        self.next_uuid += 1
        p = self.b.add_packet()
        p.trusted_packet_sequence_id = SEQ
        p.track_descriptor.uuid = uuid
        p.track_descriptor.name = name
        if parent:
            p.track_descriptor.parent_uuid = parent
        if counter:
            p.track_descriptor.counter.SetInParent()
            if unit:
                p.track_descriptor.counter.unit_name = unit
            else:
                p.track_descriptor.counter.unit = CounterDescriptor.UNIT_COUNT
        return uuid

    def _event(self, tick, track, kind):
        p = self.b.add_packet()
        p.trusted_packet_sequence_id = SEQ
        p.timestamp = self.ns(tick)
        p.track_event.type = kind
        p.track_event.track_uuid = track
        return p.track_event

    def counter(self, tick, track, value):
        self._event(tick, track, TrackEvent.TYPE_COUNTER).double_counter_value = float(value)

    def slice(self, t0, t1, track, name):
        self._event(t0, track, TrackEvent.TYPE_SLICE_BEGIN).name = name
        self._event(t1, track, TrackEvent.TYPE_SLICE_END)

    def instant(self, tick, track, name):
        self._event(tick, track, TrackEvent.TYPE_INSTANT).name = name

    def save(self, path):
        store.write_bytes(self.b.serialize(), path, replace=True, what="trace")


def _events_tracks(w, parent, name, events_present):
    return {ev: w.track(f"{name}: {EVENT_TRACKS[ev]}", parent, counter=True)
            for ev in EVENT_TRACKS if ev in events_present}


def _reason(s) -> str:
    return s.excluded.replace("_", " ")


def write_run_trace(path, results, tsc_hz, info=None):
    """`bench run --trace`: results are bench.measure.driver.Result objects (side-file samples)."""
    ticks = [s.t for r in results for s in r.samples]
    w = _Writer(tsc_hz, min(ticks) if ticks else 0)
    for res in results:
        name = res.spec.name
        group = w.track(name)
        cost = w.track(f"{name}: core cycles per call", group, counter=True, unit="core cycles")
        ratio = w.track(f"{name}: TSC cycles per core cycle", group, counter=True, unit="ratio")
        workers = w.track(f"{name}: worker processes", group)
        excluded = w.track(f"{name}: excluded samples", group)
        present = {k for s in res.samples for k in s.events}
        ev_tracks = _events_tracks(w, group, name, present)
        noisy = {tok for tok, _ in res.excluded_runs}
        tokens = set(res.calls) | set(res.excluded)
        per_worker = {t: sorted(res.calls.get(t, []) + res.excluded.get(t, []), key=lambda s: s.t) for t in tokens}
        for token, samples in sorted(per_worker.items(), key=lambda kv: kv[1][0].t if kv[1] else 0):
            if not samples:
                continue
            pid = token.split("-")[0]
            last = samples[-1]
            end = last.t + sum(last.ticks) + last.empty + last.ref
            label = f"worker pid {pid}" + (" (dropped: noisy)" if token in noisy else "")
            w.slice(samples[0].t, end, workers, label)
            for s in samples:
                w.counter(s.t, cost, s.core())
                w.counter(s.t, ratio, s.tsc_per_core)
                for ev, track in ev_tracks.items():
                    w.counter(s.t, track, s.events.get(ev, 0))
                if s.excluded:
                    w.instant(s.t, excluded, f"excluded ({_reason(s)}): measured again")
    w.save(path)


def write_ab_trace(path, r):
    """`bench ab --trace`: r is a bench.measure.ab.ABResult."""
    w = _Writer(r.tsc_hz, r.samples[0].t if r.samples else 0)
    group = w.track(f"ab {r.x} vs {r.y} ({r.backend}, {r.leaf})")
    tx = w.track(f"{r.x}: core cycles per call", group, counter=True, unit="core cycles")
    ty = w.track(f"{r.y}: core cycles per call", group, counter=True, unit="core cycles")
    tr = w.track(f"{r.y} / {r.x}", group, counter=True, unit="ratio")
    proc = w.track("process", group)
    excluded = w.track("excluded pairs", group)
    present = {k for s in r.samples for k in s.events}
    ev_tracks = _events_tracks(w, group, "ab", present)
    # One slice per worker process (bench ab), or one for this process (run_ab in-process).
    spans = [(p["first_t"], p["last_t"], f"pid {p['pid']}: {p['pairs']} pairs, ratio {p['ratio']:.4f}"
              + (" (dropped: far from its peers)" if p["dropped"] else "")) for p in r.processes]
    if not spans and r.samples:
        spans = [(r.samples[0].t, r.samples[-1].t, f"pid {os.getpid()}: {len(r.samples)} pairs")]
    for t0, t1, label in spans:
        w.slice(t0, t1 + 1, proc, label)
    for s in r.samples:
        w.counter(s.t, tx, s.core(0))
        w.counter(s.t, ty, s.core(1))
        if s.net_tsc(0) > 0:
            w.counter(s.t, tr, s.net_tsc(1) / s.net_tsc(0))
        for ev, track in ev_tracks.items():
            w.counter(s.t, track, s.events.get(ev, 0))
        if s.excluded:
            w.instant(s.t, excluded, f"excluded ({_reason(s)}): measured again")
    w.save(path)


def read_trace(path):
    """The trace as perfetto's Trace message (for tests and tools; no trace processor needed)."""
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace
    t = Trace()
    t.ParseFromString(Path(path).read_bytes())
    return t
