"""Static safety prediction: from the declarations alone."""
import textwrap

import pytest

from bench.gen import codegen
from bench.config import load_builtin
from bench.safety import AVX_STATE_BITS, caller_value, input_value, marker, static_verdict

CATALOG = load_builtin()


def with_user(tmp_path, yaml_text):
    path = tmp_path / "conv.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    return CATALOG.with_user_file(path)


def verdict(catalog, conv, leaf, xcr0=None):
    return static_verdict(catalog.conventions[conv].resolve(catalog.leaves[leaf]), xcr0)


@pytest.mark.parametrize("conv", [c for c in CATALOG.conventions])
def test_builtin_conventions_are_safe_for_what_they_are_meant_for(conv):
    for leaf in CATALOG.conventions[conv].meant_for:
        v = verdict(CATALOG, conv, leaf)
        assert v.safe, f"{conv} x {leaf}: {v.text}"


def test_markers_agree_with_the_generator():
    for reg in codegen.MARKER_INDEX:
        assert marker(reg) == codegen.marker(reg)
    # caller and input values can never be mistaken for a leaf's marker
    assert not {caller_value(r) for r in ("rbx", "rbp", "r12", "r13", "r14", "r15")} & \
        {marker(r) for r in codegen.MARKER_INDEX}
    assert not {input_value(r) for r in codegen.ARG_REGS} & {marker(r) for r in codegen.MARKER_INDEX}


def test_callee_saved_not_saved_names_register_leaf_and_convention():
    v = verdict(CATALOG, "seamcall_ret", "migration")
    assert not v.safe
    assert "rbx, r12, r13, r14, r15 written by leaf migration, not saved by seamcall_ret" in v.reasons


def test_missing_callee_saved_register(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          no_r12:
            extends: seamcall_saved_ret
            preserve: [rbx, r13, r14, r15]
            scrub: [rcx, rdx, r8, r9, r10, r11, r13, r14, r15, rbx, rdi]
        """)
    v = verdict(cat, "no_r12", "hypercall")
    assert v.reasons == ("r12 written by leaf hypercall, not saved by no_r12",)
    assert v.kinds == {"callee_saved"}


def test_dropped_output(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          drop_r11:
            extends: seamcall_ret
            store: [rcx, rdx, r8, r9, r10]
        """)
    v = verdict(cat, "drop_r11", "vp_info")
    assert v.reasons == ("output r11 of leaf vp_info not written back by drop_r11",)
    # a status-only convention promises no outputs
    assert verdict(CATALOG, "seamcall", "vp_info").safe


def test_avx_reset_without_vector_save():
    v = verdict(CATALOG, "seamcall_saved_ret", "migration")
    assert v.reasons == ("leaf migration may reset AVX state to INIT and seamcall_saved_ret saves no vector state",)
    assert verdict(CATALOG, "xsave", "migration").safe
    # a machine (XCR0) without AVX components has no AVX state to reset
    assert verdict(CATALOG, "seamcall_saved_ret", "migration", xcr0=0x3).safe


def test_fpu_mask_that_leaves_out_avx(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          sse_only:
            extends: xsave
            fpu_mask: 0x3
        """)
    v = verdict(cat, "sse_only", "migration", xcr0=0x600E7)
    assert v.kinds == {"avx"}
    assert "leaves out components 0xe4" in v.text
    # on a machine whose XCR0 enables no AVX component there is nothing to lose
    assert verdict(cat, "sse_only", "migration", xcr0=0x3).safe
    from bench.native import machine
    assert AVX_STATE_BITS == machine.AVX_STATE_BITS == 0xE4


def test_rbp_under_vp_enter_like_leaf(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          xsave_rbp:
            extends: xsave
            rbp: stack
          xsave_frame:
            extends: xsave
            rbp: frame
        """)
    v = verdict(CATALOG, "xsave", "vp_enter")
    assert v.reasons == ("RBP clobbered by leaf vp_enter, not saved by xsave",)
    assert verdict(cat, "xsave_rbp", "vp_enter").safe
    assert verdict(cat, "xsave_frame", "vp_enter").safe


def test_struct_pointer_lost(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          ret_all:
            extends: seamcall_ret
            store: [rcx, rdx, r8, r9, r10, r11, r12, r13, r14, r15, rbx, rdi, rsi]
            preserve: [rbx, r12, r13, r14, r15]
        """)
    v = verdict(cat, "ret_all", "hypercall")
    assert v.kinds == {"pointer"}
    assert "stores outputs through RSI" in v.text


def test_scrubbing_a_callee_saved_register_without_saving_it(tmp_path):
    cat = with_user(tmp_path, """
        conventions:
          scrub_rbx:
            extends: seamcall_ret
            scrub: [rbx]
        """)
    v = verdict(cat, "scrub_rbx", "vp_info")
    assert v.reasons == ("rbx zeroed by the scrub of scrub_rbx, not saved",)


def test_verdict_json_shape():
    d = verdict(CATALOG, "tdcall", "hypercall").as_dict()
    assert d["safe"] is False and d["source"] == "static"
    assert d["reasons"][0]["kind"] == "callee_saved"
    assert d["reasons"][0]["regs"] == ["rbx", "r12", "r13", "r14", "r15"]


def test_the_kernel_filter_never_passes_what_the_prediction_calls_unsafe(catalog, tmp_path):
    """codegen.kernel_unsafe (what the module refuses to build) and static_verdict read the same
    Resolved facts, so anything that would crash the kernel is predicted UNSAFE too."""
    from bench.gen.codegen import kernel_unsafe
    path = tmp_path / "odd.yaml"
    path.write_text("conventions:\n"
                    "  loads_r12:\n    extends: tdcall\n    load: [rcx, r12]\n"
                    "  rbp_in_struct:\n    extends: tdcall\n    rbp: struct\n")
    cat = catalog.with_user_file(path)
    for conv in cat.conventions.values():
        for leaf in cat.leaves.values():
            r = conv.resolve(leaf)
            if kernel_unsafe(r):
                assert not static_verdict(r).safe, (conv.name, leaf.name, kernel_unsafe(r))
    v = static_verdict(cat.conventions["loads_r12"].resolve(cat.leaves["vp_info"]))
    assert not v.safe and "r12 loaded from the struct by loads_r12, not saved" in v.text


# Every way a user declaration can break the C calling convention, one convention each.
ABI_BREAKERS = {
    "scrubs_rbx": ("    extends: tdcall\n    scrub: [rbx]\n", "scrubbed"),
    "saved_ret_scrub_unsaved": ("    extends: seamcall_saved_ret\n    preserve: [r12, r13, r14, r15]\n", "loaded"),
    "scrubs_r15_kept_r12": ("    extends: tdcall\n    preserve: [r12]\n    scrub: [r12, r15]\n", "scrubbed"),
    "loads_rbx": ("    extends: tdcall\n    load: [rcx, rbx]\n", "loaded"),
    "loads_r13_ret": ("    extends: tdcall_ret\n    load: [rcx, r13]\n    store: [rcx, r13]\n", "loaded"),
    "no_push": ("    extends: tdcall_saved_ret\n    preserve: []\n", "written"),
    "rbp_unsaved": ("    extends: full_pushpop\n    rbp: none\n", "written"),
    "ret_after_rsi": ("    extends: tdcall_ret\n    meant_for: []\n", "pointer"),
    "rsi_clobbered_ret": ("    extends: lean\n    preserve: [rbx, r12, r13, r14, r15]\n    rbp: stack\n"
                          "    load: [rcx]\n", "pointer"),
}


def test_no_abi_breaking_convention_reaches_the_kernel_module(tmp_path):
    """The ring-0 build filter and the static prediction read one fact (Resolved.abi_breaks):
    every user convention that breaks the C calling convention for some leaf is predicted UNSAFE
    for it, and none of those wrappers is in the module's generated source."""
    path = tmp_path / "breakers.yaml"
    path.write_text("conventions:\n" + "".join(f"  {n}:\n{body}" for n, (body, _) in ABI_BREAKERS.items()))
    cat = CATALOG.with_user_file(path)
    emitted = {e.key[::2] for e in codegen.plan(cat, "kernel")}  # (convention, leaf)
    source = codegen.generate(codegen.plan(cat, "kernel"), "kernel")
    for name, (_, cause) in ABI_BREAKERS.items():
        conv = cat.conventions[name]
        broken = [leaf for leaf in cat.leaves.values() if conv.resolve(leaf).abi_breaks]
        assert broken, name
        assert any(cause in dict(conv.resolve(leaf).abi_breaks) for leaf in broken), name
        for leaf in broken:
            r = conv.resolve(leaf)
            assert codegen.kernel_unsafe(r), (name, leaf.name)
            v = static_verdict(r)
            assert not v.safe and v.kinds & {"callee_saved", "rbp", "pointer"}, (name, leaf.name, v.text)
            assert (name, leaf.name) not in emitted, (name, leaf.name)
            assert f'"{name}", "emulated", "{leaf.name}"' not in source
    # scrub: [rbx] with nothing saving it: unsafe for every leaf (it was emitted before)
    assert all(cat.conventions["scrubs_rbx"].resolve(leaf).abi_breaks for leaf in cat.leaves.values())
    # a safe built-in still reaches the module
    assert ("seamcall_saved_ret", "hypercall") in emitted


def test_vp_enter_with_no_rbp_mod():
    """With NO_RBP_MOD (what KVM requires today) RBP is kept: the saved_ret variants lose only
    vector state, and an XSAVE around seamcall_saved_ret is safe; without it nothing is."""
    assert verdict(CATALOG, "seamcall_saved_ret", "vp_enter").kinds == {"rbp", "avx"}
    assert verdict(CATALOG, "seamcall_saved_ret", "vp_enter_norbp").kinds == {"avx"}
    assert verdict(CATALOG, "xsave", "vp_enter_norbp").safe
    assert not verdict(CATALOG, "xsave", "vp_enter").safe
    assert not CATALOG.leaves["vp_enter_norbp"].clobbers_rbp
