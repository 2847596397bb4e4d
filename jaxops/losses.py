"""Losses: :func:`mse_loss` and :func:`cross_entropy`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxops import _utils


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


def cross_entropy(*args, **kwargs):  # pragma: no cover - placeholder until implemented
    raise NotImplementedError("jaxops.cross_entropy is not implemented yet")
