"""The kernel's own TDX call code, imported from a kernel tree as conventions.

`bench kernel import PATH` (a kernel tree, a git checkout at a revision, or a Debian
`linux-source-*.tar.xz`) finds the assembly files of the TDX call code
(arch/x86/virt/vmx/tdx, arch/x86/coco/tdx), runs each through the C preprocessor with
seambench's own shim headers first on the include path, and replaces the TDCALL/SEAMCALL
instruction (`66 0F 01 CC` / `66 0F 01 CF`, emitted as `.byte` by the kernel) with a
placeholder.  The result is kept in seambench's cache; nothing of the kernel enters the project.
The shim is written from the documented meaning of the kernel macros the files use (linkage,
frame, exception table, asm-offsets, status constants), not from their text.  The offsets come
from the tree itself: its asm-offsets.c names which struct field each TDX_* offset is, and the
tree's header gives the struct's fields.

Each exported function becomes a convention named like `linux-6.12:__seamcall_saved_ret`,
written to a conventions YAML (`-C FILE`).  When the registry builds one, codegen makes a copy of
the preprocessed file per crossing and leaf profile, with its symbols prefixed and the
placeholder replaced by the crossing (a call of the emulated stub, VMCALL, CPUID...), and, for a
function whose prototype is not `u64 f(u64 leaf, struct tdx_module_args *)` laid out like
sb_args, an adapter in assembly from sb_args to the function's own arguments.  The adapter keeps
its state on the stack and touches no callee-saved register, so the safety check sees exactly
what the kernel's code does to them (a C adapter would save some itself and hide a clobber).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ARG_REGS
from bench.gen.toolchain import cache_dir, find_compiler

TDX_DIRS = ("arch/x86/virt/vmx/tdx", "arch/x86/coco/tdx")
HEADERS = ("arch/x86/include/asm/tdx.h", "arch/x86/include/asm/shared/tdx.h", "arch/x86/virt/vmx/tdx/tdx.h")
ASM_OFFSETS = "arch/x86/kernel/asm-offsets.c"
WANTED = HEADERS + (ASM_OFFSETS, "Makefile")
SHIM_VERSION = "1"
CROSSING = "SB_CROSSING"   # stands where TDCALL/SEAMCALL was, in the preprocessed text
PREFIX = "SBK_"            # the shim's SYM_FUNC_START(name) emits SBK_name; codegen renames per copy
ADAPTER_FN, ADAPTER_CALLEE = "@FN@", "@K@"
# A convention name: linux-<version>:<symbol>
IMPORTED_NAME_RE = re.compile(r"[a-z][a-z0-9._+-]{0,40}:[A-Za-z_][A-Za-z0-9_]{0,63}")
OFF = {reg: 8 * i for i, reg in enumerate(ARG_REGS)}  # struct sb_args (sb_abi.h)
PARAM_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")


class KernelImportError(ValueError):
    """The tree has no TDX call code, a layout seambench cannot adapt, or the assembler refused it."""


# --- the shim -------------------------------------------------------------------------
# Written from what the macros mean, for user space: no ENDBR/ORC/objtool annotations, no
# exception table (a fault in user space is a signal, which the probes and checks handle),
# FRAME_BEGIN as with CONFIG_FRAME_POINTER=n (Debian's and most distributions' ORC kernels)
# unless SB_FRAME_POINTER is defined.  Symbols are renamed (SBK_name) and hidden.

_SHIM = {
    "linux/linkage.h": """\
#ifndef SB_SHIM_LINKAGE_H
#define SB_SHIM_LINKAGE_H
/* A function: global and hidden in the unit, with an end label for the code hash. */
#define SYM_FUNC_START(name) .globl SBK_##name ; .hidden SBK_##name ; .type SBK_##name, @function ; \\
	.p2align 4 ; SBK_##name:
#define SYM_FUNC_START_NOALIGN(name) .globl SBK_##name ; .hidden SBK_##name ; \\
	.type SBK_##name, @function ; SBK_##name:
#define SYM_FUNC_START_LOCAL(name) .type SBK_##name, @function ; SBK_##name:
#define SYM_FUNC_END(name) .globl SBK_##name##_end ; .hidden SBK_##name##_end ; SBK_##name##_end: ; \\
	.size SBK_##name, .-SBK_##name
#define SYM_CODE_START(name) SYM_FUNC_START(name)
#define SYM_CODE_END(name) SYM_FUNC_END(name)
#define ENTRY(name) SYM_FUNC_START(name)
#define ENDPROC(name) SYM_FUNC_END(name)
#define SYM_FUNC_ALIAS(alias, name)
#define EXPORT_SYMBOL(name)
#define EXPORT_SYMBOL_GPL(name)
#define RET ret
#define ASM_RET ret
#endif
""",
    "asm/linkage.h": '#include <linux/linkage.h>\n',
    "linux/export.h": '#include <linux/linkage.h>\n',
    "asm/export.h": '#include <linux/linkage.h>\n',
    "asm/frame.h": """\
#ifndef SB_SHIM_FRAME_H
#define SB_SHIM_FRAME_H
#ifdef SB_FRAME_POINTER
#define FRAME_BEGIN push %rbp ; mov %rsp, %rbp
#define FRAME_END pop %rbp
#else
#define FRAME_BEGIN
#define FRAME_END
#endif
#endif
""",
    "asm/asm.h": """\
#ifndef SB_SHIM_ASM_H
#define SB_SHIM_ASM_H
/* Exception-table entries: none in user space. */
#define _ASM_EXTABLE(from, to)
#define _ASM_EXTABLE_FAULT(from, to)
#define _ASM_EXTABLE_UA(from, to)
#define _ASM_EXTABLE_TYPE(from, to, type)
#define _ASM_EXTABLE_TYPE_REG(from, to, type, reg)
#endif
""",
    "asm/unwind_hints.h": """\
#ifndef SB_SHIM_UNWIND_HINTS_H
#define SB_SHIM_UNWIND_HINTS_H
/* objtool annotations: nothing to assemble. */
#define UNWIND_HINT_EMPTY
#define UNWIND_HINT_UNDEFINED
#define UNWIND_HINT_FUNC
#define UNWIND_HINT_SAVE
#define UNWIND_HINT_RESTORE
#define REACHABLE
#define ANNOTATE_NOENDBR
#define ANNOTATE_UNRET_SAFE
#endif
""",
    "linux/objtool.h": '#include <asm/unwind_hints.h>\n',
    "linux/bits.h": """\
#ifndef SB_SHIM_BITS_H
#define SB_SHIM_BITS_H
#define BIT(n) (1 << (n))
#define _BITUL(n) (1 << (n))
#endif
""",
    "linux/errno.h": "",
    "asm/errno.h": "",
    "asm/tdx.h": """\
#ifndef SB_SHIM_TDX_H
#define SB_SHIM_TDX_H
#include <asm/asm-offsets.h>
/* Status codes the kernel makes up itself (class 0xFF of bits 47:40 with bit 63, which the
 * TDX module never returns): VMfailInvalid, and #GP/#UD on the instruction. */
#define TDX_ERROR 0x8000000000000000
#define TDX_SW_ERROR 0x8000FF0000000000
#define TDX_SEAMCALL_VMFAILINVALID 0x8000FF00FFFF0000
#define TDX_SEAMCALL_GP 0x8000FF000000000D
#define TDX_SEAMCALL_UD 0x8000FF0000000006
#endif
""",
    "asm/shared/tdx.h": '#include <asm/tdx.h>\n',
}


# --- reading a tree -------------------------------------------------------------------

@dataclass
class Tree:
    label: str                    # what the user named (a path, and the revision)
    files: dict                   # path inside the tree -> text (only what the import reads)
    version: str = ""             # "6.12"
    release: str = ""             # "6.12.117": VERSION.PATCHLEVEL.SUBLEVEL of its Makefile

    def asm_files(self) -> list:
        return sorted(p for p in self.files if p.endswith(".S") and p.rsplit("/", 1)[0] in TDX_DIRS)


def _wanted(rel: str) -> bool:
    return rel in WANTED or (rel.rsplit("/", 1)[0] in TDX_DIRS and rel.endswith((".S", ".h")))


def read_tree(path, rev=None) -> Tree:
    """The files the import needs, from a directory, a git revision of one, or a tarball."""
    p = Path(path)
    if not p.exists():
        raise KernelImportError(f"{path}: no such file or directory")
    if p.is_file():
        if rev:
            raise KernelImportError(f"--rev {rev}: a revision needs a git checkout, not a tarball")
        files = _read_tarball(p)
        label = str(path)
    elif rev:
        files = _read_git(p, rev)
        label = f"{path}@{rev}"
    else:
        files = {}
        for rel in WANTED:
            if (p / rel).is_file():
                files[rel] = (p / rel).read_text(errors="replace")
        for d in TDX_DIRS:
            if (p / d).is_dir():
                for f in sorted((p / d).iterdir()):
                    rel = f"{d}/{f.name}"
                    if f.is_file() and _wanted(rel):
                        files[rel] = f.read_text(errors="replace")
        label = str(path)
    tree = Tree(label, files)
    tree.version = _version(tree, p)
    tree.release = makefile_release(tree.files.get("Makefile", ""))
    return tree


def _read_tarball(p: Path) -> dict:
    try:
        tf = tarfile.open(p, "r|*")  # one pass: an xz stream cannot seek
    except (tarfile.TarError, OSError) as exc:
        raise KernelImportError(f"{p}: not a readable tarball ({exc})") from None
    files = {}
    with tf:
        try:
            for m in tf:
                rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                if m.isfile() and _wanted(rel):
                    files[rel] = tf.extractfile(m).read().decode(errors="replace")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise KernelImportError(f"{p}: the tarball is damaged ({exc})") from None
    return files


def _git(p: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(p), *args], capture_output=True, text=True)


def _read_git(p: Path, rev: str) -> dict:
    if shutil.which("git") is None:
        raise KernelImportError("--rev needs git, which is not installed")
    proc = _git(p, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if proc.returncode != 0:
        raise KernelImportError(f"{p}: no commit {rev!r} in that git checkout")
    commit = proc.stdout.strip()
    listing = _git(p, "ls-tree", "-r", "--name-only", commit, "--", *TDX_DIRS, *WANTED)
    files = {}
    for rel in listing.stdout.split():
        if _wanted(rel):
            show = _git(p, "show", f"{commit}:{rel}")
            if show.returncode == 0:
                files[rel] = show.stdout
    return files


def _version(tree: Tree, p: Path) -> str:
    mk = tree.files.get("Makefile", "")
    v = re.search(r"^VERSION\s*=\s*(\d+)", mk, re.M)
    pl = re.search(r"^PATCHLEVEL\s*=\s*(\d+)", mk, re.M)
    if v and pl:
        return f"{v.group(1)}.{pl.group(1)}"
    m = re.search(r"(\d+\.\d+)", p.name)
    return m.group(1) if m else ""


def makefile_release(text: str) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from a kernel Makefile's text ("" if it names none)."""
    got = [re.search(rf"^{k}\s*=\s*(\d+)\s*$", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    return ".".join(m.group(1) for m in got) if all(got) else ""


# --- what the tree declares -----------------------------------------------------------

def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def structs(tree: Tree) -> dict:
    """{struct name: (field, ...)} for the structs of the TDX headers whose members are all u64."""
    out = {}
    for rel in HEADERS:
        text = _strip_comments(tree.files.get(rel, ""))
        for m in re.finditer(r"\bstruct\s+(\w+)\s*\{([^{}]*)\}\s*;", text):
            members = [s.strip() for s in m.group(2).split(";") if s.strip()]
            fields = []
            for member in members:
                fm = re.fullmatch(r"u64\s+(\w+)", member)
                fields.append(fm.group(1) if fm else None)
            out.setdefault(m.group(1), tuple(fields))
    return out


def prototypes(tree: Tree) -> dict:
    """{function: (return type, ["type name", ...])} declared in the TDX headers."""
    out = {}
    for rel in HEADERS:
        text = _strip_comments(tree.files.get(rel, ""))
        for m in re.finditer(r"\b(u64|void|int)\s+(__\w+)\s*\(([^;{}()]*)\)\s*;", text):
            params = [" ".join(s.split()) for s in m.group(3).split(",") if s.strip()]
            out.setdefault(m.group(2), (m.group(1), params))
    return out


def constants(tree: Tree) -> dict:
    """Simple numeric TDX_* defines of the shared header (the hypercall flags, say)."""
    out = {}
    text = _strip_comments(tree.files.get("arch/x86/include/asm/shared/tdx.h", ""))
    for m in re.finditer(r"^#define\s+(TDX_\w+)\s+(BIT\((\d+)\)|0x[0-9a-fA-F]+|\d+)\s*$", text, re.M):
        out[m.group(1)] = 1 << int(m.group(3)) if m.group(3) else int(m.group(2), 0)
    return out


def asm_offsets(tree: Tree, structs_: dict) -> dict:
    """{TDX_* offset symbol: bytes}: asm-offsets.c says which field of which struct each is;
    the struct's definition in the tree gives where that field is."""
    text = _strip_comments(tree.files.get(ASM_OFFSETS, ""))
    out = {}
    for m in re.finditer(r"\bOFFSET\(\s*(TDX_\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\)", text):
        sym, sname, fname = m.groups()
        fields = structs_.get(sname)
        if fields is None or fname not in fields:
            raise KernelImportError(f"{tree.label}: {ASM_OFFSETS} names {sname}.{fname} for {sym}, but no "
                                    f"struct {sname} with that u64 field is in {', '.join(HEADERS)}")
        if None in fields[:fields.index(fname)]:
            raise KernelImportError(f"unsupported layout: struct {sname} in {tree.label} has a member that "
                                    f"is not a u64 before {fname}")
        out[sym] = 8 * fields.index(fname)
    return out


# --- one function ---------------------------------------------------------------------

@dataclass
class Function:
    symbol: str
    file: str                 # path in the tree
    family: str               # seamcall | tdcall
    layout: str               # direct | adapter
    prototype: str
    meant_for: tuple
    adapter: str = ""         # assembly template (layout adapter)
    params: list = field(default_factory=list)
    calls: tuple = ()         # what its own body calls outside its file

    @property
    def leaf_arg(self) -> bool:
        """Whether the caller's leaf number reaches the instruction (a hand-written TDVMCALL
        chooses its own)."""
        return any(kind == "leaf" for kind, _ in self.params)


def _function_body(text: str, sym: str) -> str:
    m = re.search(r"SYM_FUNC_START\(\s*%s\s*\)(.*?)SYM_FUNC_END\(\s*%s\s*\)" % (re.escape(sym), re.escape(sym)),
                  text, re.S)
    return m.group(1) if m else ""


def _params(tree: Tree, sym: str, protos: dict, structs_: dict, consts: dict) -> list:
    if sym not in protos:
        raise KernelImportError(f"unsupported layout: {sym} in {tree.label} has no prototype in "
                                f"{', '.join(HEADERS)}")
    ret, params = protos[sym]
    if ret != "u64":
        raise KernelImportError(f"unsupported layout: {sym} returns {ret}, not u64")
    if len(params) > len(PARAM_REGS):
        raise KernelImportError(f"unsupported layout: {sym} takes {len(params)} arguments (at most 6 in registers)")
    out = []
    for i, prm in enumerate(params):
        if re.fullmatch(r"u64 (fn|leaf|op)", prm) and not any(k == "leaf" for k, _ in out):
            out.append(("leaf", None))
        elif (m := re.fullmatch(r"u64 (\w+)", prm)) and m.group(1) in ARG_REGS:
            out.append(("reg", m.group(1)))
        elif m := re.fullmatch(r"(?:const )?struct (\w+) ?\* ?\w*", prm):
            fields = structs_.get(m.group(1))
            if fields is None:
                raise KernelImportError(f"unsupported layout: {sym}: struct {m.group(1)} not found in the tree")
            bad = [f for f in fields if f not in ARG_REGS]
            if bad:
                raise KernelImportError(f"unsupported layout: {sym}: struct {m.group(1)} has members that are "
                                        f"not argument registers ({', '.join(str(b) for b in bad)})")
            out.append(("struct", (m.group(1), fields)))
        elif re.fullmatch(r"unsigned long flags", prm) and "TDX_HCALL_HAS_OUTPUT" in consts:
            # The hand-written hypercall's flags: ask for the outputs (and no STI).
            out.append(("flags", consts["TDX_HCALL_HAS_OUTPUT"]))
        else:
            raise KernelImportError(f"unsupported layout: {sym}: argument {i + 1} is `{prm}`")
    return out


def _is_direct(params) -> bool:
    return (len(params) == 2 and params[0][0] == "leaf" and params[1][0] == "struct"
            and params[1][1][1] == ARG_REGS)


def adapter_asm(sym: str, prototype: str, params) -> str:
    """An adapter `u64 @FN@(u64 leaf, struct sb_args *)` calling `@K@` with its own arguments:
    the sb_args pointer and struct copies on the stack, scratch only in caller-saved registers."""
    locs, size = [], 0
    for kind, val in params:
        locs.append(size if kind == "struct" else None)
        if kind == "struct":
            size += 8 * len(val[1])
    frame = (size + 15) // 16 * 16  # entry RSP = 8 mod 16; after the push 0; the call stays aligned
    a = [f"# adapter: struct sb_args -> {prototype}", ".p2align 4", f".type {ADAPTER_FN}, @function",
         f".hidden {ADAPTER_FN}", f"{ADAPTER_FN}:", "pushq %rsi"]
    if frame:
        a.append(f"subq ${frame}, %rsp")
    for (kind, val), loc in zip(params, locs):
        if kind == "struct":  # every field starts as the caller's value, so a missing output shows
            for j, f in enumerate(val[1]):
                a += [f"movq {OFF[f]}(%rsi), %r11", f"movq %r11, {loc + 8 * j}(%rsp)"]
    leaf_in_rdi = bool(params) and params[0][0] == "leaf"
    if not leaf_in_rdi and any(kind == "leaf" for kind, _ in params):
        a.append("movq %rdi, %rax")  # RDI is about to get another argument

    def load(kind, val, loc, reg):
        if kind == "leaf":
            return [] if reg == "rdi" else [f"movq %rax, %{reg}"]
        if kind == "reg":
            return [f"movq {OFF[val]}(%rsi), %{reg}"]
        if kind == "struct":
            return [f"leaq {loc}(%rsp), %{reg}"]
        return [f"movq ${val:#x}, %{reg}"]
    order = [i for i in range(len(params)) if PARAM_REGS[i] != "rsi"] + ([1] if len(params) > 1 else [])
    for i in order:
        a += load(*params[i], locs[i], PARAM_REGS[i])
    a += [f"call {ADAPTER_CALLEE}", f"movq {frame}(%rsp), %rsi"]
    for (kind, val), loc in zip(params, locs):
        if kind == "struct":
            for j, f in enumerate(val[1]):
                a += [f"movq {loc + 8 * j}(%rsp), %rcx", f"movq %rcx, {OFF[f]}(%rsi)"]
    if not any(kind == "leaf" for kind, _ in params):
        # No leaf argument: the function chose its leaf (TDVMCALL) and returned the hypercall's
        # own result (R10, now in the struct); it does not return from a failed TDCALL.
        a.append("xorl %eax, %eax")
    a += [f"addq ${frame + 8}, %rsp", "ret", f".globl {ADAPTER_FN}_end", f".hidden {ADAPTER_FN}_end",
          f"{ADAPTER_FN}_end:", f".size {ADAPTER_FN}, .-{ADAPTER_FN}"]
    return "\n".join(a) + "\n"


def _meant_for(body: str, params) -> tuple:
    """The leaf profile the function was written for (configs/leaves.yaml)."""
    if re.search(r"\bsaved\s*=\s*1", body):
        return ("hypercall",)
    regs = set()
    for kind, val in params:
        if kind == "struct":
            regs |= set(val[1])
        elif kind == "reg":
            regs.add(val)
    if not any(kind == "leaf" for kind, _ in params):  # a hand-written TDVMCALL
        return ("hypercall_r10_r15",) if regs <= {"r10", "r11", "r12", "r13", "r14", "r15"} else ("hypercall",)
    return ("vp_info",)


# --- preprocessing and assembling -----------------------------------------------------

_INSN_BYTES = re.compile(r"\.byte\s+0x66\s*,\s*0x0f\s*,\s*0x01\s*,\s*0xc[cf]\b", re.I)
_INSN_MNEMONIC = re.compile(r"^(\s*)(tdcall|seamcall)\s*$", re.M)


def _write_shim(d: Path, offsets: dict, consts: dict, version: str):
    for rel, text in _SHIM.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    lines = ["#ifndef SB_SHIM_ASM_OFFSETS_H", "#define SB_SHIM_ASM_OFFSETS_H",
             f"/* From the tree's asm-offsets.c and struct definitions (Linux {version}). */"]
    lines += [f"#define {k} {v}" for k, v in sorted(offsets.items())]
    lines += [f"#ifndef {k}\n#define {k} {v:#x}\n#endif" for k, v in sorted(consts.items())]
    (d / "asm/asm-offsets.h").write_text("\n".join(lines + ["#endif", ""]))


def _run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KernelImportError(f"{what}:\n{(proc.stderr or proc.stdout).strip()}")
    return proc


def instance(text: str, prefix: str, crossing_lines) -> str:
    """One copy of a preprocessed file: its symbols prefixed, the crossing in place of the
    instruction (on the same line, so the assembler's line numbers stay the kernel's)."""
    return text.replace(PREFIX, prefix).replace(CROSSING, " ; ".join(crossing_lines))


@dataclass
class Imported:
    name: str
    function: Function
    source: Path
    adapter_path: Path | None
    undefined: tuple
    digest: str
    raw: Path | None = None       # the tree's own TDX files, as they are (for the kernel module)


def import_tree(path, rev=None, name=None, frame_pointer=False, out_dir=None) -> tuple:
    """(tree, [Imported]): every exported function of the tree's TDX call assembly,
    preprocessed and checked by assembling one copy of each file."""
    tree = read_tree(path, rev)
    files = tree.asm_files()
    if not files:
        raise KernelImportError(f"{tree.label}: no TDX call code (no .S file in {' or '.join(TDX_DIRS)})")
    name = name or (f"linux-{tree.version}" if tree.version else None)
    if not name:
        raise KernelImportError(f"{tree.label}: no kernel version found (no top-level Makefile); name it with --name")
    if not re.fullmatch(r"[a-z][a-z0-9._+-]{0,40}", name):
        raise KernelImportError(f"--name {name!r}: use lower-case letters, digits and . _ + -, starting with a letter")
    cc = find_compiler()
    if cc is None:
        raise KernelImportError("no C compiler found (set CC): the kernel's assembly is preprocessed and "
                                "assembled with it")
    if shutil.which("nm") is None:
        raise KernelImportError("nm (binutils) not found: it lists what the kernel's code calls outside itself")
    structs_, protos, consts = structs(tree), prototypes(tree), constants(tree)
    offsets = asm_offsets(tree, structs_)
    key = hashlib.sha256(repr((SHIM_VERSION, frame_pointer, sorted(tree.files.items()))).encode()).hexdigest()[:16]
    out_dir = Path(out_dir or cache_dir() / "kernel" / f"{name}-{key}")
    out_dir.mkdir(parents=True, exist_ok=True)
    result = []
    with tempfile.TemporaryDirectory(prefix="seambench-kernel-") as tmp:
        tmp = Path(tmp)
        shim = tmp / "shim"
        _write_shim(shim, offsets, consts, tree.version or name)
        src = tmp / "tree"
        for rel, text in tree.files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        # The tree's own files as they are, for the module (gen/ring0.py assembles them with the
        # kernel's headers): the TDX call code and asm-offsets.c (which offset is which field).
        raw_dir = out_dir / "tree"
        for rel, text in tree.files.items():
            if rel != "Makefile" and not rel.startswith("arch/x86/include/"):
                (raw_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (raw_dir / rel).write_text(text)
        raw_text = raw_digest_text(raw_dir)
        for rel in files:
            syms = re.findall(r"^\s*SYM_FUNC_START\(\s*(\w+)\s*\)", tree.files[rel], re.M)
            if not syms:
                continue  # a file of macros only (tdxcall.S), included by the others
            cmd = [cc, "-E", "-x", "assembler-with-cpp", "-nostdinc", "-D__ASSEMBLY__", "-D__KERNEL__",
                   "-DCONFIG_X86_64", f"-I{shim}"] + (["-DSB_FRAME_POINTER"] if frame_pointer else []) + \
                  [str(src / rel)]
            text = _run(cmd, f"{tree.label}: preprocessing {rel} failed").stdout
            # Line markers name the file as in the tree, and the shim without this import's temporary
            # folder: the same tree gives the same text (digest), whenever it is imported.
            text = text.replace(str(src) + "/", "").replace(str(shim) + "/", "seambench-shim/")
            text, n = _INSN_BYTES.subn(CROSSING, text)
            text, m = _INSN_MNEMONIC.subn(r"\1" + CROSSING, text)
            if not n + m:
                raise KernelImportError(f"{tree.label}: {rel} has no TDCALL or SEAMCALL instruction "
                                        "(neither its bytes 66 0F 01 CC/CF nor the mnemonic)")
            undefined = _check_assembles(cc, tmp, rel, text, tree.label)
            stem = rel.replace("/", "_").rsplit(".", 1)[0]
            source = out_dir / f"{stem}.s"
            source.write_text(text)
            for sym in syms:
                raw = tree.files[rel]
                body = _function_body(raw, sym)
                params = _params(tree, sym, protos, structs_, consts)
                host = re.search(r"\bhost\s*=\s*1", body) or re.search(r"\bseamcall\b", body)
                ret, plist = protos[sym]
                local = set(syms) | set(re.findall(r"^\s*SYM_FUNC_START(?:_LOCAL)?\(\s*(\w+)", raw, re.M))
                calls = tuple(sorted({c for c in re.findall(r"\bcall\s+([A-Za-z_]\w*)", _strip_comments(body))
                                      if c not in local}))
                fn = Function(sym, rel, "seamcall" if host else "tdcall",
                              "direct" if _is_direct(params) else "adapter",
                              f"{ret} {sym}({', '.join(plist)})", _meant_for(body, params), params=params,
                              calls=calls)
                adapter_path = None
                if fn.layout == "adapter":
                    fn.adapter = adapter_asm(sym, fn.prototype, params)
                    adapter_path = out_dir / f"{sym}.adapter.s"
                    adapter_path.write_text(fn.adapter)
                digest = content_digest(sym, text, fn.adapter, raw_text)
                result.append(Imported(f"{name}:{sym}", fn, source, adapter_path, undefined, digest, raw_dir))
    if not result:
        raise KernelImportError(f"{tree.label}: no TDX call code (no SYM_FUNC_START in "
                                f"{', '.join(files)})")
    return tree, result


def content_digest(symbol: str, source_text: str, adapter_text: str, raw_text: str = "") -> str:
    parts = (symbol, source_text, adapter_text) + ((raw_text,) if raw_text else ())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def raw_digest_text(raw: Path) -> str:
    """The tree's own files under `raw`, as one text (for the digest)."""
    files = sorted(p for p in raw.rglob("*") if p.is_file()) if raw.is_dir() else []
    return "".join(f"{p.relative_to(raw)}\0{p.read_text()}\0" for p in files)


def _check_assembles(cc, tmp: Path, rel: str, text: str, label: str) -> tuple:
    """Assemble one copy (emulated crossing); what it calls outside itself."""
    s = tmp / "check.s"
    s.write_text(instance(text, "sb_k0_", ["call sb_gen_stub_check"]))
    o = tmp / "check.o"
    _run([cc, "-c", "-o", str(o), str(s)], f"{label}: the assembler refused {rel} (preprocessed with "
         "seambench's shim)")
    proc = _run(["nm", "-u", str(o)], f"nm {o}")
    return tuple(sorted({ln.split()[-1] for ln in proc.stdout.splitlines() if ln.strip()}
                        - {"sb_gen_stub_check"}))


def conventions_yaml(tree: Tree, imported: list) -> str:
    """The conventions file: one entry per function, loadable with -C FILE."""
    import yaml
    convs = {}
    for imp in imported:
        fn = imp.function
        entry = {"description": f"{fn.symbol} from {imp.name.split(':')[0]} ({fn.file}), the kernel's own "
                                f"code; {fn.prototype}",
                 "family": fn.family, "meant_for": list(fn.meant_for),
                 "imported": {"tree": tree.label, "symbol": fn.symbol, "layout": fn.layout, "file": fn.file,
                              "source": str(imp.source), "undefined": list(imp.undefined),
                              "digest": imp.digest}}
        if imp.adapter_path:
            entry["imported"]["adapter"] = str(imp.adapter_path)
        if imp.raw:
            entry["imported"].update({"release": tree.release, "raw": str(imp.raw), "leaf_arg": fn.leaf_arg,
                                      "calls": list(fn.calls)})
        convs[imp.name] = entry
    head = (f"# Generated by `bench kernel import {tree.label}`: the kernel's TDX call functions as\n"
            "# conventions (bench run/ab/check -C THIS_FILE).  The preprocessed code is in seambench's\n"
            "# cache; re-run the import if it is gone.\n")
    return head + yaml.safe_dump({"conventions": convs}, sort_keys=False, width=100)


def read_imported(source: str, adapter: str, symbol: str, digest: str, raw: str = "") -> tuple:
    """(preprocessed text, adapter template) of an imported convention, checked against its
    digest, which covers the tree's own files under `raw` too (the cache was edited or
    replaced: re-import)."""
    try:
        text = Path(source).read_text()
        adapter_text = Path(adapter).read_text() if adapter else ""
        raw_text = raw_digest_text(Path(raw)) if raw else ""
    except OSError as exc:
        raise KernelImportError(f"imported code of {symbol} is gone ({exc.filename}): run "
                                "`bench kernel import` again") from None
    if content_digest(symbol, text, adapter_text, raw_text) != digest:
        raise KernelImportError(f"imported code of {symbol} ({source}) changed since the import: run "
                                "`bench kernel import` again")
    return text, adapter_text
