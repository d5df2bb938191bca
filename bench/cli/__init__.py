"""`bench`: measure SEAMCALL/TDCALL calling conventions.

    bench run [--suite FILE] [--conventions a,b] [--backends x,y] [--json]
    bench doctor [--json]
    bench validate [--json]
    bench list [--json]
    bench kmod build|load|unload|status [--kdir DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from .config import ConfigError, configs_dir, load_builtin, parse_suite


def _split(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _catalog(args):
    catalog = load_builtin()
    for path in getattr(args, "conventions_file", None) or []:
        catalog = catalog.with_user_file(path)
    return catalog


def _emit_json(doc):
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _console(args):
    from rich.console import Console
    # With --json, stdout carries one JSON document and nothing else.  Piped output keeps
    # whole lines (rich would otherwise wrap at 80 columns).
    stderr = bool(getattr(args, "json", False))
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 140)


# --- run ----------------------------------------------------------------------

def cmd_run(args) -> int:
    allowed = os.sched_getaffinity(0)
    try:
        return _run(args)
    finally:
        os.sched_setaffinity(0, allowed)  # cli.main may be called in-process (tests, tools)


def _run(args) -> int:
    from . import backends, driver, machine, store
    from .measure import Context
    from .native import Registry
    from .runner import Plan, expand, pair_verdict, record, references, run_plan

    console = _console(args)
    catalog = _catalog(args)
    suite_path = args.suite or (configs_dir() / "default.yaml")
    suite, catalog = parse_suite(suite_path, catalog, list(backends.BACKENDS))
    settings = suite.settings
    allowed = os.sched_getaffinity(0)
    cpu = machine.pin(settings.cpu)
    registry = Registry(catalog)
    plan = expand(suite, catalog, registry, _split(args.conventions), _split(args.backends),
                  _split(args.leaves), allow_unsafe=args.allow_unsafe)
    ctx = Context(catalog, registry, settings)
    info = store.context_info(ctx, suite.name)
    # Only the workers stay on the measured CPU: this process (progress bar, polling) moves off it.
    os.sched_setaffinity(0, (allowed - {cpu}) or allowed)
    tsc_hz = ctx.clocks["tsc_hz"]
    if args.output and Path(args.output).exists():
        raise store.StoreError(f"{args.output} exists; results are never overwritten (choose another -o)")
    t0 = time.monotonic()
    # pyperf runs the user-space suite: worker processes, warm-ups, loop calibration
    # (bench/driver.py).  Backends in the kernel module are timed through its device, here.
    user_specs = [sp for sp in plan.specs if backends.BACKENDS[sp.backend].where != "kmod"]
    kplan = Plan([sp for sp in plan.specs if backends.BACKENDS[sp.backend].where == "kmod"])
    conv_files = getattr(args, "conventions_file", None) or []
    # Pairs the safety check calls unsafe (timed only with --allow-unsafe) may crash their
    # worker: each gets its own pyperf run, so a crash costs that pair, not the suite.
    risky = [sp for sp in user_specs if not pair_verdict(registry, catalog.convention(sp.convention),
                                                         catalog.leaf(sp.leaf)).safe]
    with _progress(console, len(plan.specs), disable=args.json) as advance:
        results = driver.run_suite(suite_path, conv_files, [sp for sp in user_specs if sp not in risky],
                                   ctx.clocks, driver.pyperf_options(args), on_done=advance, cpu=cpu)
        for sp in risky:
            try:
                results += driver.run_suite(suite_path, conv_files, [sp], ctx.clocks, driver.pyperf_options(args),
                                            on_done=advance, cpu=cpu)
            except driver.DriverError as exc:
                plan.skipped.append((sp.name, f"unsafe, and it crashed while timed: {exc}"))
                advance(sp.name)
        order = {sp.name: i for i, sp in enumerate(user_specs)}
        results.sort(key=lambda r: order[r.spec.name])
        kmod_ms = run_plan(kplan, ctx, allow_unsafe=args.allow_unsafe,
                           progress=lambda spec: advance(spec.name)) if kplan.specs else []
    plan.skipped += kplan.skipped
    elapsed = time.monotonic() - t0
    measured = {r.spec.name for r in results} | {name for name, _ in plan.skipped}
    for spec in user_specs:
        if spec.name not in measured:
            plan.skipped.append((spec.name, "pyperf produced no result"))
    measurements = [driver.to_measurement(r, catalog, tsc_hz) for r in results]
    refs = references(measurements + kmod_ms, suite.reference)
    records = [record(m, ctx, refs) for m in measurements + kmod_ms]
    path = None
    if (results or kmod_ms) and not args.no_store:
        path = Path(args.output) if args.output else store.default_path(info["_state"], info["machine"])
        benches = [driver.annotate(r, m, info) for r, m in zip(results, measurements)]
        if kmod_ms:
            benches += store.to_suite(kmod_ms, info).get_benchmarks()
        store.write_suite(pyperf_suite(benches), path)
    if args.trace:
        from . import trace
        trace.write_run_trace(args.trace, results, tsc_hz, info)
    if args.json:
        for r in records:
            r.update(machine=info["machine"], commit=info["commit"], results_file=str(path) if path else None)
        _emit_json(records)
    else:
        _print_run(console, records, plan, suite, info, ctx, cpu, elapsed, path)
        if args.trace:
            console.print(f"trace: {args.trace} (open in ui.perfetto.dev)")
    return 0 if records or not plan.specs else 1


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


def _fmt(x, digits=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _print_run(console, records, plan, suite, info, ctx, cpu, elapsed, path):
    from rich.table import Table
    clocks = ctx.clocks
    console.print(f"[bold]seambench[/] suite [bold]{suite.name}[/] on {info['machine']} "
                  f"(CPU {cpu}), commit {info['commit'][:12]}{' (dirty)' if info['dirty'] else ''}")
    console.print(f"TSC {clocks['tsc_hz'] / 1e6:,.1f} MHz; 1 core cycle = {clocks['tsc_per_core_cycle']:.3f} "
                  f"TSC cycles (dependent-ADD chain); hardware counters: "
                  f"{'used' if ctx.hw else 'not available (perf_event_open)'}")
    table = Table(title="cost per call: median TSC cycles net of the empty-loop baseline", title_justify="left")
    for col, just in (("convention", "left"), ("backend", "left"), ("leaf", "left"), ("cycles", "right"),
                      ("95% CI", "right"), ("ns", "right"), ("core cyc", "right"), ("baseline", "right"),
                      (f"x {suite.reference}", "right"), ("safe", "left")):
        table.add_column(col, justify=just)
    # Grouped by backend: conventions are compared within one crossing, never across.
    order = {name: i for i, name in enumerate(dict.fromkeys(r["backend"] for r in records))}
    rows = sorted(records, key=lambda r: order[r["backend"]])
    for i, r in enumerate(rows):
        last_of_backend = i + 1 == len(rows) or rows[i + 1]["backend"] != r["backend"]
        table.add_row(r["convention"], r["backend"], r["leaf"], _fmt(r["cycles"]),
                      f"{_fmt(r['ci95'][0])}-{_fmt(r['ci95'][1])}", _fmt(r["ns"], 2), _fmt(r["core_cycles"]),
                      _fmt(r["baseline_cycles"], 2), _fmt(r["relative"], 3),
                      "yes" if r["safe"] else ("NO" if r["safe"] is False else "?"), end_section=last_of_backend)
    console.print(table)
    excluded = sum(r["excluded"] for r in records)
    if excluded:
        console.print(f"{excluded} disturbed samples (context switch, migration, page fault or TSC gap during "
                      "the sample) were excluded and measured again.")
    workers = sum(r["excluded_workers"] for r in records)
    if workers:
        console.print(f"{workers} worker processes far noisier than their peers (MAD/median) were dropped "
                      "and replaced.")
    for what, why in plan.skipped:
        console.print(f"[dim]skipped {what}: {why}[/]")
    console.print(f"{len(records)} benchmarks in {elapsed:.1f} s" + (f"; results: {path}" if path else ""))


# --- compare ------------------------------------------------------------------------

def cmd_compare(args) -> int:
    from . import compare, machine
    machine_name = machine.machine_id()
    a = compare.resolve(args.a, machine_name)
    b = compare.resolve(args.b, machine_name)
    report = compare.compare(a, b, threshold=args.threshold / 100, force=args.force, only=args.benchmark)
    if args.json:
        _emit_json(report.as_dict())
    elif args.markdown:
        sys.stdout.write(compare.markdown(report))
    else:
        compare.print_table(_console(args), report)
    if args.fail_on_regression is not None:
        bad = compare.regressions(report, args.fail_on_regression)
        if bad:
            print(f"bench: {len(bad)} regression(s) of {args.fail_on_regression}% or more: "
                  + ", ".join(f"{r.name} {r.change:+.2%}" for r in bad), file=sys.stderr)
            return 1
    return 0


# --- ab -------------------------------------------------------------------------------

def cmd_ab(args) -> int:
    from . import ab, machine
    catalog = _catalog(args)
    for name in (args.x, args.y):
        catalog.convention(name)  # unknown name: the list of valid ones, before anything runs
    allowed = os.sched_getaffinity(0)
    cpu = machine.pin(args.cpu)
    clocks = machine.clocks()
    os.sched_setaffinity(0, allowed)
    r = ab.run_ab_processes(args.x, args.y, backend=args.backend, leaf=args.leaf, pairs=args.pairs,
                            processes=args.processes, threshold=args.threshold / 100,
                            conventions_files=getattr(args, "conventions_file", None) or [],
                            allow_unsafe=args.allow_unsafe, cpu=cpu, clocks=clocks)
    if args.trace:
        from . import trace
        trace.write_ab_trace(args.trace, r)
    if args.json:
        _emit_json(r.as_dict())
    else:
        console = _console(args)
        ab.print_result(console, r)
        if args.trace:
            console.print(f"trace: {args.trace} (open in ui.perfetto.dev)")
    return 0


# --- doctor ---------------------------------------------------------------------

def cmd_doctor(args) -> int:
    from . import backends, machine
    from .native import Registry

    registry = Registry(_catalog(args))
    probes = backends.probe_all(registry, backends.default_names())
    choice = backends.serialize_choice(registry)
    doc = {
        "machine": machine.machine_id(),
        "cpu": machine.cpu(),
        "kernel": machine.kernel(),
        "clock": machine.clocks(),
        "xsave": {**machine.xsave(), "xcr0": hex(machine.xsave()["xcr0"]),
                  "xinuse": None if machine.xsave()["xinuse"] is None else hex(machine.xsave()["xinuse"])},
        "tuning": machine.tuning_hints(),
        "perf": machine.perf_counters(),
        "serialize": choice,
        "backends": {name: p.as_dict() for name, p in probes.items()},
    }
    if args.json:
        _emit_json(doc)
        return 0
    console = _console(args)
    c, clk, x, t, perf = doc["cpu"], doc["clock"], doc["xsave"], doc["tuning"], doc["perf"]
    console.print(f"[bold]machine[/]   {doc['machine']}")
    console.print(f"cpu       {c['vendor']} {c['model_name']} (family {c['family']} model {c['model']} "
                  f"stepping {c['stepping']}), microcode {c['microcode'] or 'not exposed'}, "
                  f"{c['logical_cpus']} logical CPUs")
    hv = f"{machine.hypervisor_name(c['hypervisor'])} ({c['hypervisor']})" if c["hypervisor"] else "none (bare metal)"
    console.print(f"          hypervisor: {hv}; SERIALIZE "
                  f"{'yes' if c['serialize'] else 'no'}; AVX-512 {'yes' if c['avx512f'] else 'no'}")
    console.print(f"kernel    {doc['kernel']['release']}")
    console.print(f"tsc       {clk['tsc_hz'] / 1e6:,.1f} MHz, invariant: {'yes' if c['invariant_tsc'] else 'NO'}; "
                  f"1 core cycle = {clk['tsc_per_core_cycle']:.3f} TSC cycles "
                  f"(core ~{clk['core_hz_estimate'] / 1e9:.2f} GHz)")
    console.print(f"xsave     XCR0 {x['xcr0']} ({', '.join(x['components'])}); XINUSE {x['xinuse']}; "
                  f"area {x['size_xcr0']} B standard for XCR0, {x['size_compacted']} B compacted, "
                  f"{x['size_max']} B max; " + ", ".join(k for k, v in x["features"].items() if v))
    console.print(f"tuning    governor: {t['governor']}; turbo: {t['turbo']}; isolated CPUs: "
                  f"{t['isolated_cpus']}; nohz_full: {t['nohz_full']}; affinity {t['affinity']}")
    console.print("perf      hardware counters: " + ("available" if perf["hardware"] else "NOT available")
                  + "; " + ", ".join(f"{k}: {v}" for k, v in perf["events"].items())
                  + f"; perf_event_paranoid={perf['perf_event_paranoid']}")
    console.print("serialize emulated stub uses " + choice["mode"].upper() + "; stub cost per mode (TSC): "
                  + ", ".join(f"{m} {v:.0f}" for m, v in choice["costs"].items()))
    console.print("[bold]backends[/]")
    for name, p in probes.items():
        mark = "[green]available[/]" if p.available else "[red]not available[/]"
        console.print(f"  {name:<20} {mark}: {p.reason}")
    return 0


# --- validate -------------------------------------------------------------------

def cmd_validate(args) -> int:
    from . import backends, machine
    from .measure import Context
    from .native import Registry
    from .validate import validate

    # The default suite's settings are what "resolved with the default settings" refers to.
    suite, catalog = parse_suite(configs_dir() / "default.yaml", _catalog(args), list(backends.BACKENDS))
    machine.pin(suite.settings.cpu)
    ctx = Context(catalog, Registry(catalog), suite.settings)
    v = validate(ctx, args.convention, args.backend, args.leaf)
    if args.json:
        _emit_json(v.as_dict())
        return 0 if v.passed else 1
    from rich.table import Table
    console = _console(args)
    table = Table(title=f"known cost recovery: {v.convention} + K dependent one-cycle ops ({v.backend}, {v.leaf})",
                  title_justify="left")
    for col in ("K", "measured (TSC)", "95% CI", "fit a+bK", "off line"):
        table.add_column(col, justify="right")
    for (k, med, ci), res in zip(v.points, v.residuals):
        fitted = med - res
        table.add_row(str(k), _fmt(med, 2), f"{_fmt(ci[0], 2)}-{_fmt(ci[1], 2)}", _fmt(fitted, 2),
                      f"{res / fitted:+.2%}")
    console.print(table)
    console.print(f"fit: a = {v.a:.2f} TSC cycles (the convention alone, K=0, measured {v.own:.2f}; "
                  f"tolerance 2), b = {v.b:.4f} TSC cycles per core cycle")
    console.print(f"the built-in copy of {v.convention} measured {v.builtin:.2f} (same code at other addresses)")
    console.print(f"cross-check: plain ADD chain gives {v.chain_ratio:.4f}; hardware counters: "
                  + (f"{v.hw_ratio:.4f}" if v.hw_ratio else "not available here"))
    res_table = Table(title="resolution: K=k against K=0, interleaved, default settings", title_justify="left")
    for col in ("k (core cycles)", "diff (TSC)", "95% CI", "resolved"):
        res_table.add_column(col, justify="right")
    for k, d, ci, ok in v.resolution:
        res_table.add_row(str(k), _fmt(d, 2), f"{_fmt(ci[0], 2)}-{_fmt(ci[1], 2)}", "yes" if ok else "no")
    console.print(res_table)
    smallest = v.smallest_resolved
    console.print("smallest difference resolved at 95%: " + (
        f"{smallest} core cycles ({smallest * v.b:.1f} TSC cycles)" if smallest else
        f"none up to {v.resolution[-1][0]} core cycles"))
    if v.passed:
        console.print("[green]PASS[/]: the injected cost comes back out as injected")
        return 0
    for f in v.failures:
        console.print(f"[red]FAIL[/]: {f}")
    return 1


# --- list -------------------------------------------------------------------------

def cmd_list(args) -> int:
    from . import backends
    from .safety import static_verdict
    catalog = _catalog(args)
    doc = {
        "conventions": {n: {"description": c.description, "family": c.family, "fpu": c.fpu,
                            "meant_for": list(c.meant_for), "source": c.source, "hash": c.decl_hash}
                        for n, c in catalog.conventions.items()},
        "leaves": {n: {"description": lf.description, "writes": list(lf.all_writes),
                       "avx_reset": lf.avx_reset} for n, lf in catalog.leaves.items()},
        "backends": {n: b.description for n, b in backends.BACKENDS.items()},
        "safety": {f"{c}/{lf}": static_verdict(conv.resolve(leaf)).text
                   for c, conv in catalog.conventions.items() for lf, leaf in catalog.leaves.items()},
    }
    if args.json:
        _emit_json(doc)
        return 0
    console = _console(args)
    console.print("[bold]conventions[/]")
    for n, c in doc["conventions"].items():
        console.print(f"  {n:<20} {c['description']}  [dim](meant for {', '.join(c['meant_for']) or '-'})[/]")
    console.print("[bold]leaf profiles[/]")
    for n, lf in doc["leaves"].items():
        console.print(f"  {n:<20} {lf['description']}")
    console.print("[bold]backends[/]")
    for n, d in doc["backends"].items():
        console.print(f"  {n:<20} {d}")
    return 0


# --- kmod -------------------------------------------------------------------------

def cmd_kmod(args) -> int:
    from . import kmod
    try:
        if args.action == "build":
            print(f"built {kmod.build(args.kdir)}")
        elif args.action == "load":
            kmod.load(args.ko)
            print(f"loaded: {kmod.DEVICE} {'present' if kmod.device_present() else 'ABSENT'}")
        elif args.action == "unload":
            kmod.unload()
            print("unloaded")
        if args.action == "status" or args.json:
            if args.json:
                _emit_json(kmod.status_doc())
            else:
                print("\n".join(kmod.status_lines()))
    except kmod.KmodError as exc:
        print(f"bench: kmod {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


# --- entry point ----------------------------------------------------------------

def pyperf_opts(sp):
    """pyperf's own options, passed through to its Runner (bench/driver.py)."""
    g = sp.add_argument_group("pyperf")
    g.add_argument("-p", "--processes", "--runs", dest="processes", type=int,
                   help="worker processes per benchmark (default: the suite's runs)")
    g.add_argument("-n", "--values", type=int, help="values per worker (default: the suite's values)")
    g.add_argument("-w", "--warmups", type=int, help="warm-up values per worker (default: the suite's)")
    g.add_argument("--rigorous", action="store_true", help="pyperf: twice the worker processes")
    g.add_argument("--fast", action="store_true", help="pyperf: fewer workers and values")
    g.add_argument("--affinity", metavar="CPU_LIST", help="pyperf: pin workers to these CPUs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="What a SEAMCALL/TDCALL calling convention "
                                "costs per call, and whether it is safe.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, json_help="print one JSON document on stdout, nothing else"):
        sp.add_argument("--json", action="store_true", help=json_help)
        sp.add_argument("-C", "--conventions-file", action="append", metavar="FILE",
                        help="your own conventions YAML (may repeat); compiled on demand")

    r = sub.add_parser("run", help="measure a suite of conventions x backends")
    common(r)
    r.add_argument("--suite", help="suite YAML (default: configs/default.yaml)")
    r.add_argument("--conventions", help="only these conventions (comma-separated)")
    r.add_argument("--backends", help="only these backends (comma-separated)")
    r.add_argument("--leaves", help="these leaf profiles instead of each convention's meant_for")
    pyperf_opts(r)
    r.add_argument("--trace", metavar="FILE", help="also write a Perfetto trace of every sample")
    r.add_argument("-o", "--output", help="results file (default: results/<machine>/<commit>.json)")
    r.add_argument("--no-store", action="store_true", help="do not write a results file")
    r.add_argument("--allow-unsafe", action="store_true", help="time pairs the safety check calls unsafe")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("compare", help="compare two result sets (files, commits or refs like HEAD~1)")
    c.add_argument("a", help="the old results: a file, or a commit/ref with stored results here")
    c.add_argument("b", help="the new results")
    c.add_argument("--json", action="store_true", help="one JSON document on stdout")
    c.add_argument("--markdown", action="store_true", help="a Markdown table, to paste in a review or mail")
    c.add_argument("--benchmark", action="append", metavar="NAME",
                   help="only this benchmark, e.g. seamcall/emulated/vp_info (may repeat)")
    c.add_argument("--threshold", type=float, default=1.0, metavar="PCT",
                   help="changes smaller than this count as the same (default 1%%)")
    c.add_argument("--force", action="store_true",
                   help="compare results from different machines or convention declarations")
    c.add_argument("--fail-on-regression", type=float, metavar="PCT",
                   help="exit 1 if a benchmark is slower by PCT%% or more (CI gating)")
    c.set_defaults(func=cmd_compare)

    a = sub.add_parser("ab", help="A/B two conventions in one pinned process (X, Y interleaved)")
    common(a)
    a.add_argument("x", help="convention X (built in, or from -C FILE)")
    a.add_argument("y", help="convention Y; the ratio reported is Y/X")
    a.add_argument("--backend", default="emulated")
    a.add_argument("--leaf", help="leaf profile (default: the first both are meant for)")
    a.add_argument("--pairs", type=int, default=2000, help="undisturbed XY pairs to measure (default 2000)")
    a.add_argument("--threshold", type=float, default=0.5, metavar="PCT",
                   help="a CI within +-PCT%% of 1 is no difference (default 0.5%%)")
    a.add_argument("--cpu", type=int, help="pin to this CPU (default: the last one allowed)")
    a.add_argument("-p", "--processes", type=int, default=6,
                   help="fresh processes to spread the pairs over (default 6; see docs/compare.md)")
    a.add_argument("--allow-unsafe", action="store_true", help="time pairs the safety check calls unsafe")
    a.add_argument("--trace", metavar="FILE", help="also write a Perfetto trace of every pair")
    a.set_defaults(func=cmd_ab)

    d = sub.add_parser("doctor", help="what this machine is and which backends work here")
    common(d)
    d.set_defaults(func=cmd_doctor)

    v = sub.add_parser("validate", help="prove the harness recovers a known injected cost")
    common(v)
    v.add_argument("--convention", default="seamcall_ret")
    v.add_argument("--backend", default="emulated", choices=["emulated", "emulated_pipelined"])
    v.add_argument("--leaf", default="vp_info")
    v.set_defaults(func=cmd_validate)

    k = sub.add_parser("kmod", help="the kernel module: build, load, unload, status (kmod:* backends)")
    k.add_argument("action", choices=["build", "load", "unload", "status"])
    k.add_argument("--kdir", help="kernel build tree (default: /lib/modules/$(uname -r)/build)")
    k.add_argument("--ko", help="module file to load (default: the one `build` made)")
    k.add_argument("--json", action="store_true", help="status as one JSON document")
    k.set_defaults(func=cmd_kmod)

    ls = sub.add_parser("list", help="known conventions, leaf profiles and backends")
    common(ls)
    ls.set_defaults(func=cmd_list)
    __import__(__package__ + ".check", fromlist=["register"]).register(sub)  # bench check (bench/check.py)

    from . import dashboard, history  # heavy imports inside them are lazy
    history.register(sub)
    dashboard.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .native import NativeError
    from .store import StoreError
    from .compare import CompareError
    from .driver import DriverError
    try:
        return args.func(args)
    except (ConfigError, StoreError, NativeError, ValueError, CompareError, DriverError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bench ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
