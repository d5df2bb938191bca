"""`bench validate`: prove the harness recovers a known injected cost (bench.measure.validate)."""
from __future__ import annotations

from bench.cli import common
from bench.config import configs_dir, parse_suite


def register(sub) -> None:
    v = sub.add_parser("validate", help="prove the harness recovers a known injected cost")
    common.add_common(v)
    v.add_argument("--convention", default="seamcall_ret")
    v.add_argument("--backend", default="emulated", choices=["emulated", "emulated_pipelined"])
    v.add_argument("--leaf", default="vp_info")
    v.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from bench.measure.prepare import Context
    from bench.measure.validate import validate
    from bench.native import backends, machine
    from bench.native.registry import Registry

    # The default suite's settings are what "resolved with the default settings" refers to.
    suite, catalog = parse_suite(configs_dir() / "default.yaml", common.catalog(args), list(backends.BACKENDS))
    machine.pin(suite.settings.cpu)
    ctx = Context(catalog, Registry(catalog), suite.settings)
    v = validate(ctx, args.convention, args.backend, args.leaf)
    if args.json:
        common.emit_json(v.as_dict())
        return 0 if v.passed else 1
    from rich.table import Table
    console = common.console(args)
    table = Table(title=f"known cost recovery: {v.convention} + K dependent one-cycle ops ({v.backend}, {v.leaf})",
                  title_justify="left")
    for col in ("K", "core cycles", "95% CI", "fit a+bK", "off line", "TSC cycles"):
        table.add_column(col, justify="right")
    for ((k, med, ci), res), (_, tsc) in zip(zip(v.points, v.residuals), v.tsc_points):
        fitted = med - res
        table.add_row(str(k), common.fmt(med, 2), f"{common.fmt(ci[0], 2)}-{common.fmt(ci[1], 2)}", common.fmt(fitted, 2),
                      f"{res / fitted:+.2%}", common.fmt(tsc, 2))
    console.print(table)
    console.print(f"fit: a = {v.a:.2f} core cycles (the convention alone, K=0, measured {v.own:.2f}; "
                  f"tolerance 3), b = {v.b:.4f} core cycles per injected one-cycle op (must be 1 within 5%)")
    console.print(f"in TSC cycles: slope {v.b_tsc:.4f} TSC per core cycle against the samples' own reference "
                  f"chains' {v.in_sample_ratio:.4f}; hardware counters: "
                  + (f"{v.hw_slope:.4f} cycles per op" if v.hw_slope else "not available here"))
    console.print(f"the built-in copy of {v.convention} measured {v.builtin:.2f} (same code at other addresses)")
    res_table = Table(title="resolution: K=k against K=0, interleaved, default settings", title_justify="left")
    for col in ("k (core cycles)", "diff (core)", "95% CI", "resolved"):
        res_table.add_column(col, justify="right")
    for k, d, ci, ok in v.resolution:
        res_table.add_row(str(k), common.fmt(d, 2), f"{common.fmt(ci[0], 2)}-{common.fmt(ci[1], 2)}", "yes" if ok else "no")
    console.print(res_table)
    smallest = v.smallest_resolved
    console.print("smallest difference resolved at 95%: " + (
        f"{smallest} core cycles" if smallest else
        f"none up to {v.resolution[-1][0]} core cycles"))
    if v.passed:
        console.print("[green]PASS[/]: the injected cost comes back out as injected")
        return 0
    for f in v.failures:
        console.print(f"[red]FAIL[/]: {f}")
    return 1
