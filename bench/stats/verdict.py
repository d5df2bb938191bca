"""Is B slower than A?  What ``bench history --bisect`` asks of two commits.

The answer is ``bench compare``'s (``bench.compare.compare_benchmarks``: a
bootstrap over sessions or workers, Mann-Whitney on their medians, the 1%
threshold), with its four kinds kept apart: "unknown" (the data cannot tell)
is neither "slower" nor "same".  Inputs are values per run (one pyperf worker
each), seconds per call, optionally grouped by session (one results file each)
so that a commit measured twice is treated exactly as ``bench compare`` treats it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compare import compare_benchmarks

SLOWER, FASTER, SAME, UNKNOWN = "slower", "faster", "same", "unknown"


@dataclass(frozen=True)
class Verdict:
    kind: str          # "slower", "faster", "same" or "unknown" (B relative to A)
    change: float      # median(B)/median(A) - 1
    lo: float          # confidence interval of ``change``
    hi: float
    p_value: float | None = None
    workers: tuple = (0, 0)        # worker processes on each side
    sessions: tuple = (1, 1)       # sessions (results files) on each side
    more_workers: int | None = None   # "unknown": about this many more per side would decide
    more_sessions: int | None = None


def verdict(runs_a, runs_b, sessions_a=None, sessions_b=None) -> Verdict:
    """B against A with the shared ``bench compare`` statistics.  ``sessions_*`` (lists of
    per-session lists of runs) let the bootstrap and the test start at sessions, as
    ``bench compare`` does when both sides have several."""
    ns = lambda runs: [np.asarray(r, dtype=float) * 1e9 for r in runs if len(r)]
    sa = [ns(s) for s in sessions_a] if sessions_a else None
    sb = [ns(s) for s in sessions_b] if sessions_b else None
    row = compare_benchmarks(ns(runs_a), ns(runs_b), unit="ns", sessions_a=sa, sessions_b=sb)
    return Verdict(row.verdict, float(row.change), float(row.ci95[0]) - 1, float(row.ci95[1]) - 1,
                   row.p_value, (row.workers_a, row.workers_b), (row.sessions_a, row.sessions_b),
                   row.more_workers, row.more_sessions)
