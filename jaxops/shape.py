"""Shape ops: :func:`flatten`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxops import _utils


def flatten(input: ArrayLike, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    r"""Flattens the dimensions ``start_dim`` through ``end_dim`` into one, like ``torch.flatten``.

    .. math::
        \text{out.shape} = (d_0, \ldots, d_{s-1}, \textstyle\prod_{i=s}^{e} d_i, d_{e+1}, \ldots)

    Args:
        input: array of any rank; a 0-d input is treated as 1-d.
        start_dim: first dimension to flatten (negative counts from the end).
        end_dim: last dimension to flatten, inclusive.

    Returns:
        The reshaped array. A 0-d input gives a 1-d array of one element.

    Raises:
        ValueError: a dim out of range, or ``start_dim`` after ``end_dim``.
        TypeError: a non-integer dim or a non-array input.

    Example:
        >>> jaxops.flatten(jnp.zeros((2, 3, 4)), start_dim=1).shape
        (2, 12)

    Note:
        torch returns a view when it can; JAX arrays are immutable, so the
        distinction does not arise.
    """
    _utils.check_array("flatten", "input", input)
    x = jnp.asarray(input)
    start = _utils.normalize_dim("flatten", "start_dim", start_dim, x.ndim)
    end = _utils.normalize_dim("flatten", "end_dim", end_dim, x.ndim)
    if start > end:
        raise _utils.fail(
            "flatten", f"start_dim (={start_dim}) must not come after end_dim (={end_dim})"
        )
    if x.ndim == 0:
        return x.reshape(1)
    return x.reshape(x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])
