"""How a generated wrapper crosses to "the other side", as data.

A crossing is the instruction sequence that stands where SEAMCALL/TDCALL
would be.  The generator pastes its text between the wrapper's loads and
stores and saves, around it, any register the crossing writes that the leaf
profile does not allow to change (CPUID writes RBX, for instance).  A new
crossing is one entry here plus a probe in bench/native/backends.py.
"""
from __future__ import annotations

from dataclasses import dataclass

# KVM answers any hypercall number from CPL 3 with -KVM_EPERM, and an unknown one from
# CPL 0 with -KVM_ENOSYS; this number is not a KVM hypercall (they are small integers).
KVM_HC_UNUSED = 0x5EAB
SYS_GETPPID = 110  # x86-64


@dataclass(frozen=True)
class Crossing:
    name: str
    description: str
    asm: dict                 # flavor ("user" | "kernel") -> instruction lines
    clobbers: tuple | None    # GPRs written besides RAX; None: exactly what the leaf profile writes

    def text(self, flavor: str, stub: str, **labels) -> list:
        """The instruction lines; {stub} is the emulated stub, {at} a label unique to the wrapper
        and {fault} where the kernel's exception table sends a fault on the instruction."""
        return [line.format(stub=stub, **labels) for line in self.asm[flavor]]

    @property
    def calls_stub(self) -> bool:
        """Whether the crossing calls the emulated stub (its code is then part of every call)."""
        return any("{stub}" in line for lines in self.asm.values() for line in lines)

    def extra_clobbers(self, leaf) -> tuple:
        """Registers the crossing writes that the leaf profile says stay intact."""
        if self.clobbers is None:
            return ()
        return tuple(r for r in self.clobbers if r not in leaf.all_writes)


# Kernel flavor: an exception-table entry of type FAULT on the instruction at {at}.  A #UD/#GP
# (VMX off, TDX absent, not a TD, QEMU's software CPU) resumes at {fault} with the vector in RAX
# instead of oopsing; the wrapper reports TDX_SW_ERROR | vector, as Linux's TDX_MODULE_CALL does.
# The leading "@" makes the generator paste it as C (the macro's text depends on the kernel).
_KFIXUP = "@_ASM_EXTABLE_FAULT({at}, {fault})"

def _hypercall(instruction, what):
    """A KVM hypercall with a number KVM does not implement.  In the module a fault (#UD where
    no hypervisor answers) is caught by an exception-table fixup; in user space by the probe."""
    setup = [f"movl ${KVM_HC_UNUSED:#x}, %eax", "clc"]
    return Crossing(instruction, f"{what}: a real round trip through the hypervisor",
                    {"user": setup + [instruction], "kernel": setup + ["{at}:", instruction, _KFIXUP]},
                    clobbers=())


# The kernel module issues only these (see _native/kmod); CPUID and system calls stay in user space.
CROSSINGS = {
    "emulated": Crossing(
        "emulated",
        "a stub that writes exactly what the leaf profile allows, serializes, returns TDX_SUCCESS",
        {"user": ["call {stub}"], "kernel": ["call {stub}"]},
        clobbers=None,
    ),
    "vmcall": _hypercall("vmcall", "VMCALL (Intel)"),
    "vmmcall": _hypercall("vmmcall", "VMMCALL (AMD)"),
    "cpuid": Crossing(
        "cpuid",
        "CPUID leaf 0: traps to the hypervisor in a VM, cheap on bare metal",
        {"user": ["xorl %eax, %eax", "xorl %ecx, %ecx", "cpuid", "clc"]},
        clobbers=("rbx", "rcx", "rdx"),
    ),
    "syscall": Crossing(
        "syscall",
        "getppid(2): a cheap user-to-kernel round trip, for scale",
        {"user": [f"movl ${SYS_GETPPID}, %eax", "clc", "syscall"]},
        clobbers=("rcx", "r11"),
    ),
    # Ring 0 only: both instructions #GP at CPL 3.  Issued by the kernel module.
    "seamcall": Crossing(
        "seamcall",
        "SEAMCALL to the TDX module (host, VMX root)",
        {"kernel": ["{at}:", ".byte 0x66, 0x0f, 0x01, 0xcf", _KFIXUP]},
        clobbers=None,
    ),
    "tdcall": Crossing(
        "tdcall",
        "TDCALL to the TDX module (TD guest)",
        {"kernel": ["{at}:", ".byte 0x66, 0x0f, 0x01, 0xcc", _KFIXUP, "clc"]},
        clobbers=None,
    ),
}


def crossings_for(flavor: str) -> list:
    return [c for c in CROSSINGS.values() if flavor in c.asm]
