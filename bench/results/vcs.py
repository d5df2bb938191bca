"""git, as the results stage needs it: which commit a run measured, and commit facts
(subject, date, parents) for ordering a history.  Every call has a timeout."""
from __future__ import annotations

import subprocess

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


def git_state(cwd=None) -> dict:
    """Commit of the measured tree and whether it had uncommitted changes."""
    try:
        head = git("rev-parse", "HEAD", cwd=cwd)
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": False}
        status = git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": "unknown", "dirty": False}
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
