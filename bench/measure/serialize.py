"""How the emulated stub serializes: decided by measurement, once per CPU, in the parent.

SEAMCALL and TDCALL are VM-exit-class transitions that serialize the core, so the stub
must too; of the architecturally serializing instructions usable at CPL 3, the cheapest
measured here is taken.  The parent process decides and hands the mode to every worker
(`--sb-serialize`), so all workers of a run time the same stub.  The decision is kept per CPU
(MODE_FILE, beside the build cache, keyed as the other per-machine caches): every later run on
it times the same stub, which a fresh measurement on a busy core could otherwise change, and
does not spend ~1 s measuring each mode again.  `bench doctor` measures and decides anew.
"""
from __future__ import annotations

import os
import statistics

from bench.measure.sampler import Perf, Sampler, Target
from bench.native import _core, machine
from bench.native.backends import BACKENDS, FULLY_SERIALIZING, SER_MODES
from bench.native.errors import NativeError

SAMPLES = 15
MODE_FILE = "serialize-mode.json"  # cpu_key -> the mode decided on that CPU


def _supported(mode) -> bool:
    return machine.cpu()["serialize"] if mode == "serialize" else True


def costs(registry, probe_floor=None) -> dict:
    """TSC ticks per call of the vp_info stub under each serialization mode (in-process: none of
    these instructions can fault once CPUID says they exist), measured once per registry;
    `probe_floor` (the clocks') judges contention in the first measurement."""
    if _costs_of.get("registry") is not registry:
        _costs_of.update(registry=registry, costs=measure_costs(registry, probe_floor))
    return _costs_of["costs"]


_costs_of: dict = {}


def measure_costs(registry, probe_floor=None) -> dict:
    """costs(), measured now."""
    fn, unit = registry.lookup("seamcall", "emulated", "vp_info")
    out = {}
    perf = Perf.open()
    try:
        for mode, value in SER_MODES.items():
            if not _supported(mode):
                continue
            unit.set_emulation(value)
            s = Sampler([Target(fn, 1, _core.Args(64))], _core.Args(64), perf, probe_floor=probe_floor)
            s.resize(4 if mode == "cpuid" else 64)
            out[mode] = float(statistics.median(x.net_tsc() for x in s.take(SAMPLES, warmups=3)))
    finally:
        unit.set_emulation(0)
        perf.close()
    return out


def choice(registry, probe_floor=None, measure=False) -> dict:
    """{"mode", "why", "costs"}: the mode the `emulated` backend uses (SEAMBENCH_SERIALIZE forces
    one): the one kept for this CPU, else (or with `measure`) the cheapest fully serializing one
    measured now, then kept.  "costs" is None where nothing was measured."""
    forced = os.environ.get("SEAMBENCH_SERIALIZE")
    if forced:
        valid = [m for m in SER_MODES if _supported(m)]
        if forced not in valid:
            raise NativeError(f"SEAMBENCH_SERIALIZE={forced!r}: choose one of {', '.join(valid)}")
        return {"mode": forced, "why": "forced by SEAMBENCH_SERIALIZE",
                "costs": costs(registry, probe_floor) if measure else None}
    doc = machine.cache_read(MODE_FILE)
    kept = doc.get(machine.cpu_key())
    if not measure and kept in FULLY_SERIALIZING and _supported(kept):
        return {"mode": kept, "why": "cheapest fully serializing when measured on this CPU, kept "
                "(`bench doctor` measures again)", "costs": None}
    measured = costs(registry, probe_floor)
    candidates = {m: c for m, c in measured.items() if m in FULLY_SERIALIZING}
    mode = min(candidates, key=candidates.get)
    if mode != kept:
        machine.cache_write(MODE_FILE, {**doc, machine.cpu_key(): mode})
    return {"mode": mode, "why": f"cheapest fully serializing: {candidates[mode]:.0f} ticks/call of "
            + ", ".join(f"{m} {c:.0f}" for m, c in sorted(candidates.items(), key=lambda kv: kv[1])),
            "costs": measured}


def mode_for(backend: str, chosen: str | None) -> int:
    """SB_SER_* value for a backend, given the run's chosen mode name (for `auto` backends)."""
    b = BACKENDS[backend]
    if b.serialize is None:
        return SER_MODES["none"]  # the stub is not called by real crossings
    if b.serialize == "auto":
        if chosen is None:
            raise ValueError(f"{backend}: no serialization mode decided for this run")
        return SER_MODES[chosen]
    return SER_MODES[b.serialize]


def name_of(value: int) -> str:
    return next(k for k, v in SER_MODES.items() if v == value)
