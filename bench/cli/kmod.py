"""`bench kmod build|load|unload|status|fpu-cold`: the kernel module behind the kmod:* backends.

    bench kmod build [--kdir DIR] [-C IMPORTED.yaml [--conventions a,b] [--any-release]]
    bench kmod fpu-cold [--pairs N] [--vectors none|sse|avx|avx512] [--leaf LEAF] [--json]

With -C, the module also carries the imported kernel functions of that file (bench kernel
import), assembled from the tree's own files with the headers at --kdir (gen/ring0.py): only
where the tree is the kernel those headers are of (same VERSION.PATCHLEVEL.SUBLEVEL, unless
--any-release), and only for the leaf profiles where the runtime check, run here first, saw the
function keep the C calling convention (Resolved.abi_breaks: in ring 0 a break is the module's
own registers corrupted).

fpu-cold times kernel_fpu the way a caller meets it the first time after user code ran: one
call per ioctl, timed from user space around it, with the user's vector registers live, so
kernel_fpu_begin() must save them and the return to user space restores them.  It alternates
that with seamcall_saved_ret (the same call without the bracket) on kmod:emulated; the paired
difference is the cold bracket.  `bench run --backends kmod:emulated --conventions kernel_fpu`
measures the steady state instead (state already saved, every call alike).
"""
from __future__ import annotations

import json
import sys

from bench.cli import common


def register(sub) -> None:
    k = sub.add_parser("kmod", help="the kernel module: build, load, unload, status (kmod:* backends)",
                       description=__doc__.split("\n\n")[0])
    k.add_argument("action", choices=["build", "load", "unload", "status", "fpu-cold"])
    k.add_argument("--kdir", help="kernel build tree (default: /lib/modules/$(uname -r)/build)")
    k.add_argument("--ko", help="module file to load (default: the one `build` made)")
    k.add_argument("--json", action="store_true", help="status as one JSON document")
    k.add_argument("-C", "--conventions-file", action="append", metavar="FILE",
                   help="build: also the imported kernel functions of this file (bench kernel import)")
    k.add_argument("--conventions", metavar="A,B",
                   help="build -C: only these imported conventions (default: all of the file)")
    k.add_argument("--any-release", action="store_true",
                   help="build -C: take a tree whose release differs from the headers' (its code may not "
                        "be what that kernel runs)")
    k.add_argument("--pairs", type=int, default=2000,
                   help="fpu-cold: calls of each side (default 2000)")
    k.add_argument("--vectors", choices=list(VECTORS), help="fpu-cold: the vector registers user code leaves "
                   "live before each call (default: the widest this CPU has)")
    k.add_argument("--leaf", default="migration", help="fpu-cold: the leaf profile (default migration)")
    k.set_defaults(func=cmd_kmod)


VECTORS = {"none": 0, "sse": 1, "avx": 2, "avx512": 3}


def cmd_kmod(args) -> int:
    from bench.native import kmod
    if args.action == "fpu-cold":
        return cmd_fpu_cold(args, kmod)
    if args.action != "build" and (args.conventions_file or args.conventions or args.any_release):
        print("bench: kmod: -C, --conventions and --any-release go with `build` only", file=sys.stderr)
        return 2
    try:
        if args.action == "build":
            ring0 = None
            if args.conventions_file:
                ring0 = ring0_plan(args, kmod)
            elif args.conventions or args.any_release:
                print("bench: kmod build: --conventions and --any-release need -C FILE", file=sys.stderr)
                return 2
            print(f"built {kmod.build(args.kdir, conventions=args.conventions_file, ring0=ring0)}")
        elif args.action == "load":
            kmod.load(args.ko)
            print(f"loaded: {kmod.DEVICE} {'present' if kmod.device_present() else 'ABSENT'}")
        elif args.action == "unload":
            kmod.unload()
            print("unloaded")
        if args.action == "status" or args.json:
            if args.json:
                common.emit_json(kmod.status_doc())
            else:
                print("\n".join(kmod.status_lines()))
    except kmod.KmodError as exc:
        print(f"bench: kmod {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_fpu_cold(args, kmod) -> int:
    import statistics
    from bench.native import machine
    from bench.stats.summary import median_and_ci
    if args.pairs < 1 or args.pairs > 100000:
        print("bench: kmod fpu-cold: --pairs must be 1..100000", file=sys.stderr)
        return 2
    cpu = machine.cpu()
    widest = "avx512" if cpu["avx512f"] else "avx" if cpu["avx"] and cpu["osxsave"] else "sse"
    vectors = args.vectors or widest
    if VECTORS[vectors] > VECTORS[widest]:
        print(f"bench: kmod fpu-cold: --vectors {vectors}: this CPU has at most {widest}", file=sys.stderr)
        return 2
    try:
        with kmod.KmodDevice() as d:
            hz = d.caps()["tsc_khz"] * 1e3 or machine.clocks()["tsc_hz"]
            base = d.find("seamcall_saved_ret", "emulated", args.leaf)
            fpu = d.find("kernel_fpu", "emulated", args.leaf)
            d.cold_pairs(base, fpu, [0] * 13, min(args.pairs, 50), VECTORS[vectors])  # warm the path
            ta, tb = d.cold_pairs(base, fpu, [0] * 13, args.pairs, VECTORS[vectors])
    except kmod.KmodError as exc:
        print(f"bench: kmod fpu-cold: {exc}", file=sys.stderr)
        return 1
    diff = [b - a for a, b in zip(ta, tb)]
    med, lo, hi = median_and_ci(diff)
    doc = {"leaf": args.leaf, "vectors": vectors, "pairs": args.pairs, "tsc_hz": hz,
           "base_ticks": statistics.median(ta), "kernel_fpu_ticks": statistics.median(tb),
           "cold_bracket_ticks": med, "cold_bracket_ci95": [lo, hi], "cold_bracket_ns": med / hz * 1e9}
    if args.json:
        common.emit_json(doc)
        return 0
    print(f"one CALL per ioctl, timed from user space, {vectors} registers live before each "
          f"({args.pairs} pairs, leaf {args.leaf}):")
    print(f"  seamcall_saved_ret  {doc['base_ticks']:,.0f} TSC ticks per ioctl (median)")
    print(f"  kernel_fpu          {doc['kernel_fpu_ticks']:,.0f}")
    print(f"  cold bracket        {med:,.0f} ({lo:,.0f} .. {hi:,.0f}, 95% CI) TSC ticks = "
          f"{doc['cold_bracket_ns']:,.0f} ns: the XSAVE of the user's registers and their restore on "
          "the way back to user space")
    return 0


def ring0_plan(args, kmod):
    """Check the imported conventions of -C for the module; write what may go in (the file the
    generator reads, codegen --ring0) and return its path.  Bad input raises ConfigError."""
    from bench import safety
    from bench.config import ConfigError
    from bench.gen import codegen, ring0
    from bench.native.errors import NativeError
    from bench.native.registry import Registry
    catalog = common.catalog(args)
    files = ", ".join(args.conventions_file)
    imported = [c for c in catalog.conventions.values() if c.imported]
    wanted = common.names(args.conventions, "--conventions")
    if wanted:
        for n in wanted:
            if not catalog.convention(n).imported:
                raise ConfigError("--conventions", 0, f"{n} is not an imported convention of {files}")
        imported = [c for c in imported if c.name in wanted]
    if not imported:
        raise ConfigError("-C", 0, f"{files}: no imported convention (`bench kernel import` writes them)")
    kdir = args.kdir or kmod.default_kdir()
    have = ring0.headers_release(kdir)
    if not have:
        raise ConfigError("--kdir", 0, f"{kdir}: no kernel build tree with a release in its Makefile")
    keep = []
    for conv in imported:
        why = ring0.refusal(conv)
        if not why and conv.imported.release != have and not args.any_release:
            raise ConfigError("-C", 0, f"{files}: {conv.name} is from Linux {conv.imported.release or '?'}, the headers "
                             f"at {kdir} are {have}: the module carries only the code of the kernel it is built "
                             "for (--any-release to build it anyway)")
        if why:
            print(f"bench: kmod build: leaving out {conv.name}: {why}", file=sys.stderr)
        else:
            keep.append(conv)
    registry, checked = Registry(catalog), []
    for conv in keep:
        for leaf in catalog.leaves.values():
            try:
                breaks = safety.abi_breaks_seen(safety.runtime_verdict(registry, conv, leaf))
            except (safety.RuntimeUnavailable, safety.CheckFailed, NativeError) as exc:
                print(f"bench: kmod build: leaving out {conv.name}/{leaf.name}: runtime check: {exc}",
                      file=sys.stderr)
                continue
            checked.append({"convention": conv.name, "leaf": leaf.name,
                            "abi_breaks": [[c, list(r)] for c, r in breaks]})
    plan = codegen.plan(catalog, "kernel", ring0=codegen.read_ring0_doc({"checked": checked}))
    going = sorted({"/".join(e.key) for e in plan if e.resolved.conv.imported})
    if not going:
        raise ConfigError("-C", 0, f"{files}: none of its functions keeps the C calling convention for any leaf "
                         "profile in the runtime check, so none may run in ring 0")
    print(f"bench: kmod build: imported code in ring 0 (headers {have}): {', '.join(going)}", file=sys.stderr)
    out = kmod.KMOD_DIR / ".ring0.json"  # an input of the build: `make clean` keeps it
    out.write_text(json.dumps({"headers": have, "kdir": kdir, "checked": checked}, indent=1) + "\n")
    return out
