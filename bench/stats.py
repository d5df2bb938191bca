"""Statistics on raw per-sample figures: pure functions, no I/O, no native code."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


def per_call(ticks_a, ticks_b, n_calls):
    """Per-call cost of A net of B, for each interleaved sample."""
    a = np.asarray(ticks_a, dtype=float)
    b = np.asarray(ticks_b, dtype=float)
    return (a - b) / n_calls


def median_ci(values, confidence=0.95):
    """Distribution-free confidence interval for the median from order statistics
    (the binomial rank method): no normality assumed, exact coverage >= confidence."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    if n < 6:
        return float(x[0]), float(x[-1])
    # 1-based rank k: P(Binomial(n, 1/2) < k) <= alpha/2; the interval is [x(k), x(n-k+1)].
    k = int(_st.binom.ppf((1 - confidence) / 2, n, 0.5))
    lo, hi = max(k - 1, 0), min(n - k, n - 1)
    return float(x[lo]), float(x[hi])


def mad(values):
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan
    return float(np.median(np.abs(x - np.median(x))))


@dataclass(frozen=True)
class Summary:
    median: float
    ci95: tuple
    mad: float
    n: int

    @classmethod
    def of(cls, values):
        values = list(values)
        return cls(float(np.median(values)) if values else math.nan, median_ci(values), mad(values), len(values))


def fit_line(xs, ys):
    """Least squares y = a + b x; returns (a, b, residuals)."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b), [float(r) for r in y - (a + b * x)]


def median_diff_ci(a_values, b_values, confidence=0.95, n_boot=2000, seed=12345):
    """Bootstrap CI of median(A) - median(B) for independent samples (deterministic seed)."""
    a = np.asarray(a_values, dtype=float)
    b = np.asarray(b_values, dtype=float)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    d = np.median(a[ia], axis=1) - np.median(b[ib], axis=1)
    lo, hi = np.quantile(d, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return float(np.median(a) - np.median(b)), (float(lo), float(hi))
