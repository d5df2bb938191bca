"""`bench ab X Y`: settle an argument between two conventions in one process.

The native loop alternates a batch of X and a batch of Y (order swapped every
sample: XY, YX, XY, ...) on one pinned CPU, so frequency drift, host noise and
cache state hit both alike.  Each pair gives a ratio of per-call costs, net of
the empty loop (measured in the same process); the answer is the median ratio
with a distribution-free 95% CI.  Pairs during which the kernel reports a
context switch, migration or page fault are dropped and measured again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _core, backends, stats
from .measure import DISTURBING_EVENTS_STRICT, Context, Spec, calibrate, prepare

DEFAULT_THRESHOLD = 0.005  # below 0.5% two conventions count as no different


@dataclass
class ABResult:
    x: str
    y: str
    backend: str
    leaf: str
    n_calls: int
    ratios: list              # Y/X per kept pair
    x_cycles: list            # per kept pair, TSC ticks per call net of the empty loop
    y_cycles: list
    baseline: float           # empty loop, TSC ticks per call
    excluded: int             # disturbed pairs dropped and re-measured
    ratio: float
    ci95: tuple
    verdict: str
    threshold: float
    tsc_hz: float
    samples: list = field(default_factory=list)  # every pair, for --trace

    def as_dict(self):
        return {"x": self.x, "y": self.y, "backend": self.backend, "leaf": self.leaf,
                "ratio": self.ratio, "ci95": list(self.ci95), "verdict": self.verdict,
                "change": self.ratio - 1, "threshold": self.threshold,
                "x_cycles": float(np.median(self.x_cycles)), "y_cycles": float(np.median(self.y_cycles)),
                "cycles_unit": "tsc", "baseline_cycles": self.baseline, "pairs": len(self.ratios),
                "excluded": self.excluded, "n_calls": self.n_calls}


def default_leaf(catalog, x, y):
    cx, cy = catalog.convention(x), catalog.convention(y)
    common = [lf for lf in cx.meant_for if lf in cy.meant_for]
    return (common or list(cx.meant_for) or list(cy.meant_for) or ["vp_info"])[0]


def decide(ci, threshold):
    """slower / faster (Y against X), or no significant difference."""
    lo, hi = ci
    if lo >= 1 - threshold and hi <= 1 + threshold:
        return "no significant difference"
    if lo > 1:
        return "slower"
    if hi < 1:
        return "faster"
    return "no significant difference"


def run_ab(ctx: Context, x, y, backend="emulated", leaf=None, pairs=2000, threshold=DEFAULT_THRESHOLD,
           allow_unsafe=False, max_attempts=5) -> ABResult:
    catalog, registry = ctx.catalog, ctx.registry
    leaf = leaf or default_leaf(catalog, x, y)
    catalog.leaf(leaf)
    if backend not in backends.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(backends.BACKENDS)}")
    crossing = backends.BACKENDS[backend].crossing
    # Conventions not built in are compiled together, into one unit: both then call the same
    # emulated stub, so the comparison is of the conventions and not of two copies of the stub.
    user = [n for n in dict.fromkeys((x, y)) if not registry._is_builtin_decl(n)]
    if user:
        registry.ensure_compiled(user, crossings=[crossing], leaves=[leaf])
    px = prepare(Spec(x, backend, leaf), ctx, allow_unsafe)
    py = prepare(Spec(y, backend, leaf), ctx, allow_unsafe)
    target = ctx.settings.batch_us * 1e-6 * ctx.clocks["tsc_hz"]
    n = max(calibrate(px.fn, px.leaf.rax, px.args, px.base_args, target),
            calibrate(py.fn, py.leaf.rax, py.args, py.base_args, target))
    # The empty loop's own cost per call, interleaved with X, subtracted from both.
    _core.measure_pair(px.fn, _core.EMPTY_FN, px.leaf.rax, 0, px.args, px.base_args, n, 3)
    _, tb, _, _ = _core.measure_pair(px.fn, _core.EMPTY_FN, px.leaf.rax, 0, px.args, px.base_args, n, 31)
    base = float(np.median(np.asarray(tb, dtype=float) / n))
    slots = ctx.perf_slots
    n_ev = len(slots)
    # warm-up: a few pairs, not kept
    _core.measure_pair(px.fn, py.fn, px.leaf.rax, py.leaf.rax, px.args, py.args, n, 4)
    xs, ys, samples, excluded = [], [], [], 0
    for _ in range(max_attempts):
        want = pairs - len(xs)
        if want <= 0:
            break
        ta, tb, t0, ev = _core.measure_pair(px.fn, py.fn, px.leaf.rax, py.leaf.rax, px.args, py.args, n,
                                            want, ctx.perf_fd, n_ev)
        evs = np.asarray(ev, dtype=np.int64).reshape(-1, 2, n_ev) if n_ev else None
        for i in range(want):
            counts = {name: int(evs[i, 0, s] + evs[i, 1, s]) for name, s in slots.items()} if n_ev else {}
            a, b = ta[i] / n - base, tb[i] / n - base
            bad = any(counts.get(e, 0) for e in DISTURBING_EVENTS_STRICT) or a <= 0 or b <= 0
            samples.append({"t": int(t0[i]), "x": a, "y": b, "ev": counts, "disturbed": bool(bad)})
            if bad:
                excluded += 1
                continue
            xs.append(a)
            ys.append(b)
    for p in (px, py):
        p.unit.set_emulation(0)
    if len(xs) < 10:
        raise RuntimeError(f"only {len(xs)} undisturbed pairs out of {len(samples)}: the machine is too busy")
    ratios = [b / a for a, b in zip(xs, ys)]
    ratio, ci = stats.paired_ratio_summary(ratios)
    return ABResult(x, y, backend, leaf, n, ratios, xs, ys, base, excluded, ratio, ci,
                    decide(ci, threshold), threshold, ctx.clocks["tsc_hz"], samples)


def print_result(console, r: ABResult):
    from rich.table import Table
    t = Table(title=f"A/B on {r.backend}, leaf {r.leaf}: {len(r.ratios)} interleaved pairs of "
                    f"{r.n_calls} calls each", title_justify="left")
    for col in ("convention", "median TSC cycles/call", "ns/call"):
        t.add_column(col, justify="right" if col != "convention" else "left")
    for name, vals in ((r.x, r.x_cycles), (r.y, r.y_cycles)):
        med = float(np.median(vals))
        t.add_row(name, f"{med:,.2f}", f"{med / r.tsc_hz * 1e9:,.2f}")
    console.print(t)
    console.print(f"{r.y} / {r.x}, pair by pair: median {r.ratio:.4f} ({r.ratio - 1:+.2%}), "
                  f"95% CI {r.ci95[0]:.4f} .. {r.ci95[1]:.4f}")
    word = {"slower": f"[red]{r.y} is slower than {r.x}[/]", "faster": f"[green]{r.y} is faster than {r.x}[/]",
            "no significant difference": f"no significant difference (95% CI within +-{r.threshold:.1%} "
                                         "or containing 1)"}[r.verdict]
    console.print(f"verdict: {word}")
    console.print(f"[dim]empty loop {r.baseline:.2f} TSC cycles/call subtracted from both; "
                  f"{r.excluded} disturbed pairs (context switch, migration or page fault) dropped and "
                  f"re-measured[/]")
