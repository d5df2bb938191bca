"""Hostile or mistyped YAML: one ConfigError naming the file, the line and the reason, in bounded
time and memory; never a TypeError, RecursionError, MemoryError or a raw YAML error."""
import os

import pytest

from bench.native import backends
from bench.config import MAX_BYTES, MAX_DEPTH, ConfigError, parse_suite


def convention_file(catalog, path):
    catalog.with_user_file(path)


def suite_file(catalog, path):
    parse_suite(path, catalog, list(backends.BACKENDS))


def rejects(catalog, tmp_path, content, line, *words, parse=convention_file, name="mine.yaml"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as err:
        parse(catalog, path)
    msg = str(err.value)
    where = f"{path}:{line}: " if line else f"{path}: "
    assert msg.startswith(where), msg
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# --- type errors: a list or mapping where a name belongs --------------------

@pytest.mark.parametrize("text, line, words", [
    ("conventions:\n  mine:\n    extends: [lean]\n", 3, ["extends must name one convention", "['lean']"]),
    ("conventions:\n  mine:\n    meant_for: [[vp_info]]\n", 3, ["expected a leaf profile name"]),
    ("conventions:\n  mine:\n    meant_for: vp_info\n", 3, ["meant_for must be a list of leaf profiles"]),
    ("conventions:\n  mine:\n    description: {a: 1}\n", 3, ["description must be text"]),
    ("conventions:\n  mine:\n    load: [[rcx]]\n", 3, ["unknown register ['rcx']"]),
    ("conventions:\n  mine:\n    retry: {status: [1], max: 2}\n", 3, ["retry status"]),
    ("conventions:\n  mine:\n    retry: {status: 1, max: 2, kernel: 1}\n", 3, ["retry kernel must be true or false"]),
])
def test_type_errors_in_conventions(catalog, tmp_path, text, line, words):
    rejects(catalog, tmp_path, text, line, *words)


@pytest.mark.parametrize("text, line, words", [
    ("conventions: [[lean]]\n", 1, ["expected a convention name", "['lean']"]),
    ("conventions: {lean: 1}\n", 1, ["conventions must be `all` or a non-empty list"]),
    ("conventions: []\n", 1, ["non-empty list"]),
    ("reference: [lean]\n", 1, ["reference must name one convention"]),
    ("include: 5\n", 1, ["include must be a list of convention file names", "got 5"]),
    ("include: mine.yaml\n", 1, ["include must be a list"]),
    ("include: [[a.yaml]]\n", 1, ["include must be a list"]),
    ("backends: [[emulated]]\n", 1, ["expected a backend name"]),
    ("leaves: [{vp_info: 1}]\n", 1, ["expected a leaf profile name"]),
    ("suite: [x]\n", 1, ["bad suite name"]),
    ("settings: {runs: [3]}\n", 1, ["settings.runs must be a number"]),
])
def test_type_errors_in_suites(catalog, tmp_path, text, line, words):
    rejects(catalog, tmp_path, text, line, *words, parse=suite_file, name="suite.yaml")


@pytest.mark.parametrize("text, line, words", [
    ("conventions: [lean, lean]\n", 1, ["convention 'lean' listed twice in conventions"]),
    ("backends: [emulated,\n  emulated]\n", 2, ["backend 'emulated' listed twice"]),
    ("leaves: [vp_info, vp_info]\n", 1, ["leaf profile 'vp_info' listed twice"]),
    ("include: [a.yaml,\n  ./a.yaml]\n", 2, ["'./a.yaml' is included twice"]),
])
def test_duplicates_in_suite_lists(catalog, tmp_path, text, line, words):
    (tmp_path / "a.yaml").write_text("conventions:\n  from_a:\n    extends: lean\n")
    rejects(catalog, tmp_path, text, line, *words, parse=suite_file, name="suite.yaml")


def test_duplicate_in_meant_for(catalog, tmp_path):
    rejects(catalog, tmp_path, "conventions:\n  mine:\n    meant_for: [vp_info,\n      vp_info]\n", 4,
            "leaf profile 'vp_info' listed twice in meant_for")


# --- hostile YAML: nesting, alias bombs, long chains, huge files ------------

def test_deep_nesting(catalog, tmp_path):
    deep = "[" * 5000 + "]" * 5000
    rejects(catalog, tmp_path, f"conventions:\n  mine:\n    description: {deep}\n", 3,
            f"nested more than {MAX_DEPTH} levels deep")


def test_alias_bomb_is_refused_before_it_expands(catalog, tmp_path):
    levels = "abcdefghi"
    parts = ["&a [" + ",".join(["lol"] * 9) + "]"]
    parts += [f"&{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip(levels, levels[1:])]
    text = "conventions:\n  mine:\n    description: [" + ", ".join(parts) + "]\n"
    assert len(text) < 500
    rejects(catalog, tmp_path, text, 3, "expands to more than", "aliases")


def test_aliases_nested_deeper_than_the_limit(catalog, tmp_path):
    # each anchor is shallow; expanded, the last one is 40 levels deep
    lines = ["x0: &x0 [[[[1]]]]"] + [f"x{i}: &x{i} [[[[*x{i - 1}]]]]" for i in range(1, 10)]
    rejects(catalog, tmp_path, "\n".join(lines) + "\n", 8, "levels deep", "aliases")  # x7: 33 levels


def test_recursive_alias(catalog, tmp_path):
    rejects(catalog, tmp_path, "conventions:\n  mine:\n    load: &r [rcx, *r]\n", 3, "alias")


def test_modest_aliases_still_work(catalog, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("conventions:\n  mine:\n    load: &regs [rcx, rdx]\n    store: *regs\n")
    mine = catalog.with_user_file(path).conventions["mine"]
    assert mine.load == mine.store == ("rcx", "rdx")


def test_long_extends_chain(catalog, tmp_path):
    body = ["conventions:", "  c0:", "    extends: seamcall"]
    for i in range(1, 3000):
        body += [f"  c{i}:", f"    extends: c{i - 1}"]
    rejects(catalog, tmp_path, "\n".join(body) + "\n", 65, "convention 'c31'",
            "`extends` chain is longer than")


def test_chain_within_the_limit_merges(catalog, tmp_path):
    body = ["conventions:", "  c0:", "    extends: seamcall_saved_ret", "    scrub: []"]
    for i in range(1, MAX_DEPTH - 1):
        body += [f"  c{i}:", f"    extends: c{i - 1}"]
    cat = catalog.with_user_file(_write(tmp_path, "\n".join(body) + "\n"))
    last = cat.conventions[f"c{MAX_DEPTH - 2}"]
    assert last.load == cat.conventions["seamcall_saved_ret"].load and last.scrub == ()


def test_huge_file(catalog, tmp_path):
    rejects(catalog, tmp_path, "# padding\n" * (MAX_BYTES // 10 + 1), 0, "larger than 1 MiB")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_symlink_to_dev_zero(catalog, tmp_path):
    path = tmp_path / "zero.yaml"
    path.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=rf"^{path}: larger than 1 MiB"):
        catalog.with_user_file(path)


def test_directory(catalog, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: cannot read"):
        catalog.with_user_file(tmp_path)


# --- bad bytes ---------------------------------------------------------------

@pytest.mark.parametrize("content, line, words", [
    (b"conventions:\n  mine:\n    load: [rcx]\0\n", 3, ["U+0000 is not allowed in YAML"]),
    (b"conventions:\n  mine:\n    description: \x1b[31m\n", 3, ["U+001B"]),
    (b"conventions:\n\n  \xff\xfe\n", 3, ["not UTF-8 text (byte 0xff)"]),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), 2, ["binary file"]),  # the 0x80 after b"\n"
])
def test_bad_bytes(catalog, tmp_path, content, line, words):
    rejects(catalog, tmp_path, content, line, *words)


def test_bad_bytes_in_a_suite(catalog, tmp_path):
    rejects(catalog, tmp_path, b"suite: x\nconventions: all\0\n", 2, "U+0000", parse=suite_file,
            name="suite.yaml")


# --- names: matched whole, bounded -------------------------------------------

@pytest.mark.parametrize("name", ['"mine\\n"', '"mine\\nint x;"', "Mine", "_mine", "9lives", '"mi ne"',
                                  "m" * 65, "5", "true"])
def test_bad_convention_names(catalog, tmp_path, name):
    rejects(catalog, tmp_path, f"conventions:\n  {name}:\n    load: [rcx]\n", 2, "bad convention name")


def test_bad_leaf_name(catalog, tmp_path):
    from bench.config import parse_leaves
    path = _write(tmp_path, 'leaves:\n  "vp_info\\n":\n    rax: 1\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: bad leaf name 'vp_info\\n'"):
        parse_leaves(path)


def test_bad_suite_name(catalog, tmp_path):
    rejects(catalog, tmp_path, 'suite: "tiny\\n"\n', 1, "bad suite name 'tiny\\n'", parse=suite_file,
            name="suite.yaml")


def test_longest_name_is_fine(catalog, tmp_path):
    name = "m" * 64
    cat = catalog.with_user_file(_write(tmp_path, f"conventions:\n  {name}:\n    load: [rcx]\n"))
    assert name in cat.conventions


def test_long_values_are_cut_short_in_messages(catalog, tmp_path):
    msg = rejects(catalog, tmp_path, "conventions:\n  mine:\n    extends: [" + "x, " * 5000 + "x]\n", 3,
                  "extends must name one convention")
    assert len(msg) < 300
    long_key = "? " + "k" * 5000 + "\n    : 1\n"  # explicit: a plain key is at most 1024 characters
    msg = rejects(catalog, tmp_path, "conventions:\n  mine:\n    " + long_key, 3, "unknown key")
    assert len(msg) < 400


def test_empty_description_is_no_description(catalog, tmp_path):
    cat = catalog.with_user_file(_write(tmp_path, "conventions:\n  mine:\n    description:\n"))
    assert cat.conventions["mine"].description == ""


def _write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("content", [
    b"conventions:\n  mine:\n    extends: [lean]\n",
    b"conventions:\n  mine:\n    load: [rcx]\0\n",
    b"conventions:\n  mine:\n    description: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    b'conventions:\n  "mine\\n":\n    load: [rcx]\n',
])
def test_cli_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys, command, content):
    from bench import cli
    monkeypatch.setenv("SEAMBENCH_RESULTS", str(tmp_path / "results"))
    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    assert cli.main([command, "-C", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"bench: error: {path}:") and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()
