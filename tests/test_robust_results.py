"""Issue 13, results half: nothing measured is lost, no traceback, no tree dirtied by the tool,
results name what they measured and only comparable ones are pooled."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyperf
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bench import cli
from bench.history import walk as history
from bench.report import compare, dashboard
from bench.results import layout as rd, store, vcs
from test_compare import NAMES, synthetic_runs, write_suite

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "configs" / "quick.yaml")
TINY = ("--suite", QUICK, "--conventions", "lean", "--leaves", "vp_info", "-p", "1", "-n", "3", "-w", "0")
SHA = "a" * 40


def bench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, **kw)


def one_error_line(p):
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def tiny_suite(value=1e-7, name="x/emulated/vp_info", md=None):
    md = {"name": name, "seambench_tsc_hz": 2e9, **(md or {})}
    return pyperf.BenchmarkSuite([pyperf.Benchmark([pyperf.Run([value] * 3, metadata=md, collect_metadata=False)])])


# -- 1. unwritable destinations: said before measuring; a late failure is recovered --------------

UNDER_A_FILE = "/etc/hostname/x.json"


@pytest.mark.parametrize("dest", ["/proc/x.json", UNDER_A_FILE])
def test_unwritable_destination_is_refused_before_measuring(dest, tmp_path):
    with pytest.raises(store.StoreError, match="cannot write the results file"):
        store.check_writable(dest)
    env = {**os.environ, "SEAMBENCH_RESULTS": str(tmp_path / "results")}
    line = one_error_line(bench("run", *TINY, "-o", dest, env=env))
    assert dest in line and "cannot write" in line
    line = one_error_line(bench("run", *TINY, "--no-store", "--trace", dest, env=env))
    assert dest in line and "trace" in line
    assert not (tmp_path / "results").exists()  # nothing was measured, nothing stored


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(store.StoreError, match="Permission denied"):
        store.check_writable(ro / "r.json")


def test_dashboard_to_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "results").mkdir()
    for out in ("/proc/site", UNDER_A_FILE):
        line = one_error_line(bench("dashboard", "--results", str(tmp_path / "results"), "-o", out,
                                    "--repo", "none"))
        assert out in line and "dashboard" in line


def test_a_write_that_fails_late_is_saved_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a folder should be")
    with pytest.raises(store.RecoveredError) as e:
        store.write_suite(tiny_suite(), blocker / "r.json")
    saved = e.value.saved
    assert saved.parent == tmp_path / "state" / "seambench" / "recovered" and saved.name == "r.json"
    assert str(blocker / "r.json") in str(e.value) and str(saved) in str(e.value)
    assert rd.read_result_file(saved, any_name=True).benchmarks  # the whole suite
    with pytest.raises(store.RecoveredError) as e2:  # a second one does not replace the first
        store.write_suite(tiny_suite(), blocker / "r.json")
    assert e2.value.saved.name == "r.2.json" and saved.exists()


def test_dashboard_write_failing_late_is_saved_elsewhere(tmp_path, monkeypatch):
    from synth_history import make_history
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    results = tmp_path / "results"
    make_history(results, n_commits=3, n_benchmarks=1)
    real = dashboard.write_site
    calls = []

    def first_fails(model, out, results=None):
        calls.append(out)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied")
        return real(model, out, results)
    monkeypatch.setattr(dashboard, "write_site", first_fails)
    with pytest.raises(store.RecoveredError) as e:
        dashboard.build(results, tmp_path / "site", repo=None, jobs=1, verbose=False)
    assert e.value.saved.name == "index.html" and e.value.saved.exists() and "Permission denied" in str(e.value)


def test_bench_run_whose_final_write_fails_keeps_the_measurement(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(store, "check_writable", lambda *a, **k: None)  # as if the place broke mid-run
    assert cli.main(["run", *TINY, "-o", "/proc/x.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc/x.json" in err and "saved instead as" in err
    saved = Path(err.split("saved instead as ")[1].strip())
    assert saved.exists() and rd.read_result_file(saved, any_name=True).benchmarks


def test_a_noise_record_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch, capsys):
    """The record is derived from results files: the run's own file is kept, exit 0, and no copy
    of the record is "recovered" (a read-only checkout, as in the kernel-module guest)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SEAMBENCH_MACHINE", "testbox")
    (tmp_path / "results" / "testbox" / "noise.record").mkdir(parents=True)  # cannot be replaced
    assert cli.main(["run", *TINY]) == 0
    err = capsys.readouterr().err
    assert "cannot update the noise record" in err and "Traceback" not in err
    assert list((tmp_path / "results" / "testbox" / "explore").glob("*.json.gz"))
    assert not (tmp_path / "state").exists()


def test_a_run_with_output_leaves_the_store_alone(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("the results folder is a file: any write there would fail")
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(blocker))
    monkeypatch.setenv("SEAMBENCH_MACHINE", "testbox")
    assert cli.main(["run", *TINY, "-o", str(tmp_path / "mine.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert (tmp_path / "mine.json").exists() and blocker.read_text().startswith("the results")


# -- 2. atomic name reservation ---------------------------------------------------------------

def test_concurrent_writers_all_keep_their_results(tmp_path):
    barrier = threading.Barrier(8)
    paths, errors = [], []

    def writer(i):
        barrier.wait()
        try:
            paths.append(store.write_suite(tiny_suite(1e-7 * (i + 1)),
                                           store.candidates({"commit": SHA, "dirty": False}, "m", tmp_path)))
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(paths)) == 8
    values = sorted(rd.read_result_file(p).benchmarks["x/emulated/vp_info"].values[0] for p in paths)
    assert values == pytest.approx([1e-7 * (i + 1) for i in range(8)])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(p.name for p in paths)  # no temps


def test_two_concurrent_bench_runs_from_another_repository(tmp_path):
    """Both keep their results; run from another git repository, they carry this project's commit."""
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    env = {**os.environ, "SEAMBENCH_RESULTS": str(tmp_path / "results"), "SEAMBENCH_MACHINE": "tb"}
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "run", *TINY], cwd=other, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    state = vcs.git_state(ROOT)
    files = sorted((tmp_path / "results" / "tb" / store.EXPLORE).iterdir())  # a narrowed run: explore/
    assert len(files) == 2
    assert all(f.name.startswith(state["commit"]) for f in files)
    md = next(iter(rd.read_result_file(files[0]).benchmarks.values())).metadata
    assert md["seambench_kind"] == "explore" and md["seambench_suite"] == "quick"
    assert json.loads(md["seambench_selection"]) == {"backends": [], "conventions": ["lean"], "leaves": ["vp_info"]}
    assert json.loads(md["seambench_settings"])["pyperf"] == ["--processes", "1", "--values", "3", "--warmups", "0"]


# -- 3. the commit comes from the measured checkout ------------------------------------------

def test_commit_is_the_packages_checkout_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no repository here
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert vcs.git_state()["commit"] == head


def test_unknown_commit_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(vcs, "SOURCE_TREE", tmp_path)
    state = vcs.git_state()
    assert state["commit"] == "unknown" and str(tmp_path) in state["why"]


# -- 4. the tool's outputs do not dirty the tree -------------------------------------------

def test_results_and_site_changes_are_not_dirty(tmp_path):
    g = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)
    g("init", "-q")
    for f in ("results/commits.json", "site/index.html", "code.py"):
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_text("1")
    g("add", "-A")
    g("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    (tmp_path / "results" / "commits.json").write_text("2")
    (tmp_path / "site" / "index.html").write_text("2")
    assert vcs.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("2")
    assert vcs.git_state(tmp_path)["dirty"] is True


def test_dashboard_default_output_is_untracked():
    args = cli.build_parser().parse_args(["dashboard"])
    assert args.out is None and dashboard.DEFAULT_OUT == "build/site"
    p = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "build/site/index.html"])
    assert p.returncode == 0


# -- 5. comparable keys ------------------------------------------------------------------------

def prov(**kw):
    d = dict(suite_name="quick", selection={"conventions": []}, settings={"runs": 3}, conv_files=[],
             kind="history")
    d.update(kw)
    return {f"seambench_{k}": v for k, v in store.provenance(**d).items()}


def test_comparable_key():
    assert rd.comparable_key({}) == rd.comparable_key({"seambench_suite": "default"})  # old files
    assert rd.comparable_key(prov()) == rd.comparable_key(prov(kind="explore"))
    assert rd.comparable_key(prov()) != rd.comparable_key(prov(settings={"runs": 4}))
    assert rd.comparable_key(prov()) != rd.comparable_key(prov(selection={"conventions": ["lean"]}))
    assert rd.comparable_key(prov()) != rd.comparable_key(prov(conv_files=[("my.yaml", "ab")]))
    assert rd.comparable_key(prov()) != rd.comparable_key({"seambench_suite": "quick"})


def test_only_comparable_runs_are_pooled(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    store.write_suite(tiny_suite(1e-7, md=prov()), d / f"{SHA}.json")
    store.write_suite(tiny_suite(1e-7, md=prov()), d / f"{SHA}.2.json")
    store.write_suite(tiny_suite(9e-7, md=prov(settings={"runs": 1})), d / f"{SHA}.3.json")
    warnings = []
    pooled = rd.read_commit(tmp_path, "m", SHA, warn=warnings.append)
    assert pooled["x/emulated/vp_info"].values == [1e-7] * 6
    assert len(warnings) == 1 and f"{SHA}.3.json" in warnings[0] and "not pooled" in warnings[0]


def test_compare_refuses_files_that_measured_different_things(tmp_path, capsys):
    a = write_suite(tmp_path / "a.json", {NAMES[0]: synthetic_runs(95.3, 1)}, extra_md=prov())
    b = write_suite(tmp_path / "b.json", {NAMES[0]: synthetic_runs(95.3, 2)},
                    extra_md=prov(selection={"conventions": ["lean"]}))
    assert cli.main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.json" in err and "b.json" in err and "--force" in err
    assert cli.main(["compare", str(a), str(b), "--force", "--json"]) == 0


# -- 6. history: an environment error is not the commit's failure ----------------------------

def test_missing_build_module_stops_the_walk_without_recording(tmp_path):
    from test_history import make_repo
    (tmp_path / "proj").mkdir()
    repo = make_repo(tmp_path / "proj", n=3)
    w = history.Walker(repo, tmp_path / "results", machine="testbox", worktree=tmp_path / "wt",
                       build_cmd=f"{sys.executable} -c 'import Cython_not_here'")
    with pytest.raises(history.EnvironmentProblem, match="Cython_not_here"):
        history.run_history(w, history.resolve_range(repo, "HEAD~1..HEAD"), progress=False)
    assert not list((tmp_path / "results").glob("*/*.failed.log"))


def test_build_requirements_that_cannot_be_installed_are_the_environments(tmp_path, monkeypatch):
    from test_history import make_repo
    (tmp_path / "proj").mkdir()
    repo = make_repo(tmp_path / "proj", n=3)
    (repo / "pyproject.toml").write_text('[build-system]\nrequires = ["seambench-no-such-dist-x"]\n')
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "req"],
                   check=True)
    w = history.Walker(repo, tmp_path / "results", machine="testbox", worktree=tmp_path / "wt")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no package index in tests: pip fails at once
    with pytest.raises(history.EnvironmentProblem, match="No matching distribution"):
        w.measure(history.resolve_range(repo, "HEAD")[0])
    assert not list((tmp_path / "results").glob("*/*.failed.log"))


def test_build_requirements_are_read():
    assert "Cython>=3.0" in history.build_requirements(ROOT)
    assert history._installed(sys.executable, "pyperf")
    assert not history._installed(sys.executable, "seambench-no-such-dist-x")


# -- 7. corrupt results are named; bounded reads; bisect's log ----------------------------------

def test_history_names_a_corrupt_result_and_measures_it_again(tmp_path):
    from test_history import make_repo
    (tmp_path / "proj").mkdir()
    repo = make_repo(tmp_path / "proj", n=3)
    shas = history.resolve_range(repo, "HEAD~1..HEAD")
    (tmp_path / "results" / "testbox").mkdir(parents=True)
    (tmp_path / "results" / "testbox" / f"{shas[0]}.json").write_text("{truncated")
    logged = []
    w = history.Walker(repo, tmp_path / "results", machine="testbox", worktree=tmp_path / "wt", log=logged.append)
    outcomes = history.run_history(w, shas, progress=False)
    assert any(f"{shas[0]}.json" in m and "warning" in m for m in logged)
    assert [o.status for o in outcomes] == ["measured"]


def test_bisect_base_without_result_names_no_missing_log(tmp_path):
    from test_history import make_repo
    (tmp_path / "proj").mkdir()
    repo = make_repo(tmp_path / "proj", n=4)
    w = history.Walker(repo, tmp_path / "results", machine="testbox", worktree=tmp_path / "wt", log=lambda m: None)
    shas = history.resolve_range(repo, "HEAD~2..HEAD", include_base=True)
    with pytest.raises(history.HistoryError) as e:
        history.bisect(w, shas, "no/such/benchmark")
    assert ".failed.log" not in str(e.value) and "have no no/such/benchmark" in str(e.value)


def test_reads_are_bounded(tmp_path, monkeypatch, capsys):
    zero = tmp_path / f"{SHA}.json"
    zero.symlink_to("/dev/zero")
    with pytest.raises(rd.ResultsFileError, match="not a regular file"):
        rd.read_result_file(zero)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(rd.ResultsFileError, match="not a regular file"):
        rd.read_result_file(fifo, any_name=True)  # does not wait for a writer
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(rd.MAX_RESULT_BYTES + 1)  # sparse: costs no disk
    assert cli.main(["compare", str(huge), str(zero)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huge.json" in err and "more than a results file" in err


def test_compare_names_the_file_with_bad_values(tmp_path, capsys):
    a = write_suite(tmp_path / "a.json", {NAMES[0]: synthetic_runs(95.3, 1)})
    doc = json.loads(a.read_text())
    doc["benchmarks"][0]["runs"][1]["values"] = ["x"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert cli.main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err


# -- 8. killed writers and workers --------------------------------------------------------------

def test_killed_bench_run_takes_its_pyperf_manager_with_it(tmp_path):
    env = {**os.environ, "SEAMBENCH_RESULTS": str(tmp_path)}
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", "--suite", QUICK, "--conventions", "lean",
                          "--no-store"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manager = None
    for _ in range(600):  # until the manager is started
        kids = Path(f"/proc/{p.pid}/task/{p.pid}/children")
        pids = kids.read_text().split() if kids.exists() else []
        for pid in pids:
            try:
                if b"bench.measure.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    manager = int(pid)
            except OSError:
                pass
        if manager or p.poll() is not None:
            break
        time.sleep(0.05)
    assert manager, "the pyperf manager never started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    for _ in range(200):
        try:
            state = Path(f"/proc/{manager}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            break  # gone
        if state == "Z":
            break  # dead, waiting for init to reap it
        time.sleep(0.05)
    else:
        os.kill(manager, signal.SIGKILL)
        pytest.fail("the pyperf manager outlived bench run")


# -- 9. the dashboard and non-positive medians ------------------------------------------------------

def test_dashboard_skips_non_positive_medians(tmp_path):
    from synth_history import make_history
    results = tmp_path / "results"
    shas = make_history(results, n_commits=6, n_benchmarks=1)
    for i, v in ((2, 0.0), (3, -1e-7)):
        f = results / "synth-a" / f"{shas[i]}.json"
        doc = json.loads(f.read_text())
        for r in doc["benchmarks"][0]["runs"]:
            if r.get("values"):
                r["values"] = [v] * len(r["values"])
        f.write_text(json.dumps(doc))
    warnings = []
    hist = dashboard.load_history(results, jobs=1, warn=warnings.append)
    model = dashboard.build_model(hist, jobs=1, warn=warnings.append)
    med = model["benchmarks"][0]["series"]["synth-a"]["med"]
    order = [c["sha"] for c in model["commits"]]
    assert med[order.index(shas[2])] is None and med[order.index(shas[3])] is None
    assert sum("not positive" in w for w in warnings) == 2
    assert all(ch["before"] > 0 for ch in model["changes"])


# -- 10. fuzz: the readers raise only their own errors ---------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=20)
suiteish = st.fixed_dictionaries({"benchmarks": st.lists(st.fixed_dictionaries(
    {"metadata": st.dictionaries(st.sampled_from(["name", "seambench_tsc_hz", "seambench_selection"]), json_values)
     | json_values,
     "runs": st.lists(st.dictionaries(st.sampled_from(["values", "metadata"]), json_values), max_size=3) | json_values}),
    max_size=3) | json_values, "metadata": json_values})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(json_values, suiteish), raw=st.binary(max_size=64), use_raw=st.booleans())
def test_fuzz_readers_raise_only_their_own_errors(tmp_path, doc, raw, use_raw):
    f = tmp_path / f"{SHA}.json"
    f.write_bytes(raw if use_raw else json.dumps(doc).encode())
    try:
        rf = rd.read_result_file(f)
        rf.key  # noqa: B018 - the key is read from whatever the metadata holds
    except rd.ResultsFileError:
        pass
    try:
        side = compare.resolve(str(f), "m")
        compare.compare(side, side, force=True)
    except compare.CompareError:
        pass
