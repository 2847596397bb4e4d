"""Registry entries for flatten, sigmoid and mse_loss."""

from __future__ import annotations

import itertools
import warnings

import ml_dtypes
import numpy as np

import jaxops
from jaxops.testing import strategies as S
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e4, -1e4, 1e-30], np.float32)

# Half precision: torch and XLA both compute in float32 and round once, so the
# two may differ by one unit in the last place of the result.
HALF_TOL = {"float16": Tol(1e-3, 1e-3), "bfloat16": Tol(8e-3, 8e-3)}
HALF_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def randn(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def _torch():
    import torch

    return torch


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
    yield ErrorInput(SampleInput((x, 3)), ValueError, r"jaxops\.flatten: start_dim \(=3\) is out of range")
    yield ErrorInput(SampleInput((x, 0, -4)), ValueError, r"end_dim \(=-4\) is out of range")
    yield ErrorInput(SampleInput((x, 2, 1)), ValueError, r"start_dim \(=2\) must not come after end_dim \(=1\)")
    yield ErrorInput(SampleInput((np.float32(1.0), 1)), ValueError, r"start_dim \(=1\) is out of range")
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
            return SampleInput((x,), {"start_dim": start, "end_dim": end}, name=name + " (keywords)")
        return SampleInput((x, start, end), name=name)

    return draw()


def _flatten_ref(x, start_dim=0, end_dim=-1):
    return _torch().flatten(x, start_dim, end_dim)


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
            (near_one.astype(HALF_DTYPES[dtype]),), name=f"fuzz regression: {dtype} near 1, torch's rounding",
            fwd_tol=Tol(0.0, 0.0), grad_tol=Tol(0.0, 0.0),
        )
    yield SampleInput((np.zeros((0, 3), np.float32),), name="empty")
    yield SampleInput((rng.integers(-3, 3, (4,)),), name="int64 promotes to float32")
    for dtype, tol in HALF_TOL.items():
        x = (4 * randn(rng, 3, 5)).astype(HALF_DTYPES[dtype])
        yield SampleInput((x,), name=dtype, fwd_tol=tol, grad_tol=tol)
    for i in range(4):
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
    return _torch().sigmoid(x)


def _sigmoid_errors():
    yield ErrorInput(SampleInput(([0.0, 1.0],)), TypeError, r"jaxops\.sigmoid: input must be an array, got list")
    yield ErrorInput(SampleInput((None,)), TypeError, r"jaxops\.sigmoid: input must be an array, got NoneType")


# ---------------------------------------------------------------- mse_loss


# Reductions of at most a few hundred terms summed in a different order.
MSE_TOL = Tol(1e-5, 1e-6)


def _mse_grad_tol(x, y, weight, reduction, base: Tol) -> Tol:
    """Gradient tolerance of one mse_loss sample: ``base`` plus the rounding of the terms it sums.

    A broadcast argument's gradient sums R terms of size |2 d w| / denominator,
    each rounded to the dtype by torch (XLA keeps more precision); the weighted
    mean's weight gradient is a difference of terms of size d^2 / sum(w), which
    XLA (an FMA) and torch round differently. Either can cancel to a result far
    smaller than its terms, so the error bound scales with the terms: a few ulps
    of the largest, times the cotangent (a standard normal, below 4).
    """
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x64 - y64
    if not d.size or not np.isfinite(d).all():
        return base
    w = np.ones_like(d) if weight is None else np.broadcast_to(np.asarray(weight, np.float64), d.shape)
    denominator = 1.0
    if reduction == "mean":
        denominator = abs(float(np.sum(np.asarray(weight, np.float64)))) if weight is not None else d.size
    if not np.isfinite(w).all() or denominator == 0.0:
        return base
    terms = float(np.max(np.abs(2 * d * w))) * d.size / min(x64.size, y64.size) / denominator
    if weight is not None and reduction == "mean":
        terms = max(terms, float(np.max(d * d)) / denominator)
    eps = float(ml_dtypes.finfo(np.asarray(x).dtype).eps)
    return Tol(base.rtol, base.atol + 16 * eps * terms) if np.isfinite(terms) else base


def _mse_samples(rng):
    reductions = ("mean", "sum", "none")
    for reduction, shape in itertools.product(reductions, [(), (7,), (2, 3, 4, 5)]):
        yield SampleInput(
            (randn(rng, *shape), randn(rng, *shape)), {"reduction": reduction}, name=f"{reduction} {shape}"
        )
    for reduction in reductions:
        x, y = randn(rng, 3, 1), randn(rng, 1, 4)
        yield SampleInput((x, y), {"reduction": reduction}, name=f"broadcast both {reduction}")
        w = rng.uniform(0.1, 2.0, (3, 4)).astype(np.float32)
        yield SampleInput(
            (randn(rng, 3, 4), randn(rng, 4)), {"reduction": reduction, "weight": w},
            grad_args=(0, 1, "weight"), name=f"weighted, target broadcast {reduction}",
        )
        specials = np.tile(SPECIALS, 2)
        yield SampleInput(
            (specials, np.roll(specials, 3)), {"reduction": reduction}, name=f"nan/inf {reduction}"
        )
        yield SampleInput(
            (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)),
            {"reduction": reduction}, name=f"empty {reduction}",
        )
    yield SampleInput(
        (randn(rng, 4), randn(rng, 4)), {"weight": np.zeros(4, np.float32)},
        grad_args=(0, 1, "weight"), name="all-zero weight: 0/0",
    )
    # Fuzz regressions: one weighted element, whose weight gradient is 0 up to
    # rounding; and sum(weight) = 1e-20, where (t/s)/s must not become t/(s*s) =
    # t/0 = -inf (found at weight 1e-30; scaled so every value stays moderate).
    for x, y, w in (([0.12573022], [2], 0.0012573), ([3e-9], [0.0], 1e-20)):
        x, y, weight = np.array(x, np.float32), np.array(y), np.array([w], np.float32)
        y = y.astype(np.float32) if y.dtype.kind == "f" else y
        yield SampleInput(
            (x, y), {"weight": weight}, grad_args=(0, 1, "weight"),
            grad_tol=_mse_grad_tol(x, y, weight, "mean", MSE_TOL),
            name=f"fuzz regression: one element, weight {w:g}",
            skip={"jvp": "the weight's tangent cancels terms of size d^2/sum(w) that forward and "
                  "reverse mode round differently; the check's scale, sum |grad * tangent|, "
                  "sees only the cancelled result (the VJP is checked against torch above)"},
        )
    # Fuzz regression: a bfloat16 input broadcast over a target 1000x larger; its
    # gradient sums terms of size 40 that cancel to 0.13, below their rounding.
    x = np.array([[0.125977, -0.131836]], ml_dtypes.bfloat16)
    y = np.array([[34.5, 82], [33, -130], [90.5, 44.75]], ml_dtypes.bfloat16)
    yield SampleInput(
        (x, y), name="fuzz regression: bfloat16 broadcast gradient cancels",
        fwd_tol=HALF_TOL["bfloat16"], grad_tol=_mse_grad_tol(x, y, None, "mean", HALF_TOL["bfloat16"]),
    )
    yield SampleInput(
        (randn(rng, 3, 4), rng.integers(-2, 2, (3, 4))), name="integer target promotes",
    )
    for i in range(6):
        shape = tuple(int(s) for s in rng.integers(1, 6, int(rng.integers(1, 5))))
        reduction = reductions[i % 3]
        kwargs = {"reduction": reduction}
        if i % 2:
            kwargs["weight"] = rng.uniform(0, 1, shape).astype(np.float32)
        yield SampleInput(
            (randn(rng, *shape), randn(rng, *shape)), kwargs, grad_args=(0, 1, "weight"),
            name=f"random {shape} {reduction}",
        )


def _mse_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        full = draw(S.shapes((0, 4), 0, 4))
        partner = draw(S.broadcast_partner(full))
        x_shape, y_shape = (partner, full) if draw(st.booleans()) else (full, partner)
        dtype = draw(st.sampled_from(("float32", "float32", "float16", "bfloat16")))
        x = draw(S.float_arrays(x_shape, S.FLOAT_DTYPES[dtype]))
        if draw(st.booleans()):
            y = draw(S.float_arrays(y_shape, S.FLOAT_DTYPES[dtype]))
        else:
            y = draw(S.int_arrays(y_shape, -3, 3))
        reduction = draw(st.sampled_from(("mean", "sum", "none")))
        kwargs = {"reduction": reduction}
        name = f"fuzz {dtype}{list(x_shape)} vs {y.dtype}{list(y_shape)} {reduction}"
        fwd_tol = HALF_TOL.get(dtype)
        if draw(st.booleans()):
            kwargs["weight"] = np.abs(draw(S.float_arrays(x_shape, S.FLOAT_DTYPES[dtype])))
            name += " weighted"
        grad_tol = _mse_grad_tol(x, y, kwargs.get("weight"), reduction, HALF_TOL.get(dtype, MSE_TOL))
        return SampleInput(
            (x, y), kwargs, grad_args=(0, 1, "weight"), name=name, fwd_tol=fwd_tol, grad_tol=grad_tol
        )

    return draw()


def _mse_ref(input, target, reduction="mean", weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when target broadcasts
        return _torch().nn.functional.mse_loss(input, target, reduction=reduction, weight=weight)


def _mse_errors():
    x = np.zeros((2, 3), np.float32)
    yield ErrorInput(SampleInput((x, x), {"reduction": "avg"}), ValueError, r"jaxops\.mse_loss: reduction \(='avg'\) must be one of")
    yield ErrorInput(SampleInput((x, np.zeros((4,), np.float32))), ValueError, r"target shape \(4,\) does not broadcast with input shape \(2, 3\)")
    yield ErrorInput(SampleInput((x, x), {"weight": np.ones(3, np.float32)}), ValueError, r"weight shape \(3,\) must equal input shape \(2, 3\)")
    yield ErrorInput(SampleInput((np.zeros((2, 3), np.int32), x)), TypeError, r"input must have a floating dtype, got int32")


OPS = [
    OpInfo(
        name="flatten",
        op=jaxops.flatten,
        ref=_flatten_ref,
        sample_inputs=_flatten_samples,
        error_inputs=_flatten_errors,
        formula="out = reshape(x, d[:s] + (prod d[s..e],) + d[e+1:])",
        fwd_tol=Tol(0.0, 0.0),  # a reshape moves values, it computes none
        grad_tol=Tol(0.0, 0.0),
        torch_name="torch.flatten",
        strategy=_flatten_strategy,
    ),
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
        torch_name="torch.sigmoid",
        strategy=_sigmoid_strategy,
    ),
    OpInfo(
        name="mse_loss",
        op=jaxops.mse_loss,
        ref=_mse_ref,
        sample_inputs=_mse_samples,
        error_inputs=_mse_errors,
        grad_args=(0, 1),
        formula="l_n = w_n (x_n - y_n)^2; mean = sum(l) / sum(w)",
        fwd_tol=MSE_TOL,
        grad_tol=MSE_TOL,
        torch_name="torch.nn.functional.mse_loss",
        strategy=_mse_strategy,
    ),
]
