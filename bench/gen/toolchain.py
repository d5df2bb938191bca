"""The system C compiler and seambench's cache folder: what the native registry (compiling user
and imported conventions) and the kernel-tree importer (preprocessing the kernel's assembly)
share.  No extension needed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    """~/.cache/seambench (XDG_CACHE_HOME respected; SEAMBENCH_CACHE overrides)."""
    base = os.environ.get("SEAMBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "seambench")
    return Path(base)


def find_compiler() -> str | None:
    """$CC, else cc, gcc or clang: the first found on PATH; None if there is none."""
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None
