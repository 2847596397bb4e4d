"""``python -m jaxops``: the live parity table against PyTorch.

For every op in the registry: its formula, how many configurations were
checked, forward RMSE and max abs error vs torch, gradient (VJP) RMSE and max
abs error, and a verdict. Uses the same sample generators as the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Sequence


@dataclasses.dataclass
class Row:
    name: str
    formula: str = ""
    configs: int = 0
    fwd_sq: float = 0.0
    fwd_n: int = 0
    fwd_max: float = 0.0
    grad_sq: float = 0.0
    grad_n: int = 0
    grad_max: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)

    def add(self, comparisons, kind: str, sample) -> None:
        for c in comparisons:
            if not c.ok:
                self.failures.append(f"{sample!r} {c.what}: {c.message}")
            if c.dtype not in ("float32", "float64"):
                continue  # half-precision samples count for the verdict, not the float32 RMSE
            if kind == "fwd":
                self.fwd_sq, self.fwd_n = self.fwd_sq + c.sq_sum, self.fwd_n + c.count
                self.fwd_max = max(self.fwd_max, c.max_abs)
            else:
                self.grad_sq, self.grad_n = self.grad_sq + c.sq_sum, self.grad_n + c.count
                self.grad_max = max(self.grad_max, c.max_abs)

    @property
    def verdict(self) -> str:
        return "PASS" if not self.failures else f"FAIL ({len(self.failures)})"


def _rmse(sq: float, n: int) -> str:
    return f"{math.sqrt(sq / n):.1e}" if n else "-"


def check_op(name: str, max_configs: int | None = None) -> Row:
    """Runs every sample of ``name`` forward and through the VJP against torch.

    ``max_configs`` checks only that many samples, evenly spaced over the op's
    list (corners and random configurations alike), for a quick overview.
    """
    from jaxops.testing import REGISTRY, parity

    info = REGISTRY[name]
    row = Row(name, info.formula)
    samples = info.samples()
    if max_configs is not None and len(samples) > max_configs:
        samples = [samples[i * len(samples) // max_configs] for i in range(max_configs)]
    for sample in samples:
        row.configs += 1
        try:
            if "forward" not in sample.skip:
                row.add(parity.check_forward(info, sample), "fwd", sample)
            if "vjp" not in sample.skip:
                row.add(parity.check_vjp(info, sample), "grad", sample)
        except Exception as exc:  # a crash is a failed check, reported, not fatal
            row.failures.append(f"{sample!r}: {type(exc).__name__}: {exc}")
    return row


def format_table(rows: Sequence[Row]) -> str:
    header = ("#", "op", "configs", "fwd RMSE", "fwd max|err|", "grad RMSE", "grad max|err|", "verdict")
    body = []
    for i, r in enumerate(rows, 1):
        body.append((
            str(i), r.name, str(r.configs), _rmse(r.fwd_sq, r.fwd_n), f"{r.fwd_max:.1e}",
            _rmse(r.grad_sq, r.grad_n), f"{r.grad_max:.1e}" if r.grad_n else "-", r.verdict,
        ))
    widths = [max(len(line[k]) for line in (header, *body)) for k in range(len(header))]
    fmt = lambda line: "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()  # noqa: E731
    lines = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body)]
    lines += ["", "Formulas:"]
    width = max(len(r.name) for r in rows)
    for i, r in enumerate(rows, 1):
        lines.append(f"{i:>2}  {r.name.ljust(width)}  {r.formula}")
    return "\n".join(lines)


def format_markdown(rows: Sequence[Row]) -> str:
    """The table as Markdown, with each op's formula beside it (for notebooks and docs)."""
    lines = [
        "| op | formula | configs | fwd RMSE | fwd max\\|err\\| | grad RMSE | grad max\\|err\\| "
        "| verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        formula = f"`{r.formula}`".replace("|", "\\|") if r.formula else ""
        cells = (
            str(r.configs), _rmse(r.fwd_sq, r.fwd_n), f"{r.fwd_max:.1e}",
            _rmse(r.grad_sq, r.grad_n), f"{r.grad_max:.1e}" if r.grad_n else "-",
        )
        lines.append(f"| `{r.name}` | {formula} | " + " | ".join(cells) + f" | {r.verdict} |")
    return "\n".join(lines)


# Each configuration compiles its own programs; this many per op keeps the report under a
# minute on a 2-core CPU while still covering each op's corners (samples are evenly spread).
DEFAULT_CONFIGS = 8


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxops", description=__doc__)
    parser.add_argument("--op", action="append", help="check only this op (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every failing check")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"check every registered configuration (default: {DEFAULT_CONFIGS} per op, evenly "
        "spread; the test suite runs them all)",
    )
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        print(
            "python -m jaxops compares against PyTorch, which is not installed.\n"
            'Install the test extra:  pip install -e ".[test]"',
            file=sys.stderr,
        )
        return 2

    import jax

    from jaxops.testing import REGISTRY

    names = args.op or list(REGISTRY)
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        parser.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")

    print(
        f"jaxops parity report: jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"torch {torch.__version__.split('+')[0]} (forward and VJP, float32 unless noted)\n"
    )
    start = time.perf_counter()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            rows.append(check_op(name, None if args.all else DEFAULT_CONFIGS))
    print(format_table(rows))
    failed = [r for r in rows if r.failures]
    print(f"\n{sum(r.configs for r in rows)} configurations in {time.perf_counter() - start:.1f} s.")
    for r in failed:
        shown = r.failures if args.verbose else r.failures[:3]
        print(f"\n{r.name}: {len(r.failures)} failing check(s)")
        for f in shown:
            print(f"  - {f}")
    return 1 if failed else 0
