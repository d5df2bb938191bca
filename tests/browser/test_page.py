"""The dashboard in a real headless browser (Debian's chromium).

Checks that the page loads with no console message at all (so no error), that
each plot draws one marker per measured commit and machine, that lazy drawing
keeps the first paint to a few plots, and keeps a screenshot as an artifact
(``$SEAMBENCH_ARTIFACTS`` or ``build/test-artifacts``). Skips with a reason
when no chromium is installed; install it with ``apt-get install -y chromium``.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
from synth_history import make_history  # noqa: E402

from bench.report import dashboard  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_COMMITS, N_BENCH, MACHINES, FAILED = 30, 6, ("box-a", "box-b"), {4, 17}


def find_chromium():
    for name in (os.environ.get("SEAMBENCH_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "chromium-headless-shell"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium found: apt-get install -y chromium (or set SEAMBENCH_CHROMIUM)")


def chromium(tmp_path, url, *args, timeout=90):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
    return p.stdout, console


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    shas = make_history(root / "results", n_commits=N_COMMITS, n_benchmarks=N_BENCH, machines=MACHINES,
                        step_at=20, step_bench="seamcall/emulated/vp_rd", fail_at=FAILED)
    dashboard.build(root / "results", root / "site", repo=None, jobs=1, verbose=False)
    return root, shas


@pytest.fixture(scope="module")
def all_drawn(site, tmp_path_factory):
    """One browser run with every plot drawn and point 3's hover label shown."""
    root, _ = site
    url = (root / "site" / "index.html").as_uri() + "?all=1&hover=3"
    return chromium(tmp_path_factory.mktemp("chrome"), url, "--window-size=1400,1000",
                    "--virtual-time-budget=15000", "--dump-dom")


def test_page_draws_every_point_without_console_errors(site, all_drawn):
    _, shas = site
    dom, console = all_drawn
    assert console == [], "console output:\n" + "\n".join(console)
    status = re.search(r'<div id="sb-status"([^>]*)>', dom).group(1)
    assert 'data-ready="1"' in status
    per_plot = N_COMMITS - len(FAILED)
    assert f'data-rendered="{N_BENCH}"' in status
    # Count the markers plotly actually drew in each plot's SVG.
    cards = dom.split('<div class="card"')[1:]
    assert len(cards) == N_BENCH
    for card in cards:
        assert card.count('class="point"') == per_plot * len(MACHINES), card[:200]
    assert 'id="heatmap" class="plot-heat js-plotly-plot"' in dom
    # The planted step's commit is in the regression table the browser shows.
    assert f'data-suspect="{shas[20]}"' in dom


def test_lazy_drawing_and_screenshot(site, tmp_path):
    root, _ = site
    url = (root / "site" / "index.html").as_uri()
    dom, console = chromium(tmp_path, url, "--window-size=1400,900", "--virtual-time-budget=8000",
                            "--dump-dom")
    assert console == []
    rendered = int(re.search(r'data-rendered="(\d+)"', dom).group(1))
    assert 0 < rendered < N_BENCH  # only plots near the viewport are drawn at first
    art = Path(os.environ.get("SEAMBENCH_ARTIFACTS", ROOT / "build" / "test-artifacts"))
    art.mkdir(parents=True, exist_ok=True)
    shot = art / "dashboard.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, url + "?all=1", "--window-size=1400,2200", "--virtual-time-budget=15000",
             f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 20_000


def test_filters_preset_from_the_address(site, tmp_path):
    root, shas = site
    url = (root / "site" / "index.html").as_uri() + "?all=1&leaf=vp_rd,vp_info&machine=box-b"
    dom, console = chromium(tmp_path, url, "--window-size=1400,1000", "--virtual-time-budget=15000",
                            "--dump-dom")
    assert console == []
    cards = dom.split('<div class="card')[1:]
    shown = [c for c in cards if not c.startswith(" hidden") and 'hidden"' not in c.split(">", 1)[0]]
    assert len(shown) == 2
    for c in shown:  # one machine left: one marker per measured commit
        assert c.count('class="point"') == N_COMMITS - len(FAILED)
    rows = [r for r in dom.split("<tr ") if "data-suspect" in r]
    visible = [r for r in rows if 'class="regression hidden"' not in r]
    assert len(visible) == 1 and 'data-machine="box-b"' in visible[0]


def test_hover_label_names_commit_subject_and_figures(site, all_drawn):
    _, shas = site
    dom, console = all_drawn
    assert console == []
    label = re.search(r'class="hovertext".*?data-unformatted="([^"]*)"', dom).group(1)
    # Point 3 of the first machine's series is commit 3 (the first failure is commit 4).
    assert label.startswith(f"{shas[3][:10]} Synthetic commit 3"), label
    assert "box-a: median" in label and "cycles" in label and "95% CI" in label and "n=60" in label
