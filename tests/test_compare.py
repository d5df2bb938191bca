"""bench compare on synthetic result sets with known shifts."""
import json
import subprocess

import numpy as np
import pyperf
import pytest

from bench import cli
from bench.report import compare
from bench.stats.noise import ASSUMED, Noise
from bench.stats.verdict import Item, compare_benchmarks

TSC = 2.6e9
NAMES = ("seamcall/emulated/vp_info", "lean/emulated/vp_info", "xsave/emulated/migration")
BASE = {"seamcall/emulated/vp_info": 95.3, "lean/emulated/vp_info": 93.5, "xsave/emulated/migration": 701.6}


def synthetic_runs(median, seed, workers=10, values=40, between=0.002, within=0.001):
    """Workers differ a little from each other (layout, ASLR), values a little within a worker."""
    rng = np.random.default_rng(seed)
    return [median * (1 + rng.normal(0, between)) * (1 + rng.normal(0, within, values)) for _ in range(workers)]


def write_suite(path, runs_by_name, machine="intel-test-2cpu", conv_hash="abc", tsc=TSC, extra_md=None):
    benches = []
    for name, runs in runs_by_name.items():
        md = {"name": name, "unit": "second", "loops": 4096, "seambench_machine": machine,
              "seambench_tsc_hz": tsc, "seambench_conv_hash": conv_hash,
              "seambench_convention": name.split("/")[0], **(extra_md or {})}
        benches.append(pyperf.Benchmark([pyperf.Run([float(v) / tsc for v in r], metadata=md,
                                                    collect_metadata=False) for r in runs]))
    pyperf.BenchmarkSuite(benches).dump(str(path), replace=True)
    return path


def suite_pair(tmp_path, shift=0.0, seed=1, replicates=3, **kw):
    """A and B in the store's layout (<root>/<machine>/<sha>.json); A run `replicates` times (the
    same code hash), so the between-run variance is estimated from them."""
    folder = tmp_path / "store" / kw.get("machine", "intel-test-2cpu")
    folder.mkdir(parents=True, exist_ok=True)
    code = {"seambench_code_hash": "c0de"}
    a = None
    for k in range(replicates):
        p = write_suite(folder / (f"{'a' * 40}.json" if k == 0 else f"{'a' * 40}.{k + 1}.json"),
                        {n: synthetic_runs(BASE[n], seed + i + 1000 * k) for i, n in enumerate(NAMES)},
                        extra_md=code)
        a = a or p
    b = write_suite(folder / f"{'b' * 40}.json", {n: synthetic_runs(BASE[n] * (1 + shift), seed + 100 + i)
                                                  for i, n in enumerate(NAMES)},
                    extra_md={"seambench_code_hash": "c0de" if shift == 0 else "beef"},
                    **{k: v for k, v in kw.items() if k != "machine"}, machine=kw.get("machine", "intel-test-2cpu"))
    return a, b


def report(a, b, **kw):
    return compare.compare(compare.resolve(str(a), "x"), compare.resolve(str(b), "x"), **kw)


def test_detects_a_3_percent_slowdown(tmp_path):
    r = report(*suite_pair(tmp_path, shift=0.03))
    for row in r.rows:
        assert row.verdict == "slower", row
        assert 0.02 < row.change < 0.04
        assert row.ci95[0] > 1 and row.p_value < 0.05
        assert row.noise_source == "replicates"
    assert 1.02 < r.geomean < 1.04


def test_detects_a_3_percent_speedup(tmp_path):
    r = report(*suite_pair(tmp_path, shift=-0.03))
    assert {row.verdict for row in r.rows} == {"faster"}


def test_quiet_on_identical_data(tmp_path):
    for seed in range(5):
        r = report(*suite_pair(tmp_path / str(seed), shift=0.0, seed=seed * 7, replicates=5))
        verdicts = [row.verdict for row in r.rows]
        assert set(verdicts) <= {"same", "unknown"} and verdicts.count("same") >= 2, [x.as_dict() for x in r.rows]
        assert abs(r.geomean - 1) < 0.005


def test_unknown_says_what_it_could_detect_and_how_much_more_is_needed():
    # Three noisy workers per side, no measured between-run variance: the CI straddles the edges.
    a = synthetic_runs(100.0, 1, workers=3, values=10, between=0.02, within=0.01)
    b = synthetic_runs(100.0, 2, workers=3, values=10, between=0.02, within=0.01)
    row, = compare_benchmarks([Item("x", "cycles", [a], [b])], threshold=0.01)
    assert row.verdict == "unknown" and row.noise_source == "assumed"
    assert row.mde > 0.01 and row.mde_cycles == pytest.approx(row.mde * row.median_a)
    assert row.more_sessions is None or row.more_sessions >= 1


def test_three_workers_can_claim_a_change_once_the_between_run_variance_is_known():
    # The issue: with Mann-Whitney on 3 worker medians a side nothing could be claimed.  The rule
    # needs no test of workers: a 3% shift against a measured 0.3% between-run sd is "slower".
    a = synthetic_runs(100.0, 1, workers=3)
    b = synthetic_runs(103.0, 2, workers=3)
    row, = compare_benchmarks([Item("x", "cycles", [a], [b], store=Noise(0.003 ** 2, 30, "replicates"))])
    assert row.verdict == "slower" and row.ci95[0] > 1.005
    row, = compare_benchmarks([Item("x", "cycles", [a], [b], store=ASSUMED)])
    assert row.verdict == "unknown"  # an assumed 2% sd cannot tell 3%


def test_refuses_different_machines_unless_forced(tmp_path):
    a, b = suite_pair(tmp_path, machine="amd-other-4cpu")
    with pytest.raises(compare.CompareError, match="different machines"):
        report(a, b)
    r = report(a, b, force=True)
    assert any("different machines" in n for n in r.notes)


def test_refuses_different_convention_declarations(tmp_path):
    a, b = suite_pair(tmp_path, conv_hash="def")
    with pytest.raises(compare.CompareError, match="different convention declarations"):
        report(a, b)


def test_cli_json_markdown_and_gate(tmp_path, capsys):
    a, b = suite_pair(tmp_path, shift=0.03)
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = doc["benchmarks"][0]
    for key in ("name", "median_a", "median_b", "change", "ci95", "p_value", "verdict"):
        assert key in row
    assert row["verdict"] == "slower"
    assert cli.main(["compare", str(a), str(b), "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| benchmark | A | B | change | 95% CI | p (Holm) | verdict |" in md and "slower" in md
    assert cli.main(["compare", str(a), str(b), "--fail-on-regression", "2"]) == 1
    assert "regression" in capsys.readouterr().err
    assert cli.main(["compare", str(a), str(b), "--fail-on-regression", "5"]) == 0


def test_corrupt_or_missing_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    a, _ = suite_pair(tmp_path)
    assert cli.main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "cannot read JSON" in err and err.count("\n") == 1
    assert cli.main(["compare", str(a), "no-such-ref-or-file"]) == 2
    assert "neither a results file nor a git commit" in capsys.readouterr().err


def test_refs_resolve_to_stored_results(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True,
                                    text=True).stdout.strip()
    git("init", "-q")
    for i in range(2):
        (repo / "f").write_text(str(i))
        git("add", "f")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"c{i}")
    old, new = git("rev-parse", "HEAD~1"), git("rev-parse", "HEAD")
    folder = tmp_path / "results" / "m1"
    folder.mkdir(parents=True)
    write_suite(folder / f"{old}.json", {NAMES[0]: synthetic_runs(95.3, 1)}, machine="m1")
    # a second run of the same commit sits beside the first; both are used
    write_suite(folder / f"{old}.2.json", {NAMES[0]: synthetic_runs(95.3, 2)}, machine="m1")
    write_suite(folder / f"{new}.json", {NAMES[0]: synthetic_runs(95.3 * 1.03, 3)}, machine="m1")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(tmp_path / "results"))
    a = compare.resolve("HEAD~1", "m1")
    b = compare.resolve("HEAD", "m1")
    assert len(a.files) == 2 and sum(len(x.runs) for x in a.benchmarks(NAMES[0])) == 20
    r = compare.compare(a, b)
    assert r.rows[0].verdict == "slower"
    with pytest.raises(compare.CompareError, match="no stored results"):
        compare.resolve("HEAD", "other-machine")


def test_sessions_of_one_commit_may_differ_in_checked_metadata(tmp_path, monkeypatch):
    """Two runs of one commit days apart: another kernel (platform), another Python.  pyperf
    refuses to merge such runs into one benchmark (ValueError); resolve keeps them apart."""
    sha_a, sha_b = "a" * 40, "b" * 40
    folder = tmp_path / "results" / "m1"
    folder.mkdir(parents=True)
    write_suite(folder / f"{sha_a}.json", {NAMES[0]: synthetic_runs(95.3, 1)},
                extra_md={"platform": "Linux-6.8", "python_version": "3.12.3 (64-bit)"})
    write_suite(folder / f"{sha_a}.2.json", {NAMES[0]: synthetic_runs(95.3, 2), NAMES[1]: synthetic_runs(93.5, 4)},
                extra_md={"platform": "Linux-6.11", "python_version": "3.13.1 (64-bit)"})
    write_suite(folder / f"{sha_b}.json", {NAMES[0]: synthetic_runs(95.3, 3)})
    monkeypatch.setattr(compare, "_rev_parse", lambda ref: ref)
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(tmp_path / "results"))
    a = compare.resolve(sha_a, "m1")
    assert [f.name for f in a.files] == [f"{sha_a}.json", f"{sha_a}.2.json"] and len(a.sessions) == 2
    assert a.names() == [NAMES[0], NAMES[1]]  # a benchmark only the second session has counts too
    r = compare.compare(a, compare.resolve(sha_b, "m1"))
    assert [(row.name, row.workers_a, row.sessions_a) for row in r.rows] == [(NAMES[0], 20, 2)]
    assert r.only_a == [NAMES[1]]


def test_sessions_give_the_between_run_variance(tmp_path):
    # No true change, but each `bench run` (session) lands 2% up or down as a whole, as host
    # load does here.  Three sessions per side: their spread is the between-run variance, the
    # CI covers it, and no change is claimed.
    rng = np.random.default_rng(5)

    def session(seed):
        return synthetic_runs(100.0 * (1 + rng.normal(0, 0.02)), seed, workers=6)

    sa = [session(i) for i in range(3)]
    sb = [session(10 + i) for i in range(3)]
    row, = compare_benchmarks([Item("x", "cycles", sa, sb)])
    assert row.verdict == "unknown" and row.noise_source == "sessions" and row.noise_sd > 0.01
    assert row.sessions_a == row.sessions_b == 3 and row.more_sessions is None or row.more_sessions >= 1
    # one session a side, files outside a store and no record: the variance is assumed, and said
    a = write_suite(tmp_path / "a.json", {NAMES[0]: sa[0]})
    b = write_suite(tmp_path / "b.json", {NAMES[0]: sb[0]})
    assert any("assumed" in n for n in report(a, b).notes)


def test_compare_only_named_benchmarks(tmp_path, capsys):
    """--benchmark narrows the report (the dashboard's ready-made command uses it)."""
    a, b = suite_pair(tmp_path)
    assert cli.main(["compare", str(a), str(b), "--json", "--benchmark", NAMES[1]]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["benchmarks"]] == [NAMES[1]]
    assert cli.main(["compare", str(a), str(b), "--benchmark", "no/such/bench"]) == 2
    assert "no benchmark 'no/such/bench'" in capsys.readouterr().err


def test_says_where_the_sides_subtracted_the_empty_loop_otherwise(tmp_path):
    # A from before bench run fitted the run's empty loop (each sample's own); B with it
    a, b = suite_pair(tmp_path)
    assert not [n for n in report(a, b).notes if "empty loop" in n]
    c = write_suite(tmp_path / "c.json", {n: synthetic_runs(BASE[n], 7 + i) for i, n in enumerate(NAMES)},
                    extra_md={"seambench_code_hash": "c0de", "seambench_baseline_core_cycles": 5.9})
    notes = [n for n in report(a, c).notes if "empty loop" in n]
    assert len(notes) == 1 and "for 3 benchmark(s)" in notes[0]
