"""The system C compiler and seambench's cache folder: what the native registry (compiling user
and imported conventions) and the kernel-tree importer (preprocessing the kernel's assembly)
share.  No extension needed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.config import cache_dir  # noqa: F401  (the folder lives with the lowest stage that caches)


def find_compiler() -> str | None:
    """$CC, else cc, gcc or clang: the first found on PATH; None if there is none."""
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None
