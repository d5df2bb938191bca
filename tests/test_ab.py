"""bench ab: finds a ~2% difference between two conventions, and none between identical ones.

The pair is the README's (docs/ab-pair.yaml), declared in YAML as a user would.  `ab_slow` is
seamcall_ret answered by an emulated module that spends four units more (emul_latency 24
against 20: four dependent ADDs, four core cycles, ~2% of the call on the machines this ran on).  The test
checks that size independently rather than trusting it.  Ratios are asserted loosely; no
absolute times.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.config import Settings, load_builtin
from bench.measure import ab
from bench.measure.prepare import Context
from bench.native import machine
from bench.native.registry import Registry
from bench.stats.verdict import decide

PAIR_YAML = (Path(__file__).resolve().parent.parent / "docs" / "ab-pair.yaml").read_text()


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("ab") / "pair.yaml"
    p.write_text(PAIR_YAML)
    return p


def ab_run(pair_file, x, y):
    return ab.run_ab_processes(x, y, pairs=1200, processes=6, conventions_files=[pair_file])


def test_finds_a_two_percent_difference(pair_file):
    r = ab_run(pair_file, "ab_base", "ab_slow")
    assert r.verdict == "slower", said(r)
    # +2.1..2.6% on the Zen 4 guest; the bound is what the code can cost, not one machine's figure
    assert 1.005 < r.ratio < 1.10, said(r)
    assert r.ci95[0] > 1
    # About the four injected units, in core cycles (each pair converted by its own reference
    # chain): four dependent ADDs of the module's latency row, 3.97 on the Zen 4 guest (with the
    # countdown it replaced, 3.97-4.57, and 6.68 on a CI host whose predictor missed its exit);
    # a bound on what the code can cost, not a timing.
    extra = np.median(r.y_cycles) - np.median(r.x_cycles)
    assert 0 < extra < 4 + 20
    # Swapped, the same pair gives the reciprocal: what is measured is the conventions, not
    # which one runs first in a pair.
    back = ab_run(pair_file, "ab_slow", "ab_base")
    assert back.verdict == "faster", said(back)
    # The direction reverses; how exactly the two runs are reciprocal is a timing (on a host that
    # shares the core they meet other neighbours: 0.75% and 1.1% off seen), not asserted here.
    assert back.ratio < 1


def said(r):
    """What a failure should show (pytest cuts a dict short): the figures the verdict rests on."""
    return (f"{r.x} vs {r.y}: {r.verdict}, ratio {r.ratio:.4f}, CI {r.ci95[0]:.4f}..{r.ci95[1]:.4f}; "
            f"processes (ratio, Y loaded first, dropped) "
            f"{[(round(p['ratio'], 4), p['y_first'], p['dropped']) for p in r.processes]}; code pages {r.code_pages}")


def test_identical_conventions_show_no_significant_difference(pair_file):
    for x, y in (("ab_base", "ab_twin"), ("ab_twin", "ab_base")):
        r = ab_run(pair_file, x, y)
        assert r.verdict == "no significant difference", said(r)
        # The twin is the same code at other addresses, and where code lands moves a figure
        # (a CI host measured the twins 0.61% apart, "unknown" as it should be): the verdict is
        # the behaviour; the ratio only has to stay near 1, not within one host's noise.
        assert abs(r.ratio - 1) < 4 * r.threshold, said(r)


def test_one_process_pairs_in_process(pair_file):
    """The single-process core: pairs, exclusions and the per-call figures line up."""
    before = os.sched_getaffinity(0)
    machine.pin()
    try:
        catalog = load_builtin().with_user_file(pair_file)
        r = ab.run_ab(Context(catalog, Registry(catalog), Settings()), "ab_base", "ab_slow", pairs=200)
    finally:
        os.sched_setaffinity(0, before)
    # No claim about the ratio here: one process alone can be off by several percent (code
    # layout), which is why bench ab uses several.
    assert len(r.ratios) == len(r.x_cycles) == len(r.y_cycles)
    assert 10 <= len(r.ratios) <= 200  # fewer only if the machine disturbs pair after pair
    assert len(r.samples) == len(r.ratios) + sum(r.excluded.values())
    assert r.ratios == pytest.approx([y / x for x, y in zip(r.x_cycles, r.y_cycles)])


def test_outlier_process_rule():
    from bench.stats import summary as stats
    assert stats.outlier_groups([1.000, 0.999, 1.001, 0.925, 1.000, 0.998], 0.004) == [3]
    assert stats.outlier_groups([1.024, 1.023, 1.025, 1.024], 0.004) == []


def test_the_verdict_rule():
    assert ab.AB_WORDING[decide((1.01, 1.03), 0.005)] == "slower"
    assert ab.AB_WORDING[decide((0.97, 0.99), 0.005)] == "faster"
    assert ab.AB_WORDING[decide((0.99, 1.01), 0.005)] == "no significant difference"
    assert ab.AB_WORDING[decide((0.998, 1.004), 0.005)] == "no significant difference"


def test_cli_json(pair_file, capsys):
    assert cli.main(["ab", "-C", str(pair_file), "ab_base", "ab_twin", "--pairs", "200", "-p", "2",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"ratio", "ci95", "verdict", "x", "y", "pairs", "excluded", "processes"}
    assert doc["pairs"] == 200 and len(doc["ci95"]) == 2 and len(doc["processes"]) == 2


def test_unknown_convention_lists_the_valid_ones(capsys):
    assert cli.main(["ab", "seamcall", "seamcal"]) == 2
    err = capsys.readouterr().err
    assert "unknown convention 'seamcal'" in err and "seamcall_ret" in err


def test_workers_take_the_parents_clocks():
    """Each A/B worker converts with the clocks it is given instead of measuring them again."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "bench.measure.ab", "seamcall_ret", "lean", "--pairs", "20",
                        "--tsc-hz", "1234567890.5", "--tsc-per-core", "1.25"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["tsc_hz"] == 1234567890.5 and len(doc["ratios"]) >= 10


def test_non_positive_pairs_are_counted_apart_from_disturbed_ones(monkeypatch, catalog, registry):
    """A pair with a side at or below the empty loop is dropped too, but it is not a context
    switch, migration or page fault: it is counted (and worded) under its own reason."""
    from bench.measure import serialize
    from bench.native import _core

    serialize.choice(registry)  # measured (and cached) with the real loop, before the fake
    calls = {"n": 0}

    def fake(fns, leaves, args, n, count, perf_fd=-1, n_ev=0, ref_hundreds=0, gate_ticks=0, gate_max=0, first_sample=0):
        # slots: empty, X, Y, then the reference; every 4th pair has Y below the empty batch
        rows = []
        for i in range(count):
            calls["n"] += 1
            y = 500 if len(fns) == 3 and calls["n"] % 4 == 0 else 3000
            rows += [1000, 3000] + ([y] if len(fns) == 3 else []) + ([70 * ref_hundreds] if ref_hundreds else [])
        return rows, list(range(count)), [0] * (len(rows) * n_ev), [0] * (count if ref_hundreds else 0), [0] * count if gate_ticks else []
    monkeypatch.setattr(_core, "measure_set", fake)
    ctx = Context(catalog, registry, Settings())
    try:
        r = ab.run_ab(ctx, "seamcall_ret", "lean", pairs=30, with_ci=False)
    finally:
        if ctx.perf.fd >= 0:
            os.close(ctx.perf.fd)
    assert set(r.excluded) == {"nonpositive"} and r.excluded["nonpositive"] > 0
    assert len(r.samples) == len(r.ratios) + r.excluded["nonpositive"]
    assert r.as_dict()["excluded_by_reason"] == {"nonpositive": r.excluded["nonpositive"]}
    assert r.tsc_per_core == pytest.approx(0.7)
    from rich.console import Console
    console = Console(record=True, width=200)
    r.processes = []
    ab.print_result(console, r)
    text = console.export_text()
    assert f"pairs measured again (nonpositive {r.excluded['nonpositive']})" in text


def test_the_interval_over_processes_covers_the_truth():
    """Seeded: six processes whose ratios sit 0.3% apart by where their code landed, pairs 0.5%
    apart within one.  The CI covers the true ratio about 95% of the time, and identical code
    is called slower or faster at ab's threshold in well under 5% of A/Bs."""
    rng = np.random.default_rng(7)
    covered = alarms = 0
    trials = 300
    for _ in range(trials):
        groups = [(1 + 0.003 * rng.standard_normal()) * (1 + 0.005 * rng.standard_normal(200))
                  for _ in range(6)]
        ratio, (lo, hi) = ab.processes_interval(groups)
        covered += lo <= 1.0 <= hi
        alarms += ab.AB_WORDING[decide((lo, hi), ab.DEFAULT_THRESHOLD)] != ab.NO_DIFFERENCE
    assert 0.92 <= covered / trials <= 0.99
    assert alarms / trials < 0.02
