"""Is B slower than A?  What ``bench history --bisect`` asks of two commits.

The answer is ``bench compare``'s (``compare_benchmarks`` here: a
bootstrap over sessions or workers, Mann-Whitney on their medians, the 1%
threshold, and ``decide``), with its four kinds kept apart: "unknown" (the data cannot tell)
is neither "slower" nor "same".  Inputs are values per run (one pyperf worker
each), seconds per call, optionally grouped by session (one results file each)
so that a commit measured twice is treated exactly as ``bench compare`` treats it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bench.stats.summary import (hierarchical_ratio_ci, mann_whitney, minimum_detectable,
                                 nested_ratio_ci)

SLOWER, FASTER, SAME, UNKNOWN = "slower", "faster", "same", "unknown"


DEFAULT_THRESHOLD = 0.01  # changes smaller than 1% count as "same"
ALPHA = 0.05
MIN_WORKERS = 4  # two-sided Mann-Whitney with 3 vs 3 cannot go below p = 0.1


def decide(ci, threshold) -> str:
    """faster / slower / same / unknown from a CI of ratio new/old and the smallest relative
    change that matters.  "same" means the whole interval lies within +-threshold.  The one
    decision rule: `bench compare`, `bench history --bisect` and `bench ab` all ask it."""
    lo, hi = ci
    within = lo >= 1 - threshold and hi <= 1 + threshold
    if within:
        return SAME
    if lo > 1:
        return SLOWER
    if hi < 1:
        return FASTER
    return UNKNOWN


@dataclass
class Row:
    name: str
    median_a: float
    median_b: float
    unit: str
    change: float          # relative: B/A - 1
    ratio: float
    ci95: tuple            # of the ratio B/A
    p_value: float | None
    verdict: str
    workers_a: int
    workers_b: int
    mde: float | None = None            # relative minimum detectable effect ("unknown" only)
    mde_cycles: float | None = None
    more_workers: int | None = None     # about this many more workers per side would decide
    more_values: int | None = None
    more_sessions: int | None = None    # instead of workers, when both sides have several sessions
    sessions_a: int = 1
    sessions_b: int = 1

    def as_dict(self):
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def compare_benchmarks(runs_a, runs_b, name="", unit="cycles", threshold=DEFAULT_THRESHOLD,
                       n_boot=2000, sessions_a=None, sessions_b=None) -> Row:
    """The statistics of one benchmark, from per-worker value arrays (already in `unit`).
    With several sessions on both sides (lists of per-worker arrays), the bootstrap resamples
    sessions first."""
    med_a = float(np.median(np.concatenate(runs_a)))
    med_b = float(np.median(np.concatenate(runs_b)))
    nested = bool(sessions_a and sessions_b and len(sessions_a) > 1 and len(sessions_b) > 1)
    if nested:
        # Sessions are the independent units: the bootstrap starts there, and so does the test.
        ratio, ci = nested_ratio_ci(sessions_a, sessions_b, n_boot=n_boot)
        units_a = [float(np.median(np.concatenate(s))) for s in sessions_a]
        units_b = [float(np.median(np.concatenate(s))) for s in sessions_b]
    else:
        ratio, ci = hierarchical_ratio_ci(runs_a, runs_b, n_boot=n_boot)
        units_a = [float(np.median(r)) for r in runs_a]
        units_b = [float(np.median(r)) for r in runs_b]
    p = mann_whitney(units_a, units_b)
    v = decide(ci, threshold)
    if v in ("faster", "slower") and (p is None or p >= ALPHA):
        # The bootstrap over a handful of workers can be narrower than the truth; a change is
        # only claimed when the workers themselves (Mann-Whitney on their medians) agree.
        v = "unknown"
    row = Row(name, med_a, med_b, unit, ratio - 1, ratio, ci, p, v, len(runs_a), len(runs_b),
              sessions_a=len(sessions_a or [1]), sessions_b=len(sessions_b or [1]))
    if v == "unknown":
        mde = minimum_detectable(ci)
        row.mde, row.mde_cycles = mde, mde * med_a
        # The CI narrows as 1/sqrt(units): units needed to detect a change of `threshold`; and
        # Mann-Whitney needs at least MIN_WORKERS units per side to reach p < 0.05 at all.
        n = min(len(units_a), len(units_b))
        need = max(math.ceil(n * (mde / threshold) ** 2), MIN_WORKERS)
        more = max(need - n, 1)
        per = int(np.median([len(r) for r in runs_a + runs_b]))
        if nested:
            row.more_sessions = more
            row.more_values = more * per * max(1, len(runs_a) // len(sessions_a))
        else:
            row.more_workers = more
            row.more_values = more * per
    return row


@dataclass(frozen=True)
class Comparison:
    kind: str          # "slower", "faster", "same" or "unknown" (B relative to A)
    change: float      # median(B)/median(A) - 1
    lo: float          # confidence interval of ``change``
    hi: float
    p_value: float | None = None
    workers: tuple = (0, 0)        # worker processes on each side
    sessions: tuple = (1, 1)       # sessions (results files) on each side
    more_workers: int | None = None   # "unknown": about this many more per side would decide
    more_sessions: int | None = None


def compare_runs(runs_a, runs_b, sessions_a=None, sessions_b=None) -> Comparison:
    """B against A with the shared ``bench compare`` statistics.  ``sessions_*`` (lists of
    per-session lists of runs) let the bootstrap and the test start at sessions, as
    ``bench compare`` does when both sides have several."""
    ns = lambda runs: [np.asarray(r, dtype=float) * 1e9 for r in runs if len(r)]
    sa = [ns(s) for s in sessions_a] if sessions_a else None
    sb = [ns(s) for s in sessions_b] if sessions_b else None
    row = compare_benchmarks(ns(runs_a), ns(runs_b), unit="ns", sessions_a=sa, sessions_b=sb)
    return Comparison(row.verdict, float(row.change), float(row.ci95[0]) - 1, float(row.ci95[1]) - 1,
                   row.p_value, (row.workers_a, row.workers_b), (row.sessions_a, row.sessions_b),
                   row.more_workers, row.more_sessions)
