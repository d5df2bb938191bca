"""`bench ab X Y`: A/B two conventions, interleaved in one pinned process, in several processes."""
from __future__ import annotations

import os

from bench.cli import common
from bench.config import ConfigError


def register(sub) -> None:
    a = sub.add_parser("ab", help="A/B two conventions in one pinned process (X, Y interleaved)")
    common.add_common(a)
    a.add_argument("x", help="convention X (built in, or from -C FILE)")
    a.add_argument("y", help="convention Y; the ratio reported is Y/X")
    a.add_argument("--backend", default="emulated")
    a.add_argument("--leaf", help="leaf profile (default: the first both are meant for)")
    a.add_argument("--pairs", type=common.whole(1), default=2000, help="undisturbed XY pairs to measure (default 2000)")
    a.add_argument("--threshold", type=common.non_negative, default=0.5, metavar="PCT",
                   help="a CI within +-PCT%% of 1 is no difference (default 0.5%%)")
    a.add_argument("--cpu", type=common.cpu, help="pin to this CPU (default: the last one allowed)")
    a.add_argument("-p", "--processes", type=common.whole(1), default=6,
                   help="fresh processes to spread the pairs over (default 6; see docs/compare.md)")
    a.add_argument("--allow-unsafe", action="store_true", help="time pairs the safety check calls unsafe")
    a.add_argument("--trace", metavar="FILE", help="also write a Perfetto trace of every pair")
    a.set_defaults(func=cmd_ab)


def cmd_ab(args) -> int:
    from bench.measure import ab, serialize
    from bench.measure.runner import refusal
    from bench.native import machine
    from bench.native.registry import Registry
    from bench.results import store
    if args.trace:
        store.check_writable(args.trace, "trace")  # before anything is measured
    catalog = common.catalog(args)
    # Everything the worker processes would fail on, refused here in one line before anything
    # runs: a worker that hits it dies (an instruction this CPU lacks kills it with SIGSEGV).
    cx, cy = catalog.convention(args.x, "X"), catalog.convention(args.y, "Y")
    if args.x == args.y:
        raise ConfigError("Y", 0, f"{args.y} is X too; to A/B identical code, declare a twin under another "
                          "name in -C FILE")
    leaf = catalog.leaf(args.leaf, "--leaf") if args.leaf else catalog.leaf(ab.default_leaf(catalog, args.x, args.y))
    backend = common.backend(args.backend, "--backend")
    if backend.where == "kmod":
        raise ConfigError("--backend", 0, f"{args.backend} is timed in the kernel module, which bench ab "
                          "does not drive; time it with bench run --backends")
    registry = Registry(catalog)
    for option, conv in (("X", cx), ("Y", cy)):
        refused = refusal(registry, conv, leaf, args.backend, args.allow_unsafe)
        if refused:
            what, why = refused
            raise ConfigError("--backend" if what == "backend" else option, 0, why)
    allowed = os.sched_getaffinity(0)
    cpu = machine.pin(args.cpu)
    clocks = machine.clocks()
    # decided once, here, for every worker
    ser = serialize.choice(registry, clocks["probe_floor"])["mode"] if backend.serialize == "auto" else None
    os.sched_setaffinity(0, allowed)
    r = ab.run_ab_processes(args.x, args.y, backend=args.backend, leaf=leaf.name, pairs=args.pairs,
                            processes=args.processes, threshold=args.threshold / 100,
                            conventions_files=getattr(args, "conventions_file", None) or [],
                            allow_unsafe=args.allow_unsafe, cpu=cpu, clocks=clocks, serialize=ser)
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
        out = common.console(args)
        ab.print_result(out, r)
        if args.trace and not lost:
            out.print(f"trace: {args.trace} (open in ui.perfetto.dev)", markup=False)
    if lost:
        raise lost
    return 0
