"""Host-side checks of the kernel module's pieces that need no booted kernel: the ioctl
structs as Python packs them against the C header, the kernel flavor of the generated
code, the kmod:* backends without a device, and (where kernel headers are installed) a
warning-free kbuild of the module."""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess

import pytest

from bench.native import backends
from bench.gen import codegen
from bench.native import kmod
from bench.config import load_builtin

ROOT = kmod.ROOT
KMOD = ROOT / "_native" / "kmod"

FIELDS = {
    "sb_emul_cfg": (kmod.EmulCfg, ["serialize_mode", "latency_iters", "avx_reset_mask", "poison",
                                   "poison_area"]),
    "sb_kcaps": (kmod.Caps, ["size", "api_version", "abi_version", "n_entries", "flags", "xsave_size_xcr0",
                             "xsave_size_max", "xsaves_size", "xcr0", "xinuse", "tsc_khz", "budget_ticks",
                             "vendor", "hv_sig", "kernel", "x"]),
    "sb_kx_cap": (kmod.KxCap, ["state", "reason", "fault", "probed", "status", "why"]),
    "sb_kentry": (kmod.Entry, ["index", "crossing", "runnable", "count", "convention", "crossing_name", "leaf"]),
    "sb_krun": (kmod.KRunReq, ["size", "entry", "calls_per_sample", "samples", "flags", "pad", "out", "out_len",
                           "emul", "status", "warmup_ticks", "budget_ticks", "batches", "cpu", "reserved"]),
}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("uapi")
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "sb_kmod_uapi.h"', "int main(void) {"]
    for s, (_, fields) in FIELDS.items():
        lines.append(f'printf("{s} SIZEOF %zu\\n", sizeof(struct {s}));')
        lines += [f'printf("{s} {f} %zu\\n", offsetof(struct {s}, {f}));' for f in fields]
    for name in ("SB_IOC_CAPS", "SB_IOC_ENTRY", "SB_IOC_RUN", "SB_KMOD_API_VERSION", "SB_KRUN_BASELINE",
                 "SB_KMAX_SAMPLES", "SB_KMAX_CALLS", "SB_KMAX_LATENCY", "SB_KX_NONE"):
        lines.append(f'printf("const {name} %llu\\n", (unsigned long long)({name}));')
    lines.append("return 0; }")
    (d / "t.c").write_text("\n".join(lines))
    subprocess.run([cc, "-Wall", "-Werror", f"-I{KMOD}", f"-I{ROOT / '_native'}", "-o", str(d / "t"), str(d / "t.c")],
                   check=True)
    out = subprocess.run([str(d / "t")], check=True, capture_output=True, text=True).stdout
    return {tuple(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


def test_ioctl_structs_match_the_header(c_layout):
    for s, (cls, fields) in FIELDS.items():
        assert ctypes.sizeof(cls) == c_layout[(s, "SIZEOF")], s
        for f in fields:
            assert getattr(cls, f).offset == c_layout[(s, f)], f"{s}.{f}"


def test_ioctl_numbers_and_limits_match_the_header(c_layout):
    assert kmod.IOC_CAPS == c_layout[("const", "SB_IOC_CAPS")]
    assert kmod.IOC_ENTRY == c_layout[("const", "SB_IOC_ENTRY")]
    assert kmod.IOC_RUN == c_layout[("const", "SB_IOC_RUN")]
    assert kmod.API_VERSION == c_layout[("const", "SB_KMOD_API_VERSION")]
    assert kmod.RUN_BASELINE == c_layout[("const", "SB_KRUN_BASELINE")]
    assert (kmod.MAX_SAMPLES, kmod.MAX_CALLS, kmod.MAX_LATENCY) == (
        c_layout[("const", "SB_KMAX_SAMPLES")], c_layout[("const", "SB_KMAX_CALLS")],
        c_layout[("const", "SB_KMAX_LATENCY")])
    assert kmod.KX_NONE == c_layout[("const", "SB_KX_NONE")]


@pytest.fixture(scope="module")
def kernel_unit():
    entries = codegen.plan(load_builtin(), "kernel")
    return entries, codegen.generate(entries, "kernel")


def test_kernel_flavor_issues_only_the_module_crossings(kernel_unit):
    entries, _ = kernel_unit
    assert {e.crossing.name for e in entries} == set(kmod.KX)
    # every built-in convention, kernel_fpu included, has wrappers for the emulated stub
    convs = {e.resolved.conv.name for e in entries if e.crossing.name == "emulated"}
    assert convs == set(load_builtin().conventions)


def test_kernel_flavor_leaves_out_wrappers_that_would_oops(kernel_unit):
    entries, _ = kernel_unit
    keys = {e.key for e in entries}
    assert ("tdcall", "emulated", "migration") not in keys  # RBX, R12-R15 written, nothing saves them
    assert ("lean", "emulated", "vp_enter") in keys          # lean pushes RBP when the leaf clobbers it
    for e in entries:
        assert not codegen.kernel_unsafe(e.resolved), e.key


def test_kernel_flavor_text(kernel_unit):
    entries, text = kernel_unit
    rows = re.findall(r"^\tX\((\d+), (sb_gen_[fw]\d+), (0x[0-9a-f]+)ULL\) \\$", text, re.M)
    assert [int(r[0]) for r in rows] == list(range(len(entries)))
    assert text.rstrip().endswith('#include "sb_kloop.h"')
    assert '"ret\\n"' not in text  # objtool: returns go through ASM_RET
    fixups = len(re.findall(r"_ASM_EXTABLE_FAULT\(\.Lsb_x_(\d+), \.Lsb_fault_\1\)", text))
    assert fixups == sum(e.crossing.name != "emulated" for e in entries)
    assert "#define offsetof" not in text


def test_kmod_backends_without_the_device(monkeypatch):
    monkeypatch.setattr(kmod, "DEVICE", "/nonexistent/seambench")
    p = backends.probe("kmod:seamcall", registry=None)
    assert not p.available and "absent" in p.reason
    assert not any(n.startswith("kmod:") for n in backends.default_names())
    assert {"kmod:emulated", "kmod:seamcall", "kmod:tdcall", "kmod:vmcall"} <= set(backends.BACKENDS)


def test_device_errors_name_the_problem(monkeypatch, tmp_path):
    with pytest.raises(kmod.KmodError, match="bench kmod load"):
        kmod.KmodDevice(str(tmp_path / "seambench"))


def _kdirs():
    return sorted(d for d in glob.glob("/lib/modules/*/build") if os.path.exists(os.path.join(d, "Makefile")))


@pytest.mark.skipif(not _kdirs(), reason="no kernel headers installed (/lib/modules/*/build)")
def test_module_builds_warning_free_against_installed_headers(tmp_path):
    kdir = _kdirs()[-1]
    dest = tmp_path / "seambench"
    subprocess.run(["make", "-s", "-C", str(KMOD), "dkms-tree", f"DEST={dest}", f"PYTHON={os.sys.executable}"],
                   check=True, capture_output=True)
    res = subprocess.run(["make", "-C", str(dest), f"KDIR={kdir}"], capture_output=True, text=True)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    warnings = [ln for ln in log.splitlines() if re.search(r"\b(warning|error):", ln, re.I) and "Skipping BTF" not in ln]
    assert not warnings, warnings[:10]
    assert (dest / "seambench.ko").exists()
