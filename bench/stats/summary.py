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
    return _ci_of_sorted(np.sort(np.asarray(values, dtype=float)), confidence)


def median_and_ci(values, confidence=0.95):
    """(median, lo, hi): np.median and median_ci of `values`, from one sort."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    if math.isnan(x[-1]):  # NaN sorts last; np.median is NaN then
        med = math.nan
    else:
        # np.median's value: the middle order statistic, or the mean of the middle two
        med = float(x[n // 2]) if n % 2 else (float(x[n // 2 - 1]) + float(x[n // 2])) / 2
    return (med, *_ci_of_sorted(x, confidence))


def _ci_of_sorted(x, confidence):
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    if n < 6:
        return float(x[0]), float(x[-1])
    lo, hi = _median_ci_ranks(n, confidence)
    return float(x[lo]), float(x[hi])


EXACT_RANKS_UP_TO = 20000  # n beyond which the exact sum costs more than importing scipy


@functools.lru_cache(maxsize=4096)
def _median_ci_ranks(n, confidence):
    """0-based indexes of the interval's order statistics; cached, since the dashboard asks
    for thousands of points with a handful of distinct n."""
    # 1-based rank k = binom.ppf(alpha/2, n, 1/2): the least k with P(Binomial(n, 1/2) <= k) >=
    # alpha/2; the interval is [x(k), x(n-k+1)].
    k = _binom_half_ppf((1 - confidence) / 2, n)
    return max(k - 1, 0), min(n - k, n - 1)


def _binom_half_ppf(q: float, n: int) -> int:
    """scipy.stats.binom.ppf(q, n, 0.5), summed exactly in integers: the dashboard's reading
    workers need it for every point, and importing scipy.stats costs each of them ~2 s."""
    if n > EXACT_RANKS_UP_TO or not 0 < q < 1:
        from scipy import stats as _st  # rare: very large pooled samples
        return int(_st.binom.ppf(q, n, 0.5))
    num, den = q.as_integer_ratio()  # q exactly: CDF(k) >= q  <=>  sum C(n, i) * den >= num * 2^n
    target = num << n
    c = cum = 1  # C(n, 0)
    k = 0
    while cum * den < target:
        c = c * (n - k) // (k + 1)
        k += 1
        cum += c
    return k


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


# --- t quantiles and bench ab's per-process pieces; the decision is bench.stats.verdict.decide ---

Z95 = 1.959963984540054
Z80 = 0.8416212335729143  # one-sided, for 80% power


def whole_df(df) -> float:
    """The whole degrees of freedom below df (a slightly wider interval; t and its p-value agree)."""
    return float(math.floor(df)) if df < 1e6 else math.inf


def t_ppf(q, df) -> float:
    """Student's t quantile (normal for df beyond 1e6)."""
    from scipy.special import ndtri, stdtrit  # ufuncs: microseconds, where scipy.stats takes 100
    d = whole_df(df)
    return float(ndtri(q)) if d == math.inf else float(stdtrit(d, q))


def paired_ratio_summary(ratios, confidence=0.95):
    """Median of per-pair ratios with its distribution-free CI (order statistics)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.median(r)), median_ci(r, confidence)


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
