"""Registry entries for cross_entropy and mse_loss."""

from __future__ import annotations

import itertools
import warnings

import ml_dtypes
import numpy as np

import jaxops
from jaxops import _utils
from jaxops.testing import strategies as S
from jaxops.testing._common import (
    HALF_DTYPES,
    HALF_TOL,
    SPECIALS,
    half_sample,
    import_torch,
    randn,
)
from jaxops.testing.opinfo import ArgRef, DataError, ErrorInput, OpInfo, SampleInput, Tol

# The library's reductions in the order the seeded samples are drawn: the default, "mean", first.
REDUCTIONS = _utils.REDUCTIONS[1:] + _utils.REDUCTIONS[:1]

# ---------------------------------------------------------------- shared by both losses


def _reduction_error(op: str, x: np.ndarray, target: np.ndarray) -> ErrorInput:
    """An unknown reduction, which both losses check first (``_utils.check_reduction``)."""
    return ErrorInput(
        SampleInput((x, target), {"reduction": "avg"}),
        ValueError,
        rf"jaxops\.{op}: reduction \(='avg'\) must be one of",
    )


def _integer_input_error(x: np.ndarray, target: np.ndarray) -> ErrorInput:
    """``x`` as int32: both losses take floating inputs only (``_utils.check_floating``)."""
    return ErrorInput(
        SampleInput((x.astype(np.int32), target)),
        TypeError,
        r"input must have a floating dtype, got int32",
    )


# ---------------------------------------------------------------- cross_entropy


def _probs(rng, shape, cd=1):
    p = rng.uniform(0, 1, shape).astype(np.float32)
    return (p / p.sum(axis=cd, keepdims=True)).astype(np.float32)


def _ce_index(rng, x, target, name, **kwargs):
    return SampleInput((x, target), kwargs, name=name, grad_args=(0,))


def _ce_prob(rng, x, target, name, **kwargs):
    return SampleInput((x, target), kwargs, name=name, grad_args=(0, 1, "weight"))


def _cross_entropy_samples(rng):
    c = 4
    weight = rng.uniform(0.2, 2.0, c).astype(np.float32)
    # Index targets: every reduction x smoothing x weight, one target ignored.
    for reduction, ls, weighted in itertools.product(REDUCTIONS, (0.0, 0.25), (False, True)):
        t = rng.integers(0, c, 5)
        t[2] = -100
        kw = {"reduction": reduction, "label_smoothing": ls}
        if weighted:
            kw["weight"] = weight
        yield _ce_index(
            rng, randn(rng, 5, c), t, f"index {reduction} ls={ls} weighted={weighted}", **kw
        )
    # Probability targets: every reduction x smoothing, weighted or not.
    for reduction, ls in itertools.product(REDUCTIONS, (0.0, 0.25)):
        kw = {"reduction": reduction, "label_smoothing": ls}
        if ls:
            kw["weight"] = weight
        yield _ce_prob(
            rng, randn(rng, 5, c), _probs(rng, (5, c)), f"prob {reduction} ls={ls}", **kw
        )
    # Ranks: (C), (N, C, d1), (N, C, d1, d2), (N, C, d1, d2, d3); both target kinds.
    yield _ce_index(rng, randn(rng, 5), np.array(3), "(C) input, 0-d target", reduction="none")
    yield _ce_index(
        rng,
        randn(rng, 5),
        np.array(1),
        "(C) input mean, weighted",
        weight=rng.uniform(0.1, 1, 5).astype(np.float32),
    )
    yield _ce_prob(rng, randn(rng, 5), _probs(rng, (5,), 0), "(C) prob input", reduction="none")
    t = rng.integers(0, 3, (2, 5))
    yield _ce_index(
        rng,
        randn(rng, 2, 3, 5),
        t,
        "(N, C, d1), in-range ignore_index=1",
        ignore_index=1,
        label_smoothing=0.1,
    )
    t = rng.integers(0, 5, (2, 3, 4)).astype(np.uint8)
    t[0, 1] = 255
    yield _ce_index(
        rng,
        randn(rng, 2, 5, 3, 4),
        t,
        "(N, C, d1, d2) uint8, ignore 255",
        ignore_index=255,
        weight=rng.uniform(0.1, 1, 5).astype(np.float32),
    )
    yield _ce_index(
        rng,
        randn(rng, 2, 3, 2, 3, 2),
        rng.integers(0, 3, (2, 2, 3, 2)).astype(np.int32),
        "(N, C, d1, d2, d3) int32",
        reduction="none",
    )
    yield _ce_prob(
        rng,
        randn(rng, 2, 3, 4, 2),
        _probs(rng, (2, 3, 4, 2)),
        "prob (N, C, d1, d2) weighted",
        weight=rng.uniform(0.1, 1, 3).astype(np.float32),
        label_smoothing=0.5,
    )
    yield _ce_prob(
        rng,
        randn(rng, 3, 4),
        randn(rng, 3, 4),
        "prob: unnormalised, negative targets",
        reduction="sum",
    )
    yield _ce_prob(
        rng, randn(rng, 3, 4), _probs(rng, (3, 4)), "prob: ignore_index=-1 allowed", ignore_index=-1
    )
    # All targets ignored: mean is 0/0 = NaN, the gradient zero; sum is 0.
    for reduction, ls in (("mean", 0.0), ("mean", 0.3), ("sum", 0.3)):
        yield _ce_index(
            rng,
            randn(rng, 3, c),
            np.full(3, -100),
            f"all ignored {reduction} ls={ls}",
            reduction=reduction,
            label_smoothing=ls,
            weight=weight,
        )
    # Extreme logits: +-1e4 scale, -inf (non-target, target), with and without smoothing.
    big = (1e4 * randn(rng, 4, c)).astype(np.float32)
    yield _ce_index(rng, big, rng.integers(0, c, 4), "logits 1e4, ls 0.1", label_smoothing=0.1)
    yield _ce_prob(rng, big, _probs(rng, (4, c)), "prob logits 1e4", reduction="none")
    x = randn(rng, 4, c)
    x[0, 1] = x[1, 3] = x[2, 0] = -np.inf
    yield _ce_index(rng, x, np.array([0, 1, 2, 3]), "-inf logits off target", reduction="none")
    yield _ce_index(
        rng, x, np.array([1, 0, 0, 3]), "-inf logit at the target: inf loss", reduction="none"
    )
    yield _ce_index(
        rng,
        x,
        np.array([0, 1, 2, 3]),
        "-inf logits with smoothing: inf",
        reduction="none",
        label_smoothing=0.2,
    )
    yield _ce_index(
        rng,
        x,
        np.array([0, 1, 2, 3]),
        "-inf logits, smoothing 1, weighted",
        label_smoothing=1.0,
        weight=weight,
    )
    yield _ce_prob(
        rng,
        x,
        _probs(rng, (4, c)),
        "prob -inf logits: 0 * -inf = NaN, finite gradient",
        reduction="none",
    )
    x = randn(rng, 4, c)
    x[0, 2], x[1, 1], x[3, 0] = np.nan, np.inf, np.nan
    yield _ce_index(
        rng, x, np.array([0, 1, 2, -100]), "nan/inf logits (one ignored)", reduction="none"
    )
    yield _ce_index(
        rng, x, np.array([0, 1, 2, -100]), "nan/inf logits mean, smoothing", label_smoothing=0.1
    )
    # Empty batches.
    for reduction in REDUCTIONS:
        yield _ce_index(
            rng,
            np.zeros((0, c), np.float32),
            np.zeros(0, np.int64),
            f"empty index {reduction}",
            reduction=reduction,
            label_smoothing=0.1,
        )
        yield _ce_prob(
            rng,
            np.zeros((0, c, 2), np.float32),
            np.zeros((0, c, 2), np.float32),
            f"empty prob {reduction}",
            reduction=reduction,
        )
    for dtype, half in HALF_DTYPES.items():
        yield half_sample(
            dtype,
            (randn(rng, 6, c).astype(half), rng.integers(0, c, 6)),
            {"label_smoothing": 0.1},
            name=f"{dtype} index",
        )
        yield half_sample(
            dtype,
            (randn(rng, 3, c, 2).astype(half), _probs(rng, (3, c, 2)).astype(half)),
            {"reduction": "none"},
            name=f"{dtype} prob",
        )
    for i in range(6):
        ndim = int(rng.integers(1, 5))
        shape = tuple(int(s) for s in rng.integers(1, 5, ndim))
        c = shape[0 if ndim == 1 else 1]
        kw = {
            "reduction": REDUCTIONS[i % 3],
            "label_smoothing": float(rng.choice([0.0, rng.uniform(0, 1)])),
        }
        if rng.integers(0, 2):
            kw["weight"] = rng.uniform(0, 2, c).astype(np.float32)
        x = (3 * randn(rng, *shape)).astype(np.float32)
        if i % 2:
            yield _ce_prob(
                rng, x, _probs(rng, shape, 0 if ndim == 1 else 1), f"random prob {shape}", **kw
            )
        else:
            tshape = shape[:1] + shape[2:] if ndim > 1 else ()
            t = rng.integers(0, c, tshape)
            kw["ignore_index"] = int(rng.integers(-1, c))
            yield _ce_index(rng, x, np.asarray(t), f"random index {shape}", **kw)


def _cross_entropy_ref(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    torch = import_torch()
    if not target.is_floating_point():
        target = target.long()  # torch takes int64 class indices (uint8 for 2-d inputs only)
    if weight is not None and input.dtype != weight.dtype:
        weight = weight.to(input.dtype)
    return torch.nn.functional.cross_entropy(
        input,
        target,
        weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def _cross_entropy_errors():
    x = np.zeros((4, 5), np.float32)
    t = np.zeros(4, np.int64)
    p = np.full((4, 5), 0.2, np.float32)
    yield _reduction_error("cross_entropy", x, t)
    yield ErrorInput(
        SampleInput((np.float32(1.0), np.int64(0))),
        ValueError,
        r"input must have shape \(C\), \(N, C\) or \(N, C, d1, \.\.\.\), got shape \(\)",
    )
    yield _integer_input_error(x, t)
    yield ErrorInput(
        SampleInput((x, np.zeros(3, np.int64))),
        ValueError,
        r"class-index target for input of shape \(4, 5\) must have shape \(4,\) .*got \(3,\)",
    )
    yield ErrorInput(
        SampleInput((x, np.zeros((4, 1), np.int64))),
        ValueError,
        r"must have shape \(4,\) .*got \(4, 1\)",
    )
    yield ErrorInput(
        SampleInput((np.zeros((2, 3, 4, 5), np.float32), np.zeros((2, 4, 6), np.int64))),
        ValueError,
        r"must have shape \(2, 4, 5\) .*got \(2, 4, 6\)",
    )
    yield ErrorInput(
        SampleInput((np.zeros(5, np.float32), np.zeros(1, np.int64))),
        ValueError,
        r"input of shape \(5,\) must have shape \(\) .*got \(1,\)",
    )
    yield ErrorInput(
        SampleInput((x, t.astype(np.float32))),
        TypeError,
        r"class-index target must have an integer dtype, got float32",
    )
    yield ErrorInput(
        SampleInput((x, t.astype(bool))),
        TypeError,
        r"class-index target must have an integer dtype, got bool",
    )
    yield ErrorInput(
        SampleInput((x, p.astype(np.int64))),
        TypeError,
        r"target with the input's shape \(4, 5\) holds class probabilities "
        r"and must have a floating dtype, got int",
    )
    # Keyword arguments torch rejects, with a class-index (t) or probability (p) target:
    # (target, keywords, error, message).
    per_class = r"weight should have one element per class \(5,\) or be None, got shape "
    smoothing = r"label_smoothing \(={}\) must be between 0\.0 and 1\.0"
    int_weight = r"weight must have a floating dtype, got int32"
    no_ignore = r"ignore_index \(=0\) is not supported for class-probability targets"
    bad_keywords = [
        (t, {"weight": np.ones(4, np.float32)}, ValueError, per_class + r"\(4,\)"),
        (p, {"weight": np.ones((5, 1), np.float32)}, ValueError, per_class + r"\(5, 1\)"),
        (t, {"weight": np.ones(5, np.int32)}, TypeError, int_weight),
        (t, {"label_smoothing": 1.5}, ValueError, smoothing.format(r"1\.5")),
        (p, {"label_smoothing": -0.1}, ValueError, smoothing.format(r"-0\.1")),
        (t, {"label_smoothing": "0.1"}, TypeError, r"label_smoothing must be a float, got '0\.1'"),
        (p, {"ignore_index": 0}, ValueError, no_ignore),
        (t, {"ignore_index": 1.0}, TypeError, r"ignore_index must be an int, got 1\.0"),
    ]
    for target, keywords, error, message in bad_keywords:
        yield ErrorInput(SampleInput((x, target), keywords), error, message)
    yield ErrorInput(SampleInput(([[0.0, 1.0]], t)), TypeError, r"input must be an array, got list")


def _cross_entropy_batch_args(sample: SampleInput) -> tuple[ArgRef, ...]:
    """Input (N, C, ...) and target (N, ...): N is the batch axis; a (C) input has none."""
    return (0, 1) if sample.ndim(0) >= 2 and sample.ndim(1) >= 1 else ()


CROSS_ENTROPY_DATA_ERRORS = (
    DataError(
        bad=SampleInput(
            (np.ones((2, 3), np.float32), np.array([0, 7])),
            {"reduction": "none"},
            name="class 7 of 3",
        ),
        good=SampleInput(
            (np.ones((3, 3), np.float32), np.array([0, 2, -100])),
            {"reduction": "none"},
            name="in range, one ignored",
        ),
        match=r"^jaxops\.cross_entropy: .*class index 7\b",
        unchecked=lambda out: (
            np.isfinite(out[0]) and np.isnan(out[1])
        ),  # that element's loss is NaN
        finite_grad=False,  # the NaN loss element's gradient reaches its row of the input
    ),
)


def _cross_entropy_strategy():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        ndim = draw(st.integers(1, 4))
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
        if draw(st.booleans()) and ndim > 1:
            shape = (0,) + shape[1:]
        cd = 0 if ndim == 1 else 1
        c = shape[cd]
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        x = randn(rng, *shape) * np.float32(draw(st.sampled_from([1e-2, 1.0, 30.0, 1e4])))
        kwargs = {
            "reduction": draw(st.sampled_from(REDUCTIONS)),
            "label_smoothing": draw(st.sampled_from([0.0, 0.1, draw(st.floats(0.0, 1.0))])),
        }
        if draw(st.booleans()):
            kwargs["weight"] = rng.uniform(0, 2, c).astype(np.float32)
        if draw(st.booleans()):
            return SampleInput(
                (x, _probs(rng, shape, cd)),
                kwargs,
                name=f"fuzz prob {shape}",
                grad_args=(0, 1, "weight"),
            )
        tshape = shape[:1] + shape[2:] if ndim > 1 else ()
        ignore = draw(st.sampled_from([-100, 0, c - 1]))
        kwargs["ignore_index"] = ignore
        t = rng.integers(0, c, tshape)
        if t.size and draw(st.booleans()):
            t.flat[0] = ignore
        return SampleInput((x, np.asarray(t)), kwargs, name=f"fuzz index {shape}", grad_args=(0,))

    return draw()


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
    w = (
        np.ones_like(d)
        if weight is None
        else np.broadcast_to(np.asarray(weight, np.float64), d.shape)
    )
    denominator = 1.0
    if reduction == "mean":
        denominator = (
            abs(float(np.sum(np.asarray(weight, np.float64)))) if weight is not None else d.size
        )
    if not np.isfinite(w).all() or denominator == 0.0:
        return base
    terms = float(np.max(np.abs(2 * d * w))) * d.size / min(x64.size, y64.size) / denominator
    if weight is not None and reduction == "mean":
        terms = max(terms, float(np.max(d * d)) / denominator)
    eps = float(ml_dtypes.finfo(np.asarray(x).dtype).eps)
    return Tol(base.rtol, base.atol + 16 * eps * terms) if np.isfinite(terms) else base


def _mse_samples(rng):
    for reduction, shape in itertools.product(REDUCTIONS, [(), (7,), (2, 3, 4, 5)]):
        yield SampleInput(
            (randn(rng, *shape), randn(rng, *shape)),
            {"reduction": reduction},
            name=f"{reduction} {shape}",
        )
    for reduction in REDUCTIONS:
        x, y = randn(rng, 3, 1), randn(rng, 1, 4)
        yield SampleInput((x, y), {"reduction": reduction}, name=f"broadcast both {reduction}")
        w = rng.uniform(0.1, 2.0, (3, 4)).astype(np.float32)
        yield SampleInput(
            (randn(rng, 3, 4), randn(rng, 4)),
            {"reduction": reduction, "weight": w},
            grad_args=(0, 1, "weight"),
            name=f"weighted, target broadcast {reduction}",
        )
        specials = np.tile(SPECIALS, 2)
        yield SampleInput(
            (specials, np.roll(specials, 3)), {"reduction": reduction}, name=f"nan/inf {reduction}"
        )
        yield SampleInput(
            (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)),
            {"reduction": reduction},
            name=f"empty {reduction}",
        )
    yield SampleInput(
        (randn(rng, 4), randn(rng, 4)),
        {"weight": np.zeros(4, np.float32)},
        grad_args=(0, 1, "weight"),
        name="all-zero weight: 0/0",
    )
    # Fuzz regressions: one weighted element, whose weight gradient is 0 up to
    # rounding; and sum(weight) = 1e-20, where (t/s)/s must not become t/(s*s) =
    # t/0 = -inf (found at weight 1e-30; scaled so every value stays moderate).
    for x, y, w in (([0.12573022], [2], 0.0012573), ([3e-9], [0.0], 1e-20)):
        x, y, weight = np.array(x, np.float32), np.array(y), np.array([w], np.float32)
        y = y.astype(np.float32) if y.dtype.kind == "f" else y
        yield SampleInput(
            (x, y),
            {"weight": weight},
            grad_args=(0, 1, "weight"),
            grad_tol=_mse_grad_tol(x, y, weight, "mean", MSE_TOL),
            name=f"fuzz regression: one element, weight {w:g}",
            skip={
                "jvp": "the weight's tangent cancels terms of size d^2/sum(w) that forward and "
                "reverse mode round differently; the check's scale, sum |grad * tangent|, "
                "sees only the cancelled result (the VJP is checked against torch above)"
            },
        )
    # Fuzz regression: a bfloat16 input broadcast over a target 1000x larger; its
    # gradient sums terms of size 40 that cancel to 0.13, below their rounding.
    x = np.array([[0.125977, -0.131836]], ml_dtypes.bfloat16)
    y = np.array([[34.5, 82], [33, -130], [90.5, 44.75]], ml_dtypes.bfloat16)
    yield SampleInput(
        (x, y),
        name="fuzz regression: bfloat16 broadcast gradient cancels",
        fwd_tol=HALF_TOL["bfloat16"],
        grad_tol=_mse_grad_tol(x, y, None, "mean", HALF_TOL["bfloat16"]),
    )
    yield SampleInput(
        (randn(rng, 3, 4), rng.integers(-2, 2, (3, 4))),
        name="integer target promotes",
    )
    for i in range(6):
        shape = tuple(int(s) for s in rng.integers(1, 6, int(rng.integers(1, 5))))
        reduction = REDUCTIONS[i % 3]
        kwargs = {"reduction": reduction}
        if i % 2:
            kwargs["weight"] = rng.uniform(0, 1, shape).astype(np.float32)
        yield SampleInput(
            (randn(rng, *shape), randn(rng, *shape)),
            kwargs,
            grad_args=(0, 1, "weight"),
            name=f"random {shape} {reduction}",
        )


def _mse_batch_args(sample: SampleInput) -> tuple[ArgRef, ...]:
    """Input and target of one shape (and a weight of that shape) share their leading axis;
    a broadcast target has no common batch axis."""
    same = sample.ndim(0) >= 1 and np.shape(sample.get(0)) == np.shape(sample.get(1))
    return ((0, 1) + (("weight",) if sample.ndim("weight") > 0 else ())) if same else ()


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
        reduction = draw(st.sampled_from(REDUCTIONS))
        kwargs = {"reduction": reduction}
        name = f"fuzz {dtype}{list(x_shape)} vs {y.dtype}{list(y_shape)} {reduction}"
        fwd_tol = HALF_TOL.get(dtype)
        if draw(st.booleans()):
            kwargs["weight"] = np.abs(draw(S.float_arrays(x_shape, S.FLOAT_DTYPES[dtype])))
            name += " weighted"
        grad_tol = _mse_grad_tol(
            x, y, kwargs.get("weight"), reduction, HALF_TOL.get(dtype, MSE_TOL)
        )
        return SampleInput(
            (x, y),
            kwargs,
            grad_args=(0, 1, "weight"),
            name=name,
            fwd_tol=fwd_tol,
            grad_tol=grad_tol,
        )

    return draw()


def _mse_ref(input, target, reduction="mean", weight=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when target broadcasts
        return import_torch().nn.functional.mse_loss(
            input, target, reduction=reduction, weight=weight
        )


def _mse_errors():
    x = np.zeros((2, 3), np.float32)
    yield _reduction_error("mse_loss", x, x)
    yield ErrorInput(
        SampleInput((x, np.zeros((4,), np.float32))),
        ValueError,
        r"target shape \(4,\) does not broadcast with input shape \(2, 3\)",
    )
    yield ErrorInput(
        SampleInput((x, x), {"weight": np.ones(3, np.float32)}),
        ValueError,
        r"weight shape \(3,\) must equal input shape \(2, 3\)",
    )
    yield _integer_input_error(x, x)


OPS = [
    OpInfo(
        name="cross_entropy",
        op=jaxops.cross_entropy,
        ref=_cross_entropy_ref,
        sample_inputs=_cross_entropy_samples,
        error_inputs=_cross_entropy_errors,
        data_errors=CROSS_ENTROPY_DATA_ERRORS,
        grad_args=(0,),
        batch_args=_cross_entropy_batch_args,
        formula="l_n = (1-e) w_y (-log p_y) + e/C sum_c w_c (-log p_c); mean over sum w_y",
        # A log-sum-exp and short reductions, summed in a different order than torch.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        torch_name="torch.nn.functional.cross_entropy",
        strategy=_cross_entropy_strategy,
    ),
    OpInfo(
        name="mse_loss",
        op=jaxops.mse_loss,
        ref=_mse_ref,
        sample_inputs=_mse_samples,
        error_inputs=_mse_errors,
        grad_args=(0, 1),
        batch_args=_mse_batch_args,
        formula="l_n = w_n (x_n - y_n)^2; mean = sum(l) / sum(w)",
        fwd_tol=MSE_TOL,
        grad_tol=MSE_TOL,
        torch_name="torch.nn.functional.mse_loss",
        strategy=_mse_strategy,
    ),
]
