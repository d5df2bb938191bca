"""`bench`: measure SEAMCALL/TDCALL calling conventions.

    bench run [--suite FILE] [--conventions a,b] [--backends x,y] [--json]
    bench compare A B | bench ab X Y | bench check | bench history RANGE | bench dashboard
    bench doctor [--json]
    bench validate [--json]
    bench list [--json]
    bench kmod build|load|unload|status [--kdir DIR] [--json]
    bench kernel import PATH [--rev REV] [-o FILE] | bench kernel history PATH A..B [--bisect]

Every subcommand is a module of this package with `register(subparsers)`, listed once in
COMMANDS.  Command modules import their stages inside the command, so that building the
parser costs nothing and `bench compare`/`bench dashboard` run without the native build.
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.cli import ab, check, common, compare, dashboard, doctor, history, kernel, kmod, listing, run, validate

# In `bench --help` order.
COMMANDS = (run, compare, ab, doctor, validate, kmod, kernel, listing, check, history, dashboard)


def build_parser() -> argparse.ArgumentParser:
    p = common.Parser(prog="bench", description="What a SEAMCALL/TDCALL calling convention "
                      "costs per call, and whether it is safe.")
    debug = "show the traceback of an error, not one line (for developers)"
    p.add_argument("--debug", action="store_true", help=debug)
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    for sp in sub.choices.values():  # also after the command; SUPPRESS keeps a --debug given before it
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    return p


def project_errors() -> tuple:
    """Every error a stage raises for input it cannot take or a machine that cannot do it; each
    is one line to the user.  Imported only when an exception is on its way (the results and
    report stages load pyperf and numpy, which `bench list` and `bench --help` never need).
    Anything else is a bug in bench and keeps its traceback."""
    from bench.cli.run import NothingToMeasure
    from bench.config import ConfigError
    from bench.gen.kernel import KernelImportError
    from bench.history.walk import HistoryError
    from bench.measure.model import ABError, DriverError, UnavailableError, UnsafeError
    from bench.native.errors import NativeError
    from bench.native.kmod import KmodError
    from bench.report.compare import CompareError
    from bench.results.layout import ResultsFileError
    from bench.results.store import StoreError
    from bench.results.vcs import GitError
    from bench.safety import CheckFailed, RuntimeUnavailable
    return (ConfigError, StoreError, ResultsFileError, GitError, NativeError, KmodError, CheckFailed,
            RuntimeUnavailable, UnsafeError, UnavailableError, DriverError, ABError, CompareError,
            HistoryError, KernelImportError, NothingToMeasure)


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (said in one line): the status, in-process too
        return exc.code
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bench ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.debug or not isinstance(exc, project_errors()):
            raise
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
