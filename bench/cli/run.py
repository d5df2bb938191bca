"""`bench run`: measure a suite of conventions x backends (pyperf workers; kmod:* in the kernel module)."""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.cli import common
from bench.config import ConfigError, configs_dir, parse_suite


def register(sub) -> None:
    r = sub.add_parser("run", help="measure a suite of conventions x backends")
    common.add_common(r)
    r.add_argument("--suite", help="suite YAML (default: configs/default.yaml)")
    r.add_argument("--conventions", help="only these conventions (comma-separated)")
    r.add_argument("--backends", help="only these backends (comma-separated)")
    r.add_argument("--leaves", help="these leaf profiles instead of each convention's meant_for")
    pyperf_opts(r)
    r.add_argument("--trace", metavar="FILE", help="also write a Perfetto trace of every sample")
    r.add_argument("-o", "--output", help="results file (default: results/<machine>/<commit>.json.gz; "
                                          "gzipped if the name ends in .gz)")
    r.add_argument("--no-store", action="store_true", help="do not write a results file")
    r.add_argument("--save-as-history", action="store_true",
                   help="store an exploratory run (-C, a narrowed selection, another suite or pyperf "
                        "settings) beside the project's history instead of under results/<machine>/explore/")
    r.add_argument("--allow-unsafe", action="store_true", help="time pairs the safety check calls unsafe")
    r.set_defaults(func=cmd_run)


def pyperf_opts(sp):
    """pyperf's own options, passed through to its Runner (bench/measure/driver.py)."""
    g = sp.add_argument_group("pyperf")
    g.add_argument("-p", "--processes", "--runs", dest="processes", type=common.whole(1),
                   help="worker processes per benchmark (default: the suite's runs)")
    g.add_argument("-n", "--values", type=common.whole(1), help="values per worker (default: the suite's values)")
    g.add_argument("-w", "--warmups", type=common.whole(0), help="warm-up values per worker (default: the suite's)")
    speed = g.add_mutually_exclusive_group()
    speed.add_argument("--rigorous", action="store_true", help="pyperf: twice the worker processes")
    speed.add_argument("--fast", action="store_true", help="pyperf: fewer workers and values")
    g.add_argument("--affinity", metavar="CPU_LIST", type=common.cpu_list,
                   help="pyperf: pin workers to these CPUs (like 0,2-3)")


class NothingToMeasure(ValueError):
    """Every benchmark of the selection was skipped (the reasons are in the message): a run that
    measures nothing is no success."""


@dataclass
class Ran:
    """What one `bench run` measured: its records, and the results file (None: not stored)."""
    records: list
    path: Path | None


def cmd_run(args) -> int:
    return 0 if execute(args).records else 1  # NothingToMeasure: one line, exit 2 (bench.cli.main)


def execute(args, dest=None, metadata=None, quiet=False) -> Ran:
    """One `bench run` of parsed run arguments (also `bench kernel history`'s, per kernel commit).
    `dest` (candidate paths, store.candidates) stores the results there instead of where the run
    would put them, with `metadata` (seambench_* keys) added to every benchmark; the caller then
    owns the file (no noise record is updated).  `quiet`: no table, no JSON."""
    allowed = os.sched_getaffinity(0)
    try:
        return _run(args, dest, metadata, quiet)
    finally:
        os.sched_setaffinity(0, allowed)  # bench.cli.main may be called in-process (tests, tools)


def _run(args, dest_override=None, metadata=None, quiet=False) -> Ran:
    from bench.measure import driver
    from bench.measure.prepare import Context, context_info
    from bench.measure.runner import Plan, expand, pair_verdict, references, run_plan, run_records
    from bench.native import backends, machine
    from bench.native.registry import Registry
    from bench.results import store

    console = common.console(args)
    catalog = common.catalog(args)
    suite_path = args.suite or (configs_dir() / "default.yaml")
    suite, catalog = parse_suite(suite_path, catalog, list(backends.BACKENDS))
    settings = suite.settings
    # The selection, checked before anything runs (a name twice would abort pyperf's manager).
    conventions = common.names(args.conventions, "--conventions")
    backend_names = common.names(args.backends, "--backends")
    leaves = common.names(args.leaves, "--leaves")
    for name in conventions or []:
        catalog.convention(name)
    for name in backend_names or []:
        common.backend(name, "--backends")
    for name in leaves or []:
        catalog.leaf(name)
    if settings.cpu is not None and common.cpu_problem(settings.cpu):
        raise ConfigError(suite_path, 0, f"settings.cpu: {common.cpu_problem(settings.cpu)}")
    allowed = os.sched_getaffinity(0)
    cpu = machine.pin(settings.cpu)
    registry = Registry(catalog)
    plan = expand(suite, catalog, registry, conventions, backend_names, leaves, allow_unsafe=args.allow_unsafe)
    if not plan.specs:
        why = "; ".join(f"{what}: {reason}" for what, reason in plan.skipped) or "the selection is empty"
        raise NothingToMeasure(f"nothing to measure here: {why}")
    ctx = Context(catalog, registry, settings)
    # The emulated stub's serialization is measured once, here, and handed to every worker.
    serialize = (ctx.serialize if any(backends.BACKENDS[sp.backend].serialize == "auto" for sp in plan.specs)
                 else "none")
    info = context_info(ctx, suite.name)
    # Only the workers stay on the measured CPU: this process (progress bar, polling) moves off it.
    os.sched_setaffinity(0, (allowed - {cpu}) or allowed)
    conv_files = getattr(args, "conventions_file", None) or []
    prov, dest = _destination(args, suite, suite_path, conv_files, settings, info, store, driver,
                              dest_override)
    prov.update(metadata or {})
    t0 = time.monotonic()
    # pyperf runs the user-space suite: worker processes, warm-ups, loop calibration
    # (bench/measure/driver.py).  Backends in the kernel module are timed through its device, here.
    user_specs = [sp for sp in plan.specs if backends.BACKENDS[sp.backend].where != "kmod"]
    kplan = Plan([sp for sp in plan.specs if backends.BACKENDS[sp.backend].where == "kmod"])
    # Pairs the safety check calls unsafe (timed only with --allow-unsafe) may crash their
    # worker: each gets its own pyperf run, so a crash costs that pair, not the suite.
    risky = [sp for sp in user_specs if not pair_verdict(registry, catalog.convention(sp.convention),
                                                         catalog.leaf(sp.leaf)).safe]
    rounds = driver.Rounds.of(settings, driver.pyperf_options(args)).rounds  # one step per benchmark and round
    with _progress(console, len(user_specs) * rounds + len(kplan.specs), disable=args.json or quiet) as advance:
        results = driver.run_suite(suite_path, conv_files, [sp for sp in user_specs if sp not in risky],
                                   ctx.clocks, serialize, settings, driver.pyperf_options(args),
                                   on_done=advance, cpu=cpu)
        for sp in risky:
            try:
                results += driver.run_suite(suite_path, conv_files, [sp], ctx.clocks, serialize, settings,
                                            driver.pyperf_options(args), on_done=advance, cpu=cpu)
            except driver.DriverError as exc:
                plan.skipped.append((sp.name, f"unsafe, and it crashed while timed: {exc}"))
                advance(sp.name)
        order = {sp.name: i for i, sp in enumerate(user_specs)}
        results.sort(key=lambda r: order[r.spec.name])
        driver.fit_baseline(results)  # one empty loop for every worker of the run on a backend
        kmod_ms = run_plan(kplan, ctx, allow_unsafe=args.allow_unsafe,
                           progress=lambda spec: advance(spec.name)) if kplan.specs else []
    plan.skipped += kplan.skipped
    elapsed = time.monotonic() - t0
    measured = {r.spec.name for r in results} | {name for name, _ in plan.skipped}
    for spec in user_specs:
        if spec.name not in measured:
            plan.skipped.append((spec.name, "pyperf produced no result"))
    measurements = [driver.to_measurement(r, catalog) for r in results]
    refs = references(measurements + kmod_ms, suite.reference)
    records = run_records(measurements + kmod_ms, ctx, refs, _between_run_noise(measurements, info["machine"]))
    path, lost = None, []  # lost: writes that failed, their content saved elsewhere (RecoveredError)
    if (results or kmod_ms) and not args.no_store:
        benches = [driver.annotate(r, m, info) for r, m in zip(results, measurements)]
        if kmod_ms:
            benches += store.to_suite(kmod_ms, info).get_benchmarks()
        try:
            path = store.write_suite(store.stamp(pyperf_suite(benches), prov), dest)
        except store.RecoveredError as e:
            lost.append(e)
        else:
            if not args.output and dest_override is None:  # -o or the caller's file: not the store's
                _update_noise_record(path, info["machine"])
    if args.trace:
        from bench.report import trace
        try:
            trace.write_run_trace(args.trace, results, ctx.clocks["tsc_hz"], info)
        except store.RecoveredError as e:
            lost.append(e)
    for r in records:
        r.update(machine=info["machine"], commit=info["commit"], results_file=str(path) if path else None)
    if args.json and not quiet:
        common.emit_json(records)
        for what, why in plan.skipped:  # notes go to stderr: stdout is the document
            print(f"bench run: skipped {what}: {why}", file=sys.stderr)
    elif not quiet:
        _print_run(console, records, plan, suite, info, ctx, cpu, elapsed, path)
        if args.trace and not lost:
            console.print(f"trace: {args.trace} (open in ui.perfetto.dev)", markup=False)
    if lost:
        raise store.StoreError("; ".join(str(e) for e in lost))
    return Ran(records, path)


def _destination(args, suite, suite_path, conv_files, settings, info, store, driver, override=None):
    """(provenance, where the results go), checked writable before anything is measured.  A run
    is exploratory, stored under results/<machine>/explore/, unless it is a project suite
    (configs/) with its own settings, every convention and backend, and no -C file."""
    import hashlib
    from bench.config import configs_dir

    state = info["_state"]
    if state.get("why"):
        print(f"bench run: warning: the measured commit is unknown ({state['why']}); "
              "results are stored as unknown", file=sys.stderr)
    selection = {k: sorted(common.names(getattr(args, k), f"--{k}") or []) for k in ("conventions", "backends", "leaves")}
    pyperf_args = driver.pyperf_options(args)
    knobs = {"runs": settings.runs, "values": settings.values, "warmups": settings.warmups,
             "batch_us": settings.batch_us, "pyperf": pyperf_args}
    hashed = [(f, hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in conv_files]
    own_suite = Path(suite_path).resolve().parent == configs_dir().resolve()
    explore = bool(conv_files or any(selection.values()) or not own_suite or pyperf_args)
    prov = store.provenance(suite.name, selection, knobs, hashed, "explore" if explore else "history")
    if args.trace:
        store.check_writable(args.trace, "trace")
    if args.no_store:
        return prov, None
    if override is not None:
        return prov, override
    if args.output:
        if Path(args.output).exists():
            raise store.StoreError(f"{args.output} exists; results are never overwritten (choose another -o)")
        store.check_writable(args.output)
        return prov, Path(args.output)
    dest = store.candidates(state, info["machine"], explore=explore and not args.save_as_history)
    first = next(dest)
    store.check_writable(first)
    return prov, itertools.chain([first], dest)


def _between_run_noise(measurements, machine_name) -> dict:
    """name -> how far runs of the code each benchmark ran land apart on this machine, from the
    noise record's earlier runs (bench.results.noise.run_noise): for the run's CI."""
    from bench.results import noise, store
    keys = {m.spec.name: noise.code_key(m.code_hash, m.conv_hash) for m in measurements}
    return noise.run_noise(noise.record_path(store.results_root(), machine_name),
                           {name: key for name, key in keys.items() if key},
                           warn=lambda m: print(f"bench run: warning: {m}", file=sys.stderr))


def _update_noise_record(path, machine_name):
    """The machine's noise record (bench.results.noise) learns this run's medians: beside the file
    when it sits in the store's layout (results/<machine>/), else (explore/) in the default
    results folder."""
    from bench.results import noise, store
    root = path.parent.parent if path.parent.name == machine_name else store.results_root()
    try:
        noise.update_record(noise.record_path(root, machine_name), path,
                            warn=lambda m: print(f"bench run: warning: {m}", file=sys.stderr))
    except OSError as e:  # the results are written; a record that cannot be is said, not fatal
        print(f"bench run: warning: cannot update the noise record: {e}", file=sys.stderr)


def pyperf_suite(benches):
    import pyperf
    return pyperf.BenchmarkSuite(benches)


class _progress:
    def __init__(self, console, total, disable):
        self.console, self.total, self.disable = console, total, disable

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=self.console, disable=self.disable, transient=True)
        self.p.__enter__()
        self.task = self.p.add_task("measuring", total=self.total)
        return lambda name: self.p.update(self.task, advance=1, description=str(name))

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)


def _print_run(console, records, plan, suite, info, ctx, cpu, elapsed, path):
    from rich.markup import escape  # user text (suite name, machine name, paths) is not markup
    from rich.table import Table
    console.print(f"[bold]seambench[/] suite [bold]{escape(suite.name)}[/] on {escape(info['machine'])} "
                  f"(CPU {cpu}), commit {info['commit'][:12]}{' (dirty)' if info['dirty'] else ''}")
    ratios = [r["tsc_per_core_cycle"] for r in records if r["tsc_per_core_cycle"] == r["tsc_per_core_cycle"]]
    lo = min(r["tsc_per_core_range"][0] for r in records if r["tsc_per_core_range"]) if ratios else None
    hi = max(r["tsc_per_core_range"][1] for r in records if r["tsc_per_core_range"]) if ratios else None
    console.print(f"TSC {ctx.clocks['tsc_hz'] / 1e6:,.1f} MHz; core cycles from a reference ADD chain in every sample"
                  + (f" (1 core cycle = {lo:.3f}-{hi:.3f} TSC cycles over this run)" if ratios else "")
                  + f"; hardware counters: {'recorded beside it' if ctx.perf.hw else 'not available (perf_event_open)'}")
    fitted = {r["backend"]: r["baseline"] for r in records if r["baseline_core_cycles"] is not None}
    for backend, text in fitted.items():  # one fit a backend (bench.measure.driver.fit_baseline)
        console.print(f"empty loop subtracted{f' on {backend}' if len(fitted) > 1 else ''}: {text}")
    sds = [r["between_run_sd"] for r in records if r["between_run_sd"] is not None]
    console.print("95% CI: this run's workers and empty loop" + (
        f", and how far earlier runs of the same code landed apart here (between-run sd "
        f"{min(sds):.2%}-{max(sds):.2%}, noise record; {len(sds)} of {len(records)} benchmarks)" if sds else
        " only: the noise record holds no earlier runs of this code, so how far runs land apart is not in it yet"))
    table = Table(title="cost per call: median core cycles net of the empty-loop baseline", title_justify="left")
    for col, just in (("convention", "left"), ("backend", "left"), ("leaf", "left"), ("core cyc", "right"),
                      ("95% CI", "right"), ("TSC cyc", "right"), ("ns", "right"), ("TSC/core", "right"),
                      (f"x {escape(suite.reference)}", "right"), ("safe", "left")):
        table.add_column(col, justify=just)
    # Grouped by backend: conventions are compared within one crossing, never across.
    order = {name: i for i, name in enumerate(dict.fromkeys(r["backend"] for r in records))}
    rows = sorted(records, key=lambda r: order[r["backend"]])
    for i, r in enumerate(rows):
        last_of_backend = i + 1 == len(rows) or rows[i + 1]["backend"] != r["backend"]
        fmt = common.fmt
        table.add_row(escape(r["convention"]), r["backend"], r["leaf"], fmt(r["cycles"]),
                      f"{fmt(r['ci95'][0])}-{fmt(r['ci95'][1])}", fmt(r["tsc_cycles"]), fmt(r["ns"], 2),
                      fmt(r["tsc_per_core_cycle"], 3), fmt(r["relative"], 3),
                      "yes" if r["safe"] else ("NO" if r["safe"] is False else "?"), end_section=last_of_backend)
    console.print(table)
    reasons = {}
    for r in records:
        for k, v in r["excluded_by_reason"].items():
            reasons[k] = reasons.get(k, 0) + v
    if reasons:
        console.print(f"{sum(reasons.values())} samples were excluded and measured again ("
                      + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in reasons.items()) + ").")
    contended = sum(r["contended"] for r in records)
    if contended:
        console.print(f"warning: {contended} samples were kept although a sibling hyperthread shared the core "
                      "(the wait for a quiet core ran out): figures may be high; measure again on a quieter "
                      "machine.")
    workers = sum(r["excluded_workers"] for r in records)
    if workers:
        console.print(f"{workers} worker processes were dropped and replaced: far noisier than their peers "
                      "(MAD/median), or their figure stood on samples from a shared core.")
    for what, why in plan.skipped:
        console.print(f"[dim]skipped {escape(str(what))}: {escape(str(why))}[/]")
    console.print(f"{len(records)} benchmarks in {elapsed:.1f} s" + (f"; results: {escape(str(path))}" if path else ""))
