"""Statistics on raw per-sample figures: pure functions, no I/O, no native code."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


def per_call(ticks_a, ticks_b, n_calls):
    """Per-call cost of A net of B, for each interleaved sample."""
    a = np.asarray(ticks_a, dtype=float)
    b = np.asarray(ticks_b, dtype=float)
    return (a - b) / n_calls


def median_ci(values, confidence=0.95):
    """Distribution-free confidence interval for the median from order statistics
    (the binomial rank method, e.g. Conover, *Practical Nonparametric Statistics*, 3rd ed.,
    3.2): no normality assumed, exact coverage >= confidence.  With fewer than 6 values it
    is the full range."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    if n < 6:
        return float(x[0]), float(x[-1])
    lo, hi = _median_ci_ranks(n, confidence)
    return float(x[lo]), float(x[hi])


@functools.lru_cache(maxsize=4096)
def _median_ci_ranks(n, confidence):
    """0-based indexes of the interval's order statistics; cached, since the dashboard asks
    for thousands of points with a handful of distinct n."""
    from scipy import stats as _st  # imported here: scipy costs ~1 s, and workers never need it
    # 1-based rank k: P(Binomial(n, 1/2) < k) <= alpha/2; the interval is [x(k), x(n-k+1)].
    k = int(_st.binom.ppf((1 - confidence) / 2, n, 0.5))
    return max(k - 1, 0), min(n - k, n - 1)


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


# --- comparing two result sets (bench compare) and two conventions (bench ab); the decision
# itself is bench.stats.verdict.decide ---------------------------------------------------

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # one-sided, for 80% power


def hierarchical_ratio_ci(runs_a, runs_b, confidence=0.95, n_boot=2000, seed=12345):
    """Bootstrap CI for median(B) / median(A) that resamples worker processes first and values
    within each chosen process second.  Values of one process share its code layout, ASLR
    and frequency state, so they are not independent; resampling them as one pool (as
    pyperf's t-test effectively does) makes intervals too narrow."""
    rng = np.random.default_rng(seed)
    a = [np.asarray(r, dtype=float) for r in runs_a if len(r)]
    b = [np.asarray(r, dtype=float) for r in runs_b if len(r)]
    if not a or not b:
        raise ValueError("each side needs at least one run with values")
    boot_a = _boot_medians(a, n_boot, rng)
    boot_b = _boot_medians(b, n_boot, rng)
    ratios = boot_b / boot_a
    lo, hi = np.quantile(ratios, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    point = float(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    return point, (float(lo), float(hi))


def _boot_medians(runs, n_boot, rng):
    sizes = {len(r) for r in runs}
    k = len(runs)
    if len(sizes) == 1:  # the usual case: every worker gave the same number of values
        arr = np.stack(runs)
        v = arr.shape[1]
        pick = rng.integers(0, k, size=(n_boot, k))
        idx = rng.integers(0, v, size=(n_boot, k, v))
        return np.median(arr[pick[:, :, None], idx].reshape(n_boot, -1), axis=1)
    out = np.empty(n_boot)
    for i in range(n_boot):
        chosen = [runs[j] for j in rng.integers(0, k, size=k)]
        out[i] = np.median(np.concatenate([r[rng.integers(0, len(r), size=len(r))] for r in chosen]))
    return out


def mann_whitney(a, b):
    """Two-sided Mann-Whitney U p-value (scipy), or None when a side is empty or both are constant."""
    from scipy.stats import mannwhitneyu
    if len(a) == 0 or len(b) == 0:
        return None
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def minimum_detectable(ci):
    """Relative change this data would detect with 80% power at the 5% level, from the CI
    half-width (taken as 1.96 standard errors)."""
    se = (ci[1] - ci[0]) / (2 * Z95)
    return (Z95 + Z80) * se


def paired_ratio_summary(ratios, confidence=0.95):
    """Median of per-pair ratios with its distribution-free CI (order statistics)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.median(r)), median_ci(r, confidence)


def hierarchical_median_ci(groups, confidence=0.95, n_boot=2000, seed=12345):
    """Median of pooled values with a CI from a bootstrap over groups (processes) first and
    values within them second."""
    rng = np.random.default_rng(seed)
    g = [np.asarray(x, dtype=float) for x in groups if len(x)]
    boot = _boot_medians(g, n_boot, rng)
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return float(np.median(np.concatenate(g))), (float(lo), float(hi))


def outlier_groups(medians, floor, factor=5.0):
    """Indexes of groups whose median is far from the others' (robust z on the MAD), and
    further than `floor` in absolute terms."""
    m = np.asarray(medians, dtype=float)
    if len(m) < 3:
        return []
    centre = float(np.median(m))
    spread = 1.4826 * float(np.median(np.abs(m - centre)))
    limit = max(factor * spread, floor)
    return [i for i, v in enumerate(m) if abs(v - centre) > limit]


def nested_ratio_ci(sessions_a, sessions_b, confidence=0.95, n_boot=2000, seed=12345):
    """As hierarchical_ratio_ci with one more level on top: sessions (separate `bench run`s,
    minutes or days apart), then workers within a session, then values.  What changes between
    sessions (host load, the kernel's state) then widens the interval as it should."""
    rng = np.random.default_rng(seed)
    boot_a = _boot_nested([[np.asarray(w, dtype=float) for w in s if len(w)] for s in sessions_a], n_boot, rng)
    boot_b = _boot_nested([[np.asarray(w, dtype=float) for w in s if len(w)] for s in sessions_b], n_boot, rng)
    ratios = boot_b / boot_a
    lo, hi = np.quantile(ratios, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    pooled = lambda ss: np.concatenate([w for s in ss for w in s])
    return float(np.median(pooled(sessions_b)) / np.median(pooled(sessions_a))), (float(lo), float(hi))


def _boot_nested(sessions, n_boot, rng):
    sessions = [s for s in sessions if s]
    out = np.empty(n_boot)
    for i in range(n_boot):
        chosen = []
        for j in rng.integers(0, len(sessions), size=len(sessions)):
            s = sessions[j]
            chosen += [s[k] for k in rng.integers(0, len(s), size=len(s))]
        out[i] = np.median(np.concatenate([w[rng.integers(0, len(w), size=len(w))] for w in chosen]))
    return out
