"""`bench kernel import PATH`: the kernel's own TDX call functions, as conventions.

    bench kernel import PATH [--rev REV] [--name NAME] [-o FILE] [--frame-pointer] [--json]

PATH is a kernel source tree, a git checkout (with --rev: any commit of it) or a Debian
`linux-source-*.tar.xz`.  Each function of the TDX call assembly (arch/x86/virt/vmx/tdx,
arch/x86/coco/tdx) becomes a convention named like linux-6.12:__seamcall_saved_ret, written to a
conventions file for `bench run/ab/check -C FILE`.
"""
from __future__ import annotations

from pathlib import Path

from bench.cli import common


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
