"""The harness proves itself: known work injected through the whole pipeline
(YAML declaration -> generated code -> compiled unit -> timed loop -> statistics)
must come back out as that work.

Chains of K dependent one-cycle ADDs are added to a convention; cost(K) is
fitted as a + b*K.  Overhead that is not cancelled would show as an intercept
away from the convention's own figure; b is TSC ticks per core cycle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core, stats
from .config import derive
from .measure import Context, Spec, calibrate, measure

CHAIN_KS = (0, 50, 200, 1000)
RESOLUTION_KS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
INTERCEPT_TOLERANCE = 2.0   # TSC ticks: a vs the convention's own K=0 figure
LINE_TOLERANCE = 0.02       # each point within 2% of the fitted line
COUNTER_TOLERANCE = 0.05    # slope vs TSC-per-core-cycle from hardware counters, where they exist


@dataclass
class Validation:
    convention: str
    backend: str
    leaf: str
    own: float                 # the convention's own median (TSC ticks): the K=0 wrapper
    builtin: float             # the same convention from the built-in table (placement differs)
    points: list               # [(K, median, ci95)]
    a: float
    b: float
    residuals: list
    chain_ratio: float         # TSC per core cycle from the plain ADD chain
    hw_ratio: float | None     # from hardware counters, when the kernel offers them
    resolution: list           # [(K, diff median, ci95, resolved)]
    passed: bool
    failures: list

    @property
    def smallest_resolved(self):
        for k, _, _, ok in self.resolution:
            if ok:
                return k
        return None

    def as_dict(self):
        return {
            "convention": self.convention, "backend": self.backend, "leaf": self.leaf,
            "own_cycles": self.own, "builtin_cycles": self.builtin,
            "points": [{"k": k, "cycles": m, "ci95": list(ci)} for k, m, ci in self.points],
            "intercept": self.a, "slope_tsc_per_core_cycle": self.b, "residuals": self.residuals,
            "chain_tsc_per_core_cycle": self.chain_ratio, "hw_tsc_per_core_cycle": self.hw_ratio,
            "resolution": [{"k": k, "diff_cycles": d, "ci95": list(ci), "resolved": ok}
                           for k, d, ci, ok in self.resolution],
            "smallest_resolved_core_cycles": self.smallest_resolved,
            "smallest_resolved_tsc": (self.smallest_resolved * self.b) if self.smallest_resolved else None,
            "passed": self.passed, "failures": self.failures,
        }


def _derived(base, ks):
    return {f"{base.name}__chain{k}": derive(base, f"{base.name}__chain{k}", inject_chain=k) for k in ks}


def validate(ctx: Context, convention="seamcall_ret", backend="emulated", leaf="vp_info") -> Validation:
    base = ctx.catalog.convention(convention)
    crossing = "emulated" if backend.startswith("emulated") else backend
    ks = sorted(set(CHAIN_KS) | set(RESOLUTION_KS))
    derived = _derived(base, ks)
    ctx.catalog = ctx.catalog.with_conventions(derived)
    ctx.registry.catalog = ctx.catalog
    ctx.registry.ensure_compiled(list(derived), crossings=[crossing], leaves=[leaf])

    # The convention's own figure is the K=0 wrapper: byte-identical code in the same compiled
    # unit as the others.  The built-in copy sits at other addresses, and code placement alone
    # moves this machine's figure by up to ~2 cycles, which is not what is being validated.
    builtin = stats.Summary.of(measure(Spec(convention, backend, leaf), ctx).values).median
    points, hw_cycles = [], []
    for k in CHAIN_KS:
        m = measure(Spec(f"{base.name}__chain{k}", backend, leaf), ctx)
        s = stats.Summary.of(m.values)
        points.append((k, s.median, s.ci95))
        if m.hw_counters:
            hw_cycles.append((k, m.hw_counters["cycles"]))
    own = points[0][1]
    a, b, residuals = stats.fit_line([p[0] for p in points], [p[1] for p in points])
    hw_ratio = None
    if len(hw_cycles) == len(CHAIN_KS):
        _, hw_slope, _ = stats.fit_line([k for k, _ in hw_cycles], [c for _, c in hw_cycles])
        hw_ratio = b / hw_slope if hw_slope else None  # TSC ticks per counted core cycle

    failures = []
    if abs(a - own) > INTERCEPT_TOLERANCE:
        failures.append(f"intercept {a:.2f} differs from {convention}'s own {own:.2f} by more than "
                        f"{INTERCEPT_TOLERANCE} cycles: overhead not cancelled")
    for (k, med, _), res in zip(points, residuals):
        fitted = med - res
        if abs(res) > LINE_TOLERANCE * fitted:
            failures.append(f"K={k}: {med:.2f} is {abs(res) / fitted:.1%} off the line (limit {LINE_TOLERANCE:.0%})")

    if hw_ratio is not None and abs(hw_ratio - b) > COUNTER_TOLERANCE * b:
        failures.append(f"slope {b:.4f} TSC per core cycle disagrees with the hardware cycle counter "
                        f"({hw_ratio:.4f}) by more than {COUNTER_TOLERANCE:.0%}")
    resolution = _resolution(ctx, base.name, backend, leaf)
    return Validation(convention, backend, leaf, own, builtin, points, a, b, residuals,
                      ctx.clocks["tsc_per_core_cycle"], hw_ratio, resolution, not failures, failures)


def _resolution(ctx: Context, base_name, backend, leaf):
    """Interleave K=0 with K=k under the default settings; a difference is resolved when the
    95% CI of the paired per-sample differences excludes zero."""
    from . import backends
    crossing = "emulated" if backend.startswith("emulated") else backend
    fn0, unit = ctx.registry.lookup(f"{base_name}__chain0", crossing, leaf)
    unit.set_emulation(backends.serialize_mode_for(backend, ctx.registry))
    lf = ctx.catalog.leaf(leaf)
    s = ctx.settings
    a, b = ctx.args(), ctx.args()
    n = calibrate(fn0, lf.rax, a, b, s.batch_us * 1e-6 * ctx.clocks["tsc_hz"])
    out = []
    for k in RESOLUTION_KS:
        fnk, _ = ctx.registry.lookup(f"{base_name}__chain{k}", crossing, leaf)
        diffs = []
        for _ in range(s.runs):
            ta, tb, _, _ = _core.measure_pair(fnk, fn0, lf.rax, lf.rax, a, b, n, s.values + s.warmups)
            diffs.extend(stats.per_call(ta, tb, n)[s.warmups:])
        lo, hi = stats.median_ci(diffs)
        out.append((k, float(np.median(diffs)), (lo, hi), lo > 0))
    unit.set_emulation(0)
    return out
