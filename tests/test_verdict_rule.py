"""The decision rule (bench.stats.verdict) on synthetic data: monotone, family-wise error under
A/A at most ALPHA, power under a planted shift.  Seeded; simulated at the level of session
medians (bench.stats.noise.Session), so thousands of compares take seconds."""
import math

import numpy as np
import pytest

from bench.stats import verdict as V
from bench.stats.noise import (ASSUMED, Moments, Noise, Session, estimate as noise_estimate, moments, others_pool,
                               session_of)

KINDS = (V.SLOWER, V.FASTER, V.SAME)


# --- monotonicity ----------------------------------------------------------------------------

def test_nested_intervals_keep_their_decision():
    """Every interval inside a decided interval gets the same decision (so more data, which
    shrinks the CI inside the old one, can only move "unknown" to a decision)."""
    rng = np.random.default_rng(1)
    for _ in range(20000):
        t = rng.choice([0.005, 0.01, 0.02])
        lo, hi = sorted(1 + rng.normal(0, 0.02, 2))
        outer = V.decide((lo, hi), t)
        a, b = sorted(rng.uniform(lo, hi, 2))
        inner = V.decide((a, b), t)
        if outer != V.UNKNOWN:
            assert inner == outer, ((lo, hi), (a, b), t, outer, inner)


@pytest.mark.parametrize("ratio", [0.97, 0.994, 0.9951, 0.996, 0.999, 1.0, 1.002, 1.0049, 1.005, 1.0051, 1.008,
                                   1.01, 1.03])
def test_a_ci_shrinking_around_a_fixed_ratio_never_flips(ratio):
    """The brief's statement: for a fixed ratio and a CI shrinking around it (here: more sessions
    per side, fixed noise, inside a 15-row family), the verdicts met form "unknown"* then at most
    one decided outcome, which stays."""
    noise = Noise(0.003 ** 2, 20, "test")
    others = [V.Estimate(0.0, 0.004, 30)] * 14
    seen = []
    for n in (1, 2, 3, 5, 8, 13, 20, 50, 100, 300, 1000, 10000):
        s = [Session(0.0, 0.001 ** 2)] * n
        est = V.estimate(s, [Session(math.log(ratio), 0.001 ** 2)] * n, noise)
        seen.append(V.decide_family([est] + others, 0.01)[0].verdict)
    decided = [v for v in seen if v != V.UNKNOWN]
    assert len(set(decided)) <= 1, seen
    if decided:  # once decided, decided for good
        first = seen.index(decided[0])
        assert all(v == decided[0] for v in seen[first:]), seen


def test_the_zones():
    assert V.decide((1.006, 1.02), 0.01) == V.SLOWER
    assert V.decide((0.98, 0.994), 0.01) == V.FASTER
    assert V.decide((0.996, 1.004), 0.01) == V.SAME
    # the example: [1.001, 1.006] and, with more data, [1.002, 1.004] are never two answers
    assert V.decide((1.001, 1.006), 0.01) == V.UNKNOWN and V.decide((1.002, 1.004), 0.01) == V.SAME
    assert V.decide((0.99, 1.03), 0.01) == V.UNKNOWN


# --- family-wise error and power -------------------------------------------------------------

def simulate(rng, shift=None, rows=15, n_a=1, n_b=1, sd_b=0.003, sd_w=0.001, common=0.5,
             replicates=(6, 3), threshold=0.01):
    """One simulated compare: `rows` benchmarks, n_a/n_b sessions a side, a between-run shift per
    session (a share `common` of its variance shared by every benchmark of the session, as host load
    is), sigma_b estimated from `replicates` = (groups, sessions per group) of identical code."""
    shift = shift or {}
    groups, per = replicates
    # one host-load draw per session, shared by every benchmark of that session
    shared = [rng.normal(0, sd_b * math.sqrt(common), n) for n in (n_a, n_b)]
    own_sd = math.sqrt(sd_b ** 2 * (1 - common) + sd_w ** 2)
    est = []
    for i in range(rows):
        rep = [[Session(float(x), sd_w ** 2) for x in rng.normal(0, math.hypot(sd_b, sd_w), per)]
               for _ in range(groups)]
        noise = noise_estimate(moments(rep))
        sides = []
        for n, mu, c in ((n_a, 0.0, shared[0]), (n_b, math.log1p(shift.get(i, 0.0)), shared[1])):
            sides.append([Session(mu + x + y, sd_w ** 2) for x, y in zip(rng.normal(0, own_sd, n), c)])
        est.append(V.estimate(sides[0], sides[1], noise))
    return V.decide_family(est, threshold)


def test_family_wise_false_alarms_under_aa_at_most_alpha():
    rng = np.random.default_rng(7)
    n = 2000
    alarms = sum(any(d.verdict in (V.SLOWER, V.FASTER) for d in simulate(rng)) for _ in range(n))
    # ALPHA = 5% family-wise; binomial sd of the share over 2000 compares is 0.5%
    assert alarms / n <= V.ALPHA, alarms / n


def test_without_holm_fifteen_rows_would_alarm_far_more_often():
    """What the family correction buys: per-row 95% CIs in change zones, uncorrected."""
    rng = np.random.default_rng(8)
    raw = 0
    for _ in range(500):
        rows = simulate(rng, sd_w=0.003, replicates=(20, 3))
        raw += any(V.decide(d.ci95, 0.01) in (V.SLOWER, V.FASTER) for d in rows)
    assert raw / 500 > V.ALPHA


def test_power_under_a_planted_shift():
    """A +1% change in one of 15 rows, one session a side, noise where theory gives ~98% power:
    se = sqrt(2 (0.06%^2 + 0.03%^2)) = 0.095%; (1% - 0.5%) / se = 5.3 > Holm's z at 5%/15 (2.94)
    + z_0.98 (2.05)."""
    rng = np.random.default_rng(9)
    hits, n = 0, 500
    for _ in range(n):
        d = simulate(rng, shift={3: 0.01}, sd_b=0.0006, sd_w=0.0003, replicates=(20, 4))
        hits += d[3].verdict == V.SLOWER
    assert hits / n >= 0.9, hits / n


def test_more_sessions_raise_power_and_runs_needed_says_how_many():
    rng = np.random.default_rng(10)
    one = [simulate(rng, shift={0: 0.01}, sd_b=0.002, replicates=(20, 4))[0] for _ in range(300)]
    three = [simulate(rng, shift={0: 0.01}, n_a=3, n_b=3, sd_b=0.002, replicates=(20, 4))[0] for _ in range(300)]
    p1 = np.mean([d.verdict == V.SLOWER for d in one])
    p3 = np.mean([d.verdict == V.SLOWER for d in three])
    assert p3 > p1
    unknown = [d for d in one if d.verdict == V.UNKNOWN]
    assert unknown and all(d.more_sessions is None or d.more_sessions >= 1 for d in unknown)
    assert np.median([d.more_sessions for d in unknown if d.more_sessions]) <= 10


def test_no_estimate_is_an_assumption_said_as_such():
    assert V.noise_for([Session(0, 1e-6)], [Session(0, 1e-6)]) is ASSUMED
    s = V.noise_for([Session(0, 1e-6), Session(0.002, 1e-6)], [Session(0.01, 1e-6)])
    assert s.source == "sessions" and s.df == 1


def test_between_run_variance_by_moments():
    rng = np.random.default_rng(11)
    groups = [[Session(float(x + y), 0.001 ** 2) for y in rng.normal(0, 0.001, 4)]
              for x in rng.normal(0, 1, 200) for _ in [0]]
    # the groups' own means differ (different code): only the spread within them counts
    groups = [[Session(s.log_median + rng.normal(0, 0.002), s.within_var) for s in g] for g in groups]
    est = noise_estimate(moments(groups))
    assert est.df == 600 and est.sd == pytest.approx(0.002, rel=0.1)
    assert moments([[Session(0, 0)]]) == Moments()  # a lone session tells nothing


def test_session_of_values():
    rng = np.random.default_rng(12)
    runs = [100 * (1 + rng.normal(0, 0.01, 40)) for _ in range(3)]
    s = session_of(runs)
    assert math.exp(s.log_median) == pytest.approx(100, rel=0.01)
    # the median of 120 values with 1% spread: se about 1.25 * 1% / sqrt(120) ~ 0.11%
    assert 0.0005 < math.sqrt(s.within_var) < 0.003
    assert session_of([]) is None and session_of([[0.0, 0.0]]) is None


def every_row_shrunk(own, i):
    """others_pool as it was: every row shrunk towards the others, an outlying one too."""
    from bench.stats.noise import typical_pool
    return typical_pool(own[:i] + own[i + 1:])


def simulate_jumps(rng, jump=0.18, p=0.05, replicates=20, rows=15, sd_b=0.008, sd_w=0.001, pool=others_pool):
    """A/A compares where each run of row 0 lands, with probability p, in a state `jump` slower
    (XSAVEOPT on the Zen 5 guest: 1 run in 20 at +18%); sigma_b and its tails from `replicates`
    sessions of identical code per row, each row shrunk towards `pool`, as the results store does
    (bench.results.noise.noise_from_groups)."""
    def shift(n, i):
        base = rng.normal(0, sd_b, n)
        return base + (np.log1p(jump) * (rng.random(n) < p) if i == 0 else 0)
    own = [moments([[Session(float(x), sd_w ** 2) for x in shift(replicates, i)]]) for i in range(rows)]
    est = []
    for i in range(rows):
        a, b = ([Session(float(x), sd_w ** 2)] for x in shift(2, i))
        est.append(V.estimate(a, b, noise_estimate(own[i], pool(own, i))))
    return V.decide_family(est, 0.01)


def test_rare_jumps_between_runs_widen_the_interval_instead_of_alarming(monkeypatch):
    """Two guards, each enough alone: the t of the row's own tails, and the row's own sigma_b
    not pulled towards its quiet neighbours' (others_pool leaves an outlying row to itself)."""
    from bench.stats import noise as N

    def share(pool=others_pool, n=1000):
        rng = np.random.default_rng(13)
        return sum(any(d.verdict in (V.SLOWER, V.FASTER) for d in simulate_jumps(rng, pool=pool))
                   for _ in range(n)) / n
    both, tails_only = share(), share(every_row_shrunk)
    monkeypatch.setattr(N.Moments, "tail_df", lambda self: math.inf)  # the normal model alone
    own_only, neither = share(), share(every_row_shrunk)
    assert max(both, tails_only, own_only) <= V.ALPHA, (both, tails_only, own_only)
    assert neither > V.ALPHA and tails_only < neither / 1.5, (tails_only, neither)


def test_the_tails_are_measured_not_assumed():
    rng = np.random.default_rng(14)
    normal = moments([[Session(float(x), 0.0) for x in rng.normal(0, 0.01, 40)]])
    assert normal.tail_df() == math.inf
    jumpy = moments([[Session(float(x), 0.0) for x in np.r_[rng.normal(0, 0.008, 38), 0.17, 0.16]]])
    assert 3 <= jumpy.tail_df() < 6
    assert "heavy-tailed" in noise_estimate(jumpy).describe()
    assert moments([[Session(0.0, 0.0), Session(0.5, 0.0)]]).tail_df() == math.inf  # one pair: no telling


def test_pair_sums_are_the_pairwise_sums():
    import itertools
    rng = np.random.default_rng(15)
    groups = [[Session(float(x), 0.0) for x in rng.normal(0, 0.01, k)] for k in (2, 5, 17)]
    m = moments(groups)
    d = [(a.log_median - b.log_median) ** 2 for g in groups for a, b in itertools.combinations(g, 2)]
    assert m.pairs == len(d)
    assert m.d2 == pytest.approx(sum(d), rel=1e-12) and m.d4 == pytest.approx(sum(x * x for x in d), rel=1e-12)


# --- one run's interval: workers as the units (bench run's 95% CI) ------------------------------

def _run(rng, true, benchmarks=15, workers=3, values=40, process_sd=0.003, value_sd=0.005):
    """One simulated `bench run`: each worker lands in a state of its own (process_sd, relative),
    its values scatter around it."""
    return [[true * (1 + process_sd * rng.standard_normal()) * (1 + value_sd * rng.standard_normal(values))
             for _ in range(workers)] for _ in range(benchmarks)]


def test_a_runs_interval_covers_the_truth_where_workers_land_apart():
    """Workers that land 0.3% apart, values 0.5% apart: the run's 95% CI covers the true value in
    about 95% of benchmarks, where a bootstrap over three workers covered it in far fewer."""
    from bench.stats.noise import run_intervals
    rng = np.random.default_rng(11)
    covered = total = 0
    for _ in range(150):
        for lo, hi in run_intervals(_run(rng, 100.0)):
            covered += lo <= 100.0 <= hi
            total += 1
    assert 0.92 <= covered / total <= 0.995
    boot = sum(lo <= 100.0 <= hi for lo, hi in (_bootstrap_ci(_run(rng, 100.0, benchmarks=1)[0], rng)
                                                  for _ in range(200)))
    assert boot / 200 < 0.85


def test_a_runs_interval_with_the_records_between_run_sd_covers_what_other_runs_measure():
    """Runs that each land in a state of their own (0.3%, common to all workers of a benchmark in
    the run: the host's state for a minute), workers and values as above.  The workers' interval
    alone covers the long-run value in few runs; with sigma_b^2 estimated from six earlier runs of
    the same code (as the noise record gives it, bench.results.noise.run_noise), in about 95%."""
    from bench.results.noise import noise_from_groups
    from bench.stats.noise import run_intervals, session_of
    rng = np.random.default_rng(5)

    def shifted_run():
        return [[w * shift for w in b] for b, shift in
                zip(_run(rng, 100.0, process_sd=0.001), 1 + 0.003 * rng.standard_normal(15))]
    alone = counted = total = 0
    for _ in range(40):
        earlier = [shifted_run() for _ in range(6)]
        groups = {(f"b{i}", "code:x"): [session_of(run[i]) for run in earlier] for i in range(15)}
        noise = noise_from_groups(groups, "simulated", source="noise record")
        run = shifted_run()
        with_b = run_intervals(run, between=[noise[f"b{i}"] for i in range(15)])
        for (lo, hi), (lo0, hi0) in zip(with_b, run_intervals(run)):
            counted += lo <= 100.0 <= hi
            alone += lo0 <= 100.0 <= hi0
            total += 1
    assert alone / total < 0.6
    assert 0.9 <= counted / total <= 0.995


def test_a_row_whose_runs_jump_keeps_its_own_between_run_sd(monkeypatch):
    """One row whose runs land 0.06% apart among fourteen at 0.01% (tdcall_ret among the quick
    suite's rows on the Zen 4 guest), the record holding five earlier runs: pulled towards its
    neighbours' sd, its run CI covers the long-run value in about three runs of four; left to its
    own (others_pool: it is OUTLYING against them), in more, and the quiet rows stay covered."""
    from bench.results import noise as rn
    from bench.stats import noise as N
    from bench.stats.noise import run_intervals, session_of
    rng = np.random.default_rng(2)
    sds = np.r_[0.0006, np.full(14, 0.0001)]

    def shifted_run():
        return [[w * shift for w in b] for b, shift in
                zip(_run(rng, 100.0, process_sd=0.0002, value_sd=0.001, values=200), 1 + sds * rng.standard_normal(15))]
    own = shrunk = quiet = 0
    reps = 150
    for _ in range(reps):
        earlier = [shifted_run() for _ in range(5)]
        groups = {(f"b{i}", "code:x"): [session_of(run[i]) for run in earlier] for i in range(15)}
        run = shifted_run()
        for pool in (N.others_pool, every_row_shrunk):
            monkeypatch.setattr(rn, "others_pool", pool)
            noise = rn.noise_from_groups(groups, "simulated", source="noise record")
            cis = run_intervals(run, between=[noise[f"b{i}"] for i in range(15)])
            covered = [lo <= 100.0 <= hi for lo, hi in cis]
            if pool is N.others_pool:
                own += covered[0]
                quiet += sum(covered[1:])
            else:
                shrunk += covered[0]
    assert shrunk / reps <= 0.8 and own / reps >= 0.82, (own / reps, shrunk / reps)
    assert quiet / (14 * reps) >= 0.95


def test_the_runs_between_run_sd_is_of_the_code_it_ran(monkeypatch):
    """The noise record's sessions of other code (an older loop that jumped about) widen nothing;
    a benchmark whose code the record has not seen borrows the pool of the run's others."""
    from bench.results import noise as rn
    rng = np.random.default_rng(8)

    def sessions(sd):
        return [Session(float(x), 0.0, 100) for x in rng.normal(0, sd, 6)]
    groups = {(f"b{i}", "code:new"): sessions(0.001) for i in range(5)}
    groups.update({(f"b{i}", "code:old"): sessions(0.02) for i in range(5)})
    groups[("fresh", "code:older")] = sessions(0.02)
    keys = {**{f"b{i}": "code:new" for i in range(5)}, "fresh": "code:fresh"}
    monkeypatch.setattr(rn, "read_record", lambda path, warn=None: groups)
    got = rn.run_noise("record", keys)
    assert rn.run_noise("record", {"x": "code:none"}) == {}
    assert set(got) == set(keys)
    for i in range(5):
        assert got[f"b{i}"].sd < 0.002 and got[f"b{i}"].source == "noise record"
    assert got["fresh"].sd < 0.002 and "no runs of this code" in got["fresh"].detail


def _bootstrap_ci(workers, rng, n_boot=400):
    """The interval bench run (and bench ab) used before: resample workers, then values in them."""
    arr = np.stack(workers)
    k, v = arr.shape
    pick = rng.integers(0, k, size=(n_boot, k))
    idx = rng.integers(0, v, size=(n_boot, k, v))
    boot = np.median(arr[pick[:, :, None], idx].reshape(n_boot, -1), axis=1)
    return tuple(np.quantile(boot, [0.025, 0.975]))


def test_one_outlying_worker_widens_its_own_interval_only():
    """A worker 6% off in one benchmark: that benchmark's interval is wide, the others' stay as
    narrow as in a run without it (typical_pool leaves it out of the pool)."""
    from bench.stats.noise import run_intervals
    rng = np.random.default_rng(3)
    run = _run(rng, 100.0)
    clean = run_intervals(run)
    run[0][1] = run[0][1] * 1.06
    dirty = run_intervals(run)
    width = lambda ci: ci[1] - ci[0]
    assert width(dirty[0]) > 5 * width(clean[0])
    for a, b in zip(clean[1:], dirty[1:]):
        assert width(b) == pytest.approx(width(a), rel=0.05)


def test_a_run_of_one_worker_has_no_workers_interval():
    from bench.stats.noise import run_intervals
    assert run_intervals([[np.array([1.0, 2.0, 3.0])], [np.ones(5), np.ones(5) * 1.01]])[0] is None


def test_one_jumpy_benchmark_does_not_widen_the_stores_others():
    """Results store: fifteen benchmarks whose runs sit 0.1% apart and one whose runs jump by 10%
    (a run now and then in a shared-core state).  The others' between-run sd stays near 0.1%, as
    without it; the jumpy one keeps its own; the machine pool leaves it out."""
    from bench.results.noise import noise_from_groups, pool_of
    rng = np.random.default_rng(21)

    def store(jumpy):
        g = {(f"b{i}", "code:x"): [Session(float(x), 0.0) for x in rng.normal(0, 0.001, 6)] for i in range(15)}
        if jumpy:
            g[("wild", "code:x")] = [Session(float(x), 0.0) for x in rng.normal(0, 0.1, 6)]
        return g
    clean, dirty = noise_from_groups(store(False), "here"), noise_from_groups(store(True), "here")
    for name, n in clean.items():
        assert dirty[name].sd == pytest.approx(n.sd, rel=0.5) and dirty[name].sd < 0.002
    assert dirty["wild"].sd > 0.03
    assert pool_of(store(True)).sd < 0.002
