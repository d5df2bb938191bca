"""`bench`: measure SEAMCALL/TDCALL calling conventions.

    bench run [--suite FILE] [--conventions a,b] [--backends x,y] [--json]
    bench compare A B | bench ab X Y | bench check | bench history RANGE | bench dashboard
    bench doctor [--json]
    bench validate [--json]
    bench list [--json]
    bench kmod build|load|unload|status [--kdir DIR] [--json]
    bench kernel import PATH [--rev REV] [-o FILE]

Every subcommand is a module of this package with `register(subparsers)`, listed once in
COMMANDS.  Command modules import their stages inside the command, so that building the
parser costs nothing and `bench compare`/`bench dashboard` run without the native build.
"""
from __future__ import annotations

import argparse
import os
import sys

from bench.cli import ab, check, compare, dashboard, doctor, history, kernel, kmod, listing, run, validate
from bench.config import ConfigError
from bench.measure.model import ABError, DriverError
from bench.native.errors import NativeError

# In `bench --help` order.
COMMANDS = (run, compare, ab, doctor, validate, kmod, kernel, listing, check, history, dashboard)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="What a SEAMCALL/TDCALL calling convention "
                                "costs per call, and whether it is safe.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported here, not above: the results and report stages load pyperf and numpy, which
    # `bench list` and `bench --help` never need.
    from bench.report.compare import CompareError
    from bench.results.store import StoreError
    try:
        return args.func(args)
    except (ConfigError, StoreError, NativeError, ValueError, CompareError, DriverError, ABError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bench ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
