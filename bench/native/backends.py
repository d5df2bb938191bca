"""Backends: how a measured call crosses, and whether it can here.

A backend names a crossing (bench/gen/crossings.py) plus how the emulated stub
serializes.  Every backend is probed in a forked child, so an instruction this
CPU or hypervisor does not offer (SIGILL, SIGSEGV) never takes the harness down.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import struct
from dataclasses import dataclass

from bench.native import _core, kmod, machine

SER_MODES = {"none": 0, "lfence": 1, "mfence_lfence": 2, "serialize": 3, "iret": 4, "cpuid": 5}
# Architecturally serializing in user space, strongest class first; "auto" picks the
# cheapest of these that this CPU offers (measured), as SEAMCALL/TDCALL serialize too.
FULLY_SERIALIZING = ("serialize", "iret", "cpuid")
KVM_EPERM = (1 << 64) - 1  # -KVM_EPERM as the 64-bit RAX a CPL-3 hypercall gets back


@dataclass(frozen=True)
class Backend:
    name: str
    crossing: str
    description: str
    serialize: str | None = None  # emulated only: "auto" or a SER_MODES key
    vendors: tuple = ()           # CPU vendors whose own instruction this is
    where: str = "user"           # "user": this process's native loop; "kmod": the kernel module's


BACKENDS = {
    "emulated": Backend("emulated", "emulated",
                        "stub that writes what the leaf may, serialized like a real SEAMCALL/TDCALL",
                        serialize="auto"),
    "emulated_pipelined": Backend("emulated_pipelined", "emulated",
                                  "the same stub without serialization (out-of-order execution overlaps "
                                  "calls; for contrast only)", serialize="none"),
    "vmcall": Backend("vmcall", "vmcall", "VMCALL from user space: a real exit to the hypervisor",
                      vendors=("GenuineIntel",)),
    "vmmcall": Backend("vmmcall", "vmmcall", "VMMCALL from user space: a real exit to the hypervisor",
                       vendors=("AuthenticAMD", "HygonGenuine")),
    "cpuid": Backend("cpuid", "cpuid", "CPUID leaf 0: exits to the hypervisor in a VM, cheap on bare metal"),
    "syscall": Backend("syscall", "syscall", "getppid system call, for scale"),
}


# The same crossings issued from ring 0 by seambench's kernel module (/dev/seambench): the real
# SEAMCALL on a TDX host, TDCALL in a TD guest, VMCALL/VMMCALL in a KVM guest, the stub elsewhere.
# Listed by `doctor` when the device exists (bench/native/kmod.py probes them through it).
KMOD_BACKENDS = {
    f"kmod:{crossing}": Backend(f"kmod:{crossing}", crossing, f"kernel module, ring 0: {what}",
                                serialize="auto" if crossing == "emulated" else None, where="kmod")
    for crossing, what in (
        ("emulated", "the emulated stub, kernel_fpu_begin/end available"),
        ("seamcall", "SEAMCALL TDH.SYS.RD to the TDX module (TDX host)"),
        ("tdcall", "TDCALL TDG.VP.INFO to the TDX module (TD guest)"),
        ("vmcall", "VMCALL with an unused KVM hypercall number (KVM guest, Intel)"),
        ("vmmcall", "VMMCALL with an unused KVM hypercall number (KVM guest, AMD)"),
    )
}
BACKENDS.update(KMOD_BACKENDS)


def default_names() -> list:
    """The backends `doctor` shows: the kernel module's only when its device exists."""
    return [n for n, b in BACKENDS.items() if b.where != "kmod" or kmod.device_present()]


@dataclass(frozen=True)
class Probe:
    backend: str
    available: bool
    reason: str

    def as_dict(self):
        return {"backend": self.backend, "available": self.available, "reason": self.reason}


def run_in_child(fn):
    """Run fn() in a forked child; return ("ok", 8-byte result) or ("signal", signo) or ("exit", code)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the parent's stack
        code = 0
        try:
            faulthandler.disable()  # the fault may be the expected answer: no traceback dump
            os.close(r)
            os.write(w, struct.pack("<Q", fn() & (2**64 - 1)))
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 8):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "signal", os.WTERMSIG(status)
    if os.WEXITSTATUS(status) != 0 or len(data) != 8:
        return "exit", os.WEXITSTATUS(status)
    return "ok", struct.unpack("<Q", data)[0]


def _signal_reason(instr, signo):
    name = signal.Signals(signo).name
    if signo == signal.SIGILL:
        return f"{instr} raised #UD here ({name}): the CPU or hypervisor does not offer it"
    if signo == signal.SIGSEGV:
        return f"{instr} faulted here ({name}, #GP or #UD turned into a fault by the hypervisor)"
    return f"{instr} killed the probe with {name}"


def probe(name: str, registry, serialize: dict | None = None) -> Probe:
    """Is backend `name` usable here, and if not, why.  `serialize` is the run's choice of how the
    emulated stub serializes (bench.measure.serialize.choice), for the emulated backend's reason."""
    b = BACKENDS[name]
    if b.where == "kmod":
        return Probe(name, *kmod.probe_crossing(b.crossing))
    cpu = machine.cpu()
    instr = b.crossing.upper()
    if b.vendors and cpu["vendor"] not in b.vendors:
        return Probe(name, False, f"CPU vendor is {cpu['vendor']}; {instr} is the instruction of "
                     f"{'/'.join(b.vendors)} (a hypervisor may emulate it after #UD, which is not the path "
                     "to measure)")
    if b.crossing in ("vmcall", "vmmcall") and not cpu["hypervisor"]:
        return Probe(name, False, f"not running under a hypervisor: {instr} would raise #UD")
    fn, _ = registry.lookup("seamcall", b.crossing, "vp_info")
    args = _core.Args(machine.xsave()["size_max"] or 4096)
    kind, value = run_in_child(lambda: _core.call_once(fn, 1, args))
    if kind == "signal":
        return Probe(name, False, _signal_reason(instr, value))
    if kind == "exit":
        return Probe(name, False, f"the probe of {instr} failed (exit {value})")
    if b.crossing in ("vmcall", "vmmcall"):
        who = cpu["hypervisor"]
        if value == KVM_EPERM:
            return Probe(name, True, f"{who} answers a CPL-3 hypercall with -KVM_EPERM: a real round trip")
        return Probe(name, True, f"{who} answered {instr} with RAX={value:#x}")
    if b.crossing == "cpuid":
        where = f"traps to {cpu['hypervisor']}" if cpu["hypervisor"] else "executes natively (bare metal)"
        return Probe(name, True, f"CPUID {where}")
    if b.crossing == "syscall":
        return Probe(name, True, f"getppid() returned {value}")
    if b.serialize == "none":
        return Probe(name, True, "stub without serialization")
    if serialize is None:
        return Probe(name, True, "stub serialized (mode decided by the run)")
    return Probe(name, True, f"stub serialized with {serialize['mode'].upper()} ({serialize['why']})")


def probe_all(registry, names=None, serialize=None) -> dict:
    return {n: probe(n, registry, serialize) for n in (names or BACKENDS)}
