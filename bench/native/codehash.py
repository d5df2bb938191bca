"""Code identity: a hash of the machine code a benchmark executes, as bytes after linking.

Two results with the same code hash on the same machine are replicates of one experiment;
a different hash means the instructions changed.  What one call executes is known from the
generated table (sb_code_range: C wrapper, assembly wrapper, emulated stub) and the timed
loop's own section (sb_timed: the loop, the empty function, the reference chain).

Raw bytes are not enough: a call to the stub or a RIP-relative load of the stub's knobs
encodes a displacement that changes whenever anything else in the unit moves (another
convention added to the YAML, say) while the instructions stay the same.  Each instruction
is therefore disassembled (capstone) and every relative displacement is replaced by what it
points at: an offset inside one of the hashed ranges, or "outside" (data, the PLT).  The
opcode bytes, the registers and every other operand stay in the hash.
"""
from __future__ import annotations

import ctypes
import hashlib

from bench.native import machine

VERSION = b"seambench-code-v1"
CACHE_FILE = "code-hash.json"  # raw bytes and addresses -> code hash, the latest CACHE_ENTRIES
CACHE_ENTRIES = 512


def _disassembler():
    import capstone  # imported here: only the measuring side hashes code
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


def _where(target: int, ranges) -> bytes:
    for k, (lo, hi) in enumerate(ranges):
        if lo <= target < hi:
            return b"r%d+%d" % (k, target - lo)
    return b"outside"


def normalized(code: bytes, address: int, ranges) -> bytes:
    """The instruction stream of `code` (loaded at `address`), each relative displacement
    replaced by its target's place among `ranges` ([(lo, hi)]).  Bytes capstone cannot decode
    are kept as they are."""
    import capstone.x86 as x86
    out = bytearray()
    pos = 0
    for insn in _disassembler().disasm(code, address):
        b = bytearray(insn.bytes)
        tags = []
        relative = insn.group(7)  # CS_GRP_BRANCH_RELATIVE: jmp/jcc/call rel8/rel32
        for op in insn.operands:
            if relative and op.type == x86.X86_OP_IMM and insn.imm_size:
                b[insn.imm_offset:insn.imm_offset + insn.imm_size] = bytes(insn.imm_size)
                tags.append(_where(op.imm, ranges))
            elif op.type == x86.X86_OP_MEM and op.mem.base == x86.X86_REG_RIP and insn.disp_size:
                b[insn.disp_offset:insn.disp_offset + insn.disp_size] = bytes(insn.disp_size)
                tags.append(_where(insn.address + insn.size + op.mem.disp, ranges))
        out += bytes(b) + b"[" + b",".join(tags) + b"];"
        pos = insn.address + insn.size - address
    return bytes(out) + code[pos:]


def read(lo: int, hi: int) -> bytes:
    return ctypes.string_at(lo, hi - lo)


def code_hash(ranges, timed) -> str:
    """sha256 (hex, 16 digits) of what a call executes (`ranges`, in call order) and of the
    timed loop (`timed`: its section's (lo, hi)).  Targets are named relative to all of them.

    Looked up by the raw bytes and where they lie (all that the answer depends on) in a
    per-machine cache: every `bench run` worker hashes its benchmark's code, and disassembling
    it (capstone's import included) took ~30 ms of a worker's ~0.2 s."""
    every = list(ranges) + [timed]
    raw = hashlib.sha256(VERSION)
    for lo, hi in every:
        raw.update(b"|%x-%x|" % (lo, hi))
        raw.update(read(lo, hi))
    key = raw.hexdigest()
    doc = machine.cache_read(CACHE_FILE)
    known = doc.get(key)
    if isinstance(known, str):
        return known
    h = hashlib.sha256(VERSION)
    for lo, hi in every:
        h.update(b"|%d|" % (hi - lo))
        h.update(normalized(read(lo, hi), lo, every))
    value = h.hexdigest()[:16]
    doc = {k: v for k, v in doc.items() if k != key}
    machine.cache_write(CACHE_FILE, dict(list(doc.items())[-(CACHE_ENTRIES - 1):] + [(key, value)]))
    return value
