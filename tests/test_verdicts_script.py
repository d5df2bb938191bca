"""benchmarks/verdicts.py keeps what it did not measure: `--only power` replaces the stored power
figures and leaves the machine's stored A/A and bisect standing, each with its own date."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "verdicts.py"


def _script():
    spec = importlib.util.spec_from_file_location("verdicts_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_partial_run_keeps_the_stored_parts_it_did_not_measure():
    v = _script()
    aa = {"runs": 20, "compares": 190, "alarming": 0, "share": 0.0, "sources": ["replicates"],
          "verdicts": {"a/emulated/vp_info": {"unknown": 190}}, "between_sd": {"a/emulated/vp_info": 0.002}}
    old_power = {"latency": 2, "benchmark": "planted/emulated/vp_info", "measured_change": 0.018,
                 "measured_ci95": [0.001, 0.035], "1_run": {"compares": 10, "slower": 0, "share": 0.0,
                                                            "alarms_on_unchanged_rows": 0},
                 "3_run": {"compares": 0}}
    stored = {"date": "2026-12-07 07:16:11", "machine": "box", "aa": aa, "power": old_power, "seconds": 1756}
    new_power = dict(old_power, measured_change=0.0117, measured_ci95=[0.0096, 0.0138])
    doc = {"date": "2026-12-07 12:23:40", "machine": "box", "power": new_power, "seconds": 1265}
    m = v.merged(doc, stored)
    assert m["power"] == new_power and m["aa"] == {"date": "2026-12-07 07:16:11", **aa}
    assert "bisect" not in m
    text = v.markdown(m)
    assert "A/A (measured 2026-12-07 07:16:11): 20 quick-suite runs" in text
    assert "Power: a planted change, emul_latency units, on planted/emulated/vp_info (+2)" in text and "+1.17%" in text
    # merged again later, a part keeps the date it was measured, not the file's
    again = v.merged({"date": "2026-12-08 00:00:00", "machine": "box", "seconds": 1}, m)
    assert again["aa"]["date"] == "2026-12-07 07:16:11" and again["power"]["date"] == "2026-12-07 12:23:40"
    # another machine's file lends nothing, nor one that is not a verdicts document
    assert v.merged(dict(doc, machine="other"), stored) == dict(doc, machine="other")
    assert v.merged(doc, [stored]) == v.merged(doc, None) == doc


def test_power_shows_every_planted_parent():
    v = _script()
    one = {"benchmark": "planted/emulated/vp_info", "measured_change": 0.0101, "measured_ci95": [0.009, 0.011],
           "1_run": {"compares": 10, "slower": 1, "share": 0.1, "alarms_on_unchanged_rows": 0},
           "3_run": {"compares": 6, "slower": 4, "share": 4 / 6, "alarms_on_unchanged_rows": 0}}
    other = dict(one, benchmark="planted_pushpop/emulated/vp_info", measured_change=0.0093, latency=3,
                 **{"1_run": {"compares": 10, "slower": 9, "share": 0.9, "alarms_on_unchanged_rows": 0}})
    doc = {"date": "2026-12-07 19:00:00", "machine": "box", "seconds": 1,
           "power": {"latency": 2, "base_latency": 20, "threshold": 0.01, **one,
                     "others": {other["benchmark"]: other}}}
    text = v.markdown(doc)
    assert "on planted/emulated/vp_info (+2), planted_pushpop/emulated/vp_info (+3)" in text
    assert "| planted/emulated/vp_info | +1.01% (+0.90% .. +1.10%) | 1 | 10 | 1 | 10% | 0 |" in text
    assert "| planted_pushpop/emulated/vp_info | +0.93% (+0.90% .. +1.10%) | 1 | 10 | 9 | 90% | 0 |" in text


def test_the_half_percent_plant_is_a_part_of_its_own():
    v = _script()
    half = {"latency": 2, "base_latency": v.HALF_BASE_LATENCY, "threshold": 0.005,
            "benchmark": "planted_half/emulated/vp_info", "measured_change": 0.0052, "measured_ci95": [0.005, 0.0054],
            "1_run": {"compares": 10, "slower": 7, "share": 0.7, "alarms_on_unchanged_rows": 0},
            "3_run": {"compares": 6, "slower": 6, "share": 1.0, "alarms_on_unchanged_rows": 0}, "others": {}}
    doc = {"date": "2026-12-07 21:00:00", "machine": "box", "seconds": 1, "half": half}
    text = v.markdown(doc)
    assert (f"Half: a planted half-percent change, emul_latency units over {v.HALF_BASE_LATENCY}, threshold 0.5%, "
            "on planted_half/emulated/vp_info (+2)") in text
    assert "| planted_half/emulated/vp_info |  | 3 | 6 | 6 | 100% | 0 |" in text
    assert "Power" not in text
    # a later partial run keeps it, as every other part
    assert v.merged({"date": "2026-12-08 00:00:00", "machine": "box", "seconds": 1}, doc)["half"]["date"] == doc["date"]
    assert v.planted_names(v.HALF_PARENTS) == ("planted_half/emulated/vp_info",)


def test_keep_refuses_a_folder_that_already_holds_runs(tmp_path, capsys):
    """Runs already in the folder would be lent to this run's compares as replicates."""
    v = _script()
    (tmp_path / "power").mkdir()
    with pytest.raises(SystemExit) as e:
        v.main(["--only", "bisect", "--keep", str(tmp_path), "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and f"--keep {tmp_path}: not a new or empty folder" in capsys.readouterr().err
