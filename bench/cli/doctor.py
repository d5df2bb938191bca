"""`bench doctor`: what this machine is and which backends work here."""
from __future__ import annotations

from bench.cli import common


def register(sub) -> None:
    d = sub.add_parser("doctor", help="what this machine is and which backends work here")
    common.add_common(d)
    d.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    from bench.measure import policy, serialize
    from bench.measure.runner import CYCLES_SOURCE
    from bench.native import backends, machine
    from bench.native.registry import Registry

    registry = Registry(common.catalog(args))
    clock = machine.clocks()
    choice = serialize.choice(registry, clock["probe_floor"], measure=True)
    probes = backends.probe_all(registry, backends.default_names(), choice)
    doc = {
        "machine": machine.machine_id(),
        "cpu": machine.cpu(),
        "kernel": machine.kernel(),
        "clock": clock,
        "xsave": {**machine.xsave(), "xcr0": hex(machine.xsave()["xcr0"]),
                  "xinuse": None if machine.xsave()["xinuse"] is None else hex(machine.xsave()["xinuse"])},
        "tuning": machine.tuning_hints(),
        "perf": machine.perf_counters(),
        "serialize": choice,
        "cycles_source": CYCLES_SOURCE,
        "address_layout": machine.child_layout(),  # of measuring processes (machine.child_setup)
        "backends": {name: p.as_dict() for name, p in probes.items()},
    }
    if args.json:
        common.emit_json(doc)
        return 0
    from rich.markup import escape
    console = common.console(args)
    c, clk, x, t, perf = doc["cpu"], doc["clock"], doc["xsave"], doc["tuning"], doc["perf"]
    console.print(f"[bold]machine[/]   {escape(doc['machine'])}")  # SEAMBENCH_MACHINE: user text
    console.print(f"cpu       {c['vendor']} {c['model_name']} (family {c['family']} model {c['model']} "
                  f"stepping {c['stepping']}), microcode {c['microcode'] or 'not exposed'}, "
                  f"{c['logical_cpus']} logical CPUs")
    hv = f"{machine.hypervisor_name(c['hypervisor'])} ({c['hypervisor']})" if c["hypervisor"] else "none (bare metal)"
    console.print(f"          hypervisor: {hv}; SERIALIZE "
                  f"{'yes' if c['serialize'] else 'no'}; AVX-512 {'yes' if c['avx512f'] else 'no'}")
    console.print(f"kernel    {doc['kernel']['release']}")
    console.print(f"tsc       {clk['tsc_hz'] / 1e6:,.1f} MHz, invariant: {'yes' if c['invariant_tsc'] else 'NO'}; "
                  f"now 1 core cycle = {clk['tsc_per_core_cycle']:.3f} TSC cycles "
                  f"(core ~{clk['core_hz_estimate'] / 1e9:.2f} GHz; the host moves it)")
    console.print(f"cycles    core cycles per call from the {CYCLES_SOURCE}; hardware counters: "
                  + ("recorded beside it, must agree within 5%" if perf["hardware"] else
                     "not available, so the reference chain is the only source"))
    layout = doc["address_layout"]
    console.print(f"layout    measuring processes run with a {layout} address layout"
                  + (" (ADDR_NO_RANDOMIZE: the same addresses run after run)" if layout == "fixed" else
                     ": the kernel refused ADDR_NO_RANDOMIZE, so where code and data land differs per process"))
    console.print(f"shared    load/store probe floor {clk['probe_floor']:,.0f} core cycles "
                  f"({clk['probe_floor_source']}); samples more than "
                  f"{policy.CONTENTION_TOLERANCE:.1%} above it are excluded as contention (a sibling "
                  "hyperthread sharing the core)")
    console.print(f"xsave     XCR0 {x['xcr0']} ({', '.join(x['components'])}); XINUSE {x['xinuse']}; "
                  f"area {x['size_xcr0']} B standard for XCR0, {x['size_compacted']} B compacted, "
                  f"{x['size_max']} B max; " + ", ".join(k for k, v in x["features"].items() if v))
    console.print(f"tuning    governor: {t['governor']}; turbo: {t['turbo']}; isolated CPUs: "
                  f"{t['isolated_cpus']}; nohz_full: {t['nohz_full']}; affinity {t['affinity']}")
    console.print("perf      hardware counters: " + ("available" if perf["hardware"] else "NOT available")
                  + "; " + ", ".join(f"{k}: {v}" for k, v in perf["events"].items())
                  + f"; perf_event_paranoid={perf['perf_event_paranoid']}")
    console.print("serialize emulated stub uses " + choice["mode"].upper() + "; stub cost per mode (TSC): "
                  + ", ".join(f"{m} {v:.0f}" for m, v in choice["costs"].items()))
    console.print("[bold]backends[/]")
    for name, p in probes.items():
        mark = "[green]available[/]" if p.available else "[red]not available[/]"
        console.print(f"  {name:<20} {mark}: {escape(p.reason)}")
    return 0
