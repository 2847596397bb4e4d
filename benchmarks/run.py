"""Times jaxops against PyTorch (and the bare lax primitive) on realistic workloads.

    python benchmarks/run.py [--quick] [--op NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import workloads  # noqa: E402


def all_cases(quick: bool):
    for mod in pkgutil.iter_modules(workloads.__path__):
        yield from importlib.import_module(f"workloads.{mod.name}").cases(quick)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repetitions")
    parser.add_argument("--op", action="append", help="only this op (repeatable)")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    harness.setup_torch()
    reps = args.reps or (5 if args.quick else 15)
    print(f"{'op':<18}{'workload':<44}{'mode':<9}{'jaxops ms':>10}{'torch ms':>10}{'lax ms':>9}{'ratio':>7}{'compile s':>10}{'GFLOP/s':>9}")
    for case in all_cases(args.quick):
        if args.op and case.op not in args.op:
            continue
        stats = harness.measure(case.make(), reps=reps)
        ms = lambda k: f"{stats[k].median_s * 1e3:.2f}" if k in stats else "-"  # noqa: E731
        gflops = f"{case.flops / stats['jaxops'].median_s / 1e9:.1f}" if case.flops else "-"
        ratio = stats["jaxops"].median_s / stats["torch"].median_s if "torch" in stats else float("nan")
        print(f"{case.op:<18}{case.workload:<44}{case.mode:<9}{ms('jaxops'):>10}{ms('torch'):>10}{ms('lax'):>9}{ratio:>7.2f}{stats['jaxops'].compile_s:>10.2f}{gflops:>9}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
