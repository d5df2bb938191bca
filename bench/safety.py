"""Is a convention correct for a leaf?  Predicted from the declarations alone.

A convention is SAFE for a leaf when every register the caller relies on comes
back intact and every output it promises reaches the struct:
- callee-saved registers (SysV ABI and kernel C alike) the leaf writes are saved;
- RBP, if the leaf clobbers it, is restored (frame, stack or struct);
- the struct pointer is still valid when outputs are stored (the leaf may
  overwrite RSI);
- vector state the leaf may reset to INIT is saved around the call;
- registers it stores back are ones it does not scrub first (scrub comes after).
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import CALLEE_SAVED, Resolved


@dataclass(frozen=True)
class Verdict:
    safe: bool
    reasons: tuple

    @property
    def text(self):
        return "SAFE" if self.safe else "UNSAFE: " + "; ".join(self.reasons)


def static_verdict(r: Resolved) -> Verdict:
    conv, leaf = r.conv, r.leaf
    reasons = []
    saved = set(r.preserve) | ({"rbp"} if r.rbp in ("frame", "stack", "struct") else set())
    for reg in CALLEE_SAVED:
        if reg in leaf.all_writes and reg not in saved:
            what = "RBP clobbered" if reg == "rbp" else f"{reg} written"
            reasons.append(f"{what} by leaf {leaf.name}, not saved by {conv.name}")
    pointer_lost = ("rsi" in leaf.writes or "rsi" in r.load) and not r.keeps_pointer_on_stack
    if r.store and pointer_lost:
        reasons.append(f"{conv.name} stores outputs through RSI after leaf {leaf.name} may have "
                       "overwritten it (struct pointer not kept on the stack)")
    if r.store:
        missing = [reg for reg in leaf.outputs if reg not in r.store]
        if missing:
            reasons.append(f"output {', '.join(missing)} of leaf {leaf.name} not written back by {conv.name}")
    if leaf.avx_reset and conv.fpu == "none":
        reasons.append(f"leaf {leaf.name} may reset AVX state to INIT and {conv.name} saves no vector state")
    return Verdict(not reasons, tuple(reasons))
