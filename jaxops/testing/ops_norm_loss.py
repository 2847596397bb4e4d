"""Registry entries for batch_norm and cross_entropy."""

from __future__ import annotations

import itertools

import numpy as np

import jaxops
from jaxops.testing.opinfo import ErrorInput, OpInfo, SampleInput, Tol
from jaxops.testing.ops_basic import HALF_DTYPES, HALF_TOL, randn

REDUCTIONS = ("mean", "sum", "none")


def _torch():
    import torch

    return torch


# ---------------------------------------------------------------- batch_norm


def _stats(rng: np.random.Generator, c: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    return randn(rng, c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)


def _affine(rng: np.random.Generator, c: int, dtype=np.float32) -> dict:
    return {"weight": rng.uniform(0.5, 1.5, c).astype(dtype), "bias": randn(rng, c).astype(dtype)}


def _bn_sample(rng, shape, training, name, *, stats=True, affine=True, offset=0.0, fwd_tol=None, grad_tol=None, **kwargs):
    c = shape[1]
    x = randn(rng, *shape) + np.float32(offset)
    rm, rv = _stats(rng, c) if stats else (None, None)
    kw = dict(_affine(rng, c) if affine else {}, training=training, **kwargs)
    return SampleInput((x, rm, rv), kw, name=name, fwd_tol=fwd_tol, grad_tol=grad_tol)


def _batch_norm_samples(rng):
    # Every rank torch's BatchNorm1d/2d/3d covers (and one more), in both modes.
    for shape, training in itertools.product([(4, 3), (2, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4), (2, 2, 1, 2, 3, 2)], (True, False)):
        yield _bn_sample(rng, shape, training, f"rank {len(shape)} {'train' if training else 'eval'}")
    yield _bn_sample(rng, (3, 4, 5), True, "train without running stats", stats=False)
    yield _bn_sample(rng, (3, 4, 5), True, "train, no weight/bias", affine=False)
    yield _bn_sample(rng, (3, 4, 5), False, "eval, no weight/bias", affine=False)
    x, (rm, rv) = randn(rng, 3, 2, 4), _stats(rng, 2)
    yield SampleInput((x, rm, rv), {"bias": randn(rng, 2), "training": True}, name="bias only")
    yield SampleInput((x, rm, rv), {"weight": randn(rng, 2), "training": False}, name="weight only (negative too)")
    for momentum in (0.0, 1.0, 1, 0.75):
        yield _bn_sample(rng, (4, 3, 3), True, f"momentum {momentum!r}", momentum=momentum)
    yield _bn_sample(rng, (4, 3, 3), True, "eps 1e-1", eps=0.1)
    yield _bn_sample(rng, (4, 3, 3), False, "eval eps 0", eps=0.0)
    yield _bn_sample(rng, (1, 3, 4), True, "N=1, spatial 4")
    # n = 2: the exact input gradient is O(eps / var), a cancellation of O(1) terms; torch's
    # float32 backward is off by ~3e-6 there (jaxops ~6e-7 from a float64 reference).
    yield _bn_sample(rng, (2, 3), True, "two values per channel", grad_tol=Tol(1e-5, 1e-5))
    yield _bn_sample(rng, (5, 1, 2, 2), True, "C=1")
    # Positional weight, bias, training, momentum, eps.
    x, (rm, rv), aff = randn(rng, 3, 2, 4), _stats(rng, 2), _affine(rng, 2)
    yield SampleInput((x, rm, rv, aff["weight"], aff["bias"], True, 0.2, 1e-3), name="all positional", grad_args=(0, 3, 4))
    # Constant channels: jaxops gives exactly `bias` (tests/test_norm_loss.py); torch's
    # x * alpha + beta with alpha = w / sqrt(eps) ~ 300 is off by ~ulp(7 * 300) = 2.4e-4.
    const = np.broadcast_to(np.array([0.1, -3.0, 7.0], np.float32)[None, :, None], (4, 3, 5)).copy()
    yield SampleInput((const, *_stats(rng, 3)), dict(_affine(rng, 3), training=True), name="constant channels",
                      fwd_tol=Tol(1e-5, 5e-4))
    # torch's CPU kernels form x * alpha + beta and x - mean in float32, losing ~ulp(1e4) = 1e-3
    # absolute under this offset, forward and backward; jaxops stays within ~1e-6 of a float64
    # reference here (tests/test_norm_loss.py), so these tolerances measure torch's error.
    yield _bn_sample(rng, (4, 3, 6), True, "offset 1e4", offset=1e4, fwd_tol=Tol(1e-5, 2e-3), grad_tol=Tol(1e-3, 5e-3))
    yield _bn_sample(rng, (4, 3, 6), False, "eval offset 1e4", offset=1e4, fwd_tol=Tol(1e-5, 2e-3))
    for training in (True, False):
        x = randn(rng, 3, 4, 5)
        x[1, 0, 2], x[2, 1, 0], x[0, 2, 3] = np.nan, np.inf, -np.inf  # inf first in its row: a shift
        rm, rv = _stats(rng, 4)
        yield SampleInput((x, rm, rv), dict(_affine(rng, 4), training=training), name=f"nan/±inf channels {training}")
        yield SampleInput((np.zeros((0, 3, 4), np.float32), *_stats(rng, 3)), dict(_affine(rng, 3), training=training),
                          name=f"empty batch {training}")
    for dtype, tol in HALF_TOL.items():
        half = HALF_DTYPES[dtype]
        # Half input with float32 parameters (torch's mixed mode) and all-half.
        yield SampleInput((randn(rng, 4, 3, 5).astype(half), *_stats(rng, 3)), dict(_affine(rng, 3), training=True),
                          name=f"{dtype} input, float32 params", fwd_tol=tol, grad_tol=tol)
        yield SampleInput((randn(rng, 4, 3, 5).astype(half), *_stats(rng, 3, half)), dict(_affine(rng, 3, half), training=False),
                          name=f"{dtype} eval", fwd_tol=tol, grad_tol=tol)
    for i in range(6):
        ndim = int(rng.integers(2, 6))
        shape = tuple(int(s) for s in rng.integers(1, 5, ndim))
        shape = (shape[0] + 1,) + shape[1:]  # at least two values per channel
        yield _bn_sample(
            rng, shape, bool(i % 2), f"random {shape}", stats=not i % 2 or bool(i % 3), affine=i % 4 != 1,
            momentum=float(rng.uniform(0, 1)), eps=float(10 ** rng.uniform(-6, -1)),
        )


def _batch_norm_ref(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    rm = None if running_mean is None else running_mean.clone()
    rv = None if running_var is None else running_var.clone()
    out = _torch().nn.functional.batch_norm(input, rm, rv, weight, bias, training, momentum, eps)
    return out, rm, rv


def _batch_norm_errors():
    x = np.zeros((4, 3, 2), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    fail = r"jaxops\.batch_norm: "
    yield ErrorInput(SampleInput((np.zeros(3, np.float32), rm, rv)), ValueError, fail + r"input must have 2 or more dimensions \(N, C, \*\), got shape \(3,\)")
    yield ErrorInput(SampleInput((np.zeros((1, 3), np.float32), rm, rv), {"training": True}), ValueError, r"expected more than 1 value per channel when training, got input shape \(1, 3\)")
    yield ErrorInput(SampleInput((np.zeros((1, 3, 1, 1), np.float32), None, None), {"training": True}), ValueError, r"more than 1 value per channel .* \(1, 3, 1, 1\)")
    yield ErrorInput(SampleInput((x, rm, rv), {"training": True, "eps": 0.0}), ValueError, r"eps \(=0\.0\) must be positive during training")
    yield ErrorInput(SampleInput((x, rm, rv), {"eps": -1e-3}), ValueError, r"eps \(=-0\.001\) must be non-negative")
    yield ErrorInput(SampleInput((x, None, rv)), ValueError, r"running_mean must be given in evaluation mode")
    yield ErrorInput(SampleInput((x, rm, None)), ValueError, r"running_var must be given in evaluation mode")
    yield ErrorInput(SampleInput((x, rm, None), {"training": True}), ValueError, r"running_mean and running_var must either both be None or neither be None")
    yield ErrorInput(SampleInput((x, np.zeros(4, np.float32), rv)), ValueError, r"running_mean should contain 3 elements \(one per channel of input of shape \(4, 3, 2\)\), got shape \(4,\)")
    yield ErrorInput(SampleInput((x, rm, np.ones(2, np.float32)), {"training": True}), ValueError, r"running_var should contain 3 elements .* got shape \(2,\)")
    yield ErrorInput(SampleInput((x, np.zeros((3, 1), np.float32), rv)), ValueError, r"running_mean should contain 3 elements .* got shape \(3, 1\)")
    yield ErrorInput(SampleInput((x, rm, rv), {"weight": np.ones(4, np.float32)}), ValueError, r"weight should contain 3 elements .* got shape \(4,\)")
    yield ErrorInput(SampleInput((x, rm, rv), {"bias": np.ones(2, np.float32)}), ValueError, r"bias should contain 3 elements .* got shape \(2,\)")
    yield ErrorInput(SampleInput((np.zeros((4, 3), np.int32), rm, rv)), TypeError, r"input must have a floating dtype, got int32")
    yield ErrorInput(SampleInput((x, rm.astype(np.int32), rv)), TypeError, r"running_mean must have a floating dtype, got int32")
    yield ErrorInput(SampleInput((x, rm, rv), {"training": True, "momentum": None}), TypeError, r"momentum must be a float, got None .*num_batches_tracked")
    yield ErrorInput(SampleInput((x, rm, rv), {"momentum": "0.1"}), TypeError, r"momentum must be a float, got '0\.1'")
    yield ErrorInput(SampleInput((x, rm, rv), {"eps": np.ones(2, np.float32)}), TypeError, r"eps must be a float")
    yield ErrorInput(SampleInput((x, rm, rv), {"training": 1}), TypeError, r"training must be a bool, got 1")
    yield ErrorInput(SampleInput(([[1.0, 2.0]], rm, rv)), TypeError, r"input must be an array, got list")


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
        kwargs = {"training": training, "momentum": draw(st.floats(0.0, 1.0)), "eps": draw(st.sampled_from([1e-5, 1e-3, 0.1]))}
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
            rstd = float(np.max(1 / np.sqrt(np.var(x.astype(np.float64), axis=axes) + kwargs["eps"])))
            w = float(np.max(np.abs(kwargs["weight"]))) if "weight" in kwargs else 1.0
            offset_ulps = float(np.max(np.abs(x))) * rstd * w * 1.2e-7
            fwd_tol = Tol(1e-5, max(2e-4, 4 * offset_ulps))
            grad_tol = Tol(1e-4, 8e-5 * w * rstd * (1 + 1e3 * offset_ulps))
        return SampleInput(
            (x, rm, rv), kwargs, name=f"fuzz {shape}", fwd_tol=fwd_tol, grad_tol=grad_tol
        )

    return draw()


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
        yield _ce_index(rng, randn(rng, 5, c), t, f"index {reduction} ls={ls} weighted={weighted}", **kw)
    # Probability targets: every reduction x smoothing, weighted or not.
    for reduction, ls in itertools.product(REDUCTIONS, (0.0, 0.25)):
        kw = {"reduction": reduction, "label_smoothing": ls}
        if ls:
            kw["weight"] = weight
        yield _ce_prob(rng, randn(rng, 5, c), _probs(rng, (5, c)), f"prob {reduction} ls={ls}", **kw)
    # Ranks: (C), (N, C, d1), (N, C, d1, d2), (N, C, d1, d2, d3); both target kinds.
    yield _ce_index(rng, randn(rng, 5), np.array(3), "(C) input, 0-d target", reduction="none")
    yield _ce_index(rng, randn(rng, 5), np.array(1), "(C) input mean, weighted", weight=rng.uniform(0.1, 1, 5).astype(np.float32))
    yield _ce_prob(rng, randn(rng, 5), _probs(rng, (5,), 0), "(C) prob input", reduction="none")
    t = rng.integers(0, 3, (2, 5))
    yield _ce_index(rng, randn(rng, 2, 3, 5), t, "(N, C, d1), in-range ignore_index=1", ignore_index=1, label_smoothing=0.1)
    t = rng.integers(0, 5, (2, 3, 4)).astype(np.uint8)
    t[0, 1] = 255
    yield _ce_index(rng, randn(rng, 2, 5, 3, 4), t, "(N, C, d1, d2) uint8, ignore 255", ignore_index=255,
                    weight=rng.uniform(0.1, 1, 5).astype(np.float32))
    yield _ce_index(rng, randn(rng, 2, 3, 2, 3, 2), rng.integers(0, 3, (2, 2, 3, 2)).astype(np.int32), "(N, C, d1, d2, d3) int32", reduction="none")
    yield _ce_prob(rng, randn(rng, 2, 3, 4, 2), _probs(rng, (2, 3, 4, 2)), "prob (N, C, d1, d2) weighted",
                   weight=rng.uniform(0.1, 1, 3).astype(np.float32), label_smoothing=0.5)
    yield _ce_prob(rng, randn(rng, 3, 4), randn(rng, 3, 4), "prob: unnormalised, negative targets", reduction="sum")
    yield _ce_prob(rng, randn(rng, 3, 4), _probs(rng, (3, 4)), "prob: ignore_index=-1 allowed", ignore_index=-1)
    # All targets ignored: mean is 0/0 = NaN, the gradient zero; sum is 0.
    for reduction, ls in (("mean", 0.0), ("mean", 0.3), ("sum", 0.3)):
        yield _ce_index(rng, randn(rng, 3, c), np.full(3, -100), f"all ignored {reduction} ls={ls}",
                        reduction=reduction, label_smoothing=ls, weight=weight)
    # Extreme logits: +-1e4 scale, -inf (non-target, target), with and without smoothing.
    big = (1e4 * randn(rng, 4, c)).astype(np.float32)
    yield _ce_index(rng, big, rng.integers(0, c, 4), "logits 1e4, ls 0.1", label_smoothing=0.1)
    yield _ce_prob(rng, big, _probs(rng, (4, c)), "prob logits 1e4", reduction="none")
    x = randn(rng, 4, c)
    x[0, 1] = x[1, 3] = x[2, 0] = -np.inf
    yield _ce_index(rng, x, np.array([0, 1, 2, 3]), "-inf logits off target", reduction="none")
    yield _ce_index(rng, x, np.array([1, 0, 0, 3]), "-inf logit at the target: inf loss", reduction="none")
    yield _ce_index(rng, x, np.array([0, 1, 2, 3]), "-inf logits with smoothing: inf", reduction="none", label_smoothing=0.2)
    yield _ce_index(rng, x, np.array([0, 1, 2, 3]), "-inf logits, smoothing 1, weighted", label_smoothing=1.0, weight=weight)
    yield _ce_prob(rng, x, _probs(rng, (4, c)), "prob -inf logits: 0 * -inf = NaN, finite gradient", reduction="none")
    x = randn(rng, 4, c)
    x[0, 2], x[1, 1], x[3, 0] = np.nan, np.inf, np.nan
    yield _ce_index(rng, x, np.array([0, 1, 2, -100]), "nan/inf logits (one ignored)", reduction="none")
    yield _ce_index(rng, x, np.array([0, 1, 2, -100]), "nan/inf logits mean, smoothing", label_smoothing=0.1)
    # Empty batches.
    for reduction in REDUCTIONS:
        yield _ce_index(rng, np.zeros((0, c), np.float32), np.zeros(0, np.int64), f"empty index {reduction}",
                        reduction=reduction, label_smoothing=0.1)
        yield _ce_prob(rng, np.zeros((0, c, 2), np.float32), np.zeros((0, c, 2), np.float32), f"empty prob {reduction}",
                       reduction=reduction)
    for dtype, tol in HALF_TOL.items():
        half = HALF_DTYPES[dtype]
        yield SampleInput((randn(rng, 6, c).astype(half), rng.integers(0, c, 6)), {"label_smoothing": 0.1}, name=f"{dtype} index",
                          fwd_tol=tol, grad_tol=tol)
        yield SampleInput((randn(rng, 3, c, 2).astype(half), _probs(rng, (3, c, 2)).astype(half)), {"reduction": "none"},
                          name=f"{dtype} prob", fwd_tol=tol, grad_tol=tol)
    for i in range(6):
        ndim = int(rng.integers(1, 5))
        shape = tuple(int(s) for s in rng.integers(1, 5, ndim))
        c = shape[0 if ndim == 1 else 1]
        kw = {"reduction": REDUCTIONS[i % 3], "label_smoothing": float(rng.choice([0.0, rng.uniform(0, 1)]))}
        if rng.integers(0, 2):
            kw["weight"] = rng.uniform(0, 2, c).astype(np.float32)
        x = (3 * randn(rng, *shape)).astype(np.float32)
        if i % 2:
            yield _ce_prob(rng, x, _probs(rng, shape, 0 if ndim == 1 else 1), f"random prob {shape}", **kw)
        else:
            tshape = shape[:1] + shape[2:] if ndim > 1 else ()
            t = rng.integers(0, c, tshape)
            kw["ignore_index"] = int(rng.integers(-1, c))
            yield _ce_index(rng, x, np.asarray(t), f"random index {shape}", **kw)


def _cross_entropy_ref(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    torch = _torch()
    if not target.is_floating_point():
        target = target.long()  # torch takes int64 class indices (uint8 for 2-d inputs only)
    if weight is not None and input.dtype != weight.dtype:
        weight = weight.to(input.dtype)
    return torch.nn.functional.cross_entropy(
        input, target, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )


def _cross_entropy_errors():
    x = np.zeros((4, 5), np.float32)
    t = np.zeros(4, np.int64)
    p = np.full((4, 5), 0.2, np.float32)
    fail = r"jaxops\.cross_entropy: "
    yield ErrorInput(SampleInput((x, t), {"reduction": "avg"}), ValueError, fail + r"reduction \(='avg'\) must be one of")
    yield ErrorInput(SampleInput((np.float32(1.0), np.int64(0))), ValueError, r"input must have shape \(C\), \(N, C\) or \(N, C, d1, \.\.\.\), got shape \(\)")
    yield ErrorInput(SampleInput((x.astype(np.int32), t)), TypeError, r"input must have a floating dtype, got int32")
    yield ErrorInput(SampleInput((x, np.zeros(3, np.int64))), ValueError, r"class-index target for input of shape \(4, 5\) must have shape \(4,\) .*got \(3,\)")
    yield ErrorInput(SampleInput((x, np.zeros((4, 1), np.int64))), ValueError, r"must have shape \(4,\) .*got \(4, 1\)")
    yield ErrorInput(SampleInput((np.zeros((2, 3, 4, 5), np.float32), np.zeros((2, 4, 6), np.int64))), ValueError, r"must have shape \(2, 4, 5\) .*got \(2, 4, 6\)")
    yield ErrorInput(SampleInput((np.zeros(5, np.float32), np.zeros(1, np.int64))), ValueError, r"input of shape \(5,\) must have shape \(\) .*got \(1,\)")
    yield ErrorInput(SampleInput((x, t.astype(np.float32))), TypeError, r"class-index target must have an integer dtype, got float32")
    yield ErrorInput(SampleInput((x, t.astype(bool))), TypeError, r"class-index target must have an integer dtype, got bool")
    yield ErrorInput(SampleInput((x, p.astype(np.int64))), TypeError, r"target with the input's shape \(4, 5\) holds class probabilities and must have a floating dtype, got int")
    yield ErrorInput(SampleInput((x, t), {"weight": np.ones(4, np.float32)}), ValueError, r"weight should have one element per class \(5,\) or be None, got shape \(4,\)")
    yield ErrorInput(SampleInput((x, p), {"weight": np.ones((5, 1), np.float32)}), ValueError, r"weight should have one element per class \(5,\) or be None, got shape \(5, 1\)")
    yield ErrorInput(SampleInput((x, t), {"weight": np.ones(5, np.int32)}), TypeError, r"weight must have a floating dtype, got int32")
    yield ErrorInput(SampleInput((x, t), {"label_smoothing": 1.5}), ValueError, r"label_smoothing \(=1\.5\) must be between 0\.0 and 1\.0")
    yield ErrorInput(SampleInput((x, p), {"label_smoothing": -0.1}), ValueError, r"label_smoothing \(=-0\.1\) must be between 0\.0 and 1\.0")
    yield ErrorInput(SampleInput((x, t), {"label_smoothing": "0.1"}), TypeError, r"label_smoothing must be a float, got '0\.1'")
    yield ErrorInput(SampleInput((x, p), {"ignore_index": 0}), ValueError, r"ignore_index \(=0\) is not supported for class-probability targets")
    yield ErrorInput(SampleInput((x, t), {"ignore_index": 1.0}), TypeError, r"ignore_index must be an int, got 1\.0")
    yield ErrorInput(SampleInput(([[0.0, 1.0]], t)), TypeError, r"input must be an array, got list")


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
        kwargs = {"reduction": draw(st.sampled_from(REDUCTIONS)), "label_smoothing": draw(st.sampled_from([0.0, 0.1, draw(st.floats(0.0, 1.0))]))}
        if draw(st.booleans()):
            kwargs["weight"] = rng.uniform(0, 2, c).astype(np.float32)
        if draw(st.booleans()):
            return SampleInput((x, _probs(rng, shape, cd)), kwargs, name=f"fuzz prob {shape}", grad_args=(0, 1, "weight"))
        tshape = shape[:1] + shape[2:] if ndim > 1 else ()
        ignore = draw(st.sampled_from([-100, 0, c - 1]))
        kwargs["ignore_index"] = ignore
        t = rng.integers(0, c, tshape)
        if t.size and draw(st.booleans()):
            t.flat[0] = ignore
        return SampleInput((x, np.asarray(t)), kwargs, name=f"fuzz index {shape}", grad_args=(0,))

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
        formula="y = (x - E[x]) / sqrt(Var[x] + eps) * w + b; running = (1-m) running + m stat",
        # Two reductions over at most a few hundred values, in a different order than torch.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        torch_name="torch.nn.functional.batch_norm",
        strategy=_batch_norm_strategy,
    ),
    OpInfo(
        name="cross_entropy",
        op=jaxops.cross_entropy,
        ref=_cross_entropy_ref,
        sample_inputs=_cross_entropy_samples,
        error_inputs=_cross_entropy_errors,
        grad_args=(0,),
        formula="l_n = (1-e) w_y (-log p_y) + e/C sum_c w_c (-log p_c); mean over sum w_y",
        # A log-sum-exp and short reductions, summed in a different order than torch.
        fwd_tol=Tol(1e-5, 1e-6),
        grad_tol=Tol(1e-5, 1e-6),
        torch_name="torch.nn.functional.cross_entropy",
        strategy=_cross_entropy_strategy,
    ),
]
