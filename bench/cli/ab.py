"""`bench ab X Y`: A/B two conventions, interleaved in one pinned process, in several processes."""
from __future__ import annotations

import os

from bench.cli import common


def register(sub) -> None:
    a = sub.add_parser("ab", help="A/B two conventions in one pinned process (X, Y interleaved)")
    common.add_common(a)
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


def cmd_ab(args) -> int:
    from bench.measure import ab
    from bench.native import machine
    from bench.results import store
    if args.trace:
        store.check_writable(args.trace, "trace")  # before anything is measured
    catalog = common.catalog(args)
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
    lost = None
    if args.trace:
        from bench.report import trace
        try:
            trace.write_ab_trace(args.trace, r)
        except store.RecoveredError as e:
            lost = e  # said after the result, which is not lost
    if args.json:
        common.emit_json(r.as_dict())
    else:
        console = common.console(args)
        ab.print_result(console, r)
        if args.trace and not lost:
            console.print(f"trace: {args.trace} (open in ui.perfetto.dev)")
    if lost:
        raise lost
    return 0
