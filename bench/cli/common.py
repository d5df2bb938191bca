"""What every command module of the CLI shares: the catalog with -C files, output, options."""
from __future__ import annotations

import json
import sys

from bench.config import load_builtin


def split(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


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
