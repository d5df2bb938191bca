"""``bench kernel history PATH A..B``: a kernel tree's own TDX call functions, commit by commit.

The commits are those of ``git log A..B`` that touch what the importer reads (the TDX call
assembly, the headers its structs and prototypes come from, asm-offsets.c), plus A as the base.
Each is imported (bench.gen.kernel, at that commit) and measured with *this* seambench build by
`bench run`'s own code (the CLI passes the measuring function in: this stage needs no build).
Functions keep one name over the range, ``kernel:<symbol>`` (the kernel's version, which changes
over a range, is in the metadata), so each benchmark ``kernel:<symbol>/<backend>/<leaf>`` is one
series across commits.

Layout: a kernel tree's results folder is a results folder of the store's own layout, so every
reader of results (bench.results, the noise estimates, ``bench history``'s bisect, ``bench
dashboard --results results/kernel/<tree-id>``) works on it unchanged::

    results/kernel/<tree-id>/<machine>/<sha>.json.gz      one measurement of kernel commit <sha>
    results/kernel/<tree-id>/<machine>/<sha>.<n>.json.gz  a further one (never overwritten)
    results/kernel/<tree-id>/<machine>/<sha>.failed.log   the import or the run failed: its message
    results/kernel/<tree-id>/<machine>/noise.record       this tree's noise record (untracked)
    results/kernel/<tree-id>/commits.json                 the kernel commits' subjects, dates, parents

``<tree-id>`` is the first 12 hex digits of the root commit of B's first-parent history, so
every clone of one kernel history shares its results.  Every benchmark's metadata has
``seambench_kernel_commit``, ``_kernel_version``, ``_kernel_tree`` and ``_kernel_request`` (what
was asked: suite, backends, leaves, functions, pyperf options); ``seambench_commit`` is the
seambench build that measured it.  A commit measured for the same request is not measured again
(``--rerun`` adds a session); a failure is retried once the seambench build or the request
changed.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.gen.kernel import ASM_OFFSETS, HEADERS, TDX_DIRS
from bench.history.walk import HistoryError, Outcome, git, noise_of
from bench.results import layout as rd, noise as rnoise, store, vcs
from bench.stats.summary import median_ci
from bench.stats.verdict import DEFAULT_THRESHOLD, Item, compare_benchmarks

PREFIX = "kernel"  # the conventions' name at every commit: kernel:<symbol>
TRACKED = TDX_DIRS + HEADERS + (ASM_OFFSETS,)  # what the importer reads (the Makefile only for the version)


class CommitFailed(HistoryError):
    """A kernel commit could not be imported or measured; `phase` is "import" or "measure".  Raised
    by the measuring function, recorded by KernelWalker.measure (the walk goes on)."""

    def __init__(self, phase: str, message: str):
        super().__init__(message)
        self.phase, self.message = phase, message


def one_line(message: str) -> str:
    """A multi-line reason (the assembler's output under the importer's line) in one line: the
    first and the last line."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


# -- the range -------------------------------------------------------------------------

def checkout(path) -> Path:
    """The top of the git checkout at `path`; HistoryError if it is none."""
    p = Path(path)
    if not p.is_dir():
        raise HistoryError(f"{path}: {'not a folder' if p.exists() else 'no such folder'} (PATH must be a "
                           "kernel git checkout)")
    try:
        top = vcs.git("rev-parse", "--show-toplevel", cwd=p)
    except OSError as e:
        raise HistoryError(f"git cannot be run ({e})") from None
    if top.returncode != 0:
        raise HistoryError(f"{path}: not a git checkout (a kernel history needs one; `bench kernel import` "
                           "reads a plain tree or tarball)")
    return Path(top.stdout.strip())


def kernel_range(repo: Path, spec: str) -> tuple:
    """(base, [commits of A..B touching TRACKED, oldest first]) for `spec` = A..B."""
    a, sep, b = spec.partition("..")
    if not sep or not a or b.startswith(".") or ".." in b:
        raise HistoryError(f"range {spec!r}: expected A..B (A: the base commit, B: the last; B may be left "
                           "out for HEAD)")
    ends = []
    for rev in (a, b or "HEAD"):
        p = vcs.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo)
        if p.returncode != 0 or not p.stdout.strip():
            raise HistoryError(f"range {spec!r}: {rev!r} is not a commit of {repo}")
        ends.append(p.stdout.strip())
    shas = git(repo, "log", "--reverse", "--topo-order", "--format=%H", f"{ends[0]}..{ends[1]}", "--",
               *TRACKED).split()
    if not shas:
        raise HistoryError(f"range {spec!r}: no commit in it touches the TDX call code ({', '.join(TRACKED)})")
    return ends[0], shas


def tree_id(repo: Path, rev: str) -> str:
    """The first 12 hex digits of the root of `rev`'s first-parent history."""
    roots = git(repo, "rev-list", "--first-parent", "--max-parents=0", rev).split()
    return roots[-1][:12]


# -- one commit ------------------------------------------------------------------------

class KernelWalker:
    """The kernel commits of one tree, measured into results/kernel/<tree-id>/<machine>/.  Speaks
    bench.history.walk's walker protocol (run_history, bisect, noise_of)."""

    prog = "bench kernel history"
    skip_hint = "--rerun to measure again; a failure is tried again by another seambench build"

    def __init__(self, repo, results, machine: str, tree: str, request: str, build: str, measure,
                 rerun=False, log=None):
        self.repo = Path(repo)
        self.tree = tree
        self.results = Path(results) / rd.KERNEL_DIR / tree
        self.machine = machine
        self.request = request      # canonical JSON: what this walk asks for
        self.build = build          # the seambench commit measuring
        self._measure = measure     # (sha, candidate paths, metadata) -> the results file, or CommitFailed
        self.rerun = rerun
        self.retry_failed = False
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    @property
    def folder(self) -> Path:
        return self.results / self.machine

    def compare_command(self, a: str, b: str, benchmark: str) -> str:
        groups = rd.group_by_commit(self.results, self.machine)
        fa, fb = (sorted(groups.get(s, []), key=rd.session_order) for s in (a, b))
        if not (fa and fb):
            return ""
        # Two kernels' files differ in their conventions file and declaration: --force says so.
        return f"bench compare {fa[0]} {fb[0]} --benchmark {benchmark} --force"

    def readable(self, files) -> list:
        """The files that read as results and answer this walk's request (others are another
        selection's: never pooled with it)."""
        out = []
        for f in files:
            try:
                rf = rd.read_result_file(f, self.machine)
            except rd.ResultsFileError as e:
                self.log(f"{self.prog}: warning: {e}; ignored")
                continue
            if any(br.metadata.get("seambench_kernel_request") == self.request for br in rf.benchmarks.values()):
                out.append(rf)
        return out

    def _failed_here(self, sha: str) -> bool:
        """A failure recorded for this request by this seambench build (another build may do better)."""
        p = rd.failed_path(self.results, self.machine, sha)
        try:
            head = p.read_text(errors="replace").split("\n\n", 1)[0].splitlines()
        except OSError:
            return False
        return f"request: {self.request}" in head and f"seambench: {self.build}" in head

    def is_done(self, sha: str) -> bool:
        files = rd.group_by_commit(self.results, self.machine).get(sha, [])
        return bool(self.readable(files)) or self._failed_here(sha)

    def recorded(self) -> set:
        groups = rd.group_by_commit(self.results, self.machine)
        done = {sha for sha, files in groups.items() if self.readable(files)}
        if self.folder.is_dir():
            done |= {p.name[:-len(rd.FAILED_SUFFIX)] for p in self.folder.iterdir()
                     if p.name.endswith(rd.FAILED_SUFFIX) and self._failed_here(p.name[:-len(rd.FAILED_SUFFIX)])}
        return done

    def measure(self, sha: str) -> Outcome:
        """Import and measure one kernel commit; a failure is recorded, never raised."""
        t0 = time.monotonic()
        md = {"kernel_commit": sha, "kernel_tree": self.tree, "kernel_request": self.request}
        dest = store.candidates({"commit": sha, "dirty": False}, self.machine, root=self.results)
        try:
            path = self._measure(sha, dest, md)
        except CommitFailed as e:
            p = rd.failed_path(self.results, self.machine, sha)
            head = (f"status: failed\nphase: {e.phase}\nkernel commit: {sha}\nseambench: {self.build}\n"
                    f"request: {self.request}\n\n")
            store.atomic_write(p, store.scrub_paths(head + e.message.rstrip() + "\n"))
            return Outcome(sha, "failed", p, e.phase, time.monotonic() - t0, one_line(e.message))
        try:
            rnoise.update_record(rnoise.record_path(self.results, self.machine), path, warn=self.log)
        except OSError as e:  # the results are stored; the record is a cache of them
            self.log(f"{self.prog}: warning: cannot update the noise record: {e}")
        rd.failed_path(self.results, self.machine, sha).unlink(missing_ok=True)
        return Outcome(sha, "measured", path, "", time.monotonic() - t0)

    def failure(self, sha: str) -> str | None:
        """The one-line reason of a commit recorded as failed for this request, else None."""
        if not self._failed_here(sha):
            return None
        text = rd.failed_path(self.results, self.machine, sha).read_text(errors="replace")
        head, _, body = text.partition("\n\n")
        phase = next((ln.split(": ", 1)[1] for ln in head.splitlines() if ln.startswith("phase: ")), "?")
        return f"failed at {phase}: {one_line(body)}"


# -- the series ------------------------------------------------------------------------

@dataclass
class Point:
    sha: str
    version: str
    median: float
    ci95: tuple
    code: str | None          # the code hash, where every session of the commit recorded the same
    sessions: list            # per results file: per-worker value lists
    values: int


@dataclass
class Step:
    before: str
    after: str
    code_changed: bool | None  # None: a side has no code hash
    verdict: str | None = None  # bench.stats.verdict's, where the code changed
    change: float | None = None
    ci95: tuple | None = None   # of the change (ratio - 1)
    p_holm: float | None = None
    more_sessions: int | None = None
    noise: str = ""


@dataclass
class Series:
    benchmark: str
    points: list = field(default_factory=list)
    steps: list = field(default_factory=list)

    @property
    def symbol(self) -> str:
        return self.benchmark.split("/", 1)[0].split(":", 1)[-1]

    def as_dict(self) -> dict:
        conv, backend, leaf = (self.benchmark.split("/") + ["", "", ""])[:3]
        return {"benchmark": self.benchmark, "symbol": self.symbol, "backend": backend, "leaf": leaf,
                "points": [{"commit": p.sha, "version": p.version, "cycles": p.median, "ci95": list(p.ci95),
                            "code_hash": p.code, "sessions": len(p.sessions), "n_values": p.values}
                           for p in self.points],
                "steps": [{"from": s.before, "to": s.after, "code_changed": s.code_changed, "verdict": s.verdict,
                           "change": s.change, "ci95": list(s.ci95) if s.ci95 else None, "p_holm": s.p_holm,
                           "more_sessions": s.more_sessions, "noise": s.noise} for s in self.steps]}


def _points(walker: KernelWalker, shas) -> dict:
    """benchmark -> [Point] in the order of `shas`, from the commits' stored sessions for this request."""
    groups = rd.group_by_commit(walker.results, walker.machine)
    out: dict = {}
    for sha in shas:
        files = sorted(groups.get(sha, []), key=rd.session_order)
        comparable = rd.comparable_groups(walker.readable(files))
        per: dict = {}
        for rf in comparable[0] if comparable else ():
            for name, br in rf.benchmarks.items():
                if br.runs:
                    per.setdefault(name, []).append(br)
        for name, brs in per.items():
            x = np.asarray([v for br in brs for v in br.values], dtype=float)
            lo, hi = median_ci(x)
            codes = {br.metadata.get("seambench_code_hash") for br in brs}
            code = next(iter(codes)) if len(codes) == 1 else None
            out.setdefault(name, []).append(Point(
                sha, str(brs[0].metadata.get("seambench_kernel_version", "")), float(np.median(x)),
                (float(lo), float(hi)), code if code and code != "unknown" else None,
                [[list(r) for r in br.runs] for br in brs], len(x)))
    return out


def _stretch(points, i, step):
    """The sessions of point i and its neighbours (towards `step`) that measured identical code:
    replicates of one experiment, as bench history's bisect pools them."""
    out, j = [], i
    while 0 <= j < len(points) and (j == i or (points[i].code and points[j].code == points[i].code)):
        out += points[j].sessions
        j += step
    return out


def series(walker: KernelWalker, shas, threshold=DEFAULT_THRESHOLD) -> list:
    """One Series per benchmark: its points, and a Step between each two consecutive measured
    commits.  Where the code hash did not change there is no step to judge (the machine between
    runs, not the commit); where it did, bench.stats.verdict decides, every such step of the walk
    one family (Holm), each side the stretch of identical code around it, the between-run
    variance from the tree's stored replicates (noise_of), else as the rule goes on."""
    pts = _points(walker, shas)
    out, items, where = [], [], []
    scanned: dict = {}
    for name in sorted(pts):
        s = Series(name, pts[name])
        st = rec = None
        for i in range(1, len(s.points)):
            a, b = s.points[i - 1], s.points[i]
            known = bool(a.code and b.code)
            step = Step(a.sha, b.sha, (a.code != b.code) if known else None)
            s.steps.append(step)
            if known and a.code == b.code:
                continue
            if st is None and rec is None:
                st, rec = noise_of(walker, name, scanned, warn=walker.log)
            items.append(Item(str(len(items)), "", _stretch(s.points, i - 1, -1), _stretch(s.points, i, 1),
                              store=st, record=rec))
            where.append(step)
        out.append(s)
    rows = {r.name: r for r in compare_benchmarks(items, threshold)} if items else {}
    for k, step in enumerate(where):
        r = rows.get(str(k))
        if r is None:
            continue
        step.verdict, step.change, step.p_holm = r.verdict, r.change, r.p_value
        step.ci95 = (r.ci95[0] - 1, r.ci95[1] - 1)
        step.more_sessions, step.noise = r.more_sessions, r.noise
        if not math.isfinite(step.change):
            step.change = None
    return out


def save_order(walker: KernelWalker, shas) -> None:
    """results/kernel/<tree-id>/commits.json, with each commit's parent the one before it in the
    walk: the commits between them touch no TDX code and are not there, and the dashboard orders
    by parents."""
    info = rd.load_commits(walker.results)
    order = {}
    for prev, sha in zip([None] + list(shas), shas):
        entry = dict(info.get(sha) or {"subject": "", "date": 0})
        entry["parents"] = [prev] if prev else []
        order[sha] = entry
    store.save_commits(walker.results, order)


def request_json(request: dict) -> str:
    """The canonical text of a request (equal requests, equal text)."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"))
