"""The generator against the kernel's unified TDX_MODULE_CALL variants (golden register sets),
checked on the generated assembly itself, not only on the parsed YAML."""
import re

import pytest

from bench.gen import codegen
from bench.config import ARG_REGS

SIX = ("rcx", "rdx", "r8", "r9", "r10", "r11")
ALL13 = ARG_REGS
CALLEE_PUSHED = ("rbx", "r12", "r13", "r14", "r15")
SCRUBBED = ("rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rbx", "rdi")

# variant: (loads, stores, pushes besides the struct pointer, scrubbed, host CF check)
GOLDEN = {
    "tdcall": (SIX, (), (), (), False),
    "tdcall_ret": (SIX, SIX, (), (), False),
    "tdcall_saved_ret": (ALL13, ALL13, CALLEE_PUSHED, SCRUBBED, False),
    "seamcall": (SIX, (), (), (), True),
    "seamcall_ret": (SIX, SIX, (), (), True),
    "seamcall_saved_ret": (ALL13, ALL13, CALLEE_PUSHED, SCRUBBED, True),
}
OFFSET_REG = {8 * i: r for i, r in enumerate(ARG_REGS)}


def wrapper_asm(catalog, conv, crossing="emulated", leaf="hypercall"):
    entries = codegen.plan(catalog, "user", conventions=[conv], crossings=[crossing], leaves=[leaf])
    assert len(entries) == 1
    lines = codegen._wrapper_asm("f", 0, entries[0], "stub", "user")
    # instructions and the wrapper's own labels; not directives, comments or the end label
    return [line for line in lines if not line.startswith(("#", ".")) and line != "f_end:"]


def analyse(lines):
    loads, stores, pushes, scrubs = [], [], [], []
    crossing = lines.index("call stub")
    for i, line in enumerate(lines):
        m = re.fullmatch(r"movq (\d+)\(%rsi\), %(\w+)", line)
        if m and i < crossing:
            assert OFFSET_REG[int(m.group(1))] == m.group(2), line
            loads.append(m.group(2))
        m = re.fullmatch(r"movq %(\w+), (\d+)\(%r(si|ax)\)", line)
        if m and i > crossing:
            assert OFFSET_REG[int(m.group(2))] == m.group(1), line
            stores.append(m.group(1))
        m = re.fullmatch(r"pushq %(\w+)", line)
        if m and i < crossing:
            pushes.append(m.group(1))
        m = re.fullmatch(r"xorl %e?(\w+?)d?, %e?\w+", line)
        if m:
            reg = m.group(1)
            scrubs.append(reg if reg.startswith("r") else "r" + reg)
    return loads, stores, pushes, scrubs


@pytest.mark.parametrize("variant", sorted(GOLDEN))
def test_kernel_variant_register_sets(catalog, variant):
    loads, stores, pushes, scrubbed, host = GOLDEN[variant]
    lines = wrapper_asm(catalog, variant)
    got_loads, got_stores, got_pushes, got_scrubs = analyse(lines)
    assert sorted(got_loads) == sorted(loads)
    assert sorted(got_stores) == sorted(stores)
    assert got_loads[-1] == loads[-1] == ("rsi" if "rsi" in loads else loads[-1])  # RSI loaded last
    # saved variants also push the struct pointer before RSI takes its argument
    expected_pushes = list(pushes) + (["rsi"] if "rsi" in loads else [])
    assert got_pushes == expected_pushes
    assert sorted(got_scrubs) == sorted(scrubbed)
    assert ("jc .Lsb_vmfail_0" in lines) == host
    assert lines[-1] == "ret" or "jmp .Lsb_done_0" in lines
    # RBP is never touched without frame pointers (as in the kernel macro)
    assert not any("%rbp" in line for line in lines)


def test_saved_ret_recovers_pointer_like_the_kernel(catalog):
    lines = wrapper_asm(catalog, "seamcall_saved_ret")
    i = lines.index("call stub")
    # status parked, pointer fetched from the stack into RAX, RSI stored through it, pointer popped
    assert lines[i + 2:i + 7] == ["pushq %rax", "movq 8(%rsp), %rax", "movq %rsi, 96(%rax)", "popq %rax",
                                  "popq %rsi"]


def test_full_pushpop_saves_every_gpr_but_rsp_and_rax(catalog):
    _, _, pushes, _ = analyse(wrapper_asm(catalog, "full_pushpop"))
    assert set(pushes) == set(ARG_REGS) | {"rbp"}
    assert "rsp" not in pushes and "rax" not in pushes


def test_lean_follows_the_leaf(catalog):
    loads, stores, pushes, _ = analyse(wrapper_asm(catalog, "lean", leaf="sys_rd"))
    assert (loads, stores, pushes) == (["rdx"], ["rdx", "r8"], [])
    loads, stores, pushes, _ = analyse(wrapper_asm(catalog, "lean", leaf="vp_enter"))
    assert "rbp" in pushes and set(CALLEE_PUSHED) <= set(pushes)


def test_crossing_clobbers_outside_the_leaf_are_saved(catalog):
    lines = wrapper_asm(catalog, "seamcall_ret", crossing="cpuid", leaf="vp_info")
    i = lines.index("cpuid")
    assert "pushq %rbx" in lines[:i] and "popq %rbx" in lines[i:]  # CPUID writes RBX; vp_info does not


def test_stub_writes_exactly_the_leaf_profile(catalog):
    for name, leaf in catalog.leaves.items():
        lines = codegen._stub_asm("s", leaf, "user", "cfg", "init")
        written = [re.fullmatch(r"movabsq \$0x[0-9a-f]+, %(\w+)", l).group(1)
                   for l in lines if l.startswith("movabsq")]
        assert sorted(written) == sorted(leaf.all_writes), name
        assert ("xrstor64 (%rcx)" in lines) == leaf.avx_reset


def test_markers_are_distinct_and_non_canonical():
    values = {codegen.marker(r) for r in list(ARG_REGS) + ["rbp"]}
    assert len(values) == 14
    assert all(0x0000800000000000 <= v < 0xFFFF800000000000 for v in values)


def test_kernel_flavor_builds_the_ring0_crossings(catalog):
    text = codegen.generate(codegen.plan(catalog, "kernel"), "kernel")
    assert ".byte 0x66, 0x0f, 0x01, 0xcf" in text  # SEAMCALL
    assert ".byte 0x66, 0x0f, 0x01, 0xcc" in text  # TDCALL
    assert "kernel_fpu_begin();" in text
    assert '"syscall' not in text


def test_generated_source_compiles_without_warnings(catalog, tmp_path):
    import subprocess
    from bench.native.registry import include_dir
    src = tmp_path / "g.c"
    src.write_text(codegen.generate(codegen.plan(catalog, "user"), "user"))
    proc = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-c", f"-I{include_dir()}",
                           "-o", str(tmp_path / "g.o"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
