"""Is a convention correct for a leaf?  Predicted from the declarations, and checked by running it.

A convention is SAFE for a leaf when every register the caller relies on comes
back intact and every output it promises reaches the struct:
- callee-saved registers (SysV ABI and kernel C alike) the leaf writes are saved,
  and none is scrubbed without being saved;
- RBP, if the leaf clobbers it, is restored (frame, stack or struct);
- the struct pointer is still valid when outputs are stored (the leaf may
  overwrite RSI);
- vector state the leaf may reset to INIT is saved around the call;
- a convention that stores anything (a `_ret` form) stores every output of the
  leaf; a status-only convention (store: []) promises none.

`static_verdict` predicts this from the declarations alone.  `runtime_verdict`
calls the generated wrapper once, untimed, in a forked child, against the
emulated stub in poisoning mode (it writes a distinct marker into every register
the leaf may write, vector registers included), with known values in every
callee-saved register, RBP and the vector registers, and compares.  Both speak
in the same reasons; each reason has a `kind` so the two can be compared.
"""
from __future__ import annotations

import re
import signal
import struct
from dataclasses import dataclass, replace

from bench.config import ARG_REGS, AVX_STATE_BITS, CALLEE_SAVED, Convention, Leaf, Resolved
from bench.gen import codegen
from bench.gen.codegen import MARKER_INDEX, marker  # noqa: F401  (what the stub writes, for the checks)
from bench.gen.crossings import CROSSINGS
from bench.native.errors import NativeError

# The runtime checks call into bench.native (the extension, the registry, the machine); they
# import it inside the functions so that static_verdict (bench list, the measure stage's
# prediction) works where the extension is not built.

SSE_BIT = 1 << 1
# struct sb_check's set[] and after[] hold the callee-saved registers in CALLEE_SAVED's order.
CHECK_SAVED = CALLEE_SAVED


@dataclass(frozen=True)
class Finding:
    kind: str
    text: str
    regs: tuple = ()
    fault: bool = False  # seen as a crash of the call (runtime only)


@dataclass(frozen=True)
class Verdict:
    safe: bool
    findings: tuple = ()
    source: str = "static"  # static | runtime

    @property
    def reasons(self):
        return tuple(f.text for f in self.findings)

    @property
    def kinds(self):
        return frozenset(f.kind for f in self.findings)

    @property
    def text(self):
        if self.safe is None:  # no prediction (imported code): only the runtime check can say
            return "; ".join(self.reasons)
        return "SAFE" if self.safe else "UNSAFE: " + "; ".join(self.reasons)

    def as_dict(self):
        return {"safe": self.safe, "source": self.source,
                "reasons": [{"kind": f.kind, "text": f.text, "regs": list(f.regs)} for f in self.findings]}


def _verdict(findings, source):
    return Verdict(not findings, tuple(findings), source)


def _clobber_text(reg, leaf, conv):
    if reg == "rbp":
        return f"RBP clobbered by leaf {leaf.name}, not saved by {conv.name}"
    return f"{reg} written by leaf {leaf.name}, not saved by {conv.name}"


def _clobber_findings(regs, leaf, conv) -> list:
    """RBP on its own (its hazard differs), the other callee-saved registers as one reason."""
    out = []
    if "rbp" in regs:
        out.append(Finding("rbp", _clobber_text("rbp", leaf, conv), ("rbp",)))
    rest = tuple(r for r in regs if r != "rbp")
    if rest:
        out.append(Finding("callee_saved", _clobber_text(", ".join(rest), leaf, conv), rest))
    return out


def _pointer_text(leaf, conv):
    return (f"{conv.name} stores outputs through RSI after leaf {leaf.name} may have overwritten it "
            "(struct pointer not kept on the stack)")


def _missing_outputs_text(missing, leaf, conv):
    return f"output {', '.join(missing)} of leaf {leaf.name} not written back by {conv.name}"


def _avx_text(leaf, conv):
    return f"leaf {leaf.name} may reset AVX state to INIT and {conv.name} saves no vector state"


# --- static -------------------------------------------------------------------------

NOT_PREDICTED = "not predicted (imported code)"


def static_verdict(r: Resolved, xcr0: int | None = None) -> Verdict:
    """From the declarations alone.  xcr0 (this machine's) narrows which AVX components an
    `fpu_mask` must cover; without it every AVX component counts."""
    conv, leaf = r.conv, r.leaf
    if conv.imported:
        # The kernel's own code: no declaration to predict from.  safe=None; the runtime check
        # (the poisoning stub against the assembled function) decides.
        return Verdict(None, (Finding("imported", NOT_PREDICTED),), "static")
    found = []
    for cause, regs in r.abi_breaks:  # the C-ABI fact the kernel module's build filter reads too
        if cause == "written":
            found += _clobber_findings(regs, leaf, conv)
        elif cause == "loaded":
            found.append(Finding("callee_saved", f"{', '.join(regs)} loaded from the struct by {conv.name}, "
                                 "not saved", regs))
        elif cause == "scrubbed":
            found.append(Finding("callee_saved", f"{', '.join(regs)} zeroed by the scrub of {conv.name}, "
                                 "not saved", regs))
        else:
            found.append(Finding("pointer", _pointer_text(leaf, conv), regs))
    if r.store:
        missing = [reg for reg in leaf.outputs if reg not in r.store]
        if missing:
            found.append(Finding("output", _missing_outputs_text(missing, leaf, conv), tuple(missing)))
    # With no AVX component enabled (xcr0 given) there is no AVX state to lose.
    if leaf.avx_reset and (xcr0 is None or xcr0 & AVX_STATE_BITS):
        if conv.fpu == "none":
            found.append(Finding("avx", _avx_text(leaf, conv)))
        elif isinstance(conv.fpu_mask, int):
            need = AVX_STATE_BITS & (xcr0 if xcr0 is not None else AVX_STATE_BITS)
            lost = need & ~conv.fpu_mask
            if lost:
                found.append(Finding("avx", f"leaf {leaf.name} may reset AVX state to INIT and the fpu_mask "
                                     f"{conv.fpu_mask:#x} of {conv.name} leaves out components {lost:#x}"))
    return _verdict(found, "static")


# --- markers and XSAVE images ------------------------------------------------------


def caller_value(reg: str) -> int:
    """What the checker puts in a callee-saved register before the call."""
    return 0xCA11E00000000000 | (CHECK_SAVED.index(reg) + 1) << 8 | 0x5A


def input_value(reg: str) -> int:
    """What the checker puts in the struct before the call (so a missing output shows)."""
    return 0x1A00000000000000 | (MARKER_INDEX[reg] << 8) | 0x11


# Vector markers: 8-byte words, distinct per component and offset; "5EB1" = written by the
# leaf (poison), "CA11" = the caller's.
def _vword(tag: int, comp: int, off: int) -> int:
    return tag << 48 | comp << 32 | off


POISON_TAG, CALLER_TAG = 0x5EB1, 0xCA11
LEGACY_XMM_OFFSET, XSAVE_HEADER = 160, 512


def component_layout(mask: int) -> dict:
    """{component bit: (offset, size)} in the standard XSAVE format (CPUID 0xD)."""
    from bench.native import _core
    out = {}
    for bit in range(64):
        if not mask >> bit & 1:
            continue
        if bit == 1:
            out[bit] = (LEGACY_XMM_OFFSET, 256)
        elif bit >= 2:
            size, offset, _, _ = _core.cpuid(0xD, bit)
            if size:
                out[bit] = (offset, size)
    return out


def xsave_image(mask: int, tag: int, size: int) -> bytes:
    """A standard-format XSAVE image with every component of `mask` filled with vector markers."""
    img = bytearray(size)
    struct.pack_into("<I", img, 24, 0x1F80)  # MXCSR default (loaded with SSE/AVX)
    for bit, (offset, length) in component_layout(mask).items():
        for off in range(0, length, 8):
            struct.pack_into("<Q", img, offset + off, _vword(tag, bit, off))
    struct.pack_into("<Q", img, XSAVE_HEADER, mask)  # XSTATE_BV; XCOMP_BV 0: standard format
    return bytes(img)


def _vreg_name(bit: int, off: int) -> str:
    if bit == 1:
        return f"xmm{off // 16}"
    if bit == 2:
        return f"ymm{off // 16}[255:128]"
    if bit == 5:
        return f"k{off // 8}"
    if bit == 6:
        return f"zmm{off // 32}[511:256]"
    if bit == 7:
        return f"zmm{16 + off // 64}"
    return f"xstate{bit}+{off}"


def _compact(names):
    """['ymm0[255:128]', 'ymm1[255:128]', 'k0'] -> 'ymm0-1[255:128], k0'."""
    groups = {}
    for n in names:
        stem, num, suffix = re.match(r"^([a-z]+?)(\d+)(\[.*\])?$", n).groups()
        groups.setdefault((stem, suffix or ""), []).append(int(num))
    parts = []
    for (stem, suffix), nums in groups.items():
        nums = sorted(set(nums))
        start = prev = nums[0]
        for n in nums[1:] + [None]:
            if n is None or n != prev + 1:  # a run ends
                parts.append(f"{stem}{start}" + (f"-{prev}" if prev != start else "") + suffix)
                start = n
            prev = n
    return ", ".join(parts)


def compare_vectors(mask: int, before: bytes, after: bytes):
    """(registers changed to the leaf's markers, registers changed to anything else)."""
    xstate_bv = struct.unpack_from("<Q", after, XSAVE_HEADER)[0]
    poisoned, other = [], []
    for bit, (offset, length) in component_layout(mask).items():
        for off in range(0, length, 8):
            want = struct.unpack_from("<Q", before, offset + off)[0]
            # XSTATE_BV bit clear: the component is in INIT state (zeros), whatever the area holds
            got = struct.unpack_from("<Q", after, offset + off)[0] if xstate_bv >> bit & 1 else 0
            if got != want:
                name = _vreg_name(bit, off)
                lst = poisoned if got >> 48 == POISON_TAG else other
                if name not in lst:
                    lst.append(name)
    return poisoned, other


# --- running one check in a child ----------------------------------------------------

def _fork(fn):
    """fn() in a forked child: ("ok", int) | ("signal", signo) | ("exit", code).  The child's
    results travel in MAP_SHARED memory, so a crash still leaves them readable."""
    from bench.native.backends import run_in_child
    return run_in_child(fn)


class RuntimeUnavailable(RuntimeError):
    """This pair cannot be run in user space here (kernel-only, FPU policy missing)."""


class CheckFailed(RuntimeError):
    """The runtime check itself failed to run (its child exited without a result): says
    nothing about the pair, so the prediction stands, and the message says what failed."""


def _xsave_info():
    from bench.native import machine
    return machine.xsave()


def _has_c_wrapper(conv: Convention) -> bool:
    """Whether the table's function is C (sc_retry loop, FPU save) around the assembly."""
    return conv.fpu != "none" or conv.retry_status is not None


_BARE_UNITS = {}


def _bare(conv: Convention) -> Convention:
    return replace(conv, retry_status=None, retry_max=0, fpu="none")


def _bare_fn(conv: Convention, leaf: Leaf):
    """(fn, unit) of the convention's assembly alone, without the C retry/FPU wrapper,
    compiled on demand (and cached by content, like any user convention).

    The C wrapper pushes and pops the callee-saved registers it uses itself, so through it a
    clobber of those can go unseen; in the kernel the retry loop is inlined into whatever C
    caller there is, so the assembly is what must be judged."""
    from bench.native.registry import compile_entries
    key = (conv.name, conv.decl_hash, leaf)
    if key not in _BARE_UNITS:
        entry = codegen.Entry(_bare(conv).resolve(leaf), CROSSINGS["emulated"])
        unit = compile_entries([entry])
        (_, _, _, fn), = unit.entries()
        _BARE_UNITS[key] = (fn, unit)
    return _BARE_UNITS[key]


def runtime_verdict(registry, conv: Convention, leaf: Leaf, xsave=None, fn_unit=None) -> Verdict:
    """Call conv's wrapper for leaf once against the poisoning stub and judge what came back.
    Where the table's function is C around the assembly, the assembly alone is checked too
    (vector state excepted: saving it is the C part's job) and the findings are merged."""
    from bench.native import machine
    if conv.kernel_only:
        raise RuntimeUnavailable(f"{conv.name} {conv.kernel_only_why}")
    why = machine.fpu_support(conv.fpu)
    if why:
        raise RuntimeUnavailable(f"{conv.name}: {why}")
    x = xsave or _xsave_info()
    found = {}
    if fn_unit is None and _has_c_wrapper(conv):
        try:
            bare_fn = _bare_fn(conv, leaf)
        except NativeError as exc:  # no C compiler: say so rather than judge half the code
            raise RuntimeUnavailable(f"{conv.name}: its assembly alone could not be built ({exc})") from None
        for f in _run_once(bare_fn, conv, _bare(conv).resolve(leaf), x):
            if f.kind != "avx":
                found[(f.kind, f.regs)] = f
    fn_unit = fn_unit or registry.lookup(conv.name, "emulated", leaf.name)
    for f in _run_once(fn_unit, conv, conv.resolve(leaf), x):
        # Seen already on the assembly (the C wrapper restores some registers itself, so it may
        # show fewer): skip it, unless through the C wrapper it crashed, which says more.
        covered = any(g.kind == f.kind and set(f.regs) <= set(g.regs) for g in found.values())
        if not covered or f.fault:
            found[(f.kind, f.regs)] = f
    return _verdict(list(found.values()), "runtime")


def _run_once(fn_unit, conv: Convention, r: Resolved, x) -> list:
    """One call in a forked child; the findings."""
    from bench.native import _core
    leaf = r.leaf
    xcr0 = x["xcr0"] if x["enabled"] else 0
    fn, unit = fn_unit
    size = max(x["size_max"] or 0, x["size_xcr0"] or 0, 4096)
    vec_mask = xcr0 & (SSE_BIT | AVX_STATE_BITS)
    avx_mask = xcr0 & AVX_STATE_BITS
    block = _core.SharedBlock(size)
    vec_in = xsave_image(vec_mask, CALLER_TAG, size) if vec_mask else b""
    if vec_mask:
        block.write_area(0, vec_in)
    if avx_mask:
        block.write_area(2, xsave_image(avx_mask, POISON_TAG, size))
    fpu_mask = xcr0 if conv.fpu_mask == "xcr0" else xcr0 & conv.fpu_mask
    args = _core.Args(size, fpu_mask)
    args.regs = [input_value(reg) for reg in ARG_REGS]
    block.prepare_check(fn, leaf.rax, args, vec_mask, [caller_value(reg) for reg in CHECK_SAVED])

    def child():  # the module as the pair is timed: its emul_latency too (the stub's latency row)
        unit.set_emulation(0, conv.emul_latency, avx_mask, 1, block.area_address(2) if avx_mask else 0)
        return block.run_check()

    kind, value = _fork(child)
    res = block.check_result()
    if kind == "exit" and value == _core.CHECK_FAULT_EXIT and not res["done"]:
        return [_fault_finding(res, r)]
    if kind == "signal":
        what = "did not return within 10 s" if value == signal.SIGALRM else \
            f"was killed by {signal.Signals(value).name}"
        return [Finding("crash", f"{conv.name} under leaf {leaf.name} {what}")]
    if kind != "ok" or not res["done"]:
        raise CheckFailed(f"the safety check of {conv.name}/{leaf.name} failed to run ({kind} {value})")
    return _judge(res, r, vec_mask, vec_in, block.read_area(1))


def _judge(res, r: Resolved, vec_mask, vec_in, vec_out) -> list:
    conv, leaf = r.conv, r.leaf
    if conv.imported:
        # No declaration says what it stores: what it wrote back is what it promises (a status-
        # only function stores nothing; a _ret form must then store every output of the leaf).
        stored = tuple(reg for i, reg in enumerate(ARG_REGS) if res["out_regs"][i] != input_value(reg))
        r = replace(r, store=stored)
    found, marked, zeroed = [], [], []
    for reg, want, got in zip(CHECK_SAVED, res["set"], res["after"]):
        if got == want:
            continue
        if got == marker(reg) or (got == 0 and reg in leaf.all_writes):
            marked.append(reg)  # zero: the leaf wrote it and the convention scrubbed it, unsaved
        elif got == 0 and reg != "rbp":
            zeroed.append(reg)
        else:
            found.append(Finding("rbp" if reg == "rbp" else "callee_saved",
                                 f"{reg} comes back from {conv.name} as {got:#x}, not the caller's value", (reg,)))
    found = _clobber_findings(marked, leaf, conv) + found
    if zeroed:
        found.append(Finding("callee_saved", f"{', '.join(zeroed)} zeroed by the scrub of {conv.name}, not saved",
                             tuple(zeroed)))
    if res["rsp_after"] != res["rsp_before"]:
        delta = res["rsp_after"] - res["rsp_before"]
        found.append(Finding("rsp", f"RSP off by {delta:+d} bytes after {conv.name} returns", ("rsp",)))
    if res["rflags"] & (1 << 10):
        found.append(Finding("df", f"{conv.name} returns with the direction flag set"))
    if res["status"] != 0:
        found.append(Finding("status", f"{conv.name} returned status {res['status']:#x}; the stub returned "
                             "TDX_SUCCESS (0)"))
    if r.store:
        missing, wrong = [], []
        for reg in leaf.outputs:
            got = res["out_regs"][ARG_REGS.index(reg)]
            if got != marker(reg):
                (missing if reg not in r.store or got == input_value(reg) else wrong).append((reg, got))
        if missing:
            regs = [reg for reg, _ in missing]
            found.append(Finding("output", _missing_outputs_text(regs, leaf, conv), tuple(regs)))
        for reg, got in wrong:
            found.append(Finding("output", f"output {reg} of leaf {leaf.name} reached the struct as {got:#x}, "
                                 f"not the leaf's value, under {conv.name}", (reg,)))
    if vec_mask:
        poisoned, other = compare_vectors(vec_mask, vec_in, vec_out)
        if poisoned:
            found.append(Finding("avx", f"AVX state reset by leaf {leaf.name} ({_compact(poisoned)} hold its "
                                 f"markers), not saved by {conv.name}", tuple(poisoned)))
        if other:
            found.append(Finding("avx", f"vector registers {_compact(other)} changed under {conv.name}",
                                 tuple(other)))
    return found


def _fault_finding(res, r: Resolved) -> Finding:
    """Name the cause of a crash from the registers at the fault: a leaf's marker there says
    which clobbered register the wrapper (or its C caller) used as a pointer."""
    conv, leaf = r.conv, r.leaf
    sig = signal.Signals(res["fault_sig"]).name if res["fault_sig"] else "a fault"
    regs = res["fault_regs"]
    by_marker = {marker(reg): reg for reg in leaf.all_writes}
    holders = [(name, by_marker[v]) for name, v in regs.items()
               if name not in ("rip", "efl", "csgsfs", "err", "trapno", "oldmask", "cr2") and v in by_marker]
    written = {w for _, w in holders}
    if "rsi" in written:
        return Finding("pointer", f"{conv.name} stored outputs through a clobbered struct pointer "
                       f"(RSI held leaf {leaf.name}'s marker: {sig})", ("rsi",), True)
    for w in ("rbp",) + CALLEE_SAVED:
        if w in written:
            return Finding("rbp" if w == "rbp" else "callee_saved",
                           f"{_clobber_text(w, leaf, conv)}, and the caller crashed using it ({sig})", (w,), True)
    if holders:
        return Finding("crash", f"{conv.name} crashed using leaf {leaf.name}'s value of {holders[0][1]} ({sig})",
                       (holders[0][1],), True)
    return Finding("crash", f"{conv.name} under leaf {leaf.name} crashed ({sig} at rip {regs['rip']:#x})", (), True)


# --- the C-ABI fact from a runtime verdict ---------------------------------------------

# Findings of the runtime check that break the C calling convention (Resolved.abi_breaks'
# causes); the others (outputs, status, vector state) are about the leaf, not the caller's C.
_ABI_CAUSE = {"callee_saved": "changed", "rbp": "changed", "pointer": "pointer", "rsp": "stack", "df": "flags",
              "crash": "crash"}


def abi_breaks_seen(verdict: Verdict) -> tuple:
    """The runtime verdict's C-ABI breaks, in Resolved.abi_breaks' form ((cause, regs), ...): what
    imported code, which has no declaration, hands the kernel module's build filter."""
    out = {}
    for f in verdict.findings:
        cause = _ABI_CAUSE.get(f.kind)
        if cause:
            out.setdefault(cause, set()).update(f.regs)
    return tuple((cause, tuple(sorted(regs))) for cause, regs in sorted(out.items()))


# --- both ----------------------------------------------------------------------------

_RUNTIME_CACHE = {}


def check_pair(registry, conv: Convention, leaf: Leaf, runtime=True, xsave=None) -> dict:
    """{"static": Verdict, "runtime": Verdict | None, "runtime_note": str, "runtime_failed": bool,
    "agree": bool | None}.  runtime_failed: the check was attempted and failed to run (the note
    says what failed); a pair the check cannot run here at all is only noted."""
    x = xsave or _xsave_info()
    st = static_verdict(conv.resolve(leaf), x["xcr0"] if x["enabled"] else 0)
    rt, note, failed = None, "", False
    if runtime:
        key = (conv.name, conv.decl_hash, leaf)
        try:
            rt = _RUNTIME_CACHE.get(key) or runtime_verdict(registry, conv, leaf, x)
            _RUNTIME_CACHE[key] = rt
        except RuntimeUnavailable as exc:
            note = str(exc)
        except (CheckFailed, NativeError) as exc:  # failed to run (not: the pair is unsafe): keep the prediction
            note, failed = f"runtime check failed: {exc}", True
    return {"static": st, "runtime": rt, "runtime_note": note, "runtime_failed": failed,
            "agree": None if rt is None or st.safe is None else rt.safe == st.safe}


def gate_verdict(registry, conv: Convention, leaf: Leaf) -> Verdict:
    """What decides whether a pair may be timed: the static prediction, or for imported code,
    which has none, the runtime check (the prediction's "not predicted" where it cannot run)."""
    st = static_verdict(conv.resolve(leaf))
    if st.safe is not None:
        return st
    return combined(check_pair(registry, conv, leaf))


def known_runtime(conv: Convention, leaf: Leaf):
    """The runtime verdict if this process already checked the pair, else None."""
    return _RUNTIME_CACHE.get((conv.name, conv.decl_hash, leaf))


def combined(pair: dict) -> Verdict:
    """What a table shows: the runtime verdict where it ran, else the prediction."""
    return pair["runtime"] or pair["static"]


# --- the NMI-style frame-pointer walk -----------------------------------------------

def nmi_walk(registry, conv: Convention, leaf: Leaf, duration_ms=60, interval_us=50, hold_iters=200_000,
             post_iters=200_000) -> dict:
    """Sample repeated calls with a periodic signal whose handler walks the RBP chain of the
    interrupted context (as a frame-pointer unwinder in an NMI does), while the stub holds the
    leaf's clobbered RBP for hold_iters and the caller then spins post_iters with RBP as the
    wrapper left it.

    The wrapper's assembly is called directly from a frame-pointer-keeping caller: in the
    kernel, sc_retry is inlined into its (frame-pointer) caller, so the C retry/FPU wrapper of
    the table (compiled without frame pointers here) is left out."""
    from bench.native import _core
    if conv.kernel_only:
        raise RuntimeUnavailable(f"{conv.name} runs only in the kernel module")
    for what, value, lo, hi in (("duration_ms", duration_ms, 1, 10_000), ("interval_us", interval_us, 1, 999_999),
                                ("hold_iters", hold_iters, 0, 10**9), ("post_iters", post_iters, 0, 10**9)):
        if not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    fn, unit = _bare_fn(conv, leaf)
    block = _core.SharedBlock(4096)
    args = _core.Args(4096, 0)
    args.regs = [input_value(reg) for reg in ARG_REGS]
    block.prepare_nmi(fn, leaf.rax, args, post_iters, duration_ms * 1000, interval_us)

    def child():
        # The stub's latency spin is the window: after the markers where the leaf clobbers RBP
        # (the garbage is live), before them elsewhere (same length, nothing to see).
        unit.set_emulation(0, hold_iters, 0, 0, 0)
        return block.run_nmi()

    kind, value = _fork(child)
    res = block.nmi_result()
    if kind != "ok" or not res["done"]:
        raise CheckFailed(f"the frame-pointer walk demo of {conv.name}/{leaf.name} failed ({kind} {value})")
    r = conv.resolve(leaf)
    phases = {}
    for i, phase in enumerate(("in_call", "after_return")):
        n, g = res["samples"][i], res["garbage"][i]
        phases[phase] = {"samples": n, "garbage": g, "fraction": g / n if n else None,
                         "bad_rbp": res["bad_rbp"][i] if g else None}
    return {"convention": conv.name, "leaf": leaf.name, "rbp_policy": r.rbp, "calls": res["calls"],
            "elsewhere": res["elsewhere"], **phases,
            "rbp_marker": marker("rbp") if leaf.clobbers_rbp else None}
