"""Drive a suite through pyperf: start `python -m bench.measure.worker` as pyperf's manager,
follow its progress, then judge the workers it produced.

Disturbance is handled at two levels:
- a sample during which the kernel reports a context switch, migration or page
  fault is re-measured inside the worker (bench/measure/worker.py) and counted;
- a worker process whose spread (MAD/median of its values) is far above its
  peers' was disturbed in a way the guest kernel cannot see (the host took the
  vCPU away).  Its run is dropped from the benchmark, counted, and replaced by a
  fresh worker with the same loops and warm-ups;
- so is a worker whose figure stands on samples kept on a shared core (its wait for a
  quiet one ran out; bench.measure.sampler): its figure would carry the sibling's load.
"""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyperf

from bench.measure.model import DriverError, LoopBaseline, Measurement, Sample, SampleBlock, Spec
from bench.measure.prepare import serialize_name
from bench.measure.worker import SIDE_PREFIX
from bench.native import machine
from bench.native.machine import child_setup
from bench.results.store import META, run_metadata, store_run
from bench.safety import static_verdict

SPREAD_FACTOR = 5.0    # a worker this many times noisier than the median of its peers ...
SPREAD_FLOOR = 1e-3    # ... and noisier than 0.1% MAD/median (quiet workers here: 0.001-0.01%)
REMEASURE_ROUNDS = 2


@dataclass
class Result:
    """One benchmark as pyperf recorded it, plus what the side files say about it."""
    spec: Spec
    bench: pyperf.Benchmark            # value runs kept, calibration runs included
    calls: dict = field(default_factory=dict)     # worker token -> [Sample] per pyperf call
    excluded: dict = field(default_factory=dict)  # worker token -> [Sample] excluded and measured again
    forced: int = 0                    # calls whose every attempt was excluded (the last one stands)
    excluded_runs: list = field(default_factory=list)  # (token, spread) of dropped workers (noisy or contended)
    serialize_mode: int = 0
    code_hash: str | None = None
    n_calls: int = 0                   # calls per batch of its workers (their side files)
    layouts: dict = field(default_factory=dict)   # worker token -> machine.address_layout() there
    baseline: LoopBaseline | None = None          # the run's empty loop (loop_baseline), once fitted

    @property
    def samples(self) -> list:
        """Every sample of every worker, in time order (for --trace)."""
        return sorted((x for d in (self.calls, self.excluded) for ss in d.values() for x in ss), key=lambda x: x.t)


def pyperf_options(args) -> list:
    """pyperf's own options, as given to `bench run` / `bench ab`."""
    out = []
    if getattr(args, "rigorous", False):
        out.append("--rigorous")
    if getattr(args, "fast", False):
        out.append("--fast")
    if getattr(args, "affinity", None):
        out.append(f"--affinity={args.affinity}")
    if getattr(args, "processes", None):
        out += ["--processes", str(args.processes)]
    if getattr(args, "values", None):
        out += ["--values", str(args.values)]
    if getattr(args, "warmups", None) is not None:
        out += ["--warmups", str(args.warmups)]
    return out


def worker_command(suite_path, conv_files, specs, clocks, serialize, side, pyperf_args, output, calls=None):
    cmd = [sys.executable, "-m", "bench.measure.worker", "--sb-suite", str(suite_path)]
    for f in conv_files:
        cmd += ["--sb-conv-file", str(Path(f).resolve())]
    cmd += ["--sb-specs", ",".join(s.name for s in specs), "--sb-tsc-hz", repr(clocks["tsc_hz"]),
            "--sb-tsc-per-core", repr(clocks["tsc_per_core_cycle"]),
            "--sb-probe-floor", repr(clocks.get("probe_floor") or 0.0), "--sb-serialize", serialize,
            "--sb-side", str(side)]
    given = {sp.name: (calls or {})[sp.name] for sp in specs if sp.name in (calls or {})}
    if given:
        cmd += ["--sb-calls", ",".join(f"{name}={n}" for name, n in given.items())]
    # Workers get a filtered environment from pyperf: pass on what changes our behaviour.
    cmd += [*pyperf_args, "--quiet", "--inherit-environ",
            "SEAMBENCH_CACHE,SEAMBENCH_SERIALIZE,SEAMBENCH_MACHINE,SEAMBENCH_CONTENTION_WAIT_S,XDG_CACHE_HOME,CC",
            "-o", str(output)]
    return cmd


def _run_manager(cmd, side, on_done=None, cpu=None):
    progress = Path(side) / "progress"
    seen = 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=child_setup(cpu))  # dies with us; pinned
    err_chunks = []
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.2)
                err_chunks.append(err or "")
                break
            except subprocess.TimeoutExpired:
                pass
            finally:
                seen = _progress(progress, seen, on_done)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _progress(progress, seen, on_done)
    if proc.returncode != 0:
        text = "".join(err_chunks).strip()
        killed = re.search(r"failed with exit code -(\d+)", text)
        if killed:  # pyperf's manager reports a worker killed by a signal as exit code -N
            raise DriverError(f"a worker process was killed by {signal.Signals(int(killed.group(1))).name}")
        tail = text.splitlines()[-15:]
        raise DriverError("pyperf worker failed (exit %d):\n%s" % (proc.returncode, "\n".join(tail)))


def _progress(path, seen, on_done):
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return seen
    if on_done:
        for name in lines[seen:]:
            on_done(name)
    return len(lines)


def load_side(side) -> dict:
    """token -> side-file document."""
    out = {}
    for path in glob.glob(os.path.join(side, SIDE_PREFIX + "*.json")):
        with open(path) as f:
            doc = json.load(f)
        out[doc["token"]] = doc
    return out


def spread(values) -> float:
    x = np.asarray(values, dtype=float)
    med = float(np.median(x))
    return float(np.median(np.abs(x - med))) / med if med > 0 else float("inf")


def noisy_runs(runs) -> list:
    """Indexes of value runs far noisier than their peers."""
    spreads = [spread(r.values) for r in runs]
    out = []
    if len(runs) < 3:
        return out
    for i, s in enumerate(spreads):
        peers = spreads[:i] + spreads[i + 1:]
        if s > SPREAD_FLOOR and s > SPREAD_FACTOR * float(np.median(peers)):
            out.append(i)
    return out


def value_runs(bench):
    return [r for r in bench.get_runs() if r.values]


CALLS_FILE = "calls-per-batch.json"  # per machine: calls per batch each benchmark was sized to


@dataclass(frozen=True)
class Rounds:
    """How pyperf runs a suite here: `rounds` rounds of one worker per benchmark, each with
    `values` values after `warmups` warm-ups.  Rounds, not pyperf's processes back to back:
    a state of the host that lasts seconds then meets one worker of several benchmarks, not
    every worker of one (seen here: one benchmark +9% in one run, its neighbours unmoved)."""
    rounds: int
    values: int
    warmups: int

    @classmethod
    def of(cls, settings, pyperf_args=()) -> "Rounds":
        """The suite's settings with `bench run`'s pyperf options applied as pyperf applies them
        (pyperf's Runner.parse_args: --rigorous doubles the processes, --fast halves them, to
        no fewer than 3, and takes two thirds of the values)."""
        args = list(pyperf_args)

        def given(option):
            return int(args[args.index(option) + 1]) if option in args else None
        rounds, values = given("--processes") or settings.runs, given("--values") or settings.values
        warmups = given("--warmups")
        if "--rigorous" in args:
            rounds = settings.runs * 2
        elif "--fast" in args:
            rounds, values = max(settings.runs // 2, 3), max(settings.values * 2 // 3, 2)
        return cls(rounds, values, settings.warmups if warmups is None else warmups)

    def args(self, pyperf_args, processes=1) -> list:
        """pyperf's options for one round (or a re-measurement of `processes` workers): the
        counts explicit, --loops given so that pyperf never runs a calibration worker."""
        rest = [a for a in _strip(list(pyperf_args), ("--processes", "--warmups", "--values"))
                if a not in ("--rigorous", "--fast")]
        return rest + ["--processes", str(processes), "--values", str(self.values),
                       "--warmups", str(self.warmups), "--loops", "1"]


def kept_calls(specs, batch_us) -> dict:
    """name -> calls per batch this machine sized the benchmark to before (machine.cache_read)."""
    doc = machine.cache_read(CALLS_FILE).get(machine.cpu_key())
    if not isinstance(doc, dict):
        return {}
    out = {}
    for sp in specs:
        n = doc.get(f"{sp.name} {batch_us:g}us")
        if isinstance(n, int) and n > 0 and n % 4 == 0:
            out[sp.name] = n
    return out


def keep_calls(calls: dict, batch_us) -> None:
    doc = machine.cache_read(CALLS_FILE)
    mine = doc.get(machine.cpu_key())
    mine = dict(mine) if isinstance(mine, dict) else {}
    mine.update({f"{name} {batch_us:g}us": n for name, n in calls.items()})
    machine.cache_write(CALLS_FILE, {**doc, machine.cpu_key(): mine})


def run_suite(suite_path, conv_files, specs, clocks, serialize, settings, pyperf_args=(),
              on_done=None, cpu=None) -> list:
    """Measure every spec through pyperf; returns [Result] in spec order.  `clocks` and
    `serialize` (the emulated stub's mode name) are the parent's, handed to every worker, and
    so are the calls per batch: kept per machine, so that every run measures the same batch
    (else the first round's workers size it and later rounds take theirs).  on_done(name) is
    called once per benchmark and round (Rounds.of(...).rounds of them)."""
    if not specs:
        return []
    rounds = Rounds.of(settings, pyperf_args)
    calls = kept_calls(specs, settings.batch_us)
    with tempfile.TemporaryDirectory(prefix="seambench-run-") as side:
        results = {}
        for round_no in range(rounds.rounds):
            out = Path(side) / f"round-{round_no}.json"
            _run_manager(worker_command(suite_path, conv_files, specs, clocks, serialize, side,
                                        rounds.args(pyperf_args), out, calls), side, on_done, cpu)
            suite = pyperf.BenchmarkSuite.load(str(out))
            for spec in specs:
                try:
                    bench = suite.get_benchmark(spec.name)
                except KeyError:
                    continue
                if spec.name in results:
                    results[spec.name].bench.add_runs(bench)
                else:
                    results[spec.name] = Result(spec, bench)
            if round_no == 0:
                side_docs = load_side(side)
                for res in results.values():
                    _attach(res, side_docs)
                    if res.n_calls:  # what its worker used: the kept size, or its own if that was far off
                        calls[res.spec.name] = res.n_calls
                keep_calls({n: c for n, c in calls.items() if n in results}, settings.batch_us)
        # Drop and re-measure workers far noisier than their peers, and workers whose figure
        # stands on samples from a shared core (their wait for a quiet one ran out): the
        # re-measurement comes after the whole suite, when the sibling may have gone.
        for round_no in range(REMEASURE_ROUNDS):
            side_docs = load_side(side)
            redo = {}
            for res in results.values():
                _attach(res, side_docs)
                runs = value_runs(res.bench)
                noisy, contended = noisy_runs(runs), contended_runs(res)
                if len(noisy) == len(runs):
                    noisy = []  # noisy is judged against peers: with none quieter, none is
                bad = sorted(set(noisy) | set(contended))
                if not bad:
                    continue
                keep = [r for r in res.bench.get_runs() if not r.values or r not in [runs[i] for i in bad]]
                res.excluded_runs += [(runs[i].get_metadata().get("seambench_worker"), spread(runs[i].values))
                                      for i in bad]
                res.bench = pyperf.Benchmark(keep) if any(r.values for r in keep) else None
                redo[res.spec.name] = (res, len(bad))
            if not redo:
                break
            # one pyperf manager for every benchmark that lost as many workers (its start-up
            # costs about as much as a worker's)
            for count in sorted({c for _, c in redo.values()}):
                group = [res for res, c in redo.values() if c == count]
                again = Path(side) / f"again-{round_no}-{count}.json"
                _run_manager(worker_command(suite_path, conv_files, [r.spec for r in group], clocks, serialize,
                                            side, rounds.args(pyperf_args, count), again, calls), side, cpu=cpu)
                suite = pyperf.BenchmarkSuite.load(str(again))
                for res in group:
                    extra = suite.get_benchmark(res.spec.name)
                    if res.bench is None:
                        res.bench = extra
                    else:
                        res.bench.add_runs(extra)
        side_docs = load_side(side)
    for res in results.values():
        _attach(res, side_docs)
    return [results[s.name] for s in specs if s.name in results]


def _attach(res: Result, side_docs: dict) -> None:
    """The side files' samples of res's workers (calls, excluded ones, forced count, code)."""
    res.calls, res.excluded, res.forced, res.n_calls, res.layouts = {}, {}, 0, 0, {}
    for token, doc in side_docs.items():
        b = doc["benchmarks"].get(res.spec.name)
        if b:
            res.calls[token] = [Sample.from_dict(x) for x in b["calls"]]
            res.excluded[token] = [Sample.from_dict(x) for x in b["excluded"]]
            res.forced += b["forced"]
            res.serialize_mode, res.code_hash = b["serialize_mode"], b["code_hash"]
            res.n_calls = res.n_calls or b["n_calls"]
            res.layouts[token] = doc.get("layout", "unknown")


def contended_runs(res: Result) -> list:
    """Indexes of value runs whose figure includes samples kept on a shared core."""
    return [i for i, (_, block) in enumerate(_blocks(res)) if block.contended]


def _strip(args, options):
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in options:
            skip = True
            continue
        out.append(a)
    return out


def _kept(res: Result):
    """(pyperf value run, kept Samples, warm-up Samples, excluded reasons) per kept worker: the
    samples that stood for the run's values and warm-ups (a worker's last calls)."""
    out = []
    for run in value_runs(res.bench):
        token = run.get_metadata().get("seambench_worker")
        calls = res.calls.get(token, [])
        n_val, n_warm = len(run.values), len(run.warmups)
        if len(calls) < n_val:
            raise DriverError(f"{res.spec.name}: worker {token} left {len(calls)} samples for {n_val} values")
        kept, warm = calls[len(calls) - n_val:], calls[max(0, len(calls) - n_val - n_warm):len(calls) - n_val]
        reasons = {}
        for x in res.excluded.get(token, []):
            reasons[x.excluded] = reasons.get(x.excluded, 0) + 1
        out.append((run, kept, warm, reasons))
    return out


def _blocks(res: Result):
    """(pyperf value run, SampleBlock) per kept worker, net of the run's empty loop once fitted."""
    return [(run, SampleBlock.of(kept, 0, warm, reasons, res.baseline)) for run, kept, warm, reasons in _kept(res)]


# Only workers whose calls per batch differ by this ratio tell a batch's fixed cost from a call's.
BASELINE_SPAN = 1.5


def loop_baseline(results) -> LoopBaseline | None:
    """The empty loop's cost, one for every benchmark of a run, from every kept worker of every
    benchmark: the median core cycles of its empty batches (fit_loop), one typical value over the
    run's workers (see LoopBaseline).  None without a worker."""
    n, e = [], []
    for res in results:
        for _, kept, _, _ in _kept(res):
            batches = [s.empty_core for s in kept if s.ref > 0 and s.empty > 0]
            if batches:
                n.append(kept[0].n_calls)
                e.append(float(np.median(batches)))
    return fit_loop(n, e) if n else None


BASELINE_RESAMPLES = 100   # of the workers, for the fit's covariance (seeded: a run's CI is repeatable)
# Trimmed means, not medians: the workers' empty batches sat on a few discrete levels (before the
# native loop's copies per slot), and a median of those jumps a whole level (most of a core cycle a
# call) when their shares cross one half; a worker that met a busy sibling is such a level too.
TRIM = 0.2


def _trimmed(a) -> float:
    """The mean of `a` less its TRIM lowest and highest shares (scipy.stats.trim_mean's; its
    import costs `bench run` most of a second)."""
    a = np.sort(np.asarray(a, dtype=float))
    k = int(TRIM * len(a))
    return float(a[k:len(a) - k].mean())


def _fit(n, e, span=None) -> tuple | None:
    """(call, batch); None where `span` (the full fit had pairs far apart) and a resample has not."""
    x, y = 1 / n, e / n
    i, j = np.triu_indices(len(n), 1)
    far = np.maximum(n[i], n[j]) >= BASELINE_SPAN * np.minimum(n[i], n[j])
    if span and not far.any():
        return None
    batch = _trimmed((y[i] - y[j])[far] / (x[i] - x[j])[far]) if far.any() else 0.0
    return _trimmed(y - batch * x), batch


def fit_loop(n, e) -> LoopBaseline:
    """An empty batch of n calls costs e core cycles: batch + call * n, per worker.  A process's
    state moves a call's cost, so e / n scatters alike at every n: the batch's fixed cost is the
    typical slope of e / n against 1 / n over pairs of workers whose n differ by BASELINE_SPAN
    (Theil-Sen over those pairs only: between near-equal n a slope is all noise), and a call's
    the typical rest (trimmed means, TRIM).  With no such pair, one figure a call serves the n
    there are.  The covariance of the two comes from refitting resamples of the workers."""
    n, e = np.asarray(n, dtype=float), np.asarray(e, dtype=float)
    call, batch = _fit(n, e)
    span = n.max() >= BASELINE_SPAN * n.min()
    cov = ((0.0, 0.0), (0.0, 0.0))
    rng = np.random.default_rng(0)
    fits = [f for k in rng.integers(0, len(n), (BASELINE_RESAMPLES, len(n))) if (f := _fit(n[k], e[k], span))]
    if len(fits) >= 2:
        c = np.cov(np.array(fits), rowvar=False)
        cov = ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))
    return LoopBaseline(batch, call, len(n), cov)


def fit_baseline(results) -> dict:
    """Fit the run's empty loop (loop_baseline) for each backend and subtract it in the figures of
    that backend's results; returns backend -> LoopBaseline.  Per backend: the empty batch's
    level follows what else the process runs (Zen 4 guest, one `make run`, before the native loop's
    copies per slot: 2.2-4.6 core cycles a call plus ~120 a batch in processes that trap to the
    host, 5.1-5.3 plus ~300 beside the emulated stub)."""
    by_backend: dict = {}
    for res in results:
        by_backend.setdefault(res.spec.backend, []).append(res)
    fits = {backend: loop_baseline(group) for backend, group in by_backend.items()}
    for res in results:
        res.baseline = fits[res.spec.backend]
    return fits


def to_measurement(res: Result, catalog) -> Measurement:
    """The pyperf benchmark as the rest of seambench sees a measurement: core cycles per call,
    converted sample by sample (TSC ticks and ratios kept beside them)."""
    conv = catalog.convention(res.spec.convention)
    verdict = static_verdict(conv.resolve(catalog.leaf(res.spec.leaf)))
    blocks = _blocks(res)
    return Measurement(res.spec, int(res.n_calls), [b for _, b in blocks], serialize_name(res.spec, res.serialize_mode),
                       conv.decl_hash, res.code_hash, verdict.safe, verdict.text,
                       from_workers=True, excluded_workers=len(res.excluded_runs), baseline=res.baseline)


def annotate(res: Result, m: Measurement, info: dict) -> pyperf.Benchmark:
    """The stored benchmark: pyperf's value runs with their values replaced by core cycles per
    call (store.VALUE_UNIT), pyperf's metadata kept and seambench's added.  pyperf's calibration
    runs (warm-ups in seconds, no values) are not stored."""
    common = run_metadata(m, info)
    for k in ("date", "name", "cpu_model_name", "platform"):
        common.pop(k)  # pyperf's own, per run
    # "loops" stays ours: the calls per batch (pyperf was told 1 and never calibrated)
    common[f"{META}excluded_workers"] = m.excluded_workers
    runs = []
    # m.runs: to_measurement's blocks, one per kept worker in _kept's order (not built again)
    for (run, kept, _, _), block in zip(_kept(res), m.runs):
        md = run.get_metadata()
        md.update(common)
        md[f"{META}run_excluded"] = sum(block.excluded.values())
        if kept:  # the worker's own empty loop, core cycles a call (the run's is subtracted)
            md[f"{META}run_empty_core_cycles"] = float(np.median([s.empty_core for s in kept])) / kept[0].n_calls
        md[f"{META}address_layout"] = res.layouts.get(md.get("seambench_worker"), "unknown")
        runs.append(store_run(block, md))
    return pyperf.Benchmark(runs)
