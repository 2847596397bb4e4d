"""Argument normalisation and trace-time validation shared by every op.

Public ops call these before entering their jitted cores, so a bad argument
raises a ``ValueError``/``TypeError`` from jaxops itself, naming the op, the
argument and the offending value, instead of surfacing as an XLA error.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

REDUCTIONS = ("none", "mean", "sum")


def fail(op: str, message: str, exc: type[Exception] = ValueError) -> Exception:
    """Builds the exception every jaxops op raises: ``jaxops.<op>: <message>``."""
    return exc(f"jaxops.{op}: {message}")


def as_int(op: str, name: str, value: Any) -> int:
    """Returns ``value`` as a Python int; rejects bools, floats and arrays of them."""
    if isinstance(value, (bool, np.bool_)):
        raise fail(op, f"{name} must be an int, got {value!r}", TypeError)
    try:
        return operator.index(value)
    except TypeError:
        raise fail(op, f"{name} must be an int, got {value!r}", TypeError) from None


def as_tuple(op: str, name: str, value: Any, n: int = 2) -> tuple[int, ...]:
    """Normalises an int or a length-1/length-n sequence of ints to an n-tuple."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(as_int(op, name, v) for v in value)
        if len(items) == 1:
            return items * n
        if len(items) != n:
            raise fail(op, f"{name} must be an int or a tuple of {n} ints, got {value!r}")
        return items
    return (as_int(op, name, value),) * n


def check_positive(op: str, name: str, values: Iterable[int]) -> None:
    values = tuple(values)
    if any(v <= 0 for v in values):
        shown = values[0] if len(set(values)) == 1 else values
        raise fail(op, f"{name} (={shown}) must be positive")


def check_nonnegative(op: str, name: str, values: Iterable[int]) -> None:
    values = tuple(values)
    if any(v < 0 for v in values):
        shown = values[0] if len(set(values)) == 1 else values
        raise fail(op, f"{name} (={shown}) must be non-negative")


def check_choice(op: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise fail(op, f"{name} (={value!r}) must be one of {options}")


def check_array(op: str, name: str, x: Any) -> None:
    """Rejects values that are not arrays or Python/NumPy scalars (lists, None, strings)."""
    if x is None or isinstance(x, (str, bytes, list, tuple, dict)):
        raise fail(op, f"{name} must be an array, got {type(x).__name__}", TypeError)
    if not hasattr(x, "dtype") and not isinstance(x, (int, float, complex, np.generic)):
        raise fail(op, f"{name} must be an array, got {type(x).__name__}", TypeError)


def check_ndim(op: str, name: str, x: Any, allowed: Iterable[int]) -> None:
    allowed = tuple(allowed)
    if jnp.ndim(x) not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise fail(op, f"{name} must have {want} dimensions, got shape {tuple(jnp.shape(x))}")


def check_floating(op: str, name: str, x: Any) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise fail(op, f"{name} must have a floating dtype, got {jnp.result_type(x)}", TypeError)


def check_reduction(op: str, reduction: Any) -> None:
    check_choice(op, "reduction", reduction, REDUCTIONS)


def normalize_dim(op: str, name: str, dim: Any, ndim: int) -> int:
    """Wraps a possibly negative ``dim`` into ``[0, ndim)`` as torch does (0-d counts as 1-d)."""
    dim = as_int(op, name, dim)
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise fail(
            op,
            f"{name} (={dim}) is out of range for a {ndim}-d input "
            f"(expected [{-rank}, {rank - 1}])",
        )
    return dim % rank


def batched(x: jax.Array, ndim: int = 4) -> tuple[jax.Array, bool]:
    """``x`` with a leading batch axis of 1 added when it has ``ndim - 1`` dimensions, and
    whether it was."""
    return (x, False) if x.ndim == ndim else (x[None], True)


_PRECISION_NAMES = {p.name.lower(): p for p in lax.Precision}


def precision(op: str, value: Any) -> Any:
    """A hashable contraction precision: ``None`` means ``Precision.HIGHEST`` (float32-exact).

    Accepts what ``lax.conv_general_dilated``/``lax.dot_general`` accept: a
    ``lax.Precision`` or its name, a pair of them, or a ``lax.DotAlgorithmPreset``.
    """
    if value is None:
        return lax.Precision.HIGHEST
    if isinstance(value, (lax.Precision, lax.DotAlgorithmPreset)):
        return value
    if isinstance(value, str) and value.lower() in _PRECISION_NAMES:
        return _PRECISION_NAMES[value.lower()]
    if isinstance(value, tuple) and len(value) == 2:
        return tuple(precision(op, v) for v in value)
    raise fail(
        op,
        f"precision must be None, a lax.Precision (or its name), a pair of them or a "
        f"lax.DotAlgorithmPreset, got {value!r}",
        TypeError,
    )
