"""The command line: --json is one document on stdout; errors are one clear line."""
import json
import subprocess
import sys


def bench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, **kw)


def test_run_json_schema(tmp_path):
    out = tmp_path / "r.json"
    p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall,lean", "--runs", "2",
              "--values", "10", "--json", "-o", str(out))
    assert p.returncode == 0, p.stderr
    records = json.loads(p.stdout)
    assert [r["name"] for r in records] == ["seamcall/emulated/vp_info", "lean/emulated/vp_info",
                                            "lean/emulated/sys_rd", "lean/emulated/hypercall"]
    for r in records:
        for key in ("convention", "backend", "leaf", "cycles", "cycles_unit", "tsc_cycles", "ns", "ci95",
                    "n_values", "baseline_tsc_cycles", "tsc_per_core_cycle", "safe", "relative", "machine",
                    "commit", "code_hash", "excluded_by_reason"):
            assert key in r, key
        assert r["cycles_unit"] == "core" and r["cycles"] == r["cycles"] and r["tsc_per_core_cycle"] > 0
        lo, hi = r["ci95"]
        assert lo <= r["cycles"] <= hi
        assert r["results_file"] == str(out)
    assert records[0]["relative"] == 1.0
    import pyperf
    suite = pyperf.BenchmarkSuite.load(str(out))
    assert suite.get_benchmark_names() == [r["name"] for r in records]


def test_results_are_never_overwritten(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("precious")
    p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall", "--runs", "1",
              "--values", "5", "-o", str(out))
    assert p.returncode == 2 and "never overwritten" in p.stderr
    assert out.read_text() == "precious"


def test_default_results_path_adds_beside(tmp_path):
    env = {"SEAMBENCH_RESULTS": str(tmp_path), "SEAMBENCH_MACHINE": "testbox", "PATH": "/usr/bin:/bin"}
    import os
    env = {**os.environ, **env}
    for _ in range(2):
        p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall", "--runs", "1",
                  "--values", "5", "--save-as-history", env=env)  # narrowed: else under explore/
        assert p.returncode == 0, p.stderr
    files = sorted(f.name for f in (tmp_path / "testbox").iterdir() if f.name != "noise.record")
    assert len(files) == 2 and all(f.endswith(".json.gz") for f in files)
    assert (tmp_path / "testbox" / "noise.record").exists()  # the machine's noise record, kept by bench run


def test_a_runs_ci_counts_earlier_runs_of_the_same_code(tmp_path):
    """The noise record learns each stored run; from the third run of one build on, a run's CI
    counts how far the earlier ones landed apart (between_run_sd), and the first says it cannot."""
    import os
    env = {**os.environ, "SEAMBENCH_RESULTS": str(tmp_path), "SEAMBENCH_MACHINE": "testbox"}
    got = []
    for _ in range(3):
        p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall", "--runs", "2",
                  "--values", "5", "--save-as-history", "--json", env=env)
        assert p.returncode == 0, p.stderr
        got.append(json.loads(p.stdout)[0])
    assert got[0]["between_run_sd"] is None and got[0]["between_run"] is None
    assert got[2]["between_run_sd"] is not None and "noise record" in got[2]["between_run"]
    p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall", "--runs", "2",
              "--values", "5", "--no-store", env=env)
    assert p.returncode == 0 and "how far earlier runs of the same code landed apart" in p.stdout, p.stderr


def test_doctor_json(tmp_path):
    p = bench("doctor", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert set(doc["backends"]) >= {"emulated", "vmcall", "vmmcall", "cpuid", "syscall"}
    # the start-up estimate only sizes chains; a preempted one may come out far off: no bound
    assert doc["clock"]["tsc_hz"] > 0 and doc["clock"]["tsc_per_core_cycle"] > 0
    assert doc["clock"]["probe_floor"] > 0 and doc["clock"]["probe_floor_source"]
    assert doc["serialize"]["mode"] in ("serialize", "iret", "cpuid")


def test_unknown_convention_is_one_clear_error():
    p = bench("run", "--conventions", "seamcal", "--no-store")
    assert p.returncode == 2
    assert "unknown convention 'seamcal'" in p.stderr and "Traceback" not in p.stderr


def test_broken_user_yaml_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("conventions:\n  x:\n    load: [rsp]\n")
    p = bench("run", "-C", str(bad), "--no-store")
    assert p.returncode == 2 and f"{bad}:3:" in p.stderr and "RSP" in p.stderr


def test_allow_unsafe_times_what_survives_and_reports_a_crash():
    """seamcall_ret under the hypercall leaf leaves RBX, R12-R15 changed: its worker dies.  That
    pair is reported; the rest of the suite is still measured."""
    p = bench("run", "--suite", "configs/quick.yaml", "--conventions", "seamcall_ret,lean", "--leaves",
              "hypercall", "--allow-unsafe", "-p", "2", "-n", "5", "--no-store")
    assert p.returncode == 0, p.stderr
    assert "lean" in p.stdout and "Traceback" not in p.stdout + p.stderr
    assert "skipped seamcall_ret/emulated/hypercall: unsafe, and it crashed while timed: a worker process " \
           "was killed by SIGSEGV" in " ".join(p.stdout.split())
