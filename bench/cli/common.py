"""What every command module of the CLI shares: the catalog with -C files, output, options, and
the checks of user input that run before anything is measured (a bad value is one line naming
the option, exit 2)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench.config import ConfigError, load_builtin


class Parser(argparse.ArgumentParser):
    """argparse, with a bad option said in one line: the usage is one --help away."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def names(value, option):
    """A comma-separated selection: None when the option was not given; an empty selection or a
    name given twice is refused (it would run everything, or time one benchmark twice)."""
    if value is None:
        return None
    out = [v.strip() for v in value.split(",") if v.strip()]
    if not out:
        raise ConfigError(option, 0, f"{value!r} selects nothing; name at least one, or leave {option} out")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ConfigError(option, 0, f"{', '.join(twice)} given twice")
    return out


def backend(name, option):
    """The backend called `name`; an unknown one is refused, naming the valid ones."""
    from bench.native.backends import BACKENDS  # the native stage: only for the commands that measure
    if name not in BACKENDS:
        raise ConfigError(option, 0, f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def whole(low):
    """An argparse type: an integer >= low."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def non_negative(text):
    """An argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text}")
    return value


def _allowed():
    cpus = sorted(os.sched_getaffinity(0))
    return f"this process may use CPU {', '.join(map(str, cpus))}"


def cpu_problem(cpu):
    """Why this process cannot be pinned to `cpu`, or None."""
    return None if cpu in os.sched_getaffinity(0) else f"CPU {cpu} is not allowed: {_allowed()}"


def cpu(text):
    """An argparse type: one CPU this process may run on."""
    value = whole(0)(text)
    why = cpu_problem(value)
    if why:
        raise argparse.ArgumentTypeError(why)
    return value


def cpu_list(text):
    """An argparse type: pyperf's CPU list (0,2-3), each CPU one this process may run on.
    Returned as given: pyperf parses it again."""
    cpus = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list (like 0,2-3)") from None
        if not 0 <= lo <= hi:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} in {text!r} is not a CPU range")
        cpus.update(range(lo, hi + 1))
    bad = sorted(cpus - os.sched_getaffinity(0))
    if bad:
        raise argparse.ArgumentTypeError(f"CPU {', '.join(map(str, bad))} not allowed: {_allowed()}")
    return text


def catalog(args):
    cat = load_builtin()
    for path in getattr(args, "conventions_file", None) or []:
        cat = cat.with_user_file(path)
    return cat


def emit_json(doc):
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def console(args):
    from rich.console import Console
    # With --json, stdout carries one JSON document and nothing else.  Piped output keeps
    # whole lines (rich would otherwise wrap at 80 columns).
    stderr = bool(getattr(args, "json", False))
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 140)


def add_common(sp, json_help="print one JSON document on stdout, nothing else"):
    """--json and -C FILE, for the commands that read conventions."""
    sp.add_argument("--json", action="store_true", help=json_help)
    sp.add_argument("-C", "--conventions-file", action="append", metavar="FILE",
                    help="your own conventions YAML (may repeat); compiled on demand")


def fmt(x, digits=1):
    import math
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"
