"""Perfetto traces, read back by decoding the protobuf (perfetto's TraceProcessor downloads a
binary at first use, which cannot work offline)."""
import collections
import os
import textwrap

import pytest
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import TrackEvent

from bench.measure import ab
from bench import cli
from bench.native import machine
from bench.config import Settings, load_builtin
from bench.measure.prepare import Context
from bench.native.registry import Registry
from bench.report.trace import read_trace, write_ab_trace


def tracks(trace):
    return {p.track_descriptor.uuid: p.track_descriptor for p in trace.packet if p.HasField("track_descriptor")}


def events(trace, uuid, kind):
    return [p for p in trace.packet if p.HasField("track_event") and p.track_event.track_uuid == uuid
            and p.track_event.type == kind]


def by_name(ts, suffix):
    found = [u for u, t in ts.items() if t.name.endswith(suffix)]
    assert found, (suffix, [t.name for t in ts.values()])
    return found


def test_run_trace(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent("""\
        suite: t
        conventions: [seamcall]
        backends: [emulated]
        leaves: [vp_info]
        settings: {runs: 3, values: 6, warmups: 1, batch_us: 50}
        """))
    out = tmp_path / "run.pftrace"
    assert cli.main(["run", "--suite", str(suite), "--no-store", "--trace", str(out), "--json"]) == 0
    t = read_trace(out)
    ts = tracks(t)
    group = by_name(ts, "seamcall/emulated/vp_info")[0]
    cost = by_name(ts, "vp_info: core cycles per call")[0]
    workers = by_name(ts, "vp_info: worker processes")[0]
    assert ts[cost].parent_uuid == group and ts[cost].HasField("counter")
    counters = events(t, cost, TrackEvent.TYPE_COUNTER)
    # every native sample: 3 workers x (1 warm-up + 6 values), the calibration worker's, and
    # the excluded ones measured again (an excluded one may be non-positive)
    assert len(counters) >= 3 * 7
    assert sum(c.track_event.double_counter_value > 0 for c in counters) >= 3 * 7
    ratio = by_name(ts, "vp_info: TSC cycles per core cycle")[0]
    assert len(events(t, ratio, TrackEvent.TYPE_COUNTER)) == len(counters)
    stamps = [c.timestamp for c in counters]
    assert stamps == sorted(stamps)
    begins = events(t, workers, TrackEvent.TYPE_SLICE_BEGIN)
    # one worker a round (3), more where one was replaced; no calibration worker (pyperf is told the loops)
    assert len(begins) >= 3 and all("worker pid" in b.track_event.name for b in begins)
    assert len(events(t, workers, TrackEvent.TYPE_SLICE_END)) == len(begins)
    # perf software events as counters, one value per sample
    for name in ("context switches", "CPU migrations", "page faults"):
        ev = by_name(ts, f": {name}")[0]
        assert len(events(t, ev, TrackEvent.TYPE_COUNTER)) == len(counters)
    cs = by_name(ts, ": context switches")[0]
    disturbed = by_name(ts, ": excluded samples")[0]
    n_cs = sum(1 for c in events(t, cs, TrackEvent.TYPE_COUNTER) if c.track_event.double_counter_value)
    marks = events(t, disturbed, TrackEvent.TYPE_INSTANT)
    assert len(marks) >= n_cs  # every sample with a context switch is marked (page faults too)


def test_ab_trace(tmp_path):
    before = os.sched_getaffinity(0)
    machine.pin()
    try:
        catalog = load_builtin()
        r = ab.run_ab(Context(catalog, Registry(catalog), Settings()), "seamcall_ret", "lean", pairs=100)
    finally:
        os.sched_setaffinity(0, before)
    out = tmp_path / "ab.pftrace"
    write_ab_trace(out, r)
    t = read_trace(out)
    ts = tracks(t)
    x = by_name(ts, "seamcall_ret: core cycles per call")[0]
    ratio = by_name(ts, "lean / seamcall_ret")[0]
    assert len(events(t, x, TrackEvent.TYPE_COUNTER)) == len(r.samples) == len(r.ratios) + sum(r.excluded.values())
    values = sorted(e.track_event.double_counter_value for e in events(t, ratio, TrackEvent.TYPE_COUNTER))
    # every pair, excluded ones too (they are marked): the kept ones alone give r.ratio
    every = sorted(s.net_tsc(1) / s.net_tsc(0) for s in r.samples if s.net_tsc(0) > 0)
    assert values == pytest.approx(every)
    kinds = collections.Counter(p.track_event.type for p in t.packet if p.HasField("track_event"))
    assert kinds[TrackEvent.TYPE_SLICE_BEGIN] == kinds[TrackEvent.TYPE_SLICE_END] == 1
