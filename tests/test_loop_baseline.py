"""The empty loop `bench run` subtracts is the run's, fitted over all its workers (driver.loop_baseline):
a worker's own empty batch sits in a state of its process that its measured batch does not share
(synthetic samples with known truth)."""
import dataclasses

import pyperf
import pytest

from bench.measure import driver
from bench.measure.model import Sample, SampleBlock, Spec

RATIO = 0.75          # TSC ticks per core cycle
BATCH, CALL = 240.0, 5.8  # the empty loop's truth: core cycles a batch and a call


def _worker(token, cost, n, state, count=9):
    """Samples of one worker: `cost` core cycles a call over the true empty loop; its own empty
    batch off by `state` core cycles a call (the process's state), the measured one not."""
    empty = BATCH + (CALL + state) * n
    gross = BATCH + (CALL + cost) * n
    return [Sample(t=i, n_calls=n, ticks=(round(gross * RATIO),), empty=round(empty * RATIO),
                   ref=round(RATIO * 70_000), ref_adds=70_000) for i in range(count)]


def _result(name, n, states, cost):
    runs, calls = [], {}
    for k, state in enumerate(states):
        token = f"{name}-{k}"
        calls[token] = _worker(token, cost, n, state)
        runs.append(pyperf.Run([1e-8] * len(calls[token]), metadata={"name": name, "loops": n, "unit": "second",
                                                                   "seambench_worker": token},
                               collect_metadata=False))
    spec = Spec(*name.split("/"))
    return driver.Result(spec, pyperf.Benchmark(runs), calls=calls, excluded={t: [] for t in calls}, n_calls=n)


STATES = (-0.8, 0.0, 0.75, 1.5)   # per process, core cycles a call (seen on a Zen 4 guest)


def _run():
    return [_result("lean/emulated/vp_info", 2000, STATES, 160.0),
            _result("seamcall/emulated/vp_info", 2200, STATES[::-1], 167.0),
            _result("xsave/emulated/migration", 344, STATES, 1080.0)]


def test_the_runs_empty_loop_gives_every_worker_its_true_figure(catalog):
    results = _run()
    own = [driver.to_measurement(r, catalog) for r in results]
    spread_own = [max(b.core) - min(b.core) for b in own[0].runs]
    medians_own = [b.core[0] for b in own[0].runs]
    assert max(medians_own) - min(medians_own) == pytest.approx(2.3, abs=0.05)  # each its process's state
    assert max(spread_own) < 1e-6
    baseline = driver.fit_baseline(results)["emulated"]
    assert baseline.workers == 12
    assert baseline.batch == pytest.approx(BATCH, rel=0.02) and baseline.call == pytest.approx(CALL + 0.375, abs=0.05)
    for r, cost in zip(results, (160.0, 167.0, 1080.0)):
        m = driver.to_measurement(r, catalog)
        assert m.baseline is baseline
        figures = [b.core[0] for b in m.runs]
        # every worker the same figure: the true cost less the median process state
        assert max(figures) - min(figures) < 0.01
        assert figures[0] == pytest.approx(cost - 0.375, abs=0.05)


def test_the_batch_cost_is_told_only_by_workers_far_apart_in_calls():
    # near-equal n only: one figure a call, no fixed batch cost read into the noise
    b = driver.fit_loop([2000, 2100, 2200], [BATCH + (CALL + s) * n for s, n in zip((0.7, -0.7, 0.0), (2000, 2100, 2200))])
    assert b.batch == 0.0 and b.per_call(2100) == pytest.approx(CALL + BATCH / 2100, abs=0.02)
    # two clusters of n: both parts
    n = [2000, 2050, 2100, 340, 350, 360]
    b = driver.fit_loop(n, [BATCH + CALL * k for k in n])
    assert b.batch == pytest.approx(BATCH) and b.call == pytest.approx(CALL)
    assert b.per_call(350) == pytest.approx(CALL + BATCH / 350)


def test_the_subtracted_loop_is_stored_and_said(catalog):
    from bench.results import store
    results = _run()
    baseline = driver.fit_baseline(results)["emulated"]
    m = driver.to_measurement(results[0], catalog)
    bench = driver.annotate(results[0], m, {"cpu_model_name": "x", "platform": "Linux", "machine": "m",
                                            "commit": "c", "dirty": False, "tsc_hz": 2.6e9})
    md = bench.get_metadata()
    assert md["seambench_baseline_core_cycles"] == pytest.approx(baseline.per_call(2000))
    assert "fitted over the empty batches of 12 workers" in md["seambench_baseline"]
    own = sorted(r.get_metadata()["seambench_run_empty_core_cycles"] for r in bench.get_runs())
    assert own == pytest.approx([CALL + s + BATCH / 2000 for s in sorted(STATES)], abs=0.01)
    # without a fit (one process: the kernel module) each sample's own empty batch, said so
    md = store.run_metadata(dataclasses.replace(m, baseline=None), {"cpu_model_name": "x", "platform": "L"})
    assert md["seambench_baseline"] == "each sample's own empty batch" and "seambench_baseline_core_cycles" not in md


def test_a_sample_net_of_a_given_loop():
    s = _worker("w", 100.0, 400, 1.0)[0]
    assert s.core() == pytest.approx(99.0, abs=0.01)            # its own empty batch
    assert s.core(0, CALL + BATCH / 400) == pytest.approx(100.0, abs=0.01)
    assert SampleBlock.of([s], baseline=driver.fit_loop([400], [BATCH + CALL * 400])).core == [pytest.approx(100.0, abs=0.01)]


def test_the_fits_own_error_widens_every_benchmarks_interval():
    import numpy as np

    from bench.stats.noise import run_intervals
    rng = np.random.default_rng(3)
    workers = [[rng.normal(160.0, 0.2, 200) + d for d in (0.0, 0.05, -0.05)] for _ in range(4)]
    plain = run_intervals(workers)
    shared = run_intervals(workers, shared=[0.25, 0.0, 0.25, 0.0])  # 0.5 core cycles sd, common to its workers
    for (lo, hi), (slo, shi), v in zip(plain, shared, (0.25, 0.0, 0.25, 0.0)):
        if v:
            assert shi - slo > 3 * (hi - lo) and (shi - slo) / 2 > 1.9 * 0.5  # at least the shared error's +-1.96 sd
        else:
            assert (slo, shi) == (lo, hi)
    # the fit's error, from resampling its workers: none where they agree, some where they scatter
    n = [2000, 2000, 2000, 350, 350, 350]
    assert driver.fit_loop(n, [BATCH + CALL * k for k in n]).per_call_var(2000) == pytest.approx(0.0, abs=1e-12)
    scattered = driver.fit_loop(n, [BATCH + (CALL + s) * k for s, k in zip((-0.8, 0.0, 1.5, 0.75, -0.8, 0.0), n)])
    assert 0.05 < scattered.per_call_var(2000) ** 0.5 < 1.5


def test_workers_on_two_levels_move_the_loop_by_their_shares_not_a_whole_level():
    n = [2000] * 45
    # 22 workers at one level, 23 at the next (0.75 core cycles a call apart), then the other way
    a = driver.fit_loop(n, [(CALL + (0.75 if k < 22 else 0.0)) * 2000 for k in range(45)])
    b = driver.fit_loop(n, [(CALL + (0.75 if k < 23 else 0.0)) * 2000 for k in range(45)])
    assert abs(a.per_call(2000) - b.per_call(2000)) < 0.75 / 10  # a median would jump 0.75


def test_benchmarks_repro_rebuilds_each_workers_own_loop_from_a_stored_file(catalog, tmp_path):
    """benchmarks/repro.py sets the run's loop against each worker's own from the same stored runs."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "repro_script", Path(__file__).resolve().parent.parent / "benchmarks" / "repro.py")
    repro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repro)
    # lean's workers all in one state, 1.5 core cycles a call over the others' typical one
    results = [_result("lean/emulated/vp_info", 2000, (1.5,) * 4, 160.0)] + _run()[1:]
    driver.fit_baseline(results)
    info = {"cpu_model_name": "x", "platform": "Linux", "machine": "m", "commit": "c", "dirty": False,
            "tsc_hz": 2.6e9}
    benches = [driver.annotate(r, driver.to_measurement(r, catalog), info) for r in results]
    path = tmp_path / "run.json"
    pyperf.BenchmarkSuite(benches).dump(str(path))
    own = repro.own_loop_medians(path)
    # each worker's own loop takes its process's state off: lean 1.5 low; the run's loop does not
    assert own["lean/emulated/vp_info"] == pytest.approx(160.0 - 1.5, abs=0.02)
    stored = pyperf.BenchmarkSuite.load(str(path)).get_benchmark("lean/emulated/vp_info").median()
    fitted = driver.fit_baseline(results)["emulated"].per_call(2000)
    assert stored == pytest.approx(160.0 - fitted + CALL + BATCH / 2000, abs=0.01)
    assert own["xsave/emulated/migration"] == pytest.approx(1080.0 - 0.375, abs=0.05)


def test_each_backend_has_its_own_loop(catalog):
    """A process that traps to the host leaves its empty batch on other levels than one beside the
    emulated stub: a trap backend's workers move neither the emulated fit nor its figures."""
    trapping = _result("seamcall/cpuid/vp_info", 28, (-3.0, -3.2, -2.8), 13_000.0)
    plain = driver.fit_baseline(_run())["emulated"]
    fits = driver.fit_baseline(_run() + [trapping])
    assert set(fits) == {"emulated", "cpuid"} and fits["emulated"] == plain
    assert trapping.baseline is fits["cpuid"] and fits["cpuid"].workers == 3
    assert fits["cpuid"].per_call(28) == pytest.approx(CALL - 3.0 + BATCH / 28, abs=0.05)
