"""`bench kernel import PATH` and `bench kernel history PATH A..B`: the kernel's own TDX call functions.

    bench kernel import PATH [--rev REV] [--name NAME] [-o FILE] [--frame-pointer] [--json]
    bench kernel history PATH A..B [--functions f,g] [--backends ..] [--leaves ..] [--suite F] [-p N -n N] [--bisect] [--json]

PATH is a kernel source tree, a git checkout (with --rev: any commit of it) or a Debian
`linux-source-*.tar.xz`.  Each function of the TDX call assembly (arch/x86/virt/vmx/tdx,
arch/x86/coco/tdx) becomes a convention named like linux-6.12:__seamcall_saved_ret, written to a
conventions file for `bench run/ab/check -C FILE`.

Every commit of A..B of the git checkout PATH that touches the TDX call code (and A, the base)
is imported and measured with this seambench build, by `bench run`'s own code, into
results/kernel/<tree-id>/<machine>/<sha>.json (bench.history.kernel); commits measured before are
reused.  Per function: the series over commits and the steps the decision rule calls slower or
faster where the measured code changed; --bisect names the first commit where it turned slower.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from bench.cli import common
from bench.cli.run import pyperf_opts


def register(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="import the kernel's own TDX call code as conventions",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kernel_command", required=True)
    imp = sub.add_parser("import", help="assemble a kernel tree's TDX call functions in user space",
                         description=__doc__.split("\n\n")[2])
    imp.add_argument("path", metavar="PATH", help="kernel tree, git checkout, or linux-source-*.tar.xz")
    imp.add_argument("--rev", help="a commit of the git checkout at PATH (default: its working tree)")
    imp.add_argument("--name", help="the conventions' prefix (default: linux-VERSION from the Makefile)")
    imp.add_argument("-o", "--output", metavar="FILE",
                     help="conventions file to write (default: NAME.yaml in seambench's cache)")
    imp.add_argument("--frame-pointer", action="store_true",
                     help="FRAME_BEGIN/FRAME_END as with CONFIG_FRAME_POINTER=y (default: =n, as in "
                          "distribution kernels with the ORC unwinder)")
    imp.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    imp.set_defaults(func=cmd_import)
    h = sub.add_parser("history", help="measure a kernel tree's TDX call functions at each commit of A..B",
                       description=__doc__.split("\n\n")[3])
    h.add_argument("path", metavar="PATH", help="a kernel git checkout")
    h.add_argument("range", metavar="A..B", help="the base commit A and the last B (default HEAD)")
    h.add_argument("--functions", help="only these kernel symbols (comma-separated, like __tdcall)")
    h.add_argument("--suite", help="suite YAML for the settings (default: configs/quick.yaml)")
    h.add_argument("--backends", help="these backends (default: the suite's)")
    h.add_argument("--leaves", help="these leaf profiles instead of each function's meant_for")
    pyperf_opts(h)
    h.add_argument("--frame-pointer", action="store_true", help="as for `bench kernel import`")
    h.add_argument("--results", default=None, help="results folder (default: results, or SEAMBENCH_RESULTS)")
    h.add_argument("--rerun", action="store_true", help="measure commits already measured again (a further session)")
    h.add_argument("--bisect", action="store_true",
                   help="per function, find the first commit where it turned slower than at A "
                        "(measures O(log n) commits, as bench history --bisect)")
    h.add_argument("--threshold", type=float, default=1.0, metavar="PCT",
                   help="the smallest change that matters (default 1%%), as for bench compare")
    h.add_argument("--no-progress", action="store_true", help="no progress bar")
    h.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    h.set_defaults(func=cmd_history)


def cmd_import(args) -> int:
    from bench.gen import kernel
    from bench.gen.toolchain import cache_dir
    tree, imported = kernel.import_tree(args.path, rev=args.rev, name=args.name,
                                        frame_pointer=args.frame_pointer)
    prefix = imported[0].name.split(":")[0]
    out = Path(args.output) if args.output else cache_dir() / "kernel" / f"{prefix}.yaml"
    text = kernel.conventions_yaml(tree, imported)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as exc:
        raise ValueError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    rows = [{"convention": i.name, "file": i.function.file, "family": i.function.family,
             "layout": i.function.layout, "prototype": i.function.prototype,
             "meant_for": list(i.function.meant_for), "calls_outside": list(i.undefined)} for i in imported]
    if args.json:
        common.emit_json({"tree": tree.label, "version": tree.version, "conventions_file": str(out),
                          "functions": rows})
        return 0
    console = common.console(args)
    from rich.table import Table
    table = Table(title=f"imported from {tree.label}", title_justify="left")
    for col in ("convention", "file", "layout", "meant for", "prototype"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["convention"], r["file"], r["layout"], ", ".join(r["meant_for"]), r["prototype"])
    console.print(table)
    console.print(f"conventions file: {out}\n  bench check -C {out}\n  bench run -C {out} --conventions "
                  f"{rows[0]['convention']}", markup=False, soft_wrap=True)
    return 0


def _forwarded(args) -> list:
    """The pyperf options of `bench kernel history`, as `bench run` takes them."""
    out = []
    for opt, value in (("-p", args.processes), ("-n", args.values), ("-w", args.warmups)):
        if value is not None:
            out += [opt, str(value)]
    return out + ["--rigorous"] * bool(args.rigorous) + ["--fast"] * bool(args.fast)


def cmd_history(args) -> int:
    from bench.cli import run
    from bench.config import ConfigError, configs_dir, load_builtin, parse_suite
    from bench.gen import kernel
    from bench.gen.toolchain import cache_dir
    from bench.history import kernel as kh
    from bench.history.walk import HistoryError, bisect, git_commit_info, run_history
    from bench.measure.model import DriverError, UnavailableError, UnsafeError
    from bench.native import backends, machine
    from bench.native.errors import NativeError
    from bench.results import layout as rd, store, vcs

    # Everything the user typed is checked before the first commit is imported.
    if not 0 < args.threshold < 100:
        raise ConfigError("--threshold", 0, f"{args.threshold}: a percentage above 0 and below 100")
    suite_path = Path(args.suite) if args.suite else configs_dir() / "quick.yaml"
    catalog = load_builtin()
    suite, _ = parse_suite(suite_path, catalog, list(backends.BACKENDS))
    for name in common.names(args.backends, "--backends") or []:
        common.backend(name, "--backends")
    for name in common.names(args.leaves, "--leaves") or []:
        catalog.leaf(name)
    functions = common.names(args.functions, "--functions")
    repo = kh.checkout(args.path)
    base, shas = kh.kernel_range(repo, args.range)
    tree = kh.tree_id(repo, shas[-1])
    fwd = _forwarded(args)
    request = kh.request_json({
        "suite": suite.name, "suite_sha256": hashlib.sha256(suite_path.read_bytes()).hexdigest()[:16],
        "backends": sorted(common.names(args.backends, "--backends") or []),
        "leaves": sorted(common.names(args.leaves, "--leaves") or []), "functions": sorted(functions or []),
        "pyperf": fwd, "frame_pointer": bool(args.frame_pointer)})
    run_parser = common.Parser(prog="bench")  # `bench run`'s own options and defaults, per commit
    run.register(run_parser.add_subparsers(dest="command", required=True))
    state = vcs.git_state()
    build = state["commit"] + ("-dirty" if state["dirty"] else "")
    measure_errors = (ConfigError, NativeError, DriverError, UnavailableError, UnsafeError, run.NothingToMeasure,
                      kernel.KernelImportError)

    def measure(sha, dest, metadata):
        """Import kernel commit `sha` and measure its functions with `bench run`'s own code."""
        try:
            ktree, imported = kernel.import_tree(repo, rev=sha, name=kh.PREFIX, frame_pointer=args.frame_pointer)
        except kernel.KernelImportError as e:
            raise kh.CommitFailed("import", str(e)) from None
        names = [i.name for i in imported if functions is None or i.function.symbol in functions]
        if not names:
            raise kh.CommitFailed("import", f"--functions {args.functions}: none is in this commit's TDX call code "
                                            f"(it has {', '.join(i.function.symbol for i in imported)})")
        conv = cache_dir() / "kernel" / "history" / f"{tree}-{sha[:12]}.yaml"
        try:
            store.atomic_write(conv, kernel.conventions_yaml(ktree, imported), recover_to=False)
        except OSError as e:
            raise store.StoreError(f"cannot write the conventions file {conv}: {e.strerror or e}") from None
        argv = ["run", "-C", str(conv), "--conventions", ",".join(names), "--suite", str(suite_path), *fwd]
        for opt in ("backends", "leaves", "affinity"):
            if getattr(args, opt):
                argv += [f"--{opt}", getattr(args, opt)]
        try:
            ran = run.execute(run_parser.parse_args(argv), dest=dest, quiet=True,
                              metadata=dict(metadata, kernel_version=ktree.version or "unknown"))
        except measure_errors as e:
            raise kh.CommitFailed("measure", str(e)) from None
        if ran.path is None:
            raise kh.CommitFailed("measure", "no benchmark produced a value")
        return ran.path

    w = kh.KernelWalker(repo, Path(args.results) if args.results else store.results_root(), machine.machine_id(),
                        tree, request, build, measure, rerun=args.rerun)
    every = [base] + shas
    found = []
    if args.bisect:
        if args.rerun or not w.is_done(base):
            w.measure(base)
        names = sorted({n for rf in w.readable(rd.group_by_commit(w.results, w.machine).get(base, []))
                        for n in rf.benchmarks})
        if not names:
            raise HistoryError(f"--bisect: the base {base[:10]} has no results ({w.failure(base) or 'none stored'})")
        w.rerun = False  # the base's run above was the --rerun
        for name in names:
            found.append(bisect(w, every, name))
    else:
        run_history(w, every, progress=not args.no_progress)
    if not rd.load_commits(w.results).keys() >= set(every):  # a --bisect that measured the base only
        rd.save_commits(w.results, git_commit_info(repo, every))
    kh.save_order(w, every)
    series = kh.series(w, every, threshold=args.threshold / 100)
    info = rd.load_commits(w.results)
    measured = {p.sha for s in series for p in s.points}
    commits = [{"commit": sha, "subject": info.get(sha, {}).get("subject", ""),
                "status": "measured" if sha in measured else ("failed" if w.failure(sha) else "not measured"),
                "reason": w.failure(sha)} for sha in every]
    if args.json:
        common.emit_json({"path": str(args.path), "range": args.range, "tree": tree, "base": base,
                          "results": str(w.folder), "commits": commits, "functions": [s.as_dict() for s in series],
                          "bisect": [{"benchmark": r.benchmark, "first_slower": r.bad if r.exact else None,
                                      "good": r.good, "bad": r.bad, "undecided": r.undecided,
                                      "message": r.message, "compare": r.compare_cmd} for r in found]})
    else:
        _print_history(common.console(args), args, tree, w, series, commits, found)
    if args.bisect:
        return 0 if any(r.bad for r in found) else 1
    return 0 if measured else 1


def _print_history(console, args, tree, w, series, commits, found):
    from rich.markup import escape
    from rich.table import Table
    subject = {c["commit"]: c["subject"] for c in commits}
    console.print(f"kernel {escape(str(args.path))} {escape(args.range)}: {len(commits) - 1} commits touching the "
                  f"TDX call code, and the base; results: {escape(str(w.folder))}")
    noises = []
    for s in series:
        table = Table(title=s.benchmark, title_justify="left")
        for col, just in (("commit", "left"), ("version", "left"), ("core cyc", "right"), ("95% CI", "right"),
                          ("code", "left"), ("step from the previous", "left"), ("subject", "left")):
            table.add_column(col, justify=just)
        steps = {st.after: st for st in s.steps}
        for i, p in enumerate(s.points):
            st = steps.get(p.sha)
            if i == 0:
                what = "(first)"
            elif st.code_changed is False:
                what = "[dim]same code[/]"
            elif st.verdict is None:
                what = "code changed; not judged"
            else:
                what = (f"{st.verdict} {st.change:+.1%} ({st.ci95[0]:+.1%} .. {st.ci95[1]:+.1%})"
                        if st.change is not None else st.verdict)
                if st.verdict in ("slower", "faster"):
                    what = f"[bold]{what}[/]"
                elif st.verdict == "unknown":  # what would decide it, as bench compare says
                    what += (f"; ~{st.more_sessions} more runs a side would decide (--rerun adds one)"
                             if st.more_sessions else "; many more runs a side")
                noises.append(st.noise)
            table.add_row(p.sha[:12], escape(p.version), common.fmt(p.median),
                          f"{common.fmt(p.ci95[0])}-{common.fmt(p.ci95[1])}", (p.code or "?")[:10], what,
                          escape(subject.get(p.sha, "")[:50]))
        console.print(table)
    for c in commits:
        if c["status"] == "failed":
            console.print(f"{c['commit'][:12]} {escape(c['reason'])}", markup=False, soft_wrap=True)
    if noises:
        console.print(f"steps where the measured code changed: bench.stats.verdict's rule (threshold "
                      f"{args.threshold:g}%, Holm over {len(noises)} steps); {escape(noises[0])}", soft_wrap=True)
    for r in found:
        console.print(r.message, markup=False, soft_wrap=True)
        if r.compare_cmd:
            console.print(f"  {r.compare_cmd}", markup=False, soft_wrap=True)
