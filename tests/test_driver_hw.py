"""Hardware counters, where the kernel offers them, travel from the worker's samples into the
measurement and the stored metadata, and must agree with the reference chain (this machine
has none, so the samples are synthetic)."""
import pyperf
import pytest

from bench.measure import driver, sampler
from bench.measure.model import Sample, SampleBlock, Spec
from bench.results import store


def _sample(i, core_hw, ratio=0.7, n=4096):
    # 130 core cycles a call by the reference chain: (ticks - empty) / n / ratio
    net = 130.0 * ratio
    return Sample(t=i, n_calls=n, ticks=(int(10_000 + net * n),), empty=10_000, ref=int(ratio * 700_000),
                  ref_adds=700_000, events={"context_switches": 0},
                  hw={"cycles": (core_hw + i % 3,), "instructions": (61.0,)})


def _result(samples, spec=Spec("seamcall_ret", "emulated", "vp_info")):
    run = pyperf.Run([1e-8] * len(samples), metadata={"name": spec.name, "loops": 4096, "unit": "second",
                                                      "seambench_worker": "w1"}, collect_metadata=False)
    return driver.Result(spec, pyperf.Benchmark([run]), calls={"w1": samples}, excluded={"w1": []})


def test_hw_counters_reach_measurement_and_metadata(catalog):
    m = driver.to_measurement(_result([_sample(i, 130.0) for i in range(5)]), catalog)
    assert m.hw_counters == {"cycles": 131.0, "instructions": 61.0}
    assert m.values == pytest.approx([130.0] * 5, rel=1e-4)
    md = store.run_metadata(m, {"cpu_model_name": "x", "platform": "Linux", "tsc_hz": 2.6e9})
    assert md["seambench_hw_counters"] == 1
    assert md["seambench_hw_cycles_per_call"] == 131.0 and md["seambench_hw_instructions_per_call"] == 61.0


def test_counter_and_reference_chain_must_agree(catalog):
    agree = driver.to_measurement(_result([_sample(i, 130.0) for i in range(9)]), catalog)
    assert sampler.agreement(agree.runs[0]) == pytest.approx(1.0, abs=0.02)
    # a counter 20% above the chain's figure: the two sources disagree, and that is visible
    off = driver.to_measurement(_result([_sample(i, 156.0) for i in range(9)]), catalog)
    a = sampler.agreement(off.runs[0])
    assert a == pytest.approx(1.2, abs=0.02) and abs(a - 1) > sampler.COUNTER_TOLERANCE


def test_no_hw_counters_is_said(catalog):
    s = Sample(t=0, n_calls=4, ticks=(20,), empty=10, ref=70, ref_adds=100)
    m = driver.to_measurement(_result([s]), catalog)
    assert m.hw_counters is None and sampler.agreement(m.runs[0]) is None
    assert SampleBlock.of([s]).core == [pytest.approx(2.5 / 0.7)]
