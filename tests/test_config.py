"""Bad declarations are rejected with file, line and reason; nothing is half-loaded."""
import textwrap

import pytest

from bench.config import ConfigError, parse_suite


def write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def rejects(catalog, tmp_path, text, line, *words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        catalog.with_user_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    for w in words:
        assert w in msg, msg
    return msg


def test_sc_retry_is_the_module_only_kernel_path(catalog):
    sc, plain = catalog.conventions["sc_retry"], catalog.conventions["seamcall_ret"]
    assert sc.retry_kernel and sc.kernel_only and "retry: kernel" in sc.kernel_only_why
    assert (sc.retry_status, sc.retry_max) == (plain.retry_status, plain.retry_max) and not plain.kernel_only
    assert "retry_kernel" not in plain.declaration()  # the other conventions' hashes stay as stored


def test_builtins_load(catalog):
    assert {"tdcall", "tdcall_ret", "tdcall_saved_ret", "seamcall", "seamcall_ret", "seamcall_saved_ret",
            "full_pushpop", "lean", "xsave", "xsaveopt", "xsavec", "xinuse"} <= set(catalog.conventions)
    assert {"vp_info", "migration", "vp_enter"} <= set(catalog.leaves)
    assert catalog.leaves["vp_enter"].clobbers_rbp and catalog.leaves["migration"].avx_reset


def test_unknown_register(catalog, tmp_path):
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            load: [rcx, rdx,
                   r16]
        """, 4, "unknown register 'r16'", "valid:")


def test_rsp_in_any_list(catalog, tmp_path):
    for key in ("load", "store", "preserve", "scrub"):
        rejects(catalog, tmp_path, f"""\
            conventions:
              mine:
                {key}: [rsp]
            """, 3, "RSP")


def test_rbp_must_use_the_rbp_policy(catalog, tmp_path):
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            preserve: [rbx, rbp]
        """, 3, "rbp: frame|stack|struct")


def test_duplicate_names(catalog, tmp_path):
    rejects(catalog, tmp_path, """\
        conventions:
          seamcall:
            load: [rcx]
        """, 2, "duplicate convention name 'seamcall'", "conventions.yaml")
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            load: [rcx]
          mine:
            load: [rdx]
        """, 4, "duplicate key 'mine'")


def test_register_listed_twice(catalog, tmp_path):
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            store: [rcx, rcx]
        """, 3, "listed twice")


@pytest.mark.parametrize("mask,words", [("0", ["malformed"]), ("0x100000000", ["malformed"]),
                                         ("0xE4", ["x87 and SSE"]), ("lots", ["bit mask"]),
                                         ("true", ["bit mask"])])
def test_malformed_fpu_mask(catalog, tmp_path, mask, words):
    rejects(catalog, tmp_path, f"""\
        conventions:
          mine:
            extends: seamcall_saved_ret
            fpu: xsave
            fpu_mask: {mask}
        """, 5, *words)


def test_unknown_keys_and_values(catalog, tmp_path):
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            lod: [rcx]
        """, 3, "unknown key 'lod'", "valid keys")
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            fpu: avx
        """, 3, "fpu must be one of")
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            extends: nothing_like_it
        """, 3, "unknown convention 'nothing_like_it'")
    rejects(catalog, tmp_path, """\
        conventions:
          mine:
            meant_for: [live_migration]
        """, 3, "unknown leaf profile 'live_migration'")


def test_broken_yaml_names_the_line(catalog, tmp_path):
    msg = rejects(catalog, tmp_path, "conventions:\n  mine:\n    load: [rcx\n  other: 1\n", 4, "not valid YAML")
    assert "mine.yaml" in msg


def test_missing_file(catalog, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        catalog.with_user_file(tmp_path / "absent.yaml")


def test_user_file_extends_builtins_without_touching_them(catalog, tmp_path):
    path = write(tmp_path, """\
        conventions:
          my_saved:
            extends: seamcall_saved_ret
            scrub: []
        """)
    cat = catalog.with_user_file(path)
    mine = cat.conventions["my_saved"]
    assert mine.load == cat.conventions["seamcall_saved_ret"].load and mine.scrub == ()
    assert mine.decl_hash != cat.conventions["seamcall_saved_ret"].decl_hash
    assert "my_saved" not in catalog.conventions  # the built-in catalog is unchanged
    assert mine.source.startswith(str(path))


def test_suite_errors(catalog, tmp_path):
    backends = ["emulated", "cpuid"]
    path = write(tmp_path, "conventions: [seamcall, nope]\n", "suite.yaml")
    with pytest.raises(ConfigError, match=r"suite.yaml:1: unknown convention 'nope'; valid: "):
        parse_suite(path, catalog, backends)
    path = write(tmp_path, "backends: [emulated,\n  warp]\n", "suite.yaml")
    with pytest.raises(ConfigError, match=r"suite.yaml:2: unknown backend 'warp'; valid: emulated, cpuid"):
        parse_suite(path, catalog, backends)
    path = write(tmp_path, "settings:\n  runs: 0\n", "suite.yaml")
    with pytest.raises(ConfigError, match=r"suite.yaml:2: settings.runs must be"):
        parse_suite(path, catalog, backends)
    path = write(tmp_path, "setings: {}\n", "suite.yaml")
    with pytest.raises(ConfigError, match=r"suite.yaml:1: unknown key 'setings'"):
        parse_suite(path, catalog, backends)


def test_shipped_suites_parse(catalog):
    from bench.native import backends
    from bench.config import configs_dir
    for name in ("default.yaml", "quick.yaml"):
        suite, _ = parse_suite(configs_dir() / name, catalog, list(backends.BACKENDS))
        assert suite.reference == "seamcall"


def test_the_builtin_catalog_kept_parsed_is_the_parsed_one(tmp_path, monkeypatch):
    from bench import config
    monkeypatch.setenv("SEAMBENCH_CACHE", str(tmp_path))
    d = config.configs_dir()
    contents = tuple((d / f).read_bytes() for f in config.BUILTIN_FILES)
    parsed = config._load_builtin.__wrapped__(d, contents)
    assert list(tmp_path.glob("catalog-*.pickle"))
    kept = config._load_builtin.__wrapped__(d, contents)
    assert kept is not parsed and kept == parsed
    # another content, another key: a changed conventions.yaml is parsed, never served stale
    other = config._load_builtin.__wrapped__(d, contents[:1] + (contents[1] + b"\n# changed\n",))
    assert len(list(tmp_path.glob("catalog-*.pickle"))) == 2 and other == parsed
