"""Bad input, caught before anything is measured: one line naming the option and the reason, exit 2,
no traceback (issue 13).  In-process through bench.cli.main, which returns the exit status."""
import importlib
import inspect
import os
import pkgutil
import signal
import subprocess
import sys

import pytest

import bench
from bench import cli
from bench.cli import listing

QUICK = ["run", "--suite", "configs/quick.yaml", "--no-store"]
NOT_HERE = str(max(os.sched_getaffinity(0)) + 1)  # a CPU this process may not use


def one_line_error(capsys, argv, *expected):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["lean", "lean"], ["Y: lean is X too"]),
    (["lean", "nope"], ["Y: unknown convention 'nope'"]),
    (["nope", "lean"], ["X: unknown convention 'nope'"]),
    (["lean", "seamcall", "--backend", "nope"], ["--backend: unknown backend 'nope'", "emulated"]),
    (["lean", "seamcall", "--backend", "kmod:emulated"], ["--backend:", "kernel module"]),
    (["lean", "seamcall", "--leaf", "nope"], ["--leaf: unknown leaf profile 'nope'"]),
    (["seamcall_ret", "lean", "--leaf", "hypercall"], ["X: seamcall_ret/hypercall is UNSAFE", "--allow-unsafe"]),
    (["lean", "kernel_fpu"], ["Y: kernel_fpu runs only in the kernel module"]),
    (["lean", "seamcall", "-p", "0"], ["-p/--processes: must be at least 1"]),
    (["lean", "seamcall", "--pairs", "x"], ["--pairs: 'x' is not a whole number"]),
    (["lean", "seamcall", "--threshold", "-1"], ["--threshold: must be a number >= 0"]),
    (["lean", "seamcall", "--cpu", NOT_HERE], [f"--cpu: CPU {NOT_HERE} is not allowed"]),
])
def test_ab_refuses_before_measuring(capsys, argv, expected):
    one_line_error(capsys, ["ab", *argv], *expected)


def test_ab_probes_the_backend_first(capsys, monkeypatch):
    """An instruction this CPU lacks (VMMCALL on Intel) killed every worker with SIGSEGV: the
    probe's reason is said instead, before any worker starts."""
    from bench.native import backends
    monkeypatch.setattr(backends, "probe", lambda name, registry: backends.Probe(name, False, "probed: no"))
    one_line_error(capsys, ["ab", "lean", "seamcall", "--backend", "vmmcall"],
                   "--backend: vmmcall is not available here: probed: no")


def test_ab_refuses_a_backend_this_machine_lacks(capsys, registry):
    from bench.native import backends
    missing = [n for n, p in backends.probe_all(registry).items()
               if not p.available and backends.BACKENDS[n].where != "kmod"]
    if not missing:
        pytest.skip("every user-space backend is available here")
    one_line_error(capsys, ["ab", "lean", "seamcall", "--backend", missing[0]],
                   f"--backend: {missing[0]} is not available here")


def test_ab_worker_killed_by_a_signal_is_named(monkeypatch):
    from bench.measure import ab
    from bench.measure.model import ABError
    killed = subprocess.CompletedProcess([], -signal.SIGSEGV, "", "")  # what a worker's SIGSEGV leaves
    monkeypatch.setattr(ab.subprocess, "run", lambda cmd, **kw: killed)
    with pytest.raises(ABError, match="A/B worker killed by SIGSEGV: nothing on stderr"):
        ab.run_ab_processes("lean", "seamcall", processes=1)


@pytest.mark.parametrize("argv, expected", [
    (["--conventions", "lean,lean"], ["--conventions: lean given twice"]),
    (["--backends", "emulated,emulated"], ["--backends: emulated given twice"]),
    (["--conventions", ""], ["--conventions: '' selects nothing"]),
    (["--leaves", ","], ["--leaves: ',' selects nothing"]),
    (["--conventions", "nope"], ["--conventions: unknown convention 'nope'"]),
    (["--backends", "nope"], ["--backends: unknown backend 'nope'"]),
    (["--leaves", "nope"], ["--leaves: unknown leaf profile 'nope'"]),
    (["-p", "0"], ["-p/--processes/--runs: must be at least 1"]),
    (["-n", "0"], ["-n/--values: must be at least 1"]),
    (["-w", "-1"], ["-w/--warmups: must be at least 0"]),
    (["--affinity", NOT_HERE], [f"--affinity: CPU {NOT_HERE} not allowed"]),
    (["--affinity", "0-x"], ["--affinity: '0-x' is not a CPU list"]),
    (["--fast", "--rigorous"], ["not allowed with"]),
    (["--conventions", "kernel_fpu"], ["nothing to measure here: kernel_fpu: runs only in the kernel module"]),
])
def test_run_refuses_before_measuring(capsys, argv, expected):
    one_line_error(capsys, [*QUICK, *argv], *expected)


def test_run_refuses_a_suite_cpu_it_may_not_use(capsys, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"conventions: [seamcall]\nbackends: [emulated]\nsettings:\n  cpu: {NOT_HERE}\n")
    one_line_error(capsys, ["run", "--suite", str(suite), "--no-store"], f"{suite}: settings.cpu: CPU {NOT_HERE}")


def test_a_duplicate_is_refused_in_a_real_process():
    p = subprocess.run([sys.executable, "-m", "bench", *QUICK, "--conventions", "lean,lean"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr == "bench: error: --conventions: lean given twice\n", p.stderr


def test_suite_name_is_not_markup(capsys, tmp_path):
    """The run header prints the suite's name as it is: without a suite: key, the file's name,
    which (unlike the key) may hold anything, e.g. [x], which rich would take for a style."""
    suite = tmp_path / "odd[x].yaml"
    suite.write_text("conventions: [seamcall]\nbackends: [emulated]\nleaves: [vp_info]\n"
                     "settings:\n  runs: 1\n  values: 3\n  warmups: 0\n")
    assert cli.main(["run", "--suite", str(suite), "--no-store"]) == 0
    assert "suite odd[x] on" in capsys.readouterr().out


def test_debug_shows_the_traceback(capsys):
    from bench.config import ConfigError
    for argv in (["--debug", "ab", "lean", "lean"], ["ab", "lean", "lean", "--debug"]):
        with pytest.raises(ConfigError, match="lean is X too"):
            cli.main(argv)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only the stages' own errors become one line; anything else is a bug and says where it is."""
    def broken(args):
        raise ValueError("a bug, not bad input")
    monkeypatch.setattr(listing, "cmd_list", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["list"])


def test_every_error_class_of_the_stages_is_caught_by_name():
    errors = cli.project_errors()
    found = []
    for mod in pkgutil.walk_packages(bench.__path__, "bench."):
        if mod.name.endswith("__main__"):
            continue
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == module.__name__:
                found.append(cls)
    assert len(found) >= 14
    assert [c.__qualname__ for c in found if not issubclass(c, errors)] == []


def test_kmod_fpu_cold_says_why_in_one_line(tmp_path):
    import os
    if os.path.exists("/dev/seambench"):
        pytest.skip("the module is loaded here")
    for args, code, text in ((["--pairs", "0"], 2, "--pairs must be 1..100000"),
                             ([], 1, "/dev/seambench does not exist")):
        p = subprocess.run([sys.executable, "-m", "bench", "kmod", "fpu-cold", *args], capture_output=True, text=True)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == code and len(lines) == 1 and text in lines[0] and "Traceback" not in p.stderr, p.stderr
