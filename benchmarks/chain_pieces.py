"""Why the reference chain is timed in pieces: how often does one piece of a chain run long?

Times --rows rows of five back-to-back chains of --hundreds x 100 dependent ADDs (the native
loop's reference, sb_chain_ticks) and prints, in TSC ticks per ADD, the quantiles of the whole
row's mean (what one long chain would give a sample) and of the row's median piece (what the
sampler uses, _native/measure.c ref_ticks), and how many rows had one piece more than 5% over
their median.  Not a test: it prints what this machine does.

    python benchmarks/chain_pieces.py [--rows 3000] [--hundreds 800]
"""
from __future__ import annotations

import argparse
import statistics
import sys

from bench.native import _core, machine


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/chain_pieces.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--hundreds", type=int, default=800, help="hundreds of ADDs a piece (800: ~30 us here)")
    a = p.parse_args(argv)
    machine.pin()
    k = _core.REF_PIECES
    rows = [[_core.chain_ticks(a.hundreds) / (100 * a.hundreds) for _ in range(k)] for _ in range(a.rows)]

    def q(values, ps=(1, 10, 50, 90, 99)):
        v = sorted(values)
        return "  ".join(f"{p_}%: {v[int(p_ / 100 * (len(v) - 1))]:.4f}" for p_ in ps)
    print(f"{a.rows} rows of {k} chains of {100 * a.hundreds} ADDs; TSC ticks per ADD")
    print("whole row (mean)  ", q([sum(r) / k for r in rows]))
    print("median piece      ", q([statistics.median(r) for r in rows]))
    long_ = [r for r in rows if max(r) > 1.05 * statistics.median(r)]
    worst = max(max(r) / statistics.median(r) for r in rows)
    print(f"rows with a piece >5% over their median: {len(long_)} ({len(long_) / a.rows:.1%}); "
          f"longest piece {worst:.2f}x its row's median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
