"""``bench dashboard``: a static site built from ``results/`` and nothing else.

The site is a pure function of the results folder (asv's model): ``results/``
in, ``build/site/index.html`` + ``data.js`` + shipped scripts out (``-o`` elsewhere; the
default is untracked, so building it never makes the next ``bench run`` "dirty"). Commit order
comes from ``results/commits.json`` (written by ``bench history``); commits it
does not know are looked up in git when a repository is at hand, else ordered
by run date. It opens from disk with no network: plotly.js is copied from the
``plotly`` Python package, the page's own script and style from
``bench/report/static``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.report.compare import compare_command
from bench.results import layout as rd, store
from bench.results.vcs import GitError, git_commit_info
from bench.stats import summary as stats
from bench.stats.changepoints import find_changes
from bench.stats.noise import ASSUMED, moments, session_from_summary
from bench.stats.noise import estimate as noise_estimate
from bench.stats.verdict import DEFAULT_THRESHOLD, FASTER, SLOWER, decide_family, estimate

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"


def _warn(msg: str) -> None:
    print(f"bench dashboard: warning: {msg}", file=sys.stderr)


# -- reading ------------------------------------------------------------------

def _split_name(name: str, md: dict):
    parts = name.split("/")
    conv = md.get("seambench_convention") or (parts[0] if len(parts) > 0 else name)
    backend = md.get("seambench_backend") or (parts[1] if len(parts) > 1 else "?")
    leaf = md.get("seambench_leaf") or (parts[2] if len(parts) > 2 else "?")
    return str(conv), str(backend), str(leaf)


def summarise_commit(paths: list, machine: str):
    """Read one commit's files on one machine -> (summary, warnings, run_date).

    summary: name -> (median, lo, hi, n, factor, conv, backend, leaf, kind, code_hash, ratio):
    median and CI as stored, `factor` turning them into the figure of their kind, `kind` "core"
    (core cycles, stored as such) or "tsc" (an older TSC-only file: factor is its TSC rate, None
    if unknown; `ratio` the TSC-per-core ratio its run measured once at start-up), and the code
    hash of what was measured (None where not recorded).
    Runs in worker processes, so it takes and returns plain data.
    """
    warnings: list[str] = []
    pooled = rd.pool_files(paths, machine, warn=warnings.append)
    out = {}
    date = None
    for name, br in pooled.items():
        try:
            med, lo, hi = stats.median_and_ci(br.values)
        except (TypeError, ValueError):
            med = math.nan
        if not br.values or med != med:
            warnings.append(f"{paths[0]}: benchmark {name} has no numeric values; skipped")
            continue
        md = br.metadata
        if md.get("seambench_unit") == store.VALUE_UNIT:
            kind, factor = "core", 1.0
        else:
            kind, factor = "tsc", _float(md.get("seambench_tsc_hz"))
        code = md.get("seambench_code_hash")
        date = date or md.get("date")
        out[name] = (med, lo, hi, len(br.values), factor) + _split_name(name, md) + (
            kind, code if code and code != "unknown" else None, _float(md.get("seambench_tsc_per_core_cycle")))
    return out, warnings, date


def _float(v):
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _git_info(repo, shas):
    if repo is None or not shas:
        return {}
    try:
        return git_commit_info(repo, shas)
    except GitError as e:  # no git, not a repo, unknown shas: order by date instead
        _warn(f"cannot read commit info from git in {repo}: {e}")
        return {}


CACHE_VERSION = 2  # bump when summarise_commit's output changes


def _signature(paths):
    sig = []
    for p in paths:
        st = os.stat(p)
        sig.append([os.path.basename(p), st.st_size, st.st_mtime_ns])
    return sig


def _read_cache(cache: Path | None) -> dict:
    if cache is None or not cache.exists():
        return {}
    try:
        doc = rd.json_loads(cache.read_bytes())
        return doc["entries"] if doc.get("version") == CACHE_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # a cache is only a cache: rebuild it


def _write_cache(cache: Path | None, entries: dict, warn) -> None:
    if cache is None:
        return
    try:
        store.atomic_write(cache, rd.json_dumps({"version": CACHE_VERSION, "entries": entries}), recover_to=False)
    except OSError as e:
        warn(f"cannot write the summary cache {cache}: {e}")


def load_history(results, repo=None, jobs: int | None = None, warn=_warn, cache=None) -> dict:
    """Everything the page shows, as plain JSON-able data (see ``build_model``).

    ``cache`` (a file path) keeps each commit's summary keyed by the names, sizes and
    mtimes of its result files, so a rebuild after one more commit reads one file.
    """
    results = Path(results)
    cache = Path(cache) if cache else None
    tasks, paths = [], []
    failed: dict[str, list[str]] = {}
    for m in rd.machines(results):
        for sha, ps in sorted(rd.group_by_commit(results, m).items()):
            tasks.append((m, sha))
            paths.append([str(p) for p in ps])
        failed[m] = sorted(p.name[:40] for p in (results / m).glob("*" + rd.FAILED_SUFFIX))
    old = _read_cache(cache)
    entries, summaries, todo = {}, {}, []
    for t, ps in zip(tasks, paths):
        key, sig = f"{t[0]}/{t[1]}", _signature(ps)
        e = old.get(key)
        if e and e.get("sig") == sig:
            summaries[t] = ({k: tuple(v) for k, v in e["summary"].items()}, e["warnings"], e["date"])
            entries[key] = e
        else:
            todo.append((t, ps, key, sig))
    jobs = jobs or min(os.cpu_count() or 1, 8)
    if jobs > 1 and len(todo) > 64:
        with ProcessPoolExecutor(jobs) as ex:
            done = list(ex.map(summarise_commit, [x[1] for x in todo], [x[0][0] for x in todo], chunksize=16))
    else:
        done = [summarise_commit(ps, t[0]) for t, ps, _k, _s in todo]
    for (t, _ps, key, sig), r in zip(todo, done):
        summaries[t] = r
        entries[key] = {"sig": sig, "summary": r[0], "warnings": r[1], "date": r[2]}
    if todo or len(entries) != len(old):
        _write_cache(cache, entries, warn)
    summaries = {t: summaries[t] for t in tasks}  # history order of tasks, not cache order
    warnings = []
    for t, (_s, w, _d) in summaries.items():
        warnings += w
    for w in warnings:
        warn(w)

    # Commit order: results/commits.json, then git, then run date.
    all_shas = {t[1] for t in tasks} | {s for ss in failed.values() for s in ss}
    info = {s: v for s, v in rd.load_commits(results, warn=warn).items() if s in all_shas}
    missing = sorted(all_shas - set(info))
    if missing:
        info.update(_git_info(repo, missing))
    for s in all_shas - set(info):
        dates = [d for (m, sh), (_s, _w, d) in summaries.items() if sh == s and d]
        ts = 0
        if dates:
            try:
                ts = int(_dt.datetime.fromisoformat(min(dates)).timestamp())
            except ValueError:
                ts = 0
        info[s] = {"subject": "(commit not in commits.json or git)", "date": ts, "parents": []}
    return {"summaries": summaries, "failed": failed, "info": info,
            "machines": rd.machines(results), "warnings": warnings}


# -- model --------------------------------------------------------------------

def _r(x, digits=5):
    """Round to ``digits`` significant digits (keeps data.js small)."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def segments(med, code) -> list:
    """Consecutive present points (commit indexes) that measured the same code: one group while
    the code hash stays the same, a group of one where it is not known."""
    groups = []
    for i, v in enumerate(med):
        if v is None:
            continue
        if groups and code[i] is not None and code[groups[-1][-1]] == code[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def series_noise(med, lo, hi, code, steps=()):
    """sigma_b^2 of one series: the spread of its points within stretches of identical measured
    code (replicates); where no code hash is known (older results), within the stretches between
    the candidate steps instead.  bench.stats.noise.ASSUMED when neither has two points."""
    pts = {i: session_from_summary(med[i], lo[i], hi[i]) for i, v in enumerate(med) if v is not None}
    groups = [[pts[i] for i in g] for g in segments(med, code) if code[g[0]] is not None]
    m = moments(groups)
    if m.df > 0:
        return noise_estimate(m, detail=f"{m.n} commits of identical code in this series")
    cuts = [0] + [c.after for c in steps] + [len(med)]
    m = moments([[pts[i] for i in range(a, b) if i in pts] for a, b in zip(cuts, cuts[1:])])
    if m.df > 0:
        return noise_estimate(m, source="sessions", detail="points between this series' steps")
    return ASSUMED


def _changes_of(args):
    """(changes, drifts) of one series: candidate steps from asv's step fit, each kept only where
    the one decision rule (bench.stats.verdict, Holm over the series' candidates) calls the two
    stretches either side of it slower or faster.  A step inside a stretch of commits whose
    measured code is identical is the machine between runs, not the code: it is reported apart as
    drift (first, last, commits, size), never as a change."""
    med, lo, hi, code, threshold = args
    steps = find_changes(med, lo, hi, threshold=threshold / 2)
    if not steps:
        return [], []
    noise = series_noise(med, lo, hi, code, steps)
    cuts = [0] + [c.after for c in steps] + [len(med)]
    pts = [session_from_summary(med[i], lo[i], hi[i]) if med[i] is not None else None for i in range(len(med))]
    judged, ests = [], []
    for c, a, b, e in zip(steps, cuts, cuts[1:], cuts[2:]):
        before, after = [p for p in pts[a:b] if p], [p for p in pts[b:e] if p]
        if before and after:  # a stretch of zero costs has no ratio: not judged, not a change
            judged.append(c)
            ests.append(estimate(before, after, noise))
    group_of = {i: k for k, g in enumerate(segments(med, code)) for i in g}
    changes, drifts = [], []
    for c, dec in zip(judged, decide_family(ests, threshold)):
        if dec.verdict not in (SLOWER, FASTER):
            continue
        if group_of[c.before] == group_of[c.after]:
            drifts.append((c.before, c.after, c.after - c.before, c.rel))
        else:
            changes.append(c)
    return changes, drifts


def _series_key(machine: str, kind: str, page_kind: str) -> str:
    """Older TSC-only results of a machine form their own series beside its core-cycle ones."""
    return machine if kind == page_kind else f"{machine} (TSC-only)"


def build_model(hist: dict, threshold: float = DEFAULT_THRESHOLD, jobs: int | None = None, warn=_warn) -> dict:
    summaries, info = hist["summaries"], hist["info"]
    warnings = list(hist["warnings"])
    order = rd.topo_order(info)
    idx = {s: i for i, s in enumerate(order)}

    # Core cycles wherever a result has them; older TSC-only results are drawn in TSC cycles
    # when the page has nothing else, else as their own series (converted at the ratio their
    # run measured at start-up, marked as such); nanoseconds if a TSC rate is missing.  One
    # page never mixes units within a series, and steps are never found across series.
    points = [v for (s, _w, _d) in summaries.values() for v in s.values()]
    page_kind = "core" if any(v[8] == "core" for v in points) else "tsc"
    have_rate = all(v[4] for v in points)
    unit = "core cycles" if page_kind == "core" else ("TSC cycles" if have_rate else "ns")

    n = len(order)
    series: dict[str, dict] = {}
    meta: dict[str, tuple] = {}
    machines = []
    for (m, sha), (summ, _w, _d) in summaries.items():
        i = idx[sha]
        for name, (med, lo, hi, cnt, factor, conv, backend, leaf, kind, code, ratio) in summ.items():
            if not med > 0:
                # A cost per call is positive; a median at or below zero (stored values clamped,
                # a broken file) is not plotted and no change is measured from it.
                w = f"{m}/{sha[:12]}: {name} has median {med:g} (not positive); not plotted"
                warn(w)
                warnings.append(w)
                continue
            key = _series_key(m, kind, page_kind)
            if unit == "ns":
                f = 1e9 if kind == "tsc" else None
            elif kind == page_kind:
                f = factor
            else:  # a TSC-only point on a core-cycle page, in its own series
                f = factor / ratio if factor and ratio else None
            if f is None:
                continue
            s = series.setdefault(name, {}).get(key)
            if s is None:
                s = series[name][key] = {"med": [None] * n, "lo": [None] * n, "hi": [None] * n, "n": [None] * n,
                                         "code": [None] * n}
            s["med"][i], s["lo"][i], s["hi"][i], s["n"][i] = _r(med * f), _r(lo * f), _r(hi * f), cnt
            s["code"][i] = code
            meta.setdefault(name, (conv, backend, leaf))
            if key not in machines:
                machines.append(key)
    machines = [m for m in hist["machines"] if m in machines] + sorted(k for k in machines
                                                                       if k not in hist["machines"])

    commits = [{"sha": s, "subject": info[s].get("subject", ""), "date": info[s].get("date", 0)} for s in order]
    keys = [(name, m) for name in sorted(series) for m in sorted(series[name])]
    args = [(series[n][m]["med"], series[n][m]["lo"], series[n][m]["hi"], series[n][m]["code"], threshold)
            for n, m in keys]
    jobs = jobs or min(os.cpu_count() or 1, 8)
    if jobs > 1 and len(args) > 16:  # the step fit is ~50 ms per 1,000-point series
        with ProcessPoolExecutor(jobs) as ex:
            found = dict(zip(keys, ex.map(_changes_of, args, chunksize=4)))
    else:
        found = dict(zip(keys, map(_changes_of, args)))
    def contiguous(i, j):
        """Whether the commits order[i+1..j] are all of git's i..j: each one's parent is the one
        before it.  A history measured sparsely (a file of revs, a range added later) has commits
        between its points that no result names; a step there is not the next commit's doing."""
        return all(order[k - 1] in (info[order[k]].get("parents") or ()) for k in range(i + 1, j + 1))

    benchmarks, changes, drift = [], [], []
    for bidx, name in enumerate(sorted(series)):
        conv, backend, leaf = meta[name]
        for s in series[name].values():
            code = s.pop("code")
            # commits where this benchmark's measured code changed (both sides known)
            present = [i for i, v in enumerate(s["med"]) if v is not None]
            s["cc"] = [b for a, b in zip(present, present[1:]) if code[a] and code[b] and code[a] != code[b]]
            s["known"] = sum(1 for i in present if code[i]) == len(present) and bool(present)
        benchmarks.append({"name": name, "conv": conv, "backend": backend, "leaf": leaf,
                           "series": series[name]})
        for m, s in sorted(series[name].items()):
            steps, drifts = found[(name, m)]
            for c in steps:
                if not math.isfinite(c.rel) or not c.value_before > 0:
                    continue  # a relative size needs a positive base (non-positive points are left out)
                a, b = order[c.before], order[c.after]
                n_commits = c.after - c.before if contiguous(c.before, c.after) else None  # None: not known
                changes.append({
                    "benchmark": name, "bidx": bidx, "conv": conv, "backend": backend, "leaf": leaf, "machine": m,
                    "kind": c.kind, "rel": c.rel, "delta": c.delta,
                    "before": c.value_before, "after": c.value_after,
                    "from_idx": c.before, "to_idx": c.after,
                    "from": a, "to": b, "n_commits": n_commits,
                    "suspect": b if n_commits == 1 else None,
                    "code_changed": (c.after in s["cc"]) if s["known"] else None,
                    "compare": compare_command(a, b, name),
                    "bisect": f"bench history {a}..{b} --bisect {name}" if n_commits != 1 else None,
                })
            for first, last, count, rel in drifts:
                drift.append({"benchmark": name, "bidx": bidx, "conv": conv, "backend": backend, "leaf": leaf,
                              "machine": m, "from": order[first], "to": order[last], "from_idx": first,
                              "to_idx": last, "n_commits": count, "rel": rel,
                              "compare": compare_command(order[first], order[last], name)})
    changes.sort(key=lambda ch: (ch["kind"] != "regression", -abs(ch["rel"])))
    drift.sort(key=lambda d: -abs(d["rel"]))
    failed = {m: [idx[s] for s in shas if s in idx] for m, shas in hist["failed"].items()}
    return {"version": 2, "unit": unit, "commits": commits, "machines": machines,
            "benchmarks": benchmarks, "changes": changes, "drift": drift, "failed": failed,
            "threshold": threshold, "warnings": warnings}


# -- writing ------------------------------------------------------------------

def _plotly_js() -> Path:
    import plotly

    p = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not p.exists():
        raise RuntimeError(f"plotly.min.js not found in the plotly package ({p})")
    return p


def write_site(model: dict, out, results=None) -> Path:
    import jinja2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]))
    env.filters["pct"] = lambda x: f"{x * 100:+.1f}%"
    env.filters["num"] = lambda x: f"{x:+,.1f}" if abs(x) < 1000 else f"{x:+,.0f}"
    env.filters["short"] = lambda s: s[:10]
    commits = model["commits"]

    # Failed commits' logs travel with the site so it stays self-contained.
    failed_rows = []
    for m, idxs in sorted(model["failed"].items()):
        for i in idxs:
            sha = commits[i]["sha"]
            link = None
            if results is not None:
                src = rd.failed_path(Path(results), m, sha)
                if src.exists():
                    dst = out / "logs" / m / f"{sha}.log"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
                    link = f"logs/{m}/{sha}.log"
            failed_rows.append({"machine": m, "sha": sha, "subject": commits[i]["subject"], "log": link})

    page = env.get_template("index.html").render(
        model=model, commits=commits, failed_rows=failed_rows,
        convs=sorted({b["conv"] for b in model["benchmarks"]}),
        backends=sorted({b["backend"] for b in model["benchmarks"]}),
        leaves=sorted({b["leaf"] for b in model["benchmarks"]}),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    store.atomic_write(out / "index.html", page)
    data = json.dumps({k: v for k, v in model.items() if k != "warnings"}, separators=(",", ":"),
                      allow_nan=False)
    store.atomic_write(out / "data.js", "window.SEAMBENCH_DATA=" + data + ";\n")
    for f in ("app.js", "style.css"):
        shutil.copyfile(STATIC / f, out / f)
    dst = out / "plotly.min.js"
    src = _plotly_js()
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dst)
    return out / "index.html"


DEFAULT_OUT = "build/site"  # untracked (/build/ is in .gitignore): building never dirties the tree


def build(results="results", out=DEFAULT_OUT, repo=".", threshold=DEFAULT_THRESHOLD, jobs=None, verbose=True,
          cache=None) -> dict:
    """Build the site; returns timing figures (seconds) and counts."""
    t0 = time.perf_counter()
    hist = load_history(results, repo=repo, jobs=jobs, cache=cache)
    t1 = time.perf_counter()
    model = build_model(hist, threshold=threshold, jobs=jobs)
    t2 = time.perf_counter()
    try:
        index = write_site(model, out, results=results)
    except OSError as e:  # the reading and the model are not lost: the site goes elsewhere
        store.recover(out, "dashboard", e.strerror or str(e),
                      lambda folder: write_site(model, store.new_folder(folder, Path(out).name), results=results))
    t3 = time.perf_counter()
    figures = {"read_s": t1 - t0, "model_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0,
               "commits": len(model["commits"]), "benchmarks": len(model["benchmarks"]),
               "changes": len(model["changes"]), "warnings": len(model["warnings"]),
               "index": str(index)}
    if verbose:
        print(f"bench dashboard: {figures['commits']} commits, {figures['benchmarks']} benchmarks, "
              f"{figures['changes']} changes -> {index} ({figures['total_s']:.1f} s: "
              f"read {figures['read_s']:.1f}, change points {figures['model_s']:.1f}, write {figures['write_s']:.1f})")
    return figures
