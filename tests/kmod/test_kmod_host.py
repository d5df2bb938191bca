"""Host-side checks of the kernel module's pieces that need no booted kernel: the ioctl
structs as Python packs them against the C header, the kernel flavor of the generated
code, the kmod:* backends without a device, and (where kernel headers are installed) a
warning-free kbuild of the module."""
from __future__ import annotations

import ctypes
import errno
import glob
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from bench.native import backends
from bench.gen import codegen
from bench.native import kmod
from bench.measure import kmod_timer
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
    "sb_krun": (kmod.KRunReq, ["size", "entry", "calls_per_sample", "samples", "flags", "ref_hundreds", "out",
                           "out_len", "emul", "status", "bad_status", "first_bad_status", "warmup_ticks",
                           "budget_ticks", "batches", "cpu", "reserved"]),
    "sb_kcall": (kmod.KCallReq, ["size", "entry", "regs", "status", "cpu", "flags", "reserved"]),
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
    for name in ("SB_IOC_CAPS", "SB_IOC_ENTRY", "SB_IOC_RUN", "SB_IOC_CALL", "SB_KMOD_API_VERSION", "SB_KMAX_SAMPLES",
                 "SB_KMAX_CALLS", "SB_KMAX_LATENCY", "SB_KMAX_REF_HUNDREDS", "SB_KX_NONE", "SB_KSLOTS",
                 "SB_KSLOT_ENTRY", "SB_KSLOT_EMPTY", "SB_KSLOT_REF", "SB_KCALL_COLD"):
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
    assert kmod.IOC_CALL == c_layout[("const", "SB_IOC_CALL")]
    assert kmod.API_VERSION == c_layout[("const", "SB_KMOD_API_VERSION")]
    assert (kmod.MAX_SAMPLES, kmod.MAX_CALLS, kmod.MAX_LATENCY, kmod.MAX_REF_HUNDREDS) == (
        c_layout[("const", "SB_KMAX_SAMPLES")], c_layout[("const", "SB_KMAX_CALLS")],
        c_layout[("const", "SB_KMAX_LATENCY")], c_layout[("const", "SB_KMAX_REF_HUNDREDS")])
    assert kmod.KX_NONE == c_layout[("const", "SB_KX_NONE")]
    assert kmod.KCALL_COLD == c_layout[("const", "SB_KCALL_COLD")]
    # RunResult reads each sample as (entry, empty, reference): the header's slot order
    assert kmod.SLOTS == c_layout[("const", "SB_KSLOTS")]
    assert [c_layout[("const", f"SB_KSLOT_{n}")] for n in ("ENTRY", "EMPTY", "REF")] == [0, 1, 2]


# --- the client against a stand-in for the module's RUN ------------------------------

class FakeModule:
    """Answers RUN as sb_ioctl_run does (the checks that need no kernel) with made-up ticks:
    entry 300, empty 100 ticks per call, reference `tsc_per_core` ticks per ADD."""

    def __init__(self, bad=0, tsc_per_core=2.5):
        self.bad, self.tsc_per_core, self.calls = bad, tsc_per_core, []

    def ioctl(self, req, r):
        assert req == kmod.IOC_RUN
        self.calls.append((r.calls_per_sample, r.samples, r.ref_hundreds))
        if r.size != ctypes.sizeof(kmod.KRunReq) or r.flags or any(r.reserved):
            raise OSError(errno.EINVAL, "")
        if not r.calls_per_sample or not r.samples:
            raise OSError(errno.EINVAL, "")
        if r.calls_per_sample > kmod.MAX_CALLS or r.samples > kmod.MAX_SAMPLES or r.ref_hundreds > kmod.MAX_REF_HUNDREDS:
            raise OSError(errno.E2BIG, "")
        if r.out_len < r.samples * kmod.SLOTS * 8:
            raise OSError(errno.EINVAL, "")
        out = (ctypes.c_uint64 * (r.samples * kmod.SLOTS)).from_address(r.out)
        for s in range(r.samples):
            out[3 * s:3 * s + 3] = [300 * r.calls_per_sample, 100 * r.calls_per_sample,
                                    int(r.ref_hundreds * 100 * self.tsc_per_core)]
        r.bad_status, r.first_bad_status = self.bad, 0x8000FF0000000006 if self.bad else 0
        r.budget_ticks, r.batches, r.cpu = 10**6, 1, 1


_DEVICE = kmod.KmodDevice


def fake_device(module):
    d = _DEVICE.__new__(_DEVICE)
    d.fd = -1
    d._entries = [kmod.KEntry(0, "lean", "vmcall", "vp_info", True, True)]
    d.ioctl = module.ioctl
    return d


def test_run_sends_the_v2_fields_and_reads_triples():
    m = FakeModule()
    r = fake_device(m).run(0, 8, 5, ref_hundreds=12)
    assert r.samples == [(2400, 800, 3000)] * 5 and r.ticks == [2400] * 5 and r.empty == [800] * 5
    assert r.tsc_per_core() == [2.5] * 5 and r.ref_hundreds == 12 and r.bad_status == 0
    assert fake_device(m).run(0, 8, 5).tsc_per_core() is None  # no reference slot
    with pytest.raises(kmod.KmodError, match="above the module's limit") as exc:
        fake_device(m).run(0, 8, 5, ref_hundreds=kmod.MAX_REF_HUNDREDS + 1)
    assert exc.value.errno == errno.E2BIG


def test_ref_hundreds_lasts_about_one_batch_and_stays_in_bounds():
    assert kmod_timer.ref_hundreds_for(100_000, 1.0) == 1000
    assert kmod_timer.ref_hundreds_for(100_000, 2.5) == 400
    assert kmod_timer.ref_hundreds_for(100_000, 0.0) == kmod_timer.ref_hundreds_for(100_000, 0.2)  # clamped estimate
    assert kmod_timer.ref_hundreds_for(100_000, 1e9) == kmod_timer.ref_hundreds_for(100_000, 5)
    assert kmod_timer.ref_hundreds_for(1, 1.0) == 1
    assert kmod_timer.ref_hundreds_for(1e12, 1.0) == kmod.MAX_REF_HUNDREDS


def _measure(monkeypatch, catalog, module):
    from bench.config import Settings
    from bench.measure.model import Spec
    monkeypatch.setattr(kmod_timer, "KmodDevice", lambda: fake_device(module))
    ctx = SimpleNamespace(catalog=catalog, registry=None, settings=Settings(runs=2, values=5, warmups=1, batch_us=50),
                          clocks={"tsc_hz": 2.5e9, "tsc_per_core_cycle": 2.5}, xsave={"enabled": False, "xcr0": 0})
    return kmod_timer.measure_kmod(Spec("lean", "kmod:vmcall", "vp_info"), ctx, SimpleNamespace(safe=True, text="SAFE"))


def test_measure_nets_the_empty_batch_and_keeps_each_samples_ratio(monkeypatch, catalog):
    m = FakeModule()
    meas = _measure(monkeypatch, catalog, m)
    assert len(meas.runs) == 2
    for run in meas.runs:
        # 300 - 100 TSC ticks a call at 2.5 ticks per core cycle: 80 core cycles
        assert run.tsc == [200.0] * 5 and run.baseline == [100.0] * 5
        assert run.values == [80.0] * 5 and run.warmups == [80.0]
        assert run.tsc_per_core == [2.5] * 5  # one per kept value
    calls, _, ref = m.calls[-1]
    # the reference lasts about as long as the entry batch: 300 ticks a call at 2.5 ticks an ADD
    assert ref == kmod_timer.ref_hundreds_for(300 * calls, 2.5) and abs(ref * 100 * 2.5 - 300 * calls) <= 250


def test_measure_refuses_an_error_path(monkeypatch, catalog):
    from bench.measure.model import UnavailableError
    with pytest.raises(UnavailableError, match=r"5 of \d+ vmcall calls returned a status other than "
                                               r"0xfffffffffffffc18 \(the first 0x8000ff0000000006\)"):
        _measure(monkeypatch, catalog, FakeModule(bad=5))


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
    # sc_retry as today's host kernels run it: preemption off around each attempt, the per-CPU
    # cache-state store before the call
    attempt = ("preempt_disable();\n\t\tthis_cpu_write(sb_cache_state_incoherent, true);\n\t\t"
               "status = sb_gen_f")
    assert attempt in text and "static DEFINE_PER_CPU(bool, sb_cache_state_incoherent);" in text


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
