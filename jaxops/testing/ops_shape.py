"""Registry entry for flatten."""

from __future__ import annotations

import numpy as np

import jaxops
from jaxops.testing import strategies as S
from jaxops.testing._common import EXACT, SPECIALS, batch_axis, import_torch, randn
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput

# ---------------------------------------------------------------- flatten


def _flatten_samples(rng):
    for shape, start, end in [
        ((), 0, -1),
        ((), -1, 0),
        ((5,), 0, -1),
        ((2, 3, 4), 0, -1),
        ((2, 3, 4), 1, -1),
        ((2, 3, 4), 0, 1),
        ((2, 3, 4), -2, -1),
        ((2, 3, 4), 1, 1),
        ((2, 3, 4, 5), 1, 2),
        ((2, 3, 4, 5, 6), -4, -2),
        ((2, 0, 3), 1, -1),
        ((0, 3, 4), 1, -1),
        ((0, 3, 4), 0, 1),
    ]:
        yield SampleInput((randn(rng, *shape), start, end), name=f"{shape} {start}..{end}")
    yield SampleInput((rng.integers(-5, 5, (3, 4)),), {"start_dim": 0}, name="int64 keyword")
    yield SampleInput((SPECIALS.reshape(2, 2, 2), 1), name="nan, ±inf, ±0 move unchanged")
    for _ in range(6):
        ndim = int(rng.integers(1, 6))
        shape = tuple(int(s) for s in rng.integers(1, 5, ndim))
        start = int(rng.integers(-ndim, ndim))
        end = int(rng.integers(start % ndim, ndim)) - ndim * int(rng.integers(0, 2))
        yield SampleInput((randn(rng, *shape), start, end), name=f"random {shape} {start}..{end}")


def _flatten_errors():
    x = np.zeros((2, 3, 4), np.float32)
    yield ErrorInput(
        SampleInput((x, 3)), ValueError, r"jaxops\.flatten: start_dim \(=3\) is out of range"
    )
    yield ErrorInput(SampleInput((x, 0, -4)), ValueError, r"end_dim \(=-4\) is out of range")
    yield ErrorInput(
        SampleInput((x, 2, 1)), ValueError, r"start_dim \(=2\) must not come after end_dim \(=1\)"
    )
    yield ErrorInput(
        SampleInput((np.float32(1.0), 1)), ValueError, r"start_dim \(=1\) is out of range"
    )
    yield ErrorInput(SampleInput((x, 1.5)), TypeError, r"start_dim must be an int, got 1\.5")
    yield ErrorInput(SampleInput(([1, 2],)), TypeError, r"input must be an array, got list")


def _flatten_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        shape = draw(S.shapes((0, 5), 0, 4))
        rank = max(len(shape), 1)
        start = draw(st.integers(-rank, rank - 1))
        end = draw(st.integers(start % rank, rank - 1)) - rank * draw(st.integers(0, 1))
        dtype = draw(st.sampled_from(("float32", "float16", "bfloat16", "int32")))
        if dtype == "int32":
            x = draw(S.int_arrays(shape, -100, 100, np.int32))
        else:
            x = draw(S.float_arrays(shape, S.FLOAT_DTYPES[dtype]))
        name = f"fuzz {dtype}{list(shape)} {start}..{end}"
        if draw(st.booleans()):
            return SampleInput(
                (x,), {"start_dim": start, "end_dim": end}, name=name + " (keywords)"
            )
        return SampleInput((x, start, end), name=name)

    return draw()


def _flatten_ref(x, start_dim=0, end_dim=-1):
    return import_torch().flatten(x, start_dim, end_dim)


OPS = [
    OpInfo(
        name="flatten",
        op=jaxops.flatten,
        ref=_flatten_ref,
        sample_inputs=_flatten_samples,
        error_inputs=_flatten_errors,
        formula="out = reshape(x, d[:s] + (prod d[s..e],) + d[e+1:])",
        fwd_tol=EXACT,  # a reshape moves values, it computes none
        grad_tol=EXACT,
        batch_args=batch_axis(0),
        torch_name="torch.flatten",
        strategy=_flatten_strategy,
    ),
]
