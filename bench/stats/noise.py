"""How much a benchmark's median moves between two `bench run`s of the same code.

Model (log scale, per benchmark): the median of session j is

    log m_j = mu + b_j + e_j,    b_j ~ (0, sigma_b^2) between runs,  e_j ~ (0, v_j) within

`v_j` is estimated from the session's own values (``Session.within_var``: the width of the
order-statistic CI of the median of its pooled values); `sigma_b^2` from sessions that measured
the same code (replicates): the mean square of their medians around their group's mean, less the
mean within-run variance (method of moments).  Whatever the within-run estimate misses (e.g.
workers that differ by code placement) lands in sigma_b^2, since both are estimated with the same
estimator; the sum is what a session's median varies by.  Pure functions: no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.stats.summary import Z95, median_ci, t_ppf

# A per-machine pool lends a benchmark without replicates of its own this many degrees of freedom
# (and shrinks one with few replicates towards the pool): benchmarks differ in how much they drift.
PRIOR_DF = 10.0
# No source at all: a between-run spread this large (relative) is assumed, with few degrees of
# freedom, so only large changes are called.  Said as such in every report that uses it.
ASSUMED_SD = 0.02
ASSUMED_DF = 3.0


@dataclass(frozen=True)
class Session:
    """One `bench run` of one benchmark: the log of its median and that log's within-run variance."""
    log_median: float
    within_var: float
    values: int = 0


def session_of(runs) -> Session | None:
    """From one session's per-worker value arrays; None when it has no positive median."""
    x = np.concatenate([np.asarray(r, dtype=float) for r in runs if len(r)]) if runs else np.empty(0)
    if x.size == 0:
        return None
    med = float(np.median(x))
    lo, hi = median_ci(x)
    return session_from_summary(med, lo, hi, x.size)


def session_from_summary(median, lo, hi, n=0) -> Session | None:
    """From a stored median and its 95% CI (the dashboard's summaries)."""
    if not (median and median > 0 and math.isfinite(median)):
        return None
    lo = lo if lo and lo > 0 else median * 0.5  # a CI reaching zero: wide, not undefined
    hi = hi if hi and hi > median else median
    lo = min(lo, median)
    return Session(math.log(median), ((math.log(hi) - math.log(lo)) / (2 * Z95)) ** 2, int(n or 0))


# Heavy tails: a benchmark whose runs now and then land in another state of the machine (seen
# here: XSAVEOPT 18% slower in one run of twenty) has a between-run sd that a normal model turns
# into intervals far too short for the jump.  From this many within-group pairs of replicates on,
# their kurtosis sets the degrees of freedom of a Student t for b_j (see Moments.tail_df).
MIN_TAIL_PAIRS = 10
MIN_TAIL_DF = 3.0


@dataclass(frozen=True)
class Noise:
    """An estimate of sigma_b^2 (relative, log scale) with its degrees of freedom and where it came
    from (said in every report that uses it); `tail_df`, the degrees of freedom of the t the
    between-run shifts follow (inf: normal)."""
    var: float
    df: float
    source: str        # "replicates", "sessions", "noise record", "machine pool", "assumed"
    detail: str = ""
    tail_df: float = math.inf

    @property
    def sd(self) -> float:
        return math.sqrt(self.var)

    def describe(self) -> str:
        d = f"; {self.detail}" if self.detail else ""
        tail = f", heavy-tailed: t with {self.tail_df:.1f} df" if math.isfinite(self.tail_df) else ""
        return f"between-run sd {self.sd:.2%} ({self.source}, {self.df:.0f} df{tail}{d})"


ASSUMED = Noise(ASSUMED_SD ** 2, ASSUMED_DF, "assumed",
                "no replicates of identical code and no noise record: run `bench run` twice on one build "
                "to measure it")


@dataclass(frozen=True)
class Moments:
    """Sufficient figures of replicate groups: residual sum of squares of the medians, its degrees of
    freedom, and the sum of the sessions' within-run variances (with their count)."""
    ss: float = 0.0
    df: int = 0
    within_sum: float = 0.0
    n: int = 0
    d2: float = 0.0    # over every pair of sessions within a group: sum of squared differences
    d4: float = 0.0    # ... and of their fourth powers
    pairs: int = 0

    def __add__(self, other: "Moments") -> "Moments":
        return Moments(self.ss + other.ss, self.df + other.df, self.within_sum + other.within_sum,
                       self.n + other.n, self.d2 + other.d2, self.d4 + other.d4, self.pairs + other.pairs)

    def tail_df(self) -> float:
        """Degrees of freedom of a Student t with the replicates' kurtosis (inf: no excess, or
        too few pairs to tell).  A difference of two independent shifts has half their excess
        kurtosis, and a t with nu df has 6 / (nu - 4): nu = 4 + 6 / (2 * excess of the pairs)."""
        if self.pairs < MIN_TAIL_PAIRS or self.d2 <= 0 or self.n <= 0:
            return math.inf
        excess_pairs = self.d4 * self.pairs / (self.d2 * self.d2) - 3
        # a normal sample of n shows an excess kurtosis of about +-sqrt(24/n): only 3x that counts
        if excess_pairs <= 3 * math.sqrt(24 / self.n):
            return math.inf
        return max(4 + 6 / (2 * excess_pairs), MIN_TAIL_DF)

    def between(self) -> float | None:
        """sigma_b^2 by the method of moments (never negative); None without a degree of freedom."""
        if self.df <= 0:
            return None
        return max(self.ss / self.df - self.within_sum / max(self.n, 1), 0.0)


def moments(groups) -> Moments:
    """Groups of Sessions that measured identical code; a group of one adds nothing."""
    ss = within = d2 = d4 = 0.0
    df = n = pairs = 0
    for g in groups:
        g = [s for s in g if s is not None]
        if len(g) < 2:
            continue
        m = [s.log_median for s in g]
        k = len(m)
        mean = sum(m) / k
        s2 = sum((x - mean) ** 2 for x in m)  # plain floats: groups are small, numpy's overhead is not
        s4 = sum((x - mean) ** 4 for x in m)
        ss += s2
        df += k - 1
        within += sum(s.within_var for s in g)
        n += k
        # over the group's k(k-1)/2 pairs, from its centred power sums (a dashboard's group of
        # identical-code neighbours can hold hundreds of sessions): sum d^2 = k s2,
        # sum d^4 = k s4 + 3 s2^2
        d2, d4, pairs = d2 + k * s2, d4 + k * s4 + 3 * s2 * s2, pairs + k * (k - 1) // 2
    return Moments(ss, df, within, n, d2, d4, pairs)


def estimate(own: Moments, pool: Moments | None = None, source="replicates", detail="") -> Noise | None:
    """sigma_b^2 of one benchmark from its own replicates, shrunk towards the machine's pool over all
    benchmarks (weight PRIOR_DF) when one is given.  None when neither has a degree of freedom."""
    own_v = own.between()
    pool_v = pool.between() if pool is not None else None
    if own_v is None and pool_v is None:
        return None
    # The tails are the benchmark's own (a pool of benchmarks with different spreads would look
    # heavy-tailed by mixing them).
    if pool_v is None:
        return Noise(own_v, float(own.df), source, detail, own.tail_df())
    prior_df = min(PRIOR_DF, float(pool.df))
    if own_v is None:
        return Noise(pool_v, prior_df, "machine pool" if source == "replicates" else source,
                     detail or "no replicates of this benchmark: the machine's other benchmarks")
    var = (prior_df * pool_v + own.df * own_v) / (prior_df + own.df)
    return Noise(var, prior_df + own.df, source, detail, own.tail_df())


def pooled(*noises) -> Noise | None:
    """Independent estimates combined, weighted by their degrees of freedom; sources named together."""
    ns = [n for n in noises if n is not None]
    if not ns:
        return None
    if len(ns) == 1:
        return ns[0]
    df = sum(n.df for n in ns)
    var = sum(n.var * n.df for n in ns) / df if df else float(np.mean([n.var for n in ns]))
    return Noise(var, df, " + ".join(dict.fromkeys(n.source for n in ns)),
                 "; ".join(n.detail for n in ns if n.detail), min(n.tail_df for n in ns))


# A benchmark whose mean square is this many times the median one's stays out of a pool: one
# worker of one benchmark landing 6% off (seen here) would otherwise widen every benchmark's
# interval.  Under normal spread with three workers (2 df) one benchmark in a thousand is left out.
OUTLYING = 10.0


def _outlying_cut(own) -> float:
    """OUTLYING times the median mean square of these Moments (inf when none has a df, so that
    nothing is outlying against nothing)."""
    ms = [m.ss / m.df for m in own if m.df > 0]
    return OUTLYING * float(np.median(ms)) if ms else math.inf


def _within(m: Moments, cut: float) -> bool:
    return m.df > 0 and m.ss / m.df <= cut


def typical_pool(own, cut: float | None = None) -> Moments:
    """The pool of several benchmarks' Moments, less those whose mean square is OUTLYING times
    the median one's (their own estimate still stands for them); `cut`, that bound if known."""
    cut = _outlying_cut(own) if cut is None else cut
    return sum((m for m in own if _within(m, cut)), Moments())


def others_pool(own: list, i: int) -> Moments:
    """The pool benchmark i is shrunk towards: the typical pool of the *other* benchmarks (one
    holding benchmark i itself would count its replicates twice, and a benchmark alone, as in
    bench ab, has only its own).  An empty pool for a benchmark that is itself OUTLYING against
    the others: it stays out of their pool, and its own estimate stands for it, not one pulled
    towards theirs (tdcall_ret on the Zen 4 guest, whose runs land on levels up to 0.14% apart,
    got a between-run sd of 0.03% from five runs of its own shrunk towards quiet neighbours,
    where its runs' sd was 0.06%, and its run CIs covered another run's median in 9 of 20)."""
    others = own[:i] + own[i + 1:]
    cut = _outlying_cut(others)
    if own[i].df > 0 and not _within(own[i], cut):
        return Moments()
    return typical_pool(others, cut)


# --- one run's interval: its workers are the units --------------------------------------------

def run_intervals(benchmarks, confidence=0.95, shared=None, between=None) -> list:
    """Per benchmark of one run (a list of its workers' value arrays): a CI for the run's median
    (of the pooled values) that counts how far workers land apart, or None under two workers.
    `shared`, per benchmark: the variance of an error common to all its workers (the run's
    fitted empty loop, in the values' unit), which their spread cannot show; added.
    `between`, per benchmark: a Noise (sigma_b^2 of the same code on this machine, from other
    runs) or None; added too, so that the interval is one for what the machine measures for this
    code, not for this run alone: a shift common to the whole run (the host's state for a
    minute) moves every worker together, and only other runs show it.  Its degrees of freedom
    join the workers' by Satterthwaite.  Where sigma_b^2 was estimated as bench compare does
    (Session.within_var from pooled values), part of the workers' spread is in it as well: the
    sum errs wide, not narrow.

    Each worker process lands in a state of its own (here: medians 0.3-0.9% apart in discrete
    steps, while ten 30 ms stretches of one process agree), so the values of one worker are not
    independent of each other and a run's median varies by the spread of its few workers'
    medians.  This is the between-run model above one level down: a worker is a session, the
    between-worker variance sigma_w^2 comes from the run's own workers by the method of moments,
    shrunk towards the pool of the run's other benchmarks (PRIOR_DF, others_pool), and the log
    median's variance is (sigma_w^2 + mean within) / k with Student's t on the estimate's degrees
    of freedom.  A bootstrap over three workers, used before, has three distinct resamples of a
    group's median to go on and covered a simulated truth far less often than it claimed."""
    groups = [[session_of([w]) for w in workers] for workers in benchmarks]
    groups = [[s for s in g if s is not None] for g in groups]
    own = [moments([g]) for g in groups]
    out = []
    for i, (workers, g, m) in enumerate(zip(benchmarks, groups, own)):
        nz = estimate(m, others_pool(own, i)) if len(g) >= 2 else None
        if nz is None:
            out.append(None)
            continue
        values = np.concatenate([np.asarray(w, dtype=float) for w in workers if len(w)])
        centre = math.log(float(np.median(values)))
        var = (nz.var + sum(s.within_var for s in g) / len(g)) / len(g)
        if shared is not None and shared[i]:
            var += shared[i] / math.exp(2 * centre)  # relative, as the rest (log scale)
        df = min(nz.df, nz.tail_df)
        b = between[i] if between is not None else None
        if b is not None and b.var > 0:
            bdf = min(b.df, b.tail_df)
            df = (var + b.var) ** 2 / (var * var / df + b.var * b.var / bdf)
            var += b.var
        q = t_ppf(1 - (1 - confidence) / 2, df) * math.sqrt(var)
        out.append((math.exp(centre - q), math.exp(centre + q)))
    return out
