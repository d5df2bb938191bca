"""Runs inside the kernel that `make test-kmod` boots under QEMU (TCG), as root.

Loads the module, checks the device, runs the harness itself (bench doctor, bench
run on kmod:emulated for every built-in convention, results read back through
bench.results.store), fires malformed ioctls, checks the kernel log, unloads.  Timings under
TCG mean nothing: nothing here prints or asserts a figure.

    python tests/kmod/guest.py --ko _native/kmod/seambench.ko --out DIR

Writes DIR/guest-summary.json and exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import math
import os
import random
import re
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.native import kmod  # noqa: E402

# What the kernel log must not show once the module is in.
BAD_LOG = re.compile(r"Oops|BUG:|WARNING:|general protection|soft lockup|hard LOCKUP|rcu.*stall|"
                     r"Call Trace|kernel tried to execute|unable to handle|RIP: 0010", re.I)
REAL = ("seamcall", "tdcall", "vmcall", "vmmcall")


class Checks:
    def __init__(self):
        self.results = []
        self.t0 = time.monotonic()

    def check(self, name, ok, detail=""):
        t = time.monotonic() - self.t0
        self.results.append({"check": name, "ok": bool(ok), "detail": detail, "t": round(t, 1)})
        print(f"{'PASS' if ok else 'FAIL'}  [{t:5.1f}s] {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    @property
    def failed(self):
        return [r for r in self.results if not r["ok"]]


def bench(*args, timeout=900):
    cmd = [sys.executable, "-m", "bench", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def dmesg_lines():
    return subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()


def open_as_nobody(path):
    """errno of open(path) by uid 65534 without capabilities (0 if it opened)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.close(os.open(path, os.O_RDWR))
        except OSError as exc:
            code = exc.errno
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status)


# --- malformed ioctls -------------------------------------------------------------

def fuzz(c: Checks, n: int, seed: int):
    rnd = random.Random(seed)
    allowed = {0, errno.EINVAL, errno.EFAULT, errno.E2BIG, errno.ENOTTY, errno.EOPNOTSUPP, errno.ENODEV}
    counts = {}
    bad = []
    kernel_addr = 0xFFFF888000000000
    unmapped = 0x10000  # below mmap_min_addr: never mapped
    with kmod.KmodDevice() as d:
        nent = d.caps()["n_entries"]
        # A real, small output buffer, as long as the largest out_len a nearly valid run may
        # ask for (65 samples): the fuzzer must not have the module write past its own buffer.
        page = ctypes.create_string_buffer(8 * kmod.SLOTS * 65)
        for i in range(n):
            kind = rnd.randrange(7)
            try:
                if kind == 0:  # unknown commands, any argument
                    req = rnd.choice([rnd.getrandbits(32), kmod._iowr(rnd.randrange(4, 256), 8),
                                      kmod.IOC_RUN ^ (1 << rnd.randrange(16, 30))])
                    fcntl_ioctl(d.fd, req, rnd.choice([0, unmapped, kernel_addr, rnd.getrandbits(64)]))
                elif kind == 1:  # struct commands with bad pointers
                    req = rnd.choice([kmod.IOC_CAPS, kmod.IOC_ENTRY, kmod.IOC_RUN, kmod.IOC_CALL])
                    fcntl_ioctl(d.fd, req, rnd.choice([0, 1, unmapped, kernel_addr, (1 << 47) - 8,
                                                       rnd.getrandbits(64)]))
                elif kind == 2:  # CAPS with a wrong size field
                    caps = kmod.Caps(size=rnd.choice([0, 1, ctypes.sizeof(kmod.Caps) + 8, rnd.getrandbits(32)]))
                    d.ioctl(kmod.IOC_CAPS, caps)
                elif kind == 3:  # ENTRY with any index
                    d.ioctl(kmod.IOC_ENTRY, kmod.Entry(index=rnd.choice([nent, nent + 1, 2**32 - 1,
                                                                          rnd.getrandbits(32), rnd.randrange(nent)])))
                elif kind == 6:  # CALL with any entry, size, flags, reserved and register values
                    call = kmod.KCallReq(size=rnd.choice([ctypes.sizeof(kmod.KCallReq)] * 3 + [0, rnd.getrandbits(32)]),
                                         entry=rnd.choice([rnd.randrange(nent), nent, rnd.getrandbits(32)]),
                                         flags=rnd.choice([0, 0, 0, 1, rnd.getrandbits(32)]))
                    for j in range(13):
                        call.regs[j] = rnd.choice([0, kernel_addr, rnd.getrandbits(64)])
                    if rnd.random() < 0.2:
                        call.reserved[rnd.randrange(2)] = rnd.getrandbits(64) | 1
                    d.ioctl(kmod.IOC_CALL, call)
                else:  # RUN with random fields; some nearly valid (small, so they finish fast)
                    r = kmod.KRunReq(size=rnd.choice([ctypes.sizeof(kmod.KRunReq)] * 4 + [0, 8, rnd.getrandbits(32)]))
                    r.entry = rnd.choice([rnd.randrange(nent), nent, 2**32 - 1, rnd.getrandbits(32)])
                    r.calls_per_sample = rnd.choice([0, 1, 2, 8, kmod.MAX_CALLS, kmod.MAX_CALLS + 1, 2**32 - 1])
                    r.samples = rnd.choice([0, 1, 4, 64, 65, kmod.MAX_SAMPLES + 1, 2**32 - 1])
                    r.flags = rnd.choice([0, 0, 0, 1, 2, rnd.getrandbits(32)])
                    r.ref_hundreds = rnd.choice([0, 0, 1, 10, kmod.MAX_REF_HUNDREDS, kmod.MAX_REF_HUNDREDS + 1,
                                                 2**32 - 1, rnd.getrandbits(32)])
                    r.out = rnd.choice([ctypes.addressof(page)] * 3 + [0, unmapped, kernel_addr, rnd.getrandbits(64)])
                    # v1's size (one u64 a sample) and one byte short of three must both be refused
                    need = r.samples * kmod.SLOTS * 8
                    r.out_len = rnd.choice([ctypes.sizeof(page), 0, 7, r.samples * 8, need - 1, need,
                                            rnd.getrandbits(64)])
                    r.emul.serialize_mode = rnd.choice([0, 1, 2, 3, 4, 5, 6, rnd.getrandbits(64)])
                    r.emul.latency_iters = rnd.choice([0, 10, kmod.MAX_LATENCY + 1, rnd.getrandbits(64)])
                    r.emul.avx_reset_mask = rnd.choice([0, 0x4, 0xE4, 0x3, rnd.getrandbits(64)])
                    r.emul.poison = rnd.choice([0, 0, 0, 1, 2])
                    r.emul.poison_area = rnd.choice([0] * 5 + [ctypes.addressof(page), kernel_addr])
                    if rnd.random() < 0.1:
                        r.reserved[rnd.randrange(4)] = rnd.getrandbits(64) | 1
                    if kind == 5 and r.calls_per_sample * r.samples > 4096:
                        r.calls_per_sample, r.samples = 2, 16  # keep valid runs short under TCG
                    if r.out == ctypes.addressof(page) and r.out_len > ctypes.sizeof(page):
                        r.out_len = ctypes.sizeof(page)  # a lie about our own buffer is not the module's bug
                    d.ioctl(kmod.IOC_RUN, r)
                res = 0
            except OSError as exc:
                res = exc.errno
            counts[res] = counts.get(res, 0) + 1
            if res not in allowed:
                bad.append((i, kind, res))
    names = {k: (errno.errorcode.get(k, str(k)) if k else "ok") for k in counts}
    summary = ", ".join(f"{names[k]} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    c.check(f"{n} malformed ioctls answered with 0 or a clean error", not bad,
            summary + (f"; unexpected: {bad[:5]}" if bad else ""))
    return counts


def run_rotation_checks(c: Checks):
    """RUN's one-ioctl rotation: entry, empty and reference per sample, statuses, one CPU,
    and the new fields' refusals.  Sanity only: under TCG no figure means anything."""
    with kmod.KmodDevice() as d:
        e = d.find("lean", "emulated", "sys_rd")
        r = d.run(e, 4, 40, ref_hundreds=20)
        ratios = r.tsc_per_core()
        c.check("RUN: 40 samples of (entry, empty, reference), every slot timed",
                len(r.samples) == 40 and all(len(t) == 3 and min(t) > 0 for t in r.samples),
                f"first {r.samples[0]}")
        c.check("RUN: each sample's TSC ticks per core cycle is positive and finite",
                len(ratios) == 40 and all(x > 0 and math.isfinite(x) for x in ratios),
                f"{min(ratios):.3g}..{max(ratios):.3g} (TCG: meaningless)")
        c.check("RUN on kmod:emulated: every call returned TDX_SUCCESS (bad_status 0)",
                r.bad_status == 0 and r.first_bad_status == 0 and r.status == 0,
                f"bad {r.bad_status}, first {r.first_bad_status:#x}, last {r.status:#x}")
        c.check("RUN stayed on one CPU and reports it", 0 <= r.cpu < (os.cpu_count() or 1) and r.batches >= 1,
                f"cpu {r.cpu}, {r.batches} batch(es)")
        r0 = d.run(e, 4, 9)
        c.check("RUN without a reference: its slot is 0, the other two timed",
                all(t[2] == 0 and t[0] > 0 and t[1] > 0 for t in r0.samples) and r0.tsc_per_core() is None)

        def answer(**fields):
            n = fields.get("samples", 4)
            buf = (ctypes.c_uint64 * (n * kmod.SLOTS))()
            run = kmod.KRunReq(size=ctypes.sizeof(kmod.KRunReq), entry=e.index, calls_per_sample=2, samples=n,
                           out=ctypes.addressof(buf), out_len=ctypes.sizeof(buf))
            for k, v in fields.items():
                setattr(run, k, v)
            try:
                d.ioctl(kmod.IOC_RUN, run)
                return 0
            except OSError as exc:
                return exc.errno
        cases = {"ref_hundreds over the limit": (dict(ref_hundreds=kmod.MAX_REF_HUNDREDS + 1), errno.E2BIG),
                 "ref_hundreds 2^32-1": (dict(ref_hundreds=2**32 - 1), errno.E2BIG),
                 "out_len of one u64 a sample (v1)": (dict(out_len=4 * 8), errno.EINVAL),
                 "out_len one byte short": (dict(out_len=4 * kmod.SLOTS * 8 - 1), errno.EINVAL),
                 "the old BASELINE flag": (dict(flags=1), errno.EINVAL),
                 "a reference too long for a batch": (dict(ref_hundreds=kmod.MAX_REF_HUNDREDS, samples=1),
                                                      errno.E2BIG)}
        for what, (fields, want) in cases.items():
            got = answer(**fields)
            c.check(f"RUN refuses {what} ({errno.errorcode[want]})", got == want, errno.errorcode.get(got, str(got)))


def fcntl_ioctl(fd, req, arg: int):
    """ioctl with a raw integer argument (a pointer the kernel must not trust)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
    if libc.ioctl(fd, req & 0xFFFFFFFF, arg & 0xFFFFFFFFFFFFFFFF) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --- the run ------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ko", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fuzz", type=int, default=3000)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--imported", help="conventions file of an imported kernel tree (bench kernel import)")
    p.add_argument("--imported-ko", help="the module built with one of its functions (bench kmod build -C)")
    p.add_argument("--imported-convention", help="that function's convention")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    c = Checks()
    t0 = time.monotonic()
    log0 = len(dmesg_lines())
    try:
        run_checks(c, a, out)
    except Exception:
        c.check("guest script ran to the end", False, traceback.format_exc()[-1500:])
    finally:
        if kmod.loaded():
            try:
                kmod.unload()
            except kmod.KmodError as exc:
                c.check("module unloads", False, str(exc))
    new_log = dmesg_lines()[log0:]
    bad = [ln for ln in new_log if BAD_LOG.search(ln)]
    c.check("kernel log: no oops, BUG, WARNING, lockup or stall since the module was loaded", not bad,
            "; ".join(bad[:5]) or f"{len(new_log)} new lines")
    (out / "dmesg.txt").write_text("\n".join(new_log) + "\n")
    doc = {"checks": c.results, "failed": len(c.failed), "passed": len(c.results) - len(c.failed),
           "seconds": round(time.monotonic() - t0, 1), "kernel": os.uname().release}
    (out / "guest-summary.json").write_text(json.dumps(doc, indent=2))
    print(f"guest: {doc['passed']} passed, {doc['failed']} failed", flush=True)
    return 1 if c.failed else 0


def run_checks(c: Checks, a, out: Path):
    kmod.load(a.ko)
    c.check("module loads", kmod.loaded())
    st = os.stat(kmod.DEVICE)
    c.check("/dev/seambench is a root-owned character device, mode 0600",
            stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0,
            oct(stat.S_IMODE(st.st_mode)))
    os.chmod(kmod.DEVICE, 0o666)  # let the module's own check answer
    try:
        e = open_as_nobody(kmod.DEVICE)
    finally:
        os.chmod(kmod.DEVICE, 0o600)
    c.check("open without CAP_SYS_ADMIN is refused by the module (EPERM)", e == errno.EPERM,
            errno.errorcode.get(e, str(e)))

    # doctor: the probes ran each real instruction and caught QEMU's #UD
    res = bench("doctor", "--json")
    if not c.check("bench doctor --json succeeds", res.returncode == 0, res.stderr[-800:]):
        return
    probes = json.loads(res.stdout)["backends"]
    c.check("doctor lists kmod:emulated as available", probes.get("kmod:emulated", {}).get("available"),
            probes.get("kmod:emulated", {}).get("reason", "missing"))
    for x in ("seamcall", "tdcall", "vmcall"):
        pr = probes.get(f"kmod:{x}", {})
        c.check(f"doctor: kmod:{x} unavailable because the probe caught #UD",
                pr and not pr["available"] and "#UD" in pr["reason"], pr.get("reason", "missing"))
    with kmod.KmodDevice() as d:
        caps = d.caps()
    for x in REAL:
        cap = caps["crossings"][x]
        c.check(f"CAPS: {x} probed, fault vector 6 (#UD) reported", cap.probed and cap.fault == 6,
                f"state {cap.state}, fault {cap.fault}, status {cap.status:#x}")
    c.check("CAPS reports XCR0 and XSAVE sizes", caps["xcr0"] & 3 == 3 and caps["xsave_size_xcr0"] >= 576,
            f"XCR0 {caps['xcr0']:#x}, {caps['xsave_size_xcr0']} B")

    # a run of every built-in convention on kmod:emulated, read back through bench.results.store
    results = out / "kmod-emulated.json"
    if results.exists():
        results.unlink()
    res = bench("run", "--backends", "kmod:emulated", "--runs", "2", "--values", "5", "-o", str(results),
                "--json")
    if not c.check("bench run --backends kmod:emulated succeeds", res.returncode == 0, res.stderr[-1500:]):
        return
    records = json.loads(res.stdout)
    from bench.config import load_builtin
    from bench.results.store import load_suite
    catalog = load_builtin()
    measured = {r["convention"] for r in records}
    names = set(load_suite(results).get_benchmark_names())
    c.check("results file reads back with one benchmark per record",
            names == {r["name"] for r in records}, f"{len(names)} benchmarks")
    c.check("kernel_fpu (real kernel_fpu_begin/end) was measured in ring 0", "kernel_fpu" in measured)
    # cold: one call per ioctl with the user's registers live (functional here: TCG's times are not the CPU's)
    res = bench("kmod", "fpu-cold", "--pairs", "40", "--json")
    cold = json.loads(res.stdout) if res.returncode == 0 and res.stdout.strip() else {}
    c.check("bench kmod fpu-cold times kernel_fpu cold, one ioctl per call, from user space",
            res.returncode == 0 and cold.get("pairs") == 40 and cold.get("base_ticks", 0) > 0
            and cold.get("kernel_fpu_ticks", 0) > 0, (res.stderr or res.stdout)[-800:])
    missing = sorted(set(catalog.conventions) - measured)
    # TCG's CPU has no XSAVEC: those conventions must be refused cleanly (their fault path), not oops.
    allowed_missing = {n for n, conv in catalog.conventions.items() if conv.fpu in ("xsavec", "xinuse")}
    skips = [ln for ln in res.stderr.splitlines() if "skipped" in ln]
    c.check("every built-in convention measured on kmod:emulated (XSAVEC ones only if the CPU has it)",
            set(missing) <= allowed_missing, f"measured {len(measured)}/{len(catalog.conventions)}; "
            f"not measured: {', '.join(missing) or 'none'}" + (f" ({'; '.join(skips)[:600]})" if skips else ""))
    for n in missing:
        # Ask the module directly: an EOPNOTSUPP from the fault counter, not a crash.
        with kmod.KmodDevice() as d:
            e = next(e for e in d.entries() if e.convention == n and e.crossing == "emulated")
            try:
                d.run(e, 2, 4)
                ok, why = False, "ran, although the convention was not measured"
            except kmod.KmodError as exc:
                ok, why = "Operation not supported" in str(exc), str(exc)
        c.check(f"{n}: the #UD of its XSAVE variant is caught and reported", ok, why)

    # real crossings cannot run here: the run path says so instead of issuing anything
    with kmod.KmodDevice() as d:
        for x in REAL:
            ents = [e for e in d.entries() if e.crossing == x]
            # the leaf the module would issue there, so that availability is what refuses it
            e = next(e for e in ents if e.leaf == kmod.KMOD_LEAF.get(x, e.leaf))
            try:
                d.run(e, 1, 1)
                ok, why = False, "ran"
            except kmod.KmodError as exc:
                ok, why = "No such device" in str(exc), str(exc)
            c.check(f"RUN on {x} refused here ({len(ents)} wrappers, none runnable)",
                    ok and not any(e.runnable for e in ents), why)

    run_rotation_checks(c)
    fuzz(c, a.fuzz, a.seed)

    # still healthy after the fuzzing
    with kmod.KmodDevice() as d:
        e = d.find("lean", "emulated", "sys_rd")
        r = d.run(e, 8, 32, ref_hundreds=10)
        c.check("a valid run after the fuzzing still works", len(r.samples) == 32 and r.status == 0
                and r.bad_status == 0 and all(min(t) > 0 for t in r.samples) and r.batches >= 1,
                f"{r.batches} batch(es)")
    kmod.unload()
    c.check("module unloads, device gone", not kmod.loaded() and not os.path.exists(kmod.DEVICE))
    if a.imported:
        imported_checks(c, a, out)
    else:
        print("SKIP  imported kernel code in ring 0: the host could not build it (see its SKIP line)", flush=True)


def imported_checks(c: Checks, a, out: Path):
    """The kernel's own function (the tree's .S assembled by kbuild with this kernel's headers)
    in ring 0 on the emulated stub: functional only, nothing timed."""
    from bench.config import ARG_REGS
    from bench.gen.codegen import marker
    from bench.safety import input_value
    conv, leaf = a.imported_convention, "vp_info"
    log0 = len(dmesg_lines())
    kmod.load(a.imported_ko)
    if not c.check(f"module with {conv} loads", kmod.loaded()):
        return
    with kmod.KmodDevice() as d:
        ents = [e for e in d.entries() if e.convention == conv]
        c.check(f"{conv} is in the module's table (emulated and the real TDCALL)",
                {("emulated", leaf), ("tdcall", leaf)} <= {(e.crossing, e.leaf) for e in ents},
                ", ".join(f"{e.crossing}/{e.leaf}" for e in ents) or "missing")
        e = d.find(conv, "emulated", leaf)
        regs_in = [input_value(r) for r in ARG_REGS]
        status, regs, cpu = d.call(e, regs_in)
        outputs = set(load_builtin_leaf(leaf).outputs)
        want = [marker(r) if r in outputs else v for r, v in zip(ARG_REGS, regs_in)]
        wrong = [f"{r}={g:#x}" for r, g, w in zip(ARG_REGS, regs, want) if g != w]
        c.check(f"CALL {conv} x emulated x {leaf} in ring 0 returns TDX_SUCCESS", status == 0, f"{status:#x}")
        c.check(f"{conv} wrote the stub's outputs ({', '.join(sorted(outputs))}) into the struct, left the rest",
                not wrong, "; ".join(wrong) or f"cpu {cpu}")
        tdc = d.find(conv, "tdcall", leaf)
        try:
            d.call(tdc, regs_in)
            ok, why = False, "ran"
        except kmod.KmodError as exc:
            ok, why = exc.errno == errno.EOPNOTSUPP, str(exc)
        try:
            d.run(tdc, 1, 1)
            ok, why = False, "RUN ran"
        except kmod.KmodError as exc:
            ok, why = ok and exc.errno == errno.ENODEV, why + "; " + str(exc)
        c.check(f"{conv} x tdcall (the real instruction) is never issued here: CALL and RUN refuse it",
                ok and not tdc.runnable, why)
    results = out / "kmod-imported.json"
    if results.exists():
        results.unlink()
    res = bench("run", "-C", a.imported, "--backends", "kmod:emulated", "--conventions", conv, "--leaves", leaf,
                "--runs", "1", "--values", "5", "-o", str(results), "--json")
    if c.check(f"bench run -C ... --backends kmod:emulated --conventions {conv} succeeds", res.returncode == 0,
               f"exit {res.returncode}: {res.stderr[-1500:]} {res.stdout[-300:]}"):
        recs = json.loads(res.stdout)
        c.check(f"{conv} was run in ring 0 on kmod:emulated (one benchmark, untimed here: TCG)",
                [(r["convention"], r["backend"], r["leaf"]) for r in recs] == [(conv, "kmod:emulated", leaf)],
                str([r["name"] for r in recs]))
    kmod.unload()
    new = dmesg_lines()[log0:]
    bad = [ln for ln in new if BAD_LOG.search(ln)]
    c.check(f"kernel log: no oops or warning while {conv} ran in ring 0; module unloads",
            not bad and not kmod.loaded(), "; ".join(bad[:5]) or f"{len(new)} new lines")


def load_builtin_leaf(name):
    from bench.config import load_builtin
    return load_builtin().leaf(name)


if __name__ == "__main__":
    sys.exit(main())
