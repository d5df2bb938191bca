"""The one sampling engine: every timing path excludes by the same policy; figures in core
cycles ignore the host's clock steps; the code hash tells code apart, not declarations.

The native loop is replaced by a fake that produces a known stream: sample k (numbered
through its start TSC) has a context switch when k % 6 == 1, a load/store probe 20% over the
machine's floor (a busy sibling hyperthread) when k % 11 == 5, and its first measured batch
below the empty batch when k % 7 == 3; every other sample is clean.  Each timing path must
exclude exactly those, with those reasons, and nothing else.
"""
import ctypes
import json
import os
import textwrap
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bench.config import Settings, load_builtin
from bench.measure import ab, kmod_timer, policy, serialize, validate
from bench.measure.model import Sample, Spec
from bench.measure.prepare import Context, measure_one
from bench.measure.pytest_plugin import SeamBench
from bench.measure.sampler import Sampler, Screen, Target
from bench.measure.worker import PyperfTimer
from bench.native import _core, kmod, machine
from bench.native.registry import Registry

EMPTY, COST, RATIO = 1000, 3000, 0.7   # ticks of the empty and of a measured batch; TSC per core cycle
PROBE = 1000  # core cycles of the load/store probe on a quiet core: the machine's floor


def expected(k):
    if k % 6 == 1:
        return "context_switch"
    if k % 11 == 5:
        return "contention"
    if k % 7 == 3:
        return "nonpositive"
    return None


class FakeLoop:
    """Stands for _core.measure_set: slots are the empty function, the targets, the reference."""

    def __init__(self, ratio=lambda k: RATIO):
        self.k = 0
        self.ratio = ratio

    def __call__(self, fns, leaves, args, n, count, perf_fd=-1, n_ev=0, ref_hundreds=0, gate_ticks=0, gate_max=0,
                 first_sample=0):
        ticks, t0, ev, probe = [], [], [], []
        self.gates = getattr(self, "gates", []) + [gate_ticks]
        for _ in range(count):
            k, self.k = self.k, self.k + 1
            scale = self.ratio(k) / RATIO  # a clock step: every batch takes longer in TSC ticks alike
            row = [EMPTY] + [COST] * (len(fns) - 1)
            if expected(k) == "nonpositive":
                row[1] = EMPTY // 2
            row = [int(x * n / 4 * scale) for x in row] + ([int(self.ratio(k) * 100 * ref_hundreds)] if ref_hundreds else [])
            ticks += row
            t0.append(k)
            if ref_hundreds:  # in TSC ticks: a clock step moves it like the chain, contention does not
                probe.append(int(PROBE * self.ratio(k) * (1.2 if expected(k) == "contention" else 1)))
            for slot in range(len(row)):
                ev += [1 if (slot == 0 and expected(k) == "context_switch" and i == CS) else 0 for i in range(n_ev)]
        return ticks, t0, ev, probe, [0] * count if gate_ticks else []


CS = 0  # the context-switch event's slot in the fake perf group


def fake_perf():
    """A perf group whose only event is the context switch, in the slot the fake loop fills."""
    names = ("cycles", "instructions", "context_switches", "cpu_migrations", "page_faults")
    return os.open(os.devnull, os.O_RDONLY), {n: (CS if n == "context_switches" else None) for n in names}, {}


def spy_screen(monkeypatch):
    seen = []
    real = Screen.screen

    def spy(self, fresh):
        out = real(self, fresh)
        seen.extend(out)
        return out
    monkeypatch.setattr(Screen, "screen", spy)
    return seen


@pytest.fixture
def fake(monkeypatch, registry):
    serialize.costs(registry)  # the run's serialization choice, measured with the real loop first
    monkeypatch.setattr(_core, "measure_set", FakeLoop())
    monkeypatch.setattr(_core, "perf_open", fake_perf)
    return spy_screen(monkeypatch)
def context(catalog, registry):
    return Context(catalog, registry, Settings(runs=2, values=15, warmups=1, batch_us=50),
                   clocks={"tsc_hz": 2.6e9, "tsc_per_core_cycle": RATIO, "probe_floor": PROBE})


def check(seen, path):
    assert seen, f"{path}: no sample went through the policy"
    for s in seen:
        assert s.excluded == expected(s.t), (path, s.t, s.excluded)


def path_worker(ctx):
    timer = PyperfTimer(Spec("seamcall_ret", "emulated", "vp_info"), ctx)
    for _ in range(20):
        timer(64)


def path_measure_one(ctx):
    measure_one(Spec("seamcall_ret", "emulated", "vp_info"), ctx)


def path_ab(ctx):
    ab.run_ab(ctx, "seamcall_ret", "lean", pairs=40, with_ci=False)


def path_validate(ctx):
    validate._interleaved(ctx, ["seamcall_ret", "lean"], "emulated", "vp_info")


def path_serialize(ctx):
    serialize.measure_costs(ctx.registry, ctx.clocks["probe_floor"])


def path_plugin(ctx, monkeypatch):
    from bench.measure import pytest_plugin
    monkeypatch.setattr(pytest_plugin, "_context", lambda files=(): ctx)

    class Bench:
        extra_info = {}

        def pedantic(self, fn, rounds, warmup_rounds, iterations):
            for _ in range(rounds + warmup_rounds):
                fn()
    SeamBench(Bench())("seamcall_ret", leaf="vp_info", rounds=15, warmup_rounds=1)


@pytest.mark.parametrize("path", [path_worker, path_measure_one, path_ab, path_validate, path_serialize,
                                  path_plugin])
def test_every_user_space_path_excludes_by_the_one_policy(fake, catalog, registry, pinned, monkeypatch, path):
    ctx = context(catalog, registry)
    path(ctx, monkeypatch) if path is path_plugin else path(ctx)
    check(fake, path.__name__)
    assert {s.excluded for s in fake} >= {None, "context_switch", "contention", "nonpositive"}


def test_the_kernel_module_path_excludes_by_the_one_policy(monkeypatch, catalog):
    """kmod:* samples come from the module's ioctl, not the user-space loop: the same Screen."""
    seen = spy_screen(monkeypatch)

    class Module:
        k = 0

        def ioctl(self, req, r):
            out = (ctypes.c_uint64 * (r.samples * kmod.SLOTS)).from_address(r.out)
            for s in range(r.samples):
                k, Module.k = Module.k, Module.k + 1
                entry = 500 if expected(k) == "nonpositive" else 3000
                out[3 * s:3 * s + 3] = [entry * r.calls_per_sample, 1000 * r.calls_per_sample,
                                        int(r.ref_hundreds * 100 * RATIO)]
            r.bad_status, r.budget_ticks, r.batches, r.cpu = 0, 10**9, 1, 0

    d = kmod.KmodDevice.__new__(kmod.KmodDevice)
    d.fd, d._entries, d.ioctl = -1, [kmod.KEntry(0, "lean", "vmcall", "vp_info", True, True)], Module().ioctl
    monkeypatch.setattr(kmod_timer, "KmodDevice", lambda: d)
    ctx = SimpleNamespace(catalog=catalog, settings=Settings(runs=2, values=20, warmups=1, batch_us=50),
                          clocks={"tsc_hz": 2.6e9, "tsc_per_core_cycle": RATIO}, xsave={"enabled": False})
    m = kmod_timer.measure_kmod(Spec("lean", "kmod:vmcall", "vp_info"), ctx, SimpleNamespace(safe=True, text="SAFE"))
    # the module's samples carry no perf events (interrupts are off): only what the values show
    assert seen and all((s.excluded == "nonpositive") == (s.ticks[0] < s.empty) for s in seen)
    assert m.excluded_by_reason.get("nonpositive", 0) > 0
    assert m.values and all(v == pytest.approx((3000 - 1000) / RATIO, rel=1e-4) for v in m.values)


def test_a_clock_step_inside_a_run_changes_no_core_cycle_figure(monkeypatch, catalog, registry, pinned):
    """Half-way through, the host moves the core clock 2.5% down: every batch takes 2.5% more TSC
    ticks (the reference chain too).  TSC figures move; core cycles do not."""
    serialize.costs(registry)
    step = lambda k: RATIO if k < 25 else RATIO * 1.025
    loop = FakeLoop(step)
    monkeypatch.setattr(_core, "measure_set", loop)
    ctx = context(catalog, registry)
    m = measure_one(Spec("seamcall_ret", "emulated", "vp_info"), ctx)
    assert len(set(round(t, 6) for t in m.tsc_values)) == 2  # two clock states in TSC ticks ...
    assert max(m.tsc_values) / min(m.tsc_values) == pytest.approx(1.025, rel=1e-3)
    # ... one figure in core cycles (to the rounding of whole TSC ticks)
    assert max(m.values) == pytest.approx(min(m.values), rel=1e-4)
    assert m.values[0] == pytest.approx((COST - EMPTY) / 4 / RATIO, rel=1e-4)


def test_policy_reasons_in_order():
    assert policy.judge({"context_switches": 1, "page_faults": 1}, (1,), (1,), (1,)) == "context_switch"
    assert policy.judge({"page_faults": 2}, (1,), (1,), (1,)) == "page_fault"
    assert policy.judge({}, (1.6, 1), (1, 1), (1,)) == "tsc_gap"
    assert policy.judge({}, (1.4, 1), (1, 1), (0,)) == "nonpositive"
    assert policy.judge({}, (1.4, 1), (1, 1), (0,), contention=1.2) == "contention"
    assert policy.judge({}, (1.4, 1), (1, 1), (1,), contention=1 + policy.CONTENTION_TOLERANCE) is None
    assert policy.judge({}, (1.4, 1), (1, 1), (1,), contention=0.95) == "contention"  # its chain ran slow
    assert policy.judge({}, (1.4, 1), (1, 1), (1,), contention=1 - policy.CONTENTION_TOLERANCE) is None
    assert policy.judge({}, (1.4, 1), None, (1,)) is None
    assert list(policy.counts(["tsc_gap", None, "tsc_gap"])) == list(policy.REASONS)


def test_samples_cross_processes_unchanged():
    s = Sample(t=5, n_calls=8, ticks=(900, 1200), empty=100, ref=700, ref_adds=1000,
               events={"context_switches": 0}, hw={"cycles": (1.5, 2.5)}, excluded="tsc_gap", probe=840)
    assert Sample.from_dict(s.as_dict()) == s
    assert s.core(1) == pytest.approx((1200 - 100) / 8 / 0.7)
    assert s.probe_core == pytest.approx(1200)
    old = s.as_dict()
    del old["probe"]  # a record written before the probe existed
    assert Sample.from_dict(old).probe == 0


# --- code identity -------------------------------------------------------------------------

TWINS = textwrap.dedent("""\
    conventions:
      sr_twin:
        extends: seamcall_ret
        # only a comment and a name differ
        description: the same declaration under another name
      sr_scrub_less:
        extends: seamcall_ret
        scrub: [rcx]
    """)


def test_code_hash_follows_instructions_not_declarations(tmp_path):
    f = tmp_path / "twins.yaml"
    f.write_text(TWINS)
    catalog = load_builtin().with_user_file(f)
    reg = Registry(catalog)

    def h(name, leaf="vp_info"):
        fn, unit = reg.lookup(name, "emulated", leaf)
        return reg.code_hash(fn, unit)
    # the twin is compiled into another unit, at other addresses: the same instructions
    assert h("sr_twin") == h("seamcall_ret")
    # one instruction fewer (a scrub): another hash
    assert h("sr_scrub_less") != h("seamcall_ret")
    # another leaf's stub: another hash
    assert h("seamcall_ret", "sys_rd") != h("seamcall_ret")
    # a comment in the YAML changes nothing at all
    f.write_text(TWINS.replace("# only a comment", "# another comment"))
    assert Registry(load_builtin().with_user_file(f)).code_hash(*Registry(load_builtin().with_user_file(f))
                                                                .lookup("sr_twin", "emulated", "vp_info")) == h("sr_twin")


def test_code_hash_is_looked_up_for_code_already_hashed(monkeypatch, tmp_path, registry):
    """The per-machine cache answers for the same bytes at the same addresses, and only then."""
    from bench.native import codehash
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))
    fn, unit = registry.lookup("seamcall_ret", "emulated", "vp_info")
    first = registry.code_hash(fn, unit)
    real = codehash.normalized
    monkeypatch.setattr(codehash, "normalized", lambda *a: pytest.fail("disassembled code already hashed"))
    assert registry.code_hash(fn, unit) == first
    other = registry.lookup("seamcall_ret", "emulated", "sys_rd")
    with pytest.raises(pytest.fail.Exception):
        registry.code_hash(*other)  # other bytes: not in the cache
    monkeypatch.setattr(codehash, "normalized", real)
    assert registry.code_hash(*other) not in (None, first)
    # a cache entry that is not a hash is measured anew, not believed
    doc = json.loads((tmp_path / codehash.CACHE_FILE).read_text())
    (tmp_path / codehash.CACHE_FILE).write_text(json.dumps({k: 0 for k in doc}))
    assert registry.code_hash(fn, unit) == first


def test_the_gap_test_works_from_the_first_sample(monkeypatch, registry):
    """A worker's first judged sample is already checked for a TSC gap: the calibration samples
    seed the history (a pyperf worker takes one sample a call, so it would otherwise keep its
    first few samples unchecked)."""
    loop = FakeLoop()
    monkeypatch.setattr(_core, "measure_set", loop)
    from bench.measure.sampler import Sampler, Target
    s = Sampler([Target(1, 1, None)], None).resize(64)
    assert len(s.screen.kept) >= policy.GAP_MIN_HISTORY and not s.screen.log
    slow = FakeLoop(lambda k: RATIO * 3)  # every batch 3x as long: the host took the vCPU
    slow.k = 10 ** 6 + 2  # a clean sample number
    monkeypatch.setattr(_core, "measure_set", slow)
    assert s.take(1) == [] and s.screen.log[0].excluded == "tsc_gap"


# --- a core shared with a sibling hyperthread -------------------------------------------------

class SharedCore(FakeLoop):
    """Every sample's probe at `over` x the floor from sample `start` on (clean samples else)."""

    def __init__(self, over, start=0):
        super().__init__()
        self.over, self.start = over, start

    def __call__(self, *a, **kw):
        k0 = self.k
        ticks, t0, ev, probe, waited = super().__call__(*a, **kw)
        clean = [PROBE * RATIO] * len(probe)
        return ticks, [10**6] * len(t0), ev, [int(c * (self.over if k0 + i >= self.start else 1))
                                             for i, c in enumerate(clean)], waited


def test_contended_samples_are_waited_out_then_kept_and_counted(monkeypatch):
    from bench.measure import sampler as sm
    from bench.measure.model import SampleBlock
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.15))
    monkeypatch.setattr(sm, "CONTENTION_WAIT_S", 0.05)
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE).resize(64)
    kept = s.take(30)
    # the budget ran out: every sample asked for came back, each flagged, none silently
    assert len(kept) == 30 and all(x.contended for x in kept)
    assert s.screen.excluded()["contention"] > 0 and s.screen.tolerate
    assert SampleBlock.of(kept).contended == 30
    # where enough uncontended samples stand beside them, those alone make the figure
    quiet = [replace(x, contended=False, ticks=(x.ticks[0] // 2,)) for x in kept[:5]]
    b = SampleBlock.of(kept[5:] + quiet, excluded={"contention": 3})
    assert b.contended == 0 and b.core == [x.core() for x in quiet] and b.excluded == {"contention": 3 + 25}
    b = SampleBlock.of(kept[4:] + quiet[:4])  # four are too few to stand alone: all stay, flagged
    assert b.contended == 26 and len(b.core) == 30


def screened(s, n):
    """Reasons of n fresh samples, as the sampler's screen judges them."""
    return [x.excluded for x in s.screen.screen(s._raw(n, s.n_calls, s.ref_hundreds))]


def test_a_quieter_core_than_the_floor_lowers_it(monkeypatch):
    from bench.measure import sampler as sm
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.0))
    # the parent started while the core was shared: its floor is 10% high
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE * 1.1).resize(64)
    assert s.take(5) and s.screen.probe_floor == pytest.approx(PROBE, rel=1e-3)
    assert s.screen.excluded()["contention"] == sm.FLOOR_RUN  # measured again until the floor came down
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.1))
    assert set(screened(s, 5)) == {"contention"}
    # a preempted chain makes the probe look fast in core cycles: a TSC gap, and no new floor
    loop = SharedCore(1.0)

    def preempted_chain(*a, **kw):
        ticks, t0, ev, probe, waited = loop(*a, **kw)
        width = len(a[0]) + 1
        return [x * 3 if i % width == width - 1 else x for i, x in enumerate(ticks)], t0, ev, probe, waited
    monkeypatch.setattr(_core, "measure_set", preempted_chain)
    assert set(screened(s, 3)) == {"tsc_gap"}
    assert s.screen.probe_floor == pytest.approx(PROBE, rel=1e-3)


def test_only_a_run_of_quiet_samples_lowers_the_floor(monkeypatch):
    from bench.measure import sampler as sm
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.0))
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE * 1.1).resize(64)
    assert set(screened(s, sm.FLOOR_RUN - 1)) == {"contention"}  # 9% under the floor: measured again
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.1))  # one at the floor breaks the run
    assert screened(s, 1) == [None]
    monkeypatch.setattr(_core, "measure_set", SharedCore(1.0))
    screened(s, sm.FLOOR_RUN - 1)
    assert s.screen.probe_floor == pytest.approx(PROBE * 1.1, rel=1e-3)
    screened(s, 1)
    assert s.screen.probe_floor == pytest.approx(PROBE, rel=1e-3)
    assert set(screened(s, 3)) == {None}


def test_a_sample_whose_chain_ran_slow_is_not_kept_as_quiet(monkeypatch):
    """The probe cannot run faster than the core's ports: a sample under the floor had its
    reference chain slowed, and every figure of it converts low.  Measured again like a
    contended one; a state that lasts (a whole worker's, 40% under) does not take the floor
    down with it, and once the wait budget is spent its samples are kept flagged, so that the
    driver replaces the worker."""
    from bench.measure import sampler as sm
    monkeypatch.setattr(_core, "measure_set", SharedCore(0.95))
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE).resize(64)
    assert set(screened(s, 3)) == {"contention"}
    monkeypatch.setattr(_core, "measure_set", SharedCore(0.6))
    monkeypatch.setattr(sm, "CONTENTION_WAIT_S", 0.05)
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE).resize(64)
    kept = s.take(20)
    assert s.screen.probe_floor == pytest.approx(PROBE * (1 - sm.FLOOR_LOWER_MAX), rel=1e-3)
    assert len(kept) == 20 and all(x.contended for x in kept) and s.screen.excluded()["contention"] >= sm.FLOOR_RUN
    monkeypatch.setattr(_core, "measure_set", SharedCore(0.99))  # within the tolerance: quiet
    assert set(screened(s, 3)) == {None}


def test_the_reference_is_a_whole_number_of_pieces():
    from bench.measure import sampler as sm
    k = _core.REF_PIECES
    for batch in (1, 5e3, 1e5, 3.3e5, 1e12):
        for ratio in (0.5, 0.7, 1.3, 0.0):
            h = sm.reference_hundreds(batch, ratio)
            assert h % k == 0 and k <= h <= _core.REF_MAX_HUNDREDS
    assert abs(sm.reference_hundreds(1e6, 1.0) * 100 - 1e6) <= 100 * k / 2
    args = _core.Args(64)
    with pytest.raises(ValueError, match=f"multiple of {k}"):
        _core.measure_set([_core.EMPTY_FN], [0], [args], 4, 1, ref_hundreds=k + 1)
    ticks, _, _, probe, _ = _core.measure_set([_core.EMPTY_FN], [0], [args], 4, 3, ref_hundreds=k)
    assert len(ticks) == 6 and all(t > 0 for t in ticks[1::2]) and len(probe) == 3


def _start_up_probes(monkeypatch):
    """probe_at(*chunks): machine.probe_floor's chunks then read the probe at these core cycles,
    in turn (the last one repeats)."""
    from bench.native import machine

    def probe_at(*chunks):
        calls = iter(list(chunks) + [chunks[-1]] * machine.PROBE_SAMPLES)

        def loop(fns, leaves, args, n, count, perf_fd=-1, n_ev=0, ref_hundreds=0, gate_ticks=0, gate_max=0, first_sample=0):
            core = next(calls)
            return ([100] * len(fns) + [int(RATIO * 100 * ref_hundreds)]) * count, list(range(count)), [], \
                [int(core * RATIO)] * count, [0] * count if gate_ticks else []
        monkeypatch.setattr(_core, "measure_set", loop)
    return probe_at


def test_the_machine_floor_is_kept_across_runs_and_only_trusted_nearby(monkeypatch, tmp_path):
    from bench.native import machine
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))
    kept = "kept from earlier, quieter runs on this CPU"

    probe_at = _start_up_probes(monkeypatch)
    probe_at(1000)
    assert machine.probe_floor() == (pytest.approx(1000, rel=2e-3), "measured at start-up")
    probe_at(1150)  # a run that starts on a shared core takes the quieter floor kept before
    assert machine.probe_floor() == (pytest.approx(1000, rel=2e-3), kept)
    probe_at(900)   # quieter than ever: the new floor
    assert machine.probe_floor() == (pytest.approx(900, rel=2e-3), "measured at start-up")
    probe_at(1500)  # a heavily shared core at start-up: a floor kept (four start-ups: the second lowest)
    assert machine.probe_floor() == (pytest.approx(1000, rel=2e-3), kept)
    probe_at(2500)  # a kept floor under half of this is not believed: measured again
    assert machine.probe_floor() == (pytest.approx(2500, rel=2e-3), "measured at start-up")


def test_a_passing_low_reading_sets_no_floor(monkeypatch, tmp_path):
    """One or two chunks of a start-up, or one start-up in a run of them, that read the probe low
    (a state of the host's in which every conversion comes out low) do not set the floor, and a
    floor kept from such a reading is outvoted by later start-ups."""
    from bench.native import machine
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))

    probe_at = _start_up_probes(monkeypatch)
    probe_at(1100, 900, 905, 1000)  # two low chunks among twenty
    assert machine.probe_floor()[0] == pytest.approx(1000, rel=2e-3)
    # a file from before the history: one number, from a low reading
    doc = {f"{machine.cpu_key()} probe {_core.PROBE_OPS} v{machine.PROBE_VERSION}": 905.0}
    (tmp_path / machine.PROBE_FLOOR_FILE).write_text(json.dumps(doc))
    floors = []
    for _ in range(6):
        probe_at(1000)
        floors.append(machine.probe_floor()[0])
    assert floors[0] == pytest.approx(905, rel=2e-3)          # the one kept, while it is all there is
    assert floors[-1] == pytest.approx(1000, rel=2e-3)        # outvoted by the start-ups after it
    assert machine.kept_floor([905, 1000, 1000, 1000]) == 1000
    assert machine.kept_floor([1000]) == machine.kept_floor([1000, 1400]) == machine.kept_floor([1400, 1000, 1300]) == 1000
    assert machine.kept_floor([900, 905, 1000, 1000, 1000, 1000, 1000]) == 1000
    history = json.loads((tmp_path / machine.PROBE_FLOOR_FILE).read_text())
    assert [len(v) for v in history.values()] == [7]
    for _ in range(machine.PROBE_FLOOR_HISTORY + 3):
        probe_at(1000)
        machine.probe_floor()
    history = json.loads((tmp_path / machine.PROBE_FLOOR_FILE).read_text())
    assert [len(v) for v in history.values()] == [machine.PROBE_FLOOR_HISTORY]


def test_the_gate_waits_for_a_quiet_core_and_no_longer_than_its_bound():
    """The native gate (sb_measure_set): a sample starts once SB_GATE_RUN probes in a row came in
    under the limit, or after gate_max probes."""
    args = _core.Args(64)
    ticks, _, _, probe, waited = _core.measure_set([_core.EMPTY_FN], [0], [args], 4, 3, ref_hundreds=5,
                                                   gate_ticks=10**12, gate_max=50)
    assert list(waited) == [_core.GATE_RUN] * 3 and len(probe) == 3  # quiet at once
    *_, waited = _core.measure_set([_core.EMPTY_FN], [0], [args], 4, 3, ref_hundreds=5, gate_ticks=1, gate_max=7)
    assert list(waited) == [7] * 3  # never quiet: the bound, then the sample anyway
    assert len(_core.measure_set([_core.EMPTY_FN], [0], [args], 4, 3, ref_hundreds=5)[4]) == 0  # no gate
    for bad in (0, _core.GATE_MAX + 1):
        with pytest.raises(ValueError, match="gate_max"):
            _core.measure_set([_core.EMPTY_FN], [0], [args], 4, 1, ref_hundreds=5, gate_ticks=100, gate_max=bad)


def test_the_sampler_gates_at_the_floor_of_the_clock_it_last_saw(monkeypatch):
    from bench.measure import sampler as sm
    loop = SharedCore(1.0)
    monkeypatch.setattr(_core, "measure_set", loop)
    s = sm.Sampler([sm.Target(1, 1, None)], None, probe_floor=PROBE).resize(64)
    s.take(3)
    # the first native call knows no clock yet; every later one gates at the floor in TSC ticks
    assert loop.gates[0] == 0 and set(loop.gates[1:]) == {int(PROBE * RATIO * (1 + policy.CONTENTION_TOLERANCE))}
    loop.gates.clear()
    monkeypatch.setattr(_core, "measure_set", loop)
    sm.Sampler([sm.Target(1, 1, None)], None).resize(64).take(3)  # no floor (the kernel module's case): no gate
    assert set(loop.gates) == {0}


def test_the_machine_id_tells_cpu_models_apart_where_the_brand_string_does_not(monkeypatch):
    from bench.native import machine
    monkeypatch.delenv("SEAMBENCH_MACHINE", raising=False)

    def on(brand, family, model):
        monkeypatch.setattr(machine, "cpu", lambda: {"vendor": "AuthenticAMD", "model_name": brand, "family": family,
                                                     "model": model, "logical_cpus": 2, "hypervisor": "KVMKVMKVM"})
        return machine.machine_id()
    assert on("AMD EPYC", 25, 1) == "amd-epyc-f25m1-2cpu-kvm"
    assert on("AMD EPYC", 26, 2) == "amd-epyc-f26m2-2cpu-kvm"  # a Zen 5 guest: another store
    assert on("AMD EPYC 9654 96-Core Processor", 25, 17) == "amd-epyc-9654-96-core-2cpu-kvm"


@pytest.mark.parametrize("n", range(1, 13))
def test_batches_run_in_a_williams_order(n):
    """Over one cycle of the rotation every slot runs in every position equally often and right
    after every other slot equally often: no measured function keeps one neighbour."""
    cycle = 2 * n if n % 2 else n
    rows = [_core.slot_order(s, n) for s in range(cycle)]
    assert all(sorted(r) == list(range(n)) for r in rows)
    assert rows == [_core.slot_order(s + cycle, n) for s in range(cycle)]  # it repeats
    positions = {(r[j], j) for r in rows for j in range(n)}
    assert len(positions) == n * n and all(sum(r[j] == f for r in rows) == cycle // n
                                           for f in range(n) for j in range(n))
    follows = {}
    for r in rows:
        for a, b in zip(r, r[1:]):
            follows[a, b] = follows.get((a, b), 0) + 1
    if n > 1:
        assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert len(set(follows.values())) == 1, follows


def test_the_sampler_continues_the_order_across_native_calls(monkeypatch):
    """Samples measured again come a few at a time: each native call starts where the last
    one's rotation stopped, not at its first row."""
    starts, real = [], _core.measure_set

    def spy(*a, **kw):
        starts.append((a[10] if len(a) > 10 else kw.get("first_sample", 0), a[4]))
        return real(*a, **kw)
    monkeypatch.setattr(_core, "measure_set", spy)
    args = _core.Args()
    sampler = Sampler([Target(_core.EMPTY_FN, 0, args)], args, n_calls=4, ref_hundreds=5)
    for count in (3, 1, 2, 5):
        sampler.warm(count)
    assert starts == [(0, 3), (3, 1), (4, 2), (6, 5)]


def test_fresh_code_pages_keep_the_code_and_move_it_to_pages_of_its_own(tmp_path):
    """machine.fresh_code_pages: the mapping that held the wrapper is anonymous memory now (its
    own pages, no longer the file's page-cache ones), at the same address, and runs as before."""
    (tmp_path / "c.yaml").write_text("conventions:\n  fresh_pages:\n    extends: seamcall_ret\n")
    catalog = load_builtin().with_user_file(tmp_path / "c.yaml")
    fn, unit = Registry(catalog).lookup("fresh_pages", "emulated", "vp_info")
    args = _core.Args()

    def mapping_of(address):  # (permissions, path)
        return next((perms, path) for lo, hi, perms, path in machine.mappings() if lo <= address < hi)
    assert mapping_of(fn)[1].endswith(".so")
    before = bytes((ctypes.c_ubyte * 64).from_address(fn))
    status = _core.call_once(fn, 0, args)
    assert machine.fresh_code_pages([fn]) == "fresh"
    assert mapping_of(fn)[1] == "" and "x" in mapping_of(fn)[0]  # no file: anonymous, executable
    assert bytes((ctypes.c_ubyte * 64).from_address(fn)) == before
    assert _core.call_once(fn, 0, args) == status
    assert machine.fresh_code_pages([fn]) == "fresh"  # and again, onto other pages
    assert _core.call_once(fn, 0, args) == status
    assert machine.fresh_code_pages([1]).startswith("shared")  # nothing mapped there: says so
