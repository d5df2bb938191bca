"""`bench compare A B`: two result sets, benchmark by benchmark (bench.report.compare).

Needs no native code for two files; a commit or ref is looked up under this machine's name,
which bench.native.machine gives (or SEAMBENCH_MACHINE, where the extension is not built)."""
from __future__ import annotations

import os
import sys

from bench.cli import common


def register(sub) -> None:
    c = sub.add_parser("compare", help="compare two result sets (files, commits or refs like HEAD~1)")
    c.add_argument("a", help="the old results: a file, or a commit/ref with stored results here")
    c.add_argument("b", help="the new results")
    c.add_argument("--json", action="store_true", help="one JSON document on stdout")
    c.add_argument("--markdown", action="store_true", help="a Markdown table, to paste in a review or mail")
    c.add_argument("--benchmark", action="append", metavar="NAME",
                   help="only this benchmark, e.g. seamcall/emulated/vp_info (may repeat)")
    c.add_argument("--threshold", type=float, default=1.0, metavar="PCT",
                   help="the smallest change that matters; slower/faster/same are decided at half of it "
                        "either side (default 1%%)")
    c.add_argument("--force", action="store_true",
                   help="compare results from different machines or convention declarations")
    c.add_argument("--until-decided", type=int, metavar="RUNS", default=0,
                   help="while a row is unknown, measure each side (a commit) once more, up to RUNS times "
                        "(bench history's worktree; files are never re-measured: the command to run is printed)")
    c.add_argument("--fail-on-regression", type=float, metavar="PCT",
                   help="exit 1 if a benchmark is slower by PCT%% or more (CI gating)")
    c.set_defaults(func=cmd_compare)


def machine_name() -> str:
    """This machine's name for its results folder: SEAMBENCH_MACHINE, else bench.native's."""
    if os.environ.get("SEAMBENCH_MACHINE"):
        return os.environ["SEAMBENCH_MACHINE"]
    from bench.native import machine  # only for a commit or ref: two files need no build
    return machine.machine_id()


def cmd_compare(args) -> int:
    from bench.report import compare
    if not 0 < args.threshold < 100:
        raise compare.CompareError(f"--threshold {args.threshold}: a percentage above 0 and below 100")
    a = compare.resolve(args.a, machine_name)
    b = compare.resolve(args.b, machine_name)
    report = compare.compare(a, b, threshold=args.threshold / 100, force=args.force, only=args.benchmark)
    for _ in range(max(args.until_decided, 0)):
        if not report.undecided():
            break
        if not (a.commit and b.commit):
            more = max((r.more_sessions or 1) for r in report.undecided())
            print(f"bench compare: {len(report.undecided())} row(s) unknown; a results file is not re-measured: "
                  f"add about {more} run(s) a side (`bench run -o` beside each file, or name commits)",
                  file=sys.stderr)
            break
        from bench.history.walk import HistoryError, Walker
        w = Walker(".", results=a.store_at[0], machine=a.store_at[1], log=lambda m: print(m, file=sys.stderr))
        for side in (a, b):
            print(f"bench compare: unknown rows remain; another run of {side.commit[:12]}", file=sys.stderr)
            try:
                o = w.measure(side.commit)
            except HistoryError as e:
                print(f"bench compare: error: {e}", file=sys.stderr)
                return 2
            if o.status != "measured":
                print(f"bench compare: the run of {side.commit[:12]} failed; log: {o.path}", file=sys.stderr)
                return 2
        a = compare.resolve(args.a, machine_name)
        b = compare.resolve(args.b, machine_name)
        report = compare.compare(a, b, threshold=args.threshold / 100, force=args.force, only=args.benchmark)
    if args.json:
        common.emit_json(report.as_dict())
    elif args.markdown:
        sys.stdout.write(compare.markdown(report))
    else:
        compare.print_table(common.console(args), report)
    if args.fail_on_regression is not None:
        bad = compare.regressions(report, args.fail_on_regression)
        if bad:
            print(f"bench: {len(bad)} regression(s) of {args.fail_on_regression}% or more: "
                  + ", ".join(f"{r.name} {r.change:+.2%}" for r in bad), file=sys.stderr)
            return 1
    return 0
