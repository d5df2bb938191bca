"""`bench check`: is each convention safe for each leaf profile, and if not, exactly why.

    bench check [CONVENTION ...] [--leaf LEAF ...] [--static] [--nmi] [--json] [-C FILE]

Prints a matrix convention x leaf profile.  Each cell is the runtime verdict
(one untimed call against the poisoning stub, in a forked child) where the pair
runs in user space here, else the static prediction, marked "(static)".  A
pair where the two disagree is a bug in the checker or the generator: it is
shown as MISMATCH and the command exits 1.
"""
from __future__ import annotations

from bench.cli import common


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="safety matrix: conventions x leaf profiles, SAFE or why not",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("conventions", nargs="*", metavar="CONVENTION",
                   help="conventions to check (default: all known)")
    p.add_argument("--leaf", "--leaves", dest="leaves", action="append", metavar="LEAF",
                   help="leaf profiles (repeat or comma-separate; default: all)")
    p.add_argument("--static", action="store_true", help="only the prediction from the declarations")
    p.add_argument("--nmi", action="store_true",
                   help="also sample calls with a frame-pointer-walking signal handler (RBP hazard demo) "
                        "on the leaves that clobber RBP, or on every --leaf given")
    common.add_common(p)
    p.set_defaults(func=cmd_check)


def _names(values):
    out = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def evaluate(catalog, conv_names, leaf_names, runtime=True, registry=None) -> list:
    """One dict per (convention, leaf), in matrix order."""
    from bench.native import machine
    from bench.native.registry import Registry
    from bench.safety import check_pair
    x = machine.xsave()
    if runtime and registry is None:
        registry = Registry(catalog)
    rows = []
    for cname in conv_names:
        conv = catalog.convention(cname)
        for lname in leaf_names:
            leaf = catalog.leaf(lname)
            pair = check_pair(registry, conv, leaf, runtime=runtime, xsave=x)
            shown = pair["runtime"] or pair["static"]
            verdict = "UNKNOWN" if shown.safe is None else "SAFE" if shown.safe else "UNSAFE"
            rows.append({"convention": cname, "leaf": lname, "meant_for": lname in conv.meant_for,
                         "verdict": verdict, "source": shown.source,
                         "agree": pair["agree"], "static": pair["static"], "runtime": pair["runtime"],
                         "runtime_note": pair["runtime_note"] or (None if runtime else "--static")})
    return rows


def nmi_rows(catalog, conv_names, leaf_names, registry, all_leaves=False) -> list:
    """The walk demo on the leaves that clobber RBP (on every listed leaf with all_leaves)."""
    from bench.safety import CheckFailed, RuntimeUnavailable, nmi_walk
    out = []
    for cname in conv_names:
        conv = catalog.convention(cname)
        for lname in leaf_names:
            leaf = catalog.leaf(lname)
            if not (leaf.clobbers_rbp or all_leaves):
                continue
            try:
                out.append(nmi_walk(registry, conv, leaf))
            except RuntimeUnavailable as exc:
                out.append({"convention": cname, "leaf": lname, "skipped": str(exc)})
            except CheckFailed as exc:  # an unsafe pair may kill its child: a row, not a traceback
                out.append({"convention": cname, "leaf": lname, "skipped": f"crashed: {exc}"})
    return out


def _row_json(r):
    return {"convention": r["convention"], "leaf": r["leaf"], "meant_for": r["meant_for"],
            "verdict": r["verdict"], "source": r["source"], "agree": r["agree"],
            "reasons": list((r["runtime"] or r["static"]).reasons),
            "static": r["static"].as_dict(), "runtime": r["runtime"].as_dict() if r["runtime"] else None,
            "runtime_note": r["runtime_note"]}


def cmd_check(args) -> int:
    catalog = common.catalog(args)
    conv_names = _names(args.conventions) or list(catalog.conventions)
    leaf_names = _names(args.leaves) or list(catalog.leaves)
    for n in conv_names:
        catalog.convention(n)  # unknown names: an error naming them, before anything runs
    for n in leaf_names:
        catalog.leaf(n)
    registry = None
    if not args.static or args.nmi:
        from bench.native.registry import Registry
        registry = Registry(catalog)
    rows = evaluate(catalog, conv_names, leaf_names, runtime=not args.static, registry=registry)
    nmi = nmi_rows(catalog, conv_names, leaf_names, registry, all_leaves=bool(args.leaves)) if args.nmi else None
    mismatches = [r for r in rows if r["agree"] is False]
    if args.json:
        from bench.native import machine
        doc = {"machine": machine.machine_id(), "pairs": [_row_json(r) for r in rows]}
        if nmi is not None:
            doc["nmi"] = nmi
        common.emit_json(doc)
        return 1 if mismatches else 0
    console = common.console(args)
    print_matrix(console, rows, conv_names, leaf_names)
    if nmi is not None:
        print_nmi(console, nmi)
    return 1 if mismatches else 0


def print_matrix(console, rows, conv_names, leaf_names) -> None:
    from rich.table import Table
    from rich.text import Text
    cells = {(r["convention"], r["leaf"]): r for r in rows}
    table = Table(title="safety", title_justify="left",
                  caption="* a leaf the convention is meant for; (static) predicted only, not run here",
                  caption_justify="left")
    table.add_column("convention")
    for lname in leaf_names:
        table.add_column(lname)
    notes = []
    for cname in conv_names:
        line = [cname]
        for lname in leaf_names:
            r = cells[(cname, lname)]
            star = "*" if r["meant_for"] else " "
            if r["agree"] is False:
                notes.append(r)
                line.append(Text(f"MISMATCH [{len(notes)}]{star}", style="bold magenta"))
                continue
            tag = "" if r["source"] == "runtime" else " (static)"
            if r["verdict"] == "SAFE":
                line.append(Text(f"SAFE{tag}{star}", style="green"))
            elif r["verdict"] == "UNKNOWN":  # imported code whose runtime check could not run
                notes.append(r)
                line.append(Text(f"UNKNOWN [{len(notes)}]{star}", style="yellow"))
            else:
                notes.append(r)
                line.append(Text(f"UNSAFE [{len(notes)}]{tag}{star}", style="red"))
        table.add_row(*line)
    console.print(table)
    for i, r in enumerate(notes, 1):
        shown = r["runtime"] or r["static"]
        head = f"[{i}] {r['convention']} x {r['leaf']}"
        if r["agree"] is False:
            console.print(f"{head}: MISMATCH: predicted {r['static'].text}; ran {r['runtime'].text}",
                          markup=False)
            continue
        console.print(f"{head}: " + "; ".join(shown.reasons), markup=False)
        if r["runtime"] is not None and r["static"].safe is not None:
            # what the run could not show (a crash ends the call before the rest is visible)
            seen = r["runtime"].kinds
            more = [f.text for f in r["static"].findings if f.kind not in seen]
            if more:
                console.print("    also predicted: " + "; ".join(more), style="dim", markup=False)
    static_only = sorted({(r["convention"], r["runtime_note"]) for r in rows
                          if r["runtime"] is None and r["runtime_note"]})
    for cname, why in static_only:
        console.print(f"(static) {cname}: not run here: {why}", style="dim", markup=False)


def print_nmi(console, nmi) -> None:
    from rich.table import Table
    table = Table(title="NMI-style frame-pointer walk: garbage walks / samples (SIGALRM every 50 us, the "
                  "handler follows RBP from the interrupted context)", title_justify="left")
    for col, justify in (("convention", "left"), ("leaf", "left"), ("RBP policy", "left"),
                         ("inside the call", "right"), ("after it returns", "right"), ("bad RBP seen", "left")):
        table.add_column(col, justify=justify)
    for row in nmi:
        if "skipped" in row:
            table.add_row(row["convention"], row["leaf"], "-", "-", "-", row["skipped"])
            continue
        cells = []
        for phase in ("in_call", "after_return"):
            p = row[phase]
            cells.append(f"{p['garbage']}/{p['samples']}")
        bad = {p["bad_rbp"] for p in (row["in_call"], row["after_return"]) if p["bad_rbp"] is not None}
        table.add_row(row["convention"], row["leaf"], row["rbp_policy"], *cells,
                      ", ".join(f"{b:#x}" for b in sorted(bad)) or "-")
    console.print(table)
    console.print("Inside the call the leaf's RBP is live whatever the convention saves: only a module "
                  "that keeps RBP (NO_RBP_MOD) closes that window.  After the return, conventions that "
                  "restore RBP (rbp: frame/stack/struct) hand the caller a good chain again; the others "
                  "leave the marker in RBP for the rest of the caller.", markup=False)

