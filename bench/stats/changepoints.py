"""Change points in a benchmark's history: a thin wrapper around asv's step detection.

Method: asv's ``step_detect.detect_steps`` (airspeed velocity, the tool whose
results-per-commit layout we follow) fits a piecewise-constant function to the
series by minimising a penalised L1 cost (the Potts model, solved exactly by
dynamic programming with the penalty chosen by cross-validation; see the
asv documentation, "Regression detection", and Friedrich et al., *Complexity
penalized M-estimation*, J. Comp. Graph. Stat. 2008). Points are weighted by
the inverse width of their confidence interval, as asv does.

Why asv and not E-Divisive: the maintained E-Divisive implementations
(``apache-otava``, MongoDB's ``signal-processing-algorithms``) pin old numpy
/scipy releases and pull in database and cloud clients; asv's step detector is
dependency-free (stdlib plus a small C extension in the wheel) and was
designed for exactly this data: one noisy value per commit with gaps.

What is reported differs from asv's ``detect_regressions`` in one way: every
step is listed (improvements too, tagged), not only the ones that explain the
gap between the best and the latest value, because a maintainer reading the
history wants to see each move. A step counts when it exceeds asv's own
noise rule: ``max(err_left, err_right, threshold * level)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    before: int        # index of the last point at the old level
    after: int         # index of the first point at the new level
    value_before: float
    value_after: float

    @property
    def delta(self) -> float:
        return self.value_after - self.value_before

    @property
    def rel(self) -> float:
        return self.delta / self.value_before if self.value_before else math.inf

    @property
    def kind(self) -> str:
        return "regression" if self.delta > 0 else "improvement"


def find_changes(y, ci_lo=None, ci_hi=None, threshold: float = 0.01) -> list[Change]:
    """Steps in ``y`` (one value per commit in history order; None/NaN = missing).

    ``threshold`` is the smallest relative step reported (default 1%).
    """
    from asv.step_detect import detect_steps  # lazy: only the dashboard needs asv

    y = [None if v is None or v != v else float(v) for v in y]
    present = [v for v in y if v is not None]
    if len(present) < 3:
        return []
    # Exact shortcut: segment levels lie within [min, max], so no step can pass
    # the threshold rule below if the whole series spans less than that.
    lo_v, hi_v = min(present), max(present)
    if hi_v - lo_v <= threshold * min(abs(lo_v), abs(hi_v)):
        return []
    w = None
    if ci_lo is not None and ci_hi is not None:
        w = []
        for v, a, b in zip(y, ci_lo, ci_hi):
            width = (b - a) if (v is not None and a is not None and b is not None) else None
            w.append(2.0 / width if width and width > 0 and width == width else None)
    steps = detect_steps(y, w)
    out = []
    for (l0, r0, v0, _m0, e0), (l1, _r1, v1, _m1, e1) in zip(steps, steps[1:]):
        noise = max(e0, e1, threshold * abs(v0))
        if abs(v1 - v0) > noise:
            out.append(Change(before=r0 - 1, after=l1, value_before=v0, value_after=v1))
    return out
