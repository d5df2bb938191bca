"""Suite YAML: every mistake is reported with its file, line and what would be valid."""
import textwrap

import pytest

from bench.native import backends
from bench import cli
from bench.config import ConfigError, load_builtin, parse_suite

GOOD = """\
suite: tiny
reference: seamcall
conventions: [seamcall, lean]
backends: [emulated]
leaves: [vp_info]
settings:
  runs: 3
  values: 5
"""


def write(tmp_path, text, name="suite.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def parse(path):
    return parse_suite(path, load_builtin(), list(backends.BACKENDS))


def test_good_suite_parses(tmp_path):
    suite, _ = parse(write(tmp_path, GOOD))
    assert suite.conventions == ("seamcall", "lean")
    assert suite.settings.runs == 3 and suite.settings.values == 5


@pytest.mark.parametrize("bad, line, words", [
    (GOOD.replace("settings:", "setings:"), 6, ["unknown key 'setings'", "valid keys", "settings"]),
    (GOOD.replace("  values: 5", "  valeus: 5"), 8, ["unknown key 'valeus'", "batch_us", "values"]),
    (GOOD.replace("[seamcall, lean]", "[seamcall, leen]"), 3, ["unknown convention 'leen'", "lean"]),
    (GOOD.replace("[emulated]", "[emulatd]"), 4, ["unknown backend 'emulatd'", "emulated", "vmcall"]),
    (GOOD.replace("[vp_info]", "[vpinfo]"), 5, ["unknown leaf profile 'vpinfo'", "vp_info"]),
    (GOOD.replace("runs: 3", "runs: 0"), 7, ["settings.runs", "1..1000"]),
    (GOOD.replace("reference: seamcall", "reference: nope"), 2, ["unknown reference convention 'nope'"]),
])
def test_errors_name_file_line_and_valid_choices(tmp_path, bad, line, words):
    path = write(tmp_path, bad)
    with pytest.raises(ConfigError) as e:
        parse(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    for w in words:
        assert w in msg


def test_broken_yaml_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("backends: [emulated]", "backends: [emulated"))
    with pytest.raises(ConfigError) as e:
        parse(path)
    assert str(e.value).startswith(f"{path}:") and "not valid YAML" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parse(tmp_path / "nope.yaml")


def test_cli_reports_error_and_stores_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(tmp_path / "results"))
    path = write(tmp_path, GOOD.replace("settings:", "setings:"))
    assert cli.main(["run", "--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6" in err and "unknown key 'setings'" in err
    assert not (tmp_path / "results").exists()


def test_shipped_suites_parse():
    from bench.config import configs_dir
    for name in ("default.yaml", "quick.yaml"):
        suite, _ = parse(configs_dir() / name)
        assert suite.settings.runs >= 1
