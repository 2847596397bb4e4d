"""Losses: :func:`mse_loss` and :func:`cross_entropy`."""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _checks, _utils


@jax.custom_jvp
def _weighted_mean(total: jax.Array, weight_sum: jax.Array) -> jax.Array:
    return total / weight_sum


@_weighted_mean.defjvp
def _weighted_mean_jvp(primals, tangents):
    # torch's rounding of d(t/s) = dt/s - (t/s)/s ds, whose terms cancel exactly
    # where they should (one element: the weight's gradient is exactly 0), where
    # JAX's own rule, dt/s - t ds/s^2, leaves a rounding residue.
    total, weight_sum = primals
    d_total, d_weight_sum = tangents
    mean = total / weight_sum
    # The barrier keeps XLA from rewriting (t/s)/s as t/(s*s), which underflows
    # to t/0 = inf for |s| < 1e-19.
    slope = jax.lax.optimization_barrier(mean) / weight_sum
    return mean, d_total / weight_sum - slope * d_weight_sum


@functools.partial(jax.jit, static_argnames=("reduction",))
def _mse_loss(x: jax.Array, y: jax.Array, weight: jax.Array | None, reduction: str) -> jax.Array:
    x, y = jnp.broadcast_arrays(x, y)
    loss = jnp.square(x - y)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if weight is not None:
        return _weighted_mean(jnp.sum(loss), jnp.sum(weight))
    return jnp.mean(loss)


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    reduction: str = "mean",
    weight: ArrayLike | None = None,
) -> jax.Array:
    r"""Mean squared error, like ``torch.nn.functional.mse_loss``.

    .. math::
        \ell_i = w_i (x_i - y_i)^2, \qquad
        \text{mean} = \frac{\sum_i \ell_i}{\sum_i w_i}\ (w \equiv 1 \Rightarrow \text{numel})

    Output shape: ``broadcast(input, target)`` for ``reduction="none"``, else ``()``.

    Args:
        input: predictions, floating dtype.
        target: targets, broadcastable against ``input``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        weight: optional per-element weights, exactly ``input.shape``; the weighted
            mean divides by ``sum(weight)`` as torch does.

    Returns:
        The loss, in the promoted dtype of the inputs.

    Raises:
        ValueError: unknown reduction, shapes that do not broadcast, or a weight
            whose shape differs from ``input``'s.
        TypeError: a non-floating input.

    Example:
        >>> jaxops.mse_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))
        Array(2., dtype=float32)

    Note:
        The deprecated ``size_average``/``reduce`` arguments are not accepted.
        Mixed dtypes follow JAX promotion instead of torch's error. An empty
        input's mean is NaN, as in torch.
    """
    op = "mse_loss"
    _utils.check_array(op, "input", input)
    _utils.check_array(op, "target", target)
    _utils.check_reduction(op, reduction)
    _utils.check_floating(op, "input", input)
    x, y = jnp.asarray(input), jnp.asarray(target)
    try:
        jnp.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise _utils.fail(
            op, f"target shape {y.shape} does not broadcast with input shape {x.shape}"
        ) from None
    w = None
    if weight is not None:
        _utils.check_array(op, "weight", weight)
        w = jnp.asarray(weight)
        if w.shape != x.shape:
            raise _utils.fail(op, f"weight shape {w.shape} must equal input shape {x.shape}")
    return _mse_loss(x, y, w, reduction)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _pick(x: jax.Array, t: jax.Array, axis: int) -> jax.Array:
    """``x`` at index ``t`` along ``axis`` (indices clipped into range).

    A gather forward; the tangent is a one-hot select-and-sum, so the gradient is
    an element-wise select that fuses with the softmax gradient instead of a
    scatter-add.
    """
    if x.shape[axis] == 0:
        return jnp.zeros(t.shape, x.dtype)
    idx = jnp.expand_dims(jnp.clip(t, 0, x.shape[axis] - 1), axis)
    return jnp.squeeze(jnp.take_along_axis(x, idx, axis=axis, mode="clip"), axis)


@_pick.defjvp
def _pick_jvp(axis: int, primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    x, t = primals
    onehot = lax.broadcasted_iota(t.dtype, x.shape, axis) == jnp.expand_dims(t, axis)
    return _pick(x, t, axis), jnp.sum(jnp.where(onehot, tangents[0], 0), axis=axis)


@dataclasses.dataclass(frozen=True)
class _CrossEntropy:
    """cross_entropy's validated static arguments (hashable: the jit cache key).

    ``ignore_index`` is ``None`` where nothing can be ignored (probability
    targets, or an index the target's dtype cannot hold).
    """

    reduction: str
    label_smoothing: float
    probabilities: bool
    ignore_index: int | None


def _int_scalar_in(value: int, dtype: Any) -> bool:
    info = jnp.iinfo(dtype)
    return info.min <= value <= info.max


def _cross_entropy_config(
    x: jax.Array,
    t: jax.Array,
    w: jax.Array | None,
    ignore_index: Any,
    reduction: str,
    label_smoothing: Any,
) -> tuple[_CrossEntropy, jax.Array]:
    """Validates cross_entropy's arguments; returns the config and the target in a working dtype."""
    op = "cross_entropy"
    _utils.check_reduction(op, reduction)
    _utils.check_floating(op, "input", x)
    if x.ndim < 1:
        raise _utils.fail(
            op, f"input must have shape (C), (N, C) or (N, C, d1, ...), got shape {x.shape}"
        )
    if isinstance(label_smoothing, (bool, jnp.bool_)) or not isinstance(
        label_smoothing, numbers.Real
    ):
        raise _utils.fail(
            op, f"label_smoothing must be a float, got {label_smoothing!r}", TypeError
        )
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise _utils.fail(op, f"label_smoothing (={label_smoothing}) must be between 0.0 and 1.0")
    ignore_index = _utils.as_int(op, "ignore_index", ignore_index)
    c = x.shape[0 if x.ndim == 1 else 1]
    if w is not None:
        if w.shape != (c,):
            raise _utils.fail(
                op,
                f"weight should have one element per class ({c},) or be None, got shape {w.shape}",
            )
        if not jnp.issubdtype(w.dtype, jnp.floating):
            raise _utils.fail(op, f"weight must have a floating dtype, got {w.dtype}", TypeError)
    if _check_target(op, x, t, ignore_index):  # class probabilities
        return _CrossEntropy(reduction, label_smoothing, True, None), t
    if jnp.issubdtype(t.dtype, jnp.unsignedinteger) or jnp.iinfo(t.dtype).bits < 32:
        t = t.astype(jnp.int32 if jnp.iinfo(t.dtype).bits < 32 else jnp.int64)
    # An ignore_index the target's dtype cannot hold ignores nothing.
    ignore = ignore_index if _int_scalar_in(ignore_index, t.dtype) else None
    return _CrossEntropy(reduction, label_smoothing, False, ignore), t


def _check_target(op: str, x: jax.Array, t: jax.Array, ignore_index: int) -> bool:
    """Checks the target's shape and dtype; returns whether it holds class probabilities."""
    probabilities = t.shape == x.shape
    if probabilities and not jnp.issubdtype(t.dtype, jnp.floating):
        message = (
            f"a target with the input's shape {x.shape} holds class probabilities and must "
            f"have a floating dtype, got {t.dtype}"
        )
        raise _utils.fail(op, message, TypeError)
    if not probabilities and not jnp.issubdtype(t.dtype, jnp.integer):
        message = (
            f"a class-index target must have an integer dtype, got {t.dtype} (class-probability "
            f"targets must have the input's shape {x.shape}, got {t.shape})"
        )
        raise _utils.fail(op, message, TypeError)
    if probabilities and ignore_index >= 0:
        raise _utils.fail(
            op, f"ignore_index (={ignore_index}) is not supported for class-probability targets"
        )
    expected = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if not probabilities and t.shape != expected:
        raise _utils.fail(
            op,
            f"a class-index target for input of shape {x.shape} must have shape {expected} "
            f"(or {x.shape} for class probabilities), got {t.shape}",
        )
    return probabilities


def _check_class_indices(t: jax.Array, c: int, config: _CrossEntropy, ignore_index: int) -> None:
    """Under jaxops.checked: every class index is in [0, C) or ignored, as torch raises."""
    if not _checks.checks_enabled() or not t.size:
        return
    bad = (t < 0) | (t >= c)
    if config.ignore_index is not None:
        bad = bad & (t != config.ignore_index)
    _checks.data_check(
        ~jnp.any(bad),
        "cross_entropy",
        f"target holds class index {{index}}, out of range for {c} classes "
        f"(expected 0 <= index < {c}, or ignore_index={ignore_index})",
        index=t.ravel()[jnp.argmax(bad.ravel())],
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _cross_entropy(
    x: jax.Array, target: jax.Array, weight: jax.Array | None, config: _CrossEntropy
) -> jax.Array:
    reduction, label_smoothing, ignore_index = (
        config.reduction,
        config.label_smoothing,
        config.ignore_index,
    )
    probabilities = config.probabilities
    cd = 0 if x.ndim == 1 else 1  # the class axis
    c = x.shape[cd]
    out_dtype = jnp.result_type(x, target) if probabilities else x.dtype
    ct = jnp.promote_types(out_dtype, jnp.float32)  # half inputs: float32 inside
    xf = x.astype(ct)
    # log_softmax(x) = z - log(s) with z = x - max: never overflows, and the max
    # carries no gradient because the result does not depend on it. The losses
    # below are written with z and log(s) so log_softmax is never materialised.
    m = lax.stop_gradient(jnp.max(xf, axis=cd))
    z = xf - jnp.expand_dims(m, cd)
    log_s = jnp.log(jnp.sum(jnp.exp(z), axis=cd))
    wb = None
    if weight is not None:
        wb = weight.astype(ct).reshape((c,) + (1,) * (x.ndim - cd - 1))

    if probabilities:
        p = target.astype(ct)
        if label_smoothing > 0:
            p = p * (1 - label_smoothing) + label_smoothing / c
        if wb is not None:
            p = p * wb
        # -sum_c p_c log_softmax_c = log(s) * sum(p) - sum(p * z)
        loss = log_s * jnp.sum(p, axis=cd) - jnp.sum(p * z, axis=cd)
        if reduction == "none":
            return loss.astype(out_dtype)
        total = jnp.sum(loss)
        if reduction == "mean":
            total = total / (x.size // c if x.size else 0.0)  # N * d1 * ... * dk; empty: NaN
        return total.astype(out_dtype)

    t = target
    nll = log_s - (_pick(xf, t, cd) - m)  # -log_softmax at the target class
    in_range = (t >= 0) & (t < c)
    ignored = jnp.zeros(t.shape, bool) if ignore_index is None else t == ignore_index
    if wb is None:
        w_t = jnp.ones(t.shape, ct)
    else:
        # Picked like the logits, so its gradient (w.r.t. weight) is a select, not a scatter-add.
        w_t = _pick(jnp.broadcast_to(wb, x.shape), t, cd)
    # An out-of-range class (not ignored) poisons its element: NaN loss, NaN gradient.
    w_t = jnp.where(ignored, 0, jnp.where(in_range, w_t, jnp.nan))
    nll = jnp.where(ignored, 0, w_t * nll)
    if label_smoothing > 0:
        # torch: -sum_c w_c log_softmax_c, zeroed at ignored targets.
        if wb is None:
            # sum(z) from its own pass over x, shifted by one logit r per row so the
            # sum stays as exact as sum(z): left as sum(z), z would be written out
            # in full for its two consumers (~30% of the forward on CPU).
            if c:
                r = lax.stop_gradient(lax.index_in_dim(xf, 0, cd, keepdims=False))
                r = jnp.where(jnp.isfinite(r), r, m)  # -inf logits: keep sum(z) = -inf
                sum_z = jnp.sum(xf - jnp.expand_dims(r, cd), axis=cd) - c * (m - r)
            else:
                sum_z = jnp.sum(z, axis=cd)
            smooth = c * log_s - sum_z
        else:
            smooth = jnp.sum(wb, axis=0) * log_s - jnp.sum(wb * z, axis=cd)
        smooth = jnp.where(ignored, 0, smooth)
    if reduction == "none":
        loss = nll
        if label_smoothing > 0:
            loss = (1 - label_smoothing) * nll + (label_smoothing / c) * smooth
        return loss.astype(out_dtype)
    loss = jnp.sum(nll)
    if label_smoothing > 0:
        smooth = jnp.sum(smooth)
    if reduction == "mean":
        # Weighted mean over the non-ignored targets; all ignored (or empty): 0/0 = NaN.
        total_weight = jnp.sum(w_t)
        loss = loss / total_weight
        if label_smoothing > 0:
            smooth = smooth / total_weight
    if label_smoothing > 0:
        loss = (1 - label_smoothing) * loss + (label_smoothing / c) * smooth
    return loss.astype(out_dtype)


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    r"""Cross entropy of logits, like ``torch.nn.functional.cross_entropy``.

    With :math:`\log p = \mathrm{log\_softmax}(x)` over the class dimension
    (dim 1, or dim 0 for a ``(C,)`` input) and smoothing :math:`\varepsilon`:

    .. math::
        \ell_n = (1 - \varepsilon)\, w_{y_n} (-\log p_{n, y_n})
               + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{n, c})
        \quad\text{(class indices)}, \qquad
        \ell_n = -\sum_c w_c \big((1 - \varepsilon) y_{n,c}
               + \tfrac{\varepsilon}{C}\big) \log p_{n,c}
        \quad\text{(probabilities)}

    Output shape: the target's shape without the class dimension ``(N, d1, ..., dk)``
    (``()`` for a ``(C,)`` input) for ``reduction="none"``, else ``()``.

    Reductions, with torch's denominators: for class indices, ignored targets
    contribute nothing and ``"mean"`` divides both terms by
    :math:`\sum_n w_{y_n}` over the non-ignored targets (their count without
    ``weight``), so all targets ignored gives NaN with a zero gradient; for
    probabilities ``"mean"`` divides by ``N * d1 * ... * dk``. An empty batch's
    mean is NaN.

    Stable for any logits: the log-softmax is shifted by the row maximum, so
    logits of magnitude ``1e4`` are exact and ``-inf`` logits give a zero
    probability (with label smoothing their ``-log p`` is ``inf``, as in torch;
    with a probability target of 0 their ``0 * -inf`` is NaN, as in torch).

    Args:
        input: logits ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``, floating.
        target: class indices of shape ``(N, d1, ..., dk)`` (``()`` for a ``(C,)``
            input), of any integer dtype; or class probabilities with the input's
            exact shape, floating.
        weight: optional ``(C,)`` rescaling weight per class.
        ignore_index: class index whose targets are ignored (index targets only;
            with probability targets it must be negative, as in torch).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`, the share of the target
            mass spread uniformly over the classes.

    Returns:
        The loss, in the input's dtype (probability targets: the promoted dtype
        of input and target). Half-precision inputs are computed in float32.

    Raises:
        ValueError: unknown reduction; a 0-d input; an index target whose shape
            is not the input's without the class dimension; a weight that is
            not ``(C,)``; ``label_smoothing`` outside ``[0, 1]``; a non-negative
            ``ignore_index`` with probability targets.
        TypeError: a non-floating input; an index target that is not integer
            (or a probability target that is not floating); a non-real
            ``label_smoothing`` or non-integer ``ignore_index``.

    Example:
        >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1e4, -jnp.inf]])
        >>> jaxops.cross_entropy(logits, jnp.array([0, 1]), reduction="none")
        Array([0.16984604, 0.        ], dtype=float32)

    Note:
        A class index outside ``[0, C)`` that is not ``ignore_index`` cannot
        raise inside ``jit``: unchecked, that element's loss is NaN (so a
        ``"sum"``/``"mean"`` is NaN; ``"mean"``'s denominator is NaN too) and
        the gradient of that element's logits is NaN, never a silently
        clamped class. Under :func:`jaxops.checked` it raises instead, naming
        the index, as torch's ``IndexError`` does. Differences from torch:
        any integer target dtype is accepted (torch: int64 or uint8 only); a
        negative ``label_smoothing`` raises (torch silently treats it as 0);
        a ``(C,)`` input takes only a 0-d target (torch also accepts shape
        ``(1,)``); mixed dtypes follow JAX promotion instead of torch's error;
        gradients w.r.t. ``weight`` exist for index targets too (torch refuses).
    """
    op = "cross_entropy"
    for name, value in (("input", input), ("target", target), ("weight", weight)):
        if value is not None:
            _utils.check_array(op, name, value)
    x, w = jnp.asarray(input), None if weight is None else jnp.asarray(weight)
    config, t = _cross_entropy_config(
        x, jnp.asarray(target), w, ignore_index, reduction, label_smoothing
    )
    if not config.probabilities:
        _check_class_indices(t, x.shape[0 if x.ndim == 1 else 1], config, ignore_index)
    return _cross_entropy(x, t, w, config)
