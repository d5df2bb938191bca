"""Small, pure statistics the history and dashboard need.

``verdict`` is what ``bench history --bisect`` asks: is B slower than A? It
uses the shared ``bench compare`` statistics (``bench.compare``, issue 3:
hierarchical bootstrap over workers plus Mann-Whitney on their medians) and
falls back to ``compare`` below, a plain bootstrap of medians, where that
module is absent (older trees). Inputs are values per run (one pyperf worker
each), seconds per call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SLOWER, FASTER, SAME = "slower", "faster", "same"


def median_ci(values, conf: float = 0.95):
    """Median and a distribution-free confidence interval for it.

    The interval is between two order statistics chosen from the binomial
    distribution (e.g. Conover, *Practical Nonparametric Statistics*, 3rd ed.,
    §3.2); it needs no resampling, so it is cheap enough for every point of a
    1,000-commit history. With fewer than 6 values it is the full range.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    med = float((x[(n - 1) // 2] + x[n // 2]) / 2)  # x is sorted
    if n < 6:
        return med, float(x[0]), float(x[-1])
    lo_rank, hi_rank = _ranks(n, conf)
    return med, float(x[lo_rank]), float(x[hi_rank])


_RANK_CACHE: dict = {}


def _ranks(n: int, conf: float):
    key = (n, conf)
    r = _RANK_CACHE.get(key)
    if r is None:
        from scipy.stats import binom  # lazy: keeps `bench run` start-up light

        a = (1 - conf) / 2
        # x = smallest count with P(B <= x) >= a, B ~ Bin(n, 1/2); the
        # interval [X_(x), X_(n+1-x)] (1-based) covers the median with
        # probability >= conf. Returned as 0-based indices.
        x = int(binom.ppf(a, n, 0.5))
        r = _RANK_CACHE[key] = (x - 1, n - x) if x > 0 else (0, n - 1)
    return r


@dataclass(frozen=True)
class Verdict:
    kind: str          # "slower", "faster" or "same" (B relative to A)
    change: float      # median(B)/median(A) - 1
    lo: float          # bootstrap confidence interval of ``change``
    hi: float


def compare(a, b, *, min_effect: float = 0.02, conf: float = 0.95,
            n_boot: int = 2000, seed: int = 0) -> Verdict:
    """Is B slower than A? Bootstrap of the ratio of medians.

    "slower" when the interval of the relative change excludes 0 *and* the
    point estimate exceeds ``min_effect`` (a real change too small to matter
    is "same"); "faster" symmetrically.
    Deterministic for a given seed.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("compare: both sides need values")
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(a, size=(n_boot, a.size)), axis=1)
    mb = np.median(rng.choice(b, size=(n_boot, b.size)), axis=1)
    ratios = mb / ma - 1
    alpha = (1 - conf) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    change = float(np.median(b) / np.median(a) - 1)
    if lo > 0 and change > min_effect:
        kind = SLOWER
    elif hi < 0 and change < -min_effect:
        kind = FASTER
    else:
        kind = SAME
    return Verdict(kind, change, float(lo), float(hi))


def verdict(runs_a, runs_b) -> Verdict:
    """B against A with the shared ``bench compare`` verdict, or ``compare`` without it."""
    try:
        from .compare import compare_benchmarks
    except ImportError:
        compare_benchmarks = None
    runs_a = [np.asarray(r, dtype=float) * 1e9 for r in runs_a if len(r)]
    runs_b = [np.asarray(r, dtype=float) * 1e9 for r in runs_b if len(r)]
    if compare_benchmarks is None:
        return compare(np.concatenate(runs_a), np.concatenate(runs_b))
    row = compare_benchmarks(runs_a, runs_b, unit="ns")
    kind = row.verdict if row.verdict in (SLOWER, FASTER) else SAME  # "unknown" is not "slower"
    return Verdict(kind, float(row.change), float(row.ci95[0]) - 1, float(row.ci95[1]) - 1)
