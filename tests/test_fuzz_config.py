"""Fuzz the config loaders: whatever the bytes, the outcome is a parsed object or a ConfigError,
never another exception.  Bounded (max_examples per test) so the module takes a few seconds."""
from datetime import timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.native import backends
from bench.config import _CONV_KEYS, _LEAF_KEYS, _SUITE_KEYS, ARG_REGS, ConfigError, parse_leaves, parse_suite

# No example database (it would be written into the checkout); a deadline far above the few
# milliseconds one example takes, so only a loader that expands or recurses without bound trips it.
FUZZ = settings(max_examples=120, deadline=timedelta(seconds=5), database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Pieces of YAML syntax and of our own vocabulary, so random text gets past the scanner often.
TOKENS = ["conventions:", "leaves:", "suite:", "include:", "reference:", "backends:", "settings:",
          "extends:", "meant_for:", "load:", "store:", "preserve:", "scrub:", "retry:", "rbp:", "fpu:",
          "fpu_mask:", "status:", "max:", "runs:", "lean", "seamcall", "vp_info", "emulated", "leaf",
          "all", "rcx", "rsp", "rax", "frame", "xsave", "xcr0", "0x3", "-1", "1e400", ".nan", "null",
          "true", "~", "\n", "  ", "    ", "- ", ": ", ", ", "[", "]", "{", "}", "&a ", "*a", "&b ",
          "*b", "<<: *a", "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ", "!x ", "? ",
          "|", ">", "'", '"', "\\n", "#", "---\n", "...\n", "%YAML 1.1\n", "\t", "\x00", "\x85",
          "\ufeff", "é", "\U0001f600"]

yamlish = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)

NAMES = st.sampled_from(["mine", "lean", "seamcall", "seamcall_saved_ret", "vp_info", "migration",
                         "emulated", "cpuid", "mine\n", "Mine", "", "x" * 70, "a.yaml", "all", "meant_for"]
                        + list(ARG_REGS))
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True) | st.text(max_size=20) | NAMES)


def values(keys):
    """Random trees whose mappings mostly use `keys`, so validation past the top level runs."""
    key = st.sampled_from(sorted(keys)) | NAMES | st.integers(-3, 3)
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=5)
                        | st.dictionaries(key, kids, max_size=5), max_leaves=25)


conv_files = st.dictionaries(NAMES, values(_CONV_KEYS), max_size=4).map(lambda d: {"conventions": d})
leaf_files = st.dictionaries(NAMES, values(_LEAF_KEYS), max_size=4).map(lambda d: {"leaves": d})
suite_files = st.dictionaries(st.sampled_from(sorted(_SUITE_KEYS)) | NAMES,
                              values(_SUITE_KEYS | {"runs", "values", "warmups", "batch_us", "cpu"}),
                              max_size=7)


def load_each_way(path, catalog):
    """Every loader on one file; each may accept it or raise ConfigError, nothing else."""
    for load in (catalog.with_user_file, parse_leaves,
                 lambda p: parse_suite(p, catalog, list(backends.BACKENDS))):
        try:
            load(path)
        except ConfigError:
            pass


def dumped(tree) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True).encode()


@FUZZ
@given(text=yamlish)
def test_yamlish_text(catalog, tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz_text.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    load_each_way(path, catalog)


@FUZZ
@given(data=st.binary(max_size=200) | yamlish.map(lambda t: t.encode("utf-16")))
def test_random_bytes(catalog, tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz_bytes.yaml"
    path.write_bytes(data)
    load_each_way(path, catalog)


@FUZZ
@given(tree=conv_files | leaf_files | suite_files)
def test_random_structures(catalog, tmp_path_factory, tree):
    path = tmp_path_factory.getbasetemp() / "fuzz_tree.yaml"
    path.write_bytes(dumped(tree))
    load_each_way(path, catalog)
