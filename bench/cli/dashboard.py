"""`bench dashboard`: a static HTML site from results/ (bench.report.dashboard)."""
from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="write a static HTML dashboard from results/",
                              description="``bench dashboard``: a static site built from ``results/`` and nothing else.")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("-o", "--out", default=None,
                   help="output folder (default: build/site, untracked; see docs for publishing)")
    p.add_argument("--repo", default=".", help="git repository for commits missing from "
                   "results/commits.json (default: .; 'none' to not use git)")
    p.add_argument("--threshold", type=float, default=0.01,
                   help="smallest relative step reported as a change (default 0.01 = 1%%)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="reader processes (default: CPUs)")
    p.add_argument("--cache", default=".cache/dashboard/summaries.json",
                   help="per-commit summary cache, so rebuilds read only new files "
                        "(default: .cache/dashboard/summaries.json; 'none' to disable)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args) -> int:
    from bench.report.dashboard import DEFAULT_OUT, build
    from bench.results import store

    if not Path(args.results).is_dir():
        print(f"bench dashboard: error: no results folder at {args.results}", file=sys.stderr)
        return 2
    out = args.out or DEFAULT_OUT
    store.check_writable(Path(out) / "index.html", "dashboard")  # before reading every result
    build(args.results, out, repo=None if args.repo == "none" else args.repo,
          threshold=args.threshold, jobs=args.jobs, cache=None if args.cache == "none" else args.cache)
    return 0
