"""Measurement behaviour that must hold on any machine: ratios within one run, never absolute times."""
import textwrap

import numpy as np
import pytest

from bench.native import machine
from bench.config import derive
from bench.measure.model import Spec, UnsafeError
from bench.measure.prepare import Context, measure_one
from bench.native.registry import Registry


def median(m):
    return float(np.median(m.values))


@pytest.fixture(scope="module")
def ctx(catalog, pinned, fast):
    return Context(catalog, Registry(catalog), fast)


def test_record_fields_and_baseline(ctx, fast):
    m = measure_one(Spec("seamcall_ret", "emulated", "vp_info"), ctx)
    # excluded samples are measured again: every block has its values, but for contended samples
    # kept after the wait and then left out beside enough uncontended ones (SampleBlock.of)
    from bench.measure.model import MIN_UNCONTENDED
    assert m.n_calls % 4 == 0 and len(m.values) == len(m.tsc_values) and len(m.runs) == fast.runs
    for b in m.runs:
        assert len(b.core) == fast.values or (b.excluded.get("contention") and MIN_UNCONTENDED <= len(b.core) < fast.values)
    assert median(m) > 0 and all(r > 0 for r in m.ratios)
    base = float(np.median(m.baseline_values))
    assert 0 < base < float(np.median(m.tsc_values))  # an empty call costs something, far less than a crossing
    # core cycles are TSC ticks over each sample's own ratio
    assert m.values == pytest.approx([t / r for t, r in zip(m.tsc_values, m.ratios)])
    assert m.code_hash and len(m.code_hash) == 16
    assert m.safe and m.safety == "SAFE" and m.serialize in ("serialize", "iret", "cpuid")


def test_fpu_conventions_cost_clearly_more(ctx):
    plain = median(measure_one(Spec("seamcall_saved_ret", "emulated", "hypercall"), ctx))
    for fpu in ("xsave", "xsavec"):
        if machine.fpu_support(fpu):
            pytest.skip(machine.fpu_support(fpu))
        # hypercall does not reset AVX, so the difference is the save/restore alone
        with_fpu = median(measure_one(Spec(fpu, "emulated", "hypercall"), ctx, allow_unsafe=True))
        assert with_fpu > 1.5 * plain, (fpu, with_fpu, plain)


def test_known_cost_recovery_loosely(ctx):
    """K dependent one-cycle ops injected through YAML->codegen->compile->loop come back out."""
    base = ctx.catalog.convention("seamcall_ret")
    derived = {f"k{k}": derive(base, f"k{k}", inject_chain=k) for k in (0, 400)}
    ctx.catalog = ctx.catalog.with_conventions(derived)
    ctx.registry.catalog = ctx.catalog
    ctx.registry.ensure_compiled(list(derived), crossings=["emulated"], leaves=["vp_info"])
    m0 = median(measure_one(Spec("k0", "emulated", "vp_info"), ctx))
    m400 = median(measure_one(Spec("k400", "emulated", "vp_info"), ctx))
    per_op = (m400 - m0) / 400  # core cycles per injected one-cycle op: 1 when everything cancels
    assert 0.8 < per_op < 1.25, per_op


def test_user_yaml_convention_is_built_and_measured(catalog, pinned, fast, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent("""\
        conventions:
          my_lean_ret:
            description: six in, six out, nothing saved
            load: [rcx, rdx, r8, r9, r10, r11]
            store: [rcx, rdx, r8, r9, r10, r11]
            meant_for: [vp_info]
        """))
    cat = catalog.with_user_file(path)
    ctx = Context(cat, Registry(cat), fast)
    m = measure_one(Spec("my_lean_ret", "emulated", "vp_info"), ctx)
    ref = measure_one(Spec("seamcall_ret", "emulated", "vp_info"), ctx)
    assert m.safe and median(m) > 0
    # Same registers as tdcall_ret's, so within a loose band of the built-in.
    assert 0.5 < median(m) / median(ref) < 2.0


def test_unsafe_pair_is_refused(ctx):
    with pytest.raises(UnsafeError, match=r"r12, r13, r14, r15 written by leaf hypercall, not saved by seamcall_ret"):
        measure_one(Spec("seamcall_ret", "emulated", "hypercall"), ctx)


def test_output_values_reach_the_struct(registry):
    """What the emulated leaf writes arrives in the struct, register by register."""
    from bench.native import _core
    from bench.gen import codegen
    from bench.config import ARG_REGS
    fn, unit = registry.lookup("seamcall_saved_ret", "emulated", "hypercall")
    unit.set_emulation(0)
    args = _core.Args(64)
    assert _core.call_once(fn, 0, args) == 0
    assert args.regs == [codegen.marker(r) for r in ARG_REGS]


def test_user_conventions_compile_where_the_cache_cannot_be_written(catalog, tmp_path, monkeypatch):
    """A read-only cache (the kernel test's guest has a read-only home) falls back to a
    private temporary folder instead of failing."""
    from bench.native import registry as native
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a cache below a file cannot be created, not even by root
    monkeypatch.setenv("SEAMBENCH_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(native, "_PRIVATE_CACHE", None)
    src = native.codegen.generate(native.codegen.plan(catalog, "user", conventions=["tdcall"],
                                                      crossings=["emulated"], leaves=["vp_info"]))
    unit = native.compile_unit(src + "\n/* unwritable cache test */\n")
    assert unit.entries()[0][:3] == ("tdcall", "emulated", "vp_info")
    assert native._PRIVATE_CACHE is not None
