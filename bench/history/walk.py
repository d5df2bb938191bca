"""``bench history RANGE``: measure every commit of a git range, like ``asv run``.

Each commit is checked out into one cached worktree (``.cache/history/worktree``),
cleaned (``git clean -ffdx``), built in place and measured with *its own*
``python -m bench run``; the result goes to ``results/<machine>/<sha>.json.gz``.
The build uses this environment when it has the commit's build requirements
(``pyproject.toml`` ``[build-system] requires``), else a cached virtualenv beside the
worktree with them installed; a missing module or requirement is this environment's
problem, so it stops the walk instead of being recorded as the commit's failure.
A clean build per commit costs a few seconds but guarantees that no stale
extension or generated file from another commit is measured; a per-commit
virtualenv would cost far more (an install per commit) for no extra isolation,
since ``PYTHONPATH`` pointing at the worktree already makes that commit's
``bench`` package the one imported.

Commits already measured (or already recorded as failed) are skipped unless
``--rerun``. A commit that fails at any phase is recorded as
``results/<machine>/<sha>.failed.log`` (phase, exit status, full log) and the
walk goes on. ``--bisect NAME`` instead finds the first commit whose verdict
for benchmark NAME against the range's base commit is "slower", measuring
O(log n) commits.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.report.compare import compare_command
from bench.results import layout as rd, noise as rnoise, store, vcs
from bench.stats.verdict import SLOWER, UNKNOWN, compare_runs


class HistoryError(RuntimeError):
    pass


class EnvironmentProblem(HistoryError):
    """A commit could not be measured for a reason of this environment, not of the commit."""


MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


def build_requirements(tree: Path) -> list:
    """pyproject.toml's [build-system] requires of a checkout ([] without one, or unreadable)."""
    try:
        with open(tree / "pyproject.toml", "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return []
    reqs = (doc.get("build-system") or {}).get("requires") or []
    return [r for r in reqs if isinstance(r, str)]


def _installed(python: str, requirement: str) -> bool:
    """Whether `python`'s environment has a distribution satisfying `requirement` (by name and,
    where `packaging` is there to read it, version)."""
    probe = ("import sys, importlib.metadata as m\n"
             "req = sys.argv[1]\n"
             "try:\n"
             "    from packaging.requirements import Requirement\n"
             "    r = Requirement(req); name, spec = r.name, r.specifier\n"
             "except ImportError:\n"
             "    import re; name, spec = re.split(r'[<>=!~ \\[;]', req)[0], None\n"
             "try:\n"
             "    v = m.version(name)\n"
             "except m.PackageNotFoundError:\n"
             "    sys.exit(1)\n"
             "sys.exit(0 if spec is None or spec.contains(v, prereleases=True) else 1)\n")
    try:
        return subprocess.run([python, "-c", probe, requirement], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# -- git ------------------------------------------------------------------------

def git(repo, *args, input=None) -> str:
    """vcs.git_output in `repo`, its GitError (exit status, no git, a timeout) a HistoryError."""
    try:
        return vcs.git_output(repo, *args, input=input)
    except vcs.GitError as e:
        raise HistoryError(str(e)) from None


def resolve_range(repo, spec: str, first_parent: bool = True, include_base: bool = False) -> list[str]:
    """Commits of ``spec``, oldest first.

    ``spec`` is a git range (``v1..v2``, ``HEAD~20..``), a single revision, or
    a file listing one revision per line (``#`` comments allowed). With
    ``include_base`` the left end of an ``A..B`` range is included (bisect
    needs it as the reference). Merges count as one step (``--first-parent``)
    unless ``first_parent`` is false.
    """
    path = Path(spec)
    if ".." not in spec and path.is_file():
        revs = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
        return [git(repo, "rev-parse", "--verify", f"{r}^{{commit}}").strip() for r in revs if r]
    if ".." in spec:
        args = ["rev-list", "--reverse", "--topo-order"] + (["--first-parent"] if first_parent else [])
        shas = git(repo, *args, spec).split()
        if include_base:
            base = spec.split("..", 1)[0] or "HEAD"
            shas.insert(0, git(repo, "rev-parse", "--verify", f"{base}^{{commit}}").strip())
        return shas
    return [git(repo, "rev-parse", "--verify", f"{spec}^{{commit}}").strip()]


def git_commit_info(repo, shas) -> dict:
    """vcs.git_commit_info, its GitError a HistoryError."""
    try:
        return vcs.git_commit_info(repo, shas)
    except vcs.GitError as e:
        raise HistoryError(str(e)) from None


# -- one commit -------------------------------------------------------------------

@dataclass
class Outcome:
    sha: str
    status: str          # "measured", "failed", "skipped"
    path: Path | None = None
    phase: str = ""
    seconds: float = 0.0
    message: str = ""    # a failure's reason in one line, where known (the kernel importer's)


class Walker:
    """Measures commits one at a time in one cached worktree."""

    prog = "bench history"  # how messages name the command (bench.history.kernel walks otherwise)
    skip_hint = "--rerun to measure again, --retry-failed for failed ones"

    def __init__(self, repo, results="results", machine=None, suite="configs/quick.yaml",
                 worktree=None, build_cmd=None, run_cmd=None, timeout=900, rerun=False,
                 retry_failed=False, log=None):
        self.repo = Path(git(repo, "rev-parse", "--show-toplevel").strip())
        self.results = Path(results)
        # The CLI passes the name `bench run` gives this machine (bench.native.machine, which
        # this stage does not import); the host name is only a stand-in until results name it.
        self.machine = machine or platform.node() or "unknown"
        self.suite = suite
        self.wt = Path(worktree) if worktree else self.repo / ".cache" / "history" / "worktree"
        self.build_cmd = build_cmd
        self.run_cmd = run_cmd
        self.timeout = timeout
        self.rerun = rerun
        self.retry_failed = retry_failed
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._failures: list[str] = []  # shas recorded as failed under self.machine by this walker

    def compare_command(self, a: str, b: str, benchmark: str) -> str:
        """The `bench compare` line for one benchmark between two measured commits."""
        return compare_command(a, b, benchmark)

    # The state of a commit in results/.
    def is_done(self, sha: str) -> bool:
        if rd.group_by_commit(self.results, self.machine).get(sha):
            return True
        return not self.retry_failed and rd.failed_path(self.results, self.machine, sha).exists()

    def readable(self, files) -> list:
        """The files that read as results (ResultFiles); each one that does not is named."""
        out = []
        for f in files:
            try:
                out.append(rd.read_result_file(f, self.machine))
            except rd.ResultsFileError as e:
                self.log(f"bench history: warning: {e}; ignored")
        return out

    def recorded(self) -> set:
        """Every sha is_done would say yes to, from one listing of the machine's folder.  A commit
        whose every results file is unreadable is named and counts as not measured."""
        groups = rd.group_by_commit(self.results, self.machine)
        done = {sha for sha, files in groups.items() if self.readable(files)}
        d = self.results / self.machine
        if not self.retry_failed and d.is_dir():
            done |= {p.name[:-len(rd.FAILED_SUFFIX)] for p in d.iterdir() if p.name.endswith(rd.FAILED_SUFFIX)}
        return done

    def _checkout(self, sha: str, log: list) -> None:
        """Raises HistoryError: a checkout that fails is the harness's problem, not the commit's,
        so it stops the walk instead of being recorded as the commit's failure."""
        try:
            usable = (self.wt / ".git").exists() and vcs.git("rev-parse", "--git-dir", cwd=self.wt).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            usable = False
        if not usable:
            if self.wt.exists():
                shutil.rmtree(self.wt)  # a stale cache (e.g. its repository moved): start again
            self.wt.parent.mkdir(parents=True, exist_ok=True)
            git(self.repo, "worktree", "prune")
            log.append(git(self.repo, "worktree", "add", "--detach", "--force", str(self.wt), sha))
        log.append(git(self.wt, "checkout", "--detach", "--force", sha))
        log.append(git(self.wt, "clean", "-ffdx", "--quiet"))

    def _sh(self, cmd, log: list, env=None) -> int:
        log.append(f"$ {cmd if isinstance(cmd, str) else shlex.join(map(str, cmd))}\n")
        try:
            p = subprocess.run(cmd, cwd=self.wt, env=env, shell=isinstance(cmd, str), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            log.append(out + f"\n[timed out after {self.timeout} s]\n")
            return 124
        log.append(p.stdout)
        log.append(f"[exit status {p.returncode}]\n")
        return p.returncode

    def _build_cmd(self, log: list):
        if self.build_cmd:
            return self.build_cmd
        python = self._build_python(log)
        if (self.wt / "setup.py").exists():
            return [python, "setup.py", "build_ext", "--inplace"]
        if (self.wt / "pyproject.toml").exists():
            # setuptools reads ext-modules from pyproject.toml; a no-op without them
            return [python, "-c", "import setuptools; setuptools.setup()", "build_ext", "--inplace"]
        return None

    def _build_python(self, log: list) -> str:
        """The interpreter that builds this commit: this one if it has the commit's build
        requirements (pyproject.toml [build-system] requires), else a cached virtualenv beside the
        worktree (--system-site-packages, so the run still finds what the build made) with them
        installed.  `make install` builds with pip's isolation, so the project environment
        itself need not hold Cython.  A requirement that cannot be installed is the
        environment's problem: HistoryError, not the commit's failure."""
        reqs = build_requirements(self.wt)
        if all(_installed(sys.executable, r) for r in reqs):
            return sys.executable
        venv = self.wt.parent / "buildenv"
        python = venv / "bin" / "python"
        todo = reqs if not python.exists() else [r for r in reqs if not _installed(str(python), r)]
        if not todo:
            return str(python)
        log.append(f"build requirements missing here: {', '.join(todo)}; installing them into {venv}\n")
        try:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                               check=True, capture_output=True, text=True, timeout=self.timeout)
            # This environment's pip installs into the other (pip >= 22.3): no pip copied per venv.
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *todo],
                           check=True, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.CalledProcessError as e:
            said = (e.stderr or e.stdout or "").strip().splitlines()
            raise EnvironmentProblem(f"cannot install the build requirements {', '.join(todo)} into {venv}: "
                                     f"{said[-1] if said else e}; install them in this environment, or pass "
                                     f"--build-cmd") from None
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EnvironmentProblem(f"cannot install the build requirements {', '.join(todo)} into {venv}: {e}") from None
        return str(python)

    def measure(self, sha: str) -> Outcome:
        """Check out, build, run and store one commit; never raises for the commit's faults."""
        t0 = time.monotonic()
        log: list[str] = [f"commit: {sha}\nmachine: {self.machine}\n"
                          f"started: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}\n\n"]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.wt) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        tmpdir = self.wt.parent / "out"  # outside results/ so no half-written file lands there
        tmpdir.mkdir(parents=True, exist_ok=True)
        tmp = tmpdir / f"{sha}.json"
        tmp.unlink(missing_ok=True)
        self._checkout(sha, log)
        phase = "build"
        try:
            cmd = self._build_cmd(log)
            if cmd is not None and self._sh(cmd, log, env) != 0:
                missing = MISSING_MODULE.search(log[-2] if len(log) > 1 else "")
                if missing:
                    # Not the commit's fault: recording it would stick until --retry-failed.
                    raise EnvironmentProblem(f"{sha[:10]}: the build needs the module {missing.group(1)!r}, "
                                             "which this environment lacks (install it, or pass --build-cmd); "
                                             "not recorded as the commit's failure")
                return self._fail(sha, phase, log, t0)
            phase = "run"
            if self.run_cmd:
                cmd = self.run_cmd.format(suite=shlex.quote(self.suite), out=shlex.quote(str(tmp.resolve())),
                                          python=shlex.quote(sys.executable))
            else:
                if not (self.wt / self.suite).exists():
                    log.append(f"suite file {self.suite} does not exist in this commit\n")
                    return self._fail(sha, phase, log, t0)
                cmd = [sys.executable, "-m", "bench", "run", "--suite", self.suite, "-o", str(tmp.resolve())]
            if self._sh(cmd, log, env) != 0:
                return self._fail(sha, phase, log, t0)
            phase = "validate"
            rf = rd.read_result_file(tmp) if tmp.exists() else None
            if rf is None or not rf.benchmarks:
                log.append(f"the run wrote no benchmarks to {tmp.name}\n")
                return self._fail(sha, phase, log, t0)
            md = next(iter(rf.benchmarks.values())).metadata
            measured = md.get("seambench_commit")
            if measured and measured != sha:
                log.append(f"the result says it measured {measured}, not {sha}\n")
                return self._fail(sha, phase, log, t0)
            if str(md.get("seambench_dirty", 0)) not in ("0", "False", "false"):
                # The checkout was clean, so the build changed tracked files: still this
                # commit's code, but say so.
                self.log(f"bench history: warning: {sha[:10]} reports a dirty tree after its build")
            m = md.get("seambench_machine")
            if m and m != self.machine:
                self._rename_machine(str(m))
            # pyperf records e.g. python_executable: results are committed and published, so
            # the same placeholders as in logs replace this machine's paths (values untouched).
            text = tmp.read_text()
            scrubbed = self._scrub(text)
            if scrubbed != text:
                tmp.write_text(scrubbed)
                rd.read_result_file(tmp)  # still a valid suite
            # The name bench run would give a further run of this commit (store's layout), taken
            # the way it takes them: atomically, the next one if a concurrent run took it; in the
            # stored form whichever form the commit's own bench run wrote (store.write_results).
            dst = store.write_results(rd.read_doc(tmp), store.candidates({"commit": sha, "dirty": False},
                                                                         self.machine, root=self.results))
            tmp.unlink()
            # The commit's own `bench run` wrote into its worktree: the record is kept here.
            rnoise.update_record(rnoise.record_path(self.results, self.machine), dst, warn=self.log)
            rd.failed_path(self.results, self.machine, sha).unlink(missing_ok=True)
            return Outcome(sha, "measured", dst, "", time.monotonic() - t0)
        except EnvironmentProblem:
            raise
        except (HistoryError, rd.ResultsFileError, store.StoreError, OSError) as e:
            log.append(f"{e}\n")
            return self._fail(sha, phase, log, t0)

    def _scrub(self, text: str) -> str:
        """Logs are kept (and published with the site): no paths of this machine in them."""
        return store.scrub_paths(text, {str(self.wt.resolve()): "<worktree>", str(self.wt): "<worktree>",
                                  str(self.repo): "<repo>"})

    def _rename_machine(self, m: str) -> None:
        """``bench run`` names the machine differently: follow it, moving this walk's failures."""
        self.log(f"bench history: results name machine {m!r}; storing under it (not {self.machine!r})")
        for sha in self._failures:
            src, dst = rd.failed_path(self.results, self.machine, sha), rd.failed_path(self.results, m, sha)
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        try:
            (self.results / self.machine).rmdir()  # only if now empty
        except OSError:
            pass
        self.machine = m

    def _fail(self, sha: str, phase: str, log: list, t0: float) -> Outcome:
        p = rd.failed_path(self.results, self.machine, sha)
        header = f"status: failed\nphase: {phase}\n"
        store.atomic_write(p, self._scrub(header + "".join(log)))
        self._failures.append(sha)
        return Outcome(sha, "failed", p, phase, time.monotonic() - t0)


# -- the walk ------------------------------------------------------------------------

def run_history(walker: Walker, shas: list[str], progress: bool = True) -> list[Outcome]:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    store.save_commits(walker.results, git_commit_info(walker.repo, shas))
    recorded = set() if walker.rerun else walker.recorded()  # one listing, not one per commit
    todo = [s for s in shas if s not in recorded]
    outcomes = [Outcome(s, "skipped") for s in shas if s in recorded]
    if outcomes:
        walker.log(f"{walker.prog}: {len(outcomes)} of {len(shas)} commits already recorded; skipped "
                   f"({walker.skip_hint})")
    console = Console(stderr=True, highlight=False)
    with Progress(TextColumn(f"{walker.prog} {{task.description}}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  disable=not progress) as bar:
        task = bar.add_task("", total=len(todo))
        for sha in todo:
            bar.update(task, description=sha[:10])
            o = walker.measure(sha)
            outcomes.append(o)
            if o.status == "failed":
                why = f": {o.message}" if o.message else ""
                bar.console.print(f"{walker.prog}: {sha[:10]} failed at {o.phase}{why}; log: {o.path}",
                                  markup=False, highlight=False, soft_wrap=True)
            bar.advance(task)
    n_ok = sum(o.status == "measured" for o in outcomes)
    n_fail = sum(o.status == "failed" for o in outcomes)
    walker.log(f"{walker.prog}: {n_ok} measured, {n_fail} failed, {len(shas) - len(todo)} skipped; "
               f"results in {walker.results / walker.machine}")
    return outcomes


@dataclass
class BisectResult:
    benchmark: str
    good: str | None         # last commit not slower than the base
    bad: str | None          # first commit found slower
    exact: bool              # good and bad are adjacent in the range
    measured: int            # commits measured by this bisect (stored ones are reused)
    message: str
    compare_cmd: str = ""
    undecided: bool = False  # a verdict was "unknown": the data could not tell slower from not


def undecided_hint(v) -> str:
    """What would turn an "unknown" verdict into an answer, in this command's terms."""
    need = (f"about {v.more_sessions} more run{'s' * (v.more_sessions != 1)} of each commit"
            if v.more_sessions else "many more runs of each commit (the change sits near the threshold's edge)")
    return (f"to decide, measure more: {need} ({v.sessions[0]} vs {v.sessions[1]} now; {v.noise}). --rerun adds "
            f"a run to every commit the bisect looks at")


def noise_of(walker: "Walker", benchmark: str, scanned: dict, warn=None) -> tuple:
    """(store, record) estimates of the between-run variance of `benchmark` on the walker's machine
    (bench.results.noise): replicates among the stored commits, else the machine's record.
    `scanned` (path -> its sessions) carries what was read before: each file is read once."""
    for p in rd.result_paths(walker.results, walker.machine):
        if p not in scanned:
            scanned[p] = rnoise.sessions_by_code([p], walker.machine, warn=warn)
    groups: dict = {}
    for g in scanned.values():
        for k, ss in g.items():
            groups.setdefault(k, []).extend(ss)
    per = rnoise.noise_from_groups(groups, str(walker.results / walker.machine))
    pool = rnoise.pool_of(groups)
    rec, rec_pool = rnoise.record_noise(rnoise.record_path(walker.results, walker.machine), warn=warn)
    return per.get(benchmark), rec.get(benchmark) or pool or rec_pool


EXTRA_RUNS = 2  # per question: runs of both commits added while the verdict is "unknown"


def bisect(walker: Walker, shas: list[str], benchmark: str, verdict=compare_runs,
           extra_runs: int = EXTRA_RUNS) -> BisectResult:
    """First commit of ``shas`` whose ``benchmark`` is "slower" than on ``shas[0]``.

    Assumes the cost moves once (like ``git bisect``). Commits that fail or
    lack the benchmark are stepped around; if all commits between the bounds
    fail, the smallest range found is reported.  A verdict of "unknown" (the
    data cannot tell) first adds a run of both commits (up to ``extra_runs`` times: the
    between-run variance is then measured from these replicates, so one run per commit of the
    quick suite is enough to start), then stops the bisect as undecided, with what to measure.
    Each results file of a commit is a session, as for ``bench compare``; commits whose
    benchmark ran identical code (the same code hash) pool their sessions.
    """
    measured = 0
    cache: dict[str, list | None] = {}
    looked: set = set()  # commits measured (or found measured) by this bisect
    codes: dict[str, set] = {}  # sha -> the code hashes its results record for the benchmark
    scanned: dict = {}         # results file -> its sessions (noise_of)

    def same_code(i: int, j: int) -> str | None:
        """The code hash when commits i and j measured the same machine code, else None."""
        a, b = codes.get(shas[i], set()), codes.get(shas[j], set())
        return next(iter(a)) if len(a) == 1 and a == b else None

    def sessions(i: int):
        """The benchmark's runs per results file of commit i (None: no result)."""
        nonlocal measured
        sha = shas[i]
        if sha not in cache:
            first = sha not in looked
            looked.add(sha)
            if first and (walker.rerun or not walker.is_done(sha)):
                walker.log(f"{walker.prog} --bisect: measuring {sha[:10]} ({i + 1}/{len(shas)})")
                walker.measure(sha)
                measured += 1
            files = sorted(rd.group_by_commit(walker.results, walker.machine).get(sha, []), key=rd.session_order)
            found = []
            # Sessions that measured the same thing only (pool_files' rule: the largest group).
            readable = walker.readable(files)
            groups = rd.comparable_groups(readable)
            for other in groups[1:]:
                walker.log(f"{walker.prog}: warning: {', '.join(str(rf.path) for rf in other)}: measured "
                           f"{rd.describe_key(other[0].key)}; not pooled with {sha[:10]}'s other runs")
            for rf in groups[0] if groups else ():
                br = rf.benchmarks.get(benchmark)
                if br and br.runs:
                    found.append([list(r) for r in br.runs])
                    code = br.metadata.get("seambench_code_hash")
                    codes.setdefault(sha, set()).add(code if code and code != "unknown" else None)
            cache[sha] = found or None
        return cache[sha]

    def side(i: int):
        """Commit i's sessions and those of every commit looked at whose measured code is identical
        (the same code hash): replicates of one experiment, so each side of a question gets the
        data of its whole stretch of history, not one commit's."""
        own = sessions(i)
        if not same_code(i, i):
            return own
        return [s for j, sha in enumerate(shas) if cache.get(sha) and same_code(i, j) for s in cache[sha]]

    def judge(i: int):
        nonlocal measured
        for extra in range(extra_runs + 1):
            # Recomputed per question: each commit the bisect measures may add replicates.
            st, rec = noise_of(walker, benchmark, scanned, warn=walker.log)
            v = verdict(side(0), side(i), store=st, record=rec)
            if v.kind != UNKNOWN or extra == extra_runs or v.more_sessions is None:
                return v
            for j in (0, i):
                walker.log(f"{walker.prog} --bisect: undecided ({v.change:+.1%}); another run of {shas[j][:10]}")
                walker.measure(shas[j])
                measured += 1
                cache.pop(shas[j], None)
        return v

    def done(good, bad, msg, undecided=False):
        cmd = walker.compare_command(shas[good], shas[bad], benchmark) if bad is not None else ""
        return BisectResult(benchmark, shas[good], shas[bad] if bad is not None else None,
                            bad is not None and bad - good == 1 and not undecided, measured, msg, cmd,
                            undecided)

    def figures(v):
        p = "" if v.p_value is None else f", p = {v.p_value:.3g}"
        return f"{v.change:+.1%}, 95% CI {v.lo:+.1%} .. {v.hi:+.1%}{p}"

    store.save_commits(walker.results, git_commit_info(walker.repo, shas))
    if len(shas) < 2:
        raise HistoryError("--bisect needs a range of at least two commits")
    ref = sessions(0)
    if ref is None:
        log = rd.failed_path(walker.results, walker.machine, shas[0])
        files = rd.group_by_commit(walker.results, walker.machine).get(shas[0])
        why = (f"it failed; see {log}" if log.exists() else
               f"its results ({', '.join(str(f) for f in files)}) have no {benchmark}" if files else
               f"no results file in {walker.results / walker.machine}")
        raise HistoryError(f"--bisect: the base commit {shas[0][:10]} has no result for {benchmark}: {why}")
    last = len(shas) - 1
    while last > 0 and sessions(last) is None:
        last -= 1
    if last == 0:
        raise HistoryError(f"--bisect: no commit after the base has a result for {benchmark}")
    if same_code(0, last):
        # Pooled, both sides would be the same runs: the two ends' own runs say what moved.
        st, rec = noise_of(walker, benchmark, scanned, warn=walker.log)
        v = verdict(sessions(0), sessions(last), store=st, record=rec)
        return done(last, None, f"{benchmark}: the measured code is identical at {shas[0][:10]} and {shas[last][:10]} "
                                f"(code hash {same_code(0, last)}): a difference between them ({figures(v)}) is "
                                "the machine between the runs, not a commit; nothing to bisect")
    v = judge(last)
    if v.kind == UNKNOWN:
        return done(0, None, f"undecided: the data cannot tell whether {benchmark} is slower at "
                             f"{shas[last][:10]} than at {shas[0][:10]} ({figures(v)}, verdict unknown); "
                             f"{undecided_hint(v)}", undecided=True)
    if v.kind != SLOWER:
        return done(last, None, f"{benchmark} is not slower at {shas[last][:10]} than at {shas[0][:10]} "
                                f"({v.change:+.1%}, verdict {v.kind}); nothing to bisect")
    good, bad = 0, last
    while bad - good > 1:
        mid = (good + bad) // 2
        # Step around commits without a result, nearest to the middle first.
        order = sorted(range(good + 1, bad), key=lambda i: (abs(i - mid), i))
        probe = next((i for i in order if sessions(i) is not None), None)
        if probe is None:
            break
        # Code identical to one end is that end's code: no commit in between changed it.
        if same_code(probe, good):
            good = probe
            continue
        if same_code(probe, bad):
            bad = probe
            continue
        v = judge(probe)
        if v.kind == UNKNOWN:
            return done(good, bad, f"undecided: {benchmark} turned slower between {shas[good][:10]} and "
                                   f"{shas[bad][:10]}, but the data cannot tell whether {shas[probe][:10]} "
                                   f"is ({figures(v)}, verdict unknown); {undecided_hint(v)}", undecided=True)
        if v.kind == SLOWER:
            bad = probe
        else:
            good = probe
    if bad - good == 1:
        msg = f"first slower commit for {benchmark}: {shas[bad]}"
    else:
        msg = (f"{benchmark} turned slower between {shas[good][:10]} and {shas[bad][:10]}; "
               f"the {bad - good - 1} commits between have no result")
    return done(good, bad, msg)
