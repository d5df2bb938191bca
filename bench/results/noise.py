"""Where the between-run variance comes from: replicates in the results store, and the machine's
noise record.

Replicates: results files of one machine whose benchmark executed identical machine code (the
same ``seambench_code_hash``; for older files without one, the same clean commit).  Each file is
one session; bench.stats.noise turns the spread of their medians into sigma_b^2.

The noise record, ``results/<machine>/noise.record`` (JSON), is kept by ``bench run``: per benchmark and
code hash the latest few sessions' log medians and within-run variances (a few KB), so a machine
whose results files are not kept (CI, ``-o`` elsewhere, results pruned) still knows its noise.
It is a cache of measurements, not a result: untracked (.gitignore), and a broken one is ignored.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.results import layout as rd
from bench.stats.noise import Moments, Noise, Session, estimate, moments, others_pool, session_of, typical_pool

RECORD_NAME = "noise.record"  # not *.json: loaders glob those as results files
RECORD_VERSION = 1
KEEP_SESSIONS = 12    # per benchmark and code hash: the newest
KEEP_CODES = 4        # code hashes per benchmark: the newest


def record_path(root: Path, machine: str) -> Path:
    return Path(root) / machine / RECORD_NAME


def code_key(code_hash: str | None, conv_hash: str | None) -> str | None:
    """What identifies the measured code: its hash with the declaration's (emul_latency, say,
    changes what is timed without changing the code); None where the code hash is not known."""
    if code_hash and code_hash != "unknown":
        return f"code:{code_hash}:{conv_hash or ''}"
    return None


def _code_key(br: rd.BenchResult, rf_sha: str, dirty: bool) -> str | None:
    """code_key of a stored benchmark, else (older files) the clean commit."""
    decl = br.metadata.get("seambench_conv_hash") or ""
    key = code_key(br.metadata.get("seambench_code_hash"), decl)
    return key or (None if dirty else f"commit:{rf_sha}:{decl}")


def sessions_by_code(paths, machine: str | None = None, names=None, warn=None) -> dict:
    """(benchmark, code key) -> [Session], one per results file; the files' machine checked by name."""
    groups: dict = {}
    for p in dict.fromkeys(Path(p).resolve() for p in paths):
        try:
            rf = rd.read_result_file(p, machine)
        except rd.ResultsFileError as e:
            if warn:
                warn(str(e))
            continue
        for name, br in rf.benchmarks.items():
            if names is not None and name not in names:
                continue
            m = br.metadata.get("seambench_machine")
            if machine and m and m != machine:
                continue
            key = _code_key(br, rf.sha, rf.dirty)
            s = session_of(br.runs) if key else None
            if s is not None:
                groups.setdefault((name, key), []).append(s)
    return groups


def _per_benchmark(groups: dict) -> dict:
    """name -> its replicate groups (one per code key)."""
    per: dict[str, list] = {}
    for (name, _key), ss in groups.items():
        per.setdefault(name, []).append(ss)
    return per


def noise_from_groups(groups: dict, where: str, source="replicates") -> dict:
    """name -> Noise: each benchmark's replicates shrunk towards the typical pool of the others
    (bench.stats.noise.others_pool: a benchmark whose runs jump about stays out of the others'
    pools and keeps its own estimate, and none is pooled with itself)."""
    per = _per_benchmark(groups)
    names = list(per)
    own = [moments(per[name]) for name in names]
    out = {}
    for i, (name, m) in enumerate(zip(names, own)):
        pool = others_pool(own, i)
        detail = ""
        if m.df:
            codes = sum(len(g) > 1 for g in per[name])
            detail = f"{m.n} runs of identical code in {codes} group{'s' * (codes != 1)}" + (
                f", pooled with the machine's {pool.n} in {where}" if pool.df else f" in {where}")
        n = estimate(m, pool if pool.df > 0 else None, source=source, detail=detail)
        if n is not None:
            out[name] = n
    return out


def pool_of(groups: dict) -> Noise | None:
    """The machine's typical pool over all benchmarks (for a benchmark without replicates of its
    own), less those whose runs jump about far more than the others' (typical_pool)."""
    pool = typical_pool([moments(gs) for gs in _per_benchmark(groups).values()])
    return estimate(pool, source="machine pool", detail=f"{pool.n} runs of identical code, every benchmark") \
        if pool.df > 0 else None


def store_noise(results: Path, machine: str, names=None, extra=(), warn=None) -> tuple:
    """(name -> Noise, pool Noise or None) from the identical-code replicates among the machine's
    results files (dirty runs included: their code hash says what ran) and `extra` files."""
    paths = list(rd.result_paths(Path(results), machine)) + [Path(p) for p in extra]
    groups = sessions_by_code(paths, machine, names, warn)
    return noise_from_groups(groups, str(Path(results) / machine)), pool_of(groups)


# --- the noise record ------------------------------------------------------------------------

def read_record(path: Path, warn=None) -> dict:
    """(benchmark, code key) -> [Session] from a noise record; {} when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != RECORD_VERSION:
            return {}
        out = {}
        for name, codes in doc["benchmarks"].items():
            for key, rows in codes.items():
                out[(name, key)] = [Session(float(m), float(v), int(n)) for m, v, n in rows]
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        if warn:
            warn(f"{path}: unreadable noise record ({e}); ignored (bench run writes a new one)")
        return {}


def record_noise(path: Path, warn=None) -> tuple:
    """As store_noise, from the record."""
    groups = read_record(path, warn)
    return noise_from_groups(groups, str(path), source="noise record"), pool_of(groups)


def run_noise(path: Path, keys: dict, warn=None) -> dict:
    """name -> Noise for one run about to be reported: sigma_b^2 of the code each benchmark ran
    (`keys`: name -> code_key), from the record's earlier sessions of that same code only, each
    shrunk towards the run's other benchmarks (noise_from_groups); a benchmark whose code the
    record has not seen twice borrows their pool.  {} when the record knows none of it."""
    groups = {k: ss for k, ss in read_record(path, warn).items() if keys.get(k[0]) == k[1]}
    out = noise_from_groups(groups, str(path), source="noise record")
    lent = estimate(Moments(), typical_pool([moments(gs) for gs in _per_benchmark(groups).values()]),
                    source="noise record", detail=f"no runs of this code in {path}: this run's others")
    if lent is not None:
        for name in keys:
            out.setdefault(name, lent)
    return out


def update_record(path: Path, results_file: Path, warn=None) -> Path:
    """Add one results file's sessions to the record (newest kept), atomically.  The record is
    derived from results files, so a failed write raises OSError rather than being recovered."""
    from bench.results.store import atomic_write  # store imports pyperf: only the writer needs it

    path = Path(path)
    groups = read_record(path, warn)
    order = list(groups)  # insertion order = age: the record lists older keys first
    for key, ss in sessions_by_code([results_file], warn=warn).items():
        groups[key] = (groups.get(key, []) + ss)[-KEEP_SESSIONS:]
        if key in order:
            order.remove(key)
        order.append(key)
    doc: dict = {}
    for name, key in order:
        doc.setdefault(name, {})[key] = [[s.log_median, s.within_var, s.values] for s in groups[(name, key)]]
    for name, codes in doc.items():
        while len(codes) > KEEP_CODES:
            codes.pop(next(iter(codes)))
    atomic_write(path, json.dumps({"version": RECORD_VERSION, "benchmarks": doc}, separators=(",", ":")) + "\n",
                 recover_to=False)
    return path
