"""The one decision rule: is B slower than A, faster, the same, or can the data not tell?

`bench compare`, `bench ab`, `bench history --bisect` and the dashboard's change points all
decide here.

**The interval.**  Per benchmark and side, each session (one `bench run`, one results file) is
one unit: the log of its median, with the variance of that log from the run's own values
(within) plus the between-run variance sigma_b^2 (bench.stats.noise: estimated from replicates of
identical code, never assumed without saying so).  The log-ratio B/A is the difference of the
sides' mean log medians; its standard error adds both components for each side; its quantile is
Student's t with the Satterthwaite degrees of freedom of sigma_b^2's estimate.

**The zones.**  The threshold t is the smallest relative change that matters.  The ratio axis is
cut in three zones at 1 +- t/2, midway between "no change" and "a change of t", so that both are
decided with the same amount of data:

    faster   the CI lies entirely below 1 - t/2
    same     the CI lies entirely within [1 - t/2, 1 + t/2]
    slower   the CI lies entirely above 1 + t/2
    unknown  the CI straddles an edge

The zones are disjoint and a decision only says which zone holds the whole CI, so it is monotone:
an interval inside a decided one gets the same decision, and a CI shrinking around a ratio r can
only ever be decided as the zone of r (tests/test_verdict_rule.py checks both).  More data can
move "unknown" to a decision, never one decision to another.

**The family.**  The benchmarks of one comparison are tested together: a change (faster or
slower) is claimed only where Holm's step-down procedure over the rows' p-values (for "the ratio
lies outside the same zone") rejects at family-wise level ALPHA, i.e. where the CI at the row's
Holm level lies in a change zone.  "same" uses the plain 95% CI: a false "same" is not a false
alarm.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bench.stats.noise import ASSUMED, Noise, moments, session_of
from bench.stats.noise import estimate as noise_estimate
from bench.stats.summary import Z80, Z95, t_ppf, whole_df

SLOWER, FASTER, SAME, UNKNOWN = "slower", "faster", "same", "unknown"

DEFAULT_THRESHOLD = 0.01  # the smallest change that matters; zones split at half of it
ALPHA = 0.05              # family-wise, over the benchmarks of one comparison
FAMILY_METHOD = "Holm"
MAX_MORE = 200            # "runs needed" beyond this is reported as "more than"


def edges(threshold) -> tuple:
    """The ratio B/A where the same zone ends on either side."""
    return 1 - threshold / 2, 1 + threshold / 2


def decide(ci, threshold) -> str:
    """faster / slower / same / unknown: the zone (see the module) that holds the whole CI of the
    ratio new/old, else unknown."""
    lo, hi = ci
    low, high = edges(threshold)
    if lo > high:
        return SLOWER
    if hi < low:
        return FASTER
    if lo >= low and hi <= high:
        return SAME
    return UNKNOWN


def _t_sf(x, df):
    from scipy.special import ndtr, stdtr
    d = whole_df(df)
    return float(ndtr(-x)) if d == math.inf else float(stdtr(d, -x))


def _norm_ppf(q):
    from scipy.special import ndtri
    return float(ndtri(q))


@dataclass(frozen=True)
class Estimate:
    """The log-ratio B/A with its standard error and degrees of freedom; `w_a`/`w_b` are one
    session's total variance on each side (within + between), for the runs a decision needs."""
    log_ratio: float
    se: float
    df: float
    n_a: int = 1
    n_b: int = 1
    w_a: float = 0.0
    w_b: float = 0.0
    noise: Noise | None = None

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def quantile(self, level) -> float:
        """Two-sided critical value at significance `level`."""
        return t_ppf(1 - level / 2, self.df) if self.se > 0 else 0.0

    def ci(self, level=ALPHA) -> tuple:
        q = self.quantile(level)
        return math.exp(self.log_ratio - q * self.se), math.exp(self.log_ratio + q * self.se)


def estimate(sessions_a, sessions_b, noise: Noise) -> Estimate:
    """From Sessions (bench.stats.noise.Session) on each side and sigma_b^2's estimate."""
    a = [s for s in sessions_a if s is not None]
    b = [s for s in sessions_b if s is not None]
    if not a or not b:
        raise ValueError("each side needs at least one session with a positive median")
    na, nb = len(a), len(b)
    mean_a = sum(s.log_median for s in a) / na
    mean_b = sum(s.log_median for s in b) / nb
    wa = sum(s.within_var for s in a) / na + noise.var
    wb = sum(s.within_var for s in b) / nb + noise.var
    var = wa / na + wb / nb
    between = noise.var * (1 / na + 1 / nb)
    # Satterthwaite: only sigma_b^2 is estimated from few units (within variances from 100s of values).
    df = min(noise.df * (var / between) ** 2, 1e6) if between > 0 and noise.df > 0 else 1e6
    # Shifts with heavy tails (noise.tail_df): their t's degrees of freedom where they dominate.
    if between > var / 2:
        df = min(df, noise.tail_df)
    return Estimate(mean_b - mean_a, math.sqrt(var), max(df, 1.0), na, nb, wa, wb, noise)


def p_change(est: Estimate, threshold) -> float:
    """p-value against "the ratio lies in the same zone", on the side the estimate falls: the
    smallest level at which the two-sided CI lies wholly in a change zone."""
    low, high = (math.log(e) for e in edges(threshold))
    d = est.log_ratio
    if est.se <= 0:
        return 0.0 if (d > high or d < low) else 1.0
    z = (d - high) / est.se if d >= 0 else (low - d) / est.se
    return min(1.0, 2 * _t_sf(z, est.df))


def holm(pvalues, alpha=ALPHA):
    """Holm's step-down: per row (rejected, the level it was tested at, the adjusted p-value)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [None] * m
    going, adj = True, 0.0
    for k, i in enumerate(order):
        level = alpha / (m - k)
        adj = max(adj, min(1.0, (m - k) * pvalues[i]))
        going = going and pvalues[i] <= level
        out[i] = (going, level, adj)
    return out


@dataclass(frozen=True)
class Decision:
    verdict: str
    ci95: tuple
    level: float                 # the Holm level this row's change test was held to
    p_adjusted: float
    more_sessions: int | None    # "unknown": about this many more runs per side would decide
    mde: float                   # the smallest change this data calls "slower" with 80% power


def runs_needed(est: Estimate, threshold, level) -> int | None:
    """About how many more sessions per side would put the CI wholly in one zone, were the point
    estimate right; None when more than MAX_MORE (the estimate sits on a zone's edge)."""
    low, high = (math.log(e) for e in edges(threshold))
    d = est.log_ratio
    if d > high or d < low:
        gap, q = (d - high if d > high else low - d), float(_norm_ppf(1 - level / 2))
    else:
        gap, q = min(d - low, high - d), Z95
    if gap <= 0:
        return None
    n = q * q * (est.w_a + est.w_b) / (gap * gap)
    more = max(math.ceil(n) - min(est.n_a, est.n_b), 1)
    return more if more <= MAX_MORE else None


def decide_family(estimates, threshold=DEFAULT_THRESHOLD, alpha=ALPHA) -> list:
    """One Decision per Estimate, the rows one family (Holm)."""
    ps = [p_change(e, threshold) for e in estimates]
    out = []
    for e, (rejected, level, adj) in zip(estimates, holm(ps, alpha)):
        ci95 = e.ci(ALPHA)
        if rejected:
            v = decide(e.ci(level), threshold)
        else:
            v = SAME if decide(ci95, threshold) == SAME else UNKNOWN
        mde = math.exp(math.log(edges(threshold)[1]) + (e.quantile(level) + Z80) * e.se) - 1
        more = runs_needed(e, threshold, level) if v == UNKNOWN else None
        out.append(Decision(v, ci95, level, adj, more, mde))
    return out


# --- the between-run variance of a comparison -------------------------------------------

def side_noise(sessions_a, sessions_b) -> Noise | None:
    """sigma_b^2 from the sides themselves, where a side has several sessions (same commit: same code)."""
    m = moments([sessions_a, sessions_b])
    if m.df <= 0:
        return None
    return noise_estimate(m, source="sessions",
                          detail=f"{len(sessions_a)} + {len(sessions_b)} sessions of the two sides")


def noise_for(sessions_a, sessions_b, store: Noise | None = None, record: Noise | None = None) -> Noise:
    """The brief's order: identical-code replicates in the results store (which include the sides'
    own sessions when they are stored there), else several sessions on a side, else the machine's
    noise record, else an assumption, said as such."""
    if store is not None:
        return store
    return side_noise(sessions_a, sessions_b) or record or ASSUMED


# --- rows of a comparison (bench compare) ------------------------------------------------

@dataclass
class Row:
    name: str
    median_a: float
    median_b: float
    unit: str
    change: float          # relative: B/A - 1
    ratio: float
    ci95: tuple            # of the ratio B/A
    p_value: float | None  # Holm-adjusted, against "within the same zone"
    verdict: str
    workers_a: int
    workers_b: int
    sessions_a: int = 1
    sessions_b: int = 1
    level: float = ALPHA   # the Holm level of this row's change test
    mde: float | None = None
    mde_cycles: float | None = None
    more_sessions: int | None = None   # "unknown": about this many more runs per side would decide
    noise: str = ""                    # where sigma_b came from (Noise.describe)
    noise_source: str = ""
    noise_sd: float = 0.0

    def as_dict(self):
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


@dataclass
class Item:
    """One benchmark to compare: per side, sessions as lists of per-worker value arrays."""
    name: str
    unit: str
    sessions_a: list
    sessions_b: list
    store: Noise | None = None        # from replicates in the results store (noise_for's order)
    record: Noise | None = None       # from the machine's noise record


def compare_benchmarks(items, threshold=DEFAULT_THRESHOLD, alpha=ALPHA) -> list:
    """Rows for every Item with values on both sides, decided as one family."""
    prepared = []
    for it in items:
        sa = [s for s in (session_of(x) for x in it.sessions_a) if s is not None]
        sb = [s for s in (session_of(x) for x in it.sessions_b) if s is not None]
        if not sa or not sb:
            continue
        noise = noise_for(sa, sb, it.store, it.record)
        prepared.append((it, sa, sb, estimate(sa, sb, noise)))
    rows = []
    for (it, sa, sb, est), dec in zip(prepared, decide_family([p[3] for p in prepared], threshold, alpha)):
        med_a = math.exp(np.mean([s.log_median for s in sa]))
        med_b = math.exp(np.mean([s.log_median for s in sb]))
        rows.append(Row(it.name, med_a, med_b, it.unit, est.ratio - 1, est.ratio, dec.ci95, dec.p_adjusted,
                        dec.verdict, sum(len(x) for x in it.sessions_a), sum(len(x) for x in it.sessions_b),
                        len(sa), len(sb), dec.level, dec.mde, dec.mde * med_a, dec.more_sessions,
                        est.noise.describe(), est.noise.source, est.noise.sd))
    return rows


# --- one benchmark between two commits (bench history --bisect) -------------------------------

@dataclass(frozen=True)
class Comparison:
    kind: str          # "slower", "faster", "same" or "unknown" (B relative to A)
    change: float      # B/A - 1
    lo: float          # 95% confidence interval of ``change``
    hi: float
    p_value: float | None = None
    workers: tuple = (0, 0)        # worker processes on each side
    sessions: tuple = (1, 1)       # sessions (results files) on each side
    more_sessions: int | None = None
    noise: str = ""


def compare_runs(sessions_a, sessions_b, store: Noise | None = None, record: Noise | None = None,
                 threshold=DEFAULT_THRESHOLD) -> Comparison:
    """B against A for one benchmark: per side, sessions as lists of per-worker value lists (any
    unit: only ratios matter); `store`/`record` as for Item (noise_for's order)."""
    rows = compare_benchmarks([Item("", "", sessions_a, sessions_b, store=store, record=record)], threshold)
    if not rows:
        raise ValueError("each side needs a session with values")
    r = rows[0]
    return Comparison(r.verdict, r.change, r.ci95[0] - 1, r.ci95[1] - 1, r.p_value, (r.workers_a, r.workers_b),
                      (r.sessions_a, r.sessions_b), r.more_sessions, r.noise)
