"""Conventions + leaf profiles + crossings -> one generated C source.

The source holds top-level assembly (one wrapper per convention x crossing x
leaf, one emulated-TDX stub per leaf), small C wrappers where a convention
needs C around the call (sc_retry-style retry, FPU save), and a table,
`sb_gen_unit`, that the measurement core (or the kernel module) reads.  The
same text builds in user space and, with flavor="kernel", in the module.

    python -m bench.gen.codegen --flavor user -o _native/gen/sb_generated.c
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.config import ARG_REGS, Catalog, ConfigError, Convention, Resolved, load_builtin
from bench.gen.crossings import Crossing, crossings_for
from bench.gen.kernel import ADAPTER_CALLEE, ADAPTER_FN, instance, read_imported
from bench.gen.ring0 import UNREACHED, crossing_ok as ring0_crossing_ok, refusal as ring0_refusal
from bench.gen import ring0 as ring0_src

OFF = {reg: 8 * i for i, reg in enumerate(ARG_REGS)}
OFF_RBP_SLOT = 8 * len(ARG_REGS)
CHAIN_OP_BYTES = 3  # `orq %rsi, %rsi` (48 09 f6): one op of an injected chain
CFG_SERIALIZE, CFG_LATENCY, CFG_AVX_RESET, CFG_POISON = 0, 8, 16, 24
CFG_POISON_AREA = 32  # appended for the safety checker
# The emulated module's latency row (user space): so many `addq $1, %rax` (48 83 c0 01, 1 << 2
# bytes each); longer latencies count down in a loop.
ROW_UNITS, ROW_UNIT_SHIFT, ROW_OP = 512, 2, "addq $1, %rax"
LATENCY_SECTION = "sb_latency"

TDX_SW_ERROR = (1 << 63) | (0xFF << 40)
TDX_SEAMCALL_VMFAILINVALID = TDX_SW_ERROR | 0xFFFF0000

# SB_MARKER index space (sb_abi.h): 0..12 the argument registers, 13 RBP.
MARKER_INDEX = {**{reg: i for i, reg in enumerate(ARG_REGS)}, "rbp": 13}


def marker(reg: str) -> int:
    return 0x5EB0000000000000 | (MARKER_INDEX[reg] << 8) | 0xA5


# A line starting with RAW is C text pasted between the asm strings (kernel
# flavor: macros from <asm/asm.h>/<asm/linkage.h> whose expansion depends on
# the kernel's configuration, such as ASM_RET and the exception table).
RAW = "@"


def _ret(flavor: str) -> str:
    """`ret`, or in the kernel ASM_RET: a jump to the return thunk with RETHUNK, `ret; int3` with SLS."""
    return RAW + "ASM_RET" if flavor == "kernel" else "ret"


def _r32(reg: str) -> str:
    """The 32-bit name: a 32-bit XOR zeroes the whole register and encodes shorter."""
    if reg.startswith("r") and reg[1:].isdigit():
        return f"%{reg}d"
    return "%e" + reg[1:]


@dataclass(frozen=True)
class Entry:
    """One generated wrapper."""
    resolved: Resolved
    crossing: Crossing

    @property
    def key(self):
        return (self.resolved.conv.name, self.crossing.name, self.resolved.leaf.name)


def kernel_unsafe(r: Resolved) -> tuple:
    """Why a wrapper would crash the kernel: it breaks the C calling convention
    (`Resolved.abi_breaks`, the same fact the static safety prediction reads): callee-saved
    registers handed back changed (written by the leaf, loaded or scrubbed by the wrapper, and
    not restored), or the struct pointer used after the leaf may have overwritten RSI.  User
    space survives these and reports them (bench/safety.py); in the module they corrupt its own
    registers, so they are not generated for it."""
    what = {"written": "written by the leaf, not saved", "loaded": "loaded from the struct, not saved",
            "scrubbed": "zeroed by the scrub, not saved", "changed": "come back changed (runtime check)"}
    alone = {"pointer": "struct pointer used after RSI was overwritten",
             "stack": "RSP comes back moved (runtime check)", "flags": "returns with DF set (runtime check)",
             "crash": "crashed in the runtime check",
             "unchecked": "imported code the runtime check has not run (bench kmod build -C runs it)"}
    return tuple(alone[cause] if cause in alone else f"{', '.join(regs)} {what[cause]}"
                 for cause, regs in r.abi_breaks)


def plan(catalog: Catalog, flavor: str, conventions=None, crossings=None, leaves=None, ring0=None) -> list:
    """Every (convention, crossing, leaf) the flavor can run, optionally narrowed.  Imported code
    enters the kernel flavor only with `ring0`: {(convention, leaf): the C-ABI breaks the runtime
    check saw}, for the imported conventions of a tree matching the module's kernel (cli/kmod.py)."""
    convs = [catalog.conventions[n] for n in (conventions or catalog.conventions)]
    xs = [c for c in crossings_for(flavor) if crossings is None or c.name in crossings]
    lvs = [catalog.leaves[n] for n in (leaves or catalog.leaves)]
    out = []
    for conv in convs:
        if conv.kernel_only and flavor != "kernel":
            continue
        if conv.imported and flavor == "kernel" and (ring0 is None or ring0_refusal(conv)):
            continue
        for x in xs:
            if conv.imported and flavor == "kernel" and not ring0_crossing_ok(conv, x.name):
                continue
            for leaf in lvs:
                r = conv.resolve(leaf, ring0.get((conv.name, leaf.name)) if conv.imported and ring0 else None)
                if flavor == "kernel" and kernel_unsafe(r):
                    continue
                out.append(Entry(r, x))
    return out


# --- assembly ---------------------------------------------------------------

def _wrapper_asm(sym: str, idx: int, e: Entry, stub: str, flavor: str) -> list:
    r, conv, leaf, x = e.resolved, e.resolved.conv, e.resolved.leaf, e.crossing
    done = f".Lsb_done_{idx}"
    a = [f"# {conv.name} x {x.name} x {leaf.name}", ".p2align 6"]
    if conv.inject_chain and flavor == "user":
        # The chain ends where a 64-byte line begins, so the wrapper's own code lies as it does
        # without it: pushed along by 3 bytes an op, the body measured a cycle or two apart
        # from one K to the next (Zen 4: K=1 came out up to a core cycle *cheaper* than K=0).
        a.append(f".skip {-(CHAIN_OP_BYTES * conv.inject_chain) % 64}, 0xcc")
    a.append(f".type {sym}, @function")
    if flavor == "user":
        a.append(f".hidden {sym}")
    a.append(f"{sym}:")
    if flavor == "kernel":
        # The table takes its address: with IBT (CONFIG_X86_KERNEL_IBT) that needs an ENDBR,
        # first, where an indirect call lands.
        a.append(RAW + "ASM_ENDBR")
    if conv.inject_chain:
        # Known work for `bench validate`: K dependent one-cycle ALU ops on the struct pointer
        # before anything else, so every load, and through them the crossing, waits for them.
        # Register-register on purpose: newer Intel cores fold immediate-ADD chains at rename;
        # OR with itself keeps the pointer.  (After the crossing instead, the line fitted worse:
        # intercept 2 cycles low against 1.2 here.)
        a += [f".rept {conv.inject_chain}", "orq %rsi, %rsi", ".endr"]
    if r.rbp == "frame":
        a += ["pushq %rbp", "movq %rsp, %rbp"]
    elif r.rbp == "stack":
        a.append("pushq %rbp")
    a += [f"pushq %{reg}" for reg in r.preserve]
    if r.rbp == "struct":
        a.append(f"movq %rbp, {OFF_RBP_SLOT}(%rsi)")
    a.append("movq %rdi, %rax")
    a += [f"movq {OFF[reg]}(%rsi), %{reg}" for reg in r.load if reg != "rsi"]
    if "rsi" in r.load:
        if r.keeps_pointer_on_stack:
            a.append("pushq %rsi")
        a.append(f"movq {OFF['rsi']}(%rsi), %rsi")
    saved_around = x.extra_clobbers(leaf)
    a += [f"pushq %{reg}" for reg in saved_around]
    fault = f".Lsb_fault_{idx}"
    xtext = x.text(flavor, stub, fault=fault, at=f".Lsb_x_{idx}")
    a += xtext
    a += [f"popq %{reg}" for reg in reversed(saved_around)]
    if conv.family == "seamcall":
        a.append(f"jc .Lsb_vmfail_{idx}")
    if r.keeps_pointer_on_stack:
        if "rsi" in r.store:
            # No spare register: park the status, fetch the pointer into RAX, store RSI.
            a += ["pushq %rax", "movq 8(%rsp), %rax", f"movq %rsi, {OFF['rsi']}(%rax)", "popq %rax"]
        a.append("popq %rsi")
    if r.rbp == "struct":
        a.append(f"movq {OFF_RBP_SLOT}(%rsi), %rbp")
    pointer_stored = r.keeps_pointer_on_stack
    a += [f"movq %{reg}, {OFF[reg]}(%rsi)" for reg in r.store if not (reg == "rsi" and pointer_stored)]
    a.append(f"{done}:")
    a += [f"xorl {_r32(reg)}, {_r32(reg)}" for reg in conv.scrub]
    a += [f"popq %{reg}" for reg in reversed(r.preserve)]
    if r.rbp in ("frame", "stack"):
        a.append("popq %rbp")
    a.append(_ret(flavor))
    if conv.family == "seamcall":
        # VMfailInvalid: RAX unchanged by the instruction; report it, store nothing.
        a += [f".Lsb_vmfail_{idx}:", f"movabsq ${TDX_SEAMCALL_VMFAILINVALID:#x}, %rax"]
        if r.keeps_pointer_on_stack:
            a.append("popq %rsi")
        if r.rbp == "struct":
            a.append(f"movq {OFF_RBP_SLOT}(%rsi), %rbp")
        a.append(f"jmp {done}")
    if any(fault in line for line in xtext):
        # Kernel: the exception table sent a #UD/#GP here with the vector in RAX.  Report it as
        # Linux does (TDX_SW_ERROR | vector), store nothing, unwind what the call path pushed.
        a.append(f"{fault}:")
        a += [f"popq %{reg}" for reg in reversed(saved_around)]
        a += ["pushq %rax", f"movabsq ${TDX_SW_ERROR:#x}, %rax", "orq %rax, (%rsp)", "popq %rax"]
        if r.keeps_pointer_on_stack:
            a.append("popq %rsi")
        if r.rbp == "struct":
            a.append(f"movq {OFF_RBP_SLOT}(%rsi), %rbp")
        a.append(f"jmp {done}")
    a += _end(sym, flavor)
    return a


def _end(sym: str, flavor: str) -> list:
    """The symbol's size and, in user space, an end label for the code hash (sb_code_range)."""
    end = [f".hidden {sym}_end", f"{sym}_end:"] if flavor == "user" else []
    return end + [f".size {sym}, .-{sym}"]


_SERIALIZE_SEQ = {
    # SB_SER_* value: instruction lines (RAX is free here; the status is written last).
    # Serializing instructions are microcode flows that drain the pipeline part-way through,
    # so earlier work overlaps their first ~12 cycles (measured with SERIALIZE and IRET).
    # The LFENCE in front makes the boundary crisp: nothing after it executes before all
    # earlier instructions complete, so work added before the call adds its full cost.
    3: ["lfence", ".byte 0x0f, 0x01, 0xe8"],  # SERIALIZE
    4: ["lfence", "movl %ss, %eax", "pushq %rax", "pushq %rsp", "addq $8, (%rsp)", "pushfq", "movl %cs, %eax",
        "pushq %rax", "leaq {ret}(%rip), %rax", "pushq %rax", "iretq", "{ret}:"],  # IRET to self
    1: ["lfence"],
    2: ["mfence", "lfence"],
}


def _stub_asm(sym: str, leaf, flavor: str, cfg: str, init_area: str) -> list:
    """The emulated TDX module for one leaf profile."""
    L = f".Lsb_{sym}"
    a = [f"# emulated leaf {leaf.name}: writes {', '.join(leaf.all_writes) or 'nothing'}", ".p2align 4",
         f".type {sym}, @function"]
    if flavor == "user":
        a.append(f".hidden {sym}")
    a.append(f"{sym}:")
    # Calibrated latency (emul_latency): dependent one-cycle ops, one core cycle a unit.  For a
    # leaf that clobbers RBP it runs after the markers are written, so the same spin holds the
    # garbage RBP for the NMI-style demo (bench check --nmi); elsewhere it comes first.
    latency = [f"movq {cfg}+{CFG_LATENCY}(%rip), %rax", "testq %rax, %rax", f"jz {L}_lat_done"]
    if flavor == "user":
        # A jump to the stub's latency row (_latency_row), five bytes as the countdown below.
        latency += [f"jmp {L}_row", f"{L}_lat_done:"]
    else:
        # In the kernel a countdown: the row's indirect jump lands on no ENDBR, which IBT faults.
        latency += [f"{L}_lat:", "decq %rax", f"jnz {L}_lat", f"{L}_lat_done:"]
    if not leaf.clobbers_rbp:
        a += latency
    if leaf.avx_reset:
        # XRSTOR from an all-INIT image: the reset the TDX 1.5 ABI allows for these leaves.
        scratch = [reg for reg in ("rcx", "rdx") if reg not in leaf.writes]
        a += [f"movq {cfg}+{CFG_AVX_RESET}(%rip), %rax", "testq %rax, %rax", f"jz {L}_avx_done"]
        a += [f"pushq %{reg}" for reg in scratch]
        # Poisoning (safety check): XRSTOR the marker image poison_area points at instead, so
        # a caller that relies on its vector registers sees markers, not INIT values that may
        # happen to match.  One load and one test on the timed path.
        a += ["xorl %edx, %edx", f"movq {cfg}+{CFG_POISON_AREA}(%rip), %rcx", "testq %rcx, %rcx",
              f"jnz {L}_avx_go", f"leaq {init_area}(%rip), %rcx",
              f"{L}_avx_go:", "xrstor64 (%rcx)"]
        a += [f"popq %{reg}" for reg in reversed(scratch)]
        a.append(f"{L}_avx_done:")
    a.append(f"movq {cfg}+{CFG_SERIALIZE}(%rip), %rax")
    for mode, seq in _SERIALIZE_SEQ.items():
        a += [f"cmpq ${mode}, %rax", f"jne {L}_ser_not{mode}"]
        a += [line.format(ret=f"{L}_iret_back") for line in seq]
        a += [f"jmp {L}_ser_done", f"{L}_ser_not{mode}:"]
    # CPUID (mode 5): serializing but a VM exit in a guest; it writes RBX, RCX, RDX.
    cpuid_saves = [reg for reg in ("rbx", "rcx", "rdx") if reg not in leaf.writes]
    a += ["cmpq $5, %rax", f"jne {L}_ser_done"] + [f"pushq %{reg}" for reg in cpuid_saves]
    a += ["lfence", "xorl %eax, %eax", "xorl %ecx, %ecx", "cpuid"]
    a += [f"popq %{reg}" for reg in reversed(cpuid_saves)]
    a.append(f"{L}_ser_done:")
    a += [f"movabsq ${marker(reg):#x}, %{reg}" for reg in leaf.all_writes]
    if leaf.clobbers_rbp:
        a += latency
    a += ["xorl %eax, %eax", _ret(flavor)] + _end(sym, flavor)  # TDX_SUCCESS; XOR also clears CF
    if flavor == "user":
        a += _latency_row(L)
    return a


def _latency_pages(end: bool) -> list:
    """The start, or the end of the rows' section, padded to whole pages.  The linker places it
    between .text and the C wrappers' and the timed loop's sections; so padded, those move by
    whole pages, as ASLR moves them anyway, and keep every offset within a page they had
    without it."""
    edge = ([".Lsb_latency_end:", ".skip (-(.Lsb_latency_end - .Lsb_latency_begin)) & 4095, 0xcc"] if end
            else [".Lsb_latency_begin:"])
    return [f'.pushsection {LATENCY_SECTION}, "ax", @progbits', *edge, ".popsection"]


def _latency_row(L: str) -> list:
    """The emulated module's latency in user space: a jump into the last N of a row of ROW_UNITS
    dependent ADDs (longer latencies count down), and back.  A countdown's exit is predicted or
    not by the branch predictor's state, which differs by process: a count of 20 cost 195.1, 195.8
    or 196.5 core cycles a call by run (Zen 4 guest, planted_pushpop), and past a few hundred units
    one more unit cost -0.9 to +1.0%.  The rows lie in a section of their own (_latency_pages), so
    that the stubs keep their bytes and the code after them its place in a page, on which their
    figures depend here.  The code hash does not cover them; emul_latency is in the declaration's."""
    return [f'.pushsection {LATENCY_SECTION}, "ax", @progbits', ".p2align 4", f"{L}_row:",
            f"cmpq ${ROW_UNITS}, %rax", f"ja {L}_count", "pushq %rcx", f"leaq {L}_adds_end(%rip), %rcx",
            f"shlq ${ROW_UNIT_SHIFT}, %rax", "subq %rax, %rcx", "jmp *%rcx",
            f"{L}_adds:", f".rept {ROW_UNITS}", ROW_OP, ".endr", f"{L}_adds_end:",
            f".if {L}_adds_end - {L}_adds - ({ROW_UNITS} << {ROW_UNIT_SHIFT})",
            f'.error "{ROW_OP} is not {1 << ROW_UNIT_SHIFT} bytes"', ".endif",
            "popq %rcx", f"jmp {L}_lat_done",
            f"{L}_count:", "decq %rax", f"jnz {L}_count", f"jmp {L}_lat_done", ".popsection"]


# --- C around it -------------------------------------------------------------

_PRELUDE = {
    "user": """\
#include <stddef.h>
#include "sb_abi.h"
#define SB_HIDDEN __attribute__((visibility("hidden")))
#define SB_EXPORT __attribute__((visibility("default")))
""",
    "kernel": """\
#include <linux/types.h>
#include <linux/stddef.h>
#include <linux/build_bug.h>
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/ibt.h>
#include <asm/fpu/api.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include "sb_abi.h"
#define SB_HIDDEN
#define SB_EXPORT
extern int sb_gen_faults; /* sb_kloop.h: faults caught in the FPU instructions below */
""",
}


CACHE_STATE = "sb_cache_state_incoherent"  # the module's stand-in for the kernel's per-CPU flag


def _fpu_insn(flavor: str, insn: str, operands: str) -> str:
    """One XSAVE-family instruction as C.  In the kernel it carries an exception-table entry:
    on a CPU without that variant the #UD skips it and counts in sb_gen_faults, which the
    module checks after the warm-up sample."""
    if flavor != "kernel":
        return f'__asm__ __volatile__("{insn} (%0)" : : {operands} : "memory");'
    return (f'__asm__ __volatile__("1: {insn} (%0)\\n\\tjmp 3f\\n\\t2: lock incl %3\\n\\t3:\\n\\t" '
            f'_ASM_EXTABLE(1b, 2b) : : {operands}, "m"(sb_gen_faults) : "memory");')


def _fpu_c(conv: Convention, flavor: str) -> tuple:
    """(before, after) C statements around the call for the convention's FPU policy."""
    area = "(void *)(unsigned long)a->xsave_area"
    lo_hi = lambda m: f'"a"((unsigned int)({m})), "d"((unsigned int)(({m}) >> 32))'
    ins = {"xsave": "xsave64", "xsaveopt": "xsaveopt64", "xsavec": "xsavec64"}
    if conv.fpu == "none":
        return "", ""
    if conv.fpu == "kernel_fpu":
        if flavor != "kernel":
            raise ValueError(f"{conv.name}: kernel_fpu exists only in the kernel module")
        return "\tkernel_fpu_begin();\n", "\tkernel_fpu_end();\n"
    if conv.fpu == "xinuse":
        if flavor == "kernel":
            # XGETBV(1) #UDs without XGETBV1: count it and read "nothing in use".
            xgetbv = ("\t__asm__ __volatile__(\"1: xgetbv\\n\\tjmp 3f\\n\\t2: lock incl %2\\n\\t"
                      "xorl %%eax, %%eax\\n\\txorl %%edx, %%edx\\n\\t3:\\n\\t\" _ASM_EXTABLE(1b, 2b) "
                      ": \"=a\"(inuse_lo), \"=d\"(inuse_hi), \"+m\"(sb_gen_faults) : \"c\"(1));\n")
        else:
            xgetbv = "\t__asm__ __volatile__(\"xgetbv\" : \"=a\"(inuse_lo), \"=d\"(inuse_hi) : \"c\"(1));\n"
        mops = f'"r"({area}), ' + lo_hi("mask")
        before = ("\tsb_u64 mask, inuse_lo, inuse_hi;\n" + xgetbv +
                  "\tmask = ((inuse_hi << 32) | inuse_lo) & a->fpu_mask;\n"
                  "\tif (mask)\n\t\t" + _fpu_insn(flavor, "xsavec64", mops) + "\n")
        after = "\tif (mask)\n\t\t" + _fpu_insn(flavor, "xrstor64", mops) + "\n"
        return before, after
    ops = f'"r"({area}), ' + lo_hi('a->fpu_mask')
    before = f"\t{_fpu_insn(flavor, ins[conv.fpu], ops)}\n"
    after = f"\t{_fpu_insn(flavor, 'xrstor64', ops)}\n"
    return before, after


def _c_wrapper(name: str, asm_sym: str, conv: Convention, flavor: str) -> str | None:
    """C around the assembly: retry as sc_retry does it, FPU save as the caller would.  In user
    space each sits in a section of its own, whose bounds the linker provides (__start_/__stop_),
    so its machine code can be hashed."""
    if conv.fpu == "none" and conv.retry_status is None:
        return None
    before, after = _fpu_c(conv, flavor)
    if conv.retry_kernel and flavor != "kernel":
        raise ValueError(f"{conv.name}: retry kernel exists only in the kernel module")
    if conv.retry_status is not None:
        # retry kernel: as sc_retry in today's host kernels, each attempt with preemption off
        # and the per-CPU "cache incoherent" flag set before the SEAMCALL (kexec flushes the
        # caches of CPUs that may hold dirty TDX-private lines).
        attempt = (f"\t\tpreempt_disable();\n\t\tthis_cpu_write({CACHE_STATE}, true);\n"
                   f"\t\tstatus = {asm_sym}(leaf, a);\n\t\tpreempt_enable();\n" if conv.retry_kernel
                   else f"\t\tstatus = {asm_sym}(leaf, a);\n")
        # A retry is the rare path: laid out as a branch not taken.  Left to the compiler, the
        # common exit was a taken branch, and the loop's cost hopped between two levels a core
        # cycle apart every ~100 ms (Zen 4 guest, seamcall_ret/emulated/vp_info 167.1 and 168.1;
        # the assembly wrapper alone held 166.6); laid out so, it holds 167.1.
        call = (f"\tint tries = {conv.retry_max};\n\tdo {{\n{attempt}"
                f"\t}} while (__builtin_expect(status == {conv.retry_status:#x}ULL, 0) && --tries > 0);\n")
    else:
        call = f"\tstatus = {asm_sym}(leaf, a);\n"
    sec = f"sb_code_{name}"  # not the symbol's own name: the assembler would see it twice
    section = f'__attribute__((section("{sec}"), noinline)) ' if flavor == "user" else ""
    bounds = (f"extern const char __start_{sec}[] SB_HIDDEN, __stop_{sec}[] SB_HIDDEN;\n"
              if flavor == "user" else "")
    return (f"{bounds}{section}static sb_u64 {name}(sb_u64 leaf, struct sb_args *a)\n{{\n\tsb_u64 status;\n"
            f"{before}{call}{after}\treturn status;\n}}\n")


def _c_string(line: str) -> str:
    if line.startswith(RAW):
        return line[len(RAW):]
    return '"' + line.replace("\\", "\\\\").replace('"', '\\"') + '\\n"'


def generate(entries: list, flavor: str = "user") -> str:
    """The whole generated source for these wrappers."""
    if flavor not in _PRELUDE:
        raise ValueError(f"unknown flavor {flavor!r}")
    cfg, init_area = "sb_gen_emul_cfg", "sb_gen_init_area"
    leaves = {}
    for e in entries:
        leaves.setdefault(e.resolved.leaf.name, e.resolved.leaf)
    stub_sym = {name: f"sb_gen_stub_{name}" for name in leaves}
    asm = [".text"] + (_latency_pages(end=False) if flavor == "user" else [])
    for name, leaf in leaves.items():
        if any(e.resolved.conv.imported for e in entries):
            asm.append(f".globl {stub_sym[name]}")  # called from the imported code's own files
        asm += _stub_asm(stub_sym[name], leaf, flavor, cfg, init_area)
    if flavor == "user":
        asm += _latency_pages(end=True)
    wrappers, rows, decls = [], [], []
    if flavor == "user":
        decls += [f"extern const char {stub}[] SB_HIDDEN, {stub}_end[] SB_HIDDEN;" for stub in stub_sym.values()]
    traps = set()
    fns = []  # per entry, the function the table (and the module's batch loop) calls
    for i, e in enumerate(entries):
        if e.resolved.conv.imported:
            fn, lines, decl, ranges = _imported_row(i, e, stub_sym[e.resolved.leaf.name], flavor)
            asm += lines
            decls += decl
            traps |= set(e.resolved.conv.imported.undefined)
            code = ", { " + ", ".join(f"{{ {lo}, {hi} }}" for lo, hi in ranges) + " }" if flavor == "user" else ""
            conv, x, leaf = e.key
            rows.append(f'\t{{ "{conv}", "{x}", "{leaf}", {fn}{code} }},')
            fns.append(fn)
            continue
        sym = f"sb_gen_f{i}"
        asm += _wrapper_asm(sym, i, e, stub_sym[e.resolved.leaf.name], flavor)
        decls.append(f"SB_HIDDEN sb_u64 {sym}(sb_u64 leaf, struct sb_args *args);")
        c = _c_wrapper(f"sb_gen_w{i}", sym, e.resolved.conv, flavor)
        if c:
            wrappers.append(c)
        conv, x, leaf = e.key
        code = ""
        if flavor == "user":  # sb_code_range rows: C wrapper, assembly wrapper, stub
            stub = stub_sym[e.resolved.leaf.name] if e.crossing.calls_stub else None
            ranges = [(f"__start_sb_code_sb_gen_w{i}", f"__stop_sb_code_sb_gen_w{i}") if c else ("0", "0"),
                      (f"(const void *){sym}", f"{sym}_end"), (stub, f"{stub}_end") if stub else ("0", "0")]
            code = ", { " + ", ".join(f"{{ {lo}, {hi} }}" for lo, hi in ranges) + " }"
            decls.append(f"extern const char {sym}_end[] SB_HIDDEN;")
        rows.append(f'\t{{ "{conv}", "{x}", "{leaf}", {"sb_gen_w" if c else "sb_gen_f"}{i}{code} }},')
        fns.append(f"{'sb_gen_w' if c else 'sb_gen_f'}{i}")
    if flavor == "kernel" and traps:
        # The copies of the tree's files call this instead of the kernel's functions outside them
        # (6.1's __tdx_hypercall_failed): only the functions that do not call it are in the
        # table (gen/ring0.refusal), so it is never reached.
        wrappers.append(f"void {UNREACHED}(void);\nvoid {UNREACHED}(void)\n{{\n}}\n")
        traps = set()
    for sym in sorted(traps):
        # What the imported code calls in the rest of the kernel (6.1's __tdx_hypercall_failed,
        # its panic path): a trap here, so such a path ends in SIGILL instead of a stray jump.
        asm += [f".globl {sym}", f".hidden {sym}", f".type {sym}, @function", f"{sym}:", "ud2",
                f".size {sym}, .-{sym}"]
    out = [f"/* Generated by bench.gen.codegen (flavor {flavor}) - do not edit; regenerate. */",
           _PRELUDE[flavor],
           "_Static_assert(offsetof(struct sb_args, regs) == SB_OFF_REGS, \"sb_args layout\");",
           f"_Static_assert(offsetof(struct sb_args, rbp_slot) == {OFF_RBP_SLOT}, \"sb_args layout\");",
           f"_Static_assert(offsetof(struct sb_emul_cfg, avx_reset_mask) == {CFG_AVX_RESET}, \"cfg layout\");",
           f"_Static_assert(offsetof(struct sb_emul_cfg, poison) == {CFG_POISON}, \"cfg layout\");",
           f"_Static_assert(offsetof(struct sb_emul_cfg, poison_area) == {CFG_POISON_AREA}, \"cfg layout\");",
           "",
           f"SB_HIDDEN struct sb_emul_cfg {cfg};",
           *([f"static DEFINE_PER_CPU(bool, {CACHE_STATE});"]
             if flavor == "kernel" and any(e.resolved.conv.retry_kernel for e in entries) else []),
           "/* XRSTOR image with every component INIT: header zero, MXCSR at its default. */",
           f"SB_HIDDEN const unsigned int {init_area}[1024 / 4] __attribute__((aligned(64))) = "
           "{ [6] = 0x1f80 };",
           "", *decls, "", "__asm__(",
           *("\t" + _c_string(line) for line in asm + [".previous" if flavor == "kernel" else ".text"]),
           ");", "", *wrappers,
           f"static const struct sb_gen_entry sb_gen_entries[{max(len(rows), 1)}] = {{",
           *rows, "};",
           f"SB_EXPORT const struct sb_gen_unit sb_gen_unit = {{ SB_ABI_VERSION, {len(rows)}, sb_gen_entries, "
           f"&{cfg} }};", ""]
    if flavor == "kernel":
        # The module's batch loop (_native/kmod/sb_kloop.h) expands this list into one loop per
        # wrapper with a direct call (no retpoline inside a sample); the third column is the
        # convention's fpu_mask (all ones: every XCR0 component), ANDed with XCR0 there.
        masks = [e.resolved.conv.fpu_mask for e in entries]
        out += ["#define SB_GEN_FOREACH(X) \\",
                *(f"\tX({i}, {fns[i]}, "
                  f"{(0xFFFFFFFFFFFFFFFF if m == 'xcr0' else m):#x}ULL) \\" for i, m in enumerate(masks)),
                "", '#include "sb_kloop.h"', ""]
    return "\n".join(out)


# --- imported code (bench kernel import) -------------------------------------------------

def _kernel_sym(i: int, e: Entry) -> str:
    return f"sb_k{i}_{e.resolved.conv.imported.symbol}"


def _kernel_adapter(lines: list) -> list:
    """The adapter as the module needs it: an ENDBR where the table's indirect call lands, the
    return through ASM_RET (objtool: no bare `ret` with return thunks)."""
    out = []
    for line in lines:
        if line.startswith(".hidden"):
            continue
        out.append(RAW + "ASM_RET" if line.strip() == "ret" else line)
        if line.endswith(":") and not line.startswith((".", "#")) and not line.endswith("_end:"):
            out.append(RAW + "ASM_ENDBR")
    return out


def _imported_row(i: int, e: Entry, stub: str, flavor: str = "user"):
    """(table function, asm lines, declarations, code ranges) of an imported entry: the kernel's
    function itself (its copy for this crossing and leaf, see imported_asm, or in the module
    gen/ring0.py), or the adapter to its own prototype; ranges [adapter, the kernel function,
    the stub] (user space only: the module's copies have no end labels)."""
    imp = e.resolved.conv.imported
    _, adapter = read_imported(imp.source, imp.adapter, imp.symbol, imp.digest, imp.raw)
    ksym = _kernel_sym(i, e)
    if flavor == "kernel":
        if imp.layout == "adapter":
            fn = f"sb_gen_w{i}"
            lines = _kernel_adapter(adapter.replace(ADAPTER_FN, fn).replace(ADAPTER_CALLEE, ksym).splitlines())
            return fn, lines, [f"sb_u64 {fn}(sb_u64 leaf, struct sb_args *args);"], []
        return ksym, [], [f"sb_u64 {ksym}(sb_u64 leaf, struct sb_args *args);"], []
    decls = [f"extern const char {ksym}_end[] SB_HIDDEN;"]
    stub_range = (stub, f"{stub}_end") if e.crossing.calls_stub else ("0", "0")
    if imp.layout == "adapter":
        fn = f"sb_gen_w{i}"
        lines = adapter.replace(ADAPTER_FN, fn).replace(ADAPTER_CALLEE, ksym).splitlines()
        decls += [f"extern const char {ksym}[] SB_HIDDEN;",
                  f"SB_HIDDEN sb_u64 {fn}(sb_u64 leaf, struct sb_args *args);",
                  f"extern const char {fn}_end[] SB_HIDDEN;"]
        return fn, lines, decls, [(f"(const void *){fn}", f"{fn}_end"), (f"(const void *){ksym}", f"{ksym}_end"),
                                  stub_range]
    decls.append(f"SB_HIDDEN sb_u64 {ksym}(sb_u64 leaf, struct sb_args *args);")
    return ksym, [], decls, [("0", "0"), (f"(const void *){ksym}", f"{ksym}_end"), stub_range]


def imported_asm(entries: list) -> list:
    """The assembly files that go with generate(entries): per imported entry, the kernel's
    preprocessed file with its symbols prefixed (sb_k<i>_) and the crossing in place of
    TDCALL/SEAMCALL.  A crossing other than the emulated stub is followed by a zeroed RAX
    (TDX_SUCCESS, CF clear), so the kernel's code takes its success path as it would after the
    real instruction (VMCALL/CPUID leave other values in RAX)."""
    out = []
    for i, e in enumerate(entries):
        imp = e.resolved.conv.imported
        if not imp:
            continue
        text, _ = read_imported(imp.source, imp.adapter, imp.symbol, imp.digest, imp.raw)
        x, leaf = e.crossing, e.resolved.leaf
        around = x.extra_clobbers(leaf)
        lines = [f"pushq %{r}" for r in around] + x.text("user", f"sb_gen_stub_{leaf.name}") + \
            [f"popq %{r}" for r in reversed(around)]
        if not x.calls_stub:
            lines.append("xorl %eax, %eax")
        out.append(instance(text, f"sb_k{i}_", lines))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gen.codegen", description=__doc__.split("\n\n")[0])
    p.add_argument("--flavor", choices=sorted(_PRELUDE), default="user")
    p.add_argument("--conventions", metavar="FILE", action="append", default=[],
                   help="extra conventions YAML (may repeat)")
    p.add_argument("--ring0", metavar="FILE",
                   help="kernel flavor: the imported conventions the module may carry, as `bench kmod build "
                        "-C` writes it (the runtime check's C-ABI findings per convention and leaf)")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    args = p.parse_args(argv)
    try:
        catalog = load_builtin()
        for f in args.conventions:
            catalog = catalog.with_user_file(f)
        ring0 = read_ring0(args.ring0) if args.ring0 else None
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    entries = plan(catalog, args.flavor, ring0=ring0)
    text = generate(entries, args.flavor)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    files = {path.name: text}
    if args.flavor == "kernel":
        files.update(ring0_src.sources(entries))
    for rel, body in files.items():
        _write_if_changed(path.parent / rel, body)
    return 0


def _write_if_changed(path: Path, text: str):
    """Atomically, and not at all when the text is the same (kbuild then rebuilds nothing)."""
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_ring0(path) -> dict:
    """{(convention, leaf): breaks} from the file `bench kmod build -C` writes."""
    import json
    try:
        return read_ring0_doc(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--ring0 {path}: not a file `bench kmod build -C` wrote ({exc})") from None


def read_ring0_doc(doc: dict) -> dict:
    return {(row["convention"], row["leaf"]): tuple((c, tuple(regs)) for c, regs in row["abi_breaks"])
            for row in doc["checked"]}


if __name__ == "__main__":
    sys.exit(main())
