"""Results on disk: pyperf BenchmarkSuite JSON, written atomically, never overwritten.

Layout: results/<machine>/<commit>.json (a clean tree), <commit>.<n>.json for a
second run of the same commit, <commit>-dirty-<n>.json for an uncommitted tree.
`python -m pyperf stats FILE` and `python -m pyperf compare_to A B` read them.
Values are seconds per call, net of the empty-loop baseline.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
from pathlib import Path

import pyperf

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


def default_path(state: dict, machine_name: str, root: Path | None = None) -> Path:
    """The first free name for this commit: never one that exists."""
    folder = (root or results_root()) / machine_name
    commit = state["commit"]
    if state["dirty"]:
        candidates = (folder / f"{commit}-dirty-{n}.json" for n in range(1, 100000))
    else:
        candidates = (folder / (f"{commit}.json" if n == 1 else f"{commit}.{n}.json") for n in range(1, 100000))
    for path in candidates:
        if not path.exists():
            return path
    raise StoreError(f"no free result file name in {folder}")


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
        f"{META}excluded": m.excluded,
        f"{META}serialize": m.serialize or "n/a",
        f"{META}hw_counters": int(bool(m.hw_counters)),
    }
    for k in ("machine", "commit", "dirty", "tsc_hz", "tsc_per_core_cycle", "microcode", "kernel",
              "suite", "cpu"):
        if ctx_info.get(k) is not None:
            md[f"{META}{k}"] = ctx_info[k]
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


def _publish(tmp, path: Path, replace: bool) -> None:
    """The last step of every atomic write: the finished temporary file takes the name."""
    try:
        os.chmod(tmp, _umask_mode())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if someone created the name meanwhile: no silent replace
            os.unlink(tmp)
    except FileExistsError:
        os.unlink(tmp)
        raise StoreError(f"{path} appeared while writing; results are never overwritten") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _tempfile_beside(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def atomic_write(path, data, replace=True) -> Path:
    """Write `data` (bytes, or str as UTF-8) to `path` atomically: a temporary file in the same
    folder, flushed to disk, then renamed.  A crash mid-write leaves whatever was there before
    intact.  With replace=False an existing file is never replaced (StoreError instead)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if path.exists() and not replace:
        raise StoreError(f"{path} exists; results are never overwritten")
    tmp = _tempfile_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    _publish(tmp, path, replace)
    return path


def write_suite(suite: pyperf.BenchmarkSuite, path: Path, replace=False) -> Path:
    """Atomic (as atomic_write): a crash mid-write leaves whatever was there before intact; an
    existing file is never replaced unless asked.  Paths of this machine are scrubbed from the
    text (scrub_paths)."""
    path = Path(path)
    if path.exists() and not replace:
        raise StoreError(f"{path} exists; results are never overwritten (choose another -o)")
    tmp = _tempfile_beside(path)
    try:
        suite.dump(tmp, compact=False, replace=True)  # pyperf writes to a path: fill the temporary
        with open(tmp, "r+") as f:
            text = scrub_paths(f.read())
            f.seek(0)
            f.write(text)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _publish(tmp, path, replace)
    return path


def load_suite(path) -> pyperf.BenchmarkSuite:
    """Load a results file, or say clearly why it cannot be."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such results file")
    try:
        return pyperf.BenchmarkSuite.load(str(path))
    except Exception as exc:  # pyperf raises ValueError/KeyError/JSONDecodeError on bad files
        raise StoreError(f"{path}: not a readable pyperf results file ({type(exc).__name__}: {exc})") from None
