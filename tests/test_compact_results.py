"""Results in their stored form: gzipped pyperf JSON, values to their resolution; old .json beside.

The size bounds are of deterministic content (seeded values, gzip without a time stamp), not
timings."""
import gzip
import hashlib
import json
import subprocess

import numpy as np
import pyperf
import pytest

from bench import cli
from bench.report import compare, dashboard
from bench.results import layout as rd, noise, store

MACHINE = "intel-test-2cpu"
SHA_A, SHA_B = "a" * 40, "b" * 40
QUICK = [("tdcall", "vp_info", 129), ("tdcall_ret", "vp_info", 140), ("tdcall_saved_ret", "hypercall", 148),
         ("seamcall", "vp_info", 160), ("seamcall_ret", "vp_info", 155), ("seamcall_saved_ret", "hypercall", 147),
         ("full_pushpop", "vp_info", 180), ("full_pushpop", "hypercall", 175), ("lean", "vp_info", 148),
         ("lean", "sys_rd", 148), ("lean", "hypercall", 168), ("xsave", "migration", 1507),
         ("xsaveopt", "migration", 779), ("xsavec", "migration", 834), ("xinuse", "migration", 873)]
# The default suite's backends here: TSC ticks per call of the crossing itself (about)
BACKENDS = {"emulated": 0, "emulated_pipelined": 0, "vmcall": 1200, "cpuid": 4200, "syscall": 250}


SYSTEM = {"aslr": "Full randomization", "boot_time": "2026-12-01 20:42:03", "cpu_affinity": "1", "cpu_count": 2,
          "cpu_config": "idle:none", "cpu_freq": "1=2100 MHz", "cpu_model_name": "Intel(R) Xeon(R) Processor",
          "hostname": "vm", "perf_version": "2.11.0", "platform": "Linux-6.18.44-x86_64-with-glibc2.36",
          "python_cflags": "-Wsign-compare -DNDEBUG -g -fwrapv -O3 -Wall", "python_compiler": "GCC 12.2.0",
          "python_executable": "<env>/bin/python", "python_implementation": "cpython",
          "python_version": "3.11.7 (64-bit)", "seambench_cpu": "GenuineIntel family 6 model 207 stepping 2",
          "seambench_kernel": "6.18.44", "seambench_microcode": "0x1", "seambench_serialize": "serialize",
          "timer": "clock_gettime(CLOCK_MONOTONIC), resolution: 1.00 ns"}


def _hash(*parts):
    """What a code or declaration hash looks like to gzip: 16 hex digits, no pattern."""
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:16]


def shaped_suite(backends=("emulated",), runs=3, values=40, seed=1, commit=SHA_A, code="c0de", scale=1.0):
    """A suite shaped as bench run writes it (driver.annotate, store.run_metadata, stamp), with
    values as noisy as this machine's: a few % within a worker, a tail of slow samples."""
    rng = np.random.default_rng(seed)
    benches = []
    for backend in backends:
        for conv, leaf, cost in QUICK:
            core = (cost + BACKENDS[backend] / 0.75) * scale
            loops = max(4, int(210_000 / (core * 0.75 + 4)) // 4 * 4)  # a 100 us batch at 2.1 GHz
            bench_runs = []
            for w in range(runs):
                ratio = 0.75 * (1 + rng.normal(0, 0.03))
                v = core * (1 + rng.normal(0, 0.02)) * (1 + rng.normal(0, 0.05, values))
                v *= 1 + (rng.random(values) < 0.1) * rng.exponential(0.2, values)
                md = {"name": f"{conv}/{backend}/{leaf}", "loops": loops, "unit": "integer",
                      "seambench_unit": "core_cycles", "seambench_machine": MACHINE, "seambench_commit": commit,
                      "seambench_dirty": 0, "seambench_tsc_hz": 2100003045.0124497,
                      "seambench_tsc_per_core_cycle": 0.8184, "seambench_convention": conv,
                      "seambench_backend": backend, "seambench_leaf": leaf, "seambench_conv_hash": _hash(conv),
                      "seambench_code_hash": _hash(code, conv, backend, leaf), "seambench_safe": 1,
                      "seambench_suite": "quick", "seambench_selection": '{"backends":[]}',
                      "seambench_settings": '{"runs":3}', "seambench_conv_files": "[]", "seambench_kind": "history",
                      "date": f"2026-12-01 22:33:{w:02d}.517101", "duration": 0.24067815800026438 + w / 7,
                      "mem_max_rss": 52715520 + 4096 * w, "runnable_threads": 2, "uptime": 6698.521379232407 + w,
                      "seambench_worker": f"{16592 + w}-{rng.integers(1 << 62)}",
                      "seambench_run_excluded": int(rng.integers(0, 40)),
                      "seambench_run_tsc_cycles": float(np.median(v)) * ratio,
                      "seambench_run_tsc_per_core": ratio, **SYSTEM}
                bench_runs.append(pyperf.Run([float(x) for x in v], warmups=[(loops, float(v[0]) * 1.1)],
                                             metadata=md, collect_metadata=False))
            benches.append(pyperf.Benchmark(bench_runs))
    return pyperf.BenchmarkSuite(benches)


def stored_bytes(suite, name="x.json.gz"):
    return store.encode(store.compact(json.loads(store.suite_text(suite))), name)


# -- size --------------------------------------------------------------------------------------

def test_a_quick_suite_and_a_default_suite_fit_their_budget():
    """bench run --suite configs/quick.yaml (15 benchmarks x 3 workers x 200 values) and the default
    suite on this machine's five backends (75 x 4 x 40): at most 60 KB per commit and machine."""
    quick = stored_bytes(shaped_suite(values=200))
    default = stored_bytes(shaped_suite(tuple(BACKENDS), runs=4))
    old_quick = store.scrub_paths(_indented(shaped_suite())).encode()
    assert len(old_quick) > 100_000  # what main wrote for 40 values: indented JSON, every digit
    assert len(quick) <= 40_000, len(quick)
    assert len(default) <= 60_000, len(default)
    assert stored_bytes(shaped_suite(values=200)) == quick  # deterministic: no time stamp in the gzip header


def _indented(suite):
    import io
    buf = io.StringIO()
    suite.dump(buf, compact=False)
    return buf.getvalue()


def test_rounding_stays_within_a_tick_per_batch_and_is_idempotent():
    suite = shaped_suite(("emulated", "cpuid"), runs=2)
    doc = json.loads(store.suite_text(suite))
    once = store.compact(json.loads(json.dumps(doc)))
    twice = store.compact(json.loads(json.dumps(once)))
    assert once == twice
    for b0, b1 in zip(doc["benchmarks"], once["benchmarks"]):
        for r0, r1 in zip(b0["runs"], b1["runs"]):
            md = {**doc.get("metadata", {}), **b0.get("metadata", {}), **r0["metadata"]}
            tick = 1 / (md["loops"] * md["seambench_run_tsc_per_core"])  # one TSC tick over the batch
            assert max(abs(a - b) for a, b in zip(r0["values"], r1["values"])) <= tick * (1 + 1e-9)
            assert all(v > 0 for v in r1["values"])
            assert "seambench_worker" not in r1["metadata"] and "uptime" not in r1["metadata"]
            assert r1["metadata"]["date"] == r0["metadata"]["date"][:19]


def test_values_that_would_round_to_zero_stay_positive():
    doc = {"metadata": {"seambench_unit": "core_cycles", "loops": 4, "seambench_tsc_per_core_cycle": 0.1},
           "benchmarks": [{"metadata": {"name": "x"}, "runs": [{"values": [store.MIN_VALUE, 2.4, 7.6]}]}]}
    values = store.compact(doc)["benchmarks"][0]["runs"][0]["values"]
    assert values == [store.MIN_VALUE, 2.4, 10.0]  # steps of 5 core cycles; none rounded to 0


# -- every reader, both forms ------------------------------------------------------------------

@pytest.fixture
def results(tmp_path):
    """A: an old plain .json session and a new .json.gz one of the same code; B: a new one."""
    root = tmp_path / "results"
    folder = root / MACHINE
    folder.mkdir(parents=True)
    old = folder / f"{SHA_A}.json"
    old.write_text(_indented(shaped_suite(seed=1)))  # as main wrote it
    a2 = store.write_suite(shaped_suite(seed=2), store.candidates({"commit": SHA_A, "dirty": False}, MACHINE, root))
    b = store.write_suite(shaped_suite(seed=3, commit=SHA_B, scale=1.05, code="beef"),
                          store.candidates({"commit": SHA_B, "dirty": False}, MACHINE, root))
    return root, old, a2, b


def test_the_new_names_and_the_old_one_sit_beside_each_other(results):
    root, old, a2, b = results
    assert a2.name == f"{SHA_A}.2.json.gz" and b.name == f"{SHA_B}.json.gz"  # <sha>.json was taken
    assert gzip.decompress(a2.read_bytes()).startswith(b'{"benchmarks":')
    files = sorted(rd.group_by_commit(root, MACHINE)[SHA_A], key=rd.session_order)
    assert files == [old, a2]
    assert rd.classify(a2) == (SHA_A, False) and rd.classify(folder_file(root, f"{SHA_A}-dirty-3.json.gz")) == (SHA_A, True)


def folder_file(root, name):
    return root / MACHINE / name


def test_both_forms_read_alike(results):
    root, old, a2, _ = results
    plain = rd.read_result_file(old)
    assert plain.benchmarks["tdcall/emulated/vp_info"].values == list(shaped_suite(seed=1).get_benchmark(
        "tdcall/emulated/vp_info").get_values())  # an old file: every value as it was written
    new = rd.read_result_file(a2)
    want = shaped_suite(seed=2)
    for name, br in new.benchmarks.items():
        assert len(br.runs) == 3 and len(br.values) == 120
        assert np.max(np.abs(np.array(br.values) - want.get_benchmark(name).get_values())) < 0.01
        assert br.metadata["seambench_code_hash"] == want.get_benchmark(name).get_metadata()["seambench_code_hash"]
    pooled = rd.read_commit(root, MACHINE, SHA_A)
    assert len(pooled["lean/emulated/sys_rd"].runs) == 6
    for path in (old, a2):  # pyperf itself
        assert len(store.load_suite(path).get_benchmarks()) == len(QUICK)
        assert len(pyperf.BenchmarkSuite.load(str(path)).get_benchmarks()) == len(QUICK)


def test_noise_reads_replicates_across_the_forms(results):
    root, old, a2, _ = results
    groups = noise.sessions_by_code(rd.result_paths(root, MACHINE), MACHINE)
    key = f"code:{_hash('c0de', 'tdcall', 'emulated', 'vp_info')}:{_hash('tdcall')}"
    assert len(groups[("tdcall/emulated/vp_info", key)]) == 2
    per, pool = noise.store_noise(root, MACHINE)
    assert "tdcall/emulated/vp_info" in per and per["tdcall/emulated/vp_info"].source == "replicates"
    record = noise.update_record(noise.record_path(root, MACHINE), a2)
    assert noise.read_record(record)


def test_compare_files_of_either_form_and_commits(results, tmp_path, monkeypatch, capsys):
    root, old, a2, b = results
    assert cli.main(["compare", str(old), str(b), "--json"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["benchmarks"]) == len(QUICK)
    assert cli.main(["compare", str(a2), str(b), "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["benchmarks"][0]["name"] == "tdcall/emulated/vp_info"
    # bench compare HEAD~1 HEAD: commits resolved to every stored session of each
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True)
    git("init", "-q")
    for msg in ("one", "two"):
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", msg)
    shas = git("rev-list", "--reverse", "HEAD").stdout.split()
    folder = root / MACHINE
    for f in (old, a2):  # A's two sessions, under the first commit's name
        (folder / f.name.replace(SHA_A, shas[0])).write_bytes(f.read_bytes())
    (folder / b.name.replace(SHA_B, shas[1])).write_bytes(b.read_bytes())
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(root))
    monkeypatch.setenv("SEAMBENCH_MACHINE", MACHINE)
    side = compare.resolve("HEAD~1", MACHINE, root)
    assert [f.name for f in side.files] == [f"{shas[0]}.json", f"{shas[0]}.2.json.gz"]
    assert cli.main(["compare", "HEAD~1", "HEAD", "--json"]) in (0, 1)
    rows = json.loads(capsys.readouterr().out)["benchmarks"]
    assert len(rows) == len(QUICK) and all(r["verdict"] for r in rows)


def test_dashboard_reads_both_forms_and_caches_them(results, tmp_path):
    root, old, a2, b = results
    cache = tmp_path / "cache.json"
    hist = dashboard.load_history(root, cache=cache, warn=lambda m: None)
    summ = hist["summaries"][(MACHINE, SHA_A)][0]
    assert summ["tdcall/emulated/vp_info"][3] == 240  # both sessions pooled
    again = dashboard.load_history(root, cache=cache, warn=lambda m: None)
    assert again["summaries"] == {k: ({n: tuple(v) for n, v in s.items()}, w, d)
                                  for k, (s, w, d) in hist["summaries"].items()}
    sig = json.loads(cache.read_text())["entries"][f"{MACHINE}/{SHA_A}"]["sig"]
    assert [s[0] for s in sig] == sorted([old.name, a2.name])
    model = dashboard.build_model(hist, jobs=1, warn=lambda m: None)
    assert {b["name"] for b in model["benchmarks"]} == {f"{c}/emulated/{lf}" for c, lf, _ in QUICK}


# -- names: one number, one file, whichever form --------------------------------------------

def test_a_number_is_free_only_if_neither_form_exists(tmp_path):
    folder = tmp_path / MACHINE
    folder.mkdir()
    state = {"commit": SHA_A, "dirty": False}
    (folder / f"{SHA_A}.json").write_text("{}")      # an old file: number 1
    (folder / f"{SHA_A}.2.json.gz").write_bytes(b"")  # a new one: number 2
    (folder / f"{SHA_A}.3.json").write_text("{}")    # old again: number 3
    assert store.default_path(state, MACHINE, tmp_path).name == f"{SHA_A}.4.json.gz"
    p = store.write_suite(shaped_suite(runs=1, values=3), store.candidates(state, MACHINE, tmp_path))
    assert p.name == f"{SHA_A}.4.json.gz"
    assert rd.forms(p) == (folder / f"{SHA_A}.4.json", p) and rd.taken(folder / f"{SHA_A}.4.json")


def test_a_plain_twin_appearing_mid_write_moves_the_new_file_on(tmp_path, monkeypatch):
    """Another writer (an older seambench: plain .json) takes number 1 between our check and our
    link: ours must not stay beside it under the same number."""
    import os
    folder = tmp_path / MACHINE
    state = {"commit": SHA_A, "dirty": False}
    real_link = os.link
    seen = []

    def racing_link(src, dst):
        if not seen:
            (folder / f"{SHA_A}.json").write_text("{}")
        seen.append(dst)
        return real_link(src, dst)

    monkeypatch.setattr(store.os, "link", racing_link)
    p = store.write_suite(shaped_suite(runs=1, values=3), store.candidates(state, MACHINE, tmp_path))
    assert p.name == f"{SHA_A}.2.json.gz"
    assert sorted(f.name for f in folder.iterdir() if not f.name.startswith(".")) == \
        [f"{SHA_A}.2.json.gz", f"{SHA_A}.json"]


def test_an_explicit_plain_name_is_written_plain(tmp_path):
    p = store.write_suite(shaped_suite(runs=1, values=3), tmp_path / "r.json")
    assert p.read_bytes().startswith(b'{"benchmarks":') and rd.read_result_file(p, any_name=True).benchmarks


# -- hostile gzip ---------------------------------------------------------------------------------

def test_bad_gzip_is_named_not_inflated(tmp_path):
    bomb = tmp_path / f"{SHA_A}.json.gz"
    bomb.write_bytes(gzip.compress(b" " * 200_000))
    with pytest.raises(rd.ResultsFileError, match="more than 1,000 bytes when decompressed"):
        rd.gunzip_bounded(bomb.read_bytes(), bomb, limit=1000)
    bomb.write_bytes(gzip.compress(b'{"benchmarks": []}')[:-9])
    with pytest.raises(rd.ResultsFileError, match=f"{bomb}: gzip data cut short"):
        rd.read_result_file(bomb)
    bomb.write_bytes(b'{"benchmarks": []}')
    with pytest.raises(rd.ResultsFileError, match=f"{bomb}: not gzip data"):
        rd.read_result_file(bomb)
