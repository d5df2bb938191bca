"""Runtime safety check: one poisoned call per pair, in a forked child."""
import json
import textwrap

import pytest

from bench import cli
from bench.native import machine
from bench import safety
from bench.config import load_builtin
from bench.native.registry import Registry

CATALOG = load_builtin()
XSAVE = machine.xsave()
HAS_AVX = XSAVE["enabled"] and XSAVE["xcr0"] & 0x4




def user_catalog(tmp_path, yaml_text):
    path = tmp_path / "conv.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    return CATALOG.with_user_file(path)


def run(registry, catalog, conv, leaf):
    return safety.runtime_verdict(registry, catalog.conventions[conv], catalog.leaves[leaf], XSAVE)


def runnable(conv):
    return not conv.kernel_only and machine.fpu_support(conv.fpu) is None


BUILTIN_PAIRS = [(c, lf) for c, conv in CATALOG.conventions.items() if runnable(conv) for lf in CATALOG.leaves]


@pytest.mark.parametrize("conv,leaf", BUILTIN_PAIRS)
def test_runtime_agrees_with_prediction_for_every_builtin_pair(registry, conv, leaf):
    c, lf = CATALOG.conventions[conv], CATALOG.leaves[leaf]
    st = safety.static_verdict(c.resolve(lf), XSAVE["xcr0"])
    rt = safety.runtime_verdict(registry, c, lf, XSAVE)
    assert rt.safe == st.safe, f"predicted {st.text}; ran {rt.text}"
    # what the run saw was predicted (a crash may hide the rest, never add to it)
    assert rt.kinds <= st.kinds, f"predicted {st.text}; ran {rt.text}"
    if leaf in c.meant_for:
        assert rt.safe, rt.text


def test_the_modules_latency_keeps_every_register(registry, tmp_path):
    """emul_latency runs the stub's latency row (1 and 512 units: its last and its whole row) or,
    past it, a countdown (513): each keeps what the convention keeps, as without it."""
    cat = user_catalog(tmp_path, """
        conventions:
          late_1: {extends: seamcall_ret, emul_latency: 1}
          late_512: {extends: seamcall_ret, emul_latency: 512}
          late_513: {extends: seamcall_ret, emul_latency: 513}
          late_pushpop: {extends: full_pushpop, emul_latency: 20}
        """)
    reg = Registry(cat)
    parents = {"late_1": "seamcall_ret", "late_512": "seamcall_ret", "late_513": "seamcall_ret",
               "late_pushpop": "full_pushpop"}
    for name, parent in parents.items():
        for leaf in ("vp_info", "hypercall"):
            rt = run(reg, cat, name, leaf)
            base = run(registry, CATALOG, parent, leaf)
            said = tuple(r.replace(name, parent) for r in rt.reasons)
            assert (rt.safe, said) == (base.safe, base.reasons), (name, leaf, rt.text)


def test_callee_saved_clobber_reported_as_in_prediction(registry):
    rt = run(registry, CATALOG, "seamcall", "hypercall")
    # seamcall's table entry is C (sc_retry) that saves some of these itself; the assembly does not
    assert rt.reasons == ("rbx, r12, r13, r14, r15 written by leaf hypercall, not saved by seamcall",)


def test_broken_conventions_caught_with_the_right_reason(registry, tmp_path):
    cat = user_catalog(tmp_path, """
        conventions:
          no_r12:
            extends: seamcall_saved_ret
            preserve: [rbx, r13, r14, r15]
            scrub: [rcx, rdx, r8, r9, r10, r11, r13, r14, r15, rbx, rdi]
          drop_r11:
            extends: seamcall_ret
            store: [rcx, rdx, r8, r9, r10]
          sse_only:
            extends: xsave
            fpu_mask: 0x3
          lean_no_rbp:
            extends: xsave
            load: leaf
            store: leaf
            preserve: leaf
            rbp: none
          ret_all:
            extends: seamcall_ret
            store: [rcx, rdx, r8, r9, r10, r11, r12, r13, r14, r15, rbx, rdi, rsi]
            preserve: [rbx, r12, r13, r14, r15]
          scrub_rbx:
            extends: tdcall_ret
            scrub: [rbx]
        """)
    reg = Registry(cat)
    assert run(reg, cat, "no_r12", "hypercall").reasons == \
        ("r12 written by leaf hypercall, not saved by no_r12",)
    assert run(reg, cat, "drop_r11", "vp_info").reasons == \
        ("output r11 of leaf vp_info not written back by drop_r11",)
    if HAS_AVX:
        v = run(reg, cat, "sse_only", "migration")
        assert v.kinds == {"avx"} and "ymm0-15[255:128]" in v.text and "not saved by sse_only" in v.text
    v = run(reg, cat, "lean_no_rbp", "vp_enter")
    assert v.kinds == {"rbp"}, v.text
    assert v.reasons[0].startswith("RBP clobbered by leaf vp_enter, not saved by lean_no_rbp")
    v = run(reg, cat, "ret_all", "hypercall")
    assert v.kinds == {"pointer"}
    assert "stored outputs through a clobbered struct pointer" in v.text
    assert run(reg, cat, "scrub_rbx", "vp_info").reasons == ("rbx zeroed by the scrub of scrub_rbx, not saved",)


def test_saving_rbp_and_vector_state_makes_vp_enter_safe(tmp_path):
    cat = user_catalog(tmp_path, """
        conventions:
          xsave_rbp:
            extends: xsave
            rbp: stack
        """)
    v = run(Registry(cat), cat, "xsave_rbp", "vp_enter")
    assert v.safe, v.text


@pytest.mark.skipif(not HAS_AVX, reason="no AVX state enabled in XCR0")
def test_vector_poisoning_reaches_every_enabled_component(registry):
    v = run(registry, CATALOG, "seamcall_saved_ret", "migration")
    (f,) = v.findings
    assert f.kind == "avx"
    assert "ymm15[255:128]" in f.regs
    if XSAVE["xcr0"] & 0xE0 == 0xE0:  # AVX-512: opmask, ZMM_Hi256, Hi16_ZMM
        assert {"k7", "zmm15[511:256]", "zmm31"} <= set(f.regs)
    # XMM (SSE) is not in what the leaf may reset: the stub leaves it alone
    assert not any(r.startswith("xmm") for r in f.regs)
    assert run(registry, CATALOG, "xsaveopt", "migration").safe


def test_judge_flags_rsp_and_direction_flag():
    c, lf = CATALOG.conventions["seamcall_ret"], CATALOG.leaves["vp_info"]
    r = c.resolve(lf)
    base = {"set": [safety.caller_value(x) for x in safety.CHECK_SAVED],
            "after": [safety.caller_value(x) for x in safety.CHECK_SAVED],
            "rsp_before": 0x7000, "rsp_after": 0x7008, "rflags": 0x202 | 0x400, "status": 0,
            "out_regs": [safety.marker(x) if x in lf.outputs else safety.input_value(x)
                         for x in safety.ARG_REGS]}
    found = safety._judge(base, r, 0, b"", b"")
    assert [f.kind for f in found] == ["rsp", "df"]
    assert found[0].text == "RSP off by +8 bytes after seamcall_ret returns"


def test_unavailable_pairs_fall_back_to_the_prediction(registry):
    pair = safety.check_pair(registry, CATALOG.conventions["kernel_fpu"], CATALOG.leaves["vp_enter"], xsave=XSAVE)
    assert pair["runtime"] is None and "kernel module" in pair["runtime_note"]
    assert safety.combined(pair).text == "UNSAFE: RBP clobbered by leaf vp_enter, not saved by kernel_fpu"


def test_bench_check_json(capsys):
    rc = cli.main(["check", "seamcall_ret", "xsave", "--leaf", "vp_info,migration", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    cells = {(p["convention"], p["leaf"]): p for p in doc["pairs"]}
    assert set(cells) == {("seamcall_ret", "vp_info"), ("seamcall_ret", "migration"), ("xsave", "vp_info"),
                          ("xsave", "migration")}
    assert cells[("seamcall_ret", "vp_info")]["verdict"] == "SAFE"
    assert cells[("seamcall_ret", "vp_info")]["meant_for"] is True
    bad = cells[("seamcall_ret", "migration")]
    assert bad["verdict"] == "UNSAFE" and bad["source"] == "runtime" and bad["agree"] is True
    assert any("clobbered struct pointer" in r for r in bad["reasons"])


def test_bench_check_matrix_and_bad_names(capsys):
    assert cli.main(["check", "tdcall_saved_ret", "--leaf", "hypercall", "--leaf", "vp_enter"]) == 0
    out = capsys.readouterr().out
    assert "SAFE*" in out and "UNSAFE [1]" in out
    assert "RBP clobbered by leaf vp_enter, not saved by tdcall_saved_ret" in out
    assert cli.main(["check", "no_such_convention"]) == 2
    assert "unknown convention 'no_such_convention'" in capsys.readouterr().err
    assert cli.main(["check", "lean", "--leaf", "no_such_leaf"]) == 2
    assert "unknown leaf profile 'no_such_leaf'" in capsys.readouterr().err


def test_run_refuses_what_the_runtime_check_calls_unsafe(registry):
    from bench.measure.runner import pair_verdict
    v = pair_verdict(registry, CATALOG.conventions["full_pushpop"], CATALOG.leaves["vp_enter"])
    assert v.source == "runtime" and not v.safe
    assert pair_verdict(registry, CATALOG.conventions["full_pushpop"], CATALOG.leaves["hypercall"]).safe
