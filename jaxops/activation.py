"""Activations: :func:`sigmoid`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxops import _utils


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
    return lax.logistic(x)
