"""Layout of the results folder and fast, forgiving reading of its files.

The contract (written by ``bench run``)::

    results/<machine>/<sha>.json.gz            pyperf BenchmarkSuite, one run of commit <sha>
    results/<machine>/<sha>.<n>.json.gz        a further run of the same commit (never replaces)
    results/<machine>/<sha>-dirty-<n>.json.gz  a run of a dirty tree based on <sha>
    results/<machine>/explore/...              the same names: runs that are not the project's
                                               history (own conventions, narrowed selection,
                                               another suite or settings); never pooled with it

Each name may also be plain ``.json`` (files written before results were gzipped, or ``-o`` so
named): both forms are read everywhere, and a name is taken if either form exists (``forms``).

Files are pooled (a commit's sessions, compare, bisect, the dashboard) only when they
measured the same thing: ``comparable_key``.

A kernel tree's own TDX call code measured commit by commit (``bench kernel history``,
bench.history.kernel) has a results folder of this same layout of its own, under
``results/kernel/<tree-id>/``: ``kernel`` is therefore never a machine folder.

Added by ``bench history`` (names chosen so that a loader globbing ``*.json``
under a machine folder never mistakes them for results)::

    results/<machine>/<sha>.failed.log      a commit that failed to build or run, with its log
    results/commits.json                    sha -> subject, date, parents (git order cache)

Reading is deliberately not done through ``pyperf.BenchmarkSuite.load``: it
builds a Python object per run and per metadata item, which is ~10x slower
than reading the same documented JSON layout directly, and the dashboard
reads thousands of files. ``tests/test_dashboard.py`` checks that both
readers agree on the values.
"""
from __future__ import annotations

import json
import os
import stat
import zlib

try:  # 3-5x faster parsing of large result files; the stdlib is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None
import re
from dataclasses import dataclass, field
from pathlib import Path

# The one pattern of a result file name (the layout above; store.default_path writes it).
SHA_RE = re.compile(r"^(?P<sha>[0-9a-f]{40})(?P<rest>(?:\.(?P<n>[0-9]+))?|-dirty-(?P<dn>[0-9]+))"
                    r"\.json(?P<gz>\.gz)?$")
FAILED_SUFFIX = ".failed.log"
GZ = ".gz"  # pyperf reads and writes a file so named gzip-compressed


def forms(path: Path) -> tuple:
    """The two forms of a result file name (<name>.json, <name>.json.gz); a name is taken when
    either exists.  A name that is not a result file's is its only form."""
    path = Path(path)
    m = SHA_RE.match(path.name)
    if not m:
        return (path,)
    plain = path.name[:-len(GZ)] if m.group("gz") else path.name
    return (path.with_name(plain), path.with_name(plain + GZ))


def taken(path: Path) -> bool:
    return any(p.exists() for p in forms(path))


def json_loads(raw: bytes):
    return _orjson.loads(raw) if _orjson else json.loads(raw)


def json_dumps(doc) -> bytes:
    return _orjson.dumps(doc) if _orjson else json.dumps(doc, separators=(",", ":")).encode()


class ResultsFileError(ValueError):
    """A results file that cannot be read; the message names the file."""


@dataclass
class BenchResult:
    """One benchmark of one result file: values (seconds per call) and metadata."""

    name: str
    values: list                                  # all values, pooled
    metadata: dict
    runs: list = field(default_factory=list)      # values per run (one pyperf worker each)


@dataclass
class ResultFile:
    path: Path
    machine: str
    sha: str | None                                 # None: a file named otherwise (compare A B)
    dirty: bool
    benchmarks: dict = field(default_factory=dict)  # name -> BenchResult

    @property
    def key(self) -> tuple:
        """comparable_key of the file (its first benchmark's metadata: every run of a file shares it)."""
        return comparable_key(next(iter(self.benchmarks.values())).metadata if self.benchmarks else {})


# What a file measured, as bench run records it (results.store.provenance).
PROVENANCE = ("suite", "selection", "settings", "conv_files")


def comparable_key(metadata: dict) -> tuple:
    """The one test of whether two results files may be pooled (compare, history, dashboard):
    equal keys measured the same suite, selection, settings and user convention files.  Files
    written before this was recorded have no selection: they count as the default suite of their
    time, comparable with each other."""
    if "seambench_selection" not in metadata:
        return ("legacy", str(metadata.get("seambench_suite", "default")))
    return tuple(str(metadata.get(f"seambench_{k}", "")) for k in PROVENANCE)


def describe_key(key: tuple) -> str:
    if key[0] == "legacy":
        return f"suite {key[1]} (recorded before selection/settings were)"
    return f"suite {key[0]}, selection {key[1]}, settings {key[2]}, convention files {key[3]}"


def comparable_groups(files) -> list:
    """ResultFiles grouped by comparable_key, the largest group first (ties: the group holding the
    latest session, by session_order)."""
    groups: dict[tuple, list] = {}
    for rf in files:
        groups.setdefault(rf.key, []).append(rf)
    return sorted(groups.values(), reverse=True,
                  key=lambda g: (len(g), max(session_order(rf.path) for rf in g)))


def classify(path: Path):
    """Return (sha, dirty) for a result file name, or None if it is not one.

    ``<sha>.json`` and ``<sha>.<n>.json`` are clean runs, ``<sha>-dirty-<n>.json`` a dirty
    tree, each also as ``.json.gz``; any other name is not a result file."""
    m = SHA_RE.match(path.name)
    if not m:
        return None
    rest = m.group("rest")
    return m.group("sha"), rest.startswith("-dirty")


KERNEL_DIR = "kernel"  # results/kernel/<tree-id>/: kernel trees' results folders (above)


def machines(results: Path) -> list[str]:
    if not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != KERNEL_DIR)


def result_paths(results: Path, machine: str, sha: str | None = None) -> list[Path]:
    """Result files of a machine (all, or those of one commit), dirty ones included."""
    d = results / machine
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        c = classify(p)
        if c and (sha is None or c[0] == sha):
            out.append(p)
    return out


def failed_path(results: Path, machine: str, sha: str) -> Path:
    return results / machine / f"{sha}{FAILED_SUFFIX}"


MAX_RESULT_BYTES = 1 << 30  # larger than any real results file (a 1,000-benchmark suite is ~100 MB)


def read_bounded(path: Path, limit: int = MAX_RESULT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ResultsFileError otherwise (a symlink
    to /dev/zero, a FIFO or a huge file is refused, not read without end)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (a regular file ignores it)
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ResultsFileError(f"{path}: not a regular file")
            if st.st_size > limit:
                raise ResultsFileError(f"{path}: {st.st_size:,} bytes, more than a results file can be "
                                       f"({limit:,})")
            raw = f.read(limit + 1)
    except OSError as e:
        raise ResultsFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > limit:  # grew while read
        raise ResultsFileError(f"{path}: more than {limit:,} bytes")
    return raw


def gunzip_bounded(raw: bytes, path: Path, limit: int = MAX_RESULT_BYTES) -> bytes:
    """The content of gzip data (every member, as gzip.open reads it), at most `limit` bytes: a
    small file that inflates without end is refused, not inflated."""
    out, total = [], 0
    while raw:
        d = zlib.decompressobj(wbits=31)  # 31: the gzip container
        try:
            chunk = d.decompress(raw, limit + 1 - total)
        except zlib.error as e:
            raise ResultsFileError(f"{path}: not gzip data ({e})") from None
        total += len(chunk)
        if total > limit or d.unconsumed_tail:
            raise ResultsFileError(f"{path}: more than {limit:,} bytes when decompressed")
        if not d.eof:
            raise ResultsFileError(f"{path}: gzip data cut short")
        out.append(chunk)
        raw = d.unused_data
    return b"".join(out)


def read_doc(path: Path):
    """The JSON document of a results file, .json or .json.gz (bounded: read_bounded)."""
    path = Path(path)
    raw = read_bounded(path)
    if path.name.endswith(GZ):
        raw = gunzip_bounded(raw, path)
    try:
        return json_loads(raw)
    except ValueError as e:  # orjson.JSONDecodeError is a ValueError; so is a bad UTF-8 byte
        raise ResultsFileError(f"{path}: cannot read JSON: {e}") from None
    except RecursionError:
        raise ResultsFileError(f"{path}: JSON nested too deeply") from None


def read_result_file(path: Path, machine: str | None = None, any_name=False) -> ResultFile:
    """Read one pyperf BenchmarkSuite JSON file, plain or gzipped (bounded: read_bounded).

    Metadata follows pyperf's layering: suite metadata, then the benchmark's,
    then its first run's (keys common to all runs are hoisted by pyperf).
    Raises ResultsFileError naming the file on any malformation.  With `any_name` a file
    named otherwise than the layout says is read too (its sha is None).
    """
    path = Path(path)
    c = classify(path)
    if c is None:
        if not any_name:
            raise ResultsFileError(f"{path}: not a result file name (<40-hex sha>[...].json[.gz])")
        c = (None, False)
    doc = read_doc(path)
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
            raise ResultsFileError(f"{path}: not a pyperf BenchmarkSuite (no 'benchmarks' list)")
        suite_md = doc.get("metadata") or {}
        rf = ResultFile(path=path, machine=machine or path.parent.name, sha=c[0], dirty=c[1])
        for b in doc["benchmarks"]:
            bmd = dict(suite_md)
            bmd.update(b.get("metadata") or {})
            values, runs = [], []
            first_run_md = None
            for run in b.get("runs") or []:
                vals = run.get("values")
                if vals and not isinstance(vals, list):
                    raise ResultsFileError(f"{path}: a run's values are not a list")
                if vals:  # runs without values are pyperf calibration runs
                    values.extend(vals)  # checked numeric when summarised
                    runs.append(vals)
                    if first_run_md is None:
                        first_run_md = run.get("metadata") or {}
            if first_run_md:
                bmd.update(first_run_md)
            name = bmd.get("name")
            if not isinstance(name, str):
                raise ResultsFileError(f"{path}: a benchmark has no name")
            rf.benchmarks[name] = BenchResult(name=name, values=values, metadata=bmd, runs=runs)
        return rf
    except ResultsFileError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ResultsFileError(f"{path}: malformed pyperf JSON: {e!r}") from None


def read_commit(results: Path, machine: str, sha: str, warn=None) -> dict:
    """Pool every clean result file of ``sha`` on ``machine``: name -> BenchResult.

    Runs stored beside each other (``<sha>.json``, ``<sha>.2.json``) are
    measurements of the same tree, so their values are pooled. Corrupt files
    are reported through ``warn`` and skipped.
    """
    return pool_files(result_paths(results, machine, sha), machine, warn)


def session_order(path: Path):
    """Sort key: ``<sha>.json``, ``<sha>.2.json`` ... ``<sha>.10.json``, in the order they were run
    (by their number, whichever form each has)."""
    m = SHA_RE.match(Path(path).name)
    if not m:
        return (0, len(path.name), path.name)
    return (int(m.group("n") or m.group("dn") or 1), len(path.name), path.name)


def group_by_commit(results: Path, machine: str) -> dict:
    """sha -> clean result files of that commit (one directory listing; sorted by name, which
    the dashboard's cache signatures follow: sort by session_order for the order of runs)."""
    groups: dict[str, list[Path]] = {}
    d = results / machine
    for p in sorted(d.iterdir()) if d.is_dir() else ():
        c = classify(p)
        if c and not c[1]:
            groups.setdefault(c[0], []).append(p)
    return groups


def pool_files(paths, machine: str, warn=None) -> dict:
    """Pool the values of several result files of one commit (see read_commit): only files that
    measured the same thing (comparable_key); the largest such group, the others named through
    ``warn``."""
    pooled: dict[str, BenchResult] = {}
    files = []
    for p in paths:
        p = Path(p)
        c = classify(p)
        if c is None or c[1]:
            continue  # dirty tree: not this commit's code
        try:
            files.append(read_result_file(p, machine))
        except ResultsFileError as e:
            if warn:
                warn(str(e))
    groups = comparable_groups(files)
    for other in groups[1:]:
        if warn:
            warn(f"{', '.join(str(rf.path) for rf in other)}: measured {describe_key(other[0].key)}, not "
                 f"{describe_key(groups[0][0].key)} as the commit's other runs; not pooled with them")
    for rf in groups[0] if groups else ():
        for name, br in rf.benchmarks.items():
            if name in pooled:
                pooled[name].values.extend(br.values)
                pooled[name].runs.extend(br.runs)
            else:
                pooled[name] = BenchResult(name, list(br.values), dict(br.metadata), list(br.runs))
    return pooled


# -- commit log cache -------------------------------------------------------

def commits_path(results: Path) -> Path:
    return results / "commits.json"


def load_commits(results: Path, warn=None) -> dict:
    p = commits_path(results)
    if not p.exists():
        return {}
    try:
        with open(p) as f:
            doc = json.load(f)
        return dict(doc.get("commits", {}))
    except (OSError, ValueError, AttributeError) as e:
        if warn:
            warn(f"{p}: cannot read commit log cache ({e}); ordering falls back to git/run dates")
        return {}


def topo_order(commits: dict) -> list[str]:
    """Order shas parents-first (git history order), ties broken by commit date.

    ``commits`` maps sha -> {"parents": [...], "date": int}; parents outside
    the map are ignored, so a partial history still orders correctly.
    """
    import heapq

    children: dict[str, list[str]] = {s: [] for s in commits}
    indeg = {s: 0 for s in commits}
    for s, info in commits.items():
        for p in info.get("parents") or []:
            if p in commits:
                children[p].append(s)
                indeg[s] += 1
    heap = [(commits[s].get("date") or 0, s) for s, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        _, s = heapq.heappop(heap)
        out.append(s)
        for c in children[s]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, (commits[c].get("date") or 0, c))
    if len(out) != len(commits):  # a cycle cannot happen in git; be safe anyway
        seen = set(out)
        out += sorted((s for s in commits if s not in seen), key=lambda s: commits[s].get("date") or 0)
    return out
