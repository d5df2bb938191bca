"""Results on disk: pyperf's own tools read them, writes are atomic, nothing is overwritten."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pyperf
import pytest

from bench import cli
from bench.config import Settings
from bench.measure import driver
from bench.results import store

TINY = """\
suite: tiny
reference: seamcall
conventions: [seamcall, lean]
backends: [emulated]
leaves: [vp_info]
settings:
  runs: 3
  values: 5
  warmups: 1
  batch_us: 50
"""
TINY_SETTINGS = Settings(runs=3, values=5, warmups=1, batch_us=50)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One real `bench run` of a tiny suite, stored where SEAMBENCH_RESULTS points."""
    root = tmp_path_factory.mktemp("store")
    suite = root / "tiny.yaml"
    suite.write_text(TINY)
    env_before = os.environ.get("SEAMBENCH_RESULTS")
    os.environ["SEAMBENCH_RESULTS"] = str(root / "results")
    try:
        out = subprocess.run([sys.executable, "-m", "bench", "run", "--suite", str(suite), "--json"],
                             capture_output=True, text=True, timeout=300)
    finally:
        if env_before is None:
            os.environ.pop("SEAMBENCH_RESULTS")
        else:
            os.environ["SEAMBENCH_RESULTS"] = env_before
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    return root, suite, records


def test_json_records_and_file(stored):
    root, _, records = stored
    assert [r["name"] for r in records] == ["seamcall/emulated/vp_info", "lean/emulated/vp_info"]
    for r in records:
        assert r["cycles"] > 0 and r["n_values"] == 15 and r["ci95"][0] <= r["cycles"] <= r["ci95"][1]
        assert r["results_file"].startswith(str(root / "results"))
    assert records[0]["relative"] == 1.0


def test_round_trip_through_pyperf(stored):
    _, _, records = stored
    path = records[0]["results_file"]
    suite = pyperf.BenchmarkSuite.load(path)
    assert suite.get_benchmark_names() == [r["name"] for r in records]
    bench = suite.get_benchmark("seamcall/emulated/vp_info")
    value_runs = [r for r in bench.get_runs() if r.values]
    assert len(value_runs) == 3 and all(len(r.values) == 5 for r in value_runs)
    md = bench.get_metadata()
    for key in ("seambench_commit", "seambench_dirty", "seambench_machine", "seambench_tsc_hz",
                "seambench_conv_hash", "seambench_code_hash", "seambench_unit", "seambench_backend",
                "seambench_baseline_tsc_cycles",
                "seambench_hw_counters", "seambench_tsc_per_core_cycle", "seambench_kernel", "loops"):
        assert key in md, key
    # values are core cycles per call, as reported (pyperf's "integer" unit: a plain number)
    assert md["seambench_unit"] == "core_cycles" and bench.get_unit() == "integer"
    assert bench.median() == pytest.approx(records[0]["cycles"], rel=0.02)
    assert md["seambench_code_hash"] == records[0]["code_hash"]
    # the calls per batch are ours (pyperf was told one loop); the workers' address layout is said
    assert md["loops"] == records[0]["n_calls"] > 1
    from bench.native import machine
    assert {r.get_metadata()["seambench_address_layout"] for r in value_runs} == {machine.child_layout()}
    for tool in (["stats", path], ["compare_to", path, path], ["show", path]):
        p = subprocess.run([sys.executable, "-m", "pyperf", *tool], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert "seamcall/emulated/vp_info" in p.stdout


def test_second_run_sits_beside_the_first(stored, tmp_path, monkeypatch):
    root, suite, records = stored
    first = records[0]["results_file"]
    before = open(first, "rb").read()
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(root / "results"))
    assert cli.main(["run", "--suite", str(suite), "--conventions", "seamcall", "--json", "-p", "2",
                     "--values", "3"]) == 0
    files = sorted(f for f in os.listdir(os.path.dirname(first)) if f != "noise.record")
    assert len(files) == 2
    assert open(first, "rb").read() == before
    # -o onto an existing file is refused, and the file is left alone
    assert cli.main(["run", "--suite", str(suite), "--conventions", "seamcall", "-o", first]) == 2
    assert open(first, "rb").read() == before


def test_default_path_never_reuses_a_name(tmp_path):
    state = {"commit": "abc", "dirty": False}
    p1 = store.default_path(state, "m", tmp_path)
    p1.parent.mkdir(parents=True)
    p1.write_text("{}")
    p2 = store.default_path(state, "m", tmp_path)
    assert p1.name == "abc.json.gz" and p2.name == "abc.2.json.gz"
    assert store.default_path({"commit": "abc", "dirty": True}, "m", tmp_path).name == "abc-dirty-1.json.gz"


def test_the_names_store_writes_are_the_ones_resultsdir_reads(tmp_path):
    from bench.results import layout as rd
    sha = "ab" * 20
    clean = {"commit": sha, "dirty": False}
    for _ in range(11):  # <sha>.json, then .2 .. .11: session order is numeric, not lexical
        store.default_path(clean, "m", tmp_path).parent.mkdir(parents=True, exist_ok=True)
        store.default_path(clean, "m", tmp_path).write_text("{}")
    dirty = store.default_path({"commit": sha, "dirty": True}, "m", tmp_path)
    dirty.write_text("{}")
    (tmp_path / "m" / f"{sha}.failed.log").write_text("")
    (tmp_path / "m" / f"{sha}.notes.json").write_text("{}")  # not a result file name
    assert rd.classify(dirty) == (sha, True)
    assert rd.classify(tmp_path / "m" / f"{sha}.notes.json") is None
    names = [p.name for p in sorted(rd.group_by_commit(tmp_path, "m")[sha], key=rd.session_order)]
    assert names == [f"{sha}.json.gz"] + [f"{sha}.{n}.json.gz" for n in range(2, 12)]


KILLER = textwrap.dedent("""
    import os, signal, sys
    import pyperf
    from bench.results import store
    suite = pyperf.BenchmarkSuite.load(sys.argv[1])
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # the temporary is written, not yet named
    store.write_suite(suite, sys.argv[1], replace=True)
""")


def test_killed_mid_write_leaves_the_old_file_intact(stored, tmp_path):
    _, _, records = stored
    path = tmp_path / "results.json.gz"
    path.write_bytes(open(records[0]["results_file"], "rb").read())
    before = path.read_bytes()
    p = subprocess.run([sys.executable, "-c", KILLER, str(path)], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    pyperf.BenchmarkSuite.load(str(path))  # still whole
    # The killed writer's temporary is left behind, with its pid in the name; the next write
    # into the folder removes it (its writer is dead).
    stale = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(stale) == 1 and re.match(r"^\.results\.json\.gz\.[0-9]+\.\w+\.tmp$", stale[0])
    store.atomic_write(tmp_path / "other.json", "{}")
    assert sorted(os.listdir(tmp_path)) == ["other.json", "results.json.gz"]


def test_a_live_writers_temporary_is_kept(tmp_path):
    live = tmp_path / f".r.json.{os.getppid()}.abc123.tmp"  # our parent: alive
    live.write_text("half")
    store.atomic_write(tmp_path / "x.json", "{}")
    assert live.exists()


def test_failed_write_cleans_up(tmp_path, monkeypatch):
    suite = pyperf.BenchmarkSuite([pyperf.Benchmark([pyperf.Run([1e-8], metadata={"name": "x"},
                                                                collect_metadata=False)])])
    path = tmp_path / "r.json"
    path.write_text("old")

    def boom(self, *a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(pyperf.BenchmarkSuite, "dump", boom)
    with pytest.raises(OSError):
        store.write_suite(suite, path, replace=True)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_corrupt_results_file_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [')
    with pytest.raises(store.StoreError, match="bad.json: not a readable pyperf results file"):
        store.load_suite(bad)


def test_noisy_worker_rule():
    class R:
        def __init__(self, values):
            self.values = values
    quiet = [R([100.0, 100.01, 99.99, 100.0, 100.02]) for _ in range(4)]
    noisy = R([100.0, 104.0, 97.0, 101.5, 99.0])
    assert driver.noisy_runs(quiet + [noisy]) == [4]
    assert driver.noisy_runs(quiet) == []
    assert driver.noisy_runs(quiet[:2]) == []  # too few peers to judge


def test_noisy_worker_is_dropped_and_replaced(tmp_path, monkeypatch):
    """The driver's re-measure path: a worker judged noisy leaves the benchmark, is counted,
    and a fresh worker with the same loops and warm-ups takes its place."""
    from bench.native import machine
    from bench.measure.model import Spec
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    calls = []

    def judge_first_noisy(runs):
        calls.append(len(runs))
        return [0] if len(calls) == 1 else []
    monkeypatch.setattr(driver, "noisy_runs", judge_first_noisy)
    monkeypatch.setattr(driver, "contended_runs", lambda res: [])  # the machine's own contention aside
    [res] = driver.run_suite(suite, [], [Spec("seamcall", "emulated", "vp_info")], machine.clocks(), "lfence",
                             TINY_SETTINGS)
    runs = [r for r in res.bench.get_runs() if r.values]
    assert len(res.excluded_runs) == 1 and len(runs) == 3
    assert len({r.get_metadata()["seambench_worker"] for r in runs}) == 3
    assert res.excluded_runs[0][0] not in {r.get_metadata()["seambench_worker"] for r in runs}
    assert len({r.get_metadata()["loops"] for r in runs}) == 1
    assert {len(r.values) for r in runs} == {5}
    # the dropped worker's samples stay available (for --trace), beside the others'
    assert res.excluded_runs[0][0] in res.calls and len(res.calls) >= 4


def test_benchmarks_that_lost_as_many_workers_are_measured_again_by_one_manager(tmp_path, monkeypatch):
    """Re-measurement starts one pyperf manager per number of workers lost, not one per
    benchmark: a manager's start-up costs about as much as a worker's."""
    from bench.native import machine
    from bench.measure.model import Spec
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    judged, managers = [], []

    def first_noisy_once(runs):  # each benchmark's first judgement: its first worker is noisy
        judged.append(len(runs))
        return [0] if len(judged) <= 2 else []
    monkeypatch.setattr(driver, "noisy_runs", first_noisy_once)
    monkeypatch.setattr(driver, "contended_runs", lambda res: [])
    real = driver._run_manager

    def counting(cmd, *a, **k):
        managers.append(cmd[cmd.index("--sb-specs") + 1])
        return real(cmd, *a, **k)
    monkeypatch.setattr(driver, "_run_manager", counting)
    specs = [Spec("seamcall", "emulated", "vp_info"), Spec("lean", "emulated", "vp_info")]
    results = driver.run_suite(suite, [], specs, machine.clocks(), "lfence", TINY_SETTINGS)
    assert len(managers) == TINY_SETTINGS.runs + 1  # the rounds, then one for both benchmarks
    assert managers[-1] == "seamcall/emulated/vp_info,lean/emulated/vp_info"
    for res in results:
        runs = [r for r in res.bench.get_runs() if r.values]
        assert len(res.excluded_runs) == 1 and len(runs) == 3 and {len(r.values) for r in runs} == {5}


def test_workers_whose_figure_stood_on_a_shared_core_are_all_replaced(tmp_path, monkeypatch):
    """Unlike noise (judged against peers), contention can hit every worker of a benchmark:
    all of them are measured again, after the suite."""
    from bench.native import machine
    from bench.measure.model import Spec
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    rounds = []

    def contended_at_first(res):
        rounds.append(1)
        return list(range(len(driver.value_runs(res.bench)))) if len(rounds) == 1 else []
    monkeypatch.setattr(driver, "contended_runs", contended_at_first)
    monkeypatch.setattr(driver, "noisy_runs", lambda runs: [])
    [res] = driver.run_suite(suite, [], [Spec("seamcall", "emulated", "vp_info")], machine.clocks(), "lfence",
                             TINY_SETTINGS)
    runs = [r for r in res.bench.get_runs() if r.values]
    tokens = {r.get_metadata()["seambench_worker"] for r in runs}
    assert len(runs) == 3 and len(res.excluded_runs) == 3
    assert not tokens & {tok for tok, _ in res.excluded_runs}
    # a real block of a replacement: its samples are attached
    assert all(t in res.calls for t in tokens)


def test_rounds_follow_pyperf_s_own_options():
    plan = driver.Rounds.of
    assert plan(TINY_SETTINGS) == driver.Rounds(3, 5, 1)
    assert plan(TINY_SETTINGS, ["--processes", "4", "--values", "7", "--warmups", "0"]) == driver.Rounds(4, 7, 0)
    assert plan(TINY_SETTINGS, ["--rigorous"]).rounds == 6
    assert plan(Settings(runs=8, values=30, warmups=1, batch_us=50), ["--fast"]) == driver.Rounds(4, 20, 1)
    args = plan(TINY_SETTINGS, ["--rigorous", "--affinity=1", "--values", "9"]).args(["--rigorous", "--affinity=1"], 2)
    assert args == ["--affinity=1", "--processes", "2", "--values", "9", "--warmups", "1", "--loops", "1"]


def test_calls_per_batch_are_kept_per_machine(tmp_path, monkeypatch):
    from bench.measure.model import Spec
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))
    specs = [Spec("seamcall", "emulated", "vp_info"), Spec("lean", "emulated", "vp_info")]
    assert driver.kept_calls(specs, 50) == {}
    driver.keep_calls({"seamcall/emulated/vp_info": 512}, 50)
    assert driver.kept_calls(specs, 50) == {"seamcall/emulated/vp_info": 512}
    assert driver.kept_calls(specs, 100) == {}  # another batch length is another size
    (tmp_path / driver.CALLS_FILE).write_text("[not a mapping")
    assert driver.kept_calls(specs, 50) == {}  # a damaged cache is no cache


def test_a_given_size_stands_only_near_its_target(monkeypatch):
    from bench.measure import sampler as sm
    from bench.native import _core as core

    def loop(fns, leaves, args, n, count, perf_fd=-1, n_ev=0, ref_hundreds=0, gate_ticks=0, gate_max=0, first_sample=0):  # 10 ticks a call
        row = [n * 2, n * 12] + ([70 * ref_hundreds] if ref_hundreds else [])
        return row * count, list(range(count)), [], [0] * (count if ref_hundreds else 0), [0] * count if gate_ticks else []
    monkeypatch.setattr(core, "measure_set", loop)
    s = sm.Sampler([sm.Target(1, 1, None)], None).size(12_000, 1000)
    assert s.n_calls == 1000
    s = sm.Sampler([sm.Target(1, 1, None)], None).size(12_000, 40)  # a batch of 480 ticks: far off
    assert 800 <= s.n_calls <= 1200
