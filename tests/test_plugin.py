"""The pytest plugin, run under pytest as a project would use it (a subprocess: the plugin
is found through its entry point, and pytest-benchmark's own options drive it)."""
import json
import os
import subprocess
import sys
import textwrap

TEST_FILE = textwrap.dedent("""
    import os

    def test_convention(seambench):
        conv, leaf = os.environ.get("CONV", "seamcall_ret/vp_info").split("/")
        result = seambench(conv, backend="emulated", leaf=leaf, rounds=40)
        assert result["cycles"] > 0
""")


def pytest_run(tmp_path, *args, conv="seamcall_ret/vp_info"):
    env = dict(os.environ, CONV=conv)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_conv.py",
                           f"--benchmark-storage={tmp_path / 'store'}", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_fixture_reports_per_call_cost_and_gates(tmp_path):
    (tmp_path / "test_conv.py").write_text(TEST_FILE)
    out = tmp_path / "bench.json"
    p = pytest_run(tmp_path, f"--benchmark-json={out}", "--benchmark-save=base")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    bench = doc["benchmarks"][0]
    info = bench["extra_info"]
    assert info["convention"] == "seamcall_ret" and info["cycles_unit"] == "core" and info["code_hash"]
    assert info["cycles"] > 0 and info["n_calls"] % 4 == 0
    # pytest-benchmark's statistics are seconds per call from the native loop, not Python
    # call overhead: its median matches the TSC cycles in extra_info.
    assert bench["stats"]["rounds"] == 40
    assert bench["stats"]["median"] * info["tsc_hz"] == __import__("pytest").approx(info["tsc_cycles"], rel=0.05)
    # pytest-benchmark's own regression gate works on it
    p = pytest_run(tmp_path, "--benchmark-compare", "--benchmark-compare-fail=median:1000%")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0001_base" in p.stdout
    # the same test now measuring a convention seven times as costly (XSAVE/XRSTOR): caught
    p = pytest_run(tmp_path, "--benchmark-compare", "--benchmark-compare-fail=median:50%",
                   conv="xsave/migration")
    assert p.returncode != 0 and "Performance has regressed" in p.stdout + p.stderr


def test_a_round_disturbed_to_the_end_is_clamped_positive_and_counted(monkeypatch):
    """Every retry disturbed and the last net value negative (the empty batch took longer):
    the round still hands pytest-benchmark a positive duration (the 0.001-cycle floor
    bench run's sampler uses), never a negative one, and every retry is counted."""
    from bench.measure import pytest_plugin, sampler, serialize
    from bench.native import _core

    # The emulated backend's serialization choice is measured once and cached: with the real loop.
    serialize.choice(pytest_plugin._context().registry)

    def negative_net(fns, leaves, args, n, count, perf_fd=-1, n_ev=0, ref_hundreds=0, gate_ticks=0, gate_max=0, first_sample=0):
        # slots: the empty batch (2000 ticks), the convention's (1000), the reference
        row = [2000, 1000] + ([70 * ref_hundreds] if ref_hundreds else [])
        return row * count, list(range(count)), [0] * (count * len(row) * n_ev), [0] * (count if ref_hundreds else 0), [0] * count if gate_ticks else []
    monkeypatch.setattr(_core, "measure_set", negative_net)

    class FakeBenchmark:  # what SeamBench uses of pytest-benchmark's fixture
        extra_info = {}

        def pedantic(self, fn, rounds, warmup_rounds, iterations):
            self.durations = []
            for _ in range(warmup_rounds + rounds):
                t0 = self._timer()
                fn()
                self.durations.append(self._timer() - t0)

    bench = FakeBenchmark()
    info = pytest_plugin.SeamBench(bench)("seamcall_ret", leaf="vp_info", rounds=3, warmup_rounds=1)
    assert len(bench.durations) == 4 and all(d > 0 for d in bench.durations)
    assert info["tsc_cycles"] < 0  # what was measured is kept in the record, as measured
    assert info["excluded"] == 4 * (sampler.MAX_ROUNDS + 1) == info["excluded_by_reason"]["nonpositive"]
