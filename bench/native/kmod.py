"""Client of seambench's kernel module (/dev/seambench) and its management.

The ioctl structures mirror _native/kmod/sb_kmod_uapi.h (tests/kmod checks the
layouts against the C header).  `bench kmod build|load|unload|status` are the
functions at the bottom; the `kmod:*` backends use KmodDevice (probed here, timed by
bench.measure.kmod_timer).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEVICE = "/dev/seambench"
MODULE = "seambench"
ROOT = Path(__file__).resolve().parents[2]  # the source checkout: bench/native/kmod.py
KMOD_DIR = ROOT / "_native" / "kmod"

API_VERSION = 4
KX = {"emulated": 0, "seamcall": 1, "tdcall": 2, "vmcall": 3, "vmmcall": 4}
# The only leaf each real crossing is issued with (sb_rules[] in sb_main.c).
KMOD_LEAF = {"seamcall": "sys_rd", "tdcall": "vp_info"}
KX_NONE = 0xFFFFFFFF
STATES = {0: "available", 1: "unavailable", 2: "refused"}
REASONS = {0: "ok", 1: "fault", 2: "vmfailinvalid", 3: "status", 4: "td_guest", 5: "not_td_guest",
           6: "hypervisor", 7: "not_kvm", 8: "vendor", 9: "bare_metal"}
FLAGS = {"hypervisor": 1 << 0, "kvm": 1 << 1, "tcg": 1 << 2, "td_guest": 1 << 3, "osxsave": 1 << 4,
         "xgetbv1": 1 << 5, "serialize": 1 << 6, "vmx": 1 << 7, "tdx_host_built": 1 << 8,
         "tdx_guest_built": 1 << 9, "direct_calls": 1 << 10, "fpu_usable": 1 << 11}
MAX_SAMPLES = 1 << 20
MAX_CALLS = 1 << 16
MAX_LATENCY = 1 << 20
MAX_REF_HUNDREDS = 1 << 16
SLOTS = 3  # per sample in RUN's output: entry, empty, reference (SB_KSLOT_*)
VECTORS = {6: "#UD", 13: "#GP", 14: "#PF"}
# What a working call returns in RAX: TDX_SUCCESS, or -KVM_ENOSYS for the unused hypercall
# (the module compares every call against it: sb_expect in sb_main.c).
EXPECTED_STATUS = {"emulated": 0, "seamcall": 0, "tdcall": 0, "vmcall": (1 << 64) - 1000,
                   "vmmcall": (1 << 64) - 1000}

u32, s32, u64, char = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_char


class EmulCfg(ctypes.Structure):
    _fields_ = [("serialize_mode", u64), ("latency_iters", u64), ("avx_reset_mask", u64), ("poison", u64),
                ("poison_area", u64)]


class KxCap(ctypes.Structure):
    _fields_ = [("state", u32), ("reason", u32), ("fault", s32), ("probed", u32), ("status", u64),
                ("why", char * 120)]


class Caps(ctypes.Structure):
    _fields_ = [("size", u32), ("api_version", u32), ("abi_version", u32), ("n_entries", u32),
                ("flags", u32), ("xsave_size_xcr0", u32), ("xsave_size_max", u32), ("xsaves_size", u32),
                ("xcr0", u64), ("xinuse", u64), ("tsc_khz", u64), ("budget_ticks", u64),
                ("vendor", char * 16), ("hv_sig", char * 16), ("kernel", char * 64),
                ("x", KxCap * len(KX))]


class Entry(ctypes.Structure):
    _fields_ = [("index", u32), ("crossing", u32), ("runnable", u32), ("count", u32),
                ("convention", char * 64), ("crossing_name", char * 32), ("leaf", char * 32)]


class KRunReq(ctypes.Structure):
    """struct sb_krun: one timed run asked of the module (ioctl SB_IOC_RUN)."""
    _fields_ = [("size", u32), ("entry", u32), ("calls_per_sample", u32), ("samples", u32),
                ("flags", u32), ("ref_hundreds", u32), ("out", u64), ("out_len", u64), ("emul", EmulCfg),
                ("status", u64), ("bad_status", u64), ("first_bad_status", u64), ("warmup_ticks", u64),
                ("budget_ticks", u64), ("batches", u32), ("cpu", u32), ("reserved", u64 * 4)]


class KCallReq(ctypes.Structure):
    """struct sb_kcall: one untimed call of a kmod:emulated entry, its struct before and after."""
    _fields_ = [("size", u32), ("entry", u32), ("regs", u64 * 13), ("status", u64), ("cpu", u32),
                ("flags", u32), ("reserved", u64 * 2)]


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0xB5 << 8) | nr


IOC_CAPS = _iowr(1, ctypes.sizeof(Caps))
IOC_ENTRY = _iowr(2, ctypes.sizeof(Entry))
IOC_RUN = _iowr(3, ctypes.sizeof(KRunReq))
IOC_CALL = _iowr(4, ctypes.sizeof(KCallReq))
KCALL_COLD = 1  # SB_KCALL_COLD


class KmodError(RuntimeError):
    def __init__(self, msg, errno_=None):
        super().__init__(msg)
        self.errno = errno_


@dataclass(frozen=True)
class CrossingCap:
    name: str
    state: str
    reason: str
    fault: int | None
    probed: bool
    status: int
    why: str

    @property
    def available(self) -> bool:
        return self.state == "available"

    @property
    def fault_name(self) -> str | None:
        return None if self.fault is None else VECTORS.get(self.fault, f"vector {self.fault}")


@dataclass(frozen=True)
class KEntry:
    index: int
    convention: str
    crossing: str
    leaf: str
    runnable: bool
    known: bool  # the module issues this crossing at all


@dataclass
class RunResult:
    entry: KEntry
    samples: list  # per sample, TSC ticks (entry batch, empty batch, reference chain)
    calls_per_sample: int
    ref_hundreds: int  # the reference was ref_hundreds x 100 dependent ADDs (0: none, ref ticks 0)
    status: int  # RAX of the last timed entry call
    bad_status: int  # timed entry calls whose RAX was not the crossing's success value
    first_bad_status: int  # RAX of the first of them
    warmup_ticks: int
    budget_ticks: int
    batches: int
    cpu: int  # the one CPU the whole run stayed on

    @property
    def ticks(self) -> list:
        return [t[0] for t in self.samples]

    @property
    def empty(self) -> list:
        return [t[1] for t in self.samples]

    @property
    def ref(self) -> list:
        return [t[2] for t in self.samples]

    def tsc_per_core(self) -> list | None:
        """Per sample, TSC ticks per core cycle as the reference chain saw it (one ADD a cycle)."""
        if not self.ref_hundreds:
            return None
        return [t[2] / (self.ref_hundreds * 100) for t in self.samples]


def _s(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def device_present() -> bool:
    return os.path.exists(DEVICE)


class KmodDevice:
    """An open /dev/seambench.  Needs CAP_SYS_ADMIN (the module refuses others)."""

    def __init__(self, path: str = DEVICE):
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KmodError(f"{path} does not exist: load the module (bench kmod load)") from None
        except PermissionError:
            raise KmodError(f"{path}: permission denied (needs root / CAP_SYS_ADMIN)") from None
        self._entries = None

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ioctl(self, req: int, struct) -> None:
        fcntl.ioctl(self.fd, req, struct, True)

    def caps(self) -> dict:
        c = Caps(size=ctypes.sizeof(Caps))
        self.ioctl(IOC_CAPS, c)
        if c.api_version != API_VERSION:
            raise KmodError(f"module speaks ioctl API {c.api_version}, this client {API_VERSION}: rebuild it")
        flags = {name for name, bit in FLAGS.items() if c.flags & bit}
        xs = {}
        for name, i in KX.items():
            x = c.x[i]
            xs[name] = CrossingCap(name, STATES.get(x.state, str(x.state)), REASONS.get(x.reason, str(x.reason)),
                                   None if x.fault < 0 else x.fault, bool(x.probed), x.status, _s(x.why))
        return {"api_version": c.api_version, "abi_version": c.abi_version, "n_entries": c.n_entries,
                "flags": sorted(flags), "vendor": _s(c.vendor), "hv_sig": _s(c.hv_sig), "kernel": _s(c.kernel),
                "xcr0": c.xcr0, "xinuse": c.xinuse, "xsave_size_xcr0": c.xsave_size_xcr0,
                "xsave_size_max": c.xsave_size_max, "xsaves_size": c.xsaves_size, "tsc_khz": c.tsc_khz,
                "budget_ticks": c.budget_ticks, "crossings": xs}

    def entries(self) -> list:
        if self._entries is None:
            out, i, count = [], 0, None
            while count is None or i < count:
                e = Entry(index=i)
                try:
                    self.ioctl(IOC_ENTRY, e)
                except OSError as exc:
                    if exc.errno == errno.EINVAL and count is None:
                        break  # an empty table
                    raise
                count = e.count
                out.append(KEntry(i, _s(e.convention), _s(e.crossing_name), _s(e.leaf), bool(e.runnable),
                                  e.crossing != KX_NONE))
                i += 1
            self._entries = out
        return self._entries

    def find(self, convention: str, crossing: str, leaf: str) -> KEntry:
        for e in self.entries():
            if (e.convention, e.crossing, e.leaf) == (convention, crossing, leaf):
                return e
        raise KmodError(f"the loaded module has no wrapper {convention} x {crossing} x {leaf}: "
                        "rebuild it (bench kmod build) after changing conventions")

    def run(self, entry: KEntry | int, calls_per_sample: int, samples: int, emul: dict | None = None,
            ref_hundreds: int = 0) -> RunResult:
        """Per sample, in one rotation on one CPU: TSC ticks of calls_per_sample back-to-back calls,
        of the same calls of an empty function (what to subtract), and of ref_hundreds x 100
        dependent ADDs (what converts ticks to core cycles)."""
        idx = entry if isinstance(entry, int) else entry.index
        ent = self.entries()[idx] if isinstance(entry, int) else entry
        buf = (u64 * (samples * SLOTS))()
        r = KRunReq(size=ctypes.sizeof(KRunReq), entry=idx, calls_per_sample=calls_per_sample, samples=samples,
                ref_hundreds=ref_hundreds, out=ctypes.addressof(buf), out_len=ctypes.sizeof(buf))
        for k, v in (emul or {}).items():
            setattr(r.emul, k, v)
        try:
            self.ioctl(IOC_RUN, r)
        except OSError as exc:
            raise KmodError(_run_error(exc, ent), exc.errno) from exc
        triples = [tuple(buf[i:i + SLOTS]) for i in range(0, samples * SLOTS, SLOTS)]
        return RunResult(ent, triples, calls_per_sample, ref_hundreds, r.status, r.bad_status,
                         r.first_bad_status, r.warmup_ticks, r.budget_ticks, r.batches, r.cpu)


    def call(self, entry: KEntry | int, regs) -> tuple:
        """(status, struct sb_args registers after, CPU) of one untimed call of a kmod:emulated
        entry with these 13 registers in its struct (rcx, rdx, r8..r15, rbx, rdi, rsi)."""
        idx = entry if isinstance(entry, int) else entry.index
        ent = self.entries()[idx] if isinstance(entry, int) else entry
        c = KCallReq(size=ctypes.sizeof(KCallReq), entry=idx)
        c.regs[:] = list(regs)
        try:
            self.ioctl(IOC_CALL, c)
        except OSError as exc:
            raise KmodError(_run_error(exc, ent).replace("kmod run", "kmod call"), exc.errno) from exc
        return c.status, list(c.regs), c.cpu


    def cold_pairs(self, a: KEntry, b: KEntry, regs, n: int, dirty: int) -> tuple:
        """(ticks of a, ticks of b): n CALLs of each with SB_KCALL_COLD, alternating, each timed
        from user space around the ioctl (bench.native._core.ioctl_pair_ticks), the vector
        registers made live up to `dirty` before each: what a call costs the first time after
        user code ran, the deferred register restore on the way back included."""
        from bench.native import _core
        reqs = []
        for e in (a, b):
            c = KCallReq(size=ctypes.sizeof(KCallReq), entry=e.index, flags=KCALL_COLD)
            c.regs[:] = list(regs)
            reqs.append(c)
        try:
            ta, tb = _core.ioctl_pair_ticks(self.fd, IOC_CALL, ctypes.addressof(reqs[0]),
                                            ctypes.addressof(reqs[1]), n, dirty)
        except OSError as exc:
            raise KmodError(_run_error(exc, a).replace("kmod run", "kmod call"), exc.errno) from exc
        return list(ta), list(tb)


def _run_error(exc: OSError, e: KEntry) -> str:
    what = f"kmod run {e.convention} x {e.crossing} x {e.leaf}"
    hint = {errno.ENODEV: "the crossing is not available here (see bench kmod status)",
            errno.E2BIG: "a sample (entry, empty and reference batches) would not fit the ~1 ms "
                         "interrupts-off batch, or a count is above the module's limit: lower calls per sample",
            errno.EOPNOTSUPP: "the module does not issue this crossing/leaf, or the CPU lacks an instruction "
                              "the convention needs",
            errno.EINTR: "interrupted by a signal", errno.ETIME: "the run hit the module's 30 s limit",
            errno.EAGAIN: "the run left its CPU although migration was disabled; its samples are discarded"}
    return f"{what}: {os.strerror(exc.errno)} ({hint.get(exc.errno, 'rejected by the module')})"


# --- the kmod:* backends ----------------------------------------------------------

def probe_crossing(crossing: str) -> tuple:
    """(available, why) for kmod:<crossing>: what the module's own probe found
    (bench.native.backends.probe wraps it in a Probe)."""
    if not device_present():
        return False, f"{DEVICE} absent: build and load the module (bench kmod build && bench kmod load)"
    try:
        with KmodDevice() as d:
            cap = d.caps()["crossings"][crossing]
    except (KmodError, OSError) as exc:
        return False, f"kernel module: {exc}"
    return cap.available, f"ring 0: {cap.why}"


# --- bench kmod build | load | unload | status --------------------------------

def default_kdir() -> str:
    return f"/lib/modules/{os.uname().release}/build"


def ko_path() -> Path:
    return KMOD_DIR / f"{MODULE}.ko"


def build(kdir: str | None = None, python: str | None = None, conventions=None, ring0=None) -> Path:
    """make -C _native/kmod; with conventions files and the ring0 file (cli/kmod.py checked
    them), the imported kernel code they allow too."""
    kdir = kdir or default_kdir()
    if not os.path.isdir(kdir):
        raise KmodError(f"no kernel build tree at {kdir}: install the headers "
                        f"(apt-get install linux-headers-{os.uname().release}) or pass --kdir")
    cmd = ["make", "-C", str(KMOD_DIR), f"KDIR={kdir}", f"PYTHON={python or sys.executable}",
           f"CONVENTIONS={' '.join(os.path.abspath(f) for f in conventions or [])}",
           f"RING0={os.path.abspath(ring0) if ring0 else ''}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise KmodError("module build failed:\n" + res.stdout[-4000:] + res.stderr[-4000:])
    return ko_path()


def loaded() -> bool:
    return os.path.isdir(f"/sys/module/{MODULE}")


def _tool(name: str) -> str:
    for d in ("", "/usr/sbin/", "/sbin/"):
        p = shutil.which(name) if not d else (d + name if os.access(d + name, os.X_OK) else None)
        if p:
            return p
    raise KmodError(f"{name} not found (apt-get install kmod)")


def load(ko: str | os.PathLike | None = None) -> None:
    if loaded():
        return
    ko = Path(ko or ko_path())
    if not ko.exists():
        raise KmodError(f"{ko} not built: run bench kmod build")
    res = subprocess.run([_tool("insmod"), str(ko)], capture_output=True, text=True)
    if res.returncode != 0:
        raise KmodError(f"insmod {ko} failed: {res.stderr.strip()}")


def unload() -> None:
    if not loaded():
        return
    res = subprocess.run([_tool("rmmod"), MODULE], capture_output=True, text=True)
    if res.returncode != 0:
        raise KmodError(f"rmmod {MODULE} failed: {res.stderr.strip()}")


def status_doc() -> dict:
    doc = {"loaded": loaded(), "device": DEVICE, "device_present": device_present()}
    if not doc["device_present"]:
        return doc
    with KmodDevice() as d:
        c = d.caps()
        ents = d.entries()
    c["crossings"] = {n: x.__dict__ | {"fault_name": x.fault_name} for n, x in c["crossings"].items()}
    doc.update(c)
    doc["entries"] = len(ents)
    doc["runnable"] = [f"{e.convention}/{e.crossing}/{e.leaf}" for e in ents if e.runnable]
    return doc


def status_lines() -> list:
    d = status_doc()
    lines = [f"module: {'loaded' if d['loaded'] else 'not loaded'}; device {DEVICE}: "
             f"{'present' if d['device_present'] else 'absent'}"]
    if not d["device_present"]:
        return lines
    lines.append(f"kernel {d['kernel']}, {d['vendor']}, hypervisor {d['hv_sig'] or '-'}, "
                 f"flags {','.join(d['flags'])}")
    lines.append(f"XCR0 {d['xcr0']:#x}, XSAVE {d['xsave_size_xcr0']} B (max {d['xsave_size_max']}, "
                 f"XSAVES {d['xsaves_size']}), TSC {d['tsc_khz']} kHz, irq-off batch <= {d['budget_ticks']} ticks")
    for name, x in d["crossings"].items():
        lines.append(f"  kmod:{name:9s} {x['state']:11s} {x['why']}")
    lines.append(f"{d['entries']} generated wrappers, {len(d['runnable'])} runnable here")
    return lines
