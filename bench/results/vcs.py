"""git, as the results stage needs it: which commit a run measured, and commit facts
(subject, date, parents) for ordering a history.  Every call has a timeout."""
from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT = 60  # seconds; a git that hangs (a lock, a network filesystem) must not hang us


class GitError(RuntimeError):
    """git could not be run, or failed; the message names the command and git's own words."""


def git(*args, cwd=None, input=None, timeout=GIT_TIMEOUT) -> subprocess.CompletedProcess:
    """Run git and return the finished process (text output); the caller reads returncode.
    Raises OSError when git cannot be started and subprocess.TimeoutExpired after `timeout`."""
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=timeout)


def git_output(repo, *args, input=None) -> str:
    """git's stdout in `repo`; any failure (exit status, no git, a timeout) is a GitError."""
    try:
        p = git(*args, cwd=repo, input=input)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {' '.join(args)}: {e}") from None
    if p.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


# The checkout the running `bench` package comes from (an editable install, or PYTHONPATH as
# `bench history` sets it): bench/results/vcs.py -> the folder holding bench/.
SOURCE_TREE = Path(__file__).resolve().parents[2]

# What the tool itself writes into the tree it measures: never the measured code, so changes
# there do not make a run "dirty" (results/ holds results and commits.json; site/ the published
# dashboard).  Kept tracked rather than ignored: commits.json holds facts of commits that may be
# gone from git (rebased branches), and results/ are committed on purpose.
OWN_OUTPUTS = ("results", "site")


def source_tree():
    """(checkout, None), or (None, why) when the running package is not a git checkout of its
    own (an installed wheel, or a folder inside some other repository, e.g. a .venv)."""
    try:
        top = git("rev-parse", "--show-toplevel", cwd=SOURCE_TREE)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"git cannot be run ({e})"
    if top.returncode != 0:
        return None, f"{SOURCE_TREE} is not a git checkout"
    if Path(top.stdout.strip()).resolve() != SOURCE_TREE:
        return None, f"the bench package at {SOURCE_TREE} is not the top of a git checkout"
    return SOURCE_TREE, None


def git_state(cwd=None) -> dict:
    """Commit of the measured tree (by default the checkout of the running package, not the
    current directory) and whether it had uncommitted changes outside OWN_OUTPUTS.  Where it
    cannot be known, commit is "unknown" and "why" says why."""
    why = None
    if cwd is None:
        cwd, why = source_tree()
        if cwd is None:
            return {"commit": "unknown", "dirty": False, "why": why}
    try:
        head = git("rev-parse", "HEAD", cwd=cwd)
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": False, "why": f"{cwd}: {head.stderr.strip()}"}
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *(f":(top,exclude){p}" for p in OWN_OUTPUTS), cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"commit": "unknown", "dirty": False, "why": f"git cannot be run ({e})"}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def git_commit_info(repo, shas) -> dict:
    """sha -> {"subject", "date" (committer, unix), "parents"} for known shas (GitError if git fails)."""
    shas = list(shas)
    if not shas:
        return {}
    out = git_output(repo, "log", "--no-walk=unsorted", "--stdin", "--format=%H%x1f%ct%x1f%P%x1f%s",
                     input="\n".join(shas) + "\n")
    info = {}
    for line in out.splitlines():
        parts = line.split("\x1f")
        if len(parts) == 4:
            sha, ct, parents, subject = parts
            info[sha] = {"subject": subject, "date": int(ct), "parents": parents.split()}
    return info
