"""`bench list`: known conventions, leaf profiles and backends, and each pair's predicted safety."""
from __future__ import annotations

from bench.cli import common


def register(sub) -> None:
    ls = sub.add_parser("list", help="known conventions, leaf profiles and backends")
    common.add_common(ls)
    ls.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from bench.native import backends
    from bench.safety import static_verdict
    cat = common.catalog(args)
    doc = {
        "conventions": {n: {"description": c.description, "family": c.family, "fpu": c.fpu,
                            "meant_for": list(c.meant_for), "source": c.source, "hash": c.decl_hash}
                        for n, c in cat.conventions.items()},
        "leaves": {n: {"description": lf.description, "writes": list(lf.all_writes),
                       "avx_reset": lf.avx_reset} for n, lf in cat.leaves.items()},
        "backends": {n: b.description for n, b in backends.BACKENDS.items()},
        "safety": {f"{c}/{lf}": static_verdict(conv.resolve(leaf)).text
                   for c, conv in cat.conventions.items() for lf, leaf in cat.leaves.items()},
    }
    if args.json:
        common.emit_json(doc)
        return 0
    from rich.markup import escape  # descriptions come from user files (-C FILE)
    console = common.console(args)
    console.print("[bold]conventions[/]")
    for n, c in doc["conventions"].items():
        console.print(f"  {n:<20} {escape(c['description'])}  [dim](meant for {', '.join(c['meant_for']) or '-'})[/]")
    console.print("[bold]leaf profiles[/]")
    for n, lf in doc["leaves"].items():
        console.print(f"  {n:<20} {lf['description']}", markup=False)
    console.print("[bold]backends[/]")
    for n, d in doc["backends"].items():
        console.print(f"  {n:<20} {d}")
    return 0
