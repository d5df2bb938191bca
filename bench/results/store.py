"""Results on disk: pyperf BenchmarkSuite JSON, gzipped, written atomically, never overwritten.

Layout: results/<machine>/<commit>.json.gz (a clean tree), <commit>.<n>.json.gz for a
second run of the same commit, <commit>-dirty-<n>.json.gz for an uncommitted tree; runs that are
not the project's history (own conventions, a narrowed selection, another suite or settings)
the same names under results/<machine>/explore/.  Older files are plain .json and read the same
(results.layout); a name is free only if neither form exists.  A file that cannot be written
where asked is saved under recovery_dir() instead, and the error says where: a measurement is
never lost.  `python -m pyperf stats FILE` and `python -m pyperf compare_to A B` read them (pyperf
opens .gz itself).  Values are core cycles per call, net of the empty-loop baseline, stored to
their resolution (compact()).
"""
from __future__ import annotations

import datetime
import errno
import gzip
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import pyperf

from bench.results import layout

META = "seambench_"
# Stored values are core cycles per call (converted sample by sample by the measure stage).
# pyperf calls a unit that is not time or bytes "integer" (it still keeps and prints decimals).
# Files without seambench_unit are older: seconds per call at the TSC rate (TSC-only figures).
VALUE_UNIT = "core_cycles"
PYPERF_UNIT = "integer"
MIN_VALUE = 1e-3  # core cycles: the floor for stored values (pyperf needs values > 0; see store_run)


class StoreError(RuntimeError):
    pass


def results_root() -> Path:
    return Path(os.environ.get("SEAMBENCH_RESULTS", "results"))


EXPLORE = "explore"  # results/<machine>/explore/: runs that are not the project's history


def candidates(state: dict, machine_name: str, root: Path | None = None, explore=False):
    """The names a run of this commit may take, in order; write_suite takes the first free one
    atomically, so concurrent runs never share a name."""
    folder = (root or results_root()) / machine_name
    if explore:
        folder = folder / EXPLORE
    commit = state["commit"]
    for n in range(1, 100000):
        if state["dirty"]:
            yield folder / f"{commit}-dirty-{n}.json{layout.GZ}"
        else:
            yield folder / (f"{commit}.json{layout.GZ}" if n == 1 else f"{commit}.{n}.json{layout.GZ}")


def default_path(state: dict, machine_name: str, root: Path | None = None, explore=False) -> Path:
    """The first name for this commit that is free now (what a write would take, barring a race)."""
    for path in candidates(state, machine_name, root, explore):
        if not layout.taken(path):
            return path
    raise StoreError(f"no free result file name in {path.parent}")


def run_metadata(m, ctx_info: dict) -> dict:
    """pyperf run metadata: everything needed to trace a figure back to how it was made.
    `m` is a bench.measure.model.Measurement and `ctx_info` bench.measure.prepare.context_info's
    dict; both are read by attribute and key only, so this stage need not import measure."""
    spec = m.spec
    md = {
        "name": spec.name,
        "loops": m.n_calls,
        "unit": PYPERF_UNIT,
        f"{META}unit": VALUE_UNIT,
        "date": datetime.datetime.now().isoformat(" ", "seconds"),
        "cpu_model_name": ctx_info["cpu_model_name"],
        "platform": ctx_info["platform"],
        f"{META}convention": spec.convention,
        f"{META}backend": spec.backend,
        f"{META}leaf": spec.leaf,
        f"{META}conv_hash": m.conv_hash,
        f"{META}code_hash": m.code_hash or "unknown",
        f"{META}safe": "unknown" if m.safe is None else int(m.safe),
        f"{META}baseline_tsc_cycles": _median(m.baseline_values),
        # what was subtracted: the run's empty loop (bench.measure.driver.loop_baseline), or each
        # sample's own empty batch (the kernel module, timed in one process)
        f"{META}baseline": m.baseline.describe() if m.baseline else "each sample's own empty batch",
        f"{META}excluded": m.excluded,
        f"{META}serialize": m.serialize or "n/a",
        f"{META}hw_counters": int(bool(m.hw_counters)),
    }
    for k in ("machine", "commit", "dirty", "tsc_hz", "tsc_per_core_cycle", "microcode", "kernel",
              "suite", "cpu"):
        if ctx_info.get(k) is not None:
            md[f"{META}{k}"] = ctx_info[k]
    if m.baseline:
        md[f"{META}baseline_core_cycles"] = m.baseline.per_call(m.n_calls)
    if m.hw_counters:
        for name, value in m.hw_counters.items():
            md[f"{META}hw_{name}_per_call"] = value
    return md


def _median(values):
    s = sorted(values)
    return float(s[len(s) // 2]) if s else 0.0


def store_run(block, md: dict) -> pyperf.Run:
    """One stored pyperf run from a measure-stage SampleBlock: core cycles per call as values;
    the run's median TSC ticks per call and TSC-per-core ratio in its metadata.  pyperf values
    must be > 0, and a net figure (convention minus the empty baseline) can reach zero by noise
    when the call costs next to nothing: such values are stored at MIN_VALUE and counted, so a
    median moves only if most are."""
    md = dict(md)
    md[f"{META}clamped"] = sum(v <= 0 for v in block.core)
    if block.contended:
        md[f"{META}run_contended"] = block.contended  # kept on a shared core (policy: contention)
    if block.tsc:
        md[f"{META}run_tsc_cycles"] = _median(block.tsc)
        md[f"{META}run_tsc_per_core"] = _median(block.tsc_per_core)
    loops = md.get("loops", 1)
    return pyperf.Run([max(v, MIN_VALUE) for v in block.core],
                      warmups=[(loops, max(v, MIN_VALUE)) for v in block.warmups] or None,
                      metadata=md, collect_metadata=False)


def to_suite(measurements, ctx_info: dict) -> pyperf.BenchmarkSuite:
    """Measurements timed in this process (the kernel module's) as a pyperf suite."""
    benchmarks = []
    for m in measurements:
        md = run_metadata(m, ctx_info)
        # a run whose every sample was excluded has no values; the count is in metadata
        runs = [store_run(r, md) for r in m.runs if r.core]
        if runs:
            benchmarks.append(pyperf.Benchmark(runs))
    if not benchmarks:
        raise StoreError("nothing to store: no benchmark produced a value")
    return pyperf.BenchmarkSuite(benchmarks)


def scrub_paths(text: str, extra: dict | None = None) -> str:
    """Results and logs are committed and published: this machine's paths (pyperf records
    python_executable, for one) become placeholders.  Figures are untouched."""
    subs = {sys.prefix: "<env>", sys.base_prefix: "<python>", os.getcwd(): "<cwd>",
            os.path.expanduser("~"): "~", **(extra or {})}
    for path in sorted(subs, key=len, reverse=True):
        if len(path) > 1:
            text = text.replace(path, subs[path])
    return text


def _umask_mode() -> int:
    """The mode open() would give a new file (mkstemp's is 0600: too narrow for a published site)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# -- writing: atomic, never lost ---------------------------------------------------------
# A temporary file carries its writer's pid (.<name>.<pid>.<random>.tmp), so that a writer
# killed mid-write (kill -9, power) leaves nothing behind for long: the next write into the
# folder removes temporaries whose writer is dead.

_TMP_RE = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")


class RecoveredError(StoreError):
    """The file could not be written where asked; its content was saved at `saved`."""

    def __init__(self, msg, saved: Path):
        super().__init__(msg)
        self.saved = saved


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def clean_stale_temps(folder: Path) -> None:
    """Remove temporaries of dead writers in `folder` (a folder shared between hosts would need
    the host in the name too; results folders are per machine)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _TMP_RE.match(name)
        if m and int(m.group("pid")) != os.getpid() and not _alive(int(m.group("pid"))):
            try:
                os.unlink(folder / name)
            except OSError:
                pass


def _tempfile_in(folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    return tmp


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_writable(path, what="results file") -> None:
    """Fail now, before anything is measured, if `path` cannot be written: the nearest existing
    folder on its way must be a folder we can create a file in (as root, os.access says yes to
    /proc and to read-only mounts: only trying tells)."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"cannot write the {what} {path}: it is a folder")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise StoreError(f"cannot write the {what} {path}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=f".seambench-probe.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise StoreError(f"cannot write the {what} {path}: {probe}: {_reason(e)}") from None


def recovery_dir() -> Path:
    """Where a file goes that could not be written where asked: $XDG_STATE_HOME/seambench/recovered
    (default ~/.local/state/seambench/recovered)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "seambench" / "recovered"


def _numbered(folder: Path, name: str):
    stem, dot, ext = name.partition(".")
    for n in range(1, 100000):
        yield folder / (name if n == 1 else f"{stem}.{n}{dot}{ext}")


def _write_new(data: bytes, names, replace: bool) -> Path:
    """Write `data` to a temporary file beside the first of `names`, flushed to disk, and give it
    the first name not taken (or the first name, replacing, if `replace`).  Taking the name is
    atomic: os.link fails if the name exists, and the next one is tried."""
    names = iter(names)
    first = next(names)
    tmp = _tempfile_in(first.parent, first.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        if replace:
            os.replace(tmp, first)
            return first
        for path in (first, *names):
            # A results name is taken in either form (layout.forms): checked before taking it,
            # and again after, in case the other form appeared in between.
            if _other_form_exists(path):
                continue
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # No hard links here (some FUSE, vfat): reserve the name, then fill it.
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                except FileExistsError:
                    continue
                os.replace(tmp, path)
                return path
            if _other_form_exists(path):
                os.unlink(path)
                continue
            return path
        raise FileExistsError(errno.EEXIST, "every name is taken", str(first))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _other_form_exists(path: Path) -> bool:
    return any(p != path and p.exists() for p in layout.forms(path))


def new_folder(parent: Path, name: str) -> Path:
    """A folder `name` (or name.2, ...) under `parent` that did not exist: created here."""
    for path in _numbered(parent, name):
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise StoreError(f"no free folder name for {name} in {parent}")


def recover(dest, what: str, reason: str, write) -> None:
    """`write(folder_or_file)` could not write `dest`: write to the recovery location instead and
    raise RecoveredError naming both.  `write` takes the recovery path and writes it whole."""
    dest = Path(dest)
    for folder in (recovery_dir(), Path(tempfile.gettempdir()) / "seambench-recovered"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = write(folder)
            break
        except OSError:
            continue
    else:
        raise StoreError(f"cannot write the {what} {dest} ({reason}), nor save it in "
                         f"{recovery_dir()} or the temporary folder") from None
    raise RecoveredError(f"cannot write the {what} {dest} ({reason}); saved instead as {saved}", saved)


def write_bytes(data, dest, replace=False, what="results file", recover_to=True) -> Path:
    """Write `data` (bytes, or str as UTF-8) atomically: a crash mid-write leaves whatever was
    there before intact; an existing file is never replaced unless `replace`.  `dest` is a path,
    or an iterable of candidate paths (candidates()): the first free one is taken.  If it cannot
    be written, the data is saved under recovery_dir() and RecoveredError says where; with
    `recover_to=False` (a cache that can be rebuilt) the OSError is the caller's."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    names = [Path(dest)] if isinstance(dest, (str, os.PathLike)) else (Path(p) for p in dest)
    names = iter(names)
    first = next(names)
    try:
        return _write_new(data, itertools.chain([first], names), replace)
    except OSError as e:
        if not recover_to:
            raise
        reason = ("it exists; results are never overwritten (choose another -o)"
                  if isinstance(e, FileExistsError) else _reason(e))
    recover(first, what, reason, lambda folder: _write_new(data, _numbered(folder, first.name), False))


def atomic_write(path, data, replace=True, recover_to=True) -> Path:
    """write_bytes for one path, replacing by default (caches, logs, pages)."""
    return write_bytes(data, path, replace=replace, what="file", recover_to=recover_to)


def save_commits(results: Path, commits: dict) -> None:
    """Atomically write results/commits.json (layout.load_commits reads it), merged with what is there."""
    merged = layout.load_commits(results)
    merged.update(commits)
    atomic_write(layout.commits_path(results),
                 json.dumps({"version": 1, "commits": merged}, indent=1, sort_keys=True) + "\n")


def suite_text(suite: pyperf.BenchmarkSuite) -> str:
    """The suite's JSON as pyperf writes it, with this machine's paths scrubbed (scrub_paths)."""
    buf = io.StringIO()
    suite.dump(buf, compact=True)
    return scrub_paths(buf.getvalue())


# -- the stored form: values to their resolution, pyperf's run metadata to what it shows ------
# A value is (batch ticks - empty batch ticks) / calls / (chain ticks / chain ADDs): whole TSC
# tick counts, so it is known to about +-2 ticks per batch (its resolution).  It is stored rounded
# to the largest 1-2-5 step not above that, so rounding moves it by at most one tick per batch:
# the digits below are the counters' quantization, not the call.

def resolution(loops, tsc_per_unit) -> float | None:
    """Two TSC ticks over a batch of `loops` calls, in the stored unit (`tsc_per_unit` TSC ticks
    per unit: TSC per core cycle, or the TSC rate for older files in seconds); None if unknown."""
    try:
        r = 2.0 / (float(loops) * float(tsc_per_unit))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return r if r > 0 and math.isfinite(r) else None


def _step(res):
    """(step, decimals): the largest of 1, 2, 5 x 10^k not above `res`; None for no rounding."""
    if res is None:
        return None
    k = math.floor(math.log10(res))
    m = next(m for m in (5, 2, 1) if m * 10.0 ** k <= res)
    return m * 10.0 ** k, max(-k, 0)


def _round(v, step):
    """`v` to a multiple of `step` (_step's pair); never to zero or below (pyperf values are > 0):
    then left as it is."""
    if step is None or not isinstance(v, float):
        return v
    r = round(round(v / step[0]) * step[0], step[1])  # the outer round: no 128.76000000000001
    return r if r > 0 else v


def _run_resolution(md: dict):
    """The resolution of one run's values: md is the run's metadata layered as pyperf reads it."""
    if md.get(f"{META}unit") == VALUE_UNIT:
        return resolution(md.get("loops"), md.get(f"{META}run_tsc_per_core") or md.get(f"{META}tsc_per_core_cycle"))
    return resolution(md.get("loops"), md.get(f"{META}tsc_hz"))  # older files: seconds at the TSC rate


# Per-run metadata as stored: pyperf prints dates to the second, durations as ms; uptime is the
# run's date minus the suite's boot_time; the worker token only joined a worker's side file to
# its run, during the run.
_RUN_DROP = (f"{META}worker", "uptime")
_RUN_STEP = {"duration": (1e-3, 3), f"{META}run_tsc_per_core": (1e-6, 6)}


def compact(doc: dict) -> dict:
    """A pyperf suite document (as json.load gives it) in its stored form, changed in place:
    values and warm-ups to their resolution, run metadata to the precision pyperf shows.  Any
    version of the format is accepted; what it does not recognise is left as it is."""
    suite_md = doc.get("metadata") or {}
    for b in doc.get("benchmarks") or ():
        bench_md = {**suite_md, **(b.get("metadata") or {})}
        for run in b.get("runs") or ():
            rmd = run.get("metadata") or {}
            md = {**bench_md, **rmd}
            step = _step(_run_resolution(md))
            if isinstance(run.get("values"), list):
                run["values"] = [_round(v, step) for v in run["values"]]
            if isinstance(run.get("warmups"), list):
                run["warmups"] = [[w[0], _round(w[1], _step(_run_resolution({**md, "loops": w[0]})))]
                                  if isinstance(w, list) and len(w) == 2 else w for w in run["warmups"]]
            for k in _RUN_DROP:
                rmd.pop(k, None)
            for k, st in _RUN_STEP.items():
                if k in rmd:
                    rmd[k] = _round(rmd[k], st)
            if f"{META}run_tsc_cycles" in rmd:  # TSC ticks per call, as the values
                rmd[f"{META}run_tsc_cycles"] = _round(rmd[f"{META}run_tsc_cycles"],
                                                      _step(resolution(md.get("loops"), 1.0)))
            if isinstance(rmd.get("date"), str) and "." in rmd["date"]:
                rmd["date"] = rmd["date"].split(".", 1)[0]
    return doc


def encode(doc: dict, name: str) -> bytes:
    """A results document as file content: JSON as pyperf writes it (sorted keys, no spaces),
    gzipped when `name` ends in .gz (with no time stamp: equal documents, equal bytes)."""
    data = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    return gzip.compress(data, compresslevel=9, mtime=0) if str(name).endswith(layout.GZ) else data


def write_results(doc: dict, dest, replace=False) -> Path:
    """A results document, compacted, as a file (write_bytes: atomic, never overwritten, never
    lost); `dest` is a path or candidates(), whose names share one form (.json or .json.gz)."""
    names = iter([Path(dest)] if isinstance(dest, (str, os.PathLike)) else dest)
    first = Path(next(names))
    return write_bytes(encode(compact(doc), first.name), itertools.chain([first], names), replace=replace,
                       what="results file")


def write_suite(suite: pyperf.BenchmarkSuite, dest, replace=False) -> Path:
    """A results file (write_results); `dest` is a path or candidates()."""
    return write_results(json.loads(suite_text(suite)), dest, replace=replace)


def stamp(suite: pyperf.BenchmarkSuite, provenance: dict) -> pyperf.BenchmarkSuite:
    """Add what the run measured (provenance(): suite, selection, settings, user convention
    files) to every run's metadata; layout.comparable_key reads it back."""
    md = {f"{META}{k}": v for k, v in provenance.items()}
    for b in suite.get_benchmarks():
        b.update_metadata(md)
    return suite


def provenance(suite_name: str, selection: dict, settings: dict, conv_files, kind: str) -> dict:
    """Metadata values (non-empty strings, as pyperf requires): canonical JSON, so that equal
    choices give equal strings.  `conv_files` are (path, sha256) pairs; `kind` is "history" or
    "explore"."""
    def j(x):
        return json.dumps(x, sort_keys=True, separators=(",", ":"))
    return {"suite": suite_name, "selection": j(selection), "settings": j(settings),
            "conv_files": j(sorted([Path(p).name, h] for p, h in conv_files)), "kind": kind}


def load_suite(path) -> pyperf.BenchmarkSuite:
    """Load a results file (.json or .json.gz: pyperf decides by the name), or say clearly why it
    cannot be."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such results file")
    try:
        return pyperf.BenchmarkSuite.load(str(path))
    except Exception as exc:  # pyperf raises ValueError/KeyError/JSONDecodeError on bad files
        raise StoreError(f"{path}: not a readable pyperf results file ({type(exc).__name__}: {exc})") from None
