"""bench history over a real (tiny, generated) git repository.

Each commit of the repository carries its own fake ``bench`` package whose
``run`` writes a pyperf suite like main's ``bench run``; so the walk really
checks out, builds and runs each commit's own code.
"""
import gzip
import json
import math
import re
import subprocess
import sys
import textwrap

import pyperf
import pytest

from bench import cli
from bench.history import walk as history
from bench.results import layout as rd, store
from bench.stats.verdict import compare_runs

FAKE_MAIN = textwrap.dedent('''
    import json, os, random, subprocess, sys
    args = sys.argv[1:]
    assert args[0] == "run", args
    suite, out = args[args.index("--suite") + 1], args[args.index("-o") + 1]
    open(suite).read()
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    cost = float(open("cost.txt").read())
    # Seeded by the commit's place in the history and the runs made so far, not by its sha
    # (which changes with the commit date): every test run draws the same values.
    index = sum(1 for f in os.listdir(".") if f.startswith("f") and f.endswith(".txt"))
    os.makedirs(".cache", exist_ok=True)
    done = int(open(".cache/fake-runs").read()) if os.path.exists(".cache/fake-runs") else 0
    open(".cache/fake-runs", "w").write(str(done + 1))
    rnd = random.Random(f"{index}-{done}")
    runs = int(open("runs.txt").read()) if os.path.exists("runs.txt") else 10  # workers per commit
    benches = []
    for name, scale in (("a/emulated/vp_info", 1.0), ("b/emulated/vp_info", 2.0)):
        c = cost if name.startswith("a/") else 1e-7
        benches.append({"metadata": {"name": name}, "runs": [
            {"values": [c * scale * (1 + 0.002 * rnd.gauss(0, 1)) for _ in range(3)]} for _ in range(runs)]})
    json.dump({"version": "1.0", "benchmarks": benches, "metadata": {
        "seambench_machine": "testbox", "seambench_commit": sha, "seambench_dirty": 0,
        "seambench_tsc_hz": 2e9, "unit": "second", "python_executable": sys.executable}}, open(out, "w"))
''')

STEP_AT = 9  # index of the commit that makes a/emulated/vp_info 10% slower
BROKEN = 5   # index of a commit whose build fails
N = 14


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(r, n=N, step_at=STEP_AT, broken=BROKEN, runs=None):
    _git(r, "init", "-q", "-b", "main")
    _git(r, "config", "user.email", "t@example.com")
    _git(r, "config", "user.name", "t")
    (r / ".gitignore").write_text("/.cache/\n")
    (r / "README.md").write_text("before bench run existed\n")
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "commit 0: no bench yet")
    (r / "bench").mkdir()
    (r / "bench" / "__init__.py").write_text("")
    (r / "bench" / "__main__.py").write_text(FAKE_MAIN)
    (r / "configs").mkdir()
    (r / "configs" / "quick.yaml").write_text("suite: quick\n")
    if runs is not None:
        (r / "runs.txt").write_text(str(runs))
    for i in range(1, n):
        (r / "cost.txt").write_text(str(1.1e-7 if i >= step_at else 1e-7))
        (r / "setup.py").write_text("raise SystemExit('broken build')\n" if i == broken else
                                    "import sys\nassert sys.argv[1:] == ['build_ext', '--inplace']\n")
        (r / f"f{i}.txt").write_text(str(i))
        _git(r, "add", "-A")
        _git(r, "commit", "-qm", f"commit {i}")
    return r


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("proj"))


@pytest.fixture(scope="module")
def repo3(tmp_path_factory):
    """As configs/quick.yaml measures: 3 worker processes per commit."""
    return make_repo(tmp_path_factory.mktemp("proj3"), n=6, step_at=4, broken=None, runs=3)


def shas_of(repo):
    return history.resolve_range(repo, "HEAD~%d..HEAD" % (N - 1), include_base=True)


def test_resolve_range_forms(repo, tmp_path):
    all_ = shas_of(repo)
    assert len(all_) == N
    assert history.resolve_range(repo, "HEAD~3..") == all_[-3:]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two commits\n{all_[2]}\nHEAD~1  # a rev\n")
    assert history.resolve_range(repo, str(lst)) == [all_[2], all_[-2]]
    with pytest.raises(history.HistoryError):
        history.resolve_range(repo, "no-such-rev")


def test_walk_records_measured_and_failed_then_skips(repo, tmp_path):
    results = tmp_path / "results"
    w = history.Walker(repo, results, machine="testbox", worktree=tmp_path / "wt")
    shas = shas_of(repo)
    out = history.run_history(w, shas, progress=False)
    status = {o.sha: o for o in out}
    assert status[shas[0]].status == "failed" and status[shas[0]].phase == "run"
    assert status[shas[BROKEN]].status == "failed" and status[shas[BROKEN]].phase == "build"
    measured = [s for s in shas if status[s].status == "measured"]
    assert len(measured) == N - 2
    # The failure log says what failed and why; the walk went on past it.
    log = rd.failed_path(results, "testbox", shas[BROKEN]).read_text()
    assert "phase: build" in log and "broken build" in log
    assert str(tmp_path) not in log
    assert re.search(r"\$ <(env|python)>/bin/python\S* setup.py build_ext --inplace", log), log
    assert "does not exist in this commit" in rd.failed_path(results, "testbox", shas[0]).read_text()
    # Stored files are pyperf suites of the commit they are named after.
    suite = pyperf.BenchmarkSuite.load(str(results / "testbox" / f"{measured[0]}.json.gz"))
    assert suite.get_benchmark("a/emulated/vp_info").get_metadata()["seambench_commit"] == measured[0]
    assert sorted(rd.load_commits(results)) == sorted(shas)
    # No path of this machine in what is stored (pyperf's python_executable, say).
    stored = gzip.decompress((results / "testbox" / f"{measured[0]}.json.gz").read_bytes()).decode()
    assert sys.prefix not in stored and sys.base_prefix not in stored
    assert rd.load_commits(results)[shas[3]]["subject"] == "commit 3"
    # Second walk: nothing to do.
    again = history.run_history(w, shas, progress=False)
    assert {o.status for o in again} == {"skipped"}
    # --retry-failed measures only the failed ones again (they fail again here).
    w.retry_failed = True
    retried = history.run_history(w, shas, progress=False)
    assert sorted(o.sha for o in retried if o.status == "failed") == sorted([shas[0], shas[BROKEN]])
    w.retry_failed = False
    # --rerun stores beside, never replaces.
    w.rerun = True
    history.run_history(w, shas[-1:], progress=False)
    assert (results / "testbox" / f"{shas[-1]}.2.json.gz").exists()  # store.default_path's contract
    assert (results / "testbox" / f"{shas[-1]}.json.gz").exists()
    pooled = rd.read_commit(results, "testbox", shas[-1])
    assert len(pooled["a/emulated/vp_info"].values) == 60


def test_bisect_finds_planted_step_in_log_n_runs(repo, tmp_path):
    results = tmp_path / "results"
    w = history.Walker(repo, results, machine="testbox", worktree=tmp_path / "wt")
    shas = shas_of(repo)[1:]  # commit 0 predates bench run: no base result
    with pytest.raises(history.HistoryError, match="base commit .* has no result"):
        history.bisect(w, shas_of(repo), "a/emulated/vp_info")
    r = history.bisect(w, shas, "a/emulated/vp_info")
    step = STEP_AT - 1
    assert r.bad == shas[step] and r.good == shas[step - 1] and r.exact
    # base + end + ~log2(n) probes (+1 for stepping around the broken commit), + one more run of
    # two commits where no replicate existed yet to measure the between-run variance
    assert r.measured <= 2 + math.ceil(math.log2(len(shas))) + 1 + 2, r.measured
    assert r.measured < len(shas) - 4
    assert r.compare_cmd.startswith(f"bench compare {shas[step - 1]} {shas[step]}")
    # An unchanged benchmark: nothing to bisect.
    r2 = history.bisect(w, shas, "b/emulated/vp_info")
    assert r2.bad is None and "not slower" in r2.message


def test_cli_history_and_bisect(repo, tmp_path, capsys):
    results = tmp_path / "results"
    common = ["--repo", str(repo), "--results", str(results), "--machine", "testbox",
              "--worktree", str(tmp_path / "wt"), "--no-progress"]
    assert cli.main(["history", "HEAD~2..", *common]) == 0
    assert len(list((results / "testbox").glob("*.json.gz"))) == 2
    rc = cli.main(["history", f"HEAD~{N - 2}..HEAD", "--bisect", "a/emulated/vp_info", *common])
    out = capsys.readouterr().out
    assert rc == 0 and "first slower commit" in out and "bench compare" in out


def test_follows_the_machine_name_bench_run_writes(repo, tmp_path):
    results = tmp_path / "results"
    w = history.Walker(repo, results, machine="guessed", worktree=tmp_path / "wt")
    shas = shas_of(repo)[:3]  # commit 0 fails before any run names the machine
    history.run_history(w, shas, progress=False)
    assert w.machine == "testbox"
    assert rd.failed_path(results, "testbox", shas[0]).exists()
    assert len(rd.group_by_commit(results, "testbox")) == 2
    assert not (results / "guessed").exists()


def test_stale_worktree_cache_is_rebuilt_and_bad_checkout_stops_the_walk(repo, tmp_path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text("gitdir: /nonexistent\n")  # a cache left from a moved repository
    w = history.Walker(repo, tmp_path / "results", machine="testbox", worktree=wt)
    sha = shas_of(repo)[-1]
    assert w.measure(sha).status == "measured"
    with pytest.raises(history.HistoryError):
        w.measure("0" * 40)  # unknown commit: not recorded as the commit's failure
    assert not rd.failed_path(tmp_path / "results", "testbox", "0" * 40).exists()


def test_bisect_with_three_runs_per_commit_the_quick_suite(repo3, tmp_path):
    """3 workers a commit, as configs/quick.yaml: the bisect adds runs of both commits while a
    verdict is unknown (their spread is the between-run variance), then finds the step.  Without
    those runs it says it cannot tell, and what would decide; never "not slower"."""
    w = history.Walker(repo3, tmp_path / "results", machine="testbox", worktree=tmp_path / "wt")
    shas = history.resolve_range(repo3, "HEAD~4..HEAD", include_base=True)
    r0 = history.bisect(w, shas, "a/emulated/vp_info", extra_runs=0)
    # (+10% against an assumed 2% sd at 3 df sits at p ~ 0.05: the first or a later question is unknown)
    assert r0.undecided and not r0.exact
    assert "not slower" not in r0.message and "nothing to bisect" not in r0.message
    assert r0.message.startswith("undecided") and "--rerun" in r0.message
    assert re.search(r"\((\+9\.\d|\+10\.\d|\+0\.\d|-0\.\d)%", r0.message), r0.message
    assert "assumed" in r0.message
    r = history.bisect(w, shas, "a/emulated/vp_info")
    assert not r.undecided and r.exact and r.bad == shas[-2], r.message
    v = compare_runs(*([rd.pool_files([f], "testbox")["a/emulated/vp_info"].runs
                        for f in sorted(rd.group_by_commit(w.results, "testbox")[s], key=rd.session_order)]
                       for s in (shas[0], shas[-1])))
    assert v.kind == "slower" and v.change == pytest.approx(0.1, abs=0.01) and v.sessions[0] >= 2
    # an unchanged benchmark is decided too: "same"
    r2 = history.bisect(w, shas, "b/emulated/vp_info")
    assert not r2.undecided and "not slower" in r2.message and "verdict same" in r2.message


def _set_code_hash(results, machine, sha, bench, code):
    for path in rd.result_paths(results, machine, sha):
        doc = rd.read_doc(path)
        for b in doc["benchmarks"]:
            names = [(b.get("metadata") or {}).get("name")] + [(r.get("metadata") or {}).get("name") for r in b["runs"]]
            if bench in names:
                for r in b["runs"]:
                    r.setdefault("metadata", {})["seambench_code_hash"] = code
        path.write_bytes(store.encode(doc, path.name))


def test_bisect_knows_identical_code(repo, tmp_path):
    """Code hashes in the results: a slowdown between two commits that measured identical code
    is the machine, not a commit (nothing to bisect); with the code changing once, the bisect
    lands on that commit."""
    results = tmp_path / "results"
    w = history.Walker(repo, results, machine="testbox", worktree=tmp_path / "wt")
    shas = shas_of(repo)[1:]
    history.run_history(w, shas, progress=False)
    bench = "a/emulated/vp_info"
    for sha in shas:
        _set_code_hash(results, "testbox", sha, bench, "same0000same0000")
    r = history.bisect(w, shas, bench)
    assert r.bad is None and "measured code is identical" in r.message and "nothing to bisect" in r.message
    step = STEP_AT - 1
    for i, sha in enumerate(shas):
        _set_code_hash(results, "testbox", sha, bench, "old0000000000000" if i < step else "new0000000000000")
    r = history.bisect(w, shas, bench)
    assert r.bad == shas[step] and r.good == shas[step - 1] and r.exact
