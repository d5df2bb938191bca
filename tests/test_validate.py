"""`bench validate` end to end: the injected cost comes back out (bounds looser than the
command's own pass criteria, so a busy CI machine does not turn noise into a failure: with
both CPUs loaded one point's median moved by 6% here, while the slope, which the K=1000
point dominates, stayed within 1%)."""
from bench.config import Settings, derive
from bench.measure.prepare import Context
from bench.native.registry import Registry
from bench.measure.validate import INTERCEPT_TOLERANCE, LINE_TOLERANCE, validate


def test_injected_chain_is_recovered(catalog, pinned):
    ctx = Context(catalog, Registry(catalog), Settings(runs=5, values=30, warmups=1, batch_us=50))
    v = validate(ctx)
    assert abs(v.a - v.own) < max(2 * INTERCEPT_TOLERANCE, 0.08 * v.own)
    for (k, med, _), res in zip(v.points, v.residuals):
        assert abs(res) < 4 * LINE_TOLERANCE * (med - res), (k, med, res)
    # In core cycles the slope is one per injected one-cycle op; in TSC cycles it is the samples'
    # own ratio (their reference chains): the conversion is checked, not assumed.
    assert 0.9 < v.b < 1.1
    assert 0.9 * v.in_sample_ratio < v.b_tsc < 1.1 * v.in_sample_ratio
    # 32 core cycles of difference is far above what the loop resolves on any machine.
    assert v.smallest_resolved is not None and v.smallest_resolved <= 32
    assert v.as_dict()["passed"] == v.passed


def test_an_injected_chain_leaves_the_wrapper_where_it_was(catalog):
    """The wrapper's own code after K injected ops starts on a 64-byte line, as the wrapper
    without them does: pushed along 3 bytes an op, K=1 measured cheaper than K=0 on a Zen 4."""
    from bench.gen.codegen import CHAIN_OP_BYTES
    from bench.native.codehash import read
    base = catalog.convention("seamcall_ret")
    ks = (0, 1, 2, 21, 22, 50)
    derived = {f"al{k}": derive(base, f"al{k}", inject_chain=k) for k in ks}
    reg = Registry(catalog.with_conventions(derived))
    reg.ensure_compiled(list(derived), crossings=["emulated"], leaves=["vp_info"])
    bodies = set()
    for k in ks:
        fn, unit = reg.lookup(f"al{k}", "emulated", "vp_info")
        asm_lo, asm_hi = unit.code_ranges()[fn][1]  # C wrapper, assembly wrapper, stub
        body = asm_lo + CHAIN_OP_BYTES * k
        assert body % 64 == 0, k
        assert read(asm_lo, body) == bytes.fromhex("4809f6") * k  # the chain, then the body
        bodies.add(read(body, asm_hi))
    # the code after the chain is as long for every K (its bytes differ in displacements only)
    assert len({len(b) for b in bodies}) == 1
