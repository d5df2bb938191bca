"""`bench kernel history PATH A..B`: a kernel-shaped git history (tests/data/kernel-tree, the tree
test_kernel_import.py imports) whose TDX call code changes commit by commit: a comment (the
preprocessed text moves, the machine code does not), a planted slower __tdcall, a commit whose
import fails, and one that is not TDX code at all.  Timings are asserted only for the planted
step, which is large (a dependent chain of 300 one-cycle ADDs on a ~130-cycle call)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import cli
from bench.results import layout
from test_kernel_import import _copy_tree  # the kernel-shaped tree, copied

TDCALL = "arch/x86/coco/tdx/tdcall.S"
SEAMCALL = "arch/x86/virt/vmx/tdx/seamcall.S"
# ABI kept: R11 is loaded from the struct right after, by CALL_TDX_MODULE.
CHAIN = "\t.rept 300\n\tadd\t%r11, %r11\n\t.endr\n"
FAST = ["--functions", "__tdcall,__seamcall_ret", "--backends", "emulated", "--leaves", "vp_info",
        "-p", "1", "-n", "8", "-w", "0", "--no-progress"]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def synthetic_history(tmp_path) -> tuple:
    """(tree, {label: sha}) of a kernel-shaped history: base, comment, doc (no TDX file), slower,
    broken (the assembler refuses seamcall.S), fixed (seamcall.S as before, plus a comment)."""
    t = _copy_tree(tmp_path)
    git = ["git", "-C", str(t), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    shas = {}

    def commit(label, path, edit):
        f = t / path
        f.write_text(edit(f.read_text()) if f.exists() else edit(""))
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-qm", label], check=True)
        shas[label] = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                                     text=True).stdout.strip()

    commit("base", "README", lambda s: s)
    commit("comment", TDCALL, lambda s: "/* a comment: the lines move, the code does not */\n" + s)
    commit("doc", "README", lambda s: s + "not TDX code\n")
    commit("slower", TDCALL, lambda s: s.replace("SYM_FUNC_START(__tdcall)\n", "SYM_FUNC_START(__tdcall)\n" + CHAIN))
    original = (t / SEAMCALL).read_text()
    commit("broken", SEAMCALL, lambda s: s.replace("CALL_TDX_MODULE host=1 ret=1\n",
                                                   "CALL_TDX_MODULE host=1 ret=1\n\tmovq %rzx, %rax\n", 1))
    commit("fixed", SEAMCALL, lambda s: "/* fixed */\n" + original)
    return t, shas


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("khist")
    tree, shas = synthetic_history(tmp)
    return tree, shas, tmp / "results"


def _run(capsys, *argv):
    code = cli.main(["kernel", "history", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_history_finds_the_planted_step_and_no_step_where_the_code_is_unchanged(history, capsys):
    tree, shas, results = history
    code, out, err = _run(capsys, tree, f"{shas['base']}..HEAD", "--results", results, "--json", *FAST)
    assert code == 0, err
    doc = json.loads(out)
    # git log A..B -- <what the importer reads>: the README commit is not TDX code
    assert [c["commit"] for c in doc["commits"]] == [shas[k] for k in ("base", "comment", "slower", "broken", "fixed")]
    status = {c["commit"]: c for c in doc["commits"]}
    assert status[shas["broken"]]["status"] == "failed"
    assert "the assembler refused" in status[shas["broken"]]["reason"] and "rzx" in status[shas["broken"]]["reason"]
    assert f"{shas['broken'][:10]} failed at import" in err  # said, and the walk went on
    fns = {f["benchmark"]: f for f in doc["functions"]}
    assert set(fns) == {"kernel:__tdcall/emulated/vp_info", "kernel:__seamcall_ret/emulated/vp_info"}
    tdcall = fns["kernel:__tdcall/emulated/vp_info"]
    assert [p["commit"] for p in tdcall["points"]] == [shas[k] for k in ("base", "comment", "slower", "fixed")]
    assert all(p["version"] == "9.99" for p in tdcall["points"])
    steps = {s["to"]: s for s in tdcall["steps"]}
    assert steps[shas["comment"]]["code_changed"] is False and steps[shas["comment"]]["verdict"] is None
    assert steps[shas["fixed"]]["code_changed"] is False and steps[shas["fixed"]]["verdict"] is None
    planted = steps[shas["slower"]]
    assert planted["code_changed"] is True
    assert planted["verdict"] == "slower" and planted["change"] > 0.3, planted
    # __seamcall_ret: its file failed at one commit and changed only in a comment: never a step
    seam = fns["kernel:__seamcall_ret/emulated/vp_info"]
    assert [p["commit"] for p in seam["points"]] == [shas[k] for k in ("base", "comment", "slower", "fixed")]
    assert all(s["code_changed"] is False and s["verdict"] is None for s in seam["steps"])
    # the layout: results/kernel/<tree-id>/<machine>/<sha>.json, and the failure's log beside it
    folder = Path(doc["results"])
    assert folder.parent.parent == results / "kernel"
    assert (folder / f"{shas['slower']}.json.gz").exists()
    log = (folder / f"{shas['broken']}.failed.log").read_text()
    assert "phase: import" in log and "rzx" in log
    rf = layout.read_result_file(folder / f"{shas['slower']}.json.gz")
    md = rf.benchmarks["kernel:__tdcall/emulated/vp_info"].metadata
    assert md["seambench_kernel_commit"] == shas["slower"] and md["seambench_kernel_version"] == "9.99"
    assert md["seambench_commit"] != shas["slower"]  # the seambench build that measured it


def test_a_rerun_reuses_and_bisect_names_the_commit(history, capsys):
    tree, shas, results = history
    before = sorted(p.name for p in results.rglob("*.json*"))
    code, out, err = _run(capsys, tree, f"{shas['base']}..HEAD", "--results", results, "--json", "--bisect", *FAST)
    doc = json.loads(out)
    assert code == 0, err
    by = {b["benchmark"]: b for b in doc["bisect"]}
    assert by["kernel:__tdcall/emulated/vp_info"]["first_slower"] == shas["slower"], by
    assert by["kernel:__seamcall_ret/emulated/vp_info"]["bad"] is None
    assert "identical" in by["kernel:__seamcall_ret/emulated/vp_info"]["message"]
    assert "bench compare" in by["kernel:__tdcall/emulated/vp_info"]["compare"]
    # nothing was measured again, unless the bisect asked for more runs of an undecided pair
    after = sorted(p.name for p in results.rglob("*.json*"))
    assert set(before) <= set(after)
    if "undecided" not in err:
        assert after == before
    # the plain walk again: everything is stored (the failure too: same request, same build)
    code, out, err = _run(capsys, tree, f"{shas['base']}..HEAD", "--results", results, *FAST)
    assert code == 0 and "5 of 5 commits already recorded" in err, err
    assert "slower +" in out and "same code" in out


def test_the_dashboard_reads_a_kernel_folder(history, tmp_path):
    _tree, _shas, results = history
    tree_dirs = list((results / "kernel").iterdir())
    from bench.report import dashboard
    hist = dashboard.load_history(tree_dirs[0], repo=None)
    model = dashboard.build_model(hist)
    assert {b["name"] for b in model["benchmarks"]} == {"kernel:__tdcall/emulated/vp_info",
                                                        "kernel:__seamcall_ret/emulated/vp_info"}
    assert len(model["commits"]) == 5  # four measured and the failed one, in git order
    assert "kernel" not in layout.machines(results)  # never a machine of the project's history


@pytest.mark.parametrize("argv, message", [
    (["{tmp}", "a..b"], "not a git checkout"),
    (["{tree}", "base"], "expected A..B"),
    (["{tree}", "nope..HEAD"], "'nope' is not a commit"),
    (["{tree}", "{fixed}..HEAD"], "no commit in it touches the TDX call code"),
    (["{tree}", "{base}..HEAD", "--backends", "nope"], "unknown backend"),
])
def test_bad_input_is_one_line(history, tmp_path, capsys, argv, message):
    tree, shas, _results = history
    argv = [a.format(tmp=tmp_path, tree=tree, base=shas["base"], fixed=shas["fixed"]) for a in argv]
    code, out, err = _run(capsys, *argv, "--results", tmp_path / "r")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err
