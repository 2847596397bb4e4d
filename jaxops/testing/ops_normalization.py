"""Registry entry for batch_norm."""

from __future__ import annotations

import itertools
import math

import numpy as np

import jaxops
from jaxops.testing._common import HALF_DTYPES, batch_axis, half_sample, import_torch, randn
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol

# ---------------------------------------------------------------- batch_norm


def _stats(rng: np.random.Generator, c: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    return randn(rng, c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)


def _affine(rng: np.random.Generator, c: int, dtype=np.float32) -> dict:
    return {"weight": rng.uniform(0.5, 1.5, c).astype(dtype), "bias": randn(rng, c).astype(dtype)}


# Training with two values per channel: the exact input gradient is O(eps / var), a
# cancellation of O(1) terms, and float32 keeps a few ulps of those (torch's backward and ours
# are each ~1e-6 from a float64 reference, on opposite sides).
_TWO_VALUES_GRAD_TOL = Tol(1e-5, 1e-5)


def _bn_sample(
    rng,
    shape,
    training,
    name,
    *,
    stats=True,
    affine=True,
    offset=0.0,
    fwd_tol=None,
    grad_tol=None,
    **kwargs,
):
    c = shape[1]
    x = randn(rng, *shape) + np.float32(offset)
    rm, rv = _stats(rng, c) if stats else (None, None)
    kw = dict(_affine(rng, c) if affine else {}, training=training, **kwargs)
    if grad_tol is None and training and math.prod(shape) // c == 2:
        grad_tol = _TWO_VALUES_GRAD_TOL
    return SampleInput((x, rm, rv), kw, name=name, fwd_tol=fwd_tol, grad_tol=grad_tol)


def _batch_norm_samples(rng):
    # Every rank torch's BatchNorm1d/2d/3d covers (and one more), in both modes.
    for shape, training in itertools.product(
        [(4, 3), (2, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4), (2, 2, 1, 2, 3, 2)], (True, False)
    ):
        yield _bn_sample(
            rng, shape, training, f"rank {len(shape)} {'train' if training else 'eval'}"
        )
    yield _bn_sample(rng, (3, 4, 5), True, "train without running stats", stats=False)
    yield _bn_sample(rng, (3, 4, 5), True, "train, no weight/bias", affine=False)
    yield _bn_sample(rng, (3, 4, 5), False, "eval, no weight/bias", affine=False)
    x, (rm, rv) = randn(rng, 3, 2, 4), _stats(rng, 2)
    yield SampleInput((x, rm, rv), {"bias": randn(rng, 2), "training": True}, name="bias only")
    yield SampleInput(
        (x, rm, rv), {"weight": randn(rng, 2), "training": False}, name="weight only (negative too)"
    )
    for momentum in (0.0, 1.0, 1, 0.75):
        yield _bn_sample(rng, (4, 3, 3), True, f"momentum {momentum!r}", momentum=momentum)
    yield _bn_sample(rng, (4, 3, 3), True, "eps 1e-1", eps=0.1)
    yield _bn_sample(rng, (4, 3, 3), False, "eval eps 0", eps=0.0)
    yield _bn_sample(rng, (1, 3, 4), True, "N=1, spatial 4")
    yield _bn_sample(rng, (2, 3), True, "two values per channel")
    yield _bn_sample(rng, (5, 1, 2, 2), True, "C=1")
    # Positional weight, bias, training, momentum, eps.
    x, (rm, rv), aff = randn(rng, 3, 2, 4), _stats(rng, 2), _affine(rng, 2)
    yield SampleInput(
        (x, rm, rv, aff["weight"], aff["bias"], True, 0.2, 1e-3),
        name="all positional",
        grad_args=(0, 3, 4),
    )
    # Constant channels: jaxops gives exactly `bias` (tests/test_norm_loss.py); torch's
    # x * alpha + beta with alpha = w / sqrt(eps) ~ 300 is off by ~ulp(7 * 300) = 2.4e-4.
    const = np.broadcast_to(np.array([0.1, -3.0, 7.0], np.float32)[None, :, None], (4, 3, 5)).copy()
    yield SampleInput(
        (const, *_stats(rng, 3)),
        dict(_affine(rng, 3), training=True),
        name="constant channels",
        fwd_tol=Tol(1e-5, 5e-4),
    )
    # torch's CPU kernels form x * alpha + beta and x - mean in float32, losing ~ulp(1e4) = 1e-3
    # absolute under this offset, forward and backward; jaxops stays within ~1e-6 of a float64
    # reference here (tests/test_norm_loss.py), so these tolerances measure torch's error.
    yield _bn_sample(
        rng,
        (4, 3, 6),
        True,
        "offset 1e4",
        offset=1e4,
        fwd_tol=Tol(1e-5, 2e-3),
        grad_tol=Tol(1e-3, 5e-3),
    )
    yield _bn_sample(rng, (4, 3, 6), False, "eval offset 1e4", offset=1e4, fwd_tol=Tol(1e-5, 2e-3))
    for training in (True, False):
        x = randn(rng, 3, 4, 5)
        x[1, 0, 2], x[2, 1, 0], x[0, 2, 3] = (
            np.nan,
            np.inf,
            -np.inf,
        )  # inf first in its row: a shift
        rm, rv = _stats(rng, 4)
        yield SampleInput(
            (x, rm, rv),
            dict(_affine(rng, 4), training=training),
            name=f"nan/±inf channels {training}",
        )
        yield SampleInput(
            (np.zeros((0, 3, 4), np.float32), *_stats(rng, 3)),
            dict(_affine(rng, 3), training=training),
            name=f"empty batch {training}",
        )
        # torch's own OpInfo sample: an empty 1-D input comes back as it is, statistics untouched.
        yield SampleInput(
            (np.zeros((0,), np.float32), *_stats(rng, 3)),
            dict(_affine(rng, 3), training=training),
            name=f"empty 1-D input {training}",
        )
    for dtype, half in HALF_DTYPES.items():
        # Half input with float32 parameters (torch's mixed mode) and all-half.
        yield half_sample(
            dtype,
            (randn(rng, 4, 3, 5).astype(half), *_stats(rng, 3)),
            dict(_affine(rng, 3), training=True),
            name=f"{dtype} input, float32 params",
        )
        yield half_sample(
            dtype,
            (randn(rng, 4, 3, 5).astype(half), *_stats(rng, 3, half)),
            dict(_affine(rng, 3, half), training=False),
            name=f"{dtype} eval",
        )
    for i in range(6):
        ndim = int(rng.integers(2, 6))
        shape = tuple(int(s) for s in rng.integers(1, 5, ndim))
        shape = (shape[0] + 1,) + shape[1:]  # at least two values per channel
        yield _bn_sample(
            rng,
            shape,
            bool(i % 2),
            f"random {shape}",
            stats=not i % 2 or bool(i % 3),
            affine=i % 4 != 1,
            momentum=float(rng.uniform(0, 1)),
            eps=float(10 ** rng.uniform(-6, -1)),
        )


def _batch_norm_ref(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    rm = None if running_mean is None else running_mean.clone()
    rv = None if running_var is None else running_var.clone()
    out = import_torch().nn.functional.batch_norm(
        input, rm, rv, weight, bias, training, momentum, eps
    )
    return out, rm, rv


def _batch_norm_errors():
    x = np.zeros((4, 3, 2), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    fail = r"jaxops\.batch_norm: "
    yield ErrorInput(
        SampleInput((np.zeros(3, np.float32), rm, rv)),
        ValueError,
        fail + r"input must have 2 or more dimensions \(N, C, \*\), got shape \(3,\)",
    )
    yield ErrorInput(
        SampleInput((np.zeros((1, 3), np.float32), rm, rv), {"training": True}),
        ValueError,
        r"expected more than 1 value per channel when training, got input shape \(1, 3\)",
    )
    yield ErrorInput(
        SampleInput((np.zeros((1, 3, 1, 1), np.float32), None, None), {"training": True}),
        ValueError,
        r"more than 1 value per channel .* \(1, 3, 1, 1\)",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"training": True, "eps": 0.0}),
        ValueError,
        r"eps \(=0\.0\) must be positive during training",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"eps": -1e-3}),
        ValueError,
        r"eps \(=-0\.001\) must be non-negative",
    )
    yield ErrorInput(
        SampleInput((x, None, rv)), ValueError, r"running_mean must be given in evaluation mode"
    )
    yield ErrorInput(
        SampleInput((x, rm, None)), ValueError, r"running_var must be given in evaluation mode"
    )
    yield ErrorInput(
        SampleInput((x, rm, None), {"training": True}),
        ValueError,
        r"running_mean and running_var must either both be None or neither be None",
    )
    yield ErrorInput(
        SampleInput((x, np.zeros(4, np.float32), rv)),
        ValueError,
        r"running_mean should contain 3 elements "
        r"\(one per channel of input of shape \(4, 3, 2\)\), got shape \(4,\)",
    )
    yield ErrorInput(
        SampleInput((x, rm, np.ones(2, np.float32)), {"training": True}),
        ValueError,
        r"running_var should contain 3 elements .* got shape \(2,\)",
    )
    yield ErrorInput(
        SampleInput((x, np.zeros((3, 1), np.float32), rv)),
        ValueError,
        r"running_mean should contain 3 elements .* got shape \(3, 1\)",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"weight": np.ones(4, np.float32)}),
        ValueError,
        r"weight should contain 3 elements .* got shape \(4,\)",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"bias": np.ones(2, np.float32)}),
        ValueError,
        r"bias should contain 3 elements .* got shape \(2,\)",
    )
    yield ErrorInput(
        SampleInput((np.zeros((4, 3), np.int32), rm, rv)),
        TypeError,
        r"input must have a floating dtype, got int32",
    )
    yield ErrorInput(
        SampleInput((x, rm.astype(np.int32), rv)),
        TypeError,
        r"running_mean must have a floating dtype, got int32",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"training": True, "momentum": None}),
        TypeError,
        r"momentum must be a float, got None .*num_batches_tracked",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"momentum": "0.1"}),
        TypeError,
        r"momentum must be a float, got '0\.1'",
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"eps": np.ones(2, np.float32)}), TypeError, r"eps must be a float"
    )
    yield ErrorInput(
        SampleInput((x, rm, rv), {"training": 1}), TypeError, r"training must be a bool, got 1"
    )
    yield ErrorInput(
        SampleInput(([[1.0, 2.0]], rm, rv)), TypeError, r"input must be an array, got list"
    )


def _batch_norm_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        ndim = draw(st.integers(2, 5))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
        training = draw(st.booleans())
        if training and shape[0] * int(np.prod(shape[2:])) == 1:
            shape = (2,) + shape[1:]
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        c = shape[1]
        scale = draw(st.sampled_from([1e-2, 1.0, 1e2]))
        offset = draw(st.sampled_from([0.0, 5.0, -1e3]))
        # An offset 1e5 times the spread leaves torch's float32 result itself wrong by percents
        # (jaxops stays within 1e-7 of float64: tests/test_norm_loss.py checks that precision).
        offset = offset if abs(offset) <= 1e3 * scale else 0.0
        x = randn(rng, *shape) * np.float32(scale) + np.float32(offset)
        stats = not training or draw(st.booleans())
        rm, rv = _stats(rng, c) if stats else (None, None)
        kwargs = {
            "training": training,
            "momentum": draw(st.floats(0.0, 1.0)),
            "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1])),
        }
        if draw(st.booleans()):
            kwargs["weight"] = randn(rng, c)
        if draw(st.booleans()):
            kwargs["bias"] = randn(rng, c)
        # torch's x * alpha + beta loses ~ulp(offset) in absolute terms (see the "offset" samples).
        fwd_tol, grad_tol = Tol(1e-5, 2e-4), None
        if training:
            # Found by the long fuzz profile: when a common offset is large against the spread,
            # torch's x * alpha + beta (alpha = w * rstd) loses ~ulp(|x| * alpha) absolutely; and
            # the training backward, w * rstd * (g - mean(g) - xhat * mean(g * xhat)), cancels
            # terms of size |w| * rstd * |g|, of which float32 keeps a few ulps (torch's and ours;
            # jaxops stays closer to float64, see tests/test_norm_loss.py).
            axes = (0, *range(2, x.ndim))
            rstd = float(
                np.max(1 / np.sqrt(np.var(x.astype(np.float64), axis=axes) + kwargs["eps"]))
            )
            w = float(np.max(np.abs(kwargs["weight"]))) if "weight" in kwargs else 1.0
            offset_ulps = float(np.max(np.abs(x))) * rstd * w * 1.2e-7
            fwd_tol = Tol(1e-5, max(2e-4, 4 * offset_ulps))
            grad_tol = Tol(1e-4, 8e-5 * w * rstd * (1 + 1e3 * offset_ulps))
        return SampleInput(
            (x, rm, rv), kwargs, name=f"fuzz {shape}", fwd_tol=fwd_tol, grad_tol=grad_tol
        )

    return draw()


OPS = [
    OpInfo(
        name="batch_norm",
        op=jaxops.batch_norm,
        ref=_batch_norm_ref,
        sample_inputs=_batch_norm_samples,
        error_inputs=_batch_norm_errors,
        grad_args=(0, "weight", "bias"),
        grad_outputs=(0,),  # torch's running-statistics updates are not differentiable
        batch_args=batch_axis(0, min_ndim=2),
        formula="y = (x - E[x]) / sqrt(Var[x] + eps) * w + b; running = (1-m) running + m stat",
        # Two reductions over at most a few hundred values, in a different order than torch.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        torch_name="torch.nn.functional.batch_norm",
        strategy=_batch_norm_strategy,
    ),
]
