"""Registry entry for sigmoid."""

from __future__ import annotations

import numpy as np

import jaxops
from jaxops.testing import strategies as S
from jaxops.testing._common import (
    EXACT,
    HALF_DTYPES,
    HALF_TOL,
    SPECIALS,
    batch_axis,
    half_sample,
    import_torch,
    randn,
)
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol

# ---------------------------------------------------------------- sigmoid


def _sigmoid_samples(rng):
    yield SampleInput((SPECIALS.copy(),), name="nan, ±inf, ±0, ±1e4")
    yield SampleInput((np.array(0.25, np.float32),), name="0-d")
    yield SampleInput((np.linspace(-30, 30, 61, dtype=np.float32),), name="saturation range")
    # Fuzz regression: near saturation a one-ulp difference in y changes 1 - y by
    # half; forward and gradient are computed as torch does, hence bit-exact.
    near_one = np.array([[4.004, 4.06, 3.584, 5.01, 7.086], [13.805, 0.2058, 2.025, 3.797, 6.266]])
    for dtype in ("float16", "bfloat16"):
        yield SampleInput(
            (near_one.astype(HALF_DTYPES[dtype]),),
            name=f"fuzz regression: {dtype} near 1, torch's rounding",
            fwd_tol=EXACT,
            grad_tol=EXACT,
        )
    yield SampleInput((np.zeros((0, 3), np.float32),), name="empty")
    yield SampleInput((rng.integers(-3, 3, (4,)),), name="int64 promotes to float32")
    for dtype, half in HALF_DTYPES.items():
        yield half_sample(dtype, ((4 * randn(rng, 3, 5)).astype(half),), name=dtype)
    for _ in range(4):
        shape = tuple(int(s) for s in rng.integers(1, 6, int(rng.integers(1, 5))))
        yield SampleInput(((3 * randn(rng, *shape)),), name=f"random {shape}")


def _sigmoid_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        shape = draw(S.shapes((0, 4), 0, 5))
        dtype = draw(st.sampled_from(("float32", "float16", "bfloat16", "int64")))
        if dtype == "int64":
            x = draw(S.int_arrays(shape, -20, 20))
            return SampleInput((x,), name=f"fuzz int64{list(shape)}")
        x = draw(S.float_arrays(shape, S.FLOAT_DTYPES[dtype], scales=(1.0, 10.0, 100.0)))
        tol = HALF_TOL.get(dtype)
        return SampleInput((x,), name=f"fuzz {dtype}{list(shape)}", fwd_tol=tol, grad_tol=tol)

    return draw()


def _sigmoid_ref(x):
    return import_torch().sigmoid(x)


def _sigmoid_errors():
    yield ErrorInput(
        SampleInput(([0.0, 1.0],)), TypeError, r"jaxops\.sigmoid: input must be an array, got list"
    )
    yield ErrorInput(
        SampleInput((None,)), TypeError, r"jaxops\.sigmoid: input must be an array, got NoneType"
    )


OPS = [
    OpInfo(
        name="sigmoid",
        op=jaxops.sigmoid,
        ref=_sigmoid_ref,
        sample_inputs=_sigmoid_samples,
        error_inputs=_sigmoid_errors,
        formula="S(x) = 1 / (1 + exp(-x))",
        # One exp and one division: a few ulps apart at most.
        fwd_tol=Tol(1e-6, 1e-7),
        grad_tol=Tol(1e-6, 1e-7),
        batch_args=batch_axis(0),
        torch_name="torch.sigmoid",
        strategy=_sigmoid_strategy,
    ),
]
