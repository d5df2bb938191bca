"""Parse and validate conventions, leaf profiles and suites.

Every error names the file, the line and the reason, so a user who mistypes a
register in their own YAML is told where.  Parsed objects are plain frozen
dataclasses: the stages after this one never see YAML.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

# The thirteen argument registers, in struct tdx_module_args order.
ARG_REGS = ("rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rbx", "rdi", "rsi")
CALLEE_SAVED = ("rbx", "rbp", "r12", "r13", "r14", "r15")
# XCR0 components the TDX 1.5 ABI lets a leaf reset to INIT: AVX, opmask, ZMM_Hi256, Hi16_ZMM.
AVX_STATE_BITS = (1 << 2) | (1 << 5) | (1 << 6) | (1 << 7)
FAMILIES = ("seamcall", "tdcall")
RBP_POLICIES = ("none", "frame", "stack", "struct", "leaf")
FPU_POLICIES = ("none", "xsave", "xsaveopt", "xsavec", "xinuse", "kernel_fpu")
LEAF_WORD = "leaf"  # `load: leaf` etc.: resolved against the leaf profile
# Names become C identifiers and file names: matched whole (fullmatch; `$` would let "x\n" through).
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
NAME_RULE = "use lower-case letters, digits and _, starting with a letter, at most 64 characters"
# XCR0 bits a user may name: x87, SSE, AVX, MPX (2), opmask, ZMM_Hi256, Hi16_ZMM, PKRU, AMX (2)
XCR0_USER_BITS = 0x602FF


class ConfigError(ValueError):
    """A problem in a YAML file, with its location, or in a command-line option (path: the
    option, line 0)."""

    def __init__(self, path, line, message):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


def _show(value) -> str:
    """A value as it may appear in a one-line message: repr, cut short."""
    return _SHORT.repr(value)


class _ShortRepr(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxstring, self.maxother = 60, 60

    def repr__LineList(self, x, level):
        return self.repr_list(x, level)

    def repr__LineDict(self, x, level):
        return self.repr_dict(x, level)


_SHORT = _ShortRepr()


def _check_name(path, line, name, what):
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(path, line, f"bad {what} name {_show(name)}: {NAME_RULE}")


# --- YAML with line numbers -------------------------------------------------

# Limits for hostile files (ours are a few kB, a few levels deep, a few hundred values); MAX_DEPTH
# also bounds an `extends` chain.  A YAML alias names a node again without copying it, so a few
# hundred bytes of nested aliases ("billion laughs") stand for 10**9 values: the limit on values
# counts each alias as the values it stands for.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 100_000

class _LineDict(dict):
    lines: dict
    line: int


class _LineList(list):
    lines: list
    line: int


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and list item, and refuses
    nesting deeper than MAX_DEPTH and more than MAX_VALUES nodes while composing (the composer
    recurses once per level, and every node costs memory)."""

    def __init__(self, stream, name):
        super().__init__(stream)
        self.name = name
        self._depth = self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise ConfigError(self.name, self.peek_event().start_mark.line + 1,
                              f"nested more than {MAX_DEPTH} levels deep")
        if self._nodes > MAX_VALUES:
            raise ConfigError(self.name, self.peek_event().start_mark.line + 1,
                              f"more than {MAX_VALUES} values")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    d = _LineDict()
    d.lines, d.line = {}, node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise ConfigError(loader.name, key_node.start_mark.line + 1, f"unusable key {_show(key)}")
        if key in d:
            raise ConfigError(loader.name, key_node.start_mark.line + 1, f"duplicate key {_show(key)}")
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[key] = key_node.start_mark.line + 1
    return d


def _construct_sequence(loader, node):
    lst = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    lst.lines = [child.start_mark.line + 1 for child in node.value]
    lst.line = node.start_mark.line + 1
    return lst


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else ()


def _check_expanded(path, root):
    """Refuse a document whose aliases, expanded, are deeper than MAX_DEPTH or hold more than
    MAX_VALUES values, or refer to the node that holds them.  Iterative and linear in the
    number of distinct nodes: each is measured once."""
    size, depth, open_ = {}, {}, set()
    todo = [(root, False)]
    while todo:
        node, kids_done = todo.pop()
        key = id(node)
        if kids_done:
            open_.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1
            if size[key] > MAX_VALUES:
                raise ConfigError(path, line, f"expands to more than {MAX_VALUES} values "
                                  "(through YAML aliases)")
            if depth[key] > MAX_DEPTH:
                raise ConfigError(path, line, f"nested more than {MAX_DEPTH} levels deep "
                                  "(through YAML aliases)")
        elif key in open_:
            raise ConfigError(path, node.start_mark.line + 1, "a YAML alias refers to a node that holds it")
        elif key not in size:
            open_.add(key)
            todo.append((node, True))
            todo.extend((k, False) for k in _children(node))


def _read_text(path: Path) -> str:
    """The file as text, read no further than MAX_BYTES (a symlink to /dev/zero ends too)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ConfigError(path, 0, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(path, 0, f"larger than {MAX_BYTES >> 20} MiB; not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, raw.count(b"\n", 0, exc.start) + 1,
                          f"not UTF-8 text (byte {raw[exc.start]:#04x}); is it a binary file?") from None
    bad = _NOT_YAML_CHAR.search(text)
    if bad:
        raise ConfigError(path, text.count("\n", 0, bad.start()) + 1,
                          f"character U+{ord(bad.group()):04X} is not allowed in YAML; is it a binary file?")
    return text


# What PyYAML's reader refuses, checked here to name the line.
_NOT_YAML_CHAR = yaml.reader.Reader.NON_PRINTABLE


def load_yaml(path) -> _LineDict:
    path = Path(path)
    loader = _Loader(_read_text(path), str(path))
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded(path, node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(path, line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, 0, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(path, 1, "expected a mapping at the top level")
    return data


def _line(obj, key=None, default=0):
    if key is not None and isinstance(obj, _LineDict):
        return obj.lines.get(key, obj.line)
    return getattr(obj, "line", default)


def _check_keys(path, mapping, allowed, what):
    for key in mapping:
        if key not in allowed:
            raise ConfigError(path, _line(mapping, key),
                              f"unknown key {_show(key)} in {what}; valid keys: {', '.join(sorted(allowed))}")


def _need(path, mapping, key, types, what):
    value = mapping[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        names = "/".join(t.__name__ for t in _as_tuple(types))
        raise ConfigError(path, _line(mapping, key), f"{what}: {key} must be {names}, got {_show(value)}")
    return value


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _reg_list(path, mapping, key, what, *, allow_leaf=False, allow_rbp=False):
    """A list of argument registers (or the word `leaf`), checked one by one."""
    value = mapping.get(key, [])
    line = _line(mapping, key)
    if allow_leaf and value == LEAF_WORD:
        return LEAF_WORD
    if not isinstance(value, list):
        hint = " or the word 'leaf'" if allow_leaf else ""
        raise ConfigError(path, line, f"{what}: {key} must be a list of registers{hint}, got {_show(value)}")
    valid = ARG_REGS + (("rbp",) if allow_rbp else ())
    seen = []
    for i, reg in enumerate(value):
        item_line = value.lines[i] if isinstance(value, _LineList) else line
        reg_name = str(reg).lower() if isinstance(reg, str) else reg
        if reg_name in ("rsp", "esp", "sp"):
            raise ConfigError(path, item_line, f"{what}: {key} lists RSP; the stack pointer is never an "
                              "argument, saved or scrubbed register")
        if reg_name == "rbp" and not allow_rbp:
            raise ConfigError(path, item_line, f"{what}: {key} lists rbp; say where RBP is kept with "
                              "`rbp: frame|stack|struct` instead")
        if reg_name == "rax":
            raise ConfigError(path, item_line, f"{what}: {key} lists rax; RAX carries the leaf in and the "
                              "status out")
        if reg_name not in valid:
            raise ConfigError(path, item_line, f"{what}: unknown register {_show(reg)} in {key}; valid: "
                              f"{', '.join(valid)}")
        if reg_name in seen:
            raise ConfigError(path, item_line, f"{what}: register {reg_name} listed twice in {key}")
        seen.append(reg_name)
    return tuple(seen)


def _name_list(path, mapping, key, default, choices, noun, rule, *, what="", allow_empty=False):
    """A list of distinct names, each one of `choices`; `rule` says what the key must be."""
    prefix = f"{what}: " if what else ""
    value = mapping.get(key, default)
    line = _line(mapping, key)
    if not isinstance(value, list) or not (value or allow_empty):
        raise ConfigError(path, line, f"{prefix}{key} {rule}, got {_show(value)}")
    seen = []
    for i, name in enumerate(value):
        item_line = value.lines[i] if isinstance(value, _LineList) else line
        if not isinstance(name, str):
            raise ConfigError(path, item_line, f"{prefix}{key}: expected a {noun} name, got {_show(name)}")
        if name not in choices:
            raise ConfigError(path, item_line, f"{prefix}unknown {noun} {_show(name)}; valid: "
                              f"{', '.join(choices)}")
        if name in seen:
            raise ConfigError(path, item_line, f"{prefix}{noun} {name!r} listed twice in {key}")
        seen.append(name)
    return tuple(seen)


def _text(path, mapping, key, what):
    value = mapping.get(key)
    if value is None:  # absent, or `description:` left empty
        return ""
    if not isinstance(value, str):
        raise ConfigError(path, _line(mapping, key), f"{what}: {key} must be text, got {_show(value)}")
    return value


# --- leaf profiles ----------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    name: str
    description: str
    rax: int
    reads: tuple
    writes: tuple
    outputs: tuple
    clobbers_rbp: bool = False
    avx_reset: bool = False
    source: str = ""

    @property
    def all_writes(self):
        """Every GPR the leaf may change, RBP included when it clobbers it."""
        return self.writes + (("rbp",) if self.clobbers_rbp else ())


_LEAF_KEYS = {"description", "rax", "reads", "writes", "outputs", "clobbers_rbp", "avx_reset"}


def parse_leaves(path) -> dict:
    data = load_yaml(path)
    _check_keys(path, data, {"leaves"}, "the leaves file")
    leaves = data.get("leaves")
    if not isinstance(leaves, dict) or not leaves:
        raise ConfigError(path, _line(data, "leaves", 1), "expected `leaves:` with at least one profile")
    out = {}
    for name, body in leaves.items():
        line = _line(leaves, name)
        what = f"leaf {name!r}"
        _check_name(path, line, name, "leaf")
        if not isinstance(body, dict):
            raise ConfigError(path, line, f"{what}: expected a mapping")
        _check_keys(path, body, _LEAF_KEYS, what)
        writes = _reg_list(path, body, "writes", what)
        outputs = _reg_list(path, body, "outputs", what)
        for reg in outputs:
            if reg not in writes:
                raise ConfigError(path, _line(body, "outputs"), f"{what}: output {reg} is not in writes")
        rax = _need(path, body, "rax", int, what) if "rax" in body else 0
        if not 0 <= rax < 2**64:
            raise ConfigError(path, _line(body, "rax"), f"{what}: rax must be a 64-bit leaf number, got {rax}")
        out[name] = Leaf(
            name=name,
            description=_text(path, body, "description", what),
            rax=rax,
            reads=_reg_list(path, body, "reads", what),
            writes=writes,
            outputs=outputs,
            clobbers_rbp=_need(path, body, "clobbers_rbp", bool, what) if "clobbers_rbp" in body else False,
            avx_reset=_need(path, body, "avx_reset", bool, what) if "avx_reset" in body else False,
            source=f"{path}:{line}",
        )
    return out


# --- conventions ------------------------------------------------------------

# An imported convention (the kernel's own code, `bench kernel import`): linux-<version>:<symbol>
IMPORTED_NAME_RE = re.compile(r"[a-z][a-z0-9._+-]{0,40}:[A-Za-z_][A-Za-z0-9_]{0,63}")
IMPORTED_LAYOUTS = ("direct", "adapter")


@dataclass(frozen=True)
class Imported:
    """Where an imported convention's code is: the kernel function `symbol` of `file` in `tree`,
    preprocessed into `source` (seambench's cache), called directly (layout direct: it takes
    (leaf, struct laid out like sb_args)) or through the assembly `adapter`."""
    tree: str
    symbol: str
    layout: str
    file: str
    source: str
    digest: str
    adapter: str = ""
    undefined: tuple = ()
    # For the kernel module (gen/ring0.py): the tree's release (VERSION.PATCHLEVEL.SUBLEVEL), the
    # cache folder holding the tree's own TDX files as they are, whether the function takes the
    # leaf number as an argument (one without, a hand-written TDVMCALL, chooses its own leaf), and
    # what the function itself calls outside its file.  Empty in files of older imports.
    release: str = ""
    raw: str = ""
    leaf_arg: bool = True
    calls: tuple = ()


@dataclass(frozen=True)
class Convention:
    name: str
    description: str = ""
    family: str = "seamcall"
    load: object = ()          # tuple of registers, or "leaf"
    store: object = ()
    preserve: object = ()
    rbp: str = "none"
    scrub: tuple = ()
    fpu: str = "none"
    fpu_mask: object = "xcr0"  # "xcr0" or int
    retry_status: int | None = None
    retry_max: int = 0
    retry_kernel: bool = False  # each attempt as today's host kernels make it (module only)
    inject_chain: int = 0
    emul_latency: int = 0      # extra dependent cycles in the emulated module, for this convention's calls
    meant_for: tuple = ()
    source: str = ""
    imported: Imported | None = None  # the kernel's own code instead of a declaration

    def declaration(self) -> dict:
        """The fields that decide the generated code (not where it was declared)."""
        d = asdict(self)
        for k in ("name", "description", "source", "meant_for"):
            d.pop(k)
        imp = d.pop("imported")
        if imp is not None:  # the code's own digest, not where the tree or the cache are
            d["imported"] = {k: imp[k] for k in ("symbol", "layout", "digest")}
        if not d["emul_latency"]:
            d.pop("emul_latency")  # keeps the hashes of results stored before the field existed
        if not d["retry_kernel"]:
            d.pop("retry_kernel")  # the same
        return d

    @property
    def decl_hash(self) -> str:
        blob = json.dumps(self.declaration(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def kernel_only(self) -> bool:
        return self.fpu == "kernel_fpu" or self.retry_kernel

    @property
    def kernel_only_why(self) -> str:
        """Why it runs only in the kernel module ("" if it runs anywhere)."""
        if self.fpu == "kernel_fpu":
            return "runs only in the kernel module (fpu: kernel_fpu)"
        if self.retry_kernel:
            return "runs only in the kernel module (retry: kernel, preempt_disable and a per-CPU store)"
        return ""

    def resolve(self, leaf: Leaf, observed=None) -> "Resolved":
        """Register sets for one leaf: `leaf` words replaced by the profile's sets.  `observed`:
        for imported code, the C-ABI breaks the runtime check saw (Resolved.abi_breaks)."""
        load = leaf.reads if self.load == LEAF_WORD else self.load
        store = leaf.outputs if self.store == LEAF_WORD else self.store
        if self.preserve == LEAF_WORD:
            # Every callee-saved register the call changes: the leaf's writes and the loads.
            preserve = tuple(r for r in ARG_REGS if r in CALLEE_SAVED and (r in leaf.writes or r in load))
        else:
            preserve = self.preserve
        rbp = self.rbp
        if rbp == LEAF_WORD:
            rbp = "stack" if leaf.clobbers_rbp else "none"
        return Resolved(self, leaf, tuple(load), tuple(store), tuple(preserve), rbp,
                        None if observed is None else tuple(observed))


@dataclass(frozen=True)
class Resolved:
    """A convention's concrete register sets for one leaf profile."""
    conv: Convention
    leaf: Leaf
    load: tuple
    store: tuple
    preserve: tuple
    rbp: str
    observed: tuple | None = None  # imported code: the breaks the runtime check saw (None: not run)

    @property
    def saved(self) -> frozenset:
        """Registers the wrapper restores before returning."""
        return frozenset(self.preserve) | ({"rbp"} if self.rbp in ("frame", "stack", "struct") else set())

    @property
    def unsaved_callee_saved(self) -> tuple:
        """Callee-saved registers handed back changed: written by the leaf or loaded by the
        wrapper, and not restored."""
        touched = set(self.leaf.all_writes) | set(self.load)
        return tuple(r for r in CALLEE_SAVED if r in touched and r not in self.saved)

    @property
    def abi_breaks(self) -> tuple:
        """How the wrapper breaks the C calling convention, as ((cause, registers), ...) with
        cause one of: "written" (callee-saved registers the leaf writes, RBP included, and
        nothing restores), "loaded" (callee-saved registers the wrapper loads from the struct and
        does not restore), "scrubbed" (callee-saved registers the scrub zeroes and nothing
        restores), "pointer" (outputs stored through RSI after it may have been overwritten).

        The one fact both readers use: the static safety prediction (bench/safety.py) turns
        each into a reason, and the kernel module's build filter (gen/codegen.kernel_unsafe)
        refuses every wrapper that has any, since in ring 0 each is a corrupted register of the
        module's own C code.

        Imported code has no declaration to derive this from: its breaks are what the runtime
        check saw (`observed`, safety.abi_breaks_seen: causes "changed", "pointer", "stack",
        "flags", "crash"), and without that check one "unchecked" break."""
        if self.conv.imported:
            return self.observed if self.observed is not None else (("unchecked", ()),)
        unsaved = self.unsaved_callee_saved
        written = tuple(reg for reg in unsaved if reg in self.leaf.all_writes)
        loaded = tuple(reg for reg in unsaved if reg not in self.leaf.all_writes)
        scrubbed = tuple(reg for reg in CALLEE_SAVED if reg in self.conv.scrub and reg not in self.saved
                         and reg not in unsaved)
        out = [(cause, regs) for cause, regs in (("written", written), ("loaded", loaded),
                                                 ("scrubbed", scrubbed)) if regs]
        if self.pointer_lost:
            out.append(("pointer", ("rsi",)))
        return tuple(out)

    @property
    def pointer_lost(self) -> bool:
        """The struct pointer is gone after the call (RSI loaded or written by the leaf, and not
        kept on the stack) although outputs or RBP are still read or written through it."""
        rsi_gone = ("rsi" in self.leaf.writes or "rsi" in self.load) and not self.keeps_pointer_on_stack
        return rsi_gone and (bool(self.store) or self.rbp == "struct")

    @property
    def keeps_pointer_on_stack(self) -> bool:
        # As in the kernel macro: the struct pointer is pushed when RSI gets an argument and
        # something must still be done through the pointer afterwards.
        return "rsi" in self.load and (bool(self.store) or self.rbp == "struct")


_CONV_KEYS = {"description", "extends", "family", "load", "store", "preserve", "rbp", "scrub", "fpu",
              "fpu_mask", "retry", "inject_chain", "emul_latency", "meant_for"}


def _parse_fpu_mask(path, body, what):
    value = body["fpu_mask"]
    line = _line(body, "fpu_mask")
    if value == "xcr0":
        return "xcr0"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, line, f"{what}: fpu_mask must be `xcr0` or an integer bit mask, "
                          f"got {_show(value)}")
    if value <= 0 or value & ~XCR0_USER_BITS:
        raise ConfigError(path, line, f"{what}: fpu_mask {value:#x} is malformed: it must be non-zero and "
                          f"name only XCR0 user components (bits within {XCR0_USER_BITS:#x})")
    if not value & 0x3:
        raise ConfigError(path, line, f"{what}: fpu_mask {value:#x} leaves out x87 and SSE (bits 0-1); "
                          "XRSTOR would reset them")
    return value


def _parse_retry(path, body, what):
    value = body["retry"]
    line = _line(body, "retry")
    if value in (None, "none", False):
        return None, 0, False
    if not isinstance(value, dict):
        raise ConfigError(path, line, f"{what}: retry must be `none` or {{status: N, max: N[, kernel: true]}}")
    _check_keys(path, value, {"status", "max", "kernel"}, f"{what} retry")
    status, max_tries = value.get("status"), value.get("max")
    if not isinstance(status, int) or isinstance(status, bool) or not 0 < status < 2**64:
        raise ConfigError(path, line, f"{what}: retry status must be a 64-bit status code, got {status!r}")
    if not isinstance(max_tries, int) or isinstance(max_tries, bool) or not 1 <= max_tries <= 1000:
        raise ConfigError(path, line, f"{what}: retry max must be 1..1000, got {max_tries!r}")
    kernel = value.get("kernel", False)
    if not isinstance(kernel, bool):
        raise ConfigError(path, line, f"{what}: retry kernel must be true or false, got {kernel!r}")
    return status, max_tries, kernel


def _merge(path, pool, name):
    """Apply `extends` chains; the child's keys win.  A loop, not recursion, over a chain of at
    most MAX_DEPTH conventions."""
    chain = [name]
    while (parent := pool[chain[-1]].get("extends")) is not None:
        child = chain[-1]
        line = _line(pool[child], "extends")
        if not isinstance(parent, str):
            raise ConfigError(path, line, f"convention {child!r}: extends must name one convention, "
                              f"got {_show(parent)}")
        if parent not in pool:
            raise ConfigError(path, line, f"convention {child!r} extends unknown convention {_show(parent)}")
        if parent in chain:
            raise ConfigError(path, line, f"convention {child!r}: `extends` loops through {parent!r}")
        if len(chain) == MAX_DEPTH:
            raise ConfigError(path, _line(pool[name], "extends"), f"convention {name!r}: its `extends` "
                              f"chain is longer than {MAX_DEPTH} conventions")
        chain.append(parent)
    root = pool[chain[-1]]
    merged, lines = dict(root), dict(root.lines) if isinstance(root, _LineDict) else {}
    for body in (pool[child] for child in reversed(chain[:-1])):
        merged.pop("description", None)
        for key, value in body.items():
            merged[key] = value
            lines[key] = _line(body, key)
    merged.pop("extends", None)
    return merged, lines


def parse_conventions(path, leaves: dict, known: dict | None = None) -> dict:
    """Parse a conventions file.  `known` (the built-ins) may be extended but not redefined."""
    known = known or {}
    data = load_yaml(path)
    _check_keys(path, data, {"conventions"}, "a conventions file")
    raw = data.get("conventions")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(path, _line(data, "conventions", 1), "expected `conventions:` with at least one entry")
    for name, body in raw.items():
        line = _line(raw, name)
        imported = isinstance(body, dict) and "imported" in body
        if imported and not (isinstance(name, str) and IMPORTED_NAME_RE.fullmatch(name)):
            raise ConfigError(path, line, f"bad imported convention name {_show(name)}: expected "
                              "<tree>:<symbol>, like linux-6.12:__seamcall_ret")
        if not imported:
            _check_name(path, line, name, "convention")
        if name in known:
            raise ConfigError(path, line, f"duplicate convention name {name!r}: already declared at "
                              f"{known[name].source}")
        if not isinstance(body, dict):
            raise ConfigError(path, line, f"convention {name!r}: expected a mapping")
        if not imported:
            _check_keys(path, body, _CONV_KEYS, f"convention {name!r}")
    # Built-ins can be extended: give them to _merge as raw bodies rebuilt from their fields.
    pool = {n: b for n, b in raw.items() if "imported" not in b}
    for name, conv in known.items():
        if conv.imported:
            continue
        pool.setdefault(name, _LineDict(_conv_to_raw(conv)))
        pool[name].lines, pool[name].line = getattr(pool[name], "lines", {}), 0
    out = {}
    for name in raw:
        if "imported" in raw[name]:
            out[name] = _build_imported(path, name, raw[name], leaves)
            continue
        parent = raw[name].get("extends")
        if isinstance(parent, str) and (parent in out and out[parent].imported or
                                        parent in known and known[parent].imported):
            raise ConfigError(path, _line(raw[name], "extends"), f"convention {name!r} extends imported "
                              f"convention {parent!r}; imported code has no declaration to change")
        merged, lines = _merge(path, pool, name)
        body = _LineDict(merged)
        body.lines, body.line = lines, _line(raw, name)
        out[name] = _build_convention(path, name, body, leaves)
    return out


def _conv_to_raw(conv: Convention) -> dict:
    d = {"description": conv.description, "family": conv.family, "rbp": conv.rbp,
         "fpu": conv.fpu, "fpu_mask": conv.fpu_mask, "inject_chain": conv.inject_chain,
         "emul_latency": conv.emul_latency, "meant_for": list(conv.meant_for)}
    for k in ("load", "store", "preserve"):
        v = getattr(conv, k)
        d[k] = v if v == LEAF_WORD else list(v)
    d["scrub"] = list(conv.scrub)
    d["retry"] = {"status": conv.retry_status, "max": conv.retry_max} if conv.retry_status else None
    if conv.retry_kernel:
        d["retry"]["kernel"] = True
    return d


_IMPORTED_KEYS = {"description", "family", "meant_for", "imported"}
_IMPORTED_FIELDS = {"tree", "symbol", "layout", "file", "source", "digest", "adapter", "undefined", "release",
                    "raw", "leaf_arg", "calls"}


def _build_imported(path, name, body, leaves) -> Convention:
    """An entry `bench kernel import` wrote: the kernel's code, no declaration."""
    what = f"imported convention {name!r}"
    for key in body:
        if key not in _IMPORTED_KEYS:
            raise ConfigError(path, _line(body, key), f"{what}: {key!r} cannot be set on imported code "
                              f"(valid keys: {', '.join(sorted(_IMPORTED_KEYS))})")
    imp = body["imported"]
    line = _line(body, "imported")
    if not isinstance(imp, dict):
        raise ConfigError(path, line, f"{what}: imported must be a mapping (as `bench kernel import` writes it)")
    _check_keys(path, imp, _IMPORTED_FIELDS, f"{what} imported")
    values = {}
    for key in ("tree", "symbol", "layout", "file", "source", "digest", "adapter", "release", "raw"):
        v = imp.get(key, "")
        if not isinstance(v, str) or (not v and key not in ("adapter", "release", "raw")):
            raise ConfigError(path, _line(imp, key, line), f"{what}: imported.{key} must be text, got {_show(v)}")
        values[key] = v
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", values["symbol"]) or \
            not name.endswith(":" + values["symbol"]):
        raise ConfigError(path, _line(imp, "symbol", line), f"{what}: imported.symbol {values['symbol']!r} must "
                          "be the function named after the colon")
    if values["layout"] not in IMPORTED_LAYOUTS:
        raise ConfigError(path, _line(imp, "layout", line), f"{what}: layout must be one of "
                          f"{', '.join(IMPORTED_LAYOUTS)}, got {_show(values['layout'])}")
    if (values["layout"] == "adapter") != bool(values["adapter"]):
        raise ConfigError(path, _line(imp, "layout", line), f"{what}: layout adapter needs imported.adapter, "
                          "and only it")
    for key in ("source", "adapter", "raw"):
        if values[key] and not (os.path.isdir if key == "raw" else os.path.isfile)(values[key]):
            raise ConfigError(path, _line(imp, key, line), f"{what}: imported.{key} {values[key]} does not "
                              "exist (seambench's cache was cleared?): run `bench kernel import` again")
    undefined = imp.get("undefined", [])
    if not isinstance(undefined, list) or not all(isinstance(u, str) and re.fullmatch(r"[A-Za-z_]\w{0,127}", u)
                                                  for u in undefined):
        raise ConfigError(path, _line(imp, "undefined", line), f"{what}: imported.undefined must be a list "
                          "of symbol names")
    calls = imp.get("calls", [])
    if not isinstance(calls, list) or not all(isinstance(u, str) and re.fullmatch(r"[A-Za-z_]\w{0,127}", u)
                                              for u in calls):
        raise ConfigError(path, _line(imp, "calls", line), f"{what}: imported.calls must be a list of symbol names")
    leaf_arg = imp.get("leaf_arg", True)
    if not isinstance(leaf_arg, bool):
        raise ConfigError(path, _line(imp, "leaf_arg", line), f"{what}: imported.leaf_arg must be true or false")
    family = body.get("family", "tdcall")
    if family not in FAMILIES:
        raise ConfigError(path, _line(body, "family"), f"{what}: family must be one of {', '.join(FAMILIES)}")
    meant_for = _name_list(path, body, "meant_for", [], leaves, "leaf profile",
                           "must be a list of leaf profiles", what=what, allow_empty=True)
    return Convention(name=name, description=" ".join(_text(path, body, "description", what).split()),
                      family=family, meant_for=meant_for, source=f"{path}:{_line(body, None, body.line)}",
                      imported=Imported(undefined=tuple(undefined), calls=tuple(calls), leaf_arg=leaf_arg,
                                        **values))


def _build_convention(path, name, body, leaves) -> Convention:
    what = f"convention {name!r}"
    family = body.get("family", "seamcall")
    if family not in FAMILIES:
        raise ConfigError(path, _line(body, "family"), f"{what}: family must be one of {', '.join(FAMILIES)}")
    rbp = body.get("rbp", "none")
    if rbp not in RBP_POLICIES:
        raise ConfigError(path, _line(body, "rbp"), f"{what}: rbp must be one of {', '.join(RBP_POLICIES)}, "
                          f"got {rbp!r}")
    fpu = body.get("fpu", "none")
    if fpu not in FPU_POLICIES:
        raise ConfigError(path, _line(body, "fpu"), f"{what}: fpu must be one of {', '.join(FPU_POLICIES)}, "
                          f"got {fpu!r}")
    fpu_mask = _parse_fpu_mask(path, body, what) if "fpu_mask" in body else "xcr0"
    retry_status, retry_max, retry_kernel = _parse_retry(path, body, what) if "retry" in body else (None, 0, False)
    chain = body.get("inject_chain", 0)
    if isinstance(chain, bool) or not isinstance(chain, int) or not 0 <= chain <= 100000:
        raise ConfigError(path, _line(body, "inject_chain"), f"{what}: inject_chain must be 0..100000")
    latency = body.get("emul_latency", 0)
    if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= 100000:
        raise ConfigError(path, _line(body, "emul_latency"), f"{what}: emul_latency must be 0..100000")
    meant_for = _name_list(path, body, "meant_for", [], leaves, "leaf profile",
                           "must be a list of leaf profiles", what=what, allow_empty=True)
    return Convention(
        name=name,
        description=" ".join(_text(path, body, "description", what).split()),
        family=family,
        load=_reg_list(path, body, "load", what, allow_leaf=True),
        store=_reg_list(path, body, "store", what, allow_leaf=True),
        preserve=_reg_list(path, body, "preserve", what, allow_leaf=True),
        rbp=rbp,
        scrub=_reg_list(path, body, "scrub", what),
        fpu=fpu,
        fpu_mask=fpu_mask,
        retry_status=retry_status,
        retry_max=retry_max,
        retry_kernel=retry_kernel,
        inject_chain=chain,
        emul_latency=latency,
        meant_for=meant_for,
        source=f"{path}:{_line(body, None, body.line)}",
    )


# --- the built-in set and user files ----------------------------------------

def cache_dir() -> Path:
    """~/.cache/seambench (XDG_CACHE_HOME respected; SEAMBENCH_CACHE overrides)."""
    base = os.environ.get("SEAMBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "seambench")
    return Path(base)


def configs_dir() -> Path:
    """Built-in YAML: shipped inside the package, or the repository's configs/ when run from a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_configs", here.parent / "configs"):
        if (candidate / "conventions.yaml").exists():
            return candidate
    raise ConfigError(here, 0, "built-in configs (conventions.yaml, leaves.yaml) not found")


@dataclass
class Catalog:
    """Every known leaf profile and convention; user files add to the built-ins."""
    leaves: dict
    conventions: dict
    builtin: frozenset = field(default_factory=frozenset)

    def convention(self, name, option="--conventions"):
        try:
            return self.conventions[name]
        except KeyError:
            raise ConfigError(option, 0, f"unknown convention {name!r}; known: "
                              f"{', '.join(self.conventions)}") from None

    def leaf(self, name, option="--leaves"):
        try:
            return self.leaves[name]
        except KeyError:
            raise ConfigError(option, 0, f"unknown leaf profile {name!r}; known: "
                              f"{', '.join(self.leaves)}") from None

    def with_user_file(self, path) -> "Catalog":
        extra = parse_conventions(path, self.leaves, known=self.conventions)
        return Catalog(self.leaves, {**self.conventions, **extra}, self.builtin)

    def with_conventions(self, extra: dict) -> "Catalog":
        return Catalog(self.leaves, {**self.conventions, **extra}, self.builtin)


def load_builtin() -> Catalog:
    """The built-in catalog, parsed once per process while its files are unchanged (a worker
    process asks for it several times; a Catalog is never changed in place), and kept parsed
    in the cache folder by the files' contents: a run starts dozens of worker processes, and
    parsing costs each ~0.15 s."""
    d = configs_dir()
    return _load_builtin(d, tuple((d / f).read_bytes() for f in BUILTIN_FILES))


BUILTIN_FILES = ("leaves.yaml", "conventions.yaml")


@functools.lru_cache(maxsize=1)
def _load_builtin(d: Path, contents) -> Catalog:
    import pickle
    # keyed by this module's source too: it defines the classes and the parsing
    key = hashlib.sha256(b"\0".join((Path(__file__).read_bytes(),) + contents)).hexdigest()[:24]
    cached = cache_dir() / f"catalog-{key}.pickle"
    try:
        catalog = pickle.loads(cached.read_bytes())
        if isinstance(catalog, Catalog):
            return catalog
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        pass  # absent, or written by another version of the classes: parse
    leaves = parse_leaves(d / "leaves.yaml")
    convs = parse_conventions(d / "conventions.yaml", leaves)
    catalog = Catalog(leaves, convs, frozenset(convs))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(catalog))
        tmp.replace(cached)
    except OSError:
        pass  # only a cache
    return catalog


def derive(conv: Convention, name: str, **changes) -> Convention:
    """A programmatic variant of a convention (used by `bench validate`)."""
    from dataclasses import replace
    return replace(conv, name=name, source=f"derived from {conv.name}", **changes)


# --- suites -----------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    runs: int = 10
    values: int = 40
    warmups: int = 1
    batch_us: float = 100.0
    cpu: int | None = None  # pin to this CPU; default: the last one we may use


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    reference: str
    conventions: tuple
    backends: tuple
    leaves: object  # "meant_for" or a tuple of leaf names
    settings: Settings
    user_conventions: tuple = ()  # extra convention files named by the suite


_SUITE_KEYS = {"suite", "reference", "conventions", "backends", "leaves", "settings", "include"}
_SETTINGS = {"runs": (int, 1, 1000), "values": (int, 3, 100000), "warmups": (int, 0, 100),
             "batch_us": ((int, float), 1, 100000), "cpu": (int, 0, 4095)}


def parse_suite(path, catalog: Catalog, known_backends) -> tuple:
    """Returns (suite, catalog extended with the suite's own convention files)."""
    path = Path(path)
    data = load_yaml(path)
    _check_keys(path, data, _SUITE_KEYS, "a suite")
    name = data.get("suite", path.stem)
    if "suite" in data:
        _check_name(path, _line(data, "suite"), name, "suite")
    includes = data.get("include") or []
    if not isinstance(includes, list) or not all(isinstance(inc, str) and inc for inc in includes):
        raise ConfigError(path, _line(data, "include"), "include must be a list of convention file names, "
                          f"got {_show(includes)}")
    seen = set()
    for i, inc in enumerate(includes):
        inc_path = path.parent / inc
        if os.path.normpath(inc_path) in seen:
            raise ConfigError(path, includes.lines[i], f"{_show(inc)} is included twice")
        seen.add(os.path.normpath(inc_path))
        catalog = catalog.with_user_file(inc_path)
    if data.get("conventions", "all") == "all":
        conventions = tuple(catalog.conventions)
    else:
        conventions = _name_list(path, data, "conventions", None, catalog.conventions, "convention",
                                 "must be `all` or a non-empty list of names")
    backends = _name_list(path, data, "backends", ["emulated"], known_backends, "backend",
                          "must be a non-empty list")
    if data.get("leaves", "meant_for") == "meant_for":
        leaves = "meant_for"
    else:
        leaves = _name_list(path, data, "leaves", None, catalog.leaves, "leaf profile",
                            "must be `meant_for` or a non-empty list of profiles")
    reference = data.get("reference", conventions[0] if conventions else "seamcall")
    if not isinstance(reference, str):
        raise ConfigError(path, _line(data, "reference"), f"reference must name one convention, "
                          f"got {_show(reference)}")
    if reference not in catalog.conventions:
        raise ConfigError(path, _line(data, "reference"), f"unknown reference convention {_show(reference)}")
    raw_settings = data.get("settings", {}) or {}
    if not isinstance(raw_settings, dict):
        raise ConfigError(path, _line(data, "settings"), "settings must be a mapping")
    _check_keys(path, raw_settings, set(_SETTINGS), "settings")
    values = {}
    for key, value in raw_settings.items():
        types, lo, hi = _SETTINGS[key]
        if isinstance(value, bool) or not isinstance(value, types) or not lo <= value <= hi:
            raise ConfigError(path, _line(raw_settings, key), f"settings.{key} must be a number in "
                              f"{lo}..{hi}, got {_show(value)}")
        values[key] = value
    suite = Suite(name=name, path=str(path), reference=reference,
                  conventions=conventions, backends=tuple(backends), leaves=leaves,
                  settings=Settings(**values))
    return suite, catalog
