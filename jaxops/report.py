"""``python -m jaxops``: the live parity table against PyTorch.

For every op in the registry: its formula, how many configurations were
checked, forward RMSE and max abs error vs torch, gradient (VJP) RMSE and max
abs error, a verdict, and how far each of jaxops and torch is from torch run in
float64 (who is nearer the truth). Uses the test suite's sample generators.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class Error:
    """Accumulates absolute errors over many elements: RMSE and max."""

    sq: float = 0.0
    n: int = 0
    max: float = 0.0

    def add(self, sq: float, n: int, max_abs: float) -> None:
        self.sq, self.n, self.max = self.sq + sq, self.n + n, max(self.max, max_abs)

    def add_diff(self, diff: np.ndarray) -> None:
        self.add(float(np.sum(diff**2)), int(diff.size), float(np.max(diff, initial=0.0)))

    def rmse(self) -> str:
        return f"{math.sqrt(self.sq / self.n):.1e}" if self.n else "-"

    def rms(self) -> str:
        """The root mean square, two significant digits (for errors in ulps)."""
        return f"{math.sqrt(self.sq / self.n):.2g}" if self.n else "-"

    def max_str(self) -> str:
        return f"{self.max:.1e}" if self.n else "-"


@dataclasses.dataclass
class Row:
    """One op's line of the report.

    ``fwd``/``grad``: absolute errors of jaxops against torch, both in float32
    (float32 and float64 samples). ``*_f64``: float32 jaxops and float32 torch
    each against torch run in float64 on the same inputs cast up (float32
    samples), in float32 ulps, so the table shows which is nearer the exact result.
    """

    name: str
    formula: str = ""
    configs: int = 0
    fwd: Error = dataclasses.field(default_factory=Error)
    grad: Error = dataclasses.field(default_factory=Error)
    jax_fwd_f64: Error = dataclasses.field(default_factory=Error)
    torch_fwd_f64: Error = dataclasses.field(default_factory=Error)
    jax_grad_f64: Error = dataclasses.field(default_factory=Error)
    torch_grad_f64: Error = dataclasses.field(default_factory=Error)
    failures: list[str] = dataclasses.field(default_factory=list)

    def add(self, comparisons, kind: str, sample) -> None:
        for c in comparisons:
            if not c.ok:
                self.failures.append(f"{sample!r} {c.what}: {c.message}")
            if c.dtype in (
                "float32",
                "float64",
            ):  # half-precision samples count for the verdict only
                (self.fwd if kind == "fwd" else self.grad).add(c.sq_sum, c.count, c.max_abs)

    @property
    def verdict(self) -> str:
        return "PASS" if not self.failures else f"FAIL ({len(self.failures)})"


def _add_against_truth(jax_err: Error, torch_err: Error, ours, theirs, truth) -> None:
    """Errors of ``ours`` and ``theirs`` against ``truth``, leaf by leaf, where all three are
    finite."""
    from jaxops.testing import parity

    for o, t, e in zip(ours, theirs, truth):
        o, t, e = parity.to_numpy(o), parity.to_numpy(t), parity.to_numpy(e)
        if o is None or e is None or e.dtype.kind != "f" or o.shape != e.shape:
            continue
        assert t is not None  # theirs and truth come from the same torch call: t mirrors e
        o, t, e = o.astype(np.float64), t.astype(np.float64), e.astype(np.float64)
        finite = np.isfinite(o) & np.isfinite(t) & np.isfinite(e)
        o, t, e = o[finite], t[finite], e[finite]
        if not e.size:
            continue
        # In float32 ulps of the exact value, floored at the leaf's RMS magnitude: outputs
        # of 1e4 and of 1e-2 weigh alike, and a result that cancels to ~0 is not judged
        # in ulps of 0.
        ulp = np.finfo(np.float32).eps * np.maximum(np.abs(e), np.sqrt(np.mean(e**2)))
        ulp = np.where(ulp > 0, ulp, 1.0)  # an all-zero leaf: any error counts in absolute terms
        jax_err.add_diff(np.abs(o - e) / ulp)
        torch_err.add_diff(np.abs(t - e) / ulp)


def _against_float64(info, sample, row: Row) -> None:
    """Adds the float32 sample's errors of jaxops and torch against torch in float64."""
    from jaxops.testing import is_floating, parity

    floating = [a for a in sample.arrays() if is_floating(a.dtype)]
    if not floating or any(a.dtype != np.float32 for a in floating):
        return
    exact = parity.cast_floating(sample, np.float64)
    if "forward" not in sample.skip:
        truth = parity.leaves(parity.call_torch(info, exact)[0])
        ours = parity.leaves(parity.call_jax(info, sample))
        theirs = parity.leaves(parity.call_torch(info, sample)[0])
        _add_against_truth(row.jax_fwd_f64, row.torch_fwd_f64, ours, theirs, truth)
    if "vjp" not in sample.skip and info.grad_refs(sample):
        ours, cot = parity.jax_vjp(info, sample)
        theirs = parity.torch_vjp(info, sample, cot)
        truth = parity.torch_vjp(info, exact, cot)
        _add_against_truth(row.jax_grad_f64, row.torch_grad_f64, ours, theirs, truth)


def check_op(name: str, max_configs: int | None = None, float64: bool = True) -> Row:
    """Runs every sample of ``name`` forward and through the VJP against torch.

    ``max_configs`` checks only that many samples, evenly spaced over the op's
    list (corners and random configurations alike), for a quick overview.
    ``float64`` also measures jaxops and torch against torch in float64.
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
            if float64:
                _against_float64(info, sample, row)
        except Exception as exc:  # a crash is a failed check, reported, not fatal
            row.failures.append(f"{sample!r}: {type(exc).__name__}: {exc}")
    return row


_HEADER = (
    "configs",
    "fwd RMSE",
    "fwd max|err|",
    "grad RMSE",
    "grad max|err|",
    "fwd ulps: jaxops",
    "torch",
    "grad ulps: jaxops",
    "torch",
)

FLOAT64_NOTE = (
    "fwd/grad: jaxops vs torch, both float32. ulps: the RMS error of float32 jaxops and of "
    "float32\n"
    "torch against torch in float64 on the same inputs cast up, in float32 ulps of the exact "
    "value\n"
    "(floored at the output's RMS); the smaller of each pair is nearer the exact result, 0.5 is "
    "correct\n"
    "rounding. roi_pool/roi_align compute bin edges in the input dtype: the float64 run can put a\n"
    "sample lying on a bin edge in another bin than both float32 runs do (a different bin, not "
    "rounding)."
)


def _cells(r: Row) -> tuple[str, ...]:
    return (
        str(r.configs),
        r.fwd.rmse(),
        r.fwd.max_str(),
        r.grad.rmse(),
        r.grad.max_str(),
        r.jax_fwd_f64.rms(),
        r.torch_fwd_f64.rms(),
        r.jax_grad_f64.rms(),
        r.torch_grad_f64.rms(),
    )


def format_table(rows: Sequence[Row]) -> str:
    header = ("#", "op", *_HEADER, "verdict")
    body = [(str(i), r.name, *_cells(r), r.verdict) for i, r in enumerate(rows, 1)]
    widths = [max(len(line[k]) for line in (header, *body)) for k in range(len(header))]
    fmt = lambda line: "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()  # noqa: E731
    lines = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body), "", FLOAT64_NOTE]
    lines += ["", "Formulas:"]
    width = max(len(r.name) for r in rows)
    for i, r in enumerate(rows, 1):
        lines.append(f"{i:>2}  {r.name.ljust(width)}  {r.formula}")
    return "\n".join(lines)


def format_markdown(rows: Sequence[Row]) -> str:
    """The table as Markdown, with each op's formula beside it (for notebooks and docs)."""
    header = ("op", "formula", *(h.replace("|", "\\|") for h in _HEADER), "verdict")
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(_HEADER) + "---|"]
    for r in rows:
        formula = f"`{r.formula}`".replace("|", "\\|") if r.formula else ""
        lines.append(f"| `{r.name}` | {formula} | " + " | ".join(_cells(r)) + f" | {r.verdict} |")
    return "\n".join(lines) + "\n\n" + FLOAT64_NOTE.replace("\n", " ")


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
    parser.add_argument(
        "--configs",
        type=int,
        default=DEFAULT_CONFIGS,
        metavar="N",
        help=f"configurations per op, evenly spread (default {DEFAULT_CONFIGS})",
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
            rows.append(check_op(name, None if args.all else args.configs))
    print(format_table(rows))
    failed = [r for r in rows if r.failures]
    print(
        f"\n{sum(r.configs for r in rows)} configurations in {time.perf_counter() - start:.1f} s."
    )
    for r in failed:
        shown = r.failures if args.verbose else r.failures[:3]
        print(f"\n{r.name}: {len(r.failures)} failing check(s)")
        for f in shown:
            print(f"  - {f}")
    return 1 if failed else 0
