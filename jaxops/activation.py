"""Activations: :func:`sigmoid`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _utils


@jax.custom_jvp
def _sigmoid(x: jax.Array) -> jax.Array:
    if x.dtype in (jnp.float16, jnp.bfloat16):  # torch: float32 math, rounded once
        return lax.logistic(x.astype(jnp.float32)).astype(x.dtype)
    return lax.logistic(x)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    # torch's backward is (g * (1 - y)) * y. The tangent is written as
    # (t * y) * (1 - y) so that its transpose, the VJP, multiplies in torch's
    # order; float16 rounds after every step as torch does, bfloat16 computes
    # in float32 and rounds once as torch does.
    (x,), (t,) = primals, tangents
    y = _sigmoid(x)
    if x.dtype == jnp.bfloat16:
        y32 = y.astype(jnp.float32)
        return y, ((t.astype(jnp.float32) * y32) * (1 - y32)).astype(x.dtype)
    return y, (t * y) * (1 - y)


_sigmoid_jit = jax.jit(_sigmoid)


def sigmoid(input: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, element-wise, like ``torch.sigmoid``.

    .. math::
        \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \text{out.shape} = \text{input.shape}

    Computed with ``lax.logistic``, which never overflows: ``sigmoid(-1e4)`` is
    exactly 0 and ``sigmoid(1e4)`` exactly 1, with finite gradients.

    Args:
        input: array of any shape. Integer and boolean inputs are promoted to
            the default floating dtype, as torch does.

    Returns:
        Array of the input's shape, in the input's floating dtype (float16 and
        bfloat16 stay as they are).

    Raises:
        TypeError: a non-array input.

    Example:
        >>> jaxops.sigmoid(jnp.array([0.0, 1e4]))
        Array([0.5, 1. ], dtype=float32)
    """
    _utils.check_array("sigmoid", "input", input)
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return _sigmoid_jit(x)
