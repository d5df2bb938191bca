"""What this machine is, read off CPUID, XGETBV, /proc and /sys.

Everything here is probed, nothing assumed: the same code must be right on a
TDX host, an AMD or Intel guest, and bare metal.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import re
import statistics
from pathlib import Path

from bench import config
from bench.native import _core
from bench.native.errors import NativeError

AVX_STATE_BITS = config.AVX_STATE_BITS  # the components a leaf may reset, as machine reports them
XCR0_NAMES = {0: "x87", 1: "SSE", 2: "AVX", 3: "MPX_BNDREGS", 4: "MPX_BNDCSR", 5: "opmask",
              6: "ZMM_Hi256", 7: "Hi16_ZMM", 9: "PKRU", 17: "AMX_TILECFG", 18: "AMX_TILEDATA"}


def _read(path, default=None):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _regs_to_str(*regs):
    return b"".join(r.to_bytes(4, "little") for r in regs).decode("ascii", "replace").rstrip("\0")


@functools.lru_cache(maxsize=None)
def cpu() -> dict:
    max_leaf, b, c, d = _core.cpuid(0)
    vendor = _regs_to_str(b, d, c)
    eax, ebx, ecx, edx = _core.cpuid(1)
    family = (eax >> 8) & 0xF
    model = (eax >> 4) & 0xF
    if family in (6, 15):
        model |= ((eax >> 16) & 0xF) << 4
    if family == 15:
        family += (eax >> 20) & 0xFF
    ext_max = _core.cpuid(0x80000000)[0]
    brand = ""
    if ext_max >= 0x80000004:
        brand = " ".join(_regs_to_str(*_core.cpuid(leaf)) for leaf in (0x80000002, 0x80000003, 0x80000004))
        brand = " ".join(brand.split())
    leaf7 = _core.cpuid(7, 0) if max_leaf >= 7 else (0, 0, 0, 0)
    hypervisor = None
    if ecx & (1 << 31):
        _, hb, hc, hd = _core.cpuid(0x40000000)
        hypervisor = _regs_to_str(hb, hc, hd) or "unknown"
    invariant_tsc = ext_max >= 0x80000007 and bool(_core.cpuid(0x80000007)[3] & (1 << 8))
    microcode = None
    for line in (_read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("microcode"):
            microcode = line.split(":", 1)[1].strip()
            break
    return {
        "vendor": vendor,
        "model_name": brand,
        "family": family,
        "model": model,
        "stepping": eax & 0xF,
        "microcode": microcode,
        "hypervisor": hypervisor,
        "invariant_tsc": invariant_tsc,
        "osxsave": bool(ecx & (1 << 27)),
        "avx": bool(ecx & (1 << 28)),
        "avx512f": bool(leaf7[1] & (1 << 16)),
        "serialize": bool(leaf7[3] & (1 << 14)),
        "rdtscp": ext_max >= 0x80000001 and bool(_core.cpuid(0x80000001)[3] & (1 << 27)),
        "logical_cpus": os.cpu_count(),
    }


@functools.lru_cache(maxsize=None)
def xsave() -> dict:
    """XCR0 and the XSAVE area sizes (CPUID leaf 0xD)."""
    c = cpu()
    if not c["osxsave"]:
        return {"enabled": False, "xcr0": 0, "components": [], "xinuse": None,
                "size_xcr0": 0, "size_max": 0, "size_compacted": 0, "features": {}}
    xcr0 = _core.xgetbv(0)
    _, size_xcr0, size_max, _ = _core.cpuid(0xD, 0)
    eax1, size_compacted, _, _ = _core.cpuid(0xD, 1)
    features = {"xsaveopt": bool(eax1 & 1), "xsavec": bool(eax1 & 2), "xgetbv1": bool(eax1 & 4),
                "xsaves": bool(eax1 & 8)}
    return {
        "enabled": True,
        "xcr0": xcr0,
        "components": [XCR0_NAMES.get(i, f"bit{i}") for i in range(64) if xcr0 >> i & 1],
        "xinuse": _core.xgetbv(1) if features["xgetbv1"] else None,
        "size_xcr0": size_xcr0,
        "size_max": size_max,
        "size_compacted": size_compacted,
        "features": features,
    }


def fpu_support(policy: str):
    """None if this CPU can run the FPU policy in user space, else why not."""
    x = xsave()
    if policy == "none":
        return None
    if policy == "kernel_fpu":
        return "kernel_fpu_begin/end exist only in the kernel module"
    if not x["enabled"]:
        return "XSAVE is not enabled by the OS (CPUID.1:ECX.OSXSAVE = 0)"
    need = {"xsaveopt": "xsaveopt", "xsavec": "xsavec", "xinuse": "xgetbv1"}.get(policy)
    if need and not x["features"][need]:
        return f"CPU lacks {need.upper()} (CPUID.(EAX=0DH,ECX=1))"
    if policy == "xinuse" and not x["features"]["xsavec"]:
        return "CPU lacks XSAVEC (CPUID.(EAX=0DH,ECX=1))"
    return None


@functools.lru_cache(maxsize=None)
def clocks() -> dict:
    """TSC frequency (against CLOCK_MONOTONIC_RAW) and an estimate of TSC ticks per core cycle.

    The estimate only sizes reference chains and is shown as the clock's state at start-up:
    the host moves the core clock, so every figure is converted by the reference chain timed
    in its own sample (bench.measure.sampler), never by this number.  Short chains, median:
    a chain the host preempts comes out long, and one of several does not move a median."""
    hz = statistics.median(_core.tsc_hz(0.02) for _ in range(3))
    _core.chain_ticks(2000)  # let the core reach its working clock
    per_add = statistics.median(_core.chain_ticks(200) / 20000 for _ in range(15))
    floor, source = probe_floor()
    return {"tsc_hz": hz, "tsc_per_core_cycle": per_add, "core_hz_estimate": hz / per_add,
            "probe_floor": floor, "probe_floor_source": source}


PROBE_SAMPLES = 2000
PROBE_CHUNK = 100
# The floor's reference chain: ~30,000 TSC ticks, whose pieces dwarf a TSC that counts in steps
# of 26 (Zen); a 2,000-ADD chain made each sample's ratio 2% coarse and the 10th percentile low.
PROBE_REF_HUNDREDS = 500
PROBE_VERSION = 3  # 2: the slowest of the probes timed after each batch of a sample; 3: a median
# (a low percentile cut into the quiet samples, and kept those whose chain ran slow: low figures)
PROBE_FLOOR_FILE = "probe-floor.json"
PROBE_GATE = 256            # probes a floor sample waits at most for a quiet core (~0.5-1.5 ms)
PROBE_GATE_TOLERANCE = 0.02  # policy.CONTENTION_TOLERANCE (bench.native does not import bench.measure)
# A kept floor is this CPU's (the key says which model, stepping and microcode), and a sibling can
# slow the probe by 50% and more (seen here: a run that started so, with 0.8 here, measured every
# figure 10-13% high, its shared samples all under the floor it took); only one under half of what
# this process sees is not believed.
PROBE_FLOOR_TRUST = 0.5
# The floor is a level several measurements reach, never the single lowest: the host now and then
# passes through a state, for a few milliseconds, in which every sample's conversion comes out
# 5-10% low, the probe's included (Zen 4 guest, 2026-12-07: 0.3% of a worker's samples read the
# probe 2-10% under its floor, and their seamcall_ret figures 1-9% low; one start-up's quietest
# chunk read 9,899 where every other chunk of that hour read 10,915-10,942).  Kept as the lowest
# ever, that one reading made every later sample on the machine "contention".  So a start-up's
# floor is its FLOOR_CONFIRM-th quietest chunk, and the kept floor the FLOOR_CONFIRM-th lowest of
# the last PROBE_FLOOR_HISTORY start-ups' (the lowest while there are few): a passing state is
# outvoted, and a floor kept from it is forgotten after a few start-ups.
FLOOR_CONFIRM = 3
PROBE_FLOOR_HISTORY = 16


def probe_floor() -> tuple:
    """(core cycles, source) of the load/store probe on an uncontended core (policy:
    contention): a low median of chunks of PROBE_SAMPLES samples here, or the lower floor kept
    from earlier runs on this CPU (a cache, beside the build cache) when this process started
    while a sibling hyperthread was busy.  The host's contention comes and goes for seconds at
    a time, so one start-up alone would often take a contended floor."""
    # Shaped like a worker's sample of one benchmark (three slots, so the slowest of three probes);
    # in chunks of ~5 ms, the quietest chunk's median: a sibling busy for part of the ~0.1 s
    # leaves the others.  After the first chunk, each sample waits (the gate, at most
    # PROBE_GATE probes) for a core as quiet as the quietest twentieth of the probes yet: a
    # sibling busy all but a few hundred microseconds at a time leaves no chunk quiet otherwise
    # (seen on a Zen 3 guest: 15,500-15,900 ungated or gated at the quietest chunk's median,
    # 10,940-14,100 gated so; the floor kept across runs is the lowest).
    args = _core.Args(64)
    medians, probes, gate = [], [], 0
    for _ in range(PROBE_SAMPLES // PROBE_CHUNK):
        ticks, _, _, probe, _ = _core.measure_set([_core.EMPTY_FN] * 2, [0, 0], [args, args], 4, PROBE_CHUNK,
                                                  ref_hundreds=PROBE_REF_HUNDREDS, gate_ticks=gate,
                                                  gate_max=PROBE_GATE if gate else 0)
        chains = [r for r in ticks[2::3] if r > 0]
        seen = [p * PROBE_REF_HUNDREDS * 100 / r for p, r in zip(probe, ticks[2::3]) if r > 0]
        if seen:
            medians.append(statistics.median(seen))
            probes = sorted(probes + seen)
            ratio = statistics.median(chains) / (PROBE_REF_HUNDREDS * 100)
            gate = int(probes[len(probes) // 20] * ratio * (1 + PROBE_GATE_TOLERANCE))
    own = sorted(medians)[min(FLOOR_CONFIRM, len(medians)) - 1]
    # what the probe is, in the key: a floor is the core cycles of that many operations, timed so
    key = f"{cpu_key()} probe {_core.PROBE_OPS} v{PROBE_VERSION}"
    doc = cache_read(PROBE_FLOOR_FILE)
    history = _floats(doc.get(key))[-(PROBE_FLOOR_HISTORY - 1):] + [own]
    cache_write(PROBE_FLOOR_FILE, {**doc, key: history})
    kept = kept_floor(history)
    if PROBE_FLOOR_TRUST * own <= kept < own:
        return kept, "kept from earlier, quieter runs on this CPU"
    return own, "measured at start-up"


def kept_floor(history: list) -> float:
    """The floor a list of start-ups' floors (oldest first) stands for: its lowest while it has
    fewer than four, then the second lowest, and from seven on the FLOOR_CONFIRM-th lowest."""
    return sorted(history)[min(FLOOR_CONFIRM, (len(history) + 2) // 3) - 1]


def _floats(kept) -> list:
    """A cache entry as a list of floors: a list, or one number (as files before the history
    kept); anything else, none."""
    items = kept if isinstance(kept, list) else [kept]
    out = []
    for x in items:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            return []
    return [x for x in out if math.isfinite(x) and x > 0]


def cpu_key() -> str:
    """This CPU, as the per-machine caches key what they keep (model, stepping, microcode)."""
    c = cpu()
    return f"{c['vendor']} {c['family']}/{c['model']}/{c['stepping']} {c['model_name']} ucode {c['microcode']}"


def cache_read(name: str) -> dict:
    """The document of per-machine cache file `name` (beside the build cache); {} if none."""
    import json
    try:
        doc = json.loads((config.cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def cache_write(name: str, doc: dict) -> None:
    """Replace cache file `name` atomically; a failure is ignored: only a cache, the next run
    measures its own."""
    import json
    path = config.cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        pass


def perf_counters() -> dict:
    fd, slots, errnos = _core.perf_open()
    if fd >= 0:
        os.close(fd)  # only a probe; measurements open their own group
    paranoid = _read("/proc/sys/kernel/perf_event_paranoid")
    return {
        "hardware": slots["cycles"] is not None and slots["instructions"] is not None,
        "events": {name: ("available" if slots[name] is not None else os.strerror(errnos[name]))
                   for name in slots},
        "perf_event_paranoid": int(paranoid) if paranoid and paranoid.lstrip("-").isdigit() else None,
    }


def tuning_hints() -> dict:
    cpus = "/sys/devices/system/cpu"
    governor = _read(f"{cpus}/cpu0/cpufreq/scaling_governor")
    no_turbo = _read(f"{cpus}/intel_pstate/no_turbo")
    boost = _read(f"{cpus}/cpufreq/boost")
    turbo = None
    if no_turbo is not None:
        turbo = "off" if no_turbo == "1" else "on"
    elif boost is not None:
        turbo = "on" if boost == "1" else "off"
    cmdline = _read("/proc/cmdline", "") or ""
    nohz = re.search(r"\bnohz_full=(\S+)", cmdline)
    return {
        "governor": governor or "not exposed (no cpufreq; typical in a VM)",
        "turbo": turbo or "not exposed",
        "isolated_cpus": _read(f"{cpus}/isolated") or "none",
        "nohz_full": nohz.group(1) if nohz else "none",
        "smt": _read(f"{cpus}/smt/active"),
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def kernel() -> dict:
    return {"release": platform.release(), "version": platform.version(), "python": platform.python_version()}


def machine_id() -> str:
    """Names the results folder: the same kind of machine gets the same id."""
    env = os.environ.get("SEAMBENCH_MACHINE")
    if env:
        return env
    c = cpu()
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}.get(c["vendor"], "x86")
    model = re.sub(r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@.*$", "", c["model_name"].lower())
    model = re.sub(r"[^a-z0-9]+", "-", model).strip("-") or f"f{c['family']}m{c['model']}"
    # A guest's brand string is often the bare brand ("AMD EPYC", "Intel Xeon Processor"): one id
    # would then name a Zen 3 and a Zen 5 (seen here a day apart), whose figures differ by 10% and
    # more, and their results would be pooled as replicates of one machine.
    if not re.search(r"\d", model):
        model = f"{model}-f{c['family']}m{c['model']}"
    if not model.startswith(vendor):
        model = f"{vendor}-{model}"
    guest = f"-{hypervisor_name(c['hypervisor'])}" if c["hypervisor"] else ""
    return f"{model}-{c['logical_cpus']}cpu{guest}"


_HYPERVISORS = {"KVMKVMKVM": "kvm", "Microsoft Hv": "hyperv", "VMwareVMware": "vmware", "XenVMMXenVMM": "xen",
                "TCGTCGTCGTCG": "tcg", "ACRNACRNACRN": "acrn", " lrpepyh  vr": "parallels", "bhyve bhyve ": "bhyve",
                "QNXQVMBSQG": "qnx"}


def hypervisor_name(signature) -> str:
    if not signature:
        return "none"
    return _HYPERVISORS.get(signature, re.sub(r"[^a-z0-9]+", "", signature.lower())[:12] or "unknown")


def pin(cpu_index=None) -> int:
    """Pin this process to one CPU (the last allowed one unless told) and return it."""
    allowed = sorted(os.sched_getaffinity(0))
    target = allowed[-1] if cpu_index is None else cpu_index
    if target not in allowed:
        raise NativeError(f"CPU {target} is not in this process's affinity set {allowed}")
    os.sched_setaffinity(0, {target})
    return target


ADDR_NO_RANDOMIZE = 0x0040000  # personality(2) flag, as `setarch -R` sets it


def child_setup(cpu=None, layout="fixed"):
    """A subprocess preexec_fn: the child dies when this thread does (PR_SET_PDEATHSIG, SIGKILL),
    so a `bench run` killed with -9 leaves no manager measuring on, and is pinned to `cpu` if
    given.  `layout` "fixed" runs it without address-space randomization (ADDR_NO_RANDOMIZE,
    inherited by its own children), "randomized" with it: where code and data land moves
    branch-predictor and cache aliasing, and with it a process's figures.  `bench run` keeps one
    layout, so that run after run measures the same; `bench ab` draws one per process, so that
    no layout favours one side in all of them (benchmarks/layout.py).  Where the kernel
    refuses, the child runs as it is; address_layout() says which.  libc is looked up here, in
    the parent: the function runs between fork and exec, where dlopen may deadlock.
    (PDEATHSIG is not inherited by the child's own children: pyperf's workers end when they
    next report to their dead manager.)"""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    prctl, personality = libc.prctl, libc.personality
    parent = os.getpid()
    # `layout`: "fixed" or "randomized"; SEAMBENCH_LAYOUT overrides it (benchmarks/layout.py)
    fixed = os.environ.get("SEAMBENCH_LAYOUT", layout) != "randomized"

    def setup():
        prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the flag was set
            os._exit(1)
        current = personality(0xFFFFFFFF)  # query
        if current != -1:
            personality(current | ADDR_NO_RANDOMIZE if fixed else current & ~ADDR_NO_RANDOMIZE)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return setup


def child_layout() -> str:
    """address_layout() of a child started as measuring processes are (child_setup)."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "from bench.native import machine; print(machine.address_layout())"],
                          capture_output=True, text=True, preexec_fn=child_setup())
    return proc.stdout.strip() or "unknown"


def address_layout() -> str:
    """"fixed" where this process runs without address-space randomization, else "randomized"."""
    try:
        flags = int(Path("/proc/self/personality").read_text(), 16)
    except (OSError, ValueError):
        return "unknown"
    return "fixed" if flags & ADDR_NO_RANDOMIZE else "randomized"


def mappings():
    """This process's mappings, from /proc/self/maps: (lo, hi, permissions, path or "")."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            lo, hi = (int(v, 16) for v in fields[0].split("-"))
            yield lo, hi, fields[1], fields[5].strip() if len(fields) > 5 else ""


def fresh_code_pages(addresses) -> str:
    """Move the executable pages that hold `addresses` (the measured wrappers and stubs, the
    timed loop) onto physical pages newly allocated, at the same virtual addresses: "fresh" if
    done, else why not.

    Which physical page code sits on can cost: on this project's KVM hosts, where a busy
    sibling hyperthread keeps evicting the measured code from the core's caches, two identical
    conventions came out 0.4-0.7% apart (the CI's host: 0.6-1.4%), the same way in every process
    of a run and the other way in a later run, whichever was loaded first.  A shared object's
    code comes from the page cache, so every process runs the same pages; what moved between
    runs was, presumably, the host's placement of this guest's CPU relative to them.  Each
    call here copies each page to a page of its own (mmap, copy, mremap over the original),
    so a caller that calls it between stretches of samples averages over placements instead
    of keeping one for its whole life.  Call it with no other thread running: the
    pages are replaced while this thread runs no code on them (it runs ctypes and libc).  Only
    in a process that can afford to die: should mremap fail after the kernel unmapped the
    target (ENOMEM), the code is gone and its next call faults (bench ab's parent then reports
    the worker's signal)."""
    import ctypes

    wanted = [int(a) for a in addresses]
    try:
        spans = [(lo, hi) for lo, hi, perms, _ in mappings()
                 if "x" in perms and any(lo <= a < hi for a in wanted)]
    except (OSError, IndexError, ValueError) as exc:
        return f"shared (/proc/self/maps unreadable: {exc})"
    if not spans:
        return "shared (no code mapped at those addresses)"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = libc.mremap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    prot_rw, prot_rx = 0x3, 0x5
    map_private_anonymous, mremap_maymove_fixed = 0x22, 0x3
    for k, (lo, hi) in enumerate(spans):
        size = hi - lo
        new = libc.mmap(None, size, prot_rw, map_private_anonymous, -1, 0)
        mapped = new not in (None, ctypes.c_void_p(-1).value)
        if mapped:
            ctypes.memmove(new, lo, size)
        if not mapped or libc.mprotect(new, size, prot_rx) != 0 or \
                libc.mremap(new, size, size, mremap_maymove_fixed, lo) != lo:
            why = os.strerror(ctypes.get_errno())
            if mapped:
                libc.munmap(new, size)
            return f"partly fresh ({k} of {len(spans)} mappings; then {why})" if k else f"shared ({why})"
    return "fresh"
