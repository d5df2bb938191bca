"""The seed thread's garbage-BP hazard, in user space: a periodic signal whose handler walks
the frame-pointer chain of the interrupted context (as perf does from an NMI) while the
emulated VP.ENTER holds a clobbered RBP."""
import textwrap

import pytest

from bench import safety
from bench.config import load_builtin

CATALOG = load_builtin()




def walk(registry, catalog, conv, leaf):
    r = safety.nmi_walk(registry, catalog.conventions[conv], catalog.leaves[leaf], duration_ms=40)
    # the signal must have landed in both windows for the result to mean anything
    assert r["in_call"]["samples"] > 0 and r["after_return"]["samples"] > 0, r
    return r


def test_clobbered_rbp_is_seen_inside_the_call_whatever_the_convention(registry):
    for conv in ("seamcall_saved_ret", "full_pushpop"):
        r = walk(registry, CATALOG, conv, "vp_enter")
        assert r["in_call"]["garbage"] > 0, r
        assert r["in_call"]["bad_rbp"] == safety.marker("rbp")


def test_only_conventions_that_restore_rbp_give_the_caller_a_good_chain_back(registry, tmp_path):
    # seamcall_saved_ret keeps RBP only by not touching it: after VP.ENTER clobbers it, every
    # sample in the caller walks garbage.  full_pushpop pushes and pops RBP: none does.
    r = walk(registry, CATALOG, "seamcall_saved_ret", "vp_enter")
    assert r["rbp_policy"] == "none"
    assert r["after_return"]["garbage"] == r["after_return"]["samples"]
    r = walk(registry, CATALOG, "full_pushpop", "vp_enter")
    assert r["rbp_policy"] == "stack"
    assert r["after_return"]["garbage"] == 0
    # FRAME_BEGIN/FRAME_END (rbp: frame) restores it too
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""
        conventions:
          saved_ret_frame:
            extends: seamcall_saved_ret
            rbp: frame
        """))
    cat = CATALOG.with_user_file(path)
    r = walk(registry, cat, "saved_ret_frame", "vp_enter")
    assert r["in_call"]["garbage"] > 0 and r["after_return"]["garbage"] == 0


def test_a_module_that_keeps_rbp_closes_the_window(registry):
    # hypercall = TDH.VP.ENTER on a NO_RBP_MOD module: every walk succeeds, in the call too
    for conv in ("seamcall_saved_ret", "full_pushpop"):
        r = walk(registry, CATALOG, conv, "hypercall")
        assert r["in_call"]["garbage"] == 0 and r["after_return"]["garbage"] == 0, r


def test_bad_parameters_are_named(registry):
    with pytest.raises(ValueError, match="interval_us"):
        safety.nmi_walk(registry, CATALOG.conventions["lean"], CATALOG.leaves["vp_enter"], interval_us=0)
    with pytest.raises(safety.RuntimeUnavailable, match="kernel module"):
        safety.nmi_walk(registry, CATALOG.conventions["kernel_fpu"], CATALOG.leaves["vp_enter"])


def test_a_pair_that_crashes_its_child_is_a_row_not_a_traceback(catalog, registry):
    from bench.cli.check import nmi_rows
    # seamcall_ret stores through RSI, which vp_enter overwrites: the demo's child dies.
    rows = nmi_rows(catalog, ["seamcall_ret"], ["vp_enter"], registry)
    assert len(rows) == 1 and rows[0]["skipped"].startswith("crashed:")
