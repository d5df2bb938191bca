"""`bench compare A B`: two result sets, benchmark by benchmark.

Files are read with results.layout's reader (bounded, ~10x faster than pyperf's loader), and
only sessions that measured the same thing (layout.comparable_key) are compared.

A and B are results files, or commits/refs resolved to this machine's stored
results (every clean run of that commit, each a session).  Per benchmark: both medians,
the change, a CI for the ratio B/A whose variance adds each session's within-run part and
the between-run variance (from identical-code replicates in the results store, from several
sessions on a side, or from the machine's noise record, in that order; the report says
which), and the verdict of bench.stats.verdict's one rule, Holm over the rows.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results import layout as rd, noise as rnoise, store, vcs
from bench.results.store import META
from bench.stats.verdict import ALPHA, DEFAULT_THRESHOLD, FAMILY_METHOD, Item, Row, compare_benchmarks, edges


class CompareError(RuntimeError):
    pass


@dataclass
class Side:
    """One side of a comparison: its results files, each read once (results.layout's fast reader,
    bounded) as a session (a separate `bench run`)."""
    label: str
    files: list
    sessions: list                    # one layout.ResultFile per results file
    commit: str | None = None         # when resolved from a commit or ref
    store_at: tuple | None = None     # (results root, machine) its files sit in, if in the store's layout

    def names(self) -> list:
        """Benchmark names of every session, first seen first."""
        return list(dict.fromkeys(n for s in self.sessions for n in s.benchmarks))

    def benchmarks(self, name) -> list:
        """`name` (a layout.BenchResult) in each session that has it."""
        return [s.benchmarks[name] for s in self.sessions if name in s.benchmarks]

    def meta(self, key, default=None):
        for s in self.sessions:
            for b in s.benchmarks.values():
                v = _meta_of(b, key)
                if v is not None:
                    return v
        return default

    def keys(self) -> dict:
        """comparable_key -> the sessions that have it."""
        out: dict = {}
        for s in self.sessions:
            out.setdefault(s.key, []).append(s)
        return out

    def only(self, key) -> "Side":
        kept = [s for s in self.sessions if s.key == key]
        return Side(self.label, [s.path for s in kept], kept, self.commit, self.store_at)


def read(path: Path):
    """One results file (any name), or CompareError naming it."""
    try:
        return rd.read_result_file(path, any_name=True)
    except rd.ResultsFileError as e:
        raise CompareError(str(e)) from None


# --- finding the results ------------------------------------------------------------

def resolve(what: str, machine_name, root: Path | None = None) -> Side:
    """A results file, or a commit/ref with stored results for this machine.  `machine_name`
    is the name, or a function returning it: asked only for a commit, so that comparing two
    files needs nothing of this machine (nor the native extension that names it)."""
    path = Path(what)
    if path.is_file() or (path.exists() and not path.is_dir()):
        side = Side(path.name, [path], [read(path)])
        m = side.meta("machine")
        if m and path.parent.name == m:
            side.store_at = (path.parent.parent, m)
        return side
    if callable(machine_name):
        machine_name = machine_name()
    root = root or store.results_root()
    folder = root / machine_name
    commit = _rev_parse(what)
    if commit is None:
        raise CompareError(f"{what!r} is neither a results file nor a git commit or ref")
    files = sorted(rd.group_by_commit(root, machine_name).get(commit, []), key=rd.session_order)
    if not files:
        dirty = [p for p in rd.result_paths(root, machine_name, commit) if rd.classify(p)[1]]
        hint = (f"; only runs of an uncommitted tree exist ({', '.join(p.name for p in dirty)}): "
                "name one as a file") if dirty else ""
        raise CompareError(f"no stored results for {what} ({commit[:12]}) on {machine_name} in {folder}{hint}")
    return Side(f"{what} ({commit[:12]})" if not commit.startswith(what) else commit[:12], files,
                [read(f) for f in files], commit, (root, machine_name))


def align(a: Side, b: Side, force=False):
    """Both sides restricted to the sessions that measured the same thing (layout.comparable_key):
    the key both have with the most sessions.  (a, b, notes); CompareError if they share none,
    unless forced."""
    ka, kb = a.keys(), b.keys()
    shared = [k for k in ka if k in kb]
    if not shared:
        if len(ka) == 1 and len(kb) == 1 and force:
            return a, b, [f"measured different things: A {rd.describe_key(next(iter(ka)))}; "
                          f"B {rd.describe_key(next(iter(kb)))}"]
        raise CompareError(f"refusing to compare: A ({', '.join(str(f) for f in a.files)}) and B "
                           f"({', '.join(str(f) for f in b.files)}) measured different suites, selections or "
                           f"settings (A: {'; '.join(rd.describe_key(k) for k in ka)}; B: "
                           f"{'; '.join(rd.describe_key(k) for k in kb)})"
                           + (" (--force to compare anyway)" if len(ka) == 1 and len(kb) == 1 else ""))
    key = max(shared, key=lambda k: len(ka[k]) + len(kb[k]))
    notes = []
    for side, keys in (("A", ka), ("B", kb)):
        left = [s.path for k, ss in keys.items() if k != key for s in ss]
        if left:
            notes.append(f"{side}: left out {', '.join(str(p) for p in left)}: measured otherwise than "
                         f"{rd.describe_key(key)}")
    return a.only(key), b.only(key), notes


def _rev_parse(ref):
    try:
        p = vcs.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


# --- comparing --------------------------------------------------------------------------

def _runs(benches, scale):
    """Per-worker value arrays of a benchmark over the given sessions' copies of it."""
    return [np.asarray(r, dtype=float) * scale for b in benches for r in b.runs if r]


def _side_runs(side, name, scale):
    """(runs, sessions) of `name` on one side; CompareError naming the files if a value is no number."""
    try:
        return _runs(side.benchmarks(name), scale), _sessions(side, name, scale)
    except (TypeError, ValueError):
        raise CompareError(f"{', '.join(str(f) for f in side.files)}: {name} has values that are not "
                           "numbers") from None


def _scale(side: Side):
    """(factor from stored values to the figure, the figure's name).  Current files store core
    cycles per call; older ones seconds per call at the TSC rate (TSC-only figures)."""
    units = {_meta_of(b, "unit") or "seconds" for s in side.sessions for b in s.benchmarks.values()}
    if len(units) > 1:
        raise CompareError(f"{side.label} mixes core-cycle results with older TSC-only ones: name the files "
                           "to compare one kind")
    if units == {store.VALUE_UNIT}:
        return 1.0, "core cycles"
    hz = side.meta("tsc_hz")
    try:
        return (float(hz), "TSC cycles") if hz else (1e9, "ns")
    except (TypeError, ValueError):
        raise CompareError(f"{', '.join(str(f) for f in side.files)}: seambench_tsc_hz is not a number "
                           f"({hz!r})") from None


def code_identity(a: Side, b: Side, name: str) -> str:
    """"identical" when both sides executed the same machine code for `name` (the code hash,
    bench.native.codehash; same machine checked apart), "changed" when they did not, "unknown"
    where a side's results record no code hash (older files, the kernel module's backends)."""
    ha = {_meta_of(x, "code_hash") for x in a.benchmarks(name)} - {None, "unknown"}
    hb = {_meta_of(x, "code_hash") for x in b.benchmarks(name)} - {None, "unknown"}
    if not ha or not hb:
        return "unknown"
    return "identical" if ha == hb and len(ha) == 1 else "changed"


def check_comparable(a: Side, b: Side, force=False) -> list:
    """Reasons these two cannot be compared; raises unless forced (then returns them as notes)."""
    problems = []
    ma, mb = a.meta("machine"), b.meta("machine")
    if ma != mb:
        problems.append(f"different machines: {ma or 'unknown'} vs {mb or 'unknown'}")
    names_b = set(b.names())
    for name in a.names():
        if name not in names_b:
            continue
        ha = next((h for x in a.benchmarks(name) if (h := _meta_of(x, "conv_hash")) is not None), None)
        hb = next((h for x in b.benchmarks(name) if (h := _meta_of(x, "conv_hash")) is not None), None)
        if ha != hb:
            problems.append(f"{name}: different convention declarations (hash {ha} vs {hb})")
    if problems and not force:
        raise CompareError("refusing to compare: " + "; ".join(problems) + " (--force to compare anyway)")
    return problems


def _sessions(side, name, scale):
    out = []
    for bench in side.benchmarks(name):
        runs = _runs([bench], scale)
        if runs:
            out.append(runs)
    return out


def _meta_of(bench, key):
    return bench.metadata.get(META + key)


def loop_subtracted(side: Side, name) -> set:
    """How `name`'s sessions on this side subtracted the empty loop: "run" (bench run's, fitted
    over all its workers) or "sample" (each sample's own empty batch: the kernel module, and every
    file from before the run's loop)."""
    return {"run" if _meta_of(x, "baseline_core_cycles") is not None else "sample" for x in side.benchmarks(name)}


@dataclass
class Report:
    a: Side
    b: Side
    rows: list
    only_a: list
    only_b: list
    geomean: float | None
    notes: list
    threshold: float
    code: dict = None        # benchmark -> "identical" | "changed" | "unknown" (code_identity)

    def as_dict(self):
        return {"a": {"label": self.a.label, "files": [str(f) for f in self.a.files]},
                "b": {"label": self.b.label, "files": [str(f) for f in self.b.files]},
                "threshold": self.threshold, "family": FAMILY_METHOD, "alpha": ALPHA,
                "benchmarks": [{**r.as_dict(), "code": (self.code or {}).get(r.name, "unknown")} for r in self.rows],
                "geomean_ratio": self.geomean,
                "only_in_a": self.only_a, "only_in_b": self.only_b, "notes": self.notes}

    def undecided(self) -> list:
        return [r for r in self.rows if r.verdict == "unknown"]


def noise_sources(a: Side, b: Side, names, warn=None) -> tuple:
    """Per benchmark (store Noise, record Noise): replicates among the stored results of the
    sides' machine folder (bench.results.noise), and that machine's noise record."""
    where = a.store_at or b.store_at
    machine = a.meta("machine") or b.meta("machine")
    per, pool, rec, rec_pool = {}, None, {}, None
    if where is not None:
        per, pool = rnoise.store_noise(where[0], where[1], names=set(names), warn=warn)
    if machine:
        root = where[0] if where is not None else store.results_root()
        rec, rec_pool = rnoise.record_noise(rnoise.record_path(root, machine), warn=warn)
    # A benchmark without replicates of its own borrows the machine's pool (fewer df), after
    # the sides' own sessions: hence pool on the record's side of the order.
    return ({n: per.get(n) for n in names}, {n: rec.get(n) or pool or rec_pool for n in names})


def compare(a: Side, b: Side, threshold=DEFAULT_THRESHOLD, force=False, only=None) -> Report:
    """Every benchmark both sides have, or only the names in `only`."""
    if only:
        known = set(a.names()) | set(b.names())
        unknown = [n for n in only if n not in known]
        if unknown:
            raise CompareError(f"no benchmark {unknown[0]!r} in either result set; known: "
                               + ", ".join(sorted(known)))
    a, b, notes = align(a, b, force)
    notes = notes + check_comparable(a, b, force)
    scale_a, unit = _scale(a)
    scale_b, unit_b = _scale(b)
    if unit != unit_b:
        raise CompareError(f"A is in {unit}, B in {unit_b}: an older seambench stored TSC-only figures, which "
                           "move with the host's clock; re-measure that side with this version")
    names_b = set(b.names())
    names, only_a = [], []
    for name in a.names():
        if only and name not in only:
            continue
        if name not in names_b:
            only_a.append(name)
            continue
        names.append(name)
    warnings = []
    from_store, from_record = noise_sources(a, b, names, warn=warnings.append)
    items = [Item(name, unit, _side_runs(a, name, scale_a)[1], _side_runs(b, name, scale_b)[1],
                  store=from_store.get(name), record=from_record.get(name)) for name in names]
    rows = compare_benchmarks([it for it in items if it.sessions_a and it.sessions_b], threshold)
    notes += sorted(set(warnings))
    code = {r.name: code_identity(a, b, r.name) for r in rows}
    drift = [r.name for r in rows if code[r.name] == "identical" and r.verdict in ("faster", "slower")]
    if drift:
        notes.append(f"measured code identical on both sides for {', '.join(drift)}: a difference there is the "
                     "machine between the runs (drift), not the code")
    loops = [r.name for r in rows if loop_subtracted(a, r.name) != loop_subtracted(b, r.name)]
    if loops:
        notes.append(f"the empty loop was subtracted otherwise on the two sides for {len(loops)} benchmark(s) "
                     f"({', '.join(loops[:3])}{', ...' if len(loops) > 3 else ''}): files from before bench run "
                     "fitted one loop over all its workers subtract each sample's own, whose level moves with "
                     "the process (up to ~0.5% of a light call); a difference that size there can be that")
    only_b = sorted(n for n in names_b - set(a.names()) if not only or n in only)
    geo = float(np.exp(np.mean(np.log([r.ratio for r in rows])))) if rows else None
    assumed = [r.name for r in rows if r.noise_source == "assumed"]
    if assumed:
        notes.append(f"no measured between-run variance for {len(assumed)} benchmark(s): an sd of 2% is assumed, "
                     "so only large changes are called. `bench run` twice on one build measures it (identical-code "
                     "replicates; the machine's noise record keeps it)")
    return Report(a, b, rows, only_a, only_b, geo, notes, threshold, code)


def regressions(report: Report, pct: float) -> list:
    return [r for r in report.rows if r.verdict == "slower" and r.change * 100 >= pct]


# --- presentation ---------------------------------------------------------------------

def _verdict_text(r: Row, code: str = "unknown") -> str:
    if code == "identical":
        return f"{_verdict_text(r)}; measured code identical"
    if r.verdict == "unknown":
        more = (f"~{r.more_sessions} more run{'s' * (r.more_sessions != 1)} a side would decide"
                if r.more_sessions else "the change sits near a zone's edge: many more runs")
        return f"unknown ({more}; detects >= {r.mde:.1%} = {r.mde_cycles:,.1f} {r.unit})"
    return r.verdict


def _p(p):
    return "-" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def markdown(report: Report) -> str:
    lines = [f"Comparing **{report.b.label}** against **{report.a.label}** "
             f"(change = B/A - 1; {zones_text(report.threshold)})", "",
             f"| benchmark | A | B | change | 95% CI | p ({FAMILY_METHOD}) | verdict |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in report.rows:
        lines.append(f"| {r.name} | {r.median_a:,.2f} | {r.median_b:,.2f} | {r.change:+.2%} | "
                     f"{r.ci95[0] - 1:+.2%} .. {r.ci95[1] - 1:+.2%} | {_p(r.p_value)} | "
                     f"{_verdict_text(r, (report.code or {}).get(r.name, 'unknown'))} |")
    if report.geomean:
        lines += ["", f"Geometric mean of B/A: {report.geomean:.4f} ({report.geomean - 1:+.2%}); "
                  f"medians in {report.rows[0].unit if report.rows else ''} per call. {method(report)}."]
    for n in report.notes:
        lines.append(f"\nNote: {n}")
    if report.only_a:
        lines.append(f"\nOnly in A: {', '.join(report.only_a)}")
    if report.only_b:
        lines.append(f"\nOnly in B: {', '.join(report.only_b)}")
    return "\n".join(lines) + "\n"


def zones_text(threshold) -> str:
    lo, hi = edges(threshold)
    return (f"slower/faster = the CI wholly beyond {hi - 1:+.2%}/{lo - 1:+.2%}, same = the 95% CI within them "
            f"(threshold {threshold:.1%})")


def noise_text(report: Report) -> str:
    """Where the between-run variance came from, per source."""
    by: dict = {}
    for r in report.rows:
        by.setdefault(r.noise_source, []).append(r)
    parts = []
    for src, rows in by.items():
        sds = sorted(r.noise_sd for r in rows)
        span = f"sd {sds[0]:.2%}" + (f"..{sds[-1]:.2%}" if sds[-1] != sds[0] else "")
        parts.append(f"{src} for {len(rows)} benchmark{'s' * (len(rows) != 1)} ({span})")
    return "between-run variance: " + "; ".join(parts)


def method(report: Report) -> str:
    return (f"CI: each run's median (within-run variance from its values) plus the between-run variance, "
            f"t quantiles; changes need {FAMILY_METHOD} over {len(report.rows)} rows at {ALPHA:.0%} family-wise; "
            f"{zones_text(report.threshold)}; {noise_text(report)}")


def print_table(console, report: Report):
    from rich.markup import escape  # labels, benchmark names and notes come from results files
    from rich.table import Table
    unit = report.rows[0].unit if report.rows else "cycles"
    t = Table(title=f"B = {escape(report.b.label)} against A = {escape(report.a.label)}: median {unit} per call",
              title_justify="left")
    for col, just in (("benchmark", "left"), ("A", "right"), ("B", "right"), ("change", "right"),
                      ("95% CI", "right"), (f"p ({FAMILY_METHOD})", "right"), ("verdict", "left")):
        t.add_column(col, justify=just)
    colour = {"faster": "green", "slower": "red", "same": "dim", "unknown": "yellow"}
    for r in report.rows:
        t.add_row(escape(r.name), f"{r.median_a:,.2f}", f"{r.median_b:,.2f}", f"{r.change:+.2%}",
                  f"{r.ci95[0] - 1:+.2%} .. {r.ci95[1] - 1:+.2%}", _p(r.p_value),
                  f"[{colour[r.verdict]}]{_verdict_text(r, (report.code or {}).get(r.name, 'unknown'))}[/]")
    console.print(t)
    if report.geomean:
        console.print(f"geometric mean of B/A over {len(report.rows)} benchmarks: {report.geomean:.4f} "
                      f"({report.geomean - 1:+.2%})")
    console.print(f"[dim]{method(report)}[/]")
    for n in report.notes:
        console.print(f"[yellow]note:[/] {escape(n)}")
    if report.only_a:
        console.print(f"only in A: {', '.join(report.only_a)}", markup=False)
    if report.only_b:
        console.print(f"only in B: {', '.join(report.only_b)}", markup=False)


def compare_command(a: str, b: str, name: str) -> str:
    """The ``bench compare`` line for one benchmark between two commits (the dashboard's
    links and ``bench history --bisect``'s answer)."""
    return f"bench compare {a} {b} --benchmark {name}"


__all__ = ["CompareError", "resolve", "align", "compare", "markdown", "print_table", "regressions",
           "compare_command"]
