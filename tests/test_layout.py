"""The stage layout (ARCHITECTURE.md): imports only downward, no cycles, each stage importable
alone, and the reading commands working where the native extension is not built."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_compare import BASE, NAMES, suite_pair, synthetic_runs, write_suite

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
STAGES = ("stats", "config", "results", "gen", "native", "safety", "measure", "report", "history", "cli")


def _modules(stage):
    """Every module of a stage, dotted (the compiled extension excepted: it is not Python source)."""
    path = BENCH / stage
    if not path.is_dir():
        return [f"bench.{stage}"]
    return sorted(f"bench.{stage}." + p.stem if p.stem != "__init__" else f"bench.{stage}"
                  for p in path.glob("*.py"))


def test_layers_contract():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]'): layers contract not checked")
    p = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp (import-linter's graph) is not installed")
    graph = grimp.build_graph("bench")
    state = {}  # module -> 1 on the stack, 2 done

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in sorted(graph.modules):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_imports_alone(stage):
    """A fresh interpreter imports every module of the stage (nothing needs a higher stage first)."""
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % (_modules(stage),)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


# A meta-path finder that makes the native extension unimportable, as where it was never built.
NO_NATIVE = textwrap.dedent('''
    import sys
    class NoNative:
        def find_spec(self, name, path=None, target=None):
            if name == "bench.native._core":
                raise ImportError("bench.native._core is not built (blocked by the test)")
            return None
    sys.meta_path.insert(0, NoNative())
    from bench.cli import main
    rc = main(sys.argv[1:])
    assert "bench.native._core" not in sys.modules
    sys.exit(rc)
''')


def _bench_without_native(*args, cwd):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "SEAMBENCH_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-c", NO_NATIVE, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_reading_commands_work_without_the_extension(tmp_path):
    # Nothing of bench.native's extension may load: the blocker raises, and the child checks.
    a, b = suite_pair(tmp_path, shift=0.03)  # A run three times: replicates in the store's layout
    p = _bench_without_native("compare", a, b, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert {r["verdict"] for r in doc["benchmarks"]} == {"slower"}

    # A history whose every commit is already measured: bisect only reads, then the dashboard.
    repo, results = tmp_path / "repo", tmp_path / "results"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    name = NAMES[0]
    for i in range(6):
        (repo / "f.txt").write_text(str(i))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"commit {i}")
        sha = _git(repo, "rev-parse", "HEAD").strip()
        cost = BASE[name] * (1.1 if i >= 4 else 1.0)
        (results / "testbox").mkdir(parents=True, exist_ok=True)
        write_suite(results / "testbox" / f"{sha}.json", {name: synthetic_runs(cost, i)}, machine="testbox",
                    extra_md={"seambench_code_hash": "new" if i >= 4 else "old"})  # replicates either side
    p = _bench_without_native("history", "HEAD~5..HEAD", "--bisect", name, "--repo", repo, "--results", results,
                              "--machine", "testbox", "--worktree", tmp_path / "wt", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "first slower commit" in p.stdout and "measuring" not in p.stderr

    p = _bench_without_native("dashboard", "--results", results, "-o", tmp_path / "site", "--repo", repo,
                              "--cache", "none", "-j", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
