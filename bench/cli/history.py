"""`bench history RANGE [--bisect BENCHMARK]`: every commit of a range measured with its own code
(bench.history.walk)."""
from __future__ import annotations

import platform
import sys


def default_machine() -> str:
    """The machine name `bench run` uses (bench.native.machine) where the extension is built,
    else the host name: the walk follows the name the results give, once one is measured."""
    try:
        from bench.native import machine  # optional here: reading stored results needs no build
    except ImportError:
        return platform.node() or "unknown"
    return machine.machine_id()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "history", help="measure each commit of a git range into results/",
        description="Measure each commit of RANGE (v1..v2, HEAD~20.., a rev, or a file of revs) with "
                    "that commit's own code, storing results/<machine>/<sha>.json.gz.")
    p.add_argument("range", metavar="RANGE")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--repo", default=".", help="git repository (default: .)")
    p.add_argument("--suite", default="configs/quick.yaml",
                   help="suite file, relative to each commit's tree (default: configs/quick.yaml)")
    p.add_argument("--machine", default=None, help="machine name (default: as bench run names it)")
    p.add_argument("--rerun", action="store_true", help="measure commits already recorded again")
    p.add_argument("--retry-failed", action="store_true", help="measure commits recorded as failed again")
    p.add_argument("--all-parents", action="store_true",
                   help="walk merged branches too (default: first-parent history only)")
    p.add_argument("--worktree", default=None, help="cached worktree (default: .cache/history/worktree)")
    p.add_argument("--build-cmd", default=None,
                   help="shell command building a commit in place (default: setup.py build_ext --inplace)")
    p.add_argument("--run-cmd", default=None,
                   help="shell command measuring a commit; {python}, {suite}, {out} are filled in "
                        "(default: {python} -m bench run --suite {suite} -o {out})")
    p.add_argument("--timeout", type=float, default=900, help="seconds per build or run (default 900)")
    p.add_argument("--bisect", metavar="BENCHMARK", default=None,
                   help="find the first commit where BENCHMARK turns slower than on the range's base")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_history)


def cmd_history(args) -> int:
    from bench.history.walk import HistoryError, Walker, bisect, resolve_range, run_history

    try:
        w = Walker(args.repo, args.results, machine=args.machine or default_machine(), suite=args.suite,
                   worktree=args.worktree, build_cmd=args.build_cmd, run_cmd=args.run_cmd,
                   timeout=args.timeout, rerun=args.rerun, retry_failed=args.retry_failed)
        shas = resolve_range(w.repo, args.range, first_parent=not args.all_parents,
                             include_base=bool(args.bisect))
        if not shas:
            print(f"bench history: {args.range} names no commits", file=sys.stderr)
            return 2
        if args.bisect:
            r = bisect(w, shas, args.bisect)
            print(r.message)
            if r.compare_cmd:
                print(f"  {r.compare_cmd}")
            print(f"  ({r.measured} commits measured for this bisect, {len(shas)} in the range)")
            return 0 if r.bad else 1
        outcomes = run_history(w, shas, progress=not args.no_progress)
        return 1 if outcomes and all(o.status == "failed" for o in outcomes) else 0
    except HistoryError as e:
        print(f"bench history: error: {e}", file=sys.stderr)
        return 2
