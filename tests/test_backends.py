"""Backend probes: run in a child, so a fault is a reason, never a crash of the harness."""
import os
import signal

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
    choice = serialize.choice(registry)
    assert choice["mode"] in backends.FULLY_SERIALIZING
    costs = choice["costs"]
    # Serializing costs more than letting calls overlap (a ratio within one run).
    assert costs[choice["mode"]] > costs["none"]
    if machine.cpu()["serialize"]:
        assert "serialize" in costs
