"""Run a suite: expand it into benchmarks, skip what cannot run here (saying why),
measure the rest, and turn measurements into records."""
from __future__ import annotations

from dataclasses import dataclass, field

import sys

from bench import safety
from bench.config import Catalog, Suite
from bench.measure.model import Measurement, Spec, UnavailableError, UnsafeError
from bench.measure import sampler
from bench.measure.prepare import Context, measure_one
from bench.native import backends, machine
from bench.native.registry import Registry
from bench.stats import noise
from bench.stats import summary as stats


@dataclass
class Plan:
    specs: list
    skipped: list = field(default_factory=list)  # (what, reason)
    probes: dict = field(default_factory=dict)


def expand(suite: Suite, catalog: Catalog, registry: Registry, conventions=None, backend_names=None,
           leaves=None, allow_unsafe=False) -> Plan:
    conv_names = list(conventions or suite.conventions)
    for name in conv_names:
        catalog.convention(name)  # unknown name: a clear error before anything runs
    back_names = list(backend_names or suite.backends)
    for name in back_names:
        if name not in backends.BACKENDS:
            raise ValueError(f"unknown backend {name!r}; valid: {', '.join(backends.BACKENDS)}")
    plan = Plan([])
    plan.probes = backends.probe_all(registry, back_names)
    for name in back_names:
        if not plan.probes[name].available:
            plan.skipped.append((f"backend {name}", plan.probes[name].reason))
    for cname in conv_names:
        conv = catalog.conventions[cname]
        # The kernel module runs every FPU policy (kernel_fpu too) and checks the CPU itself.
        if conv.kernel_only:
            why = conv.kernel_only_why
        else:
            why = machine.fpu_support(conv.fpu)
        usable = [b for b in back_names if not why or backends.BACKENDS[b].where == "kmod"]
        if why and len(usable) < len(back_names):
            plan.skipped.append((cname, why))
        if not usable:
            continue
        leaf_names = leaves or (conv.meant_for if suite.leaves == "meant_for" else suite.leaves)
        if not leaf_names:
            plan.skipped.append((cname, "declares no meant_for leaf; name leaves with --leaves"))
            continue
        for lname in leaf_names:
            verdict = pair_verdict(registry, conv, catalog.leaf(lname))
            if not verdict.safe and not allow_unsafe:
                plan.skipped.append((f"{cname}/{lname}", verdict.text + " (--allow-unsafe to time it)"))
                continue
            for bname in usable:
                if plan.probes[bname].available:
                    plan.specs.append(Spec(cname, bname, lname))
    return plan


def refusal(registry, conv, leaf, backend, allow_unsafe=False):
    """Why this one benchmark cannot be timed here, as (what, reason) with what "backend",
    "convention" or "pair", or None; the backend is probed first.  The reasons expand() skips
    for, for a caller that times exactly what it is given (`bench ab`) and so refuses instead:
    there, an instruction this CPU lacks kills the timing process."""
    probe = backends.probe(backend, registry)
    if not probe.available:
        return "backend", f"{backend} is not available here: {probe.reason}"
    if backends.BACKENDS[backend].where != "kmod":
        if conv.kernel_only:
            return "convention", f"{conv.name} {conv.kernel_only_why}"
        why = machine.fpu_support(conv.fpu)
        if why:
            return "convention", f"{conv.name} (fpu: {conv.fpu}) cannot run here: {why}"
    verdict = pair_verdict(registry, conv, leaf)
    if not verdict.safe and not allow_unsafe:
        return "pair", f"{conv.name}/{leaf.name} is {verdict.text} (--allow-unsafe to time it)"
    return None


def pair_verdict(registry, conv, leaf) -> "safety.Verdict":
    """The runtime verdict (one untimed poisoned call in a child) where the pair runs here,
    else the static prediction.  Remembered, so record() can report it.  A check that failed
    to run (not: found the pair unsafe) is said on stderr, once per pair."""
    pair = safety.check_pair(registry, conv, leaf)
    if pair["runtime_failed"] and (conv.name, leaf.name) not in _REPORTED:
        _REPORTED.add((conv.name, leaf.name))
        print(f"bench: warning: {conv.name}/{leaf.name}: {pair['runtime_note']}; using the static "
              "prediction", file=sys.stderr)
    return safety.combined(pair)


_REPORTED = set()  # pairs whose failed runtime check was already reported


def run_records(measurements, ctx: Context, reference: dict, between=None) -> list:
    """The --json records of one run.  Where a benchmark was timed by several worker processes,
    its CI counts how far its workers land apart, the spread estimated from its own workers
    shrunk towards the run's other benchmarks (noise.run_intervals): a worker's values are not
    independent; the uncertainty of the run's empty loop, common to all of them; and, where
    `between` (name -> noise.Noise: bench.results.noise.run_noise) knows it, how far other runs
    of the same code on this machine landed apart, which no single run can show."""
    between = between or {}
    by_workers = [m for m in measurements if m.from_workers and len(m.runs) >= 2]
    shared = [m.baseline.per_call_var(m.n_calls) if m.baseline else 0.0 for m in by_workers]
    cis = dict(zip(map(id, by_workers), noise.run_intervals([[r.values for r in m.runs] for m in by_workers],
                                                           shared=shared,
                                                           between=[between.get(m.spec.name) for m in by_workers])))
    return [record(m, ctx, reference, cis.get(id(m)), between.get(m.spec.name) if id(m) in cis else None)
            for m in measurements]


def record(m: Measurement, ctx: Context, reference: dict, ci95=None, between=None) -> dict:
    """The --json record of one benchmark (schema in the README): core cycles per call first,
    each sample converted by its own reference chain; TSC ticks and ns beside them.  `ci95`:
    the run's interval from run_records(), which counted `between` (a noise.Noise, or None);
    else the order-statistic CI of the values."""
    s = stats.Summary.of(m.values)
    tsc = stats.Summary.of(m.tsc_values)
    ratio = stats.Summary.of(m.ratios)
    base = stats.Summary.of(m.baseline_values)
    ref = reference.get(m.spec.backend)
    ci95 = list(ci95 or s.ci95)
    agree = [a for a in (sampler.agreement(r) for r in m.runs) if a is not None]
    return {
        "name": m.spec.name,
        "convention": m.spec.convention,
        "backend": m.spec.backend,
        "leaf": m.spec.leaf,
        "cycles": s.median,
        "cycles_unit": "core",
        "ci95": ci95,
        "between_run_sd": between.sd if between is not None else None,
        "between_run": between.describe() if between is not None else None,
        "cycles_source": CYCLES_SOURCE,
        "tsc_cycles": tsc.median,
        "ns": tsc.median / ctx.clocks["tsc_hz"] * 1e9,
        "tsc_per_core_cycle": ratio.median,
        "tsc_per_core_range": [min(m.ratios), max(m.ratios)] if m.ratios else None,
        "mad": s.mad,
        "n_values": s.n,
        "excluded": m.excluded,
        "excluded_by_reason": m.excluded_by_reason,
        "contended": m.contended,
        "baseline_tsc_cycles": base.median,
        "baseline_core_cycles": m.baseline.per_call(m.n_calls) if m.baseline else None,
        "baseline": m.baseline.describe() if m.baseline else "each sample's own empty batch",
        "n_calls": m.n_calls,
        "relative": (s.median / ref) if ref else None,
        **_safety_fields(m, ctx),
        "serialize": m.serialize,
        "hw_counters": m.hw_counters,
        "counter_agreement": float(sorted(agree)[len(agree) // 2]) if agree else None,
        "workers": len(m.runs) if m.from_workers else 1,
        "excluded_workers": m.excluded_workers,
        "conv_hash": m.conv_hash,
        "code_hash": m.code_hash,
    }


def _safety_fields(m: Measurement, ctx: Context) -> dict:
    """safe/safety: the runtime verdict when this process checked the pair, else the static one
    the measurement carries; both kept apart too."""
    conv, leaf = ctx.catalog.conventions.get(m.spec.convention), ctx.catalog.leaves.get(m.spec.leaf)
    rt = safety.known_runtime(conv, leaf) if conv is not None and leaf is not None else None
    return {
        "safe": rt.safe if rt is not None else m.safe,
        "safety": rt.text if rt is not None else m.safety,
        "safety_static": m.safety,
        "safety_runtime": rt.text if rt is not None else None,
    }


def run_plan(plan: Plan, ctx: Context, allow_unsafe=False, progress=None) -> list:
    out = []
    for spec in plan.specs:
        try:
            m = measure_one(spec, ctx, allow_unsafe=allow_unsafe)
        except (UnsafeError, UnavailableError) as exc:
            plan.skipped.append((spec.name, str(exc)))
        else:
            if m.values:
                out.append(m)
            else:  # nothing to report: say why rather than store an empty benchmark
                why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in m.excluded_by_reason.items())
                plan.skipped.append((spec.name, f"every sample was excluded ({why or 'none kept'})"))
        if progress:
            progress(spec)
    return out


CYCLES_SOURCE = "reference chain in every sample"


def references(measurements, reference_conv: str) -> dict:
    """Per backend: the reference convention's median (on its first measured leaf)."""
    ref = {}
    for m in measurements:
        if m.spec.convention == reference_conv and m.spec.backend not in ref and m.values:
            ref[m.spec.backend] = stats.Summary.of(m.values).median
    return ref
