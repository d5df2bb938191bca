"""Builds bench.native._core: the Cython wrapper, the timed loop in C, and the convention
wrappers that bench.gen.codegen generates from configs/ at build time (never committed)."""
import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join("_native", "gen", "sb_generated.c")


def generate():
    sys.path.insert(0, HERE)
    from bench.gen import codegen  # noqa: E402  (needs the source tree, not an installed copy)
    rc = codegen.main(["--flavor", "user", "-o", os.path.join(HERE, GENERATED)])
    if rc:
        raise SystemExit(f"code generation failed ({rc})")


class BuildExt(build_ext):
    def run(self):
        generate()
        super().run()


class BuildPy(build_py):
    """Ships the built-in YAML and the ABI header inside the package, for non-editable installs."""

    def run(self):
        super().run()
        pkg = os.path.join(self.build_lib, "bench")
        os.makedirs(os.path.join(pkg, "_configs"), exist_ok=True)
        for name in ("conventions.yaml", "leaves.yaml", "default.yaml", "quick.yaml"):
            shutil.copy(os.path.join(HERE, "configs", name), os.path.join(pkg, "_configs", name))
        os.makedirs(os.path.join(pkg, "_include"), exist_ok=True)
        shutil.copy(os.path.join(HERE, "_native", "sb_abi.h"), os.path.join(pkg, "_include", "sb_abi.h"))


if not os.path.exists(os.path.join(HERE, GENERATED)):
    generate()  # cythonize below needs the file to exist

from Cython.Build import cythonize  # noqa: E402

core = Extension(
    "bench.native._core",
    sources=["_native/_core.pyx", "_native/measure.c", "_native/check.c", GENERATED],
    include_dirs=["_native"],
    extra_compile_args=["-O2", "-fvisibility=hidden", "-Wno-unused-function"],
)

setup(
    ext_modules=cythonize([core], language_level=3, quiet=True),
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
