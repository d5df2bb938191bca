"""Hardware counters, where the kernel offers them, travel from the worker's samples into the
measurement and the stored metadata (this machine has none, so the samples are synthetic)."""
import pyperf

from bench.measure import driver
from bench.results import store
from bench.measure.model import Spec


def test_hw_counters_reach_measurement_and_metadata(catalog):
    spec = Spec("seamcall_ret", "emulated", "vp_info")
    tsc = 2.6e9
    samples = [{"i": i, "t": i, "a": 400_000, "b": 10_000, "n": 4096, "ev": {"context_switches": 0},
                "disturbed": False, "kept": True, "hw": {"cycles": 130.0 + i % 3, "instructions": 61.0}}
               for i in range(5)]
    run = pyperf.Run([95.0 / tsc] * 5, metadata={"name": spec.name, "loops": 4096, "unit": "second",
                                                 "seambench_worker": "w1"}, collect_metadata=False)
    res = driver.Result(spec, pyperf.Benchmark([run]), {"w1": samples})
    m = driver.to_measurement(res, catalog, tsc)
    assert m.hw_counters == {"cycles": 131.0, "instructions": 61.0}
    md = store.run_metadata(m, {"cpu_model_name": "x", "platform": "Linux", "tsc_hz": tsc})
    assert md["seambench_hw_counters"] == 1
    assert md["seambench_hw_cycles_per_call"] == 131.0 and md["seambench_hw_instructions_per_call"] == 61.0


def test_no_hw_counters_is_said(catalog):
    spec = Spec("seamcall_ret", "emulated", "vp_info")
    samples = [{"i": 0, "t": 0, "a": 2, "b": 1, "n": 4, "ev": {}, "disturbed": False, "kept": True}]
    run = pyperf.Run([1e-8], metadata={"name": spec.name, "loops": 4, "unit": "second",
                                       "seambench_worker": "w"}, collect_metadata=False)
    m = driver.to_measurement(driver.Result(spec, pyperf.Benchmark([run]), {"w": samples}), catalog, 2.6e9)
    assert m.hw_counters is None
