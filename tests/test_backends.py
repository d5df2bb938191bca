"""Backend probes: run in a child, so a fault is a reason, never a crash of the harness."""
import os
import signal

import pytest

from bench.native import backends
from bench.native import machine


def test_probe_every_backend_says_available_or_why(registry):
    probes = backends.probe_all(registry)
    assert set(probes) == set(backends.BACKENDS)
    for name, p in probes.items():
        assert p.reason, name
    for always in ("emulated", "emulated_pipelined", "syscall", "cpuid"):
        assert probes[always].available, probes[always].reason


def test_vendor_picks_the_hypercall_instruction(registry):
    probes = backends.probe_all(registry, ["vmcall", "vmmcall"])
    vendor = machine.cpu()["vendor"]
    own, other = ("vmcall", "vmmcall") if vendor == "GenuineIntel" else ("vmmcall", "vmcall")
    assert not probes[other].available
    assert vendor in probes[other].reason
    if machine.cpu()["hypervisor"] == "KVMKVMKVM":
        assert probes[own].available and "-KVM_EPERM" in probes[own].reason
    elif not machine.cpu()["hypervisor"]:
        assert not probes[own].available and "hypervisor" in probes[own].reason


def test_a_faulting_probe_is_reported_not_fatal():
    kind, value = backends.run_in_child(lambda: os.kill(os.getpid(), signal.SIGILL))
    assert (kind, value) == ("signal", signal.SIGILL)
    assert "#UD" in backends._signal_reason("VMMCALL", value)
    assert backends.run_in_child(lambda: 42) == ("ok", 42)
    assert backends.run_in_child(lambda: 1 / 0)[0] == "exit"


def test_emulated_serializes_with_a_fully_serializing_instruction(registry):
    from bench.measure import serialize
    choice = serialize.choice(registry, measure=True)
    assert choice["mode"] in backends.FULLY_SERIALIZING
    costs = choice["costs"]
    # Serializing costs more than letting calls overlap (a ratio within one run).
    assert costs[choice["mode"]] > costs["none"]
    if machine.cpu()["serialize"]:
        assert "serialize" in costs


def test_the_serialization_choice_is_kept_per_cpu(registry, monkeypatch, tmp_path):
    """Measured once on a CPU, then kept: later runs time the same stub without measuring again;
    `bench doctor` (measure=True) measures anew; a kept mode this CPU cannot run is not used."""
    from bench.measure import serialize
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("SEAMBENCH_SERIALIZE", raising=False)
    first = serialize.choice(registry)
    assert first["costs"] is not None and machine.cache_read(serialize.MODE_FILE) == {machine.cpu_key(): first["mode"]}

    def no_measuring(*a, **k):
        raise AssertionError("measured again")
    monkeypatch.setattr(serialize, "costs", no_measuring)
    again = serialize.choice(registry)
    assert again["mode"] == first["mode"] and again["costs"] is None and "kept" in again["why"]
    with pytest.raises(AssertionError):
        serialize.choice(registry, measure=True)
    if not machine.cpu()["serialize"]:
        machine.cache_write(serialize.MODE_FILE, {machine.cpu_key(): "serialize"})
        with pytest.raises(AssertionError):  # not trusted: measured
            serialize.choice(registry)
