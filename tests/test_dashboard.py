"""bench dashboard: from a results/ tree to the site's data and regression table."""
import json
import re
import sys
from pathlib import Path

import pyperf
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import synth_history  # noqa: E402
from synth_history import make_history  # noqa: E402

from bench import cli  # noqa: E402
from bench.report import dashboard  # noqa: E402
from bench.report.compare import compare_command  # noqa: E402
from bench.results import layout as rd  # noqa: E402

STEP_BENCH = "seamcall/kmod/vp_rd"


def load_data(site: Path) -> dict:
    text = (site / "data.js").read_text()
    assert text.startswith("window.SEAMBENCH_DATA=")
    return json.loads(text[len("window.SEAMBENCH_DATA="):].rstrip().rstrip(";"))


def table_rows(site: Path):
    html = (site / "index.html").read_text()
    body = html.split('<table id="changes-table">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr class="(regression|improvement)"[^>]*data-suspect="([0-9a-f]*)"[^>]*>\s*'
                      r'<td><a[^>]*>([^<]+)</a>', body)


def test_planted_step_is_named_in_regression_table(tmp_path):
    results = tmp_path / "results"
    n, step_at = 60, 37
    shas = make_history(results, n_commits=n, n_benchmarks=24, step_at=step_at,
                        step_bench=STEP_BENCH, step=0.05, seed=7)
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    rows = table_rows(tmp_path / "site")
    # Exactly the planted change, named by the commit that made it.
    assert rows == [("regression", shas[step_at], STEP_BENCH)]
    html = (tmp_path / "site" / "index.html").read_text()
    cmd = compare_command(shas[step_at - 1], shas[step_at], STEP_BENCH)
    assert cmd.startswith(f"bench compare {shas[step_at - 1]} {shas[step_at]}") and cmd in html
    data = load_data(tmp_path / "site")
    (ch,) = data["changes"]
    assert ch["rel"] == pytest.approx(0.05, abs=0.01)
    # cycles: base level of this benchmark is its synthetic cost in cycles
    assert ch["delta"] == pytest.approx(0.05 * ch["before"], rel=0.2)


def test_points_and_order_follow_git_history_not_dates(tmp_path):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=20, n_benchmarks=3, machines=("m1", "m2"), fail_at={4, 11})
    # Make dates run backwards: the order must still follow parents.
    doc = json.loads((results / "commits.json").read_text())
    for i, s in enumerate(shas):
        doc["commits"][s]["date"] = 2_000_000_000 - i
    (results / "commits.json").write_text(json.dumps(doc))
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    data = load_data(tmp_path / "site")
    assert [c["sha"] for c in data["commits"]] == shas
    assert data["unit"] == "TSC cycles" and data["machines"] == ["m1", "m2"]  # older, TSC-only files
    for b in data["benchmarks"]:
        for m in ("m1", "m2"):
            med = b["series"][m]["med"]
            assert len(med) == 20 and sum(v is not None for v in med) == 18
            assert med[4] is None and med[11] is None
    assert data["failed"] == {"m1": [4, 11], "m2": [4, 11]}
    assert (tmp_path / "site" / "logs" / "m1" / f"{shas[4]}.log").exists()


def test_fast_reader_agrees_with_pyperf(tmp_path):
    results = tmp_path / "results"
    (sha,) = make_history(results, n_commits=1, n_benchmarks=4)
    path = results / "synth-a" / f"{sha}.json"
    ours = rd.read_result_file(path)
    suite = pyperf.BenchmarkSuite.load(str(path))
    assert sorted(ours.benchmarks) == sorted(suite.get_benchmark_names())
    for b in suite.get_benchmarks():
        mine = ours.benchmarks[b.get_name()]
        assert tuple(mine.values) == b.get_values()
        for k, v in b.get_metadata().items():
            assert mine.metadata[k] == v, k


def test_corrupt_files_are_named_and_skipped(tmp_path, capsys):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=12, n_benchmarks=2)
    d = results / "synth-a"
    (d / f"{shas[3]}.json").write_text('{"benchmarks": [ {"metadata"')            # truncated
    (d / f"{shas[5]}.json").write_text('{"hello": 1}')                             # not a suite
    doc = json.loads((d / f"{shas[7]}.json").read_text())
    doc["benchmarks"][0]["runs"][0]["values"] = ["x", "y"]                         # not numbers
    (d / f"{shas[7]}.json").write_text(json.dumps(doc))
    with pytest.raises(rd.ResultsFileError, match=shas[3]):
        rd.read_result_file(d / f"{shas[3]}.json")
    stats = dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    err = capsys.readouterr().err
    for i in (3, 5, 7):
        assert f"{shas[i]}.json" in err
    data = load_data(tmp_path / "site")
    assert stats["commits"] == 12 and len(data["benchmarks"]) == 2
    for b in data["benchmarks"]:
        med = b["series"]["synth-a"]["med"]
        assert med[3] is None and med[5] is None and med[2] is not None
    # 7 keeps its good benchmark and loses only the bad one
    assert sum(b["series"]["synth-a"]["med"][7] is None for b in data["benchmarks"]) == 1
    html = (tmp_path / "site" / "index.html").read_text()
    assert "Skipped input (3)" in html and f"{shas[5]}.json" in html
    # Nothing was deleted or rewritten.
    assert (d / f"{shas[3]}.json").read_text() == '{"benchmarks": [ {"metadata"'


def test_reruns_pool_dirty_ignored_missing_tsc_gives_ns(tmp_path):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=5, n_benchmarks=1)
    d = results / "synth-a"
    doc = json.loads((d / f"{shas[0]}.json").read_text())
    (d / f"{shas[0]}.1.json").write_text(json.dumps(doc))
    doc["benchmarks"][0]["runs"] = [{"values": [1.0]}]  # absurd: must not be used
    (d / f"{shas[0]}-dirty-1.json").write_text(json.dumps(doc))
    pooled = rd.read_commit(results, "synth-a", shas[0])
    (b,) = pooled.values()
    assert len(b.values) == 120 and max(b.values) < 1e-3
    del doc["metadata"]["seambench_tsc_hz"]
    doc["benchmarks"][0]["runs"] = [{"values": [2e-7] * 10}]
    (d / f"{shas[1]}.1.json").write_text(json.dumps(doc))
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    assert load_data(tmp_path / "site")["unit"] == "ns"


def test_site_is_offline(tmp_path):
    results = tmp_path / "results"
    make_history(results, n_commits=3, n_benchmarks=2)
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    html = (tmp_path / "site" / "index.html").read_text()
    srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert srcs and all(not s.startswith(("http:", "https:", "//")) for s in srcs), srcs
    for s in srcs:
        assert (tmp_path / "site" / s).exists(), s
    assert (tmp_path / "site" / "plotly.min.js").stat().st_size > 1_000_000


def test_topo_order_merges():
    c = {"a": {"parents": [], "date": 5}, "b": {"parents": ["a"], "date": 1},
         "c": {"parents": ["a"], "date": 2}, "d": {"parents": ["b", "c"], "date": 0}}
    assert rd.topo_order(c) == ["a", "b", "c", "d"]


def test_cli_errors(tmp_path, capsys):
    assert cli.main(["dashboard", "--results", str(tmp_path / "nope"), "-o", str(tmp_path / "s")]) == 2
    assert "no results folder" in capsys.readouterr().err


def test_flat_series_shortcut_agrees_with_the_fit():
    import random

    from bench.stats.changepoints import find_changes

    rnd = random.Random(3)
    flat = [100 * (1 + 0.002 * rnd.gauss(0, 1)) for _ in range(200)]
    assert find_changes(flat) == []
    step = flat[:120] + [v * 1.05 for v in flat[120:]]
    (c,) = find_changes(step)
    assert (c.before, c.after, c.kind) == (119, 120, "regression")
    assert c.rel == pytest.approx(0.05, abs=0.005)
    down = flat[:50] + [v * 0.9 for v in flat[50:]]
    assert [(c.after, c.kind) for c in find_changes(down)] == [(50, "improvement")]


def test_bench_cli_has_history_and_dashboard(tmp_path):
    from bench import cli

    results = tmp_path / "results"
    make_history(results, n_commits=4, n_benchmarks=2)
    out = tmp_path / "site"
    assert cli.main(["dashboard", "--results", str(results), "-o", str(out), "--repo", "none"]) == 0
    assert (out / "index.html").exists() and (out / "data.js").exists()
    args = cli.build_parser().parse_args(["history", "HEAD~3..", "--bisect", "a/b/c"])
    assert args.range == "HEAD~3.." and args.bisect == "a/b/c"


def test_summary_cache_reads_only_changed_files(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=8, n_benchmarks=2)
    cache = tmp_path / "cache" / "s.json"
    d = results / "synth-a"
    (d / f"{shas[2]}.json").write_text("not json")
    first = dashboard.load_history(results, jobs=1, cache=cache)
    calls = []
    real = dashboard.summarise_commit
    monkeypatch.setattr(dashboard, "summarise_commit", lambda ps, m: calls.append(ps) or real(ps, m))
    second = dashboard.load_history(results, jobs=1, cache=cache)
    assert calls == [] and second["summaries"] == first["summaries"]
    assert capsys.readouterr().err.count(f"{shas[2]}.json") == 2  # still warned from the cache
    # A new run of one commit changes its signature: only that commit is read again.
    doc = json.loads((d / f"{shas[5]}.json").read_text())
    (d / f"{shas[5]}.1.json").write_text(json.dumps(doc))
    third = dashboard.load_history(results, jobs=1, cache=cache)
    assert len(calls) == 1 and len(calls[0]) == 2
    key = ("synth-a", shas[5])
    assert third["summaries"][key][0]["seamcall/emulated/vp_info"][3] == 120
    cache.write_text("garbage")  # a broken cache is rebuilt, not fatal
    assert dashboard.load_history(results, jobs=1, cache=cache)["summaries"] == third["summaries"]


def test_extreme_values_do_not_break_the_build(tmp_path):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=6, n_benchmarks=1)
    d = results / "synth-a"
    for i, v in ((1, 0.0), (2, 1e300), (3, 0.0), (4, 0.0)):
        doc = json.loads((d / f"{shas[i]}.json").read_text())
        doc["benchmarks"][0]["runs"] = [{"values": [v] * 10}]
        (d / f"{shas[i]}.json").write_text(json.dumps(doc))
    stats = dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    assert stats["commits"] == 6
    load_data(tmp_path / "site")  # valid JSON (no NaN/Infinity)


def test_step_across_failed_commits_offers_a_bisect(tmp_path):
    results = tmp_path / "results"
    shas = make_history(results, n_commits=30, n_benchmarks=2, step_at=15, fail_at={14, 15},
                        step_bench="seamcall/emulated/vp_info", step=0.05)
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    (ch,) = load_data(tmp_path / "site")["changes"]
    assert (ch["from"], ch["to"], ch["suspect"]) == (shas[13], shas[16], None)
    html = (tmp_path / "site" / "index.html").read_text()
    assert f"bench history {shas[13]}..{shas[16]} --bisect seamcall/emulated/vp_info" in html


def test_a_step_after_commits_never_measured_names_no_commit(tmp_path):
    """A sparse history (a file of revs): the commit after a gap is not the step's suspect."""
    results = tmp_path / "results"
    shas = make_history(results, n_commits=30, n_benchmarks=2, step_at=15,
                        step_bench="seamcall/emulated/vp_info", step=0.05)
    log = json.loads((results / "commits.json").read_text())
    log["commits"][shas[15]]["parents"] = ["f" * 40]  # its parent, and what lay before it, not measured
    (results / "commits.json").write_text(json.dumps(log))
    dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    (ch,) = load_data(tmp_path / "site")["changes"]
    assert (ch["from"], ch["to"], ch["suspect"], ch["n_commits"]) == (shas[14], shas[15], None, None)
    html = (tmp_path / "site" / "index.html").read_text()
    assert f"bench history {shas[14]}..{shas[15]} --bisect seamcall/emulated/vp_info" in html
    assert "commits not measured between" in html


def test_compare_command_parses_with_this_cli():
    from bench import cli

    cmd = compare_command("a" * 40, "b" * 40, "seamcall/emulated/vp_info")
    args = cli.build_parser().parse_args(cmd.split()[1:])
    assert (args.a, args.b) == ("a" * 40, "b" * 40)
    assert args.benchmark == ["seamcall/emulated/vp_info"]


def test_verdict_uses_shared_compare():
    import numpy as np

    from bench.stats import verdict
    from bench.stats.noise import Noise

    rng = np.random.default_rng(5)
    a = [list(1e-7 * (1 + 0.002 * rng.standard_normal(5))) for _ in range(10)]
    b = [[v * 1.05 for v in r] for r in a]
    known = Noise(0.001 ** 2, 20, "replicates")
    shared = verdict.compare_runs([a], [b], store=known)
    assert shared.kind == "slower" and shared.change == pytest.approx(0.05, abs=0.005)
    assert verdict.compare_runs([a], [a], store=known).kind == "same"


def test_identical_code_is_pooled_and_a_step_there_is_drift(tmp_path):
    """Core-cycle results with code hashes: a +4% step of the machine at commit 6 (code the same
    everywhere) is drift, never a change; a +5% step at commit 14 that comes with new code for
    one benchmark is the one change, at that commit, marked as a change of the measured code."""
    from bench.report import dashboard
    name = synth_history.bench_names(3)[1]
    shas = synth_history.make_history(tmp_path / "results", n_commits=20, n_benchmarks=3, step_at=14,
                                      step_bench=name, step=0.05, drift_at=6, drift=0.04, noise=0.001,
                                      core=True)
    model = dashboard.build_model(dashboard.load_history(tmp_path / "results", repo=None, jobs=1))
    assert model["unit"] == "core cycles"
    assert [(c["benchmark"], c["to"], c["code_changed"]) for c in model["changes"]] == [(name, shas[14], True)]
    # every benchmark's identical code stepped by ~4% at commit 6: reported apart, with its size
    assert sorted((d["benchmark"], d["to"]) for d in model["drift"]) == sorted(
        (n, shas[6]) for n in synth_history.bench_names(3))
    assert all(0.03 < d["rel"] < 0.05 for d in model["drift"])
    series = next(b for b in model["benchmarks"] if b["name"] == name)["series"]["synth-a"]
    assert series["cc"] == [14] and series["known"]


def test_older_tsc_only_results_form_their_own_series(tmp_path):
    from bench.report import dashboard
    synth_history.make_history(tmp_path / "results", n_commits=6, n_benchmarks=2, salt="old")
    synth_history.make_history(tmp_path / "results", n_commits=4, n_benchmarks=2, salt="new", core=True)
    model = dashboard.build_model(dashboard.load_history(tmp_path / "results", repo=None, jobs=1))
    assert model["unit"] == "core cycles"
    assert set(model["benchmarks"][0]["series"]) == {"synth-a", "synth-a (TSC-only)"}


def test_reading_workers_need_no_scipy_and_agree_with_it():
    """The median interval's ranks are summed exactly here (importing scipy.stats cost every
    reading worker ~2 s); they are scipy's binom.ppf, and median_and_ci is np.median and
    median_ci from one sort."""
    import subprocess

    import numpy as np
    from scipy import stats as st

    from bench.stats import summary
    for n in list(range(1, 400)) + [997, 1000, 1600, 4801, 12000]:
        for q in (0.025, 0.005, 0.05):
            assert summary._binom_half_ppf(q, n) == int(st.binom.ppf(q, n, 0.5)), (n, q)
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 6, 7, 40, 41, 120, 160):
        x = rng.normal(150, 8, n)
        assert summary.median_and_ci(x) == (float(np.median(x)), *summary.median_ci(x))
    code = ("import sys; from bench.report import dashboard as d; d.summarise_commit([], 'm'); "
            "from bench.stats import summary as s; s.median_and_ci(list(range(160))); "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
