"""`bench kernel import`: the kernel's own TDX call code, from a tree in the kernel's shape
(tests/data/kernel-tree, written for these tests), as conventions that run, A/B and check."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import cli, safety
from bench.config import ConfigError, load_builtin
from bench.gen import codegen, kernel

TREE = Path(__file__).parent / "data" / "kernel-tree"
P = "linux-9.99:"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("kimport") / "k.yaml"
    assert cli.main(["kernel", "import", str(TREE), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def kcat(imported):
    return load_builtin().with_user_file(imported)


def test_every_function_becomes_a_convention(kcat):
    imp = {n: c for n, c in kcat.conventions.items() if c.imported}
    assert set(imp) == {P + s for s in ("__tdcall", "__tdx_module_call", "__seamcall_ret", "__seamcall_saved_ret")}
    assert imp[P + "__seamcall_saved_ret"].imported.layout == "direct"
    assert imp[P + "__tdx_module_call"].imported.layout == "adapter"  # its own prototype, an output struct
    assert imp[P + "__seamcall_ret"].family == "seamcall" and imp[P + "__tdcall"].family == "tdcall"
    assert imp[P + "__seamcall_saved_ret"].meant_for == ("hypercall",)
    # the offsets came from the tree: its asm-offsets.c and struct definitions
    text = Path(imp[P + "__tdcall"].imported.source).read_text()
    assert kernel.CROSSING in text and "SBK___tdcall" in text


def test_static_verdict_is_not_predicted_and_the_runtime_check_decides(kcat, registry):
    reg = type(registry)(kcat)
    conv = kcat.conventions[P + "__seamcall_saved_ret"]
    st = safety.static_verdict(conv.resolve(kcat.leaves["hypercall"]))
    assert st.safe is None and st.text == safety.NOT_PREDICTED
    pair = safety.check_pair(reg, conv, kcat.leaves["hypercall"])
    assert pair["runtime"].safe and pair["agree"] is None
    bad = safety.check_pair(reg, kcat.conventions[P + "__tdcall"], kcat.leaves["hypercall"])["runtime"]
    assert not bad.safe and "callee_saved" in bad.kinds
    old = safety.check_pair(reg, kcat.conventions[P + "__tdx_module_call"], kcat.leaves["vp_info"])["runtime"]
    assert old.safe, old.text  # through the adapter: outputs reach sb_args
    # a status-only function promises no outputs; a _ret form must store them all
    assert safety.check_pair(reg, kcat.conventions[P + "__tdcall"], kcat.leaves["vp_info"])["runtime"].safe


def test_check_run_and_ab_accept_the_file(imported, capsys):
    assert cli.main(["check", "-C", str(imported), P + "__seamcall_saved_ret", P + "__tdcall",
                     "--leaf", "vp_info,hypercall", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    verdicts = {(p["convention"], p["leaf"]): p["verdict"] for p in doc["pairs"]}
    assert verdicts[(P + "__seamcall_saved_ret", "hypercall")] == "SAFE"
    assert verdicts[(P + "__tdcall", "hypercall")] == "UNSAFE"
    assert cli.main(["run", "-C", str(imported), "--conventions", P + "__seamcall_ret,seamcall_ret",
                     "--backends", "emulated", "--leaves", "vp_info", "-p", "1", "-n", "3", "-w", "0",
                     "--no-store", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["convention"] for r in rows} == {P + "__seamcall_ret", "seamcall_ret"}
    assert all(r["safe"] and r["cycles"] > 0 for r in rows)
    assert cli.main(["ab", "-C", str(imported), "seamcall_ret", P + "__seamcall_ret", "--leaf", "vp_info",
                     "--pairs", "200", "-p", "2", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)


def test_crossings_other_than_the_stub(kcat, registry):
    """The instruction can be routed to any user-space crossing; the kernel's code then takes its
    success path (status zeroed after the crossing)."""
    from bench.native import _core
    reg = type(registry)(kcat)
    fn, _ = reg.lookup(P + "__seamcall_saved_ret", "syscall", "hypercall")
    args = _core.Args(4096, 0)
    assert fn and args is not None


def test_never_in_the_kernel_module_unchecked(kcat):
    # Without the runtime check's C-ABI facts (bench kmod build -C runs it) imported code stays out,
    # and its abi_breaks say why: there is no declaration to derive them from.
    assert not [e for e in codegen.plan(kcat, "kernel") if e.resolved.conv.imported]
    r = kcat.conventions[P + "__tdcall"].resolve(kcat.leaves["vp_info"])
    assert r.abi_breaks == (("unchecked", ()),) and "runtime check" in codegen.kernel_unsafe(r)[0]
    assert kcat.conventions[P + "__tdcall"].resolve(kcat.leaves["vp_info"], observed=()).abi_breaks == ()


def _ring0(kcat, registry):
    """What `bench kmod build -C` hands the generator: the runtime check's C-ABI breaks."""
    reg = type(registry)(kcat)
    return {(c.name, lf.name): safety.abi_breaks_seen(safety.runtime_verdict(reg, c, lf))
            for c in kcat.conventions.values() if c.imported for lf in kcat.leaves.values()}


def test_ring0_plan_reads_the_runtime_checks_abi_facts(kcat, registry):
    ring0 = _ring0(kcat, registry)
    assert ring0[(P + "__tdcall", "vp_info")] == ()
    assert dict(ring0[(P + "__tdcall", "hypercall")])["changed"]  # RBX, R12-R15 come back changed
    entries = [e for e in codegen.plan(kcat, "kernel", ring0=ring0) if e.resolved.conv.imported]
    keys = {e.key for e in entries}
    assert (P + "__tdcall", "emulated", "vp_info") in keys and (P + "__tdcall", "tdcall", "vp_info") in keys
    assert (P + "__tdcall", "emulated", "hypercall") not in keys
    assert (P + "__seamcall_saved_ret", "emulated", "hypercall") in keys
    # the real instruction only for the file's family; no cpuid/vmcall copies of the kernel's code
    assert {x for _, x, _ in keys} == {"emulated", "tdcall", "seamcall"}
    assert not any(c.startswith(P + "__seamcall") and x == "tdcall" for c, x, _ in keys)
    for e in entries:
        assert not codegen.kernel_unsafe(e.resolved), e.key


def test_ring0_sources_are_the_trees_own_files(kcat, registry):
    from bench.gen import ring0 as r0
    entries = codegen.plan(kcat, "kernel", ring0=_ring0(kcat, registry))
    files = r0.sources(entries)
    text = codegen.generate(entries, "kernel")
    i, e = next((i, e) for i, e in enumerate(entries) if e.key == (P + "__tdcall", "emulated", "vp_info"))
    w = files[f"sb_k{i}.S"]
    assert f"#define __tdcall sb_k{i}___tdcall" in w and "#define SB_CROSSING call sb_gen_stub_vp_info" in w
    assert "#include <asm/asm-offsets.h>" in w and "#ifndef TDX_MODULE_rcx" in w
    inc = re.search(r'#include "(imported/[^"]+)"', w).group(1)
    raw = Path(e.resolved.conv.imported.raw)
    copy = files[inc.replace("arch/x86/coco/tdx/tdcall.S", "arch/x86/virt/vmx/tdx/tdxcall.S")]
    # the instruction, in any spelling, became SB_CROSSING
    assert "SB_CROSSING" in copy and not kernel._INSN_BYTES.search(copy) and not kernel._INSN_MNEMONIC.search(copy)
    j = next(j for j, f in enumerate(entries) if f.key == (P + "__tdcall", "tdcall", "vp_info"))
    real = re.search(r'#include "(imported/[^"]+)"', files[f"sb_k{j}.S"]).group(1)
    assert files[real] == (raw / "arch/x86/coco/tdx/tdcall.S").read_text()  # untouched
    assert "DEFINE(SB_KIMP_TDX_MODULE_rcx, offsetof(struct tdx_module_args, rcx));" in files[r0.OFFSETS_C]
    assert f"sb_k{i}.o" in files[r0.KBUILD_FRAGMENT]
    assert re.search(rf"^\tX\({i}, sb_k{i}___tdcall, ", text, re.M)
    k = next(k for k, f in enumerate(entries) if f.key == (P + "__tdx_module_call", "emulated", "vp_info"))
    adapter = text.split(f"sb_gen_w{k}:", 1)[1].split(".size", 1)[0]
    assert adapter.lstrip("\\n\"\n\t").startswith("ASM_ENDBR") and "ASM_RET" in adapter and '"ret\\n"' not in adapter


def test_kmod_build_refuses_another_kernels_tree(imported, tmp_path, capsys):
    from bench.gen import ring0 as r0
    kdir = tmp_path / "build"
    (kdir.parent / "common").mkdir()
    (kdir.parent / "common" / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\n")
    kdir.mkdir()
    (kdir / "Makefile").write_text(f"include {kdir.parent / 'common' / 'Makefile'}\n")
    assert r0.headers_release(kdir) == "6.1.192"  # Debian's headers: the arch Makefile includes the common one
    assert cli.main(["kmod", "build", "-C", str(imported), "--kdir", str(kdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Linux 9.99.0" in err[0] and "6.1.192" in err[0] and "--any-release" in err[0]
    assert cli.main(["kmod", "load", "-C", str(imported)]) == 2


def test_code_ranges_name_adapter_function_and_stub(kcat):
    entries = codegen.plan(kcat, "user", conventions=[P + "__tdx_module_call"], crossings=["emulated"],
                           leaves=["vp_info"])
    src = codegen.generate(entries, "user")
    assert "{ { (const void *)sb_gen_w0, sb_gen_w0_end }, { (const void *)sb_k0___tdx_module_call, " \
           "sb_k0___tdx_module_call_end }, { sb_gen_stub_vp_info, sb_gen_stub_vp_info_end } }" in src
    asm, = codegen.imported_asm(entries)
    assert "call sb_gen_stub_vp_info" in asm and "SBK_" not in asm


def _copy_tree(tmp_path):
    dst = tmp_path / "tree"
    shutil.copytree(TREE, dst)
    return dst


def test_tree_without_tdx_code(tmp_path, capsys):
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    assert cli.main(["kernel", "import", str(tmp_path)]) == 2
    assert "no TDX call code" in capsys.readouterr().err


def test_unsupported_layout(tmp_path, capsys):
    t = _copy_tree(tmp_path)
    h = t / "arch/x86/include/asm/shared/tdx.h"
    h.write_text(h.read_text().replace("u64 __tdcall(u64 fn, struct tdx_module_args *args);",
                                       "u64 __tdcall(u64 fn, void *args);"))
    assert cli.main(["kernel", "import", str(t)]) == 2
    err = capsys.readouterr().err
    assert "unsupported layout: __tdcall: argument 2 is `void *args`" in err and err.count("\n") == 1


def test_assembler_failure_shows_the_assemblers_message(tmp_path, capsys):
    t = _copy_tree(tmp_path)
    s = t / "arch/x86/virt/vmx/tdx/seamcall.S"
    s.write_text(s.read_text().replace("CALL_TDX_MODULE host=1 ret=1\n", "CALL_TDX_MODULE host=1 ret=1\n\tmovq %rzx, %rax\n", 1))
    assert cli.main(["kernel", "import", str(t)]) == 2
    err = capsys.readouterr().err
    assert "the assembler refused arch/x86/virt/vmx/tdx/seamcall.S" in err
    assert "arch/x86/virt/vmx/tdx/seamcall.S:" in err and "rzx" in err  # the kernel file's own line


def test_a_git_revision(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    t = _copy_tree(tmp_path)
    git = ["git", "-C", str(t), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    (t / "arch/x86/virt/vmx/tdx/seamcall.S").unlink()
    tree, imps = kernel.import_tree(t, rev="HEAD", out_dir=tmp_path / "out")
    assert tree.label.endswith("@HEAD") and P + "__seamcall_ret" in {i.name for i in imps}
    with pytest.raises(kernel.KernelImportError, match="no commit"):
        kernel.import_tree(t, rev="nope")


def test_hand_edited_entries_are_refused(imported, tmp_path):
    text = imported.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("layout: direct", "layout: sideways", 1))
    with pytest.raises(ConfigError, match="layout must be one of"):
        load_builtin().with_user_file(bad)
    bad.write_text(text.replace("family: tdcall", "family: tdcall\n    load: [rcx]", 1))
    with pytest.raises(ConfigError, match="'load' cannot be set on imported code"):
        load_builtin().with_user_file(bad)
    ext = tmp_path / "ext.yaml"
    ext.write_text(f"conventions:\n  mine:\n    extends: '{P}__tdcall'\n")
    with pytest.raises(ConfigError, match="extends imported convention"):
        load_builtin().with_user_file(imported).with_user_file(ext)


def test_the_same_tree_imports_to_the_same_digest(tmp_path):
    """The digest (and so the declaration hash results record) depends on the tree, not on the
    import's temporary folders: identical code imported twice is a replicate."""
    _, one = kernel.import_tree(TREE, out_dir=tmp_path / "a")
    _, two = kernel.import_tree(TREE, out_dir=tmp_path / "b")
    assert [i.digest for i in one] == [i.digest for i in two]
